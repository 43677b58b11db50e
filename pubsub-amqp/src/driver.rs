//! [`AmqpDriver`]: the AMQP half of a handle (publish with confirms, bindings, the consumer,
//! reconnects); the kit does the rest.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::protocol::{AMQPErrorKind, AMQPHardError, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, Consumer,
    ExchangeKind,
};
use parking_lot::RwLock;
use pubsub_core::adapter::{
    tls, Context, Driver, Inbound, LinkReporter, LogRead, ReadFrom, Tasks, Watchdog,
};
use pubsub_core::adapter::{GroupEntry, Settlement};
use pubsub_core::{Error, ErrorKind, GroupConfig, Message, Pattern, Result, StreamConfig, Topic};
use tokio::sync::Notify;

use crate::group::{join, layout, Groups, Join, Member, Settle, StreamLog};
use crate::stream::{self, Stream, Streams};
use crate::{binding, exchange, headers, AmqpConfig};

/// Deliveries a read of a stream's log may have in flight (`basic.qos` of the reader
/// channel and of each read's own): more than a read takes at once.
pub(crate) const READ_PREFETCH: u16 = 600;

/// The native filter of a pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Filter {
    /// A binding of the handle's queue to the exchange.
    Key(ShortString),
    /// The live consumer of a stream queue (every pattern under a declared stream).
    Stream(ShortString),
}

/// Where connections come from.
pub(crate) enum Source {
    /// The adapter connects, and reconnects, itself.
    Own,
    /// The application's connection: the adapter only opens channels on it.
    App(Arc<Connection>),
}

/// The AMQP [`Driver`]: one connection (or the application's), one confirm-mode channel for
/// publishing, one channel for bindings, and one channel for the handle's queue and its
/// consumer.
///
/// A broker refusal (`ACCESS_REFUSED` for a routing or binding key the user's topic permissions
/// deny) closes the channel it happened on. Publishes and bindings therefore have channels of
/// their own, which are replaced after such a refusal, so that it fails that operation only
/// (with `Auth`) and never takes the consumer down: no reconnect, no outage for the handle's
/// other subscriptions.
pub(crate) struct AmqpDriver {
    shared: Arc<Shared>,
}

struct Shared {
    source: Source,
    config: AmqpConfig,
    exchange: ShortString,
    queue: ShortString,
    session: RwLock<Option<Arc<Session>>>,
    /// Woken by an operation that found a channel closed.
    failed: Notify,
    watchdog: Arc<Watchdog>,
    inbound: Inbound<Filter>,
    /// The streams declared through this handle.
    streams: Streams,
    /// The group members of this handle.
    groups: Groups,
    link: LinkReporter,
    tasks: Tasks,
}

/// One connection's channels.
struct Session {
    connection: Arc<Connection>,
    /// Confirm-mode channel for publishing; replaced when the broker closes it.
    publisher: RwLock<Channel>,
    /// Channel for binding and unbinding; replaced when the broker closes it.
    binder: RwLock<Channel>,
    /// Channel the reads of streams' logs consume on; replaced when the broker closes it.
    reader: RwLock<Channel>,
    /// The channel of each stream queue's live consumer.
    lives: parking_lot::Mutex<HashMap<ShortString, Channel>>,
    /// The queue's channel: its consumer and acknowledgements. When it closes, the session
    /// is broken and the handle reconnects.
    channel: Channel,
    /// Serialises channel replacements (several operations may find one channel closed).
    repairing: tokio::sync::Mutex<()>,
}

/// A channel of a session that is replaced on its own when the broker closes it.
#[derive(Debug, Clone, Copy)]
enum Spare {
    Publisher,
    Binder,
    Reader,
}

