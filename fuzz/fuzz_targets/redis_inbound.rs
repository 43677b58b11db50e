//! The Redis adapter's inbound path on arbitrary bytes: the first byte picks a glob class
//! (0–7), the rest is split at its first 0 byte into a channel name and a payload.
//!
//! Never panics; the glob prefix found for a `pmessage` is the channel's first `class` whole
//! tokens (with more after them); a channel that is a valid topic becomes a message whose
//! payload is the bytes as they are when they lack the envelope's magic.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use pubsub_core::adapter::envelope::MAGIC;
use pubsub_core::Topic;
use pubsub_redis::fuzzing::{glob_prefix, unframe};

fuzz_target!(|data: &[u8]| {
    let Some((&class, rest)) = data.split_first() else {
        return;
    };
    let class = usize::from(class % 8);
    let (channel, payload) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let Ok(channel) = std::str::from_utf8(channel) else {
        return;
    };
    // The driver drops a channel that is not a valid topic (empty tokens…) right after.
    let prefix = glob_prefix(channel, class).filter(|_| Topic::new(channel).is_ok());
    if let Some(prefix) = prefix {
        let tokens = if prefix.is_empty() {
            0
        } else {
            prefix.split('.').count()
        };
        assert_eq!(tokens, class);
        assert!(channel.starts_with(&prefix));
        assert!(channel.split('.').count() > class);
    }
    if let Ok(topic) = Topic::new(channel) {
        let payload = Bytes::copy_from_slice(payload);
        let message = unframe(topic.clone(), payload.clone());
        assert_eq!(message.topic(), &topic);
        if !payload.starts_with(&MAGIC) {
            assert_eq!(message.payload(), &payload);
            assert!(message.headers().is_empty());
        }
    }
});
