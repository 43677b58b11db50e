//! NATS adapter for the portable pub/sub API, on [`async-nats`](async_nats) and the
//! [`pubsub_core::adapter`] kit.
//!
//! [`connect`] opens one NATS connection and returns a [`Hub`]; its clones share that
//! connection, however many subscriptions they hold. [`from_client`] wraps a connection the
//! application already has. The kit does the routing, buffering, reference counting of native
//! subscriptions, retries, connection state and `close`; this crate only translates to NATS.
//!
//! ```no_run
//! # async fn demo() -> pubsub_core::Result<()> {
//! use pubsub_core::{Message, PubSub};
//! use pubsub_nats::NatsConfig;
//!
//! let ps = pubsub_nats::connect(NatsConfig::from_url("nats://127.0.0.1:4222")?).await?;
//! let mut room = ps.subscribe("room.42.>".parse()?).await?;
//! let message = Message::builder("room.42.msg".parse()?).payload("hi").header("from", "ada");
//! ps.publish(message.build()?).await?;
//! assert_eq!(room.recv().await.unwrap().headers().get("from"), Some("ada"));
//! ps.close().await?;
//! # Ok(()) }
//! ```
//!
//! # Translation
//!
//! - **Topics and patterns** are subjects: the portable grammar is NATS's, `*` and `>`
//!   included. Each distinct pattern is one NATS subscription (`SUB`), shared by every local
//!   subscription with that pattern; the core's exact matcher decides delivery, and a local
//!   subscription gets one copy of a message however the handle's subscriptions overlap.
//!   Messages whose subject is not a portable topic (other clients may publish `a.b*c`) are
//!   skipped.
//! - **Subscribe and unsubscribe** resolve once the server has applied the `SUB` or `UNSUB`:
//!   after a batch of them, the adapter round-trips one message through the server on a
//!   private subject (NATS handles a connection's operations in order). Both are bounded by
//!   the command timeout.
//! - **Publish** resolves once async-nats has queued the message on the connection, in order
//!   (no flush per message; `close` flushes). A message larger than the server's
//!   `max_payload` (from its `INFO`; lowered by `max_payload` in the options), headers
//!   included, fails with [`ErrorKind::PayloadTooLarge`](pubsub_core::ErrorKind) before any
//!   I/O. While the connection is down, `publish` waits up to the publish timeout, then fails
//!   with [`ErrorKind::Timeout`](pubsub_core::ErrorKind).
//! - **Headers** are NATS headers; [`headers`] describes the two encodings that make them
//!   round-trip exactly (order, and values with surrounding whitespace).
//! - **Connection loss.** async-nats reconnects by itself (first attempt at once, then after
//!   the options' backoff) and restores every NATS subscription; subscription streams stay
//!   open. Messages other clients publish during the outage are not delivered (at most once).
//! - **Slow subscribers** never slow the connection: one reader task per NATS subscription
//!   moves messages into the subscriptions' bounded buffers without waiting. If async-nats's
//!   own channel overflows ([`NatsConfig::subscription_capacity`]), it drops the message and
//!   reports a slow consumer, counted in [`Stats::dropped`](pubsub_core::Stats::dropped)
//!   (async-nats queues at most 128 such reports, so a burst of losses is undercounted).
//! - **`close`** flushes what was published, then drains the connection, after which
//!   async-nats's tasks end. Closed during an outage, async-nats's connection task ends only
//!   once it reaches a server again (it reads the drain request then).
//! - **Subject permissions.** The server refuses a `SUB` or `PUB` the user may not do
//!   asynchronously (a `-ERR 'Permissions Violation …'` the adapter reads from async-nats's
//!   event callback). `subscribe` to a refused pattern fails with `Auth` (not temporary) once
//!   the server has processed the `SUB`; a user without permission on `_INBOX.>` (where each
//!   handle confirms its subscriptions) gets `Auth` from every `subscribe`, saying so. Core
//!   NATS does not acknowledge publishes, so the first `publish` to a refused subject
//!   resolves `Ok` (the refusal is logged at WARN); once the refusal has arrived, later ones
//!   to that subject fail with `Auth`, until the connection is re-established. A handle on a
//!   foreign client ([`from_client`]) sees no events, so none of this applies there.
//! - **Errors** are [`pubsub_core::Error`]: refused credentials and permissions are `Auth`,
//!   I/O and a lost connection `Connection`, a handshake over the connect timeout `Timeout`,
//!   a bad URL, address or certificate file `Invalid`; the async-nats error is the `source`.
//!
//! # Streams
//!
//! A stream ([`PubSub::declare_stream`](pubsub_core::PubSub::declare_stream)) is a
//! **JetStream stream** at the server, so the server must run with JetStream (`-js`);
//! without it `declare_stream` fails with `Unsupported`.
//!
//! - **Where it is kept.** One JetStream stream per root, named `PUBSUB_<tag>_<root>` (the
//!   root's 32-bit tag in hex, then the root with every character other than a letter, a digit
//!   or `-` as `_`), capturing the root's subjects: file storage, one replica, limits
//!   retention, `max_msgs` = `max_len`, `max_age` = `max_age`, discarding the oldest. Every
//!   handle that declares the root finds the same stream; one that declares it with other
//!   limits gets `Invalid` (so does a root overlapping another JetStream stream's subjects).
//!   The stream is never deleted by the adapter: it outlives the handles and keeps its
//!   history (and its disk) until its messages expire or someone deletes it (`nats stream rm`).
//! - **Publishing** is unchanged: a core NATS publish, not acknowledged by JetStream. The
//!   server stores whatever is published to the root's subjects, by this adapter or any other
//!   client. A message the stream could not store (its disk full, say) is delivered to
//!   nobody under the stream and not reported to the publisher.
//! - **Positions** are JetStream's stream sequences (`Offset(0, seq)`); a stream's epoch is
//!   its creation time at the server, so a stream deleted and created again gives a position
//!   of its earlier life a reset gap.
//! - **Live messages.** The stream re-publishes every message it stores (`RePublish`) to a
//!   private subject, `_pubsub.rp.` followed by the original subject, with its sequence in a
//!   header. Subscriptions under a stream declared on the handle take those copies instead of
//!   the original subjects, so every live message carries its position; the `Nats-*`
//!   headers JetStream adds are removed. A handle has **one NATS subscription per stream**
//!   for them (to `_pubsub.rp.<root>`, while it has a subscription under the stream), read
//!   by one task that hands each message to the subscriptions whose patterns match, in the
//!   stream's order: a subscription to several patterns gets them in order too (through one
//!   NATS subscription per pattern they would come through several tasks, out of order).
//!   The cost: such a handle receives everything published under the root, and filters
//!   locally; declare narrow roots for handles that follow a few topics of a busy stream.
//!   Subjects under `_pubsub.rp.` are reserved: a plain subscription (`>`, say) never
//!   delivers them.
//! - **Reading the log** (a replay, a resume after an outage) is one `STREAM.INFO` request, an
//!   ephemeral pull consumer (memory, no acks, starting at the wanted sequence or time), one
//!   fetch of up to a batch of messages, and the consumer's deletion in the background (or
//!   its expiry after 30 s idle). Subscriptions of a handle asking for the same read at the
//!   same time share it: a thousand subscriptions resuming after an outage make a few reads,
//!   not a thousand. A read under way when the connection drops fails at once and is retried
//!   once the handle is up.
//! - **Cost.** Each message under a stream is written to the stream's storage and sent once
//!   more by the server (the re-published copy, to the subscribers under the stream). The
//!   user needs permission to use JetStream's API (`$JS.API.>`) and to subscribe to
//!   `_pubsub.rp.>`.
//! - **A stream deleted and created again** (its epoch changes) is noticed by the next read
//!   of its log, or live, when its sequences start again from 1: the subscriptions under it
//!   get a reset gap, then the new stream's messages.
//! - **Limits.** A stream has one replica: in a JetStream cluster its history is on one
//!   server, and unavailable while that server is down. A permission revoked on
//!   `_pubsub.rp.>` after subscribing leaves the subscriptions under the stream silent
//!   (instead of ending them).
//!
//! # Groups
//!
//! A group ([`PubSub::join_group`](pubsub_core::PubSub::join_group)) is a **durable JetStream
//! pull consumer** on its stream's JetStream stream; the kit's member task does the
//! prefetch, the dead letters and the batching of settlements.
//!
//! - **Where it is kept.** The consumer is named after the group, with explicit acks,
//!   `ack_wait` = the ack deadline, no `max_deliver` (the kit dead-letters a delivery past
//!   `max_deliveries`: JetStream must deliver it once more), no `max_ack_pending` (the
//!   members' prefetch bounds what is unacknowledged), and the group's one pattern as its
//!   filter subject (several patterns: the whole stream, and the kit acknowledges what they
//!   do not match). NATS 2.9 keeps no consumer metadata, so the settings JetStream cannot
//!   show (the maximum deliveries, the dead-letter topic, every pattern) are in its
//!   `description` (`pubsub group v1: max_deliveries 5 dead_letter … patterns …`). Joining
//!   finds the consumer or creates it starting where the group says (`New` for now, `All`
//!   for the start, `ByStartSequence` after a position); a consumer of that name with other
//!   settings, or not made by this adapter, fails with `Invalid`. The consumer is file-stored
//!   at the server with its progress and the deliveries not acknowledged (so it should
//!   outlive a server restart, as the stream does; not tested here), and outlives the
//!   handles; it is never deleted by the adapter (`nats consumer rm`), and goes with its
//!   stream.
//! - **Reading.** A member asks for what the consumer has now (a `no_wait` pull of up to the
//!   room in its prefetch), and when that is nothing, waits up to a second for the next
//!   message (a pull of one, with `expires`; half the ack deadline if that is shorter). Every
//!   member pulls from the same consumer: JetStream hands each message to one pull at a
//!   time. The delivery count is JetStream's (`delivered`), the position the stream
//!   sequence, the headers as on the live path.
//! - **Settling.** An ack is `+ACK` and a nack `-NAK {"delay":<ns>}`, published to the
//!   delivery's reply subject; a batch of them is followed by one flush, so an ack's future
//!   resolves once the server has received it (JetStream does not confirm it further).
//! - **Members that go away.** A member keeps no pull open between reads, so leaving
//!   releases nothing at the server; what a member held unacknowledged (a killed process, a
//!   lost connection) is delivered again once `ack_wait` passes.
//! - **A consumer that is gone** (deleted, or its stream deleted) is made again by the
//!   member's next read, starting where the group says (its progress is lost).
//! - **Messages no group can take.** A message stored under the root on a subject that is no
//!   portable topic (a plain NATS client's) is acknowledged by the adapter and never
//!   delivered.
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod config;
mod driver;
mod error;
mod group;
pub mod headers;
mod permissions;
mod stream;