impl Session {
    /// Closes our connection or, on the application's, our channels (which cancels the
    /// consumer, so that the broker deletes the auto-delete queue).
    async fn close(&self, source: &Source) -> lapin::Result<()> {
        match source {
            Source::Own if !self.connection.status().connected() => Ok(()),
            Source::Own => match self.connection.close(200, "OK".into()).await {
                // A channel being opened as the connection closes (a group member's, say)
                // gets its `channel.open-ok` while closing, which fails the close's answer;
                // the connection is closed all the same.
                Err(error) if !self.connection.status().connected() => {
                    tracing::debug!(%error, "closing the AMQP connection reported an error");
                    Ok(())
                }
                closed => closed,
            },
            Source::App(_) => {
                let publisher = self.publisher.read().clone();
                let binder = self.binder.read().clone();
                let reader = self.reader.read().clone();
                let lives: Vec<Channel> = self.lives.lock().drain().map(|(_, c)| c).collect();
                for channel in [publisher, binder, reader].into_iter().chain(lives) {
                    let _ = channel.close(200, "OK".into()).await;
                }
                self.channel.close(200, "OK".into()).await
            }
        }
    }

    /// Whether the connection or the consumer's channel is gone: only a reconnect helps.
    fn is_broken(&self) -> bool {
        !(self.connection.status().connected() && self.channel.status().connected())
    }

    fn spare(&self, which: Spare) -> &RwLock<Channel> {
        match which {
            Spare::Publisher => &self.publisher,
            Spare::Binder => &self.binder,
            Spare::Reader => &self.reader,
        }
    }

    /// Replaces the `which` channel, if it is still the channel `failed` (its id) an operation
    /// failed on, while the connection stays up: a refusal closes the channel it happened on
    /// (the channel may not say so yet when the operation's error arrives).
    async fn repair(&self, which: Spare, failed: u16) -> lapin::Result<()> {
        let _one = self.repairing.lock().await;
        let slot = self.spare(which);
        if slot.read().id() != failed || !self.connection.status().connected() {
            return Ok(());
        }
        let channel = self.connection.create_channel().await?;
        match which {
            Spare::Publisher => {
                channel
                    .confirm_select(ConfirmSelectOptions::default())
                    .await?
            }
            Spare::Reader => {
                channel
                    .basic_qos(READ_PREFETCH, BasicQosOptions::default())
                    .await?
            }
            Spare::Binder => {}
        }
        tracing::debug!(?which, "replaced an AMQP channel the broker closed");
        *slot.write() = channel;
        Ok(())
    }
}

impl AmqpDriver {
    /// Opens the first session (so that connect fails when the broker cannot be used) and
    /// starts the task that consumes, notices failures and reconnects.
    pub(crate) async fn open(
        config: AmqpConfig,
        source: Source,
        cx: Context<Filter>,
    ) -> Result<AmqpDriver> {
        let queue = format!("pubsub.{:016x}", rand::random::<u64>());
        let shared = Arc::new(Shared {
            source,
            exchange: ShortString::from(config.exchange.as_str()),
            queue: ShortString::from(queue),
            watchdog: Watchdog::start(cx.options.publish_timeout, &cx.tasks),
            config: AmqpConfig {
                options: cx.options,
                ..config
            },
            session: RwLock::new(None),
            failed: Notify::new(),
            inbound: cx.inbound,
            streams: Streams::default(),
            groups: Groups::default(),
            link: cx.supervisor.link(),
            tasks: cx.tasks.clone(),
        });
        let (session, consumer) = shared.open_session().await?;
        *shared.session.write() = Some(session.clone());
        shared.link.up();
        cx.tasks.spawn(shared.clone().run(session, consumer));
        Ok(AmqpDriver { shared })
    }
}

impl Shared {
    fn session(&self) -> Result<Arc<Session>> {
        self.session
            .read()
            .clone()
            .ok_or_else(|| Error::new(ErrorKind::Connection, "not connected to the AMQP broker"))
    }

    /// After an operation on the `which` channel (id `failed`) of `session` failed: replaces
    /// that channel, and wakes the consumer task, which reconnects, if the session is
    /// broken.
    async fn recover(&self, session: &Session, which: Spare, failed: u16) {
        let repair = session.repair(which, failed);
        if let Err(error) = bounded(self.config.options.command_timeout, "reopening", repair).await
        {
            tracing::debug!(%error, ?which, "reopening an AMQP channel failed; reconnecting");
            self.failed.notify_one();
        }
        if session.is_broken() {
            self.failed.notify_one();
        }
    }

