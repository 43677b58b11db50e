//! One portable pub/sub API over several brokers.
//!
//! Applications hold a [`Hub`] (a cheap, cloneable handle that implements [`PubSub`]) from
//! [`connect`] and never name a backend: switching from the in-process memory backend to Redis,
//! NATS or RabbitMQ is a Cargo feature and a URL. Every URL takes the [`CommonOptions`] as query
//! parameters (`?buffer=4096&publish_timeout=2s`).
//!
//! | scheme | backend | feature |
//! |---|---|---|
//! | `memory://` or `memory://NAME` | in-process ([`memory`]) | always on |
//! | `redis://`, `rediss://` | Redis (fred) | `redis` |
//! | `nats://`, `tls://` | NATS (async-nats) | `nats` |
//! | `amqp://`, `amqps://` | RabbitMQ, AMQP 0-9-1 (lapin) | `amqp` |
//! | `kafka://host:port[,host:port]`, `kafkas://` | Kafka (rdkafka) | `kafka` |
//! | `mqtt://`, `mqtts://` | MQTT 5, e.g. Mosquitto (rumqttc) | `mqtt` |
//! | `postgres://`, `postgresql://` | PostgreSQL `LISTEN`/`NOTIFY` (tokio-postgres) | `postgres` |
//!
//! Credentials go in the URL (`redis://user:password@…`, `nats://token@…`); a lone `x@` is
//! read as a secret on every backend but PostgreSQL, never as a user name: the password on
//! Redis, the token on NATS, refused on AMQP and MQTT (which have no login by a secret alone).
//! On PostgreSQL it is the user name, as in libpq's URLs (`postgres://app@host/db`). Wrong credentials
//! and TLS certificates that do not verify fail `connect` at once with [`ErrorKind::Auth`],
//! which is never temporary. Errors never contain any text of the URL; `Debug` of a configuration
//! never shows a password or token.
//!
//! ```
//! # async fn demo() -> pubsub::Result<()> {
//! use pubsub::{Message, PubSub};
//!
//! let ps = pubsub::connect("memory://docs").await?;
//! let mut room = ps.subscribe("room.42.>".parse()?).await?;
//! ps.publish(Message::new("room.42.msg".parse()?, "hello")).await?;
//! assert_eq!(room.recv().await.unwrap().payload().as_ref(), b"hello");
//! ps.close().await?;
//! # Ok(()) }
//! # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
//! ```
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod connect;
mod signal;

pub use connect::{connect, Scheme};
pub use pubsub_core::{
    headers, memory, pattern, topic, Backoff, CommonOptions, ConnectionState, Deliveries, Delivery,
    EndReason, Error, ErrorKind, Gap, GroupConfig, GroupMessage, GroupSubscription, Headers, Hub,
    Message, MessageBuilder, Offset, Operation, Overflow, Pattern, Position, PubSub, Result,
    Secret, StartAt, Stats, StreamConfig, SubscribeOptions, Subscription, TlsOptions, Token,
    TokenError, Topic, WithOptions, DEFAULT_BUFFER, DEFAULT_HEARTBEAT, DEFAULT_STREAM_MAX_AGE,
    DEFAULT_STREAM_MAX_LEN, MAX_TOPIC_LEN,
};
pub use signal::shutdown_signal;

/// The envelope: the small binary frame that carries a message's headers beside its payload on
/// a broker without native headers (Redis, unless `raw_payloads`). A consumer outside this
/// library tells a frame from a plain payload by its first four bytes, [`envelope::MAGIC`]
/// (`F5 'P' 'S' 'E'`; `0xF5` never starts UTF-8 text), followed by [`envelope::VERSION`], and
/// reads it with [`envelope::decode`] (headers and payload) or [`envelope::Frame::parse`] (in
/// place, nothing copied); bytes without the magic are a plain payload. The layout is in the
/// module's documentation.
///
/// ```
/// use pubsub::{envelope, Headers};
///
/// let mut headers = Headers::new();
/// headers.insert("trace", "abc")?;
/// let frame = envelope::encode(&headers, &"hello".into());
/// assert!(frame.starts_with(&envelope::MAGIC));
/// let decoded = envelope::decode(frame)?;
/// assert_eq!((decoded.headers.get("trace"), &decoded.payload[..]), (Some("abc"), &b"hello"[..]));
/// // A payload without the magic is a plain payload.
/// assert!(!b"plain".starts_with(&envelope::MAGIC));
/// # Ok::<(), pubsub::Error>(())
/// ```
pub use pubsub_core::adapter::envelope;

/// The Redis adapter (feature `redis`).
#[cfg(feature = "redis")]
pub use pubsub_redis as redis;

/// The NATS adapter (feature `nats`).
#[cfg(feature = "nats")]
pub use pubsub_nats as nats;

/// The MQTT adapter (feature `mqtt`).
#[cfg(feature = "mqtt")]
pub use pubsub_mqtt as mqtt;

/// The PostgreSQL `LISTEN`/`NOTIFY` adapter (feature `postgres`).
#[cfg(feature = "postgres")]
pub use pubsub_postgres as postgres;

/// The Kafka adapter (feature `kafka`).
#[cfg(feature = "kafka")]
pub use pubsub_kafka as kafka;

/// The AMQP 0-9-1 adapter for RabbitMQ (feature `amqp`).
#[cfg(feature = "amqp")]
pub use pubsub_amqp as amqp;
