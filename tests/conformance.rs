//! One conformance suite for the plugins of every guest language.
//!
//! Each language ships an org resolver equivalent to the bundled `directory` and a tenant
//! policy equivalent to (a subset of) the bundled `tiered-policy`. The suite below is written
//! once and run against every language's build, loaded through the real host runtime, and
//! asserts the same answers: targets and scopes field for field, not-found, invalid ids with
//! the host's own message word for word, misconfiguration reported as `invalid`, and an
//! ungranted `config` import failing with `PluginError::NotGranted`. A failing language
//! reports every case that differs, not just the first.
//!
//! The second half runs the hostile-plugin containment checks of `tests/sandbox.rs` against
//! a JavaScript guest (QuickJS), so the sandbox is proven for an interpreter too.
//!
//! Components come from `scripts/build-plugins.sh` (`target/plugins/`): `directory.wasm` and
//! `tiered-policy.wasm` for Rust, `<lang>-directory.wasm`, `<lang>-policy.wasm` and
//! `<lang>-template.wasm` for c, js and python, and `test-js-hostile.wasm`.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use tenantry::plugin::{
    Capability, EngineOptions, Grants, Isolation, LoadedPlugin, OrgTarget, PluginError, PluginKind,
    PluginLimits, PluginRuntime, PluginSpec, ResolveFailure, ScopeDenial, ScopeRequest,
    TenantScope,
};
use tenantry::{OrgId, TenantId};
use tenantry_tests::plugin;

/// One language's build of the conformance plugins.
#[derive(Debug, Clone, Copy)]
struct Lang {
    name: &'static str,
    /// The org resolver equivalent to `directory`.
    directory: &'static str,
    /// The tenant policy equivalent to `tiered-policy`.
    policy: &'static str,
    /// The language's template (the bundled Rust plugins serve as Rust's).
    template: Option<&'static str>,
}

const RUST: Lang = Lang {
    name: "rust",
    directory: "directory",
    policy: "tiered-policy",
    template: None,
};
const C: Lang = Lang {
    name: "c",
    directory: "c-directory",
    policy: "c-policy",
    template: Some("c-template"),
};
const JS: Lang = Lang {
    name: "js",
    directory: "js-directory",
    policy: "js-policy",
    template: Some("js-template"),
};
const PYTHON: Lang = Lang {
    name: "python",
    directory: "python-directory",
    policy: "python-policy",
    template: Some("python-template"),
};

#[tokio::test]
async fn rust() {
    Suite::new(RUST).run().await;
}

#[tokio::test]
async fn c() {
    Suite::new(C).run().await;
}

#[tokio::test]
async fn js() {
    Suite::new(JS).run().await;
}

#[tokio::test]
async fn python() {
    Suite::new(PYTHON).run().await;
}

/// A plugin call's outcome with the sandbox's verdict reduced to its message, so that
/// outcomes compare with `==`.
type Outcome<T, E> = Result<Result<T, E>, String>;

fn outcome<T, E>(result: Result<Result<T, E>, PluginError>) -> Outcome<T, E> {
    result.map_err(|e| e.to_string())
}

/// The runtime, the plugins' answers checked so far, and the cases that differed.
struct Suite {
    lang: Lang,
    runtime: PluginRuntime,
    _cache: tempfile::TempDir,
    checked: usize,
    failures: Vec<String>,
}

impl Suite {
    fn new(lang: Lang) -> Self {
        // One runtime per language with a compile cache: each component is compiled once
        // (seconds for Python) and every further load with another config is a cache hit.
        let cache = tempfile::tempdir().expect("temp dir");
        let runtime = PluginRuntime::new(EngineOptions {
            cache_dir: Some(cache.path().to_owned()),
            ..EngineOptions::default()
        })
        .expect("engine");
        Self {
            lang,
            runtime,
            _cache: cache,
            checked: 0,
            failures: Vec::new(),
        }
    }

    async fn load(
        &self,
        name: &str,
        kind: PluginKind,
        grants: &[Capability],
        config: &[(&str, &str)],
    ) -> LoadedPlugin {
        let spec = PluginSpec {
            grants: Grants::of(grants),
            config: config
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..PluginSpec::default()
        };
        self.runtime
            .load_file(Some(kind), spec, &plugin(name))
            .await
            .unwrap_or_else(|e| panic!("{}: {name} does not load: {e}", self.lang.name))
    }

