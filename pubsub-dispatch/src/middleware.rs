//! Built-in middleware: [`TimeoutLayer`] and [`DedupLayer`]. Middleware is any tower
//! [`Layer`] whose service takes an [`Incoming`] and answers `Result<(), HandlerError>`; add it
//! to one route with [`Route::layer`](crate::Route::layer) or to every route with
//! [`DispatcherBuilder::layer`](crate::DispatcherBuilder::layer).
//!
//! Writing your own (an authorisation check on a header, say) is a `Layer` plus a `Service`:
//!
//! ```
//! use std::task::{Context, Poll};
//! use futures::future::{ready, BoxFuture, FutureExt};
//! use pubsub_dispatch::{HandlerError, Incoming};
//! use tower::{Layer, Service};
//!
//! #[derive(Clone)]
//! struct RequireTenant<S>(S);
//!
//! impl<S> Service<Incoming> for RequireTenant<S>
//! where
//!     S: Service<Incoming, Response = (), Error = HandlerError>,
//!     S::Future: Send + 'static,
//! {
//!     type Response = ();
//!     type Error = HandlerError;
//!     type Future = BoxFuture<'static, Result<(), HandlerError>>;
//!     fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), HandlerError>> {
//!         self.0.poll_ready(cx)
//!     }
//!     fn call(&mut self, incoming: Incoming) -> Self::Future {
//!         if incoming.meta().header("tenant").is_none() {
//!             return ready(Err(HandlerError::permanent("no tenant header"))).boxed();
//!         }
//!         self.0.call(incoming).boxed()
//!     }
//! }
//!
//! #[derive(Clone)]
//! struct RequireTenantLayer;
//! impl<S> Layer<S> for RequireTenantLayer {
//!     type Service = RequireTenant<S>;
//!     fn layer(&self, inner: S) -> RequireTenant<S> {
//!         RequireTenant(inner)
//!     }
//! }
//! # async fn h(_: pubsub_dispatch::Meta) -> Result<(), HandlerError> { Ok(()) }
//! let route = pubsub_dispatch::Route::new("orders.>", h).layer(RequireTenantLayer);
//! ```

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use parking_lot::Mutex;
use tower_layer::Layer;
use tower_service::Service;

use crate::error::HandlerError;
use crate::meta::Incoming;

/// Fails an attempt that takes longer than a limit with a retryable
/// [`FailureKind::Timeout`](crate::FailureKind::Timeout); the handler's future is dropped.
///
/// ```
/// use std::time::Duration;
/// use pubsub_dispatch::{Meta, HandlerError, Route, TimeoutLayer};
/// # async fn slow(_: Meta) -> Result<(), HandlerError> { Ok(()) }
/// let route = Route::new("jobs.>", slow).layer(TimeoutLayer::new(Duration::from_secs(30)));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct TimeoutLayer {
    limit: Duration,
}

impl TimeoutLayer {
    /// Each attempt gets at most `limit`.
    pub fn new(limit: Duration) -> Self {
        TimeoutLayer { limit }
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;
    fn layer(&self, inner: S) -> Timeout<S> {
        Timeout {
            inner,
            limit: self.limit,
        }
    }
}

/// The service of [`TimeoutLayer`].
#[derive(Debug, Clone)]
pub struct Timeout<S> {
    inner: S,
    limit: Duration,
}

impl<S> Service<Incoming> for Timeout<S>
where
    S: Service<Incoming, Response = (), Error = HandlerError>,
    S::Future: Send + 'static,
{
    type Response = ();
    type Error = HandlerError;
    type Future = BoxFuture<'static, Result<(), HandlerError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), HandlerError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, incoming: Incoming) -> Self::Future {
        let limit = self.limit;
        let future = self.inner.call(incoming);
        Box::pin(async move {
            match tokio::time::timeout(limit, future).await {
                Ok(result) => result,
                Err(_) => Err(HandlerError::timeout(limit)),
            }
        })
    }
}

/// Skips a message whose CloudEvents `ce-id` was already handled successfully (at-least-once
/// redelivery, a publisher's retry): the handler is not called and the message counts as
/// handled. Remembers the last `capacity` ids (oldest forgotten first); messages without a
/// `ce-id` always pass. One layer value shares its memory among all the routes it is added to
/// (clone it or make another for separate memories).
///
/// ```
/// use pubsub_dispatch::{DedupLayer, Meta, HandlerError, Route};
/// # async fn pay(_: Meta) -> Result<(), HandlerError> { Ok(()) }
/// let dedup = DedupLayer::new(10_000);
/// let route = Route::new("payments.>", pay).layer(dedup.clone());
/// assert_eq!(dedup.skipped(), 0);
/// ```
#[derive(Debug, Clone)]
pub struct DedupLayer {
    seen: Arc<Seen>,
}

/// The ids remembered, as a set and in the order they came (oldest first).
type Remembered = (HashSet<Arc<str>>, VecDeque<Arc<str>>);

#[derive(Debug)]
struct Seen {
    capacity: usize,
    ids: Mutex<Remembered>,
    skipped: AtomicU64,
}

impl Seen {
    fn contains(&self, id: &str) -> bool {
        self.ids.lock().0.contains(id)
    }

    fn remember(&self, id: &str) {
        let mut guard = self.ids.lock();
        let (set, order) = &mut *guard;
        if set.contains(id) {
            return;
        }
        let id: Arc<str> = id.into();
        set.insert(id.clone());
        order.push_back(id);
        while order.len() > self.capacity {
            if let Some(old) = order.pop_front() {
                set.remove(&old);
            }
        }
    }
}

impl DedupLayer {
    /// Remembers up to `capacity` ids (at least 1).
    pub fn new(capacity: usize) -> Self {
        DedupLayer {
            seen: Arc::new(Seen {
                capacity: capacity.max(1),
                ids: Mutex::new((HashSet::new(), VecDeque::new())),
                skipped: AtomicU64::new(0),
            }),
        }
    }

    /// How many duplicates were skipped so far.
    pub fn skipped(&self) -> u64 {
        self.seen.skipped.load(Ordering::Relaxed)
    }
}

impl<S> Layer<S> for DedupLayer {
    type Service = Dedup<S>;
    fn layer(&self, inner: S) -> Dedup<S> {
        Dedup {
            inner,
            seen: self.seen.clone(),
        }
    }
}

/// The service of [`DedupLayer`].
#[derive(Debug, Clone)]
pub struct Dedup<S> {
    inner: S,
    seen: Arc<Seen>,
}

impl<S> Service<Incoming> for Dedup<S>
where
    S: Service<Incoming, Response = (), Error = HandlerError>,
    S::Future: Send + 'static,
{
    type Response = ();
    type Error = HandlerError;
    type Future = BoxFuture<'static, Result<(), HandlerError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), HandlerError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, incoming: Incoming) -> Self::Future {
        let id = incoming.meta().id().map(str::to_owned);
        if let Some(id) = &id {
            if self.seen.contains(id) {
                self.seen.skipped.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("pubsub_dispatch_deduplicated_total", "route" => incoming.meta().route().to_owned())
                    .increment(1);
                tracing::debug!(ce_id = %id, "duplicate event skipped");
                return Box::pin(std::future::ready(Ok(())));
            }
        }
        let seen = self.seen.clone();
        let future = self.inner.call(incoming);
        Box::pin(async move {
            future.await?;
            if let Some(id) = id {
                seen.remember(&id);
            }
            Ok(())
        })
    }
}
