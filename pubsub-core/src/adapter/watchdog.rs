//! [`Watchdog`]: bounds operations by a deadline without a timer per operation.

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::tasks::Tasks;
use crate::{Error, Result};

/// Ends any operation that has waited longer than its deadline, whatever the cause (a
/// connection loss not noticed yet, a stalled broker), so that a `publish` never hangs.
///
/// A per-operation timer costs a clock read and a timer-wheel entry each; on a hot path that
/// is a large part of an adapter's own cost. The watchdog instead ticks four times per
/// deadline in one task and wakes the operations in flight, which give up once a deadline's
/// worth of ticks has passed since they started (so a deadline is kept to within one tick).
///
/// ```
/// # async fn demo() {
/// use std::time::Duration;
/// use pubsub_core::ErrorKind;
/// # let tasks = pubsub_core::adapter::Tasks::new();
/// use pubsub_core::adapter::Watchdog;
/// let watchdog = Watchdog::start(Duration::from_millis(40), &tasks);
/// assert_eq!(watchdog.bound(async { 7 }).await.unwrap(), 7);
/// let stuck = watchdog.bound(std::future::pending::<()>()).await;
/// assert_eq!(stuck.unwrap_err().kind(), ErrorKind::Timeout);
/// # }
/// # tokio::runtime::Runtime::new().unwrap().block_on(demo());
/// ```
#[derive(Debug)]
pub struct Watchdog {
    deadline: Duration,
    ticks: u64,
    epoch: AtomicU64,
    inflight: AtomicUsize,
    expired: Notify,
}

impl Watchdog {
    /// A watchdog for `deadline`, ticking in a task of `tasks` until the handle stops.
    pub fn start(deadline: Duration, tasks: &Tasks) -> Arc<Watchdog> {
        let tick = (deadline / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        let whole = deadline.as_nanos().div_ceil(tick.as_nanos().max(1));
        let watchdog = Arc::new(Watchdog {
            deadline,
            // One more tick: an operation may start just before a tick.
            ticks: u64::try_from(whole)
                .unwrap_or(u64::MAX - 1)
                .saturating_add(1),
            epoch: AtomicU64::new(0),
            inflight: AtomicUsize::new(0),
            expired: Notify::new(),
        });
        let ticking = watchdog.clone();
        tasks.spawn(async move {
            let mut ticker = tokio::time::interval(tick);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                ticking.epoch.fetch_add(1, Ordering::AcqRel);
                if ticking.inflight.load(Ordering::Relaxed) > 0 {
                    ticking.expired.notify_waiters();
                }
            }
        });
        watchdog
    }

    /// Runs `operation`, or fails with a timeout once it has waited the deadline.
    pub async fn bound<T>(&self, operation: impl Future<Output = T>) -> Result<T> {
        let _inflight = Inflight::enter(&self.inflight);
        let started = self.epoch.load(Ordering::Acquire);
        tokio::pin!(operation);
        loop {
            // Created before the epoch is read, so a tick in between is not missed.
            let expired = self.expired.notified();
            if self.epoch.load(Ordering::Acquire) >= started.saturating_add(self.ticks) {
                return Err(Error::timeout(format!(
                    "no answer from the broker within {:?}",
                    self.deadline
                )));
            }
            tokio::select! {
                biased;
                done = &mut operation => return Ok(done),
                _ = expired => {}
            }
        }
    }
}

/// Counts an operation in flight while it lives.
struct Inflight<'a>(&'a AtomicUsize);

impl<'a> Inflight<'a> {
    fn enter(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Inflight(counter)
    }
}

impl Drop for Inflight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
