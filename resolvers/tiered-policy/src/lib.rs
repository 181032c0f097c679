//! Tenant policy `tiered-policy`: a tenant's tier decides how it is isolated and limited.
//!
//! Each tier names an isolation (`row`: shared tables behind row-level security; `schema`: a
//! schema of its own; `database`: a database of its own) plus session limits, or refuses the
//! tenant outright. Tiers are defined in the `tiers` config value, JSON when it starts with
//! `{` and TOML otherwise:
//!
//! ```toml
//! [free]
//! isolation = "row"
//! max_connections = 2
//! settings = { statement_timeout = "2s" }
//!
//! [pro]
//! isolation = "schema"
//! schema = "t_{tenant}"              # default "tenant_{tenant}"
//!
//! [enterprise]
//! isolation = "database"
//! database = "postgresql://app@db-ent:5432/{org}_{tenant}"
//! ttl_ms = 600000
//!
//! [archived]
//! isolation = "row"
//! read_only = true
//!
//! [suspended]
//! deny = "this account is suspended; contact billing@example.com"
//! ```
//!
//! In templates, `{org}` and `{tenant}` are replaced by the ids with `-` mapped to `_` (the
//! host's mapping, so `acme-corp` becomes `acme_corp`). Schema and database templates must
//! contain `{tenant}`: a template without it would put every tenant of the tier in the same
//! schema or database, which is not what those isolations promise. Field names may also be
//! written with dashes (`max-connections`, `read-only`, `ttl-ms`).
//!
//! Without `tiers`, the built-in tiers apply: `standard` and `free` are `row`, `pro` is
//! `schema` `tenant_{tenant}`, and `enterprise` is `database` with the template from config
//! key `database-template`.
//!
//! # Choosing the tier
//!
//! The first of these that is present decides:
//!
//! 1. config key `tenants`, a JSON or TOML table from `"org/tenant"` or `"tenant"` to a tier
//!    (the `org/tenant` entry wins), e.g. `{"acme/shop": "enterprise", "demo": "free"}`;
//! 2. the principal's claim `tier`, then its claim `plan`;
//! 3. the org's label `tier`, set by the org resolver;
//! 4. config key `default-tier`, or `standard`.
//!
//! A tier that is not defined is [`Denial::Invalid`], listing the tiers that are.
//!
//! # Configuration (capability `config`)
//!
//! | key | meaning | example |
//! |---|---|---|
//! | `tiers` | tier name → `{isolation, schema?, database?, read_only?, max_connections?, ttl_ms?, settings?, deny?}` | `{"free": {"isolation": "row", "max_connections": 2}}` |
//! | `tenants` | `"org/tenant"` or `"tenant"` → tier name | `{"acme/shop": "enterprise"}` |
//! | `default-tier` | tier when nothing else decides (default `standard`) | `free` |
//! | `database-template` | database template of tiers that set none, e.g. the built-in `enterprise` | `postgresql://app@db:5432/{org}_{tenant}` |
//!
//! Configuration is read on every call rather than cached in the instance: the host caches
//! the answers, and a reused instance then never applies stale tiers.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use tenantry_guest::config::{self, ConfigError};
use tenantry_guest::{
    Denial, Isolation, ScopeRequest, TenantPolicy, TenantScope, check_id, db_name,
    validate_tenant_id,
};

/// Tier used when nothing else decides and `default-tier` is not set.
const DEFAULT_TIER: &str = "standard";
/// Schema template of `schema` tiers that set none.
const DEFAULT_SCHEMA: &str = "tenant_{tenant}";

/// The exported policy; see the crate documentation.
struct Tiered;

impl TenantPolicy for Tiered {
    fn scope(request: ScopeRequest) -> Result<TenantScope, Denial> {
        scope(&request, config::get)
    }
}

tenantry_guest::export_tenant_policy!(Tiered);

