//! The router: which local subscriptions exist, which native filters they need, and which of
//! them a message goes to.
//!
//! One [`Router`] per handle holds, under one short-lived lock that is never held across I/O:
//! - a token trie of the routes (local subscriptions), so that routing a message costs its
//!   topic's depth, not the number of subscriptions;
//! - one [`Slot`] per native filter: how many routes need it and what the broker has (the
//!   desired state the reconciler works from).
//!
//! Drivers see it through [`Inbound`].

mod inbound;
mod queue;
mod trie;

use std::collections::HashMap;

use foldhash::fast::RandomState;
use indexmap::IndexMap;
use rustc_hash::FxBuildHasher;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use indexmap::map::Slice;
use parking_lot::RwLock;
use smallvec::SmallVec;
use tokio::sync::futures::OwnedNotified;
use tokio::sync::Notify;
use tokio::time::Instant;

pub use inbound::Inbound;
pub(crate) use queue::Queue;
pub use trie::Trie as PatternTrie;

use crate::adapter::driver::FiltersInUse;
use crate::delivery::EndReason;
use crate::{Error, Message, Pattern};

/// One pattern of a local subscription, as the router sees it. A subscription to several
/// patterns has one route per pattern, all sharing its queue.
#[derive(Debug)]
pub(crate) struct Route {
    pub(crate) id: u64,
    pub(crate) pattern: Pattern,
    /// The id of its native filter's [`Slot`].
    pub(crate) filter: u64,
    pub(crate) queue: Arc<Queue>,
    /// The queue has other routes too (a multi-pattern subscription).
    pub(crate) shared: bool,
    /// Skip messages this handle published (they carry its origin header).
    pub(crate) skip_own: bool,
}

/// The header a handle stamps on what it publishes while one of its subscriptions skips its
/// own messages.
pub const ORIGIN_HEADER: &str = "pubsub-origin";

/// What the broker has of a native filter, as far as the handle knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Presence {
    Absent,
    Present,
    /// An add or remove failed: it may or may not be there.
    Unknown,
}

/// One native filter: who needs it and what the broker has.
#[derive(Debug)]
pub(crate) struct Slot {
    pub(crate) id: u64,
    /// Routes that need it.
    pub(crate) refs: usize,
    pub(crate) presence: Presence,
    /// A change of it is under way at the broker.
    pub(crate) busy: bool,
    /// The broker tests it against every message ([`Driver::is_wildcard`](crate::adapter::Driver::is_wildcard)).
    pub(crate) wildcard: bool,
    /// It is in [`Routes::dirty`].
    pub(crate) queued: bool,
    /// Failed attempts in a row, and when to try again.
    pub(crate) failures: u32,
    pub(crate) retry_at: Option<Instant>,
    /// Completed add attempts, and the error of the last one that failed.
    pub(crate) attempts: u64,
    pub(crate) last_error: Option<Error>,
    /// The routes that need it, by id: where a message that came through it may go.
    routes: IndexMap<u64, Arc<Route>, FxBuildHasher>,
    /// How many of them share their queue or skip their own messages (a message through this
    /// filter then needs every matching route of the handle to decide; see
    /// [`Router::deliver_via`]).
    special: usize,
    /// Wakes whoever waits for this slot to settle ([`Slot::changed`]): only they, so that
    /// many subscribes waiting at once cost each one wake-up, not one per broker change.
    changed: Arc<Notify>,
}

impl Slot {
    fn new(id: u64, wildcard: bool) -> Self {
        Slot {
            id,
            refs: 0,
            presence: Presence::Absent,
            busy: false,
            wildcard,
            queued: false,
            failures: 0,
            retry_at: None,
            attempts: 0,
            last_error: None,
            routes: IndexMap::default(),
            special: 0,
            changed: Arc::default(),
        }
    }

    /// Tells whoever waits on this slot that its state changed.
    pub(crate) fn changed(&self) {
        self.changed.notify_waiters();
    }

    /// Whether subscriptions of this filter receive what the broker sends.
    pub(crate) fn is_live(&self) -> bool {
        self.presence == Presence::Present && !self.busy
    }

