//! Cases 1, 2, 4, 5, 6: round trip, readiness (and nothing from before it), isolation,
//! ordering, fan-out.

use bytes::Bytes;
use pubsub_core::{Message, SubscribeOptions};

use crate::kit::*;
use crate::Harness;

/// Payload bytes (empty, every byte value, 1 MiB) and headers arrive exactly.
pub async fn round_trip(h: &Harness) {
    let p = unique_prefix("round_trip");
    let (a, b) = (connect(h).await, connect(h).await);
    let mut sub = subscribe(&b, &format!("{p}.>")).await;

    let big_len = (1 << 20).min(a.max_payload());
    let all_bytes: Vec<u8> = (0..=255u8).collect();
    let payloads: Vec<Bytes> = vec![
        Bytes::new(),
        Bytes::from(all_bytes),
        Bytes::from(
            (0..big_len)
                .map(|i| (i * 31 % 251) as u8)
                .collect::<Vec<u8>>(),
        ),
    ];
    for (i, payload) in payloads.iter().enumerate() {
        publish(&a, &format!("{p}.plain.{i}"), payload.clone()).await;
    }
    let with_headers = Message::builder(topic(&format!("{p}.headers")))
        .payload(vec![0u8, 1, 2, 0xF5, b'P', b'S', b'E'])
        .header("content-type", "application/octet-stream")
        .header("x-unicode", "café ☃ — ok")
        .header("a-empty", "")
        .header("Trace-Id", "abc:123; x=1")
        .build()
        .expect("valid headers");
    a.publish(with_headers.clone())
        .await
        .expect("publish with headers");

    // Order holds per topic; these are several topics, which some brokers (Kafka: one
    // partition each) deliver in no particular order among them: sort by topic.
    let order: Vec<String> = (0..payloads.len())
        .map(|i| format!("{p}.plain.{i}"))
        .chain([with_headers.topic().to_string()])
        .collect();
    let mut got = take(&mut sub, order.len(), "round trip").await;
    got.sort_by_key(|m| order.iter().position(|t| t == m.topic().as_str()));
    let mut got = got.into_iter();
    for (i, payload) in payloads.iter().enumerate() {
        let m = got.next().expect("taken");
        assert_eq!(
            m.topic().as_str(),
            format!("{p}.plain.{i}"),
            "topic of message {i}"
        );
        assert_eq!(
            m.payload().len(),
            payload.len(),
            "payload length of message {i}"
        );
        assert!(
            m.payload() == payload,
            "payload bytes of message {i} differ"
        );
        assert!(
            m.headers().is_empty(),
            "message {i} gained headers: {:?}",
            m.headers()
        );
    }
    let m = got.next().expect("taken");
    assert_eq!(m.topic(), with_headers.topic());
    assert_eq!(m.payload(), with_headers.payload());
    let got: Vec<_> = m.headers().iter().collect();
    let want: Vec<_> = with_headers.headers().iter().collect();
    assert_eq!(got, want, "headers must round-trip exactly, in order");
    expect_silence(&mut sub, "round trip: nothing more").await;
    shut_down(&a).await;
    shut_down(&b).await;
}

/// A message published right after `subscribe` resolves, from another handle, is received.
pub async fn subscribe_readiness(h: &Harness) {
    let p = unique_prefix("readiness");
    let (a, b) = (connect(h).await, connect(h).await);
    for i in 0..20 {
        let (exact, wild) = (format!("{p}.r{i}"), format!("{p}.w{i}.*"));
        let mut s1 = subscribe(&b, &exact).await;
        publish(&a, &exact, "now").await;
        let mut s2 = subscribe(&b, &wild).await;
        publish(&a, &format!("{p}.w{i}.x"), "now").await;
        next(&mut s1, "exact subscription right after it resolved").await;
        next(&mut s2, "wildcard subscription right after it resolved").await;
    }
    shut_down(&a).await;
    shut_down(&b).await;
}

/// A subscription never receives a message that was published and delivered before its
/// `subscribe` resolved, also when those went out as a burst that the client batched (Kafka:
/// several records per batch, where a broker that reports a batch's start as the log's end
/// would replay the rest of it). "Delivered" is seen by a subscription that was there before
/// the burst: a publish may resolve before the broker has the message (NATS: once the client
/// buffered it), and such a message may still reach a subscription made meanwhile.
pub async fn no_earlier_messages(h: &Harness) {
    let p = unique_prefix("earlier");
    let (a, b) = (connect(h).await, connect(h).await);
    let t = format!("{p}.w.x");
    let mut witness = subscribe_cap(&a, &t, 1_000).await;
    let burst = (0..500).map(|i| a.publish(Message::new(topic(&t), format!("before {i}"))));
    for result in futures::future::join_all(burst).await {
        result.expect("publish the burst before subscribing");
    }
    take(
        &mut witness,
        500,
        "the burst, at a subscription made before it",
    )
    .await;
    let mut exact = subscribe(&b, &t).await;
    let mut wildcard = subscribe(&b, &format!("{p}.w.*")).await;
    publish(&a, &t, "after").await;
    for (sub, what) in [(&mut exact, "exact"), (&mut wildcard, "wildcard")] {
        let first = next(sub, what).await;
        assert_eq!(
            first.payload_str(),
            Some("after"),
            "the {what} subscription received a message published before it resolved"
        );
    }
    shut_down(&a).await;
    shut_down(&b).await;
}

