//! [`NatsDriver`]: subjects, `SUB`/`UNSUB`, publish and close, translated to async-nats.

use std::fmt;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use async_nats::connection::State;
use async_nats::{Client, Subject, Subscriber};
use async_trait::async_trait;
use bytes::Bytes;
use futures::{FutureExt, StreamExt};

use pubsub_core::adapter::{
    Context, Driver, FilterReaders, GroupEntry, Inbound, LogRead, ReadFrom, Refusals, Settlement,
    Tasks, TopicMemo,
};
use pubsub_core::{
    CommonOptions, Error, ErrorKind, GroupConfig, Message, Pattern, Result, StreamConfig, Topic,
    MAX_TOPIC_LEN,
};

use crate::group::Groups;
use crate::stream::{self, Declared, StreamFilters, Streams};
use crate::{error, headers};

/// How many times a subscribe yields to async-nats's event task before it trusts that no
/// permission violation is pending for its `SUB`s. A yield costs about a microsecond on an
/// idle runtime; on a busy one each lets the event task's turn come (4 were not enough on two
/// loaded cores).
const EVENT_YIELDS: usize = 64;

/// The NATS [`Driver`]: one async-nats client connection per handle; a native filter is a
/// subject (with NATS's own `*` and `>`), one NATS subscription each.
pub(crate) struct NatsDriver {
    client: Client,
    inbound: Inbound<String>,
    tasks: Tasks,
    options: CommonOptions,
    /// Whether the driver made the connection (and so drains it on close).
    owned: bool,
    readers: FilterReaders<String>,
    /// The readers of the streams' feeds, by stream name.
    feeds: FilterReaders<String>,
    barrier: tokio::sync::Mutex<Option<Barrier>>,
    /// Permission violations the server reported (none recorded for a foreign client).
    violations: std::sync::Arc<Refusals>,
    /// The streams declared on this handle (JetStream).
    streams: Streams,
    /// The groups joined on this handle (JetStream consumers).
    groups: Groups,
}

/// A private subscription that tells when the server has processed everything sent before.
///
/// NATS handles a connection's operations in order, so once a message published to `subject`
/// comes back, every earlier `SUB` and `UNSUB` is in effect. The subject is longer than any
/// portable topic, so no portable subscription ever sees it (a `>` filter receives it, and the
/// reader skips it as not a topic).
struct Barrier {
    subject: Subject,
    subscriber: Subscriber,
    seq: u64,
}

impl NatsDriver {
    /// Wraps a connected client; `owned` when the driver made the connection.
    pub(crate) async fn start(
        client: Client,
        cx: Context<String>,
        owned: bool,
        violations: std::sync::Arc<Refusals>,
    ) -> Result<Self> {
        let mut subject = format!("{}.pubsub-barrier.", client.new_inbox());
        let pad = (MAX_TOPIC_LEN + 1).saturating_sub(subject.len()).max(1);
        subject.extend(std::iter::repeat_n('_', pad));
        let subject = Subject::from(subject);
        let subscribe = client.subscribe(subject.clone());
        let subscriber = tokio::time::timeout(cx.options.command_timeout, subscribe)
            .await
            .map_err(|_| Error::timeout("subscribing to the private barrier subject"))?
            .map_err(error::subscribe)?;
        let streams = Streams::new(
            client.clone(),
            cx.options.command_timeout,
            cx.supervisor.watch(),
        );
        Ok(NatsDriver {
            streams,
            groups: Groups::new(client.clone()),
            client,
            inbound: cx.inbound,
            tasks: cx.tasks,
            options: cx.options,
            owned,
            readers: FilterReaders::default(),
            feeds: FilterReaders::default(),
            barrier: tokio::sync::Mutex::new(Some(Barrier {
                subject,
                subscriber,
                seq: 0,
            })),
            violations,
        })
    }

    /// What async-nats sends for `message`: subject, headers and payload, once the size
    /// (headers included) is checked against the server's limit.
    fn prepare(
        &self,
        message: &Message,
    ) -> Result<(Subject, Option<async_nats::HeaderMap>, Bytes)> {
        let headers = headers::to_nats(message.headers())?;
        let size = message.payload().len() + headers.as_ref().map_or(0, headers::wire_len);
        let max = self.options.payload_limit(self.client.max_payload());
        if size > max {
            return Err(Error::payload_too_large(size, max));
        }
        self.violations.check_publish(message.topic().as_str())?;
        Ok((
            subject_of(message.topic()),
            headers,
            message.payload().clone(),
        ))
    }

