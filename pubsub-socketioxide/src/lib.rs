//! Scale [socketioxide](https://docs.rs/socketioxide) (socket.io for axum/tower) servers out
//! over any backend of this workspace: memory, Redis, NATS or RabbitMQ, chosen by URL.
//!
//! socketioxide's multi-node support is its *remote adapter* protocol. Its Redis adapter crate,
//! `socketioxide-redis`, implements the whole protocol (broadcasts, acknowledgements collected
//! across nodes, `fetch_sockets`, rooms, disconnects, per-server requests, timeouts) on top of a
//! four-method pub/sub contract, [`Driver`](socketioxide_redis::drivers::Driver): publish to a
//! channel, subscribe to a channel with a buffer size, unsubscribe, and the number of servers
//! on a channel. [`PubSubDriver`] implements that contract on any
//! [`PubSub`](pubsub_core::PubSub) handle, so the adapter logic is reused as it is, tested
//! upstream, and follows socketioxide's releases.
//!
//! Why the `Driver` contract and not socketioxide-core's `CoreAdapter` directly: a
//! `CoreAdapter` would re-implement the request/response protocol, the ack counting and the
//! response routing that socketioxide-redis already gets right, for no gain; the driver is the
//! part that depends on the transport, and the one thing it needs that a pub/sub system does
//! not give, the number of servers, comes from [`pubsub_presence`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use pubsub_socketioxide::{AdapterConfig, DriverConfig, PubSubAdapter, PubSubDriver};
//! use socketioxide::SocketIo;
//!
//! let hub = pubsub::connect("nats://127.0.0.1:4222").await?;
//! let driver = PubSubDriver::start(Arc::new(hub), DriverConfig::new("socketio".parse()?)?).await?;
//! let (layer, io) = SocketIo::builder()
//!     .with_adapter::<PubSubAdapter<_>>(driver.adapter(AdapterConfig::default()))
//!     .build_layer();
//! io.ns("/", async |socket: socketioxide::extract::SocketRef<PubSubAdapter<_>>| {
//!     socket.join("lobby");
//! }).await?;
//! // ... axum::Router::new().layer(layer) ...
//! # Ok(()) }
//! ```
//!
//! Every node of one cluster uses the same root topic. Channels `{prefix}-request#{ns}#…` are
//! mapped to topics under `{root}.ch` by [`ChannelMap`] (each `#`-part escaped into one token);
//! node heartbeats travel on `{root}.nodes`. A node that stops calls [`PubSubDriver::leave`];
//! one that crashes is forgotten after the presence expiry (default 3 s), after which requests
//! no longer wait for its answers.
//!
//! socketioxide-redis ships its own Redis drivers; this crate is for everything else, and for
//! Redis when the application already holds a `pubsub` handle (the bench in this crate compares
//! both on the same Redis).
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod channel;
mod driver;
mod in_flight;

pub use channel::ChannelMap;
pub use driver::{DriverConfig, PubSubDriver};
pub use pubsub_presence as presence;
pub use socketioxide_redis::RedisAdapterConfig as AdapterConfig;

/// The socketioxide adapter running on a [`PubSubDriver`]: use it as the adapter type of
/// `SocketIo::builder().with_adapter::<PubSubAdapter<_>>(driver.adapter(config))`.
pub type PubSubAdapter<E> = socketioxide_redis::CustomRedisAdapter<E, PubSubDriver>;

/// The adapter constructor socketioxide takes ([`PubSubDriver::adapter`] makes one).
pub type PubSubAdapterCtr = socketioxide_redis::RedisAdapterCtr<PubSubDriver>;
