//! Groups on RabbitMQ: one durable quorum queue per group (`x-queue-type: quorum`), bound to
//! the exchange with the group's patterns, consumed by each member on a channel of its own
//! with manual acknowledgements and the member's prefetch.
//!
//! - [`layout`]: the queue's name and arguments (the group's settings among them, which the
//!   broker compares on every declaration), and what a delivery says.
//! - [`join`]: a join, from the lock to the bindings, and the member's queue bound again
//!   after a reconnect.
//! - [`create`]: the broker operations of a join (the lock, the declaration, the bindings),
//!   and the stream's backlog copied into a new group that starts at the stream's start or
//!   after a position.
//! - [`member`]: a member's channel, consumer, held deliveries and timer (the ack deadline
//!   and nacks with a delay are ours: RabbitMQ redelivers only when a channel goes away).

use std::collections::HashMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use parking_lot::Mutex;
use pubsub_core::adapter::{LogRead, ReadFrom};
use pubsub_core::{Result, StreamConfig};

pub(crate) mod create;
pub(crate) mod join;
pub(crate) mod layout;
pub(crate) mod member;

pub(crate) use join::Join;
pub(crate) use member::{Member, Settle};

/// The stream a group reads, as its creation needs it (the driver's streams).
pub(crate) trait StreamLog: Send + Sync + 'static {
    /// Reads at most `limit` entries of `stream`'s log from `from`.
    fn read<'a>(
        &'a self,
        stream: &'a StreamConfig,
        from: ReadFrom,
        limit: usize,
    ) -> BoxFuture<'a, Result<LogRead>>;

    /// The end of `stream`'s log at the broker now (a position offset), probed.
    fn end<'a>(&'a self, stream: &'a StreamConfig) -> BoxFuture<'a, Result<u64>>;
}

/// The group members of this handle, and the joins under way.
#[derive(Debug, Default)]
pub(crate) struct Groups {
    members: Mutex<HashMap<Arc<str>, Arc<Member>>>,
    /// One join (and creation) at a time per group queue on this handle: the broker's lock is
    /// per connection.
    joining: Mutex<HashMap<lapin::types::ShortString, Arc<tokio::sync::Mutex<()>>>>,
}

impl Groups {
    /// The member called `name`, if its channel is open.
    pub(crate) fn open_member(&self, name: &str) -> Option<Arc<Member>> {
        self.members
            .lock()
            .get(name)
            .filter(|member| member.is_open())
            .cloned()
    }

    /// The member called `name`, open or not.
    pub(crate) fn member(&self, name: &str) -> Option<Arc<Member>> {
        self.members.lock().get(name).cloned()
    }

    /// Keeps `member` (replacing an earlier incarnation).
    pub(crate) fn insert(&self, member: Arc<Member>) {
        self.members.lock().insert(member.name.clone(), member);
    }

    /// Forgets the member called `name`.
    pub(crate) fn remove(&self, name: &str) -> Option<Arc<Member>> {
        self.members.lock().remove(name)
    }

    /// Forgets every member (the handle closes).
    pub(crate) fn drain(&self) -> Vec<Arc<Member>> {
        self.members
            .lock()
            .drain()
            .map(|(_, member)| member)
            .collect()
    }

    /// The lock of joins to `queue` on this handle.
    pub(crate) fn join_lock(
        &self,
        queue: &lapin::types::ShortString,
    ) -> Arc<tokio::sync::Mutex<()>> {
        self.joining
            .lock()
            .entry(queue.clone())
            .or_default()
            .clone()
    }
}
