//! Connection pools: one per distinct target database, a bounded registry of them, and a
//! global cap on open connections across all of them.
//!
//! * **One pool per database, never per tenant.** Row-level tenants of a database share its
//!   pool; what differs between their checkouts is the session scope a connection is
//!   switched to (see [`crate::isolation`]). SQLite tenants live in files of their own, so
//!   their pools are per file — still one per database.
//! * **Bounded registry.** Pools live in a `moka` cache capped at `max-pools` entries; a
//!   pool nobody asked for during `pool-idle-timeout-ms` is evicted, which closes its idle
//!   connections. Handles that still hold an evicted pool keep working; their connections
//!   are closed when returned instead of being kept.
//! * **Global cap.** Every live connection of every pool holds a permit of one semaphore
//!   of `max-open-connections` permits, so the host never has more connections open, in
//!   total, than that. A pool that needs a connection while the cap is exhausted closes
//!   an idle connection of another pool and takes its permit.

mod cap;
mod conn;

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgConnection;
use sqlx::sqlite::SqliteConnection;

pub(crate) use cap::ConnectionCap;
pub(crate) use conn::{Checked, CheckoutError, ConnPool, Driver, DriverFuture};

/// Pool limits and timeouts (`[pools]` in the TOML file).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct PoolConfig {
    /// Cap on connections open at once across every pool of the host
    /// (`TENANTRY_MAX_CONNECTIONS`). Default 100. Keep it below the database server's
    /// `max_connections` minus what other clients need.
    pub max_open_connections: u32,
    /// Connections one database's pool may open. Default 10. A tenant policy's
    /// `max-connections` lowers it further for that tenant's checkouts. Below it, a pool
    /// opens a connection for a tenant that no idle connection carries rather than switch
    /// another tenant's (while the global cap has a free permit), so with many tenants
    /// taking turns it grows to this many and most checkouts skip the switch.
    pub max_connections: u32,
    /// How long a checkout may wait for a connection (pool limit, tenant limit or global
    /// cap), in milliseconds. Default 30 000.
    pub acquire_timeout_ms: u64,
    /// An idle connection unused for this long is closed, in milliseconds. Default 600 000.
    pub idle_timeout_ms: u64,
    /// Pools kept in the registry at once. Default 1000.
    pub max_pools: u64,
    /// A pool not asked for during this long is evicted and its connections closed, in
    /// milliseconds. Default 600 000.
    pub pool_idle_timeout_ms: u64,
    /// Hand a PostgreSQL connection that already carries the wanted scope out without
    /// switching it again (default true; see [`crate::isolation::postgres`]). The record of
    /// what a connection carries is written only after the server confirmed the switch, but
    /// it cannot see SQL the application runs itself: code that changes
    /// `tenantry.tenant_id`, `role` or `search_path` on a Tenantry connection must call
    /// [`TenantConnection::forget_session`](crate::TenantConnection::forget_session) — or
    /// set this to false, which re-asserts the scope on every checkout (one round trip).
    pub reuse_sessions: bool,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_open_connections: 100,
            max_connections: 10,
            acquire_timeout_ms: 30_000,
            idle_timeout_ms: 600_000,
            max_pools: 1000,
            pool_idle_timeout_ms: 600_000,
            reuse_sessions: true,
        }
    }
}

/// Timeouts every pool of a registry shares.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PoolSettings {
    pub(crate) acquire_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) reuse_sessions: bool,
}

/// The database engines Tenantry routes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// PostgreSQL (`postgres://`, `postgresql://`).
    Postgres,
    /// SQLite (`sqlite://`), embedded.
    Sqlite,
}

impl Backend {
    /// The backend a URL's scheme names, if supported.
    pub fn of_url(url: &str) -> Option<Self> {
        let scheme = url.split_once(':')?.0;
        match scheme {
            "postgres" | "postgresql" => Some(Self::Postgres),
            "sqlite" => Some(Self::Sqlite),
            _ => None,
        }
    }

    /// Lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Sqlite => "sqlite",
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Identifies one pool: a database, opened read-write or (SQLite only) read-only.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct PoolKey {
    /// The full URL; may carry a password, so it is never printed.
    pub(crate) url: Arc<str>,
    /// SQLite read-only scopes get a pool opened with `SQLITE_OPEN_READONLY`.
    pub(crate) read_only: bool,
}

impl std::fmt::Debug for PoolKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolKey")
            .field("url", &crate::redact::redact_url(&self.url))
            .field("read_only", &self.read_only)
            .finish()
    }
}

/// A registered pool of either backend.
#[derive(Debug, Clone)]
pub(crate) enum PoolEntry {
    Postgres(Arc<ConnPool<PgConnection>>),
    Sqlite(Arc<ConnPool<SqliteConnection>>),
}

macro_rules! each {
    ($self:expr, $p:ident => $e:expr) => {
        match $self {
            PoolEntry::Postgres($p) => $e,
            PoolEntry::Sqlite($p) => $e,
        }
    };
}

impl PoolEntry {
    pub(crate) fn backend(&self) -> Backend {
        match self {
            Self::Postgres(_) => Backend::Postgres,
            Self::Sqlite(_) => Backend::Sqlite,
        }
    }

    pub(crate) fn label(&self) -> &str {
        each!(self, p => p.label())
    }

    pub(crate) fn stats(&self) -> PoolStats {
        each!(self, p => PoolStats {
            database: p.label().to_owned(),
            backend: self.backend(),
            open: p.open(),
            idle: p.idle_count() as u32,
            max: p.max(),
        })
    }

