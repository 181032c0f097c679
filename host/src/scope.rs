//! Scoped handles: what the application touches.
//!
//! ```text
//! host.get()                       one database, no tenant       (no orgs)
//! host.tenant(id)                  a tenant of that database      (TENANTRY_TENANTS=true)
//! host.org(id)?.get()              an org's database              (TENANTRY_ORGS=true)
//! host.org(id)?.tenant(id)         a tenant of an org             (both)
//! host.app(name)?…                 the same, on behalf of one app (its migrations, its policy answers)
//! ```
//!
//! Each returns a [`Scoped`]: a cheap-clone handle that has already resolved the org
//! (through [`Host::resolve_org`]), asked the tenant policy how the tenant is isolated, and
//! found the pool of the target database. [`Scoped::acquire`] checks out a
//! [`TenantConnection`]: a sqlx connection whose session can only see the scope's data —
//! PostgreSQL enforces it with row-level security and `search_path`, SQLite with a file per
//! tenant (see [`crate::isolation`]). The connection goes back to the pool when dropped,
//! whether the holder finished, returned early, was cancelled mid-query or panicked.
//!
//! Resolution happens when the handle is created, so a handle pins the org's target and
//! the tenant's scope as they were then; handles are meant to be created per request. That
//! is cheap: a handle for the application's own use is kept ready and handed out again
//! (a clone) for as long as everything it was built from still stands — the org's cached
//! resolution, the policy's answer, the pool — so a hot tenant's `host.org(o).tenant(t)`
//! is a cache lookup and a few checks, not a new plan (see `Ready` for the exact rules).

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::host::{Host, HostError};
use crate::id::{OrgId, TenantId};
use crate::isolation::{IsolationError, IsolationKind, SessionScope, postgres, sqlite};
use crate::migrate::App;
use crate::plugin::{Isolation, PluginKind, ScopeDenial, ScopeRequest, TenantScope};
use crate::pool::{
    Backend, Checked, CheckoutError, ConnPool, Driver, PoolEntry, PoolKey, PoolRegistry,
};
use crate::redact::{redact_text, redact_url};
use crate::relocate::Placement;
use crate::resolve::Pinned;

/// What went wrong with scoped data access, pools, isolation or management; each message
/// says what to do.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// `tenant()` while tenant mode is off.
    #[error("Tenant mode not enabled. Enable: TENANTRY_TENANTS=true, or use {fix}")]
    TenantsDisabled {
        /// The call to use instead.
        fix: &'static str,
    },
    /// `host.tenant()` while organizations are on.
    #[error(
        "Cannot use host.tenant() when organizations are enabled: use host.org(id).tenant(id), \
         or set TENANTRY_ORGS=false"
    )]
    TenantNeedsOrg,
    /// `org()` while organization mode is off.
    #[error(
        "Organization mode not enabled. Enable: TENANTRY_ORGS=true (with {{org}} in \
         DATABASE_URL, or an org-resolver plugin), or use {fix}"
    )]
    OrgsDisabled {
        /// The call to use instead.
        fix: &'static str,
    },
    /// `host.get()` while organizations are on: there is no single database.
    #[error(
        "Organizations are enabled, so there is no single database: use host.org(id).get() \
         or host.org(id).tenant(id), or set TENANTRY_ORGS=false"
    )]
    OrgRequired,
    /// No `DATABASE_URL`.
    #[error(
        "Database URL required. Set DATABASE_URL, e.g. sqlite://data/app.db or \
         postgresql://user:password@localhost:5432/app (or call host.configure(url))"
    )]
    NoDatabaseUrl,
    /// A database URL that cannot be used.
    #[error("database URL {url} is not usable: {reason}")]
    InvalidDatabaseUrl {
        /// The URL, password redacted.
        url: String,
        /// Why, and what to write instead.
        reason: String,
    },
    /// The database server could not be reached.
    #[error(
        "cannot connect to the database at {database}: {reason}. Check that the server is \
         running and reachable, and that DATABASE_URL (or the org resolver) points at it"
    )]
    Unreachable {
        /// The database (host, port, name; password redacted).
        database: String,
        /// The driver's reason (secrets redacted).
        reason: String,
    },
    /// The server is up but the database does not exist.
    #[error(
        "database {database} does not exist: create it with host.create_org(id) or \
         host.create_tenant(id, org), or check DATABASE_URL and the org resolver"
    )]
    NoSuchDatabase {
        /// The database, password redacted.
        database: String,
    },
    /// A database error.
    #[error("database error on {database}: {reason}")]
    Database {
        /// The database, password redacted.
        database: String,
        /// The database's answer (secrets redacted).
        reason: String,
    },
    /// The tenant policy refused the tenant.
    #[error("tenant `{tenant}`{org} was refused by the tenant policy ({plugin}): {denial}")]
    TenantDenied {
        /// The tenant.
        tenant: TenantId,
        /// ` in org `…`` or empty.
        org: String,
        /// The policy plugin.
        plugin: String,
        /// The policy's answer.
        denial: ScopeDenial,
    },
    /// No connection became free in time.
    #[error(
        "no connection to {database} became free within {waited_ms} ms: all {max} allowed by \
         {limit} are in use. Drop connections sooner, or raise {limit}"
    )]
    Exhausted {
        /// The database, password redacted.
        database: String,
        /// The limit that was hit.
        limit: &'static str,
        /// Its value.
        max: u32,
        /// How long the checkout waited.
        waited_ms: u64,
    },
    /// The pool behind a handle was closed.
    #[error(
        "the pool for {database} was closed (its org or tenant was deleted, or the host's \
         caches were cleared): get a new handle from the host"
    )]
    PoolClosed {
        /// The database, password redacted.
        database: String,
    },
    /// A connection of the wrong backend was requested.
    #[error(
        "{database} is a {actual} database, but a {requested} connection was requested: use \
         acquire::<sqlx::{type_name}>()"
    )]
    WrongBackend {
        /// The database, password redacted.
        database: String,
        /// Its backend.
        actual: Backend,
        /// What was asked for.
        requested: Backend,
        /// The sqlx type to ask for.
        type_name: &'static str,
    },
    /// A destructive call without confirmation.
    #[error(
        "refusing to delete {what} and all its data without confirmation: call {call} with confirm = true"
    )]
    ConfirmationRequired {
        /// What would have been deleted.
        what: String,
        /// The call to repeat.
        call: &'static str,
    },
    /// An operation that needs the administrative connection.
    #[error(
        "{what} needs an administrative connection: set TENANTRY_ADMIN_DATABASE_URL \
         (admin-database-url) to a role allowed to create and drop databases on that server"
    )]
    AdminUrlRequired {
        /// What was attempted.
        what: String,
    },
    /// Creating something that exists.
    #[error("{what} already exists")]
    AlreadyExists {
        /// What.
        what: String,
    },
    /// Deleting something that does not exist.
    #[error("{what} does not exist")]
    NotFound {
        /// What.
        what: String,
    },
    /// Orgs or tenants cannot be enumerated with this configuration.
    #[error("cannot list {what}: {reason}")]
    CannotList {
        /// `orgs` or `tenants`.
        what: &'static str,
        /// Why, and what would make it possible.
        reason: String,
    },
    /// An app name that is not a valid id.
    #[error(
        "app name {name:?} is invalid: use 1-63 characters of a-z, 0-9 and '-' (the name of \
         its directory under apps/)"
    )]
    BadAppName {
        /// The name given (truncated).
        name: String,
    },
    /// An app's migrations failed.
    #[error("migrations of app `{app}` failed on {database}: {reason}")]
    Migrate {
        /// The app.
        app: String,
        /// The database (and schema), password redacted.
        database: String,
        /// The migrator's answer.
        reason: String,
    },
    /// A file-system operation failed.
    #[error("{what}: {reason}")]
    Io {
        /// What was attempted, on which path.
        what: String,
        /// The OS error.
        reason: String,
    },
    /// Isolation was refused or could not be verified.
    #[error(transparent)]
    Isolation(#[from] IsolationError),
    /// The tenant is not served by this org: it was moved to (or is arriving from) `to`.
    /// Fail closed: see [`crate::relocate`].
    #[error(
        "tenant `{tenant}` is not served by org `{org}`: it lives in org `{to}` (moved, or a \
         move is under way): use host.org(\"{to}\").tenant(\"{tenant}\")"
    )]
    TenantMoved {
        /// The tenant.
        tenant: TenantId,
        /// The org that was asked.
        org: OrgId,
        /// The org that holds (or, during a move, held) the tenant.
        to: OrgId,
    },
}

