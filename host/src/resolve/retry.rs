//! Retries with jittered exponential backoff.

use std::time::Duration;

/// How failed resolutions are retried. Only `unavailable` answers and transient plugin
/// faults (deadline exceeded, no free instance) are retried; not-found and invalid never are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct RetryOptions {
    /// Attempts in total (1 = no retry). Default 3.
    pub attempts: u32,
    /// Delay before the first retry; doubles each time. Default 50 ms.
    #[serde(with = "crate::resolve::duration_ms", rename = "base-delay-ms")]
    pub base_delay: Duration,
    /// Upper bound of one delay. Default 2 s.
    #[serde(with = "crate::resolve::duration_ms", rename = "max-delay-ms")]
    pub max_delay: Duration,
}

impl Default for RetryOptions {
    fn default() -> Self {
        Self {
            attempts: 3,
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(2),
        }
    }
}

impl RetryOptions {
    /// The delay before retry number `retry` (1-based): "full jitter", uniformly random in
    /// `[delay/2, delay]` where `delay = min(max, base * 2^(retry-1))`, so that many
    /// callers failing together do not retry in lockstep.
    pub fn delay(&self, retry: u32) -> Duration {
        let exp = self.base_delay.saturating_mul(
            1u32.checked_shl(retry.saturating_sub(1))
                .unwrap_or(u32::MAX),
        );
        let delay = exp.min(self.max_delay);
        let half = delay / 2;
        half + half.mul_f64(jitter())
    }
}

/// A number in [0, 1) good enough for spreading retries (not for secrets).
fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64,
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stay_bounded() {
        let r = RetryOptions {
            attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(500),
        };
        for retry in 1..=20 {
            let d = r.delay(retry);
            let cap = Duration::from_millis(100 * (1 << (retry - 1).min(10)))
                .min(Duration::from_millis(500));
            assert!(
                d >= cap / 2 && d <= cap,
                "retry {retry}: {d:?} not in [{:?}, {cap:?}]",
                cap / 2
            );
        }
    }
}
