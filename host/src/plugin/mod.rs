//! Sandboxed WebAssembly plugins: org resolvers and tenant policies.
//!
//! Lifecycle, in the order the work happens:
//! 1. [`PluginRuntime`] owns one wasmtime `Engine` (component model, fuel, epoch
//!    interruption, pooling allocator) and an on-disk cache of precompiled components.
//! 2. [`PluginRuntime::load`] turns bytes into a [`LoadedPlugin`]: it checks the component's
//!    world and contract version, its imports, an optional sha256 pin, compiles (or loads the
//!    cached artifact) and links it once into an `InstancePre`.
//! 3. Each call instantiates a fresh, isolated instance from that `InstancePre` with its own
//!    fuel budget, wall-clock deadline and memory caps, so a plugin cannot carry state from
//!    one org's call into another's, and a trap poisons nothing.
//! 4. A [`PluginSlot`] holds the plugin currently serving a role and swaps it atomically.

mod answer;
mod bindings;
mod capability;
mod error;
pub(crate) mod inspect;
mod limits;
mod loaded;
mod runtime;
mod slot;
mod watch;

pub use answer::{Isolation, OrgTarget, ResolveFailure, ScopeDenial, ScopeRequest, TenantScope};
pub use capability::{Capability, Grants};
pub use error::PluginError;
pub use inspect::{ComponentInfo, SUPPORTED_VERSION, inspect_component};
pub use limits::PluginLimits;
pub use loaded::LoadedPlugin;
pub use runtime::{EngineOptions, PluginRuntime, RuntimeStats};
pub use slot::{PluginSlot, SwapOutcome, SwapRecord};
pub use watch::PluginWatcher;

use std::collections::BTreeMap;

/// Which role a plugin plays; each role is one WIT world.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PluginKind {
    /// World `org-resolver`: exports `tenantry:plugin/resolver`.
    OrgResolver,
    /// World `tenant-policy`: exports `tenantry:plugin/policy`.
    TenantPolicy,
}

impl PluginKind {
    /// Both slots, resolver first.
    pub const ALL: [PluginKind; 2] = [PluginKind::OrgResolver, PluginKind::TenantPolicy];

    /// The slot whose WIT world is named `name` (`org-resolver`, `tenant-policy`): how
    /// slots are named in URLs, the CLI and the registry.
    pub fn from_world(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.world() == name)
    }

    /// The WIT world name.
    pub fn world(self) -> &'static str {
        match self {
            Self::OrgResolver => "org-resolver",
            Self::TenantPolicy => "tenant-policy",
        }
    }

    /// The exported interface that identifies the world.
    pub fn interface(self) -> &'static str {
        match self {
            Self::OrgResolver => "resolver",
            Self::TenantPolicy => "policy",
        }
    }
}

impl std::fmt::Display for PluginKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.world())
    }
}

/// Everything the host needs to know to run one plugin, besides its bytes.
///
/// Defaults are the safe ones: no capabilities, default [`PluginLimits`], no pin.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PluginSpec {
    /// Where the component is read from (`.wasm`, or `.wat` text). Relative paths are
    /// resolved against the working directory.
    #[serde(default)]
    pub path: Option<std::path::PathBuf>,
    /// Name used in logs and errors; defaults to the file stem.
    #[serde(default)]
    pub name: Option<String>,
    /// Capabilities granted to the plugin (`log`, `config`, `clock`, `http`).
    #[serde(default)]
    pub grants: Grants,
    /// Hosts (`host` or `host:port`) the `http` capability may reach.
    #[serde(default)]
    pub http_allow: Vec<String>,
    /// Key/values readable through the `config` capability.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Per-call limits.
    #[serde(default)]
    pub limits: PluginLimits,
    /// Refuse to load unless the component's sha256 (hex) equals this.
    #[serde(default)]
    pub sha256: Option<String>,
    /// Ids every candidate must answer without failing before it may serve (self-test).
    #[serde(default)]
    pub samples: Vec<String>,
    /// Reuse warm instances between calls instead of instantiating one per call.
    ///
    /// Default `false`: a fresh instance per call means no state survives from one org's
    /// call into another's, at the cost of an instantiation (microseconds with the pooling
    /// allocator; more for JS/Python runtimes, which start an interpreter). With `true`, an
    /// instance that answered is kept (up to 16 per plugin) and its memory persists across
    /// calls; any failed call discards its instance. Limits still apply per call.
    #[serde(default)]
    pub reuse_instances: bool,
}
