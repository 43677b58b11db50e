//! [`StreamConfig`]: what a stream keeps, and [`StartAt`]: where a subscription to it begins.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::{Error, ErrorKind, Pattern, Position, Topic};

/// A stream: a bounded history of every message published to a topic under `root`, kept by
/// the broker (see the README's "History and recovery" for where each backend keeps it).
///
/// ```
/// use std::time::Duration;
/// use pubsub_core::StreamConfig;
/// let rooms = StreamConfig::new("room.>".parse()?)
///     .with_max_len(10_000)
///     .with_max_age(Duration::from_secs(3600));
/// assert!(rooms.covers(&"room.42.msg".parse()?));
/// assert!(!rooms.covers(&"news.x".parse()?));
/// # Ok::<(), pubsub_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StreamConfig {
    root: Pattern,
    max_len: u64,
    max_age: Duration,
}

/// What a stream keeps unless told otherwise: the last 10 000 messages.
pub const DEFAULT_MAX_LEN: u64 = 10_000;
/// What a stream keeps unless told otherwise: messages of the last 24 hours.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

impl StreamConfig {
    /// A stream of every topic `root` matches, keeping [`DEFAULT_MAX_LEN`] messages for at
    /// most [`DEFAULT_MAX_AGE`].
    pub fn new(root: Pattern) -> Self {
        StreamConfig {
            root,
            max_len: DEFAULT_MAX_LEN,
            max_age: DEFAULT_MAX_AGE,
        }
    }

    /// Keeps at most `max_len` messages (older ones are trimmed; some brokers trim
    /// approximately, keeping a few more).
    pub fn with_max_len(mut self, max_len: u64) -> Self {
        self.max_len = max_len;
        self
    }

    /// Keeps messages for at most `max_age` (whole milliseconds).
    pub fn with_max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// The root pattern.
    pub fn root(&self) -> &Pattern {
        &self.root
    }

    /// The most messages kept.
    pub fn max_len(&self) -> u64 {
        self.max_len
    }

    /// The longest a message is kept.
    pub fn max_age(&self) -> Duration {
        self.max_age
    }

    /// Whether `topic` is under this stream.
    pub fn covers(&self, topic: &Topic) -> bool {
        self.root.matches(topic)
    }

    /// The tag positions of this stream carry: a hash of the root (FNV-1a), so that a position
    /// of another stream is refused.
    pub fn tag(&self) -> u32 {
        self.root
            .as_str()
            .bytes()
            .fold(0x811c_9dc5_u32, |hash, byte| {
                (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
            })
    }

    /// Fails with [`ErrorKind::Invalid`] when a limit is zero.
    pub fn validate(&self) -> Result<(), Error> {
        if self.max_len == 0 {
            return Err(Error::new(
                ErrorKind::Invalid,
                format!("stream `{}`: max_len must be at least 1", self.root),
            ));
        }
        if self.max_age.as_millis() == 0 {
            return Err(Error::new(
                ErrorKind::Invalid,
                format!("stream `{}`: max_age must be at least 1 ms", self.root),
            ));
        }
        Ok(())
    }
}

/// Where a subscription under a stream begins.
///
/// Parsed from text (the CLI's `--from`, a gateway query): `now`, `start`, `last:N`,
/// `time:<Unix milliseconds>`, or a [`Position`].
///
/// ```
/// use pubsub_core::StartAt;
/// assert_eq!("start".parse::<StartAt>()?, StartAt::Start);
/// assert_eq!("last:50".parse::<StartAt>()?, StartAt::Last(50));
/// assert!("yesterday".parse::<StartAt>().is_err());
/// # Ok::<(), pubsub_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum StartAt {
    /// What is published from now on (the default). Still recovered after an outage.
    #[default]
    Now,
    /// The oldest message the stream still holds.
    Start,
    /// The first message after this position (a client resuming where it stopped).
    After(Position),
    /// The stream's last `n` messages (of every topic under the root; those the subscription's
    /// patterns match are delivered).
    Last(u64),
    /// The first message appended at or after this time.
    Time(SystemTime),
}

impl FromStr for StartAt {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        let invalid = |why: &str| {
            Error::new(
                ErrorKind::Invalid,
                format!(
                    "{:?} is not a start: {why} (now, start, last:N, time:<Unix ms> or a position)",
                    text.chars().take(80).collect::<String>()
                ),
            )
        };
        match text {
            "now" => return Ok(StartAt::Now),
            "start" => return Ok(StartAt::Start),
            _ => {}
        }
        if let Some(count) = text.strip_prefix("last:") {
            return count
                .parse()
                .map(StartAt::Last)
                .map_err(|_| invalid("N is not a number"));
        }
        if let Some(ms) = text.strip_prefix("time:") {
            let ms: u64 = ms
                .parse()
                .map_err(|_| invalid("the time is not Unix milliseconds"))?;
            return UNIX_EPOCH
                .checked_add(Duration::from_millis(ms))
                .map(StartAt::Time)
                .ok_or_else(|| invalid("the time is out of range"));
        }
        text.parse().map(StartAt::After)
    }
}

impl fmt::Display for StartAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartAt::Now => f.write_str("now"),
            StartAt::Start => f.write_str("start"),
            StartAt::After(position) => position.fmt(f),
            StartAt::Last(n) => write!(f, "last:{n}"),
            StartAt::Time(time) => write!(
                f,
                "time:{}",
                time.duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_millis()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Offset;

    #[test]
    fn zero_limits_are_invalid() {
        let root: Pattern = "a.>".parse().unwrap();
        let zero_len = StreamConfig::new(root.clone()).with_max_len(0);
        assert_eq!(zero_len.validate().unwrap_err().kind(), ErrorKind::Invalid);
        let zero_age = StreamConfig::new(root).with_max_age(Duration::from_micros(10));
        assert_eq!(zero_age.validate().unwrap_err().kind(), ErrorKind::Invalid);
    }

    #[test]
    fn tags_differ_between_roots() {
        let a = StreamConfig::new("room.>".parse().unwrap());
        let b = StreamConfig::new("rooms.>".parse().unwrap());
        assert_ne!(a.tag(), b.tag());
        assert_eq!(a.tag(), a.clone().with_max_len(5).tag());
    }

    #[test]
    fn starts_round_trip_as_text() {
        for start in [
            StartAt::Now,
            StartAt::Start,
            StartAt::Last(7),
            StartAt::Time(UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)),
            StartAt::After(Position::new(3, 4, Offset(5, 6))),
        ] {
            assert_eq!(start.to_string().parse::<StartAt>().unwrap(), start);
        }
        for bad in [
            "",
            "last:",
            "last:-1",
            "time:abc",
            "time:99999999999999999999",
            "x",
        ] {
            assert_eq!(
                bad.parse::<StartAt>().unwrap_err().kind(),
                ErrorKind::Invalid,
                "{bad}"
            );
        }
    }
}
