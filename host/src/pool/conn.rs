//! One bounded pool of connections to one database, with per-connection session tracking.
//!
//! sqlx's own `Pool` gives no handle on a connection's identity, so it cannot remember which
//! tenant a pooled PostgreSQL connection carries; the choice there is a `set_config` round
//! trip on every checkout plus a reset on every release, which the measurements in
//! DESIGN.md put at a third of raw throughput. This pool owns its connections and records,
//! next to each one, the [`SessionScope`] it was last switched to — and only after the
//! switch was confirmed by the server. Checkout prefers an idle connection that already
//! carries the wanted scope, and skips the switch when it does; while the pool is below its
//! limit it opens a connection for a scope none carries rather than switch one that carries
//! another, so that tenants taking turns each keep a session of their own.
//!
//! When the record might be stale it is dropped ([`Carried::Unknown`]), which forces a full
//! switch on the next checkout: fresh connections (role or database defaults could carry
//! anything), connections whose switch was interrupted, and connections returned with a
//! transaction still open. Release is synchronous and never talks to the server, so a
//! future dropped mid-query or a panic cannot skip it: whatever the holder left behind is
//! either drained by the driver on next use (pending results, queued rollbacks) or
//! overwritten by the next switch, which runs outside any transaction (see
//! [`crate::isolation::postgres`]).

use std::future::Future;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::{ConnectOptions, Connection};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::cap::ConnectionCap;
use super::{Backend, PoolEntry, PoolSettings, Reclaimer};
use crate::isolation::SessionScope;

/// The futures of [`Driver`]'s hooks. Boxed: unboxed `impl Future` returns in a generic
/// context defeat rustc's `Send` inference for the callers' futures (rust-lang/rust#110338).
pub(crate) type DriverFuture<'a> =
    std::pin::Pin<Box<dyn Future<Output = Result<(), sqlx::Error>> + Send + 'a>>;

/// Per-backend hooks of the pool. Implemented for `PgConnection` and `SqliteConnection`.
pub(crate) trait Driver: Connection + Sized + Send + 'static {
    /// Which backend this is.
    const BACKEND: Backend;

    /// Runs once on every new connection, before anyone can use it.
    fn prepare(&mut self) -> DriverFuture<'_>;

    /// Make the session carry `scope`, whatever it carried before. Must leave nothing of a
    /// previous holder's session state that could widen what `scope` may see.
    fn enter<'a>(&'a mut self, scope: &'a SessionScope) -> DriverFuture<'a>;

    /// The typed pool inside a registry entry, if the entry is of this backend.
    fn from_entry(entry: &PoolEntry) -> Option<Arc<ConnPool<Self>>>;
}

/// What a pooled connection's session is known to carry.
#[derive(Debug, Clone)]
pub(crate) enum Carried {
    /// Not known: the next checkout must switch.
    Unknown,
    /// Confirmed by the server after the last switch.
    Scope(Arc<SessionScope>),
}

impl Carried {
    /// Whether the session is known to carry `scope`. Handles of one scope share its
    /// `Arc`, so the usual answer is a pointer comparison.
    fn is(&self, scope: &Arc<SessionScope>) -> bool {
        matches!(self, Carried::Scope(s) if Arc::ptr_eq(s, scope) || **s == **scope)
    }
}

/// A live connection, the permit it holds in the global cap, and its place in the pool's
/// count. Both are given back when it is dropped, however that happens.
pub(crate) struct Live<C> {
    pub(crate) raw: C,
    pub(crate) carried: Carried,
    /// When the server last confirmed this session (a switch). A connection handed out
    /// without a switch is not checked at all, so after [`REVERIFY_AFTER`] it is switched
    /// again: a dead connection (server restarted) is then found and replaced instead of
    /// failing every query of the tenant that keeps reusing it.
    verified_at: Instant,
    permit: OwnedSemaphorePermit,
    counted: Counted,
}

/// How long a session may be reused without the server confirming it (see `Live`). One
/// round trip per connection per second costs nothing measurable; it bounds how long a
/// restarted server's dead connections keep failing a tenant's queries.
const REVERIFY_AFTER: Duration = Duration::from_secs(1);

