//! [`RedisDriver`]: the Redis half of a handle (PUBLISH, SUBSCRIBE/PSUBSCRIBE, connection
//! events); the kit does the rest.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use fred::clients::{Client, Pipeline, WithOptions};
use fred::interfaces::{ClientLike, EventInterface, PubsubInterface};
use fred::types::config::{
    Config as FredConfig, ConnectionConfig, Options, PerformanceConfig, ReconnectPolicy,
};
use fred::types::{ClusterHash, ConnectHandle, MessageKind, Value};
use fred::util::redis_keyslot;
use parking_lot::Mutex;
use pubsub_core::adapter::{
    drain_broadcast, headerless, tls, Context, Driver, FiltersInUse, Inbound, LinkReporter, Tasks,
    Watchdog,
};
use pubsub_core::adapter::{GroupEntry, LogRead, ReadFrom, Settlement};
use pubsub_core::{Error, GroupConfig, Message, Pattern, Result, StreamConfig, Topic};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{broadcast, OnceCell};
use tokio::time::Instant;

use crate::config::HEADER_ALLOWANCE;
use crate::glob::{self, RedisFilter};
use crate::plan;
use crate::stream::{self, MemberConnection, Streams};
use crate::RedisConfig;

/// How long `close` waits for each fred client to quit before stopping its task.
const QUIT_WAIT: Duration = Duration::from_secs(3);

/// Capacity of the publisher client's broadcast channels (it receives no messages).
pub(crate) const PUBLISHER_CAPACITY: usize = 64;

/// Channels or globs in one SUBSCRIBE / PSUBSCRIBE command.
const COMMAND_CHUNK: usize = 256;

/// The Redis [`Driver`]: one publisher connection and one subscriber connection per glob
/// class in use (see the crate documentation).
pub(crate) struct RedisDriver {
    shared: Arc<Shared>,
}

struct Shared {
    label: String,
    publisher: Client,
    /// The publisher: one write attempt, no per-command timer (the watchdog bounds it).
    publish_client: WithOptions<Client>,
    /// Stream scripts: routed by their keys' slot, bounded by the command timeout.
    stream_client: WithOptions<Client>,
    streams: Streams,
    owns_publisher: bool,
    template: Template,
    max_payload: usize,
    command_timeout: Duration,
    heartbeat: Duration,
    pattern_depth: usize,
    max_globs: usize,
    raw_payloads: bool,
    watchdog: Arc<Watchdog>,
    inbound: Inbound<RedisFilter>,
    cx_supervisor: pubsub_core::adapter::Supervisor,
    tasks: Tasks,
    /// Subscriber connections by glob class (`0..=pattern_depth`); the last one also carries
    /// the channel subscriptions and is opened at connect time, the others on first use.
    subs: Vec<OnceCell<Arc<SubConn>>>,
    connections: Mutex<Vec<ConnectHandle>>,
}

/// What it takes to open one more fred client like the others.
struct Template {
    config: FredConfig,
    performance: PerformanceConfig,
    connection: ConnectionConfig,
    policy: ReconnectPolicy,
}

impl Template {
    /// A new client (not connected yet) with the handle's settings.
    fn client(&self) -> Client {
        Client::new(
            self.config.clone(),
            Some(self.performance.clone()),
            Some(self.connection.clone()),
            Some(self.policy.clone()),
        )
    }
}

/// One subscriber connection.
struct SubConn {
    /// Glob class: the number of literal tokens in the prefix of every glob on it.
    class: usize,
    /// Deliver payloads as they are (never decode the envelope).
    raw_payloads: bool,
    client: Client,
    /// Serialises (un)subscribe-and-PING sequences, so that a PING confirms its own commands.
    ops: tokio::sync::Mutex<()>,
}

