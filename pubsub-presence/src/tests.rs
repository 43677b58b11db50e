//! Presence on the memory backend (the backends' own behaviour is the conformance suite's job).

use std::sync::Arc;
use std::time::Duration;

use pubsub_core::memory::MemoryBus;
use pubsub_core::Message;
use tokio::time::Instant;

use crate::{LeaveReason, Presence, PresenceConfig, PresenceEvent};

const WAIT: Duration = Duration::from_secs(5);

fn config(interval_ms: u64, expiry_ms: u64) -> PresenceConfig {
    PresenceConfig::new("test.presence".parse().unwrap())
        .with_interval(Duration::from_millis(interval_ms))
        .with_expiry(Duration::from_millis(expiry_ms))
}

async fn node(bus: &MemoryBus, config: PresenceConfig) -> Presence {
    Presence::start(Arc::new(bus.connect().await.unwrap()), config)
        .await
        .unwrap()
}

async fn sees(p: &Presence, n: usize) {
    p.wait_until(WAIT, |alive| alive.len() == n).await.unwrap();
}

#[tokio::test]
async fn nodes_know_each_other_within_a_round_trip_not_an_interval() {
    let bus = MemoryBus::new();
    // A 10 s interval: only the hello and its answers can make this fast.
    let a = node(&bus, config(10_000, 30_000).with_node_id("a")).await;
    let b = node(&bus, config(10_000, 30_000).with_node_id("b")).await;
    let started = Instant::now();
    sees(&a, 2).await;
    sees(&b, 2).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    let ids: Vec<String> = a.alive().into_iter().map(|n| n.id).collect();
    assert_eq!(ids, ["a", "b"]);
    assert!(a.alive()[0].local && !a.alive()[1].local);
    assert_eq!(b.peers(), ["a"]);
}

#[tokio::test]
async fn an_announced_leave_is_seen_at_once() {
    let bus = MemoryBus::new();
    let a = node(&bus, config(10_000, 30_000)).await;
    let b = node(&bus, config(10_000, 30_000)).await;
    sees(&a, 2).await;
    let mut events = a.events();
    let started = Instant::now();
    b.leave().await.unwrap();
    sees(&a, 1).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(
        events.recv().await.unwrap(),
        PresenceEvent::Left {
            id: b.node_id().to_string(),
            reason: LeaveReason::Announced
        }
    );
    b.leave().await.unwrap(); // idempotent
}

#[tokio::test]
async fn a_silent_node_expires_after_its_expiry() {
    let bus = MemoryBus::new();
    let a = node(&bus, config(50, 300)).await;
    let b = node(&bus, config(50, 300)).await;
    sees(&a, 2).await;
    // Still there after several intervals: heartbeats keep it alive.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(a.alive().len(), 2);
    let mut events = a.events();
    let gone = b.node_id().to_string();
    drop(b); // no announcement: a crash as far as `a` can tell
    let started = Instant::now();
    sees(&a, 1).await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(150),
        "expired too early: {took:?}"
    );
    assert!(
        took < Duration::from_millis(2000),
        "expired too late: {took:?}"
    );
    assert_eq!(
        events.recv().await.unwrap(),
        PresenceEvent::Left {
            id: gone,
            reason: LeaveReason::Expired
        }
    );
}

#[tokio::test]
async fn the_senders_expiry_is_used() {
    let bus = MemoryBus::new();
    // `a` would expire peers after 200 ms of its own setting, but `b` announces 2 s.
    let a = node(&bus, config(50, 200)).await;
    let b = node(&bus, config(1_000, 2_000)).await;
    sees(&a, 2).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        a.alive().len(),
        2,
        "b's 2 s expiry holds between its 1 s heartbeats"
    );
    drop(b);
}

#[tokio::test]
async fn tags_are_counted_and_changes_travel_at_once() {
    let bus = MemoryBus::new();
    let a = node(&bus, config(10_000, 30_000).with_tag("chat")).await;
    let b = node(&bus, config(10_000, 30_000)).await;
    sees(&b, 2).await;
    assert_eq!(b.count_tagged("chat"), 1);
    assert_eq!(a.count_tagged("chat"), 1);
    let mut events = a.events();
    b.add_tag("chat");
    assert_eq!(b.count_tagged("chat"), 2);
    a.wait_until(WAIT, |alive| alive.iter().all(|n| n.tags.contains("chat")))
        .await
        .unwrap();
    assert_eq!(a.count_tagged("chat"), 2);
    assert!(
        matches!(events.recv().await.unwrap(), PresenceEvent::Updated(n) if n.id == b.node_id())
    );
    b.remove_tag("chat");
    a.wait_until(WAIT, |alive| {
        alive.iter().filter(|n| n.tags.contains("chat")).count() == 1
    })
    .await
    .unwrap();
    assert_eq!(b.tags().len(), 0);
}

#[tokio::test]
async fn malformed_heartbeats_are_ignored() {
    let bus = MemoryBus::new();
    let a = node(&bus, config(10_000, 30_000)).await;
    let rogue = bus.connect().await.unwrap();
    let topic: pubsub_core::Topic = "test.presence".parse().unwrap();
    for junk in [
        &b"not json"[..],
        b"{}",
        br#"{"v":2,"node":"x","kind":"beat","expiry_ms":1}"#,
        br#"{"v":1,"node":"","kind":"beat","expiry_ms":1}"#,
    ] {
        rogue
            .publish(Message::new(topic.clone(), junk.to_vec()))
            .await
            .unwrap();
    }
    // A valid one after the junk still counts: the listener survived.
    let b = node(&bus, config(10_000, 30_000)).await;
    sees(&a, 2).await;
    assert_eq!(a.peers(), [b.node_id().to_string()]);
}

#[tokio::test]
async fn bad_config_is_refused_before_any_io() {
    let bus = MemoryBus::new();
    let ps = Arc::new(bus.connect().await.unwrap());
    let err = Presence::start(ps.clone(), config(100, 50))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), pubsub_core::ErrorKind::Invalid);
    assert_eq!(ps.stats().subscriptions, 0);
}

#[tokio::test]
async fn a_closed_handle_fails_start() {
    let bus = MemoryBus::new();
    let ps = bus.connect().await.unwrap();
    ps.close().await.unwrap();
    let err = Presence::start(Arc::new(ps), config(100, 300))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), pubsub_core::ErrorKind::Closed);
}