    /// Connects (unless the connection is the application's) and sets up the channels, the
    /// exchange, the handle's queue and its consumer.
    async fn open_session(&self) -> Result<(Arc<Session>, Consumer)> {
        let connection = match &self.source {
            Source::Own => {
                let properties =
                    ConnectionProperties::default().with_connection_name("pubsub".into());
                let tls = self.config.lapin_tls().await?;
                let runtime = lapin::runtime::default_runtime()
                    .map_err(|e| lapin_error("starting the AMQP client", e))?;
                let connect = Connection::connect_uri_with_config(
                    self.config.uri(),
                    properties,
                    tls,
                    runtime,
                );
                Arc::new(bounded(self.config.options.connect_timeout, "connecting", connect).await?)
            }
            Source::App(connection) => connection.clone(),
        };
        let setup = async {
            let publisher = connection.create_channel().await?;
            publisher
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
            let binder = connection.create_channel().await?;
            let reader = connection.create_channel().await?;
            reader
                .basic_qos(READ_PREFETCH, BasicQosOptions::default())
                .await?;
            let channel =
                exchange::declare(&connection, &self.exchange, self.config.durable_exchange)
                    .await?;
            // What the bounded queue drops is dead-lettered, with its routing key, to a
            // fanout exchange of this handle and counted from there as gaps.
            let dropped = ShortString::from(format!("{}.dropped", self.queue));
            let auto_delete = ExchangeDeclareOptions {
                auto_delete: true,
                ..ExchangeDeclareOptions::default()
            };
            channel
                .exchange_declare(
                    dropped.clone(),
                    ExchangeKind::Fanout,
                    auto_delete,
                    FieldTable::default(),
                )
                .await?;
            let arguments = FieldTable::from(BTreeMap::from([
                (
                    "x-max-length".into(),
                    AMQPValue::LongLongInt(self.config.queue_max_length.into()),
                ),
                (
                    "x-overflow".into(),
                    AMQPValue::LongString("drop-head".into()),
                ),
                (
                    "x-dead-letter-exchange".into(),
                    AMQPValue::LongString(dropped.as_str().into()),
                ),
            ]));
            let queue = QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            };
            channel
                .queue_declare(self.queue.clone(), queue, arguments)
                .await?;
            channel
                .basic_qos(self.config.prefetch, BasicQosOptions::default())
                .await?;
            // The drops queue only carries counts: its bodies are not needed, so it keeps
            // few (what it drops itself is lost uncounted, and logged as such by nobody).
            let drops_args = FieldTable::from(BTreeMap::from([(
                "x-max-length".into(),
                AMQPValue::LongLongInt(DROPS_QUEUE_LENGTH),
            )]));
            channel
                .queue_declare(dropped.clone(), queue, drops_args)
                .await?;
            channel
                .queue_bind(
                    dropped.clone(),
                    dropped.clone(),
                    "".into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            let drops = channel
                .basic_consume(
                    dropped,
                    "".into(),
                    BasicConsumeOptions {
                        no_ack: true,
                        ..BasicConsumeOptions::default()
                    },
                    FieldTable::default(),
                )
                .await?;
            let consumer = channel
                .basic_consume(
                    self.queue.clone(),
                    "".into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            Ok((publisher, binder, reader, channel, consumer, drops))
        };
        // On failure the channels (and our own connection) close as they are dropped.
        let (publisher, binder, reader, channel, consumer, drops) = bounded(
            self.config.options.command_timeout,
            "setting up the AMQP channels",
            setup,
        )
        .await?;
        self.tasks.spawn(count_drops(drops, self.inbound.clone()));
        Ok((
            Arc::new(Session {
                connection,
                publisher: RwLock::new(publisher),
                binder: RwLock::new(binder),
                reader: RwLock::new(reader),
                lives: parking_lot::Mutex::new(HashMap::new()),
                channel,
                repairing: tokio::sync::Mutex::new(()),
            }),
            consumer,
        ))
    }

    /// Consumes until the session fails, then reports the link down, reconnects (never giving
    /// up) and reports it reconnected, so that the kit binds every filter again.
    async fn run(self: Arc<Self>, mut session: Arc<Session>, mut consumer: Consumer) {
        loop {
            self.consume(&session, &mut consumer).await;
            self.session.write().take();
            self.link.down();
            tracing::warn!(queue = %self.queue, "lost the AMQP connection or channel; reconnecting");
            // Our connection is closed so that the exclusive queue can be declared again.
            let closing = session.close(&self.source);
            let _ = tokio::time::timeout(self.config.options.command_timeout, closing).await;
            let mut delays = self.config.options.backoff.delays();
            (session, consumer) = loop {
                tokio::time::sleep(delays.next().unwrap_or(self.config.options.backoff.max)).await;
                match self.open_session().await {
                    Ok(opened) => break opened,
                    Err(error) => tracing::debug!(%error, "AMQP reconnect attempt failed"),
                }
            };
            *self.session.write() = Some(session.clone());
            self.link.reconnected();
        }
    }

    /// Hands every delivery to the router, acknowledging them in batches (one `multiple` ack
    /// when nothing more is ready, or every `prefetch / 2`); returns when the session fails.
    async fn consume(&self, session: &Session, consumer: &mut Consumer) {
        let ack_every = u64::from(self.config.prefetch / 2).max(1);
        let (mut last, mut unacked) = (0, 0);
        loop {
            let next = match consumer.next().now_or_never() {
                Some(next) if unacked < ack_every => next,
                ready => {
                    if unacked > 0 && self.ack(session, last).await.is_err() {
                        return;
                    }
                    unacked = 0;
                    match ready {
                        Some(next) => next,
                        None => tokio::select! {
                            next = consumer.next() => next,
                            () = self.failed.notified() => match session.is_broken() {
                                true => return,
                                false => continue,
                            },
                        },
                    }
                }
            };
            match next {
                Some(Ok(delivery)) => {
                    last = delivery.delivery_tag;
                    unacked += 1;
                    self.deliver(delivery);
                }
                Some(Err(error)) => {
                    tracing::debug!(%error, "the AMQP consumer failed");
                    return;
                }
                None => return,
            }
        }
    }

    async fn ack(&self, session: &Session, tag: u64) -> lapin::Result<()> {
        session
            .channel
            .basic_ack(tag, BasicAckOptions { multiple: true })
            .await
    }

    fn deliver(&self, delivery: Delivery) {
        let Ok(topic) = Topic::new(delivery.routing_key.as_str()) else {
            tracing::trace!(key = %delivery.routing_key, "ignoring a routing key that is not a valid topic");
            return;
        };
        if self.streams.delivered_live(&topic) {
            // The stream's live consumer delivers it, with its position.
            return;
        }
        let headers = headers::decode(delivery.properties.headers().as_ref());
        self.inbound
            .deliver(Message::with_headers(topic, delivery.data, headers));
    }

    /// Starts the live consumer of each stream queue in `queues` that has none in this
    /// session (`x-stream-offset: next`, on a channel of its own, so that its `multiple`
    /// acknowledgements are its own).
    async fn attach_streams(self: &Arc<Self>, queues: &[ShortString]) -> Result<()> {
        let session = self.session()?;
        for queue in queues {
            let Some(stream) = self.streams.by_queue(queue) else {
                continue;
            };
            if session.lives.lock().contains_key(queue) {
                continue;
            }
            let prefetch = self.config.prefetch;
            let open = async {
                let channel = session.connection.create_channel().await?;
                channel
                    .basic_qos(prefetch, BasicQosOptions::default())
                    .await?;
                let next = AMQPValue::LongString("next".into());
                let consumer = stream::consume(&channel, queue, next).await?;
                Ok((channel, consumer))
            };
            let timeout = self.config.options.command_timeout;
            let (channel, consumer) = bounded(timeout, "consuming a stream queue", open).await?;
            let generation = stream.attach();
            session.lives.lock().insert(queue.clone(), channel.clone());
            self.tasks.spawn(self.clone().follow(
                session.clone(),
                stream,
                generation,
                channel,
                consumer,
            ));
        }
        Ok(())
    }

    /// Runs the live consumer of `stream`; when it ends without being stopped (its channel
    /// closed by the broker, the queue deleted) while the session lives, closes the session
    /// so that the handle reconnects: its stream subscriptions then read what they missed
    /// from the log, and the consumer starts again.
    async fn follow(
        self: Arc<Self>,
        session: Arc<Session>,
        stream: Arc<Stream>,
        generation: u64,
        channel: Channel,
        consumer: Consumer,
    ) {
        let id = channel.id();
        let inbound = self.inbound.clone();
        let prefetch = self.config.prefetch;
        stream::follow(
            stream.clone(),
            generation,
            channel,
            consumer,
            prefetch,
            |m| inbound.deliver(m),
        )
        .await;
        stream.detach(generation);
        let stopped = {
            let mut lives = session.lives.lock();
            match lives.get(&stream.queue) {
                Some(channel) if channel.id() == id => {
                    lives.remove(&stream.queue);
                    false
                }
                _ => true,
            }
        };
        if !stopped && !session.is_broken() {
            tracing::warn!(queue = %stream.queue, "a stream queue's consumer ended; reconnecting");
            let closing = session.channel.close(200, "OK".into());
            let _ = tokio::time::timeout(self.config.options.command_timeout, closing).await;
            self.failed.notify_one();
        }
    }

    /// Stops the live consumers of `queues`.
    async fn detach_streams(&self, queues: &[ShortString]) -> Result<()> {
        let Ok(session) = self.session() else {
            return Ok(());
        };
        for queue in queues {
            let channel = session.lives.lock().remove(queue);
            if let Some(channel) = channel {
                let closing = channel.close(200, "OK".into());
                let _ = tokio::time::timeout(self.config.options.command_timeout, closing).await;
            }
        }
        Ok(())
    }

    /// Adds or removes `filters`: bindings of the handle's queue, and live consumers of
    /// stream queues.
    async fn apply(self: &Arc<Self>, filters: &[Filter], add: bool) -> Result<()> {
        let (mut keys, mut queues) = (Vec::new(), Vec::new());
        for filter in filters {
            match filter {
                Filter::Key(key) => keys.push(key.clone()),
                Filter::Stream(queue) => queues.push(queue.clone()),
            }
        }
        if !keys.is_empty() {
            self.change(&keys, add).await?;
        }
        match (queues.is_empty(), add) {
            (true, _) => Ok(()),
            (false, true) => self.attach_streams(&queues).await,
            (false, false) => self.detach_streams(&queues).await,
        }
    }

    /// Binds or unbinds every key at once, then waits for the broker's answers.
    ///
    /// A refusal closes the binding channel, failing whatever else was under way on it; a
    /// change that failed because its channel was closed under it (not refused itself) is
    /// made once more on the new channel (binding and unbinding again are harmless). An unbind
    /// the user's permissions refuse is done: such a binding cannot exist.
    async fn change(&self, keys: &[ShortString], bind: bool) -> Result<()> {
        let session = self.session()?;
        let what = if bind { "binding" } else { "unbinding" };
        let mut result = Ok(());
        for attempt in 0..2 {
            let ch = session.binder.read().clone();
            result = bounded(
                self.config.options.command_timeout,
                what,
                self.bind_all(&ch, keys, bind),
            )
            .await;
            let Err(error) = &result else {
                return Ok(());
            };
            self.recover(&session, Spare::Binder, ch.id()).await;
            match error.kind() {
                ErrorKind::Auth if !bind => {
                    tracing::debug!(%error, "an unbind was refused: the binding cannot exist");
                    return Ok(());
                }
                ErrorKind::Connection if attempt == 0 && !session.is_broken() => continue,
                _ => break,
            }
        }
        result
    }

    /// Binds (or unbinds) every key on `ch` at once.
    async fn bind_all(&self, ch: &Channel, keys: &[ShortString], bind: bool) -> lapin::Result<()> {
        let all = keys.iter().map(|key| {
            let (q, x, k, args) = (
                self.queue.clone(),
                self.exchange.clone(),
                key.clone(),
                FieldTable::default(),
            );
            async move {
                match bind {
                    true => {
                        ch.queue_bind(q, x, k, QueueBindOptions::default(), args)
                            .await
                    }
                    false => ch.queue_unbind(q, x, k, args).await,
                }
            }
        });
        futures::future::try_join_all(all).await.map(drop)
    }
}

impl Shared {
    /// Reads at most `limit` entries of `config`'s log from `from`.
    async fn read_log(
        &self,
        config: &StreamConfig,
        from: ReadFrom,
        limit: usize,
    ) -> Result<LogRead> {
        let stream = self.stream_of(config)?;
        let session = self.session()?;
        let reader = session.reader.read().clone();
        let bound = self.config.options.command_timeout;
        let read = stream::read(&stream, &reader, &session.connection, from, limit, bound).await;
        if read.is_err() && !reader.status().connected() {
            self.recover(&session, Spare::Reader, reader.id()).await;
        }
        read
    }

