//! The reconciler: brings the broker's native filters in line with what the routes need.
//!
//! The desired state lives in the router's slots (how many routes need each filter, and what
//! the broker has). One task per handle compares the two after every change and applies the
//! difference in batches, each batch in a task of its own, so that a stalled change at the
//! broker never blocks another filter's change, a publish or `close`. A failed change is
//! retried with the handle's backoff; after a reconnect the whole present set is replayed.

use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::adapter::driver::Driver;
use crate::adapter::supervisor::Supervisor;
use crate::adapter::tasks::Tasks;
use crate::router::{Presence, Router, Routes};
use crate::{Backoff, Error, Operation, Result};

/// Most filters in one driver call.
const BATCH: usize = 1024;

pub(crate) struct Reconciler<D: Driver> {
    driver: Arc<D>,
    router: Arc<Router<D::Filter>>,
    supervisor: Supervisor,
    tasks: Tasks,
    backoff: Backoff,
    kick: Arc<Notify>,
    restore: Mutex<RestoreState>,
    /// Filters waiting for a retry, and when the first is due.
    deferred: Mutex<(Option<Instant>, Vec<D::Filter>)>,
}

#[derive(Default)]
struct RestoreState {
    busy: bool,
    failures: u32,
    retry_at: Option<Instant>,
}

/// What the handle keeps of its reconciler: a way to wake it. (Who waits for a filter's
/// change waits on its slot: [`Router::watch_slot`](crate::router::Router::watch_slot).)
pub(crate) struct Handle {
    pub(crate) kick: Arc<Notify>,
}

pub(crate) fn spawn<D: Driver>(
    driver: Arc<D>,
    router: Arc<Router<D::Filter>>,
    supervisor: Supervisor,
    tasks: Tasks,
    backoff: Backoff,
) -> Handle {
    let kick = Arc::new(Notify::new());
    let reconciler = Arc::new(Reconciler {
        driver,
        router,
        supervisor,
        tasks: tasks.clone(),
        backoff,
        kick: kick.clone(),
        restore: Mutex::new(RestoreState::default()),
        deferred: Mutex::new((None, Vec::new())),
    });
    tasks.spawn(reconciler.run());
    Handle { kick }
}

