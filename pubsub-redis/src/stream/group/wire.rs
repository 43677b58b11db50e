//! What a group writes and reads at Redis, as text: its settings in the groups hash, the
//! receipt token of a delivery (the entry id and the member holding it), the id a new group
//! starts after, and the replies of `XREADGROUP` and the claim script.

use std::sync::Arc;

use fred::types::Value;
use pubsub_core::{GroupConfig, Pattern, Topic};

/// Version mark of the settings text, so that a later format can tell old entries apart.
const SETTINGS_VERSION: &str = "v1";

/// The largest sequence part of a stream id: `<n>-<MAX_MS>` is after every entry `n` holds.
const MAX_MS: u64 = u64::MAX;

/// The group-wide settings ([`GroupConfig::same_group`]) as the groups hash holds them:
/// `v1|<ack deadline ms>|<max deliveries>|<dead-letter topic>|<pattern> <pattern>…`.
pub(super) fn settings(group: &GroupConfig) -> String {
    let patterns: Vec<&str> = group.patterns().iter().map(Pattern::as_str).collect();
    format!(
        "{SETTINGS_VERSION}|{}|{}|{}|{}",
        group.ack_deadline().as_millis(),
        group.max_deliveries(),
        group.dead_letter(),
        patterns.join(" ")
    )
}

/// The group a settings text describes (named `name`); `None` when it does not read as one.
pub(super) fn parse_settings(name: &str, text: &str) -> Option<GroupConfig> {
    let mut parts = text.splitn(5, '|');
    if parts.next()? != SETTINGS_VERSION {
        return None;
    }
    let deadline = parts.next()?.parse().ok()?;
    let max = parts.next()?.parse().ok()?;
    let dead_letter: Topic = parts.next()?.parse().ok()?;
    let patterns = parts
        .next()?
        .split(' ')
        .map(str::parse)
        .collect::<Result<Vec<Pattern>, _>>()
        .ok()?;
    Some(
        GroupConfig::new(name, patterns)
            .ok()?
            .with_ack_deadline(std::time::Duration::from_millis(deadline))
            .with_max_deliveries(max)
            .with_dead_letter(dead_letter),
    )
}

/// The id `XGROUP CREATE` takes to start after entry `n`: the largest id entry `n` can have.
pub(super) fn id_after(n: u64) -> String {
    format!("{n}-{MAX_MS}")
}

/// A delivery's receipt token: its entry id and the member it was delivered to.
pub(super) fn token(id: &str, member: &str) -> Arc<str> {
    Arc::from(format!("{id} {member}"))
}

/// The entry id and member of a token made by [`token`].
pub(super) fn parse_token(token: &str) -> Option<(&str, &str)> {
    let (id, member) = token.split_once(' ')?;
    (!id.is_empty() && !member.is_empty()).then_some((id, member))
}

/// The entries of an `XREADGROUP` reply on one stream (RESP2 `[[key, entries]]` or RESP3
/// `{key: entries}`); empty for a timeout's `nil`.
pub(super) fn read_group_entries(reply: Value) -> Vec<Value> {
    let streams = match reply {
        Value::Array(streams) => streams,
        Value::Map(map) => return map.inner().into_values().flat_map(entries).collect(),
        _ => return Vec::new(),
    };
    streams
        .into_iter()
        .flat_map(|stream| match stream {
            Value::Array(mut pair) if pair.len() == 2 => {
                pair.pop().map(entries).unwrap_or_default()
            }
            _ => Vec::new(),
        })
        .collect()
}

fn entries(value: Value) -> Vec<Value> {
    match value {
        Value::Array(entries) => entries,
        _ => Vec::new(),
    }
}

/// The id of an entry as `XRANGE`/`XREADGROUP` give it (`[id, fields]`).
pub(super) fn entry_id(entry: &Value) -> Option<String> {
    match entry {
        Value::Array(pair) => pair.first().and_then(Value::as_string),
        _ => None,
    }
}

/// The claim script's reply: the next cursor, and each claimed entry with its delivery count.
pub(super) struct Claimed {
    /// Where the next claim goes on in the pending list (`0-0`: from the start).
    pub cursor: String,
    /// `([id, fields], deliveries)` of each entry claimed.
    pub entries: Vec<(Value, u32)>,
    /// The log's epoch, if it has one.
    pub epoch: Option<u64>,
}