    /// A resolver granted `config` (and `log`), configured with `config`.
    async fn resolver(&self, name: &str, config: &[(&str, &str)]) -> LoadedPlugin {
        let grants = [Capability::Config, Capability::Log];
        self.load(name, PluginKind::OrgResolver, &grants, config)
            .await
    }

    /// A policy granted `config` (and `log`), configured with `config`.
    async fn policy(&self, config: &[(&str, &str)]) -> LoadedPlugin {
        let grants = [Capability::Config, Capability::Log];
        self.load(self.lang.policy, PluginKind::TenantPolicy, &grants, config)
            .await
    }

    fn check<T: PartialEq + Debug>(&mut self, case: &str, got: T, want: T) {
        self.checked += 1;
        if got != want {
            self.failures
                .push(format!("{case}:\n      got  {got:?}\n      want {want:?}"));
        }
    }

    /// Check that `got` is an `invalid` refusal whose message contains `needle`.
    fn check_invalid<T: Debug, E: Debug>(
        &mut self,
        case: &str,
        got: Outcome<T, E>,
        message: fn(&E) -> Option<&str>,
        needle: &str,
    ) {
        self.checked += 1;
        let ok = matches!(&got, Ok(Err(e)) if message(e).is_some_and(|m| m.contains(needle)));
        if !ok {
            self.failures.push(format!(
                "{case}:\n      got  {got:?}\n      want invalid(…{needle}…)"
            ));
        }
    }

    async fn run(mut self) {
        self.directory().await;
        self.directory_misconfigured().await;
        self.policy_configured_tiers().await;
        self.policy_built_in_tiers().await;
        self.policy_misconfigured().await;
        self.ungranted_config().await;
        self.reused_instances_do_not_leak().await;
        if let Some(template) = self.lang.template {
            self.template(template).await;
        }
        let Suite {
            lang,
            checked,
            failures,
            ..
        } = self;
        assert!(
            failures.is_empty(),
            "{}: {} of {checked} conformance checks failed:\n  {}",
            lang.name,
            failures.len(),
            failures.join("\n  ")
        );
        eprintln!("{}: {checked} conformance checks passed", lang.name);
    }

    // ---- org resolver: the `directory` behaviour ------------------------------------------

    async fn directory(&mut self) {
        let p = self
            .resolver(self.lang.directory, &[("directory", DIRECTORY)])
            .await;
        let acme = OrgTarget {
            url: "postgresql://app:pw@db1:5432/acme".into(),
            region: Some("eu-west-1".into()),
            ttl: Some(Duration::from_secs(300)),
            labels: vec![("tier".into(), "enterprise".into())],
        };
        self.check("acme", outcome(p.resolve("acme").await), Ok(Ok(acme)));
        let globex = OrgTarget {
            url: "postgresql://db2/globex".into(),
            region: None,
            ttl: None,
            labels: vec![],
        };
        self.check("globex", outcome(p.resolve("globex").await), Ok(Ok(globex)));
        // Labels come sorted by key, and `tier` wins over a `tier` label.
        let tech = OrgTarget {
            url: "sqlite://data/tech_inc.db".into(),
            region: None,
            ttl: Some(Duration::from_millis(1500)),
            labels: vec![
                ("a-team".into(), "payments".into()),
                ("tier".into(), "pro".into()),
                ("zone".into(), "b".into()),
            ],
        };
        self.check(
            "tech-inc (labels, ttl-ms)",
            outcome(p.resolve("tech-inc").await),
            Ok(Ok(tech)),
        );
        self.check(
            "unknown org",
            outcome(p.resolve("initech").await),
            Ok(Err(ResolveFailure::NotFound)),
        );
        for bad in bad_ids() {
            let want = OrgId::new(&bad).expect_err("a bad id").to_string();
            self.check(
                &format!("bad org id {bad:?}"),
                outcome(p.resolve(&bad).await),
                Ok(Err(ResolveFailure::Invalid(want))),
            );
        }
    }

