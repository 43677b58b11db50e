//! The in-process backend (`memory://`), and the worked example of a driver on the adapter
//! kit: [`MemoryDriver`] only hands each message to every handle attached to the same
//! [`MemoryBus`]; routing, buffers, filters and `close` come from the kit.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;

mod group;
mod ring;

use crate::adapter::{
    launch, Context, Driver, GroupEntry, Inbound, LinkReporter, LogRead, ReadFrom, Settlement,
};
use crate::{
    CommonOptions, Error, ErrorKind, GroupConfig, Hub, Message, Pattern, Result, StreamConfig,
    WithOptions,
};
use group::GroupState;
use ring::Ring;

/// Largest payload of the memory backend: 16 MiB.
pub const DEFAULT_MAX_PAYLOAD: usize = 16 * 1024 * 1024;

/// Settings of a memory handle: only the [`CommonOptions`] (set them with [`WithOptions`]).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct MemoryConfig {
    /// The shared settings.
    pub options: CommonOptions,
}

impl WithOptions for MemoryConfig {
    fn options_mut(&mut self) -> &mut CommonOptions {
        &mut self.options
    }
}

/// An in-process broker. Every handle connected to one bus sees the others' messages.
///
/// `memory://` uses [`MemoryBus::global`]; `memory://NAME` uses [`MemoryBus::named`]. A handle
/// dropped without `close` detaches from its bus.
///
/// ```
/// # async fn demo() -> pubsub_core::Result<()> {
/// use pubsub_core::{memory::MemoryBus, Message, PubSub};
/// let bus = MemoryBus::new();
/// let (a, b) = (bus.connect().await?, bus.connect().await?);
/// let mut sub = b.subscribe("news.>".parse()?).await?;
/// a.publish(Message::new("news.tech".parse()?, "x")).await?;
/// assert_eq!(sub.recv().await.unwrap().topic().as_str(), "news.tech");
/// drop((a, b, sub));
/// assert_eq!(bus.handle_count(), 0);
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
/// ```
#[derive(Clone, Default)]
pub struct MemoryBus {
    shared: Arc<BusShared>,
}

#[derive(Default)]
struct BusShared {
    handles: RwLock<Vec<Attached>>,
    next_id: AtomicU64,
    /// The streams declared on the bus, each with its ring and groups (what a stream keeps
    /// lives in the bus, so every handle of the bus appends to it and reads it).
    streams: RwLock<Vec<Arc<StreamLog>>>,
    /// Whether `streams` is not empty: the publish path of a bus without streams skips it.
    has_streams: std::sync::atomic::AtomicBool,
}

/// One stream of a bus: its ring, its groups, and a wake-up for group reads waiting for an
/// entry. Locks are taken ring first, then groups.
struct StreamLog {
    config: StreamConfig,
    ring: Mutex<Ring>,
    groups: Mutex<HashMap<String, GroupState>>,
    changed: tokio::sync::Notify,
}

impl BusShared {
    fn log_of(&self, root: &Pattern) -> Result<Arc<StreamLog>> {
        let streams = self.streams.read();
        let log = streams
            .iter()
            .find(|log| log.config.root() == root)
            .cloned();
        log.ok_or_else(|| {
            Error::new(
                ErrorKind::Invalid,
                format!("stream `{root}` is not declared on this bus"),
            )
        })
    }

    fn log_for(&self, topic: &crate::Topic) -> Option<Arc<StreamLog>> {
        if !self.has_streams.load(Ordering::Acquire) {
            return None;
        }
        let streams = self.streams.read();
        streams.iter().find(|log| log.config.covers(topic)).cloned()
    }
}

struct Attached {
    id: u64,
    inbound: Inbound<Pattern>,
    mode: watch::Receiver<Mode>,
}

/// What a [`MemoryLink`] lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Up,
    /// Disconnected: noticed at once, as a reset connection is.
    Cut,
    /// Nothing passes and nothing is noticed, as on a black-holed network.
    Frozen,
}

impl MemoryBus {
    /// A new, private bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// The process-wide bus behind `memory://`.
    pub fn global() -> Self {
        static GLOBAL: OnceLock<MemoryBus> = OnceLock::new();
        GLOBAL.get_or_init(MemoryBus::new).clone()
    }

    /// The process-wide bus with this name (`memory://NAME`); it lives while a handle or a
    /// `MemoryBus` value refers to it.
    pub fn named(name: &str) -> Self {
        static NAMED: OnceLock<Mutex<HashMap<String, Weak<BusShared>>>> = OnceLock::new();
        let mut map = NAMED.get_or_init(Default::default).lock();
        map.retain(|_, bus| bus.strong_count() > 0);
        if let Some(shared) = map.get(name).and_then(Weak::upgrade) {
            return MemoryBus { shared };
        }
        let bus = MemoryBus::new();
        map.insert(name.to_string(), Arc::downgrade(&bus.shared));
        bus
    }

