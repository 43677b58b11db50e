//! Realtime over HTTP on any `pubsub` backend: publish with `POST`, subscribe over WebSocket or
//! Server-Sent Events, with bearer-token ACLs, limits, a health check and Prometheus metrics.
//!
//! Run it as a server (`pubsub-gateway --backend redis://127.0.0.1:6379`, or `pubsub serve`),
//! or nest its [`Router`] in an axum application:
//!
//! ```no_run
//! # async fn demo() -> Result<(), pubsub_gateway::GatewayError> {
//! use pubsub_gateway::{Gateway, GatewayConfig};
//!
//! let hub = pubsub::connect("redis://127.0.0.1:6379").await?;
//! let gateway = Gateway::new(hub, &GatewayConfig::default())?;
//! let app = axum::Router::new()
//!     .route("/", axum::routing::get(|| async { "my app" }))
//!     .nest("/realtime", gateway.router());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```
//!
//! # Endpoints
//!
//! | request | answer |
//! |---|---|
//! | `POST /pub/{topic}` | body = payload, `x-pubsub-NAME` headers = message headers ([`publish`]); 202 once the backend accepted it |
//! | `GET /sub/{pattern}`, `GET /sub?pattern=…&pattern=…` | a WebSocket (upgrade requests) or an SSE stream ([`subscribe`]) of [`frames`] |
//! | `GET /healthz` | 200 `{"state":"up"}` while the backend connection is up, else 503 ([`health`]) |
//! | `GET /metrics` | Prometheus text ([`mod@metrics`]) |
//! | anything else | the files of `static_dir`, when configured |
//!
//! Errors are JSON with a status code ([`ApiError`]); tokens and what they grant are in
//! [`auth`]; configuration (TOML file, environment) in [`config`].
//!
//! # Streams
//!
//! The streams of the configuration (`[[streams]]`) are declared on the handle when the
//! gateway starts ([`Gateway::declare_streams`], called by [`Gateway::serve`]). Messages under
//! a stream carry their `position`; a subscriber resumes after one (`from=`, or the
//! `Last-Event-ID` an `EventSource` sends when it reconnects; see [`subscribe`]).
//!
//! # Shutdown
//!
//! [`Gateway::serve`] stops accepting connections when its signal completes, sends every open
//! stream a final `closing` frame (reason `shutdown`) and closes it, lets requests under way
//! (publishes) finish, then closes the pub/sub handle, which flushes what was published.

#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod auth;
pub mod config;
mod error;
pub mod frames;
pub mod health;
mod limits;
pub mod metrics;
pub mod publish;
pub mod server;
pub mod start;
pub mod subscribe;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use pubsub::StreamConfig;
use pubsub::{Hub, PubSub};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::services::ServeDir;
use tower_http::trace::TraceLayer;

pub use auth::{Authenticator, Grant, Identity};
pub use config::{
    AuthConfig, GatewayConfig, GrantConfig, Limits, SlowClient, StaticToken, StreamSettings,
};
pub use error::{ApiError, GatewayError};

/// A gateway over one pub/sub handle: build its [`Router`], serve it, shut it down.
///
/// Cloning is cheap; clones share the handle, the limits and the shutdown.
#[derive(Clone)]
pub struct Gateway {
    shared: Arc<Shared>,
}

/// What every request handler shares.
pub(crate) struct Shared {
    pubsub: Arc<dyn PubSub>,
    auth: Authenticator,
    limits: Limits,
    sse_heartbeat: Duration,
    static_dir: Option<std::path::PathBuf>,
    /// The streams declared on the handle at start.
    streams: Vec<StreamConfig>,
    /// Cancelled on shutdown: every stream sends its final frame and ends.
    shutdown: CancellationToken,
    connections: Arc<limits::ConnectionCounter>,
    metrics: Option<PrometheusHandle>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("backend", &self.shared.pubsub.backend())
            .field("auth", &self.shared.auth)
            .field("limits", &self.shared.limits)
            .finish()
    }
}

impl Gateway {
    /// A gateway over `pubsub` (a [`Hub`] from `pubsub::connect`, or any [`PubSub`]) with the
    /// settings of `config` (its `listen` and `backend` are for [`run`] and are not used here).
    /// Metrics go to this process's Prometheus recorder ([`metrics::install`]).
    pub fn new(
        pubsub: impl PubSub + 'static,
        config: &GatewayConfig,
    ) -> Result<Gateway, GatewayError> {
        Gateway::with_metrics(Arc::new(pubsub), config, metrics::install())
    }