    async fn directory_misconfigured(&mut self) {
        let p = self.resolver(self.lang.directory, &[]).await;
        self.check_invalid(
            "no directory",
            outcome(p.resolve("acme").await),
            resolve_message,
            "set config key `directory` of this plugin",
        );
        let cases = [
            (
                "{ not json",
                "config key `directory` is invalid: not valid JSON",
            ),
            (
                r#"{"acme": "postgresql://db/acme", "Acme_Corp": "postgresql://db/x"}"#,
                "config key `directory` is invalid: entry `Acme_Corp` is not a usable org id: org id \"Acme_Corp\" is invalid at position 0",
            ),
            (
                r#"{"acme": "postgresql://db/acme", "globex": {"url": " "}}"#,
                "config key `directory` is invalid: entry `globex` has an empty URL",
            ),
            (
                r#"{"acme": {"url": "postgresql://db/acme", "ttl": 5}}"#,
                "unknown field `ttl`",
            ),
            (r#"{"acme": {"region": "eu"}}"#, "missing field `url`"),
            (r#"{"acme": 5}"#, "config key `directory` is invalid"),
            (
                r#"{"acme": {"url": "postgresql://db/acme", "ttl_ms": -1}}"#,
                "config key `directory` is invalid",
            ),
            (
                r#"{"acme": {"url": "postgresql://db/acme", "labels": {"team": 7}}}"#,
                "config key `directory` is invalid",
            ),
        ];
        for (directory, needle) in cases {
            let p = self
                .resolver(self.lang.directory, &[("directory", directory)])
                .await;
            // Every org is refused, listed or not: a broken directory is noticed at once.
            for org in ["acme", "initech"] {
                self.check_invalid(
                    &format!("directory {directory:?}, org {org}"),
                    outcome(p.resolve(org).await),
                    resolve_message,
                    needle,
                );
            }
        }
    }

    // ---- tenant policy: the `tiered-policy` behaviour -------------------------------------

    async fn policy_configured_tiers(&mut self) {
        let p = self
            .policy(&[
                ("tiers", TIERS),
                ("default-tier", "free"),
                ("database-template", "postgresql://app@db/{org}_{tenant}"),
            ])
            .await;
        let free = TenantScope {
            isolation: Isolation::Row,
            settings: vec![
                ("lock_timeout".into(), "1s".into()),
                ("statement_timeout".into(), "5s".into()),
            ],
            read_only: true,
            max_connections: Some(2),
            ttl: None,
        };
        let cases: Vec<(&str, ScopeRequest, Result<TenantScope, ScopeDenial>)> = vec![
            ("default tier", request("acme", "t1", &[], &[]), Ok(free)),
            (
                "claim plan",
                request("acme-corp", "shop-2", &[("plan", "pro")], &[]),
                Ok(scope(Isolation::Schema("t_shop_2".into()))),
            ),
            (
                "claim tier beats plan",
                request(
                    "acme-corp",
                    "shop-2",
                    &[("plan", "pro"), ("tier", "enterprise")],
                    &[],
                ),
                Ok(TenantScope {
                    ttl: Some(Duration::from_secs(600)),
                    ..scope(Isolation::Database(
                        "postgresql://app:pw@db-ent:5432/acme_corp_shop_2".into(),
                    ))
                }),
            ),
            (
                "org label",
                request("acme", "t1", &[], &[("tier", "pro")]),
                Ok(scope(Isolation::Schema("t_t1".into()))),
            ),
            (
                "claim beats org label",
                request("acme", "t1", &[("plan", "pro")], &[("tier", "free")]),
                Ok(scope(Isolation::Schema("t_t1".into()))),
            ),
            (
                "database-template",
                request("acme", "vip", &[("tier", "dedicated")], &[]),
                Ok(scope(Isolation::Database(
                    "postgresql://app@db/acme_vip".into(),
                ))),
            ),
            (
                "without orgs",
                request("", "shop", &[("tier", "pro")], &[]),
                Ok(scope(Isolation::Schema("t_shop".into()))),
            ),
            (
                "deny",
                request("acme", "t1", &[("tier", "suspended")], &[]),
                Err(ScopeDenial::Forbidden("account suspended".into())),
            ),
            (
                "unknown tier",
                request("acme", "t1", &[("tier", "gold")], &[]),
                Err(ScopeDenial::Invalid(
                    "tier `gold` (from principal claim `tier`) is not defined; tiers defined in \
                     config key `tiers`: dedicated, empty, enterprise, free, pro, shared, suspended"
                        .into(),
                )),
            ),
        ];
        for (case, req, want) in cases {
            self.check(case, outcome(p.scope(&req).await), Ok(want));
        }
        let refusals = [
            (
                "shared schema",
                request("acme", "a", &[("tier", "shared")], &[]),
                "the schema template of tier `shared` has no {tenant} placeholder",
            ),
            (
                "{org} without orgs",
                request("", "a", &[("tier", "enterprise")], &[]),
                "the database template of tier `enterprise` uses {org}, but the host runs without orgs",
            ),
            (
                "no isolation",
                request("acme", "a", &[("tier", "empty")], &[]),
                "tier `empty` in config key `tiers` sets neither `isolation` nor `deny`",
            ),
        ];
        for (case, req, needle) in refusals {
            self.check_invalid(case, outcome(p.scope(&req).await), denial_message, needle);
        }
        for bad in bad_ids() {
            let want = TenantId::new(&bad).expect_err("a bad id").to_string();
            self.check(
                &format!("bad tenant id {bad:?}"),
                outcome(p.scope(&request("acme", &bad, &[], &[])).await),
                Ok(Err(ScopeDenial::Invalid(want))),
            );
        }
        let want = OrgId::new("acme_corp").expect_err("a bad id").to_string();
        self.check(
            "bad org id",
            outcome(p.scope(&request("acme_corp", "t1", &[], &[])).await),
            Ok(Err(ScopeDenial::Invalid(want))),
        );
    }

    async fn policy_built_in_tiers(&mut self) {
        let p = self
            .policy(&[("database-template", "postgresql://app@db/{org}_{tenant}")])
            .await;
        let cases = [
            ("built-in standard", &[][..], Ok(scope(Isolation::Row))),
            (
                "built-in free",
                &[("plan", "free")][..],
                Ok(scope(Isolation::Row)),
            ),
            (
                "built-in pro",
                &[("plan", "pro")][..],
                Ok(scope(Isolation::Schema("tenant_main_shop".into()))),
            ),
            (
                "built-in enterprise",
                &[("plan", "enterprise")][..],
                Ok(scope(Isolation::Database(
                    "postgresql://app@db/acme_corp_main_shop".into(),
                ))),
            ),
            (
                "built-in unknown tier",
                &[("plan", "gold")][..],
                Err(ScopeDenial::Invalid(
                    "tier `gold` (from principal claim `plan`) is not defined; built-in tiers \
                     (set config key `tiers` to define your own): enterprise, free, pro, standard"
                        .into(),
                )),
            ),
        ];
        for (case, claims, want) in cases {
            let req = request("acme-corp", "main-shop", claims, &[]);
            self.check(case, outcome(p.scope(&req).await), Ok(want));
        }
        let p = self.policy(&[]).await;
        self.check_invalid(
            "enterprise without database-template",
            outcome(
                p.scope(&request("acme", "t1", &[("plan", "enterprise")], &[]))
                    .await,
            ),
            denial_message,
            "config key `database-template`",
        );
    }

    async fn policy_misconfigured(&mut self) {
        let cases = [
            ("{ nope", "config key `tiers` is invalid: not valid JSON"),
            (
                r#"{"free": {"isolaton": "row"}}"#,
                "unknown field `isolaton`",
            ),
            (
                r#"{"free": {"isolation": "rows"}}"#,
                "unknown variant `rows`",
            ),
            (
                r#"{"free": {"isolation": "row", "max_connections": "2"}}"#,
                "config key `tiers` is invalid",
            ),
        ];
        for (tiers, needle) in cases {
            let p = self.policy(&[("tiers", tiers)]).await;
            self.check_invalid(
                &format!("tiers {tiers:?}"),
                outcome(p.scope(&request("acme", "t1", &[], &[])).await),
                denial_message,
                needle,
            );
        }
    }

    // ---- capabilities ---------------------------------------------------------------------

    async fn ungranted_config(&mut self) {
        let config = [("directory", DIRECTORY), ("tiers", TIERS)];
        let resolver = self
            .load(self.lang.directory, PluginKind::OrgResolver, &[], &config)
            .await;
        let got = match resolver.resolve("acme").await {
            Err(PluginError::NotGranted { capability, .. }) => Ok(capability),
            other => Err(format!("{other:?}")),
        };
        self.check("resolver without config grant", got, Ok(Capability::Config));
        let policy = self
            .load(self.lang.policy, PluginKind::TenantPolicy, &[], &config)
            .await;
        let got = match policy.scope(&request("acme", "t1", &[], &[])).await {
            Err(PluginError::NotGranted { capability, .. }) => Ok(capability),
            other => Err(format!("{other:?}")),
        };
        self.check("policy without config grant", got, Ok(Capability::Config));
    }

    // ---- a reused instance serves many calls without growing --------------------------------

    async fn reused_instances_do_not_leak(&mut self) {
        // With `reuse-instances = true` one instance answers call after call, so whatever a
        // call leaks accumulates. Compiled guests get a tight memory cap and many calls (a
        // few KiB leaked per call would hit it); interpreters collect garbage and run fewer.
        let (memory_bytes, calls) = match self.lang.name {
            "rust" | "c" => (4 << 20, 3000),
            _ => (PluginLimits::default().memory_bytes, 300),
        };
        let spec = PluginSpec {
            grants: Grants::of(&[Capability::Config]),
            config: [("directory".to_owned(), DIRECTORY.to_owned())].into(),
            limits: PluginLimits {
                memory_bytes,
                ..PluginLimits::default()
            },
            reuse_instances: true,
            ..PluginSpec::default()
        };
        let p = self
            .runtime
            .load_file(
                Some(PluginKind::OrgResolver),
                spec,
                &plugin(self.lang.directory),
            )
            .await
            .expect("loads");
        let mut first_failure = None;
        for i in 0..calls {
            let org = ["acme", "globex", "initech", "Bad"][i % 4];
            if let Err(e) = p.resolve(org).await {
                first_failure = Some(format!("call {i} ({org}): {e}"));
                break;
            }
        }
        self.check(
            &format!("{calls} calls on a reused instance"),
            first_failure,
            None,
        );
    }

    // ---- the template a plugin author starts from -----------------------------------------

    async fn template(&mut self, name: &str) {
        let p = self.resolver(name, &[("db-host", "db:5432")]).await;
        let want = OrgTarget {
            url: "postgresql://db:5432/acme_corp".into(),
            region: None,
            ttl: None,
            labels: vec![("placement".into(), "shared".into())],
        };
        self.check(
            "template acme-corp",
            outcome(p.resolve("acme-corp").await),
            Ok(Ok(want)),
        );
        self.check(
            "template retired",
            outcome(p.resolve("retired").await),
            Ok(Err(ResolveFailure::NotFound)),
        );
        let want = OrgId::new("Acme").expect_err("a bad id").to_string();
        self.check(
            "template bad id",
            outcome(p.resolve("Acme").await),
            Ok(Err(ResolveFailure::Invalid(want))),
        );
        let p = self.resolver(name, &[]).await;
        self.check(
            "template without db-host",
            outcome(p.resolve("acme").await),
            Ok(Err(ResolveFailure::Invalid(
                "config key `db-host` is not set: add it to this plugin's [config] table".into(),
            ))),
        );
    }
}

const DIRECTORY: &str = r#"{
  "acme": {"url": "postgresql://app:pw@db1:5432/acme", "region": "eu-west-1", "tier": "enterprise", "ttl_ms": 300000},
  "globex": "postgresql://db2/globex",
  "tech-inc": {"url": "sqlite://data/tech_inc.db", "ttl-ms": 1500, "region": null,
               "labels": {"zone": "b", "tier": "ignored", "a-team": "payments"}, "tier": "pro"}
}"#;

const TIERS: &str = r#"{
  "free": {"isolation": "row", "max_connections": 2, "read_only": true,
           "settings": {"statement_timeout": "5s", "lock_timeout": "1s"}},
  "pro": {"isolation": "schema", "schema": "t_{tenant}"},
  "enterprise": {"isolation": "database", "database": "postgresql://app:pw@db-ent:5432/{org}_{tenant}", "ttl-ms": 600000},
  "dedicated": {"isolation": "database"},
  "shared": {"isolation": "schema", "schema": "common"},
  "suspended": {"deny": "account suspended"},
  "empty": {"max_connections": 1}
}"#;

