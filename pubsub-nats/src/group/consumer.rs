//! A group's durable pull consumer: its JetStream configuration, and the group settings it
//! keeps in its description (NATS 2.9 consumers have no metadata).
//!
//! What JetStream shows itself (the ack deadline as `ack_wait`, the single pattern as
//! `filter_subject`) is compared as such; what it cannot show (the maximum deliveries, the
//! dead-letter topic, every pattern) is written in the `description`, in a fixed form
//! ([`description`]) read back by [`described`].

use std::time::Duration;

use async_nats::jetstream::consumer::{self, pull, AckPolicy, DeliverPolicy};

use pubsub_core::{Error, ErrorKind, GroupConfig, Pattern, StartAt, Topic};

/// The start of the description of a group's consumer (and its format's version).
const DESCRIPTION_PREFIX: &str = "pubsub group v1:";

/// The durable name of `group`'s consumer: the group's name (1 to 64 of `A-Z a-z 0-9 _ -`,
/// all legal in a consumer name).
pub(crate) fn durable_name(group: &GroupConfig) -> String {
    group.name().to_string()
}

/// The description of `group`'s consumer: the settings JetStream does not keep, as
/// `pubsub group v1: max_deliveries <n> dead_letter <topic> patterns <pattern>…` (topics and
/// patterns hold no whitespace).
pub(crate) fn description(group: &GroupConfig) -> String {
    let mut text = format!(
        "{DESCRIPTION_PREFIX} max_deliveries {} dead_letter {} patterns",
        group.max_deliveries(),
        group.dead_letter()
    );
    for pattern in group.patterns() {
        text.push(' ');
        text.push_str(pattern.as_str());
    }
    text
}

/// The group settings a consumer's description holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Described {
    pub max_deliveries: u32,
    pub dead_letter: Topic,
    pub patterns: Vec<Pattern>,
}

/// The settings in a description [`description`] wrote; `None` for any other text.
pub(crate) fn described(text: &str) -> Option<Described> {
    let mut words = text.strip_prefix(DESCRIPTION_PREFIX)?.split_whitespace();
    let mut next_after = |key: &str| match words.next() {
        Some(word) if word == key => words.next(),
        _ => None,
    };
    let max_deliveries = next_after("max_deliveries")?.parse().ok()?;
    let dead_letter = Topic::new(next_after("dead_letter")?).ok()?;
    if words.next()? != "patterns" {
        return None;
    }
    let patterns = words
        .map(|word| Pattern::new(word).ok())
        .collect::<Option<Vec<_>>>()?;
    if patterns.is_empty() {
        return None;
    }
    Some(Described {
        max_deliveries,
        dead_letter,
        patterns,
    })
}

/// The subject the consumer selects: the group's pattern when it has one (NATS matches it
/// as the portable grammar does), else the whole stream (the kit acknowledges what the
/// patterns do not match).
pub(crate) fn filter_subject(group: &GroupConfig) -> String {
    match group.patterns() {
        [pattern] => pattern.as_str().to_string(),
        _ => String::new(),
    }
}

/// Where a new consumer starts: at the stream's end for [`StartAt::Now`], its first message
/// for [`StartAt::Start`], and after the position's sequence for [`StartAt::After`] when the
/// position is of the stream's current `epoch` (a position of an earlier stream, deleted
/// since: everything the stream holds comes after it).
pub(crate) fn deliver_policy(start: StartAt, epoch: u64) -> DeliverPolicy {
    match start {
        StartAt::After(position) if position.epoch() == epoch => DeliverPolicy::ByStartSequence {
            start_sequence: position.offset().1.saturating_add(1),
        },
        StartAt::After(_) | StartAt::Start => DeliverPolicy::All,
        _ => DeliverPolicy::New,
    }
}

