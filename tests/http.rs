//! The web integration and the admin server over real HTTP on loopback.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use tenantry::admin::AdminOptions;
use tenantry::http::{Identity, TenancyLayer, TenancyOptions, Tenant};
use tenantry::plugin::{Capability, Grants, PluginKind, PluginSpec};
use tenantry::resolve::{ResolveOptions, RetryOptions};
use tenantry::{Host, OrgId};
use tenantry_tests::plugin;

/// Serve `app` on a free loopback port; returns its base URL.
async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("127.0.0.1:{}", addr.port())
}

struct Reply {
    status: u16,
    retry_after: Option<String>,
    body: String,
}

impl Reply {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not json ({e}): {}", self.body))
    }
    fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

async fn call(
    method: &str,
    addr: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Reply {
    let headers: Vec<_> = headers
        .iter()
        .map(|(k, v)| (k.parse().unwrap(), (*v).to_owned()))
        .collect();
    let response = tenantry::http::client::send(tenantry::http::client::Request {
        addr,
        method,
        path,
        headers: &headers,
        body,
        max_body: 64 << 20,
    })
    .await
    .unwrap();
    let status = response.status;
    let retry_after = response
        .headers
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = String::from_utf8(response.body.to_vec()).unwrap();
    tenantry_tests::capture(&format!("{method} {path} -> {status}"), &body);
    Reply {
        status,
        retry_after,
        body,
    }
}

async fn get_(addr: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    call("GET", addr, path, headers, Vec::new()).await
}

/// The app's own auth: `authorization: Bearer <org>.<tenant>` establishes an identity.
async fn fake_auth(
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let token = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if let Some((org, tenant)) = token.and_then(|t| t.split_once('.')) {
        let identity = Identity {
            subject: format!("user@{org}"),
            org: Some(org.into()),
            tenant: Some(tenant.into()),
            claims: vec![],
        };
        req.extensions_mut().insert(identity);
    }
    next.run(req).await
}

async fn whoami(t: Tenant) -> String {
    format!(
        "{}/{}",
        t.org.map(|o| o.to_string()).unwrap_or_default(),
        t.tenant.map(|t| t.to_string()).unwrap_or_default()
    )
}

fn app(host: Host, options: TenancyOptions) -> Router {
    Router::new()
        .route("/whoami", get(whoami))
        .route("/orgs/{org}/whoami", get(whoami))
        .layer(TenancyLayer::with_options(host, options))
        .layer(axum::middleware::from_fn(fake_auth))
}

/// Orgs and tenants on SQLite, orgs found by the `directory` plugin (acme only), tenants
/// isolated by `tiered-policy` (tenant `banned` is suspended).
async fn sqlite_host(dir: &std::path::Path) -> Host {
    let directory =
        serde_json::json!({ "acme": format!("sqlite://{}/acme.db", dir.display()) }).to_string();
    let resolver = PluginSpec {
        grants: Grants::of(&[Capability::Config]),
        config: [("directory".to_owned(), directory)].into(),
        ..PluginSpec::default()
    };
    let policy = PluginSpec {
        grants: Grants::of(&[Capability::Config]),
        config: [
            (
                "tiers".to_owned(),
                r#"{"standard": {"isolation": "row"}, "suspended": {"deny": "account suspended"}}"#
                    .to_owned(),
            ),
            (
                "tenants".to_owned(),
                r#"{"acme/banned": "suspended"}"#.to_owned(),
            ),
        ]
        .into(),
        ..PluginSpec::default()
    };
    Host::builder()
        .database_url(format!("sqlite://{}/{{org}}.db", dir.display()))
        .orgs(true)
        .tenants(true)
        .org_resolver(plugin("directory"), resolver)
        .tenant_policy(plugin("tiered-policy"), policy)
        .build()
        .await
        .expect("host")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_beats_headers_and_params() {
    let dir = tempfile::tempdir().unwrap();
    let options = TenancyOptions {
        org_param: Some("org".into()),
        ..TenancyOptions::default()
    };
    let addr = serve(app(sqlite_host(dir.path()).await, options)).await;
    let auth = ("authorization", "Bearer acme.t1");

    let r = get_(&addr, "/whoami", &[auth]).await;
    assert_eq!((r.status, r.body.as_str()), (200, "acme/t1"));
    let r = get_(
        &addr,
        "/whoami",
        &[auth, ("x-org-id", "acme"), ("x-tenant-id", "t1")],
    )
    .await;
    assert_eq!(r.status, 200, "agreeing headers are fine: {}", r.body);
    for (path, headers) in [
        ("/whoami", vec![auth, ("x-org-id", "globex")]),
        ("/whoami", vec![auth, ("x-tenant-id", "t2")]),
        ("/orgs/globex/whoami", vec![auth]),
    ] {
        let r = get_(&addr, path, &headers).await;
        assert_eq!(
            (r.status, r.code()),
            (403, "identity_mismatch".to_owned()),
            "{path} {headers:?}: {}",
            r.body
        );
    }
    // Without an identity, path parameters and headers are the sources.
    let r = get_(&addr, "/orgs/acme/whoami", &[("x-tenant-id", "t9")]).await;
    assert_eq!((r.status, r.body.as_str()), (200, "acme/t9"));
    let r = get_(
        &addr,
        "/whoami",
        &[("x-org-id", "acme"), ("x-tenant-id", "t9")],
    )
    .await;
    assert_eq!((r.status, r.body.as_str()), (200, "acme/t9"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_failure_has_its_status_and_stable_code() {
    let dir = tempfile::tempdir().unwrap();
    let addr = serve(app(
        sqlite_host(dir.path()).await,
        TenancyOptions::default(),
    ))
    .await;
    type Case<'a> = (&'a [(&'a str, &'a str)], u16, &'a str);
    let cases: [Case<'_>; 6] = [
        (&[("x-tenant-id", "t1")], 400, "org_required"),
        (&[("x-org-id", "acme")], 400, "tenant_required"),
        (
            &[("x-org-id", "Not Valid"), ("x-tenant-id", "t1")],
            400,
            "invalid_org_id",
        ),
        (
            &[("x-org-id", "acme"), ("x-tenant-id", "../t")],
            400,
            "invalid_tenant_id",
        ),
        (
            &[("x-org-id", "globex"), ("x-tenant-id", "t1")],
            404,
            "org_not_found",
        ),
        (
            &[("x-org-id", "acme"), ("x-tenant-id", "banned")],
            403,
            "tenant_forbidden",
        ),
    ];
    for (headers, status, code) in cases {
        let r = get_(&addr, "/whoami", headers).await;
        assert_eq!(
            (r.status, r.code()),
            (status, code.to_owned()),
            "{headers:?}: {}",
            r.body
        );
        assert!(!r.json()["error"]["message"].as_str().unwrap().is_empty());
    }
    // Switching tenant needs an identity and the policy callback's blessing.
    let r = get_(
        &addr,
        "/whoami",
        &[
            ("authorization", "Bearer acme.t1"),
            ("x-switch-tenant", "t2"),
        ],
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (403, "tenant_switch_denied".to_owned())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_may_switch_tenant_when_the_policy_allows() {
    let dir = tempfile::tempdir().unwrap();
    let options = TenancyOptions {
        switch_tenant: Some(Arc::new(
            |identity: &Identity, _target: &tenantry::TenantId| {
                identity.tenant.as_deref() == Some("admin")
            },
        )),
        ..TenancyOptions::default()
    };
    let addr = serve(app(sqlite_host(dir.path()).await, options)).await;
    let r = get_(
        &addr,
        "/whoami",
        &[
            ("authorization", "Bearer acme.admin"),
            ("x-switch-tenant", "t2"),
        ],
    )
    .await;
    assert_eq!((r.status, r.body.as_str()), (200, "acme/t2"));
    let r = get_(
        &addr,
        "/whoami",
        &[
            ("authorization", "Bearer acme.t1"),
            ("x-switch-tenant", "t2"),
        ],
    )
    .await;
    assert_eq!(r.status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unavailable_resolver_is_a_503_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let options = ResolveOptions {
        retry: RetryOptions {
            attempts: 1,
            ..RetryOptions::default()
        },
        ..ResolveOptions::default()
    };
    let host = Host::builder()
        .database_url(format!("sqlite://{}/{{org}}.db", dir.path().display()))
        .orgs(true)
        .org_resolver(plugin("test-hostile"), PluginSpec::default())
        .resolve_options(options)
        .build()
        .await
        .unwrap();
    let addr = serve(app(host.clone(), TenancyOptions::default())).await;
    let r = get_(&addr, "/whoami", &[("x-org-id", "unavailable")]).await;
    assert_eq!(
        (r.status, r.code()),
        (503, "org_unavailable".to_owned()),
        "{}",
        r.body
    );
    assert!(r.retry_after.is_some());
    assert!(!r.body.contains("hunter2"), "secret in body: {}", r.body);
    host.set_org_breaker(
        &OrgId::new("unavailable").unwrap(),
        tenantry::resolve::BreakerOverride::Open,
    );
    let r = get_(&addr, "/whoami", &[("x-org-id", "unavailable")]).await;
    assert_eq!((r.status, r.code()), (503, "org_breaker_open".to_owned()));
    assert_eq!(r.retry_after.as_deref(), Some("30"));
}

fn metrics_handle() -> tenantry::admin::PrometheusHandle {
    static HANDLE: std::sync::OnceLock<tenantry::admin::PrometheusHandle> =
        std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| tenantry::admin::install_prometheus().expect("recorder"))
        .clone()
}

async fn admin_host(dir: &std::path::Path) -> Host {
    let spec = PluginSpec {
        grants: Grants::of(&[Capability::Config]),
        config: [
            (
                "template".to_owned(),
                format!("sqlite://{}/v1-{{org}}.db", dir.display()),
            ),
            (
                "directory".to_owned(),
                serde_json::json!({"acme": format!("sqlite://{}/v2-acme.db", dir.display())})
                    .to_string(),
            ),
        ]
        .into(),
        samples: vec!["acme".into()],
        ..PluginSpec::default()
    };
    Host::builder()
        .database_url(format!("sqlite://{}/{{org}}.db", dir.display()))
        .orgs(true)
        .org_resolver(plugin("pattern"), spec)
        .build()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_mutations_need_the_token_and_are_off_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let host = admin_host(dir.path()).await;
    let open = serve(tenantry::admin::router(
        host.clone(),
        AdminOptions::default(),
    ))
    .await;
    let r = call(
        "DELETE",
        &open,
        "/cache",
        &[("authorization", "Bearer anything")],
        vec![],
    )
    .await;
    assert_eq!((r.status, r.code()), (403, "admin_disabled".to_owned()));
    assert_eq!(get_(&open, "/health", &[]).await.status, 200);

    let guarded = serve(tenantry::admin::router(
        host.clone(),
        AdminOptions {
            token: Some("s3cret-token".into()),
            metrics: None,
            public_read: false,
        },
    ))
    .await;
    for headers in [
        vec![],
        vec![("authorization", "Bearer wrong")],
        vec![("authorization", "s3cret-token")],
    ] {
        let r = call("POST", &guarded, "/orgs/acme/refresh", &headers, vec![]).await;
        assert_eq!(
            (r.status, r.code()),
            (401, "unauthorized".to_owned()),
            "{headers:?}"
        );
    }
    let auth = [("authorization", "Bearer s3cret-token")];
    let r = call("POST", &guarded, "/orgs/acme/refresh", &auth, vec![]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["source"], "resolver");
    let r = call(
        "POST",
        &guarded,
        "/orgs/acme/breaker",
        &auth,
        br#"{"state":"open"}"#.to_vec(),
    )
    .await;
    assert_eq!(r.json()["breaker"], "forced-open");
    let r = call(
        "POST",
        &guarded,
        "/orgs/acme/breaker",
        &auth,
        br#"{"state":"reset"}"#.to_vec(),
    )
    .await;
    assert_eq!(r.json()["breaker"], "closed");
    assert_eq!(
        call("DELETE", &guarded, "/cache/acme", &auth, vec![])
            .await
            .status,
        200
    );
    let r = get_(&guarded, "/orgs/acme/health", &[]).await;
    assert_eq!((r.status, r.json()["healthy"].as_bool()), (200, Some(true)));
    let r = get_(&guarded, "/orgs/Bad_Id/health", &[]).await;
    assert_eq!((r.status, r.code()), (400, "invalid_org_id".to_owned()));
    let r = call(
        "PUT",
        &guarded,
        "/plugins/org-resolver",
        &auth,
        b"(module)".to_vec(),
    )
    .await;
    assert_eq!((r.status, r.code()), (422, "swap_rejected".to_owned()));
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("keeps serving")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapping_through_the_endpoint_under_load_fails_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let host = admin_host(dir.path()).await;
    let admin = serve(tenantry::admin::router(
        host.clone(),
        AdminOptions {
            token: Some("t".into()),
            metrics: Some(metrics_handle()),
            public_read: false,
        },
    ))
    .await;
    let api = serve(app(host.clone(), TenancyOptions::default())).await;
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (api, stop, ok, failed) = (api.clone(), stop.clone(), ok.clone(), failed.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let r = get_(&api, "/whoami", &[("x-org-id", "acme")]).await;
                    if r.status == 200 {
                        ok.fetch_add(1, Ordering::Relaxed)
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed)
                    };
                }
            })
        })
        .collect();
    let (pattern, directory) = (
        std::fs::read(plugin("pattern")).unwrap(),
        std::fs::read(plugin("directory")).unwrap(),
    );
    for i in 0..10 {
        let body = if i % 2 == 0 {
            directory.clone()
        } else {
            pattern.clone()
        };
        let r = call(
            "PUT",
            &admin,
            "/plugins/org-resolver",
            &[("authorization", "Bearer t")],
            body,
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.json()["generation"], i + 1);
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let r = call(
        "POST",
        &admin,
        "/plugins/org-resolver/rollback",
        &[("authorization", "Bearer t")],
        vec![],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await.unwrap();
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0);
    assert!(ok.load(Ordering::Relaxed) > 10);
    assert_eq!(host.slot(PluginKind::OrgResolver).unwrap().generation(), 11);

    // /status gathers what an operator's dashboard shows; it needs the token.
    assert_eq!(get_(&admin, "/status", &[]).await.status, 401);
    let r = get_(&admin, "/status", &[("authorization", "Bearer t")]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let status = r.json();
    let slot = &status["plugins"][0];
    assert_eq!(
        (slot["slot"].as_str(), slot["generation"].as_u64()),
        (Some("org-resolver"), Some(11))
    );
    assert_eq!(slot["last_swap"]["ok"], true);
    assert!(
        slot["last_swap"]["message"]
            .as_str()
            .unwrap()
            .starts_with("rolled back"),
        "{slot}"
    );
    assert_eq!(slot["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(status["busiest_orgs"][0]["org"], "acme");

    // /metrics is Prometheus text: every sample line is `name{labels} value`.
    let r = get_(&admin, "/metrics", &[]).await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("tenantry_org_cache_entries"), "{}", r.body);
    for line in r
        .body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let (name, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line:?}"));
        assert!(value.parse::<f64>().is_ok(), "bad value in {line:?}");
        assert!(
            name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_'),
            "bad name in {line:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_create_makes_missing_orgs_only_when_enabled() {
    let pg = tenantry_tests::postgres();
    let (base, _) = pg.app_url.rsplit_once('/').unwrap();
    let prefix = format!("auto{}", std::process::id());
    let config = tenantry::HostConfig {
        database_url: Some(format!("{base}/{prefix}_{{org}}")),
        admin_database_url: Some(pg.admin_url.clone()),
        orgs: true,
        tenants: true,
        ..tenantry::HostConfig::default()
    };
    let host = Host::load(config).await.unwrap();
    let off = serve(app(host.clone(), TenancyOptions::default())).await;
    let on = serve(app(
        host.clone(),
        TenancyOptions {
            auto_create: true,
            ..TenancyOptions::default()
        },
    ))
    .await;
    let headers = [("x-org-id", "newco"), ("x-tenant-id", "t1")];

    let r = get_(&off, "/whoami", &headers).await;
    assert_eq!(
        (r.status, r.code()),
        (404, "not_found".to_owned()),
        "{}",
        r.body
    );
    assert!(!host.org_exists("newco").await.unwrap());
    assert!(
        !r.body.contains(&tenantry_tests::postgres().app_url),
        "URL with password in the body"
    );

    let r = get_(&on, "/whoami", &headers).await;
    assert_eq!((r.status, r.body.as_str()), (200, "newco/t1"));
    assert!(host.org_exists("newco").await.unwrap());
    assert!(host.tenant_exists("t1", Some("newco")).await.unwrap());
    // Once created, the request works without auto-create too.
    assert_eq!(get_(&off, "/whoami", &headers).await.status, 200);
    host.delete_org("newco", true).await.unwrap();
}
