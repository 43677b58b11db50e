//! `GET /sub/{pattern}` and `GET /sub?pattern=…`: a WebSocket when the request asks for an
//! upgrade, else a Server-Sent Events stream, both carrying the frames of
//! [`frames`](mod@crate::frames).
//!
//! Query parameters: `pattern` (repeatable; added to the one in the path), `token` (see
//! [auth](crate::auth)), `format=json` (default) or `format=binary` (WebSocket only: messages
//! as binary frames). Anything else is 400. Several patterns are one subscription: a message
//! matching more than one arrives once. The path takes one pattern; a comma is a valid topic
//! character, so there is no comma-separated form.
//!
//! Everything is checked before the stream opens. A refused SSE request is an HTTP status
//! with a JSON body (see [`ApiError`]). A refused WebSocket request is accepted and closed at
//! once with close code `4000 + status` (4400, 4401, 4403, 4429, 4502, 4503) and the reason
//! `code: message` (at most 123 bytes), since a browser cannot read the body of a refused
//! upgrade. The first frame of an open stream is `subscribed`, sent once the subscription is
//! live at the broker.
//!
//! A WebSocket closes with a close handshake: a client's close is answered with the same
//! code; the gateway's own close says why ([`Closing::close_code`]): 1001 on shutdown.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Path, State};
use axum::http::{header, Request};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use pubsub::{Deliveries, Delivery, EndReason, Overflow, Pattern, SubscribeOptions};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::auth::{bearer_token, SUBPROTOCOL};
use crate::config::SlowClient;
use crate::error::ApiError;
use crate::frames::{self, Closing};
use crate::limits::ConnectionPermit;
use crate::metrics::{self, OpenStream, Transport};
use crate::Shared;

/// The largest frame a WebSocket client may send (clients only need to send close and ping).
const MAX_CLIENT_FRAME: usize = 4096;

/// What a subscriber asked for, checked.
struct Checked {
    patterns: Vec<Pattern>,
    binary: bool,
    identity: String,
}

pub(crate) async fn subscribe_path(
    State(gateway): State<Arc<Shared>>,
    Path(pattern): Path<String>,
    request: Request<Body>,
) -> Response {
    open(gateway, Some(pattern), request).await
}

pub(crate) async fn subscribe_query(
    State(gateway): State<Arc<Shared>>,
    request: Request<Body>,
) -> Response {
    open(gateway, None, request).await
}

async fn open(
    gateway: Arc<Shared>,
    path_pattern: Option<String>,
    request: Request<Body>,
) -> Response {
    let (mut parts, _body) = request.into_parts();
    let is_websocket = parts
        .headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let upgrade = if is_websocket {
        match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
            Ok(upgrade) => Some(upgrade.protocols([SUBPROTOCOL])),
            Err(rejection) => return rejection.into_response(),
        }
    } else {
        None
    };
    let refuse = |error: ApiError, upgrade: Option<WebSocketUpgrade>| match upgrade {
        Some(upgrade) => refuse_websocket(upgrade, error),
        None => error.into_response(),
    };
    let checked = match check(&gateway, path_pattern, &parts) {
        Ok(checked) => checked,
        Err(error) => {
            tracing::debug!(%error, "subscription refused");
            return refuse(error, upgrade);
        }
    };
    let permit = match gateway
        .connections
        .acquire(&checked.identity, gateway.limits.max_connections_per_token)
    {
        Ok(permit) => permit,
        Err(error) => return refuse(error, upgrade),
    };
    if checked.binary && upgrade.is_none() {
        return ApiError::bad_request("bad_request", "format=binary is for WebSockets only")
            .into_response();
    }
    let overflow = match gateway.limits.slow_client {
        SlowClient::Drop => Overflow::DropOldest,
        SlowClient::Disconnect => Overflow::Close,
    };
    let options = SubscribeOptions::default()
        .with_capacity(gateway.limits.buffer)
        .with_overflow(overflow);
    let subscription = match gateway
        .pubsub
        .subscribe_all(checked.patterns.clone(), options)
        .await
    {
        Ok(subscription) => subscription,
        Err(error) => {
            tracing::warn!(%error, "subscribe failed");
            return refuse(ApiError::from_pubsub(&error), upgrade);
        }
    };
    tracing::debug!(identity = %checked.identity, patterns = ?checked.patterns, websocket = upgrade.is_some(), "subscribed");
    let stream = Stream {
        deliveries: subscription.deliveries(),
        patterns: checked.patterns,
        shutdown: gateway.shutdown.clone(),
        _permit: permit,
    };
    match upgrade {
        Some(upgrade) => {
            let send_timeout = gateway.limits.send_timeout;
            upgrade
                .max_message_size(MAX_CLIENT_FRAME)
                .max_frame_size(MAX_CLIENT_FRAME)
                // Clients send next to nothing: a small read buffer (the default is 128 KiB
                // per connection).
                .read_buffer_size(MAX_CLIENT_FRAME)
                .on_upgrade(move |socket| stream.websocket(socket, checked.binary, send_timeout))
        }
        None => stream.sse(gateway.sse_heartbeat),
    }
}

