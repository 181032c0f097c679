//! Org resolution: id → cache → circuit breaker → plugin (with retries and a timeout) →
//! explicit fallback → answer.
//!
//! **Fail closed.** An org that cannot be resolved yields a [`ResolveError`] explaining why
//! and what to check; the pipeline never guesses a database. A fallback URL pattern is used
//! only when configured, and its answers are reported with [`AnswerSource::Fallback`].
//!
//! | stage | default |
//! |---|---|
//! | cache | 100 000 orgs, TTL 5 min (a plugin's `ttl-ms` is honoured within 1 s – 1 h), not-found cached 30 s, single-flight |
//! | breaker | opens after 5 consecutive failures, half-open after 30 s, 1 trial call |
//! | retries | 3 attempts, backoff 50 ms doubling to 2 s with jitter, only for `unavailable` and transient plugin faults |
//! | timeout | 10 s for the whole resolution, cancelling the running wasm call |
//! | fallback | none |

mod breaker;
mod retry;

pub use breaker::{BreakerOptions, BreakerOverride, BreakerState};
pub use retry::RetryOptions;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use breaker::{Breakers, Rejected};

use crate::clock::Clock;
use crate::id::OrgId;
use crate::plugin::{OrgTarget, PluginError, PluginSlot, ResolveFailure};

pub(crate) mod duration_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

/// Options of the resolution pipeline (`[resolve]` in the TOML file).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct ResolveOptions {
    /// Most orgs kept in the cache (least recently used are evicted). Default 100 000.
    pub cache_capacity: u64,
    /// How long an answer is cached when the plugin does not say. Default 5 min.
    #[serde(with = "duration_ms", rename = "ttl-ms")]
    pub ttl: Duration,
    /// Lower bound applied to a plugin's `ttl-ms`. Default 1 s.
    #[serde(with = "duration_ms", rename = "min-ttl-ms")]
    pub min_ttl: Duration,
    /// Upper bound applied to a plugin's `ttl-ms`. Default 1 h.
    #[serde(with = "duration_ms", rename = "max-ttl-ms")]
    pub max_ttl: Duration,
    /// How long a not-found answer (and a fallback answer) is cached. Default 30 s.
    #[serde(with = "duration_ms", rename = "negative-ttl-ms")]
    pub negative_ttl: Duration,
    /// Budget for one whole resolution, retries included. Default 10 s.
    #[serde(with = "duration_ms", rename = "timeout-ms")]
    pub timeout: Duration,
    /// Retry policy.
    pub retry: RetryOptions,
    /// Breaker thresholds.
    pub breaker: BreakerOptions,
    /// A URL pattern with `{org}` used when the resolver fails (never for not-found or
    /// invalid ids). No fallback unless set: failing closed is the default.
    pub fallback: Option<String>,
    /// Keep cached answers when the resolver plugin is swapped. Default `false`: a swap
    /// makes every cached answer stale.
    pub keep_cache_on_swap: bool,
    /// Allow two orgs to resolve to the same database URL. Default `false`: such an answer
    /// is refused, because tenants of both orgs would then share tables (a buggy or hostile
    /// resolver could route one org into another's data).
    pub allow_shared_targets: bool,
}

impl Default for ResolveOptions {
    fn default() -> Self {
        Self {
            cache_capacity: 100_000,
            ttl: Duration::from_secs(300),
            min_ttl: Duration::from_secs(1),
            max_ttl: Duration::from_secs(3600),
            negative_ttl: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
            retry: RetryOptions::default(),
            breaker: BreakerOptions::default(),
            fallback: None,
            keep_cache_on_swap: false,
            allow_shared_targets: false,
        }
    }
}

/// Where an answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AnswerSource {
    /// The resolver plugin, just now.
    Resolver,
    /// The cache (an earlier answer of the resolver or fallback).
    Cache,
    /// The configured fallback pattern, because the resolver failed.
    Fallback,
    /// `DATABASE_URL`'s `{org}` pattern (no resolver plugin configured).
    Pattern,
}