/// The decoders of wire data, for the fuzz targets in `fuzz/` (not a stable API).
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    use pubsub_core::{Error, Headers};

    pub use crate::permissions::{parse as parse_violation, Violation};
    pub use async_nats::{HeaderMap, HeaderName, HeaderValue};

    /// Portable headers for received NATS headers.
    pub fn headers_from_nats(map: &HeaderMap) -> Headers {
        crate::headers::from_nats(map)
    }

    /// NATS headers for portable headers.
    pub fn headers_to_nats(headers: &Headers) -> Result<Option<HeaderMap>, Error> {
        crate::headers::to_nats(headers)
    }

    /// A received header value, decoded.
    pub fn decode_value(value: &str) -> String {
        crate::headers::decode_value(value)
    }

    /// A header value as sent.
    pub fn encode_value(value: &str) -> String {
        crate::headers::encode_value(value).into_owned()
    }
}

use std::time::Duration;

use async_nats::connection::State;
use async_nats::{Event, ServerError};
use pubsub_core::adapter::{launch, watch_polled, Context, LinkReporter, Refusals};
use pubsub_core::{Backoff, Hub, Result};

pub use config::{Credentials, NatsConfig, DEFAULT_PORT, DEFAULT_SUBSCRIPTION_CAPACITY};

