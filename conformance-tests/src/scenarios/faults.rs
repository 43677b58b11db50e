//! More faults: many cuts in a row, operations issued during an outage, a half-open connection,
//! and a slow network.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pubsub_core::{
    ConnectionState, Delivery, Gap, Message, PubSub, SubscribeOptions, Subscription,
};
use tokio::time::Instant;

use super::outage::{cut_until_down, is_down, restore_until_up, state_becomes};
use crate::kit::*;
use crate::Harness;

/// How many cuts [`repeated_cuts`] makes.
const CUTS: u32 = 20;

/// Reads `sub` after an outage: at least one [`Gap::Outage`], then exactly `want` (as `seq`
/// payloads of `round`), in order, and no other gap.
async fn gap_then(sub: &mut Subscription, name: &str, round: u32, want: u32) {
    let mut gaps = 0;
    let mut next_seq = 0;
    while next_seq < want {
        match tokio::time::timeout(idle(), sub.recv_delivery()).await {
            Ok(Some(Delivery::Gap(Gap::Outage { since, until }))) => {
                assert!(since <= until, "{name}: outage gap ends before it starts");
                assert_eq!(next_seq, 0, "{name}, round {round}: an outage gap among messages published after the recovery");
                gaps += 1;
            }
            Ok(Some(Delivery::Message(m))) => {
                assert!(gaps > 0, "{name}, round {round}: a message before the outage gap");
                assert_eq!(unseq(&m), (round, next_seq), "{name}, round {round}: lost, reordered or repeated");
                next_seq += 1;
            }
            Ok(Some(other)) => panic!("{name}, round {round}: unexpected {other:?}"),
            Ok(None) => panic!("{name}, round {round}: the subscription ended"),
            Err(_) => panic!(
                "{name}, round {round}: after {next_seq} of {want} messages (and {gaps} gaps), nothing more within {:?}",
                idle()
            ),
        }
    }
}

/// The connection is cut and restored many times in a row; after every recovery each live
/// subscription reports the outage and then receives everything published afterwards, in
/// order.
pub async fn repeated_cuts(h: &Harness) {
    let p = unique_prefix("cuts");
    let (ps, link) = connect_cuttable(h).await;
    let healthy = connect_peer(h, &*link).await;
    let t = format!("{p}.c");
    let mut exact = subscribe_cap(&ps, &t, 10_000).await;
    let mut wild = subscribe_cap(&ps, &format!("{p}.>"), 10_000).await;
    let mut state = ps.watch_connection();
    for round in 0..CUTS {
        cut_until_down(&*link, &mut state).await;
        restore_until_up(&*link, &mut state).await;
        for i in 0..10 {
            publish(&healthy, &t, seq(round, i)).await;
        }
        gap_then(&mut exact, "exact", round, 10).await;
        gap_then(&mut wild, "wildcard", round, 10).await;
    }
    shut_down(&ps).await;
    shut_down(&healthy).await;
}

/// Topics [`gap_under_traffic`] publishes to, round robin (each with its own sequence, since
/// some brokers order per topic only).
const TRAFFIC_TOPICS: u32 = 8;

