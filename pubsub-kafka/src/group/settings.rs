//! A group's settings as its ledger keeps them (see [`super::ledger`]), so that a member
//! joining with others is refused.
//!
//! The text is `pubsub-group/1`, then space-separated fields: `ack=<nanoseconds>`,
//! `max=<deliveries>`, `dl=<topic>` and one `p=<pattern>` per pattern. Portable topics and
//! patterns hold no whitespace, so a space always separates fields.

use std::fmt::Write as _;
use std::time::Duration;

use pubsub_core::{GroupConfig, Pattern, Topic};

/// The first field of every metadata text this adapter writes.
const VERSION: &str = "pubsub-group/1";

/// The settings text of `group`.
pub(crate) fn encode(group: &GroupConfig) -> String {
    let mut text = String::from(VERSION);
    let nanos = u64::try_from(group.ack_deadline().as_nanos()).unwrap_or(u64::MAX);
    let _ = write!(
        text,
        " ack={nanos} max={} dl={}",
        group.max_deliveries(),
        group.dead_letter()
    );
    for pattern in group.patterns() {
        let _ = write!(text, " p={pattern}");
    }
    text
}

/// The settings of the group `name` in `text`; `None` when it is not a text this adapter
/// wrote (or damaged).
pub(crate) fn decode(name: &str, text: &[u8]) -> Option<GroupConfig> {
    let text = std::str::from_utf8(text).ok()?;
    let mut fields = text.split(' ');
    if fields.next()? != VERSION {
        return None;
    }
    let (mut ack, mut max, mut dead_letter) = (None, None, None);
    let mut patterns = Vec::new();
    for field in fields {
        let (key, value) = field.split_once('=')?;
        match key {
            "ack" => ack = Some(Duration::from_nanos(value.parse().ok()?)),
            "max" => max = Some(value.parse::<u32>().ok()?),
            "dl" => dead_letter = Some(Topic::new(value).ok()?),
            "p" => patterns.push(value.parse::<Pattern>().ok()?),
            // A later version's field: what is known still counts.
            _ => {}
        }
    }
    let settings = GroupConfig::new(name, patterns)
        .ok()?
        .with_ack_deadline(ack?)
        .with_max_deliveries(max?)
        .with_dead_letter(dead_letter?);
    Some(settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group() -> GroupConfig {
        GroupConfig::new(
            "billing",
            vec!["orders.>".parse().unwrap(), "é.*".parse().unwrap()],
        )
        .unwrap()
        .with_ack_deadline(Duration::from_millis(2500))
        .with_max_deliveries(3)
        .with_dead_letter(Topic::new("dead.billing").unwrap())
    }

    #[test]
    fn round_trips_settings() {
        let g = group();
        let stored = decode("billing", encode(&g).as_bytes()).unwrap();
        assert!(stored.same_group(&g));
        let other = g.clone().with_max_deliveries(9);
        let stored = decode("billing", encode(&other).as_bytes()).unwrap();
        assert!(!stored.same_group(&g));
    }

    #[test]
    fn foreign_or_damaged_metadata_is_not_ours() {
        assert!(decode("g", b"").is_none());
        assert!(decode("g", b"something else").is_none());
        assert!(
            decode("g", b"pubsub-group/1 ack=1 max=1 dl=d").is_none(),
            "no pattern"
        );
        assert!(decode("g", b"pubsub-group/1 ack=x max=1 dl=d p=a").is_none());
        assert!(decode("g", b"pubsub-group/1 ack=1 max=1 dl=d p=a noequals").is_none());
        assert!(decode("g", &[0xff, 0xfe]).is_none());
        let later = decode("g", b"pubsub-group/1 ack=1000000 max=2 dl=d p=a.> new=1").unwrap();
        assert_eq!(later.max_deliveries(), 2);
    }
}
