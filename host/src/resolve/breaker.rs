//! Per-org circuit breakers: closed → open after repeated failures → half-open after a
//! cool-down, admitting a limited number of trial calls → closed on success.
//!
//! Only failures of the resolver (unavailable answers, plugin faults, timeouts) count; a
//! not-found or invalid answer is an answer and resets nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::clock::Clock;
use crate::id::OrgId;

/// Breaker thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct BreakerOptions {
    /// Consecutive failed resolutions (after retries) that open the breaker. Default 5.
    pub failure_threshold: u32,
    /// How long an open breaker fails fast before admitting trial calls. Default 30 s.
    #[serde(with = "crate::resolve::duration_ms", rename = "cool-down-ms")]
    pub cool_down: Duration,
    /// Trial calls admitted at once while half-open. Default 1.
    pub half_open_trials: u32,
}

impl Default for BreakerOptions {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            cool_down: Duration::from_secs(30),
            half_open_trials: 1,
        }
    }
}

/// The state of one org's breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BreakerState {
    /// Calls flow.
    Closed,
    /// Calls fail fast until the cool-down ends.
    Open,
    /// A limited number of trial calls decide whether to close again.
    HalfOpen,
    /// Held open by an operator until reset.
    ForcedOpen,
    /// Held closed by an operator until reset: failures are not counted.
    ForcedClosed,
}

impl std::fmt::Display for BreakerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half-open",
            Self::ForcedOpen => "forced-open",
            Self::ForcedClosed => "forced-closed",
        })
    }
}

/// What an operator may force a breaker to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BreakerOverride {
    /// Fail fast until reset.
    Open,
    /// Never trip until reset.
    Closed,
}

#[derive(Debug, Clone)]
struct Breaker {
    state: BreakerState,
    failures: u32,
    open_until: Instant,
    trials_in_flight: u32,
    last_error: Option<String>,
}

impl Breaker {
    fn new(now: Instant) -> Self {
        Self {
            state: BreakerState::Closed,
            failures: 0,
            open_until: now,
            trials_in_flight: 0,
            last_error: None,
        }
    }
}

/// Refusal to call: the breaker is open.
#[derive(Debug, Clone)]
pub(crate) struct Rejected {
    pub(crate) state: BreakerState,
    pub(crate) retry_after: Duration,
    pub(crate) last_error: Option<String>,
}

/// Permission to make one call; report its outcome with [`Breakers::record`].
#[derive(Debug)]
pub(crate) struct Permit {
    trial: bool,
}

/// All orgs' breakers. Only orgs with a non-default breaker are stored, so memory grows
/// with the number of failing orgs, not with the number of orgs.
#[derive(Debug)]
pub(crate) struct Breakers {
    options: BreakerOptions,
    clock: Arc<dyn Clock>,
    map: Mutex<HashMap<OrgId, Breaker>>,
}