/// Decide the scope of `request` with configuration looked up through `config`.
fn scope(
    request: &ScopeRequest,
    config: impl Fn(&str) -> Option<String>,
) -> Result<TenantScope, Denial> {
    validate_tenant_id(&request.tenant)?;
    // An empty org means the host runs without orgs; anything else must be a valid id.
    if !request.org.is_empty() {
        check_id("org", &request.org)?;
    }
    let (tiers, built_in) = match config("tiers") {
        Some(raw) => (
            parse_structured::<BTreeMap<String, Tier>>("tiers", &raw)?,
            false,
        ),
        None => (built_in_tiers(), true),
    };
    let (name, source) = choose_tier(request, &config)?;
    let Some(tier) = tiers.get(&name) else {
        let defined = tiers
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        let defined_where = if built_in {
            "built-in tiers (set config key `tiers` to define your own)"
        } else {
            "tiers defined in config key `tiers`"
        };
        return Err(Denial::Invalid(format!(
            "tier `{}` (from {source}) is not defined; {defined_where}: {defined}",
            name.escape_debug()
        )));
    };
    tier.scope(&name, request, config("database-template"))
}

/// The tiers that apply when config key `tiers` is not set.
fn built_in_tiers() -> BTreeMap<String, Tier> {
    let tier = |isolation| Tier {
        isolation: Some(isolation),
        ..Tier::default()
    };
    BTreeMap::from([
        ("standard".to_owned(), tier(IsolationKind::Row)),
        ("free".to_owned(), tier(IsolationKind::Row)),
        ("pro".to_owned(), tier(IsolationKind::Schema)),
        ("enterprise".to_owned(), tier(IsolationKind::Database)),
    ])
}

/// The tier for `request` and a description of what chose it, for messages.
fn choose_tier(
    request: &ScopeRequest,
    config: impl Fn(&str) -> Option<String>,
) -> Result<(String, String), Denial> {
    let tenant = &request.tenant;
    if let Some(raw) = config("tenants") {
        let mut tenants: BTreeMap<String, String> = parse_structured("tenants", &raw)?;
        if !request.org.is_empty() {
            let key = format!("{}/{tenant}", request.org);
            if let Some(tier) = tenants.remove(&key) {
                return Ok((tier, format!("config key `tenants`, entry `{key}`")));
            }
        }
        if let Some(tier) = tenants.remove(tenant) {
            return Ok((tier, format!("config key `tenants`, entry `{tenant}`")));
        }
    }
    for claim in ["tier", "plan"] {
        if let Some(tier) = request.claim(claim) {
            return Ok((tier.to_owned(), format!("principal claim `{claim}`")));
        }
    }
    if let Some(tier) = request.org_label("tier") {
        return Ok((tier.to_owned(), "org label `tier`".to_owned()));
    }
    Ok(match config("default-tier") {
        Some(tier) => (tier, "config key `default-tier`".to_owned()),
        None => (DEFAULT_TIER.to_owned(), "the default tier".to_owned()),
    })
}

/// One tier, as written in config key `tiers`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Tier {
    isolation: Option<IsolationKind>,
    /// Schema template for `schema` isolation; default [`DEFAULT_SCHEMA`].
    schema: Option<String>,
    /// Database URL template for `database` isolation; default `database-template`.
    database: Option<String>,
    #[serde(default, alias = "read-only")]
    read_only: bool,
    #[serde(alias = "max-connections")]
    max_connections: Option<u32>,
    #[serde(alias = "ttl-ms")]
    ttl_ms: Option<u32>,
    #[serde(default)]
    settings: BTreeMap<String, String>,
    /// Refuse every tenant of the tier with this message.
    deny: Option<String>,
}

/// The `isolation` field of a tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum IsolationKind {
    Row,
    Schema,
    Database,
}

