//! The global cap on open connections, across every pool of a host.
//!
//! A database server has one `max_connections` for all of its databases, and a host with
//! thousands of orgs would exhaust it long before any single pool reached its own limit.
//! So every live connection — idle or checked out, in any pool — owns one permit of a
//! single semaphore, and gives it back only after the connection is closed. The number of
//! open connections therefore never exceeds the cap, not even for the instant between a
//! reclaimed idle connection being picked and its socket being closed.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Permits for open connections, shared by all pools of one host.
#[derive(Debug)]
pub(crate) struct ConnectionCap {
    permits: Arc<Semaphore>,
    max: u32,
    /// Signalled whenever a connection goes idle somewhere: a waiter may now reclaim it.
    idled: Notify,
}

impl ConnectionCap {
    pub(crate) fn new(max: u32) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max as usize)),
            max,
            idled: Notify::new(),
        }
    }

    /// The cap.
    pub(crate) fn max(&self) -> u32 {
        self.max
    }

    /// Connections open right now, across all pools.
    pub(crate) fn open(&self) -> u32 {
        self.max
            .saturating_sub(self.permits.available_permits() as u32)
    }

    /// A permit if one is free right now; never waits or reclaims.
    pub(crate) fn try_acquire(&self) -> Option<OwnedSemaphorePermit> {
        self.permits.clone().try_acquire_owned().ok()
    }

    /// Tell waiters that an idle connection exists that they might reclaim.
    pub(crate) fn connection_idled(&self) {
        self.idled.notify_waiters();
    }

    /// A permit for one more open connection, waiting until `deadline`.
    ///
    /// When none is free, `reclaim` is asked to close an idle connection of any pool (its
    /// permit comes back once it is closed); the wait is re-armed every time a connection
    /// goes idle anywhere, so idle connections of other pools never starve a busy one.
    pub(crate) async fn acquire(
        &self,
        deadline: Instant,
        reclaim: &super::Reclaimer,
    ) -> Option<OwnedSemaphorePermit> {
        loop {
            let idled = self.idled.notified();
            tokio::pin!(idled);
            idled.as_mut().enable();
            if let Ok(permit) = self.permits.clone().try_acquire_owned() {
                return Some(permit);
            }
            let reclaimed = reclaim.reclaim();
            // Re-check now and then even without a signal: a permit freed by a connection
            // closed elsewhere (idle timeout, error) does not notify.
            let recheck = Instant::now() + Duration::from_millis(if reclaimed { 5 } else { 50 });
            tokio::select! {
                permit = self.permits.clone().acquire_owned() => {
                    return permit.ok();
                }
                () = &mut idled => {}
                () = tokio::time::sleep_until(recheck.min(deadline)) => {}
            }
            if Instant::now() >= deadline {
                return self.permits.clone().try_acquire_owned().ok();
            }
        }
    }
}
