//! Organization and tenant management, health, apps and reconfiguration — the seed's
//! "Organization Management", "Tenant Management" and "Utility Methods".
//!
//! | | PostgreSQL | SQLite |
//! |---|---|---|
//! | org | a database, created and dropped through `admin-database-url` | a file, created and deleted here |
//! | row tenant | its rows (deleted through the tenant's own scope, so RLS bounds the delete) | its file |
//! | schema tenant | a schema (`CREATE SCHEMA` / `DROP SCHEMA … CASCADE`) | its file |
//! | database tenant | a database (admin URL) | the policy's file |
//! | tenant list | `public.tenantry_tenants` in the org's database, written by `create_tenant` and readable only by sessions without a tenant | the tenant files next to the org's file |
//! | org list | `pg_database` names matching the `{org}` pattern | files matching the pattern; or the `directory` resolver's entries |
//!
//! Deletions refuse to run without `confirm = true`, close the pools of what they delete
//! first, and forget cached policy answers and org resolutions.

use std::sync::Arc;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{AssertSqlSafe, ConnectOptions};

use crate::host::{Host, HostError};
use crate::id::{OrgId, TenantId};
use crate::isolation::{IsolationKind, SessionScope, quote_ident, sqlite};
use crate::plugin::PluginKind;
use crate::pool::{Backend, PoolEntry, PoolStats};
use crate::redact::{redact_text, redact_url};
use crate::scope::{
    DataError, Purpose, ScopeAddress, ScopePlan, Scoped, check_database_url, sqlx_error,
};

/// The table listing a PostgreSQL org's tenants.
const REGISTRY: &str = "public.tenantry_tenants";

/// Creates the tenant registry: readable and writable only by sessions without a tenant, so
/// a tenant's own connections cannot enumerate the other tenants.
const REGISTRY_SQL: &str = "\
CREATE TABLE IF NOT EXISTS public.tenantry_tenants (\
    id text PRIMARY KEY, isolation text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());\
ALTER TABLE public.tenantry_tenants ENABLE ROW LEVEL SECURITY;\
ALTER TABLE public.tenantry_tenants FORCE ROW LEVEL SECURITY;\
DROP POLICY IF EXISTS tenantry_registry ON public.tenantry_tenants;\
CREATE POLICY tenantry_registry ON public.tenantry_tenants \
    USING (COALESCE(pg_catalog.current_setting('tenantry.tenant_id', true), '') = '') \
    WITH CHECK (COALESCE(pg_catalog.current_setting('tenantry.tenant_id', true), '') = '');";

/// Which combination of organizations and tenants a host runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// One database (`DATABASE_URL`).
    Single,
    /// Tenants inside one database (`TENANTRY_TENANTS=true`).
    Tenants,
    /// A database per org (`TENANTRY_ORGS=true`).
    Orgs,
    /// Tenants inside each org's database (both).
    OrgsAndTenants,
}

/// The answer of [`Host::health`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Health {
    /// Whether the configuration is usable and every checked database answered.
    pub healthy: bool,
    /// The mode.
    pub mode: Mode,
    /// The backend `DATABASE_URL` names, if set.
    pub backend: Option<Backend>,
    /// Organizations enabled.
    pub orgs: bool,
    /// Tenants enabled.
    pub tenants: bool,
    /// Connections open across all pools.
    pub open_connections: u32,
    /// The global cap on them.
    pub max_open_connections: u32,
    /// Every registered pool.
    pub pools: Vec<PoolStats>,
    /// What is wrong, when not healthy (secrets redacted).
    pub error: Option<String>,
}

impl Host {
    /// Create org `id`'s database (PostgreSQL: `CREATE DATABASE` through
    /// `admin-database-url`, owned by the role of the org's URL; SQLite: the file) and run
    /// every app's migrations on it.
    pub async fn create_org(&self, id: impl AsRef<str>) -> Result<(), HostError> {
        let org = self.org(id)?.id().clone();
        let (url, _) = self.org_url(Some(&org)).await?;
        let what = format!("org `{org}` ({})", redact_url(&url));
        if self.database_exists(&url).await? {
            return Err(DataError::AlreadyExists { what }.into());
        }
        if Backend::of_url(&url) == Some(Backend::Postgres) {
            self.create_pg_database(&url, &what).await?;
        }
        let scoped = self
            .open_scope(org_address(&org, None), Purpose::Manage)
            .await?;
        crate::migrate::run_all(self, &scoped).await?;
        tracing::info!(org = %org, database = %scoped.database(), "org created");
        Ok(())
    }

