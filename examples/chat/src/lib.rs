//! A multi-room WebSocket chat on axum that scales out over any `pubsub` backend.
//!
//! Run several `chat` processes against the same broker URL (`redis://…`, `nats://…`) and a
//! message sent to one reaches every client in that room, whichever process it is connected
//! to; with `memory://` it is a single-process chat.
//!
//! # Protocol
//!
//! `GET /ws?user=NAME` upgrades to a WebSocket. The client sends JSON text frames:
//!
//! | client sends | meaning | server answers |
//! |---|---|---|
//! | `{"join":"room"}` | listen to a room | `{"joined":"room"}` once the subscription is live |
//! | `{"leave":"room"}` | stop listening | `{"left":"room"}` |
//! | `{"room":"r","text":"hi"}` | say something in a room | nothing (or `{"error":…}`) |
//!
//! and receives:
//!
//! - `{"room":"r","user":"alice","text":"hi","position":"ps1-…"}`: a message of a joined
//!   room, with its position in the chat's history (on backends with streams);
//! - `{"gap":{"dropped":3}}`: this connection's buffer overflowed and exactly 3 messages were
//!   dropped, or `{"gap":{"outage_ms":1200}}`: the server lost its broker for that long and
//!   messages may be missing. Either way the client should resync (reload the history of its
//!   rooms from wherever the application keeps it);
//!   `{"gap":{"history":true,"missed":N,"reset":false}}`: messages older than the history
//!   keeps were asked for;
//! - `{"error":"…"}`: a frame the server could not act on.
//!
//! # Resuming after a reconnect
//!
//! The chat keeps a history of every room ([`history`]: a stream under `chat.*.msg`) on
//! backends with streams. A client that lost its connection reconnects with the position of
//! the last message it saw, `GET /ws?user=NAME&after=POSITION`, and joins its rooms again: it
//! receives every message of those rooms it missed, in order, then the live ones, with no
//! duplicate. A connection also re-subscribes from its last position whenever it joins or
//! leaves a room, so the rooms it keeps miss nothing and repeat nothing. A server whose broker
//! was cut recovers its clients' messages from the history the same way. On a backend without
//! streams the chat runs without history (and says so in its log).
//!
//! A connection may be in at most [`MAX_ROOMS`] rooms and send frames of at most
//! [`MAX_FRAME_BYTES`]; a user name is 1 to [`MAX_USER_CHARS`] printable characters.
//!
//! `GET /healthz` answers 200 `{"state":"up"}` while the pub/sub handle is connected, else 503
//! with the [`ConnectionState`] (`connecting`, `down` with `down_ms`, `closed`): a load
//! balancer stops sending clients to a node that cannot reach the broker.
//!
//! # How it uses the library
//!
//! - A room name comes from users, so it becomes one topic token through [`Token::escape`]:
//!   room `a.*` is topic `chat.a%2E%2A.msg`, never a wildcard or an extra level
//!   ([`room_topic`]).
//! - Each connection holds one [`Subscription`](pubsub::Subscription) over all of its rooms
//!   ([`Hub::subscribe_all`]), re-created from its last position when it joins or leaves a
//!   room, and reads it as
//!   [`deliveries`](pubsub::Subscription::deliveries), so a lost message becomes a
//!   [`Gap`] frame instead of silence.
//! - Shutdown closes every WebSocket, then the [`Hub`].

#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::collections::BTreeSet;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::time::SystemTime;

