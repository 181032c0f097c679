//! Errors as HTTP responses: a status, a stable machine-readable code, a message that says
//! what to do, and never a secret.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::HostError;
use crate::resolve::ResolveError;
use crate::scope::DataError;

/// An error on its way to an HTTP client.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code, e.g. `org_not_found`; clients branch on this, not on the message.
    pub code: &'static str,
    /// Human-readable explanation (secrets redacted).
    pub message: String,
    /// Seconds a client should wait before retrying (503s).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with no retry hint.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: crate::redact::redact_text(&message.into()),
            retry_after: None,
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": { "code": self.code, "message": self.message } });
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        response
    }
}

impl From<HostError> for ApiError {
    fn from(e: HostError) -> Self {
        let (status, code, retry_after) = classify(&e);
        Self {
            status,
            code,
            message: crate::redact::redact_text(&e.to_string()),
            retry_after: retry_after.map(|d| d.as_secs_f64().ceil() as u64),
        }
    }
}

/// Status, stable code and retry hint of a host error.
pub(crate) fn classify(e: &HostError) -> (StatusCode, &'static str, Option<std::time::Duration>) {
    match e {
        HostError::Id(_) => (StatusCode::BAD_REQUEST, "invalid_id", None),
        HostError::Resolve(r) => match r {
            ResolveError::NotFound { .. } => (StatusCode::NOT_FOUND, "org_not_found", None),
            ResolveError::Invalid { .. } => (StatusCode::BAD_REQUEST, "org_invalid", None),
            ResolveError::BreakerOpen { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "org_breaker_open",
                r.retry_after(),
            ),
            ResolveError::Unavailable { .. } | ResolveError::Timeout { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "org_unavailable",
                r.retry_after(),
            ),
            _ => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "resolver_misconfigured",
                None,
            ),
        },
        HostError::Data(d) => match d {
            DataError::TenantDenied { denial, .. } => match denial {
                crate::plugin::ScopeDenial::NotFound => {
                    (StatusCode::NOT_FOUND, "tenant_not_found", None)
                }
                crate::plugin::ScopeDenial::Forbidden(_) => {
                    (StatusCode::FORBIDDEN, "tenant_forbidden", None)
                }
                crate::plugin::ScopeDenial::Unavailable(_) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "tenant_policy_unavailable",
                    Some(std::time::Duration::from_secs(1)),
                ),
                crate::plugin::ScopeDenial::Invalid(_) => {
                    (StatusCode::BAD_REQUEST, "tenant_invalid", None)
                }
            },
            DataError::TenantMoved { .. } => (StatusCode::CONFLICT, "tenant_moved", None),
            DataError::NotFound { .. } | DataError::NoSuchDatabase { .. } => {
                (StatusCode::NOT_FOUND, "not_found", None)
            }
            DataError::Unreachable { .. } | DataError::Exhausted { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "database_unavailable",
                Some(std::time::Duration::from_secs(1)),
            ),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "data_error", None),
        },
        HostError::Plugin(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "plugin_failed",
            Some(std::time::Duration::from_secs(1)),
        ),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal", None),
    }
}