    /// Whether nothing is left to do for it.
    pub(crate) fn is_settled(&self) -> bool {
        self.refs == 0 && self.presence == Presence::Absent && !self.busy
    }
}

#[derive(Debug)]
pub(crate) struct Routes<F> {
    trie: trie::Trie<Arc<Route>>,
    pub(crate) filters: HashMap<F, Slot, RandomState>,
    /// The filter of each slot id.
    pub(crate) by_id: HashMap<u64, F, RandomState>,
    /// Filters whose slot the reconciler should look at: the ones whose wanted or broker
    /// state may have changed. Its work is proportional to this list, not to all filters.
    pub(crate) dirty: Vec<F>,
    /// Slots whose filter is present or may be present at the broker.
    pub(crate) active: usize,
    /// Wildcard filters that routes need.
    wildcards: usize,
    next_filter: u64,
    /// Since when the handle is down, if it is.
    outage: Option<SystemTime>,
    /// Routes that need more than a match to be chosen (of a multi-pattern subscription, or
    /// skipping this handle's own messages); while there are none, delivery takes every
    /// matching route in one pass.
    special: usize,
}

impl<F: Clone> Routes<F> {
    /// Queues `filter`'s slot for the reconciler (once).
    pub(crate) fn mark(dirty: &mut Vec<F>, filter: &F, slot: &mut Slot) {
        if !slot.queued {
            slot.queued = true;
            dirty.push(filter.clone());
        }
    }
}

impl<F: Eq + Hash> FiltersInUse<F> for Routes<F> {
    fn contains(&self, filter: &F) -> bool {
        self.filters.get(filter).is_some_and(|slot| slot.refs > 0)
    }

    fn wildcards(&self) -> usize {
        self.wildcards
    }
}

impl<F> Default for Routes<F> {
    fn default() -> Self {
        Routes {
            trie: trie::Trie::default(),
            filters: HashMap::default(),
            by_id: HashMap::default(),
            dirty: Vec::new(),
            active: 0,
            wildcards: 0,
            next_filter: 0,
            outage: None,
            special: 0,
        }
    }
}

/// The routes and filter slots of one handle, and its delivery counters.
#[derive(Debug)]
pub(crate) struct Router<F> {
    pub(crate) routes: RwLock<Routes<F>>,
    closed: AtomicBool,
    delivered: AtomicU64,
    dropped: AtomicU64,
    /// Routes that skip this handle's own messages.
    skip_own: AtomicUsize,
    /// This handle's origin (random), for [`ORIGIN_HEADER`].
    origin: Box<str>,
    /// A message through a native filter matches every route of that filter (the driver's
    /// [`Driver::FILTER_IS_PATTERN`](crate::adapter::Driver::FILTER_IS_PATTERN)).
    filter_is_pattern: bool,
}

impl<F> Default for Router<F> {
    fn default() -> Self {
        Router::new(false)
    }
}

impl<F> Router<F> {
    /// A router; with `filter_is_pattern`, what comes through a native filter is not matched
    /// against its routes' patterns again.
    pub(crate) fn new(filter_is_pattern: bool) -> Self {
        Router {
            routes: RwLock::new(Routes::default()),
            closed: AtomicBool::new(false),
            delivered: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            skip_own: AtomicUsize::new(0),
            origin: format!("{:016x}", rand::random::<u64>()).into(),
            filter_is_pattern,
        }
    }
}

/// What [`Router::insert`] registers.
pub(crate) struct NewRoute<F> {
    pub(crate) id: u64,
    pub(crate) pattern: Pattern,
    pub(crate) filter: F,
    pub(crate) queue: Arc<Queue>,
    pub(crate) shared: bool,
    pub(crate) skip_own: bool,
    /// The filter is a wildcard ([`Driver::is_wildcard`](crate::adapter::Driver::is_wildcard)).
    pub(crate) wildcard: bool,
}

/// Up to this many routes on one filter, [`Router::deliver_via`] tests each route's pattern;
/// beyond, it walks the trie (whose cost does not grow with the routes).
const SCAN_ROUTES: usize = 16;

/// The routes one message goes to (inline for typical fan-outs).
type Chosen<'a> = SmallVec<[&'a Arc<Route>; 16]>;