/// One unit of a pool's open-connection count, released on drop.
struct Counted(Arc<AtomicU32>);

impl Counted {
    fn new(count: &Arc<AtomicU32>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count.clone())
    }

    /// One more unit, unless the count is already `max`.
    fn below(count: &Arc<AtomicU32>, max: u32) -> Option<Self> {
        count
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Self(count.clone()))
    }
}

/// What `take_idle` found: an idle connection, or a go-ahead to open one.
enum Taken<C> {
    Idle(Live<C>),
    Open {
        /// The new connection's unit of the pool's count, taken already.
        counted: Counted,
        /// Whether an idle connection was passed over (see `connect`).
        growing: bool,
    },
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

struct Idle<C> {
    live: Live<C>,
    since: Instant,
}

const OPEN: u8 = 0;
/// Evicted from the registry: still serves handles that hold it, keeps no idle connections.
const RETIRED: u8 = 1;
/// Closed for good (org or tenant deleted, caches cleared): refuses checkouts.
const CLOSED: u8 = 2;

/// Idle connections older than this are pinged before being handed out.
const PING_AFTER_IDLE: Duration = Duration::from_secs(30);
/// Longest a checkout waits for a connection opened to grow the pool before it switches
/// an idle one instead.
const GROW_CONNECT_BUDGET: Duration = Duration::from_secs(1);
/// How long a pool does not grow after a connection opened to grow it failed.
const GROW_PAUSE: Duration = Duration::from_secs(5);
/// Closing a connection politely may not take longer than this.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a checkout failed (the scope layer turns these into `DataError`s with context).
#[derive(Debug)]
pub(crate) enum CheckoutError {
    /// The pool was closed.
    Closed,
    /// The pool's own connection limit stayed exhausted until the deadline.
    PoolBusy { max: u32 },
    /// The global cap stayed exhausted until the deadline.
    CapBusy { max: u32 },
    /// Connecting or switching failed.
    Database(sqlx::Error),
}

/// A bounded pool of connections to one database.
pub(crate) struct ConnPool<C: Driver> {
    label: String,
    options: <C as Connection>::Options,
    max: u32,
    /// One permit per checked-out connection: at most `max` open at once (see `checkout`).
    slots: Arc<Semaphore>,
    idle: Mutex<Vec<Idle<C>>>,
    cap: Arc<ConnectionCap>,
    /// Closes idle connections of other pools when the cap is exhausted.
    reclaimer: Reclaimer,
    settings: PoolSettings,
    state: AtomicU8,
    open: Arc<AtomicU32>,
    /// When the pool was made: the origin of `no_growing_before_ms`.
    born: Instant,
    /// Milliseconds after `born` before which the pool does not grow (see `take_idle`):
    /// set for a while after opening a connection to grow failed.
    no_growing_before_ms: AtomicU64,
}

impl<C: Driver> std::fmt::Debug for ConnPool<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnPool")
            .field("database", &self.label)
            .field("max", &self.max)
            .field("open", &self.open())
            .finish_non_exhaustive()
    }
}

/// A checked-out connection: returns itself to the pool when dropped.
pub(crate) struct Checked<C: Driver> {
    live: Option<Live<C>>,
    pool: Arc<ConnPool<C>>,
    _slot: OwnedSemaphorePermit,
}

impl<C: Driver> ConnPool<C> {
    pub(crate) fn new(
        label: String,
        options: <C as Connection>::Options,
        max: u32,
        cap: Arc<ConnectionCap>,
        reclaimer: Reclaimer,
        settings: PoolSettings,
    ) -> Self {
        Self {
            label,
            options,
            max: max.max(1),
            slots: Arc::new(Semaphore::new(max.max(1) as usize)),
            idle: Mutex::new(Vec::new()),
            cap,
            reclaimer,
            settings,
            state: AtomicU8::new(OPEN),
            open: Arc::new(AtomicU32::new(0)),
            born: Instant::now(),
            no_growing_before_ms: AtomicU64::new(0),
        }
    }

