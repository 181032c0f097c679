//! Routed, tenant-scoped checkouts against raw sqlx on the same PostgreSQL database:
//! P1 (acquire cost) and P3 (row-scoped primary-key SELECT / INSERT throughput, 16 clients).
//!
//! Needs a PostgreSQL: `scripts/bench.sh pools` starts one and runs this in release mode.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::Connection;
use sqlx::postgres::PgPoolOptions;
use tenantry::{Host, HostConfig};
use tenantry_bench::{Summary, today, write_json};

const TENANTS: u64 = 100;
const ROWS: u64 = 100_000;
const CLIENTS: u64 = 16;
/// How long each throughput series runs (a fraction of a second in smoke mode).
fn run() -> Duration {
    tenantry_bench::size(Duration::from_secs(4), Duration::from_millis(200))
}

fn env(var: &str) -> anyhow::Result<String> {
    std::env::var(var).map_err(|_| anyhow::anyhow!("{var} is not set: run scripts/bench.sh pools"))
}

fn with_db(url: &str, db: &str) -> String {
    format!("{}/{db}", url.rsplit_once('/').unwrap().0)
}

#[derive(Clone, Copy)]
enum Mode {
    Raw,
    ScopedSticky,
    ScopedRandom,
}

async fn throughput(
    mode: Mode,
    insert: bool,
    host: &Host,
    raw: &sqlx::PgPool,
) -> anyhow::Result<f64> {
    let done = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + run();
    let mut tasks = Vec::new();
    for client in 0..CLIENTS {
        let (host, raw, done) = (host.clone(), raw.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut x = client * 7919 + 1;
            while Instant::now() < until {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let tenant = match mode {
                    Mode::ScopedSticky => client % TENANTS,
                    _ => (x >> 33) % TENANTS,
                };
                // Row ids are laid out so that id % TENANTS is the row's tenant.
                let id = (((x >> 20) % (ROWS / TENANTS)) * TENANTS + tenant) as i64;
                match mode {
                    Mode::Raw => {
                        let mut c = raw.acquire().await?;
                        if insert {
                            sqlx::query("INSERT INTO plain_log (tenant_id, v) VALUES ($1, $2)")
                                .bind(format!("t{tenant}"))
                                .bind(id)
                                .execute(&mut *c)
                                .await?;
                        } else {
                            let _: (String,) =
                                sqlx::query_as("SELECT payload FROM plain_items WHERE id = $1")
                                    .bind(id)
                                    .fetch_one(&mut *c)
                                    .await?;
                        }
                    }
                    _ => {
                        let scoped = host
                            .tenant(format!("t{tenant}"))
                            .await
                            .map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
                        let mut c = scoped
                            .acquire::<sqlx::Postgres>()
                            .await
                            .map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
                        if insert {
                            sqlx::query("INSERT INTO rls_log (v) VALUES ($1)")
                                .bind(id)
                                .execute(&mut *c)
                                .await?;
                        } else {
                            let _: (String,) =
                                sqlx::query_as("SELECT payload FROM rls_items WHERE id = $1")
                                    .bind(id)
                                    .fetch_one(&mut *c)
                                    .await?;
                        }
                    }
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, sqlx::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / run().as_secs_f64())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let (admin_url, app_url) = (
        env("TENANTRY_TEST_PG_ADMIN_URL")?,
        env("TENANTRY_TEST_PG_APP_URL")?,
    );
    let db = format!("pbench_{}", std::process::id());
    let mut admin = sqlx::PgConnection::connect(&admin_url).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE DATABASE {db} OWNER tenantry_app"
    )))
    .execute(&mut admin)
    .await?;
    let url = with_db(&app_url, &db);
    let mut setup = sqlx::PgConnection::connect(&url).await?;
    let rls = tenantry::isolation::postgres::enable_rls_sql("rls_items")?;
    let rls_log = tenantry::isolation::postgres::enable_rls_sql("rls_log")?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE plain_items (id bigint PRIMARY KEY, tenant_id text NOT NULL, payload text NOT NULL);
         INSERT INTO plain_items SELECT g, 't' || (g % {TENANTS}), md5(g::text) FROM generate_series(0, {ROWS} - 1) g;
         CREATE TABLE rls_items (id bigint PRIMARY KEY, tenant_id text NOT NULL, payload text NOT NULL);
         INSERT INTO rls_items SELECT * FROM plain_items;
         {rls}
         CREATE TABLE plain_log (id bigserial PRIMARY KEY, tenant_id text NOT NULL, v bigint);
         CREATE TABLE rls_log (id bigserial PRIMARY KEY, tenant_id text NOT NULL, v bigint);
         {rls_log}
         ANALYZE;"
    )))
    .execute(&mut setup)
    .await?;
    drop(setup);

    let mut config = HostConfig {
        database_url: Some(url.clone()),
        tenants: true,
        ..HostConfig::default()
    };
    config.pools.max_connections = CLIENTS as u32;
    config.migrations.apps_dir = "/nonexistent".into();
    // The raw-sqlx baseline tables are deliberately without RLS; the start-up check would
    // (rightly) refuse them otherwise.
    config.isolation.allow_unprotected_tables = true;
    let host = Host::load(config).await?;
    // The strongest baseline: sqlx without its per-acquire ping (`test_before_acquire`,
    // on by default, costs a round trip); sqlx's defaults are measured too, for P1.
    let raw = PgPoolOptions::new()
        .max_connections(CLIENTS as u32)
        .test_before_acquire(false)
        .connect(&url)
        .await?;
    let raw_default = PgPoolOptions::new()
        .max_connections(CLIENTS as u32)
        .connect(&url)
        .await?;

    // P1: one checkout and release, sequentially, same tenant (cache hit, session reused).
    let mut routed = Vec::new();
    let mut bare = Vec::new();
    let mut bare_default = Vec::new();
    let (samples, warmup) = tenantry_bench::size((22_000, 2_000), (220, 20));
    for i in 0..samples {
        let t = Instant::now();
        let c = host.tenant("t1").await?.acquire::<sqlx::Postgres>().await?;
        drop(c);
        let routed_took = t.elapsed();
        let t = Instant::now();
        let c = raw.acquire().await?;
        drop(c);
        let raw_took = t.elapsed();
        let t = Instant::now();
        let c = raw_default.acquire().await?;
        drop(c);
        let default_took = t.elapsed();
        if i >= warmup {
            routed.push(routed_took);
            bare.push(raw_took);
            bare_default.push(default_took);
        }
    }
    let (routed, bare, bare_default) = (
        Summary::of(&mut routed),
        Summary::of(&mut bare),
        Summary::of(&mut bare_default),
    );

    // P3: throughput, 16 clients.
    let mut p3 = serde_json::Map::new();
    let mut rows = Vec::new();
    for insert in [false, true] {
        let raw_tps = throughput(Mode::Raw, insert, &host, &raw).await?;
        let sticky = throughput(Mode::ScopedSticky, insert, &host, &raw).await?;
        let random = throughput(Mode::ScopedRandom, insert, &host, &raw).await?;
        let name = if insert { "INSERT" } else { "PK SELECT" };
        rows.push(format!(
            "| {name} | {raw_tps:.0} | {sticky:.0} ({:.2}×) | {random:.0} ({:.2}×) |",
            sticky / raw_tps,
            random / raw_tps
        ));
        p3.insert(name.into(), serde_json::json!({"raw_tps": raw_tps, "scoped_sticky_tps": sticky, "scoped_random_tps": random}));
    }
    let report = serde_json::json!({
        "date": today(), "command": "scripts/bench.sh pools",
        "p1_routed": routed, "p1_raw": bare, "p1_raw_sqlx_defaults": bare_default, "p3": p3,
    });
    let path = write_json("pools", &report)?;
    println!(
        "## Tenant-scoped checkouts vs raw sqlx ({}, `scripts/bench.sh pools`)\n",
        today()
    );
    println!("PostgreSQL on loopback, app role, the same database for both sides.\n");
    println!("P1 — one checkout + release, same tenant, sequential (20 000 samples):\n");
    println!("| | p50 µs | p99 µs | mean µs |\n|---|---|---|---|");
    println!(
        "| `host.tenant(t).acquire()` (session reused) | {:.1} | {:.1} | {:.1} |",
        routed.p50_us, routed.p99_us, routed.mean_us
    );
    println!(
        "| raw `pool.acquire()`, `test_before_acquire(false)` | {:.1} | {:.1} | {:.1} |",
        bare.p50_us, bare.p99_us, bare.mean_us
    );
    println!(
        "| raw `pool.acquire()`, sqlx defaults (pings first) | {:.1} | {:.1} | {:.1} |",
        bare_default.p50_us, bare_default.p99_us, bare_default.mean_us
    );
    println!(
        "| difference vs the non-pinging pool (median) | {:+.1} | | |\n",
        routed.p50_us - bare.p50_us
    );
    println!(
        "P3 — {CLIENTS} concurrent clients, {TENANTS} tenants, {ROWS} rows; each operation is a checkout + one statement ({}s each):\n",
        run().as_secs_f64()
    );
    println!(
        "| statement | raw sqlx (no ping), no RLS (ops/s) | scoped RLS, tenant per client (ops/s, ratio) | scoped RLS, random tenant per op (ops/s, ratio) |"
    );
    println!("|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
    println!("\n(json: {})", path.display());
    drop(host);
    raw.close().await;
    raw_default.close().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {db} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await?;
    Ok(())
}