impl<F: Eq + Hash + Clone> Router<F> {
    /// Registers a route needing `filter`; returns the route, and whether the filter is live
    /// at the broker already.
    pub(crate) fn insert(&self, route: NewRoute<F>) -> (Arc<Route>, bool) {
        let NewRoute {
            id,
            pattern,
            filter,
            queue,
            shared,
            skip_own,
            wildcard,
        } = route;
        let mut r = self.routes.write();
        let Routes {
            trie,
            filters,
            by_id,
            dirty,
            wildcards,
            next_filter,
            outage,
            special,
            ..
        } = &mut *r;
        *special += usize::from(shared || skip_own);
        if let Some(since) = *outage {
            queue.outage_began(since);
        }
        let slot = filters.entry(filter.clone()).or_insert_with(|| {
            *next_filter += 1;
            by_id.insert(*next_filter, filter.clone());
            Slot::new(*next_filter, wildcard)
        });
        if slot.refs == 0 && slot.wildcard {
            *wildcards += 1;
        }
        slot.refs += 1;
        // An unsubscribe waiting for the filter to go is done: it stays.
        slot.changed();
        let live = slot.is_live();
        if !live {
            Routes::mark(dirty, &filter, slot);
        }
        let route = Arc::new(Route {
            id,
            pattern,
            filter: slot.id,
            queue,
            shared,
            skip_own,
        });
        trie.insert(&route.pattern, id, route.clone());
        slot.routes.insert(id, route.clone());
        slot.special += usize::from(shared || skip_own);
        if skip_own {
            self.skip_own.fetch_add(1, Ordering::Relaxed);
        }
        (route, live)
    }

    /// Removes a route; returns the filter it needed when no other route needs it any more.
    pub(crate) fn remove(&self, route: &Route) -> Option<F> {
        let mut r = self.routes.write();
        r.trie.remove(&route.pattern, route.id)?;
        r.special -= usize::from(route.shared || route.skip_own);
        if route.skip_own {
            self.skip_own.fetch_sub(1, Ordering::Relaxed);
        }
        let filter = r.by_id.get(&route.filter)?.clone();
        let Routes {
            filters,
            dirty,
            wildcards,
            ..
        } = &mut *r;
        let slot = filters.get_mut(&filter)?;
        slot.routes.swap_remove(&route.id);
        slot.special -= usize::from(route.shared || route.skip_own);
        slot.refs -= 1;
        if slot.refs > 0 {
            return None;
        }
        if slot.wildcard {
            *wildcards -= 1;
        }
        Routes::mark(dirty, &filter, slot);
        Some(filter)
    }

    /// Applies `f` to the slot of `filter`, if there is one.
    pub(crate) fn with_slot<T>(&self, filter: &F, f: impl FnOnce(&Slot) -> T) -> Option<T> {
        self.routes.read().filters.get(filter).map(f)
    }

    /// Runs `plan` with a view of the filters routes need now (for
    /// [`Driver::plan_filter`](crate::adapter::Driver::plan_filter)).
    pub(crate) fn plan<T>(&self, plan: impl FnOnce(&dyn FiltersInUse<F>) -> T) -> T {
        plan(&*self.routes.read())
    }

    /// Like [`Router::with_slot`], also returning a future that resolves on the slot's next
    /// change after this look (see [`Slot::changed`]).
    pub(crate) fn watch_slot<T>(
        &self,
        filter: &F,
        f: impl FnOnce(&Slot) -> T,
    ) -> Option<(T, OwnedNotified)> {
        let r = self.routes.read();
        let slot = r.filters.get(filter)?;
        // Made under the lock that every change is made under: no change slips between.
        Some((f(slot), slot.changed.clone().notified_owned()))
    }

    pub(crate) fn route_count(&self) -> usize {
        self.routes.read().trie.len()
    }

    /// Native filters present (or possibly present) at the broker.
    pub(crate) fn active_filters(&self) -> usize {
        self.routes.read().active
    }

