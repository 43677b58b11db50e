//! `--stream ROOT` and `--from START`: declaring streams on the handle before publishing or
//! subscribing, and reading where a subscription begins.

use pubsub::{Hub, Pattern};
use pubsub::{StartAt, StreamConfig};

/// Parses `--stream ROOT` (a pattern such as `room.>`).
pub fn parse_root(text: &str) -> Result<Pattern, String> {
    Pattern::new(text).map_err(|e| format!("stream root `{text}`: {e}"))
}

/// Parses `--from START`: `now`, `start`, `last:N`, `time:<Unix ms>` or a position (the error
/// names these).
pub fn parse_start(text: &str) -> Result<StartAt, String> {
    pubsub_gateway::start::parse_from(text).map_err(|e| e.message().to_string())
}

/// Declares a stream of each root, with the default limits, on `hub`.
pub async fn declare(hub: &Hub, roots: &[Pattern]) -> Result<(), String> {
    for root in roots {
        hub.declare_stream(StreamConfig::new(root.clone()))
            .await
            .map_err(|e| format!("--stream `{root}`: {e}"))?;
    }
    Ok(())
}
