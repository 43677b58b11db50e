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
//! | `*`, `>` | the handle's own discovery: every [`KafkaConfig::discovery_interval`] it reads the cluster's topics, decodes their names ([`decode_topic`]) and matches them with the core's matcher; a topic that existed when `subscribe` resolved starts at the end of its log, one created later at its beginning; a wildcard subscribe less than 250 ms (and one discovery interval) after a read of the topic list, with no topic created by the handle since, uses that read, so that many in a row read the list once, and a topic another client created in those 250 ms is found by the next pass (from its beginning) |
//! | headers | record headers, in order |
//! | delivery | one copy per handle however many filters match; the kit hands it to every matching subscription |
//! | stream (`declare_stream`) | a topic of its own with one partition, holding every message published under the root (see [Streams](#streams)) |
//! | group (`join_group`) | a Kafka consumer group on the stream's topic, manual commits, and a ledger topic of its own (see [Groups](#groups)) |
//!
//! librdkafka's regex subscriptions are not used: they refresh every five minutes and
//! rebalance on each change.
//!
//! # Streams
//!
//! A stream ([`PubSub::declare_stream`](pubsub_core::PubSub::declare_stream)) is a Kafka topic
//! of its own, with one partition, created by the first handle that declares it: named
//! `_pubsub-stream-` + the stream's tag in hex + `-` + its root encoded as topic names are
//! (`room.>` → `_pubsub-stream-1a2b3c4d-room.-3E`, cut to 249 characters; `_` keeps it apart
//! from every portable topic), with `retention.ms` = `max_age` and `cleanup.policy=delete`.
//!
//! - **Publishing** to a topic under a declared stream is one record to the stream's topic
//!   (partition 0) instead of the topic's own, with the portable topic as its first header
//!   (`pubsub-topic`): the same produce and delivery report as any publish, so the same
//!   throughput (one partition per stream: a stream's messages are in one order, and its
//!   throughput is one partition's).
//! - **Live**: a pattern under a stream is served by the stream's topic, assigned at the end of
//!   its log; each record is delivered with its position: the stream's tag, the log's epoch
//!   and `Offset(0, record offset + 1)` (an empty log ends at `Offset(0, 0)`).
//! - **History** (`StartAt::Start`, `After`, `Last`, `Time`, and the recovery after an
//!   outage): each stream has one reader consumer of its own, assigned to the partition at the
//!   offset wanted for each read and unassigned after; concurrent reads of the same place share
//!   one (a thousand subscriptions resuming at once after a cut cost two reads). `Time` uses the
//!   broker's time index (`offsets_for_times`).
//! - **Limits**: `max_age` is the topic's retention (the broker deletes whole segments, so a
//!   message may outlive it a little). Kafka keeps no count limit, so `max_len` is the replay
//!   bound: an entry more than `max_len` before the end is not replayed, and a position older
//!   than that reads as [`Gap::History`](pubsub_core::Gap) with the number missed; the
//!   messages stay on disk until the retention removes them (set `retention.bytes` on the
//!   topic yourself to bound its size).
//! - **Epoch**: the topic's id (DescribeTopics; the hash of its name on a broker without
//!   ids), read when the stream is declared. A position beyond the log's end (a log deleted and
//!   created again, whose offsets started over) reads as a reset gap, then the new log. A
//!   handle that lives through such a re-creation keeps the id it read: declare again on a new
//!   handle.
//! - **Declaring**: every handle that publishes or subscribes under a stream must declare it,
//!   before it publishes or subscribes there (a handle that has not publishes to the topics'
//!   own Kafka topics, which subscribers under the stream do not read). The limits are checked
//!   per handle: a declaration with other limits than the topic's retention is not detected
//!   across handles. A wildcard pattern that overlaps a stream's root without being under it
//!   (`>` beside a stream `room.>`) reads the stream's topic as well as the others, if the
//!   stream was declared before it subscribed.
//! - **Cost**: one topic and one idle reader consumer per declared stream; a subscription
//!   under a stream costs a watermark query (and a fetch when something was appended since the
//!   last read); a replay costs a fetch per 512 messages.
//! - **Tansu** (the test broker) reports the high watermark a batch short; the reader reads
//!   the whole last batch to find the real end, and remembers it while the watermark stays.
//!
//! # Groups
//!
//! A group ([`PubSub::join_group`](pubsub_core::PubSub::join_group)) on a declared stream is
//! a Kafka consumer group on the stream's topic, `group.id` = `pubsub-` + the stream's tag in
//! hex + `-` + the group's name, with `partition.assignment.strategy=cooperative-sticky` and
//! no automatic commits.
//!
//! - **One member reads at a time**: the stream's topic has one partition, and a consumer
//!   group gives a partition to one member; the other members stand by and take over when it
//!   leaves or dies (a rebalance). Members do not share the work; a group scales by failover,
//!   not by adding members.
//! - **Members**: each member has a consumer of its own, subscribed on its first read and
//!   closed when it leaves (or its handle closes or is dropped): closing sends `LeaveGroup`,
//!   so another member takes over at once. A member that dies without leaving loses the
//!   partition after the session timeout (6 s); one that reads nothing for longer than the ack
//!   deadline plus that (its prefetch full of held deliveries) leaves the consumer group too.
//! - **Acknowledgements**: the member that reads keeps its unsettled deliveries (due again
//!   after the ack deadline or a nack's delay) and commits, asynchronously after each batch of
//!   settlements, the lowest unsettled offset. A member that takes over resumes from the
//!   committed offset: what was acknowledged after an unsettled delivery comes again (at
//!   least once).
//! - **Start**: a new group's first commit is where it starts (the end, the start of what the
//!   stream holds, or after a position); an existing group goes on from its committed offset.
//! - **Ledger**: a topic of its own per group, `_pubsub-group-<tag>-<name>` (one partition,
//!   compacted), holding the group's settings (its first record: a member joining with others
//!   fails with `Invalid`) and, written before the deliveries are handed out, the highest
//!   offset delivered so far: a member that takes over counts a record at or below it as
//!   delivered twice (at least). Kafka could keep both in the commit's metadata, but Tansu
//!   accepts commit metadata and answers it empty.
//! - **Tansu** (the test broker) answers a consumer group's join after about 3 s, so a
//!   member's first delivery, and a takeover, take about that long. A member that joins after
//!   the reading one left gets the partition then; but one that joined while another read
//!   (a standby) did not get it after that one left, within 90 s, with either assignment
//!   strategy, nor after leaving and joining again: on Tansu, failover to a standby does not
//!   happen. The adapter closes a member's consumer within 100 ms of its handle going, so that
//!   it has left before another handle's member joins.
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
mod group;
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

pub use config::{KafkaConfig, DEFAULT_MAX_PAYLOAD, MAX_PAYLOAD_CEILING};

/// How many times the Kafka handles of this process have read the cluster's topic list (the
/// wildcard subscriptions' and discovery's metadata reads), for tests of how those reads are
/// shared; not a stable API.
#[doc(hidden)]
pub fn topic_list_reads() -> u64 {
    driver::topic_list_reads()
}
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