    /// Ends every route's stream (after what is buffered) and stops delivery.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.end_all(EndReason::Closed);
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    pub(crate) fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Counts `count` messages lost before routing, to topics unknown: every subscription
    /// gets a [`Gap::Dropped`](crate::Gap::Dropped) of `count` (at most that many were its
    /// own), so the loss is never silent.
    pub(crate) fn lost_anywhere(&self, count: u64) {
        let r = self.routes.read();
        let mut seen: Vec<&Arc<Queue>> = Vec::new();
        r.trie.for_each(|route| {
            if route.shared {
                if seen.iter().any(|q| Arc::ptr_eq(q, &route.queue)) {
                    return;
                }
                seen.push(&route.queue);
            }
            route.queue.push_lost(count);
        });
        drop(r);
        self.dropped.fetch_add(count, Ordering::Relaxed);
    }

    /// Delivers one copy to every route whose pattern matches; with `via`, only to routes of
    /// that native filter (for brokers that send one copy per matching native filter).
    pub(crate) fn deliver(&self, via: Option<&F>, message: Message) {
        if self.is_closed() {
            return;
        }
        let r = self.routes.read();
        let only = match via {
            Some(filter) => match r.filters.get(filter) {
                Some(slot) => Some(slot.id),
                None => return,
            },
            None => None,
        };
        if r.special == 0 {
            // Every matching route takes the message: no list of them to build.
            let mut groups: SmallVec<[&Slice<u64, Arc<Route>>; 8]> = SmallVec::new();
            r.trie
                .for_each_match_group(message.topic().as_str(), |group| groups.push(group));
            let routes = || groups.iter().flat_map(|group| group.values());
            match only {
                None => {
                    let count = groups.iter().map(|group| group.len()).sum();
                    self.push_each(count, routes(), message);
                }
                Some(id) => {
                    let of_filter = |route: &&Arc<Route>| route.filter == id;
                    let count = routes().filter(of_filter).count();
                    self.push_each(count, routes().filter(of_filter), message);
                }
            }
            return;
        }
        let mut chosen: Chosen<'_> = SmallVec::new();
        let mut special = false;
        r.trie.for_each_match(message.topic().as_str(), |route| {
            special |= route.shared || route.skip_own;
            chosen.push(route);
        });
        if special {
            self.single_out(&mut chosen, &message);
        }
        if let Some(id) = only {
            chosen.retain(|route| route.filter == id);
        }
        self.push_each(chosen.len(), chosen.iter().copied(), message);
    }

    /// Delivers `message`, which came through the native `filter`, to that filter's routes
    /// whose pattern matches: the slot's own route list, no walk of the trie (a broker that
    /// sends one copy per matching filter would otherwise walk it once per copy). A route
    /// that shares its queue or skips its own messages needs the handle's other matching
    /// routes to decide, so a filter with one takes [`Router::deliver`]'s path.
    pub(crate) fn deliver_via(&self, filter: &F, message: Message) {
        if self.is_closed() {
            return;
        }
        let r = self.routes.read();
        let Some(slot) = r.filters.get(filter) else {
            return;
        };
        if slot.special > 0 {
            drop(r);
            return self.deliver(Some(filter), message);
        }
        if self.filter_is_pattern {
            return self.push_each(slot.routes.len(), slot.routes.values(), message);
        }
        if slot.routes.len() > SCAN_ROUTES {
            // Many subscriptions share this filter (thousands of patterns under one Redis
            // glob): the trie finds the matching ones without testing every pattern.
            drop(r);
            return self.deliver(Some(filter), message);
        }
        let topic = message.topic().as_str();
        let mut chosen: Chosen<'_> = SmallVec::new();
        // Routes of one filter usually share their pattern: match it once.
        let mut last: Option<(&Pattern, bool)> = None;
        for route in slot.routes.values() {
            let hit = match last {
                Some((pattern, hit)) if *pattern == route.pattern => hit,
                _ => {
                    let hit = route.pattern.matches_str(topic);
                    last = Some((&route.pattern, hit));
                    hit
                }
            };
            if hit {
                chosen.push(route);
            }
        }
        self.push_each(chosen.len(), chosen.iter().copied(), message);
    }

