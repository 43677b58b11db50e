//! How a group is laid out on RabbitMQ: its queue's name and arguments (which carry the
//! group's settings), and what a delivery of that queue says (its topic, headers and delivery
//! count). Pure functions.

use std::collections::BTreeMap;

use lapin::message::Delivery;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use pubsub_core::{GroupConfig, Headers, Message, StreamConfig, Topic};

use crate::stream::cut_name;

/// The quorum queue's header counting a message's earlier deliveries (RabbitMQ sets it on
/// every delivery, 0 the first time; absent is read as 0).
const DELIVERY_COUNT: &str = "x-delivery-count";

/// The header carrying the topic of a message copied from the stream into a group's queue
/// (a copy is published to the queue itself, so its routing key is the queue's name).
pub(crate) const COPY_TOPIC: &str = "pubsub-topic";

/// Headers the broker adds to a delivery, which are not the message's.
const BROKER_HEADERS: &[&str] = &[DELIVERY_COUNT, "x-stream-offset"];

/// The queue of `group` on `stream`: `<exchange>.group.<tag>.<name>` (the stream's tag tells
/// groups of the same name on two streams apart), cut to AMQP's 255 bytes.
pub(crate) fn queue_name(
    exchange: &str,
    stream: &StreamConfig,
    group: &GroupConfig,
) -> ShortString {
    cut_name(format!(
        "{exchange}.group.{:08x}.{}",
        stream.tag(),
        group.name()
    ))
}

/// The queue that, while it exists (exclusive to one connection), says that a connection is
/// creating the group of `queue`.
pub(crate) fn lock_name(queue: &ShortString) -> ShortString {
    let mut name = queue.as_str().to_string();
    name.truncate(240);
    while !queue.as_str().is_char_boundary(name.len()) {
        name.pop();
    }
    ShortString::from(format!("{name}.creating"))
}

/// The group-wide settings as one text: readable when it fits a short string, else a digest
/// of that text.
pub(crate) fn settings_text(group: &GroupConfig) -> String {
    let patterns: Vec<&str> = group.patterns().iter().map(|p| p.as_str()).collect();
    let text = format!(
        "pubsub-group ack_deadline={}ms max_deliveries={} dead_letter={} patterns={}",
        group.ack_deadline().as_millis(),
        group.max_deliveries(),
        group.dead_letter(),
        patterns.join(" ")
    );
    if text.len() <= 255 {
        return text;
    }
    format!("pubsub-group #{:016x}", fnv1a(text.as_bytes()))
}

/// FNV-1a, 64 bits: a digest that stays the same across builds and platforms.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The arguments of a group's queue: a quorum queue (`x-queue-type`), the stream's limits
/// (`x-max-length` from `max_len`, `x-message-ttl` from `max_age` when it fits), and the group's
/// settings as `x-dead-letter-routing-key` (with `x-dead-letter-exchange` the default exchange),
/// an argument RabbitMQ compares when the queue is declared again: a declaration with other
/// settings fails with `PRECONDITION_FAILED`. (The queue never dead-letters: it is never
/// rejected without requeue, and what its limits drop goes to a queue that does not exist.)
pub(crate) fn queue_arguments(stream: &StreamConfig, group: &GroupConfig) -> FieldTable {
    let mut arguments = BTreeMap::from([
        (
            ShortString::from("x-queue-type"),
            AMQPValue::LongString("quorum".into()),
        ),
        (
            "x-max-length".into(),
            AMQPValue::LongLongInt(i64::try_from(stream.max_len()).unwrap_or(i64::MAX)),
        ),
        (
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString("".into()),
        ),
        (
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(settings_text(group).into()),
        ),
    ]);
    if let Ok(ttl) = u32::try_from(stream.max_age().as_millis()) {
        arguments.insert(
            "x-message-ttl".into(),
            AMQPValue::LongLongInt(i64::from(ttl.max(1))),
        );
    }
    FieldTable::from(arguments)
}

/// How many times a delivery has been delivered, this one included.
pub(crate) fn deliveries_of(delivery: &Delivery) -> u32 {
    let earlier = delivery
        .properties
        .headers()
        .as_ref()
        .and_then(|headers| headers.inner().get(DELIVERY_COUNT))
        .and_then(count_value)
        .unwrap_or(0);
    u32::try_from(earlier).unwrap_or(u32::MAX).saturating_add(1)
}

