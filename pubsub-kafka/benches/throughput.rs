//! Throughput and latency of the Kafka adapter next to raw rdkafka doing the same work.
//!
//! Run with `cargo bench -p pubsub-kafka` (Kafka at `PUBSUB_KAFKA_URL`, default Tansu on
//! `kafka://127.0.0.1:9092`). Each row: one publisher sends N messages to one topic (at most
//! `WINDOW` publishes in flight, each resolving on its delivery report) and 1 or 10
//! subscriptions receive all of them. Both sides use the adapter's defaults: an idempotent
//! producer with `acks=all`, `linger.ms=0`, the handle's id as record key; a consumer with
//! `fetch.wait.max.ms=10`, assigned the topic's partition at its high watermark. The adapter
//! uses one handle; raw rdkafka uses a `FutureProducer` and a `BaseConsumer` polled on a
//! thread of its own that fans each payload out to one channel per subscription, as the
//! adapter's router does. Every payload carries its send time, so latency is
//! publish-call-to-receipt.
//!
//! The harness (rounds interleaved adapter / raw, medians, the table, `BENCH_QUICK=1` for a
//! smoke run, `BENCH_ROWS`, `BENCH_ROUNDS`, `BENCH_MODE=adapter|raw`) is
//! `pubsub_bench`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use pubsub_bench::{publish_pipelined, stamp, Outcome, Row};
use pubsub_core::Topic;
use pubsub_kafka::rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use pubsub_kafka::rdkafka::client::DefaultClientContext;
use pubsub_kafka::rdkafka::consumer::{BaseConsumer, Consumer};
use pubsub_kafka::rdkafka::producer::{FutureProducer, FutureRecord};
use pubsub_kafka::rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use pubsub_kafka::{encode_topic, KafkaConfig};
use pubsub_test_support::broker::kafka_url;
use pubsub_test_support::throughput::connect_and_run;

/// Publishes in flight.
const WINDOW: usize = 128;
/// Rounds per row (each runs the adapter and raw rdkafka once).
const ROUNDS: usize = 5;

async fn run_adapter(row: Row, topic: String) -> Outcome {
    let config = KafkaConfig::from_url(&kafka_url()).expect("valid URL");
    connect_and_run(pubsub_kafka::connect(config), "Kafka", row, &topic, WINDOW).await
}

fn base() -> ClientConfig {
    let config = KafkaConfig::from_url(&kafka_url()).expect("valid URL");
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", config.servers.join(","))
        .set("socket.nagle.disable", "true");
    c
}

async fn run_raw(row: Row, topic: String) -> Outcome {
    let topic = topic.as_str();
    let name = encode_topic(&topic.parse::<Topic>().expect("topic")).expect("name");
    let admin: AdminClient<DefaultClientContext> = base().create().expect("admin");
    let new = NewTopic::new(&name, 1, TopicReplication::Fixed(1));
    admin
        .create_topics([&new], &AdminOptions::new())
        .await
        .expect("create topic");
    let producer: FutureProducer = base()
        .set("linger.ms", "0")
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()
        .expect("producer");
    // Warm the producer (its id) as the adapter does at connect.
    let warm = FutureRecord::<[u8], [u8]>::to("__pubsub_warmup").payload(&[]);
    let _ = producer.send(warm, Duration::from_secs(5)).await;
    let consumer: Arc<BaseConsumer> = Arc::new(
        base()
            .set("group.id", pubsub_bench::run_id("raw-group"))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .set("fetch.wait.max.ms", "10")
            .create()
            .expect("consumer"),
    );
    let (_, high) = {
        let (consumer, name) = (consumer.clone(), name.clone());
        tokio::task::spawn_blocking(move || {
            consumer.fetch_watermarks(&name, 0, Duration::from_secs(5))
        })
        .await
        .expect("join")
        .expect("watermarks")
    };
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(&name, 0, Offset::Offset(high))
        .expect("offset");
    consumer.incremental_assign(&list).expect("assign");

    let mut receivers = row.receivers();
    let senders = receivers.spawn_channels(row.subs);
    let stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let (consumer, stop) = (consumer.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                    let payload = Bytes::copy_from_slice(m.payload().unwrap_or_default());
                    for tx in &senders {
                        let _ = tx.unbounded_send(payload.clone());
                    }
                }
            }
        })
    };
    let key = 7u64.to_be_bytes();
    let name: Arc<str> = name.into();
    let (started, published) = publish_pipelined(row.count, WINDOW, |seq| {
        let (producer, name) = (producer.clone(), name.clone());
        let payload = stamp(seq, row.size);
        async move {
            let record = FutureRecord::to(&name)
                .payload(payload.as_ref())
                .key(&key[..]);
            producer
                .send(record, Duration::from_secs(5))
                .await
                .map(drop)
                .map_err(|(e, _)| e)
        }
    })
    .await;
    let outcome = receivers.finish(started, published).await;
    stop.store(true, Ordering::Relaxed);
    let _ = tokio::task::spawn_blocking(move || poller.join()).await;
    outcome
}

fn main() {
    let title = format!(
        "Kafka (Tansu), 1 publisher ({WINDOW} publishes in flight, idempotent, acks=all, linger.ms=0, fetch.wait.max.ms=10), adapter and raw rdkafka interleaved"
    );
    pubsub_bench::throughput_main(ROUNDS, &title, run_adapter, run_raw);
}