/// The message of an `invalid` resolve error.
fn resolve_message(e: &ResolveFailure) -> Option<&str> {
    match e {
        ResolveFailure::Invalid(m) => Some(m),
        _ => None,
    }
}

/// The message of an `invalid` denial.
fn denial_message(e: &ScopeDenial) -> Option<&str> {
    match e {
        ScopeDenial::Invalid(m) => Some(m),
        _ => None,
    }
}

/// Ids every plugin must refuse, each with the host's own message.
fn bad_ids() -> Vec<String> {
    let mut ids: Vec<String> = [
        "",
        "Acme",
        "acme_corp",
        "-acme",
        "acme-",
        "a b",
        "../x",
        "a/b",
        "acme\n",
        "tab\there",
        "quote\"d",
        "it's",
        "ä",
        "naïve-org",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    ids.push("a".repeat(64));
    ids.push(format!("{}X", "a".repeat(50))); // the message shows 40 characters and `…`
    ids
}

fn request(
    org: &str,
    tenant: &str,
    claims: &[(&str, &str)],
    labels: &[(&str, &str)],
) -> ScopeRequest {
    let pairs = |p: &[(&str, &str)]| -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    ScopeRequest {
        org: org.into(),
        tenant: tenant.into(),
        app: None,
        principal: (!claims.is_empty()).then(|| ("user-1".to_owned(), pairs(claims))),
        org_labels: pairs(labels),
    }
}

/// A scope with `isolation` and every other field at its default.
fn scope(isolation: Isolation) -> TenantScope {
    TenantScope {
        isolation,
        settings: vec![],
        read_only: false,
        max_connections: None,
        ttl: None,
    }
}

// ---- containment: the sandbox holds a JavaScript runtime too ----------------------------------

fn js_limits() -> PluginLimits {
    PluginLimits {
        fuel: 50_000_000,
        deadline: Duration::from_millis(300),
        memory_bytes: 16 << 20,
        ..PluginLimits::default()
    }
}

async fn js_hostile(rt: &PluginRuntime, grants: Grants, limits: PluginLimits) -> Arc<LoadedPlugin> {
    let spec = PluginSpec {
        grants,
        limits,
        ..PluginSpec::default()
    };
    let p = rt
        .load_file(
            Some(PluginKind::OrgResolver),
            spec,
            &plugin("test-js-hostile"),
        )
        .await
        .expect("load test-js-hostile");
    Arc::new(p)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_misdeeds_are_contained_with_their_typed_errors() {
    let rt = PluginRuntime::new(EngineOptions::default()).expect("engine");
    let p = js_hostile(&rt, Grants::NONE, js_limits()).await;

    match p.resolve("loop").await {
        Err(PluginError::OutOfFuel { fuel, .. }) => assert_eq!(fuel, 50_000_000),
        other => panic!("loop: {other:?}"),
    }
    match p.resolve("bomb").await {
        Err(PluginError::MemoryLimit {
            resource, limit, ..
        }) => assert_eq!((resource, limit), ("memory-bytes", 16 << 20)),
        other => panic!("bomb: {other:?}"),
    }
    match p.resolve("throw").await {
        Err(PluginError::Trap { message, .. }) => assert!(
            message.contains("boom: the hostile plugin throws on purpose"),
            "the exception's message is lost: {message}"
        ),
        other => panic!("throw: {other:?}"),
    }
    match p.resolve("recurse").await {
        Err(PluginError::Trap { .. }) => {}
        other => panic!("recurse: {other:?}"),
    }
    match p.resolve("config").await {
        Err(PluginError::NotGranted { capability, .. }) => {
            assert_eq!(capability, Capability::Config)
        }
        other => panic!("config: {other:?}"),
    }
    match p.resolve("huge").await {
        Err(PluginError::BadAnswer { reason, .. }) => {
            assert!(reason.contains("limits.answer-bytes"), "{reason}")
        }
        other => panic!("huge: {other:?}"),
    }
    match p.resolve("wrong-scheme").await {
        Err(PluginError::BadAnswer { reason, .. }) => {
            assert!(reason.contains("scheme `http`"), "{reason}")
        }
        other => panic!("wrong-scheme: {other:?}"),
    }
    assert_eq!(
        p.resolve("missing").await.expect("verdict"),
        Err(ResolveFailure::NotFound)
    );
    // The same plugin still answers, and the memory bomb's hoard did not survive: every call
    // had its own instance.
    let ok = p.resolve("acme").await.expect("verdict").expect("answer");
    assert_eq!(ok.url, "postgres://db/acme");
    assert_eq!(ok.label("hoard"), Some("0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runaway_js_plugin_hits_its_deadline_and_does_not_block_neighbours() {
    let rt = PluginRuntime::new(EngineOptions::default()).expect("engine");
    let unlimited_fuel = PluginLimits {
        fuel: u64::MAX,
        deadline: Duration::from_millis(400),
        ..js_limits()
    };
    let runaway = js_hostile(&rt, Grants::NONE, unlimited_fuel).await;
    let neighbour = js_hostile(&rt, Grants::NONE, js_limits()).await;

    tenantry_tests::assert_runaway_contained(runaway, &neighbour, Duration::from_millis(400), 4)
        .await;
}
