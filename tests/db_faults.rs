//! R3 database faults: PostgreSQL crashes (`pg_ctl stop -m immediate`) under write load and
//! comes back. While it is down, checkouts fail fast with errors that map to 503; afterwards
//! the same host recovers by itself; every acknowledged commit is present (count and
//! checksum per tenant); and no connection serves a tenant with another tenant's setting.
//!
//! This test crashes the shared test server, so it lives alone in its own test binary
//! (cargo runs test binaries one after another).

#[path = "support/data.rs"]
mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::{Connection, Postgres};
use support::*;
use tenantry::Host;

const TENANTS: [&str; 4] = ["ta", "tb", "tc", "td"];

fn server(command: &str) {
    let dir = std::env::var("TENANTRY_TEST_PG_DIR")
        .expect("TENANTRY_TEST_PG_DIR: run through scripts/test.sh");
    let script = tenantry_tests::workspace_root().join("scripts/postgres.sh");
    let status = std::process::Command::new(script)
        .args([command, &dir])
        .status()
        .unwrap();
    assert!(status.success(), "postgres.sh {command} failed");
}

/// Outcome counters of the writers.
#[derive(Default)]
struct Outcomes {
    acknowledged: Mutex<BTreeMap<&'static str, Vec<u64>>>,
    ambiguous: Mutex<BTreeMap<&'static str, Vec<u64>>>,
    failures: AtomicU64,
    slowest_failure_ms: AtomicU64,
    non_503: Mutex<Vec<String>>,
    last_success: Mutex<BTreeMap<&'static str, Instant>>,
}

async fn write_one(host: &Host, tenant: &'static str, n: u64) -> Result<(), (bool, String)> {
    // Err((maybe_committed, reason))
    let scoped = host
        .tenant(tenant)
        .await
        .map_err(|e| (false, classify(e)))?;
    let mut conn = scoped
        .acquire::<Postgres>()
        .await
        .map_err(|e| (false, classify(e)))?;
    let mut tx = conn
        .begin()
        .await
        .map_err(|e| (false, format!("begin: {e}")))?;
    sqlx::query("INSERT INTO notes (body) VALUES ($1)")
        .bind(format!("{tenant}:{n}"))
        .execute(&mut *tx)
        .await
        .map_err(|e| (false, format!("insert: {e}")))?;
    // A failed COMMIT may or may not have reached the server before it died.
    tx.commit()
        .await
        .map_err(|e| (true, format!("commit: {e}")))
}