/// A resolved org.
#[derive(Debug, Clone)]
pub struct Resolution {
    /// Where the org's data lives.
    pub target: Arc<OrgTarget>,
    /// Where the answer came from.
    pub source: AnswerSource,
    /// Whether the answer is a fallback (also true for cached fallback answers).
    pub fallback: bool,
}

/// Why an org could not be resolved. Cheap to clone (single-flight waiters share it).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveError {
    /// Neither a resolver plugin nor an `{org}` pattern is configured.
    #[error(
        "no org resolver: set DATABASE_URL to a pattern containing {{org}} \
         (e.g. sqlite://data/{{org}}.db) or configure [plugins.org-resolver]"
    )]
    NoResolver,
    /// The resolver says the org does not exist.
    #[error(
        "org `{org}` not found by {resolver}: create it, or check the resolver's configuration"
    )]
    NotFound {
        /// The org.
        org: OrgId,
        /// Which resolver answered.
        resolver: String,
    },
    /// The resolver refused the id or is misconfigured. Not retried.
    #[error("org `{org}` was refused by {resolver}: {reason}")]
    Invalid {
        /// The org.
        org: OrgId,
        /// Which resolver answered.
        resolver: String,
        /// Why (secrets redacted).
        reason: String,
    },
    /// The resolver failed on every attempt.
    #[error(
        "org `{org}` is unavailable: {resolver} failed {attempts} attempt(s), last with: {reason} \
         (breaker {breaker}); check the resolver's backend, or configure [resolve] fallback"
    )]
    Unavailable {
        /// The org.
        org: OrgId,
        /// Which resolver was asked.
        resolver: String,
        /// The last failure (secrets redacted).
        reason: String,
        /// Attempts made.
        attempts: u32,
        /// The org's breaker after the failure.
        breaker: BreakerState,
    },
    /// The org's circuit breaker is open: failing fast without calling the resolver.
    #[error(
        "org `{org}`: circuit breaker {state}, retry in {}s; last error: {}; \
         an operator can reset it (reset_org_breaker)", retry_after.as_secs_f64().ceil(), last_error.as_deref().unwrap_or("none recorded")
    )]
    BreakerOpen {
        /// The org.
        org: OrgId,
        /// The breaker's state.
        state: BreakerState,
        /// When a call may be admitted again.
        retry_after: Duration,
        /// The failure that opened it (secrets redacted).
        last_error: Option<String>,
    },
    /// The resolver answered with a database that another cached org already resolves to.
    #[error(
        "org `{org}`: {resolver} answered with the database of org `{other}`; refusing, since two \
         orgs must not share a database (fix the resolver, or set [resolve] allow-shared-targets = true)"
    )]
    SharedTarget {
        /// The org.
        org: OrgId,
        /// Which resolver answered.
        resolver: String,
        /// The org that already owns that database.
        other: OrgId,
    },
    /// The whole resolution took longer than `resolve.timeout-ms`.
    #[error(
        "org `{org}`: {resolver} did not answer within {after:?} (resolve.timeout-ms); the call was cancelled"
    )]
    Timeout {
        /// The org.
        org: OrgId,
        /// Which resolver was asked.
        resolver: String,
        /// The budget.
        after: Duration,
    },
}

impl ResolveError {
    /// For HTTP: how long a client should wait before retrying, when retrying makes sense.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::BreakerOpen { retry_after, .. } => Some(*retry_after),
            Self::Unavailable { .. } | Self::Timeout { .. } => Some(Duration::from_secs(1)),
            _ => None,
        }
    }
}

/// Resolution counters and latencies, as returned by [`Host::resolver_metrics`](crate::Host).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ResolverMetrics {
    /// Orgs in the cache (found, not-found and fallback answers).
    pub cache_size: u64,
    /// Lookups answered from the cache.
    pub cache_hits: u64,
    /// Lookups that had to resolve.
    pub cache_misses: u64,
    /// `hits / (hits + misses)`, 0 when nothing was looked up.
    pub hit_rate: f64,
    /// Resolutions completed by the resolver (answers, including not-found).
    pub resolves: u64,
    /// Resolver calls made, retries included.
    pub attempts: u64,
    /// Resolutions that failed (unavailable, timeout, breaker open, plugin fault).
    pub failures: u64,
    /// Answers served by the fallback.
    pub fallbacks: u64,
    /// Mean latency of the last 1024 resolutions that reached the resolver, in ms.
    pub avg_resolve_ms: f64,
    /// 99th percentile of the same, in ms.
    pub p99_resolve_ms: f64,
    /// Breakers per state (orgs without a record are closed and not counted).
    pub breakers: std::collections::BTreeMap<String, usize>,
    /// Orgs whose breaker is open, half-open or forced open.
    pub open_breakers: Vec<String>,
}

