//! [`PresenceConfig`]: where heartbeats go, how often, how long they hold.

use std::collections::BTreeSet;
use std::time::Duration;

use pubsub_core::{Error, Result, Topic};

use crate::wire::{MAX_EXPIRY, MAX_NODE_ID, MIN_EXPIRY};

/// The settings of one [`Presence`](crate::Presence).
///
/// ```
/// use std::time::Duration;
/// use pubsub_presence::PresenceConfig;
///
/// let config = PresenceConfig::new("chat.presence".parse()?)
///     .with_interval(Duration::from_millis(500))
///     .with_expiry(Duration::from_millis(1500))
///     .with_tag("lobby");
/// assert_eq!(config.expiry(), Duration::from_millis(1500));
/// # Ok::<(), pubsub_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceConfig {
    pub(crate) topic: Topic,
    pub(crate) node_id: Option<String>,
    pub(crate) interval: Duration,
    pub(crate) expiry: Duration,
    pub(crate) tags: BTreeSet<String>,
}

impl PresenceConfig {
    /// Heartbeats on `topic` (every node of one cluster uses the same), every second, holding
    /// three seconds, with a random node id and no tags.
    pub fn new(topic: Topic) -> PresenceConfig {
        PresenceConfig {
            topic,
            node_id: None,
            interval: Duration::from_secs(1),
            expiry: Duration::from_secs(3),
            tags: BTreeSet::new(),
        }
    }

    /// This node's id (default: 16 random hex digits). Two live nodes must not share one.
    pub fn with_node_id(mut self, id: impl Into<String>) -> Self {
        self.node_id = Some(id.into());
        self
    }

    /// How often a heartbeat is published (default 1 s).
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// How long after its last heartbeat a silent node counts as gone (default 3 s). Others
    /// use the expiry this node announces, so it should be a few intervals.
    pub fn with_expiry(mut self, expiry: Duration) -> Self {
        self.expiry = expiry;
        self
    }

    /// A tag this node starts with (tags can change later: [`Presence::add_tag`](crate::Presence::add_tag)).
    pub fn with_tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.insert(tag.into());
        self
    }

    /// The presence topic.
    pub fn topic(&self) -> &Topic {
        &self.topic
    }

    /// The heartbeat interval.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// The expiry.
    pub fn expiry(&self) -> Duration {
        self.expiry
    }

    /// Checks the settings: a typed error says what is wrong.
    pub(crate) fn validate(&self) -> Result<()> {
        if let Some(id) = &self.node_id {
            if id.is_empty() || id.len() > MAX_NODE_ID {
                return Err(Error::invalid_config(format!(
                    "presence node id must be 1 to {MAX_NODE_ID} bytes"
                )));
            }
        }
        if self.interval < MIN_EXPIRY / 2 {
            return Err(Error::invalid_config(format!(
                "presence interval must be at least {:?}",
                MIN_EXPIRY / 2
            )));
        }
        if self.expiry <= self.interval {
            return Err(Error::invalid_config(
                "presence expiry must be longer than the heartbeat interval",
            ));
        }
        if self.expiry > MAX_EXPIRY {
            return Err(Error::invalid_config(format!(
                "presence expiry must be at most {MAX_EXPIRY:?}"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> PresenceConfig {
        PresenceConfig::new("p".parse().unwrap())
    }

    #[test]
    fn defaults_are_valid() {
        assert!(config().validate().is_ok());
    }

    #[test]
    fn bad_settings_are_typed_errors() {
        let cases = [
            config().with_node_id(""),
            config().with_node_id("x".repeat(MAX_NODE_ID + 1)),
            config().with_interval(Duration::ZERO),
            config()
                .with_interval(Duration::from_secs(2))
                .with_expiry(Duration::from_secs(1)),
            config().with_expiry(MAX_EXPIRY * 2),
        ];
        for case in cases {
            let err = case.validate().unwrap_err();
            assert_eq!(err.kind(), pubsub_core::ErrorKind::Invalid, "{case:?}");
        }
    }
}