    /// Connects a new handle with default settings.
    pub async fn connect(&self) -> Result<Hub> {
        Ok(self.connect_with(MemoryConfig::default()).await?.0)
    }

    /// Connects a new handle; also returns its [`MemoryLink`], which can cut, freeze and
    /// restore the handle's connection to the bus (for testing outage behaviour).
    pub async fn connect_with(&self, config: MemoryConfig) -> Result<(Hub, MemoryLink)> {
        let bus = self.shared.clone();
        let mut link = None;
        let hub = launch(config.options, |cx: Context<Pattern>| {
            let reporter = cx.supervisor.link();
            reporter.up();
            let (mode, watch) = watch::channel(Mode::Up);
            let mode = Arc::new(mode);
            let id = bus.next_id.fetch_add(1, Ordering::Relaxed);
            bus.handles.write().push(Attached {
                id,
                inbound: cx.inbound,
                mode: watch.clone(),
            });
            if !cx.options.heartbeat.is_zero() {
                let silence = cx.options.heartbeat * 3;
                cx.tasks
                    .spawn(notice_frozen(mode.clone(), reporter.clone(), silence));
            }
            link = Some(MemoryLink { mode, reporter });
            let driver = MemoryDriver {
                bus,
                id,
                mode: watch,
                publish_timeout: cx.options.publish_timeout,
                command_timeout: cx.options.command_timeout,
            };
            std::future::ready(Ok(driver))
        })
        .await?;
        let link = link.ok_or_else(Error::closed)?;
        Ok((hub, link))
    }

    /// Number of handles attached to this bus (a dropped handle detaches at once).
    pub fn handle_count(&self) -> usize {
        let handles = self.shared.handles.read();
        handles.iter().filter(|h| !h.inbound.is_closed()).count()
    }
}

impl fmt::Debug for MemoryBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBus")
            .field("handles", &self.handle_count())
            .finish()
    }
}

/// Cuts, freezes and restores one memory handle's connection, as network faults would.
///
/// - [`MemoryLink::cut`]: the handle notices at once (its state goes down); it receives
///   nothing, and `publish` waits up to the publish timeout, then fails with a timeout.
/// - [`MemoryLink::freeze`]: nothing passes and nothing is noticed at first: publishes and
///   subscribes hang until their deadlines; after three heartbeats
///   ([`CommonOptions::heartbeat`](crate::CommonOptions::heartbeat)) the handle takes the
///   link as dead, as a client whose pings go unanswered would, and its state goes down.
/// - [`MemoryLink::restore`] and [`MemoryLink::thaw`] undo them; after a cut, the handle
///   restores its native filters before it counts as up again, as with a real broker.
#[derive(Debug, Clone)]
pub struct MemoryLink {
    mode: Arc<watch::Sender<Mode>>,
    reporter: LinkReporter,
}

impl MemoryLink {
    /// Cuts the connection.
    pub fn cut(&self) {
        self.mode.send_replace(Mode::Cut);
        self.reporter.down();
    }

    /// Restores a cut connection.
    pub fn restore(&self) {
        // The handle hears of the reconnect before the first message passes, as it would from
        // a client library, so that its outage gap goes before that message.
        self.mode.send_if_modified(|mode| {
            let was = std::mem::replace(mode, Mode::Up);
            if was == Mode::Cut {
                self.reporter.reconnected();
            }
            was != Mode::Up
        });
    }

    /// Stops all traffic without closing anything.
    pub fn freeze(&self) {
        self.mode.send_replace(Mode::Frozen);
    }

    /// Lets traffic through again after [`MemoryLink::freeze`] (a reconnect, if the handle had
    /// taken the link as dead meanwhile).
    pub fn thaw(&self) {
        self.restore();
    }
}

/// Declares a frozen link dead after `silence` (three heartbeats), as a real client whose
/// pings go unanswered does: the link counts as cut (the handle's state goes down) until it is
/// thawed, which then counts as a reconnect.
async fn notice_frozen(mode: Arc<watch::Sender<Mode>>, reporter: LinkReporter, silence: Duration) {
    let mut watch = mode.subscribe();
    loop {
        if watch.wait_for(|m| *m == Mode::Frozen).await.is_err() {
            return;
        }
        let thawed = watch.wait_for(|m| *m != Mode::Frozen);
        if tokio::time::timeout(silence, thawed).await.is_err() {
            let declared = mode.send_if_modified(|m| {
                let frozen = *m == Mode::Frozen;
                if frozen {
                    *m = Mode::Cut;
                }
                frozen
            });
            if declared {
                reporter.down();
            }
        }
        if watch.wait_for(|m| *m != Mode::Frozen).await.is_err() {
            return;
        }
    }
}

