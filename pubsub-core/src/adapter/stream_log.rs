//! What a driver reads from a stream's log ([`ReadFrom`], [`LogRead`]), the streams a driver
//! appends to ([`StreamTable`]), and the text form of a position in a header
//! ([`POSITION_HEADER`]).
//!
//! The kit does the rest: it replays from a position, merges the replay with the live
//! subscription, and resumes after an outage (`hub/stream.rs`). A driver only appends what is
//! published under a declared stream, gives each live message under a stream its position
//! ([`Message::with_position`](crate::Message::with_position)), and reads its log in batches.

use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::RwLock;

use crate::{Error, ErrorKind, Offset, Result, StreamConfig, Topic};

/// The header some drivers carry a live message's position in, on the wire (stripped before
/// delivery).
pub const POSITION_HEADER: &str = "pubsub-position";

/// Where [`Driver::read_stream`](crate::adapter::Driver::read_stream) starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReadFrom {
    /// The oldest entry retained.
    Start,
    /// The first entry after this offset.
    After(Offset),
    /// The `n`-th last entry (the last `n` entries).
    Last(u64),
    /// The first entry appended at or after this time.
    Time(SystemTime),
    /// Nothing: only the log's epoch and end are wanted.
    End,
}

/// One batch read from a stream's log.
#[derive(Debug, Clone, Default)]
pub struct LogRead {
    /// The log's epoch now (a log lost and re-created has another).
    pub epoch: u64,
    /// The entries, in log order: their offset and message (position not set).
    pub entries: Vec<(Offset, crate::Message)>,
    /// The offset of the last entry in the log now (`Offset(0, 0)` when empty).
    pub end: Offset,
    /// For [`ReadFrom::After`]: entries after that offset were trimmed or expired before they
    /// could be read; how many, when the broker can tell.
    pub missed: Option<Option<u64>>,
}

/// The streams declared on a handle, for the driver: which stream a topic is under. A topic is
/// under at most one (overlapping roots are refused when declared).
#[derive(Debug, Default)]
pub struct StreamTable {
    streams: RwLock<Arc<Vec<StreamConfig>>>,
}

impl StreamTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `stream` can be added: `Ok(true)` when it is new, `Ok(false)` when it is there
    /// already with the same limits; `Invalid` when its root is there with other limits or
    /// overlaps another stream's root.
    pub fn check(&self, stream: &StreamConfig) -> Result<bool> {
        check_declaration(&self.streams.read(), stream)
    }

    /// Adds `stream` (see [`StreamTable::check`]); `Ok(false)` when it was there already.
    pub fn insert(&self, stream: &StreamConfig) -> Result<bool> {
        let mut streams = self.streams.write();
        if !check_declaration(&streams, stream)? {
            return Ok(false);
        }
        let mut next = Vec::clone(&streams);
        next.push(stream.clone());
        *streams = Arc::new(next);
        Ok(true)
    }

    /// The stream `topic` is under, if any.
    pub fn find(&self, topic: &Topic) -> Option<StreamConfig> {
        let streams = self.streams.read();
        if streams.is_empty() {
            return None;
        }
        streams.iter().find(|s| s.covers(topic)).cloned()
    }

    /// The stream whose root is exactly `root`.
    pub fn get(&self, root: &crate::Pattern) -> Option<StreamConfig> {
        self.streams
            .read()
            .iter()
            .find(|s| s.root() == root)
            .cloned()
    }

    /// Whether no stream is declared.
    pub fn is_empty(&self) -> bool {
        self.streams.read().is_empty()
    }

    /// Every stream declared.
    pub fn all(&self) -> Arc<Vec<StreamConfig>> {
        self.streams.read().clone()
    }
}

/// Whether `stream` can be declared beside `streams`: `Ok(true)` when it is new, `Ok(false)`
/// when it is among them with the same limits; `Invalid` when its root is there with other
/// limits or overlaps another stream's root (a driver checks a broker-side registry with it).
pub fn check_declaration(streams: &[StreamConfig], stream: &StreamConfig) -> Result<bool> {
    for known in streams {
        if known.root() == stream.root() {
            if known == stream {
                return Ok(false);
            }
            return Err(conflict(known, stream));
        }
        if known.root().overlaps(stream.root()) {
            return Err(Error::new(
                ErrorKind::Invalid,
                format!(
                    "stream `{}` overlaps stream `{}`: a topic belongs to at most one stream",
                    stream.root(),
                    known.root()
                ),
            ));
        }
    }
    Ok(true)
}

/// The error of a declaration that conflicts with the stream already there.
pub fn conflict(known: &StreamConfig, wanted: &StreamConfig) -> Error {
    Error::new(
        ErrorKind::Invalid,
        format!(
            "stream `{}` is declared already with max_len {} and max_age {:?}; \
             this declaration asks for max_len {} and max_age {:?}",
            known.root(),
            known.max_len(),
            known.max_age(),
            wanted.max_len(),
            wanted.max_age()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(root: &str) -> StreamConfig {
        StreamConfig::new(root.parse().unwrap())
    }

    #[test]
    fn declarations_are_idempotent_and_conflicts_typed() {
        let table = StreamTable::new();
        assert!(table.insert(&stream("room.>")).unwrap());
        assert!(!table.insert(&stream("room.>")).unwrap());
        let other = stream("room.>").with_max_len(3);
        assert_eq!(table.insert(&other).unwrap_err().kind(), ErrorKind::Invalid);
        assert_eq!(
            table.insert(&stream("room.42.>")).unwrap_err().kind(),
            ErrorKind::Invalid,
            "overlaps"
        );
        assert!(table.insert(&stream("news.*")).unwrap());
        assert_eq!(
            table
                .find(&"room.1".parse().unwrap())
                .unwrap()
                .root()
                .as_str(),
            "room.>"
        );
        assert!(table.find(&"news.a.b".parse().unwrap()).is_none());
    }
}
