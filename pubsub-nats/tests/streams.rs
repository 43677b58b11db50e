//! Streams on NATS against a real server with JetStream (`PUBSUB_NATS_URL`, default
//! `nats://127.0.0.1:4222`): what the conformance suite does not show: roots other than
//! `a.>`, messages from plain NATS clients, the private re-publish subjects, a declaration
//! that conflicts with the stream at the server, and a stream deleted behind the handle's
//! back. These tests fail when NATS (with JetStream) is down.

use std::sync::Arc;
use std::time::Duration;

use pubsub_core::{
    Delivery, ErrorKind, Gap, Message, PubSub, StartAt, StreamConfig, SubscribeOptions,
    Subscription,
};
use pubsub_nats::NatsConfig;
use pubsub_test_support::broker::nats_url;
use pubsub_test_support::kit::{
    expect_silence, idle, next, pattern, publish, shared, shut_down, tasks_settle, unique_prefix,
};

async fn handle() -> Arc<dyn PubSub> {
    let config = NatsConfig::from_url(&nats_url()).expect("PUBSUB_NATS_URL parses");
    let hub = pubsub_nats::connect(config).await;
    shared(hub.unwrap_or_else(|e| panic!("NATS must be reachable at {}: {e}", nats_url())))
}

async fn raw() -> async_nats::Client {
    let first = nats_url().split(',').next().unwrap_or_default().to_string();
    async_nats::connect(first).await.expect("NATS reachable")
}

async fn declare(ps: &Arc<dyn PubSub>, root: &str, max_len: u64) -> StreamConfig {
    let stream = StreamConfig::new(pattern(root)).with_max_len(max_len);
    ps.declare_stream(stream.clone())
        .await
        .unwrap_or_else(|e| panic!("declaring `{root}`: {e}"));
    stream
}

async fn from(ps: &Arc<dyn PubSub>, p: &str, start: StartAt) -> Subscription {
    ps.subscribe_all(
        vec![pattern(p)],
        SubscribeOptions::default().starting_at(start),
    )
    .await
    .unwrap_or_else(|e| panic!("subscribing to `{p}` from {start}: {e}"))
}

/// The next message, with its position.
async fn positioned(sub: &mut Subscription, what: &str) -> Message {
    let m = next(sub, what).await;
    assert!(m.position().is_some(), "{what}: no position");
    m
}

/// A subscription to several patterns under one stream gets their messages in the stream's
/// order, all of them, while another handle publishes to them in turn at full speed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_patterns_keep_the_stream_order() {
    const N: u32 = 2_000;
    let p = unique_prefix("order");
    let (publisher, reader) = (handle().await, handle().await);
    declare(&publisher, &format!("{p}.>"), 100_000).await;
    declare(&reader, &format!("{p}.>"), 100_000).await;
    let patterns = ["a", "b.*", "c.>"].map(|t| pattern(&format!("{p}.{t}")));
    let mut sub = reader
        .subscribe_all(
            patterns.to_vec(),
            SubscribeOptions::default().starting_at(StartAt::Now),
        )
        .await
        .expect("subscribe");
    let topics = [format!("{p}.a"), format!("{p}.b.x"), format!("{p}.c.y.z")];
    for i in 0..N {
        let topic = &topics[(i % 3) as usize];
        publish(&publisher, topic, i.to_string()).await;
    }
    let mut previous = None;
    for i in 0..N {
        let m = positioned(&mut sub, "in order").await;
        assert_eq!(
            std::str::from_utf8(m.payload()).unwrap(),
            i.to_string(),
            "lost, repeated or reordered"
        );
        let position = *m.position().unwrap();
        if let Some(before) = previous {
            assert!(position.is_after(&before));
        }
        previous = Some(position);
    }
    expect_silence(&mut sub, "nothing more").await;
    shut_down(&publisher).await;
    shut_down(&reader).await;
}

