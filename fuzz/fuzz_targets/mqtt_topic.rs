//! The MQTT adapter's topic-name decoder on arbitrary bytes (any topic a broker delivers).
//!
//! Never panics; a name that decodes is exactly the encoding of its topic (the encoding is
//! canonical), and any valid topic from the bytes round-trips through a name an MQTT broker
//! takes (no wildcard, no leading `$`, within MQTT's length).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pubsub_core::Topic;
use pubsub_mqtt::{decode_topic, encode_topic, MAX_NAME};

fuzz_target!(|data: &[u8]| {
    if let Some(topic) = decode_topic(data) {
        let name = encode_topic(&topic).expect("a portable topic always fits MQTT");
        assert_eq!(name.as_bytes(), data);
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(topic) = Topic::new(text) {
        let name = encode_topic(&topic).expect("a portable topic always fits MQTT");
        assert!(name.len() <= MAX_NAME && !name.starts_with('$'));
        assert!(!name.contains(['+', '#']));
        assert_eq!(name.split('/').count(), topic.depth());
        assert_eq!(decode_topic(name.as_bytes()), Some(topic));
    }
});
