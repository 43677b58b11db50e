//! A stream's epoch: the identity of its log, recorded in one registry stream queue per
//! exchange (`<exchange>.stream-epochs`).
//!
//! RabbitMQ gives AMQP no way to tell a queue from one deleted and declared again under the
//! same name (a queue's arguments cannot be read back), so the handle that creates a stream
//! queue appends a record `<epoch> <queue>` with a fresh random epoch to the registry, and
//! every handle that declares the stream takes the last record of its queue there. A stream
//! deleted and declared again gets a new epoch; positions of its earlier life are then told
//! apart (a reset gap) instead of pointing into the new log.
//!
//! One registry for all the streams of an exchange, not one beside each stream: every stream
//! queue holds open files at the broker (its segment and index), and the registry's records
//! are a few dozen bytes each.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection};
use pubsub_core::{Result, StreamConfig};

use crate::driver::lapin_error;
use crate::queue_probe::probe;

/// How long a read of the companion queue waits for its last entry.
const WAIT: Duration = Duration::from_millis(300);

/// After an entry: how long it waits for another.
const QUIET: Duration = Duration::from_millis(25);

/// The registry's size limit: some hundred thousand records (a record is written when a
/// stream queue is created; when old records are trimmed, a stream whose record is gone gets
/// a new epoch when next declared).
const REGISTRY_BYTES: i64 = 50_000_000;

/// The registry of the epochs of `exchange`'s streams.
pub(crate) fn registry_name(exchange: &str) -> ShortString {
    super::cut_name(format!("{exchange}.stream-epochs"))
}

/// A record of the registry: the epoch (16 hexadecimal digits), a space, the stream queue.
pub(crate) fn encode(epoch: u64, queue: &str) -> String {
    format!("{epoch:016x} {queue}")
}

/// A record of the registry (`None` for anything else).
pub(crate) fn decode(body: &[u8]) -> Option<(u64, &str)> {
    let text = std::str::from_utf8(body).ok()?;
    let (epoch, queue) = text.split_once(' ')?;
    if epoch.is_empty() || epoch.len() > 16 || !epoch.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some((u64::from_str_radix(epoch, 16).ok()?, queue))
}

/// Declares `stream`'s queue and binds it (see [`super::declare`]), and returns its epoch: a
/// fresh one when the queue did not exist, else the one recorded (a fresh one when none is).
pub(crate) async fn declare(
    connection: &Connection,
    exchange: &ShortString,
    queue: &ShortString,
    stream: &StreamConfig,
) -> Result<u64> {
    let (channel, existed) = probe(connection, queue, "looking for the stream queue").await?;
    let result = declare_on(&channel, exchange, queue, stream, existed).await;
    if channel.status().connected() {
        let _ = channel.close(200, "OK".into()).await;
    }
    result
}

async fn declare_on(
    channel: &Channel,
    exchange: &ShortString,
    queue: &ShortString,
    stream: &StreamConfig,
    existed: bool,
) -> Result<u64> {
    let fail = |what| move |e| lapin_error(what, e);
    super::declare(channel, exchange, queue, stream).await?;
    let registry = registry_name(exchange.as_str());
    let arguments = FieldTable::from(BTreeMap::from([
        (
            "x-queue-type".into(),
            AMQPValue::LongString("stream".into()),
        ),
        (
            "x-max-length-bytes".into(),
            AMQPValue::LongLongInt(REGISTRY_BYTES),
        ),
    ]));
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(registry.clone(), durable, arguments)
        .await
        .map_err(fail("declaring the streams' epoch registry"))?;
    channel
        .basic_qos(16, BasicQosOptions::default())
        .await
        .map_err(fail("reading the stream's epoch"))?;
    if existed {
        // Twice before a new epoch is recorded for a stream that was there: RabbitMQ may
        // now and then start a consumer at the end of the log instead of its start.
        for attempt in 0..2 {
            if attempt > 0 {
                tokio::time::sleep(QUIET).await;
            }
            if let Some(epoch) = recorded(channel, &registry, queue)
                .await
                .map_err(fail("reading the stream's epoch"))?
            {
                return Ok(epoch);
            }
        }
    }
    let fresh = rand::random::<u64>();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(fail("recording the stream's epoch"))?;
    channel
        .basic_publish(
            "".into(),
            registry.clone(),
            BasicPublishOptions::default(),
            encode(fresh, queue.as_str()).as_bytes(),
            BasicProperties::default(),
        )
        .await
        .map_err(fail("recording the stream's epoch"))?
        .await
        .map_err(fail("recording the stream's epoch"))?;
    tracing::debug!(queue = %queue, epoch = fresh, "recorded a new epoch for a stream");
    // Two handles creating the stream at once both record one: the last recorded wins.
    Ok(recorded(channel, &registry, queue)
        .await
        .map_err(fail("reading the stream's epoch"))?
        .unwrap_or(fresh))
}

/// The last epoch recorded for `queue` in `registry` (read from its start, until it falls
/// quiet).
async fn recorded(
    channel: &Channel,
    registry: &ShortString,
    queue: &ShortString,
) -> lapin::Result<Option<u64>> {
    let mut consumer =
        super::consume(channel, registry, AMQPValue::LongString("first".into())).await?;
    let mut newest: Option<(u64, u64)> = None;
    let mut wait = WAIT;
    while let Ok(Some(delivery)) = tokio::time::timeout(wait, consumer.next()).await {
        let delivery = delivery?;
        delivery.acker.ack(BasicAckOptions::default()).await?;
        wait = QUIET;
        let Some(at) = super::position_offset(&delivery) else {
            continue;
        };
        if let Some((epoch, of)) = decode(&delivery.data) {
            if of == queue.as_str() && newest.is_none_or(|(known, _)| at > known) {
                newest = Some((at, epoch));
            }
        }
    }
    channel
        .basic_cancel(consumer.tag(), BasicCancelOptions::default())
        .await?;
    Ok(newest.map(|(_, epoch)| epoch))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_junk_is_refused() {
        for epoch in [0, 1, 0xdead_beef, u64::MAX] {
            let record = encode(epoch, "pubsub.stream.1.a b");
            assert_eq!(
                decode(record.as_bytes()),
                Some((epoch, "pubsub.stream.1.a b"))
            );
        }
        for junk in [
            &b""[..],
            b"xyz q",
            b"00000000000000000 q",
            b"-1 q",
            b"\xff q",
            b"12",
            b" q",
        ] {
            assert_eq!(decode(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn one_registry_per_exchange() {
        assert_eq!(registry_name("pubsub").as_str(), "pubsub.stream-epochs");
    }
}
