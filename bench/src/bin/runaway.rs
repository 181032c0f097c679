//! A runaway org next to its neighbours (issue 9, P7): a host whose org resolver is the
//! `test-hostile` guest (org `loop` spins forever; any other org gets an answer). Neighbour
//! tasks resolve other orgs uncached (every request runs the plugin) while one task calls the
//! plugin for `loop` over and over, straight through the slot (no breaker or retry ever
//! stops it: the worst case), in rounds alternating with the same neighbour load alone.
//! Also measured: how long after its configured deadline each runaway call is stopped.
//!
//! `cargo run --release -p tenantry-bench --bin runaway` (after scripts/build-plugins.sh).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tenantry::plugin::{PluginKind, PluginLimits, PluginSpec};
use tenantry::resolve::ResolveOptions;
use tenantry::{Host, OrgId, PluginError};
use tenantry_bench::{Summary, load_average, plugin, ratio, size, today, write_json};

const COMMAND: &str = "cargo run --release -p tenantry-bench --bin runaway";
const NEIGHBOURS: usize = 4;
const DEADLINE: Duration = Duration::from_millis(50);

async fn neighbours(host: &Host, run: Duration) -> anyhow::Result<Vec<Duration>> {
    let until = Instant::now() + run;
    let mut tasks = Vec::new();
    for n in 0..NEIGHBOURS {
        let host = host.clone();
        tasks.push(tokio::spawn(async move {
            let orgs: Vec<OrgId> = (0..50)
                .map(|i| OrgId::new(&format!("org-{n}-{i}")).unwrap())
                .collect();
            let mut samples = Vec::new();
            let mut i = 0;
            while Instant::now() < until {
                let t = Instant::now();
                let target = host.resolve_org(&orgs[i % orgs.len()]).await?;
                samples.push(t.elapsed());
                anyhow::ensure!(target.url.starts_with("postgres://db/org-"));
                i += 1;
            }
            Ok(samples)
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
    let rounds = size(5usize, 1);
    let round = size(Duration::from_millis(2_000), Duration::from_millis(300));
    let spec = PluginSpec {
        limits: PluginLimits {
            fuel: u64::MAX,
            deadline: DEADLINE,
            ..PluginLimits::default()
        },
        ..PluginSpec::default()
    };
    // No caching: every neighbour request runs the plugin, so it competes with the runaway.
    let options = ResolveOptions {
        ttl: Duration::ZERO,
        min_ttl: Duration::ZERO,
        ..ResolveOptions::default()
    };
    let host = Host::builder()
        .org_resolver(plugin("test-hostile")?, spec)
        .resolve_options(options)
        .build()
        .await?;
    let slot = host
        .slot(PluginKind::OrgResolver)
        .expect("configured")
        .clone();
    neighbours(&host, round / 4).await?; // warm-up

    let mut alone = Vec::new();
    let mut beside = Vec::new();
    let mut stopped_after = Vec::new();
    let mut wrong_errors = 0usize;
    for _ in 0..rounds {
        alone.extend(neighbours(&host, round).await?);
        let stop = Arc::new(AtomicBool::new(false));
        let runaway = {
            let (slot, stop) = (slot.clone(), stop.clone());
            tokio::spawn(async move {
                let (mut took, mut wrong) = (Vec::new(), 0usize);
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let result = slot.current().resolve("loop").await;
                    let elapsed = t.elapsed();
                    match result {
                        Err(PluginError::DeadlineExceeded { .. }) => took.push(elapsed),
                        _ => wrong += 1,
                    }
                }
                (took, wrong)
            })
        };
        beside.extend(neighbours(&host, round).await?);
        stop.store(true, Ordering::Relaxed);
        let (took, wrong) = runaway.await?;
        stopped_after.extend(took);
        wrong_errors += wrong;
    }
    anyhow::ensure!(
        !stopped_after.is_empty(),
        "the runaway never hit its deadline"
    );
    let overshoot: Vec<Duration> = stopped_after
        .iter()
        .map(|d| d.saturating_sub(DEADLINE))
        .collect();
    let (alone, beside, stopped, mut overshoot) = (
        Summary::of(&mut alone),
        Summary::of(&mut beside),
        Summary::of(&mut stopped_after),
        overshoot,
    );
    let overshoot = Summary::of(&mut overshoot);
    let p99_ratio = ratio(beside.p99_us, alone.p99_us);
    let report = serde_json::json!({
        "date": today(), "command": COMMAND, "load_average_before": load_before,
        "neighbours": NEIGHBOURS, "rounds": rounds, "round_seconds": round.as_secs_f64(),
        "deadline_ms": DEADLINE.as_secs_f64() * 1000.0,
        "epoch_tick_ms": host.runtime().options().epoch_tick.as_secs_f64() * 1000.0,
        "neighbours_alone": alone, "neighbours_beside_runaway": beside,
        "p99_ratio": p99_ratio, "p50_ratio": ratio(beside.p50_us, alone.p50_us),
        "throughput_ratio": ratio(beside.n as f64, alone.n as f64),
        "runaway_time_to_error": stopped, "runaway_overshoot": overshoot,
        "runaway_calls": stopped.n, "runaway_other_outcomes": wrong_errors,
    });
    let path = write_json("runaway", &report)?;
    println!(
        "## A runaway org beside its neighbours ({}, `{COMMAND}`)\n",
        today()
    );
    println!(
        "`test-hostile` as the org resolver, deadline {} ms, fuel unlimited; {NEIGHBOURS} neighbour tasks resolving uncached orgs; {rounds} rounds of {:.1} s alone alternating with {rounds} beside one task that runs `loop` back to back.\n",
        DEADLINE.as_millis(),
        round.as_secs_f64()
    );
    println!("| condition | resolves | p50 µs | p99 µs | max µs |\n|---|---|---|---|---|");
    for (label, s) in [("alone", alone), ("beside the runaway", beside)] {
        println!(
            "| {label} | {} | {:.1} | {:.1} | {:.0} |",
            s.n, s.p50_us, s.p99_us, s.max_us
        );
    }
    println!(
        "\nNeighbours' p99 beside / alone: {p99_ratio:.2}×. The runaway ({} calls) was stopped {:.2} ms (median) / {:.2} ms (max) after its {} ms deadline.",
        stopped.n,
        overshoot.p50_us / 1000.0,
        overshoot.max_us / 1000.0,
        DEADLINE.as_millis()
    );
    println!("\n(json: {})", path.display());
    Ok(())
}
