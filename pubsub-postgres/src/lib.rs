//! PostgreSQL `LISTEN`/`NOTIFY` adapter for the portable pub/sub API, on [`tokio_postgres`]
//! and the [`pubsub_core::adapter`] kit.
//!
//! [`connect`] opens one session and returns a [`Hub`]; its clones share it. The kit does the
//! routing, buffering, reference counting, retries, connection state and `close`; this crate
//! only translates to PostgreSQL.
//!
//! ```no_run
//! # async fn demo() -> pubsub_core::Result<()> {
//! use pubsub_core::{Message, PubSub};
//! use pubsub_postgres::PostgresConfig;
//!
//! let url = "postgres://postgres@127.0.0.1:5432/test";
//! let ps = pubsub_postgres::connect(PostgresConfig::from_url(url)?).await?;
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
//! | portable | PostgreSQL |
//! |---|---|
//! | every topic and pattern | the handle's channel ([`PostgresConfig::channel`], default `pubsub`), listened to while the handle has a subscription (`UNLISTEN` after the last); the kit's matcher picks each message's subscriptions |
//! | a new pattern | a native filter of its own, confirmed by a `LISTEN "pubsub"` (one per batch; a no-op at the server when already listening, but its answer is the readiness) |
//! | a message | `SELECT pg_notify($1, $2)` (a prepared statement: channel and text are parameters) with the text `<topic> <body>`: the payload as it is when it is text (UTF-8 without NUL, not starting with `=`, no headers), else `=` and the base64 of the kit's envelope of headers and payload |
//! | headers | in the envelope |
//! | readiness | the `LISTEN` committed |
//! | delivery | `deliver` (one copy per session) |
//! | reconnect | our loop with the options' backoff; a new session listens to nothing, and the kit listens again |
//!
//! Why one channel rather than one per topic or prefix: PostgreSQL has no wildcard `LISTEN`,
//! so a channel per prefix would make a publish notify every prefix of its topic (each
//! notification an entry in the server's one queue that every listening session scans), and
//! the server looks a notification's channel up in a list of the session's channels (linear in
//! the channels it listens to). One channel costs one entry per publish and one `LISTEN` for
//! any number of subscriptions (`benches/channel_mapping.rs`: at 1 and 100 subscriptions both
//! mappings deliver some 30 000–40 000 messages a second; at 10 000, one channel still does
//! 38 000, a channel per prefix 21 000 after 0.12 s of `LISTEN`s). The price: every handle on a
//! channel receives all of its traffic. Applications that must not see each other's traffic use
//! channels (or databases) of their own.
//!
//! **Other programs**: `SELECT pg_notify('pubsub', 'orders.created ' || row_to_json(NEW)::text)`
//! in a trigger publishes to `orders.created`; `'=' || encode(bytes, 'base64')` as the body
//! sends bytes. A notification on the channel that does not begin with a topic and a space is
//! delivered whole as the payload of the topic the channel names (`pubsub`). A foreign
//! listener reads our text the same way ([`pubsub_core::adapter::envelope`] for the headers).
//!
//! # Guarantees
//!
//! - **`publish` resolves `Ok` once the transaction of its `pg_notify` has committed**: the
//!   server has then queued the notification for every session listening on the channel at
//!   that moment (a session that `LISTEN`s later never gets it). Its commit does not wait for
//!   the disk (`synchronous_commit` is off for the session: a notification is never durable).
//! - **Delivery is at most once**: a notification is never stored; a session that is not
//!   connected when it commits misses it, and the subscriptions get an outage gap. A publish
//!   under way when the connection breaks fails with a temporary `Connection` error (it may or
//!   may not have committed); it is never sent again behind the caller's back.
//! - One handle's publishes reach every subscription in order (one session, one queue, in
//!   commit order).
//! - **Connection loss**: the connection task reconnects after the options' backoff; the kit
//!   listens again before the handle counts as up.
//! - **Half-open connections**: an empty query every heartbeat; one unanswered for two
//!   heartbeats ends the connection, which is made again. A zero heartbeat turns this off.
//!
//! # Limits
//!
//! - **Payload**: [`MAX_PAYLOAD`] (5 805 bytes), so that its base64 after the longest topic
//!   fits in the notification limit ([`MAX_NOTIFY`], 7 999 bytes); a message whose text
//!   (headers included) would be longer fails with `PayloadTooLarge` before any I/O.
//! - **Channels** are identifiers of at most 63 bytes ([`MAX_CHANNEL`]), quoted in `LISTEN`.
//! - **Streams and groups** are not offered: PostgreSQL keeps no notification once delivered;
//!   those calls fail with `Unsupported`.
//! - **TLS** is not offered yet (`sslmode=disable` only): use a trusted network or a tunnel.
//! - One session per handle: the listening one also publishes. Its own notifications come
//!   back to it, as to any listener, so a handle reads what it publishes.
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod config;
mod driver;
mod frame;