/// Handles on different prefixes see nothing of each other; unicode topics round-trip.
pub async fn isolation(h: &Harness) {
    let (p1, p2) = (unique_prefix("isolation"), unique_prefix("isolation"));
    let (a, b) = (connect(h).await, connect(h).await);
    let mut sa = subscribe(&a, &format!("{p1}.>")).await;
    let mut sb = subscribe(&b, &format!("{p2}.>")).await;
    for i in 0..10 {
        publish(&a, &format!("{p1}.x.{i}"), "a").await;
        publish(&b, &format!("{p2}.x.{i}"), "b").await;
    }
    publish(&a, &format!("{p1}.end"), "end").await;
    publish(&b, &format!("{p2}.end"), "end").await;
    // Eleven topics each: order holds per topic only (Kafka: a partition each), so the
    // marker may come before others; take all eleven, then the quiet period below shows
    // that nothing of the other prefix follows.
    let got_a = take(&mut sa, 11, "isolation a").await;
    let got_b = take(&mut sb, 11, "isolation b").await;
    for (got, mine) in [(&got_a, &b"a"[..]), (&got_b, &b"b"[..])] {
        let ends = got
            .iter()
            .filter(|m| m.payload().as_ref() == b"end")
            .count();
        let own = got.iter().filter(|m| m.payload().as_ref() == mine).count();
        assert!(ends == 1 && own == 10, "{got:?}");
    }
    expect_silence(&mut sa, "isolation a").await;

    let mut cafe = subscribe(&b, &format!("{p1}.chat.café")).await;
    let mut snow = subscribe(&b, &format!("{p1}.*.x")).await;
    publish(&a, &format!("{p1}.chat.café"), "c").await;
    publish(&a, &format!("{p1}.☃.x"), "s").await;
    assert_eq!(
        next(&mut cafe, "unicode exact").await.topic().as_str(),
        format!("{p1}.chat.café")
    );
    assert_eq!(
        next(&mut snow, "unicode wildcard").await.topic().as_str(),
        format!("{p1}.☃.x")
    );
    shut_down(&a).await;
    shut_down(&b).await;
}

/// 10 000 messages from one publisher arrive in order at each of three subscriptions
/// (fewer on a broker lacking [`LongTopics`](crate::Capability::LongTopics): see
/// [`Harness::topic_volume`]).
pub async fn ordering(h: &Harness) {
    let n = h.topic_volume(10_000);
    let p = unique_prefix("ordering");
    let (a, b, publisher) = (connect(h).await, connect(h).await, connect(h).await);
    let t = format!("{p}.seq");
    let mut subs = vec![
        subscribe_cap(&a, &t, 20_000).await,
        subscribe_cap(&a, &format!("{p}.*"), 20_000).await,
        subscribe_cap(&b, &format!("{p}.>"), 20_000).await,
    ];
    for i in 0..n {
        publish(&publisher, &t, seq(0, i)).await;
    }
    for sub in &mut subs {
        let got = take(sub, n as usize, "ordering").await;
        for (i, m) in got.iter().enumerate() {
            assert_eq!(
                unseq(m),
                (0, i as u32),
                "{}: message {i} out of order",
                sub.pattern()
            );
        }
        assert_eq!(sub.dropped(), 0);
    }
    for ps in [&a, &b, &publisher] {
        shut_down(ps).await;
    }
}

/// Five subscriptions on one handle and five on each of three others all get all 200 messages.
pub async fn fan_out(h: &Harness) {
    const N: u32 = 200;
    let p = unique_prefix("fan_out");
    let publisher = connect(h).await;
    let mut handles = Vec::new();
    let mut subs = Vec::new();
    for _ in 0..4 {
        let ps = connect(h).await;
        for j in 0..5 {
            let pat = match j % 3 {
                0 => format!("{p}.room.msg"),
                1 => format!("{p}.*.msg"),
                _ => format!("{p}.>"),
            };
            subs.push(
                ps.subscribe_with(
                    pattern(&pat),
                    SubscribeOptions::default().with_capacity(1000),
                )
                .await
                .expect("subscribe"),
            );
        }
        handles.push(ps);
    }
    for i in 0..N {
        publish(&publisher, &format!("{p}.room.msg"), seq(1, i)).await;
    }
    // The marker follows on the same topic, so anything extra (a duplicate) shows before it.
    publish(&publisher, &format!("{p}.room.msg"), "end").await;
    for sub in &mut subs {
        let got = until_marker(sub, b"end", "fan-out").await;
        let seqs: Vec<u32> = got.iter().map(|m| unseq(m).1).collect();
        assert_eq!(seqs, (0..N).collect::<Vec<_>>(), "{}", sub.pattern());
    }
    shut_down(&publisher).await;
    for ps in &handles {
        shut_down(ps).await;
    }
}