impl From<DataError> for HostError {
    fn from(e: DataError) -> Self {
        HostError::Data(e)
    }
}

impl From<IsolationError> for HostError {
    fn from(e: IsolationError) -> Self {
        HostError::Data(DataError::Isolation(e))
    }
}

mod sealed {
    /// Implemented for exactly the two backends; the bound carries the crate's pool hooks.
    #[allow(private_bounds)]
    pub trait Sealed: sqlx::Database<Connection: crate::pool::Driver> {}
    impl Sealed for sqlx::Postgres {}
    impl Sealed for sqlx::Sqlite {}
}

/// A sqlx database Tenantry can scope: [`sqlx::Postgres`] or [`sqlx::Sqlite`]. Sealed.
pub trait SupportedDatabase: sealed::Sealed {}
impl SupportedDatabase for sqlx::Postgres {}
impl SupportedDatabase for sqlx::Sqlite {}

/// The app, org and tenant a handle is for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(crate) struct ScopeAddress {
    pub(crate) app: Option<Arc<str>>,
    pub(crate) org: Option<OrgId>,
    pub(crate) tenant: Option<TenantId>,
}

/// Why a scope is opened: the application's own use honours the policy's read-only flag and
/// settings; management and migrations need to write and run DDL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    Use,
    Manage,
}

/// Everything decided about a scope before any connection exists.
#[derive(Debug, Clone)]
pub(crate) struct ScopePlan {
    pub(crate) address: ScopeAddress,
    /// The org's (or single) database.
    pub(crate) org_url: Arc<str>,
    /// The database this scope's connections go to.
    pub(crate) target_url: Arc<str>,
    pub(crate) backend: Backend,
    pub(crate) isolation: IsolationKind,
    pub(crate) session: Arc<SessionScope>,
    pub(crate) read_only: bool,
    pub(crate) max_connections: Option<u32>,
    /// What the plan was derived from.
    pub(crate) basis: PlanBasis,
}

/// The answers a plan was derived from, kept so that a cached handle can tell cheaply
/// whether they still stand (see [`Ready`]).
#[derive(Debug, Clone, Default)]
pub(crate) struct PlanBasis {
    /// The org's resolution (org addresses only).
    org: Option<Pinned>,
    /// The tenant policy's generation when it was asked, and when its answer expires.
    policy: Option<(u64, Instant)>,
    /// The placement gate's answer, when it was asked: whether the tenant is being moved
    /// away (see [`crate::relocate`]).
    moving: Option<bool>,
}

