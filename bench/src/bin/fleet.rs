//! Many orgs at once (issue 9, P4): every org × tenant scope of 10 000 orgs × 10 tenants on
//! SQLite (a file per tenant) touched once, and queries spread over 200 org databases on
//! PostgreSQL, each with a global connection cap far below the number of databases. A
//! sampler watches the host's open connections (`Host::connection_counts`), the process's
//! open file descriptors and, on PostgreSQL, the server's own count (`pg_stat_activity`)
//! throughout. The SQLite pass also records the RSS growth curve (orgs cached vs RSS).
//!
//! Needs a PostgreSQL: `scripts/bench.sh fleet` starts one and runs this in release mode.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sqlx::Connection;
use tenantry::plugin::{Capability, Grants, PluginSpec};
use tenantry::resolve::ResolveOptions;
use tenantry::{Host, HostConfig};
use tenantry_bench::{load_average, open_fds, plugin, ratio, rss_bytes, size, today, write_json};

const COMMAND: &str = "scripts/bench.sh fleet";
/// Global cap on open connections in both passes.
const CAP: u32 = 16;
const TENANTS: usize = 10;
/// Concurrent workers touching scopes.
const WORKERS: usize = 16;

fn env(var: &str) -> anyhow::Result<String> {
    std::env::var(var).map_err(|_| anyhow::anyhow!("{var} is not set: run scripts/bench.sh fleet"))
}

/// The highest values a sampler saw, every `every`, until stopped.
#[derive(Default)]
struct Peaks {
    open: AtomicU32,
    fds: AtomicUsize,
    samples: AtomicUsize,
}

fn sample_host(
    host: &Host,
    peaks: &Arc<Peaks>,
    stop: &Arc<AtomicBool>,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    let (host, peaks, stop) = (host.clone(), peaks.clone(), stop.clone());
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            peaks
                .open
                .fetch_max(host.connection_counts().0, Ordering::Relaxed);
            peaks.fds.fetch_max(open_fds(), Ordering::Relaxed);
            peaks.samples.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(every).await;
        }
    })
}

