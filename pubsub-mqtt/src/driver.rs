//! [`MqttDriver`]: publish, SUBSCRIBE and UNSUBSCRIBE through rumqttc's request channel,
//! confirmed by the broker's acknowledgements, which the event loop task hands back.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use pubsub_core::adapter::{encoded_word, Driver, Inbound, LinkReporter};
use pubsub_core::{CommonOptions, Error, ErrorKind, Headers, Message, Pattern, Result, Topic};
use rumqttc::v5::mqttbytes::v5::{
    Filter, Packet, PubAckReason, PublishProperties, RetainForwardRule, SubscribeProperties,
    SubscribeReasonCode, UnsubAckReason,
};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, ConnectionError, Event, EventLoop};
use rumqttc::Outgoing;
use tokio::sync::{oneshot, Semaphore};

use crate::topic::{self, mqtt_char};

/// Largest MQTT packet (its remaining length is at most 268 435 455 bytes).
pub(crate) const MAX_PACKET: usize = 268_435_455;

/// Requests that may wait in rumqttc's channel at once.
pub(crate) const ROOM: usize = 4096;

/// Largest subscription identifier.
const MAX_ID: usize = 268_435_455;

type Waiter = oneshot::Sender<Result<()>>;

/// The requests that wait for the broker, in the order rumqttc writes them.
#[derive(Default)]
struct Acks {
    /// Sent into rumqttc's channel, not yet written.
    queued: VecDeque<Waiter>,
    /// Publishes written, by packet id, until their PUBACK.
    publishes: HashMap<u16, Waiter>,
    /// SUBSCRIBE and UNSUBSCRIBE written, by packet id, until their SUBACK or UNSUBACK.
    changes: HashMap<u16, Waiter>,
    /// A publish rumqttc holds back because its packet id is still in flight.
    collided: Option<Waiter>,
}

/// Subscription identifiers: each native filter has one, so that a received message says
/// which of the handle's MQTT subscriptions it came through.
#[derive(Default)]
struct Ids {
    filters: HashMap<usize, String>,
    ids: HashMap<String, usize>,
    last: usize,
}

impl Ids {
    fn assign(&mut self, filter: &str) -> usize {
        if let Some(&id) = self.ids.get(filter) {
            return id;
        }
        loop {
            self.last = self.last % MAX_ID + 1;
            if !self.filters.contains_key(&self.last) {
                break;
            }
        }
        self.filters.insert(self.last, filter.to_string());
        self.ids.insert(filter.to_string(), self.last);
        self.last
    }
}

/// What the driver and the event loop task share.
pub(crate) struct Shared {
    pub(crate) client: AsyncClient,
    acks: Mutex<Acks>,
    /// Room in rumqttc's channel: a request takes a permit, given back once it is written or
    /// dropped, so that sending never finds the channel full.
    room: Semaphore,
    ids: RwLock<Ids>,
    pub(crate) connected: AtomicBool,
    /// The broker's Maximum Packet Size (from its CONNACK), or MQTT's.
    pub(crate) max_packet: AtomicUsize,
}

impl Shared {
    pub(crate) fn new(client: AsyncClient) -> Arc<Self> {
        Arc::new(Shared {
            client,
            acks: Mutex::default(),
            room: Semaphore::new(ROOM),
            ids: RwLock::default(),
            connected: AtomicBool::new(false),
            max_packet: AtomicUsize::new(MAX_PACKET),
        })
    }

    /// Sends one request with `send` (true: rumqttc took it) and waits up to `timeout` for the
    /// broker's answer.
    async fn request<F>(&self, timeout: Duration, what: &str, send: F) -> Result<()>
    where
        F: FnOnce(&AsyncClient) -> bool,
    {
        let answered = async {
            let permit = self.room.acquire().await.map_err(|_| Error::closed())?;
            let (tx, rx) = oneshot::channel();
            {
                let mut acks = self.acks.lock();
                // Never full (the permit): only an event loop that is gone refuses it.
                if !send(&self.client) {
                    return Err(Error::closed());
                }
                acks.queued.push_back(tx);
            }
            permit.forget();
            rx.await.map_err(|_| Error::closed())?
        };
        tokio::time::timeout(timeout, answered).await.map_err(|_| {
            Error::timeout(format!(
                "the broker did not confirm the {what} within {timeout:?}"
            ))
        })?
    }

