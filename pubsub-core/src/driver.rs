//! [`Driver`]: the broker-specific half of an adapter.
//!
//! An adapter implements [`Driver`] and wraps it in a [`Hub`](crate::Hub), which supplies
//! everything that is not broker-specific: the subscription registry, exact matching, per-
//! subscription bounded queues, reference-counted native filters, payload limits and `close`.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use crate::{Message, Pattern, Result};

/// What the broker is asked to deliver to this handle: a channel, subject, binding key, etc.
///
/// A driver maps each [`Pattern`] to one `NativeFilter` with [`Driver::native_filter`]. Patterns
/// that map to the same filter share it: the hub adds it at the broker for the first local
/// subscription and removes it after the last one leaves. A filter only has to select a superset
/// of its patterns' topics; the hub's exact matcher decides delivery.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NativeFilter {
    name: Arc<str>,
    wildcard: bool,
}

impl NativeFilter {
    /// A filter naming one topic exactly (Redis `SUBSCRIBE`, a Kafka topic name).
    pub fn exact(name: impl Into<Arc<str>>) -> Self {
        NativeFilter {
            name: name.into(),
            wildcard: false,
        }
    }

    /// A filter with broker-side wildcards (Redis `PSUBSCRIBE`, a NATS `*`/`>` subject).
    pub fn wildcard(name: impl Into<Arc<str>>) -> Self {
        NativeFilter {
            name: name.into(),
            wildcard: true,
        }
    }

    /// The broker-side name (already translated to the broker's syntax).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the name uses broker-side wildcards.
    pub fn is_wildcard(&self) -> bool {
        self.wildcard
    }
}

impl fmt::Debug for NativeFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.wildcard { "wildcard" } else { "exact" };
        write!(f, "NativeFilter({kind} {:?})", &*self.name)
    }
}

/// The broker-specific operations of an adapter.
///
/// A driver receives an [`Inbound`](crate::Inbound) when it is built and hands every message it
/// receives from the broker to it, either with [`Inbound::deliver_via`](crate::Inbound::deliver_via)
/// (when the broker says which native filter matched: Redis, NATS) or
/// [`Inbound::deliver`](crate::Inbound::deliver) (one copy per handle: AMQP, Kafka, memory).
#[async_trait]
pub trait Driver: Send + Sync + fmt::Debug + 'static {
    /// Short backend name, such as `"redis"`.
    fn backend(&self) -> &'static str;

    /// Largest payload this driver accepts, in bytes. The hub rejects larger messages before
    /// calling [`Driver::publish`].
    fn max_payload(&self) -> usize;

    /// The native filter that serves `pattern` on this broker.
    fn native_filter(&self, pattern: &Pattern) -> Result<NativeFilter>;

    /// Sends one message; resolves once the broker accepted it (see DESIGN.md section 5).
    async fn publish(&self, message: &Message) -> Result<()>;

    /// Asks the broker to deliver what `filter` selects; resolves once the broker confirmed.
    async fn add_filter(&self, filter: &NativeFilter) -> Result<()>;

    /// Stops what `filter` selects; resolves once the broker confirmed.
    async fn remove_filter(&self, filter: &NativeFilter) -> Result<()>;

    /// Flushes, disconnects and stops every task of the driver. Called once, by the hub.
    async fn close(&self) -> Result<()>;
}