/// The configuration of `group`'s consumer on a stream of epoch `epoch`: durable, pull,
/// explicit acks with the ack deadline as `ack_wait`, delivered without limit (the kit
/// dead-letters a delivery past the maximum), no limit on unacknowledged deliveries (the
/// members' prefetch bounds them), never removed for inactivity.
pub(crate) fn config_of(group: &GroupConfig, epoch: u64) -> pull::Config {
    pull::Config {
        durable_name: Some(durable_name(group)),
        description: Some(description(group)),
        deliver_policy: deliver_policy(group.start(), epoch),
        ack_policy: AckPolicy::Explicit,
        ack_wait: group.ack_deadline(),
        max_deliver: -1,
        max_ack_pending: -1,
        filter_subject: filter_subject(group),
        ..Default::default()
    }
}

/// Whether the consumer found at the server is the one `wanted` describes (where it starts
/// aside: a group that exists goes on where it is).
pub(crate) fn same_consumer(found: &consumer::Config, wanted: &pull::Config) -> bool {
    found.deliver_subject.is_none()
        && found.durable_name == wanted.durable_name
        && found.description == wanted.description
        && found.ack_policy == wanted.ack_policy
        && found.ack_wait == wanted.ack_wait
        && unlimited(found.max_deliver) == unlimited(wanted.max_deliver)
        && found.filter_subject == wanted.filter_subject
}

/// Whether a `max_deliver` means no limit (JetStream may show it as 0 or -1).
fn unlimited(max_deliver: i64) -> Option<i64> {
    (max_deliver > 0).then_some(max_deliver)
}

/// The error for joining `group` when its consumer at the server is `found`: the group's
/// conflict when the consumer is a group's, else a consumer of that name not made for a
/// group.
pub(crate) fn conflict(group: &GroupConfig, found: &consumer::Config, stream: &str) -> Error {
    match found_group(group, found) {
        Some(existing) => existing.conflict(group),
        None => Error::new(
            ErrorKind::Invalid,
            format!(
                "group `{}`: JetStream stream {stream} has a consumer of that name that is not \
                 this adapter's group",
                group.name()
            ),
        ),
    }
}