/// Per-host state of the data layer: pools, cached policy answers, tenant limits, apps,
/// and ready handles.
pub(crate) struct DataState {
    pub(crate) registry: PoolRegistry,
    scopes: moka::future::Cache<ScopeCacheKey, (Arc<TenantScope>, Instant)>,
    limiters: moka::future::Cache<(Arc<str>, TenantId, u32), Arc<Semaphore>>,
    apps: Mutex<Option<Arc<Vec<App>>>>,
    /// Where tenants live, from the org registries (see [`crate::relocate`]).
    pub(crate) placements: crate::relocate::PlacementCache,
    /// Handles built for the application's own use, so that a hot scope's
    /// `host.org(o).tenant(t)` is a lookup and a few checks instead of resolving the org,
    /// asking the policy, planning the session and finding the pool again (see [`Ready`]).
    ready: moka::future::Cache<ScopeAddress, Arc<Ready>>,
    /// Bumped whenever cached policy answers, placements, limits or pools are forgotten:
    /// a ready handle built under an older value is not used.
    epoch: AtomicU64,
    /// How long a ready handle is used before it is built again (see [`Ready`]).
    ready_for: Duration,
}

/// A handle ready to be handed out again, with what it was built from.
///
/// It is used only while everything it was derived from still stands, each re-checked on
/// every use: the org's resolution is the very entry the resolver's cache would answer
/// with now, and fresh (so clearing, refreshing, expiry, eviction and a resolver swap all
/// retire it); the tenant policy is the same generation and its answer has not expired;
/// the placement cache still holds the answer the tenant's placement gate gave (a move
/// step on this host forgets it, other hosts' steps are seen when it expires); no policy
/// answer, placement, limit or pool was forgotten since (`epoch`: `delete_tenant`,
/// `delete_org`, `clear_cache`); and its pool is still open, not closed or evicted. It is
/// also rebuilt at least every `ready_for` (≤ 1 s), which keeps the pool registry and the
/// tenant limiters seeing the scope as in use and bounds how long anything the checks
/// cannot see (a policy answer evicted for room) outlives its source.
struct Ready {
    core: Arc<ScopedCore>,
    epoch: u64,
    until: Instant,
}

/// Longest a ready handle is used before it is built again.
const READY_FOR: Duration = Duration::from_secs(1);

type ScopeCacheKey = (
    u64,
    Option<OrgId>,
    TenantId,
    Option<Arc<str>>,
    Vec<(String, String)>,
);

/// Longest a policy answer is cached when the policy names no ttl.
const DEFAULT_SCOPE_TTL: Duration = Duration::from_secs(60);

impl std::fmt::Debug for DataState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataState")
            .field("registry", &self.registry)
            .field("scopes", &self.scopes.entry_count())
            .finish_non_exhaustive()
    }
}

impl DataState {
    pub(crate) fn new(config: &crate::HostConfig) -> Self {
        // Rebuilt well within the pool registry's idle timeout, so that a pool used only
        // through ready handles is never evicted as idle.
        let ready_for = READY_FOR
            .min(Duration::from_millis(config.pools.pool_idle_timeout_ms / 2))
            .max(Duration::from_millis(1));
        Self {
            registry: PoolRegistry::new(&config.pools),
            scopes: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(300))
                .build(),
            limiters: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_idle(Duration::from_secs(600))
                .build(),
            apps: Mutex::new(None),
            placements: crate::relocate::placement_cache(),
            ready: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(ready_for)
                .build(),
            epoch: AtomicU64::new(0),
            ready_for,
        }
    }

    /// Forget policy answers, tenant limits, discovered apps and ready handles; close
    /// every pool.
    pub(crate) async fn clear(&self) {
        self.forget_ready();
        self.scopes.invalidate_all();
        self.placements.invalidate_all();
        self.limiters.invalidate_all();
        *self.apps.lock().expect("apps lock") = None;
        self.registry.close_all().await;
        // Again: a handle built while the pools were closing may hold one of them.
        self.forget_ready();
    }

    /// Forget policy answers (and the ready handles built from them).
    pub(crate) fn forget_scopes(&self) {
        self.scopes.invalidate_all();
        self.placements.invalidate_all();
        // After the answers are gone: a handle built from an old answer has an old epoch.
        self.forget_ready();
    }

    fn forget_ready(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.ready.invalidate_all();
    }
}

/// A handle on one org's database, from [`Host::org`].
#[derive(Debug, Clone)]
pub struct OrgScope {
    host: Host,
    app: Option<Arc<str>>,
    org: OrgId,
}

impl OrgScope {
    /// The org.
    pub fn id(&self) -> &OrgId {
        &self.org
    }

    /// The org's whole database: shared tables, no tenant's rows.
    pub async fn get(&self) -> Result<Scoped, HostError> {
        self.host
            .open_scope(
                ScopeAddress {
                    app: self.app.clone(),
                    org: Some(self.org.clone()),
                    tenant: None,
                },
                Purpose::Use,
            )
            .await
    }

    /// A tenant of this org.
    pub async fn tenant(&self, id: impl AsRef<str>) -> Result<Scoped, HostError> {
        if !self.host.config().tenants {
            return Err(DataError::TenantsDisabled {
                fix: "host.org(id).get()",
            }
            .into());
        }
        let tenant = TenantId::new(id.as_ref())?;
        self.host
            .open_scope(
                ScopeAddress {
                    app: self.app.clone(),
                    org: Some(self.org.clone()),
                    tenant: Some(tenant),
                },
                Purpose::Use,
            )
            .await
    }
}

/// A handle on behalf of one app, from [`Host::app`]: the same calls as on the host, with
/// the app named in every tenant-policy request.
#[derive(Debug, Clone)]
pub struct AppScope {
    host: Host,
    app: Arc<str>,
}

impl AppScope {
    /// The app's name.
    pub fn name(&self) -> &str {
        &self.app
    }

    /// Like [`Host::get`].
    pub async fn get(&self) -> Result<Scoped, HostError> {
        self.host.mode_get()?;
        self.host
            .open_scope(
                ScopeAddress {
                    app: Some(self.app.clone()),
                    ..ScopeAddress::default()
                },
                Purpose::Use,
            )
            .await
    }

