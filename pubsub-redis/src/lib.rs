//! Redis adapter for the portable pub/sub API, built on [fred](https://docs.rs/fred).
//!
//! [`connect`] returns a [`Hub`]: the core's adapter kit in front of this crate's Redis
//! driver. Everything the portable API promises (exact matching, one copy per subscription,
//! bounded buffers, batched and retried subscription changes, reconnect bookkeeping, `close`)
//! comes from the kit; this crate translates to Redis.
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
//! | headers | the core's [envelope](pubsub_core::adapter::envelope); a payload from a foreign publisher (plain `PUBLISH`) or a frame that does not decode arrives as the payload, with no headers |
//!
//! A glob only selects a superset of the pattern's topics (Redis `*` also crosses `.`); the
//! core's matcher decides delivery. The glob uses at most [`RedisConfig::pattern_depth`]
//! literal tokens (default 2): `room.42.x.>` → `room.42.*`.
//!
//! # Glob planning: a bounded number of globs per handle
//!
//! Redis finds a channel's subscribers with one hash lookup, but tests every `PSUBSCRIBE`
//! glob of every client against the channel of every `PUBLISH`: each glob costs the whole
//! server a little on every message (a raw client holding 4000 globs slows Redis pub/sub to
//! about a sixth). A broader glob costs the same test, but can bring messages no pattern of the
//! handle wants, which the router drops. So the handle plans (at subscribe time, from the
//! filters its subscriptions already use):
//!
//! 1. an exact pattern is a channel, never counted;
//! 2. a wildcard pattern whose glob is in use shares it;
//! 3. while fewer than [`RedisConfig::max_globs`] globs (default [`DEFAULT_MAX_GLOBS`], 64)
//!    are in use, it gets its own glob, as in the table above;
//! 4. beyond that, it shares the narrowest broader glob of its prefix in use (`room.*` for
//!    `room.42.>`), else gets the glob of its first literal token, which later patterns of that
//!    group share.
//!
//! A handle therefore holds at most `max_globs` globs plus one per distinct first token of its
//! wildcard patterns (and `*` for patterns starting with a wildcard); it never widens to `*` by
//! itself, which would bring it every message on the server. A subscription keeps its glob until
//! it ends: planning never moves or drops a live subscription's glob, so nothing is lost, and the
//! glob classes below still hold, so each subscription gets each message once.
//!
//! # One copy per subscription, although fred does not say which glob matched
//!
//! Redis sends one `pmessage` per matching `PSUBSCRIBE` pattern of a connection (plus one
//! `message` for a matching `SUBSCRIBE`), so overlapping native filters deliver several copies;
//! the kit's [`Inbound::deliver_via`](pubsub_core::adapter::Inbound::deliver_via) gives each
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
//! command to the connection, before Redis confirms it. The adapter follows each batch of them
//! (up to 256 channels or globs) with a `PING` in the same pipeline; Redis answers a
//! connection's commands in order, so `subscribe` resolves only after Redis applied the
//! subscription (and `unsubscribe` likewise). A subscription an ACL refuses (`NOPERM`: the
//! user's `&` channel patterns do not allow the channel, or, for a wildcard pattern, do not
//! literally hold the glob the adapter sends, such as `allowed.*` for `allowed.>`) fails with
//! [`ErrorKind::Auth`](pubsub_core::ErrorKind), as does a publish to a refused channel.
//!
//! # Connection loss
//!
//! fred reconnects each connection with an exponential policy built from the configured
//! [`Backoff`](pubsub_core::Backoff), and never gives up. The adapter reports each connection
//! to the kit's supervisor: down when fred reports an error, back when fred reconnects. A
//! subscriber connection that comes back has lost its subscriptions; the kit subscribes again
//! to every native filter before the handle counts as up, and subscription streams stay open.
//! While a connection is down (or restoring), `publish` waits up to the publish timeout and
//! then fails with a temporary error, so a message this handle publishes after a recovery
//! reaches its own restored subscriptions. A connection whose peer vanished without a reset is
//! noticed through TCP keepalive and `TCP_USER_TIMEOUT` (the command timeout).
//!
//! A publish on a connection thought to be up goes out at once, with no timer of its own: a
//! watchdog ticking four times per publish timeout ends any publish that has had no answer for
//! that long, whatever the cause (a loss not yet noticed, a stalled server). A PUBLISH is
//! written at most once: fred does not resend it on a new connection, since it may have been
//! delivered already (delivery is at most once). A publish that timed out while its command was
//! still queued in fred may still be sent once the connection is back.
//!
//! # Streams
//!
//! A stream declared on a handle ([`PubSub::declare_stream`](pubsub_core::PubSub::declare_stream))
//! is a Redis Stream per root, in one hash slot with its meta hash:
//!
//! | key | holds |
//! |---|---|
//! | `pubsub:{<root>}:log` | one entry per message: fields `t` (topic) and `m` (the envelope) |
//! | `pubsub:{<root>}:meta` | `epoch` (random, set when the log starts a new life) and `seq` (appends so far) |
//! | `pubsub:streams` | every root declared on the server, with its limits (declarations by other handles with other limits are refused) |
//!
//! A publish to a topic under a stream is one `EVALSHA` instead of a `PUBLISH`: the script
//! appends the entry (`XADD … MAXLEN ~ max_len`), and publishes the message on its channel
//! with its position spliced into the envelope (`pubsub-position: <tag>-<epoch>-<n>`, taken
//! off on delivery), so subscribers see it at once and in log order. Entry ids are
//! `<n>-<ms>` with `n` counting appends from 1: positions have no holes, so a reader resuming
//! after a trimmed part of the history is told exactly how many messages it missed, and `ms`
//! (the server's clock) serves `time:` starts. Every 64th append trims what is older than
//! `max_age`.
//!
//! The log is kept as long as Redis keeps its keys: a `FLUSHALL`, a deleted key or a restart
//! without persistence loses it, and the next append or read starts a new epoch, so older
//! positions give a reset [`Gap::History`](pubsub_core::Gap::History). Trimming by count is
//! approximate (`MAXLEN ~`: up to one radix-tree node, 100 entries by default, more than
//! `max_len` may stay). A stream needs the envelope: a handle with
//! [`RedisConfig::raw_payloads`] refuses to declare one. On a cluster, the scripts run on the
//! master of the stream's slot (`PUBLISH` reaches every node from there).
//!
//! # Groups
//!
//! A group ([`PubSub::join_group`](pubsub_core::PubSub::join_group)) is a Redis consumer group
//! of its stream's log, and each member a consumer of it (named `<group>-<16 hex>`, new for
//! each join). Its settings (patterns, ack deadline, maximum deliveries, dead-letter topic)
//! are kept beside the log, in the same hash slot, so that a join with other settings is
//! refused with `Invalid`:
//!
//! | key | holds |
//! |---|---|
//! | `pubsub:{<root>}:groups` | group name → its settings |
//!
//! | operation | Redis |
//! |---|---|
//! | join | one script: the settings checked or recorded, `XGROUP CREATE <log> <group> $ / 0 / <n>-<max> MKSTREAM` (`BUSYGROUP`: it exists and goes on where it was) |
//! | read | deliveries due again: one script, `XAUTOCLAIM <log> <group> <member> <ack deadline> <cursor> COUNT <limit>` and the delivery count of each from `XPENDING`, at most every 200 ms (at once when the member's own nack fell due); then new entries: `XREADGROUP GROUP <group> <member> COUNT <n> [BLOCK <wait>] STREAMS <log> >` on the member's own connection |
//! | ack | `XACK <log> <group> <id>…` for the batch |
//! | nack with a delay | in one script with the batch's acks: `XCLAIM <log> <group> <member> 0 <id> IDLE <deadline − delay> JUSTID` (no delivery counted), so that a claim takes it once the delay passed; the member's blocking read is interrupted (`CLIENT UNBLOCK`) when the nack falls due before it ends |
//! | leave | the member's connection is closed, and its consumer deleted if it holds nothing (what it holds is claimed by other members after the ack deadline) |
//!
//! A member's blocking read never holds up the handle's shared connection: each member opens
//! its own connection on its first read. A nack's delay longer than the ack deadline is cut to
//! the deadline. Redis keeps a group and what it has pending with the log (through a restart
//! only with persistence); when the log is deleted or starts a new life, its groups go with it,
//! and a member's next read creates its group again at the start of the new log (a warning is
//! logged). Consumers of members that left holding deliveries stay until a join finds them
//! holding nothing and idle for an hour.
//!
//! # Limits
//!
//! The payload limit (default [`DEFAULT_MAX_PAYLOAD`], 4 MiB; `max_payload` in the
//! [`CommonOptions`](pubsub_core::CommonOptions), lowered to [`MAX_PAYLOAD_CEILING`] when
//! larger) is checked before any I/O; the driver also refuses an envelope larger than `max_payload +`
//! [`HEADER_ALLOWANCE`]. fred's broadcast channel of received messages is sized by
//! [`RedisConfig::broadcast_capacity`]; if the reader task still falls behind, the lost messages
//! are counted in [`Stats::dropped`](pubsub_core::Stats::dropped), logged, and reported to every
//! subscription of the handle as a [`Gap::Dropped`](pubsub_core::Gap::Dropped) (fred does not
//! say which topics they were for).
//!
//! # Secrets
//!
//! The password given in a URL or with [`RedisConfig::with_credentials`] is a
//! [`Secret`](pubsub_core::Secret), only handed to fred: `Debug` of the config and of the
//! driver, errors and logs never contain it.
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod config;
mod driver;
mod glob;
mod plan;
mod stream;