use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::StreamExt;
use pubsub::{
    ConnectionState, Deliveries, Delivery, ErrorKind, Gap, Hub, Message, Pattern, Position,
    StartAt, StreamConfig, SubscribeOptions, Token, Topic,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The longest user name accepted, in characters.
pub const MAX_USER_CHARS: usize = 64;

/// The most rooms one connection may be in (each join re-creates its subscription over all).
pub const MAX_ROOMS: usize = 100;

/// The largest WebSocket frame or message a client may send, in bytes.
pub const MAX_FRAME_BYTES: usize = 16 * 1024;

/// The chat's history: every room's messages (`chat.*.msg`), the last 10 000 of the last hour.
pub fn history() -> pubsub::Result<StreamConfig> {
    Ok(StreamConfig::new("chat.*.msg".parse()?)
        .with_max_len(10_000)
        .with_max_age(std::time::Duration::from_secs(3600)))
}

/// The topic of a room's messages: `chat.<room>.msg`, the room name escaped into one token.
///
/// Fails only when the escaped name makes the topic longer than 255 bytes.
///
/// ```
/// let topic = pubsub_chat::room_topic("a.* b").unwrap();
/// assert_eq!(topic.as_str(), "chat.a%2E%2A%20b.msg");
/// ```
pub fn room_topic(room: &str) -> pubsub::Result<Topic> {
    Topic::from_tokens([Token::new("chat")?, Token::escape(room), Token::new("msg")?])
}

/// The room a topic of [`room_topic`] belongs to (`None` for any other topic).
pub fn topic_room(topic: &Topic) -> Option<String> {
    let mut tokens = topic.tokens();
    match (tokens.next(), tokens.next(), tokens.next(), tokens.next()) {
        (Some("chat"), Some(room), Some("msg"), None) => {
            Token::new(room).ok().map(|t| t.unescape())
        }
        _ => None,
    }
}

/// A frame a client sends.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum ClientFrame {
    /// `{"join":"room"}`
    Join {
        /// The room.
        join: String,
    },
    /// `{"leave":"room"}`
    Leave {
        /// The room.
        leave: String,
    },
    /// `{"room":"r","text":"hi"}`
    Say {
        /// The room.
        room: String,
        /// What to say.
        text: String,
    },
}

/// A chat message: the payload published to a room's topic, and the frame clients receive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// The room it was said in.
    pub room: String,
    /// Who said it.
    pub user: String,
    /// What was said.
    pub text: String,
}

/// The JSON frame that tells a client messages were lost (see the crate docs).
pub fn gap_frame(gap: &Gap) -> serde_json::Value {
    match gap {
        Gap::Dropped { count } => json!({ "gap": { "dropped": count } }),
        Gap::Outage { since, until } => {
            let ms = until.duration_since(*since).unwrap_or_default().as_millis();
            json!({ "gap": { "outage_ms": u64::try_from(ms).unwrap_or(u64::MAX) } })
        }
        Gap::History { missed, reset } => {
            json!({ "gap": { "history": true, "missed": missed, "reset": reset } })
        }
        // A kind of gap this example does not know yet: still tell the client to resync.
        _ => json!({ "gap": {} }),
    }
}

/// The `/healthz` answer for a connection state: 200 when up, else 503.
pub fn health(state: ConnectionState) -> (StatusCode, serde_json::Value) {
    match state {
        ConnectionState::Up => (StatusCode::OK, json!({ "state": "up" })),
        ConnectionState::Connecting => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "state": "connecting" }),
        ),
        ConnectionState::Down { since } => {
            let ms = SystemTime::now()
                .duration_since(since)
                .unwrap_or_default()
                .as_millis();
            (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({ "state": "down", "down_ms": u64::try_from(ms).unwrap_or(u64::MAX) }),
            )
        }
        ConnectionState::Closed => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "state": "closed" }),
        ),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "state": "unknown" }),
        ),
    }
}

/// Why the server stopped.
#[derive(Debug)]
pub enum ChatError {
    /// The pub/sub handle failed (connect or close).
    PubSub(pubsub::Error),
    /// The listener failed.
    Io(std::io::Error),
}

impl fmt::Display for ChatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChatError::PubSub(e) => write!(f, "pub/sub: {e}"),
            ChatError::Io(e) => write!(f, "server: {e}"),
        }
    }
}

impl std::error::Error for ChatError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ChatError::PubSub(e) => Some(e),
            ChatError::Io(e) => Some(e),
        }
    }
}