    /// The end of `config`'s log at the broker now (a position offset), probed.
    async fn end_of_log(&self, config: &StreamConfig) -> Result<u64> {
        let stream = self.stream_of(config)?;
        let session = self.session()?;
        let reader = session.reader.read().clone();
        let end = stream::end_now(&stream, &reader, self.config.options.command_timeout).await;
        if end.is_err() && !reader.status().connected() {
            self.recover(&session, Spare::Reader, reader.id()).await;
        }
        end.map_err(|e| lapin_error("finding the end of a stream's log", e))
    }

    /// The stream declared through this handle for `config`.
    fn stream_of(&self, config: &StreamConfig) -> Result<Arc<Stream>> {
        self.streams.by_root(config.root()).ok_or_else(|| {
            Error::new(
                ErrorKind::Invalid,
                format!("stream `{}` is not declared on this handle", config.root()),
            )
        })
    }
}

impl StreamLog for Shared {
    fn read<'a>(
        &'a self,
        stream: &'a StreamConfig,
        from: ReadFrom,
        limit: usize,
    ) -> BoxFuture<'a, Result<LogRead>> {
        self.read_log(stream, from, limit).boxed()
    }

    fn end<'a>(&'a self, stream: &'a StreamConfig) -> BoxFuture<'a, Result<u64>> {
        self.end_of_log(stream).boxed()
    }
}

