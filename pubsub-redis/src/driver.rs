//! [`RedisDriver`]: the Redis half of a handle (publish, SUBSCRIBE/PSUBSCRIBE, reconnect).

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use fred::clients::{Client, WithOptions};
use fred::interfaces::{ClientLike, EventInterface, PubsubInterface};
use fred::types::config::{
    Config as FredConfig, ConnectionConfig, Options, PerformanceConfig, ReconnectPolicy,
};
use fred::types::{ConnectHandle, MessageKind, Value};
use parking_lot::{Mutex, RwLock};
use pubsub_core::{
    envelope, ConnectionGate, Driver, Error as CoreError, Inbound, Message, NativeFilter, Pattern,
    Result, Topic,
};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{broadcast, watch, Notify, OnceCell};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::HEADER_ALLOWANCE;
use crate::{glob, Error, RedisConfig};

/// How long `close` waits for each fred client to quit before stopping its task.
const QUIT_WAIT: Duration = Duration::from_secs(3);

/// Capacity of the publisher client's broadcast channels (it receives no messages).
pub(crate) const PUBLISHER_CAPACITY: usize = 64;

/// Most messages the reader handles in a row before yielding to the scheduler.
const DRAIN_BATCH: usize = 256;

/// Channels or globs per re-subscription command after a reconnect.
const RESUBSCRIBE_CHUNK: usize = 256;

/// Link id of the publisher connection in [`Links`]; subscriber class `k` has id `k + 1`.
const PUBLISHER_LINK: usize = 0;

/// The Redis [`Driver`]: one publisher connection and one subscriber connection per glob
/// class in use (see the crate documentation).
pub struct RedisDriver {
    shared: Arc<Shared>,
}

struct Shared {
    label: String,
    publisher: Client,
    /// The publisher for the fast path: one write attempt, no per-command timer (see
    /// [`Links::expired`]).
    publish_client: WithOptions<Client>,
    owns_publisher: bool,
    template: Template,
    settings: Settings,
    links: Arc<Links>,
    inbound: Inbound,
    /// Subscriber connections by glob class (`0..=pattern_depth`); the last one also carries
    /// the exact-channel subscriptions and is opened at connect time, the others on first use.
    subs: Vec<OnceCell<Arc<SubConn>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    connections: Mutex<Vec<ConnectHandle>>,
    shutdown: watch::Sender<bool>,
    closed: AtomicBool,
}

/// What it takes to open one more fred client like the others.
struct Template {
    config: FredConfig,
    performance: PerformanceConfig,
    connection: ConnectionConfig,
    policy: ReconnectPolicy,
}

struct Settings {
    watchdog: Watchdog,
    max_payload: usize,
    max_frame: usize,
    publish_timeout: Duration,
    command_timeout: Duration,
    pattern_depth: usize,
}

/// Which connections are down; the publish gate is open only when none is.
///
/// A subscriber connection counts as down from the moment it is lost until it has reconnected
/// and restored its subscriptions, so a message this handle publishes after a recovery reaches
/// its own restored subscriptions.
struct Links {
    gate: ConnectionGate,
    down: Mutex<BTreeSet<usize>>,
    /// The publish watchdog's clock: bumped every [`Watchdog::tick`] by the publisher's monitor.
    epoch: AtomicU64,
    /// Publishes on the fast path that have not finished.
    inflight: AtomicUsize,
    /// Notified at every tick while publishes are in flight, so that those pending for
    /// `publish_timeout` end with a time-out. This bounds the fast path without arming a timer
    /// for every publish (timers cost a clock read and a timer-wheel entry each).
    expired: Notify,
}

/// Publish time-outs counted in watchdog ticks.
#[derive(Clone, Copy)]
struct Watchdog {
    tick: Duration,
    /// A publish that started at epoch `e` has waited at least `publish_timeout` once the
    /// epoch reaches `e + ticks`.
    ticks: u64,
}

impl Watchdog {
    fn new(publish_timeout: Duration) -> Self {
        let tick = (publish_timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        let whole = publish_timeout.as_nanos().div_ceil(tick.as_nanos().max(1));
        Watchdog {
            tick,
            ticks: u64::try_from(whole)
                .unwrap_or(u64::MAX - 1)
                .saturating_add(1),
        }
    }
}

/// Counts a fast-path publish as in flight while it lives.
struct Inflight<'a>(&'a AtomicUsize);

impl<'a> Inflight<'a> {
    fn new(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Inflight(counter)
    }
}