    fn is_connected(&self) -> bool {
        self.client.connection_state() == State::Connected
    }

    /// Waits until the server has processed everything this connection sent before.
    ///
    /// Fails with `Auth` when the server refuses the private subject (the user may not
    /// subscribe or publish to `_INBOX.>`), instead of waiting for an echo that never comes.
    async fn barrier(&self) -> Result<()> {
        let mut guard = self.barrier.lock().await;
        let barrier = guard.as_mut().ok_or_else(Error::closed)?;
        let mut violations = self.violations.watch();
        let refused = || {
            let subject = barrier.subject.as_str();
            self.violations
                .check_subscriptions(0, [subject])
                .and_then(|()| self.violations.check_publish(subject))
                .map_err(|e| {
                    Error::new(
                        ErrorKind::Auth,
                        "the NATS server refuses the handle's private subject under _INBOX: \
                         the user needs permission to publish and subscribe to _INBOX.>",
                    )
                    .with_source(e)
                })
        };
        refused()?;
        barrier.seq += 1;
        let token = Bytes::from(barrier.seq.to_string());
        let publish = self.client.publish(barrier.subject.clone(), token.clone());
        publish.await.map_err(error::publish)?;
        loop {
            tokio::select! {
                echo = barrier.subscriber.next() => match echo {
                    // Echoes of earlier, timed-out barriers may still be queued: skip them.
                    Some(echo) if echo.payload == token => return Ok(()),
                    Some(_) => {}
                    None => return Err(error::gone()),
                },
                changed = violations.changed() => {
                    refused()?;
                    if changed.is_err() {
                        // The connection's event callback is gone: only the echo is left.
                        violations = tokio::sync::watch::channel(0).1;
                    }
                }
            }
        }
    }

    /// Hands `filters` (re-publish filters under `declared`) to the stream's feed, and starts
    /// the feed if it is not running: one NATS subscription to the re-published copies of
    /// everything under the root, read by one task, so that every subscription under the
    /// stream sees the stream's order, whatever its patterns. (One NATS subscription per
    /// pattern would hand a subscription with several patterns their messages through several
    /// reader tasks, out of order; the follower would take a late one for a duplicate.)
    async fn feed(&self, declared: &Arc<Declared>, filters: &[String]) -> Result<()> {
        let mut running = declared.feed().await;
        declared.add_filters(filters);
        if *running {
            return Ok(());
        }
        let subject = declared.feed_subject();
        let subscribe = self.client.subscribe(subject.clone());
        let subscriber = subscribe.await.map_err(error::subscribe)?;
        let (inbound, feed) = (self.inbound.clone(), declared.clone());
        let mut topics = TopicMemo::default();
        let route = move |message| {
            feed.dispatch(message, &mut topics, |filter, message| {
                inbound.deliver_via(filter, message);
            });
        };
        let name = declared.name().to_string();
        (self.feeds).start(&self.tasks, name, subscriber, route, unsubscriber(subject));
        *running = true;
        Ok(())
    }

    /// Takes re-publish filters from their streams' feeds; stops a feed left with none.
    async fn unfeed(&self, streamed: &[StreamFilters]) {
        for (declared, filters) in streamed {
            let mut running = declared.feed().await;
            if declared.remove_filters(filters) && *running {
                self.feeds.stop(&[declared.name().to_string()]).await;
                *running = false;
            }
        }
    }

    /// Runs `work` for at most the command timeout.
    async fn bounded<T>(&self, work: impl Future<Output = Result<T>>, what: &str) -> Result<T> {
        let timeout = self.options.command_timeout;
        tokio::time::timeout(timeout, work).await.map_err(|_| {
            Error::timeout(format!(
                "the server did not confirm {what} within {timeout:?}"
            ))
        })?
    }
}

#[async_trait]
impl Driver for NatsDriver {
    type Filter = String;

    const BACKEND: &'static str = "nats";

    /// The filter is the pattern's text, and NATS matches subjects by the portable grammar
    /// (`convert` lets through only subjects that are portable topics).
    const FILTER_IS_PATTERN: bool = true;

    fn max_payload(&self) -> usize {
        // From the server's INFO, updated by async-nats on every (re)connect.
        self.client.max_payload()
    }