impl RedisDriver {
    /// Connects the publisher (unless shared), opens the channel connection and starts the
    /// monitors.
    pub(crate) async fn open(
        config: RedisConfig,
        publisher: Client,
        owns_publisher: bool,
        template_config: FredConfig,
        cx: Context<RedisFilter>,
    ) -> Result<RedisDriver> {
        let publish_client = publisher.with_options(&Options {
            // A publish written to a connection that then fails is not written again: it may
            // have been delivered, and delivery is at most once.
            max_attempts: Some(1),
            // In a cluster, every node forwards a PUBLISH to all the others, so the node it is
            // sent to changes nothing for the subscribers; sending all of a handle's publishes
            // to one node (the master of its client id's slot) keeps them in the order they
            // were made, across topics, as on a single server.
            cluster_hash: publisher
                .is_clustered()
                .then(|| ClusterHash::Custom(redis_keyslot(publisher.id().as_bytes()))),
            ..Options::default()
        });
        let options = &cx.options;
        let stream_client = publisher.with_options(&Options {
            max_attempts: Some(1),
            timeout: Some(options.command_timeout),
            ..Options::default()
        });
        let shared = Arc::new(Shared {
            label: config.server_label(),
            publisher,
            publish_client,
            stream_client,
            streams: Streams::new(),
            owns_publisher,
            template: Template {
                config: template_config,
                performance: config.fred_performance(config.broadcast_capacity),
                connection: config.fred_connection(),
                policy: config.fred_policy(),
            },
            max_payload: config.max_payload(),
            command_timeout: options.command_timeout,
            heartbeat: options.heartbeat,
            pattern_depth: config.pattern_depth,
            max_globs: config.max_globs,
            raw_payloads: config.raw_payloads,
            watchdog: Watchdog::start(options.publish_timeout, &cx.tasks),
            inbound: cx.inbound,
            cx_supervisor: cx.supervisor,
            tasks: cx.tasks,
            subs: (0..=config.pattern_depth)
                .map(|_| OnceCell::new())
                .collect(),
            connections: Mutex::new(Vec::new()),
        });
        shared.start_publisher().await?;
        // The connection of the channels is opened now, so that connect fails when
        // subscriptions cannot work.
        shared.sub(shared.pattern_depth).await?;
        Ok(RedisDriver { shared })
    }
}

impl Shared {
    async fn start_publisher(self: &Arc<Self>) -> Result<()> {
        let link = self.cx_supervisor.link();
        let errors = self.publisher.error_rx();
        let reconnects = self.publisher.reconnect_rx();
        if self.owns_publisher {
            let handle = self
                .publisher
                .init()
                .await
                .map_err(|e| fred_error("connecting the publisher", e))?;
            self.connections.lock().push(handle);
        }
        if self.publisher.is_connected() {
            link.up();
        } else {
            link.down();
        }
        let label = self.label.clone();
        self.tasks
            .spawn(async move { monitor(&label, link, false, errors, reconnects).await });
        self.spawn_heartbeat(self.publisher.clone());
        Ok(())
    }