    fn reclaim_one(&self) -> bool {
        each!(self, p => p.reclaim_one())
    }

    fn retire(&self) {
        each!(self, p => p.retire())
    }

    pub(crate) fn close(&self) {
        each!(self, p => p.close())
    }

    /// Neither closed nor evicted from the registry.
    pub(crate) fn is_open(&self) -> bool {
        each!(self, p => p.is_open())
    }

    pub(crate) async fn closed(&self, timeout: Duration) {
        each!(self, p => p.closed(timeout).await)
    }
}

/// One pool's numbers, as reported by `Host::health`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PoolStats {
    /// The database, password redacted.
    pub database: String,
    /// Its backend.
    pub backend: Backend,
    /// Connections open (idle or in use).
    pub open: u32,
    /// Of which idle.
    pub idle: u32,
    /// The pool's limit.
    pub max: u32,
}

type PoolCache = moka::future::Cache<PoolKey, PoolEntry>;

/// Lets a pool close idle connections of the other pools of its registry. Holds the
/// registry weakly: pools live inside it.
#[derive(Clone)]
pub(crate) struct Reclaimer(std::sync::Weak<PoolCache>);

impl Reclaimer {
    /// Close an idle connection of any pool. Returns whether one was found.
    pub(crate) fn reclaim(&self) -> bool {
        self.0
            .upgrade()
            .is_some_and(|pools| pools.iter().any(|(_, entry)| entry.reclaim_one()))
    }
}

/// All pools of one host.
pub(crate) struct PoolRegistry {
    pools: Arc<PoolCache>,
    cap: Arc<ConnectionCap>,
    settings: PoolSettings,
    max_per_pool: u32,
}

impl std::fmt::Debug for PoolRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolRegistry")
            .field("pools", &self.pools.entry_count())
            .field("open", &self.cap.open())
            .field("cap", &self.cap.max())
            .finish()
    }
}

impl PoolRegistry {
    pub(crate) fn new(config: &PoolConfig) -> Self {
        let pools = moka::future::Cache::builder()
            .max_capacity(config.max_pools.max(1))
            .time_to_idle(Duration::from_millis(config.pool_idle_timeout_ms.max(1)))
            .eviction_listener(|_key, entry: PoolEntry, cause| {
                // Explicit removals close the pool themselves (see `close_where`).
                if cause.was_evicted() {
                    entry.retire();
                }
            })
            .build();
        Self {
            pools: Arc::new(pools),
            cap: Arc::new(ConnectionCap::new(config.max_open_connections.max(1))),
            settings: PoolSettings {
                acquire_timeout: Duration::from_millis(config.acquire_timeout_ms),
                idle_timeout: Duration::from_millis(config.idle_timeout_ms),
                reuse_sessions: config.reuse_sessions,
            },
            max_per_pool: config.max_connections.max(1),
        }
    }

    pub(crate) fn cap(&self) -> &Arc<ConnectionCap> {
        &self.cap
    }

    pub(crate) fn settings(&self) -> PoolSettings {
        self.settings
    }

    pub(crate) fn max_per_pool(&self) -> u32 {
        self.max_per_pool
    }

    /// The pool for `key`, opened by `open` if it is not registered yet. Concurrent callers
    /// for the same key share one `open`.
    pub(crate) async fn get_or_open<E, F>(&self, key: PoolKey, open: F) -> Result<PoolEntry, Arc<E>>
    where
        F: Future<Output = Result<PoolEntry, E>>,
        E: Send + Sync + 'static,
    {
        if let Some(entry) = self.pools.get(&key).await {
            if !entry_closed(&entry) {
                return Ok(entry);
            }
            self.pools.invalidate(&key).await;
        }
        self.pools.try_get_with(key, open).await
    }

    /// A handle for new pools to reclaim idle connections of this registry's pools.
    pub(crate) fn reclaimer(&self) -> Reclaimer {
        Reclaimer(Arc::downgrade(&self.pools))
    }

    /// Close and unregister every pool whose URL satisfies `matches`; waits (bounded) for
    /// their connections to close so the database can be dropped.
    pub(crate) async fn close_where(&self, matches: impl Fn(&str) -> bool) {
        let doomed: Vec<(Arc<PoolKey>, PoolEntry)> = self
            .pools
            .iter()
            .filter(|(key, _)| matches(&key.url))
            .collect();
        for (key, entry) in &doomed {
            entry.close();
            self.pools.invalidate(key.as_ref()).await;
        }
        for (_, entry) in doomed {
            entry.closed(Duration::from_secs(5)).await;
        }
    }

    /// Close and unregister every pool.
    pub(crate) async fn close_all(&self) {
        self.close_where(|_| true).await;
        self.pools.run_pending_tasks().await;
    }

    /// Numbers for every registered pool, sorted by database.
    pub(crate) async fn stats(&self) -> Vec<PoolStats> {
        self.pools.run_pending_tasks().await;
        let mut all: Vec<PoolStats> = self.pools.iter().map(|(_, e)| e.stats()).collect();
        all.sort_by(|a, b| a.database.cmp(&b.database));
        all
    }

    /// Every registered pool.
    pub(crate) fn entries(&self) -> Vec<PoolEntry> {
        self.pools.iter().map(|(_, e)| e).collect()
    }
}

fn entry_closed(entry: &PoolEntry) -> bool {
    each!(entry, p => p.is_closed())
}
