//! What a browser sees when a WebSocket ends, and what a refusal says: the close handshake
//! (a client's 1000 stays 1000, shutdown is 1001), a refused subscribe as close code
//! `4000 + status` with its reason, a 403 naming the grant that applied, and message
//! headers in the order received. Real clients over real sockets.

mod common;

use std::net::SocketAddr;

use common::*;
use futures::{SinkExt, StreamExt};
use pubsub::Message;
use pubsub_gateway::{Gateway, GatewayConfig};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message as WsMessage;

async fn start(config: &GatewayConfig) -> (SocketAddr, Gateway) {
    start_in_process(config, "close").await
}

/// Reads until the server's close frame; its code and reason. A socket that ends without one
/// (what a browser reports as 1006) fails the test.
async fn close_of(ws: &mut Ws) -> (u16, String) {
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("no close in time")
        {
            Some(Ok(WsMessage::Close(Some(frame)))) => {
                return (u16::from(frame.code), frame.reason.to_string())
            }
            Some(Ok(WsMessage::Close(None))) => panic!("a close frame without a code (1005)"),
            Some(Ok(_)) => continue,
            other => panic!("the socket ended without a close frame (1006): {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_close_is_answered_with_its_code() {
    let (addr, _gateway) = start(&GatewayConfig::default()).await;
    let mut ws = ws_connect(addr, &format!("/sub/{}", unique("t")), &[])
        .await
        .unwrap();
    let first = ws.next().await.unwrap().unwrap();
    assert!(first.to_text().unwrap().contains("subscribed"), "{first:?}");
    ws.send(WsMessage::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    })))
    .await
    .unwrap();
    assert_eq!(close_of(&mut ws).await.0, 1000);
    // The handshake completes: the stream then ends cleanly.
    let end = tokio::time::timeout(WAIT, ws.next()).await.unwrap();
    assert!(end.is_none(), "{end:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_with_going_away() {
    let (addr, gateway) = start(&GatewayConfig::default()).await;
    let mut ws = ws_connect(addr, &format!("/sub/{}", unique("t")), &[])
        .await
        .unwrap();
    ws.next().await.unwrap().unwrap(); // subscribed
    gateway.shutdown();
    assert_eq!(close_of(&mut ws).await, (1001, "shutdown".to_string()));
}

const TOKENS: &str = r#"
[[auth.tokens]]
name = "front"
token = "front-token"
publish = ["room.*.msg"]
subscribe = ["room.42.>"]
[auth.anonymous]
subscribe = ["public.>"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_websocket_closes_with_4xxx_and_the_reason() {
    let config = GatewayConfig::from_toml(TOKENS).unwrap();
    let (addr, _gateway) = start(&config).await;
    let mut ws = ws_connect(addr, "/sub/room.>?token=front-token", &[])
        .await
        .unwrap();
    let (code, reason) = close_of(&mut ws).await;
    assert_eq!(code, 4403);
    assert_eq!(
        reason,
        "forbidden: the token `front` may not subscribe to `room.>`"
    );
    let mut ws = ws_connect(addr, "/sub/private.x", &[]).await.unwrap();
    let (code, reason) = close_of(&mut ws).await;
    assert_eq!(code, 4403);
    assert!(
        reason.contains("without a token (the anonymous grant)"),
        "{reason}"
    );
    let mut ws = ws_connect(addr, "/sub/room.42.x?token=nope", &[])
        .await
        .unwrap();
    assert_eq!(close_of(&mut ws).await.0, 4401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_403_names_the_grant_that_applied() {
    let config = GatewayConfig::from_toml(TOKENS).unwrap();
    let (addr, _gateway) = start(&config).await;
    let (status, body) = publish(addr, "public.news", "x", &[]).await;
    assert_eq!(status, 403);
    assert_eq!(
        body["error"]["message"],
        "a request without a token (the anonymous grant) may not publish to `public.news`"
    );
    let (status, body) = publish(
        addr,
        "room.1.other",
        "x",
        &[("authorization", "Bearer front-token")],
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(
        body["error"]["message"],
        "the token `front` may not publish to `room.1.other`"
    );
    let response = http()
        .get(format!("http://{addr}/sub/private.x"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("anonymous grant"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_headers_keep_their_order() {
    let (addr, gateway) = start(&GatewayConfig::default()).await;
    let topic = unique("order");
    let mut ws = ws_connect(addr, &format!("/sub/{topic}"), &[])
        .await
        .unwrap();
    ws.next().await.unwrap().unwrap(); // subscribed
    let message = Message::builder(topic.parse().unwrap())
        .payload("x")
        .header("zeta", "1")
        .header("alpha", "2")
        .header("mid", "3")
        .build()
        .unwrap();
    gateway.pubsub().publish(message).await.unwrap();
    let frame = tokio::time::timeout(WAIT, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let text = frame.to_text().unwrap();
    let z = text.find("\"zeta\"").unwrap();
    let a = text.find("\"alpha\"").unwrap();
    let m = text.find("\"mid\"").unwrap();
    assert!(z < a && a < m, "{text}");
}
