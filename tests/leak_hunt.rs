//! R1 leak hunt: a seeded random interleaving of many tenants over a small shared pool —
//! raw SQL, committed and rolled-back transactions, futures dropped mid-query, panics while
//! holding a connection, forged tenant ids, transactions left open — with row-, schema- and
//! database-isolated tenants mixed. Every row any tenant reads must be its own, and at the
//! end the superuser finds every row where it belongs.
//!
//! CI runs a short version; `TENANTRY_LEAK_OPS=1000000 cargo test --release -p tenantry-tests
//! --test leak_hunt` is the long one (`TENANTRY_LEAK_SEED` picks another interleaving).

#[path = "support/data.rs"]
mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::{Connection, Postgres};
use support::*;
use tenantry::Host;
use tenantry::plugin::{Capability, Grants, PluginSpec};

const ROW: [&str; 5] = ["r0", "r1", "r2", "r3", "r4"];
const SCHEMA: [&str; 2] = ["s0", "s1"];
const DATABASE: [&str; 1] = ["d0"];

/// xorshift64*: a reproducible stream per worker.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Default)]
struct Tally {
    ops: AtomicU64,
    reads: AtomicU64,
    rows_read: AtomicU64,
    cancelled: AtomicU64,
    panics: AtomicU64,
    forged_refused: AtomicU64,
    rollbacks: AtomicU64,
    open_transactions_abandoned: AtomicU64,
}

async fn conn(host: &Host, tenant: &str) -> tenantry::TenantConnection<Postgres> {
    let scoped = host
        .tenant(tenant)
        .await
        .unwrap_or_else(|e| panic!("scope {tenant}: {e}"));
    scoped
        .acquire::<Postgres>()
        .await
        .unwrap_or_else(|e| panic!("acquire {tenant}: {e}"))
}

/// Every body a tenant can see must carry its own prefix.
async fn check_reads(host: &Host, tenant: &str, tally: &Tally) {
    let mut c = conn(host, tenant).await;
    let bodies: Vec<String> = sqlx::query_scalar("SELECT body FROM notes")
        .fetch_all(&mut *c)
        .await
        .unwrap();
    for body in &bodies {
        assert!(
            body.starts_with(&format!("{tenant}:")),
            "LEAK: tenant {tenant} read {body:?}"
        );
        assert!(
            !body.ends_with(":rolled-back"),
            "a rolled-back insert is visible: {body}"
        );
    }
    tally.reads.fetch_add(1, Ordering::Relaxed);
    tally
        .rows_read
        .fetch_add(bodies.len() as u64, Ordering::Relaxed);
}

