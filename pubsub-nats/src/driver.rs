//! [`NatsDriver`]: the NATS half of a handle; the shared [`Hub`](pubsub_core::Hub) does the rest.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use async_nats::connection::State;
use async_nats::{Client, Event, Subject, Subscriber};
use async_trait::async_trait;
use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use pubsub_core::{
    ConnectionGate, Driver, Inbound, Message, NativeFilter, Pattern, Topic, MAX_TOPIC_LEN,
};

use crate::{headers, Error};

/// How often a waiting publisher re-reads the client's connection state.
const STATE_POLL: Duration = Duration::from_millis(50);

/// Connection events from async-nats's event callback.
pub(crate) struct Events {
    gate: ConnectionGate,
    /// Mirrors the gate for the publish fast path (an atomic load instead of a lock).
    connected: AtomicBool,
    inbound: Inbound,
    slow_consumers: AtomicU64,
    closed: watch::Sender<bool>,
}

impl Events {
    pub(crate) fn new(gate: ConnectionGate, inbound: Inbound) -> Self {
        Events {
            connected: AtomicBool::new(gate.is_connected()),
            gate,
            inbound,
            slow_consumers: AtomicU64::new(0),
            closed: watch::Sender::new(false),
        }
    }

    pub(crate) fn gate(&self) -> &ConnectionGate {
        &self.gate
    }

    pub(crate) fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::SeqCst);
        self.gate.set_connected(connected);
    }

    /// Called by async-nats's event task for every connection event.
    pub(crate) fn on_event(&self, event: Event) {
        match event {
            Event::Connected => {
                tracing::info!("connected to NATS");
                self.set_connected(true);
            }
            Event::Disconnected => {
                tracing::warn!("lost the connection to NATS; reconnecting");
                self.set_connected(false);
            }
            Event::SlowConsumer(sid) => {
                // async-nats dropped one message because a subscription's channel was full.
                self.slow_consumers.fetch_add(1, Ordering::Relaxed);
                self.inbound.record_lost(1);
                tracing::warn!(
                    sid,
                    "a NATS subscription channel overflowed; a message was lost"
                );
            }
            Event::Closed => {
                self.set_connected(false);
                self.closed.send_replace(true);
                tracing::debug!("NATS connection closed");
            }
            Event::LameDuckMode => tracing::info!("the NATS server entered lame duck mode"),
            Event::Draining => tracing::debug!("draining the NATS connection"),
            Event::ServerError(error) => tracing::warn!(%error, "NATS server error"),
            Event::ClientError(error) => tracing::debug!(%error, "NATS client error"),
        }
    }
}

/// What a driver needs from the configuration.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) publish_timeout: Duration,
    pub(crate) command_timeout: Duration,
    /// Whether the driver created the connection (and so drains it on close).
    pub(crate) owned: bool,
}

/// The reader task of one native subscription.
struct Reader {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Reader {
    /// Asks the task to unsubscribe and end; waits up to `timeout`, then aborts it.
    async fn stop(self, timeout: Duration) {
        let _ = self.stop.send(());
        let mut task = self.task;
        if tokio::time::timeout(timeout, &mut task).await.is_err() {
            task.abort();
            let _ = task.await;
        }
    }
}

/// A private subscription used to learn when the server has processed everything sent before.
///
/// NATS answers a client's operations in order, so once a message published to `subject`
/// comes back, every earlier `SUB` or `UNSUB` of the connection is in effect at the server.
/// The subject is longer than any portable topic, so no portable subscription ever sees it.
struct Barrier {
    subject: Subject,
    subscriber: Option<Subscriber>,
    seq: u64,
}

/// The NATS [`Driver`]: one async-nats client connection per handle.
pub(crate) struct NatsDriver {
    client: Client,
    settings: Settings,
    events: Option<Arc<Events>>,
    inbound: Inbound,
    readers: parking_lot::Mutex<HashMap<NativeFilter, Reader>>,
    barrier: tokio::sync::Mutex<Barrier>,
    closed: AtomicBool,
}

impl NatsDriver {
    /// Wraps a connected client.
    pub(crate) async fn start(
        client: Client,
        settings: Settings,
        inbound: Inbound,
        events: Option<Arc<Events>>,
    ) -> Result<Self, Error> {
        let mut subject = format!("{}.pubsub-barrier.", client.new_inbox());
        let pad = (MAX_TOPIC_LEN + 1).saturating_sub(subject.len()).max(1);
        subject.extend(std::iter::repeat_n('_', pad));
        let subject = Subject::from(subject);
        let subscriber =
            tokio::time::timeout(settings.command_timeout, client.subscribe(subject.clone()))
                .await
                .map_err(|_| Error::Timeout("subscribing to the barrier subject"))?
                .map_err(Error::Subscribe)?;
        Ok(NatsDriver {
            client,
            settings,
            events,
            inbound,
            readers: parking_lot::Mutex::new(HashMap::new()),
            barrier: tokio::sync::Mutex::new(Barrier {
                subject,
                subscriber: Some(subscriber),
                seq: 0,
            }),
            closed: AtomicBool::new(false),
        })
    }