    /// Among the matching routes: a subscription to several patterns takes the message once,
    /// through its matching route with the smallest id (so also once per copy when the broker
    /// sends one copy per filter); a subscription that skips its own messages does.
    fn single_out(&self, chosen: &mut Chosen<'_>, message: &Message) {
        let own = message
            .headers()
            .get(ORIGIN_HEADER)
            .is_some_and(|origin| origin == &*self.origin);
        let matching = chosen.clone();
        chosen.retain(|route| {
            if route.skip_own && own {
                return false;
            }
            !route.shared
                || !matching
                    .iter()
                    .any(|o| o.id < route.id && Arc::ptr_eq(&o.queue, &route.queue))
        });
    }

    /// Ends every route's stream (after what is buffered) with `reason`.
    pub(crate) fn end_all(&self, reason: EndReason) {
        self.routes
            .read()
            .trie
            .for_each(|route| route.queue.close(reason));
    }

    /// Ends (after what is buffered) the stream of every route that needs `filter`, which the
    /// broker no longer has: the filter counts as unknown at the broker, so a new subscription
    /// needing it adds it again (and gets the broker's verdict) instead of trusting it, and a
    /// reconnect does not restore it. It is removed when the ended routes are dropped.
    pub(crate) fn end_filter(&self, filter: &F, reason: EndReason) {
        let mut r = self.routes.write();
        if let Some(slot) = r.filters.get_mut(filter) {
            for route in slot.routes.values() {
                route.queue.close(reason);
            }
            if slot.presence == Presence::Present {
                slot.presence = Presence::Unknown;
            }
            slot.changed();
        }
    }

    /// Counts `count` messages to `topic` that the broker dropped, with a gap in the stream of
    /// every subscription whose pattern matches it.
    pub(crate) fn lost(&self, topic: &str, count: u64) {
        let r = self.routes.read();
        let mut chosen: Chosen<'_> = SmallVec::new();
        r.trie.for_each_match(topic, |route| {
            if !chosen.iter().any(|c| Arc::ptr_eq(&c.queue, &route.queue)) {
                chosen.push(route);
            }
        });
        for route in &chosen {
            route.queue.push_lost(count);
        }
        self.dropped
            .fetch_add(count * chosen.len() as u64, Ordering::Relaxed);
    }

    /// The handle lost its connection at `since`: marks every subscription (and those
    /// subscribed before it is up again) so that its outage gap lands where the loss is.
    pub(crate) fn outage_began(&self, since: SystemTime) {
        let mut r = self.routes.write();
        r.outage.get_or_insert(since);
        r.trie.for_each(|route| route.queue.outage_began(since));
    }

    /// A link came back: a subscription that got messages since its gap gets another before
    /// the next message.
    pub(crate) fn outage_link_back(&self) {
        self.routes
            .read()
            .trie
            .for_each(|route| route.queue.outage_link_back());
    }

    /// The handle is up again at `until`: every subscription whose gap is not placed yet gets
    /// it now (and one with several filters gets a second one).
    pub(crate) fn outage_ended(&self, until: SystemTime) {
        let mut r = self.routes.write();
        r.outage = None;
        r.trie
            .for_each(|route| route.queue.outage_ended(until, route.shared));
    }

    /// This handle's origin, stamped on what it publishes when [`Router::stamps`] says so.
    pub(crate) fn origin(&self) -> &str {
        &self.origin
    }

    /// Whether a subscription skips this handle's own messages (so publishes must be stamped).
    pub(crate) fn stamps(&self) -> bool {
        self.skip_own.load(Ordering::Relaxed) > 0
    }

    /// Hands `message` to the `count` routes chosen for it (the last takes it without a
    /// clone). They are counted as delivered before the first push, so whoever receives the
    /// message also sees it in [`Stats::delivered`](crate::Stats::delivered).
    fn push_each<'a>(
        &self,
        count: usize,
        mut routes: impl Iterator<Item = &'a Arc<Route>>,
        message: Message,
    ) {
        let Some(mut current) = routes.next() else {
            return;
        };
        self.delivered.fetch_add(count as u64, Ordering::Relaxed);
        let mut dropped = 0;
        for next in routes {
            dropped += usize::from(current.queue.push(message.clone()));
            current = next;
        }
        dropped += usize::from(current.queue.push(message));
        if dropped > 0 {
            self.dropped.fetch_add(dropped as u64, Ordering::Relaxed);
        }
    }
}
