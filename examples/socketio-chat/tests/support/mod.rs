//! What the socketio-chat integration tests share: real socket.io clients (the official
//! JavaScript `socket.io-client` run by Node, installed by `scripts/socketio-client.sh`), chat
//! server processes, and the scenarios every backend runs.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

pub use pubsub_test_support::process::{free_port, http_get, unique};
use pubsub_test_support::process::{Logging, Server};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use tokio::time::{sleep, timeout, Instant};

/// The room of the scenarios: dots, a wildcard and a space stay one room on every backend.
pub const ROOM: &str = "room.* >1";

/// Every wait of these tests is bounded by this (or a shorter) deadline.
pub const WAIT: Duration = Duration::from_secs(20);

/// Presence settings of the test nodes: heartbeats every 200 ms, expiry after 1 s.
pub const HEARTBEAT_MS: u64 = 200;
pub const EXPIRY_MS: u64 = 1000;
/// Cross-node requests would wait this long for a node that does not answer: far longer than
/// the expiry, so a test can tell "stopped waiting because the node expired" from "timed out".
pub const REQUEST_TIMEOUT_MS: u64 = 15_000;

fn js_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/js")
}

/// Runs `scripts/socketio-client.sh` (idempotent, locked): installs socket.io-client if needed.
fn install_client() {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/socketio-client.sh");
    let status = std::process::Command::new("bash")
        .arg(script)
        .status()
        .expect("bash runs");
    assert!(
        status.success(),
        "scripts/socketio-client.sh failed: the socket.io client is needed"
    );
}

/// `/healthz` of a chat node as JSON, if it answered 200.
pub async fn health(addr: SocketAddr) -> Option<Value> {
    match http_get(addr, "/healthz").await {
        Some((200, body)) => {
            // The body may be chunked; the JSON object is the part between the braces.
            let start = body.find('{')?;
            let end = body.rfind('}')?;
            serde_json::from_str(&body[start..=end]).ok()
        }
        _ => None,
    }
}

/// Waits until `/healthz` of `addr` says the connection is up and `nodes` nodes are alive.
pub async fn wait_nodes(addr: SocketAddr, nodes: u64, within: Duration) -> Duration {
    let started = Instant::now();
    let deadline = started + within;
    loop {
        let h = health(addr).await;
        if h.as_ref().and_then(|h| h["nodes"].as_u64()) == Some(nodes) {
            return started.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "{addr} did not see {nodes} nodes within {within:?} (last /healthz: {h:?})"
        );
        sleep(Duration::from_millis(20)).await;
    }
}

/// The official socket.io client in one Node process, driving any number of clients.
pub struct Clients {
    child: Child,
    stdin: ChildStdin,
    events: mpsc::UnboundedReceiver<Value>,
    /// Events read but not yet matched.
    pending: Vec<Value>,
    next_req: u64,
}

