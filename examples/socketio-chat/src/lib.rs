//! A socket.io chat with rooms (socketioxide on axum) that scales out over any pubsub backend:
//! run several processes on one broker URL and clients on any of them share rooms.
//!
//! The socket.io side (namespace `/`, JSON payloads):
//!
//! | client emits | with ack? | the server |
//! |---|---|---|
//! | `join` `"room"` | yes | joins the room (on every node's view), acks `"room"` |
//! | `leave` `"room"` | yes | leaves it, acks `"room"` |
//! | `message` `{"room","text"}` | optional | sends `message` `{"room","text","from","node"}` to everyone in the room, on every node; acks `"sent"` or `{"error"}` |
//! | `who` `"room"` | yes | `fetch_sockets` across nodes: acks `{"sockets":[{"id","server"}]}` |
//! | `poll` `{"room","question"}` | yes | `emit_with_ack("poll", question)` to the room across nodes; acks `{"answers":[…],"errors":n}` with every client's answer |
//! | `nodes` | yes | the alive nodes this node sees (presence): `{"nodes":[ids]}` |
//!
//! HTTP: `GET /healthz` answers 200 `{"node","nodes","connection":"up"}` while the broker
//! connection is up, 503 otherwise.
#![deny(missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use futures::StreamExt;
use pubsub::PubSub;
use pubsub_socketioxide::presence::Presence;
use pubsub_socketioxide::{AdapterConfig, DriverConfig, PubSubAdapter, PubSubDriver};
use serde::Deserialize;
use serde_json::{json, Value};
use socketioxide::adapter::{Adapter, Emitter};
use socketioxide::extract::{AckSender, Data, SocketRef};
use socketioxide::SocketIo;

/// The adapter type of this chat's socket.io server.
pub type ChatAdapter = PubSubAdapter<Emitter>;

/// Settings of one chat node.
#[derive(Debug, Clone)]
pub struct ChatOptions {
    /// This node's name (in messages and presence).
    pub node: String,
    /// The root topic every node of the cluster shares.
    pub root: String,
    /// Presence heartbeat interval.
    pub heartbeat: Duration,
    /// Presence expiry: after this, a silent node is no longer waited for.
    pub expiry: Duration,
    /// How long a cross-node request (acks, `fetch_sockets`) waits for answers.
    pub request_timeout: Duration,
    /// How long clients have to acknowledge a `poll`.
    pub ack_timeout: Duration,
}

impl Default for ChatOptions {
    fn default() -> Self {
        ChatOptions {
            node: format!("node-{}", std::process::id()),
            root: "socketio-chat".into(),
            heartbeat: Duration::from_secs(1),
            expiry: Duration::from_secs(3),
            request_timeout: Duration::from_secs(5),
            ack_timeout: Duration::from_secs(5),
        }
    }
}

/// A running chat node: the axum router to serve, the socket.io handle and the driver.
#[derive(Debug, Clone)]
pub struct ChatNode {
    /// Serve this (it carries the socket.io layer and `/healthz`).
    pub router: Router,
    /// The socket.io server.
    pub io: SocketIo<ChatAdapter>,
    /// The pubsub driver (presence, `leave`).
    pub driver: PubSubDriver,
}

impl ChatNode {
    /// Announces the departure to the other nodes and closes the socket.io server.
    pub async fn shutdown(&self) {
        if let Err(error) = self.driver.leave().await {
            tracing::warn!(%error, "could not announce the departure");
        }
        self.io.close().await;
    }
}