impl Drop for Inflight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Links {
    fn set(&self, link: usize, up: bool) {
        let mut down = self.down.lock();
        if up {
            down.remove(&link);
        } else {
            down.insert(link);
        }
        self.gate.set_connected(down.is_empty());
    }
}

/// One subscriber connection and the native filters it carries.
struct SubConn {
    /// Glob class: the number of literal tokens in the prefix of every glob on this connection.
    class: usize,
    label: String,
    client: Client,
    /// Serialises filter changes with the re-subscription after a reconnect.
    ops: tokio::sync::Mutex<()>,
    /// Exact channels (only on the last class's connection) with their filter and topic.
    exact: RwLock<FastMap<(NativeFilter, Topic)>>,
    /// Globs by their unescaped literal prefix.
    globs: RwLock<FastMap<NativeFilter>>,
}

/// A map keyed by channel text, looked up for every received message: FNV-1a instead of the
/// default SipHash (channel names are short, and they come from our own subscriptions, so
/// flooding is not a concern: a channel that is not in the map is dropped either way).
type FastMap<V> = HashMap<Box<str>, V, BuildHasherDefault<Fnv>>;

/// 64-bit FNV-1a.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// Where a native filter lives on a [`SubConn`].
enum Key {
    Exact(Topic),
    Glob(String),
}

impl RedisDriver {
    /// Opens the connections and starts the background tasks.
    pub(crate) async fn open(
        config: RedisConfig,
        publisher: Client,
        template_config: FredConfig,
        inbound: Inbound,
    ) -> Result<RedisDriver> {
        let owns_publisher = !publisher.is_connected();
        let publish_client = publisher.with_options(&Options {
            // A publish written to a connection that then fails is not written again: it may
            // have been delivered, and delivery is at most once.
            max_attempts: Some(1),
            ..Options::default()
        });
        let (shutdown, _) = watch::channel(false);
        let subs = (0..=config.pattern_depth)
            .map(|_| OnceCell::new())
            .collect();
        let shared = Arc::new(Shared {
            label: config.server_label(),
            publisher,
            publish_client,
            owns_publisher,
            template: Template {
                config: template_config,
                performance: config.fred_performance(config.broadcast_capacity),
                connection: config.fred_connection(),
                policy: config.fred_policy(),
            },
            settings: Settings {
                watchdog: Watchdog::new(config.publish_timeout),
                max_payload: config.max_payload,
                max_frame: config.max_payload.saturating_add(HEADER_ALLOWANCE),
                publish_timeout: config.publish_timeout,
                command_timeout: config.command_timeout,
                pattern_depth: config.pattern_depth,
            },
            links: Arc::new(Links {
                gate: ConnectionGate::new(true),
                down: Mutex::new(BTreeSet::new()),
                epoch: AtomicU64::new(0),
                inflight: AtomicUsize::new(0),
                expired: Notify::new(),
            }),
            inbound,
            subs,
            tasks: Mutex::new(Vec::new()),
            connections: Mutex::new(Vec::new()),
            shutdown,
            closed: AtomicBool::new(false),
        });
        let driver = RedisDriver { shared };
        if let Err(error) = driver.shared.start().await {
            driver.shared.shut_down().await;
            return Err(error);
        }
        Ok(driver)
    }
}

impl Shared {
    async fn start(self: &Arc<Self>) -> Result<()> {
        let errors = self.publisher.error_rx();
        let reconnects = self.publisher.reconnect_rx();
        if self.owns_publisher {
            let handle = self
                .publisher
                .init()
                .await
                .map_err(|e| Error::from_fred("connecting the publisher", e))?;
            self.connections.lock().push(handle);
        }
        let monitor = monitor(
            PUBLISHER_LINK,
            self.label.clone(),
            self.publisher.clone(),
            Role::Publisher {
                watchdog: self.settings.watchdog,
            },
            self.links.clone(),
            errors,
            reconnects,
            self.shutdown.subscribe(),
        );
        self.tasks.lock().push(tokio::spawn(monitor));
        // The connection that carries exact channels is opened now, so that connect fails
        // when subscriptions cannot work.
        self.sub(self.settings.pattern_depth).await?;
        Ok(())
    }

    /// The subscriber connection of `class`, opened on first use.
    async fn sub(self: &Arc<Self>, class: usize) -> Result<&Arc<SubConn>> {
        let cell = self.subs.get(class).ok_or_else(|| {
            CoreError::InvalidConfig(format!("glob class {class} is out of range"))
        })?;
        cell.get_or_try_init(|| self.open_sub(class)).await
    }