impl Clients {
    pub async fn start() -> Clients {
        install_client();
        let mut child = Command::new("node")
            .arg(js_dir().join("client.mjs"))
            .current_dir(js_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs (scripts/socketio-client.sh installs it)");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, events) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                match serde_json::from_str::<Value>(&line) {
                    Ok(v) => {
                        if tx.send(v).is_err() {
                            return;
                        }
                    }
                    Err(e) => eprintln!("client.mjs printed non-JSON {line:?}: {e}"),
                }
            }
        });
        let mut clients = Clients {
            child,
            stdin,
            events,
            pending: Vec::new(),
            next_req: 0,
        };
        clients.wait_for("ready", |e| e["event"] == "ready").await;
        clients
    }

    async fn send(&mut self, command: Value) {
        let mut line = command.to_string();
        line.push('\n');
        self.stdin.write_all(line.as_bytes()).await.unwrap();
        self.stdin.flush().await.unwrap();
    }

    /// Takes the first event (already read or coming within `within`) that satisfies `wanted`.
    pub async fn take(
        &mut self,
        within: Duration,
        wanted: impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        if let Some(i) = self.pending.iter().position(&wanted) {
            return Some(self.pending.remove(i));
        }
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match timeout(left, self.events.recv()).await {
                Ok(Some(e)) if wanted(&e) => return Some(e),
                Ok(Some(e)) => self.pending.push(e),
                Ok(None) => panic!("client.mjs exited; events so far: {:?}", self.pending),
                Err(_) => return None,
            }
        }
    }

    pub async fn wait_for(&mut self, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        match self.take(WAIT, wanted).await {
            Some(e) => e,
            None => panic!("no {what} within {WAIT:?}; events: {:?}", self.pending),
        }
    }

    /// Connects client `name` to the chat at `addr`; a server `poll` is answered with `answer`.
    /// Returns its socket id.
    pub async fn connect(&mut self, name: &str, addr: SocketAddr, answer: Value) -> String {
        self.send(
            json!({"op":"connect","client":name,"url":format!("http://{addr}"),"answer":answer}),
        )
        .await;
        let e = self
            .wait_for(&format!("{name} connected"), |e| {
                e["client"] == name && (e["event"] == "connected" || e["event"] == "connect_error")
            })
            .await;
        assert_eq!(e["event"], "connected", "{name}: {e}");
        e["id"].as_str().unwrap().to_string()
    }

    /// Emits `event` with `data` from `name` and returns the request number for [`Clients::ack`].
    pub async fn emit(&mut self, name: &str, event: &str, data: Value) -> u64 {
        self.next_req += 1;
        let req = self.next_req;
        self.send(json!({"op":"emit","client":name,"req":req,"event":event,"data":data}))
            .await;
        req
    }

    /// The server's acknowledgement of request `req`, waiting at most `within`.
    pub async fn ack_within(&mut self, req: u64, within: Duration) -> Option<Value> {
        let e = self
            .take(within, |e| e["event"] == "ack" && e["req"] == req)
            .await?;
        assert!(e.get("error").is_none(), "request {req} failed: {e}");
        Some(e["data"].clone())
    }

    pub async fn ack(&mut self, req: u64) -> Value {
        match self.ack_within(req, WAIT).await {
            Some(v) => v,
            None => panic!(
                "no ack for request {req} within {WAIT:?}; events: {:?}",
                self.pending
            ),
        }
    }

    /// Emits and waits for the acknowledgement.
    pub async fn call(&mut self, name: &str, event: &str, data: Value) -> Value {
        let req = self.emit(name, event, data).await;
        self.ack(req).await
    }

    /// The next server event `event` received by `name`.
    pub async fn received(&mut self, name: &str, event: &str) -> Value {
        let e = self
            .wait_for(&format!("{event} on {name}"), |e| {
                e["client"] == name && e["event"] == event
            })
            .await;
        e["data"].clone()
    }

    /// Whether `name` received `event` within `within` (consumes it).
    pub async fn got_within(&mut self, name: &str, event: &str, within: Duration) -> Option<Value> {
        self.take(within, |e| e["client"] == name && e["event"] == event)
            .await
            .map(|e| e["data"].clone())
    }

    pub async fn close(mut self) {
        drop(self.stdin);
        let _ = timeout(Duration::from_secs(5), self.child.wait()).await;
    }
}

/// How the chat processes log: `SIO_TEST_LOG` is their log filter (and shows their logs).
const LOGGING: Logging = Logging {
    variable: "SIO_TEST_LOG",
    default_filter: "info",
};

/// One `socketio-chat` process; killed when dropped. Its stderr lines are kept.
pub struct Node {
    pub addr: SocketAddr,
    pub name: String,
    server: Server,
}

impl Node {
    pub async fn start(name: &str, url: &str, root: &str) -> Node {
        let addr = free_port().await;
        let mut command = Command::new(env!("CARGO_BIN_EXE_socketio-chat"));
        command
            .args([
                "--url",
                url,
                "--listen",
                &addr.to_string(),
                "--name",
                name,
                "--root",
                root,
            ])
            .args(["--heartbeat-ms", &HEARTBEAT_MS.to_string()])
            .args(["--expiry-ms", &EXPIRY_MS.to_string()])
            .args(["--request-timeout-ms", &REQUEST_TIMEOUT_MS.to_string()]);
        let server = Server::start(name, command, addr, LOGGING, WAIT).await;
        Node {
            addr,
            name: name.to_string(),
            server,
        }
    }

    pub fn log(&self) -> Vec<String> {
        self.server.log()
    }

    /// Waits until a stderr line contains `text`.
    pub async fn wait_log(&self, text: &str, within: Duration) {
        self.server.wait_log(text, within).await;
    }

    /// SIGKILL: a crash, nothing announced.
    pub async fn kill(self) {
        self.server.kill().await;
    }

    /// SIGTERM: the node announces its departure and exits 0.
    pub async fn terminate(self) {
        self.server.terminate(WAIT).await;
    }
}