/// Reads and checks a subscribe request: 400, 401 or 403 before anything opens.
fn check(
    gateway: &Shared,
    path_pattern: Option<String>,
    parts: &axum::http::request::Parts,
) -> Result<Checked, ApiError> {
    let mut texts: Vec<String> = path_pattern.into_iter().collect();
    let mut token = None;
    let mut binary = false;
    for (key, value) in form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes()) {
        match &*key {
            "pattern" => texts.push(value.into_owned()),
            "token" if token.is_none() => token = Some(value.into_owned()),
            "format" => {
                binary = match &*value {
                    "json" => false,
                    "binary" => true,
                    _ => {
                        return Err(ApiError::bad_request(
                            "bad_request",
                            "format is `json` or `binary`",
                        ))
                    }
                }
            }
            other => {
                let shown: String = other.chars().take(32).collect();
                return Err(ApiError::bad_request(
                    "bad_request",
                    format!("unknown query parameter `{shown}` (pattern, token, format)"),
                ));
            }
        }
    }
    let token = bearer_token(&parts.headers, token.as_deref())?;
    let identity = gateway.auth.identify(token)?;
    let who = crate::auth::who(&identity, token.is_some());
    let mut patterns: Vec<Pattern> = Vec::with_capacity(texts.len());
    for text in &texts {
        let pattern = Pattern::new(text)
            .map_err(|e| ApiError::bad_request("bad_pattern", format!("pattern `{text}`: {e}")))?;
        if !patterns.contains(&pattern) {
            patterns.push(pattern);
        }
    }
    if patterns.is_empty() {
        return Err(ApiError::bad_request(
            "bad_pattern",
            "no pattern: use /sub/{pattern} or ?pattern=…",
        ));
    }
    let max = gateway.limits.max_patterns;
    if patterns.len() > max {
        return Err(ApiError::bad_request(
            "too_many_patterns",
            format!("{} patterns; at most {max} per connection", patterns.len()),
        ));
    }
    if let Some(outside) = patterns.iter().find(|p| !identity.grant.may_subscribe(p)) {
        return Err(ApiError::forbidden(format!(
            "{who} may not subscribe to `{outside}`"
        )));
    }
    Ok(Checked {
        patterns,
        binary,
        identity: identity.name.clone(),
    })
}

/// An open subscriber stream, before it is bound to a transport.
struct Stream {
    deliveries: Deliveries,
    patterns: Vec<Pattern>,
    shutdown: CancellationToken,
    _permit: ConnectionPermit,
}

/// What to send next.
enum Next {
    Frame(Value),
    Message(pubsub::Message),
    Close(Closing),
}

impl Stream {
    /// Waits for the next thing to send: a delivery, or the end (shutdown, or the subscription
    /// ended).
    async fn next(&mut self) -> Next {
        tokio::select! {
            biased;
            _ = self.shutdown.cancelled() => Next::Close(Closing::Shutdown),
            delivery = self.deliveries.next() => match delivery {
                Some(Delivery::Message(message)) => Next::Message(message),
                Some(Delivery::Gap(gap)) => {
                    metrics::gap(&gap);
                    tracing::info!(?gap, "messages lost; sending a gap frame");
                    Next::Frame(frames::gap(&gap))
                }
                // A kind of delivery this gateway does not know yet: the client should resync.
                Some(_) => Next::Frame(serde_json::json!({ "type": "gap" })),
                None => Next::Close(match self.deliveries.subscription().end_reason() {
                    Some(EndReason::Overflow) => {
                        metrics::slow_disconnect();
                        Closing::SlowClient
                    }
                    Some(EndReason::Refused) => Closing::Refused,
                    _ if self.shutdown.is_cancelled() => Closing::Shutdown,
                    _ => Closing::BackendClosed,
                }),
            },
        }
    }

