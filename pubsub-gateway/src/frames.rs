//! What a subscriber receives: frames, as JSON (WebSocket text frames and SSE events) or,
//! for messages on request, as binary WebSocket frames.
//!
//! Every JSON frame has a `type`; over SSE the type is also the event name.
//!
//! | `type` | fields | meaning |
//! |---|---|---|
//! | `subscribed` | `patterns` | the subscription is live: everything published from now on and matching arrives |
//! | `message` | `topic`, `headers` (object), `payload` (UTF-8 text) or `payload_base64`; `position` under a stream | a message; its `position` is the token to resume after it (`from=`, and the SSE `id:`) |
//! | `gap` | `dropped` (count), or `outage_ms`, `since_ms`, `until_ms` (Unix ms) | messages were lost here: resync |
//! | `gap` | `history: true`, `missed` (count or `null`), `reset` (bool) | a resume asked for messages the stream no longer holds (trimmed, expired, or its log was re-created: `reset`); the oldest held follows |
//! | `closing` | `reason`: `shutdown`, `slow_client`, `refused`, `backend_closed` | the last frame before the server closes the stream |
//!
//! A binary message frame (`?format=binary` on a WebSocket) is, big-endian:
//! `u8` topic length, topic, `u16` header count, then per header `u8` name length, name,
//! `u32` value length, value; the rest of the frame is the payload. Other frames stay JSON text.
//! A binary frame carries no position: a client that resumes uses JSON frames.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use bytes::{BufMut, Bytes, BytesMut};
use pubsub::{Gap, Message, Pattern};
use serde_json::{json, Map, Value};

/// Why the server ends a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closing {
    /// The gateway is shutting down.
    Shutdown,
    /// The client did not keep up (slow-client policy `disconnect`, or a send timed out).
    SlowClient,
    /// The broker refused one of the stream's patterns after it was live (a permission
    /// revoked): [`EndReason::Refused`](pubsub::EndReason::Refused).
    Refused,
    /// The pub/sub handle was closed.
    BackendClosed,
}

impl Closing {
    /// The WebSocket close code that follows the `closing` frame: 1001 (going away) on
    /// shutdown, 4008 for a slow client, 4403 when the broker refused the subscription, 1011
    /// when the pub/sub handle closed.
    pub fn close_code(self) -> u16 {
        match self {
            Closing::Shutdown => 1001,
            Closing::SlowClient => 4008,
            Closing::Refused => 4403,
            Closing::BackendClosed => 1011,
        }
    }

    /// The `reason` of the `closing` frame.
    pub fn as_str(self) -> &'static str {
        match self {
            Closing::Shutdown => "shutdown",
            Closing::SlowClient => "slow_client",
            Closing::Refused => "refused",
            Closing::BackendClosed => "backend_closed",
        }
    }
}

/// The `subscribed` frame.
pub fn subscribed(patterns: &[Pattern]) -> Value {
    let patterns: Vec<&str> = patterns.iter().map(Pattern::as_str).collect();
    json!({ "type": "subscribed", "patterns": patterns })
}

/// The `message` frame of `message` (with its `position` when it was delivered under a
/// stream).
pub fn message(message: &Message) -> Value {
    let mut headers = Map::new();
    for (name, value) in message.headers().iter() {
        headers.insert(name.to_string(), Value::String(value.to_string()));
    }
    let mut frame = Map::new();
    frame.insert("type".into(), "message".into());
    frame.insert("topic".into(), message.topic().as_str().into());
    frame.insert("headers".into(), Value::Object(headers));
    match std::str::from_utf8(message.payload()) {
        Ok(text) => frame.insert("payload".into(), text.into()),
        Err(_) => frame.insert(
            "payload_base64".into(),
            base64::engine::general_purpose::STANDARD
                .encode(message.payload())
                .into(),
        ),
    };
    if let Some(position) = message.position() {
        frame.insert("position".into(), position.to_string().into());
    }
    Value::Object(frame)
}