/// The health of one org's resolution.
#[derive(Debug, Clone, serde::Serialize)]
pub struct OrgHealth {
    /// The org.
    pub org: String,
    /// Whether the org resolves.
    pub healthy: bool,
    /// How long this check took, in ms.
    pub latency_ms: f64,
    /// Where the answer came from (`None` when it failed).
    pub source: Option<AnswerSource>,
    /// The target URL, password masked.
    pub url: Option<String>,
    /// The target's region.
    pub region: Option<String>,
    /// The breaker's state.
    pub breaker: BreakerState,
    /// Why it failed (secrets redacted).
    pub error: Option<String>,
}

/// The outcome of [`Resolver::preload`].
#[derive(Debug, Default)]
pub struct PreloadReport {
    /// Orgs now cached.
    pub resolved: Vec<OrgId>,
    /// Orgs that failed, with why.
    pub failed: Vec<(OrgId, ResolveError)>,
}

/// The cache entry a resolution was answered from (none for the pattern source), kept by
/// callers that cache something derived from it; see [`Resolver::still_current`].
#[derive(Debug, Clone)]
pub(crate) struct Pinned(Option<Arc<Cached>>);

/// A cached answer.
#[derive(Debug)]
struct Cached {
    answer: Option<Arc<OrgTarget>>,
    expires: Instant,
    generation: u64,
    fallback: bool,
    /// Lookups served by this entry: the "busiest orgs" figure, reset when it expires.
    hits: AtomicU64,
}

#[derive(Debug, Default)]
struct Stats {
    hits: AtomicU64,
    misses: AtomicU64,
    resolves: AtomicU64,
    attempts: AtomicU64,
    failures: AtomicU64,
    fallbacks: AtomicU64,
    latencies_us: Mutex<VecDeque<u64>>,
}

impl Stats {
    fn record_latency(&self, took: Duration) {
        let mut l = self.latencies_us.lock().unwrap_or_else(|e| e.into_inner());
        if l.len() == 1024 {
            l.pop_front();
        }
        l.push_back(took.as_micros() as u64);
        metrics::histogram!("tenantry_org_resolve_seconds").record(took.as_secs_f64());
    }
}

/// Where answers come from.
#[derive(Debug, Clone)]
pub(crate) enum Source {
    /// A resolver plugin slot.
    Plugin(Arc<PluginSlot>),
    /// `DATABASE_URL` with `{org}`.
    Pattern(String),
    /// Nothing configured.
    None,
}

/// The pipeline. One per host; cheap to share behind an `Arc`.
pub(crate) struct Resolver {
    options: ResolveOptions,
    clock: Arc<dyn Clock>,
    source: Source,
    cache: moka::future::Cache<OrgId, Arc<Cached>>,
    /// sha256 of each cached answer's URL → the org it belongs to (see `allow_shared_targets`).
    owners: moka::future::Cache<[u8; 32], OrgId>,
    breakers: Breakers,
    stats: Stats,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// A failure of one attempt, before it becomes a [`ResolveError`].
enum Failure {
    Unavailable(String),
    Plugin(PluginError),
}

impl Resolver {
    pub(crate) fn new(options: ResolveOptions, source: Source, clock: Arc<dyn Clock>) -> Self {
        let cache = moka::future::Cache::builder()
            .max_capacity(options.cache_capacity)
            // An upper bound for eviction; the exact expiry is checked against `clock`.
            .time_to_live(options.max_ttl.max(options.ttl).max(options.negative_ttl))
            .build();
        let breakers = Breakers::new(options.breaker, clock.clone());
        let owners = moka::future::Cache::builder()
            .max_capacity(options.cache_capacity)
            .build();
        Self {
            options,
            clock,
            source,
            cache,
            owners,
            breakers,
            stats: Stats::default(),
        }
    }

