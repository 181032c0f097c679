//! The embeddable entry point.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Clock, SystemClock};
use crate::config::{ConfigError, HostConfig};
use crate::id::{IdError, OrgId};
use crate::plugin::{
    EngineOptions, OrgTarget, PluginError, PluginKind, PluginRuntime, PluginSlot, PluginSpec,
    PluginWatcher, SwapOutcome,
};
use crate::redact::redact_url;
use crate::resolve::{
    BreakerOverride, BreakerState, OrgHealth, Pinned, PreloadReport, Resolution, ResolveError,
    ResolveOptions, Resolver, ResolverMetrics, Source,
};

/// How long watched-directory writes must be quiet before a swap is attempted.
const WATCH_DEBOUNCE: Duration = Duration::from_millis(200);

/// Errors of the [`Host`] API; each says what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// Configuration could not be read.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A plugin failed to load or to answer.
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// An id was refused.
    #[error(transparent)]
    Id(#[from] IdError),
    /// An org could not be resolved.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// A plugin slot was addressed that is not configured.
    #[error("no {0} plugin is configured: add [plugins.{0}] with a `path` to the config")]
    SlotNotConfigured(PluginKind),
    /// The plugins directory could not be watched.
    #[error("cannot watch plugins directory {}: {reason}", dir.display())]
    Watch {
        /// The directory.
        dir: PathBuf,
        /// Why.
        reason: String,
    },
    /// Scoped data access, pools, isolation or management failed (see [`crate::DataError`]).
    #[error(transparent)]
    Data(crate::scope::DataError),
    /// Moving a tenant between orgs was refused or failed (see [`crate::relocate`]).
    #[error(transparent)]
    Move(#[from] crate::relocate::MoveError),
}

struct Inner {
    config: HostConfig,
    runtime: PluginRuntime,
    resolver: Resolver,
    org_resolver: Option<Arc<PluginSlot>>,
    tenant_policy: Option<Arc<PluginSlot>>,
    _watcher: Option<PluginWatcher>,
    /// Pools and scope caches (see `data()` at the bottom of this file).
    data: std::sync::OnceLock<crate::scope::DataState>,
}

/// A running Tenantry host. Cheap to clone; clones share everything.
///
/// Dropping the last clone stops the plugin watcher and the engine's epoch ticker.
#[derive(Clone)]
pub struct Host {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field(
                "database_url",
                &self.inner.config.database_url.as_deref().map(redact_url),
            )
            .field("orgs", &self.inner.config.orgs)
            .field("tenants", &self.inner.config.tenants)
            .field("org_resolver", &self.inner.org_resolver)
            .field("tenant_policy", &self.inner.tenant_policy)
            .finish()
    }
}

impl Host {
    /// Start building a host in code instead of from the environment.
    pub fn builder() -> HostBuilder {
        HostBuilder::default()
    }

    /// A host configured from the environment (and `TENANTRY_CONFIG`'s TOML file).
    pub async fn from_env() -> Result<Self, HostError> {
        Self::load(HostConfig::from_env()?).await
    }

    /// Build the engine, load and self-test the configured plugins, and start watching
    /// the plugins directory if one is configured. Must run inside a tokio runtime.
    pub async fn load(config: HostConfig) -> Result<Self, HostError> {
        Self::load_with_clock(config, Arc::new(SystemClock)).await
    }

