//! [`PubSubDriver`]: socketioxide-redis's `Driver` contract over any [`PubSub`] handle.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use pubsub_core::{
    ConnectionState, Delivery, Error, Gap, Message, PubSub, Result, SubscribeOptions, Topic,
};
use pubsub_presence::{Presence, PresenceConfig, PresenceEvent};
use socketioxide_redis::drivers::{ChanItem, Driver, MessageStream};
use socketioxide_redis::{RedisAdapterConfig, RedisAdapterCtr};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::channel::ChannelMap;
use crate::in_flight::InFlight;

/// Settings of a [`PubSubDriver`].
///
/// Every node of one socket.io cluster must use the same root (default `socketio`). Channels
/// travel under `{root}.ch`, heartbeats on `{root}.nodes`.
///
/// ```
/// use std::time::Duration;
/// use pubsub_socketioxide::DriverConfig;
/// let config = DriverConfig::new("chat.sio".parse()?)?
///     .with_heartbeat(Duration::from_millis(500), Duration::from_millis(1500));
/// assert_eq!(config.presence().expiry(), Duration::from_millis(1500));
/// # Ok::<(), pubsub_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct DriverConfig {
    root: Topic,
    presence: PresenceConfig,
}

impl DriverConfig {
    /// Channels under `{root}.ch`, presence on `{root}.nodes` with a 1 s heartbeat and a 3 s
    /// expiry.
    /// A typed error if the root is too long to hold the channel names.
    pub fn new(root: Topic) -> Result<DriverConfig> {
        let presence = PresenceConfig::new(child(&root, "nodes")?);
        child(&root, "ch")?;
        Ok(DriverConfig { root, presence })
    }

    /// How often this node announces itself, and how long after its last heartbeat peers stop
    /// waiting for it (a few intervals).
    pub fn with_heartbeat(mut self, interval: Duration, expiry: Duration) -> Self {
        self.presence = self.presence.with_interval(interval).with_expiry(expiry);
        self
    }

    /// The node id peers see in presence (default: random).
    pub fn with_node_id(mut self, id: impl Into<String>) -> Self {
        self.presence = self.presence.with_node_id(id);
        self
    }

    /// The presence settings.
    pub fn presence(&self) -> &PresenceConfig {
        &self.presence
    }

    /// The root topic.
    pub fn root(&self) -> &Topic {
        &self.root
    }
}

/// `root.name`, or a typed error if it does not fit in a topic.
fn child(root: &Topic, name: &str) -> Result<Topic> {
    root.child(&pubsub_core::Token::escape(name))
        .map_err(|e| Error::invalid_config(format!("socket.io root topic `{root}`: {e}")))
}

/// socketioxide-redis's pub/sub driver contract implemented on any [`PubSub`] handle, so its
/// whole remote adapter (broadcasts, acknowledgements across nodes, `fetch_sockets`, rooms,
/// disconnects) runs on memory, Redis, NATS or RabbitMQ.
///
/// - `publish`/`subscribe`/`unsubscribe` go to topics made from the channel names by
///   [`ChannelMap`] (escaped, never concatenated).
/// - `num_serv` (how many servers answer a request) comes from [`Presence`]: the alive nodes
///   subscribed to the channel. A node that dies stops being counted after the presence expiry,
///   so later requests do not wait for it; requests already waiting for its answer are
///   released then (they return with what the other nodes answered: an empty answer is given
///   in the forgotten node's name), instead of waiting out the adapter's request timeout.
/// - Losses are logged: a subscription's dropped messages and connection outages appear as
///   warnings with the channel; connection loss and recovery of the handle are logged.
///
/// Cloning shares the connection, the subscriptions and the presence (socketioxide clones the
/// driver into every namespace).
#[derive(Clone)]
pub struct PubSubDriver {
    inner: Arc<Inner>,
}

