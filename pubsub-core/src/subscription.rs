//! [`Subscription`]: a stream of the messages matching one or several patterns.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use futures::Stream;
use smallvec::SmallVec;

use crate::delivery::{Delivery, EndReason};
use crate::router::{Queue, Route};
use crate::{Message, Pattern, Result};

/// What a [`Subscription`] needs of its handle to leave (the hub implements it).
pub(crate) trait Owner: Send + Sync {
    /// Removes the routes now; broker-side filters are released in the background.
    fn detach(&self, routes: &[Arc<Route>]);
    /// Removes the routes and waits until the broker released the filters no other route
    /// needs.
    fn unsubscribe<'a>(&'a self, routes: &'a [Arc<Route>]) -> BoxFuture<'a, Result<()>>;
}

/// The messages matching one or several patterns, as a [`Stream`].
///
/// Dropping it unsubscribes (the broker-side filter is removed in the background when no other
/// subscription needs it); [`Subscription::unsubscribe`] does the same and waits for the broker.
/// The stream ends (`None`) after the handle is closed and the buffer is drained, or when the
/// overflow policy [`Overflow::Close`](crate::Overflow::Close) ended it
/// ([`Subscription::end_reason`] says which).
///
/// Each subscription has a bounded buffer and an overflow policy; a slow subscription never
/// slows the others. Read as a plain stream, lost messages are only counted
/// ([`Subscription::dropped`]); read with [`Subscription::deliveries`], a [`Gap`](crate::Gap)
/// stands where they were lost (an overflow with its exact count, or a connection outage).
pub struct Subscription {
    queue: Arc<Queue>,
    routes: SmallVec<[Arc<Route>; 1]>,
    hub: Option<Arc<dyn Owner>>,
}

impl Subscription {
    pub(crate) fn new(
        queue: Arc<Queue>,
        routes: SmallVec<[Arc<Route>; 1]>,
        hub: Arc<dyn Owner>,
    ) -> Self {
        Subscription {
            queue,
            routes,
            hub: Some(hub),
        }
    }

    /// The routes of this subscription (a stream subscription shares its live one's).
    pub(crate) fn routes(&self) -> &[Arc<Route>] {
        &self.routes
    }

    /// The next delivery if one is waiting (a stream follower drains its live subscription
    /// in one go).
    pub(crate) fn try_delivery(&mut self) -> Option<Delivery> {
        self.queue.try_pop()
    }

    /// The (first) pattern this subscription listens to.
    pub fn pattern(&self) -> &Pattern {
        &self.routes[0].pattern
    }

    /// Every pattern this subscription listens to.
    pub fn patterns(&self) -> impl Iterator<Item = &Pattern> {
        self.routes.iter().map(|r| &r.pattern)
    }

    /// Messages dropped so far by the overflow policy.
    pub fn dropped(&self) -> u64 {
        self.queue.dropped()
    }

    /// Messages waiting in the buffer.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether no message is waiting in the buffer.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Why the stream ended (or will end once drained), if it did.
    pub fn end_reason(&self) -> Option<EndReason> {
        self.queue.end_reason()
    }

    /// The next message, or `None` once the stream has ended. Gaps are skipped (counted in
    /// [`Subscription::dropped`]).
    pub async fn recv(&mut self) -> Option<Message> {
        futures::StreamExt::next(self).await
    }

    /// The next delivery: a message, or a gap where messages were lost; `None` once ended.
    pub async fn recv_delivery(&mut self) -> Option<Delivery> {
        std::future::poll_fn(|cx| self.queue.poll_pop(cx)).await
    }

    /// This subscription as a stream of [`Delivery`]: messages, and gaps where messages were
    /// lost.
    ///
    /// ```
    /// # async fn demo() -> pubsub_core::Result<()> {
    /// use futures::StreamExt;
    /// use pubsub_core::{memory::MemoryBus, Delivery, Gap, Message, SubscribeOptions};
    /// let ps = MemoryBus::new().connect().await?;
    /// let sub = ps
    ///     .subscribe_with("t".parse()?, SubscribeOptions::default().with_capacity(2))
    ///     .await?;
    /// for i in 0..5u8 {
    ///     ps.publish(Message::new("t".parse()?, vec![i])).await?;
    /// }
    /// let mut deliveries = sub.deliveries();
    /// assert_eq!(
    ///     deliveries.next().await,
    ///     Some(Delivery::Gap(Gap::Dropped { count: 3 }))
    /// );
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
    /// ```
    pub fn deliveries(self) -> Deliveries {
        Deliveries(self)
    }

    /// Stops delivery now and waits until the broker-side filters are removed (those no other
    /// subscription needs).
    pub async fn unsubscribe(mut self) -> Result<()> {
        self.queue.close(EndReason::Unsubscribed);
        match self.hub.take() {
            Some(hub) => hub.unsubscribe(&self.routes).await,
            None => Ok(()),
        }
    }
}

impl Stream for Subscription {
    type Item = Message;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        loop {
            match self.queue.poll_pop(cx) {
                Poll::Ready(Some(Delivery::Message(m))) => return Poll::Ready(Some(m)),
                Poll::Ready(Some(Delivery::Gap(_))) => continue,
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(hub) = self.hub.take() {
            self.queue.close(EndReason::Unsubscribed);
            hub.detach(&self.routes);
        }
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("patterns", &self.patterns().collect::<Vec<_>>())
            .field("dropped", &self.dropped())
            .finish()
    }
}

/// A [`Subscription`] read as a stream of [`Delivery`] (see [`Subscription::deliveries`]).
#[derive(Debug)]
pub struct Deliveries(Subscription);

impl Deliveries {
    /// The subscription, to read plain messages again or unsubscribe.
    pub fn into_inner(self) -> Subscription {
        self.0
    }

    /// The subscription, for its counters.
    pub fn subscription(&self) -> &Subscription {
        &self.0
    }
}

impl Stream for Deliveries {
    type Item = Delivery;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Delivery>> {
        self.0.queue.poll_pop(cx)
    }
}