    /// Like [`Gateway::new`], for a shared handle and with the Prometheus handle `/metrics`
    /// renders (`None`: `/metrics` answers 404).
    pub fn with_metrics(
        pubsub: Arc<dyn PubSub>,
        config: &GatewayConfig,
        metrics: Option<PrometheusHandle>,
    ) -> Result<Gateway, GatewayError> {
        config.validate()?;
        metrics::describe();
        if config.auth.is_open() {
            tracing::warn!("no tokens configured: anyone may publish and subscribe to anything");
        }
        Ok(Gateway {
            shared: Arc::new(Shared {
                pubsub,
                auth: Authenticator::new(&config.auth)?,
                limits: config.limits.clone(),
                sse_heartbeat: config.sse_heartbeat,
                static_dir: config.static_dir.clone(),
                streams: config
                    .streams
                    .iter()
                    .map(StreamSettings::to_stream_config)
                    .collect(),
                shutdown: CancellationToken::new(),
                connections: Arc::default(),
                metrics,
            }),
        })
    }

    /// The pub/sub handle.
    pub fn pubsub(&self) -> &Arc<dyn PubSub> {
        &self.shared.pubsub
    }

    /// Declares the configuration's streams on the handle (declaring one again does nothing).
    /// [`Gateway::serve`] calls it before it serves; an application that nests the
    /// [`router`](Gateway::router) calls it itself. Fails with [`GatewayError::Stream`] on the
    /// first stream the backend refuses (no streams on this backend, overlapping roots, a root
    /// declared elsewhere with other limits).
    pub async fn declare_streams(&self) -> Result<(), GatewayError> {
        for stream in &self.shared.streams {
            self.shared
                .pubsub
                .declare_stream(stream.clone())
                .await
                .map_err(|error| GatewayError::Stream {
                    root: stream.root().to_string(),
                    error,
                })?;
            tracing::info!(
                root = %stream.root(),
                max_len = stream.max_len(),
                max_age_secs = stream.max_age().as_secs(),
                "stream declared"
            );
        }
        Ok(())
    }

    /// The gateway's routes (see the crate docs), ready to serve or to nest.
    pub fn router(&self) -> Router {
        let router = Router::new()
            .route("/pub/{topic}", post(publish::publish))
            .route("/sub/{pattern}", get(subscribe::subscribe_path))
            .route("/sub", get(subscribe::subscribe_query))
            .route("/healthz", get(healthz))
            .route("/metrics", get(metrics_text));
        let router = match &self.shared.static_dir {
            Some(dir) => router.fallback_service(ServeDir::new(dir)),
            None => router,
        };
        router
            .with_state(self.shared.clone())
            // Spans name the method and the path only: a query may hold a token.
            .layer(TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
                tracing::info_span!("request", method = %request.method(), path = %request.uri().path())
            }))
    }

    /// Ends every open stream with a final `closing` frame (reason `shutdown`) and refuses
    /// nothing else; [`Gateway::serve`] calls it when its signal completes.
    pub fn shutdown(&self) {
        self.shared.shutdown.cancel();
    }

    /// [Declares the streams](Gateway::declare_streams), then serves the router on `listener`
    /// until `signal` completes, then shuts down gracefully (see the crate docs) and closes
    /// the pub/sub handle. A stream the backend refuses fails it before anything is served.
    pub async fn serve(
        self,
        listener: TcpListener,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), GatewayError> {
        if let Err(error) = self.declare_streams().await {
            let _ = self.shared.pubsub.close().await;
            return Err(error);
        }
        tracing::info!(
            backend = self.shared.pubsub.backend(),
            addr = %listener.local_addr()?,
            "gateway listening"
        );
        let streams = self.clone();
        let served = axum::serve(listener, self.router())
            .with_graceful_shutdown(async move {
                signal.await;
                tracing::info!("shutting down: closing streams, finishing requests");
                streams.shutdown();
            })
            .await;
        let closed = self.shared.pubsub.close().await;
        tracing::info!("gateway stopped");
        served?;
        closed?;
        Ok(())
    }
}

/// Connects to `config.backend`, binds `config.listen` and [serves](Gateway::serve) until
/// `signal` completes.
pub async fn run(
    config: GatewayConfig,
    signal: impl Future<Output = ()> + Send + 'static,
) -> Result<(), GatewayError> {
    config.validate()?;
    let hub: Hub = pubsub::connect(config.backend.expose()).await?;
    let gateway = Gateway::new(hub, &config)?;
    let listener = TcpListener::bind(config.listen).await?;
    gateway.serve(listener, signal).await
}

/// Completes on Ctrl-C or, on Unix, SIGTERM (the facade's, shared with the examples).
pub use pubsub::shutdown_signal;

async fn healthz(State(gateway): State<Arc<Shared>>) -> Response {
    let state = gateway.pubsub.connection_state();
    metrics::backend_up(state.is_up());
    let (status, body) = health::health(state);
    (status, Json(body)).into_response()
}

async fn metrics_text(State(gateway): State<Arc<Shared>>) -> Response {
    let Some(handle) = &gateway.metrics else {
        return (StatusCode::NOT_FOUND, "metrics are off").into_response();
    };
    metrics::backend_up(gateway.pubsub.connection_state().is_up());
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
        .into_response()
}
