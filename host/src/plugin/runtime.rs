//! The engine, its epoch ticker, the compile cache and linking.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::bindings::{policy_world, resolver_world};
use super::capability::PluginState;
use super::inspect::{inspect_component, sha256_hex, to_component_binary};
use super::loaded::{LoadedPlugin, Prepared};
use super::{PluginError, PluginKind, PluginSpec};

/// Engine-wide options. Per-plugin limits live in [`PluginLimits`](super::PluginLimits).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct EngineOptions {
    /// Use wasmtime's pooling allocator: instance slots, memories and stacks are reserved
    /// up front and reused, making a fresh instance per call cost microseconds instead of
    /// an `mmap`/`munmap` pair. Default `true`.
    pub pooling: bool,
    /// Instances that may be alive at once across all plugins (pool size). Calls beyond it
    /// fail with `Instantiate` rather than queueing. Default 256.
    pub max_instances: u32,
    /// Largest linear memory any plugin may be granted, in bytes (pool slot size). Per-plugin
    /// `limits.memory-bytes` above this are clamped. Default 256 MiB.
    pub max_memory_bytes: usize,
    /// Epoch tick: the resolution of call deadlines and how often a running call yields to
    /// the executor. Default 2 ms.
    #[serde(with = "tick_ms", rename = "epoch-tick-ms")]
    pub epoch_tick: Duration,
    /// Directory for precompiled components, keyed by sha256 and engine configuration.
    /// `None` compiles on every load. The directory is trusted: its files are loaded as
    /// native code, so it must be writable only by the host's user.
    pub cache_dir: Option<PathBuf>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            pooling: true,
            max_instances: 256,
            max_memory_bytes: 256 << 20,
            epoch_tick: Duration::from_millis(2),
            cache_dir: None,
        }
    }
}

mod tick_ms {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?.max(1)))
    }
}

/// Counters that make the runtime's work observable (and testable without timing).
#[derive(Debug, Default)]
pub struct RuntimeStats {
    /// Components compiled with Cranelift.
    pub compilations: AtomicU64,
    /// Components loaded from the precompiled cache.
    pub cache_hits: AtomicU64,
    /// Calls made into plugins.
    pub calls: AtomicU64,
    /// Calls that failed with a [`PluginError`].
    pub call_failures: AtomicU64,
}

/// Advances the engine's epoch until dropped.
struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Ticker {
    fn start(engine: Engine, tick: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("tenantry-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    engine.increment_epoch();
                }
            })
            .expect("spawning the epoch thread");
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Inner {
    engine: Engine,
    options: EngineOptions,
    engine_key: String,
    resolver_linker: Linker<PluginState>,
    policy_linker: Linker<PluginState>,
    stats: RuntimeStats,
    _ticker: Ticker,
}

/// One wasmtime engine shared by every plugin of a host. Cheap to clone.
///
/// Dropping the last clone stops the epoch ticker thread.
#[derive(Clone)]
pub struct PluginRuntime {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PluginRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginRuntime")
            .field("options", &self.inner.options)
            .finish()
    }
}

impl PluginRuntime {
    /// Build the engine with `options`.
    pub fn new(options: EngineOptions) -> Result<Self, PluginError> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.consume_fuel(true);
        config.epoch_interruption(true);
        if options.pooling {
            let n = options.max_instances.max(1);
            let mut pool = PoolingAllocationConfig::new();
            pool.total_component_instances(n)
                .total_core_instances(n.saturating_mul(4))
                .total_memories(n.saturating_mul(2))
                .total_tables(n.saturating_mul(4))
                .total_stacks(n)
                .max_memories_per_component(8)
                .max_tables_per_component(16)
                .max_core_instances_per_component(64)
                .max_memory_size(options.max_memory_bytes)
                .max_component_instance_size(1 << 20)
                .max_core_instance_size(1 << 20)
                // Reset small memories and tables by memset instead of madvise: for plugin
                // instances that live for one call this halves instantiation cost.
                .linear_memory_keep_resident(64 << 10)
                .table_keep_resident(16 << 10)
                .pagemap_scan(wasmtime::Enabled::Auto)
                .decommit_batch_size(16);
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        let engine = Engine::new(&config).map_err(|e| PluginError::Engine(format!("{e:#}")))?;
        let engine_key = {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            engine.precompile_compatibility_hash().hash(&mut h);
            format!("{:016x}", h.finish())
        };
        let resolver_linker = {
            let mut l = Linker::new(&engine);
            resolver_world::OrgResolver::add_to_linker::<_, HasSelf<_>>(&mut l, |s| s)
                .map_err(|e| PluginError::Engine(format!("{e:#}")))?;
            l
        };
        let policy_linker = {
            let mut l = Linker::new(&engine);
            policy_world::TenantPolicy::add_to_linker::<_, HasSelf<_>>(&mut l, |s| s)
                .map_err(|e| PluginError::Engine(format!("{e:#}")))?;
            l
        };
        let ticker = Ticker::start(engine.clone(), options.epoch_tick);
        Ok(Self {
            inner: Arc::new(Inner {
                engine,
                options,
                engine_key,
                resolver_linker,
                policy_linker,
                stats: RuntimeStats::default(),
                _ticker: ticker,
            }),
        })
    }

    /// The engine options in force.
    pub fn options(&self) -> &EngineOptions {
        &self.inner.options
    }