    async fn open_sub(self: &Arc<Self>, class: usize) -> Result<Arc<SubConn>> {
        let t = &self.template;
        let client = Client::new(
            t.config.clone(),
            Some(t.performance.clone()),
            Some(t.connection.clone()),
            Some(t.policy.clone()),
        );
        let messages = client.message_rx();
        let errors = client.error_rx();
        let reconnects = client.reconnect_rx();
        let handle = client
            .init()
            .await
            .map_err(|e| Error::from_fred("connecting a subscriber connection", e))?;
        self.connections.lock().push(handle);
        let sub = Arc::new(SubConn {
            class,
            label: self.label.clone(),
            client: client.clone(),
            ops: tokio::sync::Mutex::new(()),
            exact: RwLock::new(FastMap::default()),
            globs: RwLock::new(FastMap::default()),
        });
        let reader = read_messages(sub.clone(), self.inbound.clone(), messages);
        let monitor = monitor(
            class + 1,
            self.label.clone(),
            client,
            Role::Subscriber {
                sub: sub.clone(),
                command_timeout: self.settings.command_timeout,
            },
            self.links.clone(),
            errors,
            reconnects,
            self.shutdown.subscribe(),
        );
        let mut tasks = self.tasks.lock();
        tasks.push(tokio::spawn(reader));
        tasks.push(tokio::spawn(monitor));
        tracing::debug!(server = %self.label, class, "opened a Redis subscriber connection");
        Ok(sub)
    }

    /// Where `filter` lives: its connection (opened if needed) and its key there.
    async fn locate(self: &Arc<Self>, filter: &NativeFilter) -> Result<(&Arc<SubConn>, Key)> {
        if filter.is_wildcard() {
            let (prefix, class) = glob::parse_glob(filter.name())
                .filter(|(_, class)| *class <= self.settings.pattern_depth)
                .ok_or_else(|| {
                    CoreError::InvalidConfig(format!("not a glob of this handle: {filter:?}"))
                })?;
            Ok((self.sub(class).await?, Key::Glob(prefix)))
        } else {
            let topic = Topic::new(filter.name())?;
            let sub = self.sub(self.settings.pattern_depth).await?;
            Ok((sub, Key::Exact(topic)))
        }
    }

    /// Quits every client this handle owns and stops every task; used by `close` and when
    /// `connect` fails half-way.
    async fn shut_down(&self) {
        let _ = self.shutdown.send(true);
        // All clients quit at once, so that an outage costs one QUIT_WAIT, not one per client.
        // QUIT is queued behind the publishes in flight, so they are flushed first.
        let mut clients: Vec<&Client> = self
            .subs
            .iter()
            .filter_map(OnceCell::get)
            .map(|sub| &sub.client)
            .collect();
        if self.owns_publisher {
            clients.push(&self.publisher);
        }
        futures::future::join_all(clients.into_iter().map(|c| quit(c, &self.label))).await;
        let connections: Vec<ConnectHandle> = std::mem::take(&mut *self.connections.lock());
        futures::future::join_all(connections.into_iter().map(finish)).await;
        // The readers and monitors have nothing left to do; stop them now.
        let tasks: Vec<JoinHandle<()>> = std::mem::take(&mut *self.tasks.lock());
        for handle in tasks {
            handle.abort();
            let _ = handle.await;
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Dropped without `close`: stop what can be stopped without waiting.
        let _ = self.shutdown.send(true);
        for handle in self.connections.get_mut().drain(..) {
            handle.abort();
        }
        for handle in self.tasks.get_mut().drain(..) {
            handle.abort();
        }
    }
}

async fn quit(client: &Client, label: &str) {
    match tokio::time::timeout(QUIT_WAIT, client.quit()).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::debug!(server = %label, %error, "QUIT failed"),
        Err(_) => tracing::debug!(server = %label, "QUIT timed out"),
    }
}

/// Waits for a task to end, stopping it if it does not end by itself soon.
async fn finish<T>(mut handle: JoinHandle<T>) {
    if tokio::time::timeout(QUIT_WAIT, &mut handle).await.is_err() {
        handle.abort();
        let _ = handle.await;
    }
}

fn timeout_options(timeout: Duration) -> Options {
    Options {
        timeout: Some(timeout),
        ..Options::default()
    }
}

