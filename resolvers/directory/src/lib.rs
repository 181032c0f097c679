//! Org resolver `directory`: each org's target is listed in the plugin's configuration.
//!
//! For a fixed, hand-maintained set of orgs spread over several servers. The directory is
//! the `directory` config value, JSON when it starts with `{` and TOML otherwise. Each entry
//! maps an org id to either a URL or a table:
//!
//! ```toml
//! acme = "postgresql://app@db1:5432/acme"
//!
//! [globex]
//! url = "postgresql://app@db2.eu:5432/globex"
//! region = "eu-west-1"
//! tier = "enterprise"            # becomes the label ("tier", "enterprise")
//! ttl_ms = 300000                # how long the host may cache the answer
//! labels = { team = "payments" }
//! ```
//!
//! The same directory in JSON:
//! `{"acme": "postgresql://app@db1:5432/acme", "globex": {"url": "postgresql://app@db2.eu:5432/globex", "tier": "enterprise"}}`.
//!
//! An org that is not listed is [`ResolveError::NotFound`]; there is deliberately no
//! fallback. A directory that does not parse, or lists a key that is not a valid org id,
//! makes every call [`ResolveError::Invalid`] naming the problem, so a broken directory is
//! noticed at once instead of turning some orgs into "not found".
//!
//! # Configuration (capability `config`)
//!
//! | key | meaning | example |
//! |---|---|---|
//! | `directory` | org id → URL or `{url, region?, tier?, ttl_ms?, labels?}`, JSON or TOML | `{"acme": "postgresql://db1/acme"}` |
//!
//! The directory is parsed on every call rather than cached in the instance: the host
//! caches answers per org, and a reused instance then never serves a stale directory.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, Visitor};
use tenantry_guest::config::{self, ConfigError};
use tenantry_guest::{OrgResolver, OrgTarget, ResolveError, check_id, validate_org_id};

/// The config key holding the directory.
const KEY: &str = "directory";

/// The exported resolver; see the crate documentation.
struct Directory;

impl OrgResolver for Directory {
    fn resolve(org_id: &str) -> Result<OrgTarget, ResolveError> {
        resolve(org_id, config::get(KEY).as_deref())
    }
}

tenantry_guest::export_org_resolver!(Directory);

/// Resolve `org_id` in the directory `raw` (the `directory` config value, if set).
fn resolve(org_id: &str, raw: Option<&str>) -> Result<OrgTarget, ResolveError> {
    validate_org_id(org_id)?;
    let raw = raw.ok_or_else(|| {
        ResolveError::Invalid(format!(
            "no directory: set config key `{KEY}` of this plugin to a JSON or TOML table that \
             maps org ids to database URLs, e.g. `{{\"acme\": \"postgresql://db1/acme\"}}`"
        ))
    })?;
    let mut directory: BTreeMap<String, Entry> = parse_structured(KEY, raw)?;
    for (org, entry) in &directory {
        check_id("org", org).map_err(|err| {
            let org = org.escape_debug();
            ConfigError::invalid(
                KEY,
                format_args!("entry `{org}` is not a usable org id: {err}"),
            )
        })?;
        if entry.url().trim().is_empty() {
            let org = org.escape_debug();
            return Err(
                ConfigError::invalid(KEY, format_args!("entry `{org}` has an empty URL")).into(),
            );
        }
    }
    let entry = directory.remove(org_id).ok_or(ResolveError::NotFound)?;
    Ok(entry.into_target())
}

/// One directory entry: a bare URL or a table.
#[derive(Debug, PartialEq)]
enum Entry {
    /// `acme = "postgresql://..."`.
    Url(String),
    /// `[acme]` with `url` and optional details.
    Table(Table),
}

/// The table form of an entry.
#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    url: String,
    region: Option<String>,
    /// Shorthand for the label `tier`, which tenant policies read.
    tier: Option<String>,
    #[serde(alias = "ttl-ms")]
    ttl_ms: Option<u32>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

impl Entry {
    fn url(&self) -> &str {
        match self {
            Entry::Url(url) | Entry::Table(Table { url, .. }) => url,
        }
    }

    fn into_target(self) -> OrgTarget {
        match self {
            Entry::Url(url) => OrgTarget::new(url),
            Entry::Table(table) => {
                let mut target = OrgTarget::new(table.url);
                target.region = table.region;
                target.ttl_ms = table.ttl_ms;
                target.labels = table.labels.into_iter().collect();
                // Set last so that `tier` wins over a `tier` inside `labels`.
                match table.tier {
                    Some(tier) => target.with_label("tier", tier),
                    None => target,
                }
            }
        }
    }
}

