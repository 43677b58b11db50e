//! Two `chat` processes on one broker: clients on either node talk to each other; hostile room
//! names stay in their room; a cut broker link gives a gap frame and a failing `/healthz`.
//!
//! Needs Redis and NATS (`PUBSUB_REDIS_URL`, `PUBSUB_NATS_URL`; `scripts/brokers.sh` starts
//! them). Set `CHAT_TEST_LOG` to a log filter (`info`, `pubsub_core=debug`) to see the servers'
//! logs.

use std::net::SocketAddr;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use pubsub_test_support::broker;
use pubsub_test_support::process::{self, free_port, unique, Logging, Server};
use pubsub_test_support::proxy::TcpProxy;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::process::Command;
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Every wait of these tests is bounded by this (or a shorter) deadline.
const WAIT: Duration = Duration::from_secs(15);

/// Polls `/healthz` until it answers `status`.
async fn wait_health(addr: SocketAddr, status: u16, what: &str) -> String {
    process::wait_health(addr, status, what, WAIT).await
}

/// How the chat processes log: `CHAT_TEST_LOG` is their log filter (and shows their logs).
const LOGGING: Logging = Logging {
    variable: "CHAT_TEST_LOG",
    default_filter: "warn",
};

/// One `chat` process; killed when dropped.
struct Node {
    addr: SocketAddr,
    server: Server,
}

impl Node {
    async fn start(url: &str) -> Node {
        let addr = free_port().await;
        let mut command = Command::new(env!("CARGO_BIN_EXE_chat"));
        command.args(["--url", url, "--listen", &addr.to_string()]);
        let server = Server::start("chat", command, addr, LOGGING, WAIT).await;
        Node { addr, server }
    }

    async fn client(&self, user: &str) -> Client {
        let url = format!("ws://{}/ws?user={user}", self.addr);
        let (ws, _) = timeout(WAIT, tokio_tungstenite::connect_async(url))
            .await
            .expect("websocket connect timed out")
            .unwrap();
        Client { ws, last: None }
    }

    /// A client resuming after `position`.
    async fn resume(&self, user: &str, position: &str) -> Client {
        let url = format!("ws://{}/ws?user={user}&after={position}", self.addr);
        let (ws, _) = timeout(WAIT, tokio_tungstenite::connect_async(url))
            .await
            .expect("websocket connect timed out")
            .unwrap();
        Client { ws, last: None }
    }

    /// SIGTERM, then the process must close its sockets and exit 0.
    async fn terminate(self, clients: Vec<Client>) {
        self.server.sigterm().await;
        for mut client in clients {
            client.expect_closed().await;
        }
        self.server.exits_cleanly(WAIT).await;
    }
}

struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The position of the last message frame that had one (frames are compared without it).
    last: Option<String>,
}

impl Client {
    async fn send(&mut self, frame: Value) {
        self.ws
            .send(WsMessage::Text(frame.to_string().into()))
            .await
            .unwrap();
    }

    /// The next JSON frame, or `None` if none came within `within`.
    async fn next(&mut self, within: Duration) -> Option<Value> {
        let deadline = Instant::now() + within;
        loop {
            let frame = timeout(
                deadline.saturating_duration_since(Instant::now()),
                self.ws.next(),
            )
            .await
            .ok()?;
            match frame {
                Some(Ok(WsMessage::Text(text))) => {
                    let mut frame: Value = serde_json::from_str(text.as_str()).unwrap();
                    if let Some(position) = frame.as_object_mut().and_then(|f| f.remove("position"))
                    {
                        self.last =
                            Some(position.as_str().expect("a position is text").to_string());
                    }
                    return Some(frame);
                }
                Some(Ok(WsMessage::Close(_))) | None => panic!("the server closed the socket"),
                Some(Ok(_)) => continue,
                Some(Err(e)) => panic!("websocket error: {e}"),
            }
        }
    }

