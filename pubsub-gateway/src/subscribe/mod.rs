//! `GET /sub/{pattern}` and `GET /sub?pattern=…`: a WebSocket when the request asks for an
//! upgrade, else a Server-Sent Events stream, both carrying the frames of
//! [`frames`](mod@crate::frames).
//!
//! Query parameters: `pattern` (repeatable; added to the one in the path), `token` (see
//! [auth](crate::auth)), `format=json` (default) or `format=binary` (WebSocket only: messages
//! as binary frames), `from` (where to begin in a stream, see below). Anything else is 400. Several patterns are one subscription: a message
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
//! # Streams: positions and resuming
//!
//! A message under a declared stream carries its `position` (the `message` frame's field,
//! and over SSE the event's `id:`). A subscription begins where `from` says
//! ([`StartAt`](pubsub::StartAt): `now`, `start`, `last:N`, `time:<Unix ms>`, or a
//! position: the first message after it), or after the position of a `Last-Event-ID` header,
//! which an `EventSource` sends when it reconnects. The header wins over `from`, so that a page
//! opened with `?from=start` resumes where it stopped instead of starting over. A `from` or
//! `Last-Event-ID` that does not parse is 400 (`bad_request`); on patterns under no declared
//! stream it is 400 too. Messages the stream no longer holds come as a `gap` frame with
//! `history: true`.
//!
//! A WebSocket closes with a close handshake: a client's close is answered with the same
//! code; the gateway's own close says why ([`Closing::close_code`](crate::frames::Closing::close_code)): 1001 on shutdown.

mod check;
mod transport;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::{header, Request};
use axum::response::{IntoResponse, Response};
use pubsub::{Overflow, SubscribeOptions};

use crate::auth::SUBPROTOCOL;
use crate::config::SlowClient;
use crate::error::ApiError;
use crate::Shared;
use check::check;
use transport::{refuse_websocket, Stream};

/// The largest frame a WebSocket client may send (clients only need to send close and ping).
const MAX_CLIENT_FRAME: usize = 4096;

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
    let mut options = SubscribeOptions::default()
        .with_capacity(gateway.limits.buffer)
        .with_overflow(overflow);
    if let Some(start) = checked.start {
        options = options.starting_at(start);
    }
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
    tracing::debug!(identity = %checked.identity, patterns = ?checked.patterns, from = ?checked.start, websocket = upgrade.is_some(), "subscribed");
    let stream = Stream::new(
        subscription.deliveries(),
        checked.patterns,
        gateway.shutdown.clone(),
        permit,
    );
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