impl Tier {
    /// The scope this tier (called `name`) gives the tenant of `request`.
    ///
    /// Template values are never quoted in messages: a database template may carry a password.
    fn scope(
        &self,
        name: &str,
        request: &ScopeRequest,
        database_template: Option<String>,
    ) -> Result<TenantScope, Denial> {
        if let Some(message) = &self.deny {
            return Err(Denial::Forbidden(message.clone()));
        }
        let isolation = match self.isolation {
            None => {
                return Err(Denial::Invalid(format!(
                    "tier `{name}` in config key `tiers` sets neither `isolation` nor `deny`: \
                     add isolation = \"row\", \"schema\" or \"database\""
                )));
            }
            Some(IsolationKind::Row) => Isolation::Row,
            Some(IsolationKind::Schema) => {
                let template = self.schema.as_deref().unwrap_or(DEFAULT_SCHEMA);
                Isolation::Schema(fill(name, "schema", template, request)?)
            }
            Some(IsolationKind::Database) => {
                let template = self.database.clone().or(database_template).ok_or_else(|| {
                    Denial::Invalid(format!(
                        "tier `{name}` isolates tenants in their own database but has no \
                         database template: set `database` in the tier (config key `tiers`) or \
                         config key `database-template`, e.g. \
                         `postgresql://app@db:5432/{{org}}_{{tenant}}`"
                    ))
                })?;
                Isolation::Database(fill(name, "database", &template, request)?)
            }
        };
        let mut scope = TenantScope::new(isolation).with_read_only(self.read_only);
        scope.max_connections = self.max_connections;
        scope.ttl_ms = self.ttl_ms;
        scope.settings = self.settings.clone().into_iter().collect();
        Ok(scope)
    }
}

/// Fill the `field` template of tier `tier` with the request's ids.
fn fill(tier: &str, field: &str, template: &str, request: &ScopeRequest) -> Result<String, Denial> {
    if !template.contains("{tenant}") {
        return Err(Denial::Invalid(format!(
            "the {field} template of tier `{tier}` has no {{tenant}} placeholder, so all of the \
             tier's tenants would share one {field}: add {{tenant}} to it"
        )));
    }
    if template.contains("{org}") && request.org.is_empty() {
        return Err(Denial::Invalid(format!(
            "the {field} template of tier `{tier}` uses {{org}}, but the host runs without \
             orgs: remove {{org}} from it"
        )));
    }
    Ok(template
        .replace("{org}", &db_name(&request.org))
        .replace("{tenant}", &db_name(&request.tenant)))
}