    /// Sends a `PING` on `client` every heartbeat, so that fred's unresponsive-connection check
    /// (see `RedisConfig::fred_unresponsive`) finds a half-open connection even when it is idle.
    fn spawn_heartbeat(&self, client: Client) {
        let heartbeat = self.heartbeat;
        if heartbeat.is_zero() {
            return;
        }
        self.tasks.spawn(async move {
            let mut tick = tokio::time::interval(heartbeat);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if !client.is_connected() {
                    continue;
                }
                let options = command_options(heartbeat * 3, &client);
                if let Err(error) = client.with_options(&options).ping::<()>(None).await {
                    tracing::debug!(%error, "heartbeat PING failed");
                }
            }
        });
    }

    /// The subscriber connection of `class`, opened on first use.
    async fn sub(self: &Arc<Self>, class: usize) -> Result<&Arc<SubConn>> {
        let cell = self
            .subs
            .get(class)
            .ok_or_else(|| Error::invalid_config(format!("glob class {class} is out of range")))?;
        cell.get_or_try_init(|| self.open_sub(class)).await
    }

    async fn open_sub(self: &Arc<Self>, class: usize) -> Result<Arc<SubConn>> {
        let client = self.template.client();
        let messages = client.message_rx();
        let mut errors = client.error_rx();
        let mut reconnects = client.reconnect_rx();
        let handle = client
            .init()
            .await
            .map_err(|e| fred_error("connecting a subscriber connection", e))?;
        self.connections.lock().push(handle);
        // fred announces its first connection as a reconnect, and `init` has waited for it:
        // that is not an outage, and there is nothing to restore yet.
        while reconnects.try_recv().is_ok() {}
        while errors.try_recv().is_ok() {}
        let link = self.cx_supervisor.link();
        link.up();
        let sub = Arc::new(SubConn {
            class,
            raw_payloads: self.raw_payloads,
            client,
            ops: tokio::sync::Mutex::new(()),
        });
        let reader = sub.clone();
        self.tasks.spawn(drain_broadcast(
            messages,
            self.inbound.clone(),
            "fred's broadcast channel (broadcast_capacity)",
            move |inbound, message| reader.route(inbound, message),
        ));
        self.spawn_heartbeat(sub.client.clone());
        let label = self.label.clone();
        self.tasks
            .spawn(async move { monitor(&label, link, true, errors, reconnects).await });
        tracing::debug!(server = %self.label, class, "opened a Redis subscriber connection");
        Ok(sub)
    }

    /// Applies one (un)subscription of `filters` per connection.
    async fn change(self: &Arc<Self>, filters: &[RedisFilter], subscribe: bool) -> Result<()> {
        let mut by_class: Vec<Vec<&RedisFilter>> = vec![Vec::new(); self.pattern_depth + 1];
        for filter in filters {
            let class = filter.class().unwrap_or(self.pattern_depth);
            by_class
                .get_mut(class)
                .ok_or_else(|| {
                    Error::invalid_config(format!("not a filter of this handle: {filter:?}"))
                })?
                .push(filter);
        }
        for (class, filters) in by_class.into_iter().enumerate() {
            if filters.is_empty() {
                continue;
            }
            let sub = self.sub(class).await?;
            let what = if subscribe {
                "subscribing"
            } else {
                "unsubscribing"
            };
            sub.apply(&filters, subscribe, self.command_timeout)
                .await
                .map_err(|e| fred_error(what, e))?;
        }
        Ok(())
    }

    /// Opens a group member's own connection, where its blocking reads wait.
    async fn open_member(&self) -> Result<MemberConnection> {
        let client = self.template.client();
        let handle = client
            .init()
            .await
            .map_err(|e| fred_error("connecting a group member's connection", e))?;
        tracing::debug!(server = %self.label, "opened a group member's connection");
        Ok(MemberConnection {
            client,
            handle: Mutex::new(Some(handle)),
        })
    }

    /// Quits every client this handle owns; used by `close`.
    async fn shut_down(&self) {
        let members = self.streams.take_members();
        let member_clients = members
            .iter()
            .filter_map(|m| m.connection())
            .map(|c| &c.client);
        // All clients quit at once, so that an outage costs one QUIT_WAIT, not one per client.
        // QUIT is queued behind the publishes in flight, so they are flushed first.
        let mut clients: Vec<&Client> = self
            .subs
            .iter()
            .filter_map(OnceCell::get)
            .map(|sub| &sub.client)
            .chain(member_clients)
            .collect();
        if self.owns_publisher {
            clients.push(&self.publisher);
        }
        futures::future::join_all(clients.into_iter().map(|c| quit(c, &self.label))).await;
        let mut connections: Vec<ConnectHandle> = std::mem::take(&mut *self.connections.lock());
        connections.extend(
            members
                .iter()
                .filter_map(|m| m.connection())
                .filter_map(|c| c.handle.lock().take()),
        );
        futures::future::join_all(connections.into_iter().map(finish)).await;
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Dropped without `close`: stop the connection tasks without waiting.
        for handle in self.connections.get_mut().drain(..) {
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

/// Waits for a connection task to end, stopping it if it does not end by itself soon.
async fn finish(mut handle: ConnectHandle) {
    if tokio::time::timeout(QUIT_WAIT, &mut handle).await.is_err() {
        handle.abort();
        let _ = handle.await;
    }
}

impl SubConn {
    /// (Un)subscribes `filters` and waits until Redis applied it.
    ///
    /// fred resolves a (un)subscribe as soon as the command is handed to the connection,
    /// without waiting for Redis's confirmation, so a `PING` follows on the same connection, in
    /// one pipeline with it ([`confirm`]): Redis answers commands of one connection in order,
    /// so its reply means the change was applied (or carries Redis's refusal). If the connection was re-established meanwhile (fred does not retry a command
    /// written to a connection that then failed), the sequence is repeated.
    async fn apply(
        &self,
        filters: &[&RedisFilter],
        subscribe: bool,
        timeout: Duration,
    ) -> Result<(), fred::error::Error> {
        let _op = self.ops.lock().await;
        let (channels, globs): (Vec<&RedisFilter>, Vec<&RedisFilter>) =
            filters.iter().copied().partition(|f| f.class().is_none());
        let channels: Vec<String> = channels.iter().map(|f| f.native()).collect();
        let globs: Vec<String> = globs.iter().map(|f| f.native()).collect();
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
            let client = self
                .client
                .with_options(&command_options(remaining, &self.client));
            for chunk in channels.chunks(COMMAND_CHUNK) {
                let confirmed = Pipeline::from(client.clone());
                match subscribe {
                    true => confirmed.subscribe(chunk.to_vec()).await?,
                    false => confirmed.unsubscribe(chunk.to_vec()).await?,
                }
                confirm(confirmed).await?;
            }
            for chunk in globs.chunks(COMMAND_CHUNK) {
                let confirmed = Pipeline::from(client.clone());
                match subscribe {
                    true => confirmed.psubscribe(chunk.to_vec()).await?,
                    false => confirmed.punsubscribe(chunk.to_vec()).await?,
                }
                confirm(confirmed).await?;
            }
            if matches!(reconnects.try_recv(), Err(TryRecvError::Empty)) {
                return Ok(());
            }
            tracing::debug!(
                class = self.class,
                "reconnected during a subscription change; repeating it"
            );
        }
    }

    /// Hands one message from Redis to the router, through the native filter it came by.
    fn route(&self, inbound: &Inbound<RedisFilter>, message: fred::types::Message) {
        let payload = match message.value {
            Value::Bytes(bytes) => bytes,
            Value::String(text) => text.into_inner(),
            Value::Null => Bytes::new(),
            other => {
                tracing::debug!(channel = %message.channel, kind = ?other.kind(), "ignoring a pub/sub message that is not a string");
                return;
            }
        };
        let filter = match message.kind {
            MessageKind::Message => None,
            MessageKind::PMessage => match RedisFilter::glob_of(&message.channel, self.class) {
                Some(filter) => Some(filter),
                None => return,
            },
            MessageKind::SMessage => return,
        };
        let Ok(topic) = Topic::new(&message.channel) else {
            tracing::trace!(channel = %message.channel, "ignoring a channel that is not a valid topic");
            return;
        };
        let filter = filter.unwrap_or_else(|| RedisFilter::Channel(topic.clone()));
        let message = if self.raw_payloads {
            headerless::from_payload(topic, payload, true)
        } else {
            stream::live_message(topic, payload)
        };
        inbound.deliver_via(&filter, message);
    }
}

/// Sends the (un)subscription queued in `pipeline` followed by a `PING`, and waits for the
/// `PING`'s reply.
///
/// fred resolves a (un)subscribe without waiting for a reply (Redis confirms it out of band),
/// so an error reply (an ACL's `NOPERM`) goes to the command queued after it on the
/// connection. In one pipeline, fred queues the `PING` before it reads any reply, so the
/// refusal reliably becomes the `PING`'s reply, and this call's error (`NOPERM` → `Auth`).
/// Sent one by one instead, a refusal that arrives before the `PING` is queued is dropped and
/// the subscribe resolves `Ok` with nothing subscribed.
async fn confirm(pipeline: Pipeline<WithOptions<Client>>) -> Result<(), fred::error::Error> {
    pipeline.ping::<()>(None).await?;
    pipeline.last::<()>().await
}

/// Options of a subscriber connection's commands: one attempt within `timeout`; in a cluster,
/// all sent to the node fred sends this client's (un)subscriptions to (the master of the hash
/// slot of its id), so that the `PING` after them answers on the same connection.
fn command_options(timeout: Duration, client: &Client) -> Options {
    Options {
        timeout: Some(timeout),
        max_attempts: Some(1),
        cluster_hash: client
            .is_clustered()
            .then(|| ClusterHash::Custom(redis_keyslot(client.id().as_bytes()))),
        ..Options::default()
    }
}

/// Reports one client's connection events: down when it is lost; up when it is back (for a
/// subscriber connection, "reconnected": the kit restores its subscriptions first).
async fn monitor(
    label: &str,
    link: LinkReporter,
    subscriber: bool,
    mut errors: broadcast::Receiver<(fred::error::Error, Option<fred::types::config::Server>)>,
    mut reconnects: broadcast::Receiver<fred::types::config::Server>,
) {
    // Whether the last event was a loss: fred reports every failed reconnect attempt too, and
    // only the first loss of an outage is worth a warning.
    let mut lost = false;
    loop {
        // Errors first: when both are pending, the loss happened before the recovery.
        tokio::select! {
            biased;
            error = errors.recv() => match error {
                Ok((error, node)) => {
                    let node = node.map(|n| n.to_string()).unwrap_or_default();
                    if lost {
                        tracing::debug!(server = %label, %node, %error, "still reconnecting to Redis");
                    } else {
                        tracing::warn!(server = %label, %node, %error, "lost the connection to Redis; reconnecting");
                    }
                    lost = true;
                    link.down();
                }
                Err(RecvError::Lagged(_)) => link.down(),
                Err(RecvError::Closed) => return,
            },
            event = reconnects.recv() => {
                lost = false;
                match event {
                    Ok(_) | Err(RecvError::Lagged(_)) if subscriber => link.reconnected(),
                    Ok(_) | Err(RecvError::Lagged(_)) => link.up(),
                    Err(RecvError::Closed) => return,
                }
            }
        }
    }
}

/// A fred error raised while doing `context`, classified.
pub(crate) fn fred_error(context: &'static str, source: fred::error::Error) -> Error {
    use fred::error::ErrorKind as K;
    use pubsub_core::ErrorKind;
    let kind = match source.kind() {
        // `WRONGPASS`/`NOAUTH`, an ACL denial (`NOPERM`), or a certificate refused either way.
        K::Auth => ErrorKind::Auth,
        K::Unknown if source.details().starts_with("NOPERM") => ErrorKind::Auth,
        K::Tls | K::IO if tls::is_certificate_error(&source) => ErrorKind::Auth,
        K::Timeout => ErrorKind::Timeout,
        // `Routing` is what fred says for a command it could not write ("Max attempts
        // reached.") when the connection dropped under it.
        K::IO
        | K::Canceled
        | K::Tls
        | K::Protocol
        | K::Routing
        | K::Backpressure
        | K::Cluster
        | K::Sentinel => ErrorKind::Connection,
        // fred also says `Unknown` for a command it could not route to a connection (the
        // connection dropped under it); server error replies (`ERR …`) are `Unknown` too.
        K::Unknown if lost_connection(source.details()) => ErrorKind::Connection,
        K::Config | K::Url => ErrorKind::Invalid,
        _ => ErrorKind::Backend,
    };
    Error::new(kind, context).with_source(source)
}

/// Whether fred's `Unknown` error text says the command found no connection.
fn lost_connection(details: &str) -> bool {
    const MARKS: [&str; 3] = [
        "Failed to route",
        "Missing expected connection",
        "Max attempts",
    ];
    MARKS.iter().any(|mark| details.contains(mark))
}

impl fmt::Debug for RedisDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.shared;
        f.debug_struct("RedisDriver")
            .field("server", &s.label)
            .field("pattern_depth", &s.pattern_depth)
            .field(
                "subscriber_connections",
                &s.subs.iter().filter(|c| c.initialized()).count(),
            )
            .finish()
    }
}

