//! AMQP 0-9-1 adapter (RabbitMQ) for the portable pub/sub API, built on
//! [lapin](https://docs.rs/lapin).
//!
//! [`connect`] returns a [`Hub`]: the core's adapter kit in front of this crate's AMQP driver.
//! Everything the portable API promises (exact matching, one copy per subscription, bounded
//! buffers, batched and retried subscription changes, reconnect bookkeeping, `close`) comes
//! from the kit; this crate translates to AMQP.
//!
//! ```no_run
//! # async fn demo() -> pubsub_core::Result<()> {
//! use pubsub_core::{Message, PubSub};
//! use pubsub_amqp::AmqpConfig;
//!
//! let ps = pubsub_amqp::connect(AmqpConfig::from_url("amqp://guest:guest@127.0.0.1:5672/%2f")?).await?;
//! let mut room = ps.subscribe("room.42.>".parse()?).await?; // binds `room.42.*.#`
//! let msg = Message::builder("room.42.msg".parse()?)
//!     .payload("hello")
//!     .header("sender", "ada")
//!     .build()?;
//! ps.publish(msg).await?; // resolves on the broker's confirm
//! let got = room.recv().await.expect("a message");
//! assert_eq!(got.headers().get("sender"), Some("ada"));
//! ps.close().await?;
//! # Ok(()) }
//! ```
//!
//! # Translation
//!
//! | portable | AMQP |
//! |---|---|
//! | topic `a.b` | routing key `a.b` on one topic exchange ([`AmqpConfig::exchange`], default `pubsub`) |
//! | a handle | one queue `pubsub.<random>`: exclusive, auto-delete, `x-max-length` ([`AmqpConfig::queue_max_length`]) with `x-overflow: drop-head`, dead-lettering to `<queue>.dropped` |
//! | exact pattern `a.b` | `queue.bind` with key `a.b` |
//! | `*` | `*` |
//! | `>` (one or more tokens) | `*.#` (`a.>` → `a.*.#`) |
//! | a literal token `#` | `*` (the broker would read `#` as a wildcard; the core's matcher picks the exact topics) |
//! | headers | one AMQP header [`HEADERS_KEY`] holding a field array `[name, value, name, value, …]` of long strings, in order |
//! | delivery | one copy per handle however many bindings match; the kit hands it to every matching subscription |
//!
//! A binding key only selects a superset of its pattern's topics (and a key over 255 bytes
//! binds as `#`); the core's matcher decides delivery. A message from a foreign publisher
//! arrives with its payload exactly as sent; its headers are read from [`HEADERS_KEY`] as far
//! as they decode (pairs of strings that are valid portable headers), anything else is ignored.
//!
//! # Publishing
//!
//! Publishing uses a channel in confirm mode; `publish` resolves on the broker's confirm, so
//! concurrent publishes are pipelined on the connection. A nack, or a returned message, is a
//! `Backend` error. Publishes are not `mandatory`: a topic nobody subscribes to is not an
//! error in pub/sub. A watchdog ends any publish that has had no confirm within the publish
//! timeout, whatever the cause.
//!
//! # Receiving
//!
//! The handle's queue is consumed with manual acknowledgements and a prefetch of
//! [`AmqpConfig::prefetch`]; deliveries are acknowledged in batches (`multiple`). When the
//! handle falls far behind, the broker keeps at most `queue_max_length` messages for it and
//! drops the oldest: the handle stays healthy and receives the newest messages, in order. The
//! queue dead-letters what it drops, with the original routing key, to a fanout exchange of the
//! handle (`<queue>.dropped`) whose queue the handle consumes: every such drop becomes a
//! [`Gap::Dropped`](pubsub_core::Gap::Dropped) of the subscriptions matching its topic and is
//! counted in [`Subscription::dropped`](pubsub_core::Subscription::dropped), like the drops of a
//! full subscription buffer. (The drops queue holds at most 10 000 dead letters; beyond that a
//! drop goes uncounted.)
//!
//! # Connection loss
//!
//! When the connection or the consumer's channel fails (the consumer stream ends, or an
//! operation finds the connection closed), the handle reports itself down, closes what is left, and reconnects with
//! the configured [`Backoff`](pubsub_core::Backoff), never giving up while it is open (lapin's
//! own recovery is not used). It declares the exchange and the same queue again and
//! resumes consuming; the kit then binds every present filter again before the handle counts
//! as up, and subscription streams stay open. Messages published while the queue did not exist
//! are lost (delivery is at most once). While down, `publish` waits up to the publish timeout;
//! an operation that finds the connection gone fails at once with a `Connection` error.
//!
//! # Refusals
//!
//! A binding or publish the user's permissions refuse (RabbitMQ topic permissions:
//! `ACCESS_REFUSED`) fails with [`ErrorKind::Auth`](pubsub_core::ErrorKind::Auth). RabbitMQ
//! closes the channel a refusal happened on, so publishing and binding each have a channel of
//! their own, replaced after a refusal; the consumer's channel is never touched, and the
//! handle stays up. Publishes in flight on the publishing channel when a refusal closes it fail
//! with a temporary `Connection` error; a binding that failed only because its channel closed
//! under it is made again on the new channel.
//!
//! # The application's connection
//!
//! [`from_connection`] runs a handle on a lapin connection the application already has: the
//! handle opens its three channels on it, and `close` closes those channels (which deletes the
//! handle's queue) but never the connection. Reconnecting that connection is the
//! application's business: when it fails, the handle reports itself down, operations fail
//! with `Connection` errors (or time out), and the handle keeps trying, with backoff, to open
//! its channels on it again, which succeeds once the connection is usable again.
//!
//! # TLS and secrets
//!
//! `amqps://` uses rustls (ring) with the system's root certificates plus those of
//! [`AmqpConfig::tls`] (a [`TlsOptions`](pubsub_core::TlsOptions)), which also holds a client
//! certificate for mutual TLS. Refused credentials (`ACCESS_REFUSED`) and certificates are
//! [`ErrorKind::Auth`](pubsub_core::ErrorKind::Auth). The password is a
//! [`Secret`](pubsub_core::Secret): `Debug` of the config and of the driver, errors and logs
//! never contain it.
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod binding;
mod config;
mod driver;
mod headers;
mod stream;

