//! One delivery of a group's consumer, both ways: the [`GroupEntry`] of a JetStream message,
//! and what a [`Settlement`] sends back to its reply subject.

use std::sync::Arc;

use bytes::Bytes;

use pubsub_core::adapter::{GroupEntry, Receipt, Settlement, TopicMemo};
use pubsub_core::{Message, Offset, Position};

use crate::stream;

/// What JetStream says of a delivery, from its reply subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Delivery {
    /// The message's stream sequence.
    pub seq: u64,
    /// How many times it was delivered, this delivery included.
    pub deliveries: u32,
}

/// The delivery a JetStream message of a pull consumer is, from its `$JS.ACK.…` reply
/// subject; `None` when it has none (a status message, or not JetStream's).
pub(crate) fn delivery_of(message: &async_nats::jetstream::Message) -> Option<Delivery> {
    let info = message.info().ok()?;
    Some(Delivery {
        seq: info.stream_sequence,
        deliveries: u32::try_from(info.delivered.max(1)).unwrap_or(u32::MAX),
    })
}

/// The group entry of a delivered message: its topic, headers (JetStream's own stripped) and
/// position (`position_of` its sequence), and a receipt holding the reply subject that settles
/// it. `None` when its subject is not a portable topic.
pub(crate) fn entry_of(
    message: async_nats::Message,
    delivery: Delivery,
    topics: &mut TopicMemo,
    position_of: impl FnOnce(u64) -> Position,
) -> Option<GroupEntry> {
    let topic = topics.topic(message.subject.as_str())?;
    let reply = message.reply.as_ref()?;
    let receipt = Receipt {
        offset: Offset(0, delivery.seq),
        token: Some(Arc::from(reply.as_str())),
    };
    let headers = stream::headers_of(message.headers.as_ref());
    let message = Message::with_headers(topic, message.payload, headers)
        .with_position(position_of(delivery.seq));
    Some(GroupEntry {
        receipt,
        message,
        deliveries: delivery.deliveries,
    })
}

/// The acknowledgement a settlement publishes to its delivery's reply subject: `+ACK`, or
/// `-NAK` with the delay in nanoseconds (`-NAK {"delay":<ns>}`; none for no delay).
pub(crate) fn reply_of(settlement: &Settlement) -> Bytes {
    match settlement {
        Settlement::Ack(_) => Bytes::from_static(b"+ACK"),
        Settlement::Nack(_, delay) if delay.is_zero() => Bytes::from_static(b"-NAK"),
        Settlement::Nack(_, delay) => {
            Bytes::from(format!("-NAK {{\"delay\":{}}}", delay.as_nanos()))
        }
    }
}

/// The acknowledgement for a delivery the group cannot take (its subject is not a portable
/// topic): never delivered again.
pub(crate) fn ack() -> Bytes {
    Bytes::from_static(b"+ACK")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn nats(subject: &str, reply: Option<&str>) -> async_nats::Message {
        let mut headers = async_nats::HeaderMap::new();
        headers.append("x-app", "kept");
        headers.append("Nats-Sequence", "12");
        async_nats::Message {
            subject: subject.into(),
            reply: reply.map(Into::into),
            payload: "x".into(),
            headers: Some(headers),
            status: None,
            description: None,
            length: 0,
        }
    }

    #[test]
    fn settlements_become_acks_and_naks() {
        let r = Receipt::at(Offset(0, 1));
        assert_eq!(reply_of(&Settlement::Ack(r.clone())), "+ACK");
        assert_eq!(
            reply_of(&Settlement::Nack(r.clone(), Duration::ZERO)),
            "-NAK"
        );
        assert_eq!(
            reply_of(&Settlement::Nack(r, Duration::from_millis(800))),
            "-NAK {\"delay\":800000000}"
        );
        assert_eq!(ack(), "+ACK");
    }

    #[test]
    fn entries_carry_the_receipt_and_position() {
        let reply = "$JS.ACK.S.g.3.12.40.1700000000000000000.5";
        let delivery = Delivery {
            seq: 12,
            deliveries: 3,
        };
        let mut topics = TopicMemo::default();
        let position = |seq| Position::new(7, 42, Offset(0, seq));
        let entry = entry_of(
            nats("orders.1", Some(reply)),
            delivery,
            &mut topics,
            position,
        )
        .unwrap();
        assert_eq!(entry.deliveries, 3);
        assert_eq!(entry.receipt.offset, Offset(0, 12));
        assert_eq!(entry.receipt.token.as_deref(), Some(reply));
        assert_eq!(entry.message.topic().as_str(), "orders.1");
        assert_eq!(
            *entry.message.position().unwrap(),
            Position::new(7, 42, Offset(0, 12))
        );
        assert_eq!(entry.message.headers().len(), 1);
        assert_eq!(entry.message.headers().get("x-app"), Some("kept"));
        // Not a portable topic, or nothing to settle it with.
        assert!(entry_of(nats("a b", Some(reply)), delivery, &mut topics, position).is_none());
        assert!(entry_of(nats("orders.1", None), delivery, &mut topics, position).is_none());
    }
}
