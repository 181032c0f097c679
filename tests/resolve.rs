//! The org resolution pipeline against real plugins: single-flight, TTLs on a controllable
//! clock, breakers, retries, timeouts, fail-closed, fallback, metrics and redaction.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tenantry::clock::ManualClock;
use tenantry::plugin::{Capability, Grants, PluginKind, PluginLimits, PluginSpec};
use tenantry::resolve::{
    AnswerSource, BreakerOptions, BreakerOverride, BreakerState, ResolveError, ResolveOptions,
    RetryOptions,
};
use tenantry::{Host, HostError, OrgId};
use tenantry_tests::plugin;

fn org(id: &str) -> OrgId {
    OrgId::new(id).unwrap()
}

fn fast_options() -> ResolveOptions {
    ResolveOptions {
        retry: RetryOptions {
            attempts: 3,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(4),
        },
        breaker: BreakerOptions {
            failure_threshold: 2,
            cool_down: Duration::from_secs(30),
            half_open_trials: 1,
        },
        ..ResolveOptions::default()
    }
}

async fn hostile_host(options: ResolveOptions, clock: Arc<ManualClock>) -> Host {
    let spec = PluginSpec {
        grants: Grants::of(&[Capability::Config]),
        limits: PluginLimits {
            deadline: Duration::from_secs(10),
            ..PluginLimits::default()
        },
        ..PluginSpec::default()
    };
    Host::builder()
        .org_resolver(plugin("test-hostile"), spec)
        .resolve_options(options)
        .clock(clock)
        .build()
        .await
        .unwrap()
}

fn calls(host: &Host) -> u64 {
    host.runtime().stats().calls.load(Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_first_requests_make_one_plugin_call() {
    let host = hostile_host(fast_options(), Arc::new(ManualClock::new())).await;
    let before = calls(&host);
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let host = host.clone();
            tokio::spawn(async move { host.resolve_org(&org("acme")).await.map(|t| t.url.clone()) })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), "postgres://db/acme");
    }
    assert_eq!(calls(&host) - before, 1, "single-flight broken");
    let m = host.resolver_metrics().await;
    assert_eq!(
        (
            m.cache_misses + m.cache_hits,
            m.attempts,
            m.resolves,
            m.cache_size
        ),
        (100, 1, 1, 1)
    );
}

#[tokio::test]
async fn answers_expire_on_the_clock_and_plugin_ttls_are_bounded() {
    let clock = Arc::new(ManualClock::new());
    let host = hostile_host(fast_options(), clock.clone()).await;
    let acme = org("acme");
    let before = calls(&host);
    host.resolve_org(&acme).await.unwrap();
    assert_eq!(
        host.resolution(&acme).await.unwrap().source,
        AnswerSource::Cache
    );
    clock.advance(Duration::from_secs(299));
    host.resolve_org(&acme).await.unwrap();
    assert_eq!(
        calls(&host) - before,
        1,
        "expired before the 5 min default TTL"
    );
    clock.advance(Duration::from_secs(2));
    assert_eq!(
        host.resolution(&acme).await.unwrap().source,
        AnswerSource::Resolver
    );
    assert_eq!(calls(&host) - before, 2);

    // not-found is cached for the (shorter) negative TTL
    let missing = org("missing");
    for _ in 0..3 {
        assert!(matches!(
            host.resolve_org(&missing).await,
            Err(HostError::Resolve(ResolveError::NotFound { .. }))
        ));
    }
    assert_eq!(calls(&host) - before, 3);
    clock.advance(Duration::from_secs(31));
    assert!(host.resolve_org(&missing).await.is_err());
    assert_eq!(calls(&host) - before, 4);

    // The pattern plugin asks for ttl-ms = 100; the floor of 1 s applies.
    let spec = PluginSpec {
        grants: Grants::of(&[Capability::Config]),
        config: [
            ("template".to_owned(), "postgres://db/{org}".to_owned()),
            ("ttl-ms".to_owned(), "100".to_owned()),
        ]
        .into(),
        ..PluginSpec::default()
    };
    let clock = Arc::new(ManualClock::new());
    let host = Host::builder()
        .org_resolver(plugin("pattern"), spec)
        .clock(clock.clone())
        .build()
        .await
        .unwrap();
    host.resolve_org(&acme).await.unwrap();
    clock.advance(Duration::from_millis(500));
    assert_eq!(
        host.resolution(&acme).await.unwrap().source,
        AnswerSource::Cache
    );
    clock.advance(Duration::from_millis(600));
    assert_eq!(
        host.resolution(&acme).await.unwrap().source,
        AnswerSource::Resolver
    );
}

