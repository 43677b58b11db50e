//! Case 11: invalid input gets a typed error, never a panic, and nothing is sent.

use pubsub_core::{ErrorKind, Message, Pattern, Topic};

use crate::kit::*;
use crate::Harness;

/// Bad topics, patterns, headers and oversized payloads give typed errors.
pub async fn invalid_input(h: &Harness) {
    for bad in ["", "a..b", "a.*", "a.>", "a b", ".a", "a.", "x\u{0}y"] {
        match bad.parse::<Topic>() {
            Err(e) => assert_eq!(e.kind(), ErrorKind::Invalid, "topic {bad:?}: {e}"),
            Ok(t) => panic!("topic {bad:?}: expected an invalid-topic error, got {t:?}"),
        }
    }
    for bad in ["", "ro*m", "a.>.b", "a..b", "a.b>", "*a", "a .b"] {
        match bad.parse::<Pattern>() {
            Err(e) => assert_eq!(e.kind(), ErrorKind::Invalid, "pattern {bad:?}: {e}"),
            Ok(p) => panic!("pattern {bad:?}: expected an invalid-pattern error, got {p:?}"),
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
            Err(e) => assert_eq!(e.kind(), ErrorKind::Invalid, "header {name:?}: {e}"),
            Ok(m) => {
                panic!("header {name:?}={value:?}: expected an invalid-header error, got {m:?}")
            }
        }
    }

    let ps = connect(h).await;
    let mut sub = subscribe(&ps, &format!("{p}.>")).await;
    let max = ps.max_payload();
    if max <= 256 << 20 {
        let too_big = Message::new(t.clone(), vec![0u8; max + 1]);
        match ps.publish(too_big).await {
            Err(e) => assert_eq!(
                e.kind(),
                ErrorKind::PayloadTooLarge,
                "payload of max_payload + 1 bytes: {e}"
            ),
            Ok(()) => panic!("a payload of max_payload + 1 bytes was accepted"),
        }
    } else {
        println!(
            "conformance[{}] invalid_input: max_payload {max} too large to test",
            h.name
        );
    }
    // Nothing was sent: the next message is the one published after.
    publish(&ps, &format!("{p}.x"), "after").await;
    let after = next_payload(&mut sub, "after an oversized publish").await;
    assert_eq!(after.as_ref(), b"after");
    shut_down(&ps).await;
}