struct Inner {
    ps: Arc<dyn PubSub>,
    map: ChannelMap,
    presence: Presence,
    subscriptions: Mutex<HashMap<String, JoinHandle<()>>>,
    /// Where each channel's messages go to the adapter (to hand it answers in a forgotten
    /// node's name).
    streams: Arc<Mutex<HashMap<String, mpsc::Sender<ChanItem>>>>,
    in_flight: Arc<InFlight>,
    watcher: JoinHandle<()>,
    releaser: JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.watcher.abort();
        self.releaser.abort();
        for (_, task) in lock(&self.subscriptions).drain() {
            task.abort();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl PubSubDriver {
    /// Starts the presence of this node on `ps` and returns the driver.
    pub async fn start(ps: Arc<dyn PubSub>, config: DriverConfig) -> Result<PubSubDriver> {
        let map = ChannelMap::new(child(&config.root, "ch")?);
        let presence = Presence::start(ps.clone(), config.presence.clone()).await?;
        let watcher = tokio::spawn(watch_connection(ps.clone(), presence.node_id().to_string()));
        let streams = Arc::new(Mutex::new(HashMap::new()));
        let in_flight = Arc::new(InFlight::default());
        let releaser = tokio::spawn(release_on_leave(
            presence.clone(),
            in_flight.clone(),
            streams.clone(),
        ));
        Ok(PubSubDriver {
            inner: Arc::new(Inner {
                map,
                ps,
                presence,
                subscriptions: Mutex::new(HashMap::new()),
                streams,
                in_flight,
                watcher,
                releaser,
            }),
        })
    }

    /// The adapter constructor to give socketioxide:
    /// `SocketIo::builder().with_adapter::<PubSubAdapter<_>>(driver.adapter(config))`.
    pub fn adapter(&self, config: RedisAdapterConfig) -> RedisAdapterCtr<PubSubDriver> {
        RedisAdapterCtr::new_with_driver(self.clone(), config)
    }

    /// This node's presence (alive nodes, events).
    pub fn presence(&self) -> &Presence {
        &self.inner.presence
    }

    /// The pub/sub handle.
    pub fn pubsub(&self) -> &Arc<dyn PubSub> {
        &self.inner.ps
    }

    /// The channel-to-topic map.
    pub fn channels(&self) -> &ChannelMap {
        &self.inner.map
    }

    /// Announces that this node leaves (peers stop counting it at once). Call it at shutdown,
    /// before closing the pub/sub handle.
    pub async fn leave(&self) -> Result<()> {
        self.inner.presence.leave().await
    }
}

impl fmt::Debug for PubSubDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PubSubDriver")
            .field("backend", &self.inner.ps.backend())
            .field("root", self.inner.map.root())
            .field("presence", &self.inner.presence)
            .field("channels", &lock(&self.inner.subscriptions).len())
            .finish()
    }
}

impl Driver for PubSubDriver {
    type Error = Error;

    async fn publish(&self, chan: String, val: Vec<u8>) -> Result<()> {
        let topic = self.inner.map.topic(&chan)?;
        if chan.contains("-request#") {
            let alive = self.inner.presence.alive();
            self.inner.in_flight.requested(&chan, &val, &alive);
        }
        self.inner.ps.publish(Message::new(topic, val)).await
    }

    async fn subscribe(&self, chan: String, size: usize) -> Result<MessageStream<ChanItem>> {
        let topic = self.inner.map.topic(&chan)?;
        let size = size.max(1);
        let subscription = self
            .inner
            .ps
            .subscribe_with(
                topic.into(),
                SubscribeOptions::default().with_capacity(size),
            )
            .await?;
        let (tx, rx) = mpsc::channel(size);
        let answers = chan
            .contains("-response#")
            .then(|| self.inner.in_flight.clone());
        lock(&self.inner.streams).insert(chan.clone(), tx.clone());
        let task = tokio::spawn(forward(subscription, chan.clone(), tx, answers));
        if let Some(old) = lock(&self.inner.subscriptions).insert(chan.clone(), task) {
            old.abort();
        }
        self.inner.presence.add_tag(chan);
        Ok(MessageStream::new(rx))
    }

    async fn unsubscribe(&self, chan: String) -> Result<()> {
        if let Some(task) = lock(&self.inner.subscriptions).remove(&chan) {
            task.abort();
        }
        lock(&self.inner.streams).remove(&chan);
        self.inner.presence.remove_tag(&chan);
        Ok(())
    }

    async fn num_serv(&self, chan: &str) -> Result<u16> {
        let count = self.inner.presence.count_tagged(chan);
        Ok(u16::try_from(count).unwrap_or(u16::MAX))
    }
}

/// Hands one subscription's messages to the adapter's stream, logging every loss; notes the
/// answers on a response channel (`answers`).
async fn forward(
    subscription: pubsub_core::Subscription,
    chan: String,
    tx: mpsc::Sender<ChanItem>,
    answers: Option<Arc<InFlight>>,
) {
    let mut deliveries = subscription.deliveries();
    while let Some(delivery) = futures::StreamExt::next(&mut deliveries).await {
        match delivery {
            Delivery::Message(message) => {
                if let Some(in_flight) = &answers {
                    in_flight.answered(message.payload());
                }
                let sent = tx.send((chan.clone(), message.payload().to_vec())).await;
                if sent.is_err() {
                    return; // the adapter dropped its stream
                }
            }
            Delivery::Gap(Gap::Dropped { count }) => {
                tracing::warn!(%chan, count, "socket.io channel: messages dropped (slow adapter)");
            }
            Delivery::Gap(gap) => {
                tracing::warn!(%chan, ?gap, "socket.io channel: messages may be lost (broker outage)");
            }
            _ => {}
        }
    }
}

/// When presence forgets a node, hands the adapter an empty answer in its name for every
/// request still waiting for it (see [`InFlight`]).
async fn release_on_leave(
    presence: Presence,
    in_flight: Arc<InFlight>,
    streams: Arc<Mutex<HashMap<String, mpsc::Sender<ChanItem>>>>,
) {
    let mut events = presence.events();
    loop {
        let id = match events.recv().await {
            Ok(PresenceEvent::Left { id, .. }) => id,
            Ok(_) => continue,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        };
        for (chan, answer) in in_flight.forgotten(&id) {
            let tx = lock(&streams).get(&chan).cloned();
            if let Some(tx) = tx {
                tracing::debug!(node = %id, %chan, "socket.io adapter: answering for a forgotten node");
                let _ = tx.try_send((chan, answer));
            }
        }
    }
}