    /// Like [`Host::tenant`].
    pub async fn tenant(&self, id: impl AsRef<str>) -> Result<Scoped, HostError> {
        self.host.mode_tenant()?;
        let tenant = TenantId::new(id.as_ref())?;
        self.host
            .open_scope(
                ScopeAddress {
                    app: Some(self.app.clone()),
                    org: None,
                    tenant: Some(tenant),
                },
                Purpose::Use,
            )
            .await
    }

    /// Like [`Host::org`].
    pub fn org(&self, id: impl AsRef<str>) -> Result<OrgScope, HostError> {
        let mut org = self.host.org(id)?;
        org.app = Some(self.app.clone());
        Ok(org)
    }
}

impl Host {
    /// The single database (`DATABASE_URL`), outside any tenant.
    ///
    /// Fails with [`DataError::OrgRequired`] when organizations are enabled. With tenants
    /// enabled it sees only shared data: on PostgreSQL, rows of tables under row-level
    /// security are invisible without a tenant; on SQLite, tenants live in files of their own.
    pub async fn get(&self) -> Result<Scoped, HostError> {
        self.mode_get()?;
        self.open_scope(ScopeAddress::default(), Purpose::Use).await
    }

    /// Tenant `id` of the single database.
    ///
    /// Fails with [`DataError::TenantsDisabled`] unless `TENANTRY_TENANTS=true`, and with
    /// [`DataError::TenantNeedsOrg`] when organizations are enabled.
    pub async fn tenant(&self, id: impl AsRef<str>) -> Result<Scoped, HostError> {
        self.mode_tenant()?;
        let tenant = TenantId::new(id.as_ref())?;
        self.open_scope(
            ScopeAddress {
                tenant: Some(tenant),
                ..ScopeAddress::default()
            },
            Purpose::Use,
        )
        .await
    }

    /// Org `id`; continue with [`OrgScope::get`] or [`OrgScope::tenant`].
    ///
    /// Fails with [`DataError::OrgsDisabled`] unless `TENANTRY_ORGS=true`. Nothing is
    /// resolved until `get`/`tenant` is awaited.
    pub fn org(&self, id: impl AsRef<str>) -> Result<OrgScope, HostError> {
        if !self.config().orgs {
            return Err(DataError::OrgsDisabled { fix: "host.get()" }.into());
        }
        Ok(OrgScope {
            host: self.clone(),
            app: None,
            org: OrgId::new(id.as_ref())?,
        })
    }

    /// Act on behalf of app `name` (a directory `apps/<name>/` with its migrations).
    pub fn app(&self, name: impl AsRef<str>) -> Result<AppScope, HostError> {
        Ok(AppScope {
            host: self.clone(),
            app: app_name(name.as_ref())?,
        })
    }

    fn mode_get(&self) -> Result<(), DataError> {
        if self.config().orgs {
            return Err(DataError::OrgRequired);
        }
        Ok(())
    }

    fn mode_tenant(&self) -> Result<(), DataError> {
        if self.config().orgs {
            return Err(DataError::TenantNeedsOrg);
        }
        if !self.config().tenants {
            return Err(DataError::TenantsDisabled { fix: "host.get()" });
        }
        Ok(())
    }

    /// Resolve, plan and open a scope; for the application's own use, hand out the ready
    /// handle of an earlier call while everything it was built from still stands.
    pub(crate) async fn open_scope(
        &self,
        address: ScopeAddress,
        purpose: Purpose,
    ) -> Result<Scoped, HostError> {
        if purpose != Purpose::Use {
            let plan = self.plan_scope(address, purpose).await?;
            return self.open_plan(plan).await;
        }
        let data = self.data();
        if let Some(ready) = data.ready.get(&address).await
            && self.still_stands(&ready).await
        {
            return Ok(Scoped {
                host: self.clone(),
                core: ready.core.clone(),
            });
        }
        // Read before planning: anything forgotten from now on makes this handle stale.
        let epoch = data.epoch.load(Ordering::Acquire);
        let until = Instant::now() + data.ready_for;
        let plan = self.plan_scope(address.clone(), purpose).await?;
        let scoped = self.open_plan(plan).await?;
        let until = match scoped.core.plan.basis.policy {
            Some((_, expires)) => until.min(expires),
            None => until,
        };
        let ready = Ready {
            core: scoped.core.clone(),
            epoch,
            until,
        };
        data.ready.insert(address, Arc::new(ready)).await;
        Ok(scoped)
    }

    /// Whether a ready handle may be handed out: see [`Ready`] for what is checked.
    async fn still_stands(&self, ready: &Ready) -> bool {
        let data = self.data();
        let plan = &ready.core.plan;
        let basis = &plan.basis;
        if ready.epoch != data.epoch.load(Ordering::Acquire)
            || Instant::now() >= ready.until
            || !ready.core.pool.is_open()
        {
            return false;
        }
        if let Some((generation, _)) = basis.policy
            && self
                .slot(PluginKind::TenantPolicy)
                .is_none_or(|slot| slot.generation() != generation)
        {
            return false;
        }
        // The placement cache still holds the answer the gate gave (not expired, not
        // forgotten by a move step on this host).
        if let Some(moving) = basis.moving {
            let (Some(org), Some(tenant)) = (&plan.address.org, &plan.address.tenant) else {
                return false;
            };
            let expected = if moving {
                Placement::Moving
            } else {
                Placement::Here
            };
            let key = (org.clone(), tenant.clone());
            if data.placements.get(&key).await != Some(expected) {
                return false;
            }
        }
        // Last: it counts as the resolver cache hit it stands for.
        match (&plan.address.org, &basis.org) {
            (Some(org), Some(pinned)) => self.org_still_current(org, pinned).await,
            (Some(_), None) => false,
            (None, _) => true,
        }
    }

    /// The database of the org (or the single database), validated.
    pub(crate) async fn org_url(
        &self,
        org: Option<&OrgId>,
    ) -> Result<(Arc<str>, Vec<(String, String)>), HostError> {
        let (url, labels, _) = self.org_route(org).await?;
        Ok((url, labels))
    }

