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
//! | topic `a.b` | routing key `a.b` on one topic exchange ([`AmqpConfig::exchange`], default `pubsub`), durable ([`AmqpConfig::durable_exchange`]) |
//! | a handle | one queue `pubsub.<random>`: exclusive, auto-delete, `x-max-length` ([`AmqpConfig::queue_max_length`]) with `x-overflow: drop-head`, dead-lettering to `<queue>.dropped` |
//! | exact pattern `a.b` | `queue.bind` with key `a.b` |
//! | `*` | `*` |
//! | `>` (one or more tokens) | `*.#` (`a.>` → `a.*.#`) |
//! | a literal token `#` | `*` (the broker would read `#` as a wildcard; the core's matcher picks the exact topics) |
//! | headers | one AMQP header [`HEADERS_KEY`] holding a long string of length-prefixed names and values, `<len>:<name><len>:<value>…` (lengths in decimal bytes), in order (a field array `[name, value, …]` of earlier versions is still read; stream queues drop array values) |
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
//! # Streams
//!
//! A stream ([`PubSub::declare_stream`](pubsub_core::PubSub::declare_stream)) is a durable
//! RabbitMQ stream queue (`x-queue-type: stream`) named `<exchange>.stream.<tag>.<root>`,
//! bound to the exchange with the root's binding key: every message published under the root
//! is appended to it, by whichever handle or foreign publisher. It lives at the broker, shared
//! by every handle, across restarts, until someone deletes it (`rabbitmqctl delete_queue`);
//! the adapter never deletes one. Its binding outlives a broker restart with the exchange,
//! which is why the exchange is durable by default: the bindings of a transient exchange go
//! with it when the broker stops, and a stream queue (or a group's queue) would then miss
//! what is published after the restart.
//!
//! - **Limits.** `max_age` is `x-max-age` (whole seconds, rounded up). RabbitMQ limits a
//!   stream by size, not count: `max_len` becomes `x-max-length-bytes` of `max_len × 256`
//!   bytes, in segments of a quarter of that (`x-stream-max-segment-size-bytes`, at least
//!   1 KiB, at most 500 MB). Retention drops whole segments, never the one being written, so
//!   a stream keeps roughly `max_len` messages of about 256 bytes (fewer of larger ones, more
//!   of smaller), give or take a segment; age is also applied per segment. A queue of that
//!   name with other arguments (other limits, or not a stream) fails the declaration with
//!   [`ErrorKind::Invalid`](pubsub_core::ErrorKind::Invalid).
//! - **Positions.** A message's position is its stream offset (the `x-stream-offset` header
//!   of its delivery) plus one. Offsets skip numbers (RabbitMQ keeps entries of its own in the
//!   log, one per segment), so the count of a [`Gap::History`](pubsub_core::Gap::History)
//!   (the difference of offsets) may count a few of those too; `last:N` may give a few fewer
//!   than `N`; a start time is matched per chunk, to the second.
//! - **Epoch.** AMQP cannot tell a queue from one deleted and declared again under the same
//!   name, so the handle that creates a stream queue records a random epoch for it in one
//!   registry stream per exchange (`<exchange>.stream-epochs`), where every handle that
//!   declares the stream reads it. A position of another epoch (a stream deleted and
//!   declared again) gives a reset gap. A handle learns the epoch when it declares the
//!   stream; two handles creating the same stream at the same instant may each keep their own
//!   (the last recorded wins for the handles after them).
//! - **Live.** A handle's subscriptions under a stream share one consumer of the stream
//!   queue (`x-stream-offset: next`, on a channel of its own, prefetch
//!   [`AmqpConfig::prefetch`]) instead of a binding of the handle's queue; each message comes
//!   with its position. A copy that also reaches the handle's queue through another binding
//!   is dropped there: one copy per subscription. If that consumer ends under the handle (the
//!   stream queue deleted), the handle reconnects.
//! - **History.** Each read of the log is a consumer on a channel of its own (prefetch 600,
//!   acknowledged 128 at a time with `multiple`): it starts at the offset wanted and takes up
//!   to a batch. After a short batch (the end) its channel is closed; after a full one it is
//!   kept running, and the read that starts right after that batch goes on from it (a replay
//!   is one consumer, not one per batch); any other read, or 2 s without one, closes it. AMQP
//!   has no end-of-stream signal: the end is what the live consumer saw last,
//!   or the last chunk a consumer from `last` is given (up to 150 ms on an empty stream).
//!   Reads of the same start under way at once share one consumer, so a thousand
//!   subscriptions resuming after an outage cost one read. RabbitMQ 3.10 now and then starts a
//!   consumer at the end of a stream being written to instead of where it was asked to; a
//!   read notices (its first entry is past the end it knew) and reads again.
//! - **Cost.** Every stream queue is a process at the broker holding two files open (its
//!   segment and index), and every read under way two more: the broker's open-files limit
//!   bounds how many streams it holds (a broker limited to 1 024 files holds some 450).
//!   Each read that does not go on from the one before costs a channel's opening and closing
//!   and a `basic.consume` on top of the messages.
//!
//! # Groups
//!
//! A group ([`PubSub::join_group`](pubsub_core::PubSub::join_group)) is a durable quorum
//! queue (`x-queue-type: quorum`) named `<exchange>.group.<stream tag>.<group name>`, bound to
//! the exchange with the binding key of each of the group's patterns: every message published
//! under them is routed to it (as well as to the stream queue), by whichever handle or
//! foreign publisher. It lives at the broker, across restarts, until someone deletes it
//! (`rabbitmqctl delete_queue`); the adapter never deletes one.
//!
//! - **Settings.** The group's settings (patterns, ack deadline, maximum deliveries,
//!   dead-letter topic) are written into the queue's `x-dead-letter-routing-key` (readable,
//!   or a digest when longer than 255 bytes; `x-dead-letter-exchange` is the default
//!   exchange), an argument RabbitMQ compares whenever the queue is declared: a join with
//!   other settings fails with [`ErrorKind::Invalid`](pubsub_core::ErrorKind::Invalid). (The
//!   queue never dead-letters anything itself.) The queue also takes the stream's limits:
//!   `x-max-length` = `max_len` and `x-message-ttl` = `max_age`, so that what the stream
//!   would have trimmed is gone for the group too.
//! - **Members.** Each member consumes the queue on a channel of its own with manual
//!   acknowledgements and `basic.qos` = the member's prefetch; the quorum queue hands each
//!   message to one member. A delivery's count is the queue's `x-delivery-count` plus one.
//!   Acks are `basic.ack` (one `multiple` ack for as many as allow). RabbitMQ has no delayed
//!   requeue and redelivers only when a channel goes away, so the member gives deliveries
//!   back itself (`basic.nack` with `requeue`) when they fall due: a nack's delay after the
//!   nack, or the ack deadline after it handed them out (a timer per member). A delivery held
//!   for a nack's delay counts against the member's prefetch until then. Leaving closes the
//!   member's channel: what it held goes back at once (a delivery waiting for its nack's delay
//!   too, early). A handle that dies (its connection closed or lost) gives back everything
//!   its members held.
//! - **Where a new group starts.** `now`: the queue is bound when the group is created.
//!   `start` or after a position: the stream's entries are first copied into the queue
//!   (published to the queue itself, with their topic in a `pubsub-topic` header), then the
//!   queue is bound, then what reached the stream meanwhile is copied up to its end probed at
//!   the broker. The switch is not exact: what is published in the 50 to 200 ms between the
//!   binding and that probe is delivered twice (bound, then the copy after it), and a publish
//!   of another connection routed before the binding but written to the stream after the
//!   probe would be missed. (Creating a group while another handle published some 3 000
//!   messages a second without pause, 150 to 230 came twice and none was missed.) The join waits for the copy up to three quarters of the command timeout, then
//!   lets it go on in the background (members get the copies as they arrive). While a
//!   connection creates a group, it holds an exclusive queue `<group queue>.creating`; other
//!   connections' joins wait for it. A creation cut short (the connection lost) leaves the
//!   group with part of its backlog; the next join binds it.
//! - **Cost.** Every group is a quorum queue (a Raft cluster of its own at the broker), and
//!   every member a channel and a consumer.
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
mod exchange;
mod group;
mod headers;
mod queue_probe;
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

pub use config::{AmqpConfig, DEFAULT_MAX_PAYLOAD, MAX_PAYLOAD_CEILING};
pub use headers::HEADERS_KEY;
pub use lapin;

use driver::{AmqpDriver, Source};
use pubsub_core::adapter::launch;
use pubsub_core::{Hub, Result};

/// Connects to the broker as `config` says and returns a `PubSub` handle.
///
/// Declares the exchange and the handle's queue; fails with a connection error if the broker
/// cannot be reached, or a backend error if it refuses (credentials, vhost, an exchange of
/// another type). An existing exchange of the other durability is used as it is, with a
/// warning.
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
