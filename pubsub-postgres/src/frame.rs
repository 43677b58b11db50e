//! The text of a notification, and the quoting of a channel name.
//!
//! A notification carries text (no NUL byte, valid in the server's encoding, shorter than
//! 8000 bytes), so a message travels as `<topic> <body>`: the topic (which never holds a
//! space), one space, and either the payload as it is, when it is text that needs nothing
//! more (UTF-8 without NUL, not starting with `=`, no headers), or `=` and the base64 of the
//! kit's [`envelope`] of headers and payload. Line breaks in the base64 are ignored on
//! receipt, so a trigger may write `'=' || encode(bytes, 'base64')`.
//!
//! A notification that is not `<topic> <body>` (no space, or no portable topic before it) is
//! a foreign one: its whole text is the payload, on the topic the channel names.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use pubsub_core::adapter::{envelope, TopicMemo};
use pubsub_core::{Error, Message, Result, MAX_TOPIC_LEN};

/// Longest notification text PostgreSQL takes, in bytes (it must be shorter than 8000).
pub const MAX_NOTIFY: usize = 7999;

/// Longest channel name, in bytes (an identifier: `NAMEDATALEN - 1`).
pub const MAX_CHANNEL: usize = 63;

/// Largest payload of a handle: its base64 after the longest topic still fits in
/// [`MAX_NOTIFY`] (5 805 bytes). Headers take room of their own on top; a message whose
/// text is longer is refused with `PayloadTooLarge` before any I/O.
pub const MAX_PAYLOAD: usize = (MAX_NOTIFY - MAX_TOPIC_LEN - 2) / 4 * 3;

/// Starts a base64 body.
const BINARY: char = '=';

/// The notification text of `message`; `utf8`: the server's encoding is UTF-8, so any UTF-8
/// text goes as it is (otherwise only ASCII does).
pub fn encode(message: &Message, utf8: bool) -> Result<String> {
    let topic = message.topic().as_str();
    let plain = std::str::from_utf8(message.payload())
        .ok()
        .filter(|text| message.headers().is_empty() && is_plain(text, utf8));
    let frame = match plain {
        Some(_) => Bytes::new(),
        None => envelope::encode(message.headers(), message.payload()),
    };
    let body = plain.map_or(1 + frame.len().div_ceil(3) * 4, str::len);
    let size = topic.len() + 1 + body;
    if size > MAX_NOTIFY {
        return Err(Error::payload_too_large(size, MAX_NOTIFY));
    }
    let mut text = String::with_capacity(size);
    text.push_str(topic);
    text.push(' ');
    match plain {
        Some(payload) => text.push_str(payload),
        None => {
            text.push(BINARY);
            STANDARD.encode_string(&frame, &mut text);
        }
    }
    Ok(text)
}

/// Whether a payload can go as the text it is.
fn is_plain(text: &str, utf8: bool) -> bool {
    !text.starts_with(BINARY) && !text.contains('\0') && (utf8 || text.is_ascii())
}

/// The message a notification on `channel` carries; `None` when it is not ours and the
/// channel names no portable topic either.
pub fn decode(text: &str, channel: &str, memo: &mut TopicMemo) -> Option<Message> {
    if let Some((name, body)) = text.split_once(' ') {
        if let Some(topic) = memo.topic(name) {
            if let Some(frame) = body.strip_prefix(BINARY).and_then(from_base64) {
                let decoded = envelope::decode_lossy(Bytes::from(frame));
                return Some(Message::with_headers(
                    topic,
                    decoded.payload,
                    decoded.headers,
                ));
            }
            // Text (or a body that is not base64: never lost, delivered as it came).
            return Some(Message::new(topic, Bytes::copy_from_slice(body.as_bytes())));
        }
    }
    let topic = memo.topic(channel)?;
    Some(Message::new(topic, Bytes::copy_from_slice(text.as_bytes())))
}

/// Standard base64, line breaks ignored (PostgreSQL's `encode(…, 'base64')` writes them).
fn from_base64(text: &str) -> Option<Vec<u8>> {
    if text.contains(['\n', '\r']) {
        let joined: String = text.chars().filter(|c| !matches!(c, '\n' | '\r')).collect();
        return STANDARD.decode(joined).ok();
    }
    STANDARD.decode(text).ok()
}

/// Checks a channel name: 1 to 63 bytes, no NUL (quoted, any other character is allowed).
pub fn check_channel(channel: &str) -> Result<()> {
    if channel.is_empty() || channel.len() > MAX_CHANNEL || channel.contains('\0') {
        return Err(Error::invalid_config(format!(
            "a PostgreSQL channel is 1 to {MAX_CHANNEL} bytes without NUL"
        )));
    }
    Ok(())
}

