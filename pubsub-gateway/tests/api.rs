//! The gateway's HTTP API in-process on the memory backend: auth (401/403, static tokens, JWT,
//! the `token` query parameter and the `bearer.` subprotocol), limits (payload, patterns,
//! connections per token, slow clients), errors, binary frames, metrics.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use pubsub::Message;
use pubsub_gateway::{Gateway, GatewayConfig, SlowClient};
use serde_json::json;

/// An HS256 token with `claims`.
fn jwt(secret: &str, claims: serde_json::Value) -> String {
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()).unwrap();
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
}

const AUTH: &str = r#"
[limits]
max_payload = 1000
max_patterns = 3
max_connections_per_token = 2
[auth]
jwt_secret = "test-secret"
[[auth.tokens]]
name = "front"
token = "front-token"
publish = ["room.*.msg"]
subscribe = ["room.42.>"]
[auth.anonymous]
subscribe = ["public.>"]
"#;

async fn start(config: &GatewayConfig) -> (SocketAddr, Gateway) {
    start_in_process(config, "bus").await
}

async fn status_of_sub(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, serde_json::Value) {
    let mut request = http().get(format!("http://{addr}{path}"));
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    if status == 200 {
        return (status, serde_json::Value::Null);
    }
    (status, response.json().await.unwrap())
}

