//! Hot-swap under sustained HTTP load (issue 9, P5): an axum app with `TenancyLayer` (orgs
//! and tenants on SQLite, orgs found by a wasm resolver) served in-process on loopback, and
//! keep-alive hyper clients sending requests as fast as they answer. The same load runs
//! without swaps and with 100 swaps of the org resolver (alternating `pattern` and
//! `directory`, both answering the same files), in alternating rounds of the same run.
//!
//! Every request resolves its org (a swap makes every cached answer stale, so the first
//! request of each org after a swap runs the new plugin), checks a connection out of the
//! tenant's file and runs one query.
//!
//! `cargo run --release -p tenantry-bench --bin swap` (after scripts/build-plugins.sh).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use tenantry::http::{TenancyLayer, Tenant};
use tenantry::plugin::{Capability, Grants, PluginKind, PluginSpec};
use tenantry::{Host, HostConfig};
use tenantry_bench::{Summary, load_average, plugin, ratio, size, today, write_json};

const COMMAND: &str = "cargo run --release -p tenantry-bench --bin swap";
const ORGS: usize = 100;
const TENANTS: usize = 4;
const CLIENTS: usize = 8;
/// Requests starting this long after a swap completes count towards the swap effect.
const AFTER_SWAP: Duration = Duration::from_millis(50);

async fn ping(t: Tenant) -> Result<&'static str, tenantry::http::ApiError> {
    let mut conn = t.db.acquire::<sqlx::Sqlite>().await?;
    let one: i64 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| {
            tenantry::http::ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "database_error",
                e.to_string(),
            )
        })?;
    Ok(if one == 1 { "ok" } else { "wrong" })
}

/// One request as the client saw it: when it started (since the round began), how long it
/// took, and whether it came back 200 "ok".
struct Sample {
    start: Duration,
    took: Duration,
    ok: bool,
}