/// Cuts the connection while another handle keeps publishing: in every subscription, each
/// hole in a topic's sequence has an outage gap since that topic's previous message (the
/// gap stands where the loss is, also when messages flow again before the handle says `Up`),
/// and every cut leaves at least one gap.
pub async fn gap_under_traffic(h: &Harness) {
    const CUTS_UNDER_TRAFFIC: u32 = 2;
    let p = unique_prefix("gap_traffic");
    let (ps, link) = connect_cuttable(h).await;
    let healthy = connect_peer(h, &*link).await;
    let mut subs = vec![
        (
            "exact",
            subscribe_cap(&ps, &format!("{p}.t0"), 100_000).await,
        ),
        (
            "wildcard",
            subscribe_cap(&ps, &format!("{p}.>"), 100_000).await,
        ),
        (
            "two patterns",
            ps.subscribe_all(
                vec![pattern(&format!("{p}.t1")), pattern(&format!("{p}.*"))],
                SubscribeOptions::default().with_capacity(100_000),
            )
            .await
            .expect("subscribe to two patterns"),
        ),
    ];
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = tokio::spawn(publish_numbered(healthy.clone(), p.clone(), stop.clone()));
    let mut state = ps.watch_connection();
    for _ in 0..CUTS_UNDER_TRAFFIC {
        tokio::time::sleep(Duration::from_millis(300)).await;
        cut_until_down(&*link, &mut state).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        restore_until_up(&*link, &mut state).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    let last = publisher.await.expect("the publisher task");
    for (name, sub) in &mut subs {
        let all: Vec<u32> = (0..TRAFFIC_TOPICS).collect();
        let topics: &[u32] = if *name == "exact" { &[0] } else { &all };
        let gaps = holes_follow_gaps(sub, name, topics, &last).await;
        assert!(
            gaps >= CUTS_UNDER_TRAFFIC,
            "{name}: {gaps} outage gaps for {CUTS_UNDER_TRAFFIC} cuts"
        );
    }
    shut_down(&ps).await;
    shut_down(&healthy).await;
}

/// Publishes to `{prefix}.t0` … `t7` in turn until `stop`, numbering each topic's messages
/// (a number is used once its publish returned `Ok`); returns each topic's last number.
async fn publish_numbered(ps: Arc<dyn PubSub>, prefix: String, stop: Arc<AtomicBool>) -> Vec<u32> {
    let mut next = vec![0u32; TRAFFIC_TOPICS as usize];
    let mut i = 0usize;
    while !stop.load(Ordering::SeqCst) {
        let k = i % next.len();
        let message = Message::new(topic(&format!("{prefix}.t{k}")), seq(k as u32, next[k]));
        if ps.publish(message).await.is_ok() {
            next[k] += 1;
        } else {
            // The publisher's own link may be failing over (clusters): retry the same number.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        i += 1;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // Each topic's last message, once everything is up: what the reader waits for.
    for (k, n) in next.iter_mut().enumerate() {
        let message = || Message::new(topic(&format!("{prefix}.t{k}")), seq(k as u32, *n));
        let deadline = Instant::now() + idle_timeout(Duration::from_secs(30));
        while ps.publish(message()).await.is_err() {
            assert!(
                Instant::now() < deadline,
                "the healthy handle cannot publish"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    next
}

/// Reads `sub` until the last number of each of `topics`; checks order per topic and that
/// each hole has an outage gap since that topic's previous message. Returns the gap count.
async fn holes_follow_gaps(
    sub: &mut Subscription,
    name: &str,
    topics: &[u32],
    last: &[u32],
) -> u32 {
    let mut expected = vec![0u32; last.len()];
    let mut gap_since = vec![false; last.len()];
    let done = |expected: &[u32]| {
        topics
            .iter()
            .all(|&k| expected[k as usize] > last[k as usize])
    };
    let mut gaps = 0;
    while !done(&expected) {
        match tokio::time::timeout(idle(), sub.recv_delivery()).await {
            Ok(Some(Delivery::Gap(Gap::Outage { .. }))) => {
                gaps += 1;
                gap_since.iter_mut().for_each(|g| *g = true);
            }
            Ok(Some(Delivery::Message(m))) => {
                let (k, n) = unseq(&m);
                let k = k as usize;
                assert!(
                    n >= expected[k],
                    "{name}: topic t{k} went back from {} to {n}",
                    expected[k]
                );
                assert!(
                    n == expected[k] || gap_since[k],
                    "{name}: t{k} messages {}..{n} lost with no gap before the next one",
                    expected[k]
                );
                expected[k] = n + 1;
                gap_since[k] = false;
            }
            Ok(Some(other)) => panic!("{name}: unexpected {other:?}"),
            Ok(None) => panic!("{name}: the subscription ended"),
            Err(_) => panic!(
                "{name}: waiting for the last messages {last:?}, got up to {expected:?}, nothing more within {:?}",
                idle()
            ),
        }
    }
    gaps
}

/// `publish`, `subscribe`, `unsubscribe` and `close` issued while the connection is down each
/// end within their deadlines (a temporary error, or success where the backend can do it
/// later); after the recovery the handle holds exactly the native filters its subscriptions
/// need (none left behind by the unsubscribe, none by a failed subscribe), a subscribe that
/// succeeded works, and the surviving subscription gets what is published; `close` during an
/// outage ends, and everything afterwards is `Closed`.
pub async fn outage_operations(h: &Harness) {
    let p = unique_prefix("outage_ops");
    let (ps, link) = connect_cuttable(h).await;
    let healthy = connect_peer(h, &*link).await;
    let kept = format!("{p}.kept");
    let mut kept_sub = subscribe(&ps, &kept).await;
    let gone = subscribe(&ps, &format!("{p}.gone")).await;
    assert_eq!(ps.stats().native_filters, 2);
    let mut state = ps.watch_connection();

    cut_until_down(&*link, &mut state).await;
    let bound = idle_timeout(Duration::from_secs(30));
    let published = tokio::time::timeout(bound, ps.publish(Message::new(topic(&kept), "lost")))
        .await
        .expect("publish during an outage must end within its deadline");
    if let Err(e) = published {
        assert!(e.is_temporary(), "publish during an outage: {e}");
    }
    let subscribed = tokio::time::timeout(bound, ps.subscribe(pattern(&format!("{p}.new"))))
        .await
        .expect("subscribe during an outage must end within its deadline");
    let mut new_sub = match subscribed {
        Ok(sub) => Some(sub),
        Err(e) => {
            assert!(e.is_temporary(), "subscribe during an outage: {e}");
            None
        }
    };
    let left = tokio::time::timeout(bound, gone.unsubscribe())
        .await
        .expect("unsubscribe during an outage must end within its deadline");
    if let Err(e) = left {
        assert!(e.is_temporary(), "unsubscribe during an outage: {e}");
    }

    restore_until_up(&*link, &mut state).await;
    let want = 1 + usize::from(new_sub.is_some());
    eventually(
        "exactly the native filters of the live subscriptions after the outage",
        Duration::from_secs(30),
        || ps.stats().native_filters == want,
    )
    .await;
    publish(&healthy, &format!("{p}.gone"), "nobody").await;
    publish(&healthy, &kept, seq(0, 0)).await;
    publish(&healthy, &format!("{p}.new"), seq(0, 1)).await;
    let m = next(&mut kept_sub, "the kept subscription after the outage").await;
    assert_eq!(unseq(&m), (0, 0));
    if let Some(sub) = new_sub.as_mut() {
        let m = next(sub, "a subscription made during the outage").await;
        assert_eq!(unseq(&m), (0, 1));
    }
    assert_eq!(ps.stats().subscriptions, want);

    cut_until_down(&*link, &mut state).await;
    let closed = tokio::time::timeout(bound, ps.close())
        .await
        .expect("close during an outage must end within its deadline");
    if let Err(e) = closed {
        assert!(e.is_temporary(), "close during an outage: {e}");
    }
    link.restore().await;
    assert_closed(&ps, &p).await;
    shut_down(&healthy).await;
}

/// The link goes silent without closing (a half-open connection: the peer is gone but no
/// reset arrives): the handle notices within three heartbeats, as documented (the harness sets
/// a short heartbeat on the handle it can cut; see [`Harness::silence_noticed_within`]),
/// reports the outage, reconnects once the network lets
/// it, and the subscription then gets an outage gap and everything published afterwards.
pub async fn half_open(h: &Harness) {
    let p = unique_prefix("half_open");
    let (ps, link) = connect_cuttable(h).await;
    let healthy = connect_peer(h, &*link).await;
    let t = format!("{p}.h");
    let mut sub = subscribe(&ps, &t).await;
    let mut state = ps.watch_connection();

    link.freeze().await;
    let frozen_at = Instant::now();
    state_becomes(
        &mut state,
        "a silent connection is taken as dead",
        Duration::from_secs(10),
        is_down,
    )
    .await;
    let noticed = frozen_at.elapsed();
    assert!(
        noticed <= h.silence_noticed_within,
        "[{}] a silent connection was taken as dead after {noticed:?}, not within {:?}",
        h.name,
        h.silence_noticed_within
    );
    link.thaw().await;
    state_becomes(
        &mut state,
        "up again once the network works",
        Duration::from_secs(30),
        ConnectionState::is_up,
    )
    .await;
    publish(&healthy, &t, seq(0, 0)).await;
    publish(&healthy, &t, seq(0, 1)).await;
    gap_then(&mut sub, "half-open", 0, 2).await;
    tracing::info!(?noticed, "half-open connection noticed");
    shut_down(&ps).await;
    shut_down(&healthy).await;
}

/// A slow network (50 ms each way) changes nothing but latency: subscribe, publish, unsubscribe
/// and delivery work, exactly once and in order, on the slow handle and to it.
pub async fn added_latency(h: &Harness) {
    let p = unique_prefix("latency");
    let (ps, link) = connect_cuttable(h).await;
    let healthy = connect_peer(h, &*link).await;
    let slowed = link.set_latency(Duration::from_millis(50)).await;
    let t = format!("{p}.l");
    let mut exact = subscribe(&ps, &t).await;
    let mut wild = subscribe(&ps, &format!("{p}.*")).await;
    let mut watcher = subscribe(&healthy, &t).await;
    let started = Instant::now();
    for i in 0..10 {
        publish(&ps, &t, seq(0, i)).await;
    }
    for i in 10..20 {
        publish(&healthy, &t, seq(0, i)).await;
    }
    // Each publisher's messages in its order; the two publishers' relative order is not
    // promised (a publish may resolve before the broker has it).
    for (name, sub) in [
        ("exact", &mut exact),
        ("wildcard", &mut wild),
        ("healthy", &mut watcher),
    ] {
        let got: Vec<u32> = take(sub, 20, name)
            .await
            .iter()
            .map(|m| unseq(m).1)
            .collect();
        let slow: Vec<u32> = got.iter().copied().filter(|i| *i < 10).collect();
        let fast: Vec<u32> = got.iter().copied().filter(|i| *i >= 10).collect();
        assert_eq!(
            slow,
            (0..10).collect::<Vec<_>>(),
            "{name}: the slow handle's messages"
        );
        assert_eq!(
            fast,
            (10..20).collect::<Vec<_>>(),
            "{name}: the other handle's messages"
        );
        expect_silence(sub, name).await;
    }
    if slowed {
        assert!(
            started.elapsed() >= Duration::from_millis(100),
            "the link's latency did not apply"
        );
    }
    wild.unsubscribe()
        .await
        .expect("unsubscribe over a slow link");
    publish(&healthy, &t, seq(1, 0)).await;
    assert_eq!(
        unseq(&next(&mut exact, "after the unsubscribe").await),
        (1, 0)
    );
    link.set_latency(Duration::ZERO).await;
    shut_down(&ps).await;
    shut_down(&healthy).await;
}
