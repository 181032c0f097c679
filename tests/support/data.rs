//! Helpers shared by the data-layer tests (isolation, management, modes): unique names,
//! app migration directories, and hosts on embedded SQLite or the test PostgreSQL.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::Connection;
use tenantry::{Host, HostConfig};

/// A name no other test (in this or a parallel process) uses: `prefix` + pid + counter.
pub(crate) fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        nanos % 100_000
    )
}

/// SQLite schema of the `notes` app: a `tenant_id` column that the file-per-tenant layout
/// makes irrelevant, kept so the same SQL runs against both backends.
pub(crate) const NOTES_SQLITE: &str = "CREATE TABLE notes (id INTEGER PRIMARY KEY AUTOINCREMENT, \
    tenant_id TEXT, body TEXT NOT NULL);";

/// PostgreSQL schema of the `notes` app, under Tenantry's row-level security.
pub(crate) fn notes_postgres() -> String {
    format!(
        "CREATE TABLE notes (id bigserial PRIMARY KEY, tenant_id text NOT NULL, body text NOT NULL);\n{}",
        tenantry::isolation::postgres::enable_rls_sql("notes").unwrap()
    )
}

/// An apps directory under `root` with one app `notes` whose first migration is `sql`.
pub(crate) fn apps_dir(root: &Path, sql: &str) -> PathBuf {
    let dir = root.join("apps");
    let migrations = dir.join("notes/migrations");
    std::fs::create_dir_all(&migrations).unwrap();
    std::fs::write(migrations.join("0001_notes.sql"), sql).unwrap();
    dir
}

/// A configuration for embedded SQLite under `root`: `{org}.db` files with orgs, `app.db`
/// without, and the `notes` app.
pub(crate) fn sqlite_config(root: &Path, orgs: bool, tenants: bool) -> HostConfig {
    let mut config = HostConfig {
        database_url: Some(if orgs {
            format!("sqlite://{}/data/{{org}}.db", root.display())
        } else {
            format!("sqlite://{}/data/app.db", root.display())
        }),
        orgs,
        tenants,
        ..HostConfig::default()
    };
    config.migrations.apps_dir = apps_dir(root, NOTES_SQLITE);
    config.pools.acquire_timeout_ms = 10_000;
    config
}

/// The password in a `scheme://user:password@host/...` URL.
pub(crate) fn password(url: &str) -> String {
    let authority = url.split("://").nth(1).unwrap().split('@').next().unwrap();
    authority
        .split_once(':')
        .expect("url has a password")
        .1
        .to_owned()
}

/// Load a host.
pub(crate) async fn host(config: HostConfig) -> Host {
    tenantry_tests::capture_logs();
    Host::load(config).await.expect("host loads")
}

/// `url` with its database name replaced by `db`.
pub(crate) fn with_database(url: &str, db: &str) -> String {
    let (base, _) = url.rsplit_once('/').expect("url has a database");
    format!("{base}/{db}")
}

/// Run `sql` (several statements allowed) as the PostgreSQL superuser on database `db`.
pub(crate) async fn admin_sql(db: &str, sql: &str) {
    let pg = tenantry_tests::postgres();
    let mut conn = sqlx::PgConnection::connect(&with_database(&pg.admin_url, db))
        .await
        .expect("admin connects");
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Create database `db` owned by the application role, and run `sql` in it as that role.
pub(crate) async fn pg_database(db: &str, sql: &str) -> String {
    admin_sql(
        "postgres",
        &format!("CREATE DATABASE \"{db}\" OWNER tenantry_app"),
    )
    .await;
    let pg = tenantry_tests::postgres();
    let url = with_database(&pg.app_url, db);
    if !sql.is_empty() {
        let mut conn = sqlx::PgConnection::connect(&url)
            .await
            .expect("app connects");
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    url
}

/// Drop database `db` (best effort: a failed test leaves a throwaway server behind anyway).
pub(crate) async fn drop_pg_database(db: &str) {
    let pg = tenantry_tests::postgres();
    if let Ok(mut conn) = sqlx::PgConnection::connect(&pg.admin_url).await {
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"
        )))
        .execute(&mut conn)
        .await;
    }
}

/// A configuration for the test PostgreSQL: tenants in database `url` (app role).
pub(crate) fn postgres_config(url: &str, tenants: bool) -> HostConfig {
    let mut config = HostConfig {
        database_url: Some(url.to_owned()),
        tenants,
        ..HostConfig::default()
    };
    config.pools.acquire_timeout_ms = 10_000;
    config.migrations.apps_dir = PathBuf::from("/nonexistent-apps-dir");
    config
}