    /// The database, password redacted.
    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    /// Connections of this pool open right now.
    pub(crate) fn open(&self) -> u32 {
        self.open.load(Ordering::Relaxed)
    }

    /// Idle connections of this pool right now.
    pub(crate) fn idle_count(&self) -> usize {
        self.idle.lock().expect("pool lock").len()
    }

    /// This pool's connection limit.
    pub(crate) fn max(&self) -> u32 {
        self.max
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.state.load(Ordering::Acquire) == CLOSED
    }

    fn may_grow(&self) -> bool {
        self.born.elapsed().as_millis() as u64 >= self.no_growing_before_ms.load(Ordering::Relaxed)
    }

    fn pause_growing(&self) {
        let until = (self.born.elapsed() + GROW_PAUSE).as_millis() as u64;
        self.no_growing_before_ms.store(until, Ordering::Relaxed);
    }

    /// Neither closed nor evicted from its registry.
    pub(crate) fn is_open(&self) -> bool {
        self.state.load(Ordering::Acquire) == OPEN
    }

    /// Check out a connection whose session carries `scope`.
    ///
    /// When the global cap is exhausted, an idle connection of another pool is closed to
    /// make room. The whole call, waits included, is bounded by the acquire timeout.
    pub(crate) async fn checkout(
        self: &Arc<Self>,
        scope: &Arc<SessionScope>,
    ) -> Result<Checked<C>, CheckoutError> {
        if self.is_closed() {
            return Err(CheckoutError::Closed);
        }
        let deadline = Instant::now() + self.settings.acquire_timeout;
        // Holding a slot means fewer than `max` other connections are checked out, so when
        // no idle connection is left this pool has room to open one.
        let slot = tokio::time::timeout_at(deadline, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| CheckoutError::PoolBusy { max: self.max })?
            .map_err(|_| CheckoutError::Closed)?;
        let mut checked = Checked {
            live: None,
            pool: self.clone(),
            _slot: slot,
        };
        // A connection that fails its switch is discarded; one retry on a fresh connection
        // absorbs a server restart or a stale idle socket.
        let mut attempts = 0;
        // Open a connection for this scope rather than switch an idle one carrying another,
        // while there is room (see `take_idle`). Pointless when every checkout switches.
        let mut grow = self.settings.reuse_sessions && self.may_grow();
        loop {
            let live = match self.take_idle(scope, grow).await {
                Taken::Idle(live) => live,
                Taken::Open { counted, growing } => {
                    match self.connect(counted, growing, deadline).await? {
                        Some(live) => live,
                        // No free permit in the global cap: growing is not worth closing
                        // another pool's connection, so switch an idle one of ours.
                        None => {
                            grow = false;
                            continue;
                        }
                    }
                }
            };
            attempts += 1;
            checked.live = Some(live);
            let live = checked.live.as_mut().expect("just set");
            let carries = live.carried.is(scope);
            if carries
                && self.settings.reuse_sessions
                && live.verified_at.elapsed() < REVERIFY_AFTER
            {
                return Ok(checked);
            }
            // Until the server confirms the switch, nobody may trust this session.
            live.carried = Carried::Unknown;
            match live.raw.enter(scope).await {
                Ok(()) => {
                    live.carried = Carried::Scope(scope.clone());
                    live.verified_at = Instant::now();
                    return Ok(checked);
                }
                Err(e) => {
                    let broken = checked.live.take().expect("just set");
                    self.discard(broken);
                    if attempts >= 2 || !retryable(&e) {
                        return Err(CheckoutError::Database(e));
                    }
                }
            }
        }
    }