/// Checkout failures must be errors a web layer answers with 503.
fn classify(e: tenantry::HostError) -> String {
    let api = tenantry::http::ApiError::from(e);
    if api.status.as_u16() == 503 {
        "503".into()
    } else {
        format!("{} {}: {}", api.status, api.code, api.message)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_under_load_fails_fast_recovers_and_loses_no_acknowledged_write() {
    let db = unique("faults");
    let url = pg_database(&db, &notes_postgres()).await;
    let mut config = postgres_config(&url, true);
    config.pools.acquire_timeout_ms = 2_000;
    config.pools.max_connections = 4;
    let host = host(config).await;

    let stop = Arc::new(AtomicBool::new(false));
    let outcomes = Arc::new(Outcomes::default());
    let writers: Vec<_> = TENANTS
        .iter()
        .map(|&tenant| {
            let (host, stop, outcomes) = (host.clone(), stop.clone(), outcomes.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let started = Instant::now();
                    match write_one(&host, tenant, n).await {
                        Ok(()) => {
                            outcomes
                                .acknowledged
                                .lock()
                                .unwrap()
                                .entry(tenant)
                                .or_default()
                                .push(n);
                            outcomes
                                .last_success
                                .lock()
                                .unwrap()
                                .insert(tenant, Instant::now());
                        }
                        Err((maybe, reason)) => {
                            outcomes.failures.fetch_add(1, Ordering::Relaxed);
                            outcomes
                                .slowest_failure_ms
                                .fetch_max(started.elapsed().as_millis() as u64, Ordering::Relaxed);
                            if maybe {
                                outcomes
                                    .ambiguous
                                    .lock()
                                    .unwrap()
                                    .entry(tenant)
                                    .or_default()
                                    .push(n);
                            }
                            if !reason.starts_with("503")
                                && !reason.starts_with("begin")
                                && !reason.starts_with("insert")
                                && !reason.starts_with("commit")
                            {
                                outcomes.non_503.lock().unwrap().push(reason);
                            }
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(800)).await;
    let before_crash = outcomes
        .acknowledged
        .lock()
        .unwrap()
        .values()
        .map(Vec::len)
        .sum::<usize>();
    assert!(before_crash > 0, "no writes before the crash");
    server("crash");
    let crashed_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let failures_while_down = outcomes.failures.load(Ordering::Relaxed);
    server("restart");
    let restarted_at = Instant::now();

    // Recovery without restarting the host: every tenant writes again.
    let deadline = restarted_at + Duration::from_secs(20);
    loop {
        let recovered = {
            let last = outcomes.last_success.lock().unwrap();
            TENANTS
                .iter()
                .all(|t| last.get(t).is_some_and(|at| *at > restarted_at))
        };
        if recovered {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the host did not recover within 20 s of the restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let recovery = restarted_at.elapsed();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }

    assert!(
        failures_while_down > 0,
        "nothing failed while the server was down"
    );
    let slowest = outcomes.slowest_failure_ms.load(Ordering::Relaxed);
    assert!(
        slowest <= 3_000,
        "a failure took {slowest} ms: failures must be fast (acquire timeout 2 s)"
    );
    assert!(
        outcomes.non_503.lock().unwrap().is_empty(),
        "checkout failures not mapped to 503: {:?}",
        outcomes.non_503.lock().unwrap()
    );

    // Every acknowledged commit is there (count and checksum); nothing else but ambiguous ones.
    let pg = tenantry_tests::postgres();
    let mut admin = sqlx::PgConnection::connect(&with_database(&pg.admin_url, &db))
        .await
        .unwrap();
    let acknowledged = outcomes.acknowledged.lock().unwrap().clone();
    let ambiguous = outcomes.ambiguous.lock().unwrap().clone();
    for tenant in TENANTS {
        let rows: Vec<String> = sqlx::query_scalar("SELECT body FROM notes WHERE tenant_id = $1")
            .bind(tenant)
            .fetch_all(&mut admin)
            .await
            .unwrap();
        let present: std::collections::BTreeSet<u64> = rows
            .iter()
            .map(|b| {
                b.strip_prefix(&format!("{tenant}:"))
                    .expect("row of another tenant")
                    .parse()
                    .unwrap()
            })
            .collect();
        let acked = acknowledged.get(tenant).cloned().unwrap_or_default();
        let missing: Vec<&u64> = acked.iter().filter(|n| !present.contains(n)).collect();
        assert!(
            missing.is_empty(),
            "tenant {tenant}: acknowledged writes lost: {missing:?}"
        );
        let (acked_sum, present_sum): (u64, u64) = (acked.iter().sum(), present.iter().sum());
        let maybe: u64 = ambiguous.get(tenant).map(|v| v.iter().sum()).unwrap_or(0);
        assert!(
            present_sum >= acked_sum && present_sum <= acked_sum + maybe,
            "tenant {tenant}: checksum {present_sum} outside [{acked_sum}, {}]",
            acked_sum + maybe
        );
    }

    // No connection carries a stale tenant setting: each tenant sees exactly its rows.
    for tenant in TENANTS {
        for _ in 0..4 {
            let scoped = host.tenant(tenant).await.unwrap();
            let mut conn = scoped.acquire::<Postgres>().await.unwrap();
            let foreign: i64 =
                sqlx::query_scalar("SELECT count(*) FROM notes WHERE body NOT LIKE $1")
                    .bind(format!("{tenant}:%"))
                    .fetch_one(&mut *conn)
                    .await
                    .unwrap();
            assert_eq!(foreign, 0, "tenant {tenant} sees other rows after recovery");
        }
    }
    eprintln!(
        "db faults: {before_crash} writes before the crash, {failures_while_down} failed fast while down (slowest {slowest} ms), down for {:?}, recovered {:?} after restart, {} acknowledged writes all present",
        restarted_at - crashed_at,
        recovery,
        acknowledged.values().map(Vec::len).sum::<usize>()
    );
    drop(admin);
    drop(host);
    drop_pg_database(&db).await;
}