/// The memory backend's [`Driver`]: one handle attached to a [`MemoryBus`].
pub struct MemoryDriver {
    bus: Arc<BusShared>,
    id: u64,
    mode: watch::Receiver<Mode>,
    publish_timeout: Duration,
    command_timeout: Duration,
}

impl MemoryDriver {
    /// Waits up to `timeout` for the link to let traffic through.
    async fn passable(&self, timeout: Duration) -> Result<()> {
        if *self.mode.borrow() == Mode::Up {
            return Ok(());
        }
        let mut mode = self.mode.clone();
        let up = async move { mode.wait_for(|m| *m == Mode::Up).await.map(|_| ()) };
        match tokio::time::timeout(timeout, up).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Error::closed()),
            Err(_) => Err(Error::timeout(format!(
                "the memory link did not let traffic through within {timeout:?}"
            ))),
        }
    }
}

#[async_trait]
impl Driver for MemoryDriver {
    /// Each distinct pattern is its own filter: bookkeeping only, since every handle on the
    /// bus gets every message and its router picks the subscriptions.
    type Filter = Pattern;

    const BACKEND: &'static str = "memory";

    fn max_payload(&self) -> usize {
        DEFAULT_MAX_PAYLOAD
    }

    fn native_filter(&self, pattern: &Pattern) -> Result<Pattern> {
        Ok(pattern.clone())
    }

    async fn publish(&self, message: Message) -> Result<()> {
        self.passable(self.publish_timeout).await?;
        match self.bus.log_for(message.topic()) {
            // Appended and handed on under the ring's lock: live copies arrive in log order.
            Some(log) => {
                {
                    let mut ring = log.ring.lock();
                    let message = ring.append(message);
                    self.hand_on(message);
                }
                log.changed.notify_waiters();
            }
            None => self.hand_on(message),
        }
        Ok(())
    }

    async fn declare_stream(&self, stream: &StreamConfig) -> Result<()> {
        self.passable(self.command_timeout).await?;
        let mut streams = self.bus.streams.write();
        let known: Vec<StreamConfig> = streams.iter().map(|log| log.config.clone()).collect();
        if !crate::adapter::check_declaration(&known, stream)? {
            return Ok(());
        }
        streams.push(Arc::new(StreamLog {
            config: stream.clone(),
            ring: Mutex::new(Ring::new(stream.clone())),
            groups: Mutex::new(HashMap::new()),
            changed: tokio::sync::Notify::new(),
        }));
        self.bus.has_streams.store(true, Ordering::Release);
        Ok(())
    }

    async fn read_stream(
        &self,
        stream: &StreamConfig,
        from: ReadFrom,
        limit: usize,
    ) -> Result<LogRead> {
        self.passable(self.command_timeout).await?;
        let log = self.bus.log_of(stream.root())?;
        let read = log.ring.lock().read(from, limit);
        Ok(read)
    }

    async fn join_group(&self, stream: &StreamConfig, group: &GroupConfig) -> Result<()> {
        self.passable(self.command_timeout).await?;
        let log = self.bus.log_of(stream.root())?;
        let mut ring = log.ring.lock();
        let mut groups = log.groups.lock();
        match groups.get(group.name()) {
            Some(known) if known.config.same_group(group) => Ok(()),
            Some(known) => Err(known.config.conflict(group)),
            None => {
                let state = GroupState::new(group.clone(), &mut ring);
                groups.insert(group.name().to_string(), state);
                Ok(())
            }
        }
    }

