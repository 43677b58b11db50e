//! Streams on Kafka, the pure parts: the stream topic's name, offsets ↔ positions, where a
//! read starts (with the count limit applied), the epoch, and the record header that carries
//! a message's portable topic. The broker side is in [`crate::stream_log`].
//!
//! A stream is one Kafka topic of its own with a single partition, named from its root
//! ([`topic_name`]); every message published to a topic under it is a record of that topic
//! whose first header ([`TOPIC_HEADER`]) is the portable topic. A message's position is its
//! record's offset plus one (`Offset(0, offset + 1)`), so that an empty log ends at
//! `Offset(0, 0)` and the entry after `Offset(0, n)` is the record at offset `n`.

use pubsub_core::adapter::ReadFrom;
use pubsub_core::{Offset, Pattern, StreamConfig};

use crate::name::{encode, MAX_NAME};

/// How every stream topic's name begins. `_` is never in an encoded portable topic, so a
/// stream topic is never taken for one (and never matches a pattern through discovery).
pub(crate) const PREFIX: &str = "_pubsub-stream-";

/// The record header a message under a stream carries its portable topic in: always the
/// first header of the record (so a portable header of the same name is told apart).
pub(crate) const TOPIC_HEADER: &str = "pubsub-topic";

/// The Kafka topic of the stream `root` with tag `tag`: [`PREFIX`], the tag in hex, `-`, then
/// the root encoded as topic names are (`room.>` → `room.-3E`), cut to [`MAX_NAME`]
/// characters (the tag keeps two long roots that share a beginning apart).
pub(crate) fn topic_name(root: &Pattern, tag: u32) -> String {
    let mut name = format!("{PREFIX}{tag:08x}-{}", encode(root.as_str()));
    name.truncate(MAX_NAME);
    name
}

/// The epoch of a stream's log on a broker that gives no topic id: a hash (FNV-1a, 64 bits)
/// of its topic's name, the same for every handle.
pub(crate) fn name_epoch(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The epoch of a stream's log whose topic has an id (a UUID, as its two halves): a topic
/// deleted and created again has another id, hence another epoch.
pub(crate) fn id_epoch(most: i64, least: i64) -> u64 {
    (most as u64) ^ (least as u64).rotate_left(32)
}

/// The epoch a read reports for a position beyond the log's end: the log was deleted and
/// created again (its offsets started over), and the position belongs to its earlier life.
/// The earlier epoch cannot be named (the handle may have read its id before, or none), so the
/// read reports another than the log's.
pub(crate) fn recreated(epoch: u64) -> u64 {
    epoch ^ 1
}

/// The position offset of the record at Kafka offset `offset`.
pub(crate) fn position_offset(offset: i64) -> Offset {
    Offset(0, u64::try_from(offset).unwrap_or(0).saturating_add(1))
}

/// The Kafka offset of the entry after `after`, or `None` when `after` lies beyond any offset
/// Kafka can have (then there is nothing after it).
pub(crate) fn next_offset(after: Offset) -> Option<i64> {
    match after {
        Offset(0, n) => i64::try_from(n).ok(),
        _ => None,
    }
}

/// A partition's bounds as the broker reports them: the first offset held, and the offset
/// after the last record (the high watermark; Tansu may report it a batch short, see
/// `log_end`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bounds {
    /// The low watermark.
    pub low: i64,
    /// The high watermark.
    pub high: i64,
}

impl Bounds {
    /// The first offset the stream holds: Kafka keeps by age (`retention.ms`) only, so the
    /// count limit is applied here, by the reader: an entry more than `max_len` before the
    /// end counts as trimmed.
    pub(crate) fn held_from(&self, max_len: u64) -> i64 {
        let max_len = i64::try_from(max_len).unwrap_or(i64::MAX);
        self.low.max(self.high.saturating_sub(max_len))
    }
}

/// Where a read starts, before the broker is asked for the records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Read from this Kafka offset; `missed` as [`LogRead::missed`](pubsub_core::adapter::LogRead).
    From {
        /// The first offset wanted.
        offset: i64,
        /// Entries after the position asked for that the stream no longer holds.
        missed: Option<Option<u64>>,
    },
    /// The `n` last entries: the real end is needed first.
    Last(u64),
    /// The first entry at or after a time: the broker's time index is needed.
    Time(std::time::SystemTime),
    /// Nothing to read (the log's end only, or a position beyond any end).
    Nothing,
}