#[async_trait]
impl Driver for RedisDriver {
    type Filter = RedisFilter;

    const BACKEND: &'static str = "redis";

    fn max_payload(&self) -> usize {
        self.shared.max_payload
    }

    fn native_filter(&self, pattern: &Pattern) -> Result<RedisFilter> {
        Ok(glob::native_filter(pattern, self.shared.pattern_depth))
    }

    fn plan_filter(
        &self,
        pattern: &Pattern,
        in_use: &dyn FiltersInUse<RedisFilter>,
    ) -> Result<RedisFilter> {
        let s = &self.shared;
        Ok(plan::plan(pattern, s.pattern_depth, s.max_globs, in_use))
    }

    fn is_wildcard(&self, filter: &RedisFilter) -> bool {
        filter.class().is_some()
    }

    async fn publish(&self, message: Message) -> Result<()> {
        let s = &self.shared;
        let max_frame = s.max_payload.saturating_add(HEADER_ALLOWANCE);
        let frame = headerless::to_payload(&message, s.raw_payloads, max_frame)?;
        if let Some(under) = s.streams.find(message.topic()) {
            let append = s
                .streams
                .append(&s.stream_client, &under, message.topic(), frame);
            return s.watchdog.bound(append).await?;
        }
        let send = s
            .publish_client
            .publish::<(), _, _>(message.topic().as_str(), frame);
        s.watchdog
            .bound(send)
            .await?
            .map_err(|e| fred_error("publishing", e))
    }