    fn is_connected(&self) -> bool {
        self.client.connection_state() == State::Connected
    }

    /// Cheap guess of [`NatsDriver::is_connected`] for the publish fast path: the last
    /// connection event, when this driver receives them. A stale `true` only lets a message
    /// into async-nats's queue, which it sends after reconnecting.
    fn probably_connected(&self) -> bool {
        match &self.events {
            Some(events) => events.connected.load(Ordering::Relaxed),
            None => self.is_connected(),
        }
    }

    /// Returns once the client is connected, or fails after `timeout`.
    async fn wait_connected(&self, timeout: Duration, context: &'static str) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.closed.load(Ordering::Relaxed) {
                return Err(Error::Closed);
            }
            if self.is_connected() {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Timeout(context));
            }
            let step = (deadline - now).min(STATE_POLL);
            match self.events.as_deref().map(Events::gate) {
                // Woken as soon as async-nats reports the connection back.
                Some(gate) if !gate.is_connected() => {
                    let _ = gate.wait_connected(step).await;
                }
                // No events (a shared client), or the event is not processed yet: poll.
                _ => tokio::time::sleep(step.min(Duration::from_millis(5))).await,
            }
        }
    }

    /// Publishes one message (see [`Driver::publish`]).
    async fn send_message(
        &self,
        topic: &Topic,
        payload: Bytes,
        headers: &pubsub_core::Headers,
    ) -> pubsub_core::Result<()> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(pubsub_core::Error::Closed);
        }
        let headers = headers::to_nats(headers)?;
        let max = self.client.max_payload();
        let size = payload.len() + headers.as_ref().map_or(0, headers::wire_len);
        if size > max {
            return Err(pubsub_core::Error::PayloadTooLarge { size, max });
        }
        if !self.probably_connected() {
            // Boxed, like every slow path here, so that the common path's future stays small
            // (it is allocated once per publish by `async_trait`).
            Box::pin(self.wait_connected(
                self.settings.publish_timeout,
                "publishing: not connected to NATS",
            ))
            .await?;
        }
        let subject = subject_of(topic);
        let timeout = self.settings.publish_timeout;
        let result = match headers {
            None => send(timeout, pin!(self.client.publish(subject, payload))).await,
            // Boxed: one publish future inline keeps the common future small.
            Some(headers) => {
                let publish = Box::pin(self.client.publish_with_headers(subject, headers, payload));
                send(timeout, publish).await
            }
        }?;
        result.map_err(|e| publish_error(e, size, max))
    }

    /// Waits until the server has processed everything this connection sent before.
    async fn barrier(&self, context: &'static str) -> Result<(), Error> {
        let mut guard = self.barrier.lock().await;
        let Barrier {
            subject,
            subscriber,
            seq,
        } = &mut *guard;
        let subscriber = subscriber.as_mut().ok_or(Error::Closed)?;
        *seq += 1;
        let token = Bytes::from(seq.to_string());
        let client = &self.client;
        let round_trip = async {
            client
                .publish(subject.clone(), token.clone())
                .await
                .map_err(Error::Publish)?;
            while let Some(echo) = subscriber.next().await {
                // Echoes of earlier, timed-out barriers may still be queued: skip them.
                if echo.payload == token {
                    return Ok(());
                }
            }
            Err(Error::Closed)
        };
        tokio::time::timeout(self.settings.command_timeout, round_trip)
            .await
            .map_err(|_| Error::Timeout(context))?
    }

    /// Waits for async-nats's connection task to end after a drain.
    async fn wait_connection_end(&self, deadline: Instant) {
        if let Some(events) = &self.events {
            let mut closed = events.closed.subscribe();
            let _ = tokio::time::timeout_at(deadline, closed.wait_for(|c| *c)).await;
        }
        // Once the task is gone its command channel is closed and a flush fails at once.
        while Instant::now() < deadline {
            match tokio::time::timeout_at(deadline, self.client.flush()).await {
                Ok(Ok(())) => tokio::time::sleep(Duration::from_millis(2)).await,
                Ok(Err(_)) | Err(_) => break,
            }
        }
        // Let async-nats's event task see its channel close.
        for _ in 0..4 {
            tokio::task::yield_now().await;
        }
    }

    async fn close_inner(&self) -> Result<(), Error> {
        let timeout = self.settings.command_timeout;
        // Every reader unsubscribes its native subscription and ends.
        let readers: Vec<Reader> = self.readers.lock().drain().map(|(_, r)| r).collect();
        futures::future::join_all(readers.into_iter().map(|r| r.stop(timeout))).await;
        drop(self.barrier.lock().await.subscriber.take());
        let connected = self.is_connected();
        let mut result = Ok(());
        if connected {
            // What was published is written out before the connection goes.
            result = match tokio::time::timeout(timeout, self.client.flush()).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(error)) => Err(Error::Flush(error)),
                Err(_) => Err(Error::Timeout("flushing before close")),
            };
        } else {
            tracing::warn!(
                "closing while disconnected from NATS: queued messages go out only if the \
                 connection comes back"
            );
        }
        if self.settings.owned {
            let deadline = Instant::now() + timeout;
            match tokio::time::timeout(timeout, self.client.drain()).await {
                Ok(Ok(())) if connected => self.wait_connection_end(deadline).await,
                // While reconnecting, async-nats reads the drain request (and ends its task)
                // only once it reaches a server again.
                Ok(Ok(())) => {}
                Ok(Err(_)) => {} // already closed
                Err(_) => tracing::warn!("could not ask the NATS connection to drain in time"),
            }
        }
        result
    }
}