    fn native_filter(&self, pattern: &Pattern) -> Result<String> {
        // Under a declared stream: the stream's re-published copies, which carry positions.
        if let Some(filter) = self.streams.filter_for(pattern) {
            return Ok(filter);
        }
        // The portable grammar is NATS's: `*` and `>` map as they are.
        Ok(pattern.as_str().to_string())
    }

    fn publish_now(&self, message: Message) -> std::result::Result<Result<()>, Message> {
        let (subject, headers, payload) = match self.prepare(&message) {
            Ok(parts) => parts,
            Err(error) => return Ok(Err(error)),
        };
        let sent = match headers {
            None => pin!(self.client.publish(subject, payload)).now_or_never(),
            Some(headers) => {
                let publish = self.client.publish_with_headers(subject, headers, payload);
                pin!(publish).now_or_never()
            }
        };
        // Not sent (the client's queue is full): dropping the future took nothing.
        sent.map(|result| result.map_err(error::publish))
            .ok_or(message)
    }

    /// The client's queue was full a moment ago: waits for room, up to the publish timeout.
    async fn publish(&self, message: Message) -> Result<()> {
        let message = match self.publish_now(message) {
            Ok(result) => return result,
            Err(message) => message,
        };
        let (subject, headers, payload) = self.prepare(&message)?;
        let timeout = self.options.publish_timeout;
        let sent = match headers {
            None => {
                let publish = self.client.publish(subject, payload);
                tokio::time::timeout(timeout, publish).await
            }
            Some(headers) => {
                let publish = self.client.publish_with_headers(subject, headers, payload);
                tokio::time::timeout(timeout, publish).await
            }
        };
        sent.map_err(|_| Error::timeout("the client's send queue stayed full"))?
            .map_err(error::publish)
    }

    async fn add_filters(&self, filters: &[String]) -> Result<()> {
        let since = self.violations.mark();
        let (plain, streamed) = self.streams.split(filters);
        // What the server is asked for: the plain subjects, and the streams' feeds.
        let mut subjects = plain.clone();
        subjects.extend(streamed.iter().map(|(declared, _)| declared.feed_subject()));
        let subscribe = async {
            let mut subscribers = Vec::with_capacity(plain.len());
            for filter in &plain {
                let subscriber = self.client.subscribe(filter.clone()).await;
                subscribers.push(subscriber.map_err(error::subscribe)?);
            }
            for (declared, filters) in &streamed {
                self.feed(declared, filters).await?;
            }
            // On failure, dropping the subscribers unsubscribes them (the feeds are rolled
            // back below).
            self.barrier().await?;
            (self.violations)
                .check_subscriptions_settled(since, &subjects, EVENT_YIELDS)
                .await?;
            Ok(subscribers)
        };
        let subscribers = match self.bounded(subscribe, "the subscriptions").await {
            Ok(subscribers) => subscribers,
            Err(error) => {
                self.unfeed(&streamed).await;
                return Err(error);
            }
        };
        for (filter, subscriber) in plain.iter().zip(subscribers) {
            let (inbound, via) = (self.inbound.clone(), filter.clone());
            let mut topics = TopicMemo::default();
            let route = move |message| {
                if let Some(message) = convert(message, &mut topics) {
                    inbound.deliver_via(&via, message);
                }
            };
            let unsubscribe = unsubscriber(filter.clone());
            (self.readers).start(&self.tasks, filter.clone(), subscriber, route, unsubscribe);
        }
        Ok(())
    }

    async fn remove_filters(&self, filters: &[String]) -> Result<()> {
        let (plain, streamed) = self.streams.split(filters);
        let stopped = self.readers.stop(&plain);
        let unsubscribe = async {
            stopped.await;
            self.unfeed(&streamed).await;
            // While disconnected the server has forgotten them already, and async-nats will
            // not restore them.
            match self.is_connected() {
                true => self.barrier().await,
                false => Ok(()),
            }
        };
        self.bounded(unsubscribe, "the unsubscribe").await
    }

    /// async-nats has sent every subscription again on the new connection: one round trip
    /// confirms that the server has processed them.
    async fn restore_filters(&self, _filters: &[String]) -> Result<()> {
        self.bounded(self.barrier(), "the restored subscriptions")
            .await
    }

    async fn declare_stream(&self, stream: &StreamConfig) -> Result<()> {
        self.streams.declare(stream).await
    }

    async fn read_stream(
        &self,
        stream: &StreamConfig,
        from: ReadFrom,
        limit: usize,
    ) -> Result<LogRead> {
        self.streams.read(stream, from, limit).await
    }