use driver::NatsDriver;

/// How often a handle on a foreign client reads the client's connection state.
const STATE_POLL: Duration = Duration::from_millis(50);

/// Connects to NATS and returns a handle.
///
/// Fails with a typed error when no server can be reached (the first connection is not
/// retried) or the credentials are refused; reconnects on its own afterwards.
///
/// ```no_run
/// # async fn demo() -> pubsub_core::Result<()> {
/// use pubsub_core::PubSub;
/// let ps = pubsub_nats::connect(pubsub_nats::NatsConfig::default()).await?;
/// assert_eq!(ps.backend(), "nats");
/// assert_eq!(ps.max_payload(), 1024 * 1024); // the server's default
/// # Ok(()) }
/// ```
pub async fn connect(config: NatsConfig) -> Result<Hub> {
    launch(config.options.clone(), |cx: Context<String>| async move {
        let servers = config.server_addrs()?;
        let tls = match &config.tls {
            Some(tls) => Some(pubsub_core::adapter::tls::client_config(tls).await?),
            None => None,
        };
        let (link, inbound, backoff) = (
            cx.supervisor.link(),
            cx.inbound.clone(),
            cx.options.backoff.clone(),
        );
        let events = link.clone();
        // Whether the connection was lost since the last `Connected`: async-nats reports its
        // first connection as `Connected` too, possibly after `connect` returned and the
        // handle was up (its callback runs on a task of its own, late on a loaded machine).
        // Taken for a reconnect, it would put an outage gap in the subscriptions made
        // meanwhile, though nothing was lost.
        let lost = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let violations = std::sync::Arc::new(Refusals::new(permissions::BROKER));
        let reported = violations.clone();
        let mut options = config
            .connect_options()
            .reconnect_delay_callback(move |attempts| reconnect_delay(&backoff, attempts))
            .event_callback(move |event| {
                tracing::debug!(%event, "NATS connection event");
                match event {
                    // async-nats has restored its subscriptions when it reports `Connected`.
                    // async-nats sends its subscriptions again on a new connection before it
                    // reports `Connected`; "reconnected" makes the kit confirm (with one round
                    // trip) that the server has them before the handle counts as up.
                    Event::Connected if lost.swap(false, std::sync::atomic::Ordering::AcqRel) => {
                        reported.reconnected();
                        events.reconnected();
                    }
                    // Permission violations are the answer to a `SUB` or `PUB`: see
                    // `permissions`. A refused subscription ends the subscriptions needing it
                    // (a subscribe still waiting for it fails with `Auth` as well).
                    Event::ServerError(ServerError::Other(text)) => {
                        if let Some(permissions::Violation::Subscribe(subject)) =
                            permissions::record(&reported, &text)
                        {
                            inbound.refused(&subject);
                        }
                    }
                    Event::Disconnected | Event::Closed => {
                        lost.store(true, std::sync::atomic::Ordering::Release);
                        events.down();
                    }
                    Event::SlowConsumer(_) => inbound.record_lost(1),
                    _ => {}
                }
                std::future::ready(())
            });
        if let Some(tls) = tls {
            options = options.tls_client_config(tls);
        }
        let client = options.connect(servers).await.map_err(error::connect)?;
        report(&link, &client.connection_state());
        NatsDriver::start(client, cx, true, violations).await
    })
    .await
}

