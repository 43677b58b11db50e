//! [`Inbound`]: the router as a driver sees it, where received messages are handed in.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use super::Router;
use crate::{EndReason, Message, Topic};

/// Where a driver hands the messages it receives from the broker.
///
/// Cheap to clone. Delivery never blocks: each subscription's buffer drops its oldest message
/// when full, so a slow subscription never slows the connection.
pub struct Inbound<F> {
    router: Arc<Router<F>>,
}

impl<F> Inbound<F> {
    /// The inbound side of `router`.
    pub(crate) fn new(router: Arc<Router<F>>) -> Self {
        Inbound { router }
    }
}

impl<F> Clone for Inbound<F> {
    fn clone(&self) -> Self {
        Inbound {
            router: self.router.clone(),
        }
    }
}

impl<F> fmt::Debug for Inbound<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inbound").finish_non_exhaustive()
    }
}

impl<F: Clone + Eq + Hash> Inbound<F> {
    /// Delivers one copy of `message` to every local subscription whose pattern matches.
    ///
    /// For brokers that deliver each message once per handle (one queue or consumer per
    /// handle: AMQP, Kafka, memory).
    pub fn deliver(&self, message: Message) {
        self.router.deliver(None, message);
    }

    /// Delivers `message`, which arrived through the native `filter`, to the local
    /// subscriptions of that filter whose pattern matches.
    ///
    /// For brokers that send one copy per matching native subscription (Redis, NATS): each
    /// local subscription still gets exactly one copy, however the filters overlap. A message
    /// through a filter the handle does not (or no longer) has is dropped.
    pub fn deliver_via(&self, filter: &F, message: Message) {
        self.router.deliver_via(filter, message);
    }

    /// Reports `count` messages lost before they reached the router, to topics unknown (a
    /// client library's channel that lagged): every subscription gets a
    /// [`Gap::Dropped`](crate::Gap::Dropped) of `count` in its stream (at most that many were
    /// its own), and they show in [`Stats::dropped`](crate::Stats::dropped).
    pub fn record_lost(&self, count: u64) {
        self.router.lost_anywhere(count);
    }

    /// Reports that the broker dropped `count` messages published to `topic` (a bounded
    /// queue that overflowed, where the broker says so): every subscription matching it gets
    /// a [`Gap::Dropped`](crate::Gap::Dropped) in its stream and counts them.
    pub fn lost(&self, topic: &Topic, count: u64) {
        self.router.lost(topic.as_str(), count);
    }

    /// Reports that the broker refused or withdrew the native `filter` after it was live or
    /// while it was restored (a permission revoked): every subscription that needs it ends,
    /// after what it has buffered, with [`EndReason::Refused`](crate::EndReason::Refused),
    /// instead of staying open and silent. A refusal of a filter still being added is the
    /// error of [`Driver::add_filters`](crate::adapter::Driver::add_filters) as well; ending its routes then is harmless.
    pub fn refused(&self, filter: &F) {
        self.router.end_filter(filter, EndReason::Refused);
    }

    /// True once the handle was closed or dropped.
    pub fn is_closed(&self) -> bool {
        self.router.is_closed()
    }
}