    /// Work counters.
    pub fn stats(&self) -> &RuntimeStats {
        &self.inner.stats
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// Read `path` and [`load`](Self::load) it.
    pub async fn load_file(
        &self,
        expected: Option<PluginKind>,
        spec: PluginSpec,
        path: &Path,
    ) -> Result<LoadedPlugin, PluginError> {
        let bytes = tokio::fs::read(path)
            .await
            .map_err(|source| PluginError::Io {
                path: path.into(),
                source,
            })?;
        let mut spec = spec;
        if spec.name.is_none() {
            spec.name = path.file_stem().map(|s| s.to_string_lossy().into_owned());
        }
        self.load(expected, spec, &bytes, &path.display().to_string())
            .await
    }

    /// Check, compile (or fetch from the cache) and link a component.
    ///
    /// `expected` is the slot's world (`None` accepts either); `what` names the source in
    /// errors. Compilation runs on a blocking thread: it takes milliseconds for a Rust
    /// plugin and seconds for a Python one.
    pub async fn load(
        &self,
        expected: Option<PluginKind>,
        spec: PluginSpec,
        bytes: &[u8],
        what: &str,
    ) -> Result<LoadedPlugin, PluginError> {
        let binary = to_component_binary(bytes, what)?;
        let sha = sha256_hex(&binary);
        if let Some(pin) = &spec.sha256
            && !pin.eq_ignore_ascii_case(&sha)
        {
            return Err(PluginError::PinMismatch {
                what: what.into(),
                expected: pin.clone(),
                found: sha,
            });
        }
        let this = self.clone();
        let what_owned = what.to_owned();
        let (component, binary) = tokio::task::spawn_blocking(move || {
            this.compile_cached(&binary, &sha, &what_owned)
                .map(|c| (c, binary))
        })
        .await
        .map_err(|e| PluginError::Compile {
            what: what.into(),
            reason: e.to_string(),
        })??;
        let info = inspect_component(&self.inner.engine, &component, &binary, what, expected)?;
        let link_err = |e: wasmtime::Error| PluginError::Compile {
            what: what.into(),
            reason: format!("linking failed: {e:#}"),
        };
        let prepared = match info.kind {
            PluginKind::OrgResolver => {
                let pre = self
                    .inner
                    .resolver_linker
                    .instantiate_pre(&component)
                    .map_err(link_err)?;
                Prepared::Resolver(resolver_world::OrgResolverPre::new(pre).map_err(link_err)?)
            }
            PluginKind::TenantPolicy => {
                let pre = self
                    .inner
                    .policy_linker
                    .instantiate_pre(&component)
                    .map_err(link_err)?;
                Prepared::Policy(policy_world::TenantPolicyPre::new(pre).map_err(link_err)?)
            }
        };
        let mut spec = spec;
        spec.limits.memory_bytes = spec
            .limits
            .memory_bytes
            .min(self.inner.options.max_memory_bytes);
        Ok(LoadedPlugin::new(self.clone(), spec, info, prepared))
    }

    fn compile_cached(
        &self,
        binary: &[u8],
        sha: &str,
        what: &str,
    ) -> Result<Component, PluginError> {
        let engine = &self.inner.engine;
        let compile_err = |e: wasmtime::Error| PluginError::Compile {
            what: what.into(),
            reason: format!("{e:#}"),
        };
        let Some(dir) = &self.inner.options.cache_dir else {
            self.inner
                .stats
                .compilations
                .fetch_add(1, Ordering::Relaxed);
            return Component::new(engine, binary).map_err(compile_err);
        };
        let path = dir.join(format!("{sha}-{}.cwasm", self.inner.engine_key));
        if path.is_file() {
            match load_precompiled(engine, &path) {
                Ok(component) => {
                    self.inner.stats.cache_hits.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(what, cache = %path.display(), "loaded precompiled plugin");
                    return Ok(component);
                }
                Err(e) => {
                    tracing::warn!(what, cache = %path.display(), error = %e, "discarding unusable precompiled plugin")
                }
            }
        }
        self.inner
            .stats
            .compilations
            .fetch_add(1, Ordering::Relaxed);
        let artifact = engine.precompile_component(binary).map_err(compile_err)?;
        if let Err(e) = store_atomically(dir, &path, &artifact) {
            tracing::warn!(what, cache = %dir.display(), error = %e, "cannot write the compile cache; continuing without it");
        }
        load_precompiled(engine, &path)
            .or_else(|_| Component::new(engine, binary))
            .map_err(compile_err)
    }

    pub(crate) fn count_call(&self, failed: bool) {
        self.inner.stats.calls.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.inner
                .stats
                .call_failures
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Load a precompiled component from the cache directory.
///
/// The file is read into memory rather than mapped: a mapped file that someone truncates
/// or rewrites in place would crash the process with SIGBUS the next time a plugin runs.
#[allow(unsafe_code)]
fn load_precompiled(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    let bytes = std::fs::read(path)?;
    // SAFETY: `deserialize` trusts its input to be an artifact produced by
    // `Engine::precompile_component` for a compatible engine. The file's name carries the
    // engine's compatibility hash, wasmtime re-checks the header, and only this runtime
    // writes the directory (atomically, via rename), which the docs require to be private.
    unsafe { Component::deserialize(engine, &bytes) }
}

fn store_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
