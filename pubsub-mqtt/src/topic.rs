//! Topic names and filters: our `.`-separated tokens as MQTT's `/`-separated levels.
//!
//! Each token is one level, written with the kit's [`hex_escape`] and the marker `~`: `/`, `+`,
//! `#`, `~` and the characters MQTT brokers refuse in a name (Mosquitto refuses the
//! non-characters U+FDD0–U+FDEF and U+xxFFFE/U+xxFFFF; control characters never are in a
//! token) become `~HH` per UTF-8 byte. A name whose first level would begin with `$` (the
//! broker's own topics, such as `$SYS`) begins with `~24` instead. In a filter, `*` is `+`
//! and `>` is `#`.

use pubsub_core::adapter::{hex_escape, hex_unescape};
use pubsub_core::pattern::Segment;
use pubsub_core::{Error, ErrorKind, Pattern, Result, Topic};

/// Longest topic name or filter MQTT carries, in bytes (a two-byte length prefix). Portable
/// topics (at most 255 bytes, at most three times longer once escaped) never reach it.
pub const MAX_NAME: usize = 65_535;

/// Whether an MQTT broker takes `c` in a UTF-8 string (MQTT 5 §1.5.4, as Mosquitto checks it).
pub(crate) fn mqtt_char(c: char) -> bool {
    let n = u32::from(c);
    !c.is_control() && !(0xFDD0..=0xFDEF).contains(&n) && n & 0xFFFE != 0xFFFE
}

fn level(token: &str, out: &mut String) {
    out.push_str(&hex_escape(token, '~', |c| {
        !matches!(c, '/' | '+' | '#') && mqtt_char(c)
    }));
}

/// Joins the levels, never starting with `$`, and checks the length.
fn finish(mut name: String, what: &str) -> Result<String> {
    if name.starts_with('$') {
        name.replace_range(..1, "~24");
    }
    if name.len() > MAX_NAME {
        let message = format!(
            "the MQTT {what} is {} bytes; MQTT takes at most {MAX_NAME}",
            name.len()
        );
        return Err(Error::new(ErrorKind::Invalid, message));
    }
    Ok(name)
}

/// The MQTT topic name of `topic`.
///
/// ```
/// let topic = "room.a/b.$x".parse()?;
/// assert_eq!(pubsub_mqtt::encode_topic(&topic)?, "room/a~2Fb/$x");
/// assert_eq!(pubsub_mqtt::encode_topic(&"$SYS.x".parse()?)?, "~24SYS/x");
/// # Ok::<(), pubsub_core::Error>(())
/// ```
pub fn encode_topic(topic: &Topic) -> Result<String> {
    let mut name = String::with_capacity(topic.as_str().len());
    for (i, token) in topic.tokens().enumerate() {
        if i > 0 {
            name.push('/');
        }
        level(token, &mut name);
    }
    finish(name, "topic name")
}

/// The MQTT topic filter of `pattern`: `*` as `+`, `>` as `#`, literal tokens as in
/// [`encode_topic`].
pub fn encode_filter(pattern: &Pattern) -> Result<String> {
    let mut filter = String::with_capacity(pattern.as_str().len());
    for (i, segment) in pattern.segments().enumerate() {
        if i > 0 {
            filter.push('/');
        }
        match segment {
            Segment::Literal(token) => level(token, &mut filter),
            Segment::One => filter.push('+'),
            Segment::Rest => filter.push('#'),
        }
    }
    finish(filter, "topic filter")
}