    /// Reads frames until one satisfies `wanted`; returns it and the frames before it.
    async fn expect(&mut self, what: &str, wanted: impl Fn(&Value) -> bool) -> (Value, Vec<Value>) {
        let deadline = Instant::now() + WAIT;
        let mut before = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await {
                Some(frame) if wanted(&frame) => return (frame, before),
                Some(frame) => before.push(frame),
                None => panic!("no {what} within {WAIT:?}; got {before:?}"),
            }
        }
    }

    async fn join(&mut self, room: &str) {
        self.send(json!({ "join": room })).await;
        let (_, before) = self
            .expect("join ack", |f| f == &json!({ "joined": room }))
            .await;
        assert!(
            before.iter().all(|f| f.get("error").is_none()),
            "{before:?}"
        );
    }

    async fn say(&mut self, room: &str, text: &str) {
        self.send(json!({ "room": room, "text": text })).await;
    }

    /// Waits for `text` from `user` in `room`; returns the frames before it.
    async fn expect_message(&mut self, room: &str, user: &str, text: &str) -> Vec<Value> {
        let wanted = json!({ "room": room, "user": user, "text": text });
        self.expect(&format!("message {wanted}"), |f| f == &wanted)
            .await
            .1
    }

    /// Waits for every one of `wanted`, in any order (a broker need not keep the order of
    /// messages on different topics); returns the other frames read meanwhile and during
    /// `linger` after.
    async fn expect_messages(&mut self, wanted: &[Value], linger: Duration) -> Vec<Value> {
        let deadline = Instant::now() + WAIT;
        let mut missing = wanted.to_vec();
        let mut others = Vec::new();
        while !missing.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await {
                Some(frame) => match missing.iter().position(|w| w == &frame) {
                    Some(i) => {
                        missing.remove(i);
                    }
                    None => others.push(frame),
                },
                None => panic!("still missing {missing:?} after {WAIT:?}; got {others:?}"),
            }
        }
        while let Some(frame) = self.next(linger).await {
            others.push(frame);
        }
        others
    }

    async fn expect_closed(&mut self) {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match timeout(left, self.ws.next()).await {
                Err(_) => panic!("socket still open {WAIT:?} after SIGTERM"),
                Ok(Some(Ok(WsMessage::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => return,
                Ok(Some(Ok(_))) => continue,
            }
        }
    }
}

/// Two nodes on `url`: messages cross in both directions, hostile names stay in their room,
/// and SIGTERM shuts a node down cleanly.
async fn two_nodes_talk(url: &str) {
    let a = Node::start(url).await;
    let b = Node::start(url).await;
    let mut alice = a.client("alice").await;
    let mut bob = b.client("bob").await;

    let room = unique("lobby");
    alice.join(&room).await;
    bob.join(&room).await;
    alice.say(&room, "hello from A").await;
    bob.expect_message(&room, "alice", "hello from A").await;
    bob.say(&room, "hello from B").await;
    alice.expect_message(&room, "bob", "hello from B").await;

    // `x.*` would be a wildcard over `x.b` if room names were concatenated into topics.
    let base = unique("x");
    let star = format!("{base}.*");
    let dotted = format!("{base}.b");
    let spaced = format!("{base} with spaces");
    bob.join(&star).await;
    bob.join(&spaced).await;
    alice.join(&dotted).await;
    alice.join(&star).await;
    alice.say(&dotted, "only for the dotted room").await;
    alice.say(&star, "for the star room").await;
    alice.say(&spaced, "for the spaced room").await;
    let said = |room: &str, text: &str| json!({ "room": room, "user": "alice", "text": text });
    let linger = Duration::from_millis(300);
    let seen = bob
        .expect_messages(
            &[
                said(&star, "for the star room"),
                said(&spaced, "for the spaced room"),
            ],
            linger,
        )
        .await;
    assert!(
        seen.iter().all(|f| f["text"] != "only for the dotted room"),
        "a message leaked into another room: {seen:?}"
    );
    // Alice hears the rooms she is in, under their own names.
    alice
        .expect_messages(
            &[
                said(&dotted, "only for the dotted room"),
                said(&star, "for the star room"),
            ],
            Duration::ZERO,
        )
        .await;

    // Leaving stops delivery.
    bob.send(json!({ "leave": room })).await;
    bob.expect("leave ack", |f| f == &json!({ "left": room }))
        .await;
    alice.say(&room, "bob left").await;
    alice.expect_message(&room, "alice", "bob left").await;
    alice.say(&spaced, "after").await;
    let seen = bob.expect_messages(&[said(&spaced, "after")], linger).await;
    assert!(seen.iter().all(|f| f["text"] != "bob left"), "{seen:?}");

    b.terminate(vec![bob]).await;
    a.terminate(vec![alice]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_redis() {
    two_nodes_talk(&broker::redis_url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_nats() {
    two_nodes_talk(&broker::nats_url()).await;
}

/// Node A reaches Redis through a proxy that is cut and restored: `/healthz` fails while the
/// link is down; what was said meanwhile reaches A's client from the chat's history (on a
/// backend that keeps it; otherwise a gap frame says it may be lost).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_is_recovered_or_gives_a_gap_and_fails_health() {
    let proxy = TcpProxy::start(&broker::redis_addr()).await.unwrap();
    let a = Node::start(&format!(
        "redis://{}?publish_timeout=500ms&command_timeout=2s&backoff_max=200ms",
        proxy.local_addr()
    ))
    .await;
    let b = Node::start(&broker::redis_url()).await;
    let mut alice = a.client("alice").await;
    let mut bob = b.client("bob").await;
    let room = unique("outage");
    alice.join(&room).await;
    bob.join(&room).await;
    bob.say(&room, "before").await;
    alice.expect_message(&room, "bob", "before").await;

    let history = alice.last.is_some();

    proxy.cut();
    let body = wait_health(a.addr, 503, "while cut").await;
    let state: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(state["state"], "down", "{body}");
    bob.say(&room, "during").await;
    bob.expect_message(&room, "bob", "during").await;
    proxy.restore();
    let body = wait_health(a.addr, 200, "after restore").await;
    assert_eq!(body, r#"{"state":"up"}"#);

    if history {
        let before = alice.expect_message(&room, "bob", "during").await;
        assert!(before.iter().all(|f| f.get("gap").is_none()), "{before:?}");
    } else {
        let (gap, _) = alice.expect("gap frame", |f| f.get("gap").is_some()).await;
        assert!(gap["gap"]["outage_ms"].is_u64(), "{gap}");
    }

    // Up means every subscription is restored: what is said now arrives.
    bob.say(&room, "after").await;
    alice.expect_message(&room, "bob", "after").await;
}

/// A client that lost its connection comes back with the position of the last message it saw
/// and gets exactly what was said in its room meanwhile, in order, then the live messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_resumes_its_room_after_a_reconnect() {
    let node = Node::start("memory://").await;
    let mut alice = node.client("alice").await;
    let mut bob = node.client("bob").await;
    let room = unique("resume");
    alice.join(&room).await;
    bob.join(&room).await;
    bob.say(&room, "one").await;
    alice.expect_message(&room, "bob", "one").await;
    let last = alice
        .last
        .clone()
        .expect("message frames carry positions on memory://");
    drop(alice); // the connection is lost

    let missed: Vec<String> = (0..20).map(|i| format!("missed {i}")).collect();
    for text in &missed {
        bob.say(&room, text).await;
    }
    bob.expect_message(&room, "bob", "missed 19").await;

    let mut alice = node.resume("alice", &last).await;
    alice.join(&room).await;
    for text in &missed {
        let before = alice.expect_message(&room, "bob", text).await;
        assert!(before.is_empty(), "before {text}: {before:?}");
    }
    bob.say(&room, "live").await;
    let before = alice.expect_message(&room, "bob", "live").await;
    assert!(before.is_empty(), "{before:?}");

    // A token that is not a position is refused before the upgrade.
    let refused = tokio_tungstenite::connect_async(format!(
        "ws://{}/ws?user=eve&after=not-a-position",
        node.addr
    ))
    .await;
    assert!(refused.is_err(), "a bad `after` was accepted");
    node.terminate(vec![alice, bob]).await;
}
