//! The error of every plugin operation.

use std::path::PathBuf;
use std::time::Duration;

use super::Capability;

/// Why loading or calling a plugin failed.
///
/// Call failures name the plugin and the first 12 hex digits of its sha256, so an operator
/// can tell which build misbehaved, and say which limit was hit and how to raise it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PluginError {
    /// The plugin file could not be read.
    #[error("cannot read plugin {}: {source}", path.display())]
    Io {
        /// The path that was given.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The bytes are neither a WebAssembly binary nor WAT text.
    #[error("{what} is not WebAssembly: expected a component (.wasm) or WAT text (.wat)")]
    NotWasm {
        /// What was inspected (a path or `bytes`).
        what: String,
    },
    /// A core module was given where a component is required.
    #[error(
        "{what} is a core WebAssembly module, not a component: wrap it with \
         `wasm-tools component new <core.wasm> -o plugin.wasm` (or build it with the guest SDK)"
    )]
    CoreModule {
        /// What was inspected.
        what: String,
    },
    /// The component is malformed or failed to compile.
    #[error("{what} failed to compile: {reason}")]
    Compile {
        /// What was compiled.
        what: String,
        /// The engine's explanation.
        reason: String,
    },
    /// The component implements a different world than the slot needs, or none at all.
    #[error("{what} implements {found}, but {expected} is required")]
    WrongWorld {
        /// What was inspected.
        what: String,
        /// What was required, e.g. "world `org-resolver` (export `tenantry:plugin/resolver@0.1.0`)".
        expected: String,
        /// A description of what was found.
        found: String,
    },
    /// The component targets a contract version this host does not support.
    #[error(
        "{what} exports `{interface}` version {found}, but this host supports version \
         {supported}: rebuild the plugin against wit/ of this Tenantry release"
    )]
    UnsupportedVersion {
        /// What was inspected.
        what: String,
        /// The exported interface.
        interface: String,
        /// The version found.
        found: String,
        /// The version supported.
        supported: &'static str,
    },
    /// The component imports something the host never provides.
    #[error(
        "{what} imports `{import}`, which Tenantry does not provide: plugins get no WASI \
         filesystem, environment, clock or sockets (build JS/Python guests with --stub-wasi); \
         available imports are tenantry:plugin/{{log,config,clock,http}}"
    )]
    UnknownImport {
        /// What was inspected.
        what: String,
        /// The import's name.
        import: String,
    },
    /// The component's sha256 differs from the pinned one.
    #[error("{what} has sha256 {found}, but the configuration pins {expected}")]
    PinMismatch {
        /// What was inspected.
        what: String,
        /// The pinned digest.
        expected: String,
        /// The actual digest.
        found: String,
    },
    /// The guest trapped (panic, `unreachable`, stack overflow, bad memory access).
    #[error("plugin {plugin} ({sha}) trapped: {message}")]
    Trap {
        /// Plugin name.
        plugin: String,
        /// Short sha256.
        sha: String,
        /// The trap and, when the guest logged one just before, its last message.
        message: String,
    },
    /// The call used up its fuel budget.
    #[error(
        "plugin {plugin} ({sha}) ran out of fuel after {fuel} units: it loops or does too much work per call; raise limits.fuel if this is expected"
    )]
    OutOfFuel {
        /// Plugin name.
        plugin: String,
        /// Short sha256.
        sha: String,
        /// The budget.
        fuel: u64,
    },
    /// The call ran past its wall-clock deadline.
    #[error(
        "plugin {plugin} ({sha}) exceeded its deadline of {deadline:?}; raise limits.deadline-ms if this is expected"
    )]
    DeadlineExceeded {
        /// Plugin name.
        plugin: String,
        /// Short sha256.
        sha: String,
        /// The deadline.
        deadline: Duration,
    },
    /// The guest tried to grow memory or a table past its cap.
    #[error(
        "plugin {plugin} ({sha}) hit its {resource} limit of {limit}; raise limits.{resource} if this is expected"
    )]
    MemoryLimit {
        /// Plugin name.
        plugin: String,
        /// Short sha256.
        sha: String,
        /// `memory-bytes` or `table-elements`.
        resource: &'static str,
        /// The limit.
        limit: usize,
    },
    /// The guest called an import it was not granted.
    #[error(
        "plugin {plugin} ({sha}) called `{capability}` but was not granted it: add \"{capability}\" to the plugin's `grants` if it should have it"
    )]
    NotGranted {
        /// Plugin name.
        plugin: String,
        /// Short sha256.
        sha: String,
        /// The capability.
        capability: Capability,
    },
    /// The guest returned something malformed or oversized.
    #[error("plugin {plugin} ({sha}) returned a bad answer: {reason}")]
    BadAnswer {
        /// Plugin name.
        plugin: String,
        /// Short sha256.
        sha: String,
        /// What was wrong (secrets redacted).
        reason: String,
    },
    /// A candidate failed its self-test and was not installed.
    #[error("candidate {plugin} ({sha}) failed its self-test on sample `{sample}`: {reason}")]
    SelfTest {
        /// Plugin name.
        plugin: String,
        /// Short sha256.
        sha: String,
        /// The sample id.
        sample: String,
        /// What went wrong.
        reason: String,
    },
    /// `rollback` was asked for but there is no previous version.
    #[error("slot {slot} has no previous plugin to roll back to")]
    NothingToRollBack {
        /// The slot's name.
        slot: String,
    },
    /// The instance pool or engine refused to create an instance.
    #[error("plugin {plugin} ({sha}) could not be instantiated: {reason}")]
    Instantiate {
        /// Plugin name.
        plugin: String,
        /// Short sha256.
        sha: String,
        /// The engine's explanation.
        reason: String,
    },
    /// The engine itself could not be created (bad engine options).
    #[error("cannot create the WebAssembly engine: {0}")]
    Engine(String),
}

/// How a required world is described in [`PluginError::WrongWorld`].
pub(crate) fn describe_world(kind: Option<super::PluginKind>) -> String {
    match kind {
        Some(k) => format!(
            "world `{k}` (export `tenantry:plugin/{}@{}`)",
            k.interface(),
            super::SUPPORTED_VERSION
        ),
        None => format!(
            "world `org-resolver` or `tenant-policy` (export `tenantry:plugin/resolver@{0}` or `tenantry:plugin/policy@{0}`)",
            super::SUPPORTED_VERSION
        ),
    }
}

impl PluginError {
    /// True for failures of one call (as opposed to loading): the plugin stays installed.
    pub fn is_call_failure(&self) -> bool {
        matches!(
            self,
            Self::Trap { .. }
                | Self::OutOfFuel { .. }
                | Self::DeadlineExceeded { .. }
                | Self::MemoryLimit { .. }
                | Self::NotGranted { .. }
                | Self::BadAnswer { .. }
                | Self::Instantiate { .. }
        )
    }
}
