//! [`FilterReaders`]: one reader task per native subscription, for client libraries that hand
//! each subscription's messages out on a stream of its own (async-nats's `Subscriber`).

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::task::Poll;

use futures::{FutureExt, Stream, StreamExt};
use parking_lot::Mutex;
use tokio::sync::oneshot;

use super::Tasks;

/// Stops a reader: the reader releases its subscription, then drops the acknowledgement it
/// was sent.
type Stop = oneshot::Sender<oneshot::Sender<()>>;

/// The reader tasks of a handle's native subscriptions, by filter.
pub struct FilterReaders<F> {
    readers: Mutex<HashMap<F, Stop>>,
}

impl<F> Default for FilterReaders<F> {
    fn default() -> Self {
        FilterReaders {
            readers: Mutex::new(HashMap::new()),
        }
    }
}

impl<F> std::fmt::Debug for FilterReaders<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FilterReaders")
            .field("readers", &self.readers.lock().len())
            .finish()
    }
}

impl<F: Clone + Eq + Hash + Send + 'static> FilterReaders<F> {
    /// Starts the reader of `filter` on `tasks`: it hands every item of `subscription` to
    /// `route` until [`FilterReaders::stop`] stops it, then calls `release` with the
    /// subscription (an unsubscribe) and acknowledges. A reader it replaces (not expected)
    /// stops without releasing; one whose stream ends, ends.
    ///
    /// Each wake-up drains what the subscription has buffered (up to tokio's cooperative
    /// budget) before it looks for a stop request again.
    pub fn start<S, R, U, UF>(
        &self,
        tasks: &Tasks,
        filter: F,
        subscription: S,
        route: R,
        release: U,
    ) where
        S: Stream + Unpin + Send + 'static,
        R: FnMut(S::Item) + Send + 'static,
        U: FnOnce(S) -> UF + Send + 'static,
        UF: Future<Output = ()> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel();
        tasks.spawn(read(subscription, route, release, stopped));
        // A reader this replaces stops when its `Stop` is dropped.
        self.readers.lock().insert(filter, stop);
    }

    /// Stops the readers of `filters` at once; the future resolves when each has released its
    /// subscription.
    pub fn stop(&self, filters: &[F]) -> impl Future<Output = ()> + Send + 'static {
        let stops: Vec<Stop> = {
            let mut readers = self.readers.lock();
            filters.iter().filter_map(|f| readers.remove(f)).collect()
        };
        async move {
            futures::future::join_all(stops.into_iter().map(|stop| async move {
                let (ack, done) = oneshot::channel();
                if stop.send(ack).is_ok() {
                    let _ = done.await;
                }
            }))
            .await;
        }
    }

    /// How many readers run.
    pub fn len(&self) -> usize {
        self.readers.lock().len()
    }

    /// Whether no reader runs.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

async fn read<S, R, U, UF>(
    mut subscription: S,
    mut route: R,
    release: U,
    mut stop: oneshot::Receiver<oneshot::Sender<()>>,
) where
    S: Stream + Unpin,
    R: FnMut(S::Item),
    U: FnOnce(S) -> UF,
    UF: Future<Output = ()>,
{
    let stopped = std::future::poll_fn(|cx| {
        // A stop request, or the owner let go of this reader.
        if let Poll::Ready(ack) = stop.poll_unpin(cx) {
            return Poll::Ready(Some(ack.ok()));
        }
        loop {
            match subscription.poll_next_unpin(cx) {
                Poll::Ready(Some(item)) => route(item),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    })
    .await;
    if let Some(_ack) = stopped {
        release(subscription).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use futures::channel::mpsc;

    #[tokio::test]
    async fn routes_until_stopped_then_releases() {
        let tasks = Tasks::new();
        let readers = FilterReaders::default();
        let routed = Arc::new(Mutex::new(Vec::new()));
        let released = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::unbounded();
        let (into, out) = (routed.clone(), released.clone());
        readers.start(
            &tasks,
            "a.>".to_string(),
            rx,
            move |n| into.lock().push(n),
            move |_subscription| async move { out.lock().push("a.>") },
        );
        assert_eq!(readers.len(), 1);
        tx.unbounded_send(1).unwrap();
        tx.unbounded_send(2).unwrap();
        while routed.lock().len() < 2 {
            tokio::task::yield_now().await;
        }
        readers
            .stop(&["a.>".to_string(), "other".to_string()])
            .await;
        assert_eq!(*released.lock(), ["a.>"]);
        assert!(readers.is_empty());
        assert_eq!(*routed.lock(), [1, 2]);
        // Stopping again, or a filter without a reader, returns at once.
        readers.stop(&["a.>".to_string()]).await;
    }
}
