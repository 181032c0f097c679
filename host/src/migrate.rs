//! Running the apps' sqlx migrations on every database Tenantry routes to.
//!
//! An app is a directory `apps/<name>/migrations` of sqlx migration files (the seed's
//! "auto-discovery", with sqlx migrations in place of Prisma clients). Each app keeps its own
//! bookkeeping table, `_tenantry_migrations_<name>`, so several apps can share a database
//! without their version numbers colliding.
//!
//! Where migrations run:
//!
//! * [`run_with`] (`tenantry migrate`) — explicitly, e.g. at deploy: the single database or
//!   every org's database ([`Host::list_orgs`](crate::Host::list_orgs)), plus every tenant
//!   with a database, a SQLite file or a PostgreSQL schema of its own. Up to
//!   [`MigrateOptions::concurrency`] databases at once; a failure is reported for its scope
//!   and the run goes on. [`run`] is the all-or-error form.
//! * automatically (`auto-migrate`, on by default) — on a SQLite file the first time a host
//!   opens it, so tenant files created on demand are usable at once; and on whatever
//!   [`Host::create_org`](crate::Host::create_org) and
//!   [`Host::create_tenant`](crate::Host::create_tenant) create, on both backends.
//!
//! Re-running is safe: sqlx records each applied version, in the same transaction as the
//! migration itself (on PostgreSQL and SQLite alike, DDL included), so a migration that fails
//! leaves neither its changes nor a record, and the next run applies exactly what is
//! missing. Migrations marked `-- no-transaction` are the exception: a failure there can
//! leave them half-done, and sqlx does not record them, so they must be written to be
//! re-runnable (`IF NOT EXISTS`).
//!
//! PostgreSQL migrations for row-isolated tables should end with the statements of
//! [`enable_rls_sql`](crate::isolation::postgres::enable_rls_sql) (`tenantry rls enable`
//! prints them); with tenants enabled, a migrated database is checked for tables
//! with a `tenant_id` column that lack them.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use sqlx::migrate::{MigrateError, Migrator};

use crate::host::{Host, HostError};
use crate::id::{OrgId, TenantId};
use crate::isolation::{IsolationKind, postgres, sqlite};
use crate::pool::Backend;
use crate::redact::{redact_text, redact_url};
use crate::scope::{DataError, Purpose, ScopeAddress, ScopePlan, Scoped, app_name, sqlx_error};

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
    /// Its bookkeeping table, `_tenantry_migrations_<name>`.
    table: String,
    migrator: Migrator,
}

impl App {
    fn failed(&self, database: &str, e: MigrateError) -> DataError {
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
        let result = self.migrator.run_direct(None, conn, false).await;
        if result.is_err() {
            // sqlx takes a session-level advisory lock and skips the unlock when a migration
            // fails; a pooled connection would keep holding it and block every later
            // migration of this database on another connection.
            let _ = sqlx::query("SELECT pg_catalog.pg_advisory_unlock_all()")
                .execute(&mut *conn)
                .await;
        }
        result.map_err(|e| self.failed(database, e))
    }

    /// The migrations this app would apply, by version (down migrations excluded).
    fn versions(&self) -> impl Iterator<Item = &sqlx::migrate::Migration> {
        self.migrator
            .iter()
            .filter(|m| !m.migration_type.is_down_migration())
    }

