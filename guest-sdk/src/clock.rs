//! Wall-clock time (capability `clock`).
//!
//! `std::time::SystemTime` does not work in `wasm32-unknown-unknown`; the host's clock does.
//! Calls trap when the operator has not granted the `clock` capability.

use crate::__bindings::resolver::tenantry::plugin::clock as import;

/// Milliseconds since the Unix epoch, as the host sees them.
pub fn now_ms() -> u64 {
    import::now_ms()
}