fn in_an_hour() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_refusals_and_grants() {
    let (addr, _gateway) = start(&GatewayConfig::from_toml(AUTH).unwrap()).await;
    let bearer = |t: &str| format!("Bearer {t}");
    let front = bearer("front-token");

    // Publish: 401 with a bad token, 403 outside the grant (anonymous may publish nothing),
    // 202 inside.
    let (status, body) = publish(addr, "room.1.msg", "x", &[]).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );
    assert_eq!(
        publish(addr, "room.1.msg", "x", &[("authorization", "Bearer nope")])
            .await
            .0,
        401
    );
    assert_eq!(
        publish(addr, "room.1.msg", "x", &[("authorization", "Basic eA==")])
            .await
            .0,
        401
    );
    let (status, body) = publish(addr, "room.1.other", "x", &[("authorization", &front)]).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );
    assert_eq!(
        publish(addr, "room.1.msg", "x", &[("authorization", &front)])
            .await
            .0,
        202
    );
    assert_eq!(
        publish(addr, "room.1.msg?token=front-token", "x", &[])
            .await
            .0,
        202
    );

    // Subscribe: the grant `room.42.>` permits inside it, not `room.>`.
    let auth = [("authorization", front.as_str())];
    assert_eq!(status_of_sub(addr, "/sub/room.42.>", &[]).await.0, 403);
    assert_eq!(
        status_of_sub(addr, "/sub/room.42.>?token=nope", &[])
            .await
            .0,
        401
    );
    let (status, body) = status_of_sub(addr, "/sub/room.>", &auth).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );
    assert_eq!(
        status_of_sub(addr, "/sub/room.42.>?pattern=room.41.x", &auth)
            .await
            .0,
        403
    );
    // Anonymous: only public.>.
    assert_eq!(status_of_sub(addr, "/sub/public.news", &[]).await.0, 200);
    assert_eq!(status_of_sub(addr, "/sub/private.news", &[]).await.0, 403);
    // Without anonymous access, no token is 401.
    let closed = GatewayConfig::from_toml(AUTH.split("[auth.anonymous]").next().unwrap()).unwrap();
    let (closed_addr, _closed) = start(&closed).await;
    let (status, body) = publish(closed_addr, "room.1.msg", "x", &[]).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthorized")),
        "{body}"
    );
    assert_eq!(
        status_of_sub(closed_addr, "/sub/public.news", &[]).await.0,
        401
    );

    // JWT: claims grant patterns; expired and badly signed tokens are 401.
    let alice = jwt(
        "test-secret",
        json!({"sub": "alice", "exp": in_an_hour(), "publish": ["chat.>"], "subscribe": ["chat.alice.>"]}),
    );
    let alice_auth = bearer(&alice);
    assert_eq!(
        publish(addr, "chat.x", "x", &[("authorization", &alice_auth)])
            .await
            .0,
        202
    );
    assert_eq!(
        publish(addr, "room.1.msg", "x", &[("authorization", &alice_auth)])
            .await
            .0,
        403
    );
    assert_eq!(
        status_of_sub(addr, "/sub/chat.alice.*", &[("authorization", &alice_auth)])
            .await
            .0,
        200
    );
    assert_eq!(
        status_of_sub(addr, "/sub/chat.>", &[("authorization", &alice_auth)])
            .await
            .0,
        403
    );
    let expired = jwt("test-secret", json!({"exp": 1000, "subscribe": [">"]}));
    assert_eq!(
        status_of_sub(addr, "/sub/a", &[("authorization", &bearer(&expired))])
            .await
            .0,
        401
    );
    let forged = jwt(
        "other-secret",
        json!({"exp": in_an_hour(), "subscribe": [">"]}),
    );
    assert_eq!(
        status_of_sub(addr, "/sub/a", &[("authorization", &bearer(&forged))])
            .await
            .0,
        401
    );

    // WebSockets: `?token=` and the `bearer.` subprotocol (answered with `pubsub`).
    let mut ws = ws_frames(
        ws_connect(addr, &format!("/sub/chat.alice.>?token={alice}"), &[])
            .await
            .unwrap(),
    );
    ws.subscribed().await;
    let (socket, response) = tokio_tungstenite::connect_async({
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = format!("ws://{addr}/sub/chat.alice.%3E")
            .into_client_request()
            .unwrap();
        request.headers_mut().insert(
            "sec-websocket-protocol",
            format!("pubsub, bearer.{alice}").parse().unwrap(),
        );
        request
    })
    .await
    .unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], "pubsub");
    let mut by_protocol = ws_frames(socket);
    by_protocol.subscribed().await;
    assert_eq!(
        publish(
            addr,
            "chat.alice.hi",
            "hi",
            &[("authorization", &alice_auth)]
        )
        .await
        .0,
        202
    );
    ws.expect_payload("hi").await;
    by_protocol.expect_payload("hi").await;
    // A WebSocket outside the grant is accepted, then closed with 4403 and the reason.
    let refused = ws_connect(addr, "/sub/room.>?token=front-token", &[])
        .await
        .unwrap();
    let mut refused = ws_frames(refused);
    let (close, before) = refused.expect("close", |f| f["ws"] == "close").await;
    assert!(before.is_empty(), "{before:?}");
    assert_eq!(
        close["code"], 4403,
        "a WebSocket outside the grant must be refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_limits_and_errors() {
    let (addr, _gateway) = start(&GatewayConfig::from_toml(AUTH).unwrap()).await;
    let front = [("authorization", "Bearer front-token")];
    let (status, body) = publish(addr, "room.1.msg", vec![0u8; 1001], &front).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (413, Some("payload_too_large")),
        "{body}"
    );
    assert_eq!(
        publish(addr, "room.1.msg", vec![0u8; 1000], &front).await.0,
        202
    );
    let (status, body) = publish(addr, "room.*.msg", "x", &front).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("bad_topic")),
        "{body}"
    );
    let (status, body) =
        publish(addr, "room.1.msg", "x", &[front[0], ("x-pubsub-k", "café")]).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("bad_header")),
        "{body}"
    );

    let (status, body) = status_of_sub(
        addr,
        "/sub/room.42.a?pattern=room.42.b&pattern=room.42.c&pattern=room.42.d",
        &front,
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("too_many_patterns")),
        "{body}"
    );
    let (status, body) = status_of_sub(addr, "/sub/room.42..x", &front).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("bad_pattern")),
        "{body}"
    );
    let (status, _) = status_of_sub(addr, "/sub/room.42.x?colour=red", &front).await;
    assert_eq!(status, 400);
    let (status, _) = status_of_sub(addr, "/sub/room.42.x?format=binary", &front).await;
    assert_eq!(status, 400, "binary frames are for WebSockets");

    // Two streams per token: the third is 429 until one closes.
    let one = ws_connect(addr, "/sub/room.42.a?token=front-token", &[])
        .await
        .unwrap();
    let mut two = sse(addr, "/sub/room.42.b?token=front-token").await;
    two.subscribed().await;
    let (status, body) = status_of_sub(addr, "/sub/room.42.c", &front).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (429, Some("too_many_connections")),
        "{body}"
    );
    drop(one);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if sse_status(addr, "/sub/room.42.c?token=front-token").await == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the closed WebSocket still counts"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn sse_status(addr: SocketAddr, path: &str) -> u16 {
    http()
        .get(format!("http://{addr}{path}"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_frames_and_metrics() {
    let (addr, gateway) = start(&GatewayConfig::default()).await;
    let topic = unique("bin");
    let mut ws = ws_frames(
        ws_connect(addr, &format!("/sub/{topic}?format=binary"), &[])
            .await
            .unwrap(),
    );
    ws.subscribed().await;
    let message = Message::builder(topic.parse().unwrap())
        .payload(vec![0xff, 0, 1])
        .header("k", "v")
        .build()
        .unwrap();
    gateway.pubsub().publish(message).await.unwrap();
    let (frame, _) = ws
        .expect("binary frame", |f| f.get("binary").is_some())
        .await;
    let mut want = vec![topic.len() as u8];
    want.extend_from_slice(topic.as_bytes());
    want.extend_from_slice(&[0, 1, 1, b'k', 0, 0, 0, 1, b'v', 0xff, 0, 1]);
    assert_eq!(frame["binary"], json!(want));

    // JSON frames carry non-UTF-8 payloads as base64.
    let mut json_ws = ws_frames(
        ws_connect(addr, &format!("/sub/{topic}"), &[])
            .await
            .unwrap(),
    );
    json_ws.subscribed().await;
    gateway
        .pubsub()
        .publish(Message::new(topic.parse().unwrap(), vec![0xff]))
        .await
        .unwrap();
    let (frame, _) = json_ws.expect("message", |f| f["type"] == "message").await;
    assert_eq!(frame["payload_base64"], "/w==");

    assert_eq!(publish(addr, &topic, "counted", &[]).await.0, 202);
    let text = metrics_text(addr).await;
    for metric in [
        "pubsub_gateway_messages_in_total",
        "pubsub_gateway_messages_out_total",
        "pubsub_gateway_connections",
        "pubsub_gateway_backend_up 1",
    ] {
        assert!(text.contains(metric), "no {metric} in\n{text}");
    }
}

/// Publishes `count` messages of `size` bytes to `topic` straight into the handle.
async fn flood(gateway: &Gateway, topic: &str, count: usize, size: usize) {
    let payload = bytes::Bytes::from(vec![b'x'; size]);
    for _ in 0..count {
        gateway
            .pubsub()
            .publish(Message::new(topic.parse().unwrap(), payload.clone()))
            .await
            .unwrap();
    }
    gateway
        .pubsub()
        .publish(Message::new(topic.parse().unwrap(), "end"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_gets_gap_frames() {
    let mut config = GatewayConfig::default();
    config.limits.buffer = 8;
    let (addr, gateway) = start(&config).await;
    let topic = unique("slow");
    let ws = ws_connect(addr, &format!("/sub/{topic}"), &[])
        .await
        .unwrap();
    let mut ws = ws_frames(ws);
    ws.subscribed().await;
    // The client reads nothing while 40 MB arrive: socket buffers fill, the queue overflows.
    flood(&gateway, &topic, 2500, 16 * 1024).await;
    let (end, before) = ws
        .expect("the last message", |f| f["payload"] == "end")
        .await;
    assert_eq!(end["type"], "message");
    let dropped: u64 = before
        .iter()
        .filter(|f| f["type"] == "gap")
        .map(|f| f["dropped"].as_u64().unwrap())
        .sum();
    let received = before.iter().filter(|f| f["type"] == "message").count() as u64;
    assert!(dropped > 0, "no gap frame among {} frames", before.len());
    assert_eq!(
        received + dropped,
        2500,
        "every message is either received or counted as dropped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_is_disconnected_under_that_policy() {
    let mut config = GatewayConfig::default();
    config.limits.buffer = 8;
    config.limits.slow_client = SlowClient::Disconnect;
    let (addr, gateway) = start(&config).await;
    let topic = unique("slow");
    let mut ws = ws_frames(
        ws_connect(addr, &format!("/sub/{topic}"), &[])
            .await
            .unwrap(),
    );
    ws.subscribed().await;
    flood(&gateway, &topic, 2500, 16 * 1024).await;
    let (closing, _) = ws.expect("closing frame", |f| f["type"] == "closing").await;
    assert_eq!(closing["reason"], "slow_client");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_sends_a_final_frame() {
    let (addr, gateway) = start(&GatewayConfig::default()).await;
    let topic = unique("bye");
    let mut ws = ws_frames(
        ws_connect(addr, &format!("/sub/{topic}"), &[])
            .await
            .unwrap(),
    );
    let mut events = sse(addr, &format!("/sub/{topic}")).await;
    ws.subscribed().await;
    events.subscribed().await;
    gateway.shutdown();
    for subscriber in [&mut ws, &mut events] {
        let (frame, _) = subscriber
            .expect("closing", |f| f["type"] == "closing")
            .await;
        assert_eq!(frame["reason"], "shutdown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sse_streams_get_heartbeats() {
    let config = GatewayConfig {
        sse_heartbeat: Duration::from_millis(100),
        ..GatewayConfig::default()
    };
    let (addr, _gateway) = start(&config).await;
    let response = http()
        .get(format!("http://{addr}/sub/{}", unique("quiet")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["content-type"],
        "text/event-stream",
        "{:?}",
        response.headers()
    );
    let mut body = response.bytes_stream();
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while text.matches(": heartbeat").count() < 2 {
        let chunk = tokio::time::timeout_at(deadline, futures::StreamExt::next(&mut body))
            .await
            .expect("no heartbeats")
            .unwrap()
            .unwrap();
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(text.starts_with("event: subscribed\n"), "{text}");
}