    /// What a run would do given the bookkeeping rows (`None`: no table yet), checked the
    /// way sqlx checks them before applying anything.
    fn plan(&self, applied: Option<&[Applied]>, database: &str) -> AppOutcome {
        let applied = applied.unwrap_or_default();
        let refuse = |e: MigrateError| AppOutcome::Failed {
            applied: Vec::new(),
            reason: self.failed(database, e).to_string(),
        };
        if let Some(dirty) = applied.iter().find(|a| !a.success) {
            return refuse(MigrateError::Dirty(dirty.version));
        }
        let known: HashMap<i64, &[u8]> =
            self.versions().map(|m| (m.version, &*m.checksum)).collect();
        for a in applied {
            match known.get(&a.version) {
                None if !self.migrator.ignore_missing => {
                    return refuse(MigrateError::VersionMissing(a.version));
                }
                Some(checksum) if *checksum != a.checksum.as_slice() => {
                    return refuse(MigrateError::VersionMismatch(a.version));
                }
                _ => {}
            }
        }
        let done: BTreeSet<i64> = applied.iter().map(|a| a.version).collect();
        let pending: Vec<i64> = self
            .versions()
            .map(|m| m.version)
            .filter(|v| !done.contains(v))
            .collect();
        if pending.is_empty() {
            AppOutcome::AlreadyCurrent
        } else {
            AppOutcome::Pending { versions: pending }
        }
    }
}

/// A row of an app's bookkeeping table.
#[derive(Debug, Clone)]
struct Applied {
    version: i64,
    checksum: Vec<u8>,
    success: bool,
}

impl From<(i64, Vec<u8>, bool)> for Applied {
    fn from((version, checksum, success): (i64, Vec<u8>, bool)) -> Self {
        Self {
            version,
            checksum,
            success,
        }
    }
}

/// The bookkeeping rows of `table`, or `None` when the table does not exist (resolved
/// through `search_path`, so a schema tenant's own table is the one read).
async fn applied_pg(
    conn: &mut sqlx::PgConnection,
    table: &str,
) -> Result<Option<Vec<Applied>>, sqlx::Error> {
    let exists: bool = sqlx::query_scalar("SELECT pg_catalog.to_regclass($1) IS NOT NULL")
        .bind(table)
        .fetch_one(&mut *conn)
        .await?;
    if !exists {
        return Ok(None);
    }
    let sql = format!("SELECT version, checksum, success FROM {table} ORDER BY version");
    let rows: Vec<(i64, Vec<u8>, bool)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .fetch_all(&mut *conn)
        .await?;
    Ok(Some(rows.into_iter().map(Applied::from).collect()))
}

/// Like [`applied_pg`], for SQLite.
async fn applied_sqlite(
    conn: &mut sqlx::SqliteConnection,
    table: &str,
) -> Result<Option<Vec<Applied>>, sqlx::Error> {
    let exists: bool = sqlx::query_scalar(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?",
    )
    .bind(table)
    .fetch_one(&mut *conn)
    .await?;
    if !exists {
        return Ok(None);
    }
    let sql = format!("SELECT version, checksum, success FROM {table} ORDER BY version");
    let rows: Vec<(i64, Vec<u8>, bool)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .fetch_all(&mut *conn)
        .await?;
    Ok(Some(rows.into_iter().map(Applied::from).collect()))
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
        let table = format!("_tenantry_migrations_{}", name.replace('-', "_"));
        migrator.dangerous_set_table_name(table.clone());
        apps.push(App {
            name,
            table,
            migrator,
        });
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

/// Which apps and orgs [`run_with`] covers, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrateOptions {
    /// Only these apps (default: every app under the apps directory).
    pub apps: Option<Vec<String>>,
    /// Only these orgs (default: [`Host::list_orgs`](crate::Host::list_orgs)); only with
    /// organizations enabled.
    pub orgs: Option<Vec<OrgId>>,
    /// Databases migrated at once (at least 1; default 8). Scopes that share a database
    /// (an org and its schema tenants) run one after another on one connection.
    pub concurrency: usize,
    /// Report what would be applied without changing anything.
    pub dry_run: bool,
}

impl Default for MigrateOptions {
    fn default() -> Self {
        Self {
            apps: None,
            orgs: None,
            concurrency: 8,
            dry_run: false,
        }
    }
}

impl MigrateOptions {
    /// Only these apps.
    pub fn apps<S: Into<String>>(mut self, apps: impl IntoIterator<Item = S>) -> Self {
        self.apps = Some(apps.into_iter().map(Into::into).collect());
        self
    }

