//! Outbound HTTP GET (capability `http`).
//!
//! Only hosts on the plugin's allowlist in the host configuration are reachable, and calls
//! trap when the operator has not granted the `http` capability. The host reads the body as
//! UTF-8 text (lossily) and caps its size.

use crate::__bindings::resolver::tenantry::plugin::http as import;

/// A response: status code and body text.
pub use import::Response;

/// GET `url`.
///
/// Fails with the host's message when the host is not on the allowlist, the URL is malformed,
/// the request times out or the body exceeds the configured cap. A non-2xx status is not an
/// error here; check [`Response::is_success`]. Failures of a dependency are usually worth
/// retrying, so map them to `ResolveError::Unavailable` / `Denial::Unavailable`.
pub fn get(url: &str) -> Result<Response, String> {
    import::get(url)
}

impl Response {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_is_2xx() {
        let response = |status| Response {
            status,
            body: String::new(),
        };
        assert!(response(200).is_success());
        assert!(response(204).is_success());
        assert!(!response(304).is_success());
        assert!(!response(404).is_success());
    }
}
