//! Constructors and accessors for the generated contract types.
//!
//! The records are plain structs with public fields, so plugins may build them literally;
//! these helpers exist because most answers set one or two fields and leave the rest at the
//! contract's defaults, and because [`Properties`] is a list in which the *first* occurrence
//! of a key wins (that is how the host reads it).

use crate::{Isolation, OrgTarget, Properties, ScopeRequest, TenantScope};

/// The value of `key` in a property list, as the host reads it: the first occurrence wins.
pub fn property<'a>(properties: &'a [(String, String)], key: &str) -> Option<&'a str> {
    properties
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Set `key` to `value`, replacing the first existing occurrence so the new value is the one
/// the host sees.
fn set_property(properties: &mut Properties, key: String, value: String) {
    match properties.iter_mut().find(|(k, _)| *k == key) {
        Some((_, existing)) => *existing = value,
        None => properties.push((key, value)),
    }
}

impl OrgTarget {
    /// A target at `url` with no region, the host's default cache lifetime and no labels.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            region: None,
            ttl_ms: None,
            labels: Properties::new(),
        }
    }

    /// Set the region or placement hint reported in the host's health output.
    #[must_use]
    pub fn with_region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Let the host cache this answer for `ttl_ms` milliseconds (within its own bounds).
    #[must_use]
    pub fn with_ttl_ms(mut self, ttl_ms: u32) -> Self {
        self.ttl_ms = Some(ttl_ms);
        self
    }

    /// Set label `key` to `value`, replacing an earlier value of the same key. Labels are
    /// passed on to the tenant policy (e.g. `tier`) and shown in health output.
    #[must_use]
    pub fn with_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        set_property(&mut self.labels, key.into(), value.into());
        self
    }

    /// The value of label `key`, if set.
    pub fn label(&self, key: &str) -> Option<&str> {
        property(&self.labels, key)
    }
}

impl TenantScope {
    /// A read-write scope with `isolation`, no extra settings and the host's default limits.
    pub fn new(isolation: Isolation) -> Self {
        Self {
            isolation,
            settings: Properties::new(),
            read_only: false,
            max_connections: None,
            ttl_ms: None,
        }
    }

    /// Apply session setting `name` = `value` on checkout, replacing an earlier value of the
    /// same setting. The host refuses names that are not plain identifiers.
    #[must_use]
    pub fn with_setting(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        set_property(&mut self.settings, name.into(), value.into());
        self
    }

    /// Make the tenant's sessions read-only (or read-write again).
    #[must_use]
    pub fn with_read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// Cap the connections this tenant may hold at once.
    #[must_use]
    pub fn with_max_connections(mut self, max_connections: u32) -> Self {
        self.max_connections = Some(max_connections);
        self
    }

    /// Let the host cache this answer for `ttl_ms` milliseconds.
    #[must_use]
    pub fn with_ttl_ms(mut self, ttl_ms: u32) -> Self {
        self.ttl_ms = Some(ttl_ms);
        self
    }
}

impl ScopeRequest {
    /// The verified claim `name` of the request's principal, if there is a principal and it
    /// carries that claim.
    pub fn claim(&self, name: &str) -> Option<&str> {
        self.principal
            .as_ref()
            .and_then(|principal| property(&principal.claims, name))
    }

    /// The label `name` of the org's resolved target, if the resolver set it.
    pub fn org_label(&self, name: &str) -> Option<&str> {
        property(&self.org_labels, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Principal;

    #[test]
    fn first_occurrence_wins_and_setters_replace_it() {
        let labels = vec![
            ("tier".to_owned(), "pro".to_owned()),
            ("tier".to_owned(), "free".to_owned()),
        ];
        assert_eq!(property(&labels, "tier"), Some("pro"));
        assert_eq!(property(&labels, "plan"), None);

        let target = OrgTarget::new("postgresql://db/acme")
            .with_label("tier", "pro")
            .with_label("team", "core")
            .with_label("tier", "enterprise");
        assert_eq!(target.label("tier"), Some("enterprise"));
        assert_eq!(target.labels.len(), 2);
    }

    #[test]
    fn builders_fill_the_contract_defaults() {
        let target = OrgTarget::new("sqlite://data/acme.db")
            .with_region("eu-west-1")
            .with_ttl_ms(1_000);
        assert_eq!(target.region.as_deref(), Some("eu-west-1"));
        assert_eq!(target.ttl_ms, Some(1_000));

        let scope = TenantScope::new(Isolation::Row)
            .with_setting("statement_timeout", "5s")
            .with_read_only(true)
            .with_max_connections(4);
        assert_eq!(
            scope.settings,
            vec![("statement_timeout".into(), "5s".into())]
        );
        assert!(scope.read_only);
        assert_eq!(scope.max_connections, Some(4));
        assert_eq!(scope.ttl_ms, None);
    }

    #[test]
    fn request_accessors() {
        let mut request = ScopeRequest {
            org: "acme".into(),
            tenant: "shop".into(),
            app: None,
            principal: None,
            org_labels: vec![("tier".into(), "pro".into())],
        };
        assert_eq!(request.claim("plan"), None);
        request.principal = Some(Principal {
            subject: "user-1".into(),
            claims: vec![("plan".into(), "enterprise".into())],
        });
        assert_eq!(request.claim("plan"), Some("enterprise"));
        assert_eq!(request.org_label("tier"), Some("pro"));
    }
}
