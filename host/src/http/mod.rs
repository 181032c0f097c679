//! Web integration: a tower layer and an axum extractor that turn a request into a
//! tenant-scoped database handle, and errors into JSON responses with stable codes.

/// Not a stable API: shared by the plugin `http` capability and the `tenantry` CLI binary
/// (a separate crate target, hence `pub`).
#[doc(hidden)]
pub mod client;
mod error;
mod extract;

pub use error::ApiError;
pub use extract::{
    ErrorHook, IdExtractor, Identity, SwitchPolicy, TenancyLayer, TenancyOptions, TenancyService,
    Tenant,
};
