//! SQLite isolation: a database file per tenant.
//!
//! SQLite has no row-level security and no roles, and views or triggers bound to a
//! connection's tenant would still leave the base tables one qualified name away. A file
//! per tenant is the mechanism that is enforced below the SQL layer: a connection opened on
//! tenant A's file has no way to name tenant B's rows — once `ATTACH DATABASE` is disabled,
//! which every connection Tenantry opens does (`SQLITE_LIMIT_ATTACHED = 0`).
//!
//! Layout, for `DATABASE_URL=sqlite://data/{org}.db` and org `acme-corp`:
//!
//! ```text
//! data/acme_corp.db            the org's file: host.org("acme-corp").get()
//! data/acme_corp/team_a.db     tenant team-a (row or schema isolation)
//! data/acme_corp/team_b.db     tenant team-b
//! ```
//!
//! Without orgs the tenant directory is named after the single database's file the same
//! way (`data/app.db` → `data/app/<tenant>.db`). Files and directories are created on first
//! use; migrations of every app run on a file when its pool opens (`auto-migrate`).

use std::path::{Path, PathBuf};

use sqlx::sqlite::SqliteConnection;

use super::IsolationError;
use crate::id::TenantId;
use crate::pool::{Backend, ConnPool, Driver, DriverFuture, PoolEntry};

impl Driver for SqliteConnection {
    const BACKEND: Backend = Backend::Sqlite;

    fn prepare(&mut self) -> DriverFuture<'_> {
        Box::pin(forbid_attach(self))
    }

    fn enter<'a>(&'a mut self, _scope: &'a super::SessionScope) -> DriverFuture<'a> {
        // The file is the scope; read-only scopes get a pool opened read-only.
        Box::pin(async { Ok(()) })
    }

    fn from_entry(entry: &PoolEntry) -> Option<std::sync::Arc<ConnPool<Self>>> {
        match entry {
            PoolEntry::Sqlite(p) => Some(p.clone()),
            PoolEntry::Postgres(_) => None,
        }
    }
}

/// Disable `ATTACH DATABASE` on this connection, so SQL run through it cannot open another
/// tenant's file by path.
#[allow(unsafe_code)]
async fn forbid_attach(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    let mut handle = conn.lock_handle().await?;
    let raw = handle.as_raw_handle();
    // SAFETY: `raw` is this connection's open sqlite3 handle, held exclusively through
    // `handle` for the duration of the call; sqlite3_limit only updates the connection's
    // limit table and is valid on any open connection.
    unsafe {
        libsqlite3_sys::sqlite3_limit(raw.as_ptr(), libsqlite3_sys::SQLITE_LIMIT_ATTACHED, 0);
    }
    Ok(())
}

/// The file path and the `?query` suffix of a SQLite URL; `None` for in-memory databases.
pub(crate) fn split_url(url: &str) -> Option<(PathBuf, String)> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let (path, query) = match rest.find('?') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if path.is_empty() || path == ":memory:" || query.contains("mode=memory") {
        return None;
    }
    Some((PathBuf::from(path), query.to_owned()))
}

/// The directory holding the tenant files of the database at `url`.
pub(crate) fn tenants_dir(url: &str) -> Result<PathBuf, IsolationError> {
    let (path, _) = split_url(url).ok_or_else(|| in_memory(url))?;
    Ok(stem_dir(&path))
}

fn stem_dir(path: &Path) -> PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_owned())
        .unwrap_or_else(|| "tenants".into());
    path.with_file_name(stem)
}

fn in_memory(url: &str) -> IsolationError {
    IsolationError::BadSqliteUrl {
        url: crate::redact::redact_url(url),
        reason: "tenants need files, and an in-memory SQLite database has none: use a file \
                 URL such as sqlite://data/app.db"
            .into(),
    }
}

/// The URL of `tenant`'s own file next to the database at `url`.
pub(crate) fn tenant_url(url: &str, tenant: &TenantId) -> Result<String, IsolationError> {
    let (path, query) = split_url(url).ok_or_else(|| in_memory(url))?;
    let file = stem_dir(&path).join(format!("{}.db", tenant.db_name()));
    Ok(format!("sqlite://{}{query}", file.display()))
}

/// The tenants with a file next to the database at `url`, sorted.
pub(crate) fn list_tenant_files(url: &str) -> Result<Vec<TenantId>, IsolationError> {
    let dir = tenants_dir(url)?;
    let mut found = Vec::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
        Err(e) => {
            return Err(IsolationError::BadSqliteUrl {
                url: dir.display().to_string(),
                reason: format!("cannot list tenant files: {e}"),
            });
        }
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(stem) = name.strip_suffix(".db")
            && let Ok(id) = TenantId::new(&stem.replace('_', "-"))
        {
            found.push(id);
        }
    }
    found.sort();
    Ok(found)
}

/// Delete a database file and its journal, WAL and shared-memory companions.
pub(crate) fn remove_database_files(path: &Path) -> std::io::Result<bool> {
    let mut removed = false;
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        match std::fs::remove_file(&p) {
            Ok(()) => removed |= suffix.is_empty(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_files_sit_next_to_the_org_file() {
        let t = TenantId::new("team-a").unwrap();
        assert_eq!(
            tenant_url("sqlite://data/acme_corp.db", &t).unwrap(),
            "sqlite://data/acme_corp/team_a.db"
        );
        assert_eq!(
            tenant_url("sqlite:///tmp/x/app.db?mode=rwc", &t).unwrap(),
            "sqlite:///tmp/x/app/team_a.db?mode=rwc"
        );
        assert!(tenant_url("sqlite::memory:", &t).is_err());
    }
}