    /// Only these orgs.
    pub fn orgs(mut self, orgs: impl IntoIterator<Item = OrgId>) -> Self {
        self.orgs = Some(orgs.into_iter().collect());
        self
    }

    /// Databases migrated at once.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }

    /// Report pending migrations only.
    pub fn dry_run(mut self, on: bool) -> Self {
        self.dry_run = on;
        self
    }
}

/// What happened to one app's migrations on one scope.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum AppOutcome {
    /// These versions were applied now.
    Applied {
        /// Versions, ascending.
        versions: Vec<i64>,
    },
    /// Nothing to apply.
    AlreadyCurrent,
    /// Dry run: these versions would be applied.
    Pending {
        /// Versions, ascending.
        versions: Vec<i64>,
    },
    /// Failed. `applied` lists the versions that did apply (and stay applied) before the
    /// failure; a later run continues from there.
    Failed {
        /// Versions applied in this run before the failure.
        applied: Vec<i64>,
        /// Why, naming the app and the database (secrets redacted).
        reason: String,
    },
}

impl AppOutcome {
    /// Whether this is [`AppOutcome::Failed`].
    pub fn is_failed(&self) -> bool {
        matches!(self, Self::Failed { .. })
    }
}

/// One app's outcome on a scope.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AppResult {
    /// The app.
    pub app: String,
    /// What happened.
    #[serde(flatten)]
    pub outcome: AppOutcome,
}

/// One database, schema or SQLite file that [`run_with`] visited.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ScopeReport {
    /// The org, when organizations are enabled.
    #[serde(serialize_with = "ser_display")]
    pub org: Option<OrgId>,
    /// The tenant, for tenants with a database, file or schema of their own.
    #[serde(serialize_with = "ser_display")]
    pub tenant: Option<TenantId>,
    /// The database (and schema), password redacted; `(unresolved)` when it could not be
    /// found.
    pub database: String,
    /// How the scope is isolated, when it could be planned.
    pub isolation: Option<IsolationKind>,
    /// Each selected app's outcome, in app order.
    pub apps: Vec<AppResult>,
    /// A failure of the scope as a whole after its apps ran (tables left without row-level
    /// security) or of finding its tenants (they were not migrated).
    pub error: Option<String>,
}

impl ScopeReport {
    /// Whether anything failed on this scope.
    pub fn failed(&self) -> bool {
        self.error.is_some() || self.apps.iter().any(|a| a.outcome.is_failed())
    }
}

fn ser_display<T: std::fmt::Display, S: serde::Serializer>(
    value: &Option<T>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(v) => s.collect_str(v),
        None => s.serialize_none(),
    }
}

/// Counts of (scope, app) outcomes, plus scope-level errors.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct MigrateSummary {
    /// Scopes visited.
    pub scopes: usize,
    /// Outcomes that applied something.
    pub applied: usize,
    /// Outcomes with nothing to do.
    pub current: usize,
    /// Dry-run outcomes with something to do.
    pub pending: usize,
    /// Failed outcomes plus scope-level errors.
    pub failed: usize,
}

/// What [`run_with`] did, scope by scope (sorted by org, then tenant).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct FleetReport {
    /// The apps whose migrations were considered.
    pub apps: Vec<String>,
    /// Whether this was a dry run (nothing changed).
    pub dry_run: bool,
    /// Every scope visited.
    pub scopes: Vec<ScopeReport>,
}

impl FleetReport {
    /// Outcome counts.
    pub fn summary(&self) -> MigrateSummary {
        let mut s = MigrateSummary {
            scopes: self.scopes.len(),
            ..MigrateSummary::default()
        };
        for scope in &self.scopes {
            s.failed += usize::from(scope.error.is_some());
            for app in &scope.apps {
                match app.outcome {
                    AppOutcome::Applied { .. } => s.applied += 1,
                    AppOutcome::AlreadyCurrent => s.current += 1,
                    AppOutcome::Pending { .. } => s.pending += 1,
                    AppOutcome::Failed { .. } => s.failed += 1,
                }
            }
        }
        s
    }