    /// Like [`org_url`](Self::org_url), with the resolution's pin for org addresses.
    async fn org_route(
        &self,
        org: Option<&OrgId>,
    ) -> Result<(Arc<str>, Vec<(String, String)>, Option<Pinned>), HostError> {
        match org {
            Some(org) => {
                let (target, pinned) = self.resolve_org_pinned(org).await?;
                check_database_url(&target.url)?;
                Ok((
                    target.url.as_str().into(),
                    target.labels.clone(),
                    Some(pinned),
                ))
            }
            None => {
                let url = self
                    .config()
                    .database_url
                    .as_deref()
                    .ok_or(DataError::NoDatabaseUrl)?;
                if url.contains("{org}") {
                    return Err(DataError::InvalidDatabaseUrl {
                        url: redact_url(url),
                        reason: "it contains {org} but organizations are not enabled: set \
                                 TENANTRY_ORGS=true and use host.org(id), or remove {org}"
                            .into(),
                    }
                    .into());
                }
                check_database_url(url)?;
                Ok((url.into(), Vec::new(), None))
            }
        }
    }

    /// Decide where a scope's connections go and what their sessions carry.
    pub(crate) async fn plan_scope(
        &self,
        address: ScopeAddress,
        purpose: Purpose,
    ) -> Result<ScopePlan, HostError> {
        let (org_url, labels, pinned) = self.org_route(address.org.as_ref()).await?;
        let mut basis = PlanBasis {
            org: pinned,
            policy: None,
            moving: None,
        };
        let org_backend = Backend::of_url(&org_url).expect("checked by org_url");
        let Some(tenant) = address.tenant.clone() else {
            if org_url.contains("{tenant}") {
                return Err(DataError::InvalidDatabaseUrl {
                    url: redact_url(&org_url),
                    reason: "it contains {tenant}, so every tenant has a database of its own \
                             and there is no shared one: use a tenant handle"
                        .into(),
                }
                .into());
            }
            return Ok(ScopePlan {
                address,
                target_url: org_url.clone(),
                org_url,
                backend: org_backend,
                isolation: IsolationKind::Shared,
                session: Arc::new(SessionScope::shared()),
                read_only: false,
                max_connections: None,
                basis,
            });
        };
        let (scope, policy) = self
            .tenant_scope(&address, &tenant, &labels, &org_url)
            .await?;
        basis.policy = policy;
        let use_ = purpose == Purpose::Use;
        let (target_url, isolation, schema): (Arc<str>, _, _) = match &scope.isolation {
            Isolation::Row => match org_backend {
                Backend::Postgres => (org_url.clone(), IsolationKind::Row, None),
                Backend::Sqlite => (
                    sqlite::tenant_url(&org_url, &tenant)
                        .map_err(DataError::from)?
                        .into(),
                    IsolationKind::Row,
                    None,
                ),
            },
            Isolation::Schema(name) => match org_backend {
                Backend::Postgres => (
                    org_url.clone(),
                    IsolationKind::Schema(name.clone()),
                    Some(name.clone()),
                ),
                Backend::Sqlite => (
                    sqlite::tenant_url(&org_url, &tenant)
                        .map_err(DataError::from)?
                        .into(),
                    IsolationKind::Schema(name.clone()),
                    None,
                ),
            },
            Isolation::Database(url) => {
                check_database_url(url)?;
                (url.as_str().into(), IsolationKind::Database, None)
            }
        };
        let backend = Backend::of_url(&target_url).expect("checked");
        // A tenant being moved is served read-only; a moved one is refused (fail closed).
        let moving = match &address.org {
            Some(org) if use_ && backend == Backend::Postgres && target_url == org_url => {
                let moving = self.placement_gate(org, &tenant).await?;
                basis.moving = Some(moving);
                moving
            }
            _ => false,
        };
        let read_only = use_ && (scope.read_only || moving);
        let session = match backend {
            Backend::Postgres => SessionScope::new(
                Some(tenant),
                schema,
                read_only,
                if use_ {
                    scope.settings.clone()
                } else {
                    Vec::new()
                },
            )
            .map_err(DataError::from)?,
            // The file is the scope; read-only is a property of the pool.
            Backend::Sqlite => SessionScope::shared(),
        };
        Ok(ScopePlan {
            address,
            org_url,
            target_url,
            backend,
            isolation,
            session: Arc::new(session),
            read_only,
            max_connections: if use_ { scope.max_connections } else { None },
            basis,
        })
    }

    /// The tenant policy's answer for `tenant` (cached), or the default without a policy:
    /// row isolation, or a database of its own when the URL has a `{tenant}` placeholder.
    /// With a policy, also the policy's generation and when the answer expires.
    async fn tenant_scope(
        &self,
        address: &ScopeAddress,
        tenant: &TenantId,
        labels: &[(String, String)],
        org_url: &str,
    ) -> Result<(Arc<TenantScope>, Option<(u64, Instant)>), HostError> {
        let Some(slot) = self.slot(PluginKind::TenantPolicy) else {
            let isolation = if org_url.contains("{tenant}") {
                Isolation::Database(org_url.replace("{tenant}", &tenant.db_name()))
            } else {
                Isolation::Row
            };
            let scope = TenantScope {
                isolation,
                settings: Vec::new(),
                read_only: false,
                max_connections: None,
                ttl: None,
            };
            return Ok((Arc::new(scope), None));
        };
        let data = self.data();
        let generation = slot.generation();
        let key: ScopeCacheKey = (
            generation,
            address.org.clone(),
            tenant.clone(),
            address.app.clone(),
            labels.to_vec(),
        );
        if let Some((scope, expires)) = data.scopes.get(&key).await
            && Instant::now() < expires
        {
            return Ok((scope, Some((generation, expires))));
        }
        let plugin = slot.current();
        let request = ScopeRequest {
            org: address
                .org
                .as_ref()
                .map(|o| o.as_str().to_owned())
                .unwrap_or_default(),
            tenant: tenant.as_str().to_owned(),
            app: address.app.as_deref().map(str::to_owned),
            principal: None,
            org_labels: labels.to_vec(),
        };
        let scope = match plugin.scope(&request).await? {
            Ok(scope) => Arc::new(scope),
            Err(denial) => {
                return Err(DataError::TenantDenied {
                    tenant: tenant.clone(),
                    org: address
                        .org
                        .as_ref()
                        .map(|o| format!(" in org `{o}`"))
                        .unwrap_or_default(),
                    plugin: plugin.name().to_owned(),
                    denial,
                }
                .into());
            }
        };
        let ttl = scope
            .ttl
            .unwrap_or(DEFAULT_SCOPE_TTL)
            .min(DEFAULT_SCOPE_TTL);
        let expires = Instant::now() + ttl;
        data.scopes.insert(key, (scope.clone(), expires)).await;
        Ok((scope, Some((generation, expires))))
    }