    /// Delete org `id` and all its data: its tenants' own databases, its pools, its
    /// database (PostgreSQL: `DROP DATABASE … WITH (FORCE)` through `admin-database-url`)
    /// or its file and tenant files. Refuses unless `confirm` is true.
    pub async fn delete_org(&self, id: impl AsRef<str>, confirm: bool) -> Result<(), HostError> {
        let org = self.org(id)?.id().clone();
        if !confirm {
            return Err(DataError::ConfirmationRequired {
                what: format!("org `{org}`"),
                call: "host.delete_org(id, true)",
            }
            .into());
        }
        let (url, _) = self.org_url(Some(&org)).await?;
        if !self.database_exists(&url).await? {
            return Err(DataError::NotFound {
                what: format!("org `{org}` ({})", redact_url(&url)),
            }
            .into());
        }
        match Backend::of_url(&url).expect("checked") {
            Backend::Sqlite => {
                let (path, _) = sqlite::split_url(&url).expect("exists, so not in memory");
                let dir = sqlite::tenants_dir(&url).map_err(DataError::from)?;
                self.data()
                    .registry
                    .close_where(|u| {
                        sqlite::split_url(u).is_some_and(|(p, _)| p == path || p.starts_with(&dir))
                    })
                    .await;
                remove_file_set(&path)?;
                match std::fs::remove_dir_all(&dir) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(DataError::Io {
                            what: format!("removing tenant files in {}", dir.display()),
                            reason: e.to_string(),
                        }
                        .into());
                    }
                }
            }
            Backend::Postgres => {
                if self.config().tenants {
                    for (tenant, isolation) in
                        self.registered_tenants(&org_address(&org, None)).await?
                    {
                        if isolation == "database" {
                            self.delete_tenant(tenant.as_str(), Some(org.as_str()), true)
                                .await?;
                        }
                    }
                }
                self.data().registry.close_where(|u| u == &*url).await;
                self.drop_pg_database(&url, &format!("deleting org `{org}`"))
                    .await?;
            }
        }
        self.data().forget_scopes();
        self.clear_org_cache(Some(&org)).await;
        tracing::info!(org = %org, "org deleted");
        Ok(())
    }

    /// Whether org `id`'s database (or file) exists.
    pub async fn org_exists(&self, id: impl AsRef<str>) -> Result<bool, HostError> {
        let org = self.org(id)?.id().clone();
        let (url, _) = self.org_url(Some(&org)).await?;
        self.database_exists(&url).await
    }

    /// Every org that exists: databases (PostgreSQL) or files (SQLite) matching the `{org}`
    /// pattern of `DATABASE_URL` or the `pattern` resolver's template, or the entries of the
    /// `directory` resolver. Other resolvers cannot be enumerated.
    pub async fn list_orgs(&self) -> Result<Vec<OrgId>, HostError> {
        if !self.config().orgs {
            return Err(DataError::OrgsDisabled {
                fix: "host.get() (there is one database)",
            }
            .into());
        }
        let pattern = match self.slot(PluginKind::OrgResolver) {
            Some(slot) => {
                let plugin = slot.current();
                let config = &plugin.spec().config;
                if let Some(directory) = config.get("directory") {
                    return Ok(directory_orgs(directory)?);
                }
                config
                    .get("template")
                    .or_else(|| config.get("database-url"))
                    .cloned()
                    .ok_or_else(|| DataError::CannotList {
                        what: "orgs",
                        reason: format!(
                            "the org-resolver plugin `{}` has neither a `directory` nor a \
                             `template` to enumerate: keep a list of orgs in your own directory",
                            plugin.name()
                        ),
                    })?
            }
            None => self
                .config()
                .database_url
                .clone()
                .filter(|u| u.contains("{org}"))
                .ok_or_else(|| DataError::CannotList {
                    what: "orgs",
                    reason: "DATABASE_URL has no {org} placeholder and no org resolver is \
                             configured"
                        .into(),
                })?,
        };
        Ok(self.orgs_matching(&pattern).await?)
    }

    /// Create tenant `id` of `org` (`None` without organizations): PostgreSQL records it in
    /// the org's tenant registry and creates its schema or database when the policy says so;
    /// SQLite creates its file. Runs every app's migrations on what it created.
    pub async fn create_tenant(
        &self,
        id: impl AsRef<str>,
        org: Option<&str>,
    ) -> Result<(), HostError> {
        let address = self.tenant_address(id.as_ref(), org)?;
        let plan = self.plan_scope(address.clone(), Purpose::Manage).await?;
        let what = tenant_what(&address);
        if self.tenant_exists_plan(&plan).await? {
            return Err(DataError::AlreadyExists { what }.into());
        }
        match (&plan.isolation, plan.backend) {
            (IsolationKind::Schema(schema), Backend::Postgres) => {
                let shared = self.org_scope(&address).await?;
                let mut conn = shared.acquire::<sqlx::Postgres>().await?;
                let sql = format!("CREATE SCHEMA IF NOT EXISTS {}", quote_ident(schema));
                sqlx::raw_sql(AssertSqlSafe(sql))
                    .execute(&mut *conn)
                    .await
                    .map_err(|e| sqlx_error(shared.database(), &e))?;
            }
            (IsolationKind::Database, Backend::Postgres)
                if !self.database_exists(&plan.target_url).await? =>
            {
                self.create_pg_database(&plan.target_url, &what).await?;
            }
            _ => {}
        }
        let creates_storage =
            plan.backend == Backend::Sqlite || !matches!(plan.isolation, IsolationKind::Row);
        let scoped = self.open_plan(plan).await?;
        if creates_storage {
            crate::migrate::run_all(self, &scoped).await?;
        }
        if Backend::of_url(&scoped.plan().org_url) == Some(Backend::Postgres) {
            let shared = self.org_scope(&address).await?;
            let mut conn = shared.acquire::<sqlx::Postgres>().await?;
            ensure_registry(&mut conn, shared.database()).await?;
            let tenant = address.tenant.as_ref().expect("tenant address");
            crate::relocate::clear_tombstone(&mut conn, tenant, shared.database()).await?;
            if let Some(org) = &address.org {
                self.forget_placement(org, tenant).await;
            }
            sqlx::query(
                "INSERT INTO public.tenantry_tenants (id, isolation) VALUES ($1, $2) \
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(address.tenant.as_ref().expect("tenant address").as_str())
            .bind(isolation_name(scoped.isolation()))
            .execute(&mut *conn)
            .await
            .map_err(|e| sqlx_error(shared.database(), &e))?;
        }
        tracing::info!(tenant = %what, isolation = %scoped.isolation(), "tenant created");
        Ok(())
    }

    /// Delete tenant `id` of `org` and all its data: its rows in every table with a
    /// `tenant_id` column (deleted through the tenant's own scope), its schema, database or
    /// file. Refuses unless `confirm` is true.
    pub async fn delete_tenant(
        &self,
        id: impl AsRef<str>,
        org: Option<&str>,
        confirm: bool,
    ) -> Result<(), HostError> {
        let address = self.tenant_address(id.as_ref(), org)?;
        let what = tenant_what(&address);
        if !confirm {
            return Err(DataError::ConfirmationRequired {
                what,
                call: "host.delete_tenant(id, org, true)",
            }
            .into());
        }
        let plan = self.plan_scope(address.clone(), Purpose::Manage).await?;
        if !self.tenant_exists_plan(&plan).await? {
            return Err(DataError::NotFound { what }.into());
        }
        let target = plan.target_url.clone();
        match (&plan.isolation, plan.backend) {
            (_, Backend::Sqlite) => {
                self.data().registry.close_where(|u| u == &*target).await;
                if let Some((path, _)) = sqlite::split_url(&target) {
                    remove_file_set(&path)?;
                }
            }
            (IsolationKind::Database, Backend::Postgres) => {
                self.data().registry.close_where(|u| u == &*target).await;
                if self.database_exists(&target).await? {
                    self.drop_pg_database(&target, &format!("deleting {what}"))
                        .await?;
                }
            }
            (isolation, Backend::Postgres) => {
                let schema = match isolation {
                    IsolationKind::Schema(s) => Some(s.clone()),
                    _ => None,
                };
                let scoped = self.open_plan(plan).await?;
                delete_tenant_rows(&scoped).await?;
                if let Some(schema) = schema {
                    let shared = self.org_scope(&address).await?;
                    let mut conn = shared.acquire::<sqlx::Postgres>().await?;
                    let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", quote_ident(&schema));
                    sqlx::raw_sql(AssertSqlSafe(sql))
                        .execute(&mut *conn)
                        .await
                        .map_err(|e| sqlx_error(shared.database(), &e))?;
                }
            }
        }
        let (org_url, _) = self.org_url(address.org.as_ref()).await?;
        if Backend::of_url(&org_url) == Some(Backend::Postgres) {
            let shared = self.org_scope(&address).await?;
            let mut conn = shared.acquire::<sqlx::Postgres>().await?;
            if registry_present(&mut conn, shared.database()).await? {
                sqlx::query("DELETE FROM public.tenantry_tenants WHERE id = $1")
                    .bind(address.tenant.as_ref().expect("tenant address").as_str())
                    .execute(&mut *conn)
                    .await
                    .map_err(|e| sqlx_error(shared.database(), &e))?;
            }
        }
        self.data().forget_scopes();
        tracing::info!(tenant = %what, "tenant deleted");
        Ok(())
    }

    /// Whether tenant `id` of `org` exists: registered by `create_tenant` (PostgreSQL) or
    /// with a file (SQLite).
    pub async fn tenant_exists(
        &self,
        id: impl AsRef<str>,
        org: Option<&str>,
    ) -> Result<bool, HostError> {
        let address = self.tenant_address(id.as_ref(), org)?;
        let plan = self.plan_scope(address, Purpose::Manage).await?;
        self.tenant_exists_plan(&plan).await
    }

    /// The tenants of `org` (`None` without organizations) for which `filter` is true,
    /// sorted, at most `limit`.
    pub async fn list_tenants(
        &self,
        org: Option<&str>,
        filter: impl Fn(&TenantId) -> bool,
        limit: Option<usize>,
    ) -> Result<Vec<TenantId>, HostError> {
        if !self.config().tenants {
            return Err(DataError::TenantsDisabled {
                fix: "host.list_orgs() (there are no tenants)",
            }
            .into());
        }
        let org = self.org_arg(org)?;
        let address = org_address_opt(org.as_ref());
        let (url, _) = self.org_url(org.as_ref()).await?;
        let all = match Backend::of_url(&url).expect("checked") {
            Backend::Sqlite => sqlite::list_tenant_files(&url).map_err(DataError::from)?,
            Backend::Postgres => self
                .registered_tenants(&address)
                .await?
                .into_iter()
                .map(|(t, _)| t)
                .collect(),
        };
        Ok(all
            .into_iter()
            .filter(|t| filter(t))
            .take(limit.unwrap_or(usize::MAX))
            .collect())
    }

    /// Connections open across all pools, and the global cap on them. Unlike
    /// [`health`](Self::health) this touches no database, so it suits metrics scrapes.
    pub fn connection_counts(&self) -> (u32, u32) {
        let cap = self.data().registry.cap();
        (cap.open(), cap.max())
    }

    /// Mode, backend, connections and pools; healthy when the configuration is usable and
    /// the database (without orgs) or every open pool (with orgs) answers.
    pub async fn health(&self) -> Health {
        let config = self.config();
        let mode = match (config.orgs, config.tenants) {
            (false, false) => Mode::Single,
            (false, true) => Mode::Tenants,
            (true, false) => Mode::Orgs,
            (true, true) => Mode::OrgsAndTenants,
        };
        let backend = config.database_url.as_deref().and_then(Backend::of_url);
        let error = if config.orgs {
            self.check_orgs_health().await
        } else {
            match self.get().await {
                Ok(scoped) => scoped.ping().await.err().map(|e| e.to_string()),
                Err(e) => Some(e.to_string()),
            }
        };
        let registry = &self.data().registry;
        Health {
            healthy: error.is_none(),
            mode,
            backend,
            orgs: config.orgs,
            tenants: config.tenants,
            open_connections: registry.cap().open(),
            max_open_connections: registry.cap().max(),
            pools: registry.stats().await,
            error: error.map(|e| redact_text(&e)),
        }
    }

    async fn check_orgs_health(&self) -> Option<String> {
        let has_resolver = self.slot(PluginKind::OrgResolver).is_some()
            || self
                .config()
                .database_url
                .as_deref()
                .is_some_and(|u| u.contains("{org}"));
        if !has_resolver {
            return Some(crate::resolve::ResolveError::NoResolver.to_string());
        }
        let registry = &self.data().registry;
        let shared = Arc::new(SessionScope::shared());
        for entry in registry.entries() {
            let label = entry.label().to_owned();
            let pinged = match &entry {
                PoolEntry::Postgres(pool) => match pool.checkout(&shared).await {
                    Ok(mut conn) => sqlx::Connection::ping(conn.raw_mut())
                        .await
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(crate::scope::checkout_error(&label, registry, e).to_string()),
                },
                PoolEntry::Sqlite(pool) => match pool.checkout(&shared).await {
                    Ok(mut conn) => sqlx::Connection::ping(conn.raw_mut())
                        .await
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(crate::scope::checkout_error(&label, registry, e).to_string()),
                },
            };
            if let Err(e) = pinged {
                return Some(format!("{label}: {e}"));
            }
        }
        None
    }

    /// The apps found under the apps directory (`apps/<name>/migrations`), sorted.
    pub async fn apps(&self) -> Result<Vec<String>, HostError> {
        Ok(
            crate::migrate::app_names(&self.config().migrations.apps_dir)?
                .iter()
                .map(|n| n.to_string())
                .collect(),
        )
    }

    /// A new host like this one with `DATABASE_URL` set to `url` (validated; may contain
    /// `{org}`). Hosts are immutable, so clones of this one keep the old URL.
    pub async fn configure(&self, url: impl Into<String>) -> Result<Host, HostError> {
        let url = url.into();
        check_database_url(&url)?;
        let mut config = self.config().clone();
        config.database_url = Some(url);
        Host::load(config).await
    }

    /// Close every pool and forget cached policy answers, tenant limits, discovered apps
    /// and org resolutions. For tests, and after changing databases behind the host's back.
    pub async fn clear_cache(&self) {
        self.data().clear().await;
        self.clear_org_cache(None).await;
    }

    /// Validate a tenant management call's ids against the mode.
    fn tenant_address(&self, tenant: &str, org: Option<&str>) -> Result<ScopeAddress, HostError> {
        if !self.config().tenants {
            return Err(DataError::TenantsDisabled {
                fix: "host.create_org(id) / host.get()",
            }
            .into());
        }
        let org = self.org_arg(org)?;
        Ok(ScopeAddress {
            app: None,
            org,
            tenant: Some(TenantId::new(tenant)?),
        })
    }

    /// The org argument of a management call, checked against the mode.
    fn org_arg(&self, org: Option<&str>) -> Result<Option<OrgId>, HostError> {
        match (self.config().orgs, org) {
            (true, Some(org)) => Ok(Some(OrgId::new(org)?)),
            (true, None) => Err(DataError::OrgRequired.into()),
            (false, None) => Ok(None),
            (false, Some(_)) => Err(DataError::OrgsDisabled {
                fix: "None for the org (there is one database)",
            }
            .into()),
        }
    }

    /// The shared (no tenant) management scope of an address's org database.
    async fn org_scope(&self, address: &ScopeAddress) -> Result<Scoped, HostError> {
        self.open_scope(org_address_opt(address.org.as_ref()), Purpose::Manage)
            .await
    }

    async fn tenant_exists_plan(&self, plan: &ScopePlan) -> Result<bool, HostError> {
        if Backend::of_url(&plan.org_url) == Some(Backend::Postgres) {
            let tenant = plan.address.tenant.as_ref().expect("tenant plan");
            let registered = self
                .registered_tenants(&org_address_opt(plan.address.org.as_ref()))
                .await?;
            return Ok(registered.iter().any(|(t, _)| t == tenant));
        }
        self.database_exists(&plan.target_url).await
    }

    /// `(tenant, isolation)` rows of a PostgreSQL org's registry; empty without one.
    async fn registered_tenants(
        &self,
        org: &ScopeAddress,
    ) -> Result<Vec<(TenantId, String)>, HostError> {
        let shared = self.org_scope(org).await?;
        let mut conn = shared.acquire::<sqlx::Postgres>().await?;
        if !registry_present(&mut conn, shared.database()).await? {
            return Ok(Vec::new());
        }
        let rows: Vec<(String, String)> = sqlx::query_as(crate::relocate::REGISTERED_HERE_SQL)
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| sqlx_error(shared.database(), &e))?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, iso)| TenantId::new(&id).ok().map(|t| (t, iso)))
            .collect())
    }

    /// Whether the database (or file) at `url` exists.
    async fn database_exists(&self, url: &str) -> Result<bool, HostError> {
        match Backend::of_url(url) {
            Some(Backend::Sqlite) => Ok(sqlite::split_url(url).is_some_and(|(p, _)| p.is_file())),
            Some(Backend::Postgres) => {
                let (options, name) = pg_target(url)?;
                if self.config().admin_database_url.is_some() {
                    let mut admin = self
                        .admin_connection(&options, "checking a database")
                        .await?;
                    let exists: bool = sqlx::query_scalar(
                        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1)",
                    )
                    .bind(&name)
                    .fetch_one(&mut admin)
                    .await
                    .map_err(|e| sqlx_error("the admin database", &e))?;
                    return Ok(exists);
                }
                match options.connect().await {
                    Ok(conn) => {
                        let _ = sqlx::Connection::close(conn).await;
                        Ok(true)
                    }
                    Err(e) => match sqlx_error(&redact_url(url), &e) {
                        DataError::NoSuchDatabase { .. } => Ok(false),
                        other => Err(other.into()),
                    },
                }
            }
            None => Err(check_database_url(url)
                .expect_err("unsupported scheme")
                .into()),
        }
    }

    /// A connection as the administrative role, to the maintenance database of the server
    /// that `target` lives on.
    async fn admin_connection(
        &self,
        target: &PgConnectOptions,
        what: &str,
    ) -> Result<PgConnection, HostError> {
        let Some(admin_url) = self.config().admin_database_url.as_deref() else {
            return Err(DataError::AdminUrlRequired {
                what: what.to_owned(),
            }
            .into());
        };
        let admin: PgConnectOptions =
            admin_url
                .parse()
                .map_err(|e: sqlx::Error| DataError::InvalidDatabaseUrl {
                    url: redact_url(admin_url),
                    reason: format!("admin-database-url: {}", redact_text(&e.to_string())),
                })?;
        if admin.get_host() != target.get_host() || admin.get_port() != target.get_port() {
            return Err(DataError::AdminUrlRequired {
                what: format!(
                    "{what} on {}:{} (admin-database-url points at {}:{})",
                    target.get_host(),
                    target.get_port(),
                    admin.get_host(),
                    admin.get_port()
                ),
            }
            .into());
        }
        admin
            .connect()
            .await
            .map_err(|e| sqlx_error(&redact_url(admin_url), &e).into())
    }

    async fn create_pg_database(&self, url: &str, what: &str) -> Result<(), HostError> {
        let (options, name) = pg_target(url)?;
        let mut admin = self
            .admin_connection(&options, &format!("creating {what}"))
            .await?;
        let admin_user: String = sqlx::query_scalar("SELECT current_user::text")
            .fetch_one(&mut admin)
            .await
            .map_err(|e| sqlx_error("the admin database", &e))?;
        let owner = options.get_username();
        let mut sql = format!("CREATE DATABASE {}", quote_ident(&name));
        if !owner.is_empty() && owner != admin_user {
            sql.push_str(&format!(" OWNER {}", quote_ident(owner)));
        }
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(&mut admin)
            .await
            .map_err(|e| sqlx_error(&redact_url(url), &e))?;
        Ok(())
    }

    async fn drop_pg_database(&self, url: &str, what: &str) -> Result<(), HostError> {
        let (options, name) = pg_target(url)?;
        let mut admin = self.admin_connection(&options, what).await?;
        let sql = format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(&name)
        );
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(&mut admin)
            .await
            .map_err(|e| sqlx_error(&redact_url(url), &e))?;
        Ok(())
    }

    /// Orgs whose database or file matches `pattern`'s `{org}`.
    async fn orgs_matching(&self, pattern: &str) -> Result<Vec<OrgId>, DataError> {
        let cannot = |reason: String| DataError::CannotList {
            what: "orgs",
            reason,
        };
        match Backend::of_url(pattern) {
            Some(Backend::Sqlite) => {
                let (path, _) = sqlite::split_url(pattern)
                    .ok_or_else(|| cannot("the pattern is an in-memory database".into()))?;
                let file = path
                    .file_name()
                    .and_then(|f| f.to_str())
                    .filter(|f| f.contains("{org}"))
                    .ok_or_else(|| {
                        cannot("{org} must be in the file name of the SQLite pattern".into())
                    })?;
                let (prefix, suffix) = file.split_once("{org}").expect("contains {org}");
                let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
                let dir = dir.unwrap_or(std::path::Path::new("."));
                let entries = match std::fs::read_dir(dir) {
                    Ok(entries) => entries,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                    Err(e) => return Err(cannot(format!("reading {}: {e}", dir.display()))),
                };
                let mut orgs: Vec<OrgId> = entries
                    .flatten()
                    .filter(|e| e.path().is_file())
                    .filter_map(|e| {
                        e.file_name()
                            .to_str()
                            .and_then(|n| placeholder_match(n, prefix, suffix))
                    })
                    .collect();
                orgs.sort();
                Ok(orgs)
            }
            Some(Backend::Postgres) => {
                let rest = &pattern[pattern.find("://").map_or(0, |i| i + 3)..];
                let authority_end = rest.find('/').unwrap_or(rest.len());
                if rest[..authority_end].contains("{org}") {
                    return Err(cannot(
                        "{org} is in the server's address, so each org is on a server of its \
                         own that Tenantry cannot enumerate: use a `directory` resolver"
                            .into(),
                    ));
                }
                let path = &rest[authority_end.min(rest.len())..];
                let db = path.trim_start_matches('/').split('?').next().unwrap_or("");
                let Some((prefix, suffix)) = db.split_once("{org}") else {
                    return Err(cannot(
                        "the pattern has no {org} in its database name".into(),
                    ));
                };
                let probe: PgConnectOptions = pattern
                    .replace("{org}", "x")
                    .parse()
                    .map_err(|e: sqlx::Error| cannot(redact_text(&e.to_string())))?;
                let mut conn = if self.config().admin_database_url.is_some() {
                    self.admin_connection(&probe, "listing orgs")
                        .await
                        .map_err(|e| cannot(e.to_string()))?
                } else {
                    probe
                        .clone()
                        .database("postgres")
                        .connect()
                        .await
                        .map_err(|e| sqlx_error(&redact_url(pattern), &e))?
                };
                let names: Vec<String> = sqlx::query_scalar(
                    "SELECT datname FROM pg_catalog.pg_database WHERE NOT datistemplate ORDER BY 1",
                )
                .fetch_all(&mut conn)
                .await
                .map_err(|e| sqlx_error(&redact_url(pattern), &e))?;
                let _ = sqlx::Connection::close(conn).await;
                let mut orgs: Vec<OrgId> = names
                    .iter()
                    .filter_map(|n| placeholder_match(n, prefix, suffix))
                    .collect();
                orgs.sort();
                Ok(orgs)
            }
            None => Err(check_database_url(pattern).expect_err("unsupported scheme")),
        }
    }
}

