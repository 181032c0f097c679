//! Routed, tenant-scoped checkouts against raw sqlx on the same PostgreSQL database:
//! P1 (acquire cost) and P3 (row-scoped primary-key SELECT / INSERT throughput, 16 clients).
//!
//! Needs a PostgreSQL: `scripts/bench.sh pools` starts one and runs this in release mode.
//! The org-routed P1 row goes through the Rust `directory` resolver plugin
//! (`$TENANTRY_PLUGIN_BUILD_DIR` or `target/plugins`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::Connection;
use sqlx::postgres::PgPoolOptions;
use tenantry::plugin::{Capability, Grants, PluginSpec};
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

/// A built plugin, where the tests look for it too.
fn plugin(name: &str) -> anyhow::Result<std::path::PathBuf> {
    match std::env::var_os("TENANTRY_PLUGIN_BUILD_DIR") {
        Some(dir) => {
            let path = std::path::Path::new(&dir).join(format!("{name}.wasm"));
            anyhow::ensure!(
                path.is_file(),
                "{} is missing: run scripts/build-plugins.sh",
                path.display()
            );
            Ok(path)
        }
        None => tenantry_bench::plugin(name),
    }
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
    run: Duration,
) -> anyhow::Result<f64> {
    let done = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + run;
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
    Ok(done.load(Ordering::Relaxed) as f64 / run.as_secs_f64())
}

/// One client, `TURNS` tenants taking turns, PK SELECTs for `run()`: ops/s through `host`
/// (`None`: raw sqlx on `raw`).
async fn in_turns(host: Option<&Host>, raw: &sqlx::PgPool) -> anyhow::Result<f64> {
    let until = Instant::now() + run();
    let mut done = 0u64;
    while Instant::now() < until {
        let tenant = done % TURNS;
        let id = (((done * 7919) % (ROWS / TENANTS)) * TENANTS + tenant) as i64;
        let query = match host {
            Some(_) => "SELECT payload FROM rls_items WHERE id = $1",
            None => "SELECT payload FROM plain_items WHERE id = $1",
        };
        let _: (String,) = match host {
            Some(host) => {
                let scoped = host.tenant(format!("t{tenant}")).await?;
                let mut c = scoped.acquire::<sqlx::Postgres>().await?;
                sqlx::query_as(query).bind(id).fetch_one(&mut *c).await?
            }
            None => {
                let mut c = raw.acquire().await?;
                sqlx::query_as(query).bind(id).fetch_one(&mut *c).await?
            }
        };
        done += 1;
    }
    Ok(done as f64 / run().as_secs_f64())
}

