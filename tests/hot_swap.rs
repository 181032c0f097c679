//! Hot-swap: validated, atomic, invisible to traffic, reversible.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tenantry::plugin::{Capability, Grants, PluginError, PluginKind, PluginSpec};
use tenantry::{Host, HostError, OrgId};
use tenantry_tests::{fixture, plugin};

const V1: &str = "postgres://v1/acme";
const V2: &str = "postgres://v2/acme";

/// One spec both bundled resolvers understand: `pattern` answers V1, `directory` V2.
fn spec() -> PluginSpec {
    PluginSpec {
        grants: Grants::of(&[Capability::Config]),
        config: [
            ("template".to_owned(), "postgres://v1/{org}".to_owned()),
            (
                "directory".to_owned(),
                r#"{"acme": "postgres://v2/acme"}"#.to_owned(),
            ),
        ]
        .into(),
        samples: vec!["acme".into()],
        ..PluginSpec::default()
    }
}

/// A host whose compile cache makes the 50 alternating swaps cost two compilations.
async fn host() -> Host {
    let cache = std::env::temp_dir().join(format!("tenantry-swap-cache-{}", std::process::id()));
    Host::builder()
        .org_resolver(plugin("pattern"), spec())
        .cache_dir(cache)
        .build()
        .await
        .expect("host loads")
}

async fn url(host: &Host) -> String {
    host.resolve_org(&OrgId::new("acme").unwrap())
        .await
        .expect("resolves")
        .url
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapping_under_load_fails_no_call() {
    let host = host().await;
    assert_eq!(url(&host).await, V1);
    let stop = Arc::new(AtomicBool::new(false));
    let (v1, v2, failures) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (host, stop, v1, v2, failures) = (
                host.clone(),
                stop.clone(),
                v1.clone(),
                v2.clone(),
                failures.clone(),
            );
            tokio::spawn(async move {
                let org = OrgId::new("acme").unwrap();
                while !stop.load(Ordering::Relaxed) {
                    match host.resolve_org(&org).await {
                        Ok(t) if t.url == V1 => v1.fetch_add(1, Ordering::Relaxed),
                        Ok(t) if t.url == V2 => v2.fetch_add(1, Ordering::Relaxed),
                        Ok(t) => panic!("answer from neither version: {t:?}"),
                        Err(e) => {
                            eprintln!("call failed during swap: {e}");
                            failures.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    let slot = host.slot(PluginKind::OrgResolver).unwrap().clone();
    for i in 0..50 {
        let (next, expect) = if i % 2 == 0 {
            ("directory", V2)
        } else {
            ("pattern", V1)
        };
        let outcome = host
            .swap_file(PluginKind::OrgResolver, &plugin(next))
            .await
            .expect("swap accepted");
        assert_eq!(outcome.generation, i + 1);
        assert_eq!(slot.generation(), i + 1);
        // Visible at once: the very next call runs the new version, under its own name.
        assert_eq!(url(&host).await, expect, "swap {i} not visible");
        assert_eq!(slot.current().name(), next);
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.expect("worker panicked");
    }
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "calls failed during swaps"
    );
    let (v1, v2) = (v1.load(Ordering::Relaxed), v2.load(Ordering::Relaxed));
    assert!(
        v1 > 0 && v2 > 0,
        "load did not overlap the swaps: v1={v1} v2={v2}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_candidate_never_serves() {
    let host = host().await;
    let slot = host.slot(PluginKind::OrgResolver).unwrap().clone();
    let before = slot.current().info().sha256.clone();

    let err = host
        .swap_file(PluginKind::OrgResolver, &fixture("core-module.wat"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, HostError::Plugin(PluginError::CoreModule { .. })),
        "{err}"
    );
    let err = host
        .swap_file(PluginKind::OrgResolver, &plugin("tiered-policy"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, HostError::Plugin(PluginError::WrongWorld { .. })),
        "{err}"
    );
    // Loads fine, but fails its self-test: the sample `loop` runs out of fuel.
    let looping = PluginSpec {
        samples: vec!["loop".into()],
        ..spec()
    };
    let err = slot
        .swap_file(&plugin("test-hostile"), Some(looping))
        .await
        .unwrap_err();
    match &err {
        PluginError::SelfTest { sample, reason, .. } => {
            assert_eq!(sample, "loop");
            assert!(reason.contains("out of fuel"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(slot.current().info().sha256, before);
    assert_eq!(slot.generation(), 0);
    assert_eq!(url(&host).await, V1);
}

#[tokio::test]
async fn rollback_restores_the_previous_version() {
    let host = host().await;
    assert!(matches!(
        host.rollback(PluginKind::OrgResolver).await,
        Err(HostError::Plugin(PluginError::NothingToRollBack { .. }))
    ));
    let swapped = host
        .swap_file(PluginKind::OrgResolver, &plugin("directory"))
        .await
        .unwrap();
    assert_eq!(url(&host).await, V2);
    let back = host.rollback(PluginKind::OrgResolver).await.unwrap();
    assert_eq!(back.sha256, swapped.previous_sha256);
    assert_eq!(url(&host).await, V1);
    // Rolling back again returns to the swapped-in version.
    host.rollback(PluginKind::OrgResolver).await.unwrap();
    assert_eq!(url(&host).await, V2);
    assert!(matches!(
        host.rollback(PluginKind::TenantPolicy).await,
        Err(HostError::SlotNotConfigured(PluginKind::TenantPolicy))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_dropped_into_the_plugins_dir_is_swapped_in() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::builder()
        .org_resolver(plugin("pattern"), spec())
        .plugins_dir(dir.path())
        .build()
        .await
        .unwrap();
    let slot = host.slot(PluginKind::OrgResolver).unwrap().clone();
    // A broken file is ignored...
    std::fs::write(dir.path().join("org-resolver.wasm"), b"not wasm").unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(slot.generation(), 0);
    assert_eq!(url(&host).await, V1);
    // ...and a good one replaces the plugin.
    std::fs::copy(plugin("directory"), dir.path().join("org-resolver.wasm")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while slot.generation() == 0 {
        assert!(
            Instant::now() < deadline,
            "watched file was not swapped in within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(url(&host).await, V2);
}