fn org_address(org: &OrgId, tenant: Option<TenantId>) -> ScopeAddress {
    ScopeAddress {
        app: None,
        org: Some(org.clone()),
        tenant,
    }
}

fn org_address_opt(org: Option<&OrgId>) -> ScopeAddress {
    ScopeAddress {
        app: None,
        org: org.cloned(),
        tenant: None,
    }
}

fn tenant_what(address: &ScopeAddress) -> String {
    let tenant = address.tenant.as_ref().expect("tenant address");
    match &address.org {
        Some(org) => format!("tenant `{tenant}` of org `{org}`"),
        None => format!("tenant `{tenant}`"),
    }
}

fn isolation_name(kind: &IsolationKind) -> &'static str {
    match kind {
        IsolationKind::Shared | IsolationKind::Row => "row",
        IsolationKind::Schema(_) => "schema",
        IsolationKind::Database => "database",
    }
}

/// The database name of a PostgreSQL URL, and its options.
fn pg_target(url: &str) -> Result<(PgConnectOptions, String), DataError> {
    let invalid = |reason: String| DataError::InvalidDatabaseUrl {
        url: redact_url(url),
        reason,
    };
    let options: PgConnectOptions = url
        .parse()
        .map_err(|e: sqlx::Error| invalid(redact_text(&e.to_string())))?;
    let name = options
        .get_database()
        .map(str::to_owned)
        .ok_or_else(|| invalid("it names no database: add /<database> to the URL".into()))?;
    Ok((options, name))
}

