//! Structured logging into the host's `tracing` output (capability `log`).
//!
//! Each line is attributed to the calling plugin by the host. The `wasm32-unknown-unknown`
//! target has no stdout, so this is the only way for a plugin to say anything; calls trap
//! when the operator has not granted the `log` capability.

use crate::__bindings::resolver::tenantry::plugin::log as import;

/// Severity of a log line, mapped one-to-one onto `tracing` levels.
pub use import::Level;

/// Emit `message` at `level`.
pub fn write(level: Level, message: &str) {
    import::write(level, message);
}

/// Emit `message` at trace level.
pub fn trace(message: &str) {
    write(Level::Trace, message);
}

/// Emit `message` at debug level.
pub fn debug(message: &str) {
    write(Level::Debug, message);
}

/// Emit `message` at info level.
pub fn info(message: &str) {
    write(Level::Info, message);
}

/// Emit `message` at warn level.
pub fn warn(message: &str) {
    write(Level::Warn, message);
}

/// Emit `message` at error level.
pub fn error(message: &str) {
    write(Level::Error, message);
}