    async fn add_filters(&self, filters: &[RedisFilter]) -> Result<()> {
        self.shared.change(filters, true).await
    }

    async fn remove_filters(&self, filters: &[RedisFilter]) -> Result<()> {
        self.shared.change(filters, false).await
    }

    async fn declare_stream(&self, stream: &StreamConfig) -> Result<()> {
        let s = &self.shared;
        if s.raw_payloads {
            return Err(Error::unsupported(
                "a stream carries each message's position in the envelope, and this handle \
                 sends raw payloads",
            ));
        }
        s.streams.declare(&s.publisher, stream).await
    }

    async fn read_stream(
        &self,
        stream: &StreamConfig,
        from: ReadFrom,
        limit: usize,
    ) -> Result<LogRead> {
        let s = &self.shared;
        s.streams.read(&s.stream_client, stream, from, limit).await
    }

    async fn join_group(&self, stream: &StreamConfig, group: &GroupConfig) -> Result<()> {
        let s = &self.shared;
        s.streams.join_group(&s.stream_client, stream, group).await
    }

    async fn read_group(
        &self,
        stream: &StreamConfig,
        group: &GroupConfig,
        member: &str,
        limit: usize,
        wait: Duration,
    ) -> Result<Vec<GroupEntry>> {
        let s = &self.shared;
        s.streams
            .read_group(
                &s.stream_client,
                || s.open_member(),
                s.command_timeout,
                stream,
                group,
                member,
                limit,
                wait,
            )
            .await
    }

