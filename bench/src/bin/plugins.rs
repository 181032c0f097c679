//! Guest plugins by language.
//!
//! `cargo run --release -p tenantry-bench -- plugins` (or `--bin plugins`) measures the same org resolver (the
//! `directory` behaviour) built in every guest language, through the real host runtime:
//! component size, cold compile time, precompiled load time, instantiation and per-call time,
//! with Rust as the baseline. It writes `target/bench/plugins.json` and prints a markdown
//! table. The components come from `scripts/build-plugins.sh`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use serde::Serialize;
use tenantry::plugin::{
    Capability, EngineOptions, Grants, LoadedPlugin, PluginKind, PluginRuntime, PluginSpec,
};

#[derive(Parser)]
#[command(
    about = "Guest plugins by language: size, compile, load, instantiate, call (run with --release)"
)]
struct Cli {
    /// The benchmark: `plugins` (the default; accepted so that
    /// `cargo run -p tenantry-bench -- plugins` reads naturally).
    #[arg(value_parser = ["plugins"], default_value = "plugins")]
    bench: String,
    #[command(flatten)]
    args: PluginsArgs,
}

#[derive(clap::Args)]
struct PluginsArgs {
    /// Languages to measure, comma-separated (rust first: it is the baseline).
    #[arg(long, value_delimiter = ',', default_value = "rust,c,js,python")]
    langs: Vec<String>,
    /// Wall-clock budget for each series of calls, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    call_budget_ms: u64,
    /// Cold compiles per language (the median is reported).
    #[arg(long, default_value_t = 3)]
    compiles: usize,
    /// Where the components are (default: target/plugins, or $TENANTRY_PLUGIN_BUILD_DIR).
    #[arg(long)]
    plugins_dir: Option<PathBuf>,
    /// Where to write plugins.json (default: target/bench).
    #[arg(long)]
    out_dir: Option<PathBuf>,
}

const COMMAND: &str = "cargo run --release -p tenantry-bench -- plugins";

/// The directory every language's resolver is configured with; the benchmark resolves `acme`.
const DIRECTORY: &str = r#"{
  "acme": {"url": "postgresql://app:pw@db1:5432/acme", "region": "eu-west-1", "tier": "enterprise", "ttl_ms": 300000},
  "globex": "postgresql://db2/globex",
  "initech": {"url": "postgresql://db3/initech", "labels": {"team": "payments"}}
}"#;

#[derive(Serialize)]
struct Report {
    date: String,
    command: &'static str,
    profile: &'static str,
    machine: Machine,
    /// What the call series resolve, and with which plugin.
    workload: &'static str,
    languages: Vec<LangResult>,
}

#[derive(Serialize)]
struct Machine {
    cores: usize,
    cpu: String,
    os: String,
}

#[derive(Serialize)]
struct LangResult {
    language: String,
    /// The org resolver measured.
    plugin: String,
    size_bytes: u64,
    /// The language's tenant policy, for size comparison.
    policy_size_bytes: Option<u64>,
    /// `PluginRuntime::load` without a cache: Cranelift compiles the component.
    compile_ms: Stats,
    /// `PluginRuntime::load` in a second runtime sharing the first one's cache directory.
    precompiled_load_ms: Stats,
    /// One `resolve` with a fresh instance (the host's default).
    call_fresh_us: Stats,
    /// One `resolve` on a reused, warm instance (`reuse-instances = true`).
    call_reused_us: Stats,
    /// Median fresh-instance call minus median reused-instance call.
    instantiate_us: f64,
    /// This language over Rust (size, compile, load, fresh call, reused call).
    vs_rust: Option<Ratios>,
}

#[derive(Serialize)]
struct Ratios {
    size: f64,
    compile: f64,
    precompiled_load: f64,
    instantiate: f64,
    call_fresh: f64,
    call_reused: f64,
}

#[derive(Serialize, Clone, Copy)]
struct Stats {
    median: f64,
    p99: f64,
    min: f64,
    samples: usize,
}

impl Stats {
    fn of(mut values: Vec<f64>) -> Self {
        assert!(!values.is_empty(), "no samples");
        values.sort_by(f64::total_cmp);
        let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
        Stats {
            median: at(0.5),
            p99: at(0.99),
            min: values[0],
            samples: values.len(),
        }
    }
}

fn main() -> Result<()> {
    let args = Cli::parse().args;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(plugins(args))
}

/// The directory resolver and tenant policy of a language.
fn plugin_names(lang: &str) -> Result<(&'static str, &'static str)> {
    Ok(match lang {
        "rust" => ("directory", "tiered-policy"),
        "c" => ("c-directory", "c-policy"),
        "js" => ("js-directory", "js-policy"),
        "python" => ("python-directory", "python-policy"),
        other => bail!("unknown language {other:?}: use rust, c, js or python"),
    })
}