    /// Find or open the pool of a plan and wrap it in a handle.
    pub(crate) async fn open_plan(&self, plan: ScopePlan) -> Result<Scoped, HostError> {
        // A SQLite org exists when its file does: its first tenant creates (and migrates) it.
        if plan.address.org.is_some()
            && plan.target_url != plan.org_url
            && sqlite::split_url(&plan.org_url).is_some_and(|(path, _)| !path.exists())
        {
            self.pool_for(&plan.org_url, Backend::Sqlite, false).await?;
        }
        let pool = self
            .pool_for(&plan.target_url, plan.backend, plan.read_only)
            .await?;
        let limiter = match (&plan.max_connections, &plan.address.tenant) {
            (Some(max), Some(tenant)) => {
                let key = (plan.target_url.clone(), tenant.clone(), *max);
                let max = (*max).max(1) as usize;
                Some(
                    self.data()
                        .limiters
                        .get_with(key, async move { Arc::new(Semaphore::new(max)) })
                        .await,
                )
            }
            _ => None,
        };
        Ok(Scoped {
            host: self.clone(),
            core: Arc::new(ScopedCore {
                database: pool.label().to_owned(),
                pool,
                limiter,
                plan,
            }),
        })
    }

    /// The registered pool for a database, opened (and checked) on first use.
    pub(crate) async fn pool_for(
        &self,
        url: &Arc<str>,
        backend: Backend,
        read_only: bool,
    ) -> Result<PoolEntry, HostError> {
        let key = PoolKey {
            url: url.clone(),
            read_only: read_only && backend == Backend::Sqlite,
        };
        let open = self.open_pool(key.clone(), backend);
        self.data()
            .registry
            .get_or_open(key, open)
            .await
            .map_err(|e| HostError::Data((*e).clone()))
    }

    async fn open_pool(&self, key: PoolKey, backend: Backend) -> Result<PoolEntry, DataError> {
        let label = redact_url(&key.url);
        let registry = &self.data().registry;
        let max = registry.max_per_pool();
        match backend {
            Backend::Postgres => {
                let options: sqlx::postgres::PgConnectOptions =
                    key.url
                        .parse()
                        .map_err(|e: sqlx::Error| DataError::InvalidDatabaseUrl {
                            url: label.clone(),
                            reason: redact_text(&e.to_string()),
                        })?;
                let pool = Arc::new(ConnPool::new(
                    label.clone(),
                    options.application_name("tenantry"),
                    max,
                    registry.cap().clone(),
                    registry.reclaimer(),
                    registry.settings(),
                ));
                let shared = Arc::new(SessionScope::shared());
                let mut conn = pool
                    .checkout(&shared)
                    .await
                    .map_err(|e| checkout_error(&label, registry, e))?;
                let isolation = &self.config().isolation;
                if !isolation.allow_privileged_role {
                    postgres::check_role(conn.raw_mut(), &label).await?;
                }
                if self.config().tenants {
                    let checked = postgres::require_protected_tables(conn.raw_mut(), &label).await;
                    match checked {
                        Err(e) if isolation.allow_unprotected_tables => {
                            tracing::warn!("{e}");
                        }
                        other => other?,
                    }
                }
                drop(conn);
                Ok(PoolEntry::Postgres(pool))
            }
            Backend::Sqlite => {
                let path = sqlite::split_url(&key.url).map(|(p, _)| p);
                let created = match &path {
                    Some(path) => {
                        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                            std::fs::create_dir_all(parent).map_err(|e| DataError::Io {
                                what: format!("creating directory {}", parent.display()),
                                reason: e.to_string(),
                            })?;
                        }
                        !path.exists()
                    }
                    None => true,
                };
                let base: sqlx::sqlite::SqliteConnectOptions =
                    key.url
                        .parse()
                        .map_err(|e: sqlx::Error| DataError::InvalidDatabaseUrl {
                            url: label.clone(),
                            reason: redact_text(&e.to_string()),
                        })?;
                let base = base.busy_timeout(Duration::from_secs(5)).foreign_keys(true);
                let writable = base
                    .clone()
                    .create_if_missing(true)
                    .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal);
                let auto = self.config().migrations.auto;
                if key.read_only && (created || auto) {
                    // A read-only pool cannot create or migrate its file: do that first.
                    let setup = Arc::new(ConnPool::new(
                        label.clone(),
                        writable.clone(),
                        1,
                        registry.cap().clone(),
                        registry.reclaimer(),
                        registry.settings(),
                    ));
                    self.migrate_pool(&setup, &label).await?;
                    setup.close();
                    setup.closed(Duration::from_secs(5)).await;
                }
                let options = if key.read_only {
                    base.read_only(true)
                } else {
                    writable
                };
                let pool = Arc::new(ConnPool::new(
                    label.clone(),
                    options,
                    max,
                    registry.cap().clone(),
                    registry.reclaimer(),
                    registry.settings(),
                ));
                if !key.read_only && auto {
                    self.migrate_pool(&pool, &label).await?;
                } else {
                    let shared = Arc::new(SessionScope::shared());
                    drop(
                        pool.checkout(&shared)
                            .await
                            .map_err(|e| checkout_error(&label, registry, e))?,
                    );
                }
                if created {
                    tracing::info!(database = %label, "created SQLite database");
                }
                Ok(PoolEntry::Sqlite(pool))
            }
        }
    }

    /// Run every app's migrations through one connection of a SQLite pool.
    async fn migrate_pool(
        &self,
        pool: &Arc<ConnPool<sqlx::SqliteConnection>>,
        label: &str,
    ) -> Result<(), DataError> {
        let registry = &self.data().registry;
        let shared = Arc::new(SessionScope::shared());
        let mut conn = pool
            .checkout(&shared)
            .await
            .map_err(|e| checkout_error(label, registry, e))?;
        for app in self.discovered_apps().await?.iter() {
            app.run_sqlite(conn.raw_mut(), label).await?;
        }
        Ok(())
    }

    /// The apps under the apps directory, discovered once (until [`Host::clear_cache`]).
    pub(crate) async fn discovered_apps(&self) -> Result<Arc<Vec<App>>, DataError> {
        if let Some(apps) = self.data().apps.lock().expect("apps lock").clone() {
            return Ok(apps);
        }
        let apps = Arc::new(crate::migrate::discover(&self.config().migrations.apps_dir).await?);
        *self.data().apps.lock().expect("apps lock") = Some(apps.clone());
        Ok(apps)
    }
}

