//! [`GroupConfig`]: a group's name, the patterns it reads, where it starts, and how it
//! redelivers.

use std::fmt;
use std::time::Duration;

use crate::{Error, ErrorKind, Pattern, StartAt, Topic};

/// How long a member may hold a message before it is delivered again, unless told otherwise.
pub const DEFAULT_ACK_DEADLINE: Duration = Duration::from_secs(30);
/// How many times a message is delivered before it goes to the dead-letter topic, unless told
/// otherwise.
pub const DEFAULT_MAX_DELIVERIES: u32 = 5;
/// How many messages a member holds unsettled at most, unless told otherwise.
pub const DEFAULT_PREFETCH: usize = 64;
/// Longest group name, in bytes.
const MAX_NAME_LEN: usize = 64;

/// A consumer group: a durable reader of a declared stream whose members share the work.
///
/// Each message the group's patterns match is delivered to one member at a time, and again
/// (to any member) when it is negatively acknowledged, not acknowledged within the ack
/// deadline, or its member went away. After `max_deliveries` deliveries it is published to the
/// dead-letter topic instead (headers [`DEAD_LETTER_REASON_HEADER`](crate::DEAD_LETTER_REASON_HEADER),
/// [`DELIVERIES_HEADER`](crate::DELIVERIES_HEADER), [`ORIGINAL_TOPIC_HEADER`](crate::ORIGINAL_TOPIC_HEADER),
/// [`GROUP_HEADER`](crate::GROUP_HEADER)) and acknowledged.
///
/// The name, the patterns, the ack deadline, the maximum deliveries and the dead-letter topic
/// are the group's: every member joins with the same ones, and a member joining with others
/// fails with `Invalid`. Where the group starts matters only when it is created; the prefetch
/// is each member's own.
///
/// ```
/// use std::time::Duration;
/// use pubsub_core::{GroupConfig, StartAt};
/// let billing = GroupConfig::new("billing", vec!["orders.>".parse()?])?
///     .starting_at(StartAt::Start)
///     .with_ack_deadline(Duration::from_secs(10))
///     .with_max_deliveries(3);
/// assert_eq!(billing.dead_letter().as_str(), "dead-letter.billing");
/// assert!(GroupConfig::new("no spaces", vec!["orders.>".parse()?]).is_err());
/// # Ok::<(), pubsub_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct GroupConfig {
    name: String,
    patterns: Vec<Pattern>,
    start: StartAt,
    ack_deadline: Duration,
    max_deliveries: u32,
    dead_letter: Topic,
    prefetch: usize,
}

impl GroupConfig {
    /// A group named `name` (1 to 64 of `A-Z a-z 0-9 _ -`) reading what `patterns` match,
    /// starting at the stream's end, with the default deadline, deliveries, prefetch and the
    /// dead-letter topic `dead-letter.<name>`.
    pub fn new(name: &str, patterns: Vec<Pattern>) -> Result<Self, Error> {
        check_name(name)?;
        if patterns.is_empty() {
            return Err(Error::new(
                ErrorKind::Invalid,
                format!("group `{name}` needs at least one pattern"),
            ));
        }
        let dead_letter = Topic::new(&format!("dead-letter.{name}"))?;
        Ok(GroupConfig {
            name: name.to_string(),
            patterns,
            start: StartAt::Now,
            ack_deadline: DEFAULT_ACK_DEADLINE,
            max_deliveries: DEFAULT_MAX_DELIVERIES,
            dead_letter,
            prefetch: DEFAULT_PREFETCH,
        })
    }

    /// Where a new group starts: [`StartAt::Now`] (the default: what is published from now
    /// on), [`StartAt::Start`] (the oldest message the stream holds) or [`StartAt::After`] a
    /// position. Ignored when the group exists already: it goes on where it was.
    pub fn starting_at(mut self, start: StartAt) -> Self {
        self.start = start;
        self
    }

    /// How long a member may hold a message unsettled before it is delivered again (at
    /// least 1 ms).
    pub fn with_ack_deadline(mut self, deadline: Duration) -> Self {
        self.ack_deadline = deadline;
        self
    }

    /// How many deliveries a message gets before it goes to the dead-letter topic (at least 1).
    pub fn with_max_deliveries(mut self, max: u32) -> Self {
        self.max_deliveries = max;
        self
    }

    /// Where messages go after their last delivery (a topic the group's patterns do not match).
    pub fn with_dead_letter(mut self, topic: Topic) -> Self {
        self.dead_letter = topic;
        self
    }

    /// How many messages this member holds unsettled at most (at least 1): the member reads
    /// no more until some are settled.
    pub fn with_prefetch(mut self, prefetch: usize) -> Self {
        self.prefetch = prefetch.max(1);
        self
    }

    /// The group's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The patterns the group reads.
    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    /// Where a new group starts.
    pub fn start(&self) -> StartAt {
        self.start
    }

    /// How long a member may hold a message.
    pub fn ack_deadline(&self) -> Duration {
        self.ack_deadline
    }

    /// Deliveries before the dead-letter topic.
    pub fn max_deliveries(&self) -> u32 {
        self.max_deliveries
    }