    fn resolver_name(&self) -> String {
        match &self.source {
            Source::Plugin(slot) => format!("plugin {}", slot.current().name()),
            Source::Pattern(_) => "DATABASE_URL pattern".into(),
            Source::None => "no resolver".into(),
        }
    }

    fn generation(&self) -> u64 {
        match &self.source {
            Source::Plugin(slot) if !self.options.keep_cache_on_swap => slot.generation(),
            _ => 0,
        }
    }

    fn fresh(&self, c: &Cached) -> bool {
        self.clock.now() < c.expires && c.generation == self.generation()
    }

    /// Resolve `org`, from the cache when possible.
    pub(crate) async fn resolve(&self, org: &OrgId) -> Result<Resolution, ResolveError> {
        Ok(self.resolve_pinned(org).await?.0)
    }

    /// Like [`resolve`](Self::resolve), also returning what [`still_current`](Self::still_current)
    /// needs to tell later, cheaply, whether the answer still stands.
    pub(crate) async fn resolve_pinned(
        &self,
        org: &OrgId,
    ) -> Result<(Resolution, Pinned), ResolveError> {
        let pattern = match &self.source {
            Source::Pattern(p) => Some(p),
            Source::None => return Err(ResolveError::NoResolver),
            Source::Plugin(_) => None,
        };
        if let Some(pattern) = pattern {
            self.stats.resolves.fetch_add(1, Ordering::Relaxed);
            let resolution = Resolution {
                target: Arc::new(substitute(pattern, org)),
                source: AnswerSource::Pattern,
                fallback: false,
            };
            return Ok((resolution, Pinned(None)));
        }
        if let Some(cached) = self.cache.get(org).await {
            if self.fresh(&cached) {
                self.count_hit(&cached);
                let resolution = self.answer(org, &cached, AnswerSource::Cache)?;
                return Ok((resolution, Pinned(Some(cached))));
            }
            // Expired or from a swapped-out plugin: drop it, unless someone already
            // replaced it with a fresh answer.
            self.cache
                .entry(org.clone())
                .and_compute_with(|entry| {
                    let stale = entry.is_some_and(|e| Arc::ptr_eq(e.value(), &cached));
                    std::future::ready(if stale {
                        moka::ops::compute::Op::Remove
                    } else {
                        moka::ops::compute::Op::Nop
                    })
                })
                .await;
        }
        self.stats.misses.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("tenantry_org_cache_misses_total").increment(1);
        tracing::debug!(org = %org, "org cache miss");
        let mut loaded_here = false;
        let cached = self
            .cache
            .try_get_with(org.clone(), async {
                loaded_here = true;
                self.load(org).await
            })
            .await
            .map_err(|e| (*e).clone())?;
        let source = match (loaded_here, cached.fallback) {
            (_, true) => AnswerSource::Fallback,
            (true, false) => AnswerSource::Resolver,
            (false, false) => AnswerSource::Cache,
        };
        let resolution = self.answer(org, &cached, source)?;
        Ok((resolution, Pinned(Some(cached))))
    }

    /// Whether resolving `org` now would give the answer `pinned` came from, without
    /// resolving: for the pattern source always (the answer is a pure function of the id),
    /// for a plugin exactly when the cache still holds that very entry and it is fresh
    /// (not expired, not from a swapped-out plugin, not cleared, refreshed or evicted).
    /// Counted like the cache hit it stands for.
    pub(crate) async fn still_current(&self, org: &OrgId, pinned: &Pinned) -> bool {
        match (&self.source, &pinned.0) {
            (Source::Pattern(_), _) => {
                self.stats.resolves.fetch_add(1, Ordering::Relaxed);
                true
            }
            (Source::Plugin(_), Some(pinned)) => match self.cache.get(org).await {
                Some(cached) if Arc::ptr_eq(&cached, pinned) && self.fresh(&cached) => {
                    self.count_hit(&cached);
                    true
                }
                _ => false,
            },
            _ => false,
        }
    }