impl SubConn {
    fn insert(&self, key: &Key, filter: &NativeFilter) {
        match key {
            Key::Exact(topic) => {
                self.exact
                    .write()
                    .insert(topic.as_str().into(), (filter.clone(), topic.clone()));
            }
            Key::Glob(prefix) => {
                self.globs
                    .write()
                    .insert(prefix.as_str().into(), filter.clone());
            }
        }
    }

    fn remove(&self, key: &Key) {
        match key {
            Key::Exact(topic) => {
                self.exact.write().remove(topic.as_str());
            }
            Key::Glob(prefix) => {
                self.globs.write().remove(prefix.as_str());
            }
        }
    }

    /// Sends (P)SUBSCRIBE or (P)UNSUBSCRIBE for `filter` and returns once Redis has applied it.
    ///
    /// fred resolves the (un)subscribe future as soon as the command is handed to the
    /// connection, without waiting for Redis's confirmation, so a `PING` follows on the same
    /// connection: Redis answers commands of one connection in order, so its reply means the
    /// change was applied. If the connection was re-established meanwhile (fred does not
    /// retry a (un)subscribe written to a connection that then failed), the pair is repeated.
    async fn apply(
        &self,
        filter: &NativeFilter,
        subscribe: bool,
        timeout: Duration,
    ) -> Result<(), fred::error::Error> {
        let deadline = Instant::now() + timeout;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(fred::error::Error::new(
                    fred::error::ErrorKind::Timeout,
                    "Redis did not confirm in time",
                ));
            }
            let mut reconnects = self.client.reconnect_rx();
            let client = self.client.with_options(&timeout_options(remaining));
            let name = filter.name();
            match (filter.is_wildcard(), subscribe) {
                (false, true) => client.subscribe(name).await?,
                (true, true) => client.psubscribe(name).await?,
                (false, false) => client.unsubscribe(name).await?,
                (true, false) => client.punsubscribe(name).await?,
            }
            client.ping::<()>(None).await?;
            if matches!(reconnects.try_recv(), Err(TryRecvError::Empty)) {
                return Ok(());
            }
            tracing::debug!(server = %self.label, ?filter, "reconnected during a subscription change; repeating it");
        }
    }

    /// Subscribes again to everything this connection carries (after a reconnect).
    async fn resubscribe(&self, timeout: Duration) -> Result<usize, fred::error::Error> {
        let _op = self.ops.lock().await;
        let channels: Vec<String> = self.exact.read().keys().map(|k| k.to_string()).collect();
        let globs: Vec<String> = self
            .globs
            .read()
            .values()
            .map(|f| f.name().to_string())
            .collect();
        if channels.is_empty() && globs.is_empty() {
            return Ok(0);
        }
        let client = self.client.with_options(&timeout_options(timeout));
        for chunk in channels.chunks(RESUBSCRIBE_CHUNK) {
            client.subscribe(chunk.to_vec()).await?;
        }
        for chunk in globs.chunks(RESUBSCRIBE_CHUNK) {
            client.psubscribe(chunk.to_vec()).await?;
        }
        client.ping::<()>(None).await?;
        Ok(channels.len() + globs.len())
    }

    /// Hands one message from Redis to the router, through the native filter it came by.
    fn route(&self, inbound: &Inbound, message: fred::types::Message) {
        let payload = match message.value {
            Value::Bytes(bytes) => bytes,
            Value::String(text) => text.into_inner(),
            Value::Null => Bytes::new(),
            other => {
                tracing::debug!(channel = %message.channel, kind = ?other.kind(), "ignoring a pub/sub message that is not a string");
                return;
            }
        };
        // The maps stay read-locked while delivering: the core never waits on them, and
        // `add_filter`/`remove_filter` only write them briefly.
        match message.kind {
            MessageKind::Message => {
                let exact = self.exact.read();
                if let Some((filter, topic)) = exact.get(&*message.channel) {
                    inbound.deliver_via(filter, unframe(topic.clone(), payload));
                }
            }
            MessageKind::PMessage => {
                let Some(prefix) = glob::prefix_of(&message.channel, self.class) else {
                    return;
                };
                let globs = self.globs.read();
                let Some(filter) = globs.get(prefix) else {
                    return;
                };
                let Ok(topic) = Topic::new(&message.channel) else {
                    tracing::trace!(channel = %message.channel, "ignoring a channel that is not a valid topic");
                    return;
                };
                inbound.deliver_via(filter, unframe(topic, payload));
            }
            MessageKind::SMessage => {}
        }
    }
}