impl<D: Driver> Reconciler<D> {
    async fn run(self: Arc<Self>) {
        loop {
            let next = self.round();
            let sleep = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = self.kick.notified() => {}
                _ = self.supervisor.restore_requested() => {}
                _ = sleep => {}
            }
        }
    }

    /// Starts every change that is due among the slots marked dirty (and the deferred ones
    /// whose retry time has come); returns when the next retry is due.
    fn round(self: &Arc<Self>) -> Option<Instant> {
        let now = Instant::now();
        let mut adds = Vec::new();
        let mut removes = Vec::new();
        let mut next: Option<Instant>;
        {
            let mut deferred = self.deferred.lock();
            let mut routes = self.router.routes.write();
            let Routes {
                filters,
                by_id,
                dirty,
                ..
            } = &mut *routes;
            let mut work = std::mem::take(dirty);
            if deferred.0.is_some_and(|at| at <= now) {
                work.append(&mut deferred.1);
                deferred.0 = None;
            }
            for filter in work {
                let Some(slot) = filters.get_mut(&filter) else {
                    continue;
                };
                slot.queued = false;
                if slot.is_settled() {
                    slot.changed();
                    by_id.remove(&slot.id);
                    filters.remove(&filter);
                    continue;
                }
                let wanted = slot.refs > 0;
                let due = !slot.busy
                    && if wanted {
                        slot.presence != Presence::Present
                    } else {
                        slot.presence != Presence::Absent
                    };
                if !due {
                    continue;
                }
                if let Some(at) = slot.retry_at.filter(|at| *at > now) {
                    deferred.0 = Some(deferred.0.map_or(at, |d| d.min(at)));
                    deferred.1.push(filter);
                    continue;
                }
                slot.busy = true;
                if wanted {
                    adds.push(filter);
                } else {
                    removes.push(filter);
                }
            }
            next = deferred.0;
        }
        for batch in adds.chunks(BATCH) {
            self.tasks
                .spawn(self.clone().change(batch.to_vec(), Change::Add));
        }
        for batch in removes.chunks(BATCH) {
            self.tasks
                .spawn(self.clone().change(batch.to_vec(), Change::Remove));
        }
        if let Some(at) = self.start_restore(now) {
            next = Some(next.map_or(at, |n| n.min(at)));
        }
        next
    }

    async fn change(self: Arc<Self>, filters: Vec<D::Filter>, change: Change) {
        let result = match change {
            Change::Add => self.driver.add_filters(&filters).await,
            Change::Remove => self.driver.remove_filters(&filters).await,
        };
        let result = result.map_err(|e| e.with_backend(D::BACKEND).with_operation(change.op()));
        if let Err(error) = &result {
            tracing::warn!(backend = D::BACKEND, filters = filters.len(), %error, "a change of native filters failed; it will be retried");
        }
        let now = Instant::now();
        {
            let mut routes = self.router.routes.write();
            let Routes {
                filters: slots,
                dirty,
                active,
                ..
            } = &mut *routes;
            for filter in &filters {
                let Some(slot) = slots.get_mut(filter) else {
                    continue;
                };
                let was_active = slot.presence != Presence::Absent;
                slot.busy = false;
                slot.attempts += 1;
                match &result {
                    Ok(()) => {
                        slot.presence = change.done();
                        slot.failures = 0;
                        slot.retry_at = None;
                        slot.last_error = None;
                    }
                    Err(error) => {
                        slot.presence = Presence::Unknown;
                        slot.retry_at = Some(now + self.backoff.delay(slot.failures));
                        slot.failures = slot.failures.saturating_add(1);
                        slot.last_error = Some(error.clone());
                    }
                }
                let is_active = slot.presence != Presence::Absent;
                if was_active != is_active {
                    *active = if is_active { *active + 1 } else { *active - 1 };
                }
                slot.changed();
                // The wanted state may have changed while the broker was busy.
                Routes::mark(dirty, filter, slot);
            }
        }
        self.kick.notify_one();
    }

    /// Starts replaying the present filters when a link asks for it; returns when a failed
    /// replay is due again.
    fn start_restore(self: &Arc<Self>, now: Instant) -> Option<Instant> {
        let mut state = self.restore.lock();
        if state.busy {
            return None;
        }
        let links = self.supervisor.restoring();
        if links.is_empty() {
            return None;
        }
        if let Some(at) = state.retry_at.filter(|at| *at > now) {
            return Some(at);
        }
        state.busy = true;
        drop(state);
        self.tasks.spawn(self.clone().replay(links));
        None
    }

    async fn replay(self: Arc<Self>, links: Vec<usize>) {
        let present: Vec<D::Filter> = {
            let routes = self.router.routes.read();
            routes
                .filters
                .iter()
                .filter(|(_, slot)| slot.presence == Presence::Present)
                .map(|(filter, _)| filter.clone())
                .collect()
        };
        let mut result: Result<()> = Ok(());
        for batch in present.chunks(BATCH) {
            result = self.driver.restore_filters(batch).await;
            if result.is_err() {
                break;
            }
        }
        let mut state = self.restore.lock();
        state.busy = false;
        match result {
            Ok(()) => {
                if !present.is_empty() {
                    tracing::info!(
                        backend = D::BACKEND,
                        filters = present.len(),
                        "restored the native filters after a reconnect"
                    );
                }
                state.failures = 0;
                state.retry_at = None;
                self.supervisor.restored(&links);
            }
            Err(error) => {
                let error: Error = error
                    .with_backend(D::BACKEND)
                    .with_operation(Operation::Restore);
                tracing::warn!(%error, "could not restore the native filters yet; retrying");
                state.retry_at = Some(Instant::now() + self.backoff.delay(state.failures));
                state.failures = state.failures.saturating_add(1);
            }
        }
        drop(state);
        self.kick.notify_one();
    }
}

#[derive(Clone, Copy)]
enum Change {
    Add,
    Remove,
}

impl Change {
    fn op(self) -> Operation {
        match self {
            Change::Add => Operation::Subscribe,
            Change::Remove => Operation::Unsubscribe,
        }
    }

    fn done(self) -> Presence {
        match self {
            Change::Add => Presence::Present,
            Change::Remove => Presence::Absent,
        }
    }
}