    async fn join_group(&self, stream: &StreamConfig, group: &GroupConfig) -> Result<()> {
        let declared = self.streams.find(stream)?;
        let js = self.streams.js()?;
        self.groups.join(&js, &declared, group).await
    }

    async fn read_group(
        &self,
        stream: &StreamConfig,
        group: &GroupConfig,
        _member: &str,
        limit: usize,
        wait: Duration,
    ) -> Result<Vec<GroupEntry>> {
        let declared = self.streams.find(stream)?;
        let js = self.streams.js()?;
        self.groups.read(&js, &declared, group, limit, wait).await
    }

    async fn settle_group(
        &self,
        _stream: &StreamConfig,
        _group: &GroupConfig,
        settlements: &[Settlement],
    ) -> Result<()> {
        self.groups.settle(settlements).await
    }

    async fn close(&self) -> Result<()> {
        drop(self.barrier.lock().await.take());
        self.streams.close();
        // What was published is written out before the connection goes (while disconnected,
        // only if it comes back).
        let mut result = Ok(());
        if self.is_connected() {
            let flush = tokio::time::timeout(self.options.command_timeout / 2, self.client.flush());
            result = match flush.await {
                Ok(flushed) => flushed.map_err(error::flush),
                Err(_) => Err(Error::timeout("flushing before close")),
            };
        }
        // async-nats's connection task ends once it has drained (during an outage: once it
        // reaches a server again); a foreign client stays open.
        if self.owned {
            let _ = self.client.drain().await;
        }
        result
    }
}

impl Drop for NatsDriver {
    /// A handle dropped without `close`: what its `publish` calls handed to async-nats may
    /// still sit in the client's write buffer, and dropping the last client would discard it.
    /// So a task (on the runtime, if there still is one) flushes it first, within the command
    /// timeout, then lets the connection go. `close` is still the way to know it was written.
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let client = self.client.clone();
        let limit = self.options.command_timeout;
        runtime.spawn(async move {
            let _ = tokio::time::timeout(limit, client.flush()).await;
            let _ = client.drain().await;
        });
    }
}

impl fmt::Debug for NatsDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsDriver")
            .field("state", &self.client.connection_state())
            .field("native_subscriptions", &self.readers.len())
            .field("owned_connection", &self.owned)
            .finish()
    }
}

/// What a reader does with its subscription once stopped: unsubscribes.
fn unsubscriber(
    subject: String,
) -> impl FnOnce(Subscriber) -> futures::future::BoxFuture<'static, ()> + Send + 'static {
    move |mut subscriber: Subscriber| {
        async move {
            if let Err(error) = subscriber.unsubscribe().await {
                tracing::debug!(subject, %error, "UNSUB not sent (connection closed)");
            }
        }
        .boxed()
    }
}

/// The portable message for a NATS message, or `None` when its subject is not a portable
/// topic or is a stream's re-published copy (those reach only the filters made for them).
fn convert(message: async_nats::Message, topics: &mut TopicMemo) -> Option<Message> {
    if stream::is_republished(message.subject.as_str()) {
        return None;
    }
    let topic = topics.topic(message.subject.as_str())?;
    let headers = message.headers.as_ref().map(headers::from_nats);
    Some(Message::with_headers(
        topic,
        message.payload,
        headers.unwrap_or_default(),
    ))
}

/// The subject of `topic`, built once per topic and thread, then cloned (a reference count):
/// publishers usually send to a few topics over and over. A new topic costs one small
/// allocation and no copy, since the subject shares the topic's bytes.
fn subject_of(topic: &Topic) -> Subject {
    struct Owner(Topic);
    impl AsRef<[u8]> for Owner {
        fn as_ref(&self) -> &[u8] {
            self.0.as_str().as_bytes()
        }
    }
    thread_local! {
        static LAST: std::cell::RefCell<Option<(Topic, Subject)>> = const { std::cell::RefCell::new(None) };
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if let Some((cached, subject)) = &*last {
            // Usually the very same `Arc` (a publisher reusing its topic): no string compare.
            if std::ptr::eq(cached.as_str(), topic.as_str()) || cached == topic {
                return subject.clone();
            }
        }
        let subject = Subject::try_from(Bytes::from_owner(Owner(topic.clone())))
            .unwrap_or_else(|_| Subject::from(topic.as_str()));
        *last = Some((topic.clone(), subject.clone()));
        subject
    })
}