/// Reads one native subscription and hands its messages to the router until told to stop.
///
/// Each wake-up drains everything the subscription has buffered (up to tokio's cooperative
/// budget) before checking again for a stop request, so the per-message cost is one channel
/// receive, one conversion and one routing step.
async fn read_loop(
    mut subscriber: Subscriber,
    filter: NativeFilter,
    inbound: Inbound,
    mut stop: oneshot::Receiver<()>,
) {
    let mut last_topic: Option<Topic> = None;
    let stopped = std::future::poll_fn(|cx| {
        // A stop request, or the driver was dropped.
        if stop.poll_unpin(cx).is_ready() {
            return Poll::Ready(true);
        }
        loop {
            match subscriber.poll_next_unpin(cx) {
                Poll::Ready(Some(message)) => {
                    if let Some(message) = convert(message, &mut last_topic) {
                        inbound.deliver_via(&filter, message);
                    }
                }
                Poll::Ready(None) => return Poll::Ready(false),
                Poll::Pending => return Poll::Pending,
            }
        }
    })
    .await;
    if stopped {
        if let Err(error) = subscriber.unsubscribe().await {
            tracing::debug!(?filter, %error, "unsubscribe request not sent (connection closed)");
        }
    } else {
        tracing::debug!(?filter, "NATS subscription stream ended");
    }
}

/// A portable message for a NATS message, or `None` when its subject is not a portable topic
/// (no portable pattern could match it anyway).
fn convert(message: async_nats::Message, last_topic: &mut Option<Topic>) -> Option<Message> {
    let subject = message.subject.as_str();
    let topic = match last_topic {
        Some(topic) if topic.as_str() == subject => topic.clone(),
        _ => match Topic::new(subject) {
            Ok(topic) => {
                *last_topic = Some(topic.clone());
                topic
            }
            Err(error) => {
                tracing::debug!(subject, %error, "skipping a NATS message whose subject is not a portable topic");
                return None;
            }
        },
    };
    let headers = message
        .headers
        .as_ref()
        .map(headers::from_nats)
        .unwrap_or_default();
    Some(Message::with_headers(topic, message.payload, headers))
}

/// The subject of `topic`.
///
/// Built once per topic and thread, then cloned (a reference count): publishers usually send to
/// a few topics over and over. A new topic costs one small allocation and no copy, since the
/// subject shares the topic's bytes.
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