/// Logs connection loss and recovery of the handle.
async fn watch_connection(ps: Arc<dyn PubSub>, node: String) {
    let mut states = ps.watch_connection();
    let mut lost = false;
    loop {
        let state = *states.borrow_and_update();
        match state {
            ConnectionState::Down { .. } if !lost => {
                lost = true;
                tracing::warn!(%node, backend = ps.backend(), "socket.io adapter: broker connection lost; requests fail after the publish timeout until it is back");
            }
            ConnectionState::Up if lost => {
                lost = false;
                tracing::info!(%node, backend = ps.backend(), "socket.io adapter: broker connection recovered");
            }
            ConnectionState::Closed => return,
            _ => {}
        }
        if states.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use pubsub_core::memory::MemoryBus;

    const WAIT: Duration = Duration::from_secs(5);

    async fn driver(bus: &MemoryBus) -> PubSubDriver {
        let config = DriverConfig::new("t.sio".parse().unwrap())
            .unwrap()
            .with_heartbeat(Duration::from_millis(50), Duration::from_millis(300));
        PubSubDriver::start(Arc::new(bus.connect().await.unwrap()), config)
            .await
            .unwrap()
    }

    async fn until(what: &str, mut condition: impl AsyncFnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !condition().await {
            assert!(tokio::time::Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn channels_carry_messages_between_nodes() {
        let bus = MemoryBus::new();
        let (a, b) = (driver(&bus).await, driver(&bus).await);
        for chan in ["socket.io-request#/#", "p-response#/a.b *>#uid#", "#%#"] {
            let mut stream = b.subscribe(chan.to_string(), 8).await.unwrap();
            a.publish(chan.to_string(), b"payload".to_vec())
                .await
                .unwrap();
            let (got_chan, data) = tokio::time::timeout(WAIT, stream.next())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(got_chan, chan);
            assert_eq!(data, b"payload");
        }
        // A neighbouring channel is not heard.
        let mut stream = b.subscribe("x#/#".into(), 8).await.unwrap();
        a.publish("x#/#y#".into(), b"no".to_vec()).await.unwrap();
        a.publish("x#/#".into(), b"yes".to_vec()).await.unwrap();
        let (_, data) = stream.next().await.unwrap();
        assert_eq!(data, b"yes");
    }

    #[tokio::test]
    async fn num_serv_counts_alive_subscribed_nodes() {
        let bus = MemoryBus::new();
        let (a, b) = (driver(&bus).await, driver(&bus).await);
        let chan = "socket.io-request#/#";
        assert_eq!(a.num_serv(chan).await.unwrap(), 0);
        let _sa = a.subscribe(chan.into(), 8).await.unwrap();
        assert_eq!(a.num_serv(chan).await.unwrap(), 1);
        let _sb = b.subscribe(chan.into(), 8).await.unwrap();
        until("a counts b", async || a.num_serv(chan).await.unwrap() == 2).await;
        until("b counts a", async || b.num_serv(chan).await.unwrap() == 2).await;
        b.unsubscribe(chan.into()).await.unwrap();
        until("a stops counting b after its unsubscribe", async || {
            a.num_serv(chan).await.unwrap() == 1
        })
        .await;
        let _sb = b.subscribe(chan.into(), 8).await.unwrap();
        until("a counts b again", async || {
            a.num_serv(chan).await.unwrap() == 2
        })
        .await;
        // b dies without a word: a stops counting it after the expiry.
        drop(_sb);
        drop(b);
        let started = tokio::time::Instant::now();
        until("b expires", async || a.num_serv(chan).await.unwrap() == 1).await;
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "took {:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn bad_channels_are_typed_errors() {
        let bus = MemoryBus::new();
        let a = driver(&bus).await;
        let long = "x".repeat(400);
        assert_eq!(
            a.publish(long.clone(), vec![]).await.unwrap_err().kind(),
            pubsub_core::ErrorKind::Invalid
        );
        assert_eq!(
            a.subscribe(long, 8).await.unwrap_err().kind(),
            pubsub_core::ErrorKind::Invalid
        );
    }

    #[tokio::test]
    async fn a_closed_handle_fails_publish_without_hanging() {
        let bus = MemoryBus::new();
        let a = driver(&bus).await;
        a.pubsub().close().await.unwrap();
        let err = tokio::time::timeout(WAIT, a.publish("c#".into(), vec![1]))
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(err.kind(), pubsub_core::ErrorKind::Closed);
    }

    #[test]
    fn config_rejects_a_root_too_long_for_its_children() {
        let root = Topic::new(&"r".repeat(252)).unwrap();
        assert_eq!(
            DriverConfig::new(root).unwrap_err().kind(),
            pubsub_core::ErrorKind::Invalid
        );
    }
}
