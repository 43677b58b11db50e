//! Case 11: invalid input gets a typed error, never a panic, and nothing is sent.

use pubsub_core::{ErrorKind, Message, Pattern, Topic};

use crate::kit::*;
use crate::{ForeignMessage, Harness};

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

/// Messages published with the broker's own client (another program on the same broker)
/// arrive byte for byte, on exact and wildcard subscriptions, with the broker's headers as
/// the message's headers where the broker has headers, and none where it has not.
pub async fn foreign_publisher(h: &Harness) {
    let foreign = h.foreign.clone().unwrap_or_else(|| {
        panic!(
            "[{}] the harness gives no foreign publisher (Harness::with_foreign)",
            h.name
        )
    });
    let p = unique_prefix("foreign");
    let ps = connect(h).await;
    let t = format!("{p}.f");
    let mut exact = subscribe(&ps, &t).await;
    let mut wild = subscribe(&ps, &format!("{p}.>")).await;
    let binary: Vec<u8> = (1..=255u8).chain(0..=255u8).collect();
    let payloads: Vec<bytes::Bytes> = vec![
        bytes::Bytes::new(),
        bytes::Bytes::from_static(b"plain text"),
        bytes::Bytes::from(binary),
        bytes::Bytes::from(vec![0u8; 4096]),
        bytes::Bytes::from_static("{\"json\": \"caf\u{e9}\"}".as_bytes()),
    ];
    for (i, payload) in payloads.iter().enumerate() {
        let headers: Vec<(String, String)> = if foreign.headers {
            // Names in order, so that a broker whose header table is sorted keeps it.
            vec![
                (
                    "content-type".to_string(),
                    "application/octet-stream".to_string(),
                ),
                ("x-seq".to_string(), i.to_string()),
            ]
        } else {
            Vec::new()
        };
        (foreign.publish)(ForeignMessage {
            topic: t.clone(),
            payload: payload.clone(),
            headers: headers.clone(),
        })
        .await
        .unwrap_or_else(|e| panic!("[{}] the foreign publisher failed: {e}", h.name));
        for (name, sub) in [("exact", &mut exact), ("wildcard", &mut wild)] {
            let m = next(sub, name).await;
            assert_eq!(
                m.topic().as_str(),
                t,
                "{name}: topic of foreign message {i}"
            );
            assert_eq!(
                m.payload(),
                payload,
                "{name}: payload of foreign message {i}"
            );
            let got: Vec<(String, String)> = m
                .headers()
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect();
            assert_eq!(got, headers, "{name}: headers of foreign message {i}");
        }
    }
    expect_silence(&mut exact, "one copy each").await;
    shut_down(&ps).await;
}