/// Most dead-lettered messages the drops queue holds (they only carry counts).
const DROPS_QUEUE_LENGTH: i64 = 10_000;

/// Counts what the handle's queue dropped (dead-lettered to its drops queue, with the original
/// routing key) as gaps of the subscriptions matching each topic; ends with its session.
async fn count_drops(mut drops: Consumer, inbound: Inbound<Filter>) {
    while let Some(Ok(delivery)) = drops.next().await {
        match Topic::new(delivery.routing_key.as_str()) {
            Ok(topic) => inbound.lost(&topic, 1),
            Err(_) => inbound.record_lost(1),
        }
    }
}

/// `operation` within `limit`, with its lapin error classified.
async fn bounded<T>(
    limit: Duration,
    what: &'static str,
    operation: impl Future<Output = lapin::Result<T>>,
) -> Result<T> {
    match tokio::time::timeout(limit, operation).await {
        Ok(result) => result.map_err(|e| lapin_error(what, e)),
        Err(_) => Err(Error::timeout(format!(
            "{what}: no answer from the broker within {limit:?}"
        ))),
    }
}

/// `operation` within `limit`.
async fn bounded_result<T>(
    limit: Duration,
    what: &'static str,
    operation: impl Future<Output = Result<T>>,
) -> Result<T> {
    match tokio::time::timeout(limit, operation).await {
        Ok(result) => result,
        Err(_) => Err(Error::timeout(format!(
            "{what}: no answer from the broker within {limit:?}"
        ))),
    }
}