/// `CLIENTS` keep-alive connections sending requests back to back for `run`, and on until
/// `busy` is false (so every swap of a round happens under load, however long swaps take).
async fn load(
    addr: std::net::SocketAddr,
    run: Duration,
    t0: Instant,
    busy: Arc<AtomicBool>,
) -> anyhow::Result<Vec<Sample>> {
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let busy = busy.clone();
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            let mut samples = Vec::new();
            let mut i = c;
            while t0.elapsed() < run || busy.load(Ordering::Relaxed) {
                let (org, tenant) = (i % ORGS, (i / ORGS) % TENANTS);
                i += CLIENTS;
                let req = hyper::Request::get("/ping")
                    .header("host", "bench")
                    .header("x-org-id", format!("org{org}"))
                    .header("x-tenant-id", format!("t{tenant}"))
                    .body(Empty::<Bytes>::new())?;
                let start = t0.elapsed();
                let began = Instant::now();
                let ok = match sender.send_request(req).await {
                    Ok(resp) => {
                        let status = resp.status();
                        let body = resp.into_body().collect().await.map(|b| b.to_bytes());
                        status == 200 && body.is_ok_and(|b| &b[..] == b"ok")
                    }
                    Err(_) => false,
                };
                samples.push(Sample {
                    start,
                    took: began.elapsed(),
                    ok,
                });
            }
            Ok::<_, anyhow::Error>(samples)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    Ok(all)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let load_before = load_average();
    let swaps_total = size(100usize, 6);
    let rounds = size(4usize, 2);
    let round = size(Duration::from_millis(2_500), Duration::from_millis(300));
    let swaps_per_round = swaps_total / rounds;
    let root = tempfile::tempdir()?;
    let data = root.path().join("data");
    // Both resolvers answer the same files: `pattern` from a template, `directory` from a list.
    let directory: serde_json::Map<String, serde_json::Value> = (0..ORGS)
        .map(|i| {
            (
                format!("org{i}"),
                format!("sqlite://{}/org{i}.db", data.display()).into(),
            )
        })
        .collect();
    let spec = PluginSpec {
        grants: Grants::of(&[Capability::Config]),
        config: [
            (
                "template".to_owned(),
                format!("sqlite://{}/{{org}}.db", data.display()),
            ),
            (
                "directory".to_owned(),
                serde_json::Value::Object(directory).to_string(),
            ),
        ]
        .into(),
        samples: vec!["org1".into()],
        path: Some(plugin("pattern")?),
        ..PluginSpec::default()
    };
    let mut config = HostConfig {
        database_url: Some(format!("sqlite://{}/{{org}}.db", data.display())),
        orgs: true,
        tenants: true,
        ..HostConfig::default()
    };
    config.plugins.org_resolver = Some(spec);
    config.engine.cache_dir = Some(root.path().join("compiled"));
    config.migrations.apps_dir = "/nonexistent".into();
    let host = Host::load(config).await?;
    let (pattern, directory) = (plugin("pattern")?, plugin("directory")?);
    // Both components compiled into the cache before measuring (a deploy would precompile).
    host.swap_file(PluginKind::OrgResolver, &directory).await?;
    host.swap_file(PluginKind::OrgResolver, &pattern).await?;

    let app = Router::new()
        .route("/ping", get(ping))
        .layer(TenancyLayer::new(host.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let idle = Arc::new(AtomicBool::new(false));
    // Warm-up: every org and tenant file created, pools open.
    load(addr, round / 2, Instant::now(), idle.clone()).await?;

    let mut baseline = Vec::new();
    let mut swapped = Vec::new();
    let mut after_swap = Vec::new();
    let mut swap_times = Vec::new();
    let mut failed = (0usize, 0usize);
    let mut next_is_directory = true;
    for _ in 0..rounds {
        // Without swaps.
        let samples = load(addr, round, Instant::now(), idle.clone()).await?;
        failed.0 += samples.iter().filter(|s| !s.ok).count();
        baseline.extend(samples.iter().map(|s| s.took));

        // The same load with swaps spread evenly over the round.
        let t0 = Instant::now();
        let swapping = Arc::new(AtomicBool::new(true));
        let swapper = {
            let (host, swapping) = (host.clone(), swapping.clone());
            let (pattern, directory) = (pattern.clone(), directory.clone());
            let mut to_directory = next_is_directory;
            tokio::spawn(async move {
                let every = round / (swaps_per_round as u32 + 1);
                let mut windows = Vec::new();
                for k in 1..=swaps_per_round {
                    tokio::time::sleep_until((t0 + every * k as u32).into()).await;
                    let path = if to_directory { &directory } else { &pattern };
                    let began = t0.elapsed();
                    if let Err(e) = host.swap_file(PluginKind::OrgResolver, path).await {
                        swapping.store(false, Ordering::Relaxed);
                        return Err(e.into());
                    }
                    windows.push((began, t0.elapsed()));
                    to_directory = !to_directory;
                }
                swapping.store(false, Ordering::Relaxed);
                Ok::<_, anyhow::Error>((windows, to_directory))
            })
        };
        let samples = load(addr, round, t0, swapping.clone()).await?;
        let (windows, next) = swapper.await??;
        next_is_directory = next;
        failed.1 += samples.iter().filter(|s| !s.ok).count();
        for s in &samples {
            if windows
                .iter()
                .any(|(from, to)| s.start >= *from && s.start <= *to + AFTER_SWAP)
            {
                after_swap.push(s.took);
            }
        }
        swapped.extend(samples.iter().map(|s| s.took));
        swap_times.extend(windows.iter().map(|(from, to)| *to - *from));
    }
    server.abort();
    let swaps_done = swap_times.len();
    let (base, with, after, swap) = (
        Summary::of(&mut baseline),
        Summary::of(&mut swapped),
        Summary::of(&mut after_swap),
        Summary::of(&mut swap_times),
    );
    let generation = host
        .slot(PluginKind::OrgResolver)
        .map_or(0, |s| s.generation());
    let p99_ratio = ratio(with.p99_us, base.p99_us);
    let effect_ms = (after.p99_us - base.p99_us) / 1000.0;
    let report = serde_json::json!({
        "date": today(), "command": COMMAND, "load_average_before": load_before,
        "clients": CLIENTS, "orgs": ORGS, "tenants_per_org": TENANTS,
        "rounds": rounds, "round_seconds": round.as_secs_f64(),
        "swaps": swaps_done, "slot_generation": generation,
        "failed_without_swaps": failed.0, "failed_with_swaps": failed.1,
        "baseline": base, "with_swaps": with, "after_swap": after, "swap_duration": swap,
        "p99_ratio": p99_ratio, "p50_ratio": ratio(with.p50_us, base.p50_us),
        "swap_effect_p99_ms": effect_ms,
        "after_swap_p99_ratio": ratio(after.p99_us, base.p99_us),
    });
    let path = write_json("swap", &report)?;
    println!("## Hot-swap under HTTP load ({}, `{COMMAND}`)\n", today());
    println!(
        "axum + `TenancyLayer`, SQLite file per tenant ({ORGS} orgs × {TENANTS} tenants), {CLIENTS} keep-alive clients on loopback; {rounds} rounds of {:.1} s without swaps alternating with {rounds} rounds with swaps ({swaps_done} swaps in total, `pattern` ↔ `directory`, precompiled).\n",
        round.as_secs_f64()
    );
    println!(
        "| condition | requests | failed | p50 µs | p99 µs | max µs |\n|---|---|---|---|---|---|"
    );
    for (label, s, f) in [
        ("no swaps", base, Some(failed.0)),
        ("with swaps", with, Some(failed.1)),
        ("within 50 ms after a swap", after, None),
    ] {
        println!(
            "| {label} | {} | {} | {:.0} | {:.0} | {:.0} |",
            s.n,
            f.map_or("—".into(), |f| f.to_string()),
            s.p50_us,
            s.p99_us,
            s.max_us
        );
    }
    println!(
        "\np99 with swaps / without: {p99_ratio:.2}×; after a swap: {effect_ms:+.2} ms over the baseline p99; a swap takes {:.2} ms median, {:.2} ms max.",
        swap.p50_us / 1000.0,
        swap.max_us / 1000.0
    );
    println!("\n(json: {})", path.display());
    Ok(())
}
