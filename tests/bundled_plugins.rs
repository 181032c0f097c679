//! Every bundled plugin, loaded by wasmtime through the real host runtime: answers,
//! not-found and invalid ids.

use std::time::Duration;

use tenantry::plugin::{
    Capability, EngineOptions, Grants, Isolation, LoadedPlugin, PluginKind, PluginRuntime,
    PluginSpec, ResolveFailure, ScopeDenial, ScopeRequest,
};
use tenantry_tests::plugin;

async fn load(name: &str, kind: PluginKind, config: &[(&str, &str)]) -> LoadedPlugin {
    let runtime = PluginRuntime::new(EngineOptions::default()).unwrap();
    let spec = PluginSpec {
        grants: Grants::of(&[Capability::Config, Capability::Log]),
        config: config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..PluginSpec::default()
    };
    runtime
        .load_file(Some(kind), spec, &plugin(name))
        .await
        .expect("plugin loads")
}

fn invalid(answer: Result<impl std::fmt::Debug, ResolveFailure>) -> String {
    match answer {
        Err(ResolveFailure::Invalid(m)) => m,
        other => panic!("expected invalid, got {other:?}"),
    }
}

#[tokio::test]
async fn pattern_substitutes_validated_ids_like_the_seed() {
    let p = load(
        "pattern",
        PluginKind::OrgResolver,
        &[("database-url", "postgresql://app:pw@db:5432/{org}_database")],
    )
    .await;
    let t = p.resolve("acme-corp").await.unwrap().unwrap();
    assert_eq!(t.url, "postgresql://app:pw@db:5432/acme_corp_database");
    assert_eq!(
        t.redacted_url(),
        "postgresql://app:***@db:5432/acme_corp_database"
    );
    for bad in ["Acme", "acme_corp", "../x", "-a", ""] {
        let m = invalid(p.resolve(bad).await.unwrap());
        assert!(m.contains("invalid") || m.contains("empty"), "{bad}: {m}");
    }
}

#[tokio::test]
async fn pattern_template_key_wins_and_leaves_tenant_placeholders() {
    let p = load(
        "pattern",
        PluginKind::OrgResolver,
        &[
            ("template", "sqlite://data/{org}/{tenant}.db"),
            ("database-url", "postgresql://ignored/{org}"),
            ("region", "eu-west-1"),
            ("ttl-ms", "60000"),
        ],
    )
    .await;
    let t = p.resolve("globex").await.unwrap().unwrap();
    assert_eq!(t.url, "sqlite://data/globex/{tenant}.db");
    assert_eq!(t.region.as_deref(), Some("eu-west-1"));
    assert_eq!(t.ttl, Some(Duration::from_secs(60)));
}

#[tokio::test]
async fn pattern_without_a_template_says_what_to_set_without_echoing_secrets() {
    let p = load("pattern", PluginKind::OrgResolver, &[]).await;
    let m = invalid(p.resolve("acme").await.unwrap());
    assert!(m.contains("template") && m.contains("DATABASE_URL"), "{m}");
    let p = load(
        "pattern",
        PluginKind::OrgResolver,
        &[("template", "postgresql://u:hunter2@db/fixed")],
    )
    .await;
    let m = invalid(p.resolve("acme").await.unwrap());
    assert!(m.contains("{org}") && !m.contains("hunter2"), "{m}");
}

const DIRECTORY_JSON: &str = r#"{
  "acme": {"url": "postgresql://db1/acme", "region": "eu-west-1", "tier": "enterprise", "ttl_ms": 300000},
  "globex": "postgresql://db2/globex"
}"#;

const DIRECTORY_TOML: &str = r#"
acme = { url = "postgresql://db1/acme", region = "eu-west-1", tier = "enterprise" }
globex = "postgresql://db2/globex"
"#;

