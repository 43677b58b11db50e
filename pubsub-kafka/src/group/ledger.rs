//! A group's ledger: a Kafka topic of its own (one partition, compacted) holding the group's
//! settings (the first record keyed [`SETTINGS_KEY`]) and, after each read that delivered
//! new records, the highest offset delivered so far (records keyed [`DELIVERED_KEY`]).
//!
//! Kafka keeps such data in a committed offset's metadata, but the test broker (Tansu)
//! accepts the metadata and answers it empty; a topic works on every broker.

use std::time::{Duration, Instant};

use pubsub_core::{Error, GroupConfig, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::TopicPartitionList;

use crate::driver::kafka_error;
use crate::health::LinkContext;

/// The key of the record holding the group's settings.
pub(crate) const SETTINGS_KEY: &[u8] = b"settings";
/// The key of the records holding the highest offset delivered.
pub(crate) const DELIVERED_KEY: &[u8] = b"delivered";

/// The ledger topic of `group` on the stream with tag `tag` (`_` keeps it apart from every
/// encoded portable topic, as a stream's topic).
pub(crate) fn topic_name(tag: u32, group: &GroupConfig) -> String {
    format!("_pubsub-group-{tag:08x}-{}", group.name())
}

/// Creates the ledger `name`; true when it is new (false: it existed already).
pub(crate) async fn create(
    admin: &AdminClient<LinkContext>,
    name: &str,
    replication: i32,
    timeout: Duration,
) -> Result<bool> {
    let topic = NewTopic::new(name, 1, TopicReplication::Fixed(replication))
        .set("cleanup.policy", "compact");
    let options = AdminOptions::new().operation_timeout(Some(timeout));
    let created = tokio::time::timeout(timeout, admin.create_topics([&topic], &options))
        .await
        .map_err(|_| {
            Error::timeout(format!(
                "creating a group's ledger: no answer within {timeout:?}"
            ))
        })?
        .map_err(|e| kafka_error("creating a group's ledger", e))?;
    let mut new = false;
    for result in created {
        match result {
            Ok(_) => new = true,
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => {
                return Err(kafka_error(
                    "creating a group's ledger",
                    KafkaError::AdminOp(code),
                ))
            }
        }
    }
    Ok(new)
}

/// Appends a record keyed `key` to the ledger `name` and waits for the broker.
pub(crate) async fn append(
    producer: &FutureProducer<LinkContext>,
    name: &str,
    key: &[u8],
    value: &[u8],
    timeout: Duration,
) -> Result<()> {
    let record = FutureRecord::to(name).partition(0).key(key).payload(value);
    match producer.send(record, timeout).await {
        Ok(_) => Ok(()),
        Err((error, _)) => Err(kafka_error("writing a group's ledger", error)),
    }
}

/// The value of the first settings record of the ledger `name`, waiting up to `wait` for it
/// (a ledger just created by another handle gets it soon after). Blocking; `consumer` is
/// assigned for the read and unassigned after.
pub(crate) fn settings<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    name: &str,
    wait: Duration,
) -> Result<Option<Vec<u8>>> {
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(name, 0, rdkafka::Offset::Beginning)
        .map_err(|e| kafka_error("reading a group's ledger", e))?;
    consumer
        .assign(&list)
        .map_err(|e| kafka_error("reading a group's ledger", e))?;
    let deadline = Instant::now() + wait;
    let mut found = None;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        if let Some(Ok(record)) = consumer.poll(left) {
            if rdkafka::Message::key(&record) == Some(SETTINGS_KEY) {
                found = Some(
                    rdkafka::Message::payload(&record)
                        .unwrap_or_default()
                        .to_vec(),
                );
                break;
            }
        }
    }
    consumer
        .unassign()
        .map_err(|e| kafka_error("reading a group's ledger", e))?;
    Ok(found)
}

/// The highest offset delivered that the ledger `name` holds: the largest among the records
/// from the reported end's last one on (Tansu reports the end a batch short, so this is the
/// whole last batch). Blocking; `consumer` (no group) is assigned for the read.
pub(crate) fn delivered<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    name: &str,
    timeout: Duration,
) -> Result<Option<i64>> {
    let (low, high) = consumer
        .fetch_watermarks(name, 0, timeout)
        .map_err(|e| kafka_error("reading a group's ledger", e))?;
    if high <= low {
        return Ok(None);
    }
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(name, 0, rdkafka::Offset::Offset(high - 1))
        .map_err(|e| kafka_error("reading a group's ledger", e))?;
    consumer
        .assign(&list)
        .map_err(|e| kafka_error("reading a group's ledger", e))?;
    let deadline = Instant::now() + timeout;
    let (mut seen, mut highest) = (false, None::<i64>);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match consumer.poll(if seen { Duration::ZERO } else { left }) {
            Some(Ok(record)) => {
                seen = true;
                if rdkafka::Message::key(&record) == Some(DELIVERED_KEY) {
                    let value = rdkafka::Message::payload(&record).unwrap_or_default();
                    if let Some(offset) = parse_delivered(value) {
                        highest = Some(highest.map_or(offset, |h| h.max(offset)));
                    }
                }
            }
            Some(Err(_)) => {}
            None if seen => break,
            None => {}
        }
    }
    consumer
        .unassign()
        .map_err(|e| kafka_error("reading a group's ledger", e))?;
    Ok(highest)
}

/// The value of a delivered record for `offset`.
pub(crate) fn encode_delivered(offset: i64) -> String {
    offset.to_string()
}

/// The offset a delivered record holds; `None` when it is not one.
pub(crate) fn parse_delivered(value: &[u8]) -> Option<i64> {
    std::str::from_utf8(value).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_values() {
        let g = GroupConfig::new("billing-1", vec!["a.>".parse().unwrap()]).unwrap();
        assert_eq!(topic_name(7, &g), "_pubsub-group-00000007-billing-1");
        assert_eq!(parse_delivered(encode_delivered(42).as_bytes()), Some(42));
        assert_eq!(parse_delivered(b"x"), None);
        assert_eq!(parse_delivered(&[0xff]), None);
    }
}