    async fn load_with_clock(config: HostConfig, clock: Arc<dyn Clock>) -> Result<Self, HostError> {
        let runtime = PluginRuntime::new(config.engine.clone())?;
        let org_resolver = match &config.plugins.org_resolver {
            Some(spec) => {
                let mut spec = spec.clone();
                if let Some(url) = &config.database_url {
                    spec.config
                        .entry("database-url".into())
                        .or_insert_with(|| url.clone());
                }
                Some(load_slot(&runtime, PluginKind::OrgResolver, spec).await?)
            }
            None => None,
        };
        let tenant_policy = match &config.plugins.tenant_policy {
            Some(spec) => Some(load_slot(&runtime, PluginKind::TenantPolicy, spec.clone()).await?),
            None => None,
        };
        let watcher = match &config.plugins_dir {
            Some(dir) => {
                let slots = org_resolver.iter().chain(&tenant_policy).cloned().collect();
                let watcher = PluginWatcher::start(dir, slots, WATCH_DEBOUNCE).map_err(|e| {
                    HostError::Watch {
                        dir: dir.clone(),
                        reason: e.to_string(),
                    }
                })?;
                Some(watcher)
            }
            None => None,
        };
        let source = match (&org_resolver, &config.database_url) {
            (Some(slot), _) => Source::Plugin(slot.clone()),
            (None, Some(url)) if url.contains("{org}") => Source::Pattern(url.clone()),
            (None, _) => Source::None,
        };
        let resolver = Resolver::new(config.resolve.clone(), source, clock);
        tracing::info!(
            database_url = config
                .database_url
                .as_deref()
                .map(redact_url)
                .unwrap_or_default(),
            orgs = config.orgs,
            tenants = config.tenants,
            "tenantry host loaded"
        );
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                runtime,
                resolver,
                org_resolver,
                tenant_policy,
                _watcher: watcher,
                data: std::sync::OnceLock::new(),
            }),
        })
    }

    /// The configuration the host runs with.
    pub fn config(&self) -> &HostConfig {
        &self.inner.config
    }

    /// The plugin runtime (engine, compile cache, counters).
    pub fn runtime(&self) -> &PluginRuntime {
        &self.inner.runtime
    }

    /// The slot serving `kind`, if configured.
    pub fn slot(&self, kind: PluginKind) -> Option<&Arc<PluginSlot>> {
        match kind {
            PluginKind::OrgResolver => self.inner.org_resolver.as_ref(),
            PluginKind::TenantPolicy => self.inner.tenant_policy.as_ref(),
        }
    }

    fn require_slot(&self, kind: PluginKind) -> Result<&Arc<PluginSlot>, HostError> {
        self.slot(kind).ok_or(HostError::SlotNotConfigured(kind))
    }

    /// Hot-swap the plugin of `kind` with the component at `path` (validated and
    /// self-tested first; the current plugin keeps serving if anything fails).
    pub async fn swap_file(&self, kind: PluginKind, path: &Path) -> Result<SwapOutcome, HostError> {
        Ok(self.require_slot(kind)?.swap_file(path, None).await?)
    }

    /// Hot-swap the plugin of `kind` with `bytes` (a component or WAT text).
    pub async fn swap_bytes(
        &self,
        kind: PluginKind,
        bytes: &[u8],
    ) -> Result<SwapOutcome, HostError> {
        Ok(self
            .require_slot(kind)?
            .swap_bytes(bytes, "uploaded plugin", None)
            .await?)
    }

    /// Put back the plugin that served `kind` before the last swap.
    pub async fn rollback(&self, kind: PluginKind) -> Result<SwapOutcome, HostError> {
        Ok(self.require_slot(kind)?.rollback().await?)
    }

    /// Find where `org` lives: through the org-resolver plugin when one is configured,
    /// otherwise by substituting the id into `DATABASE_URL`'s `{org}` pattern.
    ///
    /// Goes through the pipeline described in [`crate::resolve`]: cache (single-flight),
    /// circuit breaker, retries, timeout, explicit fallback. Fails closed: an org that
    /// cannot be resolved is an error, never a guessed URL.
    pub async fn resolve_org(&self, org: &OrgId) -> Result<Arc<OrgTarget>, HostError> {
        Ok(self.inner.resolver.resolve(org).await?.target)
    }

    /// Like [`resolve_org`](Self::resolve_org), with what
    /// [`org_still_current`](Self::org_still_current) needs to re-check the answer later.
    pub(crate) async fn resolve_org_pinned(
        &self,
        org: &OrgId,
    ) -> Result<(Arc<OrgTarget>, Pinned), HostError> {
        let (resolution, pinned) = self.inner.resolver.resolve_pinned(org).await?;
        Ok((resolution.target, pinned))
    }

    /// Whether resolving `org` now would still give the answer `pinned` came from.
    pub(crate) async fn org_still_current(&self, org: &OrgId, pinned: &Pinned) -> bool {
        self.inner.resolver.still_current(org, pinned).await
    }

    /// Like [`resolve_org`](Self::resolve_org), also saying where the answer came from.
    pub async fn resolution(&self, org: &OrgId) -> Result<Resolution, HostError> {
        Ok(self.inner.resolver.resolve(org).await?)
    }

    /// Resolve `org` bypassing the cache and replace its cached answer. On failure the
    /// previous cached answer (if any) stays.
    pub async fn refresh_org(&self, org: &OrgId) -> Result<Resolution, HostError> {
        Ok(self.inner.resolver.refresh(org).await?)
    }

    /// Drop the cached answer for `org`, or every cached answer.
    pub async fn clear_org_cache(&self, org: Option<&OrgId>) {
        self.inner.resolver.clear(org).await;
    }

    /// Resolve many orgs concurrently (at most `concurrency` at once) to warm the cache;
    /// reports each org's failure instead of stopping at the first.
    pub async fn preload_orgs(&self, orgs: Vec<OrgId>, concurrency: usize) -> PreloadReport {
        self.inner.resolver.preload(orgs, concurrency).await
    }

    /// Force `org`'s circuit breaker open or closed until [`reset_org_breaker`](Self::reset_org_breaker).
    pub fn set_org_breaker(&self, org: &OrgId, to: BreakerOverride) {
        self.inner.resolver.force_breaker(org, to);
    }

    /// Close `org`'s breaker and forget its failures.
    pub fn reset_org_breaker(&self, org: &OrgId) {
        self.inner.resolver.reset_breaker(org);
    }

    /// The last failure recorded by `org`'s breaker (secrets redacted), if any.
    pub fn org_breaker_error(&self, org: &OrgId) -> Option<String> {
        self.inner.resolver.breaker_error(org)
    }

    /// The state of `org`'s breaker.
    pub fn org_breaker(&self, org: &OrgId) -> BreakerState {
        self.inner.resolver.breaker_state(org)
    }

    /// Whether `org` resolves now, how fast, from where, and why not.
    pub async fn check_org_health(&self, org: &OrgId) -> OrgHealth {
        self.inner.resolver.health(org).await
    }

    /// The `n` cached orgs looked up most often since they were cached.
    pub fn busiest_orgs(&self, n: usize) -> Vec<(String, u64)> {
        self.inner.resolver.busiest(n)
    }

    /// Cache, latency and breaker figures of the resolution pipeline.
    pub async fn resolver_metrics(&self) -> ResolverMetrics {
        self.inner.resolver.metrics().await
    }
}

