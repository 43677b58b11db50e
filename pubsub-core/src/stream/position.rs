//! [`Position`]: where a message stands in its stream, with a short URL-safe text form.

use std::fmt;
use std::str::FromStr;

use crate::{Error, ErrorKind};

/// Where a message stands within its stream's log: a broker's own offset, as two numbers so
/// that every broker's fits (a Redis Stream id is `milliseconds-sequence`; a JetStream or
/// memory sequence is `Offset(0, seq)`). Ordered as the log is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Offset(pub u64, pub u64);

/// Where a message stands in its stream: an opaque, ordered token whose text form
/// (`Display`, [`FromStr`]) is short and URL-safe, so it fits an SSE `id:` field, a cookie or a
/// query parameter.
///
/// A position names its stream (a tag derived from the stream's root) and the stream's
/// *epoch*: a log that was lost and re-created (a flushed Redis, a deleted JetStream stream, a
/// new memory bus) has a new epoch, so an old position is recognised as such instead of being
/// mistaken for a place in the new log.
///
/// ```
/// use pubsub_core::Position;
/// let text = "ps1-1f2e3d4c-18c2d9e1a3f-0-2a";
/// let position: Position = text.parse()?;
/// assert_eq!(position.to_string(), text);
/// assert!("ps1-xyz".parse::<Position>().is_err());
/// # Ok::<(), pubsub_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Position {
    stream: u32,
    epoch: u64,
    offset: Offset,
}

/// The text form's prefix (a version: a later form can be told apart).
const PREFIX: &str = "ps1";

impl Position {
    /// A position (adapters and the kit build them; applications parse them).
    pub fn new(stream: u32, epoch: u64, offset: Offset) -> Self {
        Position {
            stream,
            epoch,
            offset,
        }
    }

    /// The tag of the stream the position belongs to ([`StreamConfig::tag`](crate::StreamConfig::tag)).
    pub fn stream_tag(&self) -> u32 {
        self.stream
    }

    /// The epoch of the stream's log when the message was appended.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The broker's offset of the message within its log.
    pub fn offset(&self) -> Offset {
        self.offset
    }

    /// Whether `self` comes after `other` in the same log (same stream, same epoch).
    pub fn is_after(&self, other: &Position) -> bool {
        self.stream == other.stream && self.epoch == other.epoch && self.offset > other.offset
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Offset(high, low) = self.offset;
        write!(
            f,
            "{PREFIX}-{:x}-{:x}-{high:x}-{low:x}",
            self.stream, self.epoch
        )
    }
}

impl FromStr for Position {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        let invalid = || {
            Error::new(
                ErrorKind::Invalid,
                format!(
                    "{:?} is not a stream position (expected {PREFIX}-<stream>-<epoch>-<hi>-<lo>, \
                     hexadecimal)",
                    text.chars().take(80).collect::<String>()
                ),
            )
        };
        let mut parts = text.split('-');
        if parts.next() != Some(PREFIX) {
            return Err(invalid());
        }
        let mut number = || -> Result<u64, Error> {
            let part = parts.next().ok_or_else(invalid)?;
            if part.is_empty() || part.len() > 16 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(invalid());
            }
            u64::from_str_radix(part, 16).map_err(|_| invalid())
        };
        let stream = u32::try_from(number()?).map_err(|_| invalid())?;
        let epoch = number()?;
        let high = number()?;
        let low = number()?;
        if parts.next().is_some() {
            return Err(invalid());
        }
        Ok(Position::new(stream, epoch, Offset(high, low)))
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for Position {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for Position {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn text_round_trips(stream: u32, epoch: u64, high: u64, low: u64) {
            let position = Position::new(stream, epoch, Offset(high, low));
            let text = position.to_string();
            prop_assert!(text.len() <= 4 + 8 + 16 * 3 + 4);
            prop_assert!(text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
            prop_assert_eq!(text.parse::<Position>().unwrap(), position);
        }

        #[test]
        fn any_text_parses_or_fails_cleanly(text in ".{0,100}") {
            let _ = text.parse::<Position>();
        }
    }

    #[test]
    fn foreign_tokens_are_invalid() {
        for text in [
            "",
            "ps1",
            "ps1-1-2-3",
            "ps1-1-2-3-4-5",
            "ps2-1-2-3-4",
            "ps1-100000000-2-3-4",
            "ps1-1-2-3-x",
            "ps1-1-2-3-+4",
            "ps1-1-2-3-",
            "ps1-1-2-3-11111111111111111",
            "1700000000000-0",
        ] {
            let error = text.parse::<Position>().unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Invalid, "{text}");
        }
    }

    #[test]
    fn order_is_the_log_order_within_one_epoch() {
        let a = Position::new(1, 7, Offset(5, 9));
        let b = Position::new(1, 7, Offset(6, 0));
        assert!(b.is_after(&a));
        assert!(!a.is_after(&b));
        assert!(
            !Position::new(1, 8, Offset(9, 9)).is_after(&a),
            "another epoch"
        );
        assert!(
            !Position::new(2, 7, Offset(9, 9)).is_after(&a),
            "another stream"
        );
    }
}