    /// The dead-letter topic.
    pub fn dead_letter(&self) -> &Topic {
        &self.dead_letter
    }

    /// This member's prefetch.
    pub fn prefetch(&self) -> usize {
        self.prefetch
    }

    /// Whether `other` describes the same group settings (the start and the prefetch aside).
    pub fn same_group(&self, other: &GroupConfig) -> bool {
        self.name == other.name
            && self.patterns == other.patterns
            && self.ack_deadline == other.ack_deadline
            && self.max_deliveries == other.max_deliveries
            && self.dead_letter == other.dead_letter
    }

    /// Whether the group's patterns match `topic`.
    pub fn matches(&self, topic: &Topic) -> bool {
        self.patterns.iter().any(|p| p.matches(topic))
    }

    /// Fails with [`ErrorKind::Invalid`] for a zero deadline or deliveries, a start other than
    /// now, start or a position, or a dead-letter topic the group's own patterns match (its
    /// dead letters would come back to it).
    pub fn validate(&self) -> Result<(), Error> {
        let invalid = |why: String| {
            Err(Error::new(
                ErrorKind::Invalid,
                format!("group `{}`: {why}", self.name),
            ))
        };
        if self.ack_deadline.as_millis() == 0 {
            return invalid("ack_deadline must be at least 1 ms".into());
        }
        if self.max_deliveries == 0 {
            return invalid("max_deliveries must be at least 1".into());
        }
        if !matches!(
            self.start,
            StartAt::Now | StartAt::Start | StartAt::After(_)
        ) {
            return invalid(format!(
                "a group starts at now, start or a position, not {}",
                self.start
            ));
        }
        if self.matches(&self.dead_letter) {
            return invalid(format!(
                "the dead-letter topic `{}` is one of the group's own topics",
                self.dead_letter
            ));
        }
        Ok(())
    }

    /// A message saying `other` conflicts with this group's settings.
    pub fn conflict(&self, other: &GroupConfig) -> Error {
        Error::new(
            ErrorKind::Invalid,
            format!(
                "group `{}` exists already with other settings ({:?}); joining with {:?}",
                self.name,
                Settings(self),
                Settings(other)
            ),
        )
    }
}

impl fmt::Debug for GroupConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupConfig")
            .field("name", &self.name)
            .field("patterns", &self.patterns)
            .field("start", &self.start)
            .field("ack_deadline", &self.ack_deadline)
            .field("max_deliveries", &self.max_deliveries)
            .field("dead_letter", &self.dead_letter)
            .field("prefetch", &self.prefetch)
            .finish()
    }
}

/// The group-wide settings, for a conflict's message.
struct Settings<'a>(&'a GroupConfig);

impl fmt::Debug for Settings<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = self.0;
        let patterns: Vec<&str> = g.patterns.iter().map(Pattern::as_str).collect();
        write!(
            f,
            "patterns {patterns:?}, ack_deadline {:?}, max_deliveries {}, dead_letter `{}`",
            g.ack_deadline, g.max_deliveries, g.dead_letter
        )
    }
}

/// Checks a group name: 1 to 64 of `A-Z a-z 0-9 _ -`, which every broker takes as a consumer
/// group, durable consumer or queue name.
fn check_name(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::Invalid,
        format!(
            "{:?} is not a group name: 1 to {MAX_NAME_LEN} of A-Z a-z 0-9 _ -",
            name.chars().take(80).collect::<String>()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(name: &str) -> Result<GroupConfig, Error> {
        GroupConfig::new(name, vec!["orders.>".parse().unwrap()])
    }

    #[test]
    fn names_are_checked() {
        assert!(group("billing").is_ok());
        assert!(group("a-b_C9").is_ok());
        for bad in ["", "a b", "a.b", "a*", "é", &"x".repeat(65)] {
            let error = group(bad).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Invalid, "{bad:?}");
        }
        let none = GroupConfig::new("g", vec![]).unwrap_err();
        assert_eq!(none.kind(), ErrorKind::Invalid);
    }

    #[test]
    fn settings_are_validated() {
        let g = group("g").unwrap();
        assert!(g.validate().is_ok());
        let bad = [
            g.clone().with_ack_deadline(Duration::ZERO),
            g.clone().with_max_deliveries(0),
            g.clone().starting_at(StartAt::Last(3)),
            g.clone().with_dead_letter("orders.dead".parse().unwrap()),
        ];
        for b in bad {
            assert_eq!(
                b.validate().unwrap_err().kind(),
                ErrorKind::Invalid,
                "{b:?}"
            );
        }
    }

    #[test]
    fn the_start_and_prefetch_are_not_group_settings() {
        let g = group("g").unwrap();
        let other = g.clone().starting_at(StartAt::Start).with_prefetch(1);
        assert!(g.same_group(&other));
        assert!(!g.same_group(&g.clone().with_max_deliveries(9)));
        let message = g.conflict(&g.clone().with_max_deliveries(9)).to_string();
        assert!(message.contains("max_deliveries 9"), "{message}");
    }
}