fn count_value(value: &AMQPValue) -> Option<u64> {
    match value {
        AMQPValue::LongLongInt(v) => u64::try_from(*v).ok(),
        AMQPValue::LongInt(v) => u64::try_from(*v).ok(),
        AMQPValue::LongUInt(v) => Some(u64::from(*v)),
        AMQPValue::ShortInt(v) => u64::try_from(*v).ok(),
        AMQPValue::ShortUInt(v) => Some(u64::from(*v)),
        AMQPValue::ShortShortInt(v) => u64::try_from(*v).ok(),
        AMQPValue::ShortShortUInt(v) => Some(u64::from(*v)),
        _ => None,
    }
}

/// The message of a delivery of the group's `queue`: its topic is the routing key, or for a
/// copy from the stream (routed by the queue's own name) the [`COPY_TOPIC`] header; its
/// headers are the message's, without those the broker or the copy added. `None` when the
/// topic is not one.
pub(crate) fn message_of(delivery: &Delivery, queue: &ShortString) -> Option<Message> {
    let table = delivery.properties.headers().as_ref();
    let copied = delivery.routing_key == *queue;
    let topic = if copied {
        match table.and_then(|t| t.inner().get(COPY_TOPIC)) {
            Some(AMQPValue::LongString(topic)) => std::str::from_utf8(topic.as_bytes()).ok()?,
            _ => return None,
        }
    } else {
        delivery.routing_key.as_str()
    };
    let topic = Topic::new(topic).ok()?;
    Some(Message::with_headers(
        topic,
        delivery.data.clone(),
        headers_of(table, copied),
    ))
}

/// The message's headers in a delivery's table.
fn headers_of(table: Option<&FieldTable>, copied: bool) -> Headers {
    let Some(table) = table else {
        return Headers::new();
    };
    let mut own = table.inner().clone();
    for name in BROKER_HEADERS {
        own.remove(*name);
    }
    if copied {
        own.remove(COPY_TOPIC);
    }
    crate::headers::decode(Some(&FieldTable::from(own)))
}