/// The message carried by `payload`: an envelope's headers and payload, or (bytes without the
/// envelope's magic, from a foreign publisher or a message without headers, and malformed
/// frames) the bytes as they are, without headers.
fn unframe(topic: Topic, payload: Bytes) -> Message {
    if !payload.starts_with(&envelope::MAGIC) {
        // What `decode_lossy` gives too, without its bookkeeping.
        return Message::new(topic, payload);
    }
    let decoded = envelope::decode_lossy(payload);
    Message::with_headers(topic, decoded.payload, decoded.headers)
}

/// Reads fred's broadcast channel of one subscriber connection and feeds the router.
///
/// Ends when fred closes the channel (on `QUIT`); `close` also aborts it after quitting.
async fn read_messages(
    sub: Arc<SubConn>,
    inbound: Inbound,
    mut messages: broadcast::Receiver<fred::types::Message>,
) {
    loop {
        match messages.recv().await {
            Ok(message) => sub.route(&inbound, message),
            Err(RecvError::Lagged(lost)) => lagged(&sub, &inbound, lost),
            Err(RecvError::Closed) => return,
        }
        // Handle what is already there without going back to the scheduler, up to a bound.
        for _ in 0..DRAIN_BATCH {
            match messages.try_recv() {
                Ok(message) => sub.route(&inbound, message),
                Err(TryRecvError::Lagged(lost)) => lagged(&sub, &inbound, lost),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Closed) => return,
            }
        }
    }
}

fn lagged(sub: &SubConn, inbound: &Inbound, lost: u64) {
    tracing::warn!(
        server = %sub.label,
        lost,
        "the Redis reader fell behind fred's broadcast channel and lost messages; \
         consider a larger broadcast capacity"
    );
    inbound.record_lost(lost);
}

/// What a monitored connection is for.
enum Role {
    /// The publisher: also runs the publish watchdog.
    Publisher { watchdog: Watchdog },
    /// A subscriber connection: after a reconnect, its subscriptions are restored.
    Subscriber {
        sub: Arc<SubConn>,
        command_timeout: Duration,
    },
}

/// Follows one client's connection events: marks the link down when it is lost, and up again
/// once it is back (after restoring the subscriptions of a subscriber connection).
#[allow(clippy::too_many_arguments)]
async fn monitor(
    link: usize,
    label: String,
    client: Client,
    role: Role,
    links: Arc<Links>,
    mut errors: broadcast::Receiver<(fred::error::Error, Option<fred::types::config::Server>)>,
    mut reconnects: broadcast::Receiver<fred::types::config::Server>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut ticker = match &role {
        Role::Publisher { watchdog } => {
            let mut ticker = tokio::time::interval(watchdog.tick);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            Some(ticker)
        }
        Role::Subscriber { .. } => None,
    };
    loop {
        // Errors first: when both are pending, the loss happened before the recovery.
        let reconnected = tokio::select! {
            biased;
            _ = shutdown.wait_for(|stop| *stop) => return,
            error = errors.recv() => match error {
                Ok((error, _)) => {
                    tracing::warn!(server = %label, %error, "lost the connection to Redis; reconnecting");
                    links.set(link, false);
                    continue;
                }
                Err(RecvError::Lagged(_)) => {
                    links.set(link, false);
                    client.is_connected()
                }
                Err(RecvError::Closed) => return,
            },
            event = reconnects.recv() => match event {
                Ok(_) | Err(RecvError::Lagged(_)) => true,
                Err(RecvError::Closed) => return,
            },
            _ = tick(&mut ticker) => {
                links.epoch.fetch_add(1, Ordering::AcqRel);
                if links.inflight.load(Ordering::Relaxed) > 0 {
                    links.expired.notify_waiters();
                }
                continue;
            }
        };
        if !reconnected {
            continue;
        }
        let (sub, command_timeout) = match &role {
            Role::Publisher { .. } => {
                links.set(link, true);
                continue;
            }
            Role::Subscriber {
                sub,
                command_timeout,
            } => (sub, *command_timeout),
        };
        let outcome = tokio::select! {
            biased;
            _ = shutdown.wait_for(|stop| *stop) => return,
            outcome = sub.resubscribe(command_timeout) => outcome,
        };
        match outcome {
            Ok(0) => links.set(link, true),
            Ok(restored) => {
                tracing::info!(server = %label, restored, "reconnected to Redis and restored the subscriptions");
                links.set(link, true);
            }
            Err(error) if is_connection_error(&error) => {
                // Lost again: the next reconnect event retries.
                tracing::warn!(server = %label, %error, "could not restore the subscriptions yet");
            }
            Err(error) => {
                tracing::error!(server = %label, %error, "Redis refused to restore the subscriptions");
                links.set(link, true);
            }
        }
    }
}

