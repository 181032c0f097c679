//! Shared measurement helpers for the benchmark binaries: latency summaries, RSS, paths.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::Duration;

/// Percentiles of a set of latencies.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Summary {
    /// Samples.
    pub n: usize,
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

/// A built plugin (`target/plugins/<name>.wasm`), or an error saying how to build it.
pub fn plugin(name: &str) -> anyhow::Result<PathBuf> {
    let p = root().join("target/plugins").join(format!("{name}.wasm"));
    anyhow::ensure!(
        p.is_file(),
        "{} is missing: run scripts/build-plugins.sh",
        p.display()
    );
    Ok(p)
}

/// Write `value` to `target/bench/<area>.json` and return the path.
pub fn write_json(area: &str, value: &serde_json::Value) -> anyhow::Result<PathBuf> {
    let dir = root().join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{area}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(value)?)?;
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