    /// Whether any scope failed.
    pub fn failed(&self) -> bool {
        self.scopes.iter().any(ScopeReport::failed)
    }

    /// The scope of `org` (and `tenant`), if visited.
    pub fn scope(&self, org: Option<&str>, tenant: Option<&str>) -> Option<&ScopeReport> {
        self.scopes.iter().find(|s| {
            s.org.as_ref().map(OrgId::as_str) == org
                && s.tenant.as_ref().map(TenantId::as_str) == tenant
        })
    }
}

/// Progress of [`run_with`], reported as it happens.
#[derive(Debug)]
#[non_exhaustive]
pub enum MigrateEvent<'a> {
    /// Scopes were found: this many will be reported [`Finished`](Self::Finished).
    Discovered {
        /// Scopes to visit.
        scopes: usize,
    },
    /// Work on a scope begins (its connection is being opened).
    Started {
        /// The org.
        org: Option<&'a OrgId>,
        /// The tenant.
        tenant: Option<&'a TenantId>,
    },
    /// A scope is done.
    Finished(&'a ScopeReport),
}

/// Run the selected apps' migrations on every selected org database and every tenant
/// database, schema or SQLite file (see the module docs), up to `options.concurrency`
/// databases at once, and report each scope's outcome per app. A failure is reported for its
/// scope and the run continues; use [`FleetReport::failed`] to decide the exit status.
///
/// With `options.dry_run`, each app's bookkeeping table is compared with its migrations (a
/// missing table means everything is pending) and nothing is written.
///
/// Errors only when the run cannot start: an unknown app, orgs that cannot be listed, or
/// `orgs` given without organizations enabled.
pub async fn run_with<F>(
    host: &Host,
    options: &MigrateOptions,
    progress: F,
) -> Result<FleetReport, HostError>
where
    F: Fn(MigrateEvent<'_>) + Sync,
{
    Ok(run_inner(host, options, &progress).await?.0)
}

/// A scope to migrate, or one that failed before it could be.
enum Job {
    Plan {
        plan: Box<ScopePlan>,
        /// Its tenants could not be listed.
        note: Option<HostError>,
    },
    Broken(ScopeReport, HostError),
}

async fn run_inner<F>(
    host: &Host,
    options: &MigrateOptions,
    progress: &F,
) -> Result<(FleetReport, Vec<HostError>), HostError>
where
    F: Fn(MigrateEvent<'_>) + Sync,
{
    let all = host.discovered_apps().await?;
    let apps: Vec<&App> = match &options.apps {
        None => all.iter().collect(),
        Some(names) => {
            let mut chosen = Vec::new();
            for name in names {
                let app = all
                    .iter()
                    .find(|a| &*a.name == name.as_str())
                    .ok_or_else(|| DataError::NotFound {
                        what: format!(
                            "app `{name}` (apps in {}: {})",
                            host.config().migrations.apps_dir.display(),
                            all.iter().map(|a| &*a.name).collect::<Vec<_>>().join(", ")
                        ),
                    })?;
                if !chosen.iter().any(|c: &&App| c.name == app.name) {
                    chosen.push(app);
                }
            }
            chosen.sort_by(|a, b| a.name.cmp(&b.name));
            chosen
        }
    };
    let orgs: Vec<Option<OrgId>> = match (&options.orgs, host.config().orgs) {
        (Some(_), false) => {
            return Err(DataError::OrgsDisabled {
                fix: "no org filter (there is one database)",
            }
            .into());
        }
        (Some(list), true) => list.iter().cloned().map(Some).collect(),
        (None, true) => host.list_orgs().await?.into_iter().map(Some).collect(),
        (None, false) => vec![None],
    };
    let n = options.concurrency.max(1);
    let names: Vec<String> = apps.iter().map(|a| a.name.to_string()).collect();

    let jobs: Vec<Job> = futures_util::stream::iter(orgs)
        .map(|org| discover_org(host, org, &names))
        .buffer_unordered(n)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .flatten()
        .collect();
    progress(MigrateEvent::Discovered { scopes: jobs.len() });

    // One unit per database: its scopes share the migrator's advisory lock anyway.
    let mut units: Vec<Vec<Job>> = Vec::new();
    let mut index: HashMap<Arc<str>, usize> = HashMap::new();
    for job in jobs {
        match &job {
            Job::Plan { plan, .. } => {
                let i = *index.entry(plan.target_url.clone()).or_insert_with(|| {
                    units.push(Vec::new());
                    units.len() - 1
                });
                units[i].push(job);
            }
            Job::Broken(..) => units.push(vec![job]),
        }
    }

    let apps = &apps;
    let done: Vec<(ScopeReport, Vec<HostError>)> = futures_util::stream::iter(units)
        .map(|unit| async move {
            let mut out = Vec::with_capacity(unit.len());
            for job in unit {
                let (report, errors) = match job {
                    Job::Plan { plan, note } => {
                        progress(MigrateEvent::Started {
                            org: plan.address.org.as_ref(),
                            tenant: plan.address.tenant.as_ref(),
                        });
                        let (mut report, mut errors) =
                            migrate_scope(host, *plan, apps, options.dry_run).await;
                        if let Some(e) = note {
                            let note = format!(
                                "its tenants were not migrated: {}",
                                redact_text(&e.to_string())
                            );
                            report.error = Some(match report.error.take() {
                                Some(earlier) => format!("{earlier}; {note}"),
                                None => note,
                            });
                            errors.push(e);
                        }
                        (report, errors)
                    }
                    Job::Broken(report, e) => {
                        progress(MigrateEvent::Started {
                            org: report.org.as_ref(),
                            tenant: report.tenant.as_ref(),
                        });
                        (report, vec![e])
                    }
                };
                progress(MigrateEvent::Finished(&report));
                out.push((report, errors));
            }
            out
        })
        .buffer_unordered(n)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .flatten()
        .collect();

    let mut done = done;
    done.sort_by(|a, b| (&a.0.org, &a.0.tenant).cmp(&(&b.0.org, &b.0.tenant)));
    let mut errors = Vec::new();
    let mut scopes = Vec::with_capacity(done.len());
    for (report, e) in done {
        scopes.push(report);
        errors.extend(e);
    }
    Ok((
        FleetReport {
            apps: names,
            dry_run: options.dry_run,
            scopes,
        },
        errors,
    ))
}

/// A report for a scope that failed as a whole: every app fails with `e`.
fn broken(
    org: Option<OrgId>,
    tenant: Option<TenantId>,
    apps: &[String],
    e: &HostError,
) -> ScopeReport {
    let reason = redact_text(&e.to_string());
    ScopeReport {
        org,
        tenant,
        database: "(unresolved)".into(),
        isolation: None,
        apps: apps
            .iter()
            .map(|app| AppResult {
                app: app.clone(),
                outcome: AppOutcome::Failed {
                    applied: Vec::new(),
                    reason: reason.clone(),
                },
            })
            .collect(),
        error: None,
    }
}

/// The scopes of one org (or of the single database): its own database, then every tenant
/// with a database, file or schema of its own.
async fn discover_org(host: &Host, org: Option<OrgId>, apps: &[String]) -> Vec<Job> {
    let address = ScopeAddress {
        org: org.clone(),
        ..ScopeAddress::default()
    };
    let plan = match host.plan_scope(address, Purpose::Manage).await {
        Ok(plan) => plan,
        Err(e) => return vec![Job::Broken(broken(org, None, apps, &e), e)],
    };
    let mut jobs = Vec::new();
    let mut note = None;
    if host.config().tenants {
        match host
            .list_tenants(org.as_ref().map(OrgId::as_str), |_| true, None)
            .await
        {
            Ok(tenants) => {
                for tenant in tenants {
                    let address = ScopeAddress {
                        org: org.clone(),
                        tenant: Some(tenant.clone()),
                        app: None,
                    };
                    match host.plan_scope(address, Purpose::Manage).await {
                        Ok(p) if p.target_url != p.org_url || p.session.schema.is_some() => {
                            jobs.push(Job::Plan {
                                plan: Box::new(p),
                                note: None,
                            });
                        }
                        Ok(_) => {} // row isolation: the org's database is the tenant's
                        Err(e) => {
                            jobs.push(Job::Broken(broken(org.clone(), Some(tenant), apps, &e), e));
                        }
                    }
                }
            }
            Err(e) => note = Some(e),
        }
    }
    jobs.insert(
        0,
        Job::Plan {
            plan: Box::new(plan),
            note,
        },
    );
    jobs
}

/// Run (or, dry, plan) every app on one scope through one connection.
async fn migrate_scope(
    host: &Host,
    plan: ScopePlan,
    apps: &[&App],
    dry_run: bool,
) -> (ScopeReport, Vec<HostError>) {
    let org = plan.address.org.clone();
    let tenant = plan.address.tenant.clone();
    let isolation = plan.isolation.clone();
    let names: Vec<String> = apps.iter().map(|a| a.name.to_string()).collect();
    let mut errors: Vec<HostError> = Vec::new();
    let mut error = None;
    let fail = |e: HostError, database: String| {
        let mut r = broken(org.clone(), tenant.clone(), &names, &e);
        r.database = database;
        r.isolation = Some(isolation.clone());
        (r, vec![e])
    };
    let mut results = Vec::with_capacity(apps.len());
    let database;
    match plan.backend {
        Backend::Postgres => {
            let label = redact_url(&plan.target_url);
            let tenants_checked = host.config().tenants
                && !host.config().isolation.allow_unprotected_tables
                && !dry_run;
            let scoped = match host.open_plan(plan).await {
                Ok(s) => s,
                Err(e) => return fail(e, label),
            };
            database = describe(&scoped);
            let mut conn = match scoped.acquire::<sqlx::Postgres>().await {
                Ok(c) => c,
                Err(e) => return fail(e, database),
            };
            for app in apps {
                let before = applied_pg(&mut conn, &app.table).await;
                let outcome = match before {
                    Err(e) => failed_read(app, &database, &e, &mut errors),
                    Ok(before) if dry_run => app.plan(before.as_deref(), &database),
                    Ok(before) => {
                        let result = app.run_postgres(&mut conn, &database).await;
                        let after = applied_pg(&mut conn, &app.table).await.ok().flatten();
                        outcome(result, before, after, &mut errors)
                    }
                };
                results.push(AppResult {
                    app: app.name.to_string(),
                    outcome,
                });
            }
            if tenants_checked
                && let Err(e) =
                    postgres::require_protected_tables(&mut conn, scoped.database()).await
            {
                error = Some(e.to_string());
                errors.push(DataError::from(e).into());
            }
            if results.iter().any(|r| r.outcome.is_failed()) {
                // Leave no session state of a failed migration behind in the pool.
                conn.close();
            }
        }
        Backend::Sqlite => {
            database = redact_url(&plan.target_url);
            let mut conn = match sqlite_connection(&plan.target_url, &database, dry_run).await {
                Ok(c) => c,
                Err(e) => return fail(e.into(), database),
            };
            for app in apps {
                let before = applied_sqlite(&mut conn, &app.table).await;
                let outcome = match before {
                    Err(e) => failed_read(app, &database, &e, &mut errors),
                    Ok(before) if dry_run => app.plan(before.as_deref(), &database),
                    Ok(before) => {
                        let result = app.run_sqlite(&mut conn, &database).await;
                        let after = applied_sqlite(&mut conn, &app.table).await.ok().flatten();
                        outcome(result, before, after, &mut errors)
                    }
                };
                results.push(AppResult {
                    app: app.name.to_string(),
                    outcome,
                });
            }
            let _ = sqlx::Connection::close(conn).await;
        }
    }
    (
        ScopeReport {
            org,
            tenant,
            database,
            isolation: Some(isolation),
            apps: results,
            error,
        },
        errors,
    )
}

/// The outcome of a real run from its result and the bookkeeping before and after.
fn outcome(
    result: Result<(), DataError>,
    before: Option<Vec<Applied>>,
    after: Option<Vec<Applied>>,
    errors: &mut Vec<HostError>,
) -> AppOutcome {
    let had: BTreeSet<i64> = before.iter().flatten().map(|a| a.version).collect();
    let applied: Vec<i64> = after
        .iter()
        .flatten()
        .filter(|a| a.success && !had.contains(&a.version))
        .map(|a| a.version)
        .collect();
    match result {
        Ok(()) if applied.is_empty() => AppOutcome::AlreadyCurrent,
        Ok(()) => AppOutcome::Applied { versions: applied },
        Err(e) => {
            let reason = e.to_string();
            errors.push(e.into());
            AppOutcome::Failed { applied, reason }
        }
    }
}

fn failed_read(
    app: &App,
    database: &str,
    e: &sqlx::Error,
    errors: &mut Vec<HostError>,
) -> AppOutcome {
    let e = DataError::Migrate {
        app: app.name.to_string(),
        database: database.to_owned(),
        reason: format!("cannot read {}: {}", app.table, redact_text(&e.to_string())),
    };
    let reason = e.to_string();
    errors.push(e.into());
    AppOutcome::Failed {
        applied: Vec::new(),
        reason,
    }
}

/// A connection of its own to a SQLite file: the host's pools would run every app's
/// migrations when they open it (`auto-migrate`), and a dry run must change nothing. The file
/// must exist: migrating does not create orgs or tenants.
async fn sqlite_connection(
    url: &str,
    database: &str,
    dry_run: bool,
) -> Result<sqlx::SqliteConnection, DataError> {
    use sqlx::ConnectOptions;
    if let Some((path, _)) = sqlite::split_url(url)
        && !path.exists()
    {
        return Err(DataError::NoSuchDatabase {
            database: database.to_owned(),
        });
    }
    let options: sqlx::sqlite::SqliteConnectOptions =
        url.parse()
            .map_err(|e: sqlx::Error| DataError::InvalidDatabaseUrl {
                url: database.to_owned(),
                reason: redact_text(&e.to_string()),
            })?;
    let mut options = options
        .busy_timeout(Duration::from_secs(5))
        .foreign_keys(true)
        .create_if_missing(false);
    if !dry_run {
        options = options.journal_mode(sqlx::sqlite::SqliteJournalMode::Wal);
    }
    options
        .connect()
        .await
        .map_err(|e| sqlx_error(database, &e))
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

/// Run every app's migrations on every database Tenantry knows (see the module docs):
/// [`run_with`] with the default options, as one result.
///
/// Every scope is attempted; if any failed, the first failure (by org, then tenant) is
/// returned, naming the app and the database, after the others were migrated.
pub async fn run(host: &Host) -> Result<MigrationReport, HostError> {
    let (report, errors) = run_inner(host, &MigrateOptions::default(), &|_| {}).await?;
    if let Some(first) = errors.into_iter().next() {
        return Err(first);
    }
    Ok(MigrationReport {
        apps: report.apps,
        scopes: report
            .scopes
            .into_iter()
            .map(|s| MigratedScope {
                org: s.org,
                tenant: s.tenant,
                database: s.database,
                isolation: s.isolation.unwrap_or(IsolationKind::Shared),
            })
            .collect(),
    })
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