/// A lapin error raised while doing `context`, classified: refused credentials or access
/// (`ACCESS_REFUSED`, `NOT_ALLOWED`) are `Auth`, other refusals by the broker `Backend`,
/// everything else about the connection `Connection`.
pub(crate) fn lapin_error(context: &'static str, source: lapin::Error) -> Error {
    let kind = match source.kind() {
        lapin::ErrorKind::ProtocolError(e) => match e.kind() {
            AMQPErrorKind::Hard(AMQPHardError::CONNECTIONFORCED) => ErrorKind::Connection,
            AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED)
            | AMQPErrorKind::Hard(AMQPHardError::NOTALLOWED) => ErrorKind::Auth,
            _ => ErrorKind::Backend,
        },
        lapin::ErrorKind::AuthProviderError(_) => ErrorKind::Auth,
        _ if tls::is_certificate_error(&source) => ErrorKind::Auth,
        _ => ErrorKind::Connection,
    };
    Error::new(kind, context).with_source(source)
}

impl fmt::Debug for AmqpDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.shared;
        f.debug_struct("AmqpDriver")
            .field("exchange", &s.exchange)
            .field("queue", &s.queue)
            .field("own_connection", &matches!(s.source, Source::Own))
            .field("connected", &s.session.read().is_some())
            .finish()
    }
}