    async fn read_group(
        &self,
        stream: &StreamConfig,
        group: &GroupConfig,
        _member: &str,
        limit: usize,
        wait: Duration,
    ) -> Result<Vec<GroupEntry>> {
        self.passable(self.command_timeout).await?;
        let log = self.bus.log_of(stream.root())?;
        let until = tokio::time::Instant::now() + wait;
        loop {
            let changed = log.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let now = tokio::time::Instant::now();
            let (entries, next_due) = {
                let mut ring = log.ring.lock();
                let mut groups = log.groups.lock();
                let state = groups
                    .get_mut(group.name())
                    .ok_or_else(|| no_group(group))?;
                state.read(&mut ring, limit, now)
            };
            if !entries.is_empty() || now >= until {
                return Ok(entries);
            }
            let wake = next_due.map_or(until, |due| due.min(until));
            tokio::select! {
                _ = changed => {}
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    async fn settle_group(
        &self,
        stream: &StreamConfig,
        group: &GroupConfig,
        settlements: &[Settlement],
    ) -> Result<()> {
        self.passable(self.command_timeout).await?;
        let log = self.bus.log_of(stream.root())?;
        let now = tokio::time::Instant::now();
        let due_now = {
            let mut groups = log.groups.lock();
            let state = groups
                .get_mut(group.name())
                .ok_or_else(|| no_group(group))?;
            settlements
                .iter()
                .fold(false, |due, s| state.settle(s, now) | due)
        };
        if due_now {
            log.changed.notify_waiters();
        }
        Ok(())
    }

    async fn add_filters(&self, _filters: &[Pattern]) -> Result<()> {
        self.passable(self.command_timeout).await
    }

    async fn remove_filters(&self, _filters: &[Pattern]) -> Result<()> {
        self.passable(self.command_timeout).await
    }

    async fn close(&self) -> Result<()> {
        self.detach();
        Ok(())
    }
}

fn no_group(group: &GroupConfig) -> Error {
    Error::new(
        ErrorKind::Invalid,
        format!("group `{}` is not on this bus", group.name()),
    )
}

impl fmt::Debug for MemoryDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryDriver")
            .field("id", &self.id)
            .field("mode", &*self.mode.borrow())
            .finish()
    }
}

impl MemoryDriver {
    /// Gives `message` to every handle of the bus whose link is up.
    fn hand_on(&self, message: Message) {
        let mut stale = false;
        {
            let handles = self.bus.handles.read();
            let mut receivers = handles.iter().filter(|h| {
                let closed = h.inbound.is_closed();
                stale |= closed;
                !closed && *h.mode.borrow() == Mode::Up
            });
            // The last receiver takes the message itself: one clone fewer.
            if let Some(mut current) = receivers.next() {
                for next in receivers {
                    current.inbound.deliver(message.clone());
                    current = next;
                }
                current.inbound.deliver(message);
            }
        }
        if stale {
            // A handle dropped without `close` whose driver is not gone yet.
            self.bus.handles.write().retain(|h| !h.inbound.is_closed());
        }
    }

    fn detach(&self) {
        self.bus.handles.write().retain(|a| a.id != self.id);
    }
}

impl Drop for MemoryDriver {
    fn drop(&mut self) {
        self.detach();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ConnectionState, ErrorKind};

    #[tokio::test]
    async fn dropped_handles_detach_from_the_bus() {
        let bus = MemoryBus::new();
        for _ in 0..200 {
            let handle = bus.connect().await.unwrap();
            let _sub = handle.subscribe("a.>".parse().unwrap()).await.unwrap();
        }
        assert_eq!(bus.handle_count(), 0);
        // And publishing prunes what is left of them.
        let handle = bus.connect().await.unwrap();
        handle
            .publish(Message::new("a.b".parse().unwrap(), "x"))
            .await
            .unwrap();
        assert_eq!(bus.shared.handles.read().len(), 1);
    }

    #[tokio::test]
    async fn delivery_is_the_same_while_a_multi_pattern_subscription_lives_and_after() {
        let handle = MemoryBus::new().connect().await.unwrap();
        let mut rest = handle.subscribe("x.>".parse().unwrap()).await.unwrap();
        let mut exact = handle.subscribe("x.y".parse().unwrap()).await.unwrap();
        // While it lives, the router singles out one route per subscription (two passes).
        let patterns = vec!["x.>".parse().unwrap(), "x.y".parse().unwrap()];
        let mut both = handle
            .subscribe_all(patterns, crate::SubscribeOptions::default())
            .await
            .unwrap();
        let publish = |text: &'static str| {
            let handle = handle.clone();
            async move {
                let m = Message::new("x.y".parse().unwrap(), text);
                handle.publish(m).await.unwrap();
            }
        };
        publish("1").await;
        assert_eq!(both.recv().await.unwrap().payload().as_ref(), b"1");
        drop(both);
        // Then every matching route takes it in one pass again.
        publish("2").await;
        for sub in [&mut rest, &mut exact] {
            assert_eq!(sub.recv().await.unwrap().payload().as_ref(), b"1");
            assert_eq!(sub.recv().await.unwrap().payload().as_ref(), b"2");
        }
        assert_eq!(handle.stats().delivered, 5);
    }

    #[tokio::test]
    async fn a_cut_link_is_reported_and_restored() {
        let bus = MemoryBus::new();
        let config = MemoryConfig::default().with_publish_timeout(Duration::from_millis(50));
        let (handle, link) = bus.connect_with(config).await.unwrap();
        let mut sub = handle.subscribe("a".parse().unwrap()).await.unwrap();
        link.cut();
        assert!(matches!(
            handle.connection_state(),
            ConnectionState::Down { .. }
        ));
        let err = handle
            .publish(Message::new("a".parse().unwrap(), "x"))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout);
        assert_eq!(err.backend_name(), Some("memory"));
        link.restore();
        let mut state = handle.watch_connection();
        state.wait_for(ConnectionState::is_up).await.unwrap();
        handle
            .publish(Message::new("a".parse().unwrap(), "y"))
            .await
            .unwrap();
        assert_eq!(sub.recv().await.unwrap().payload().as_ref(), b"y");
    }
}