    /// The next queued request was written by rumqttc.
    fn written(&self, acks: &mut Acks) -> Option<Waiter> {
        let waiter = acks.queued.pop_front();
        self.room.add_permits(usize::from(waiter.is_some()));
        waiter
    }

    /// Hands an event of the event loop to the request waiting for it.
    pub(crate) fn outgoing(&self, event: &Outgoing) {
        let mut acks = self.acks.lock();
        match *event {
            Outgoing::Publish(pkid) => {
                let waiter = match acks.collided.take() {
                    Some(waiter) => Some(waiter),
                    None => self.written(&mut acks),
                };
                acks.publishes.extend(waiter.map(|w| (pkid, w)));
            }
            Outgoing::AwaitAck(_) => acks.collided = self.written(&mut acks),
            Outgoing::Subscribe(pkid) | Outgoing::Unsubscribe(pkid) => {
                let waiter = self.written(&mut acks);
                acks.changes.extend(waiter.map(|w| (pkid, w)));
            }
            Outgoing::Disconnect => {
                if let Some(waiter) = self.written(&mut acks) {
                    let _ = waiter.send(Ok(()));
                }
            }
            _ => {}
        }
    }

    /// Hands the broker's acknowledgement to the request waiting for it.
    fn acknowledged(&self, packet: &Packet) {
        let mut acks = self.acks.lock();
        let (waiter, outcome) = match packet {
            Packet::PubAck(ack) => (
                acks.publishes.remove(&ack.pkid),
                match ack.reason {
                    PubAckReason::Success | PubAckReason::NoMatchingSubscribers => Ok(()),
                    PubAckReason::NotAuthorized => refused(&ack.reason, true),
                    _ => refused(&ack.reason, false),
                },
            ),
            Packet::SubAck(ack) => {
                let bad = (ack.return_codes.iter())
                    .find(|c| !matches!(c, SubscribeReasonCode::Success(_)));
                let auth = matches!(bad, Some(SubscribeReasonCode::NotAuthorized));
                let outcome = bad.map_or(Ok(()), |c| refused(c, auth));
                (acks.changes.remove(&ack.pkid), outcome)
            }
            Packet::UnsubAck(ack) => {
                let bad = ack.reasons.iter().find(|r| {
                    !matches!(
                        r,
                        UnsubAckReason::Success | UnsubAckReason::NoSubscriptionExisted
                    )
                });
                let auth = matches!(bad, Some(UnsubAckReason::NotAuthorized));
                let outcome = bad.map_or(Ok(()), |r| refused(r, auth));
                (acks.changes.remove(&ack.pkid), outcome)
            }
            _ => return,
        };
        if let Some(waiter) = waiter {
            let _ = waiter.send(outcome);
        }
    }

    /// The connection is gone: every request waiting for the broker fails, and nothing still
    /// in rumqttc's queues goes out on the next connection (a clean start, which the kit
    /// restores); so the queue of waiters and rumqttc's channel stay in step.
    pub(crate) fn lost(&self, events: &mut EventLoop) {
        let mut acks = self.acks.lock();
        events.clean();
        events.pending.clear();
        events.state.events.clear();
        let lost = || {
            Error::connection(
                "the connection to the MQTT broker was lost",
                "before the broker confirmed",
            )
        };
        let acks = &mut *acks;
        let queued = acks.queued.len();
        let waiters = (acks.queued.drain(..))
            .chain(acks.publishes.drain().map(|(_, w)| w))
            .chain(acks.changes.drain().map(|(_, w)| w))
            .chain(acks.collided.take());
        for waiter in waiters {
            let _ = waiter.send(Err(lost()));
        }
        self.room.add_permits(queued);
    }