impl Breakers {
    pub(crate) fn new(options: BreakerOptions, clock: Arc<dyn Clock>) -> Self {
        Self {
            options,
            clock,
            map: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<OrgId, Breaker>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ask to call the resolver for `org`.
    pub(crate) fn admit(&self, org: &OrgId) -> Result<Permit, Rejected> {
        let now = self.clock.now();
        let mut map = self.lock();
        let Some(b) = map.get_mut(org) else {
            return Ok(Permit { trial: false });
        };
        match b.state {
            BreakerState::Closed | BreakerState::ForcedClosed => Ok(Permit { trial: false }),
            BreakerState::ForcedOpen => Err(Rejected {
                state: b.state,
                retry_after: self.options.cool_down,
                last_error: b.last_error.clone(),
            }),
            BreakerState::Open if now < b.open_until => Err(Rejected {
                state: b.state,
                retry_after: b.open_until - now,
                last_error: b.last_error.clone(),
            }),
            BreakerState::Open | BreakerState::HalfOpen => {
                if b.state == BreakerState::Open {
                    tracing::info!(org = %org, "breaker half-open: admitting trial calls");
                    b.state = BreakerState::HalfOpen;
                    b.trials_in_flight = 0;
                }
                if b.trials_in_flight >= self.options.half_open_trials.max(1) {
                    return Err(Rejected {
                        state: b.state,
                        retry_after: Duration::from_millis(100),
                        last_error: b.last_error.clone(),
                    });
                }
                b.trials_in_flight += 1;
                Ok(Permit { trial: true })
            }
        }
    }

    /// Report the outcome of a permitted call (`error` is `None` on success).
    pub(crate) fn record(&self, org: &OrgId, permit: Permit, error: Option<&str>) {
        let now = self.clock.now();
        let mut map = self.lock();
        match error {
            None => {
                if let Some(b) = map.get_mut(org) {
                    match b.state {
                        BreakerState::ForcedOpen | BreakerState::ForcedClosed => {}
                        _ => {
                            if b.state != BreakerState::Closed {
                                tracing::info!(org = %org, "breaker closed");
                            }
                            map.remove(org);
                        }
                    }
                }
            }
            Some(error) => {
                let b = map.entry(org.clone()).or_insert_with(|| Breaker::new(now));
                b.last_error = Some(error.to_owned());
                if permit.trial {
                    b.trials_in_flight = b.trials_in_flight.saturating_sub(1);
                }
                match b.state {
                    BreakerState::ForcedOpen | BreakerState::ForcedClosed => {}
                    BreakerState::HalfOpen => {
                        tracing::warn!(org = %org, error, "trial call failed: breaker open again");
                        b.state = BreakerState::Open;
                        b.open_until = now + self.options.cool_down;
                    }
                    BreakerState::Closed | BreakerState::Open => {
                        b.failures += 1;
                        if b.failures >= self.options.failure_threshold.max(1) {
                            if b.state == BreakerState::Closed {
                                tracing::warn!(org = %org, failures = b.failures, error, "breaker open");
                            }
                            b.state = BreakerState::Open;
                            b.open_until = now + self.options.cool_down;
                        }
                    }
                }
            }
        }
    }

    /// The breaker state of `org`.
    pub(crate) fn state(&self, org: &OrgId) -> BreakerState {
        let now = self.clock.now();
        match self.lock().get(org) {
            None => BreakerState::Closed,
            Some(b) if b.state == BreakerState::Open && now >= b.open_until => {
                BreakerState::HalfOpen
            }
            Some(b) => b.state,
        }
    }

    /// The last error recorded for `org`, if its breaker holds one.
    pub(crate) fn last_error(&self, org: &OrgId) -> Option<String> {
        self.lock().get(org).and_then(|b| b.last_error.clone())
    }

    /// Force `org`'s breaker open or closed until [`reset`](Self::reset).
    pub(crate) fn force(&self, org: &OrgId, to: BreakerOverride) {
        let now = self.clock.now();
        let mut map = self.lock();
        let b = map.entry(org.clone()).or_insert_with(|| Breaker::new(now));
        b.state = match to {
            BreakerOverride::Open => BreakerState::ForcedOpen,
            BreakerOverride::Closed => BreakerState::ForcedClosed,
        };
        tracing::info!(org = %org, state = %b.state, "breaker forced by operator");
    }

    /// Back to closed with no failures counted.
    pub(crate) fn reset(&self, org: &OrgId) {
        if self.lock().remove(org).is_some() {
            tracing::info!(org = %org, "breaker reset by operator");
        }
    }

    /// Counts per state, and the orgs whose breaker is not closed (sorted).
    pub(crate) fn summary(&self) -> (HashMap<BreakerState, usize>, Vec<(OrgId, BreakerState)>) {
        let now = self.clock.now();
        let map = self.lock();
        let mut counts = HashMap::new();
        let mut open = Vec::new();
        for (org, b) in map.iter() {
            let state = if b.state == BreakerState::Open && now >= b.open_until {
                BreakerState::HalfOpen
            } else {
                b.state
            };
            *counts.entry(state).or_insert(0) += 1;
            if matches!(
                state,
                BreakerState::Open | BreakerState::HalfOpen | BreakerState::ForcedOpen
            ) {
                open.push((org.clone(), state));
            }
        }
        open.sort_by(|a, b| a.0.cmp(&b.0));
        (counts, open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn full_cycle_with_half_open_failure_reopening() {
        let clock = Arc::new(ManualClock::new());
        let opts = BreakerOptions {
            failure_threshold: 2,
            cool_down: Duration::from_secs(10),
            half_open_trials: 1,
        };
        let b = Breakers::new(opts, clock.clone());
        let org = OrgId::new("acme").unwrap();
        for _ in 0..2 {
            let p = b.admit(&org).unwrap();
            b.record(&org, p, Some("down"));
        }
        assert_eq!(b.state(&org), BreakerState::Open);
        let r = b.admit(&org).unwrap_err();
        assert_eq!(
            (r.state, r.retry_after, r.last_error.as_deref()),
            (BreakerState::Open, Duration::from_secs(10), Some("down"))
        );

        clock.advance(Duration::from_secs(10));
        assert_eq!(b.state(&org), BreakerState::HalfOpen);
        let trial = b.admit(&org).unwrap();
        assert!(b.admit(&org).is_err(), "only one trial at a time");
        b.record(&org, trial, Some("still down"));
        assert_eq!(b.state(&org), BreakerState::Open, "a failed trial reopens");

        clock.advance(Duration::from_secs(10));
        let trial = b.admit(&org).unwrap();
        b.record(&org, trial, None);
        assert_eq!(b.state(&org), BreakerState::Closed);
        assert!(b.summary().1.is_empty());
    }

    #[test]
    fn operator_overrides_hold_until_reset() {
        let b = Breakers::new(BreakerOptions::default(), Arc::new(ManualClock::new()));
        let org = OrgId::new("acme").unwrap();
        b.force(&org, BreakerOverride::Open);
        assert_eq!(b.admit(&org).unwrap_err().state, BreakerState::ForcedOpen);
        b.force(&org, BreakerOverride::Closed);
        for _ in 0..10 {
            let p = b.admit(&org).unwrap();
            b.record(&org, p, Some("down"));
        }
        assert_eq!(b.state(&org), BreakerState::ForcedClosed);
        b.reset(&org);
        assert_eq!(b.state(&org), BreakerState::Closed);
    }
}