async fn load_slot(
    runtime: &PluginRuntime,
    kind: PluginKind,
    spec: PluginSpec,
) -> Result<Arc<PluginSlot>, HostError> {
    let path = spec
        .path
        .clone()
        .ok_or(HostError::SlotNotConfigured(kind))?;
    let plugin = runtime.load_file(Some(kind), spec, &path).await?;
    plugin.self_test().await?;
    tracing::info!(
        slot = kind.world(),
        plugin = plugin.name(),
        sha = plugin.info().short_sha(),
        "plugin loaded"
    );
    Ok(Arc::new(PluginSlot::new(
        kind.world(),
        kind,
        runtime.clone(),
        plugin,
    )?))
}

/// Builds a [`Host`] in code. Unset fields keep [`HostConfig`]'s defaults; nothing is read
/// from the environment unless [`HostBuilder::from_env`] is called.
#[derive(Debug, Default)]
pub struct HostBuilder {
    config: HostConfig,
    clock: Option<Arc<dyn Clock>>,
}

impl HostBuilder {
    /// Start from the environment (see [`HostConfig::from_env`]).
    pub fn from_env(mut self) -> Result<Self, HostError> {
        self.config = HostConfig::from_env()?;
        Ok(self)
    }

    /// Start from a full configuration.
    pub fn config(mut self, config: HostConfig) -> Self {
        self.config = config;
        self
    }

    /// The database URL or `{org}`/`{tenant}` pattern.
    pub fn database_url(mut self, url: impl Into<String>) -> Self {
        self.config.database_url = Some(url.into());
        self
    }

    /// Enable a database per org.
    pub fn orgs(mut self, on: bool) -> Self {
        self.config.orgs = on;
        self
    }

    /// Enable tenants within each database.
    pub fn tenants(mut self, on: bool) -> Self {
        self.config.tenants = on;
        self
    }

    /// Enable tenant-scoped vector search ([`crate::vectors`]; `TENANTRY_VECTORS`).
    pub fn vectors(mut self, on: bool) -> Self {
        self.config.vectors = on;
        self
    }

    /// Serve org resolution from the component at `path`, configured by `spec`.
    pub fn org_resolver(mut self, path: impl Into<PathBuf>, spec: PluginSpec) -> Self {
        self.config.plugins.org_resolver = Some(PluginSpec {
            path: Some(path.into()),
            ..spec
        });
        self
    }

    /// Decide tenant isolation with the component at `path`, configured by `spec`.
    pub fn tenant_policy(mut self, path: impl Into<PathBuf>, spec: PluginSpec) -> Self {
        self.config.plugins.tenant_policy = Some(PluginSpec {
            path: Some(path.into()),
            ..spec
        });
        self
    }

    /// Engine-wide options.
    pub fn engine(mut self, options: EngineOptions) -> Self {
        self.config.engine = options;
        self
    }

    /// Keep precompiled plugins in `dir`.
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config.engine.cache_dir = Some(dir.into());
        self
    }

    /// Watch `dir` for `<slot>.wasm` files to hot-swap.
    pub fn plugins_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config.plugins_dir = Some(dir.into());
        self
    }

    /// Options of the resolution pipeline (cache, breakers, retries, fallback).
    pub fn resolve_options(mut self, options: ResolveOptions) -> Self {
        self.config.resolve = options;
        self
    }

    /// The clock used for cache expiry and breaker cool-downs (tests use
    /// [`ManualClock`](crate::clock::ManualClock)).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Load the host.
    pub async fn build(self) -> Result<Host, HostError> {
        let clock = self.clock.unwrap_or_else(|| Arc::new(SystemClock));
        Host::load_with_clock(self.config, clock).await
    }
}

// ---- Scoped data access (host/src/scope.rs, manage.rs, migrate.rs): accessors only. ----

impl Host {
    /// The data layer's state: pool registry, cached policy answers, tenant limits.
    /// Created on first use from the host's configuration.
    pub(crate) fn data(&self) -> &crate::scope::DataState {
        self.inner
            .data
            .get_or_init(|| crate::scope::DataState::new(&self.inner.config))
    }
}
