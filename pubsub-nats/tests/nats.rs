//! NATS-specific behaviour against a real server (`PUBSUB_NATS_URL`, default
//! `nats://127.0.0.1:4222`): interoperation with plain NATS clients, the server's payload limit,
//! slow consumers, shared clients, connection loss. The portable behaviour is covered by the
//! conformance suite (`conformance-tests/tests/nats.rs`). These tests fail when NATS is down.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use pubsub_core::{ErrorKind, Headers, Message, PubSub, Subscription, WithOptions};
use pubsub_nats::NatsConfig;
use pubsub_test_support::broker::{nats_addr, nats_url};
use pubsub_test_support::kit::{
    assert_closed, expect_silence, fast_backoff, msg, next, next_payload, publish, receive, shared,
    subscribe, subscribe_cap, tasks_settle, unique_prefix,
};
use pubsub_test_support::proxy::TcpProxy;

fn config() -> NatsConfig {
    NatsConfig::from_url(&nats_url()).expect("PUBSUB_NATS_URL parses")
}

async fn connect(config: NatsConfig) -> Arc<dyn PubSub> {
    let hub = pubsub_nats::connect(config).await;
    shared(hub.unwrap_or_else(|e| panic!("NATS must be reachable at {}: {e}", nats_url())))
}

async fn handle() -> Arc<dyn PubSub> {
    connect(config()).await
}

async fn raw() -> async_nats::Client {
    let first = nats_url().split(',').next().unwrap_or_default().to_string();
    async_nats::connect(first).await.expect("NATS reachable")
}

fn prefix() -> String {
    unique_prefix("natstest")
}

/// The payload of the next message, as text.
async fn text(sub: &mut Subscription) -> String {
    String::from_utf8_lossy(&next_payload(sub, "next message").await).into_owned()
}

/// The next message a raw subscriber receives, within 5 s.
async fn raw_next(sub: &mut async_nats::Subscriber) -> async_nats::Message {
    tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("a message within 5 s")
        .expect("stream open")
}

#[tokio::test]
async fn headers_round_trip_exactly_and_interoperate() {
    let p = prefix();
    let ps = handle().await;
    let raw = raw().await;
    let mut sub = subscribe(&ps, &format!("{p}.>")).await;
    let mut raw_sub = raw.subscribe(format!("{p}.>")).await.unwrap();
    // `flush` only writes the SUB out; the server has it once our own message comes back.
    raw.publish(format!("{p}.ready"), "".into()).await.unwrap();
    assert!(raw_next(&mut raw_sub)
        .await
        .subject
        .as_str()
        .ends_with(".ready"));
    assert!(next(&mut sub, "ready")
        .await
        .topic()
        .as_str()
        .ends_with(".ready"));

    let mut headers = Headers::new();
    for (n, v) in [
        ("z-last", "1"),
        ("a-first", " padded "),
        ("Content-Type", "text/plain; charset=utf-8"),
        ("empty", ""),
        ("enc", "=?UTF-8?Q?x?="),
        ("uni", "café ☃\u{3000}"),
        ("Pubsub-Order", "user value"),
    ] {
        headers.insert(n, v).unwrap();
    }
    let sent = Message::with_headers(
        format!("{p}.h").parse().unwrap(),
        vec![0u8, 255, 10, 13],
        headers,
    );
    ps.publish(sent.clone()).await.unwrap();
    let got = next(&mut sub, "with headers").await;
    assert_eq!(got, sent);
    assert_eq!(
        got.headers().iter().collect::<Vec<_>>(),
        sent.headers().iter().collect::<Vec<_>>()
    );

    // A plain NATS client sees plain headers.
    let simple = Message::builder(format!("{p}.s").parse().unwrap())
        .payload("x")
        .header("trace-id", "abc")
        .build()
        .unwrap();
    ps.publish(simple).await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        seen.push(raw_next(&mut raw_sub).await);
    }
    let plain = seen
        .iter()
        .find(|m| m.subject.as_str().ends_with(".s"))
        .unwrap();
    let h = plain.headers.as_ref().unwrap();
    assert_eq!(h.get("trace-id").unwrap().as_str(), "abc");
    assert_eq!(h.len(), 1, "no order header for a single header");
    next(&mut sub, "the simple one").await;

    // A foreign message with a repeated header: the last value wins.
    let mut foreign = async_nats::HeaderMap::new();
    foreign.append("k", "one");
    foreign.append("k", "two");
    raw.publish_with_headers(format!("{p}.f"), foreign, "f".into())
        .await
        .unwrap();
    // A subject that is not a portable topic is skipped; a plain message without headers
    // arrives with none.
    raw.publish(format!("{p}.not*portable"), "skip".into())
        .await
        .unwrap();
    raw.publish(format!("{p}.plain"), "plain".into())
        .await
        .unwrap();
    let got = next(&mut sub, "foreign").await;
    assert_eq!(got.headers().get("k"), Some("two"));
    assert_eq!(got.headers().len(), 1);
    let got = next(&mut sub, "plain").await;
    assert_eq!(got.topic().as_str(), format!("{p}.plain"));
    assert!(got.headers().is_empty());
    ps.close().await.unwrap();
}