    fn count_hit(&self, cached: &Cached) {
        self.stats.hits.fetch_add(1, Ordering::Relaxed);
        cached.hits.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("tenantry_org_cache_hits_total").increment(1);
    }

    fn answer(
        &self,
        org: &OrgId,
        cached: &Cached,
        source: AnswerSource,
    ) -> Result<Resolution, ResolveError> {
        match &cached.answer {
            Some(target) => Ok(Resolution {
                target: target.clone(),
                source,
                fallback: cached.fallback,
            }),
            None => Err(ResolveError::NotFound {
                org: org.clone(),
                resolver: self.resolver_name(),
            }),
        }
    }

    /// Resolve bypassing the cache, and replace the cached answer with the new one. On
    /// failure the cached answer (if any) is left in place and the error returned.
    pub(crate) async fn refresh(&self, org: &OrgId) -> Result<Resolution, ResolveError> {
        if !matches!(self.source, Source::Plugin(_)) {
            return self.resolve(org).await;
        }
        self.stats.misses.fetch_add(1, Ordering::Relaxed);
        let cached = self.load(org).await?;
        self.cache.insert(org.clone(), cached.clone()).await;
        let source = if cached.fallback {
            AnswerSource::Fallback
        } else {
            AnswerSource::Resolver
        };
        self.answer(org, &cached, source)
    }

    /// The uncached path: breaker, timeout, retries, fallback.
    async fn load(&self, org: &OrgId) -> Result<Arc<Cached>, ResolveError> {
        let Source::Plugin(slot) = &self.source else {
            return Err(ResolveError::NoResolver);
        };
        let generation = self.generation();
        let permit = match self.breakers.admit(org) {
            Ok(p) => p,
            Err(Rejected {
                state,
                retry_after,
                last_error,
            }) => {
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                let err = ResolveError::BreakerOpen {
                    org: org.clone(),
                    state,
                    retry_after,
                    last_error,
                };
                return self.fallback_or(org, err, generation);
            }
        };
        let started = Instant::now();
        let timed = tokio::time::timeout(self.options.timeout, self.attempts(org, slot)).await;
        self.stats.record_latency(started.elapsed());
        let resolver = self.resolver_name();
        let (outcome, attempts) = match timed {
            Ok(done) => done,
            Err(_) => {
                let err = ResolveError::Timeout {
                    org: org.clone(),
                    resolver,
                    after: self.options.timeout,
                };
                self.breakers.record(org, permit, Some(&err.to_string()));
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                return self.fallback_or(org, err, generation);
            }
        };
        let now = self.clock.now();
        match outcome {
            Ok(Ok(target)) => {
                self.breakers.record(org, permit, None);
                self.stats.resolves.fetch_add(1, Ordering::Relaxed);
                self.claim_target(org, &target, &resolver).await?;
                let ttl = target
                    .ttl
                    .unwrap_or(self.options.ttl)
                    .clamp(self.options.min_ttl, self.options.max_ttl);
                tracing::debug!(org = %org, url = %target.redacted_url(), ?ttl, "org resolved");
                Ok(Arc::new(Cached {
                    answer: Some(Arc::new(target)),
                    expires: now + ttl,
                    generation,
                    fallback: false,
                    hits: AtomicU64::new(0),
                }))
            }
            Ok(Err(ResolveFailure::NotFound)) => {
                self.breakers.record(org, permit, None);
                self.stats.resolves.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(org = %org, "org not found");
                Ok(Arc::new(Cached {
                    answer: None,
                    expires: now + self.options.negative_ttl,
                    generation,
                    fallback: false,
                    hits: AtomicU64::new(0),
                }))
            }
            Ok(Err(ResolveFailure::Invalid(reason))) => {
                self.breakers.record(org, permit, None);
                self.stats.resolves.fetch_add(1, Ordering::Relaxed);
                Err(ResolveError::Invalid {
                    org: org.clone(),
                    resolver,
                    reason,
                })
            }
            Ok(Err(ResolveFailure::Unavailable(reason))) | Err(Failure::Unavailable(reason)) => {
                self.fail(org, permit, resolver, reason, attempts, generation)
            }
            Err(Failure::Plugin(e)) => {
                self.fail(org, permit, resolver, e.to_string(), attempts, generation)
            }
        }
    }

