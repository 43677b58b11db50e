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
//!
//! # Connection-state recovery (not yet in socketioxide)
//!
//! socket.io's connection-state recovery lets a client that reconnects within a window get the
//! packets it missed, with the same session. socketioxide does not have it yet (its issue #729
//! asks for it for every adapter), and the remote-adapter protocol this crate implements has no
//! hook for it. What this crate would give it, once socketioxide grows that hook: the broadcast
//! channels of a namespace are topics under one root, so declaring a
//! [stream](pubsub_core::StreamConfig) over `{root}.ch.>` on the handle makes every broadcast a
//! positioned entry of the broker's own log (a Redis Stream, a JetStream stream, the memory
//! ring). The offset socket.io hands the client would be the
//! [`Position`](pubsub_core::Position)'s text, and recovering a session is a subscription
//! [`starting_at`](pubsub_core::SubscribeOptions::starting_at) that offset, filtered to the
//! session's rooms: replay, then live, with no duplicate and no hole, or a
//! [`Gap::History`](pubsub_core::Gap::History) when the window was too long (socket.io's
//! "recovery failed" path). The driver keeps one subscription per channel, so nothing in it
//! stands in the way; we do not fork socketioxide to add the hook.
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