/// The next tick of the watchdog, or never for a monitor without one.
async fn tick(ticker: &mut Option<tokio::time::Interval>) {
    match ticker {
        Some(ticker) => {
            ticker.tick().await;
        }
        None => std::future::pending().await,
    }
}

fn is_connection_error(error: &fred::error::Error) -> bool {
    use fred::error::ErrorKind as K;
    matches!(
        error.kind(),
        K::IO | K::Canceled | K::Timeout | K::Protocol | K::Tls
    )
}

impl fmt::Debug for RedisDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.shared;
        f.debug_struct("RedisDriver")
            .field("server", &s.label)
            .field("connected", &s.links.gate.is_connected())
            .field("pattern_depth", &s.settings.pattern_depth)
            .field(
                "subscriber_connections",
                &s.subs.iter().filter(|c| c.initialized()).count(),
            )
            .finish()
    }
}

#[async_trait]
impl Driver for RedisDriver {
    fn backend(&self) -> &'static str {
        "redis"
    }

    fn max_payload(&self) -> usize {
        self.shared.settings.max_payload
    }

    fn native_filter(&self, pattern: &Pattern) -> Result<NativeFilter> {
        Ok(glob::native_filter(
            pattern,
            self.shared.settings.pattern_depth,
        ))
    }

    async fn publish(&self, message: &Message) -> Result<()> {
        let s = &self.shared;
        let size = envelope::encoded_len(message.headers(), message.payload().len());
        if size > s.settings.max_frame {
            return Err(CoreError::PayloadTooLarge {
                size,
                max: s.settings.max_frame,
            });
        }
        let frame = envelope::encode(message.headers(), message.payload());
        let channel = message.topic().as_str();
        let sent = if s.links.gate.is_connected() {
            // Fast path: no timer per publish; the watchdog ends it after `publish_timeout`
            // (plus at most one tick) if Redis has not answered by then, whatever the cause: a
            // connection lost while the command waited in fred's queue, or a stalled server. A
            // publish already written to a connection that fails gets fred's error at once.
            let links = &s.links;
            let watchdog = s.settings.watchdog;
            let _inflight = Inflight::new(&links.inflight);
            let started = links.epoch.load(Ordering::Acquire);
            let send = s.publish_client.publish::<(), _, _>(channel, frame);
            tokio::pin!(send);
            loop {
                // Created before the epoch is read, so a tick in between is not missed.
                let expired = links.expired.notified();
                if links.epoch.load(Ordering::Acquire) >= started.saturating_add(watchdog.ticks) {
                    return Err(CoreError::Timeout(format!(
                        "redis: no answer to PUBLISH within {:?}",
                        s.settings.publish_timeout
                    )));
                }
                tokio::select! {
                    biased;
                    sent = &mut send => break sent,
                    _ = expired => {}
                }
            }
        } else {
            let started = Instant::now();
            s.links
                .gate
                .wait_connected(s.settings.publish_timeout)
                .await?;
            let remaining = s
                .settings
                .publish_timeout
                .saturating_sub(started.elapsed())
                .max(Duration::from_millis(1));
            s.publisher
                .with_options(&Options {
                    timeout: Some(remaining),
                    max_attempts: Some(1),
                    ..Options::default()
                })
                .publish::<(), _, _>(channel, frame)
                .await
        };
        sent.map_err(|e| Error::from_fred("publishing", e).into())
    }

    async fn add_filter(&self, filter: &NativeFilter) -> Result<()> {
        let s = &self.shared;
        let (sub, key) = s.locate(filter).await?;
        let _op = sub.ops.lock().await;
        sub.insert(&key, filter);
        if let Err(error) = sub.apply(filter, true, s.settings.command_timeout).await {
            sub.remove(&key);
            return Err(Error::from_fred("subscribing", error).into());
        }
        Ok(())
    }

    async fn remove_filter(&self, filter: &NativeFilter) -> Result<()> {
        let s = &self.shared;
        let (sub, key) = s.locate(filter).await?;
        let _op = sub.ops.lock().await;
        sub.apply(filter, false, s.settings.command_timeout)
            .await
            .map_err(|e| Error::from_fred("unsubscribing", e))?;
        sub.remove(&key);
        Ok(())
    }

    async fn close(&self) -> Result<()> {
        let s = &self.shared;
        if s.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        s.shut_down().await;
        Ok(())
    }
}
