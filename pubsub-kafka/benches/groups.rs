//! What a group costs on Kafka: one member consuming N × 64 B with an ack each, through the
//! portable API vs raw rdkafka doing the same with a consumer group, in interleaved rounds of
//! one run.
//!
//! Each round declares a stream of its own (a Kafka topic with one partition) and fills it
//! (not timed), then times from the join (or the consumer's creation) until every message was
//! received and acknowledged. On the test broker (Tansu) a consumer group's first join is
//! answered after about 3 s on both sides, which dominates both columns; the raw consumer
//! has its records fetched by then (librdkafka prefetches while the join completes) and
//! drains them in milliseconds, while a member hands them out at most a prefetch at a time
//! and waits for the acks:
//!
//! - *ours*: `join_group` starting at the stream's start, a prefetch of [`BATCH`], `recv` +
//!   `ack` per message, the last ack awaited;
//! - *raw*: a `BaseConsumer` in a consumer group of its own subscribed to the stream's topic
//!   (`auto.offset.reset=earliest`, no automatic commits), polling, and committing
//!   asynchronously after every [`BATCH`] records, with the member's group settings
//!   (`cooperative-sticky`, a 6 s session, 1 s heartbeats: with librdkafka's defaults
//!   Tansu answers the first join after some 20 s).
//!
//! Both fetch with `fetch.wait.max.ms=100` (see the streams bench for why).
//!
//! Run: `cargo bench -p pubsub-kafka --bench groups` (Kafka at `PUBSUB_KAFKA_URL`;
//! `BENCH_ROUNDS=<n>`, default 5; `BENCH_QUICK=1` for a tenth of the messages).

use std::time::{Duration, Instant};

use pubsub_bench::{interleave_async, Settings, Side};
use pubsub_core::{GroupConfig, Hub, StartAt, Topic};
use pubsub_kafka::rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use pubsub_kafka::rdkafka::ClientConfig;
use pubsub_kafka::{encode_topic, KafkaConfig};
use pubsub_test_support::broker::kafka_url;
use pubsub_test_support::group_bench::{members_consume, redelivery_row};
use pubsub_test_support::stream_bench;

const ROUNDS: usize = 5;
/// Messages per round.
const MESSAGES: usize = 20_000;
/// The member's prefetch, and how many records the raw consumer commits after.
const BATCH: usize = 64;
/// Publishes in flight while filling.
const WINDOW: usize = 128;
const FETCH_WAIT: Duration = Duration::from_millis(100);

fn config() -> KafkaConfig {
    KafkaConfig::from_url(&kafka_url())
        .expect("valid URL")
        .with_fetch_wait(FETCH_WAIT)
}

/// One member of a new group reads the stream `<prefix>.>` from the start: the time until
/// all `n` are acknowledged.
async fn ours(hub: &Hub, prefix: &str, n: usize) -> Duration {
    let name = prefix.replace(['.', '_'], "-");
    let group = GroupConfig::new(
        &name,
        vec![format!("{prefix}.>").parse().expect("a pattern")],
    )
    .expect("a group")
    .starting_at(StartAt::Start)
    .with_prefetch(BATCH);
    members_consume(std::slice::from_ref(hub), &group, n).await
}

/// A raw consumer group reads the stream topic of `<prefix>.>` from the start, committing
/// asynchronously every `BATCH` records: the time until all `n` are read.
async fn raw(prefix: String, n: usize) -> Duration {
    tokio::task::spawn_blocking(move || {
        let start = Instant::now();
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", config().servers.join(","))
            .set("socket.nagle.disable", "true")
            .set("group.id", pubsub_bench::run_id("raw-group"))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .set("auto.offset.reset", "earliest")
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "1000")
            .set("fetch.wait.max.ms", FETCH_WAIT.as_millis().to_string())
            .create()
            .expect("consumer");
        let root = format!("{prefix}.x").parse::<Topic>().expect("topic");
        let encoded = encode_topic(&root).expect("name");
        let encoded = encoded.trim_end_matches(".x");
        let metadata = consumer
            .fetch_metadata(None, Duration::from_secs(10))
            .expect("metadata");
        let name = metadata
            .topics()
            .iter()
            .map(|t| t.name().to_string())
            .find(|name| name.starts_with("_pubsub-stream-") && name.contains(encoded))
            .expect("the stream's topic");
        consumer.subscribe(&[&name]).expect("subscribe");
        let mut read = 0;
        while read < n {
            if let Some(m) = consumer.poll(Duration::from_secs(5)) {
                m.expect("a record");
                read += 1;
                if read % BATCH == 0 || read == n {
                    consumer
                        .commit_consumer_state(CommitMode::Async)
                        .expect("commit");
                }
            }
        }
        start.elapsed()
    })
    .await
    .expect("join")
}

/// The ack deadline of the redelivery row.
const KILL_DEADLINE: Duration = Duration::from_secs(1);

fn main() {
    let settings = Settings::from_env(ROUNDS);
    let n = settings.count(MESSAGES, 10);
    pubsub_bench::runtime().block_on(async {
        let run = pubsub_bench::run_id("groups");
        let hub = pubsub_kafka::connect(config())
            .await
            .expect("Kafka must be reachable");
        let mut round = 0;
        let timed = interleave_async(settings.rounds, |side| {
            round += 1;
            let prefix = format!("{run}-r{round}");
            let hub = &hub;
            async move {
                let stream = stream_bench::stream(&prefix, n as u64 * 2);
                hub.declare_stream(stream).await.expect("declare");
                stream_bench::fill(hub, &format!("{prefix}.x"), n, WINDOW).await;
                match side {
                    Side::Adapter => ours(hub, &prefix, n).await,
                    Side::Raw => raw(prefix, n).await,
                }
            }
        })
        .await;
        let rate = |d: Duration| n as f64 / d.as_secs_f64();
        println!(
            "Kafka groups: 1 member, {n} x 64 B, ack each, batch {BATCH} (median of {} \
             interleaved rounds; each includes the first join)",
            settings.rounds
        );
        println!(
            "  raw consumer group : {:>10.0} msg/s",
            rate(timed.base_median())
        );
        println!(
            "  group member       : {:>10.0} msg/s",
            rate(timed.ours_median())
        );
        println!("  ratio ours/raw = {}", timed.ratio_cell());
        let prefix = format!("{run}-kill");
        hub.declare_stream(stream_bench::stream(&prefix, 1_000))
            .await
            .expect("declare");
        redelivery_row(
            "Kafka",
            &hub,
            || async {
                let doomed = pubsub_kafka::connect(config()).await.expect("connect");
                doomed
                    .declare_stream(stream_bench::stream(&prefix, 1_000))
                    .await
                    .expect("declare");
                doomed
            },
            &prefix.replace('.', "-"),
            &format!("{prefix}.>"),
            KILL_DEADLINE,
            settings.rounds,
        )
        .await;
        hub.close().await.expect("close");
    });
}
