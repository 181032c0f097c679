//! Host-side forms of the plugins' answers.
//!
//! Bindings types never leave the `plugin` module: answers are validated (size, URL shape,
//! identifier syntax) and converted into these types, whose `Debug` output redacts secrets.

use std::fmt;
use std::time::Duration;

use crate::redact::redact_url;

/// Where an org's data lives, as answered by an org resolver.
#[derive(Clone, PartialEq, Eq)]
pub struct OrgTarget {
    /// Connection URL; may carry a password. Print it only through [`OrgTarget::redacted_url`].
    pub url: String,
    /// Region or placement hint.
    pub region: Option<String>,
    /// How long the answer may be cached, as requested by the plugin.
    pub ttl: Option<Duration>,
    /// Extra facts about the org.
    pub labels: Vec<(String, String)>,
}

impl OrgTarget {
    /// The URL with its password masked.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }

    /// The value of label `key`, if present.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

impl fmt::Debug for OrgTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OrgTarget")
            .field("url", &self.redacted_url())
            .field("region", &self.region)
            .field("ttl", &self.ttl)
            .field("labels", &self.labels)
            .finish()
    }
}

/// An org resolver's typed refusal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveFailure {
    /// The org does not exist.
    #[error("org not found")]
    NotFound,
    /// The resolver's backend is down; retryable.
    #[error("resolver unavailable: {0}")]
    Unavailable(String),
    /// The id or the resolver's configuration is malformed.
    #[error("invalid: {0}")]
    Invalid(String),
}

/// The question put to a tenant policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeRequest {
    /// Org id (empty without orgs).
    pub org: String,
    /// Tenant id.
    pub tenant: String,
    /// Application name, when the host serves several.
    pub app: Option<String>,
    /// Authenticated subject and its claims.
    pub principal: Option<(String, Vec<(String, String)>)>,
    /// Labels of the org's target.
    pub org_labels: Vec<(String, String)>,
}

/// How a tenant's data is kept apart.
#[derive(Clone, PartialEq, Eq)]
pub enum Isolation {
    /// Shared tables, row-level security on `tenant_id`.
    Row,
    /// Dedicated schema (validated identifier).
    Schema(String),
    /// Dedicated database (URL, may carry a secret).
    Database(String),
}

impl fmt::Debug for Isolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Row => f.write_str("Row"),
            Self::Schema(s) => f.debug_tuple("Schema").field(s).finish(),
            Self::Database(url) => f.debug_tuple("Database").field(&redact_url(url)).finish(),
        }
    }
}

/// A tenant policy's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantScope {
    /// How the tenant is isolated.
    pub isolation: Isolation,
    /// Extra session settings (validated names).
    pub settings: Vec<(String, String)>,
    /// Sessions are read-only.
    pub read_only: bool,
    /// Connection cap for this tenant.
    pub max_connections: Option<u32>,
    /// How long the answer may be cached.
    pub ttl: Option<Duration>,
}

/// A tenant policy's typed refusal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeDenial {
    /// The tenant does not exist.
    #[error("tenant not found")]
    NotFound,
    /// The principal may not use this tenant.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The policy's backend is down; retryable.
    #[error("policy unavailable: {0}")]
    Unavailable(String),
    /// The request is malformed.
    #[error("invalid: {0}")]
    Invalid(String),
}

/// Schemes an org or tenant URL may use.
pub(crate) const URL_SCHEMES: &[&str] = &["postgres", "postgresql", "sqlite"];

/// Check a URL a plugin returned: parseable, an accepted scheme, no control characters.
pub(crate) fn check_url(url: &str) -> Result<(), String> {
    if url.chars().any(char::is_control) {
        return Err("url contains control characters".into());
    }
    let parsed = url::Url::parse(url)
        .map_err(|e| format!("url {:?} does not parse: {e}", redact_url(url)))?;
    if !URL_SCHEMES.contains(&parsed.scheme()) {
        return Err(format!(
            "url {:?} has scheme `{}`; expected one of {URL_SCHEMES:?}",
            redact_url(url),
            parsed.scheme()
        ));
    }
    Ok(())
}

/// Check a name that becomes a SQL identifier or a session setting name.
pub(crate) fn check_identifier(what: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} {name:?} is not a plain identifier (a-z, 0-9, '_', '.'; at most 63)"
        ))
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn accepted_urls_parse_with_an_allowed_scheme(raw in any::<String>()) {
            if check_url(&raw).is_ok() {
                let url = url::Url::parse(&raw).unwrap();
                prop_assert!(URL_SCHEMES.contains(&url.scheme()));
                prop_assert!(!raw.chars().any(char::is_control));
            }
        }

        #[test]
        fn accepted_identifiers_need_no_quoting(raw in any::<String>()) {
            if check_identifier("schema", &raw).is_ok() {
                prop_assert!(raw.len() <= 63);
                prop_assert!(raw.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.'));
            }
        }
    }
}