// Hand-written instead of `#[serde(untagged)]`: an untagged enum reports every mistake as
// "did not match any variant", whereas this says which field of which entry is wrong.
impl<'de> Deserialize<'de> for Entry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntryVisitor;

        impl<'de> Visitor<'de> for EntryVisitor {
            type Value = Entry;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a URL string or a table with `url`")
            }

            fn visit_str<E: de::Error>(self, url: &str) -> Result<Entry, E> {
                Ok(Entry::Url(url.to_owned()))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Entry, A::Error> {
                Table::deserialize(de::value::MapAccessDeserializer::new(map)).map(Entry::Table)
            }
        }

        deserializer.deserialize_any(EntryVisitor)
    }
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
    use super::*;

    const TOML: &str = r#"
        acme = "postgresql://app@db1:5432/acme"
        tech-inc = "postgresql://app@db1:5432/tech_inc"

        [globex]
        url = "postgresql://app@db2.eu:5432/globex"
        region = "eu-west-1"
        tier = "enterprise"
        ttl_ms = 300000
        labels = { team = "payments", tier = "ignored" }
    "#;

    fn invalid(result: Result<OrgTarget, ResolveError>) -> String {
        match result {
            Err(ResolveError::Invalid(message)) => message,
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    #[test]
    fn toml_urls_and_tables() {
        let acme = resolve("acme", Some(TOML)).unwrap();
        assert_eq!(acme, OrgTarget::new("postgresql://app@db1:5432/acme"));
        assert_eq!(
            resolve("tech-inc", Some(TOML)).unwrap().url,
            "postgresql://app@db1:5432/tech_inc"
        );

        let globex = resolve("globex", Some(TOML)).unwrap();
        assert_eq!(globex.url, "postgresql://app@db2.eu:5432/globex");
        assert_eq!(globex.region.as_deref(), Some("eu-west-1"));
        assert_eq!(globex.ttl_ms, Some(300_000));
        assert_eq!(globex.label("tier"), Some("enterprise"));
        assert_eq!(globex.label("team"), Some("payments"));
        assert_eq!(globex.labels.len(), 2);
    }

    #[test]
    fn json_with_dashed_ttl() {
        let json = r#"{"acme": "sqlite://data/acme.db",
                       "globex": {"url": "postgresql://db2/globex", "ttl-ms": 1000, "tier": "pro"}}"#;
        assert_eq!(
            resolve("acme", Some(json)).unwrap().url,
            "sqlite://data/acme.db"
        );
        let globex = resolve("globex", Some(json)).unwrap();
        assert_eq!(globex.ttl_ms, Some(1000));
        assert_eq!(globex.labels, vec![("tier".to_owned(), "pro".to_owned())]);
    }

    #[test]
    fn unknown_org_is_not_found() {
        assert_eq!(resolve("initech", Some(TOML)), Err(ResolveError::NotFound));
        assert_eq!(resolve("initech", Some("{}")), Err(ResolveError::NotFound));
        assert_eq!(resolve("initech", Some("")), Err(ResolveError::NotFound));
    }

    #[test]
    fn bad_id_is_invalid() {
        let message = invalid(resolve("Acme", Some(TOML)));
        assert!(message.contains("org id \"Acme\" is invalid"), "{message}");
    }

    #[test]
    fn missing_directory_says_which_key_to_set() {
        let message = invalid(resolve("acme", None));
        assert!(message.contains("set config key `directory`"), "{message}");
    }

    #[test]
    fn malformed_directories_name_the_parse_error_without_echoing_secrets() {
        let message = invalid(resolve(
            "acme",
            Some("acme = \"postgresql://u:s3cret@db/acme"),
        ));
        assert!(
            message.starts_with("config key `directory` is invalid: not valid TOML"),
            "{message}"
        );
        assert!(message.contains("line 1"), "{message}");
        assert!(!message.contains("s3cret"), "{message}");

        let message = invalid(resolve("acme", Some(r#"{"acme": "postgresql://db/acme""#)));
        assert!(message.contains("not valid JSON"), "{message}");

        let message = invalid(resolve("acme", Some("[acme]\nurl = \"x\"\nttl = 5\n")));
        assert!(message.contains("unknown field `ttl`"), "{message}");

        let message = invalid(resolve("acme", Some("[acme]\nregion = \"eu\"\n")));
        assert!(message.contains("missing field `url`"), "{message}");

        let message = invalid(resolve("acme", Some("acme = 5")));
        assert!(
            message.contains("a URL string or a table with `url`"),
            "{message}"
        );

        let message = invalid(resolve(
            "acme",
            Some(r#"{"acme": {"url": "x", "ttl_ms": -1}}"#),
        ));
        assert!(message.contains("not valid JSON"), "{message}");
    }

    #[test]
    fn unusable_entries_are_refused() {
        let message = invalid(resolve("acme", Some("acme = \"x\"\nAcme_Corp = \"y\"\n")));
        assert!(
            message.contains("entry `Acme_Corp` is not a usable org id"),
            "{message}"
        );
        let message = invalid(resolve(
            "acme",
            Some(r#"{"acme": "x", "globex": {"url": " "}}"#),
        ));
        assert!(
            message.contains("entry `globex` has an empty URL"),
            "{message}"
        );
    }
}
