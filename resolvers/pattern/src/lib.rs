//! Org resolver `pattern`: every org's database URL comes from one template.
//!
//! This is the seed's `DATABASE_URL=postgresql://localhost:5432/{org}_database` as a plugin.
//! The org id is validated, `-` is mapped to `_` (the host's mapping, which keeps the result a
//! valid SQL identifier) and every `{org}` is replaced, so `acme-corp` resolves to
//! `postgresql://localhost:5432/acme_corp_database`. A `{tenant}` placeholder is left alone:
//! the host fills it in per tenant with the same mapping.
//!
//! # Configuration (capability `config`)
//!
//! | key | meaning | example |
//! |---|---|---|
//! | `template` | URL template, must contain `{org}` | `postgresql://app@db:5432/{org}_database` |
//! | `database-url` | used when `template` is unset; the host passes `DATABASE_URL` here | `postgresql://db/{org}` |
//! | `region` | region reported for every org; also fills `{region}` in the template | `eu-west-1` |
//! | `ttl-ms` | how long the host may cache an answer (u32 milliseconds) | `60000` |
//! | `labels` | labels for every org, a JSON object of strings | `{"tier":"pro","team":"core"}` |
//!
//! Configuration is read on every call rather than cached in the instance: the host caches
//! the answers anyway, and a reused instance then never serves a stale template.

use std::collections::BTreeMap;

use tenantry_guest::config::{self, ConfigError};
use tenantry_guest::{OrgResolver, OrgTarget, ResolveError, db_name, validate_org_id};

/// Placeholder replaced by the org id's database name.
const ORG: &str = "{org}";
/// Placeholder replaced by the `region` config value.
const REGION: &str = "{region}";
/// A template to show in messages, the seed's own example.
const EXAMPLE: &str = "postgresql://localhost:5432/{org}_database";

/// The exported resolver; see the crate documentation.
struct Pattern;

impl OrgResolver for Pattern {
    fn resolve(org_id: &str) -> Result<OrgTarget, ResolveError> {
        resolve(org_id, config::get)
    }
}

tenantry_guest::export_org_resolver!(Pattern);

/// Resolve `org_id` with configuration looked up through `config`.
fn resolve(
    org_id: &str,
    config: impl Fn(&str) -> Option<String>,
) -> Result<OrgTarget, ResolveError> {
    validate_org_id(org_id)?;
    let (template, key) = template(&config)?;
    let region = config("region");

    let mut url = template.replace(ORG, &db_name(org_id));
    if url.contains(REGION) {
        let Some(region) = &region else {
            return Err(ResolveError::Invalid(format!(
                "the URL template in config key `{key}` uses {REGION} but config key `region` \
                 is not set: set `region` (e.g. `eu-west-1`) or remove {REGION} from the template"
            )));
        };
        url = url.replace(REGION, region);
    }

    let mut target = OrgTarget::new(url);
    target.region = region;
    if let Some(raw) = config("ttl-ms") {
        target.ttl_ms = Some(config::parse_value("ttl-ms", &raw)?);
    }
    if let Some(raw) = config("labels") {
        target.labels = labels(&raw)?;
    }
    Ok(target)
}

/// The URL template and the config key it came from.
///
/// The message names both keys and the environment variable because an operator who never
/// configured the plugin thinks in terms of `DATABASE_URL`, not of plugin config keys. It
/// never repeats the template: a database URL may carry a password.
fn template(
    config: impl Fn(&str) -> Option<String>,
) -> Result<(String, &'static str), ResolveError> {
    let (template, key) = match config("template") {
        Some(template) => (template, "template"),
        None => match config("database-url") {
            Some(template) => (template, "database-url"),
            None => {
                return Err(ResolveError::Invalid(format!(
                    "no URL template: set config key `template` of this plugin, or the \
                     DATABASE_URL environment variable (passed to the plugin as config key \
                     `database-url`), to a URL containing {ORG}, e.g. `{EXAMPLE}`"
                )));
            }
        },
    };
    if !template.contains(ORG) {
        let fix = if key == "database-url" {
            "set DATABASE_URL (config key `database-url`) or config key `template`"
        } else {
            "set config key `template`"
        };
        return Err(ResolveError::Invalid(format!(
            "the URL template in config key `{key}` has no {ORG} placeholder, so every org \
             would share one database: {fix} to a URL containing {ORG}, e.g. `{EXAMPLE}`"
        )));
    }
    Ok((template, key))
}

