//! NATS adapter for the portable pub/sub API, built on [`async-nats`](async_nats).
//!
//! [`connect`] opens one NATS client connection and returns a [`Hub`]: a
//! [`PubSub`](pubsub_core::PubSub) handle whose clones all share that connection, however many
//! subscriptions they hold. [`from_client`] wraps a connection the application already has.
//!
//! ```no_run
//! # async fn demo() -> pubsub_core::Result<()> {
//! use pubsub_core::{Message, PubSub};
//! use pubsub_nats::NatsConfig;
//!
//! let config = NatsConfig::from_url("nats://127.0.0.1:4222")?;
//! let ps = pubsub_nats::connect(config).await?;
//! let mut room = ps.subscribe("room.42.>".parse()?).await?;
//! ps.publish(Message::builder("room.42.msg".parse()?).payload("hi").header("from", "ada").build()?)
//!     .await?;
//! let msg = room.recv().await.expect("a message");
//! assert_eq!(msg.headers().get("from"), Some("ada"));
//! ps.close().await?;
//! # Ok(()) }
//! ```
//!
//! # How the portable semantics map to NATS
//!
//! - **Subjects and wildcards** map one to one: a topic is a subject, `*` and `>` are NATS's
//!   own. Each distinct pattern is one NATS subscription, shared by every local subscription
//!   with that pattern (the hub counts references); the hub's exact matcher still decides
//!   delivery, and a subscription gets one copy of a message even when several of the handle's
//!   NATS subscriptions overlap. Messages whose subject is not a portable topic (another NATS
//!   client may publish `a.b*c`) are skipped.
//! - **Subscribe readiness.** `subscribe` resolves once the server has processed the `SUB`: the
//!   adapter sends it, then round-trips a message on a private subject through the server, which
//!   answers a connection's operations in order. `unsubscribe().await` waits the same way.
//! - **Publish** resolves once async-nats has queued the message on the connection, in order
//!   (no flush per message; `close` flushes). Messages larger than the server's `max_payload`
//!   (read from its `INFO`, headers included) fail with
//!   [`Error::PayloadTooLarge`](pubsub_core::Error::PayloadTooLarge) before any I/O.
//! - **Headers** are NATS headers (see [`headers`] for the two encodings that make them round
//!   trip exactly: order, and values with surrounding whitespace).
//! - **Connection loss.** async-nats reconnects by itself (first attempt at once, then after
//!   [`NatsConfig::backoff`]) and restores every NATS subscription; subscription streams stay
//!   open. While disconnected, `publish` waits up to [`NatsConfig::publish_timeout`] for the
//!   connection and then fails with [`Error::Timeout`](pubsub_core::Error::Timeout); messages
//!   other clients publish during the outage are not delivered (at-most-once).
//! - **Slow subscribers** never slow the connection: a reader task per NATS subscription moves
//!   messages into the subscriptions' bounded buffers without ever waiting, so the server never
//!   sees this client as a slow consumer.
//! - **`close`** unsubscribes, flushes, drains the connection and waits for async-nats's tasks
//!   to end. Closed during an outage, async-nats's connection task keeps trying to reconnect
//!   and ends once it reaches a server (it does not watch for a close while reconnecting).
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod config;
mod driver;
mod error;
pub mod headers;

use std::sync::Arc;
use std::time::Duration;

use async_nats::connection::State;
use pubsub_core::{Backoff, ConnectionGate, Hub};

pub use config::{NatsConfig, DEFAULT_PORT, DEFAULT_SUBSCRIPTION_CAPACITY};
pub use error::Error;

use driver::{Events, NatsDriver, Settings};

/// Connects to NATS and returns a handle.
///
/// Fails with a typed error when no server can be reached (async-nats does not retry the first
/// connection) or the credentials are refused; reconnects on its own afterwards.
///
/// ```no_run
/// # async fn demo() -> pubsub_core::Result<()> {
/// use pubsub_core::PubSub;
/// let ps = pubsub_nats::connect(pubsub_nats::NatsConfig::default()).await?;
/// assert_eq!(ps.backend(), "nats");
/// assert_eq!(ps.max_payload(), 1024 * 1024); // the server's default
/// # Ok(()) }
/// ```
pub async fn connect(config: NatsConfig) -> Result<Hub, pubsub_core::Error> {
    let servers = config.server_addrs()?;
    Hub::start(config.hub.clone(), move |inbound| async move {
        let events = Arc::new(Events::new(ConnectionGate::new(false), inbound.clone()));
        let backoff = config.backoff.clone();
        let callback_events = events.clone();
        let client = config
            .connect_options()
            .reconnect_delay_callback(move |attempts| reconnect_delay(&backoff, attempts))
            .event_callback(move |event| {
                callback_events.on_event(event);
                std::future::ready(())
            })
            .connect(servers)
            .await
            .map_err(Error::from_connect)?;
        events.set_connected(client.connection_state() == State::Connected);
        let settings = Settings {
            publish_timeout: config.publish_timeout,
            command_timeout: config.command_timeout,
            owned: true,
        };
        Ok(NatsDriver::start(client, settings, inbound, Some(events)).await?)
    })
    .await
}

/// Builds a handle on a client the application already has, sharing its connection.
///
/// Only the adapter settings of `config` are used (timeouts, hub settings); the connection's own
/// settings (servers, credentials, reconnect policy) are the client's. `close` then removes the
/// handle's subscriptions and flushes, but leaves the client connected. The client must echo
/// its own messages (the async-nats default; not `no_echo`).
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use pubsub_core::PubSub;
/// let client = async_nats::connect("nats://127.0.0.1:4222").await?;
/// let ps = pubsub_nats::from_client(client.clone(), pubsub_nats::NatsConfig::default()).await?;
/// let _sub = ps.subscribe("orders.>".parse()?).await?;
/// ps.close().await?; // `client` stays usable
/// # Ok(()) }
/// ```
pub async fn from_client(
    client: async_nats::Client,
    config: NatsConfig,
) -> Result<Hub, pubsub_core::Error> {
    Hub::start(config.hub.clone(), move |inbound| async move {
        let settings = Settings {
            publish_timeout: config.publish_timeout,
            command_timeout: config.command_timeout,
            owned: false,
        };
        Ok(NatsDriver::start(client, settings, inbound, None).await?)
    })
    .await
}

/// async-nats's reconnect delay for its `attempts`-th attempt (counted from 1): the first is
/// immediate, then the backoff policy applies.
fn reconnect_delay(backoff: &Backoff, attempts: usize) -> Duration {
    match attempts {
        0 | 1 => Duration::ZERO,
        n => backoff.delay(u32::try_from(n - 2).unwrap_or(u32::MAX)),
    }
}
