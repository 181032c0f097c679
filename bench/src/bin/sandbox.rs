//! Per-call cost of the sandbox: a fresh instance per call versus a reused instance,
//! against a native Rust function doing the same work; and the latency of well-behaved
//! calls while a runaway plugin spins next to them.
//!
//! `cargo run --release -p tenantry-bench --bin sandbox` (after scripts/build-plugins.sh).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tenantry::plugin::{
    Capability, EngineOptions, Grants, PluginLimits, PluginRuntime, PluginSpec,
};
use tenantry_bench::{Summary, plugin, size, today, write_json};

fn spec(reuse: bool) -> PluginSpec {
    PluginSpec {
        grants: Grants::of(&[Capability::Config]),
        config: [(
            "template".to_owned(),
            "postgresql://app:pw@db:5432/{org}_database".to_owned(),
        )]
        .into(),
        reuse_instances: reuse,
        ..PluginSpec::default()
    }
}

fn native(org: &str) -> String {
    "postgresql://app:pw@db:5432/{org}_database".replace("{org}", &org.replace('-', "_"))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let calls = size(20_000, 200);
    let (window, runaway_deadline) = size(
        (Duration::from_secs(2), Duration::from_secs(1)),
        (Duration::from_millis(200), Duration::from_millis(100)),
    );
    let runtime = PluginRuntime::new(EngineOptions::default())?;
    let pattern = plugin("pattern")?;
    let orgs: Vec<String> = (0..calls).map(|i| format!("org-{i}")).collect();

    let mut native_samples = Vec::with_capacity(calls);
    for org in &orgs {
        let t = Instant::now();
        std::hint::black_box(native(std::hint::black_box(org)));
        native_samples.push(t.elapsed());
    }
    let native_summary = Summary::of(&mut native_samples);

    let mut results = serde_json::Map::new();
    let mut rows = Vec::new();
    for (label, reuse) in [
        ("fresh instance per call", false),
        ("reused instance", true),
    ] {
        let p = runtime.load_file(None, spec(reuse), &pattern).await?;
        for org in orgs.iter().take(500) {
            p.resolve(org).await?.map_err(|e| anyhow::anyhow!("{e}"))?; // warm up
        }
        let mut samples = Vec::with_capacity(calls);
        for org in &orgs {
            let t = Instant::now();
            let answer = p.resolve(org).await?;
            samples.push(t.elapsed());
            std::hint::black_box(answer).map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        let s = Summary::of(&mut samples);
        rows.push(format!(
            "| {label} | {:.1} | {:.1} | {:.1} | {:.0}× |",
            s.p50_us,
            s.p99_us,
            s.mean_us,
            s.p50_us / native_summary.p50_us.max(0.001)
        ));
        results.insert(label.to_owned(), serde_json::to_value(s)?);
    }
    results.insert(
        "native closure".into(),
        serde_json::to_value(native_summary)?,
    );

    // Neighbours of a runaway: p99 of good calls alone, then beside a plugin that loops
    // until its 1 s deadline, over and over.
    let good = Arc::new(runtime.load_file(None, spec(false), &pattern).await?);
    let runaway_spec = PluginSpec {
        limits: PluginLimits {
            fuel: u64::MAX,
            deadline: runaway_deadline,
            ..PluginLimits::default()
        },
        ..PluginSpec::default()
    };
    let runaway = Arc::new(
        runtime
            .load_file(None, runaway_spec, &plugin("test-hostile")?)
            .await?,
    );
    let measure = |good: Arc<tenantry::plugin::LoadedPlugin>| async move {
        let mut samples = Vec::new();
        let until = Instant::now() + window;
        while Instant::now() < until {
            let t = Instant::now();
            let _ = good.resolve("acme").await;
            samples.push(t.elapsed());
            tokio::task::yield_now().await;
        }
        Summary::of(&mut samples)
    };
    let alone = measure(good.clone()).await;
    let stop = Arc::new(AtomicBool::new(false));
    let spinner = {
        let (runaway, stop) = (runaway.clone(), stop.clone());
        tokio::spawn(async move {
            let mut deadlines = 0u32;
            while !stop.load(Ordering::Relaxed) {
                if runaway.resolve("loop").await.is_err() {
                    deadlines += 1;
                }
            }
            deadlines
        })
    };
    let beside = measure(good).await;
    stop.store(true, Ordering::Relaxed);
    let deadlines = spinner.await?;
    results.insert("neighbours alone".into(), serde_json::to_value(alone)?);
    results.insert(
        "neighbours beside a runaway".into(),
        serde_json::to_value(beside)?,
    );
    results.insert("runaway deadlines hit".into(), deadlines.into());

    let report = serde_json::json!({ "date": today(), "command": "cargo run --release -p tenantry-bench --bin sandbox", "results": results });
    let path = write_json("sandbox", &report)?;
    println!(
        "## Sandbox: per-call cost ({}, `cargo run --release -p tenantry-bench --bin sandbox`)\n",
        today()
    );
    println!(
        "`pattern` plugin (Rust), {calls} sequential `resolve` calls, pooling allocator; native = the same substitution as a Rust function.\n"
    );
    println!("| mode | p50 µs | p99 µs | mean µs | p50 vs native |");
    println!("|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
    println!(
        "| native closure | {:.2} | {:.2} | {:.2} | 1× |\n",
        native_summary.p50_us, native_summary.p99_us, native_summary.mean_us
    );
    println!(
        "Neighbours of a runaway plugin (2 worker threads; the runaway loops until its 1 s deadline, {deadlines} times):\n"
    );
    println!("| condition | calls | p50 µs | p99 µs | max µs |");
    println!("|---|---|---|---|---|");
    println!(
        "| no runaway | {} | {:.1} | {:.1} | {:.0} |",
        alone.n, alone.p50_us, alone.p99_us, alone.max_us
    );
    println!(
        "| beside a runaway | {} | {:.1} | {:.1} | {:.0} |",
        beside.n, beside.p50_us, beside.p99_us, beside.max_us
    );
    println!("\n(json: {})", path.display());
    Ok(())
}
