//! Where a partition's log ends, for a subscription that starts there.
//!
//! A new subscription reads each partition from the end of its log, so that it gets what is
//! published after `subscribe` resolved and nothing from before. The end is the high watermark
//! the broker reports, which a broker may get wrong: Tansu with memory storage reports the
//! first offset of the last record batch plus one, so after a burst that the producer sent as
//! one batch of many records, a consumer starting there would receive the rest of that batch.
//! So the reported end is checked against the records: a probe consumer reads from the record
//! just before it, and the offset after the last record found there (the rest of its batch,
//! and anything newer) is the end. On a broker that reports it right, the probe finds exactly
//! that one record.

use std::time::{Duration, Instant};

use pubsub_core::Result;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::{Message as _, Offset, TopicPartitionList};

use crate::driver::kafka_error;

/// The offset after the last record of `partition` of `name`, as far as `probe` (a consumer
/// of its own, no group, assigned nothing else) can tell within `wait`. Blocking.
pub(crate) fn log_end<C: ConsumerContext>(
    probe: &BaseConsumer<C>,
    name: &str,
    partition: i32,
    timeout: Duration,
    wait: Duration,
) -> Result<i64> {
    let (low, high) = probe
        .fetch_watermarks(name, partition, timeout)
        .map_err(|e| kafka_error("reading a partition's high watermark", e))?;
    if high <= low {
        return Ok(high);
    }
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(name, partition, Offset::Offset(high - 1))
        .map_err(|e| kafka_error("assigning the probe", e))?;
    probe
        .assign(&list)
        .map_err(|e| kafka_error("assigning the probe", e))?;
    let mut end = high;
    let ours =
        |m: &rdkafka::message::BorrowedMessage<'_>| m.topic() == name && m.partition() == partition;
    let deadline = Instant::now() + wait;
    let mut found = false;
    // The first record, then whatever came with it in the same fetch.
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let poll_for = if found { Duration::ZERO } else { left };
        match probe.poll(poll_for) {
            Some(Ok(m)) if ours(&m) => {
                end = end.max(m.offset() + 1);
                found = true;
            }
            Some(_) => {}
            None if found => break,
            None => {}
        }
    }
    if !found {
        // A compacted or transactional log may have no record just before its end.
        tracing::debug!(
            topic = name,
            partition,
            high,
            "no record before the reported end; starting there"
        );
    }
    probe
        .unassign()
        .map_err(|e| kafka_error("unassigning the probe", e))?;
    Ok(end)
}
