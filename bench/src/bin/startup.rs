//! Start-up with three plugins (issue 9, P6): `Host::load()` with an org resolver
//! (`directory`) and a tenant policy (`tiered-policy`) — the two plugin slots a host has —
//! plus a third component (`pattern`) loaded through the host's runtime and self-tested the
//! same way, as an app that keeps a spare resolver would. Cold = an empty compile-cache
//! directory (every component compiled); warm = the same directory again (precompiled code
//! loaded). Each start is in a fresh host; the median of several is reported.
//!
//! `cargo run --release -p tenantry-bench --bin startup` (after scripts/build-plugins.sh).

use std::path::Path;
use std::time::{Duration, Instant};

use tenantry::plugin::{Capability, Grants, PluginKind, PluginSpec};
use tenantry::{Host, HostConfig};
use tenantry_bench::{Summary, load_average, plugin, ratio, size, today, write_json};

const COMMAND: &str = "cargo run --release -p tenantry-bench --bin startup";

fn config(cache: &Path) -> anyhow::Result<HostConfig> {
    let mut config = HostConfig {
        database_url: Some("sqlite:///tmp/tenantry-startup/{org}.db".into()),
        orgs: true,
        tenants: true,
        ..HostConfig::default()
    };
    config.engine.cache_dir = Some(cache.to_owned());
    config.plugins.org_resolver = Some(PluginSpec {
        path: Some(plugin("directory")?),
        grants: Grants::of(&[Capability::Config]),
        config: [(
            "directory".to_owned(),
            r#"{"acme": "sqlite:///tmp/tenantry-startup/acme.db"}"#.to_owned(),
        )]
        .into(),
        samples: vec!["acme".into()],
        ..PluginSpec::default()
    });
    config.plugins.tenant_policy = Some(PluginSpec {
        path: Some(plugin("tiered-policy")?),
        grants: Grants::of(&[Capability::Config]),
        config: [(
            "tiers".to_owned(),
            r#"{"standard": {"isolation": "row"}, "suspended": {"deny": "account suspended"}}"#
                .to_owned(),
        )]
        .into(),
        ..PluginSpec::default()
    });
    Ok(config)
}

/// One start: `Host::load` (two slots), then the third component. Returns (total, load).
async fn start(cache: &Path) -> anyhow::Result<(Duration, Duration)> {
    let config = config(cache)?;
    let third = PluginSpec {
        grants: Grants::of(&[Capability::Config]),
        config: [("template".to_owned(), "sqlite:///tmp/{org}.db".to_owned())].into(),
        ..PluginSpec::default()
    };
    let pattern = plugin("pattern")?;
    let t = Instant::now();
    let host = Host::load(config).await?;
    let load = t.elapsed();
    let spare = host
        .runtime()
        .load_file(Some(PluginKind::OrgResolver), third, &pattern)
        .await?;
    spare.self_test().await?;
    let total = t.elapsed();
    drop((spare, host));
    Ok((total, load))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let load_before = load_average();
    let (colds, warms) = size((5usize, 11usize), (1, 2));
    let mut cold = (Vec::new(), Vec::new());
    for _ in 0..colds {
        let dir = tempfile::tempdir()?;
        let (total, load) = start(dir.path()).await?;
        cold.0.push(total);
        cold.1.push(load);
    }
    let dir = tempfile::tempdir()?;
    start(dir.path()).await?; // fills the cache
    let mut warm = (Vec::new(), Vec::new());
    for _ in 0..warms {
        let (total, load) = start(dir.path()).await?;
        warm.0.push(total);
        warm.1.push(load);
    }
    let cached_files = std::fs::read_dir(dir.path())?.count();
    let (cold_total, cold_load, warm_total, warm_load) = (
        Summary::of(&mut cold.0),
        Summary::of(&mut cold.1),
        Summary::of(&mut warm.0),
        Summary::of(&mut warm.1),
    );
    let report = serde_json::json!({
        "date": today(), "command": COMMAND, "load_average_before": load_before,
        "plugins": ["directory (org resolver slot)", "tiered-policy (tenant policy slot)", "pattern (runtime.load_file + self_test)"],
        "cached_files": cached_files,
        "cold_three": cold_total, "cold_host_load": cold_load,
        "warm_three": warm_total, "warm_host_load": warm_load,
        "cold_vs_warm_p50": ratio(cold_total.p50_us, warm_total.p50_us),
    });
    let path = write_json("startup", &report)?;
    println!(
        "## Start-up with three plugins ({}, `{COMMAND}`)\n",
        today()
    );
    println!(
        "`Host::load` with `directory` + `tiered-policy`, then `pattern` through the host's runtime (self-tested); {colds} cold starts (empty cache dir), {warms} warm (precompiled).\n"
    );
    println!(
        "| start | median ms | min ms | max ms | of which `Host::load` (median ms) |\n|---|---|---|---|---|"
    );
    for (label, total, load) in [
        ("cold (compile)", cold_total, cold_load),
        ("warm (cache dir)", warm_total, warm_load),
    ] {
        let ms = |us: f64| us / 1000.0;
        println!(
            "| {label} | {:.1} | {:.1} | {:.1} | {:.1} |",
            ms(total.p50_us),
            ms(total.min_us),
            ms(total.max_us),
            ms(load.p50_us)
        );
    }
    println!("\n(json: {})", path.display());
    Ok(())
}
