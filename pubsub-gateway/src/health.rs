//! `GET /healthz`: 200 while the backend connection is up, else 503, with the state as JSON.

use std::time::SystemTime;

use axum::http::StatusCode;
use pubsub::ConnectionState;
use serde_json::{json, Value};

/// The `/healthz` answer for a connection state: 200 `{"state":"up"}`, else 503 with
/// `{"state":"connecting"}`, `{"state":"down","down_ms":…}` or `{"state":"closed"}`.
pub fn health(state: ConnectionState) -> (StatusCode, Value) {
    let unavailable = StatusCode::SERVICE_UNAVAILABLE;
    match state {
        ConnectionState::Up => (StatusCode::OK, json!({ "state": "up" })),
        ConnectionState::Connecting => (unavailable, json!({ "state": "connecting" })),
        ConnectionState::Down { since } => {
            let ms = SystemTime::now()
                .duration_since(since)
                .unwrap_or_default()
                .as_millis();
            (
                unavailable,
                json!({ "state": "down", "down_ms": u64::try_from(ms).unwrap_or(u64::MAX) }),
            )
        }
        ConnectionState::Closed => (unavailable, json!({ "state": "closed" })),
        _ => (unavailable, json!({ "state": "unknown" })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states() {
        assert_eq!(health(ConnectionState::Up).0, StatusCode::OK);
        let (status, body) = health(ConnectionState::Down {
            since: SystemTime::now(),
        });
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["state"], "down");
        assert_eq!(health(ConnectionState::Closed).1["state"], "closed");
    }
}
