//! An open subscription bound to its transport: WebSocket frames or Server-Sent Events, the
//! final `closing` frame, and the refusal of a WebSocket request.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::http::header;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use pubsub::{Deliveries, Delivery, EndReason, Pattern};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::frames::{self, Closing};
use crate::limits::ConnectionPermit;
use crate::metrics::{self, OpenStream, Transport};
/// An open subscriber stream, before it is bound to a transport.
pub(super) struct Stream {
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
    /// The stream of `deliveries` (of `patterns`), ended by `shutdown`, holding its
    /// connection `permit` while open.
    pub(super) fn new(
        deliveries: Deliveries,
        patterns: Vec<Pattern>,
        shutdown: CancellationToken,
        permit: ConnectionPermit,
    ) -> Stream {
        Stream {
            deliveries,
            patterns,
            shutdown,
            _permit: permit,
        }
    }

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

    pub(super) async fn websocket(
        mut self,
        mut socket: WebSocket,
        binary: bool,
        send_timeout: Duration,
    ) {
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

    pub(super) fn sse(self, heartbeat: Duration) -> Response {
        let open = OpenStream::new(Transport::Sse);
        let first = event(&frames::subscribed(&self.patterns));
        let rest = futures::stream::unfold(Some((self, open)), |state| async move {
            let (mut stream, open) = state?;
            match stream.next().await {
                Next::Frame(value) => Some((event(&value), Some((stream, open)))),
                Next::Message(message) => {
                    open.sent_message();
                    let mut event = event(&frames::message(&message));
                    // What a reconnecting `EventSource` sends back as `Last-Event-ID`.
                    if let Some(position) = message.position() {
                        event = event.id(position.to_string());
                    }
                    Some((event, Some((stream, open))))
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
pub(super) fn refuse_websocket(upgrade: WebSocketUpgrade, error: ApiError) -> Response {
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