/// The org whose substituted name is `name`, if `name` is `prefix` + db-name + `suffix`.
fn placeholder_match(name: &str, prefix: &str, suffix: &str) -> Option<OrgId> {
    let middle = name.strip_prefix(prefix)?.strip_suffix(suffix)?;
    if middle.is_empty()
        || !middle
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return None;
    }
    OrgId::new(&middle.replace('_', "-")).ok()
}

/// The org ids of a `directory` resolver's map (JSON when it starts with `{`, else TOML).
fn directory_orgs(directory: &str) -> Result<Vec<OrgId>, DataError> {
    let cannot = |reason: String| DataError::CannotList {
        what: "orgs",
        reason: format!("the directory resolver's `directory` does not parse: {reason}"),
    };
    let keys: Vec<String> = if directory.trim_start().starts_with('{') {
        serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(directory)
            .map_err(|e| cannot(e.to_string()))?
            .keys()
            .cloned()
            .collect()
    } else {
        toml::from_str::<toml::Table>(directory)
            .map_err(|e| cannot(e.to_string()))?
            .keys()
            .cloned()
            .collect()
    };
    let mut orgs: Vec<OrgId> = keys.iter().filter_map(|k| OrgId::new(k).ok()).collect();
    orgs.sort();
    Ok(orgs)
}

