//! The PostgreSQL adapter's notification decoder on arbitrary text (any notification another
//! program sends on the handle's channel).
//!
//! Never panics; every text is a message (ours, or the whole text on the channel's topic);
//! that message encodes (when it fits) to a text PostgreSQL takes (no NUL, within the limit),
//! which decodes to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pubsub_postgres::{decode_notification, encode_notification, MAX_NOTIFY};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let message = decode_notification(text, "pubsub").expect("`pubsub` names a topic");
    if let Ok(again) = encode_notification(&message) {
        assert!(!again.contains('\0') && again.len() <= MAX_NOTIFY);
        assert_eq!(decode_notification(&again, "pubsub"), Some(message));
    }
});
