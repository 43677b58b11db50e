//! Topic names: our topics encoded reversibly into Kafka's legal set.
//!
//! ASCII letters and digits stay as they are, `.` separates tokens, and every other byte is
//! written `-HH` (two upper-case hex digits). `_` is never emitted: Kafka treats `.` and `_` as
//! colliding in metric names and refuses topics that differ only there.

use pubsub_core::adapter::{hex_escape, hex_unescape};
use pubsub_core::{Error, ErrorKind, Result, Topic};

/// Longest topic name Kafka accepts.
pub const MAX_NAME: usize = 249;

/// The Kafka topic name of `topic`, or an `Invalid` error when it is longer than
/// [`MAX_NAME`] characters once encoded.
///
/// ```
/// use pubsub_core::Topic;
/// let name = pubsub_kafka::encode_topic(&Topic::new("room.café-1")?)?;
/// assert_eq!(name, "room.caf-C3-A9-2D1");
/// # Ok::<(), pubsub_core::Error>(())
/// ```
pub fn encode_topic(topic: &Topic) -> Result<String> {
    let name = encode(topic.as_str());
    if name.len() > MAX_NAME {
        return Err(Error::new(
            ErrorKind::Invalid,
            format!(
                "topic {:?} is {} characters as a Kafka topic name; Kafka takes at most {MAX_NAME}",
                topic.as_str(),
                name.len()
            ),
        ));
    }
    Ok(name)
}

/// Encodes without the length check.
pub(crate) fn encode(topic: &str) -> String {
    hex_escape(topic, '-', |c| c.is_ascii_alphanumeric() || c == '.')
}

/// The topic a Kafka topic name encodes, or `None` when the name is not one of ours (a
/// foreign topic: `_`, lower-case or needless escapes, bytes that are not UTF-8, or not a
/// valid topic once decoded).
///
/// ```
/// let topic = pubsub_kafka::decode_topic(b"room.caf-C3-A9-2D1").unwrap();
/// assert_eq!(topic.as_str(), "room.café-1");
/// assert!(pubsub_kafka::decode_topic(b"__consumer_offsets").is_none());
/// ```
pub fn decode_topic(name: &[u8]) -> Option<Topic> {
    let text = hex_unescape(name, b'-')?;
    // Canonical only: what `encode` writes, byte for byte.
    if encode(&text).as_bytes() != name {
        return None;
    }
    Topic::new(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use pubsub_core::adapter::HOSTILE_TEXTS;
    use pubsub_core::Token;

    fn legal(name: &str) -> bool {
        !name.is_empty()
            && name.len() <= MAX_NAME
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
    }

    #[test]
    fn hostile_topics_round_trip() {
        let more = ["_", "-", "a_b", "A-1"];
        for &raw in HOSTILE_TEXTS.iter().chain(&more) {
            let topic = Topic::from_tokens([Token::new("p").unwrap(), Token::escape(raw)]).unwrap();
            let name = encode_topic(&topic).unwrap();
            assert!(legal(&name), "{name}");
            assert!(!name.contains('_'), "{name}");
            assert_eq!(
                decode_topic(name.as_bytes()).as_ref(),
                Some(&topic),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn too_long_is_a_typed_error() {
        let topic = Topic::new(&"é".repeat(50)).unwrap();
        assert_eq!(encode_topic(&topic).unwrap_err().kind(), ErrorKind::Invalid);
        let fits = Topic::new(&"a".repeat(MAX_NAME)).unwrap();
        assert_eq!(encode_topic(&fits).unwrap().len(), MAX_NAME);
    }

    #[test]
    fn foreign_names_are_not_ours() {
        for name in [
            &b"__consumer_offsets"[..],
            b"a-",
            b"a-4",
            b"a-41",
            b"a-2d",
            b"a-ZZ",
            b"a-C3",
            b"\xff",
            b"",
            b"a..b",
            b".a",
        ] {
            assert_eq!(
                decode_topic(name),
                None,
                "{:?}",
                String::from_utf8_lossy(name)
            );
        }
    }

    proptest! {
        #[test]
        fn every_topic_round_trips(tokens in prop::collection::vec(any::<String>(), 1..5)) {
            let tokens: Vec<Token> = tokens.iter().map(|t| Token::escape(t)).collect();
            let Ok(topic) = Topic::from_tokens(tokens) else { return Ok(()) };
            match encode_topic(&topic) {
                Ok(name) => {
                    prop_assert!(legal(&name));
                    prop_assert_eq!(decode_topic(name.as_bytes()), Some(topic));
                }
                Err(e) => prop_assert_eq!(e.kind(), ErrorKind::Invalid),
            }
        }

        #[test]
        fn arbitrary_names_never_panic(name in prop::collection::vec(any::<u8>(), 0..64)) {
            if let Some(topic) = decode_topic(&name) {
                let again = encode(topic.as_str());
                prop_assert_eq!(again.as_bytes(), &name[..]);
            }
        }
    }
}
