//! How the cost of org resolution grows with the number of cached orgs (issue 9, P1/P2 at
//! 10, 1 000 and 100 000 orgs): cached lookups spread uniformly over N cached orgs, and a
//! cold resolve through the Rust `directory` plugin of an org that is not cached while N
//! others are, each against a native baseline measured in the same run (a `HashMap` of N
//! entries; a native closure building the same URL).
//!
//! The N orgs are cached by resolving them through the `pattern` plugin (it answers any
//! id; a `directory` listing 100 000 orgs would make every call parse 100 000 entries,
//! which measures JSON parsing, not the cache), then the resolver is hot-swapped to
//! `directory` with `keep-cache-on-swap`, so the cache keeps all N answers while cold
//! resolves go through `directory`.
//!
//! `cargo run --release -p tenantry-bench --bin scale` (after scripts/build-plugins.sh).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tenantry::plugin::{Capability, Grants, PluginKind, PluginSpec};
use tenantry::resolve::ResolveOptions;
use tenantry::{Host, OrgId};
use tenantry_bench::{Summary, plugin, ratio, rss_bytes, size, today, write_json};

const COMMAND: &str = "cargo run --release -p tenantry-bench --bin scale";
/// Orgs the `directory` plugin lists (cold-resolved over and over, never part of the N).
const LISTED: usize = 16;

fn spec() -> PluginSpec {
    let map: serde_json::Map<String, serde_json::Value> = (0..LISTED)
        .map(|i| (format!("listed-{i}"), serde_json::json!({"url": format!("postgresql://db{}/listed_{i}", i % 4), "region": "eu", "tier": "pro"})))
        .collect();
    PluginSpec {
        grants: Grants::of(&[Capability::Config]),
        config: [
            (
                "directory".to_owned(),
                serde_json::Value::Object(map).to_string(),
            ),
            (
                "template".to_owned(),
                "postgresql://app:pw@db/{org}".to_owned(),
            ),
        ]
        .into(),
        samples: vec!["listed-1".into()],
        ..PluginSpec::default()
    }
}

