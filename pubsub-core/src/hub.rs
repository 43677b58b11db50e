//! [`Hub`]: the shared half of every adapter, in front of one [`Driver`].

use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;

use crate::router::{Inbound, Queue, Route};
use crate::{
    Driver, Error, Message, NativeFilter, Pattern, PubSub, Result, Stats, SubscribeOptions,
    Subscription,
};

/// Default buffer capacity of a subscription, in messages.
pub const DEFAULT_CAPACITY: usize = 1024;

/// Settings the hub applies on top of any driver.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HubConfig {
    /// Buffer capacity of a subscription when [`SubscribeOptions::capacity`] is `None`.
    pub default_capacity: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            default_capacity: DEFAULT_CAPACITY,
        }
    }
}

impl HubConfig {
    /// Sets the default subscription buffer capacity (at least 1).
    pub fn with_default_capacity(mut self, capacity: usize) -> Self {
        self.default_capacity = capacity.max(1);
        self
    }
}

/// A [`PubSub`] handle built from the shared router and one broker [`Driver`].
///
/// Every adapter returns a `Hub`; cloning it is cheap and all clones share one connection.
///
/// ```
/// # async fn demo() -> pubsub_core::Result<()> {
/// use pubsub_core::{memory::MemoryBus, PubSub};
/// let hub = MemoryBus::new().connect().await?;
/// let sub = hub.subscribe("a.>".parse()?).await?;
/// assert_eq!(hub.stats().native_filters, 1);
/// drop(sub);
/// hub.close().await?;
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
/// ```
#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

pub(crate) struct HubInner {
    driver: Arc<dyn Driver>,
    inbound: Inbound,
    config: HubConfig,
    /// Native filters active at the broker; held across the broker round trip so that filter
    /// changes are applied one at a time and in order.
    active: tokio::sync::Mutex<HashSet<NativeFilter>>,
    active_count: AtomicUsize,
    closed: AtomicBool,
    next_id: AtomicU64,
    published: AtomicU64,
    runtime: tokio::runtime::Handle,
}

impl Hub {
    /// Builds a hub: creates the router's [`Inbound`], lets `connect` build the driver around it,
    /// and returns the handle. Must run inside a tokio runtime.
    pub async fn start<D, F, Fut>(config: HubConfig, connect: F) -> Result<Hub>
    where
        D: Driver,
        F: FnOnce(Inbound) -> Fut,
        Fut: Future<Output = Result<D>>,
    {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| Error::InvalidConfig("a pub/sub hub needs a tokio runtime".into()))?;
        let inbound = Inbound::new();
        let driver = connect(inbound.clone()).await?;
        Ok(Hub {
            inner: Arc::new(HubInner {
                driver: Arc::new(driver),
                inbound,
                config,
                active: tokio::sync::Mutex::new(HashSet::new()),
                active_count: AtomicUsize::new(0),
                closed: AtomicBool::new(false),
                next_id: AtomicU64::new(1),
                published: AtomicU64::new(0),
                runtime,
            }),
        })
    }

    /// The driver behind this hub.
    pub fn driver(&self) -> &Arc<dyn Driver> {
        &self.inner.driver
    }
}

impl HubInner {
    /// Brings the broker in line with what the routes want for `filter`.
    async fn sync_filter(&self, filter: &NativeFilter) -> Result<()> {
        let mut active = self.active.lock().await;
        if self.closed.load(Ordering::SeqCst) {
            return Err(Error::Closed);
        }
        let wanted = self.inbound.table().wants(filter);
        let present = active.contains(filter);
        if wanted && !present {
            self.driver.add_filter(filter).await?;
            active.insert(filter.clone());
        } else if !wanted && present {
            self.driver.remove_filter(filter).await?;
            active.remove(filter);
        }
        self.active_count.store(active.len(), Ordering::Relaxed);
        Ok(())
    }

    pub(crate) async fn unsubscribe(&self, route: &Route) -> Result<()> {
        route.queue.close();
        if self.inbound.table().remove(route) || self.closed.load(Ordering::SeqCst) {
            return Ok(());
        }
        self.sync_filter(&route.filter).await
    }

    /// Removes a route without waiting; the broker-side filter is released in the background.
    pub(crate) fn detach(self: Arc<Self>, route: &Route) {
        route.queue.close();
        if self.inbound.table().remove(route) || self.closed.load(Ordering::SeqCst) {
            return;
        }
        let filter = route.filter.clone();
        let runtime = self.runtime.clone();
        runtime.spawn(async move {
            match self.sync_filter(&filter).await {
                Ok(()) | Err(Error::Closed) => {}
                Err(error) => {
                    tracing::warn!(?filter, %error, "could not remove a native filter after a subscription was dropped")
                }
            }
        });
    }
}