/// Parse the `labels` config value, a JSON object of strings, into properties.
fn labels(raw: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let labels: BTreeMap<String, String> = serde_json::from_str(raw).map_err(|err| {
        ConfigError::invalid(
            "labels",
            format!("expected a JSON object of strings such as {{\"tier\":\"pro\"}}: {err}"),
        )
    })?;
    Ok(labels.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |key| {
            pairs
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.to_string())
        }
    }

    fn invalid(result: Result<OrgTarget, ResolveError>) -> String {
        match result {
            Err(ResolveError::Invalid(message)) => message,
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    #[test]
    fn substitutes_every_org_placeholder_with_the_db_name() {
        let cfg = config(&[("template", "postgresql://{org}.db:5432/{org}_database")]);
        let target = resolve("acme-corp", &cfg).unwrap();
        assert_eq!(
            target.url,
            "postgresql://acme_corp.db:5432/acme_corp_database"
        );
        assert_eq!(target, OrgTarget::new(target.url.clone()));
    }

    #[test]
    fn leaves_tenant_placeholders_to_the_host() {
        let cfg = config(&[("database-url", "postgresql://localhost/{org}_{tenant}")]);
        let target = resolve("tech-inc", &cfg).unwrap();
        assert_eq!(target.url, "postgresql://localhost/tech_inc_{tenant}");
    }

    #[test]
    fn template_wins_over_database_url() {
        let cfg = config(&[
            ("template", "sqlite://data/{org}.db"),
            ("database-url", "postgresql://localhost/{org}"),
        ]);
        assert_eq!(resolve("acme", &cfg).unwrap().url, "sqlite://data/acme.db");
    }

    #[test]
    fn optional_region_ttl_and_labels() {
        let cfg = config(&[
            (
                "template",
                "postgresql://{org}-{region}.db.example.com/prod",
            ),
            ("region", "eu-west-1"),
            ("ttl-ms", "60000"),
            ("labels", r#"{"tier":"pro","team":"core"}"#),
        ]);
        let target = resolve("acme", &cfg).unwrap();
        assert_eq!(
            target.url,
            "postgresql://acme-eu-west-1.db.example.com/prod"
        );
        assert_eq!(target.region.as_deref(), Some("eu-west-1"));
        assert_eq!(target.ttl_ms, Some(60_000));
        assert_eq!(target.label("tier"), Some("pro"));
        assert_eq!(target.label("team"), Some("core"));
    }

    #[test]
    fn refuses_invalid_ids_before_touching_the_template() {
        let cfg = config(&[("template", "postgresql://db/{org}")]);
        for bad in ["", "Acme", "acme_corp", "../etc", "-acme"] {
            let message = invalid(resolve(bad, &cfg));
            assert!(message.contains("org id"), "{message}");
        }
    }

    #[test]
    fn missing_template_names_the_key_and_the_variable() {
        let message = invalid(resolve("acme", config(&[])));
        assert!(message.contains("config key `template`"), "{message}");
        assert!(message.contains("DATABASE_URL"), "{message}");
        assert!(message.contains("`database-url`"), "{message}");
    }

    #[test]
    fn template_without_org_is_refused_without_echoing_it() {
        let cfg = config(&[("database-url", "postgresql://app:s3cret@db/shared")]);
        let message = invalid(resolve("acme", &cfg));
        assert!(
            message.contains("config key `database-url` has no {org}"),
            "{message}"
        );
        assert!(message.contains("DATABASE_URL"), "{message}");
        assert!(!message.contains("s3cret"), "{message}");

        let cfg = config(&[("template", "postgresql://db/shared")]);
        let message = invalid(resolve("acme", &cfg));
        assert!(
            message.contains("config key `template` has no {org}"),
            "{message}"
        );
    }

    #[test]
    fn bad_optional_values_are_invalid() {
        let base = ("template", "postgresql://db/{org}");
        let message = invalid(resolve("acme", config(&[base, ("ttl-ms", "soon")])));
        assert!(message.contains("`ttl-ms` is invalid"), "{message}");
        let message = invalid(resolve("acme", config(&[base, ("labels", "tier=pro")])));
        assert!(
            message.contains("`labels` is invalid: expected a JSON object"),
            "{message}"
        );
        let message = invalid(resolve("acme", config(&[base, ("labels", r#"{"n":1}"#)])));
        assert!(message.contains("`labels` is invalid"), "{message}");
        let cfg = config(&[("template", "postgresql://{org}-{region}.db/prod")]);
        let message = invalid(resolve("acme", &cfg));
        assert!(
            message.contains("config key `region` is not set"),
            "{message}"
        );
    }
}