/// Where a read of `stream` from `from` starts, given the partition's `bounds`.
pub(crate) fn plan(stream: &StreamConfig, from: ReadFrom, bounds: Bounds) -> Plan {
    let held = bounds.held_from(stream.max_len());
    match from {
        ReadFrom::Start => Plan::From {
            offset: held,
            missed: None,
        },
        ReadFrom::After(after) => match next_offset(after) {
            None => Plan::Nothing,
            Some(next) if next < held => Plan::From {
                offset: held,
                missed: Some(u64::try_from(held - next).ok()),
            },
            Some(next) => Plan::From {
                offset: next,
                missed: None,
            },
        },
        ReadFrom::Last(n) => Plan::Last(n.min(stream.max_len())),
        ReadFrom::Time(time) => Plan::Time(time),
        ReadFrom::End => Plan::Nothing,
    }
}

/// The offset `Last(n)` starts at, given the real `end` (the offset after the last record).
pub(crate) fn last_start(n: u64, end: i64, bounds: Bounds, max_len: u64) -> i64 {
    let n = i64::try_from(n).unwrap_or(i64::MAX);
    end.saturating_sub(n).max(bounds.held_from(max_len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(max_len: u64) -> StreamConfig {
        StreamConfig::new("room.>".parse().unwrap()).with_max_len(max_len)
    }

    #[test]
    fn names_are_legal_reserved_and_distinct() {
        let a = stream(1);
        let name = topic_name(a.root(), a.tag());
        assert!(name.starts_with(PREFIX), "{name}");
        assert!(name.ends_with("-room.-3E"), "{name}");
        assert!(name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)));
        assert!(crate::name::decode_topic(name.as_bytes()).is_none());
        let b = StreamConfig::new("room.*".parse().unwrap());
        assert_ne!(name, topic_name(b.root(), b.tag()));
        let long: Pattern = format!("{}.>", "é".repeat(100)).parse().unwrap();
        assert_eq!(topic_name(&long, 7).len(), MAX_NAME);
    }

    #[test]
    fn offsets_and_positions_round_trip() {
        assert_eq!(position_offset(0), Offset(0, 1));
        assert_eq!(next_offset(position_offset(41)), Some(42));
        assert_eq!(
            next_offset(Offset(0, 0)),
            Some(0),
            "after an empty log's end"
        );
        assert_eq!(next_offset(Offset(u64::MAX, u64::MAX)), None);
        assert_eq!(next_offset(Offset(0, u64::MAX)), None);
        assert!(position_offset(5) > position_offset(4));
    }

    #[test]
    fn epochs_differ_by_name_and_id() {
        assert_ne!(name_epoch("a"), name_epoch("b"));
        assert_eq!(name_epoch("a"), name_epoch("a"));
        assert_ne!(recreated(name_epoch("a")), name_epoch("a"));
        assert_ne!(id_epoch(1, 2), id_epoch(2, 1));
        assert_ne!(id_epoch(1, 2), id_epoch(1, 3));
    }

    #[test]
    fn the_count_limit_bounds_what_is_held() {
        let bounds = Bounds { low: 0, high: 600 };
        assert_eq!(bounds.held_from(20), 580);
        assert_eq!(bounds.held_from(10_000), 0);
        let expired = Bounds {
            low: 590,
            high: 600,
        };
        assert_eq!(expired.held_from(20), 590);
        assert_eq!(Bounds { low: 0, high: 0 }.held_from(u64::MAX), 0);
    }

    #[test]
    fn plans() {
        let bounds = Bounds { low: 0, high: 600 };
        let s = stream(20);
        assert_eq!(
            plan(&s, ReadFrom::Start, bounds),
            Plan::From {
                offset: 580,
                missed: None
            }
        );
        // The first message's position (offset 0 → Offset(0, 1)): 1..580 were trimmed.
        assert_eq!(
            plan(&s, ReadFrom::After(Offset(0, 1)), bounds),
            Plan::From {
                offset: 580,
                missed: Some(Some(579))
            }
        );
        assert_eq!(
            plan(&s, ReadFrom::After(Offset(0, 590)), bounds),
            Plan::From {
                offset: 590,
                missed: None
            }
        );
        assert_eq!(
            plan(&s, ReadFrom::After(Offset(0, 900)), bounds),
            Plan::From {
                offset: 900,
                missed: None
            },
            "past the reported end: the reader finds nothing (or the rest of the last batch)"
        );
        assert_eq!(
            plan(&s, ReadFrom::After(Offset(1, 0)), bounds),
            Plan::Nothing
        );
        assert_eq!(plan(&s, ReadFrom::Last(50), bounds), Plan::Last(20));
        assert_eq!(plan(&s, ReadFrom::End, bounds), Plan::Nothing);
        assert_eq!(last_start(5, 600, bounds, 20), 595);
        assert_eq!(last_start(50, 600, bounds, 20), 580);
        assert_eq!(last_start(5, 3, Bounds { low: 0, high: 3 }, 20), 0);
    }
}
