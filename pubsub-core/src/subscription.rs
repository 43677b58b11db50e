//! [`Subscription`]: a stream of the messages matching one pattern.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;

use crate::hub::Owner;
use crate::router::Route;
use crate::{Message, Pattern, Result};

/// The messages matching one pattern, as a [`Stream`].
///
/// Dropping it unsubscribes (the broker-side filter is removed in the background when no other
/// subscription needs it); [`Subscription::unsubscribe`] does the same and waits for the broker.
/// The stream ends (`None`) after the handle is closed and the buffer is drained.
///
/// Each subscription has a bounded buffer. When it is full the oldest message is dropped and
/// counted in [`Subscription::dropped`]; a slow subscription never slows the others.
pub struct Subscription {
    route: Arc<Route>,
    hub: Option<Arc<dyn Owner>>,
}

impl Subscription {
    pub(crate) fn new(route: Arc<Route>, hub: Arc<dyn Owner>) -> Self {
        Subscription {
            route,
            hub: Some(hub),
        }
    }

    /// The pattern this subscription listens to.
    pub fn pattern(&self) -> &Pattern {
        &self.route.pattern
    }

    /// Messages dropped so far because the buffer was full.
    pub fn dropped(&self) -> u64 {
        self.route.queue.dropped()
    }

    /// Messages waiting in the buffer.
    pub fn len(&self) -> usize {
        self.route.queue.len()
    }

    /// Whether no message is waiting in the buffer.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The next message, or `None` once the stream has ended.
    pub async fn recv(&mut self) -> Option<Message> {
        futures::StreamExt::next(self).await
    }

    /// Stops delivery now and waits until the broker-side filter is removed (if this was the
    /// last subscription needing it).
    pub async fn unsubscribe(mut self) -> Result<()> {
        match self.hub.take() {
            Some(hub) => hub.unsubscribe(&self.route).await,
            None => Ok(()),
        }
    }
}

impl Stream for Subscription {
    type Item = Message;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        self.route.queue.poll_pop(cx)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(hub) = self.hub.take() {
            hub.detach(&self.route);
        }
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("pattern", &self.route.pattern)
            .field("dropped", &self.dropped())
            .finish()
    }
}