impl From<pubsub::Error> for ChatError {
    fn from(e: pubsub::Error) -> Self {
        ChatError::PubSub(e)
    }
}

impl From<std::io::Error> for ChatError {
    fn from(e: std::io::Error) -> Self {
        ChatError::Io(e)
    }
}

/// What every request handler shares.
#[derive(Clone)]
struct AppState {
    hub: Hub,
    /// Whether the backend keeps the chat's [`history`].
    history: bool,
    /// Becomes `true` when the server shuts down: every WebSocket closes.
    shutdown: watch::Receiver<bool>,
}

/// The chat's routes (`/ws`, `/healthz`) on a connected handle. Open WebSockets close when
/// `shutdown` becomes `true`.
pub fn router(hub: Hub, history: bool, shutdown: watch::Receiver<bool>) -> Router {
    Router::new()
        .route("/ws", get(ws))
        .route("/healthz", get(healthz))
        .with_state(AppState {
            hub,
            history,
            shutdown,
        })
}

/// Declares the chat's [`history`] on `hub`: `Ok(false)` on a backend without streams.
pub async fn keep_history(hub: &Hub) -> pubsub::Result<bool> {
    match hub.declare_stream(history()?).await {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::Unsupported => {
            tracing::warn!(
                backend = hub.backend(),
                "no history on this backend: clients cannot resume"
            );
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// Connects to `url`, serves the chat on `listener` until `signal` completes, then closes every
/// WebSocket and the handle.
pub async fn serve(
    url: &str,
    listener: TcpListener,
    signal: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ChatError> {
    let hub = pubsub::connect(url).await?;
    tracing::info!(
        backend = hub.backend(),
        addr = %listener.local_addr()?,
        "chat listening"
    );
    let history = keep_history(&hub).await?;
    let (stop, stopped) = watch::channel(false);
    let app = router(hub.clone(), history, stopped);
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            signal.await;
            tracing::info!("shutting down");
            stop.send_replace(true);
        })
        .await;
    let closed = hub.close().await;
    served?;
    closed?;
    Ok(())
}

/// Binds `addr` and [`serve`]s.
pub async fn run(
    url: &str,
    addr: SocketAddr,
    signal: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ChatError> {
    let listener = TcpListener::bind(addr).await?;
    serve(url, listener, signal).await
}

async fn healthz(State(app): State<AppState>) -> Response {
    let (status, body) = health(app.hub.connection_state());
    (status, Json(body)).into_response()
}

#[derive(Deserialize)]
struct WsParams {
    user: String,
    /// The position of the last message the client saw, to resume after it.
    after: Option<String>,
}

async fn ws(
    State(app): State<AppState>,
    Query(params): Query<WsParams>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let user = params.user.trim().to_string();
    if user.is_empty()
        || user.chars().count() > MAX_USER_CHARS
        || user.chars().any(char::is_control)
    {
        return (
            StatusCode::BAD_REQUEST,
            format!("`user` must be 1 to {MAX_USER_CHARS} printable characters"),
        )
            .into_response();
    }
    let last = match params.after.as_deref().map(str::parse::<Position>) {
        None => None,
        Some(Ok(position)) if app.history => Some(position),
        Some(Ok(_)) => {
            return (
                StatusCode::BAD_REQUEST,
                "`after`: this chat keeps no history on its backend",
            )
                .into_response()
        }
        Some(Err(e)) => return (StatusCode::BAD_REQUEST, format!("`after`: {e}")).into_response(),
    };
    upgrade
        .max_message_size(MAX_FRAME_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        .on_upgrade(move |socket| async move {
            let mut connection = Connection {
                app,
                user,
                rooms: BTreeSet::new(),
                deliveries: None,
                last,
            };
            connection.run(socket).await;
        })
}

/// One client's WebSocket.
struct Connection {
    app: AppState,
    user: String,
    rooms: BTreeSet<String>,
    /// One subscription over every room joined (`None` while in no room).
    deliveries: Option<Deliveries>,
    /// The position of the last message delivered (or the one the client resumed after).
    last: Option<Position>,
}

/// What ended the loop of a connection.
enum Next {
    Continue,
    Stop,
}

impl Connection {
    async fn run(&mut self, mut socket: WebSocket) {
        let mut shutdown = self.app.shutdown.clone();
        if *shutdown.borrow_and_update() {
            return;
        }
        loop {
            let next = tokio::select! {
                frame = socket.recv() => match frame {
                    Some(Ok(WsMessage::Text(text))) => self.on_frame(&mut socket, text.as_str()).await,
                    Some(Ok(WsMessage::Close(_))) | Some(Err(_)) | None => Next::Stop,
                    Some(Ok(_)) => Next::Continue, // binary, ping, pong
                },
                delivery = next_delivery(&mut self.deliveries) => match delivery {
                    Some(delivery) => self.on_delivery(&mut socket, delivery).await,
                    // The handle was closed: the server is going away.
                    None => Next::Stop,
                },
                _ = shutdown.changed() => Next::Stop,
            };
            if let Next::Stop = next {
                break;
            }
        }
        let _ = socket.send(WsMessage::Close(None)).await;
    }

    async fn on_frame(&mut self, socket: &mut WebSocket, text: &str) -> Next {
        let frame = match serde_json::from_str::<ClientFrame>(text) {
            Ok(frame) => frame,
            Err(_) => {
                return send(
                    socket,
                    json!({ "error": "expected {\"join\":r}, {\"leave\":r} or {\"room\":r,\"text\":t}" }),
                )
                .await
            }
        };
        let outcome = match frame {
            ClientFrame::Join { join } => self.change_rooms(join, true).await,
            ClientFrame::Leave { leave } => self.change_rooms(leave, false).await,
            ClientFrame::Say { room, text } => self.say(room, text).await.map(|()| None),
        };
        match outcome {
            Ok(Some(reply)) => send(socket, reply).await,
            Ok(None) => Next::Continue,
            Err(error) => send(socket, json!({ "error": error.to_string() })).await,
        }
    }

    /// Joins or leaves `room`: one new subscription over the new set of rooms replaces the
    /// old one.
    async fn change_rooms(
        &mut self,
        room: String,
        join: bool,
    ) -> pubsub::Result<Option<serde_json::Value>> {
        let mut rooms = self.rooms.clone();
        if join && !rooms.contains(&room) && rooms.len() >= MAX_ROOMS {
            return Err(pubsub::Error::new(
                pubsub::ErrorKind::Invalid,
                format!("at most {MAX_ROOMS} rooms per connection"),
            ));
        }
        let changed = if join {
            rooms.insert(room.clone())
        } else {
            rooms.remove(&room)
        };
        if changed {
            let patterns = rooms
                .iter()
                .map(|r| room_topic(r).map(Pattern::from))
                .collect::<pubsub::Result<Vec<_>>>()?;
            // With history the new subscription begins after the last message delivered: the
            // rooms kept miss nothing and repeat nothing. Without, it is live before the old
            // one goes (a message arriving in between may reach this client twice).
            let options = match self.last {
                Some(last) if self.app.history => {
                    SubscribeOptions::default().starting_at(StartAt::After(last))
                }
                _ => SubscribeOptions::default(),
            };
            let deliveries = if patterns.is_empty() {
                None
            } else {
                let subscription = self.app.hub.subscribe_all(patterns, options).await?;
                Some(subscription.deliveries())
            };
            self.deliveries = deliveries;
            self.rooms = rooms;
            tracing::debug!(user = %self.user, rooms = ?self.rooms, "subscribed");
        }
        Ok(Some(if join {
            json!({ "joined": room })
        } else {
            json!({ "left": room })
        }))
    }

    async fn say(&self, room: String, text: String) -> pubsub::Result<()> {
        let topic = room_topic(&room)?;
        let message = ChatMessage {
            room,
            user: self.user.clone(),
            text,
        };
        let payload = serde_json::to_vec(&message).map_err(|e| {
            pubsub::Error::new(pubsub::ErrorKind::Invalid, format!("encoding: {e}"))
        })?;
        tracing::debug!(user = %self.user, %topic, "publishing");
        self.app.hub.publish(Message::new(topic, payload)).await
    }

    async fn on_delivery(&mut self, socket: &mut WebSocket, delivery: Delivery) -> Next {
        match delivery {
            Delivery::Message(message) => {
                if let Some(position) = message.position() {
                    self.last = Some(*position);
                }
                tracing::debug!(user = %self.user, topic = %message.topic(), "delivered");
                let Ok(mut chat) = serde_json::from_slice::<ChatMessage>(message.payload()) else {
                    tracing::debug!(topic = %message.topic(), "skipped a payload that is not a chat message");
                    return Next::Continue;
                };
                // The topic says which room it is; a payload cannot claim another.
                match topic_room(message.topic()) {
                    Some(room) => chat.room = room,
                    None => return Next::Continue,
                }
                let Ok(mut frame) = serde_json::to_value(&chat) else {
                    return Next::Continue;
                };
                if let Some(position) = message.position() {
                    frame["position"] = json!(position.to_string());
                }
                send(socket, frame).await
            }
            Delivery::Gap(gap) => {
                tracing::info!(user = %self.user, ?gap, "messages lost; telling the client to resync");
                send(socket, gap_frame(&gap)).await
            }
            // A kind of delivery this example does not know yet.
            _ => Next::Continue,
        }
    }
}

/// The next delivery of the connection's subscription; never resolves while in no room.
async fn next_delivery(deliveries: &mut Option<Deliveries>) -> Option<Delivery> {
    match deliveries {
        Some(deliveries) => deliveries.next().await,
        None => std::future::pending().await,
    }
}

async fn send(socket: &mut WebSocket, frame: serde_json::Value) -> Next {
    match socket.send(WsMessage::Text(frame.to_string().into())).await {
        Ok(()) => Next::Continue,
        Err(_) => Next::Stop,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_rooms_stay_one_token() {
        for room in ["a.*", "a b", ">", "", "%41", "chat.x.msg"] {
            let topic = room_topic(room).unwrap();
            assert_eq!(topic.depth(), 3, "{room:?} -> {topic}");
            assert_eq!(topic_room(&topic).as_deref(), Some(room));
        }
        assert_ne!(room_topic("a.*").unwrap(), room_topic("a.b").unwrap());
        assert!(room_topic(&"x".repeat(300)).is_err());
        assert_eq!(topic_room(&"chat.a.b.msg".parse().unwrap()), None);
    }

    #[test]
    fn client_frames_parse() {
        let parse = |s: &str| serde_json::from_str::<ClientFrame>(s).ok();
        assert_eq!(
            parse(r#"{"join":"r"}"#),
            Some(ClientFrame::Join { join: "r".into() })
        );
        assert_eq!(
            parse(r#"{"room":"r","text":"hi"}"#),
            Some(ClientFrame::Say {
                room: "r".into(),
                text: "hi".into()
            })
        );
        assert_eq!(parse(r#"{"join":1}"#), None);
        assert_eq!(parse(r#"{"room":"r"}"#), None);
        assert_eq!(parse(r#"{"join":"r","text":"x"}"#), None);
        assert_eq!(parse(r#"{"room":"r","text":"hi","join":"x"}"#), None);
    }

    #[test]
    fn gaps_and_health_frames() {
        assert_eq!(
            gap_frame(&Gap::Dropped { count: 3 }),
            json!({"gap": {"dropped": 3}})
        );
        let since = SystemTime::UNIX_EPOCH;
        let until = since + std::time::Duration::from_millis(1500);
        assert_eq!(
            gap_frame(&Gap::Outage { since, until }),
            json!({"gap": {"outage_ms": 1500}})
        );
        assert_eq!(health(ConnectionState::Up).0, StatusCode::OK);
        let (status, body) = health(ConnectionState::Down {
            since: SystemTime::now(),
        });
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["state"], "down");
    }
}
