//! Redis adapter for the portable pub/sub API, built on [fred](https://docs.rs/fred).
//!
//! [`connect`] returns a [`Hub`]: the core's shared router in front of a Redis
//! [`Driver`](pubsub_core::Driver), [`RedisDriver`]. Everything the portable API promises
//! (exact matching, one copy per subscription, bounded buffers, `close`) comes from the core;
//! this crate translates to Redis.
//!
//! ```no_run
//! # async fn demo() -> pubsub_core::Result<()> {
//! use pubsub_core::{Message, PubSub};
//! use pubsub_redis::RedisConfig;
//!
//! let ps = pubsub_redis::connect(RedisConfig::from_url("redis://127.0.0.1:6379")?).await?;
//! let mut room = ps.subscribe("room.42.>".parse()?).await?; // PSUBSCRIBE room.42.*
//! let msg = Message::builder("room.42.msg".parse()?)
//!     .payload("hello")
//!     .header("sender", "ada")
//!     .build()?;
//! ps.publish(msg).await?;
//! let got = room.recv().await.expect("a message");
//! assert_eq!(got.headers().get("sender"), Some("ada"));
//! ps.close().await?;
//! # Ok(()) }
//! ```
//!
//! # Translation
//!
//! | portable | Redis |
//! |---|---|
//! | topic `a.b` | channel `a.b` (`PUBLISH a.b <envelope>`) |
//! | exact pattern `a.b` | `SUBSCRIBE a.b` (literal: `a[1].b?` never receives `a1.bx`) |
//! | wildcard pattern | `PSUBSCRIBE` of the glob of its literal prefix: `room.*.msg` → `room.*`, `room.42.>` → `room.42.*`, `>` → `*` |
//! | literal `* ? [ ] \` in a glob | escaped with `\` |
//! | headers | the core's [envelope](pubsub_core::envelope); a payload from a foreign publisher (plain `PUBLISH`) or a frame that does not decode arrives as the payload, with no headers |
//!
//! A glob only selects a superset of the pattern's topics (Redis `*` also crosses `.`); the
//! core's matcher decides delivery. The glob uses at most [`RedisConfig::pattern_depth`]
//! literal tokens (default 2): `room.42.x.>` → `room.42.*`.
//!
//! # One copy per subscription, although fred does not say which glob matched
//!
//! Redis sends one `pmessage` per matching `PSUBSCRIBE` pattern of a connection (plus one
//! `message` for a matching `SUBSCRIBE`), so overlapping native filters deliver several copies;
//! the core's [`Inbound::deliver_via`](pubsub_core::Inbound::deliver_via) gives each
//! subscription exactly one copy, provided each copy is attributed to the filter it came
//! through. fred 10's `Message` keeps the channel and the kind (`message`/`pmessage`) but drops
//! the pattern of a `pmessage`. The adapter therefore makes the pattern recoverable:
//!
//! - Every glob is `P.*` where `P` is a prefix of `k` whole literal tokens, or `*` (`k = 0`);
//!   `k` is the glob's *class*. A glob of class `k` matches a channel exactly when the
//!   channel's first `k` tokens are `P` (escaping makes `P` literal; tokens contain no `.`).
//!   So for a channel and a class there is at most one glob that can match: the channel's own
//!   first `k` tokens.
//! - Each class in use has its own subscriber connection (opened on first use; at most
//!   `pattern_depth + 1`, however many subscriptions). A connection therefore never holds two
//!   globs that match the same channel, sends at most one `pmessage` per `PUBLISH`, and the glob
//!   of each `pmessage` it sends is computed from the channel: the first `k` tokens.
//! - Exact channels live on the connection of the deepest class; a `message` (not `pmessage`)
//!   is attributed to the `SUBSCRIBE` of its channel.
//!
//! Every copy is thus delivered through exactly the native filter it matched, and the core
//! hands it only to that filter's subscriptions: overlapping patterns on one handle (`a.*`,
//! `a.>`, `a.b`, `>`) each get one copy. A handle that uses only exact subscriptions and one
//! glob depth has two connections in all: one publisher, one subscriber.
//!
//! # Readiness
//!
//! fred resolves a `SUBSCRIBE`/`PSUBSCRIBE` (and the unsubscribes) as soon as it hands the
//! command to the connection, before Redis confirms it. The adapter follows each with a `PING`
//! on the same connection; Redis answers a connection's commands in order, so `subscribe`
//! resolves only after Redis applied the subscription (and `unsubscribe` likewise).
//!
//! # Connection loss
//!
//! fred reconnects each connection with an exponential policy built from
//! [`RedisConfig::backoff`]. When a subscriber connection is back, the adapter subscribes again
//! to every filter it carries (from its own record, which the core keeps reference-counted),
//! and subscription streams stay open. A connection whose peer vanished without a reset is
//! noticed through TCP keepalive and `TCP_USER_TIMEOUT` ([`RedisConfig::command_timeout`]).
//!
//! `publish` never waits much longer than [`RedisConfig::publish_timeout`], then fails with a
//! `Timeout` (or, for a publish already written to a connection that broke, a `Connection`)
//! error, both temporary:
//! - while a connection is known to be down, and until every subscriber connection has
//!   restored its subscriptions, `publish` waits at a
//!   [`ConnectionGate`](pubsub_core::ConnectionGate); a message published by this handle
//!   after a recovery therefore reaches its own restored subscriptions;
//! - otherwise the PUBLISH goes out at once, with no timer of its own (profiling showed a
//!   timer per publish to be a large part of the adapter's own cost): a watchdog ticking four
//!   times per `publish_timeout` ends any publish that has had no answer for that long,
//!   whatever the cause (a loss not yet noticed, a stalled server).
//!
//! A PUBLISH is written at most once: fred does not resend it on a new connection, since it
//! may have been delivered already (delivery is at most once). A publish that timed out while
//! its command was still queued in fred may still be sent once the connection is back.
//!
//! # Limits
//!
//! [`RedisConfig::max_payload`] (default [`DEFAULT_MAX_PAYLOAD`], 4 MiB) is checked by the hub
//! before any I/O; the driver also refuses an envelope larger than `max_payload +`
//! [`HEADER_ALLOWANCE`]. fred's broadcast channel of received messages is sized by
//! [`RedisConfig::broadcast_capacity`]; if the reader task still falls behind, the lost messages
//! are counted in [`Stats::dropped`](pubsub_core::Stats::dropped) and logged.
//!
//! # Secrets
//!
//! The password given in a URL or with [`RedisConfig::with_credentials`] is only handed to
//! fred: `Debug` of the config and of the driver, errors and logs never contain it.
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod config;
mod driver;
mod error;
mod glob;