fn spec(reuse_instances: bool) -> PluginSpec {
    PluginSpec {
        grants: Grants::of(&[Capability::Config]),
        config: [("directory".to_owned(), DIRECTORY.to_owned())].into(),
        reuse_instances,
        ..PluginSpec::default()
    }
}

async fn load(runtime: &PluginRuntime, path: &Path, reuse: bool) -> Result<(LoadedPlugin, f64)> {
    let start = Instant::now();
    let plugin = runtime
        .load_file(Some(PluginKind::OrgResolver), spec(reuse), path)
        .await
        .with_context(|| format!("loading {}", path.display()))?;
    Ok((plugin, ms(start.elapsed())))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Time `resolve("acme")` repeatedly for about `budget` (at least 50 calls).
async fn calls(plugin: &LoadedPlugin, budget: Duration) -> Result<Stats> {
    // Warm up: first calls fault in code pages and fill the instance pool.
    for _ in 0..5 {
        check(plugin.resolve("acme").await)?;
    }
    let mut samples = Vec::new();
    let start = Instant::now();
    while (start.elapsed() < budget || samples.len() < 50) && samples.len() < 200_000 {
        let t = Instant::now();
        let answer = plugin.resolve("acme").await;
        samples.push(us(t.elapsed()));
        check(answer)?;
    }
    Ok(Stats::of(samples))
}

fn check<E: std::fmt::Debug>(
    answer: Result<Result<tenantry::plugin::OrgTarget, E>, tenantry::PluginError>,
) -> Result<()> {
    match answer {
        Ok(Ok(t)) if t.url == "postgresql://app:pw@db1:5432/acme" => Ok(()),
        other => bail!("unexpected answer: {other:?}"),
    }
}

async fn measure(lang: &str, dir: &Path, args: &PluginsArgs) -> Result<LangResult> {
    let (name, policy) = plugin_names(lang)?;
    let path = dir.join(format!("{name}.wasm"));
    if !path.is_file() {
        bail!(
            "{} is missing: build the plugins first with scripts/build-plugins.sh",
            path.display()
        );
    }
    let size_bytes = std::fs::metadata(&path)?.len();
    let policy_size_bytes = std::fs::metadata(dir.join(format!("{policy}.wasm")))
        .ok()
        .map(|m| m.len());
    eprintln!("{lang}: {name}.wasm, {size_bytes} bytes");

    // Cold: no cache, so every load runs Cranelift.
    let cold = PluginRuntime::new(EngineOptions::default())?;
    let mut compile = Vec::new();
    for _ in 0..args.compiles.max(1) {
        compile.push(load(&cold, &path, false).await?.1);
    }
    let compile_ms = Stats::of(compile);
    eprintln!("  compile            {:>10.2} ms", compile_ms.median);

    // Precompiled: one runtime fills the cache, a second one (a restarted host) loads from it.
    let cache = tempfile::tempdir()?;
    let cached = || {
        PluginRuntime::new(EngineOptions {
            cache_dir: Some(cache.path().to_owned()),
            ..EngineOptions::default()
        })
    };
    load(&cached()?, &path, false).await?;
    let warm_runtime = cached()?;
    let mut loads = Vec::new();
    for _ in 0..10 {
        loads.push(load(&warm_runtime, &path, false).await?.1);
    }
    let hits = warm_runtime
        .stats()
        .cache_hits
        .load(std::sync::atomic::Ordering::Relaxed);
    if hits != 10 {
        bail!("{lang}: expected 10 cache hits, got {hits}");
    }
    let precompiled_load_ms = Stats::of(loads);
    eprintln!(
        "  precompiled load   {:>10.2} ms",
        precompiled_load_ms.median
    );

    let budget = Duration::from_millis(args.call_budget_ms);
    let (fresh, _) = load(&warm_runtime, &path, false).await?;
    let call_fresh_us = calls(&fresh, budget).await?;
    eprintln!(
        "  call (fresh)       {:>10.2} µs median, {:.2} µs p99, {} calls",
        call_fresh_us.median, call_fresh_us.p99, call_fresh_us.samples
    );
    let (reused, _) = load(&warm_runtime, &path, true).await?;
    let call_reused_us = calls(&reused, budget).await?;
    eprintln!(
        "  call (reused)      {:>10.2} µs median, {:.2} µs p99, {} calls",
        call_reused_us.median, call_reused_us.p99, call_reused_us.samples
    );
    Ok(LangResult {
        language: lang.to_owned(),
        plugin: name.to_owned(),
        size_bytes,
        policy_size_bytes,
        compile_ms,
        precompiled_load_ms,
        call_fresh_us,
        call_reused_us,
        instantiate_us: (call_fresh_us.median - call_reused_us.median).max(0.0),
        vs_rust: None,
    })
}

async fn plugins(args: PluginsArgs) -> Result<()> {
    if cfg!(debug_assertions) {
        eprintln!("warning: a debug build; numbers are only meaningful with --release");
    }
    let root = tenantry_bench::root();
    let dir = args
        .plugins_dir
        .clone()
        .or_else(|| std::env::var_os("TENANTRY_PLUGIN_BUILD_DIR").map(PathBuf::from))
        .unwrap_or_else(|| root.join("target/plugins"));
    let mut results = Vec::new();
    for lang in &args.langs {
        results.push(measure(lang, &dir, &args).await?);
    }
    if let Some(base) = results.iter().position(|r| r.language == "rust") {
        let (size, compile, load, inst, fresh, reused) = {
            let b = &results[base];
            (
                b.size_bytes as f64,
                b.compile_ms.median,
                b.precompiled_load_ms.median,
                b.instantiate_us,
                b.call_fresh_us.median,
                b.call_reused_us.median,
            )
        };
        for r in &mut results {
            r.vs_rust = Some(Ratios {
                size: r.size_bytes as f64 / size,
                compile: r.compile_ms.median / compile,
                precompiled_load: r.precompiled_load_ms.median / load,
                instantiate: r.instantiate_us / inst.max(0.01),
                call_fresh: r.call_fresh_us.median / fresh,
                call_reused: r.call_reused_us.median / reused,
            });
        }
    }
    let report = Report {
        date: tenantry_bench::today(),
        command: COMMAND,
        profile: if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        machine: machine(),
        workload: "resolve(\"acme\") on the language's directory resolver with a 3-org JSON directory (config granted)",
        languages: results,
    };
    let out_dir = args.out_dir.unwrap_or_else(tenantry_bench::out_dir);
    std::fs::create_dir_all(&out_dir)?;
    let json = out_dir.join("plugins.json");
    std::fs::write(&json, serde_json::to_string_pretty(&report)? + "\n")?;
    println!("{}", markdown(&report));
    eprintln!("wrote {}", json.display());
    Ok(())
}

fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1} MB", b as f64 / (1 << 20) as f64),
        b => format!("{:.0} KB", b as f64 / 1024.0),
    }
}