async fn sqlite(report: &mut serde_json::Map<String, serde_json::Value>) -> anyhow::Result<()> {
    let checkpoints: Vec<usize> = size(
        vec![0, 1_000, 2_000, 5_000, 10_000],
        vec![0, 10, 20, 40, 60],
    );
    let root = tempfile::tempdir()?;
    let mut config = HostConfig {
        database_url: Some(format!("sqlite://{}/{{org}}.db", root.path().display())),
        orgs: true,
        tenants: true,
        ..HostConfig::default()
    };
    config.pools.max_open_connections = CAP;
    config.pools.max_connections = 2;
    config.pools.max_pools = 64;
    config.pools.idle_timeout_ms = 1_000;
    config.pools.pool_idle_timeout_ms = 1_000;
    config.migrations.apps_dir = "/nonexistent".into();
    // Orgs are found by the `pattern` plugin, so each one is an entry in the resolver's
    // cache: the "idle cached org" whose memory is measured.
    config.plugins.org_resolver = Some(PluginSpec {
        path: Some(plugin("pattern")?),
        grants: Grants::of(&[Capability::Config]),
        config: [(
            "template".to_owned(),
            format!("sqlite://{}/{{org}}.db", root.path().display()),
        )]
        .into(),
        ..PluginSpec::default()
    });
    config.resolve = ResolveOptions {
        cache_capacity: 100_000,
        ..ResolveOptions::default()
    };
    let host = Host::load(config).await?;
    let fds_before = open_fds();
    let peaks = Arc::new(Peaks::default());
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_host(&host, &peaks, &stop, Duration::from_millis(2));

    let started = Instant::now();
    let mut curve = Vec::new();
    let next = Arc::new(AtomicUsize::new(0));
    let mut rss_start = 0;
    for w in checkpoints.windows(2) {
        let (from, to) = (w[0], w[1]);
        if from == 0 {
            rss_start = rss_bytes();
            curve.push(serde_json::json!({"orgs": 0, "rss_bytes": rss_start, "seconds": 0.0}));
        }
        next.store(from, Ordering::Relaxed);
        let mut tasks = Vec::new();
        for _ in 0..WORKERS {
            let (host, next) = (host.clone(), next.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let org = next.fetch_add(1, Ordering::Relaxed);
                    if org >= to {
                        return Ok::<_, anyhow::Error>(());
                    }
                    let scope = host.org(format!("org{org}"))?;
                    for t in 0..TENANTS {
                        let scoped = scope.tenant(format!("t{t}")).await?;
                        let mut conn = scoped.acquire::<sqlx::Sqlite>().await?;
                        let one: i64 = sqlx::query_scalar("SELECT 1").fetch_one(&mut *conn).await?;
                        anyhow::ensure!(one == 1);
                    }
                }
            }));
        }
        for t in tasks {
            t.await??;
        }
        let elapsed = started.elapsed().as_secs_f64();
        curve.push(serde_json::json!({"orgs": to, "rss_bytes": rss_bytes(), "seconds": elapsed}));
        eprintln!("sqlite: {to} orgs × {TENANTS} tenants in {elapsed:.1} s");
    }
    let touched = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    sampler.await?;
    let files = walk_count(root.path());
    // At most `max-pools` (64) pools and `CAP` connections are open at the end, a constant
    // that does not grow with the org count; what grows is the cached orgs' state.
    let metrics = host.resolver_metrics().await;
    let rss_end = rss_bytes();
    let last = *checkpoints.last().unwrap();
    // Per-org RSS over the steady part of the curve (after the first checkpoint: the first
    // orgs also pay for allocator arenas, SQLite's and moka's one-off setup).
    let first = curve[1]["rss_bytes"].as_u64().unwrap_or(0);
    let steady = ratio(
        rss_end.saturating_sub(first) as f64,
        (last - checkpoints[1]) as f64,
    );
    let open = peaks.open.load(Ordering::Relaxed);
    let fds = peaks.fds.load(Ordering::Relaxed);
    eprintln!(
        "sqlite: max open {open} (cap {CAP}), max fds {fds} (before {fds_before}), {files} files, cached orgs {}",
        metrics.cache_size
    );
    report.insert(
        "sqlite".into(),
        serde_json::json!({
            "orgs": last, "tenants_per_org": TENANTS, "scopes_touched": last * TENANTS,
            "seconds": touched.as_secs_f64(),
            "scopes_per_second": ratio((last * TENANTS) as f64, touched.as_secs_f64()),
            "files_created": files,
            "cap": CAP, "max_open_connections": open, "cap_held": open <= CAP && open > 0,
            "fds_before": fds_before, "max_fds": fds, "samples": peaks.samples.load(Ordering::Relaxed),
            "orgs_cached": metrics.cache_size,
            "rss_curve": curve,
            "rss_growth_bytes": rss_end.saturating_sub(rss_start),
            "rss_per_org_bytes": ratio(rss_end.saturating_sub(rss_start) as f64, last as f64),
            "rss_per_org_steady_bytes": steady,
        }),
    );
    drop(host);
    Ok(())
}

fn walk_count(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .map(|e| {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    walk_count(&e.path())
                } else {
                    1
                }
            })
            .sum()
    })
}

async fn postgres(report: &mut serde_json::Map<String, serde_json::Value>) -> anyhow::Result<()> {
    let (admin_url, app_url) = (
        env("TENANTRY_TEST_PG_ADMIN_URL")?,
        env("TENANTRY_TEST_PG_APP_URL")?,
    );
    let dbs = size(200usize, 6);
    let cap: u32 = size(20, 3);
    let rounds = size(10usize, 3);
    let prefix = format!("fleet{}", std::process::id());
    let mut admin = sqlx::PgConnection::connect(&admin_url).await?;
    let t = Instant::now();
    for i in 0..dbs {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE {prefix}_org{i} OWNER tenantry_app"
        )))
        .execute(&mut admin)
        .await?;
    }
    let created = t.elapsed();
    let result = postgres_run(&admin_url, &app_url, &prefix, dbs, cap, rounds).await;
    for i in 0..dbs {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {prefix}_org{i} WITH (FORCE)"
        )))
        .execute(&mut admin)
        .await?;
    }
    let mut value = result?;
    value["create_databases_seconds"] = created.as_secs_f64().into();
    report.insert("postgres".into(), value);
    Ok(())
}