    /// Pop the idle connection to hand out: the most recently used one already carrying
    /// `scope` if any (no switch needed). Without one, a new connection is to be opened
    /// when none is idle, and also — with `grow` — while the pool is below its limit:
    /// switching an idle connection away from the scope it carries costs a round trip now
    /// and another when that scope comes back, so a pool with room keeps one connection per
    /// recently used scope instead (up to `max`; the global cap is only taken from when it
    /// has a free permit, see `connect`). Otherwise the most recently used idle connection.
    /// Connections idle past the idle timeout are closed on the way; long-idle ones are
    /// pinged.
    ///
    /// A new connection is counted in `open` here, under the lock, before it is opened:
    /// concurrent checkouts then never open more than `max` between them.
    async fn take_idle(&self, scope: &Arc<SessionScope>, grow: bool) -> Taken<C> {
        loop {
            let candidate = {
                let mut idle = self.idle.lock().expect("pool lock");
                let now = Instant::now();
                let timeout = self.settings.idle_timeout;
                let mut expired = Vec::new();
                let mut i = 0;
                while i < idle.len() {
                    if now.duration_since(idle[i].since) > timeout {
                        expired.push(idle.remove(i).live);
                    } else {
                        i += 1;
                    }
                }
                for live in expired {
                    self.discard(live);
                }
                let matching = idle.iter().rposition(|c| c.live.carried.is(scope));
                match matching {
                    Some(i) => idle.remove(i),
                    // Holding a slot means fewer than `max` other connections are checked
                    // out (or being opened), so with none idle there is room for one more.
                    None if idle.is_empty() => {
                        return Taken::Open {
                            counted: Counted::new(&self.open),
                            growing: false,
                        };
                    }
                    // Only when the connection passed over carries a scope of its own: one
                    // whose session is unknown must be switched by whoever takes it anyway.
                    None if grow
                        && idle
                            .last()
                            .is_some_and(|c| matches!(c.live.carried, Carried::Scope(_))) =>
                    {
                        match Counted::below(&self.open, self.max) {
                            Some(counted) => {
                                return Taken::Open {
                                    counted,
                                    growing: true,
                                };
                            }
                            None => idle.pop().expect("not empty"),
                        }
                    }
                    None => idle.pop().expect("not empty"),
                }
            };
            let mut candidate = candidate;
            if candidate.since.elapsed() < PING_AFTER_IDLE {
                return Taken::Idle(candidate.live);
            }
            match candidate.live.raw.ping().await {
                Ok(()) => return Taken::Idle(candidate.live),
                Err(e) => {
                    tracing::debug!(database = %self.label, error = %e, "dropping dead idle connection");
                    self.discard(candidate.live);
                }
            }
        }
    }

    /// Open a connection counted by `counted`. When `growing` (an idle connection exists,
    /// see `take_idle`), only with a free permit of the global cap: `None` without one.
    async fn connect(
        &self,
        counted: Counted,
        growing: bool,
        deadline: Instant,
    ) -> Result<Option<Live<C>>, CheckoutError> {
        let permit = if growing {
            match self.cap.try_acquire() {
                Some(permit) => permit,
                None => return Ok(None),
            }
        } else {
            self.cap
                .acquire(deadline, &self.reclaimer)
                .await
                .ok_or(CheckoutError::CapBusy {
                    max: self.cap.max(),
                })?
        };
        let connect = async {
            let mut raw = self.options.connect().await?;
            raw.prepare().await?;
            Ok::<C, sqlx::Error>(raw)
        };
        if growing {
            // Optional: an idle connection is there to switch instead. A server refusing
            // or slow to take more connections pauses growing rather than fail checkouts.
            let until = deadline.min(Instant::now() + GROW_CONNECT_BUDGET);
            return match tokio::time::timeout_at(until, connect).await {
                Ok(Ok(raw)) => Ok(Some(Live {
                    raw,
                    carried: Carried::Unknown,
                    verified_at: Instant::now(),
                    permit,
                    counted,
                })),
                failed => {
                    let reason = match failed {
                        Ok(Err(e)) => e.to_string(),
                        _ => "timed out".to_owned(),
                    };
                    tracing::debug!(database = %self.label, error = %crate::redact::redact_text(&reason), "not growing the pool for a while");
                    self.pause_growing();
                    Ok(None)
                }
            };
        }
        let raw = match tokio::time::timeout_at(deadline, connect).await {
            Ok(Ok(raw)) => raw,
            Ok(Err(e)) => return Err(CheckoutError::Database(e)),
            Err(_) => return Err(CheckoutError::Database(sqlx::Error::PoolTimedOut)),
        };
        Ok(Some(Live {
            raw,
            carried: Carried::Unknown,
            verified_at: Instant::now(),
            permit,
            counted,
        }))
    }

