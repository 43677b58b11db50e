//! Case 11: invalid input gets a typed error, never a panic, and nothing is sent.

use pubsub_core::{Error, ErrorKind, Message, Pattern, Topic};

use crate::support::*;
use crate::{unique_prefix, Harness};

/// Bad topics, patterns, headers and oversized payloads give typed errors.
pub async fn invalid_input(h: &Harness) {
    for bad in ["", "a..b", "a.*", "a.>", "a b", ".a", "a.", "x\u{0}y"] {
        match bad.parse::<Topic>() {
            Err(e @ Error::InvalidTopic(_)) => assert_eq!(e.kind(), ErrorKind::Invalid),
            other => panic!("topic {bad:?}: expected InvalidTopic, got {other:?}"),
        }
    }
    for bad in ["", "ro*m", "a.>.b", "a..b", "a.b>", "*a", "a .b"] {
        match bad.parse::<Pattern>() {
            Err(e @ Error::InvalidPattern(_)) => assert_eq!(e.kind(), ErrorKind::Invalid),
            other => panic!("pattern {bad:?}: expected InvalidPattern, got {other:?}"),
        }
    }
    let p = unique_prefix("invalid");
    let t = topic(&format!("{p}.x"));
    for (name, value) in [
        ("", "v"),
        ("a:b", "v"),
        ("sp ace", "v"),
        ("ok", "line\nbreak"),
        ("ok", "cr\r"),
    ] {
        match Message::builder(t.clone()).header(name, value).build() {
            Err(e @ Error::InvalidHeader(_)) => assert_eq!(e.kind(), ErrorKind::Invalid),
            other => panic!("header {name:?}={value:?}: expected InvalidHeader, got {other:?}"),
        }
    }

    let ps = connect(h).await;
    let mut sub = subscribe(&ps, &format!("{p}.>")).await;
    let max = ps.max_payload();
    if max <= 256 << 20 {
        let too_big = Message::new(t.clone(), vec![0u8; max + 1]);
        match ps.publish(too_big).await {
            Err(Error::PayloadTooLarge { size, max: m }) => {
                assert_eq!((size, m), (max + 1, max));
            }
            other => {
                panic!("payload of max_payload + 1 bytes: expected PayloadTooLarge, got {other:?}")
            }
        }
    } else {
        println!(
            "conformance[{}] invalid_input: max_payload {max} too large to test",
            h.name
        );
    }
    // Nothing was sent: the next message is the one published after.
    publish(&ps, &format!("{p}.x"), "after").await;
    assert_eq!(
        next(&mut sub, "after an oversized publish")
            .await
            .payload()
            .as_ref(),
        b"after"
    );
    shut_down(&ps).await;
}