/// The decoders of wire data, for the fuzz targets in `fuzz/` (not a stable API).
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    use lapin::types::FieldTable;
    use pubsub_core::{Headers, Result};

    /// Portable headers of a received AMQP headers table (ours or a foreign publisher's).
    pub fn headers_from_table(table: Option<&FieldTable>) -> Headers {
        crate::headers::decode(table)
    }

    /// The AMQP headers table for portable headers.
    pub fn headers_to_table(headers: &Headers) -> Result<Option<FieldTable>> {
        crate::headers::encode(headers)
    }
}

use std::sync::Arc;

pub use config::{AmqpConfig, DEFAULT_MAX_PAYLOAD};
pub use headers::HEADERS_KEY;
pub use lapin;

use driver::{AmqpDriver, Source};
use pubsub_core::adapter::launch;
use pubsub_core::{Hub, Result};

/// Connects to the broker as `config` says and returns a `PubSub` handle.
///
/// Declares the exchange and the handle's queue; fails with a connection error if the broker
/// cannot be reached, or a backend error if it refuses (credentials, vhost, an exchange of
/// another type or durability).
pub async fn connect(config: AmqpConfig) -> Result<Hub> {
    start(config, Source::Own).await
}

/// Builds a handle on a lapin connection the application already has (see the crate
/// documentation: `close` leaves the connection open, and reconnecting it is the
/// application's business). `config`'s server and credentials are not used.
pub async fn from_connection(
    connection: impl Into<Arc<lapin::Connection>>,
    config: AmqpConfig,
) -> Result<Hub> {
    start(config, Source::App(connection.into())).await
}

async fn start(config: AmqpConfig, source: Source) -> Result<Hub> {
    config.validate()?;
    launch(config.options.clone(), move |cx| {
        AmqpDriver::open(config, source, cx)
    })
    .await
}