    async fn settle_group(
        &self,
        stream: &StreamConfig,
        group: &GroupConfig,
        settlements: &[Settlement],
    ) -> Result<()> {
        let s = &self.shared;
        s.streams
            .settle_group(&s.stream_client, stream, group, settlements)
            .await
    }

    async fn leave_group(&self, stream: &StreamConfig, group: &GroupConfig, member: &str) {
        let s = &self.shared;
        let left = s
            .streams
            .leave_group(&s.stream_client, stream, group, member)
            .await;
        if let Some(connection) = left.as_ref().and_then(|m| m.connection()) {
            quit(&connection.client, &s.label).await;
            let handle = connection.handle.lock().take();
            if let Some(handle) = handle {
                finish(handle).await;
            }
        }
    }

    async fn close(&self) -> Result<()> {
        self.shared.shut_down().await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pubsub_core::ErrorKind;
    use std::error::Error as _;

    #[test]
    fn fred_errors_are_classified_with_their_source() {
        let e = fred_error(
            "publishing",
            fred::error::Error::new(fred::error::ErrorKind::IO, "connection reset"),
        );
        assert_eq!(e.kind(), ErrorKind::Connection);
        assert!(e.is_temporary());
        assert!(e.source().unwrap().to_string().contains("connection reset"));
        let kind = |k| fred_error("x", fred::error::Error::new(k, "")).kind();
        assert_eq!(kind(fred::error::ErrorKind::Timeout), ErrorKind::Timeout);
        assert_eq!(kind(fred::error::ErrorKind::Auth), ErrorKind::Auth);
        assert_eq!(kind(fred::error::ErrorKind::Routing), ErrorKind::Connection);
        let unknown = |text| {
            fred_error(
                "x",
                fred::error::Error::new(fred::error::ErrorKind::Unknown, text),
            )
            .kind()
        };
        assert_eq!(unknown("Failed to route command."), ErrorKind::Connection);
        assert_eq!(
            unknown("NOPERM this user has no permissions"),
            ErrorKind::Auth
        );
        assert_eq!(unknown("ERR unknown command"), ErrorKind::Backend);
        let refused = "Custom { kind: InvalidData, error: InvalidCertificate(UnknownIssuer) }";
        for k in [fred::error::ErrorKind::Tls, fred::error::ErrorKind::IO] {
            let e = fred_error("x", fred::error::Error::new(k, refused));
            assert_eq!(e.kind(), ErrorKind::Auth);
            assert!(!e.is_temporary());
        }
    }
}