use std::sync::Arc;

use pubsub_core::adapter::{launch, Context, TopicMemo, Watchdog};
use pubsub_core::{Hub, Message, Result};

pub use config::{PostgresConfig, DEFAULT_CHANNEL, DEFAULT_PORT};
pub use frame::{MAX_CHANNEL, MAX_NOTIFY, MAX_PAYLOAD};

use driver::{PgDriver, Shared};

/// Connects to a PostgreSQL server and returns a handle.
///
/// Fails with a typed error when the server cannot be reached (the first connection is not
/// retried) or refuses the login (`Auth`); reconnects on its own afterwards.
pub async fn connect(config: PostgresConfig) -> Result<Hub> {
    frame::check_channel(&config.channel)?;
    launch(config.options.clone(), |cx: Context<String>| async move {
        let client_config = config.client_config();
        let (live, connection, utf8) = driver::open(&client_config, &cx.options)
            .await
            .map_err(|e| e.with_endpoint(config.endpoint()))?;
        let watchdog = Watchdog::start(cx.options.publish_timeout, &cx.tasks);
        let shared = Arc::new(Shared::new(config.channel.clone(), watchdog, cx.options));
        shared.set_live(live, utf8);
        let link = cx.supervisor.link();
        link.up();
        let task = driver::run(shared.clone(), client_config, connection, cx.inbound, link);
        cx.tasks.spawn(task);
        Ok(PgDriver { shared })
    })
    .await
}

/// The notification text a handle sends for `message` on a UTF-8 database: `<topic> <body>`
/// (see "Translation"); `PayloadTooLarge` when longer than [`MAX_NOTIFY`] bytes.
///
/// ```
/// let message = pubsub_core::Message::new("orders.created".parse()?, "{\"id\": 1}");
/// assert_eq!(pubsub_postgres::encode_notification(&message)?, "orders.created {\"id\": 1}");
/// # Ok::<(), pubsub_core::Error>(())
/// ```
pub fn encode_notification(message: &Message) -> Result<String> {
    frame::encode(message, true)
}

/// The message a handle reads from a notification's `text` on `channel`: ours, or a foreign
/// one (the whole text on the topic `channel` names; `None` when it names none).
///
/// ```
/// let got = pubsub_postgres::decode_notification("plain words", "pubsub").unwrap();
/// assert_eq!((got.topic().as_str(), got.payload().as_ref()), ("plain", &b"words"[..]));
/// let got = pubsub_postgres::decode_notification("hello", "pubsub").unwrap();
/// assert_eq!((got.topic().as_str(), got.payload().as_ref()), ("pubsub", &b"hello"[..]));
/// ```
pub fn decode_notification(text: &str, channel: &str) -> Option<Message> {
    frame::decode(text, channel, &mut TopicMemo::default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pubsub_core::ErrorKind;

    #[tokio::test]
    async fn a_server_that_is_not_there_is_a_connection_error() {
        let config = PostgresConfig::default().with_server("127.0.0.1", 1);
        let error = connect(config).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Connection, "{error}");
        assert_eq!(error.endpoint(), Some("127.0.0.1:1"));
    }
}