/// Parse a structured config value: JSON when it starts with `{`, TOML otherwise (a TOML
/// document cannot start with `{`, so the two never overlap).
///
/// TOML errors are reduced to their message and position: the parser's default rendering
/// quotes the offending line, which may hold a database password.
fn parse_structured<T: DeserializeOwned>(key: &str, raw: &str) -> Result<T, ConfigError> {
    if raw.trim_start().starts_with('{') {
        return serde_json::from_str(raw)
            .map_err(|err| ConfigError::invalid(key, format_args!("not valid JSON: {err}")));
    }
    toml::from_str(raw).map_err(|err| {
        let message = err.message().trim_end();
        match err.span() {
            Some(span) => {
                let before = &raw[..span.start.min(raw.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                ConfigError::invalid(
                    key,
                    format_args!("not valid TOML: {message} at line {line} column {column}"),
                )
            }
            None => ConfigError::invalid(key, format_args!("not valid TOML: {message}")),
        }
    })
}

#[cfg(test)]
mod tests {
    use tenantry_guest::Principal;

    use super::*;

    const TIERS: &str = r#"
        [free]
        isolation = "row"
        max_connections = 2
        settings = { statement_timeout = "2s" }

        [pro]
        isolation = "schema"
        schema = "t_{tenant}"

        [enterprise]
        isolation = "database"
        database = "postgresql://app:pw@db-ent:5432/{org}_{tenant}"
        ttl-ms = 600000

        [archived]
        isolation = "row"
        read-only = true

        [suspended]
        deny = "account suspended"
    "#;

    fn request(org: &str, tenant: &str) -> ScopeRequest {
        ScopeRequest {
            org: org.to_owned(),
            tenant: tenant.to_owned(),
            app: None,
            principal: None,
            org_labels: Vec::new(),
        }
    }

    fn with_claim(mut request: ScopeRequest, claim: &str, value: &str) -> ScopeRequest {
        let principal = request.principal.get_or_insert_with(|| Principal {
            subject: "user-1".to_owned(),
            claims: Vec::new(),
        });
        principal.claims.push((claim.to_owned(), value.to_owned()));
        request
    }

    fn config<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |key| {
            pairs
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.to_string())
        }
    }

    fn invalid(result: Result<TenantScope, Denial>) -> String {
        match result {
            Err(Denial::Invalid(message)) => message,
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    #[test]
    fn built_in_tiers() {
        let cfg = config(&[("database-template", "postgresql://db/{org}_{tenant}")]);
        let req = request("acme-corp", "main-shop");
        assert_eq!(scope(&req, &cfg).unwrap(), TenantScope::new(Isolation::Row));

        let pro = scope(&with_claim(req.clone(), "plan", "pro"), &cfg).unwrap();
        assert_eq!(
            pro.isolation,
            Isolation::Schema("tenant_main_shop".to_owned())
        );

        let enterprise = scope(&with_claim(req.clone(), "tier", "enterprise"), &cfg).unwrap();
        let expected = "postgresql://db/acme_corp_main_shop".to_owned();
        assert_eq!(enterprise.isolation, Isolation::Database(expected));

        let message = invalid(scope(&with_claim(req, "tier", "enterprise"), config(&[])));
        assert!(
            message.contains("config key `database-template`"),
            "{message}"
        );
    }

    #[test]
    fn configured_tiers_carry_their_limits() {
        let cfg = config(&[("tiers", TIERS), ("default-tier", "free")]);
        let free = scope(&request("acme", "shop"), &cfg).unwrap();
        let expected = TenantScope::new(Isolation::Row)
            .with_max_connections(2)
            .with_setting("statement_timeout", "2s");
        assert_eq!(free, expected);

        let mut req = request("acme", "shop");
        req.org_labels
            .push(("tier".to_owned(), "enterprise".to_owned()));
        let enterprise = scope(&req, &cfg).unwrap();
        let url = "postgresql://app:pw@db-ent:5432/acme_shop".to_owned();
        assert_eq!(enterprise.isolation, Isolation::Database(url));
        assert_eq!(enterprise.ttl_ms, Some(600_000));

        let archived = scope(
            &with_claim(request("acme", "old"), "tier", "archived"),
            &cfg,
        );
        assert!(archived.unwrap().read_only);

        let pro = scope(&with_claim(request("", "shop-1"), "tier", "pro"), &cfg).unwrap();
        assert_eq!(pro.isolation, Isolation::Schema("t_shop_1".to_owned()));
    }

    #[test]
    fn deny_is_forbidden() {
        let cfg = config(&[("tiers", TIERS)]);
        let denied = scope(
            &with_claim(request("acme", "shop"), "tier", "suspended"),
            &cfg,
        );
        assert_eq!(
            denied,
            Err(Denial::Forbidden("account suspended".to_owned()))
        );
    }

    #[test]
    fn tier_precedence() {
        const TENANTS: &str = r#"{"acme/shop": "enterprise", "shop": "pro", "demo": "free"}"#;
        let cfg = config(&[
            ("tiers", TIERS),
            ("tenants", TENANTS),
            ("default-tier", "archived"),
        ]);
        let tier_of = |req: &ScopeRequest| match scope(req, &cfg).unwrap().isolation {
            Isolation::Row => "row",
            Isolation::Schema(_) => "schema",
            Isolation::Database(_) => "database",
        };
        let labelled = |mut req: ScopeRequest| {
            req.org_labels.push(("tier".to_owned(), "pro".to_owned()));
            req
        };
        // `org/tenant` beats `tenant`, which beats claims and labels.
        let req = with_claim(request("acme", "shop"), "tier", "free");
        assert_eq!(tier_of(&req), "database");
        assert_eq!(
            tier_of(&with_claim(request("globex", "shop"), "tier", "free")),
            "schema"
        );
        assert_eq!(tier_of(&request("", "shop")), "schema");
        // Claim `tier` beats claim `plan`, which beats the org label.
        let req = with_claim(
            with_claim(labelled(request("acme", "x")), "plan", "pro"),
            "tier",
            "free",
        );
        assert_eq!(tier_of(&req), "row");
        let req = with_claim(labelled(request("acme", "x")), "plan", "enterprise");
        assert_eq!(tier_of(&req), "database");
        assert_eq!(tier_of(&labelled(request("acme", "x"))), "schema");
        // Then `default-tier`.
        assert!(scope(&request("acme", "x"), &cfg).unwrap().read_only);
    }

    #[test]
    fn unknown_tier_lists_the_defined_ones() {
        let cfg = config(&[("tiers", TIERS)]);
        let message = invalid(scope(
            &with_claim(request("acme", "shop"), "plan", "gold"),
            &cfg,
        ));
        assert!(
            message.contains("tier `gold` (from principal claim `plan`)"),
            "{message}"
        );
        assert!(
            message.contains("archived, enterprise, free, pro, suspended"),
            "{message}"
        );

        let message = invalid(scope(
            &with_claim(request("acme", "shop"), "tier", "gold"),
            config(&[]),
        ));
        assert!(message.contains("built-in tiers"), "{message}");
        assert!(
            message.contains("enterprise, free, pro, standard"),
            "{message}"
        );
    }

    #[test]
    fn ids_are_validated() {
        let message = invalid(scope(&request("acme", "Shop"), config(&[])));
        assert!(
            message.contains("tenant id \"Shop\" is invalid"),
            "{message}"
        );
        let message = invalid(scope(&request("acme_corp", "shop"), config(&[])));
        assert!(
            message.contains("org id \"acme_corp\" is invalid"),
            "{message}"
        );
    }

    #[test]
    fn templates_must_isolate() {
        const TIERS: &str = r#"{"shared": {"isolation": "schema", "schema": "common"},
                        "orgdb": {"isolation": "database", "database": "postgresql://db/{org}_{tenant}"}}"#;
        let cfg = config(&[("tiers", TIERS)]);
        let message = invalid(scope(
            &with_claim(request("acme", "a"), "tier", "shared"),
            &cfg,
        ));
        assert!(
            message.contains("schema template of tier `shared` has no {tenant}"),
            "{message}"
        );
        let message = invalid(scope(&with_claim(request("", "a"), "tier", "orgdb"), &cfg));
        assert!(
            message.contains("uses {org}, but the host runs without orgs"),
            "{message}"
        );
    }

    #[test]
    fn malformed_config_is_invalid() {
        let message = invalid(scope(
            &request("acme", "a"),
            config(&[("tiers", "[free]\nisolation = \"rows\"\n")]),
        ));
        assert!(
            message.starts_with("config key `tiers` is invalid: not valid TOML"),
            "{message}"
        );
        assert!(message.contains("line 2"), "{message}");
        let message = invalid(scope(
            &request("acme", "a"),
            config(&[("tiers", r#"{"free": {"isolaton": "row"}}"#)]),
        ));
        assert!(message.contains("unknown field `isolaton`"), "{message}");
        let cfg = config(&[("tiers", "[free]\nmax_connections = 2\n")]);
        let message = invalid(scope(
            &with_claim(request("acme", "a"), "tier", "free"),
            &cfg,
        ));
        assert!(
            message.contains("sets neither `isolation` nor `deny`"),
            "{message}"
        );
        let message = invalid(scope(
            &request("acme", "a"),
            config(&[("tenants", "a = 1")]),
        ));
        assert!(
            message.starts_with("config key `tenants` is invalid"),
            "{message}"
        );
    }
}