    /// Refuse `target` when another org, still cached with the same URL, owns it.
    async fn claim_target(
        &self,
        org: &OrgId,
        target: &OrgTarget,
        resolver: &str,
    ) -> Result<(), ResolveError> {
        if self.options.allow_shared_targets {
            return Ok(());
        }
        use sha2::Digest;
        let key: [u8; 32] = sha2::Sha256::digest(target.url.as_bytes()).into();
        if let Some(other) = self.owners.get(&key).await
            && other != *org
        {
            let still_owned = self.cache.get(&other).await.is_some_and(|c| {
                self.fresh(&c) && c.answer.as_ref().is_some_and(|t| t.url == target.url)
            });
            if still_owned {
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(org = %org, other = %other, url = %target.redacted_url(), "resolver answered with another org's database; refused");
                return Err(ResolveError::SharedTarget {
                    org: org.clone(),
                    resolver: resolver.to_owned(),
                    other,
                });
            }
        }
        self.owners.insert(key, org.clone()).await;
        Ok(())
    }

    fn fail(
        &self,
        org: &OrgId,
        permit: breaker::Permit,
        resolver: String,
        reason: String,
        attempts: u32,
        generation: u64,
    ) -> Result<Arc<Cached>, ResolveError> {
        self.breakers.record(org, permit, Some(&reason));
        self.stats.failures.fetch_add(1, Ordering::Relaxed);
        let breaker = self.breakers.state(org);
        let err = ResolveError::Unavailable {
            org: org.clone(),
            resolver,
            reason,
            attempts,
            breaker,
        };
        self.fallback_or(org, err, generation)
    }

