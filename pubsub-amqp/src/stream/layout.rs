//! How a stream is laid out on RabbitMQ: its queue's name and arguments, and a position's
//! offset for a stream offset (pure functions).

use std::collections::BTreeMap;

use lapin::types::{AMQPValue, FieldTable, ShortString};
use pubsub_core::{Offset, StreamConfig};

/// Bytes budgeted per message when a stream's `max_len` is turned into `x-max-length-bytes`
/// (RabbitMQ limits a stream by size, not count).
pub(crate) const BYTES_PER_MESSAGE: u64 = 256;

/// Segments a stream's byte budget is cut into (`x-stream-max-segment-size-bytes`):
/// retention drops whole segments, so smaller segments trim closer to the budget.
const SEGMENTS: u64 = 4;

/// Smallest segment asked for.
const MIN_SEGMENT: u64 = 1024;

/// RabbitMQ's default segment size: the largest asked for.
const MAX_SEGMENT: u64 = 500_000_000;

/// The stream queue of `stream` on `exchange`: `<exchange>.stream.<tag>.<root>`, cut to
/// AMQP's 255 bytes (the tag keeps cut names apart).
pub(crate) fn queue_name(exchange: &str, stream: &StreamConfig) -> ShortString {
    cut_name(format!(
        "{exchange}.stream.{:08x}.{}",
        stream.tag(),
        stream.root()
    ))
}

/// `name` cut to AMQP's 255 bytes.
pub(crate) fn cut_name(mut name: String) -> ShortString {
    if name.len() > 255 {
        let mut cut = 255;
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        name.truncate(cut);
    }
    ShortString::from(name)
}

/// The arguments of the stream queue: its type, `x-max-age` from `max_age` (whole seconds,
/// rounded up), and `x-max-length-bytes` from `max_len` ([`BYTES_PER_MESSAGE`] each) with
/// segments a quarter of that, so that trimming happens.
pub(crate) fn queue_arguments(stream: &StreamConfig) -> FieldTable {
    let (bytes, segment) = byte_limits(stream.max_len());
    let age = stream.max_age();
    let seconds = age.as_secs() + u64::from(age.subsec_nanos() > 0);
    FieldTable::from(BTreeMap::from([
        (
            "x-queue-type".into(),
            AMQPValue::LongString("stream".into()),
        ),
        (
            "x-max-age".into(),
            AMQPValue::LongString(format!("{}s", seconds.max(1)).into()),
        ),
        ("x-max-length-bytes".into(), AMQPValue::LongLongInt(bytes)),
        (
            "x-stream-max-segment-size-bytes".into(),
            AMQPValue::LongLongInt(segment),
        ),
    ]))
}

/// `x-max-length-bytes` and `x-stream-max-segment-size-bytes` for `max_len` messages.
pub(crate) fn byte_limits(max_len: u64) -> (i64, i64) {
    let bytes = max_len
        .saturating_mul(BYTES_PER_MESSAGE)
        .min(i64::MAX as u64);
    let segment = (bytes / SEGMENTS).clamp(MIN_SEGMENT, MAX_SEGMENT);
    (
        i64::try_from(bytes).unwrap_or(i64::MAX),
        i64::try_from(segment).unwrap_or(i64::MAX),
    )
}

/// A position's offset for the stream offset `offset`.
pub(crate) fn to_position(offset: u64) -> u64 {
    offset.saturating_add(1)
}

/// The stream offset of the first entry after the position offset `after`; `None` when no
/// stream offset can be after it (an offset this adapter never gave).
pub(crate) fn first_after(after: Offset) -> Option<i64> {
    match after {
        Offset(0, at) => i64::try_from(at).ok(),
        _ => None,
    }
}

/// How many entries were lost between the position offset `after` and the first entry read
/// after it (`first`), both position offsets.
pub(crate) fn missed_between(after: u64, first: u64) -> Option<u64> {
    (first > after.saturating_add(1)).then(|| first - after - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn config(root: &str) -> StreamConfig {
        StreamConfig::new(root.parse().unwrap())
    }

    #[test]
    fn queue_names_carry_exchange_tag_and_root_and_fit() {
        let stream = config("room.>");
        let name = queue_name("pubsub", &stream);
        assert_eq!(
            name.as_str(),
            format!("pubsub.stream.{:08x}.room.>", stream.tag())
        );
        let long = config(&format!("{}.>", vec!["abcdefgh"; 27].join(".")));
        let name = queue_name("pubsub", &long);
        assert_eq!(name.as_str().len(), 255);
        assert!(name
            .as_str()
            .starts_with(&format!("pubsub.stream.{:08x}.", long.tag())));
        assert_ne!(queue_name("other", &stream), queue_name("pubsub", &stream));
    }

    #[test]
    fn limits_are_sized_from_max_len_and_max_age() {
        assert_eq!(byte_limits(20), (5_120, 1_280));
        assert_eq!(byte_limits(1), (256, 1_024));
        assert_eq!(byte_limits(u64::MAX), (i64::MAX, 500_000_000));
        let args = queue_arguments(
            &config("s.>")
                .with_max_len(100)
                .with_max_age(Duration::from_millis(1_500)),
        );
        let get = |k: &str| args.inner().get(k).cloned();
        assert_eq!(get("x-max-age"), Some(AMQPValue::LongString("2s".into())));
        assert_eq!(
            get("x-max-length-bytes"),
            Some(AMQPValue::LongLongInt(25_600))
        );
        assert_eq!(
            get("x-queue-type"),
            Some(AMQPValue::LongString("stream".into()))
        );
    }

    #[test]
    fn offsets_map_to_positions_and_back() {
        assert_eq!(to_position(0), 1);
        // After the entry at stream offset 4 (position offset 5): from stream offset 5.
        assert_eq!(first_after(Offset(0, to_position(4))), Some(5));
        assert_eq!(first_after(Offset(0, 0)), Some(0));
        assert_eq!(first_after(Offset(1, 0)), None);
        assert_eq!(first_after(Offset(0, u64::MAX)), None);
        assert_eq!(missed_between(3, 4), None);
        assert_eq!(missed_between(3, 10), Some(6));
        assert_eq!(missed_between(0, 1), None);
    }
}