#[tokio::test]
async fn retries_only_what_is_worth_retrying() {
    let host = hostile_host(
        ResolveOptions {
            breaker: BreakerOptions {
                failure_threshold: 100,
                ..BreakerOptions::default()
            },
            ..fast_options()
        },
        Arc::new(ManualClock::new()),
    )
    .await;
    let count = |id: &'static str| {
        let host = host.clone();
        async move {
            let before = calls(&host);
            let r = host.resolve_org(&org(id)).await;
            (calls(&host) - before, r)
        }
    };
    let (n, r) = count("unavailable").await;
    assert_eq!(n, 3);
    match r {
        Err(HostError::Resolve(ResolveError::Unavailable {
            attempts, reason, ..
        })) => {
            assert_eq!(attempts, 3);
            assert!(!reason.contains("hunter2"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(count("missing").await.0, 1);
    let (n, r) = count("invalid").await;
    assert_eq!(n, 1);
    assert!(
        matches!(r, Err(HostError::Resolve(ResolveError::Invalid { .. }))),
        "{r:?}"
    );
    // A deterministic trap is not retried either.
    assert_eq!(count("panic").await.0, 1);
}

#[tokio::test]
async fn breaker_full_cycle_including_a_failed_trial() {
    let clock = Arc::new(ManualClock::new());
    let host = hostile_host(
        ResolveOptions {
            retry: RetryOptions {
                attempts: 1,
                ..RetryOptions::default()
            },
            ..fast_options()
        },
        clock.clone(),
    )
    .await;
    let down = org("unavailable");
    for _ in 0..2 {
        assert!(matches!(
            host.resolve_org(&down).await,
            Err(HostError::Resolve(ResolveError::Unavailable { .. }))
        ));
    }
    assert_eq!(host.org_breaker(&down), BreakerState::Open);
    let before = calls(&host);
    match host.resolve_org(&down).await {
        Err(HostError::Resolve(e @ ResolveError::BreakerOpen { .. })) => {
            assert_eq!(e.retry_after(), Some(Duration::from_secs(30)));
            assert!(e.to_string().contains("backend down"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        calls(&host),
        before,
        "an open breaker must not call the plugin"
    );
    let m = host.resolver_metrics().await;
    assert_eq!(m.open_breakers, vec!["unavailable".to_owned()]);
    assert_eq!(m.breakers.get("open"), Some(&1));

    // Half-open: the trial fails and the breaker opens again.
    clock.advance(Duration::from_secs(30));
    assert_eq!(host.org_breaker(&down), BreakerState::HalfOpen);
    assert!(matches!(
        host.resolve_org(&down).await,
        Err(HostError::Resolve(ResolveError::Unavailable { .. }))
    ));
    assert_eq!(host.org_breaker(&down), BreakerState::Open);

    // The backend "recovers" (a resolver that answers is swapped in): the trial closes it.
    let spec = PluginSpec {
        grants: Grants::of(&[Capability::Config]),
        config: [("template".to_owned(), "postgres://db/{org}".to_owned())].into(),
        ..PluginSpec::default()
    };
    host.slot(PluginKind::OrgResolver)
        .unwrap()
        .swap_file(&plugin("pattern"), Some(spec))
        .await
        .unwrap();
    clock.advance(Duration::from_secs(30));
    assert_eq!(
        host.resolve_org(&down).await.unwrap().url,
        "postgres://db/unavailable"
    );
    assert_eq!(host.org_breaker(&down), BreakerState::Closed);

    // Operators can hold a breaker open, and reset it.
    host.set_org_breaker(&down, BreakerOverride::Open);
    host.clear_org_cache(None).await;
    assert!(matches!(
        host.resolve_org(&down).await,
        Err(HostError::Resolve(ResolveError::BreakerOpen {
            state: BreakerState::ForcedOpen,
            ..
        }))
    ));
    host.reset_org_breaker(&down);
    assert!(host.resolve_org(&down).await.is_ok());
}

/// A resolver whose backend alternates between answering and `unavailable` (one reused
/// instance keeps the count): retries absorb the flapping, the breaker opens only as
/// configured, and other orgs keep resolving throughout.
#[tokio::test]
async fn a_flapping_resolver_is_retried_and_breaks_only_as_configured() {
    let flapping = |attempts: u32, failure_threshold: u32| async move {
        let spec = PluginSpec {
            grants: Grants::of(&[Capability::Config]),
            reuse_instances: true,
            ..PluginSpec::default()
        };
        let options = ResolveOptions {
            retry: RetryOptions {
                attempts,
                ..fast_options().retry
            },
            breaker: BreakerOptions {
                failure_threshold,
                ..fast_options().breaker
            },
            ..fast_options()
        };
        Host::builder()
            .org_resolver(plugin("test-hostile"), spec)
            .resolve_options(options)
            .clock(Arc::new(ManualClock::new()))
            .build()
            .await
            .unwrap()
    };
    let flap = org("flap");

    // With retries, every resolution succeeds: an `unavailable` attempt is followed by an ok.
    let host = flapping(3, 2).await;
    for _ in 0..10 {
        let before = calls(&host);
        assert_eq!(
            host.refresh_org(&flap).await.unwrap().target.url,
            "postgres://db/flap"
        );
        assert!((1..=2).contains(&(calls(&host) - before)));
        assert_eq!(host.org_breaker(&flap), BreakerState::Closed);
    }
    assert_eq!(
        host.resolve_org(&org("neighbour")).await.unwrap().url,
        "postgres://db/neighbour"
    );

    // Without retries the failures surface as typed errors, but never two in a row, so a
    // breaker that opens after 2 consecutive failures stays closed...
    let host = flapping(1, 2).await;
    let mut outcomes = Vec::new();
    for _ in 0..6 {
        host.clear_org_cache(Some(&flap)).await;
        match host.resolve_org(&flap).await {
            Ok(t) => outcomes.push(t.url.clone()),
            Err(HostError::Resolve(ResolveError::Unavailable { reason, .. })) => {
                assert!(reason.contains("flapping backend"), "{reason}");
                outcomes.push("unavailable".into());
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(host.org_breaker(&flap), BreakerState::Closed);
    }
    assert_eq!(
        outcomes,
        ["postgres://db/flap", "unavailable"].repeat(3),
        "answers alternate"
    );

    // ...while one that opens after a single failure does, and then stops calling the plugin.
    let host = flapping(1, 1).await;
    assert!(host.resolve_org(&flap).await.is_ok());
    host.clear_org_cache(Some(&flap)).await;
    assert!(matches!(
        host.resolve_org(&flap).await,
        Err(HostError::Resolve(ResolveError::Unavailable { .. }))
    ));
    assert_eq!(host.org_breaker(&flap), BreakerState::Open);
    let before = calls(&host);
    assert!(matches!(
        host.resolve_org(&flap).await,
        Err(HostError::Resolve(ResolveError::BreakerOpen { .. }))
    ));
    assert_eq!(
        calls(&host),
        before,
        "an open breaker must not call the plugin"
    );
    assert_eq!(
        host.resolve_org(&org("neighbour")).await.unwrap().url,
        "postgres://db/neighbour"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overall_timeout_cancels_a_slow_plugin() {
    let options = ResolveOptions {
        timeout: Duration::from_millis(200),
        ..fast_options()
    };
    let spec = PluginSpec {
        limits: PluginLimits {
            fuel: u64::MAX,
            deadline: Duration::from_secs(30),
            ..PluginLimits::default()
        },
        ..PluginSpec::default()
    };
    let host = Host::builder()
        .org_resolver(plugin("test-hostile"), spec)
        .resolve_options(options)
        .build()
        .await
        .unwrap();
    let started = Instant::now();
    match host.resolve_org(&org("loop")).await {
        Err(HostError::Resolve(ResolveError::Timeout { after, .. })) => {
            assert_eq!(after, Duration::from_millis(200))
        }
        other => panic!("{other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "timeout did not stop the call: {:?}",
        started.elapsed()
    );
    // The host keeps serving other orgs.
    assert_eq!(
        host.resolve_org(&org("acme")).await.unwrap().url,
        "postgres://db/acme"
    );
}

#[tokio::test]
async fn fails_closed_without_a_fallback_and_reports_an_explicit_one() {
    let host = hostile_host(fast_options(), Arc::new(ManualClock::new())).await;
    let err = host
        .resolve_org(&org("unavailable"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("is unavailable") && err.contains("fallback"),
        "{err}"
    );
    let health = host.check_org_health(&org("unavailable")).await;
    assert!(
        !health.healthy && health.url.is_none() && health.error.is_some(),
        "{health:?}"
    );

    let options = ResolveOptions {
        fallback: Some("sqlite://fallback/{org}.db".into()),
        ..fast_options()
    };
    let host = hostile_host(options, Arc::new(ManualClock::new())).await;
    let r = host.resolution(&org("unavailable")).await.unwrap();
    assert_eq!(
        (r.target.url.as_str(), r.source, r.fallback),
        (
            "sqlite://fallback/unavailable.db",
            AnswerSource::Fallback,
            true
        )
    );
    let health = host.check_org_health(&org("unavailable")).await;
    assert_eq!(health.source, Some(AnswerSource::Fallback));
    assert_eq!(
        host.resolver_metrics().await.fallbacks,
        1,
        "the cached fallback answer was served the second time"
    );
    // Not-found and invalid are answers: never routed to the fallback.
    assert!(matches!(
        host.resolve_org(&org("missing")).await,
        Err(HostError::Resolve(ResolveError::NotFound { .. }))
    ));
    assert!(matches!(
        host.resolve_org(&org("invalid")).await,
        Err(HostError::Resolve(ResolveError::Invalid { .. }))
    ));
}

#[tokio::test]
async fn refresh_preload_and_clear() {
    let host = hostile_host(fast_options(), Arc::new(ManualClock::new())).await;
    let ids: Vec<OrgId> = ["a1", "a2", "a3", "missing", "unavailable"]
        .into_iter()
        .map(org)
        .collect();
    let report = host.preload_orgs(ids, 2).await;
    let mut ok: Vec<String> = report.resolved.iter().map(|o| o.to_string()).collect();
    ok.sort();
    assert_eq!(ok, ["a1", "a2", "a3"]);
    let mut failed: Vec<String> = report.failed.iter().map(|(o, _)| o.to_string()).collect();
    failed.sort();
    assert_eq!(failed, ["missing", "unavailable"]);
    let before = calls(&host);
    assert_eq!(
        host.refresh_org(&org("a1")).await.unwrap().source,
        AnswerSource::Resolver
    );
    assert_eq!(calls(&host) - before, 1);
    assert_eq!(
        host.resolution(&org("a1")).await.unwrap().source,
        AnswerSource::Cache
    );
    host.clear_org_cache(Some(&org("a1"))).await;
    assert_eq!(
        host.resolution(&org("a1")).await.unwrap().source,
        AnswerSource::Resolver
    );
    host.clear_org_cache(None).await;
    assert_eq!(host.resolver_metrics().await.cache_size, 0);
}

#[tokio::test]
async fn a_swap_invalidates_cached_answers() {
    let spec = PluginSpec {
        grants: Grants::of(&[Capability::Config]),
        config: [
            ("template".to_owned(), "postgres://v1/{org}".to_owned()),
            (
                "directory".to_owned(),
                r#"{"acme":"postgres://v2/acme"}"#.to_owned(),
            ),
        ]
        .into(),
        ..PluginSpec::default()
    };
    let host = Host::builder()
        .org_resolver(plugin("pattern"), spec)
        .build()
        .await
        .unwrap();
    assert_eq!(
        host.resolve_org(&org("acme")).await.unwrap().url,
        "postgres://v1/acme"
    );
    host.swap_file(PluginKind::OrgResolver, &plugin("directory"))
        .await
        .unwrap();
    assert_eq!(
        host.resolve_org(&org("acme")).await.unwrap().url,
        "postgres://v2/acme"
    );
}

#[test]
fn secrets_never_reach_logs_or_errors() {
    use std::io::Write;
    #[derive(Clone, Default)]
    struct Buf(Arc<std::sync::Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let errors = rt.block_on(async {
        let spec = PluginSpec {
            grants: Grants::of(&[Capability::Config, Capability::Log]),
            config: [(
                "template".to_owned(),
                "postgresql://app:hunter2@db/{org}".to_owned(),
            )]
            .into(),
            ..PluginSpec::default()
        };
        let host = Host::builder()
            .database_url("postgresql://app:hunter2@db/{org}")
            .org_resolver(plugin("pattern"), spec)
            .build()
            .await
            .unwrap();
        let target = host.resolve_org(&org("acme")).await.unwrap();
        assert_eq!(
            target.url, "postgresql://app:hunter2@db/acme",
            "the real URL is still available to connect"
        );
        let hostile = hostile_host(fast_options(), Arc::new(ManualClock::new())).await;
        let e = hostile
            .resolve_org(&org("unavailable"))
            .await
            .unwrap_err()
            .to_string();
        let h = format!(
            "{:?} {host:?} {target:?}",
            hostile.check_org_health(&org("unavailable")).await
        );
        format!("{e} {h}")
    });
    let logs = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("org resolved"),
        "trace logs were not captured: {logs}"
    );
    assert!(!logs.contains("hunter2"), "password in logs:\n{logs}");
    assert!(
        !errors.contains("hunter2"),
        "password in errors or Debug output: {errors}"
    );
}

#[tokio::test]
async fn two_orgs_never_share_a_database_unless_allowed() {
    let spec = PluginSpec {
        grants: Grants::of(&[Capability::Config]),
        config: [("directory".to_owned(), r#"{"acme": "postgres://db/shared", "globex": "postgres://db/shared", "initech": "postgres://db/initech"}"#.to_owned())].into(),
        ..PluginSpec::default()
    };
    let host = Host::builder()
        .org_resolver(plugin("directory"), spec.clone())
        .build()
        .await
        .unwrap();
    assert_eq!(
        host.resolve_org(&org("acme")).await.unwrap().url,
        "postgres://db/shared"
    );
    match host.resolve_org(&org("globex")).await {
        Err(HostError::Resolve(e @ ResolveError::SharedTarget { .. })) => {
            assert!(e.to_string().contains("database of org `acme`"), "{e}");
        }
        other => panic!("globex was routed into acme's database: {other:?}"),
    }
    assert!(host.resolve_org(&org("initech")).await.is_ok());
    // Once acme's answer is gone, the database may belong to globex.
    host.clear_org_cache(Some(&org("acme"))).await;
    assert!(host.resolve_org(&org("globex")).await.is_ok());

    let shared = ResolveOptions {
        allow_shared_targets: true,
        ..ResolveOptions::default()
    };
    let host = Host::builder()
        .org_resolver(plugin("directory"), spec)
        .resolve_options(shared)
        .build()
        .await
        .unwrap();
    assert!(host.resolve_org(&org("acme")).await.is_ok());
    assert!(host.resolve_org(&org("globex")).await.is_ok());
}