/// `channel` as a quoted identifier, for `LISTEN` and `UNLISTEN` (which take no parameter):
/// in double quotes, each `"` doubled. Only ever given a name [`check_channel`] passed.
pub fn quote(channel: &str) -> String {
    format!("\"{}\"", channel.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use pubsub_core::adapter::HOSTILE_TEXTS;
    use pubsub_core::{ErrorKind, Headers, Token, Topic};

    fn round_trip(message: &Message, utf8: bool) -> Message {
        let text = encode(message, utf8).unwrap();
        assert!(!text.contains('\0') && text.len() <= MAX_NOTIFY, "{text:?}");
        decode(&text, "pubsub", &mut TopicMemo::default()).unwrap()
    }

    #[test]
    fn text_goes_as_it_is_and_the_rest_as_base64() {
        let t = Topic::new("room.42").unwrap();
        let text = encode(&Message::new(t.clone(), "hi there"), true).unwrap();
        assert_eq!(text, "room.42 hi there");
        assert_eq!(
            encode(&Message::new(t.clone(), ""), true).unwrap(),
            "room.42 "
        );
        assert_eq!(
            encode(&Message::new(t.clone(), "café"), true).unwrap(),
            "room.42 café"
        );
        let ascii_only = encode(&Message::new(t.clone(), "café"), false).unwrap();
        assert!(ascii_only.starts_with("room.42 ="), "{ascii_only}");
        for payload in [&b"=x"[..], b"a\0b", b"\xff", b"\xF5PSE"] {
            let m = Message::new(t.clone(), payload.to_vec());
            assert!(encode(&m, true).unwrap().starts_with("room.42 ="));
            assert_eq!(round_trip(&m, true), m);
        }
        let mut headers = Headers::new();
        headers.insert("k", "v").unwrap();
        let m = Message::with_headers(t, "text", headers);
        assert_eq!(round_trip(&m, true), m);
    }

    #[test]
    fn foreign_text_and_sql_base64() {
        let mut memo = TopicMemo::default();
        let got = decode("orders.created {\"id\": 1}", "pubsub", &mut memo).unwrap();
        assert_eq!(got.topic().as_str(), "orders.created");
        assert_eq!(got.payload().as_ref(), b"{\"id\": 1}");
        // No topic in front: the whole text, on the channel's topic.
        for text in ["hello", "", " leading", "a..b x", "*.x y"] {
            let got = decode(text, "pubsub", &mut memo).unwrap();
            assert_eq!(got.topic().as_str(), "pubsub");
            assert_eq!(got.payload().as_ref(), text.as_bytes());
        }
        assert!(decode("hello", "not a topic", &mut memo).is_none());
        // PostgreSQL's base64 breaks lines every 76 characters.
        let bytes: Vec<u8> = (0..=255).collect();
        let mut sql = STANDARD.encode(&bytes);
        sql.insert(76, '\n');
        let got = decode(&format!("a.b ={sql}"), "pubsub", &mut memo).unwrap();
        assert_eq!(got.payload().as_ref(), &bytes[..]);
        // Not base64: delivered as the text it is.
        let got = decode("a.b =not base64!", "pubsub", &mut memo).unwrap();
        assert_eq!(got.payload().as_ref(), b"=not base64!");
    }

    #[test]
    fn the_limit_is_checked_before_any_io() {
        let longest = Topic::new(&"t".repeat(MAX_TOPIC_LEN)).unwrap();
        let fits = Message::new(longest.clone(), vec![0u8; MAX_PAYLOAD]);
        assert_eq!(round_trip(&fits, true), fits);
        let over = Message::new(longest, vec![0u8; MAX_PAYLOAD + 3]);
        let e = encode(&over, true).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PayloadTooLarge);
        let text = Message::new(Topic::new("a").unwrap(), "x".repeat(MAX_NOTIFY - 2));
        assert_eq!(encode(&text, true).unwrap().len(), MAX_NOTIFY);
        assert_eq!(MAX_PAYLOAD, 5805);
    }

    #[test]
    fn channels_are_checked_and_quoted() {
        assert_eq!(quote("pubsub"), "\"pubsub\"");
        assert_eq!(quote("a\"b"), "\"a\"\"b\"");
        for bad in ["", "a\0b", &"c".repeat(64)] {
            assert!(check_channel(bad).is_err(), "{bad:?}");
        }
        for good in ["pubsub", "My App", "a\"; DROP TABLE x; --", &"c".repeat(63)] {
            check_channel(good).unwrap();
        }
    }

    /// What PostgreSQL reads back from a quoted identifier.
    fn unquote(quoted: &str) -> Option<String> {
        let inner = quoted.strip_prefix('"')?.strip_suffix('"')?;
        let mut out = String::new();
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c == '"' && chars.next() != Some('"') {
                return None;
            }
            out.push(c);
        }
        Some(out)
    }

    #[test]
    fn hostile_topics_round_trip() {
        for raw in HOSTILE_TEXTS {
            let topic = Topic::from_tokens([Token::new("p").unwrap(), Token::escape(raw)]);
            let m = Message::new(topic.unwrap(), raw.as_bytes().to_vec());
            assert_eq!(round_trip(&m, true), m, "{raw:?}");
        }
    }

    proptest! {
        #[test]
        fn every_message_round_trips(
            tokens in prop::collection::vec(any::<String>(), 1..4),
            payload in prop::collection::vec(any::<u8>(), 0..300),
            text in "\\PC{0,40}",
            value in "[^\r\n]{0,8}",
            utf8 in any::<bool>(),
        ) {
            let tokens: Vec<Token> = tokens.iter().map(|t| Token::escape(t)).collect();
            let Ok(topic) = Topic::from_tokens(tokens) else { return Ok(()) };
            let mut headers = Headers::new();
            headers.insert("h", value.as_str()).unwrap();
            for m in [
                Message::new(topic.clone(), payload.clone()),
                Message::new(topic.clone(), text.into_bytes()),
                Message::with_headers(topic, payload, headers),
            ] {
                prop_assert_eq!(round_trip(&m, utf8), m);
            }
        }

        #[test]
        fn any_text_decodes_without_panicking(text in "\\PC{0,64}", channel in "\\PC{0,8}") {
            let _ = decode(&text, &channel, &mut TopicMemo::default());
            // What the fuzz target checks: every text is a message, which round-trips.
            let got = decode(&text, "pubsub", &mut TopicMemo::default()).unwrap();
            prop_assert_eq!(round_trip(&got, true), got);
        }

        #[test]
        fn quoting_round_trips(channel in "[^\0]{1,20}") {
            prop_assert_eq!(unquote(&quote(&channel)), Some(channel));
        }
    }
}