/// Builds a chat node on a pubsub handle.
pub async fn start(
    ps: Arc<dyn PubSub>,
    options: ChatOptions,
) -> Result<ChatNode, Box<dyn std::error::Error + Send + Sync>> {
    let config = DriverConfig::new(options.root.parse()?)?
        .with_node_id(options.node.clone())
        .with_heartbeat(options.heartbeat, options.expiry);
    let driver = PubSubDriver::start(ps.clone(), config).await?;
    let adapter =
        driver.adapter(AdapterConfig::default().with_request_timeout(options.request_timeout));
    let (layer, io) = SocketIo::builder()
        .ack_timeout(options.ack_timeout)
        .with_adapter::<ChatAdapter>(adapter)
        .build_layer();
    let ctx = Arc::new(Ctx {
        node: options.node.clone(),
        presence: driver.presence().clone(),
    });
    io.ns("/", move |socket: SocketRef<ChatAdapter>| {
        on_connect(socket, ctx.clone())
    })
    .await
    .map_err(|e| format!("socket.io namespace: {e}"))?;
    let router = Router::new()
        .route("/healthz", get(healthz))
        .with_state(driver.clone())
        .layer(layer);
    Ok(ChatNode { router, io, driver })
}

async fn healthz(State(driver): State<PubSubDriver>) -> (StatusCode, Json<Value>) {
    let up = driver.pubsub().connection_state().is_up();
    let body = json!({
        "node": driver.presence().node_id(),
        "nodes": driver.presence().alive().len(),
        "connection": if up { "up" } else { "down" },
    });
    let status = if up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

#[derive(Debug, Deserialize)]
struct Said {
    room: String,
    text: String,
}

#[derive(Debug, Deserialize)]
struct Poll {
    room: String,
    question: Value,
}

/// What the socket handlers need from the node.
struct Ctx {
    node: String,
    presence: Presence,
}

async fn on_connect<A: Adapter>(socket: SocketRef<A>, ctx: Arc<Ctx>) {
    tracing::debug!(sid = %socket.id, "client connected");
    socket.on(
        "join",
        async |socket: SocketRef<A>, Data::<String>(room), ack: AckSender<A>| {
            socket.join(room.clone());
            let _ = ack.send(&room);
        },
    );
    socket.on(
        "leave",
        async |socket: SocketRef<A>, Data::<String>(room), ack: AckSender<A>| {
            socket.leave(room.clone());
            let _ = ack.send(&room);
        },
    );
    let from = ctx.clone();
    socket.on(
        "message",
        async move |socket: SocketRef<A>, Data::<Said>(said), ack: AckSender<A>| {
            let out = json!({
                "room": said.room,
                "text": said.text,
                "from": socket.id.to_string(),
                "node": from.node,
            });
            let answer = match socket.within(said.room).emit("message", &out).await {
                Ok(()) => json!("sent"),
                Err(error) => {
                    tracing::warn!(%error, "broadcast failed");
                    json!({ "error": error.to_string() })
                }
            };
            let _ = ack.send(&answer);
        },
    );
    socket.on("who", async |socket: SocketRef<A>, Data::<String>(room), ack: AckSender<A>| {
        let answer = match socket.within(room).fetch_sockets().await {
            Ok(sockets) => {
                let list: Vec<Value> = sockets
                    .iter()
                    .map(|s| {
                        json!({ "id": s.data().id.to_string(), "server": s.data().server_id.to_string() })
                    })
                    .collect();
                json!({ "sockets": list })
            }
            Err(error) => json!({ "error": error.to_string() }),
        };
        let _ = ack.send(&answer);
    });
    socket.on(
        "poll",
        async |socket: SocketRef<A>, Data::<Poll>(poll), ack: AckSender<A>| {
            let answer = match socket
                .within(poll.room)
                .emit_with_ack::<_, Value>("poll", &poll.question)
                .await
            {
                Ok(stream) => {
                    let (answers, errors) = stream
                        .fold(
                            (Vec::new(), 0usize),
                            async |(mut answers, errors), (_, reply)| match reply {
                                Ok(value) => {
                                    answers.push(value);
                                    (answers, errors)
                                }
                                Err(_) => (answers, errors + 1),
                            },
                        )
                        .await;
                    json!({ "answers": answers, "errors": errors })
                }
                Err(error) => json!({ "error": error.to_string() }),
            };
            let _ = ack.send(&answer);
        },
    );
    socket.on("nodes", async move |ack: AckSender<A>| {
        let nodes: Vec<String> = ctx.presence.alive().into_iter().map(|n| n.id).collect();
        let _ = ack.send(&json!({ "node": ctx.node, "nodes": nodes }));
    });
}