/// Builds a handle on a client the application already has, sharing its connection.
///
/// Only `config.options` is used; the connection's own settings (servers, credentials,
/// reconnect policy) are the client's. The handle reads the client's connection state every
/// 50 ms (a foreign client's events are not available, so slow-consumer drops are not counted
/// either). `close` flushes but leaves the client connected. The client must echo its own
/// messages (the async-nats default; not `no_echo`).
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
pub async fn from_client(client: async_nats::Client, config: NatsConfig) -> Result<Hub> {
    launch(config.options, |cx: Context<String>| async move {
        let watched = client.clone();
        let read = move || watched.connection_state();
        watch_polled(&cx.tasks, cx.supervisor.link(), STATE_POLL, read, report);
        let violations = std::sync::Arc::new(Refusals::new(permissions::BROKER));
        NatsDriver::start(client, cx, false, violations).await
    })
    .await
}

fn report(link: &LinkReporter, state: &State) {
    match state {
        State::Connected => link.reconnected(),
        State::Disconnected => link.down(),
        State::Pending => {}
    }
}

/// async-nats's delay before its `attempts`-th reconnect attempt (counted from 1): the first is
/// immediate, then the backoff applies.
fn reconnect_delay(backoff: &Backoff, attempts: usize) -> Duration {
    match attempts {
        0 | 1 => Duration::ZERO,
        n => backoff.delay(u32::try_from(n - 2).unwrap_or(u32::MAX)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_reconnect_is_immediate_then_backoff() {
        let backoff = Backoff::default().with_jitter(0.0);
        assert_eq!(reconnect_delay(&backoff, 1), Duration::ZERO);
        assert_eq!(reconnect_delay(&backoff, 2), backoff.delay(0));
        assert_eq!(reconnect_delay(&backoff, 9), backoff.delay(7));
    }
}
