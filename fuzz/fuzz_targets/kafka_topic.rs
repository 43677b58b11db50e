//! The Kafka adapter's topic-name decoder on arbitrary bytes (any name the cluster lists).
//!
//! Never panics; a name that decodes is exactly the encoding of its topic (the encoding is
//! canonical), and any valid topic from the bytes round-trips through its encoded name.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pubsub_core::Topic;
use pubsub_kafka::{decode_topic, encode_topic, MAX_NAME};

fuzz_target!(|data: &[u8]| {
    if let Some(topic) = decode_topic(data) {
        // Kafka never lists a name over its limit; past it, `encode_topic` refuses the topic.
        match encode_topic(&topic) {
            Ok(name) => assert_eq!(name.as_bytes(), data),
            Err(e) => assert!(data.len() > MAX_NAME && e.kind() == pubsub_core::ErrorKind::Invalid),
        }
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(topic) = Topic::new(text) {
        match encode_topic(&topic) {
            Ok(name) => {
                assert!(name.len() <= MAX_NAME);
                assert!(name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-'));
                assert_eq!(decode_topic(name.as_bytes()), Some(topic));
            }
            Err(e) => assert_eq!(e.kind(), pubsub_core::ErrorKind::Invalid),
        }
    }
});