#[async_trait]
impl Driver for AmqpDriver {
    type Filter = Filter;

    const BACKEND: &'static str = "amqp";

    fn max_payload(&self) -> usize {
        self.shared.config.max_payload()
    }

    fn native_filter(&self, pattern: &Pattern) -> Result<Filter> {
        if let Some(stream) = self.shared.streams.under(pattern) {
            return Ok(Filter::Stream(stream.queue.clone()));
        }
        Ok(Filter::Key(binding::binding_key(pattern)))
    }

    async fn publish(&self, message: Message) -> Result<()> {
        let s = &self.shared;
        let mut properties = BasicProperties::default();
        if let Some(table) = headers::encode(message.headers())? {
            properties = properties.with_headers(table);
        }
        let session = s.session()?;
        let key = ShortString::from(message.topic().as_str());
        let publisher = session.publisher.read().clone();
        let send = async {
            let options = BasicPublishOptions::default();
            let payload = message.payload();
            let confirm = publisher
                .basic_publish(s.exchange.clone(), key, options, payload, properties)
                .await?;
            confirm.await
        };
        let confirmation = match s.watchdog.bound(send).await? {
            Ok(confirmation) => confirmation,
            Err(error) => {
                s.recover(&session, Spare::Publisher, publisher.id()).await;
                return Err(lapin_error("publishing", error));
            }
        };
        match confirmation {
            Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
            Confirmation::Nack(_) => Err(Error::new(ErrorKind::Backend, "the broker nacked it")),
            Confirmation::Ack(Some(returned)) => Err(Error::new(
                ErrorKind::Backend,
                format!("the broker returned it: {}", returned.reply_text),
            )),
        }
    }

    async fn add_filters(&self, filters: &[Filter]) -> Result<()> {
        self.shared.apply(filters, true).await
    }

    async fn remove_filters(&self, filters: &[Filter]) -> Result<()> {
        self.shared.apply(filters, false).await
    }

    async fn declare_stream(&self, config: &StreamConfig) -> Result<()> {
        let s = &self.shared;
        let queue = stream::queue_name(&s.config.exchange, config);
        let session = s.session()?;
        let declare = stream::epoch::declare(&session.connection, &s.exchange, &queue, config);
        let limit = s.config.options.command_timeout;
        let epoch = match tokio::time::timeout(limit, declare).await {
            Ok(declared) => declared?,
            Err(_) => {
                return Err(Error::timeout(format!(
                    "declaring the stream queue: no answer from the broker within {limit:?}"
                )))
            }
        };
        let stream = Arc::new(Stream::new(config.clone(), queue, epoch));
        s.streams.insert(stream);
        Ok(())
    }

    async fn read_stream(
        &self,
        config: &StreamConfig,
        from: ReadFrom,
        limit: usize,
    ) -> Result<LogRead> {
        self.shared.read_log(config, from, limit).await
    }