/// The decoders of wire data, for the fuzz targets in `fuzz/` (not a stable API).
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    use bytes::Bytes;
    use pubsub_core::{Message, Topic};

    /// The literal prefix of the glob of `class` through which a `pmessage` on `channel`
    /// arrived, if a glob of that class can match it.
    pub fn glob_prefix(channel: &str, class: usize) -> Option<String> {
        match crate::glob::RedisFilter::glob_of(channel, class)? {
            crate::glob::RedisFilter::Glob { prefix, .. } => Some(prefix.to_string()),
            crate::glob::RedisFilter::Channel(_) => None,
        }
    }

    /// The message a payload received on `topic` carries (envelope or foreign bytes), with
    /// its stream position when its envelope has one (as the subscriber connections read it).
    pub fn unframe(topic: Topic, payload: Bytes) -> Message {
        crate::stream::live_message(topic, payload)
    }
}

pub use config::{
    RedisConfig, DEFAULT_BROADCAST_CAPACITY, DEFAULT_MAX_GLOBS, DEFAULT_MAX_PAYLOAD,
    DEFAULT_PATTERN_DEPTH, HEADER_ALLOWANCE, MAX_PATTERN_DEPTH, MAX_PAYLOAD_CEILING,
};
use driver::RedisDriver;
pub use fred;