/// Awaits a publish into the client's queue; a timer is only set up when the queue is full.
async fn send<F>(
    timeout: Duration,
    mut send: Pin<F>,
) -> Result<Result<(), async_nats::PublishError>, Error>
where
    F: std::ops::DerefMut,
    F::Target: Future<Output = Result<(), async_nats::PublishError>>,
{
    match send.as_mut().now_or_never() {
        Some(result) => Ok(result),
        // Boxed so that the common path's future stays small (`async_trait` allocates it for
        // every publish).
        None => Box::pin(tokio::time::timeout(timeout, send))
            .await
            .map_err(|_| Error::Timeout("publishing: the client's send queue stayed full")),
    }
}

fn publish_error(error: async_nats::PublishError, size: usize, max: usize) -> pubsub_core::Error {
    match error.kind() {
        async_nats::PublishErrorKind::MaxPayloadExceeded => {
            pubsub_core::Error::PayloadTooLarge { size, max }
        }
        _ => Error::Publish(error).into(),
    }
}

#[async_trait]
impl Driver for NatsDriver {
    fn backend(&self) -> &'static str {
        "nats"
    }

    fn max_payload(&self) -> usize {
        // From the server's INFO, updated by async-nats on every (re)connect.
        self.client.max_payload()
    }

    fn native_filter(&self, pattern: &Pattern) -> pubsub_core::Result<NativeFilter> {
        // The portable grammar is NATS's: `*` and `>` map as they are.
        Ok(if pattern.is_exact() {
            NativeFilter::exact(pattern.as_str())
        } else {
            NativeFilter::wildcard(pattern.as_str())
        })
    }

    async fn publish(&self, message: &Message) -> pubsub_core::Result<()> {
        self.send_message(
            message.topic(),
            message.payload().clone(),
            message.headers(),
        )
        .await
    }

    async fn add_filter(&self, filter: &NativeFilter) -> pubsub_core::Result<()> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(pubsub_core::Error::Closed);
        }
        let timeout = self.settings.command_timeout;
        self.wait_connected(timeout, "subscribing: not connected to NATS")
            .await?;
        let subscriber =
            tokio::time::timeout(timeout, self.client.subscribe(filter.name().to_string()))
                .await
                .map_err(|_| Error::Timeout("subscribing"))?
                .map_err(Error::Subscribe)?;
        // Resolve only once the server has the subscription. On failure, dropping `subscriber`
        // unsubscribes.
        self.barrier("waiting for NATS to confirm a subscription")
            .await?;
        let (stop, stop_rx) = oneshot::channel();
        let task = tokio::spawn(read_loop(
            subscriber,
            filter.clone(),
            self.inbound.clone(),
            stop_rx,
        ));
        let previous = self
            .readers
            .lock()
            .insert(filter.clone(), Reader { stop, task });
        if let Some(previous) = previous {
            // Not expected: the hub adds a filter once. Keep only the new reader.
            previous.stop(timeout).await;
        }
        Ok(())
    }

    async fn remove_filter(&self, filter: &NativeFilter) -> pubsub_core::Result<()> {
        let Some(reader) = self.readers.lock().remove(filter) else {
            return Ok(());
        };
        reader.stop(self.settings.command_timeout).await;
        // The UNSUB is queued in order; wait for the server to apply it. When disconnected the
        // server has already forgotten the subscription, and async-nats will not restore it.
        if self.is_connected() && !self.closed.load(Ordering::Relaxed) {
            if let Err(error) = self
                .barrier("waiting for NATS to confirm an unsubscribe")
                .await
            {
                tracing::debug!(?filter, %error, "unsubscribe sent but not confirmed");
            }
        }
        Ok(())
    }

    async fn close(&self) -> pubsub_core::Result<()> {
        if self.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        Ok(self.close_inner().await?)
    }
}

impl fmt::Debug for NatsDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsDriver")
            .field("connected", &self.is_connected())
            .field("native_subscriptions", &self.readers.lock().len())
            .field(
                "slow_consumer_events",
                &self
                    .events
                    .as_ref()
                    .map(|e| e.slow_consumers.load(Ordering::Relaxed)),
            )
            .field("owned_connection", &self.settings.owned)
            .field("closed", &self.closed.load(Ordering::Relaxed))
            .finish()
    }
}