pub use config::{
    RedisConfig, DEFAULT_BROADCAST_CAPACITY, DEFAULT_MAX_PAYLOAD, DEFAULT_PATTERN_DEPTH,
    HEADER_ALLOWANCE, MAX_PATTERN_DEPTH,
};
pub use driver::RedisDriver;
pub use error::Error;
pub use fred;

use fred::clients::Client;
use fred::interfaces::ClientLike;
use pubsub_core::Hub;

/// Connects to Redis as `config` says and returns a `PubSub` handle.
///
/// Opens the publisher connection and the subscriber connection for exact channels (and for
/// globs of the deepest class); fails with a connection error if Redis cannot be reached.
pub async fn connect(config: RedisConfig) -> Result<Hub, pubsub_core::Error> {
    config.validate()?;
    let fred_config = config.fred_config()?;
    let publisher = Client::new(
        fred_config.clone(),
        Some(config.fred_performance(driver::PUBLISHER_CAPACITY)),
        Some(config.fred_connection()),
        Some(config.fred_policy()),
    );
    start(config, publisher, fred_config).await
}

/// Builds a handle on an existing fred client, which then publishes for the handle.
///
/// If `client` is already connected it is shared: the handle uses it and `close` leaves it
/// open (reconnecting it is the application's business, as configured on it). Otherwise the
/// handle connects it and quits it on `close`. Subscriber connections are new clients with the
/// same server, credentials and TLS settings as `client`, and with `config`'s reconnect policy
/// and broadcast capacity; `config`'s server and credentials are not used.
pub async fn from_client(client: Client, config: RedisConfig) -> Result<Hub, pubsub_core::Error> {
    if client.is_clustered() || client.uses_sentinels() {
        return Err(Error::InvalidConfig(
            "only a centralized (single server) fred client is supported".to_string(),
        )
        .into());
    }
    config.validate()?;
    let fred_config = client.client_config();
    start(config, client, fred_config).await
}

async fn start(
    config: RedisConfig,
    publisher: Client,
    fred_config: fred::types::config::Config,
) -> Result<Hub, pubsub_core::Error> {
    let hub_config = config.hub.clone();
    Hub::start(hub_config, move |inbound| {
        RedisDriver::open(config, publisher, fred_config, inbound)
    })
    .await
}