/// The ids of a `who` answer, sorted.
pub fn ids(who: &Value) -> Vec<String> {
    let mut ids: Vec<String> = who["sockets"]
        .as_array()
        .unwrap_or_else(|| panic!("not a who answer: {who}"))
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

/// Sorted answers of a `poll`.
pub fn answers(poll: &Value) -> Vec<String> {
    let mut answers: Vec<String> = poll["answers"]
        .as_array()
        .unwrap_or_else(|| panic!("not a poll answer: {poll}"))
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    answers.sort();
    answers
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// The cross-node scenario, on two nodes already serving at `a` and `b` and seeing each other:
/// a room broadcast from A reaches B's clients (and only those in the room); `fetch_sockets`
/// and `emit_with_ack` collect both nodes' sockets and answers. Leaves the clients connected:
/// returns them with `a1`'s id.
pub async fn cross_node(a: SocketAddr, b: SocketAddr) -> (Clients, String) {
    let mut c = Clients::start().await;
    let a1 = c.connect("a1", a, json!("answer-a1")).await;
    let b1 = c.connect("b1", b, json!("answer-b1")).await;
    let b2 = c.connect("b2", b, json!("answer-b2")).await;
    let room = ROOM;
    assert_eq!(c.call("a1", "join", json!(room)).await, json!(room));
    assert_eq!(c.call("b1", "join", json!(room)).await, json!(room));
    assert_eq!(
        c.call("b2", "join", json!("elsewhere")).await,
        json!("elsewhere")
    );

    // A room broadcast from node A reaches the room's client on node B.
    let sent = c
        .call(
            "a1",
            "message",
            json!({"room": room, "text": "hello from A"}),
        )
        .await;
    assert_eq!(sent, json!("sent"));
    let got = c.received("b1", "message").await;
    assert_eq!(got["text"], "hello from A");
    assert_eq!(got["from"], a1.as_str());
    assert_eq!(got["node"], "A");
    assert_eq!(c.received("a1", "message").await["text"], "hello from A");
    // And from B back to A.
    c.call("b1", "message", json!({"room": room, "text": "hi from B"}))
        .await;
    assert_eq!(c.received("a1", "message").await["text"], "hi from B");
    assert_eq!(c.received("b1", "message").await["text"], "hi from B");
    assert_eq!(
        c.got_within("b2", "message", Duration::from_millis(300))
            .await,
        None,
        "a client outside the room got the room's message"
    );

    // fetch_sockets across nodes.
    let who = c.call("a1", "who", json!(room)).await;
    assert_eq!(ids(&who), sorted(vec![a1.clone(), b1.clone()]));
    let servers: std::collections::BTreeSet<&str> = who["sockets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["server"].as_str().unwrap())
        .collect();
    assert_eq!(servers.len(), 2, "two servers hold the room: {who}");
    let everyone = c.call("b2", "who", json!("elsewhere")).await;
    assert_eq!(ids(&everyone), vec![b2.clone()]);

    // Acknowledgements across nodes collect every node's answers.
    let started = Instant::now();
    let poll = c
        .call("a1", "poll", json!({"room": room, "question": "ready?"}))
        .await;
    assert_eq!(answers(&poll), ["answer-a1", "answer-b1"], "{poll}");
    assert_eq!(poll["errors"], 0);
    assert!(
        started.elapsed() < Duration::from_millis(REQUEST_TIMEOUT_MS / 2),
        "the poll waited {:?}: it should end with the last answer, not a timeout",
        started.elapsed()
    );
    assert_eq!(c.received("b1", "poll").await, json!("ready?"));
    // From B, the same (the answers come back across nodes the other way).
    let poll = c
        .call("b2", "poll", json!({"room": room, "question": "again?"}))
        .await;
    assert_eq!(answers(&poll), ["answer-a1", "answer-b1"], "{poll}");
    (c, a1)
}

/// After node B is gone (crashed or left), node A stops waiting for it: `who` and `poll` answer
/// with A's sockets alone, well before the request timeout.
pub async fn requests_stop_waiting(c: &mut Clients, a1: &str, room: &str) {
    let started = Instant::now();
    let who = c.call("a1", "who", json!(room)).await;
    assert_eq!(ids(&who), vec![a1.to_string()]);
    let poll = c
        .call(
            "a1",
            "poll",
            json!({"room": room, "question": "still there?"}),
        )
        .await;
    assert_eq!(answers(&poll), ["answer-a1"]);
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(REQUEST_TIMEOUT_MS / 3),
        "requests after the node left took {took:?} (the request timeout is {REQUEST_TIMEOUT_MS} ms)"
    );
}
