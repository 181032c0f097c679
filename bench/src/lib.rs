//! Shared measurement helpers for the benchmark binaries: latency summaries, RSS, paths.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::Duration;

/// Percentiles of a set of latencies.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Summary {
    /// Samples.
    pub n: usize,
    /// Smallest sample, in microseconds.
    pub min_us: f64,
    /// Mean, in microseconds.
    pub mean_us: f64,
    /// Median, in microseconds.
    pub p50_us: f64,
    /// 99th percentile, in microseconds.
    pub p99_us: f64,
    /// Largest sample, in microseconds.
    pub max_us: f64,
}

impl Summary {
    /// Summarise `samples` (any order).
    pub fn of(samples: &mut [Duration]) -> Self {
        assert!(!samples.is_empty(), "no samples");
        samples.sort_unstable();
        let us = |d: Duration| d.as_nanos() as f64 / 1000.0;
        let at = |q: f64| {
            us(samples[((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1])
        };
        Self {
            n: samples.len(),
            min_us: us(samples[0]),
            mean_us: samples.iter().map(|d| us(*d)).sum::<f64>() / samples.len() as f64,
            p50_us: at(0.50),
            p99_us: at(0.99),
            max_us: us(*samples.last().unwrap()),
        }
    }
}

/// Resident set size of this process, in bytes (Linux `/proc/self/statm`).
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A built plugin (`$TENANTRY_PLUGIN_BUILD_DIR/<name>.wasm`, default `target/plugins`), or an error saying how to build it.
pub fn plugin(name: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::var_os("TENANTRY_PLUGIN_BUILD_DIR")
        .map_or_else(|| root().join("target/plugins"), PathBuf::from);
    let p = dir.join(format!("{name}.wasm"));
    anyhow::ensure!(
        p.is_file(),
        "{} is missing: run scripts/build-plugins.sh",
        p.display()
    );
    Ok(p)
}

/// Where results go: `target/bench`, or `target/bench-smoke` in smoke mode (so a smoke run
/// never overwrites real figures).
pub fn out_dir() -> PathBuf {
    root().join(if smoke() {
        "target/bench-smoke"
    } else {
        "target/bench"
    })
}

/// Write `value` to `<out_dir>/<area>.json` and return the path.
pub fn write_json(area: &str, value: &serde_json::Value) -> anyhow::Result<PathBuf> {
    let dir = out_dir();
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{area}.json"));
    // Every result says where and how it was measured (the summary and the smoke check
    // read these fields).
    let mut value = value.clone();
    if let Some(object) = value.as_object_mut() {
        object
            .entry("machine")
            .or_insert_with(machine)
            .as_object_mut()
            .map(|m| m.insert("load_average_at_end".into(), load_average().into()));
        object.insert("profile".into(), profile().into());
        object.insert("smoke".into(), smoke().into());
    }
    std::fs::write(&path, serde_json::to_string_pretty(&value)?)?;
    Ok(path)
}

/// `2026-11-25` (UTC), for the reports.
pub fn today() -> String {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
        / 86_400;
    // Civil-from-days (Howard Hinnant's algorithm), to avoid a date dependency.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Smoke mode (`TENANTRY_BENCH_SMOKE=1`, set by `scripts/bench.sh --smoke`): every bench runs
/// with tiny sizes, to check that it works and writes sane JSON, not to measure anything.
pub fn smoke() -> bool {
    std::env::var("TENANTRY_BENCH_SMOKE").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// `full` normally, `small` in smoke mode.
pub fn size<T>(full: T, small: T) -> T {
    if smoke() { small } else { full }
}

/// The 1-, 5- and 15-minute load averages (`/proc/loadavg`).
pub fn load_average() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut it = text.split_whitespace().map(|v| v.parse().unwrap_or(0.0));
    [(); 3].map(|_| it.next().unwrap_or(0.0))
}

/// File descriptors this process has open (`/proc/self/fd`).
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// The machine a result was measured on: cores, memory, CPU model, load average now.
pub fn machine() -> serde_json::Value {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_default();
    serde_json::json!({
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "memory_bytes": mem_kib * 1024,
        "cpu": cpu,
        "load_average": load_average(),
    })
}

/// `release` or `debug`: which build produced a result.
pub fn profile() -> &'static str {
    if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }
}

/// `part / whole`, or 0 when `whole` is 0 (keeps ratios finite in the JSON).
pub fn ratio(part: f64, whole: f64) -> f64 {
    if whole > 0.0 { part / whole } else { 0.0 }
}
