//! The router: which local subscriptions exist, and which of them a message goes to.
//!
//! Drivers hand inbound messages to an [`Inbound`]; the hub registers and removes subscriptions.

mod queue;
mod trie;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;
use smallvec::SmallVec;

pub(crate) use queue::Queue;
pub use trie::Trie as PatternTrie;

use crate::{Message, NativeFilter, Pattern};

/// One local subscription as the router sees it.
#[derive(Debug)]
pub(crate) struct Route {
    pub(crate) id: u64,
    pub(crate) pattern: Pattern,
    pub(crate) filter: NativeFilter,
    pub(crate) queue: Queue,
}

#[derive(Debug, Default)]
struct Routes {
    /// Every route, by pattern: used by [`Inbound::deliver`].
    trie: trie::Trie<Arc<Route>>,
    /// Routes by native filter: used by [`Inbound::deliver_via`] and for reference counts.
    by_filter: HashMap<NativeFilter, Vec<Arc<Route>>>,
}

#[derive(Debug, Default)]
pub(crate) struct Table {
    routes: RwLock<Routes>,
    closed: AtomicBool,
    delivered: AtomicU64,
    dropped: AtomicU64,
}

impl Table {
    pub(crate) fn insert(&self, route: Arc<Route>) {
        let mut r = self.routes.write();
        r.trie.insert(&route.pattern, route.clone());
        r.by_filter
            .entry(route.filter.clone())
            .or_default()
            .push(route);
    }

    /// Removes a route; returns whether its native filter is still wanted by another route.
    pub(crate) fn remove(&self, route: &Route) -> bool {
        let mut r = self.routes.write();
        r.trie.remove(&route.pattern, |x| x.id == route.id);
        match r.by_filter.get_mut(&route.filter) {
            Some(list) => {
                list.retain(|x| x.id != route.id);
                if list.is_empty() {
                    r.by_filter.remove(&route.filter);
                    false
                } else {
                    true
                }
            }
            None => false,
        }
    }

    pub(crate) fn wants(&self, filter: &NativeFilter) -> bool {
        self.routes.read().by_filter.contains_key(filter)
    }

    pub(crate) fn wanted_filters(&self) -> Vec<NativeFilter> {
        self.routes.read().by_filter.keys().cloned().collect()
    }

    pub(crate) fn route_count(&self) -> usize {
        self.routes.read().trie.len()
    }

    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let r = self.routes.read();
        for list in r.by_filter.values() {
            for route in list {
                route.queue.close();
            }
        }
    }

    pub(crate) fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Hands `message` to the routes chosen for it. They are counted as delivered before the
    /// first push, so whoever receives the message also sees it in
    /// [`Stats::delivered`](crate::Stats::delivered); both counters are updated once per message.
    fn push_all(&self, routes: &[&Arc<Route>], message: Message) {
        if routes.is_empty() {
            return;
        }
        self.delivered
            .fetch_add(routes.len() as u64, Ordering::Relaxed);
        let dropped = routes
            .iter()
            .filter(|route| route.queue.push(message.clone()))
            .count();
        if dropped > 0 {
            self.dropped.fetch_add(dropped as u64, Ordering::Relaxed);
        }
    }

    fn record_lost(&self, count: u64) {
        self.dropped.fetch_add(count, Ordering::Relaxed);
    }
}

/// The routes one message goes to (inline for typical fan-outs).
type Chosen<'a> = SmallVec<[&'a Arc<Route>; 32]>;

/// Where a driver hands the messages it receives from the broker.
///
/// Cheap to clone. Delivery never blocks: each subscription's buffer drops its oldest message
/// when full, so a slow subscription never slows the connection.
#[derive(Debug, Clone, Default)]
pub struct Inbound {
    table: Arc<Table>,
}

impl Inbound {
    /// A fresh router with no subscriptions; pass it to the driver and to [`Hub::start`](crate::Hub::start).
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn table(&self) -> &Arc<Table> {
        &self.table
    }

    /// Delivers one copy of `message` to every local subscription whose pattern matches.
    ///
    /// For brokers that deliver each message once per handle (one queue, one consumer).
    pub fn deliver(&self, message: Message) {
        if self.table.closed.load(Ordering::Relaxed) {
            return;
        }
        let r = self.table.routes.read();
        let mut chosen: Chosen<'_> = SmallVec::new();
        r.trie
            .for_each_match(message.topic().as_str(), |route| chosen.push(route));
        self.table.push_all(&chosen, message);
    }

    /// Delivers `message`, which arrived through the native `filter`, to the local subscriptions
    /// served by that filter whose pattern matches.
    ///
    /// For brokers that deliver one copy per matching native subscription (Redis, NATS): each
    /// local subscription then still gets exactly one copy, however its filters overlap.
    pub fn deliver_via(&self, filter: &NativeFilter, message: Message) {
        if self.table.closed.load(Ordering::Relaxed) {
            return;
        }
        let r = self.table.routes.read();
        if let Some(list) = r.by_filter.get(filter) {
            let chosen: Chosen<'_> = list
                .iter()
                .filter(|route| route.pattern.matches(message.topic()))
                .collect();
            self.table.push_all(&chosen, message);
        }
    }

    /// Counts messages the driver lost before they reached the router (for example a client
    /// library's internal channel lagging); they show in [`Stats::dropped`](crate::Stats::dropped).
    pub fn record_lost(&self, count: u64) {
        self.table.record_lost(count);
    }

    /// The native filters local subscriptions currently need, for a driver that must restore
    /// them itself after reconnecting.
    pub fn wanted_filters(&self) -> Vec<NativeFilter> {
        self.table.wanted_filters()
    }

    /// True once the hub was closed.
    pub fn is_closed(&self) -> bool {
        self.table.closed.load(Ordering::Relaxed)
    }
}