use fred::clients::Client;
use fred::interfaces::ClientLike;
use pubsub_core::adapter::launch;
use pubsub_core::{Error, Hub, Result};

/// Connects to Redis as `config` says and returns a `PubSub` handle.
///
/// Opens the publisher connection and the subscriber connection for channels (and for globs
/// of the deepest class); fails with a connection error if Redis cannot be reached.
pub async fn connect(config: RedisConfig) -> Result<Hub> {
    config.validate()?;
    let fred_config = config.fred_config().await?;
    let publisher = Client::new(
        fred_config.clone(),
        Some(config.fred_performance(driver::PUBLISHER_CAPACITY)),
        Some(config.fred_connection()),
        Some(config.fred_policy()),
    );
    start(config, publisher, true, fred_config).await
}

/// Builds a handle on a fred client the application already has and has connected (`init`),
/// which then publishes for the handle.
///
/// The client stays the application's: `close` never quits it, and its reconnect policy is its
/// own. Subscriber connections are new clients with the same server, credentials and TLS
/// settings as `client`, and with `config`'s reconnect policy and broadcast capacity; `config`'s
/// server and credentials are not used.
pub async fn from_client(client: Client, config: RedisConfig) -> Result<Hub> {
    if client.is_clustered() || client.uses_sentinels() {
        return Err(Error::unsupported(
            "only a centralized (single server) fred client is supported",
        ));
    }
    config.validate()?;
    let fred_config = client.client_config();
    start(config, client, false, fred_config).await
}

async fn start(
    config: RedisConfig,
    publisher: Client,
    owns_publisher: bool,
    fred_config: fred::types::config::Config,
) -> Result<Hub> {
    launch(config.options.clone(), move |cx| {
        RedisDriver::open(config, publisher, owns_publisher, fred_config, cx)
    })
    .await
}