    /// Call the plugin up to `retry.attempts` times. Returns the last outcome and how many
    /// attempts were made.
    async fn attempts(
        &self,
        org: &OrgId,
        slot: &PluginSlot,
    ) -> (Result<Result<OrgTarget, ResolveFailure>, Failure>, u32) {
        let max = self.options.retry.attempts.max(1);
        let mut attempt = 1;
        loop {
            self.stats.attempts.fetch_add(1, Ordering::Relaxed);
            let plugin = slot.current();
            let outcome = match plugin.resolve(org.as_str()).await {
                Ok(Err(ResolveFailure::Unavailable(m))) => Err(Failure::Unavailable(m)),
                Ok(answer) => Ok(answer),
                Err(e) => Err(Failure::Plugin(e)),
            };
            let retryable = match &outcome {
                Err(Failure::Unavailable(_)) => true,
                Err(Failure::Plugin(e)) => {
                    matches!(
                        e,
                        PluginError::DeadlineExceeded { .. } | PluginError::Instantiate { .. }
                    )
                }
                Ok(_) => false,
            };
            if !retryable || attempt >= max {
                return (outcome, attempt);
            }
            let delay = self.options.retry.delay(attempt);
            tracing::debug!(org = %org, attempt, max, ?delay, "resolver attempt failed; retrying");
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    fn fallback_or(
        &self,
        org: &OrgId,
        err: ResolveError,
        generation: u64,
    ) -> Result<Arc<Cached>, ResolveError> {
        let Some(pattern) = &self.options.fallback else {
            tracing::warn!(org = %org, error = %err, "org resolution failed (no fallback configured)");
            return Err(err);
        };
        let target = substitute(pattern, org);
        self.stats.fallbacks.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("tenantry_org_fallbacks_total").increment(1);
        tracing::warn!(org = %org, url = %target.redacted_url(), error = %err, "resolver failed: using the configured fallback");
        let expires = self.clock.now() + self.options.negative_ttl;
        Ok(Arc::new(Cached {
            answer: Some(Arc::new(target)),
            expires,
            generation,
            fallback: true,
            hits: AtomicU64::new(0),
        }))
    }

    pub(crate) async fn clear(&self, org: Option<&OrgId>) {
        match org {
            Some(org) => self.cache.invalidate(org).await,
            None => {
                self.cache.invalidate_all();
                self.cache.run_pending_tasks().await;
            }
        }
    }

    pub(crate) async fn preload(&self, orgs: Vec<OrgId>, concurrency: usize) -> PreloadReport {
        use futures_util::StreamExt;
        let results: Vec<_> = futures_util::stream::iter(orgs)
            .map(|org| async move {
                let r = self.resolve(&org).await;
                (org, r)
            })
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
        let mut report = PreloadReport::default();
        for (org, r) in results {
            match r {
                Ok(_) => report.resolved.push(org),
                Err(e) => report.failed.push((org, e)),
            }
        }
        report
    }

    /// The `n` cached orgs with the most cache hits (ties by id), for operators.
    pub(crate) fn busiest(&self, n: usize) -> Vec<(String, u64)> {
        let mut all: Vec<(String, u64)> = self
            .cache
            .iter()
            .map(|(org, c)| (org.to_string(), c.hits.load(Ordering::Relaxed)))
            .collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        all.truncate(n);
        all
    }

    pub(crate) fn force_breaker(&self, org: &OrgId, to: BreakerOverride) {
        self.breakers.force(org, to);
    }

    pub(crate) fn reset_breaker(&self, org: &OrgId) {
        self.breakers.reset(org);
    }

    pub(crate) fn breaker_error(&self, org: &OrgId) -> Option<String> {
        self.breakers.last_error(org)
    }

    pub(crate) fn breaker_state(&self, org: &OrgId) -> BreakerState {
        self.breakers.state(org)
    }

    pub(crate) async fn health(&self, org: &OrgId) -> OrgHealth {
        let started = Instant::now();
        let result = self.resolve(org).await;
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        let breaker = self.breakers.state(org);
        match result {
            Ok(r) => OrgHealth {
                org: org.to_string(),
                healthy: true,
                latency_ms,
                source: Some(if r.fallback {
                    AnswerSource::Fallback
                } else {
                    r.source
                }),
                url: Some(r.target.redacted_url()),
                region: r.target.region.clone(),
                breaker,
                error: None,
            },
            Err(e) => OrgHealth {
                org: org.to_string(),
                healthy: false,
                latency_ms,
                source: None,
                url: None,
                region: None,
                breaker,
                error: Some(e.to_string()).or_else(|| self.breakers.last_error(org)),
            },
        }
    }

    pub(crate) async fn metrics(&self) -> ResolverMetrics {
        self.cache.run_pending_tasks().await;
        let hits = self.stats.hits.load(Ordering::Relaxed);
        let misses = self.stats.misses.load(Ordering::Relaxed);
        let (avg, p99) = {
            let l = self
                .stats
                .latencies_us
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if l.is_empty() {
                (0.0, 0.0)
            } else {
                let mut v: Vec<u64> = l.iter().copied().collect();
                v.sort_unstable();
                let avg = v.iter().sum::<u64>() as f64 / v.len() as f64 / 1000.0;
                let idx = ((v.len() as f64 * 0.99).ceil() as usize).clamp(1, v.len()) - 1;
                (avg, v[idx] as f64 / 1000.0)
            }
        };
        let (counts, open) = self.breakers.summary();
        ResolverMetrics {
            cache_size: self.cache.entry_count(),
            cache_hits: hits,
            cache_misses: misses,
            hit_rate: if hits + misses == 0 {
                0.0
            } else {
                hits as f64 / (hits + misses) as f64
            },
            resolves: self.stats.resolves.load(Ordering::Relaxed),
            attempts: self.stats.attempts.load(Ordering::Relaxed),
            failures: self.stats.failures.load(Ordering::Relaxed),
            fallbacks: self.stats.fallbacks.load(Ordering::Relaxed),
            avg_resolve_ms: avg,
            p99_resolve_ms: p99,
            breakers: counts
                .into_iter()
                .map(|(s, n)| (s.to_string(), n))
                .collect(),
            open_breakers: open.into_iter().map(|(o, _)| o.to_string()).collect(),
        }
    }
}

/// `pattern` with every `{org}` replaced by the id's database form (`-` → `_`).
pub(crate) fn substitute(pattern: &str, org: &OrgId) -> OrgTarget {
    OrgTarget {
        url: pattern.replace("{org}", &org.db_name()),
        region: None,
        ttl: None,
        labels: Vec::new(),
    }
}