async fn operation(
    host: &Host,
    tenant: &'static str,
    other: &'static str,
    op: u64,
    n: u64,
    tally: &Tally,
) {
    match op {
        0 | 1 => {
            let mut c = conn(host, tenant).await;
            sqlx::query("INSERT INTO notes (body) VALUES ($1)")
                .bind(format!("{tenant}:{n}"))
                .execute(&mut *c)
                .await
                .unwrap();
        }
        2 | 3 => check_reads(host, tenant, tally).await,
        4 => {
            let mut c = conn(host, tenant).await;
            // Raw SQL without WHERE touches only this tenant's rows.
            sqlx::query("UPDATE notes SET body = body")
                .execute(&mut *c)
                .await
                .unwrap();
            sqlx::query("DELETE FROM notes WHERE id = (SELECT min(id) FROM notes)")
                .execute(&mut *c)
                .await
                .unwrap();
            // Raw SQL trimming "old rows" keeps every tenant's table small, so the long mode's
            // full-table reads stay cheap; RLS must bound this delete to the tenant too.
            sqlx::query(
                "DELETE FROM notes WHERE id NOT IN (SELECT id FROM notes ORDER BY id DESC LIMIT 200)",
            )
            .execute(&mut *c)
            .await
            .unwrap();
        }
        5 => {
            let mut c = conn(host, tenant).await;
            let mut tx = c.begin().await.unwrap();
            sqlx::query("INSERT INTO notes (body) VALUES ($1)")
                .bind(format!("{tenant}:rolled-back"))
                .execute(&mut *tx)
                .await
                .unwrap();
            tx.rollback().await.unwrap();
            tally.rollbacks.fetch_add(1, Ordering::Relaxed);
        }
        6 => {
            let mut c = conn(host, tenant).await;
            let mut tx = c.begin().await.unwrap();
            sqlx::query("INSERT INTO notes (body) VALUES ($1)")
                .bind(format!("{tenant}:tx{n}"))
                .execute(&mut *tx)
                .await
                .unwrap();
            tx.commit().await.unwrap();
        }
        7 => {
            // A future dropped mid-query: the connection must not serve anyone half-done.
            let host = host.clone();
            let slow = async move {
                let mut c = conn(&host, tenant).await;
                sqlx::query("SELECT pg_sleep(0.05)")
                    .execute(&mut *c)
                    .await
                    .ok();
            };
            if tokio::time::timeout(Duration::from_millis(5), slow)
                .await
                .is_err()
            {
                tally.cancelled.fetch_add(1, Ordering::Relaxed);
            }
        }
        8 => {
            // A handler panics while holding a connection inside a transaction.
            let host = host.clone();
            let task = tokio::spawn(async move {
                let mut c = conn(&host, tenant).await;
                let mut tx = c.begin().await.unwrap();
                sqlx::query("INSERT INTO notes (body) VALUES ($1)")
                    .bind(format!("{tenant}:rolled-back"))
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                panic!("handler panics mid-transaction (expected by the leak hunt)");
            });
            assert!(task.await.is_err());
            tally.panics.fetch_add(1, Ordering::Relaxed);
        }
        9 => {
            // Writing another tenant's id is refused by the policy's WITH CHECK.
            let mut c = conn(host, tenant).await;
            let forged = sqlx::query("INSERT INTO notes (tenant_id, body) VALUES ($1, $2)")
                .bind(other)
                .bind(format!("{other}:forged-by-{tenant}"))
                .execute(&mut *c)
                .await;
            assert!(forged.is_err(), "tenant {tenant} wrote a row as {other}");
            tally.forged_refused.fetch_add(1, Ordering::Relaxed);
        }
        _ => {
            // A raw BEGIN left open, then the connection goes back to the pool. sqlx cannot
            // see a transaction it did not start, so the documented contract applies: code
            // that leaves session state behind calls `forget_session`, and the next checkout
            // (any tenant) rolls the transaction back before switching.
            let mut c = conn(host, tenant).await;
            sqlx::raw_sql("BEGIN; INSERT INTO notes (body) VALUES (current_setting('tenantry.tenant_id') || ':rolled-back')")
                .execute(&mut *c)
                .await
                .unwrap();
            c.forget_session();
            tally
                .open_transactions_abandoned
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_tenant_ever_reads_another_tenants_rows() {
    // The injected handler panics are expected: keep them out of the log, report the rest.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let expected = info
            .payload()
            .downcast_ref::<&str>()
            .is_some_and(|m| m.contains("expected by the leak hunt"));
        if !expected {
            default_hook(info);
        }
    }));
    let ops: u64 = std::env::var("TENANTRY_LEAK_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_500);
    let seed: u64 = std::env::var("TENANTRY_LEAK_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5EED_1EA4);
    let db = unique("leak");
    let url = pg_database(&db, "").await;
    let root = tempfile::tempdir().unwrap();
    let mut config = postgres_config(&url, true);
    config.migrations.apps_dir = apps_dir(root.path(), &notes_postgres());
    config.admin_database_url = Some(tenantry_tests::postgres().admin_url);
    // A small shared pool, so tenants keep trading the same few connections.
    config.pools.max_connections = 3;
    let tenant_dbs = format!("{db}_{{tenant}}");
    let tiers = serde_json::json!({
        "standard": {"isolation": "row"},
        "pro": {"isolation": "schema", "schema": "t_{tenant}"},
        "enterprise": {"isolation": "database", "database": with_database(&url, &tenant_dbs)},
    });
    let assignment = serde_json::json!({"s0": "pro", "s1": "pro", "d0": "enterprise"});
    config.plugins.tenant_policy = Some(PluginSpec {
        path: Some(tenantry_tests::plugin("tiered-policy")),
        grants: Grants::of(&[Capability::Config]),
        config: BTreeMap::from([
            ("tiers".to_owned(), tiers.to_string()),
            ("tenants".to_owned(), assignment.to_string()),
        ]),
        ..PluginSpec::default()
    });
    let host = host(config).await;
    let all: Vec<&'static str> = ROW
        .iter()
        .chain(&SCHEMA)
        .chain(&DATABASE)
        .copied()
        .collect();
    for t in &all {
        host.create_tenant(t, None)
            .await
            .unwrap_or_else(|e| panic!("create {t}: {e}"));
    }
    tenantry::migrate::run(&host).await.unwrap();

    let tally = Arc::new(Tally::default());
    let workers = 6u64;
    let handles: Vec<_> = (0..workers)
        .map(|w| {
            let (host, tally, all) = (host.clone(), tally.clone(), all.clone());
            tokio::spawn(async move {
                let mut rng = Rng(seed ^ (w + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                for n in 0..ops / workers {
                    let tenant = all[rng.below(all.len() as u64) as usize];
                    let other = all[rng.below(all.len() as u64) as usize];
                    let other = if other == tenant { "r0" } else { other };
                    let other = if other == tenant { "r1" } else { other };
                    operation(&host, tenant, other, rng.below(11), n, &tally).await;
                    tally.ops.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for h in handles {
        h.await.expect("a worker found a leak or failed");
    }
    for t in &all {
        check_reads(&host, t, &tally).await;
    }

    // The superuser's view: every row in the shared table is where its tenant_id says,
    // schema and database tenants' rows are theirs, and nothing rolled back survived.
    let pg = tenantry_tests::postgres();
    let mut admin = sqlx::PgConnection::connect(&with_database(&pg.admin_url, &db))
        .await
        .unwrap();
    let misplaced: i64 = sqlx::query_scalar("SELECT count(*) FROM public.notes WHERE body NOT LIKE tenant_id || ':%' OR body LIKE '%rolled-back'")
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert_eq!(
        misplaced, 0,
        "rows in the shared table under the wrong tenant"
    );
    for s in SCHEMA {
        let foreign: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM t_{s}.notes WHERE body NOT LIKE '{s}:%' OR body LIKE '%rolled-back'"
        )))
        .fetch_one(&mut admin)
        .await
        .unwrap();
        assert_eq!(foreign, 0, "foreign rows in schema t_{s}");
    }
    let mut dedicated =
        sqlx::PgConnection::connect(&with_database(&pg.admin_url, &format!("{db}_d0")))
            .await
            .unwrap();
    let foreign: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM notes WHERE body NOT LIKE 'd0:%' OR body LIKE '%rolled-back'",
    )
    .fetch_one(&mut dedicated)
    .await
    .unwrap();
    assert_eq!(foreign, 0, "foreign rows in d0's database");
    drop(dedicated);

    let t = &tally;
    eprintln!(
        "leak hunt: seed {seed:#x}, {} operations ({} reads returning {} rows, {} futures dropped mid-query, {} panics, {} rollbacks, {} forged writes refused, {} transactions left open); leaks found: 0",
        t.ops.load(Ordering::Relaxed),
        t.reads.load(Ordering::Relaxed),
        t.rows_read.load(Ordering::Relaxed),
        t.cancelled.load(Ordering::Relaxed),
        t.panics.load(Ordering::Relaxed),
        t.rollbacks.load(Ordering::Relaxed),
        t.forged_refused.load(Ordering::Relaxed),
        t.open_transactions_abandoned.load(Ordering::Relaxed),
    );
    assert!(t.reads.load(Ordering::Relaxed) > 0 && t.rows_read.load(Ordering::Relaxed) > 0);
    drop(host);
    for t in DATABASE {
        drop_pg_database(&format!("{db}_{t}")).await;
    }
    drop_pg_database(&db).await;
}