#[tokio::test]
async fn max_payload_comes_from_the_server_and_counts_headers() {
    let p = prefix();
    let ps = handle().await;
    let max = ps.max_payload();
    let info_max = raw().await.server_info().max_payload;
    assert_eq!(max, info_max);
    let big = format!("{p}.big");
    let mut sub = subscribe(&ps, &big).await;
    let full = msg(&big, vec![7u8; max]);
    ps.publish(full.clone()).await.unwrap();
    assert_eq!(next(&mut sub, "max_payload bytes").await, full);
    let err = ps.publish(msg(&big, vec![7u8; max + 1])).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PayloadTooLarge, "{err}");
    let with_header = Message::builder(big.parse().unwrap())
        .payload(vec![7u8; max])
        .header("h", "v")
        .build()
        .unwrap();
    let err = ps.publish(with_header).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PayloadTooLarge, "{err}");
    publish(&ps, &big, "still fine").await;
    assert_eq!(text(&mut sub).await, "still fine");
    ps.close().await.unwrap();
}

#[tokio::test]
async fn subscribe_is_live_at_the_server_when_it_resolves() {
    let p = prefix();
    let (a, b) = (handle().await, handle().await);
    for i in 0..100 {
        let topic = format!("{p}.r{i}");
        let mut sub = subscribe(&a, &topic).await;
        publish(&b, &topic, "now").await;
        assert_eq!(text(&mut sub).await, "now");
        if i % 2 == 0 {
            sub.unsubscribe().await.unwrap();
        }
    }
    a.close().await.unwrap();
    b.close().await.unwrap();
}

#[tokio::test]
async fn overlapping_native_subscriptions_give_one_copy_each() {
    let p = prefix();
    let ps = handle().await;
    let mut star = subscribe(&ps, &format!("{p}.*")).await;
    let mut all = subscribe(&ps, &format!("{p}.>")).await;
    let mut exact = subscribe(&ps, &format!("{p}.x")).await;
    let mut all2 = subscribe(&ps, &format!("{p}.>")).await;
    assert_eq!(ps.stats().native_filters, 3);
    publish(&ps, &format!("{p}.x"), "1").await;
    publish(&ps, &format!("{p}.x.y"), "2").await;
    publish(&ps, &p, "3").await;
    assert_eq!(text(&mut star).await, "1");
    assert_eq!(text(&mut exact).await, "1");
    for sub in [&mut all, &mut all2] {
        assert_eq!(text(sub).await, "1");
        assert_eq!(text(sub).await, "2");
    }
    for sub in [&mut star, &mut all, &mut exact, &mut all2] {
        expect_silence(sub, "one copy each").await;
    }
    drop(all);
    all2.unsubscribe().await.unwrap();
    assert_eq!(ps.stats().native_filters, 2);
    ps.close().await.unwrap();
}

/// One subscription that is never read, and 100 000 messages: the reader drains the socket, the
/// stalled subscription drops its oldest messages (counted exactly), the server never sees a
/// slow consumer, and the connection stays healthy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_subscription_never_makes_a_slow_consumer() {
    const N: usize = 100_000;
    let p = prefix();
    let ps = handle().await;
    let publisher = handle().await;
    let topic = format!("{p}.flood");
    let mut stalled = subscribe(&ps, &topic).await;
    let mut reading = subscribe_cap(&ps, &topic, N).await;
    let reader = tokio::spawn(async move {
        let n = receive(&mut reading, N, Duration::from_secs(10), drop).await;
        (n, reading)
    });
    for i in 0..N {
        publish(&publisher, &topic, format!("{i:016}")).await;
    }
    let (n, reading) = reader.await.unwrap();
    assert_eq!(n, N, "the reading subscription got everything");
    assert_eq!(stalled.dropped(), (N - 1024) as u64);
    assert_eq!(reading.dropped(), 0);
    // Nothing was lost before the router (async-nats reports no slow consumer). The router
    // counts a drop just after the push, so allow it a moment.
    let dropped = stalled.dropped();
    pubsub_test_support::kit::eventually(
        "the handle counts the drops",
        Duration::from_secs(2),
        || ps.stats().dropped == dropped,
    )
    .await;
    let kept = pubsub_test_support::kit::drain(&mut stalled, Duration::ZERO).await;
    assert_eq!(
        kept.len(),
        1024,
        "the stalled subscription keeps a full buffer"
    );
    assert_eq!(kept[0].payload(), format!("{:016}", N - 1024).as_bytes());
    // Still healthy.
    let mut check = subscribe(&ps, &format!("{p}.after")).await;
    publish(&publisher, &format!("{p}.after"), "ok").await;
    assert_eq!(text(&mut check).await, "ok");
    ps.close().await.unwrap();
    publisher.close().await.unwrap();
}

