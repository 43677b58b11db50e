//! Two `socketio-chat` processes on one broker (Redis, NATS, RabbitMQ), driven by the official
//! socket.io client: room broadcasts, `fetch_sockets` and acknowledgements across the nodes; a
//! crashed node noticed within the presence expiry, after which requests stop waiting for it;
//! a broker cut during a broadcast (fault proxy in front of the broker) that does not hang the
//! server, with the recovery logged and the next broadcast delivered.
//!
//! Needs the brokers (`scripts/brokers.sh`) and Node (`scripts/socketio-client.sh`). Set
//! `SIO_TEST_LOG=info` (or `debug`) to see the servers' logs.

mod support;

use std::time::Duration;

use pubsub_test_support::broker;
use pubsub_test_support::proxy::TcpProxy;
use serde_json::json;
use support::*;

/// The whole scenario on one broker URL.
async fn cluster(url: &str) {
    let root = unique("sio");
    let a = Node::start("A", url, &root).await;
    let b = Node::start("B", url, &root).await;
    wait_nodes(a.addr, 2, WAIT).await;
    wait_nodes(b.addr, 2, WAIT).await;
    let (mut clients, a1) = cross_node(a.addr, b.addr).await;

    // B crashes: A notices within the expiry (plus a heartbeat-check margin) ...
    b.kill().await;
    let took = wait_nodes(a.addr, 1, WAIT).await;
    assert!(
        took < Duration::from_millis(EXPIRY_MS + 1500),
        "the crash was noticed after {took:?} (expiry {EXPIRY_MS} ms)"
    );
    a.wait_log("presence: node expired", WAIT).await;
    // ... and then stops waiting for it.
    requests_stop_waiting(&mut clients, &a1, ROOM).await;
    clients.close().await;
    a.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_two_processes() {
    cluster(&broker::redis_url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_two_processes() {
    cluster(&broker::nats_url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_two_processes() {
    cluster(&broker::amqp_url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_two_processes() {
    cluster(&broker::mqtt_url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_processes() {
    cluster(&broker::postgres_url()).await;
}

/// Node A reaches the broker through a fault proxy, node B directly.
async fn broker_cut(url_a: &str, url_b: &str, proxy: TcpProxy) {
    let root = unique("sio-cut");
    let a = Node::start("A", url_a, &root).await;
    let b = Node::start("B", url_b, &root).await;
    wait_nodes(a.addr, 2, WAIT).await;
    wait_nodes(b.addr, 2, WAIT).await;
    let mut c = Clients::start().await;
    c.connect("a1", a.addr, json!("a1")).await;
    c.connect("b1", b.addr, json!("b1")).await;
    c.call("a1", "join", json!("lobby")).await;
    c.call("b1", "join", json!("lobby")).await;
    c.call("a1", "message", json!({"room":"lobby","text":"before"}))
        .await;
    assert_eq!(c.received("b1", "message").await["text"], "before");

    // A broadcast under way when the broker link is cut is answered (delivered, or an error
    // after the publish timeout): the server does not hang.
    let bound = Duration::from_secs(6);
    let during = c
        .emit("a1", "message", json!({"room":"lobby","text":"during"}))
        .await;
    proxy.cut();
    let first = c.ack_within(during, bound).await;
    assert!(
        first.is_some(),
        "the broadcast under way when the link was cut hung"
    );
    // Once A knows the link is down, a broadcast fails within the publish timeout. (Before
    // that, a client library may still accept it into its own buffer.)
    a.wait_log("broker connection lost", WAIT).await;
    let cut_one = c
        .emit("a1", "message", json!({"room":"lobby","text":"cut"}))
        .await;
    let second = c
        .ack_within(cut_one, bound)
        .await
        .expect("a broadcast during the cut hung");
    assert!(
        second.get("error").is_some(),
        "a broadcast during the cut claims success: {second}"
    );

    // Back: the recovery is logged and the next broadcast is delivered.
    proxy.restore();
    a.wait_log("broker connection recovered", WAIT).await;
    wait_nodes(a.addr, 2, WAIT).await;
    wait_nodes(b.addr, 2, WAIT).await;
    assert_eq!(
        c.call("a1", "message", json!({"room":"lobby","text":"after"}))
            .await,
        json!("sent")
    );
    let got = c
        .wait_for("the broadcast after the recovery on b1", |e| {
            e["client"] == "b1" && e["event"] == "message" && e["data"]["text"] == "after"
        })
        .await;
    assert_eq!(got["data"]["node"], "A");
    // And requests across nodes work again.
    let poll = c
        .call("a1", "poll", json!({"room":"lobby","question":"ok?"}))
        .await;
    assert_eq!(answers(&poll), ["a1", "b1"]);
    c.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_broker_cut_during_broadcast() {
    let proxy = TcpProxy::start(&broker::redis_addr()).await.unwrap();
    let url_a = format!(
        "redis://{}?publish_timeout=1s&backoff_max=200ms",
        proxy.local_addr()
    );
    broker_cut(&url_a, &broker::redis_url(), proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_broker_cut_during_broadcast() {
    let proxy = TcpProxy::start(&broker::nats_addr()).await.unwrap();
    let url_a = format!(
        "nats://{}?publish_timeout=1s&backoff_max=200ms",
        proxy.local_addr()
    );
    broker_cut(&url_a, &broker::nats_url(), proxy).await;
}
