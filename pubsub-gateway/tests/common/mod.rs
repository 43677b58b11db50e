//! Helpers of the gateway's integration tests: gateway processes, WebSocket and SSE clients.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use futures::{Stream, StreamExt};
pub use pubsub_test_support::process::{free_port, unique};
use pubsub_test_support::process::{Logging, Server};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::process::Command;
use tokio::time::{sleep, timeout, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Every wait of these tests is bounded by this.
pub const WAIT: Duration = Duration::from_secs(15);

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// A gateway on a memory bus of its own (named after `label`), served on an ephemeral port of
/// this process.
pub async fn start_in_process(
    config: &pubsub_gateway::GatewayConfig,
    label: &str,
) -> (SocketAddr, pubsub_gateway::Gateway) {
    let hub = pubsub::connect(&format!("memory://{}", unique(label)))
        .await
        .unwrap();
    let gateway = pubsub_gateway::Gateway::new(hub, config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = gateway.clone();
    tokio::spawn(async move { serving.serve(listener, std::future::pending()).await });
    (addr, gateway)
}

/// The text of `GET /metrics`.
pub async fn metrics_text(addr: SocketAddr) -> String {
    http()
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// `GET /healthz`: the status and body, or `None` when nothing answers.
pub async fn health(addr: SocketAddr) -> Option<(u16, Value)> {
    let response = http()
        .get(format!("http://{addr}/healthz"))
        .timeout(Duration::from_secs(3))
        .send()
        .await
        .ok()?;
    let status = response.status().as_u16();
    Some((status, response.json().await.ok()?))
}

/// Polls `/healthz` until it answers `status`; returns the body.
pub async fn wait_health(addr: SocketAddr, status: u16, what: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let answer = health(addr).await;
        if let Some((code, body)) = &answer {
            if *code == status {
                return body.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "{what}: /healthz on {addr} did not answer {status} within {WAIT:?} (last: {answer:?})"
        );
        sleep(Duration::from_millis(50)).await;
    }
}

/// `POST /pub/{topic}` with `headers`: the status and JSON body.
pub async fn publish(
    addr: SocketAddr,
    topic: &str,
    payload: impl Into<reqwest::Body>,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut request = http()
        .post(format!("http://{addr}/pub/{topic}"))
        .body(payload);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// How the gateway processes log: `GATEWAY_TEST_LOG=info` shows their logs.
const LOGGING: Logging = Logging {
    variable: "GATEWAY_TEST_LOG",
    default_filter: "warn",
};

/// One `pubsub-gateway` process; killed when dropped.
pub struct Node {
    pub addr: SocketAddr,
    server: Server,
}

impl Node {
    /// Starts a gateway on `backend` with extra environment `env`, waits until healthy.
    pub async fn start(backend: &str, env: &[(&str, &str)]) -> Node {
        Node::start_with(backend, env, &[]).await
    }

    /// Like [`Node::start`], with extra command-line arguments.
    pub async fn start_with(backend: &str, env: &[(&str, &str)], args: &[&str]) -> Node {
        let addr = free_port().await;
        let mut command = Command::new(env!("CARGO_BIN_EXE_pubsub-gateway"));
        command
            .args(["--backend", backend, "--listen", &addr.to_string()])
            .args(args)
            .env_remove("PUBSUB_URL")
            .envs(env.iter().copied());
        let server = Server::start("gateway", command, addr, LOGGING, WAIT).await;
        Node { addr, server }
    }

    /// SIGTERM; the process must exit 0 within [`WAIT`].
    pub async fn terminate(self) -> impl std::future::Future<Output = ()> {
        self.server.sigterm().await;
        self.server.exits_cleanly(WAIT)
    }
}

/// A subscriber over WebSocket or SSE: a stream of JSON frames.
pub struct Subscriber {
    frames: std::pin::Pin<Box<dyn Stream<Item = Value> + Send>>,
    pub what: &'static str,
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens a WebSocket to `path` (with optional extra headers), without reading.
pub async fn ws_connect(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    // `>` is not a URI character: percent-encoded, as browsers do.
    let path = path.replace('>', "%3E");
    let mut request = format!("ws://{addr}{path}").into_client_request().unwrap();
    for (k, v) in headers {
        request.headers_mut().insert(
            axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    let (ws, _) = timeout(WAIT, tokio_tungstenite::connect_async(request))
        .await
        .expect("websocket connect timed out")?;
    Ok(ws)
}

/// The JSON frames of a WebSocket (binary frames as `{"binary": [bytes]}`), ending at close.
pub fn ws_frames(ws: Ws) -> Subscriber {
    let frames = ws.filter_map(|frame| async move {
        match frame {
            Ok(WsMessage::Text(text)) => Some(serde_json::from_str(text.as_str()).unwrap()),
            Ok(WsMessage::Binary(bytes)) => Some(serde_json::json!({ "binary": bytes.to_vec() })),
            Ok(WsMessage::Close(frame)) => Some(serde_json::json!({
                "ws": "close",
                "code": frame.as_ref().map(|f| u16::from(f.code)),
                "reason": frame.as_ref().map(|f| f.reason.to_string()),
            })),
            Ok(_) => None,
            Err(e) => Some(serde_json::json!({ "ws": "error", "error": e.to_string() })),
        }
    });
    Subscriber {
        frames: Box::pin(frames),
        what: "websocket",
    }
}

/// Opens an SSE stream of `path`: the JSON data of each event (heartbeats skipped), checking
/// that the event name is the frame's type and that the event's `id:` is the frame's
/// `position` (both or neither).
pub async fn sse(addr: SocketAddr, path: &str) -> Subscriber {
    sse_with(addr, path, &[]).await
}

/// Like [`sse`], with request headers (`Last-Event-ID`).
pub async fn sse_with(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Subscriber {
    let mut request = reqwest::Client::new()
        .get(format!("http://{addr}{path}"))
        .header("accept", "text/event-stream");
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200, "SSE {path}");
    let bytes = response.bytes_stream();
    let frames = futures::stream::unfold(
        (Box::pin(bytes), String::new()),
        |(mut bytes, mut buffer)| async move {
            loop {
                if let Some(end) = buffer.find("\n\n") {
                    let block: String = buffer.drain(..end + 2).collect();
                    let mut event = None;
                    let mut id = None;
                    let mut data = String::new();
                    for line in block.lines() {
                        if let Some(v) = line.strip_prefix("event:") {
                            event = Some(v.trim().to_string());
                        } else if let Some(v) = line.strip_prefix("id:") {
                            id = Some(v.trim().to_string());
                        } else if let Some(v) = line.strip_prefix("data:") {
                            data.push_str(v.trim_start());
                        }
                    }
                    if data.is_empty() {
                        continue; // a heartbeat comment
                    }
                    let frame: Value = serde_json::from_str(&data).unwrap();
                    assert_eq!(event.as_deref(), frame["type"].as_str(), "{block}");
                    assert_eq!(id.as_deref(), frame["position"].as_str(), "{block}");
                    return Some((frame, (bytes, buffer)));
                }
                match bytes.next().await {
                    Some(Ok(chunk)) => buffer.push_str(std::str::from_utf8(&chunk).unwrap()),
                    _ => return None,
                }
            }
        },
    );
    Subscriber {
        frames: Box::pin(frames),
        what: "sse",
    }
}

impl Subscriber {
    /// The next frame within `within`; `None` on timeout or end of stream.
    pub async fn next(&mut self, within: Duration) -> Option<Value> {
        timeout(within, self.frames.next()).await.ok().flatten()
    }

    /// Reads frames until one satisfies `wanted`; returns it and the frames before it.
    pub async fn expect(
        &mut self,
        what: &str,
        wanted: impl Fn(&Value) -> bool,
    ) -> (Value, Vec<Value>) {
        let deadline = Instant::now() + WAIT;
        let mut before = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await {
                Some(frame) if wanted(&frame) => return (frame, before),
                Some(frame) => before.push(frame),
                None => panic!("{}: no {what} within {WAIT:?}; got {before:?}", self.what),
            }
        }
    }

    /// Waits for the `subscribed` frame.
    pub async fn subscribed(&mut self) {
        self.expect("subscribed frame", |f| f["type"] == "subscribed")
            .await;
    }

    /// Waits for the message frame with `payload`.
    pub async fn expect_payload(&mut self, payload: &str) -> Value {
        self.expect(&format!("message {payload:?}"), |f| {
            f["type"] == "message" && f["payload"] == payload
        })
        .await
        .0
    }
}