/// Tenants taking turns in `in_turns`.
const TURNS: u64 = 8;

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
    let host = Host::load(config.clone()).await?;
    // The same database as org `o1`, resolved (and cached) through the `directory` plugin.
    let mut org_config = config.clone();
    org_config.orgs = true;
    org_config.plugins.org_resolver = Some(PluginSpec {
        path: Some(plugin("directory")?),
        grants: Grants::of(&[Capability::Config]),
        config: [(
            "directory".to_owned(),
            serde_json::json!({ "o1": url }).to_string(),
        )]
        .into(),
        samples: vec!["o1".into()],
        ..PluginSpec::default()
    });
    let org_host = Host::load(org_config).await?;
    // Pools as large as the number of tenants: every tenant can keep a connection of its
    // own, the other lever on P3's random-tenant case.
    let mut wide_config = config.clone();
    wide_config.pools.max_connections = TENANTS as u32;
    let wide_host = Host::load(wide_config).await?;
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

    // P1: one checkout and release, sequentially, same tenant (cache hit, session reused);
    // and, for what a handle costs when it is not kept ready, a new tenant every time.
    let mut routed = Vec::new();
    let mut org_routed = Vec::new();
    let mut cold = Vec::new();
    let mut bare = Vec::new();
    let mut bare_default = Vec::new();
    let (samples, warmup) = tenantry_bench::size((22_000, 2_000), (220, 20));
    for i in 0..samples {
        let t = Instant::now();
        let c = host.tenant("t1").await?.acquire::<sqlx::Postgres>().await?;
        drop(c);
        let routed_took = t.elapsed();
        let t = Instant::now();
        let c = org_host
            .org("o1")?
            .tenant("t1")
            .await?
            .acquire::<sqlx::Postgres>()
            .await?;
        drop(c);
        let org_took = t.elapsed();
        let t = Instant::now();
        let handle = host.tenant(format!("new{i}")).await?;
        let cold_took = t.elapsed();
        drop(handle);
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
            org_routed.push(org_took);
            cold.push(cold_took);
            bare.push(raw_took);
            bare_default.push(default_took);
        }
    }
    let (routed, org_routed, cold, bare, bare_default) = (
        Summary::of(&mut routed),
        Summary::of(&mut org_routed),
        Summary::of(&mut cold),
        Summary::of(&mut bare),
        Summary::of(&mut bare_default),
    );

    // One client, tenants taking turns: a pool of one connection switches on every checkout
    // (what any pool did before it kept a connection per scope); a pool of 10 has room.
    let mut one_config = config.clone();
    one_config.pools.max_connections = 1;
    let one_host = Host::load(one_config).await?;
    let mut ten_config = config.clone();
    ten_config.pools.max_connections = 10;
    let ten_host = Host::load(ten_config).await?;
    let turns_raw = in_turns(None, &raw).await?;
    let turns_one = in_turns(Some(&one_host), &raw).await?;
    let turns_ten = in_turns(Some(&ten_host), &raw).await?;
    drop((one_host, ten_host));

    // P3: throughput, 16 clients.
    let mut p3 = serde_json::Map::new();
    let mut rows = Vec::new();
    // Open the wide pool's connections before measuring it (the others fill within
    // milliseconds: 16 connections).
    throughput(
        Mode::ScopedRandom,
        false,
        &wide_host,
        &raw,
        tenantry_bench::size(Duration::from_secs(2), Duration::from_millis(100)),
    )
    .await?;
    for insert in [false, true] {
        let raw_tps = throughput(Mode::Raw, insert, &host, &raw, run()).await?;
        let sticky = throughput(Mode::ScopedSticky, insert, &host, &raw, run()).await?;
        let random = throughput(Mode::ScopedRandom, insert, &host, &raw, run()).await?;
        let wide = throughput(Mode::ScopedRandom, insert, &wide_host, &raw, run()).await?;
        let name = if insert { "INSERT" } else { "PK SELECT" };
        rows.push(format!(
            "| {name} | {raw_tps:.0} | {sticky:.0} ({:.2}×) | {random:.0} ({:.2}×) | {wide:.0} ({:.2}×) |",
            sticky / raw_tps,
            random / raw_tps,
            wide / raw_tps
        ));
        p3.insert(name.into(), serde_json::json!({"raw_tps": raw_tps, "scoped_sticky_tps": sticky, "scoped_random_tps": random, "scoped_random_pool_per_tenant_tps": wide}));
    }
    let report = serde_json::json!({
        "date": today(), "command": "scripts/bench.sh pools",
        "p1_routed": routed, "p1_org_routed": org_routed, "p1_routed_not_ready": cold,
        "p1_raw": bare, "p1_raw_sqlx_defaults": bare_default, "p3": p3,
        "tenants_in_turns": {"tenants": TURNS, "raw_tps": turns_raw, "scoped_pool_of_1_tps": turns_one, "scoped_pool_of_10_tps": turns_ten},
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
        "| `host.tenant(t).acquire()` (handle kept ready, session reused) | {:.1} | {:.1} | {:.1} |",
        routed.p50_us, routed.p99_us, routed.mean_us
    );
    println!(
        "| `host.org(o).tenant(t).acquire()`, org via the `directory` plugin (same) | {:.1} | {:.1} | {:.1} |",
        org_routed.p50_us, org_routed.p99_us, org_routed.mean_us
    );
    println!(
        "| `host.tenant(t)` alone, a new tenant each time (handle built, not yet kept ready) | {:.1} | {:.1} | {:.1} |",
        cold.p50_us, cold.p99_us, cold.mean_us
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
        "| difference vs the non-pinging pool (median): `host.tenant`, `host.org().tenant` | {:+.1}, {:+.1} | | |\n",
        routed.p50_us - bare.p50_us,
        org_routed.p50_us - bare.p50_us
    );
    println!(
        "P3 — {CLIENTS} concurrent clients, {TENANTS} tenants, {ROWS} rows; each operation is a checkout + one statement ({}s each):\n",
        run().as_secs_f64()
    );
    println!(
        "| statement | raw sqlx (no ping), no RLS (ops/s) | scoped RLS, tenant per client (ops/s, ratio) | scoped RLS, random tenant per op (ops/s, ratio) | same, pool of {TENANTS} (ops/s, ratio) |"
    );
    println!("|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
    println!(
        "\nOne client, {TURNS} tenants taking turns, PK SELECT ({}s each):\n",
        run().as_secs_f64()
    );
    println!(
        "| raw sqlx (no ping), no RLS (ops/s) | scoped RLS, pool of 1: a switch every checkout (ops/s, ratio) | scoped RLS, pool of 10: a connection per tenant (ops/s, ratio) |"
    );
    println!("|---|---|---|");
    println!(
        "| {turns_raw:.0} | {turns_one:.0} ({:.2}×) | {turns_ten:.0} ({:.2}×) |",
        turns_one / turns_raw,
        turns_ten / turns_raw
    );
    println!("\n(json: {})", path.display());
    drop((host, org_host, wide_host));
    raw.close().await;
    raw_default.close().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {db} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await?;
    Ok(())
}
