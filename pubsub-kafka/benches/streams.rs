//! What a stream costs and gives on Kafka, each figure against the same work without it or
//! with raw rdkafka, in interleaved rounds of one run (`pubsub_test_support::stream_bench::run`):
//!
//! - *publish*: N × 64 B (128 in flight, delivery reports) to a topic under a stream (a record
//!   on the stream's own Kafka topic) while one subscription reads them, vs a topic under no
//!   stream (its own Kafka topic);
//! - *replay*: a subscription from the start of a stream holding 50 000 × 64 B, read to the
//!   end, vs raw rdkafka (a `BaseConsumer` assigned the stream's partition at its start);
//! - *latency*: p50 publish-to-receipt, one message per millisecond, under a stream vs not.
//!
//! Both sides fetch with `fetch.wait.max.ms=100`: the test broker (Tansu with memory storage)
//! answers a fetch empty once listing a partition's batches takes longer than that, so 50 000
//! single-record batches is what it serves comfortably. No mass-resume row: a Kafka client
//! reconnects to the address its broker advertises, past a proxy (the conformance suite's
//! `stream_mass_resume` covers it with a broker of its own).
//!
//! Run: `cargo bench -p pubsub-kafka --bench streams` (Kafka at `PUBSUB_KAFKA_URL`;
//! `BENCH_ROUNDS=<n>`, default 5; `BENCH_QUICK=1` for a tenth of the volumes).

use std::time::{Duration, Instant};

use pubsub_bench::Settings;
use pubsub_core::{Hub, Topic};
use pubsub_kafka::rdkafka::consumer::{BaseConsumer, Consumer};
use pubsub_kafka::rdkafka::{ClientConfig, Offset, TopicPartitionList};
use pubsub_kafka::{encode_topic, KafkaConfig};
use pubsub_test_support::broker::kafka_url;
use pubsub_test_support::stream_bench::{self, Bench};

const ROUNDS: usize = 5;
const FETCH_WAIT: Duration = Duration::from_millis(100);

fn config() -> KafkaConfig {
    KafkaConfig::from_url(&kafka_url())
        .expect("valid URL")
        .with_fetch_wait(FETCH_WAIT)
}

async fn handle() -> Hub {
    pubsub_kafka::connect(config())
        .await
        .expect("Kafka must be reachable")
}

/// Reads the `n` records of the stream topic of `<prefix>.>` from its start with raw
/// rdkafka: the time.
async fn raw_replay(prefix: String, n: usize) -> Duration {
    tokio::task::spawn_blocking(move || {
        let start = Instant::now();
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", config().servers.join(","))
            .set("socket.nagle.disable", "true")
            .set("group.id", pubsub_bench::run_id("raw-replay"))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .set("fetch.wait.max.ms", FETCH_WAIT.as_millis().to_string())
            .create()
            .expect("consumer");
        let encoded = encode_topic(&prefix.parse::<Topic>().expect("topic")).expect("name");
        let metadata = consumer
            .fetch_metadata(None, Duration::from_secs(10))
            .expect("metadata");
        let name = metadata
            .topics()
            .iter()
            .map(|t| t.name().to_string())
            .find(|name| name.starts_with("_pubsub-stream-") && name.contains(&encoded))
            .expect("the stream's topic");
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(&name, 0, Offset::Beginning)
            .expect("offset");
        consumer.assign(&list).expect("assign");
        let mut read = 0;
        while read < n {
            if let Some(m) = consumer.poll(Duration::from_secs(5)) {
                m.expect("a record");
                read += 1;
            }
        }
        start.elapsed()
    })
    .await
    .expect("join")
}

fn main() {
    let settings = Settings::from_env(ROUNDS);
    pubsub_bench::runtime().block_on(async {
        let bench = Bench {
            backend: "Kafka",
            publisher: handle().await,
            reader: handle().await,
            raw_replay: (
                Box::new(|prefix, n| Box::pin(raw_replay(prefix, n))),
                "rdkafka from the start",
            ),
            cuttable: None,
            replay_held: 50_000,
        };
        stream_bench::run(bench, &settings).await;
    });
}