fn remove_file_set(path: &std::path::Path) -> Result<(), DataError> {
    sqlite::remove_database_files(path)
        .map(drop)
        .map_err(|e| DataError::Io {
            what: format!("deleting {}", path.display()),
            reason: e.to_string(),
        })
}

async fn registry_present(conn: &mut PgConnection, database: &str) -> Result<bool, DataError> {
    sqlx::query_scalar("SELECT to_regclass('public.tenantry_tenants') IS NOT NULL")
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| sqlx_error(database, &e))
}

async fn ensure_registry(conn: &mut PgConnection, database: &str) -> Result<(), DataError> {
    if registry_present(conn, database).await? {
        return Ok(());
    }
    sqlx::raw_sql(REGISTRY_SQL)
        .execute(&mut *conn)
        .await
        .map_err(|e| sqlx_error(database, &e))?;
    tracing::info!(database, table = REGISTRY, "created the tenant registry");
    Ok(())
}

/// Delete a tenant's rows from every table with a `tenant_id` column, through the tenant's
/// own scope: row-level security bounds the delete even if the `WHERE` were wrong.
async fn delete_tenant_rows(scoped: &Scoped) -> Result<(), HostError> {
    let tenant = scoped.tenant().expect("tenant scope").as_str().to_owned();
    let mut conn = scoped.acquire::<sqlx::Postgres>().await?;
    let database = scoped.database().to_owned();
    let fail = |e: sqlx::Error| HostError::from(sqlx_error(&database, &e));
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT format('%I.%I', n.nspname, c.relname) \
         FROM pg_catalog.pg_class c \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid \
         WHERE a.attname = 'tenant_id' AND a.attnum > 0 AND NOT a.attisdropped \
           AND c.relkind IN ('r', 'p') \
           AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
           AND n.nspname NOT LIKE 'pg\\_%' \
           AND has_table_privilege(c.oid, 'DELETE') \
         ORDER BY 1",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(fail)?;
    let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(fail)?;
    for table in tables {
        sqlx::query(AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE tenant_id = $1"
        )))
        .bind(&tenant)
        .execute(&mut *tx)
        .await
        .map_err(fail)?;
    }
    tx.commit().await.map_err(fail)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_match_db_names_back_to_ids() {
        assert_eq!(
            placeholder_match("acme_corp_db", "", "_db").map(|o| o.to_string()),
            Some("acme-corp".into())
        );
        assert_eq!(placeholder_match("x_db", "t_", "_db"), None);
        assert_eq!(placeholder_match("t__db", "t_", "_db"), None);
        assert_eq!(
            placeholder_match("acme.db", "", ".db").map(|o| o.to_string()),
            Some("acme".into())
        );
    }

    #[test]
    fn directory_lists_keys() {
        let orgs =
            directory_orgs(r#"{"acme": "sqlite://a.db", "globex": {"url": "sqlite://g.db"}}"#)
                .unwrap();
        assert_eq!(orgs.len(), 2);
        let orgs = directory_orgs("acme = \"sqlite://a.db\"\n").unwrap();
        assert_eq!(orgs[0].as_str(), "acme");
    }
}