/// Validate an app name (same rule as ids).
pub(crate) fn app_name(name: &str) -> Result<Arc<str>, DataError> {
    TenantId::new(name)
        .map(|id| Arc::from(id.as_str()))
        .map_err(|_| DataError::BadAppName {
            name: name.chars().take(64).collect(),
        })
}

/// A URL Tenantry can route to: a supported scheme, parseable by its driver.
pub(crate) fn check_database_url(url: &str) -> Result<(), DataError> {
    let invalid = |reason: String| DataError::InvalidDatabaseUrl {
        url: redact_url(url),
        reason,
    };
    let Some(backend) = Backend::of_url(url) else {
        return Err(invalid(
            "use postgresql://user:password@host:5432/database or sqlite://path/to/file.db".into(),
        ));
    };
    let probe = url.replace("{org}", "x").replace("{tenant}", "x");
    let parsed: Result<(), sqlx::Error> = match backend {
        Backend::Postgres => probe.parse::<sqlx::postgres::PgConnectOptions>().map(drop),
        Backend::Sqlite => probe
            .parse::<sqlx::sqlite::SqliteConnectOptions>()
            .map(drop),
    };
    parsed.map_err(|e| invalid(redact_text(&e.to_string())))
}

/// Turn a pool's checkout failure into a [`DataError`] naming the database.
pub(crate) fn checkout_error(
    database: &str,
    registry: &PoolRegistry,
    e: CheckoutError,
) -> DataError {
    let waited_ms = registry.settings().acquire_timeout.as_millis() as u64;
    match e {
        CheckoutError::Closed => DataError::PoolClosed {
            database: database.to_owned(),
        },
        CheckoutError::PoolBusy { max } => DataError::Exhausted {
            database: database.to_owned(),
            limit: "max-connections ([pools])",
            max,
            waited_ms,
        },
        CheckoutError::CapBusy { max } => DataError::Exhausted {
            database: database.to_owned(),
            limit: "max-open-connections (TENANTRY_MAX_CONNECTIONS)",
            max,
            waited_ms,
        },
        CheckoutError::Database(e) => sqlx_error(database, &e),
    }
}

/// Classify a driver error: unreachable, missing database, or anything else.
pub(crate) fn sqlx_error(database: &str, e: &sqlx::Error) -> DataError {
    let reason = redact_text(&e.to_string());
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut => {
            DataError::Unreachable {
                database: database.to_owned(),
                reason,
            }
        }
        // The server is there but cannot serve now: starting up or recovering after a
        // crash (57P03), shutting down (57P01/02), out of connection slots (53300), or a
        // connection exception (08xxx). Transient: a 503, not a 500.
        sqlx::Error::Database(d)
            if d.code()
                .is_some_and(|c| c.starts_with("57P") || c.starts_with("08") || c == "53300") =>
        {
            DataError::Unreachable {
                database: database.to_owned(),
                reason,
            }
        }
        sqlx::Error::Database(d) if d.code().as_deref() == Some("3D000") => {
            DataError::NoSuchDatabase {
                database: database.to_owned(),
            }
        }
        _ => DataError::Database {
            database: database.to_owned(),
            reason,
        },
    }
}

/// A handle's part that does not depend on who holds it (no `Host`: ready handles live
/// inside the host, and must not keep it alive).
struct ScopedCore {
    plan: ScopePlan,
    pool: PoolEntry,
    database: String,
    limiter: Option<Arc<Semaphore>>,
}

/// A handle on one scope's data: an org's or the single database, a tenant of it, on behalf
/// of an app. Cheap to clone; clones share the pool.
///
/// Connections from [`acquire`](Self::acquire) see only this scope's data, enforced by the
/// database (see the crate's README for what exactly is guaranteed and what is not).
#[derive(Clone)]
pub struct Scoped {
    host: Host,
    core: Arc<ScopedCore>,
}

impl std::fmt::Debug for Scoped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scoped")
            .field("app", &self.app())
            .field("org", &self.org())
            .field("tenant", &self.tenant())
            .field("isolation", &self.isolation())
            .field("database", &self.core.database)
            .finish()
    }
}

