//! Loss is never silent: gaps where messages were lost, overflow policies, connection state,
//! and the subscription options a realtime server needs (several patterns, skipping its own
//! messages, topics built from hostile user input).

use std::time::Duration;

use futures::StreamExt;
use pubsub_core::pattern::Part;
use pubsub_core::{
    ConnectionState, Delivery, EndReason, ErrorKind, Gap, Overflow, Pattern, SubscribeOptions,
    Subscription, Token, Topic,
};

use super::outage::{cut_until_down, restore_until_up};
use crate::kit::*;
use crate::Harness;

const SENT: u32 = 10;
const CAP: usize = 4;

/// Subscribes to `t` with a buffer of [`CAP`] and `overflow`, publishes [`SENT`] messages
/// (sequence 0..SENT) from another handle, and waits until all of them reached the buffer.
async fn overflowed(h: &Harness, case: &str, overflow: Overflow) -> Subscription {
    let p = unique_prefix(case);
    let (ps, publisher) = (connect(h).await, connect(h).await);
    let t = format!("{p}.o");
    let options = SubscribeOptions::default()
        .with_capacity(CAP)
        .with_overflow(overflow);
    let sub = ps
        .subscribe_with(pattern(&t), options)
        .await
        .expect("subscribe");
    for i in 0..SENT {
        publish(&publisher, &t, seq(0, i)).await;
    }
    let lost = u64::from(SENT) - CAP as u64;
    eventually(
        "every message reached the buffer",
        Duration::from_secs(10),
        || match overflow {
            // The subscription ends at the first message that does not fit.
            Overflow::Close => sub.end_reason().is_some(),
            _ => sub.dropped() == lost,
        },
    )
    .await;
    shut_down(&publisher).await;
    sub
}

/// What a stream of deliveries holds, as text: `3` for message 3, `gap 6` for a gap.
async fn read_all(sub: Subscription, n: usize) -> Vec<String> {
    let mut deliveries = sub.deliveries();
    let mut seen = Vec::new();
    while seen.len() < n {
        match tokio::time::timeout(idle(), deliveries.next()).await {
            Ok(Some(Delivery::Message(m))) => seen.push(unseq(&m).1.to_string()),
            Ok(Some(Delivery::Gap(Gap::Dropped { count }))) => seen.push(format!("gap {count}")),
            Ok(Some(other)) => seen.push(format!("{other:?}")),
            Ok(None) => break,
            Err(_) => panic!("deliveries: only {seen:?} after {:?}", idle()),
        }
    }
    seen
}

/// Drop-oldest (the default): a gap with the exact count stands where the oldest were lost.
pub async fn overflow_gap(h: &Harness) {
    let sub = overflowed(h, "gap", Overflow::DropOldest).await;
    assert_eq!(read_all(sub, 5).await, ["gap 6", "6", "7", "8", "9"]);
}

/// Drop-newest keeps the first messages; the gap comes after them.
pub async fn drop_newest(h: &Harness) {
    let sub = overflowed(h, "newest", Overflow::DropNewest).await;
    assert_eq!(read_all(sub, 5).await, ["0", "1", "2", "3", "gap 6"]);
}

/// Close-on-overflow ends the slow subscription with its reason, after what it buffered.
pub async fn close_slow(h: &Harness) {
    let mut sub = overflowed(h, "closeslow", Overflow::Close).await;
    assert_eq!(sub.end_reason(), Some(EndReason::Overflow));
    let kept = take(&mut sub, CAP, "buffered before the overflow").await;
    let seqs: Vec<u32> = kept.iter().map(|m| unseq(m).1).collect();
    assert_eq!(seqs, [0, 1, 2, 3]);
    assert!(
        next_within(&mut sub, quiet()).await.is_none(),
        "the stream ends after an overflow under Overflow::Close"
    );
}

/// A cut connection: the state goes down and up again, and a gap marks the outage in every
/// subscription's deliveries, before what is published after the recovery.
pub async fn outage_gap(h: &Harness) {
    let p = unique_prefix("outage");
    let (ps, link) = connect_cuttable(h).await;
    let healthy = connect_peer(h, &*link).await;
    let t = format!("{p}.o");
    let mut sub = subscribe(&ps, &t).await;
    let mut state = ps.watch_connection();
    assert_eq!(*state.borrow_and_update(), ConnectionState::Up);
    // Connecting is not an outage: the first delivery is the first message, not a gap.
    publish(&healthy, &t, seq(0, 0)).await;
    match tokio::time::timeout(idle(), sub.recv_delivery()).await {
        Ok(Some(Delivery::Message(m))) => assert_eq!(unseq(&m), (0, 0)),
        other => panic!("expected the first message before any cut, got {other:?}"),
    }

    cut_until_down(&*link, &mut state).await;
    restore_until_up(&*link, &mut state).await;

    publish(&healthy, &t, seq(0, 1)).await;
    let mut deliveries = sub.deliveries();
    let first = tokio::time::timeout(idle(), deliveries.next()).await;
    match first.expect("a delivery after the outage") {
        Some(Delivery::Gap(Gap::Outage { since, until })) => assert!(since <= until),
        other => panic!("expected the outage gap first, got {other:?}"),
    }
    match tokio::time::timeout(idle(), deliveries.next()).await {
        Ok(Some(Delivery::Message(m))) => assert_eq!(unseq(&m), (0, 1)),
        other => panic!("expected the message after the gap, got {other:?}"),
    }
    shut_down(&ps).await;
    shut_down(&healthy).await;
}