    /// A packet from the broker.
    pub(crate) fn incoming(&self, packet: Packet, inbound: &Inbound<String>, memo: &mut Memo) {
        let Packet::Publish(publish) = packet else {
            return self.acknowledged(&packet);
        };
        let Some(topic) = memo.topic(&publish.topic) else {
            tracing::trace!("skipping a message whose MQTT topic is not a portable topic");
            return;
        };
        let properties = publish.properties.unwrap_or_default();
        let mut headers = Headers::new();
        for (name, value) in properties.user_properties {
            // A foreign client's property that is no portable header is left out.
            let _ = headers.insert(name, encoded_word::decode_or_keep(&value));
        }
        let message = Message::with_headers(topic, publish.payload, headers);
        let ids = self.ids.read();
        for id in properties.subscription_identifiers {
            if let Some(filter) = ids.filters.get(&id) {
                inbound.deliver_via(filter, message.clone());
            }
        }
    }
}

fn refused(reason: &impl fmt::Debug, auth: bool) -> Result<()> {
    let kind = if auth {
        ErrorKind::Auth
    } else {
        ErrorKind::Backend
    };
    Err(Error::new(
        kind,
        format!("the broker refused it: {reason:?}"),
    ))
}

/// The topic of the last received name, decoded once for a run of messages to it.
#[derive(Default)]
pub(crate) struct Memo(Option<(Bytes, Topic)>);

impl Memo {
    fn topic(&mut self, name: &Bytes) -> Option<Topic> {
        match &self.0 {
            Some((last, topic)) if last == name => Some(topic.clone()),
            _ => {
                let topic = topic::decode_topic(name)?;
                self.0 = Some((name.clone(), topic.clone()));
                Some(topic)
            }
        }
    }
}

/// Whether Mosquitto would refuse `value` in a user property (or change it).
fn refused_value(value: &str) -> bool {
    !value.chars().all(mqtt_char)
}

/// The user properties of `headers`, in order.
fn user_properties(headers: &Headers) -> Vec<(String, String)> {
    (headers.iter())
        .map(|(n, v)| {
            (
                n.to_string(),
                encoded_word::encode_when(v, refused_value).into_owned(),
            )
        })
        .collect()
}

