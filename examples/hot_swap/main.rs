//! Hot-swap demo: eight tasks resolve orgs as fast as they can while the org resolver is
//! swapped back and forth between two plugins (and one broken candidate is refused).
//! Prints how many requests each version served and that none failed.
//!
//! `scripts/build-plugins.sh` first, then `cargo run --release -p tenantry-examples --example hot_swap`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tenantry::plugin::{Capability, Grants, PluginKind, PluginSpec};
use tenantry::resolve::ResolveOptions;
use tenantry::{Host, OrgId};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    let plugins = root.join("target/plugins");
    let (pattern, directory) = (plugins.join("pattern.wasm"), plugins.join("directory.wasm"));
    anyhow::ensure!(
        pattern.is_file() && directory.is_file(),
        "run scripts/build-plugins.sh first"
    );

    // Both plugins read the same config: `pattern` answers v1 URLs, `directory` v2 URLs.
    let orgs: Vec<String> = (0..100).map(|i| format!("org-{i}")).collect();
    let directory_map: serde_json::Map<String, serde_json::Value> = orgs
        .iter()
        .map(|o| {
            (
                o.clone(),
                format!("postgres://v2/{}", o.replace('-', "_")).into(),
            )
        })
        .collect();
    let spec = PluginSpec {
        grants: Grants::of(&[Capability::Config]),
        config: [
            ("template".to_owned(), "postgres://v1/{org}".to_owned()),
            (
                "directory".to_owned(),
                serde_json::Value::Object(directory_map).to_string(),
            ),
        ]
        .into(),
        samples: vec!["org-1".into()],
        ..PluginSpec::default()
    };
    // No caching, so that every request runs the plugin currently installed.
    let no_cache = ResolveOptions {
        ttl: Duration::ZERO,
        min_ttl: Duration::ZERO,
        ..ResolveOptions::default()
    };
    let cache_dir = root.join("target/hot-swap-cache");
    let host = Host::builder()
        .org_resolver(&pattern, spec)
        .resolve_options(no_cache)
        .cache_dir(cache_dir)
        .build()
        .await?;

    let stop = Arc::new(AtomicBool::new(false));
    let counts: Arc<[AtomicU64; 3]> = Arc::new(Default::default()); // v1, v2, failed
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let (host, stop, counts, orgs) =
                (host.clone(), stop.clone(), counts.clone(), orgs.clone());
            tokio::spawn(async move {
                let mut i = w;
                while !stop.load(Ordering::Relaxed) {
                    let org = OrgId::new(&orgs[i % orgs.len()]).expect("valid id");
                    let slot = match host.resolve_org(&org).await {
                        Ok(t) if t.url.starts_with("postgres://v1/") => 0,
                        Ok(t) if t.url.starts_with("postgres://v2/") => 1,
                        _ => 2,
                    };
                    counts[slot].fetch_add(1, Ordering::Relaxed);
                    i += 8;
                }
            })
        })
        .collect();

    let started = Instant::now();
    let mut swaps = 0;
    for round in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let next = if round % 2 == 0 { &directory } else { &pattern };
        let outcome = host.swap_file(PluginKind::OrgResolver, next).await?;
        swaps += 1;
        if round == 10 {
            // A candidate that is not a component is refused; the current plugin keeps serving.
            let refused = host
                .swap_bytes(PluginKind::OrgResolver, b"(module)")
                .await
                .unwrap_err();
            println!("refused a broken candidate: {refused}");
        }
        if round % 5 == 0 {
            println!(
                "swap {swaps:>2}: now serving {}… (generation {})",
                &outcome.sha256[..12],
                outcome.generation
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await?;
    }
    let [v1, v2, failed] = [0, 1, 2].map(|i| counts[i].load(Ordering::Relaxed));
    println!(
        "\n{} requests in {:.1?} across {swaps} swaps: {v1} answered by v1 (pattern), {v2} by v2 (directory), {failed} failed",
        v1 + v2 + failed,
        started.elapsed()
    );
    anyhow::ensure!(failed == 0, "{failed} requests failed during hot-swaps");
    println!("no request failed.");
    Ok(())
}