/// The group `found` is the consumer of, as its description and configuration say.
fn found_group(group: &GroupConfig, found: &consumer::Config) -> Option<GroupConfig> {
    if found.deliver_subject.is_some() || found.ack_policy != AckPolicy::Explicit {
        return None;
    }
    let settings = described(found.description.as_deref()?)?;
    let ack_deadline = match found.ack_wait {
        Duration::ZERO => return None,
        wait => wait,
    };
    let existing = GroupConfig::new(group.name(), settings.patterns)
        .ok()?
        .with_ack_deadline(ack_deadline)
        .with_max_deliveries(settings.max_deliveries)
        .with_dead_letter(settings.dead_letter);
    Some(existing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pubsub_core::{Offset, Position};

    fn group(patterns: &[&str]) -> GroupConfig {
        let patterns = patterns.iter().map(|p| p.parse().unwrap()).collect();
        GroupConfig::new("billing", patterns).unwrap()
    }

    /// What the server shows for a consumer made with `config`.
    fn as_found(config: &pull::Config) -> consumer::Config {
        consumer::Config {
            durable_name: config.durable_name.clone(),
            description: config.description.clone(),
            deliver_policy: config.deliver_policy,
            ack_policy: config.ack_policy,
            ack_wait: config.ack_wait,
            max_deliver: config.max_deliver,
            filter_subject: config.filter_subject.clone(),
            max_ack_pending: 1000,
            ..Default::default()
        }
    }

    #[test]
    fn descriptions_round_trip() {
        let g = group(&["orders.>", "refunds.*.eu"])
            .with_max_deliveries(7)
            .with_dead_letter("dl.billing".parse().unwrap());
        let text = description(&g);
        assert_eq!(
            text,
            "pubsub group v1: max_deliveries 7 dead_letter dl.billing patterns orders.> \
             refunds.*.eu"
        );
        let d = described(&text).unwrap();
        assert_eq!(d.max_deliveries, 7);
        assert_eq!(d.dead_letter.as_str(), "dl.billing");
        assert_eq!(d.patterns, g.patterns());
    }

    #[test]
    fn foreign_descriptions_are_not_groups() {
        for text in [
            "",
            "my consumer",
            "pubsub group v1:",
            "pubsub group v1: max_deliveries x dead_letter d patterns a",
            "pubsub group v1: max_deliveries 5 dead_letter d patterns",
            "pubsub group v1: max_deliveries 5 dead_letter d.* patterns a",
            "pubsub group v1: max_deliveries 5 dead_letter d patterns a..b",
            "pubsub group v1: dead_letter d max_deliveries 5 patterns a",
            "pubsub group v2: max_deliveries 5 dead_letter d patterns a",
        ] {
            assert_eq!(described(text), None, "{text:?}");
        }
    }

    #[test]
    fn one_pattern_is_the_filter() {
        assert_eq!(filter_subject(&group(&["orders.>"])), "orders.>");
        assert_eq!(filter_subject(&group(&["a.*", "a.b.>"])), "");
    }

    #[test]
    fn starts_map_to_deliver_policies() {
        assert_eq!(deliver_policy(StartAt::Now, 9), DeliverPolicy::New);
        assert_eq!(deliver_policy(StartAt::Start, 9), DeliverPolicy::All);
        let at = |epoch| StartAt::After(Position::new(1, epoch, Offset(0, 41)));
        assert_eq!(
            deliver_policy(at(9), 9),
            DeliverPolicy::ByStartSequence { start_sequence: 42 }
        );
        // A position of the stream before it was created again.
        assert_eq!(deliver_policy(at(8), 9), DeliverPolicy::All);
    }

    #[test]
    fn the_config_carries_the_group() {
        let g = group(&["orders.>"]).with_ack_deadline(Duration::from_millis(1500));
        let c = config_of(&g, 1);
        assert_eq!(c.durable_name.as_deref(), Some("billing"));
        assert_eq!(c.ack_policy, AckPolicy::Explicit);
        assert_eq!(c.ack_wait, Duration::from_millis(1500));
        assert_eq!((c.max_deliver, c.max_ack_pending), (-1, -1));
        assert_eq!(c.filter_subject, "orders.>");
        assert_eq!(c.deliver_policy, DeliverPolicy::New);
    }

    #[test]
    fn same_settings_match_whatever_the_start() {
        let g = group(&["orders.>"]);
        let found = as_found(&config_of(&g.clone().starting_at(StartAt::Start), 1));
        assert!(same_consumer(&found, &config_of(&g, 1)));
        let mut shown_as_zero = found.clone();
        shown_as_zero.max_deliver = 0;
        assert!(same_consumer(&shown_as_zero, &config_of(&g, 1)));
        for other in [
            g.clone().with_max_deliveries(9),
            g.clone().with_ack_deadline(Duration::from_secs(1)),
            g.clone().with_dead_letter("dl.x".parse().unwrap()),
        ] {
            assert!(!same_consumer(&found, &config_of(&other, 1)), "{other:?}");
        }
        let mut push = found.clone();
        push.deliver_subject = Some("deliver.here".into());
        assert!(!same_consumer(&push, &config_of(&g, 1)));
    }

    #[test]
    fn conflicts_name_the_group_found() {
        let g = group(&["orders.>"]);
        let found = as_found(&config_of(&g.clone().with_max_deliveries(9), 1));
        let error = conflict(&g, &found, "S");
        assert_eq!(error.kind(), ErrorKind::Invalid);
        assert!(error.to_string().contains("max_deliveries 9"), "{error}");
        let foreign = consumer::Config {
            durable_name: Some("billing".into()),
            ..Default::default()
        };
        let error = conflict(&g, &foreign, "S");
        assert_eq!(error.kind(), ErrorKind::Invalid);
        assert!(error.to_string().contains("not this adapter's"), "{error}");
    }
}