/// Roots with `*` and without wildcards: replayed and live, every message with its position,
/// and none of JetStream's headers.
#[tokio::test]
async fn single_token_wildcard_and_literal_roots() {
    let p = unique_prefix("roots");
    let ps = handle().await;
    declare(&ps, &format!("{p}.star.*"), 100).await;
    declare(&ps, &format!("{p}.lit"), 100).await;
    declare(&ps, &format!("{p}.both.*.>"), 100).await;
    let (star, lit) = (format!("{p}.star.a"), format!("{p}.lit"));
    publish(&ps, &star, "s1").await;
    publish(&ps, &lit, "l1").await;
    let mut s = from(&ps, &format!("{p}.star.*"), StartAt::Start).await;
    let mut l = from(&ps, &lit, StartAt::Start).await;
    let first = positioned(&mut s, "star replay").await;
    assert_eq!(
        (first.topic().as_str(), &first.payload()[..]),
        (star.as_str(), &b"s1"[..])
    );
    assert!(first.headers().is_empty(), "{:?}", first.headers());
    assert_eq!(
        &positioned(&mut l, "literal replay").await.payload()[..],
        b"l1"
    );
    publish(&ps, &star, "s2").await;
    publish(&ps, &lit, "l2").await;
    let live = positioned(&mut s, "star live").await;
    assert!(live.position().unwrap().is_after(first.position().unwrap()));
    assert!(live.headers().is_empty(), "{:?}", live.headers());
    assert_eq!(
        &positioned(&mut l, "literal live").await.payload()[..],
        b"l2"
    );
    let both = format!("{p}.both.x.y.z");
    let mut b = from(&ps, &format!("{p}.both.*.y.>"), StartAt::Now).await;
    publish(&ps, &both, "b1").await;
    let m = positioned(&mut b, "`*` and `>`").await;
    assert_eq!(
        (m.topic().as_str(), &m.payload()[..]),
        (both.as_str(), &b"b1"[..])
    );
    shut_down(&ps).await;
}

/// What a plain NATS client publishes under the root is kept and delivered with a position;
/// the private re-published copies never reach a subscription of their own.
#[tokio::test]
async fn foreign_publishes_are_kept_and_copies_stay_private() {
    let p = unique_prefix("foreign");
    let ps = handle().await;
    declare(&ps, &format!("{p}.>"), 100).await;
    let mut sub = from(&ps, &format!("{p}.>"), StartAt::Now).await;
    // A pattern matching only the re-published subjects, not under the stream.
    let mut copies = ps
        .subscribe(pattern(&format!("*.rp.{p}.>")))
        .await
        .expect("subscribe");
    let client = raw().await;
    client
        .publish(format!("{p}.x"), "from a plain client".into())
        .await
        .expect("raw publish");
    client.flush().await.expect("flush");
    let m = positioned(&mut sub, "a plain client's message").await;
    assert_eq!(&m.payload()[..], b"from a plain client");
    let mut replay = from(&ps, &format!("{p}.>"), StartAt::Start).await;
    assert_eq!(
        positioned(&mut replay, "replayed").await.position(),
        m.position()
    );
    expect_silence(&mut copies, "the re-published copies").await;
    shut_down(&ps).await;
}

/// Two handles declaring one root with different limits: the second is refused by what the
/// server holds (`Invalid`), the same limits are accepted.
#[tokio::test]
async fn conflicting_limits_across_handles() {
    let p = unique_prefix("conflict");
    let (a, b) = (handle().await, handle().await);
    declare(&a, &format!("{p}.>"), 10).await;
    let refused = b
        .declare_stream(StreamConfig::new(pattern(&format!("{p}.>"))).with_max_len(20))
        .await
        .expect_err("other limits");
    assert_eq!(refused.kind(), ErrorKind::Invalid, "{refused}");
    declare(&b, &format!("{p}.>"), 10).await;
    shut_down(&a).await;
    shut_down(&b).await;
}