/// Xorshift, so the access pattern is the same every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// Time `batches` batches of `per_batch` calls of `f`; the summary is of per-call means
/// per batch (timing each ~100 ns lookup alone would mostly measure the clock).
async fn batched<F, Fut>(batches: usize, per_batch: usize, mut f: F) -> anyhow::Result<Summary>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut samples = Vec::with_capacity(batches);
    for _ in 0..batches {
        let t = Instant::now();
        for _ in 0..per_batch {
            f().await?;
        }
        samples.push(t.elapsed() / per_batch as u32);
    }
    Ok(Summary::of(&mut samples))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let counts: Vec<usize> = size(vec![10, 1_000, 100_000], vec![10, 100]);
    let (batches, per_batch) = size((2_000, 100), (20, 10));
    let cold_n = size(3_000, 30);
    let listed: Vec<OrgId> = (0..LISTED)
        .map(|i| OrgId::new(&format!("listed-{i}")).unwrap())
        .collect();
    let mut rows = Vec::new();
    let mut json = Vec::new();
    // Compiled once, loaded from the cache by every host after the first.
    let compiled = tempfile::tempdir()?;
    for &n in &counts {
        let orgs: Vec<OrgId> = (0..n)
            .map(|i| OrgId::new(&format!("org-{i}")).unwrap())
            .collect();
        let options = ResolveOptions {
            cache_capacity: (n + 2 * LISTED) as u64 * 2,
            keep_cache_on_swap: true,
            ..ResolveOptions::default()
        };
        let host = Host::builder()
            .org_resolver(plugin("pattern")?, spec())
            .resolve_options(options)
            .cache_dir(compiled.path())
            .build()
            .await?;
        let rss_before = rss_bytes();
        let t = Instant::now();
        let report = host.preload_orgs(orgs.clone(), 8).await;
        let fill = t.elapsed();
        anyhow::ensure!(
            report.failed.is_empty(),
            "preload failed: {:?}",
            report.failed.first()
        );
        let rss_after = rss_bytes();
        host.swap_file(PluginKind::OrgResolver, &plugin("directory")?)
            .await?;

        // Cached lookups, uniform over the N orgs.
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let cached = batched(batches, per_batch, || {
            let org = &orgs[rng.below(n)];
            let host = &host;
            async move {
                std::hint::black_box(host.resolve_org(org).await?);
                Ok(())
            }
        })
        .await?;
        let map: HashMap<OrgId, String> = orgs
            .iter()
            .map(|o| (o.clone(), format!("postgresql://app:pw@db/{}", o.db_name())))
            .collect();
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let hashmap = batched(batches, per_batch, || {
            std::hint::black_box(map.get(&orgs[rng.below(n)]));
            async { Ok(()) }
        })
        .await?;

        // Cold resolves of orgs not among the N, through `directory`.
        let mut cold = Vec::with_capacity(cold_n);
        for i in 0..cold_n + cold_n / 10 {
            let org = &listed[i % LISTED];
            host.clear_org_cache(Some(org)).await;
            let t = Instant::now();
            std::hint::black_box(host.resolve_org(org).await?);
            if i >= cold_n / 10 {
                cold.push(t.elapsed());
            }
        }
        let cold = Summary::of(&mut cold);
        let metrics = host.resolver_metrics().await;
        anyhow::ensure!(
            metrics.cache_size as usize >= n,
            "the cache lost orgs: {} cached, {n} expected",
            metrics.cache_size
        );
        let mut native = Vec::with_capacity(cold_n);
        for i in 0..cold_n {
            let t = Instant::now();
            std::hint::black_box(format!(
                "postgresql://db{}/{}",
                i % 4,
                listed[i % LISTED].db_name()
            ));
            native.push(t.elapsed());
        }
        let native = Summary::of(&mut native);
        rows.push(format!(
            "| {n} | {:.0} ns / {:.0} ns | {:.0} ns ({:.0}×) | {:.1} µs / {:.1} µs | {:.2} µs ({:.0}×) | {:.0} B | {} ms |",
            cached.p50_us * 1000.0,
            cached.p99_us * 1000.0,
            hashmap.p50_us * 1000.0,
            ratio(cached.p50_us, hashmap.p50_us),
            cold.p50_us,
            cold.p99_us,
            native.p50_us,
            ratio(cold.p50_us, native.p50_us),
            ratio(rss_after.saturating_sub(rss_before) as f64, n as f64),
            fill.as_millis()
        ));
        json.push(serde_json::json!({
            "orgs_cached": n,
            "cached_lookup": cached, "hashmap_lookup": hashmap,
            "cached_vs_hashmap_p50": ratio(cached.p50_us, hashmap.p50_us),
            "cold_directory": cold, "cold_native": native,
            "cold_vs_native_p50": ratio(cold.p50_us, native.p50_us),
            "rss_growth_bytes": rss_after.saturating_sub(rss_before),
            "fill_ms": fill.as_secs_f64() * 1000.0,
        }));
        drop(host);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let report = serde_json::json!({
        "date": today(), "command": COMMAND,
        "lookup_batches": batches, "lookups_per_batch": per_batch, "cold_resolves": cold_n,
        "by_orgs_cached": json,
    });
    let path = write_json("scale", &report)?;
    println!(
        "## Cost as the org count grows ({}, `{COMMAND}`)\n",
        today()
    );
    println!(
        "Cached lookups: {batches} batches of {per_batch} `resolve_org` calls, uniform over the N cached orgs (spread = p50 / p99 of batch means). Cold: {cold_n} resolves through the `directory` plugin of an org outside the N. Baselines in the same run: `HashMap::get` over the same N ids; a native closure building the URL.\n"
    );
    println!(
        "| orgs cached (N) | cached lookup p50 / p99 | `HashMap::get` p50 (ratio) | cold `directory` resolve p50 / p99 | native closure p50 (ratio) | RSS per cached org | fill time |"
    );
    println!("|---|---|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
    println!("\n(json: {})", path.display());
    Ok(())
}
