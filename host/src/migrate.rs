//! Running the apps' sqlx migrations on every database Tenantry routes to.
//!
//! An app is a directory `apps/<name>/migrations` of sqlx migration files (the seed's
//! "auto-discovery", with sqlx migrations in place of Prisma clients). Each app keeps its own
//! bookkeeping table, `_tenantry_migrations_<name>`, so several apps can share a database
//! without their version numbers colliding.
//!
//! Where migrations run:
//!
//! * [`run`] — explicitly, e.g. at deploy: the single database or every org's database
//!   ([`Host::list_orgs`](crate::Host::list_orgs)), plus every tenant with a database, a
//!   SQLite file or a PostgreSQL schema of its own.
//! * automatically (`auto-migrate`, on by default) — on a SQLite file the first time a host
//!   opens it, so tenant files created on demand are usable at once; and on whatever
//!   [`Host::create_org`](crate::Host::create_org) and
//!   [`Host::create_tenant`](crate::Host::create_tenant) create, on both backends.
//!
//! PostgreSQL migrations for row-isolated tables should end with the statements of
//! [`enable_rls_sql`](crate::isolation::postgres::enable_rls_sql) (`tenantry rls enable`
//! prints them); with tenants enabled, a migrated database is checked for tables
//! with a `tenant_id` column that lack them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sqlx::migrate::Migrator;

use crate::host::{Host, HostError};
use crate::id::{OrgId, TenantId};
use crate::isolation::{IsolationKind, postgres};
use crate::pool::Backend;
use crate::redact::redact_text;
use crate::scope::{DataError, Purpose, ScopeAddress, Scoped, app_name, sqlx_error};

/// Where apps are found and when their migrations run (`[migrations]`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct MigrationConfig {
    /// Directory holding `<app>/migrations/` (`TENANTRY_APPS_DIR`). Default `apps`; a
    /// missing directory means no apps.
    pub apps_dir: PathBuf,
    /// Run migrations on SQLite files when first opened and on databases, files and schemas
    /// created by `create_org` / `create_tenant` (`TENANTRY_AUTO_MIGRATE`). Default true.
    pub auto: bool,
}

impl Default for MigrationConfig {
    fn default() -> Self {
        Self {
            apps_dir: PathBuf::from("apps"),
            auto: true,
        }
    }
}

/// A discovered app and its migrations.
#[derive(Debug)]
pub(crate) struct App {
    pub(crate) name: Arc<str>,
    migrator: Migrator,
}

impl App {
    fn failed(&self, database: &str, e: sqlx::migrate::MigrateError) -> DataError {
        DataError::Migrate {
            app: self.name.to_string(),
            database: database.to_owned(),
            reason: redact_text(&e.to_string()),
        }
    }

    pub(crate) async fn run_sqlite(
        &self,
        conn: &mut sqlx::SqliteConnection,
        database: &str,
    ) -> Result<(), DataError> {
        // `run_direct` rather than `run`: `run`'s `Acquire` bound makes every caller's future
        // fail rustc's `Send` check (the reason sqlx exposes `run_direct`).
        self.migrator
            .run_direct(None, conn, false)
            .await
            .map_err(|e| self.failed(database, e))
    }

    pub(crate) async fn run_postgres(
        &self,
        conn: &mut sqlx::PgConnection,
        database: &str,
    ) -> Result<(), DataError> {
        // `run_direct` rather than `run`: `run`'s `Acquire` bound makes every caller's future
        // fail rustc's `Send` check (the reason sqlx exposes `run_direct`).
        self.migrator
            .run_direct(None, conn, false)
            .await
            .map_err(|e| self.failed(database, e))
    }
}

/// The apps under `dir`: every `<name>/migrations` directory whose name is a valid id.
pub(crate) async fn discover(dir: &Path) -> Result<Vec<App>, DataError> {
    let mut apps = Vec::new();
    for name in app_names(dir)? {
        let path = dir.join(&*name).join("migrations");
        let mut migrator = Migrator::new(path.clone())
            .await
            .map_err(|e| DataError::Migrate {
                app: name.to_string(),
                database: path.display().to_string(),
                reason: e.to_string(),
            })?;
        migrator
            .dangerous_set_table_name(format!("_tenantry_migrations_{}", name.replace('-', "_")));
        apps.push(App { name, migrator });
    }
    Ok(apps)
}

/// Names of the apps under `dir`, sorted.
pub(crate) fn app_names(dir: &Path) -> Result<Vec<Arc<str>>, DataError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(DataError::Io {
                what: format!("reading apps directory {}", dir.display()),
                reason: e.to_string(),
            });
        }
    };
    let mut names = Vec::new();
    for entry in entries.flatten() {
        if !entry.path().join("migrations").is_dir() {
            continue;
        }
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        match app_name(&name) {
            Ok(name) => names.push(name),
            Err(e) => tracing::warn!("skipping {}: {e}", entry.path().display()),
        }
    }
    names.sort();
    Ok(names)
}