/// A stream deleted at the server: the next read creates it again (another epoch), and a
/// position of the old one gets a reset gap, then the new log.
#[tokio::test]
async fn a_deleted_stream_is_created_again_with_a_new_epoch() {
    let p = unique_prefix("deleted");
    let ps = handle().await;
    let stream = declare(&ps, &format!("{p}.>"), 100).await;
    let t = format!("{p}.t");
    let mut sub = from(&ps, &t, StartAt::Now).await;
    publish(&ps, &t, "old").await;
    let old = *positioned(&mut sub, "old").await.position().unwrap();
    drop(sub);
    delete_stream(&stream).await;
    // Re-created by the subscription's first read (the position's epoch is gone).
    let mut resumed = from(&ps, &t, StartAt::After(old)).await;
    match tokio::time::timeout(idle(), resumed.recv_delivery()).await {
        Ok(Some(Delivery::Gap(Gap::History { reset: true, .. }))) => {}
        other => panic!("expected a reset gap, got {other:?}"),
    }
    publish(&ps, &t, "new").await;
    let new = positioned(&mut resumed, "new").await;
    assert_eq!(&new.payload()[..], b"new");
    assert_ne!(new.position().unwrap().epoch(), old.epoch());
    tokio::time::sleep(Duration::from_millis(10)).await;
    shut_down(&ps).await;
}

/// Streams leave no task behind a closed handle (JetStream's context runs one of its own).
#[tokio::test]
async fn close_after_streams_leaves_no_task_behind() {
    let metrics = tokio::runtime::Handle::current().metrics();
    let before = metrics.num_alive_tasks();
    let p = unique_prefix("tasks");
    let ps = handle().await;
    declare(&ps, &format!("{p}.>"), 100).await;
    publish(&ps, &format!("{p}.t"), "x").await;
    let mut sub = from(&ps, &format!("{p}.>"), StartAt::Start).await;
    positioned(&mut sub, "replayed").await;
    ps.close().await.expect("close");
    assert!(tokio::time::timeout(Duration::from_secs(1), sub.recv())
        .await
        .expect("the end")
        .is_none());
    tasks_settle(before, Duration::from_secs(2)).await;
    let refused = ps
        .declare_stream(StreamConfig::new(pattern(&format!("{p}x.>"))))
        .await
        .expect_err("declared after close");
    assert_eq!(refused.kind(), ErrorKind::Closed, "{refused}");
}

/// A stream deleted and created again (by another handle) while a subscription follows it
/// live: the subscription gets a reset gap, then the new stream's messages, none taken for
/// one it had.
#[tokio::test]
async fn a_stream_created_again_under_a_live_subscription() {
    let p = unique_prefix("recreated");
    let (ps, other) = (handle().await, handle().await);
    let stream = declare(&ps, &format!("{p}.>"), 100).await;
    let t = format!("{p}.t");
    let mut sub = from(&ps, &t, StartAt::Now).await;
    for text in ["old 1", "old 2"] {
        publish(&ps, &t, text).await;
        positioned(&mut sub, text).await;
    }
    delete_stream(&stream).await;
    declare(&other, &format!("{p}.>"), 100).await;
    publish(&other, &t, "new 1").await;
    match tokio::time::timeout(idle(), sub.recv_delivery()).await {
        Ok(Some(Delivery::Gap(Gap::History { reset: true, .. }))) => {}
        other => panic!("expected a reset gap, got {other:?}"),
    }
    let new = positioned(&mut sub, "new 1").await;
    assert_eq!(&new.payload()[..], b"new 1");
    publish(&other, &t, "new 2").await;
    let next = positioned(&mut sub, "new 2").await;
    assert_eq!(&next.payload()[..], b"new 2");
    assert!(next.position().unwrap().is_after(new.position().unwrap()));
    shut_down(&ps).await;
    shut_down(&other).await;
}

/// Deletes `stream`'s JetStream stream behind the adapter's back.
async fn delete_stream(stream: &StreamConfig) {
    let js = async_nats::jetstream::new(raw().await);
    let prefix = format!("PUBSUB_{:08x}_", stream.tag());
    let mut names = js.stream_names();
    let mut found = None;
    while let Some(name) = futures::StreamExt::next(&mut names).await {
        let name = name.expect("stream names");
        if name.starts_with(&prefix) {
            found = Some(name);
        }
    }
    js.delete_stream(found.expect("the stream at the server"))
        .await
        .expect("delete");
}