    async fn websocket(mut self, mut socket: WebSocket, binary: bool, send_timeout: Duration) {
        let open = OpenStream::new(Transport::WebSocket);
        let first = frames::subscribed(&self.patterns).to_string();
        if !send_within(&mut socket, send_timeout, WsMessage::Text(first.into())).await {
            return;
        }
        loop {
            let next = tokio::select! {
                next = self.next() => next,
                frame = socket.recv() => match frame {
                    Some(Ok(WsMessage::Close(frame))) => {
                        // The close handshake: the library queued the echo of the client's
                        // close frame (same code); closing flushes it.
                        tracing::debug!(code = frame.as_ref().map(|f| f.code), "the client closed the WebSocket");
                        let _ = tokio::time::timeout(send_timeout, SinkExt::close(&mut socket)).await;
                        return;
                    }
                    Some(Err(_)) | None => return,
                    Some(Ok(_)) => continue, // pings are answered by the library; other frames are ignored
                },
            };
            let frame = match next {
                Next::Frame(value) => WsMessage::Text(value.to_string().into()),
                Next::Message(message) => {
                    open.sent_message();
                    match binary.then(|| frames::binary_message(&message)).flatten() {
                        Some(bytes) => WsMessage::Binary(bytes),
                        None => WsMessage::Text(frames::message(&message).to_string().into()),
                    }
                }
                Next::Close(reason) => {
                    let last = frames::closing(reason).to_string();
                    if send_within(&mut socket, send_timeout, WsMessage::Text(last.into())).await {
                        let frame = CloseFrame {
                            code: reason.close_code(),
                            reason: reason.as_str().into(),
                        };
                        close_with(socket, frame, send_timeout).await;
                    }
                    return;
                }
            };
            if !send_within(&mut socket, send_timeout, frame).await {
                return;
            }
        }
    }

    fn sse(self, heartbeat: Duration) -> Response {
        let open = OpenStream::new(Transport::Sse);
        let first = event(&frames::subscribed(&self.patterns));
        let rest = futures::stream::unfold(Some((self, open)), |state| async move {
            let (mut stream, open) = state?;
            match stream.next().await {
                Next::Frame(value) => Some((event(&value), Some((stream, open)))),
                Next::Message(message) => {
                    open.sent_message();
                    Some((event(&frames::message(&message)), Some((stream, open))))
                }
                Next::Close(reason) => Some((event(&frames::closing(reason)), None)),
            }
        });
        let events = futures::stream::once(async move { first })
            .chain(rest)
            .map(Ok::<Event, std::convert::Infallible>);
        let mut response = Sse::new(events)
            .keep_alive(KeepAlive::new().interval(heartbeat).text("heartbeat"))
            .into_response();
        // Ask reverse proxies (nginx) not to buffer the stream.
        response
            .headers_mut()
            .insert("x-accel-buffering", header::HeaderValue::from_static("no"));
        response
    }
}

/// How long a closing WebSocket waits for the client's answer to its close frame.
const CLOSE_ANSWER_WAIT: Duration = Duration::from_secs(2);

/// Sends the close `frame` (within `timeout`) and waits a little for the client's answer, so
/// that the client sees a clean close with this code.
async fn close_with(mut socket: WebSocket, frame: CloseFrame, timeout: Duration) {
    if send_within(&mut socket, timeout, WsMessage::Close(Some(frame))).await {
        let answered = async { while let Some(Ok(_)) = socket.recv().await {} };
        let _ = tokio::time::timeout(timeout.min(CLOSE_ANSWER_WAIT), answered).await;
    }
}

/// A refused WebSocket request: accepted, then closed with `4000 + status` and the reason, which
/// a browser can read (it cannot read the body of a refused upgrade).
fn refuse_websocket(upgrade: WebSocketUpgrade, error: ApiError) -> Response {
    let code = 4000 + error.status().as_u16();
    let mut reason = format!("{}: {}", error.code(), error.message());
    // A close reason holds at most 123 bytes.
    if reason.len() > 123 {
        let mut end = 120;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
        reason.push_str("...");
    }
    upgrade.on_upgrade(move |socket| async move {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        close_with(socket, frame, Duration::from_secs(5)).await;
    })
}

/// Sends `frame`; false when the socket failed or the client did not take it within `timeout`
/// (then the connection ends: a slow client).
async fn send_within(socket: &mut WebSocket, timeout: Duration, frame: WsMessage) -> bool {
    match tokio::time::timeout(timeout, socket.send(frame)).await {
        Ok(Ok(())) => true,
        Ok(Err(_)) => false,
        Err(_) => {
            tracing::info!("a WebSocket client did not take a frame in time; disconnecting");
            metrics::slow_disconnect();
            false
        }
    }
}

/// An SSE event: the frame's `type` is the event name, the frame the data.
fn event(frame: &Value) -> Event {
    let name = frame["type"].as_str().unwrap_or("message");
    Event::default().event(name).data(frame.to_string())
}
