//! Kafka adapter for the portable pub/sub API, built on [rdkafka](https://docs.rs/rdkafka)
//! (librdkafka).
//!
//! [`connect`] returns a [`Hub`]: the core's adapter kit in front of this crate's Kafka
//! driver. Everything the portable API promises (exact matching, one copy per subscription,
//! bounded buffers, batched and retried subscription changes, connection state, `close`)
//! comes from the kit; this crate translates to Kafka.
//!
//! ```no_run
//! # async fn demo() -> pubsub_core::Result<()> {
//! use pubsub_core::{Message, PubSub};
//! use pubsub_kafka::KafkaConfig;
//!
//! let ps = pubsub_kafka::connect(KafkaConfig::from_url("kafka://127.0.0.1:9092")?).await?;
//! let mut room = ps.subscribe("room.42.>".parse()?).await?; // discovery of room.42.* topics
//! let msg = Message::builder("room.42.msg".parse()?)
//!     .payload("hello")
//!     .header("sender", "ada")
//!     .build()?;
//! ps.publish(msg).await?; // resolves on the delivery report
//! let got = room.recv().await.expect("a message");
//! assert_eq!(got.headers().get("sender"), Some("ada"));
//! ps.close().await?;
//! # Ok(()) }
//! ```
//!
//! # Translation
//!
//! | portable | Kafka |
//! |---|---|
//! | topic `a.b` | topic named by [`encode_topic`]: letters and digits as they are, `.` between tokens, any other byte `-HH`; never `_`; over 249 characters is an `Invalid` error |
//! | publish | one record (key: the handle's id, so one publisher's messages to a topic stay in one partition and in order), resolving on its delivery report; the topic is created first, with [`KafkaConfig::partitions`] (default 1) |
//! | a handle | one producer (idempotent, `acks=all`, `linger.ms` from [`KafkaConfig::linger`]) and one consumer with a unique `group.id`, manual assignment, no commits |
//! | exact pattern | the topic is created if missing and its partitions are assigned at the end of their logs (read before `subscribe` resolves: the high watermark, checked against the records by a probe consumer, since a broker may misreport it) |
//! | `*`, `>` | the handle's own discovery: every [`KafkaConfig::discovery_interval`] it reads the cluster's topics, decodes their names ([`decode_topic`]) and matches them with the core's matcher; a topic that existed when `subscribe` resolved starts at the end of its log, one created later at its beginning |
//! | headers | record headers, in order |
//! | delivery | one copy per handle however many filters match; the kit hands it to every matching subscription |
//!
//! librdkafka's regex subscriptions are not used: they refresh every five minutes and
//! rebalance on each change.
//!
//! # Foreign records
//!
//! A record on an assigned topic from another producer is delivered with its payload as it
//! is. Its headers are read as raw bytes (rdkafka's own accessors panic on non-UTF-8 keys):
//! a header whose key or value is not UTF-8, or not a valid portable header, is left out and
//! the record is delivered with the others. Topics whose names do not decode are not ours and
//! never match a pattern.
//!
//! # Connection loss
//!
//! librdkafka reconnects by itself and keeps the consumer's assignment and positions. When
//! every broker connection of a client is lost the handle reports itself down; a task probes
//! the cluster with the handle's backoff and reports it up again once it answers. While down,
//! `publish` waits up to the publish timeout. An idempotent producer fenced by the broker
//! after an outage is replaced (that publish fails with a temporary `Connection` error).
//!
//! # The application's configuration
//!
//! [`KafkaConfig::with_client_config`] starts from the application's own
//! [`rdkafka::ClientConfig`] (TLS, SASL, tuning); [`KafkaConfig::with_setting`] adds single
//! librdkafka settings. Their values never show in `Debug`.
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod config;
mod driver;
mod headers;
mod health;
mod log_end;
mod name;
mod raw;
mod stream;
mod stream_log;
mod topics;

/// The decoders of wire data, for the fuzz targets in `fuzz/` (not a stable API).
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    use pubsub_core::Headers;

    /// Portable headers of raw record headers (key, value or null), and how many were left
    /// out.
    pub fn headers_from_raw<'a>(
        raw: impl IntoIterator<Item = (&'a [u8], Option<&'a [u8]>)>,
    ) -> (Headers, usize) {
        let mut decoder = crate::headers::Decoder::default();
        for (key, value) in raw {
            decoder.push(key, value);
        }
        decoder.finish()
    }

    /// The raw record headers (key, value) this adapter sends for portable headers.
    pub fn headers_to_raw(headers: &Headers) -> Vec<(Vec<u8>, Vec<u8>)> {
        use rdkafka::message::Headers as _;
        let Some(owned) = crate::headers::encode(headers) else {
            return Vec::new();
        };
        owned
            .iter()
            .map(|h| {
                (
                    h.key.as_bytes().to_vec(),
                    h.value.unwrap_or_default().to_vec(),
                )
            })
            .collect()
    }
}

pub use config::{KafkaConfig, DEFAULT_MAX_PAYLOAD};
pub use driver::KafkaFilter;
pub use name::{decode_topic, encode_topic, MAX_NAME};
pub use rdkafka;

use driver::KafkaDriver;
use pubsub_core::adapter::launch;
use pubsub_core::{Hub, Result};

/// Connects to the cluster as `config` says and returns a `PubSub` handle.
///
/// Fails with a connection error if the cluster does not answer within the connect timeout.
pub async fn connect(config: KafkaConfig) -> Result<Hub> {
    config.validate()?;
    launch(config.options.clone(), move |cx| {
        KafkaDriver::open(config, cx)
    })
    .await
}