/// Bytes of a variable byte integer.
fn varint_len(n: usize) -> usize {
    match n {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Bytes of a QoS 1 PUBLISH with these parts, as it goes on the wire.
pub(crate) fn packet_len(name: &str, properties: &[(String, String)], payload: usize) -> usize {
    let props: usize = properties.iter().map(|(n, v)| 5 + n.len() + v.len()).sum();
    let remaining = 2 + name.len() + 2 + varint_len(props) + props + payload;
    1 + varint_len(remaining) + remaining
}

/// The MQTT [`Driver`]: one rumqttc client (MQTT 5) per handle; a native filter is an MQTT
/// topic filter, subscribed at QoS 0 with a subscription identifier of its own.
pub(crate) struct MqttDriver {
    pub(crate) shared: Arc<Shared>,
    pub(crate) events: Arc<tokio::sync::Mutex<EventLoop>>,
    pub(crate) options: CommonOptions,
}

#[async_trait]
impl Driver for MqttDriver {
    type Filter = String;
    const BACKEND: &'static str = "mqtt";

    fn max_payload(&self) -> usize {
        self.shared.max_packet.load(Ordering::Relaxed)
    }

    fn native_filter(&self, pattern: &Pattern) -> Result<String> {
        topic::encode_filter(pattern)
    }

    async fn publish(&self, message: Message) -> Result<()> {
        let name = topic::encode_topic(message.topic())?;
        let properties = user_properties(message.headers());
        let (len, max) = (
            packet_len(&name, &properties, message.payload().len()),
            self.max_payload(),
        );
        if len > max {
            return Err(Error::payload_too_large(len, max));
        }
        let properties = PublishProperties {
            user_properties: properties,
            ..Default::default()
        };
        let payload = message.payload().clone();
        let publish = |c: &AsyncClient| {
            c.try_publish_with_properties(name, QoS::AtLeastOnce, false, payload, properties)
                .is_ok()
        };
        self.shared
            .request(self.options.publish_timeout, "publish", publish)
            .await
    }

    async fn add_filters(&self, filters: &[String]) -> Result<()> {
        let subscribes = filters.iter().map(|filter| {
            let id = self.shared.ids.write().assign(filter);
            let mut mqtt = Filter::new(filter.clone(), QoS::AtMostOnce);
            // Retained messages are earlier messages: a new subscription never gets them.
            mqtt.retain_forward_rule = RetainForwardRule::Never;
            let properties = SubscribeProperties {
                id: Some(id),
                user_properties: Vec::new(),
            };
            let subscribe = |c: &AsyncClient| {
                c.try_subscribe_many_with_properties([mqtt], properties)
                    .is_ok()
            };
            self.shared
                .request(self.options.command_timeout, "subscription", subscribe)
        });
        futures_join(subscribes).await
    }

    async fn remove_filters(&self, filters: &[String]) -> Result<()> {
        {
            let mut ids = self.shared.ids.write();
            for filter in filters {
                if let Some(id) = ids.ids.remove(filter) {
                    ids.filters.remove(&id);
                }
            }
        }
        // After a reconnect the broker has forgotten them (a clean start).
        if !self.shared.connected.load(Ordering::Acquire) {
            return Ok(());
        }
        let unsubscribes = filters.iter().map(|filter| {
            let unsubscribe = |c: &AsyncClient| c.try_unsubscribe(filter.clone()).is_ok();
            self.shared
                .request(self.options.command_timeout, "unsubscribe", unsubscribe)
        });
        futures_join(unsubscribes).await
    }

    async fn close(&self) -> Result<()> {
        // The event loop task has been stopped: this is the last use of the connection.
        let deadline = self.options.command_timeout / 2;
        let goodbye = async {
            let mut events = self.events.lock().await;
            if !self.shared.connected.load(Ordering::Acquire)
                || self.shared.client.try_disconnect().is_err()
            {
                return;
            }
            while let Ok(event) = events.poll().await {
                if event == Event::Outgoing(Outgoing::Disconnect) {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(deadline, goodbye).await;
        Ok(())
    }
}

/// Runs the requests side by side; the first error, once all ended.
async fn futures_join(
    requests: impl Iterator<Item = impl std::future::Future<Output = Result<()>>>,
) -> Result<()> {
    let outcomes = futures::future::join_all(requests).await;
    outcomes.into_iter().collect()
}

impl fmt::Debug for MqttDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MqttDriver")
            .field("connected", &self.shared.connected.load(Ordering::Relaxed))
            .field("native_subscriptions", &self.shared.ids.read().ids.len())
            .finish()
    }
}

/// How the event loop task notices a silent broker.
pub(crate) fn keep_alive(heartbeat: Duration) -> (Duration, Option<Duration>) {
    if heartbeat.is_zero() {
        return (Duration::from_secs(u64::from(u16::MAX)), None);
    }
    // rumqttc pings every keep-alive (whole seconds, at least 5), whatever the traffic.
    let secs = heartbeat.as_secs() + u64::from(heartbeat.subsec_nanos() > 0);
    let keep_alive = Duration::from_secs(secs.clamp(5, u64::from(u16::MAX)));
    (keep_alive, Some(keep_alive + 2 * heartbeat))
}

/// The event loop task: polls rumqttc, hands messages to the router and acknowledgements to
/// the requests, reports the connection's state, and reconnects with the options' backoff.
pub(crate) async fn run(
    mut events: tokio::sync::OwnedMutexGuard<EventLoop>,
    shared: Arc<Shared>,
    inbound: Inbound<String>,
    link: LinkReporter,
    options: CommonOptions,
) {
    let silence = keep_alive(options.heartbeat).1;
    let mut memo = Memo::default();
    let mut last_heard = tokio::time::Instant::now();
    let mut attempt = 0u32;
    loop {
        let polled = match silence {
            Some(limit) if shared.connected.load(Ordering::Acquire) => tokio::select! {
                biased;
                polled = events.poll() => polled,
                _ = tokio::time::sleep_until(last_heard + limit) => {
                    let silent = format!("the broker stayed silent for {limit:?}");
                    Err(ConnectionError::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, silent)))
                }
            },
            _ => events.poll().await,
        };
        match polled {
            Ok(Event::Incoming(packet)) => {
                last_heard = tokio::time::Instant::now();
                if let Packet::ConnAck(connack) = &packet {
                    let max = connack.properties.as_ref().and_then(|p| p.max_packet_size);
                    let max = max.map_or(MAX_PACKET, |m| (m as usize).min(MAX_PACKET));
                    shared.max_packet.store(max, Ordering::Relaxed);
                    shared.connected.store(true, Ordering::Release);
                    attempt = 0;
                    // A clean start: the broker forgot the subscriptions, the kit restores them.
                    link.reconnected();
                }
                shared.incoming(packet, &inbound, &mut memo);
            }
            Ok(Event::Outgoing(event)) => shared.outgoing(&event),
            Err(error) => {
                // What rumqttc had read or written before the error is handed out first.
                for event in std::mem::take(&mut events.state.events) {
                    match event {
                        Event::Incoming(packet) => shared.incoming(packet, &inbound, &mut memo),
                        Event::Outgoing(event) => shared.outgoing(&event),
                    }
                }
                shared.lost(&mut events);
                if shared.connected.swap(false, Ordering::AcqRel) {
                    tracing::warn!(%error, "MQTT connection lost");
                    link.down();
                } else {
                    tracing::debug!(%error, "MQTT connection attempt failed");
                }
                tokio::time::sleep(options.backoff.delay(attempt)).await;
                attempt = attempt.saturating_add(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttc::v5::mqttbytes::v5::Publish;

    #[test]
    fn packet_len_is_rumqttc_s() {
        for (name, headers, payload) in [
            ("a", vec![], 0),
            ("room/~2B", vec![("k".to_string(), "v".to_string())], 200),
            ("x", vec![("n".to_string(), "é".repeat(100)); 3], 20_000),
            ("y", vec![], 3_000_000),
        ] {
            let properties = PublishProperties {
                user_properties: headers.clone(),
                ..Default::default()
            };
            let mut publish =
                Publish::new(name, QoS::AtLeastOnce, vec![0u8; payload], Some(properties));
            publish.pkid = 1; // as written: rumqttc counts the packet id once it has one
            assert_eq!(
                packet_len(name, &headers, payload),
                publish.size(),
                "{name}"
            );
        }
    }

    #[test]
    fn keep_alive_follows_the_heartbeat() {
        let s = Duration::from_secs;
        assert_eq!(keep_alive(Duration::from_millis(500)), (s(5), Some(s(6))));
        assert_eq!(keep_alive(s(10)), (s(10), Some(s(30))));
        assert_eq!(keep_alive(Duration::ZERO), (s(65_535), None));
    }

    #[test]
    fn values_mosquitto_refuses_travel_as_encoded_words() {
        let mut headers = Headers::new();
        headers.insert("a", "plain").unwrap();
        headers.insert("b", "tab\there \u{0}").unwrap();
        headers.insert("c", "=?looks encoded").unwrap();
        let sent = user_properties(&headers);
        assert_eq!(sent[0].1, "plain");
        assert!(sent.iter().all(|(_, v)| !refused_value(v)), "{sent:?}");
        for ((name, value), (sent_name, sent_value)) in headers.iter().zip(&sent) {
            assert_eq!(
                (name, value),
                (
                    sent_name.as_str(),
                    encoded_word::decode_or_keep(sent_value).as_str()
                )
            );
        }
    }

    #[test]
    fn identifiers_are_reused_and_skip_those_in_use() {
        let mut ids = Ids {
            last: MAX_ID - 1,
            ..Ids::default()
        };
        assert_eq!(ids.assign("a"), MAX_ID);
        assert_eq!(ids.assign("b"), 1);
        assert_eq!(ids.assign("a"), MAX_ID);
        ids.last = MAX_ID - 1;
        assert_eq!(ids.assign("c"), 2, "skips the identifiers in use");
    }
}
