//! The gateway's Prometheus metrics (`GET /metrics`), recorded with the `metrics` crate.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `pubsub_gateway_connections` | gauge: open WebSocket and SSE streams | `transport` (`ws`, `sse`) |
//! | `pubsub_gateway_connections_opened_total` | counter: streams opened | `transport` |
//! | `pubsub_gateway_messages_in_total` | counter: messages published with `POST /pub` | |
//! | `pubsub_gateway_publish_errors_total` | counter: refused or failed publishes | `code` |
//! | `pubsub_gateway_messages_out_total` | counter: messages sent to subscribers | `transport` |
//! | `pubsub_gateway_gaps_total` | counter: gap frames sent | `kind` (`dropped`, `outage`, `history`) |
//! | `pubsub_gateway_dropped_total` | counter: messages dropped for slow clients | |
//! | `pubsub_gateway_slow_disconnects_total` | counter: clients disconnected for being slow | |
//! | `pubsub_gateway_backend_up` | gauge: 1 while the backend connection is up, else 0 | |
//!
//! Every metric has `# HELP` and `# TYPE` lines, and no name is another's with `_total`
//! added (OpenMetrics reads a counter `x_total` as the family `x`).
//!
//! A gateway records into the process's global `metrics` recorder. [`install`] sets up a
//! Prometheus recorder once per process and returns its handle; an application that has its
//! own recorder passes its handle (or none) to the gateway instead.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use pubsub::Gap;

/// The Prometheus recorder of this process, installed on first call; `None` if another global
/// recorder was installed first.
pub fn install() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| match PrometheusBuilder::new().install_recorder() {
            Ok(handle) => Some(handle),
            Err(error) => {
                tracing::warn!(%error, "no Prometheus recorder: /metrics is off");
                None
            }
        })
        .clone()
}

/// Gives every metric its `# HELP` line (the recorder writes `# TYPE`). Idempotent.
pub(crate) fn describe() {
    use metrics::{describe_counter, describe_gauge};
    describe_gauge!(
        "pubsub_gateway_connections",
        "Open WebSocket and SSE streams."
    );
    describe_counter!(
        "pubsub_gateway_connections_opened_total",
        "WebSocket and SSE streams opened."
    );
    describe_counter!(
        "pubsub_gateway_messages_in_total",
        "Messages published with POST /pub."
    );
    describe_counter!(
        "pubsub_gateway_publish_errors_total",
        "Refused or failed publishes, by error code."
    );
    describe_counter!(
        "pubsub_gateway_messages_out_total",
        "Messages sent to subscribers."
    );
    describe_counter!("pubsub_gateway_gaps_total", "Gap frames sent.");
    describe_counter!(
        "pubsub_gateway_dropped_total",
        "Messages dropped for slow clients."
    );
    describe_counter!(
        "pubsub_gateway_slow_disconnects_total",
        "Clients disconnected for being slow."
    );
    describe_gauge!(
        "pubsub_gateway_backend_up",
        "1 while the backend connection is up, else 0."
    );
}

/// A transport of a subscriber stream, as a label.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Transport {
    WebSocket,
    Sse,
}

impl Transport {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Transport::WebSocket => "ws",
            Transport::Sse => "sse",
        }
    }
}

/// Counts one open stream for as long as it lives.
pub(crate) struct OpenStream(Transport);

impl OpenStream {
    pub(crate) fn new(transport: Transport) -> OpenStream {
        metrics::gauge!("pubsub_gateway_connections", "transport" => transport.label())
            .increment(1.0);
        metrics::counter!("pubsub_gateway_connections_opened_total", "transport" => transport.label())
            .increment(1);
        OpenStream(transport)
    }

    pub(crate) fn sent_message(&self) {
        metrics::counter!("pubsub_gateway_messages_out_total", "transport" => self.0.label())
            .increment(1);
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        metrics::gauge!("pubsub_gateway_connections", "transport" => self.0.label()).decrement(1.0);
    }
}

pub(crate) fn gap(gap: &Gap) {
    match gap {
        Gap::Dropped { count } => {
            metrics::counter!("pubsub_gateway_gaps_total", "kind" => "dropped").increment(1);
            metrics::counter!("pubsub_gateway_dropped_total").increment(*count);
        }
        Gap::History { .. } => {
            metrics::counter!("pubsub_gateway_gaps_total", "kind" => "history").increment(1)
        }
        _ => metrics::counter!("pubsub_gateway_gaps_total", "kind" => "outage").increment(1),
    }
}

pub(crate) fn slow_disconnect() {
    metrics::counter!("pubsub_gateway_slow_disconnects_total").increment(1);
}

pub(crate) fn published() {
    metrics::counter!("pubsub_gateway_messages_in_total").increment(1);
}

pub(crate) fn publish_error(code: &'static str) {
    metrics::counter!("pubsub_gateway_publish_errors_total", "code" => code).increment(1);
}

pub(crate) fn backend_up(up: bool) {
    metrics::gauge!("pubsub_gateway_backend_up").set(if up { 1.0 } else { 0.0 });
}