#[tokio::test]
async fn directory_maps_orgs_from_json_or_toml() {
    for config in [DIRECTORY_JSON, DIRECTORY_TOML] {
        let p = load(
            "directory",
            PluginKind::OrgResolver,
            &[("directory", config)],
        )
        .await;
        let acme = p.resolve("acme").await.unwrap().unwrap();
        assert_eq!(acme.url, "postgresql://db1/acme");
        assert_eq!(acme.region.as_deref(), Some("eu-west-1"));
        assert_eq!(acme.label("tier"), Some("enterprise"));
        let globex = p.resolve("globex").await.unwrap().unwrap();
        assert_eq!(
            (globex.url.as_str(), globex.region.as_deref()),
            ("postgresql://db2/globex", None)
        );
        assert_eq!(
            p.resolve("initech").await.unwrap(),
            Err(ResolveFailure::NotFound)
        );
        invalid(p.resolve("Not_An_Id").await.unwrap());
    }
}

#[tokio::test]
async fn directory_misconfiguration_is_invalid_not_not_found() {
    let p = load("directory", PluginKind::OrgResolver, &[]).await;
    assert!(invalid(p.resolve("acme").await.unwrap()).contains("directory"));
    let p = load(
        "directory",
        PluginKind::OrgResolver,
        &[("directory", "{ not json")],
    )
    .await;
    invalid(p.resolve("acme").await.unwrap());
}

fn request(org: &str, tenant: &str, claims: &[(&str, &str)]) -> ScopeRequest {
    ScopeRequest {
        org: org.into(),
        tenant: tenant.into(),
        principal: (!claims.is_empty()).then(|| {
            (
                "user-1".to_owned(),
                claims
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        }),
        ..ScopeRequest::default()
    }
}

#[tokio::test]
async fn tiered_policy_maps_tiers_to_isolation() {
    let p = load(
        "tiered-policy",
        PluginKind::TenantPolicy,
        &[
            ("database-template", "postgresql://app@db/{org}_{tenant}"),
            ("tenants", r#"{"acme/vip": "enterprise"}"#),
        ],
    )
    .await;
    let row = p.scope(&request("acme", "t1", &[])).await.unwrap().unwrap();
    assert_eq!(row.isolation, Isolation::Row);
    let schema = p
        .scope(&request("acme", "shop-2", &[("plan", "pro")]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(schema.isolation, Isolation::Schema("tenant_shop_2".into()));
    let db = p
        .scope(&request("acme", "vip", &[("plan", "free")]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        db.isolation,
        Isolation::Database("postgresql://app@db/acme_vip".into()),
        "config beats claims"
    );
    match p
        .scope(&request("acme", "t1", &[("plan", "platinum")]))
        .await
        .unwrap()
    {
        Err(ScopeDenial::Invalid(m)) => assert!(m.contains("platinum"), "{m}"),
        other => panic!("{other:?}"),
    }
    match p.scope(&request("acme", "Bad/Id", &[])).await.unwrap() {
        Err(ScopeDenial::Invalid(_)) => {}
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn tiered_policy_configured_tiers_carry_limits_and_denials() {
    let tiers = r#"{
        "free": {"isolation": "row", "max_connections": 2, "read_only": true, "settings": {"statement_timeout": "5s"}},
        "suspended": {"deny": "account suspended"}
    }"#;
    let p = load(
        "tiered-policy",
        PluginKind::TenantPolicy,
        &[("tiers", tiers), ("default-tier", "free")],
    )
    .await;
    let s = p.scope(&request("acme", "t1", &[])).await.unwrap().unwrap();
    assert_eq!(
        (s.isolation, s.read_only, s.max_connections),
        (Isolation::Row, true, Some(2))
    );
    assert_eq!(
        s.settings,
        vec![("statement_timeout".to_owned(), "5s".to_owned())]
    );
    match p
        .scope(&request("acme", "t1", &[("tier", "suspended")]))
        .await
        .unwrap()
    {
        Err(ScopeDenial::Forbidden(m)) => assert!(m.contains("account suspended"), "{m}"),
        other => panic!("{other:?}"),
    }
}