/// Parses the claim script's reply `{cursor, {{id, fields, count}, …}, epoch}`; `None` when
/// it does not read as one.
pub(super) fn parse_claimed(reply: Value) -> Option<Claimed> {
    let Value::Array(parts) = reply else {
        return None;
    };
    let mut parts = parts.into_iter();
    let cursor = parts.next()?.into_string()?;
    let list = match parts.next()? {
        Value::Array(list) => list,
        Value::Null => Vec::new(),
        _ => return None,
    };
    let epoch = parts
        .next()
        .and_then(Value::into_string)
        .and_then(|e| e.parse().ok());
    let mut entries = Vec::with_capacity(list.len());
    for item in list {
        let Value::Array(mut triple) = item else {
            continue;
        };
        if triple.len() != 3 {
            continue;
        }
        let count = triple.pop().and_then(|c| c.as_u64()).unwrap_or(1);
        let fields = triple.pop().unwrap_or(Value::Null);
        let id = triple.pop().unwrap_or(Value::Null);
        let deliveries = u32::try_from(count).unwrap_or(u32::MAX).max(1);
        entries.push((Value::Array(vec![id, fields]), deliveries));
    }
    Some(Claimed {
        cursor,
        entries,
        epoch,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn group() -> GroupConfig {
        GroupConfig::new(
            "billing",
            vec!["orders.>".parse().unwrap(), "refunds.*".parse().unwrap()],
        )
        .unwrap()
        .with_ack_deadline(Duration::from_millis(2500))
        .with_max_deliveries(3)
    }

    #[test]
    fn settings_round_trip_and_odd_texts_are_refused() {
        let g = group();
        let text = settings(&g);
        assert_eq!(text, "v1|2500|3|dead-letter.billing|orders.> refunds.*");
        let back = parse_settings("billing", &text).unwrap();
        assert!(back.same_group(&g));
        assert!(!back.same_group(&g.clone().with_max_deliveries(4)));
        for bad in [
            "",
            "v2|1|1|a|b",
            "v1|x|1|a|b",
            "v1|1|1|a..b|c",
            "v1|1|1|a|",
            "v1|1|1",
        ] {
            assert!(parse_settings("billing", bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn tokens_and_start_ids() {
        let t = token("7-1700000000000", "g-00ff");
        assert_eq!(parse_token(&t), Some(("7-1700000000000", "g-00ff")));
        assert_eq!(parse_token("7-1"), None);
        assert_eq!(parse_token(" g"), None);
        assert_eq!(id_after(5), "5-18446744073709551615");
    }

    fn entry(id: &str) -> Value {
        Value::Array(vec![
            id.into(),
            Value::Array(vec!["t".into(), "a.b".into()]),
        ])
    }

    #[test]
    fn read_replies_in_either_protocol() {
        let resp2 = Value::Array(vec![Value::Array(vec![
            "log".into(),
            Value::Array(vec![entry("1-1"), entry("2-1")]),
        ])]);
        let ids: Vec<_> = read_group_entries(resp2)
            .iter()
            .filter_map(entry_id)
            .collect();
        assert_eq!(ids, ["1-1", "2-1"]);
        assert!(read_group_entries(Value::Null).is_empty());
        assert!(read_group_entries(Value::Array(vec!["odd".into()])).is_empty());
    }

    #[test]
    fn claim_replies_parse_and_odd_items_are_skipped() {
        let reply = Value::Array(vec![
            "0-0".into(),
            Value::Array(vec![
                Value::Array(vec!["3-1".into(), Value::Array(vec![]), 4.into()]),
                Value::Array(vec!["x".into()]),
                "odd".into(),
            ]),
            "77".into(),
        ]);
        let claimed = parse_claimed(reply).unwrap();
        assert_eq!((claimed.cursor.as_str(), claimed.epoch), ("0-0", Some(77)));
        assert_eq!(claimed.entries.len(), 1);
        assert_eq!(claimed.entries[0].1, 4);
        assert_eq!(entry_id(&claimed.entries[0].0).as_deref(), Some("3-1"));
        assert!(parse_claimed(Value::Null).is_none());
        assert!(parse_claimed(Value::Array(vec!["0-0".into(), Value::Null]))
            .unwrap()
            .entries
            .is_empty());
    }
}
