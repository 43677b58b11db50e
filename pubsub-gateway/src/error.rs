//! [`ApiError`]: what a refused request gets, as a status code and a JSON body; and
//! [`GatewayError`], why a gateway could not start or stopped.

use std::fmt;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use pubsub::ErrorKind;
use serde_json::json;

/// A refused request: `{"error":{"code":"bad_topic","message":"…"}}` with its status.
///
/// | status | code | when |
/// |---|---|---|
/// | 400 | `bad_topic`, `bad_pattern`, `bad_header`, `bad_request`, `too_many_patterns` | the request is malformed or over a per-request limit |
/// | 401 | `unauthorized` | no token where one is needed, or a token that is not valid |
/// | 403 | `forbidden` | the token does not grant this topic or pattern |
/// | 413 | `payload_too_large` | the body is over the gateway's or the backend's limit |
/// | 429 | `too_many_connections` | the token already has its maximum of open streams |
/// | 502 | `backend_refused` | the broker refused the operation |
/// | 503 | `backend_unavailable` | the broker cannot be reached (or the gateway is closing) |
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    /// An error with its status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400 with `code`.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 401.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 413.
    pub fn too_large(size: Option<usize>, max: usize) -> Self {
        let message = match size {
            Some(size) => format!("payload is {size} bytes; the limit is {max}"),
            None => format!("payload is over the limit of {max} bytes"),
        };
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The machine-readable code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The answer to a failed publish or subscribe of the pub/sub handle.
    pub fn from_pubsub(error: &pubsub::Error) -> Self {
        match error.kind() {
            ErrorKind::Invalid => ApiError::bad_request("bad_request", error.to_string()),
            ErrorKind::PayloadTooLarge => match error.payload_limit() {
                Some((size, max)) => ApiError::too_large(Some(size), max),
                None => ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    error.to_string(),
                ),
            },
            ErrorKind::Backend | ErrorKind::Unsupported => ApiError::new(
                StatusCode::BAD_GATEWAY,
                "backend_refused",
                error.to_string(),
            ),
            _ => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "backend_unavailable",
                error.to_string(),
            ),
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code, "message": self.message } });
        (self.status, Json(body)).into_response()
    }
}

/// Why a gateway could not start, or stopped.
#[derive(Debug)]
#[non_exhaustive]
pub enum GatewayError {
    /// The configuration is not valid.
    Config(String),
    /// The pub/sub handle failed (connect or close).
    PubSub(pubsub::Error),
    /// The listener failed.
    Io(std::io::Error),
    /// A configured stream could not be declared on the handle.
    Stream {
        /// The stream's root pattern.
        root: String,
        /// Why the handle refused it.
        error: pubsub::Error,
    },
}

impl fmt::Display for GatewayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GatewayError::Config(e) => write!(f, "configuration: {e}"),
            GatewayError::PubSub(e) => write!(f, "pub/sub: {e}"),
            GatewayError::Io(e) => write!(f, "server: {e}"),
            GatewayError::Stream { root, error } => {
                write!(f, "cannot declare stream `{root}`: {error}")
            }
        }
    }
}

impl std::error::Error for GatewayError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            GatewayError::Config(_) => None,
            GatewayError::PubSub(e) => Some(e),
            GatewayError::Io(e) => Some(e),
            GatewayError::Stream { error, .. } => Some(error),
        }
    }
}

impl From<pubsub::Error> for GatewayError {
    fn from(e: pubsub::Error) -> Self {
        GatewayError::PubSub(e)
    }
}

impl From<std::io::Error> for GatewayError {
    fn from(e: std::io::Error) -> Self {
        GatewayError::Io(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pubsub_errors_map_to_statuses() {
        let cases = [
            (pubsub::Error::payload_too_large(10, 5), 413),
            (pubsub::Error::timeout("down"), 503),
            (pubsub::Error::closed(), 503),
            (pubsub::Error::new(ErrorKind::Invalid, "x"), 400),
            (pubsub::Error::new(ErrorKind::Backend, "no"), 502),
        ];
        for (error, status) in cases {
            assert_eq!(
                ApiError::from_pubsub(&error).status().as_u16(),
                status,
                "{error}"
            );
        }
    }
}
