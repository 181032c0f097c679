//! The org resolution pipeline: cached lookups, cold resolves through the Rust `directory`
//! and `pattern` plugins against a native resolver, and 10 000 distinct orgs (memory per
//! cached org, hit rate under a bounded cache).
//!
//! `cargo run --release -p tenantry-bench --bin resolve` (after scripts/build-plugins.sh).

use std::time::Instant;

use tenantry::plugin::{Capability, Grants, PluginSpec};
use tenantry::resolve::ResolveOptions;
use tenantry::{Host, OrgId};
use tenantry_bench::{Summary, plugin, rss_bytes, size, today, write_json};

fn directory_spec() -> PluginSpec {
    let map: serde_json::Map<String, serde_json::Value> = (0..16)
        .map(|i| (format!("org-{i}"), serde_json::json!({"url": format!("postgresql://db{}/org_{i}", i % 4), "region": "eu", "tier": "pro"})))
        .collect();
    PluginSpec {
        grants: Grants::of(&[Capability::Config]),
        config: [(
            "directory".to_owned(),
            serde_json::Value::Object(map).to_string(),
        )]
        .into(),
        ..PluginSpec::default()
    }
}

fn pattern_spec() -> PluginSpec {
    PluginSpec {
        grants: Grants::of(&[Capability::Config]),
        config: [(
            "template".to_owned(),
            "postgresql://app:pw@db/{org}".to_owned(),
        )]
        .into(),
        ..PluginSpec::default()
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let (cold_n, hot, orgs_n) = size((5_000, 1_000_000, 10_000), (50, 1_000, 100));
    let ids: Vec<OrgId> = (0..orgs_n)
        .map(|i| OrgId::new(&format!("org-{i}")).unwrap())
        .collect();
    let mut results = serde_json::Map::new();

    // Cached lookups: one org, resolved once, then looked up hot times.
    let host = Host::builder()
        .org_resolver(plugin("directory")?, directory_spec())
        .build()
        .await?;
    host.resolve_org(&ids[1]).await?;
    let t = Instant::now();
    for _ in 0..hot {
        std::hint::black_box(host.resolve_org(std::hint::black_box(&ids[1])).await?);
    }
    let cached_ns = t.elapsed().as_nanos() as f64 / hot as f64;
    let map: std::collections::HashMap<OrgId, String> =
        ids.iter().map(|o| (o.clone(), o.db_name())).collect();
    let t = Instant::now();
    for _ in 0..hot {
        std::hint::black_box(map.get(std::hint::black_box(&ids[1])));
    }
    let hashmap_ns = t.elapsed().as_nanos() as f64 / hot as f64;
    results.insert("cached lookup ns".into(), cached_ns.into());
    results.insert("hashmap lookup ns".into(), hashmap_ns.into());

    // Cold resolves: every lookup misses (the cache is cleared), so each one runs the
    // plugin: breaker check, fresh sandboxed instance, call, validation, cache insert.
    let mut cold = serde_json::Map::new();
    let mut rows = Vec::new();
    for (name, spec) in [("directory", directory_spec()), ("pattern", pattern_spec())] {
        let host = Host::builder()
            .org_resolver(plugin(name)?, spec)
            .build()
            .await?;
        let mut samples = Vec::with_capacity(cold_n);
        for i in 0..cold_n + 200 {
            host.clear_org_cache(None).await;
            let org = &ids[i % 16];
            let t = Instant::now();
            let r = host.resolve_org(org).await?;
            let took = t.elapsed();
            std::hint::black_box(r);
            if i >= 200 {
                samples.push(took);
            }
        }
        let s = Summary::of(&mut samples);
        rows.push((name, s));
        cold.insert(name.into(), serde_json::to_value(s)?);
    }
    let mut native = Vec::with_capacity(cold_n);
    for i in 0..cold_n {
        let t = Instant::now();
        std::hint::black_box(format!(
            "postgresql://db{}/{}",
            i % 4,
            ids[i % 16].db_name()
        ));
        native.push(t.elapsed());
    }
    let native = Summary::of(&mut native);
    cold.insert("native closure".into(), serde_json::to_value(native)?);
    results.insert("cold resolve".into(), cold.into());

    // 10 000 orgs through the pattern plugin: memory per cached answer, then hit rate
    // of a uniform access pattern with an unbounded and a half-size cache.
    let mut scale = serde_json::Map::new();
    for capacity in [100_000u64, (orgs_n / 2) as u64] {
        let options = ResolveOptions {
            cache_capacity: capacity,
            ..ResolveOptions::default()
        };
        let host = Host::builder()
            .org_resolver(plugin("pattern")?, pattern_spec())
            .resolve_options(options)
            .build()
            .await?;
        host.resolve_org(&ids[0]).await?;
        let before = rss_bytes();
        let t = Instant::now();
        let report = host.preload_orgs(ids.clone(), 8).await;
        let preload = t.elapsed();
        anyhow::ensure!(
            report.failed.is_empty(),
            "preload failed: {:?}",
            report.failed.first()
        );
        let after = rss_bytes();
        let warm = host.resolver_metrics().await;
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            host.resolve_org(&ids[(x % orgs_n as u64) as usize]).await?;
        }
        let m = host.resolver_metrics().await;
        let hits = m.cache_hits - warm.cache_hits;
        let misses = m.cache_misses - warm.cache_misses;
        scale.insert(
            format!("capacity {capacity}"),
            serde_json::json!({
                "orgs": orgs_n, "cached": m.cache_size, "preload_ms": preload.as_millis() as u64,
                "rss_growth_bytes": after.saturating_sub(before),
                "bytes_per_cached_org": after.saturating_sub(before) as f64 / orgs_n as f64,
                "hit_rate_after_warmup": hits as f64 / (hits + misses).max(1) as f64,
            }),
        );
    }
    results.insert("10k orgs".into(), scale.clone().into());

    let report = serde_json::json!({ "date": today(), "command": "cargo run --release -p tenantry-bench --bin resolve", "results": results });
    let path = write_json("resolve", &report)?;
    println!(
        "## Org resolution ({}, `cargo run --release -p tenantry-bench --bin resolve`)\n",
        today()
    );
    println!("| measure | value | baseline (same run) |");
    println!("|---|---|---|");
    println!(
        "| cached `resolve_org` (1 org, {hot} lookups) | {cached_ns:.0} ns | `HashMap::get` {hashmap_ns:.0} ns |"
    );
    for (name, s) in &rows {
        println!(
            "| cold resolve through `{name}` wasm plugin, p50 / p99 | {:.1} µs / {:.1} µs | native closure {:.2} µs / {:.2} µs |",
            s.p50_us, s.p99_us, native.p50_us, native.p99_us
        );
    }
    for (k, v) in &scale {
        println!(
            "| 10 000 orgs, cache {k}: RSS per cached org / hit rate (uniform, after warm-up) | {:.0} B / {:.1} % | preload {} ms |",
            v["bytes_per_cached_org"].as_f64().unwrap_or(0.0),
            v["hit_rate_after_warmup"].as_f64().unwrap_or(0.0) * 100.0,
            v["preload_ms"]
        );
    }
    println!("\n(json: {})", path.display());
    Ok(())
}