    async fn join_group(&self, config: &StreamConfig, group: &GroupConfig) -> Result<()> {
        let s = &self.shared;
        let stream = s.stream_of(config)?;
        let join = Join {
            connection: s.session()?.connection.clone(),
            exchange: s.exchange.clone(),
            stream: config.clone(),
            epoch: stream.epoch,
            log: s.clone(),
            tasks: s.tasks.clone(),
            // The kit waits for the join up to the command timeout.
            budget: s.config.options.command_timeout * 3 / 4,
        };
        join.run(&s.groups, group).await
    }

    async fn read_group(
        &self,
        config: &StreamConfig,
        group: &GroupConfig,
        member: &str,
        limit: usize,
        wait: Duration,
    ) -> Result<Vec<GroupEntry>> {
        let s = &self.shared;
        let member = match s.groups.open_member(member) {
            Some(member) => member,
            None => {
                let session = s.session()?;
                let queue = layout::queue_name(&s.config.exchange, config, group);
                let timeout = s.config.options.command_timeout;
                if s.groups.member(member).is_some() {
                    // The member's channel was lost (a reconnect).
                    let rebind = join::rebind(&session.connection, &s.exchange, config, group);
                    bounded_result(timeout, "binding the group's queue again", rebind).await?;
                }
                let open = Member::open(&session.connection, &queue, group, member, &s.tasks);
                let member = bounded(timeout, "consuming the group's queue", open).await?;
                s.groups.insert(member.clone());
                member
            }
        };
        member.read(limit, wait).await
    }

    async fn settle_group(
        &self,
        _config: &StreamConfig,
        _group: &GroupConfig,
        settlements: &[Settlement],
    ) -> Result<()> {
        let s = &self.shared;
        let mut batches: Vec<(Arc<Member>, Vec<Settle>)> = Vec::new();
        for settlement in settlements {
            let receipt = settlement.receipt();
            // A member gone, or another incarnation of it: its channel closed, so the broker
            // gave the delivery back.
            let Some(member) = receipt.token.as_deref().and_then(|m| s.groups.member(m)) else {
                continue;
            };
            if member.incarnation != receipt.offset.0 {
                continue;
            }
            let tag = receipt.offset.1;
            let settle = match settlement {
                Settlement::Ack(_) => Settle::Ack(tag),
                Settlement::Nack(_, delay) => Settle::Nack(tag, *delay),
            };
            match batches.iter_mut().find(|(m, _)| Arc::ptr_eq(m, &member)) {
                Some((_, batch)) => batch.push(settle),
                None => batches.push((member, vec![settle])),
            }
        }
        for (member, batch) in batches {
            member.settle(&batch).await?;
        }
        Ok(())
    }

    async fn leave_group(&self, _config: &StreamConfig, _group: &GroupConfig, member: &str) {
        if let Some(member) = self.shared.groups.remove(member) {
            member.close().await;
        }
    }

    async fn close(&self) -> Result<()> {
        for member in self.shared.groups.drain() {
            member.close().await;
        }
        let Some(session) = self.shared.session.write().take() else {
            return Ok(());
        };
        let closing = session.close(&self.shared.source).await;
        closing.map_err(|e| lapin_error("closing", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::protocol::AMQPError;
    use std::error::Error as _;

    #[test]
    fn lapin_errors_are_classified_with_their_source() {
        let amqp = |kind| lapin::ErrorKind::ProtocolError(AMQPError::new(kind, "x".into())).into();
        let e = lapin_error(
            "binding",
            amqp(AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND)),
        );
        assert_eq!(e.kind(), ErrorKind::Backend);
        assert!(e.source().is_some());
        let forced = amqp(AMQPErrorKind::Hard(AMQPHardError::CONNECTIONFORCED));
        assert_eq!(lapin_error("x", forced).kind(), ErrorKind::Connection);
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        let e = lapin_error("publishing", lapin::Error::from(io));
        assert!(e.kind() == ErrorKind::Connection && e.is_temporary());
        for refused in [
            AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED),
            AMQPErrorKind::Hard(AMQPHardError::NOTALLOWED),
        ] {
            let e = lapin_error("connecting", amqp(refused));
            assert!(e.kind() == ErrorKind::Auth && !e.is_temporary(), "{e:?}");
        }
    }
}
