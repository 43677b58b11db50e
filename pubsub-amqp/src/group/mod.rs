//! Groups on RabbitMQ: one durable quorum queue per group (`x-queue-type: quorum`), bound to
//! the exchange with the group's patterns, consumed by each member on a channel of its own
//! with manual acknowledgements and the member's prefetch.
//!
//! - [`layout`]: the queue's name and arguments (the group's settings among them, which the
//!   broker compares on every declaration), and what a delivery says.
//! - [`create`]: creating the queue (under a lock) or joining the one there; a group that
//!   starts at the stream's start or after a position gets the stream's backlog copied in.
//! - [`member`]: a member's channel, consumer, held deliveries and timer (the ack deadline
//!   and nacks with a delay are ours: RabbitMQ redelivers only when a channel goes away).

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

pub(crate) mod create;
pub(crate) mod layout;
pub(crate) mod member;

pub(crate) use member::{Member, Settle};

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