async fn postgres_run(
    admin_url: &str,
    app_url: &str,
    prefix: &str,
    dbs: usize,
    cap: u32,
    rounds: usize,
) -> anyhow::Result<serde_json::Value> {
    let (base, _) = app_url.rsplit_once('/').expect("url has a database");
    let mut config = HostConfig {
        database_url: Some(format!("{base}/{prefix}_{{org}}")),
        orgs: true,
        ..HostConfig::default()
    };
    config.pools.max_open_connections = cap;
    config.pools.max_connections = 2;
    config.migrations.apps_dir = "/nonexistent".into();
    let host = Host::load(config).await?;

    let peaks = Arc::new(Peaks::default());
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_host(&host, &peaks, &stop, Duration::from_millis(2));
    // The server's view, from its own statistics, on a separate superuser connection.
    let server = {
        let (stop, like) = (stop.clone(), format!("{prefix}_%"));
        let mut conn = sqlx::PgConnection::connect(admin_url).await?;
        tokio::spawn(async move {
            let (mut max, mut samples) = (0i64, 0usize);
            while !stop.load(Ordering::Relaxed) {
                let n: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname LIKE $1",
                )
                .bind(&like)
                .fetch_one(&mut conn)
                .await?;
                max = max.max(n);
                samples += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Ok::<_, sqlx::Error>((max, samples))
        })
    };
    let t = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let total = dbs * rounds;
    let mut tasks = Vec::new();
    for _ in 0..2 * cap as usize {
        let (host, next, prefix) = (host.clone(), next.clone(), prefix.to_owned());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, anyhow::Error>(());
                }
                // Spread over every database, in an order that keeps pools cold.
                let org = format!("org{}", (i * 7919) % dbs);
                let scoped = host.org(&org)?.get().await?;
                let mut conn = scoped.acquire::<sqlx::Postgres>().await?;
                let db: String = sqlx::query_scalar("SELECT current_database()::text")
                    .fetch_one(&mut *conn)
                    .await?;
                anyhow::ensure!(db == format!("{prefix}_{org}"), "routed to {db}");
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    let took = t.elapsed();
    stop.store(true, Ordering::Relaxed);
    sampler.await?;
    let (server_max, server_samples) = server.await??;
    let open = peaks.open.load(Ordering::Relaxed);
    eprintln!(
        "postgres: {total} queries over {dbs} databases in {:.1} s; max open {open}, server max {server_max} (cap {cap})",
        took.as_secs_f64()
    );
    drop(host);
    Ok(serde_json::json!({
        "databases": dbs, "queries": total, "seconds": took.as_secs_f64(),
        "queries_per_second": ratio(total as f64, took.as_secs_f64()),
        "cap": cap, "max_open_connections": open, "cap_held": open <= cap && open > 0,
        "server_max_backends": server_max, "server_cap_held": server_max <= cap as i64,
        "samples": peaks.samples.load(Ordering::Relaxed), "server_samples": server_samples,
    }))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let load_before = load_average();
    let mut results = serde_json::Map::new();
    sqlite(&mut results).await?;
    postgres(&mut results).await?;
    let s = &results["sqlite"];
    let p = &results["postgres"];
    let report = serde_json::json!({
        "date": today(), "command": COMMAND, "load_average_before": load_before,
        "sqlite": s, "postgres": p,
    });
    let path = write_json("fleet", &report)?;
    println!("## Many orgs at once ({}, `{COMMAND}`)\n", today());
    println!(
        "| pass | work | time | global cap | max open connections (host) | max on the server | max fds (before) |"
    );
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| SQLite, file per tenant | {} orgs × {TENANTS} tenants touched once ({} files) | {:.1} s | {} | {} | — | {} ({}) |",
        s["orgs"],
        s["files_created"],
        s["seconds"].as_f64().unwrap_or(0.0),
        s["cap"],
        s["max_open_connections"],
        s["max_fds"],
        s["fds_before"]
    );
    println!(
        "| PostgreSQL, database per org | {} queries over {} databases | {:.1} s | {} | {} | {} | — |",
        p["queries"],
        p["databases"],
        p["seconds"].as_f64().unwrap_or(0.0),
        p["cap"],
        p["max_open_connections"],
        p["server_max_backends"]
    );
    println!("\nRSS growth (SQLite pass, orgs cached in the resolver, pools bounded):\n");
    println!("| orgs | RSS MiB | seconds |\n|---|---|---|");
    for point in s["rss_curve"].as_array().into_iter().flatten() {
        println!(
            "| {} | {:.1} | {:.1} |",
            point["orgs"],
            point["rss_bytes"].as_f64().unwrap_or(0.0) / (1 << 20) as f64,
            point["seconds"].as_f64().unwrap_or(0.0)
        );
    }
    println!(
        "\nRSS per org: {:.0} B overall, {:.0} B after the first checkpoint.",
        s["rss_per_org_bytes"].as_f64().unwrap_or(0.0),
        s["rss_per_org_steady_bytes"].as_f64().unwrap_or(0.0)
    );
    println!("\n(json: {})", path.display());
    Ok(())
}