impl Scoped {
    /// The org, when organizations are enabled.
    pub fn org(&self) -> Option<&OrgId> {
        self.core.plan.address.org.as_ref()
    }

    /// The tenant, for tenant handles.
    pub fn tenant(&self) -> Option<&TenantId> {
        self.core.plan.address.tenant.as_ref()
    }

    /// The app, for handles from [`Host::app`].
    pub fn app(&self) -> Option<&str> {
        self.core.plan.address.app.as_deref()
    }

    /// How this scope's data is kept apart.
    pub fn isolation(&self) -> &IsolationKind {
        &self.core.plan.isolation
    }

    /// The backend of the target database.
    pub fn backend(&self) -> Backend {
        self.core.plan.backend
    }

    /// The target database, password redacted.
    pub fn database(&self) -> &str {
        &self.core.database
    }

    /// Whether the tenant policy made this scope read-only.
    pub fn read_only(&self) -> bool {
        self.core.plan.read_only
    }

    /// The connection limit the tenant policy set for this tenant, if any.
    pub fn max_connections(&self) -> Option<u32> {
        self.core.plan.max_connections
    }

    /// Check out a connection whose session can see only this scope's data.
    ///
    /// `DB` is [`sqlx::Postgres`] or [`sqlx::Sqlite`], matching [`backend`](Self::backend).
    /// Waits (up to `acquire-timeout-ms`) when the tenant's limit, the pool's limit or the
    /// host's global cap is reached. On PostgreSQL the session is switched to the scope in
    /// one round trip, or not at all when the connection already carries it.
    pub async fn acquire<DB: SupportedDatabase>(&self) -> Result<TenantConnection<DB>, HostError> {
        let inner = &self.core;
        let Some(pool) = <DB::Connection as Driver>::from_entry(&inner.pool) else {
            let requested = <DB::Connection as Driver>::BACKEND;
            return Err(DataError::WrongBackend {
                database: inner.database.clone(),
                actual: inner.pool.backend(),
                requested,
                type_name: match inner.pool.backend() {
                    Backend::Postgres => "Postgres",
                    Backend::Sqlite => "Sqlite",
                },
            }
            .into());
        };
        let registry = &self.host.data().registry;
        let limit = match &inner.limiter {
            Some(limiter) => {
                let timeout = registry.settings().acquire_timeout;
                let permit = tokio::time::timeout(timeout, limiter.clone().acquire_owned())
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .ok_or_else(|| DataError::Exhausted {
                        database: inner.database.clone(),
                        limit: "the tenant policy's max-connections",
                        max: inner.plan.max_connections.unwrap_or_default(),
                        waited_ms: timeout.as_millis() as u64,
                    })?;
                Some(permit)
            }
            None => None,
        };
        let checked = pool
            .checkout(&inner.plan.session)
            .await
            .map_err(|e| checkout_error(&inner.database, registry, e))?;
        Ok(TenantConnection {
            checked,
            _limit: limit,
            tenant: inner.plan.address.tenant.clone(),
        })
    }

    /// Check out a connection, run `SELECT 1`, and report how long it all took.
    pub async fn ping(&self) -> Result<Duration, HostError> {
        let started = Instant::now();
        let database = &self.core.database;
        let fail = |e: sqlx::Error| HostError::Data(sqlx_error(database, &e));
        match self.backend() {
            Backend::Postgres => {
                let mut conn = self.acquire::<sqlx::Postgres>().await?;
                sqlx::query("SELECT 1")
                    .execute(&mut *conn)
                    .await
                    .map_err(fail)?;
            }
            Backend::Sqlite => {
                let mut conn = self.acquire::<sqlx::Sqlite>().await?;
                sqlx::query("SELECT 1")
                    .execute(&mut *conn)
                    .await
                    .map_err(fail)?;
            }
        }
        Ok(started.elapsed())
    }

    pub(crate) fn plan(&self) -> &ScopePlan {
        &self.core.plan
    }
}

/// A connection checked out of a [`Scoped`] handle. Dereferences to the sqlx connection
/// (`PgConnection` or `SqliteConnection`): pass `&mut *conn` wherever sqlx takes an
/// executor, or call `conn.begin()` for a transaction.
///
/// Dropping it returns the connection to the pool without talking to the server, so it is
/// safe in every exit path; what the holder left in the session is dealt with before the
/// connection serves another scope.
pub struct TenantConnection<DB: SupportedDatabase> {
    // Declared first so the connection is back in the pool before the tenant's slot frees.
    checked: Checked<DB::Connection>,
    _limit: Option<OwnedSemaphorePermit>,
    tenant: Option<TenantId>,
}

impl<DB: SupportedDatabase> std::fmt::Debug for TenantConnection<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantConnection")
            .field("backend", &<DB::Connection as Driver>::BACKEND)
            .field("tenant", &self.tenant)
            .finish()
    }
}

impl<DB: SupportedDatabase> TenantConnection<DB> {
    /// The tenant whose data this connection sees, if any.
    pub fn tenant(&self) -> Option<&TenantId> {
        self.tenant.as_ref()
    }

    /// Close the connection instead of returning it to the pool (e.g. after changing
    /// session state that Tenantry does not reset).
    pub fn close(self) {
        self.checked.discard();
    }

    /// Make the next checkout of this connection switch its session again, even for the
    /// same scope. Call it after changing session settings yourself.
    pub fn forget_session(&mut self) {
        self.checked.forget_scope();
    }
}

impl<DB: SupportedDatabase> Deref for TenantConnection<DB> {
    type Target = DB::Connection;

    fn deref(&self) -> &Self::Target {
        self.checked.raw()
    }
}

impl<DB: SupportedDatabase> DerefMut for TenantConnection<DB> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.checked.raw_mut()
    }
}
