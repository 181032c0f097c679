//! The shared plugin registry (docs/scale-out.md, section 1) with two instances on the test
//! PostgreSQL: a publish reaches both through NOTIFY and their hot-swap path; a broken
//! component is rejected by both and recorded, the old plugin serving on; republishing bytes
//! already serving swaps nothing; an instance that was down, or whose listening connection
//! was killed, catches up by reconciling.

#[path = "support/data.rs"]
mod support;

use std::time::{Duration, Instant};

use sqlx::Connection;
use support::*;
use tenantry::plugin::{Capability, Grants};
use tenantry::registry::{self, FollowOptions, Follower};
use tenantry::{Host, HostConfig, OrgId, PluginKind, PluginSpec};

/// An instance: org resolution by the `pattern` plugin, with a `directory` config as well so
/// that either component can serve it.
async fn instance() -> Host {
    let spec = PluginSpec {
        grants: Grants::of(&[Capability::Config, Capability::Log]),
        config: [(
            "directory".to_owned(),
            r#"{"acme": "sqlite://dir/acme.db"}"#.to_owned(),
        )]
        .into(),
        ..PluginSpec::default()
    };
    Host::builder()
        .config(HostConfig {
            database_url: Some("sqlite://data/{org}.db".into()),
            orgs: true,
            ..HostConfig::default()
        })
        .org_resolver(tenantry_tests::plugin("pattern"), spec)
        .build()
        .await
        .unwrap()
}

fn serving(host: &Host) -> String {
    host.slot(PluginKind::OrgResolver)
        .unwrap()
        .current()
        .info()
        .sha256
        .clone()
}

/// Wait (bounded) until `done` holds; a liveness bound, not a speed assertion.
async fn eventually(what: &str, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn follow(host: &Host, url: &str, name: &str) -> Follower {
    let mut options = FollowOptions::new(name);
    options.reconcile_every = Duration::from_millis(300);
    registry::follow(host.clone(), url, options)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_follow_publishes_reject_broken_ones_and_catch_up_after_missing_them() {
    let db = unique("registry");
    let url = pg_database(&db, "").await;
    registry::install_schema(&url).await.unwrap();
    let pattern = std::fs::read(tenantry_tests::plugin("pattern")).unwrap();
    let directory = std::fs::read(tenantry_tests::plugin("directory")).unwrap();

    let (a, b) = (instance().await, instance().await);
    let pattern_sha = serving(&a);
    let fa = follow(&a, &url, "a");
    let fb = follow(&b, &url, "b");

    // v1: the directory resolver, to both instances.
    let v1 = registry::publish(&url, PluginKind::OrgResolver, &directory, "test")
        .await
        .unwrap();
    assert_eq!(v1.version, 1);
    assert_ne!(v1.sha256, pattern_sha);
    eventually("both instances to run v1", || {
        serving(&a) == v1.sha256 && serving(&b) == v1.sha256
    })
    .await;
    let acme = OrgId::new("acme").unwrap();
    a.clear_org_cache(None).await;
    assert_eq!(
        a.resolve_org(&acme).await.unwrap().url,
        "sqlite://dir/acme.db"
    );

    // v2: not a component. Both reject it, keep v1, and say why.
    let v2 = registry::publish(&url, PluginKind::OrgResolver, b"not wasm", "test")
        .await
        .unwrap();
    eventually("both instances to reject v2", || {
        [&fa, &fb].iter().all(|f| {
            f.attempts()
                .get("org-resolver")
                .is_some_and(|t| t.version == v2.version && !t.ok)
        })
    })
    .await;
    assert_eq!(serving(&a), v1.sha256);
    assert_eq!(serving(&b), v1.sha256);
    let reason = fa.attempts()["org-resolver"].reason.clone().unwrap();
    assert!(reason.contains("WebAssembly"), "{reason}");
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let rows: Vec<(String, i64, String, bool)> = sqlx::query_as(
        "SELECT instance, version, sha256, ok FROM tenantry_plugin_status ORDER BY instance",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        rows,
        [
            ("a".into(), 2, v1.sha256.clone(), false),
            ("b".into(), 2, v1.sha256.clone(), false)
        ]
    );

    // b goes down; v3 (the pattern resolver again) is published while it is away.
    drop(fb);
    let v3 = registry::publish(&url, PluginKind::OrgResolver, &pattern, "test")
        .await
        .unwrap();
    eventually("a to run v3", || serving(&a) == v3.sha256).await;
    assert_eq!(serving(&b), v1.sha256, "b was not following");
    let fb = follow(&b, &url, "b");
    eventually("b to catch up on start", || serving(&b) == v3.sha256).await;

    // v4: the same bytes. Nothing is swapped (the slot's generation stays).
    let generation = a.slot(PluginKind::OrgResolver).unwrap().generation();
    let v4 = registry::publish(&url, PluginKind::OrgResolver, &pattern, "test")
        .await
        .unwrap();
    eventually("a to acknowledge v4", || {
        fa.attempts()["org-resolver"]
            == registry::Attempt {
                version: v4.version,
                ok: true,
                reason: None,
            }
    })
    .await;
    assert_eq!(
        a.slot(PluginKind::OrgResolver).unwrap().generation(),
        generation
    );

    // The listening connections are killed; v5 is published at once. Reconnect and periodic
    // reconciliation bring both instances to it anyway.
    admin_sql(
        "postgres",
        &format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = '{db}' AND query LIKE 'LISTEN%'"
        ),
    )
    .await;
    let v5 = registry::publish(&url, PluginKind::OrgResolver, &directory, "test")
        .await
        .unwrap();
    eventually("both instances to run v5", || {
        serving(&a) == v5.sha256 && serving(&b) == v5.sha256
    })
    .await;

    drop((fa, fb));
    let _ = conn.close().await;
    drop_pg_database(&db).await;
}