#[async_trait]
impl PubSub for Hub {
    fn backend(&self) -> &'static str {
        self.inner.driver.backend()
    }

    fn max_payload(&self) -> usize {
        self.inner.driver.max_payload()
    }

    async fn publish(&self, message: Message) -> Result<()> {
        let inner = &self.inner;
        if inner.closed.load(Ordering::Relaxed) {
            return Err(Error::Closed);
        }
        let max = inner.driver.max_payload();
        if message.payload().len() > max {
            return Err(Error::PayloadTooLarge {
                size: message.payload().len(),
                max,
            });
        }
        inner.driver.publish(&message).await?;
        inner.published.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn subscribe_with(
        &self,
        pattern: Pattern,
        options: SubscribeOptions,
    ) -> Result<Subscription> {
        let inner = &self.inner;
        if inner.closed.load(Ordering::SeqCst) {
            return Err(Error::Closed);
        }
        let filter = inner.driver.native_filter(&pattern)?;
        let capacity = options.capacity.unwrap_or(inner.config.default_capacity);
        let route = Arc::new(Route {
            id: inner.next_id.fetch_add(1, Ordering::Relaxed),
            pattern,
            filter,
            queue: Queue::new(capacity),
        });
        // Registered before the broker is asked, so nothing the broker sends after confirming
        // can miss the route.
        inner.inbound.table().insert(route.clone());
        if let Err(error) = inner.sync_filter(&route.filter).await {
            if !inner.inbound.table().remove(&route) && !matches!(error, Error::Closed) {
                // Best effort: do not leave a filter behind that nobody wants.
                let _ = inner.sync_filter(&route.filter).await;
            }
            return Err(error);
        }
        Ok(Subscription::new(route, inner.clone()))
    }

    async fn close(&self) -> Result<()> {
        let inner = &self.inner;
        // Wait for filter changes in flight, then refuse new ones.
        let mut active = inner.active.lock().await;
        if inner.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let result = inner.driver.close().await;
        active.clear();
        inner.active_count.store(0, Ordering::Relaxed);
        inner.inbound.table().close();
        result
    }

    fn stats(&self) -> Stats {
        let inner = &self.inner;
        let table = inner.inbound.table();
        Stats {
            subscriptions: table.route_count(),
            native_filters: inner.active_count.load(Ordering::Relaxed),
            published: inner.published.load(Ordering::Relaxed),
            delivered: table.delivered(),
            dropped: table.dropped(),
        }
    }
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub")
            .field("driver", &self.inner.driver)
            .field("closed", &self.inner.closed.load(Ordering::Relaxed))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;
    use std::time::Duration;

    /// A driver that records filter changes, can refuse them, and lets the test inject messages.
    #[derive(Debug, Default)]
    struct Scripted {
        log: Mutex<Vec<String>>,
        refuse_add: AtomicBool,
        inbound: Mutex<Option<Inbound>>,
    }

    #[async_trait]
    impl Driver for Arc<Scripted> {
        fn backend(&self) -> &'static str {
            "scripted"
        }
        fn max_payload(&self) -> usize {
            8
        }
        fn native_filter(&self, pattern: &Pattern) -> Result<NativeFilter> {
            // Like Redis: `>` and `*` both become a broad glob, so `a.*` and `a.>` share one.
            let glob = pattern.as_str().replace('>', "*");
            Ok(if pattern.is_exact() {
                NativeFilter::exact(glob)
            } else {
                NativeFilter::wildcard(glob)
            })
        }
        async fn publish(&self, _m: &Message) -> Result<()> {
            Ok(())
        }
        async fn add_filter(&self, f: &NativeFilter) -> Result<()> {
            if self.refuse_add.load(Ordering::SeqCst) {
                return Err(Error::Timeout("refused".into()));
            }
            self.log.lock().push(format!("+{}", f.name()));
            Ok(())
        }
        async fn remove_filter(&self, f: &NativeFilter) -> Result<()> {
            self.log.lock().push(format!("-{}", f.name()));
            Ok(())
        }
        async fn close(&self) -> Result<()> {
            self.log.lock().push("close".into());
            Ok(())
        }
    }

    async fn hub() -> (Hub, Arc<Scripted>) {
        let s = Arc::new(Scripted::default());
        let s2 = s.clone();
        let hub = Hub::start(HubConfig::default(), |inbound| async move {
            *s2.inbound.lock() = Some(inbound);
            Ok(s2)
        })
        .await
        .unwrap();
        (hub, s)
    }

    fn msg(t: &str) -> Message {
        Message::new(t.parse().unwrap(), "x")
    }

    #[tokio::test]
    async fn native_filters_are_reference_counted() {
        let (hub, s) = hub().await;
        let a = hub.subscribe("a.*".parse().unwrap()).await.unwrap();
        let b = hub.subscribe("a.>".parse().unwrap()).await.unwrap();
        let c = hub.subscribe("a.b".parse().unwrap()).await.unwrap();
        assert_eq!(*s.log.lock(), ["+a.*", "+a.b"]);
        assert_eq!(hub.stats().native_filters, 2);
        a.unsubscribe().await.unwrap();
        assert_eq!(s.log.lock().len(), 2, "a.> still needs the glob");
        b.unsubscribe().await.unwrap();
        assert_eq!(*s.log.lock(), ["+a.*", "+a.b", "-a.*"]);
        drop(c);
        tokio::time::timeout(Duration::from_secs(5), async {
            while hub.stats().native_filters != 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap();
        assert_eq!(s.log.lock().last().unwrap(), "-a.b");
        assert_eq!(hub.stats().subscriptions, 0);
    }

    #[tokio::test]
    async fn overlapping_filters_give_one_copy_each() {
        let (hub, s) = hub().await;
        let mut star = hub.subscribe("a.*".parse().unwrap()).await.unwrap();
        let mut exact = hub.subscribe("a.b".parse().unwrap()).await.unwrap();
        let mut rest = hub.subscribe("a.>".parse().unwrap()).await.unwrap();
        let inbound = s.inbound.lock().clone().unwrap();
        // The broker sends one copy per matching native subscription.
        inbound.deliver_via(&NativeFilter::exact("a.b"), msg("a.b"));
        inbound.deliver_via(&NativeFilter::wildcard("a.*"), msg("a.b"));
        // The glob crosses dots; the exact matcher keeps `a.*` from getting `a.b.c`.
        inbound.deliver_via(&NativeFilter::wildcard("a.*"), msg("a.b.c"));
        hub.close().await.unwrap();
        let topics = |v: Vec<Message>| v.iter().map(|m| m.topic().to_string()).collect::<Vec<_>>();
        use futures::StreamExt;
        assert_eq!(topics((&mut star).collect().await), ["a.b"]);
        assert_eq!(topics((&mut exact).collect().await), ["a.b"]);
        assert_eq!(topics((&mut rest).collect().await), ["a.b", "a.b.c"]);
        assert_eq!(hub.stats().delivered, 4);
    }

    #[tokio::test]
    async fn failed_subscribe_leaves_nothing_behind() {
        let (hub, s) = hub().await;
        s.refuse_add.store(true, Ordering::SeqCst);
        let err = hub.subscribe("x.y".parse().unwrap()).await.unwrap_err();
        assert!(err.is_temporary(), "{err}");
        assert_eq!(hub.stats().subscriptions, 0);
        assert_eq!(hub.stats().native_filters, 0);
        s.refuse_add.store(false, Ordering::SeqCst);
        let _sub = hub.subscribe("x.y".parse().unwrap()).await.unwrap();
        assert_eq!(hub.stats().native_filters, 1);
    }

    #[tokio::test]
    async fn limits_and_close() {
        let (hub, s) = hub().await;
        let err = hub.publish(msg("t").clone()).await;
        assert!(err.is_ok());
        let big = Message::new("t".parse().unwrap(), vec![0u8; 9]);
        match hub.publish(big).await {
            Err(Error::PayloadTooLarge { size: 9, max: 8 }) => {}
            other => panic!("{other:?}"),
        }
        let mut sub = hub.subscribe("t".parse().unwrap()).await.unwrap();
        hub.close().await.unwrap();
        hub.close().await.unwrap();
        assert_eq!(s.log.lock().iter().filter(|l| *l == "close").count(), 1);
        assert!(sub.recv().await.is_none());
        assert_eq!(
            hub.publish(msg("t")).await.unwrap_err().kind(),
            crate::ErrorKind::Closed
        );
        assert_eq!(
            hub.subscribe("t".parse().unwrap())
                .await
                .unwrap_err()
                .kind(),
            crate::ErrorKind::Closed
        );
        assert_eq!(hub.stats().published, 1);
    }
}