/// One database (or schema) that [`run`] migrated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigratedScope {
    /// The org, when organizations are enabled.
    pub org: Option<OrgId>,
    /// The tenant, for tenants with a database, file or schema of their own.
    pub tenant: Option<TenantId>,
    /// The database, password redacted.
    pub database: String,
    /// How the scope is isolated.
    pub isolation: IsolationKind,
}

/// What [`run`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrationReport {
    /// The apps whose migrations ran.
    pub apps: Vec<String>,
    /// Where they ran.
    pub scopes: Vec<MigratedScope>,
}

/// Run every app's migrations on every database Tenantry knows (see the module docs).
///
/// Stops at the first failure, naming the app and the database.
pub async fn run(host: &Host) -> Result<MigrationReport, HostError> {
    let apps = host.discovered_apps().await?;
    let mut report = MigrationReport {
        apps: apps.iter().map(|a| a.name.to_string()).collect(),
        scopes: Vec::new(),
    };
    let orgs: Vec<Option<OrgId>> = if host.config().orgs {
        host.list_orgs().await?.into_iter().map(Some).collect()
    } else {
        vec![None]
    };
    for org in orgs {
        let shared = host
            .open_scope(
                ScopeAddress {
                    org: org.clone(),
                    ..ScopeAddress::default()
                },
                Purpose::Manage,
            )
            .await?;
        run_all(host, &shared).await?;
        report.scopes.push(migrated(&shared));
        if !host.config().tenants {
            continue;
        }
        let tenants = host
            .list_tenants(org.as_ref().map(OrgId::as_str), |_| true, None)
            .await?;
        for tenant in tenants {
            let plan = host
                .plan_scope(
                    ScopeAddress {
                        org: org.clone(),
                        tenant: Some(tenant),
                        app: None,
                    },
                    Purpose::Manage,
                )
                .await?;
            let own = plan.target_url != plan.org_url || plan.session.schema.is_some();
            if own {
                let scoped = host.open_plan(plan).await?;
                run_all(host, &scoped).await?;
                report.scopes.push(migrated(&scoped));
            }
        }
    }
    Ok(report)
}

fn migrated(scoped: &Scoped) -> MigratedScope {
    MigratedScope {
        org: scoped.org().cloned(),
        tenant: scoped.tenant().cloned(),
        database: scoped.database().to_owned(),
        isolation: scoped.isolation().clone(),
    }
}

/// Run every discovered app's migrations on one scope.
pub(crate) async fn run_all(host: &Host, scoped: &Scoped) -> Result<(), HostError> {
    let apps = host.discovered_apps().await?;
    let database = describe(scoped);
    match scoped.backend() {
        Backend::Postgres => {
            let mut conn = scoped.acquire::<sqlx::Postgres>().await?;
            for app in apps.iter() {
                app.run_postgres(&mut conn, &database).await?;
            }
            if host.config().tenants && !host.config().isolation.allow_unprotected_tables {
                postgres::require_protected_tables(&mut conn, scoped.database())
                    .await
                    .map_err(DataError::from)?;
            }
        }
        Backend::Sqlite => {
            let mut conn = scoped.acquire::<sqlx::Sqlite>().await?;
            for app in apps.iter() {
                app.run_sqlite(&mut conn, &database).await?;
            }
        }
    }
    Ok(())
}

/// Run `migrator` (e.g. an embedded `sqlx::migrate!()`) on one scope's database or schema.
///
/// The scope should come from a handle without read-only restrictions.
pub async fn apply(scoped: &Scoped, migrator: &Migrator) -> Result<(), HostError> {
    let database = describe(scoped);
    let result = match scoped.backend() {
        Backend::Postgres => {
            let mut conn = scoped.acquire::<sqlx::Postgres>().await?;
            migrator.run_direct(None, &mut *conn, false).await
        }
        Backend::Sqlite => {
            let mut conn = scoped.acquire::<sqlx::Sqlite>().await?;
            migrator.run_direct(None, &mut *conn, false).await
        }
    };
    result.map_err(|e| {
        HostError::from(match e {
            sqlx::migrate::MigrateError::Execute(e) => sqlx_error(&database, &e),
            e => DataError::Migrate {
                app: "(given migrator)".into(),
                database,
                reason: redact_text(&e.to_string()),
            },
        })
    })
}

fn describe(scoped: &Scoped) -> String {
    match scoped.isolation() {
        IsolationKind::Schema(s) if scoped.backend() == Backend::Postgres => {
            format!("{} (schema {s})", scoped.database())
        }
        _ => scoped.database().to_owned(),
    }
}