fn duration_ms(v: f64) -> String {
    match v {
        v if v >= 1000.0 => format!("{:.2} s", v / 1000.0),
        v if v >= 10.0 => format!("{v:.0} ms"),
        v if v >= 1.0 => format!("{v:.1} ms"),
        v => format!("{v:.2} ms"),
    }
}

fn duration_us(v: f64) -> String {
    match v {
        v if v >= 1000.0 => format!("{:.1} ms", v / 1000.0),
        v if v >= 100.0 => format!("{v:.0} µs"),
        v => format!("{v:.1} µs"),
    }
}

fn ratio(r: Option<f64>) -> String {
    match r {
        Some(r) if (r - 1.0).abs() < 0.005 => " (1×)".to_owned(),
        Some(r) if r >= 10.0 => format!(" ({r:.0}×)"),
        Some(r) => format!(" ({r:.1}×)"),
        None => String::new(),
    }
}

fn markdown(report: &Report) -> String {
    let mut out = format!(
        "Measured {} with `{}` ({} build; machine: {} cores, {}). Ratios are over Rust.\n\n",
        report.date, report.command, report.profile, report.machine.cores, report.machine.cpu
    );
    out.push_str(
        "| language | component | compile (cold) | precompiled load | instantiate | call, fresh instance (median / p99) | call, reused instance (median / p99) |\n",
    );
    out.push_str("|---|---|---|---|---|---|---|\n");
    for r in &report.languages {
        let v = r.vs_rust.as_ref();
        out.push_str(&format!(
            "| {} | {}{} | {}{} | {}{} | {}{} | {} / {}{} | {} / {}{} |\n",
            match r.language.as_str() {
                "rust" => "Rust",
                "c" => "C",
                "js" => "JavaScript (QuickJS)",
                "python" => "Python",
                other => other,
            },
            size(r.size_bytes),
            ratio(v.map(|v| v.size)),
            duration_ms(r.compile_ms.median),
            ratio(v.map(|v| v.compile)),
            duration_ms(r.precompiled_load_ms.median),
            ratio(v.map(|v| v.precompiled_load)),
            duration_us(r.instantiate_us),
            ratio(v.map(|v| v.instantiate)),
            duration_us(r.call_fresh_us.median),
            duration_us(r.call_fresh_us.p99),
            ratio(v.map(|v| v.call_fresh)),
            duration_us(r.call_reused_us.median),
            duration_us(r.call_reused_us.p99),
            ratio(v.map(|v| v.call_reused)),
        ));
    }
    out
}

fn machine() -> Machine {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("PRETTY_NAME=")
                    .map(|v| v.trim_matches('"').to_owned())
            })
        })
        .unwrap_or_else(|| std::env::consts::OS.to_owned());
    Machine {
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu,
        os,
    }
}
