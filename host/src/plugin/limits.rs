//! Per-call resource limits.

use std::time::Duration;

/// Limits applied to every single call into a plugin.
///
/// A call gets a fresh instance, so these bound one call, not the plugin's lifetime. When a
/// limit is hit the call fails with the matching [`PluginError`](super::PluginError) variant
/// and nothing else is affected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct PluginLimits {
    /// Fuel (roughly: wasm instructions) per call, instantiation included.
    ///
    /// Default 200 000 000: a Python or JavaScript runtime needs a few million to start;
    /// a Rust resolver a few thousand. Deterministic, unlike the deadline.
    pub fuel: u64,
    /// Wall-clock budget per call, instantiation included. Default 1 s.
    ///
    /// Enforced by epoch interruption, so the resolution is the engine's tick
    /// ([`EngineOptions::epoch_tick`](super::EngineOptions)). While waiting, a call yields to
    /// the async executor at every tick, so a slow plugin never blocks other tasks.
    #[serde(with = "duration_ms", rename = "deadline-ms")]
    pub deadline: Duration,
    /// Maximum linear memory per instance, in bytes. Default 64 MiB.
    pub memory_bytes: usize,
    /// Maximum table elements per table. Default 100 000.
    pub table_elements: usize,
    /// Maximum total size, in bytes, of the strings and lists in one answer. Default 64 KiB.
    pub answer_bytes: usize,
}

impl Default for PluginLimits {
    fn default() -> Self {
        Self {
            fuel: 200_000_000,
            deadline: Duration::from_secs(1),
            memory_bytes: 64 << 20,
            table_elements: 100_000,
            answer_bytes: 64 << 10,
        }
    }
}

mod duration_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}
