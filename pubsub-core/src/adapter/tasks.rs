//! [`Tasks`]: every background task of a handle, in one set with one cancellation token.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The background tasks of one handle. `close` (or dropping the handle) cancels them all and
/// waits, with a deadline, until they are gone.
#[derive(Debug, Clone, Default)]
pub struct Tasks {
    tracker: TaskTracker,
    cancel: CancellationToken,
}

impl Tasks {
    /// A task set of its own (the handle creates one; a test may too).
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `task` until it ends or the handle stops, whichever comes first.
    pub fn spawn<T>(&self, task: T)
    where
        T: Future<Output = ()> + Send + 'static,
    {
        let cancel = self.cancel.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => {}
                _ = task => {}
            }
        });
    }

    /// Resolves once the handle stops.
    pub async fn stopped(&self) {
        self.cancel.cancelled().await;
    }

    /// Whether the handle stopped.
    pub fn is_stopped(&self) -> bool {
        self.cancel.is_cancelled()
    }

    pub(crate) fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Cancels every task and waits up to `deadline` for them to end; false if some did not.
    pub(crate) async fn shut_down(&self, deadline: Duration) -> bool {
        self.cancel.cancel();
        self.tracker.close();
        tokio::time::timeout(deadline, self.tracker.wait())
            .await
            .is_ok()
    }

    /// Tasks still running.
    pub(crate) fn len(&self) -> usize {
        self.tracker.len()
    }
}
