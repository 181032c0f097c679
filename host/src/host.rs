//! The embeddable entry point.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::config::{ConfigError, HostConfig};
use crate::id::{IdError, OrgId};
use crate::plugin::{
    EngineOptions, OrgTarget, PluginError, PluginKind, PluginRuntime, PluginSlot, PluginSpec,
    PluginWatcher, ResolveFailure, SwapOutcome,
};
use crate::redact::redact_url;

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
    /// No way to find an org's database was configured.
    #[error(
        "no org resolver: set DATABASE_URL to a pattern containing {{org}} \
         (e.g. sqlite://data/{{org}}.db) or configure [plugins.org-resolver]"
    )]
    NoResolver,
    /// The resolver says the org does not exist.
    #[error(
        "org `{org}` not found by {source_name}: create it, or check the resolver's configuration"
    )]
    OrgNotFound {
        /// The org.
        org: OrgId,
        /// Which resolver answered.
        source_name: String,
    },
    /// The resolver could not answer now.
    #[error("org `{org}` cannot be resolved right now ({source_name}): {reason}")]
    OrgUnavailable {
        /// The org.
        org: OrgId,
        /// Which resolver answered.
        source_name: String,
        /// Why (secrets redacted).
        reason: String,
    },
    /// The resolver refused the id or is misconfigured.
    #[error("org `{org}` was refused by {source_name}: {reason}")]
    OrgInvalid {
        /// The org.
        org: OrgId,
        /// Which resolver answered.
        source_name: String,
        /// Why (secrets redacted).
        reason: String,
    },
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
}

struct Inner {
    config: HostConfig,
    runtime: PluginRuntime,
    org_resolver: Option<Arc<PluginSlot>>,
    tenant_policy: Option<Arc<PluginSlot>>,
    _watcher: Option<PluginWatcher>,
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
                org_resolver,
                tenant_policy,
                _watcher: watcher,
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
    /// Fails closed: an org that cannot be resolved is an error, never a guessed URL.
    pub async fn resolve_org(&self, org: &OrgId) -> Result<OrgTarget, HostError> {
        if let Some(slot) = &self.inner.org_resolver {
            let plugin = slot.current();
            let source_name = format!("plugin {}", plugin.name());
            return match plugin.resolve(org.as_str()).await? {
                Ok(target) => Ok(target),
                Err(ResolveFailure::NotFound) => Err(HostError::OrgNotFound {
                    org: org.clone(),
                    source_name,
                }),
                Err(ResolveFailure::Unavailable(reason)) => Err(HostError::OrgUnavailable {
                    org: org.clone(),
                    source_name,
                    reason,
                }),
                Err(ResolveFailure::Invalid(reason)) => Err(HostError::OrgInvalid {
                    org: org.clone(),
                    source_name,
                    reason,
                }),
            };
        }
        let pattern = self
            .inner
            .config
            .database_url
            .as_deref()
            .filter(|u| u.contains("{org}"));
        let pattern = pattern.ok_or(HostError::NoResolver)?;
        Ok(OrgTarget {
            url: pattern.replace("{org}", &org.db_name()),
            region: None,
            ttl: None,
            labels: Vec::new(),
        })
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

    /// Load the host.
    pub async fn build(self) -> Result<Host, HostError> {
        Host::load(self.config).await
    }
}