/// The `gap` frame of `gap`.
pub fn gap(gap: &Gap) -> Value {
    match gap {
        Gap::Dropped { count } => json!({ "type": "gap", "dropped": count }),
        Gap::Outage { since, until } => json!({
            "type": "gap",
            "outage_ms": millis(until.duration_since(*since).unwrap_or_default()),
            "since_ms": unix_ms(*since),
            "until_ms": unix_ms(*until),
        }),
        Gap::History { missed, reset } => json!({
            "type": "gap",
            "history": true,
            "missed": missed,
            "reset": reset,
        }),
        // A kind of gap this gateway does not know yet: still a gap, the client resyncs.
        _ => json!({ "type": "gap" }),
    }
}

/// The `closing` frame.
pub fn closing(reason: Closing) -> Value {
    json!({ "type": "closing", "reason": reason.as_str() })
}

/// The binary frame of `message` (see the module docs). `None` only if a header value is over
/// 4 GiB, which the core's headers cannot hold in practice.
pub fn binary_message(message: &Message) -> Option<Bytes> {
    let topic = message.topic().as_str().as_bytes();
    let headers = message.headers();
    let mut frame = BytesMut::with_capacity(3 + topic.len() + message.payload().len() + 64);
    frame.put_u8(u8::try_from(topic.len()).ok()?);
    frame.put_slice(topic);
    frame.put_u16(u16::try_from(headers.len()).ok()?);
    for (name, value) in headers.iter() {
        frame.put_u8(u8::try_from(name.len()).ok()?);
        frame.put_slice(name.as_bytes());
        frame.put_u32(u32::try_from(value.len()).ok()?);
        frame.put_slice(value.as_bytes());
    }
    frame.put_slice(message.payload());
    Some(frame.freeze())
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn unix_ms(t: SystemTime) -> u64 {
    millis(t.duration_since(UNIX_EPOCH).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pubsub::{Offset, Position};
    use std::time::Duration;

    #[test]
    fn json_frames() {
        let m = Message::builder("a.b".parse().unwrap())
            .payload("hi")
            .header("z", "1")
            .header("a", "2")
            .build()
            .unwrap();
        let frame = message(&m);
        assert_eq!(
            frame,
            json!({"type":"message","topic":"a.b","headers":{"z":"1","a":"2"},"payload":"hi"})
        );
        let binary = Message::new("a.b".parse().unwrap(), vec![0xff, 0x00]);
        assert_eq!(message(&binary)["payload_base64"], "/wA=");
        assert_eq!(
            gap(&Gap::Dropped { count: 3 }),
            json!({"type":"gap","dropped":3})
        );
        let since = UNIX_EPOCH + Duration::from_secs(10);
        let until = since + Duration::from_millis(1500);
        assert_eq!(
            gap(&Gap::Outage { since, until }),
            json!({"type":"gap","outage_ms":1500,"since_ms":10000,"until_ms":11500})
        );
        assert_eq!(
            gap(&Gap::History {
                missed: Some(4),
                reset: false
            }),
            json!({"type":"gap","history":true,"missed":4,"reset":false})
        );
        assert_eq!(
            gap(&Gap::History {
                missed: None,
                reset: true
            }),
            json!({"type":"gap","history":true,"missed":null,"reset":true})
        );
        assert_eq!(
            closing(Closing::Shutdown),
            json!({"type":"closing","reason":"shutdown"})
        );
        assert_eq!(
            subscribed(&["a.>".parse().unwrap()]),
            json!({"type":"subscribed","patterns":["a.>"]})
        );
    }

    #[test]
    fn message_frames_carry_their_position() {
        let position = Position::new(0x1f, 2, Offset(0, 0x2a));
        let m = Message::new("room.1".parse().unwrap(), "hi").with_position(position);
        let frame = message(&m);
        assert_eq!(frame["position"], "ps1-1f-2-0-2a");
        assert_eq!(
            frame["position"]
                .as_str()
                .unwrap()
                .parse::<Position>()
                .unwrap(),
            position
        );
        let plain = Message::new("room.1".parse().unwrap(), "hi");
        assert!(message(&plain).get("position").is_none());
    }

    #[test]
    fn binary_frame_layout() {
        let m = Message::builder("t.x".parse().unwrap())
            .payload(vec![1, 2, 3])
            .header("k", "vv")
            .build()
            .unwrap();
        let frame = binary_message(&m).unwrap();
        assert_eq!(
            frame.as_ref(),
            &[3, b't', b'.', b'x', 0, 1, 1, b'k', 0, 0, 0, 2, b'v', b'v', 1, 2, 3]
        );
    }
}