/// The headers table of a copy of `message` into a group's queue: its own headers plus its
/// topic in [`COPY_TOPIC`].
pub(crate) fn copy_table(message: &Message) -> pubsub_core::Result<FieldTable> {
    let mut headers = Headers::new();
    for (name, value) in message.headers().iter() {
        // What the stream's delivery added, read as a header of a foreign publisher.
        if !BROKER_HEADERS.contains(&name) {
            headers.insert(name, value)?;
        }
    }
    let mut table = crate::headers::encode(&headers)?.unwrap_or_default();
    table.insert(
        COPY_TOPIC.into(),
        AMQPValue::LongString(LongString::from(message.topic().as_str())),
    );
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::BasicProperties;
    use std::time::Duration;

    fn group(name: &str) -> GroupConfig {
        GroupConfig::new(name, vec!["s.>".parse().unwrap(), "s.a".parse().unwrap()]).unwrap()
    }

    fn stream() -> StreamConfig {
        StreamConfig::new("s.>".parse().unwrap())
            .with_max_len(1_000)
            .with_max_age(Duration::from_secs(60))
    }

    fn delivery(key: &str, table: Option<FieldTable>) -> Delivery {
        let mut properties = BasicProperties::default();
        if let Some(table) = table {
            properties = properties.with_headers(table);
        }
        let mut delivery = Delivery::mock(1, "pubsub".into(), key.into(), false, b"body".to_vec());
        delivery.properties = properties;
        delivery
    }

    #[test]
    fn names_carry_the_stream_and_the_group() {
        let name = queue_name("pubsub", &stream(), &group("billing"));
        assert_eq!(
            name.as_str(),
            format!("pubsub.group.{:08x}.billing", stream().tag())
        );
        assert_eq!(
            lock_name(&name).as_str(),
            format!("{}.creating", name.as_str())
        );
        let long = ShortString::from("é".repeat(127));
        assert!(lock_name(&long).as_str().len() <= 255);
    }

    #[test]
    fn settings_are_compared_through_the_arguments() {
        let g = group("g");
        let text = settings_text(&g);
        assert_eq!(
            text,
            "pubsub-group ack_deadline=30000ms max_deliveries=5 dead_letter=dead-letter.g \
             patterns=s.> s.a"
        );
        // The start and the prefetch are not the group's.
        let same = g
            .clone()
            .with_prefetch(3)
            .starting_at(pubsub_core::StartAt::Start);
        assert_eq!(settings_text(&same), text);
        assert_ne!(settings_text(&g.clone().with_max_deliveries(9)), text);
        let many: Vec<_> = (0..40)
            .map(|i| format!("s.topic{i}").parse().unwrap())
            .collect();
        let long = GroupConfig::new("g", many).unwrap();
        let digest = settings_text(&long);
        assert!(digest.starts_with("pubsub-group #") && digest.len() <= 255);
        assert_eq!(digest, settings_text(&long.clone()));
        let args = queue_arguments(&stream(), &g);
        let get = |k: &str| args.inner().get(k).cloned();
        assert_eq!(
            get("x-queue-type"),
            Some(AMQPValue::LongString("quorum".into()))
        );
        assert_eq!(get("x-max-length"), Some(AMQPValue::LongLongInt(1_000)));
        assert_eq!(get("x-message-ttl"), Some(AMQPValue::LongLongInt(60_000)));
        assert_eq!(
            get("x-dead-letter-routing-key"),
            Some(AMQPValue::LongString(text.into()))
        );
        let forever = StreamConfig::new("s.>".parse().unwrap())
            .with_max_age(Duration::from_secs(u64::from(u32::MAX)));
        assert!(!queue_arguments(&forever, &g)
            .inner()
            .contains_key("x-message-ttl"));
    }

    #[test]
    fn delivery_counts() {
        assert_eq!(deliveries_of(&delivery("s.a", None)), 1);
        let count = |v| {
            let mut t = FieldTable::default();
            t.insert(DELIVERY_COUNT.into(), v);
            deliveries_of(&delivery("s.a", Some(t)))
        };
        assert_eq!(count(AMQPValue::LongLongInt(0)), 1);
        assert_eq!(count(AMQPValue::LongLongInt(2)), 3);
        assert_eq!(count(AMQPValue::LongInt(4)), 5);
        assert_eq!(count(AMQPValue::LongLongInt(-1)), 1);
        assert_eq!(count(AMQPValue::LongString("x".into())), 1);
        assert_eq!(count(AMQPValue::LongLongInt(i64::MAX)), u32::MAX);
    }

    #[test]
    fn messages_of_bound_deliveries_and_of_copies() {
        let queue = ShortString::from("pubsub.group.1.g");
        let mut headers = Headers::new();
        headers.insert("x-app", "kept").unwrap();
        let original = Message::with_headers("s.b".parse().unwrap(), b"body".to_vec(), headers);
        // A bound delivery: the routing key is the topic; the broker's count is not a header.
        let mut table = crate::headers::encode(original.headers()).unwrap().unwrap();
        table.insert(DELIVERY_COUNT.into(), AMQPValue::LongLongInt(1));
        let bound = message_of(&delivery("s.b", Some(table)), &queue).unwrap();
        assert_eq!(bound.topic().as_str(), "s.b");
        assert_eq!(bound.headers(), original.headers());
        // A foreign message without headers: none, not the broker's count.
        let mut count = FieldTable::default();
        count.insert(DELIVERY_COUNT.into(), AMQPValue::LongLongInt(0));
        assert!(message_of(&delivery("s.b", Some(count)), &queue)
            .unwrap()
            .headers()
            .is_empty());
        // A copy: the topic from its header; the stream's offset is not copied.
        let mut with_offset = original.headers().clone();
        with_offset.insert("x-stream-offset", "12").unwrap();
        let read = Message::with_headers(
            original.topic().clone(),
            original.payload().clone(),
            with_offset,
        );
        let copy = copy_table(&read).unwrap();
        let copied = message_of(&delivery(queue.as_str(), Some(copy)), &queue).unwrap();
        assert_eq!(copied.topic().as_str(), "s.b");
        assert_eq!(copied.headers(), original.headers());
        assert_eq!(copied.payload().as_ref(), b"body");
        // Not a topic, or a copy without its topic: none.
        assert!(message_of(&delivery("bad..key", None), &queue).is_none());
        assert!(message_of(&delivery(queue.as_str(), None), &queue).is_none());
    }
}