    /// Take a connection back. Never talks to the server: it must be safe from `Drop`,
    /// during a panic, and after a future was cancelled mid-query.
    fn release(&self, mut live: Live<C>) {
        if self.state.load(Ordering::Acquire) != OPEN {
            self.discard(live);
            return;
        }
        if live.raw.is_in_transaction() {
            // A transaction sqlx still counts as open (e.g. a leaked `Transaction`): the
            // session may roll back to any state, so it must be switched before reuse.
            live.carried = Carried::Unknown;
        }
        self.idle.lock().expect("pool lock").push(Idle {
            live,
            since: Instant::now(),
        });
        self.cap.connection_idled();
    }

    /// Close a connection in the background; its cap permit is returned once it is closed.
    fn discard(&self, live: Live<C>) {
        let Live {
            raw,
            permit,
            counted,
            ..
        } = live;
        let finish = move || {
            drop(counted);
            drop(permit);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    let _ = tokio::time::timeout(CLOSE_TIMEOUT, raw.close()).await;
                    finish();
                });
            }
            // No runtime (dropped at shutdown): dropping the connection closes its socket.
            Err(_) => {
                drop(raw);
                finish();
            }
        }
    }

    /// Close the least recently used idle connection, if any. Used when the global cap is
    /// exhausted and another pool needs the permit.
    pub(crate) fn reclaim_one(&self) -> bool {
        let oldest = {
            let mut idle = self.idle.lock().expect("pool lock");
            if idle.is_empty() {
                None
            } else {
                Some(idle.remove(0))
            }
        };
        match oldest {
            Some(idle) => {
                self.discard(idle.live);
                true
            }
            None => false,
        }
    }

    fn drain_idle(&self) {
        let drained: Vec<_> = std::mem::take(&mut *self.idle.lock().expect("pool lock"));
        for idle in drained {
            self.discard(idle.live);
        }
    }

    /// Stop keeping idle connections; holders of this pool may still check out.
    pub(crate) fn retire(&self) {
        let _ = self
            .state
            .compare_exchange(OPEN, RETIRED, Ordering::AcqRel, Ordering::Acquire);
        self.drain_idle();
    }

    /// Refuse further checkouts and close idle connections; checked-out ones are closed
    /// when they come back.
    pub(crate) fn close(&self) {
        self.state.store(CLOSED, Ordering::Release);
        self.slots.close();
        self.drain_idle();
    }

    /// Wait until every connection of this pool is closed, or `timeout` passes.
    pub(crate) async fn closed(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.open() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Worth one retry on a fresh connection.
fn retryable(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Io(_) | sqlx::Error::Protocol(_))
        || matches!(e, sqlx::Error::Database(d) if d.code().is_some_and(|c| c.starts_with("57P")))
}

impl<C: Driver> Checked<C> {
    pub(crate) fn raw(&self) -> &C {
        &self
            .live
            .as_ref()
            .expect("connection present until drop")
            .raw
    }

    pub(crate) fn raw_mut(&mut self) -> &mut C {
        &mut self
            .live
            .as_mut()
            .expect("connection present until drop")
            .raw
    }

    /// Close this connection instead of returning it to the pool.
    pub(crate) fn discard(mut self) {
        if let Some(live) = self.live.take() {
            self.pool.discard(live);
        }
    }

    /// Forget what the session carries: the next checkout switches it again.
    pub(crate) fn forget_scope(&mut self) {
        if let Some(live) = self.live.as_mut() {
            live.carried = Carried::Unknown;
        }
    }
}

impl<C: Driver> Drop for Checked<C> {
    fn drop(&mut self) {
        if let Some(live) = self.live.take() {
            self.pool.release(live);
        }
    }
}