/// The topic an MQTT topic name encodes, or `None` when the name is not one of ours: an empty
/// level, a `~` not followed by two upper-case hex digits, a needless escape, or not a
/// portable topic once decoded.
///
/// ```
/// let topic = pubsub_mqtt::decode_topic(b"room/a~2Fb").unwrap();
/// assert_eq!(topic.as_str(), "room.a/b");
/// assert!(pubsub_mqtt::decode_topic(b"a//b").is_none());
/// ```
pub fn decode_topic(name: &[u8]) -> Option<Topic> {
    let mut text = String::with_capacity(name.len());
    for (i, level) in name.split(|&b| b == b'/').enumerate() {
        if i > 0 {
            text.push('.');
        }
        let token = hex_unescape(level, b'~')?;
        if token.is_empty() || token.contains('.') {
            return None;
        }
        text.push_str(&token);
    }
    let topic = Topic::new(&text).ok()?;
    // Canonical only: exactly what `encode_topic` writes.
    (encode_topic(&topic).ok()?.as_bytes() == name).then_some(topic)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use pubsub_core::adapter::HOSTILE_TEXTS;
    use pubsub_core::Token;

    /// A name an MQTT broker takes: no wildcard, no `$` first, only characters it accepts.
    fn legal(name: &str) -> bool {
        !name.contains(['+', '#']) && !name.starts_with('$') && name.chars().all(mqtt_char)
    }

    #[test]
    fn hostile_tokens_round_trip() {
        let more = [
            "/", "+", "#", "~", "$", "$SYS", "a~24", "\u{FFFF}", "\u{FDD0}", "~7E",
        ];
        for &raw in HOSTILE_TEXTS.iter().chain(&more) {
            let escaped = Token::escape(raw);
            for tokens in [
                vec![escaped.clone()],
                vec![Token::new("p").unwrap(), escaped],
            ] {
                let topic = Topic::from_tokens(tokens).unwrap();
                let name = encode_topic(&topic).unwrap();
                assert!(legal(&name), "{raw:?}: {name}");
                assert_eq!(name.split('/').count(), topic.depth(), "{name}");
                assert_eq!(decode_topic(name.as_bytes()), Some(topic), "{raw:?}");
            }
        }
    }

    #[test]
    fn filters() {
        let f = |p: &str| encode_filter(&p.parse().unwrap()).unwrap();
        assert_eq!(f("a.*.c"), "a/+/c");
        assert_eq!(f("a.>"), "a/#");
        assert_eq!(f(">"), "#");
        assert_eq!(f("$SYS.*"), "~24SYS/+");
        assert_eq!(f("a.b+c.#"), "a/b~2Bc/~23");
    }

    #[test]
    fn foreign_names_are_not_ours() {
        for name in [
            &b""[..],
            b"/a",
            b"a/",
            b"a//b",
            b"a~",
            b"a~2",
            b"a~2f",
            b"a~41",
            b"~2524",
            b"a/~2E",
            b"$SYS/x",
            b"a b",
            b"\xff",
            b"a+",
            b"#",
        ] {
            assert_eq!(
                decode_topic(name),
                None,
                "{:?}",
                String::from_utf8_lossy(name)
            );
        }
    }

    #[test]
    fn the_longest_topic_fits() {
        let topic = Topic::new(&"+".repeat(pubsub_core::MAX_TOPIC_LEN)).unwrap();
        let name = encode_topic(&topic).unwrap();
        assert_eq!(name.len(), 3 * pubsub_core::MAX_TOPIC_LEN);
        assert!(finish("a".repeat(MAX_NAME + 1), "topic name")
            .is_err_and(|e| e.kind() == ErrorKind::Invalid));
    }

    proptest! {
        #[test]
        fn every_topic_round_trips(tokens in prop::collection::vec(any::<String>(), 1..5)) {
            let tokens: Vec<Token> = tokens.iter().map(|t| Token::escape(t)).collect();
            let Ok(topic) = Topic::from_tokens(tokens) else { return Ok(()) };
            let name = encode_topic(&topic).unwrap();
            prop_assert!(legal(&name));
            prop_assert_eq!(decode_topic(name.as_bytes()), Some(topic));
        }

        #[test]
        fn arbitrary_names_never_panic(name in prop::collection::vec(any::<u8>(), 0..64)) {
            if let Some(topic) = decode_topic(&name) {
                let again = encode_topic(&topic).unwrap();
                prop_assert_eq!(again.as_bytes(), &name[..]);
            }
        }
    }
}
