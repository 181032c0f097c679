//! The sandbox contains misbehaving plugins: every misdeed becomes the right typed error,
//! and a well-behaved plugin in the same host keeps answering meanwhile.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tenantry::plugin::{
    Capability, EngineOptions, Grants, LoadedPlugin, PluginError, PluginKind, PluginLimits,
    PluginRuntime, PluginSpec, ResolveFailure,
};
use tenantry_tests::{fixture, plugin};

fn runtime() -> PluginRuntime {
    PluginRuntime::new(EngineOptions::default()).expect("engine")
}

fn limits() -> PluginLimits {
    PluginLimits {
        fuel: 50_000_000,
        deadline: Duration::from_millis(300),
        memory_bytes: 16 << 20,
        ..PluginLimits::default()
    }
}

async fn hostile(rt: &PluginRuntime, grants: Grants) -> Arc<LoadedPlugin> {
    let spec = PluginSpec {
        grants,
        limits: limits(),
        ..PluginSpec::default()
    };
    Arc::new(
        rt.load_file(Some(PluginKind::OrgResolver), spec, &plugin("test-hostile"))
            .await
            .expect("load hostile"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_misdeed_is_contained_with_its_typed_error() {
    let rt = runtime();
    let p = hostile(&rt, Grants::NONE).await;
    let sha = p.info().short_sha().to_owned();

    match p.resolve("loop").await {
        Err(PluginError::OutOfFuel {
            plugin,
            sha: s,
            fuel,
        }) => {
            assert_eq!(
                (plugin.as_str(), s.as_str(), fuel),
                ("test-hostile", sha.as_str(), 50_000_000)
            );
        }
        other => panic!("loop: {other:?}"),
    }
    match p.resolve("bomb").await {
        Err(PluginError::MemoryLimit {
            resource, limit, ..
        }) => {
            assert_eq!((resource, limit), ("memory-bytes", 16 << 20));
        }
        other => panic!("bomb: {other:?}"),
    }
    match p.resolve("panic").await {
        Err(PluginError::Trap { message, .. }) => {
            assert!(message.contains("unreachable"), "{message}");
            assert!(
                message.contains("boom: the hostile plugin panics on purpose"),
                "guest message lost: {message}"
            );
        }
        other => panic!("panic: {other:?}"),
    }
    match p.resolve("recurse").await {
        Err(PluginError::Trap { message, .. }) => {
            assert!(message.contains("call stack exhausted"), "{message}")
        }
        other => panic!("recurse: {other:?}"),
    }
    match p.resolve("huge").await {
        Err(PluginError::BadAnswer { reason, .. }) => {
            assert!(reason.contains("limits.answer-bytes"), "{reason}")
        }
        other => panic!("huge: {other:?}"),
    }
    match p.resolve("garbage").await {
        Err(PluginError::BadAnswer { reason, .. }) => {
            assert!(reason.contains("does not parse"), "{reason}")
        }
        other => panic!("garbage: {other:?}"),
    }
    match p.resolve("wrong-scheme").await {
        Err(PluginError::BadAnswer { reason, .. }) => {
            assert!(reason.contains("scheme `http`"), "{reason}")
        }
        other => panic!("wrong-scheme: {other:?}"),
    }
    // After all that, the same plugin still answers: every call had its own instance.
    let ok = p
        .resolve("acme")
        .await
        .expect("sandbox verdict")
        .expect("answer");
    assert_eq!(ok.url, "postgres://db/acme");
    assert_eq!(rt.stats().call_failures.load(Ordering::Relaxed), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runaway_plugin_hits_its_deadline_and_does_not_block_neighbours() {
    let rt = runtime();
    let spec = PluginSpec {
        limits: PluginLimits {
            fuel: u64::MAX,
            deadline: Duration::from_millis(400),
            ..limits()
        },
        ..PluginSpec::default()
    };
    let runaway = Arc::new(
        rt.load_file(None, spec, &plugin("test-hostile"))
            .await
            .unwrap(),
    );
    let good = hostile(&rt, Grants::NONE).await;

    tenantry_tests::assert_runaway_contained(runaway, &good, Duration::from_millis(400), 11).await;
}

#[tokio::test]
async fn typed_refusals_pass_through_and_secrets_are_redacted() {
    let rt = runtime();
    let p = hostile(&rt, Grants::NONE).await;
    assert_eq!(
        p.resolve("missing").await.unwrap(),
        Err(ResolveFailure::NotFound)
    );
    assert_eq!(
        p.resolve("invalid").await.unwrap(),
        Err(ResolveFailure::Invalid("bad id".into()))
    );
    match p.resolve("unavailable").await.unwrap() {
        Err(ResolveFailure::Unavailable(m)) => {
            assert!(!m.contains("hunter2"), "password leaked: {m}");
            assert!(m.contains("postgres://svc:***@dir/x"), "{m}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn ungranted_capabilities_fail_cleanly_and_granted_ones_work() {
    let rt = runtime();
    let denied = hostile(&rt, Grants::NONE).await;
    for (id, cap) in [("config", Capability::Config), ("clock", Capability::Clock)] {
        match denied.resolve(id).await {
            Err(PluginError::NotGranted { capability, .. }) => assert_eq!(capability, cap),
            other => panic!("{id}: {other:?}"),
        }
    }
    let spec = PluginSpec {
        grants: Grants::of(&[Capability::Config, Capability::Clock]),
        config: [("suffix".to_owned(), "granted".to_owned())].into(),
        ..PluginSpec::default()
    };
    let granted = rt
        .load_file(None, spec, &plugin("test-hostile"))
        .await
        .unwrap();
    assert_eq!(
        granted.resolve("config").await.unwrap().unwrap().url,
        "postgres://db/granted"
    );
    let t = granted.resolve("clock").await.unwrap().unwrap();
    let ms: u64 = t.url.trim_start_matches("postgres://db/t").parse().unwrap();
    assert!(ms > 1_700_000_000_000, "clock went backwards: {ms}");
}

/// A one-shot HTTP server on loopback that answers every request with `body`.
async fn serve_once(body: &'static str) -> u16 {
    use hyper::service::service_fn;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let svc = service_fn(move |_req| async move {
                Ok::<_, std::convert::Infallible>(hyper::Response::new(http_body_util::Full::new(
                    hyper::body::Bytes::from_static(body.as_bytes()),
                )))
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc),
            );
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_reaches_allowlisted_hosts_only() {
    let allowed = serve_once("directory says hi").await;
    let other = serve_once("should never be read").await;
    let rt = runtime();
    let spec = PluginSpec {
        grants: Grants::of(&[Capability::Config, Capability::Http]),
        http_allow: vec![format!("127.0.0.1:{allowed}")],
        config: [
            (
                "http-ok".to_owned(),
                format!("http://127.0.0.1:{allowed}/orgs/acme"),
            ),
            (
                "http-other".to_owned(),
                format!("http://127.0.0.1:{other}/"),
            ),
            (
                "http-name".to_owned(),
                format!("http://localhost:{allowed}/"),
            ),
        ]
        .into(),
        ..PluginSpec::default()
    };
    let p = rt
        .load_file(None, spec, &plugin("test-hostile"))
        .await
        .unwrap();
    let t = p.resolve("http-ok").await.unwrap().unwrap();
    assert_eq!(t.region.as_deref(), Some("200 directory says hi"));
    for id in ["http-other", "http-name"] {
        match p.resolve(id).await.unwrap() {
            Err(ResolveFailure::Unavailable(m)) => assert!(
                m.contains("not on this plugin's http allowlist"),
                "{id}: {m}"
            ),
            other => panic!("{id}: {other:?}"),
        }
    }
    // Without the grant, the same call is a sandbox violation, not an answer.
    let ungranted = rt
        .load_file(
            None,
            PluginSpec {
                grants: Grants::of(&[Capability::Config]),
                ..p.spec().clone()
            },
            &plugin("test-hostile"),
        )
        .await
        .unwrap();
    match ungranted.resolve("http-ok").await {
        Err(PluginError::NotGranted {
            capability: Capability::Http,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn refuses_what_is_not_a_plugin_for_the_slot() {
    let rt = runtime();
    let load = |path: std::path::PathBuf| {
        let rt = rt.clone();
        async move {
            rt.load_file(Some(PluginKind::OrgResolver), PluginSpec::default(), &path)
                .await
        }
    };
    assert!(matches!(
        load(fixture("core-module.wat")).await,
        Err(PluginError::CoreModule { .. })
    ));
    match load(fixture("future-version.wat")).await {
        Err(PluginError::UnsupportedVersion {
            found, supported, ..
        }) => assert_eq!((found.as_str(), supported), ("0.2.0", "0.1.0")),
        other => panic!("{other:?}"),
    }
    match load(fixture("no-world.wat")).await {
        Err(e @ PluginError::WrongWorld { .. }) => {
            assert!(e.to_string().contains("no tenantry:plugin world"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    match load(plugin("tiered-policy")).await {
        Err(e @ PluginError::WrongWorld { .. }) => assert!(
            e.to_string().contains("implements world `tenant-policy`"),
            "{e}"
        ),
        other => panic!("{other:?}"),
    }
    let missing = std::path::PathBuf::from("/nonexistent/plugin.wasm");
    assert!(matches!(load(missing).await, Err(PluginError::Io { .. })));
    let readme = tenantry_tests::workspace_root().join("README.md");
    assert!(matches!(
        load(readme).await,
        Err(PluginError::NotWasm { .. })
    ));
}

#[tokio::test]
async fn sha256_pin_is_enforced() {
    let rt = runtime();
    let path = plugin("test-hostile");
    let good = rt
        .load_file(None, PluginSpec::default(), &path)
        .await
        .unwrap();
    let sha = good.info().sha256.clone();
    let pinned = PluginSpec {
        sha256: Some(sha.to_uppercase()),
        ..PluginSpec::default()
    };
    assert!(rt.load_file(None, pinned, &path).await.is_ok());
    let wrong = PluginSpec {
        sha256: Some("0".repeat(64)),
        ..PluginSpec::default()
    };
    match rt.load_file(None, wrong, &path).await {
        Err(PluginError::PinMismatch { found, .. }) => assert_eq!(found, sha),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn second_load_with_a_warm_cache_skips_compilation() {
    let cache = tempfile::tempdir().unwrap();
    let options = EngineOptions {
        cache_dir: Some(cache.path().into()),
        ..EngineOptions::default()
    };
    let first = PluginRuntime::new(options.clone()).unwrap();
    first
        .load_file(None, PluginSpec::default(), &plugin("test-hostile"))
        .await
        .unwrap();
    assert_eq!(first.stats().compilations.load(Ordering::Relaxed), 1);
    assert_eq!(first.stats().cache_hits.load(Ordering::Relaxed), 0);
    drop(first);

    let second = PluginRuntime::new(options).unwrap();
    let p = second
        .load_file(None, PluginSpec::default(), &plugin("test-hostile"))
        .await
        .unwrap();
    assert_eq!(
        second.stats().compilations.load(Ordering::Relaxed),
        0,
        "recompiled despite a warm cache"
    );
    assert_eq!(second.stats().cache_hits.load(Ordering::Relaxed), 1);
    assert_eq!(
        p.resolve("acme").await.unwrap().unwrap().url,
        "postgres://db/acme"
    );

    // A corrupted cache entry is discarded and rebuilt, never trusted.
    for entry in std::fs::read_dir(cache.path()).unwrap() {
        std::fs::write(entry.unwrap().path(), b"garbage").unwrap();
    }
    let third = PluginRuntime::new(EngineOptions {
        cache_dir: Some(cache.path().into()),
        ..EngineOptions::default()
    })
    .unwrap();
    let p = third
        .load_file(None, PluginSpec::default(), &plugin("test-hostile"))
        .await
        .unwrap();
    assert_eq!(third.stats().compilations.load(Ordering::Relaxed), 1);
    assert_eq!(
        p.resolve("acme").await.unwrap().unwrap().url,
        "postgres://db/acme"
    );
}

#[tokio::test]
async fn instances_are_fresh_per_call_unless_reuse_is_asked_for() {
    let rt = runtime();
    let count =
        |p: Arc<LoadedPlugin>| async move { p.resolve("count").await.unwrap().unwrap().url };
    let fresh = hostile(&rt, Grants::NONE).await;
    for _ in 0..3 {
        assert_eq!(
            count(fresh.clone()).await,
            "postgres://db/count-1",
            "state leaked between calls"
        );
    }
    let spec = PluginSpec {
        reuse_instances: true,
        limits: limits(),
        ..PluginSpec::default()
    };
    let reused = Arc::new(
        rt.load_file(None, spec, &plugin("test-hostile"))
            .await
            .unwrap(),
    );
    for n in 1..=3 {
        assert_eq!(
            count(reused.clone()).await,
            format!("postgres://db/count-{n}")
        );
    }
    // A failed call discards its instance; limits still apply to warm instances.
    assert!(matches!(
        reused.resolve("loop").await,
        Err(PluginError::OutOfFuel { .. })
    ));
    assert!(matches!(
        reused.resolve("panic").await,
        Err(PluginError::Trap { .. })
    ));
    assert_eq!(count(reused.clone()).await, "postgres://db/count-1");
}