#[tokio::test]
async fn close_leaves_no_task_behind() {
    let metrics = tokio::runtime::Handle::current().metrics();
    let before = metrics.num_alive_tasks();
    let p = prefix();
    let ps = handle().await;
    let mut subs = Vec::new();
    for t in ["a", "b.*", "c.>"] {
        subs.push(subscribe(&ps, &format!("{p}.{t}")).await);
    }
    publish(&ps, &format!("{p}.a"), "x").await;
    assert!(metrics.num_alive_tasks() > before);
    ps.close().await.unwrap();
    for sub in &mut subs {
        let _ = sub.recv().await; // the message, then the end
        assert!(tokio::time::timeout(Duration::from_secs(1), sub.recv())
            .await
            .unwrap()
            .is_none());
    }
    tasks_settle(before, Duration::from_secs(2)).await;
    assert_closed(&ps, &p).await;
    ps.close().await.unwrap();
}

#[tokio::test]
async fn from_client_shares_the_connection_and_leaves_it_open() {
    let p = prefix();
    let client = raw().await;
    let ps = pubsub_nats::from_client(client.clone(), NatsConfig::default()).await;
    let ps = shared(ps.unwrap());
    let mut sub = subscribe(&ps, &format!("{p}.>")).await;
    client
        .publish(format!("{p}.raw"), "r".into())
        .await
        .unwrap();
    assert_eq!(text(&mut sub).await, "r");
    ps.close().await.unwrap();
    assert!(sub.recv().await.is_none());
    let mut raw_sub = client.subscribe(format!("{p}.again")).await.unwrap();
    client
        .publish(format!("{p}.again"), "still".into())
        .await
        .unwrap();
    assert_eq!(raw_next(&mut raw_sub).await.payload.as_ref(), b"still");
}

#[tokio::test]
async fn unreachable_server_is_a_typed_error() {
    let config = NatsConfig::from_url("nats://alice:hunter2@127.0.0.1:1").unwrap();
    let err = pubsub_nats::connect(config).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connection, "{err}");
    assert!(!format!("{err} {err:?}").contains("hunter2"));
    let err = NatsConfig::from_url("nats://alice:hunter2@127.0.0.1:notaport").unwrap_err();
    assert!(!format!("{err} {err:?}").contains("hunter2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_a_cut_and_keeps_subscriptions() {
    let p = prefix();
    let proxy = TcpProxy::start(&nats_addr()).await.expect("a TCP proxy");
    let via_proxy = NatsConfig::from_url(&format!("nats://{}", proxy.local_addr())).unwrap();
    let ps = connect(
        via_proxy
            .with_discovered_servers(false)
            .with_publish_timeout(Duration::from_millis(300))
            .with_backoff(fast_backoff()),
    )
    .await;
    let direct = handle().await;
    let topic = format!("{p}.live");
    let mut sub = subscribe(&ps, &topic).await;
    let mut wild = subscribe(&ps, &format!("{p}.*")).await;
    publish(&direct, &topic, "before").await;
    assert_eq!(text(&mut sub).await, "before");
    assert_eq!(text(&mut wild).await, "before");

    proxy.cut();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // While disconnected, publish waits for the timeout and fails with a typed error.
    let started = std::time::Instant::now();
    let err = ps.publish(msg(&topic, "during")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(started.elapsed() >= Duration::from_millis(250));
    // Subscribing waits too (command timeout), so do not; restore.
    proxy.restore();

    // Recovery: publishing from the cut handle waits for the connection and succeeds.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match ps.publish(msg(&topic, "from-cut-handle")).await {
            Ok(()) => break,
            Err(e) if e.kind() == ErrorKind::Timeout && std::time::Instant::now() < deadline => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(text(&mut sub).await, "from-cut-handle");
    assert_eq!(text(&mut wild).await, "from-cut-handle");
    for i in 0..100 {
        publish(&direct, &topic, format!("{i}")).await;
    }
    for i in 0..100 {
        assert_eq!(text(&mut sub).await, format!("{i}"));
        assert_eq!(text(&mut wild).await, format!("{i}"));
    }
    // New subscriptions work after recovery, and the hub's filter count is unchanged.
    assert_eq!(ps.stats().native_filters, 2);
    let mut later = subscribe(&ps, &format!("{p}.later")).await;
    publish(&direct, &format!("{p}.later"), "l").await;
    assert_eq!(text(&mut later).await, "l");
    ps.close().await.unwrap();
    direct.close().await.unwrap();
}

/// A handle dropped without `close` right after its publishes resolved still gets them to the
/// server: the dropped driver flushes async-nats's write buffer before letting go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_survive_a_handle_dropped_without_close() {
    let p = pubsub_test_support::kit::unique_prefix("dropped_publisher");
    let watcher = handle().await;
    let mut sub = pubsub_test_support::kit::subscribe(&watcher, &format!("{p}.>")).await;
    for round in 0..20u32 {
        let publisher = handle().await;
        for i in 0..50u32 {
            pubsub_test_support::kit::publish(
                &publisher,
                &format!("{p}.r"),
                pubsub_test_support::kit::seq(round, i),
            )
            .await;
        }
        drop(publisher);
        for i in 0..50u32 {
            let m = pubsub_test_support::kit::next(&mut sub, "a message of a dropped handle").await;
            assert_eq!(pubsub_test_support::kit::unseq(&m), (round, i));
        }
    }
    watcher.close().await.expect("close");
}
