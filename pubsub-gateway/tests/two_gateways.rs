//! Two `pubsub-gateway` processes on one broker: what is posted to gateway B reaches WebSocket
//! and SSE subscribers of gateway A; SIGTERM ends their streams with a final frame; a cut
//! broker link gives gap frames and a failing `/healthz`, then recovery.
//!
//! Needs Redis, NATS and RabbitMQ (`PUBSUB_REDIS_URL`, `PUBSUB_NATS_URL`, `PUBSUB_AMQP_URL`;
//! `scripts/brokers.sh` starts them). `GATEWAY_TEST_LOG=info` shows the gateways' logs.

mod common;

use std::time::Duration;

use common::*;
use pubsub_test_support::broker;
use pubsub_test_support::proxy::TcpProxy;

/// Gateways A and B on `url`: WebSocket and SSE subscribers on A get what is posted to B, with
/// headers; several patterns are one subscription; SIGTERM closes streams with a final frame.
async fn two_gateways_talk(url: &str) {
    let a = Node::start(url, &[]).await;
    let b = Node::start(url, &[]).await;
    let room = unique("room");
    let other = unique("other");
    let path = format!("/sub/{room}.>?pattern={other}.*");
    let mut ws = ws_frames(ws_connect(a.addr, &path, &[]).await.unwrap());
    let mut sse = sse(a.addr, &path).await;
    ws.subscribed().await;
    sse.subscribed().await;

    let (status, body) = publish(
        b.addr,
        &format!("{room}.msg"),
        "hello from B",
        &[("x-pubsub-trace", "t-1"), ("content-type", "text/plain")],
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        publish(b.addr, &format!("{other}.x"), "second pattern", &[])
            .await
            .0,
        202
    );
    // Not matched by either pattern.
    assert_eq!(publish(b.addr, &room, "not mine", &[]).await.0, 202);
    assert_eq!(
        publish(b.addr, &format!("{room}.last"), "last", &[])
            .await
            .0,
        202
    );
    // A broker keeps order per topic only (NATS): wait for all three in any order, then
    // linger to see that the unmatched one does not come.
    for subscriber in [&mut ws, &mut sse] {
        let mut frames = Vec::new();
        let wanted = ["hello from B", "second pattern", "last"];
        while !wanted.iter().all(|w| {
            frames
                .iter()
                .any(|f: &serde_json::Value| f["payload"] == *w)
        }) {
            let (frame, _) = subscriber
                .expect("a message", |f| f["type"] == "message")
                .await;
            frames.push(frame);
        }
        while let Some(frame) = subscriber.next(Duration::from_millis(300)).await {
            frames.push(frame);
        }
        let hello = frames
            .iter()
            .find(|f| f["payload"] == "hello from B")
            .unwrap();
        assert_eq!(hello["topic"], format!("{room}.msg"));
        assert_eq!(
            hello["headers"],
            serde_json::json!({ "trace": "t-1" }),
            "{hello}"
        );
        assert!(
            frames.iter().all(|f| f["payload"] != "not mine"),
            "{frames:?}"
        );
    }

    // SIGTERM on A: both streams get the final frame, and A exits 0.
    let exited = a.terminate().await;
    for subscriber in [&mut ws, &mut sse] {
        let (frame, _) = subscriber
            .expect("closing frame", |f| f["type"] == "closing")
            .await;
        assert_eq!(frame["reason"], "shutdown");
    }
    exited.await;
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_on_redis() {
    two_gateways_talk(&broker::redis_url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_on_nats() {
    two_gateways_talk(&broker::nats_url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_on_amqp() {
    two_gateways_talk(&broker::amqp_url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_on_kafka() {
    two_gateways_talk(&broker::kafka_url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_on_mqtt() {
    two_gateways_talk(&broker::mqtt_url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_on_postgres() {
    two_gateways_talk(&broker::postgres_url()).await;
}

/// Gateway A reaches the broker at `upstream` through a proxy that is cut and restored: its
/// WebSocket and SSE subscribers get an outage gap frame, `/healthz` fails while cut, and
/// messages flow again after.
async fn outage_gives_gaps_and_fails_health(
    scheme_url: impl Fn(&str) -> String,
    upstream: &str,
    direct: &str,
) {
    let proxy = TcpProxy::start(upstream).await.unwrap();
    outage_through(&proxy, &scheme_url(&proxy.local_addr().to_string()), direct).await;
}

/// The outage scenario with gateway A on `a_url`, whose connections go through `proxy`, and
/// gateway B on `b_url`, on the same broker.
async fn outage_through(proxy: &TcpProxy, a_url: &str, b_url: &str) {
    let a = Node::start(a_url, &[]).await;
    let b = Node::start(b_url, &[]).await;
    let room = unique("outage");
    let path = format!("/sub/{room}.>");
    let mut ws = ws_frames(ws_connect(a.addr, &path, &[]).await.unwrap());
    let mut sse = sse(a.addr, &path).await;
    ws.subscribed().await;
    sse.subscribed().await;
    assert_eq!(
        publish(b.addr, &format!("{room}.m"), "before", &[]).await.0,
        202
    );
    ws.expect_payload("before").await;
    sse.expect_payload("before").await;

    proxy.cut();
    let body = wait_health(a.addr, 503, "while cut").await;
    assert_eq!(body["state"], "down", "{body}");
    // A publish on A while its broker is away: 503 after the publish timeout.
    let (status, body) = publish(a.addr, &format!("{room}.m"), "during", &[]).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "backend_unavailable");
    proxy.restore();
    wait_health(a.addr, 200, "after restore").await;

    for subscriber in [&mut ws, &mut sse] {
        let (gap, _) = subscriber.expect("gap frame", |f| f["type"] == "gap").await;
        assert!(gap["outage_ms"].is_u64(), "{gap}");
        assert!(
            gap["since_ms"].as_u64() <= gap["until_ms"].as_u64(),
            "{gap}"
        );
    }
    assert_eq!(
        publish(b.addr, &format!("{room}.m"), "after", &[]).await.0,
        202
    );
    ws.expect_payload("after").await;
    sse.expect_payload("after").await;
}

const FAST_FAULTS: &str = "publish_timeout=500ms&command_timeout=2s&backoff_max=200ms";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_on_redis() {
    outage_gives_gaps_and_fails_health(
        |addr| format!("redis://{addr}?{FAST_FAULTS}"),
        &broker::redis_addr(),
        &broker::redis_url(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_on_nats() {
    outage_gives_gaps_and_fails_health(
        |addr| format!("nats://{addr}?{FAST_FAULTS}"),
        &broker::nats_addr(),
        &broker::nats_url(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_on_amqp() {
    outage_gives_gaps_and_fails_health(
        |addr| format!("amqp://guest:guest@{addr}/%2f?{FAST_FAULTS}"),
        &broker::amqp_addr(),
        &broker::amqp_url(),
    )
    .await;
}

/// Kafka clients reconnect to the address the broker advertises, so a proxy in front of the
/// shared broker would see only the first connection: this test runs a Tansu of its own that
/// advertises a switchboard, which sends gateway A's connections (by client id) through the
/// fault proxy and everyone else's straight to the broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_on_kafka() {
    use pubsub_test_support::broker::Tansu;
    use pubsub_test_support::switchboard::Switchboard;
    let mut switchboard = Switchboard::start(([127, 0, 0, 1], 9).into())
        .await
        .unwrap();
    let tansu = Tansu::start(switchboard.local_addr()).await.unwrap();
    switchboard.set_default(tansu.addr());
    let proxy = TcpProxy::start(&tansu.addr().to_string()).await.unwrap();
    switchboard.route("gateway-a", proxy.local_addr());
    let a = format!(
        "kafka://{}?client_id=gateway-a&heartbeat=500ms&{FAST_FAULTS}",
        proxy.local_addr()
    );
    let b = format!("kafka://{}", tansu.addr());
    outage_through(&proxy, &a, &b).await;
}
