//! A named role (org resolver, tenant policy) filled by exactly one plugin at a time, with
//! validated, atomic hot-swap and one step of rollback.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use tokio::sync::Mutex;

use super::{LoadedPlugin, PluginError, PluginKind, PluginRuntime, PluginSpec};

/// The result of a successful swap.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SwapOutcome {
    /// The slot's name.
    pub slot: String,
    /// sha256 of the plugin now serving.
    pub sha256: String,
    /// sha256 of the plugin it replaced.
    pub previous_sha256: String,
    /// The slot's generation after the swap (increments on every swap and rollback).
    pub generation: u64,
}

/// The last swap attempted on a slot, for operators (dashboard, `/status`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SwapRecord {
    /// When, in milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// Whether the candidate was installed.
    pub ok: bool,
    /// sha256 of the plugin serving afterwards.
    pub sha256: String,
    /// What happened (the rejection reason on failure).
    pub message: String,
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

/// Holds the plugin serving one role.
///
/// Readers take the current plugin with a lock-free load and keep it for the duration of
/// their call, so a swap never disturbs a call in flight: it finishes on the version it
/// started with. Swaps are serialized; each candidate is compiled, type-checked against
/// the slot's world and self-tested before the atomic switch, so a broken candidate never
/// serves a single request.
pub struct PluginSlot {
    name: String,
    kind: PluginKind,
    runtime: PluginRuntime,
    current: ArcSwap<LoadedPlugin>,
    previous: Mutex<Option<Arc<LoadedPlugin>>>,
    generation: AtomicU64,
    loaded_at_unix_ms: AtomicU64,
    last_swap: std::sync::Mutex<Option<SwapRecord>>,
}

impl std::fmt::Debug for PluginSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginSlot")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("current", &self.current.load().info().sha256)
            .field("generation", &self.generation())
            .finish()
    }
}

impl PluginSlot {
    /// A slot serving `initial`, which must implement `kind`.
    pub fn new(
        name: impl Into<String>,
        kind: PluginKind,
        runtime: PluginRuntime,
        initial: LoadedPlugin,
    ) -> Result<Self, PluginError> {
        let name = name.into();
        if initial.info().kind != kind {
            return Err(PluginError::WrongWorld {
                what: initial.name().to_owned(),
                expected: super::error::describe_world(Some(kind)),
                found: format!("world `{}`", initial.info().kind),
            });
        }
        Ok(Self {
            name,
            kind,
            runtime,
            current: ArcSwap::from_pointee(initial),
            previous: Mutex::new(None),
            generation: AtomicU64::new(0),
            loaded_at_unix_ms: AtomicU64::new(unix_ms()),
            last_swap: std::sync::Mutex::new(None),
        })
    }

    /// The slot's name (`org-resolver`, `tenant-policy`, or `<app>/<role>`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The world this slot requires.
    pub fn kind(&self) -> PluginKind {
        self.kind
    }

    /// The plugin serving now. Hold the `Arc` for one call, not longer.
    pub fn current(&self) -> Arc<LoadedPlugin> {
        self.current.load_full()
    }

    /// Incremented on every swap and rollback; caches compare it to drop stale answers.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// When the plugin serving now was installed, in milliseconds since the Unix epoch.
    pub fn loaded_at_unix_ms(&self) -> u64 {
        self.loaded_at_unix_ms.load(Ordering::Relaxed)
    }

    /// The last swap or rollback attempted, successful or not.
    pub fn last_swap(&self) -> Option<SwapRecord> {
        self.last_swap
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn record(&self, ok: bool, message: String) {
        let record = SwapRecord {
            at_unix_ms: unix_ms(),
            ok,
            sha256: self.current.load().info().sha256.clone(),
            message,
        };
        *self.last_swap.lock().unwrap_or_else(|e| e.into_inner()) = Some(record);
    }

    /// Replace the plugin with `bytes` (a component or WAT), keeping the current spec
    /// (grants, config, limits, samples) unless `spec` is given.
    ///
    /// On any failure the current plugin keeps serving and the error says why.
    pub async fn swap_bytes(
        &self,
        bytes: &[u8],
        what: &str,
        spec: Option<PluginSpec>,
    ) -> Result<SwapOutcome, PluginError> {
        let mut previous = self.previous.lock().await;
        let old = self.current.load_full();
        let mut spec = spec.unwrap_or_else(|| old.spec().clone());
        // A pin protects the running plugin; a swap is an explicit decision to replace it.
        spec.sha256 = None;
        let candidate = self.runtime.load(Some(self.kind), spec, bytes, what).await;
        let candidate = match candidate.map(Arc::new) {
            Ok(c) => c,
            Err(e) => return Err(self.rejected(e)),
        };
        if let Err(e) = candidate.self_test().await {
            return Err(self.rejected(e));
        }
        let outcome = self.install(candidate, old.clone());
        *previous = Some(old);
        self.record(
            true,
            format!(
                "swapped in {} (generation {})",
                &outcome.sha256[..12],
                outcome.generation
            ),
        );
        Ok(outcome)
    }

    /// Replace the plugin with the component at `path`.
    ///
    /// The new plugin is named after its file (unless `spec` names it), so logs and the
    /// dashboard say which component serves now, not the one it replaced.
    pub async fn swap_file(
        &self,
        path: &Path,
        spec: Option<PluginSpec>,
    ) -> Result<SwapOutcome, PluginError> {
        let explicit_name = spec.as_ref().and_then(|s| s.name.clone());
        let mut spec = spec.unwrap_or_else(|| self.current.load().spec().clone());
        spec.name =
            explicit_name.or_else(|| path.file_stem().map(|s| s.to_string_lossy().into_owned()));
        spec.path = Some(path.to_path_buf());
        let spec = Some(spec);
        let bytes = tokio::fs::read(path).await.map_err(|source| {
            self.rejected(PluginError::Io {
                path: path.into(),
                source,
            })
        })?;
        self.swap_bytes(&bytes, &path.display().to_string(), spec)
            .await
    }

    /// Put the previous plugin back (the current one becomes the new "previous").
    pub async fn rollback(&self) -> Result<SwapOutcome, PluginError> {
        let mut previous = self.previous.lock().await;
        let Some(back) = previous.take() else {
            return Err(PluginError::NothingToRollBack {
                slot: self.name.clone(),
            });
        };
        let old = self.current.load_full();
        let outcome = self.install(back, old.clone());
        *previous = Some(old);
        self.record(true, format!("rolled back to {}", &outcome.sha256[..12]));
        tracing::info!(slot = %self.name, sha = %outcome.sha256, "rolled back");
        Ok(outcome)
    }

    fn install(&self, new: Arc<LoadedPlugin>, old: Arc<LoadedPlugin>) -> SwapOutcome {
        let sha256 = new.info().sha256.clone();
        self.current.store(new);
        self.loaded_at_unix_ms.store(unix_ms(), Ordering::Relaxed);
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        tracing::info!(slot = %self.name, sha = %&sha256[..12], previous = %old.info().short_sha(), generation, "plugin swapped");
        SwapOutcome {
            slot: self.name.clone(),
            sha256,
            previous_sha256: old.info().sha256.clone(),
            generation,
        }
    }

    fn rejected(&self, e: PluginError) -> PluginError {
        self.record(false, format!("rejected: {e}"));
        tracing::warn!(slot = %self.name, error = %e, "swap rejected; the current plugin keeps serving");
        e
    }
}
