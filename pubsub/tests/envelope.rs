//! The envelope is reachable from the facade: a foreign consumer can tell our frame apart from
//! a plain payload and decode it with `pubsub` alone.

use pubsub::{envelope, Headers};

#[test]
fn the_envelope_is_reachable_from_the_facade() {
    assert_eq!(envelope::MAGIC, [0xF5, b'P', b'S', b'E']);
    assert_eq!(envelope::VERSION, 1);
    let mut headers = Headers::new();
    headers.insert("k", "v").unwrap();
    let frame = envelope::encode(&headers, &"payload".into());
    assert!(frame.starts_with(&envelope::MAGIC));
    assert_eq!(frame[envelope::MAGIC.len()], envelope::VERSION);
    let parsed = envelope::Frame::parse(&frame).unwrap();
    assert_eq!(parsed.header("k"), Some("v"));
    let decoded = envelope::decode(frame).unwrap();
    assert_eq!(decoded.headers, headers);
    assert_eq!(&decoded.payload[..], b"payload");
    // Bytes without the magic are a plain payload.
    let plain = envelope::decode("plain".into()).unwrap();
    assert!(plain.headers.is_empty());
    assert_eq!(&plain.payload[..], b"plain");
}