/// One subscription to several overlapping patterns gets each matching message once.
pub async fn multi_pattern(h: &Harness) {
    let p = unique_prefix("multi");
    let ps = connect(h).await;
    let patterns = [format!("{p}.a.*"), format!("{p}.*.x"), format!("{p}.>")];
    let mut sub = ps
        .subscribe_all(
            patterns.iter().map(|s| pattern(s)).collect(),
            SubscribeOptions::default(),
        )
        .await
        .expect("subscribe to several patterns");
    assert_eq!(sub.patterns().count(), 3);
    for (i, t) in ["a.x", "b.x", "a.y", "c.y.z"].iter().enumerate() {
        publish(&ps, &format!("{p}.{t}"), seq(0, i as u32)).await;
    }
    let mut got: Vec<u32> = take(&mut sub, 4, "one copy each")
        .await
        .iter()
        .map(|m| unseq(m).1)
        .collect();
    // Order holds per topic; these are four topics, possibly through different filters.
    got.sort_unstable();
    assert_eq!(got, [0, 1, 2, 3]);
    expect_silence(&mut sub, "no second copy").await;
    shut_down(&ps).await;
}

/// `skip_own`: a subscription does not receive what its own handle publishes; others do.
pub async fn skip_own(h: &Harness) {
    let p = unique_prefix("skipown");
    let (a, b) = (connect(h).await, connect(h).await);
    let t = format!("{p}.room");
    let options = SubscribeOptions::default().skipping_own();
    let mut others_only = a
        .subscribe_with(pattern(&t), options)
        .await
        .expect("subscribe");
    let mut everything = subscribe(&a, &t).await;
    let mut at_b = subscribe(&b, &t).await;
    publish(&a, &t, seq(0, 1)).await;
    publish(&b, &t, seq(0, 2)).await;
    assert_eq!(unseq(&next(&mut others_only, "from b").await), (0, 2));
    expect_silence(&mut others_only, "its own message is skipped").await;
    for sub in [&mut everything, &mut at_b] {
        // Two publishers on two connections: no order between them.
        let mut got: Vec<u32> = take(sub, 2, "both")
            .await
            .iter()
            .map(|m| unseq(m).1)
            .collect();
        got.sort_unstable();
        assert_eq!(got, [1, 2]);
    }
    shut_down(&a).await;
    shut_down(&b).await;
}

/// Topics built from hostile user strings with [`Token::escape`] round-trip through the broker
/// and never act as wildcards or levels; what cannot fit is a typed error.
pub async fn escaped_topics(h: &Harness) {
    let p = unique_prefix("escaped");
    let ps = connect(h).await;
    let prefix = Token::new(&p).expect("prefix token");
    let hostile = pubsub_core::adapter::HOSTILE_TEXTS;
    let mut room_all = ps
        .subscribe(
            Pattern::from_parts([Part::Literal(prefix.clone()), Part::Rest]).expect("pattern"),
        )
        .await
        .expect("subscribe");
    for &name in hostile {
        let topic = Topic::from_tokens([prefix.clone(), Token::escape(name)]).expect("topic");
        assert_eq!(topic.depth(), 2, "{name:?} stays one level");
        let mut exact = ps.subscribe(topic.clone().into()).await.expect("subscribe");
        publish(&ps, topic.as_str(), name.as_bytes().to_vec()).await;
        let got = next(&mut exact, "the escaped topic").await;
        let last = got.topic().tokens().next_back().expect("a token");
        assert_eq!(Token::new(last).expect("token").unescape(), name);
        assert_eq!(got.payload().as_ref(), name.as_bytes());
        expect_silence(&mut exact, "only its own topic").await;
    }
    let all = take(&mut room_all, hostile.len(), "every escaped topic").await;
    assert_eq!(all.len(), hostile.len());
    let long = Topic::from_tokens([prefix, Token::escape(&"x".repeat(300))]).unwrap_err();
    assert_eq!(long.kind(), ErrorKind::Invalid);
    shut_down(&ps).await;
}
