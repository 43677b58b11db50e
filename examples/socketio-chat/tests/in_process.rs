//! Two socketioxide servers in one process on `memory://`, driven by the official socket.io
//! client: room broadcasts, `fetch_sockets` and acknowledgements across the two servers, and an
//! announced departure noticed at once (requests stop waiting for the node).

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pubsub_socketio_chat::{start, ChatNode, ChatOptions};
use support::*;

async fn serve(url: &str, name: &str, root: &str) -> (ChatNode, SocketAddr) {
    let hub = pubsub::connect(url).await.unwrap();
    let options = ChatOptions {
        node: name.into(),
        root: root.into(),
        heartbeat: Duration::from_millis(HEARTBEAT_MS),
        expiry: Duration::from_millis(EXPIRY_MS),
        request_timeout: Duration::from_millis(REQUEST_TIMEOUT_MS),
        ..ChatOptions::default()
    };
    let node = start(Arc::new(hub), options).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = node.router.clone();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (node, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_memory() {
    let url = format!("memory://{}", unique("sio"));
    let (_a, a) = serve(&url, "A", "chat").await;
    let (b_node, b) = serve(&url, "B", "chat").await;
    wait_nodes(a, 2, WAIT).await;
    wait_nodes(b, 2, WAIT).await;
    let (mut clients, a1) = cross_node(a, b).await;

    // B leaves (announced): A sees it at once, not after the expiry.
    let started = tokio::time::Instant::now();
    b_node.shutdown().await;
    wait_nodes(a, 1, WAIT).await;
    assert!(
        started.elapsed() < Duration::from_millis(EXPIRY_MS),
        "an announced leave took {:?}",
        started.elapsed()
    );
    requests_stop_waiting(&mut clients, &a1, ROOM).await;
    clients.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_with_different_roots_do_not_mix() {
    let url = format!("memory://{}", unique("sio"));
    let (_a, a) = serve(&url, "A", "one").await;
    let (_b, b) = serve(&url, "B", "two").await;
    let (_c, c_addr) = serve(&url, "C", "one").await;
    wait_nodes(a, 2, WAIT).await;
    wait_nodes(b, 1, WAIT).await;
    let mut c = Clients::start().await;
    c.connect("a1", a, serde_json::json!("x")).await;
    c.connect("b1", b, serde_json::json!("y")).await;
    c.connect("c1", c_addr, serde_json::json!("z")).await;
    for name in ["a1", "b1", "c1"] {
        c.call(name, "join", serde_json::json!("lobby")).await;
    }
    c.call(
        "a1",
        "message",
        serde_json::json!({"room":"lobby","text":"t"}),
    )
    .await;
    assert_eq!(c.received("c1", "message").await["text"], "t");
    assert_eq!(
        c.got_within("b1", "message", Duration::from_millis(300))
            .await,
        None
    );
    c.close().await;
}
