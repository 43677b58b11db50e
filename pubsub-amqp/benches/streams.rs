//! What a stream costs and gives on RabbitMQ, each figure against the same work without it or
//! with raw lapin, in interleaved rounds of one run (`pubsub_test_support::stream_bench::run`):
//!
//! - *publish*: N × 64 B (128 in flight, publisher confirms) to a topic under a stream (the
//!   exchange also routes it to the stream queue, whose consumer gives the live copy its
//!   offset) while one subscription reads them, vs a topic under no stream;
//! - *replay*: a subscription from the start of a stream holding 100 000 × 64 B, read to the
//!   end, vs raw lapin consuming the same stream queue from `first` (prefetch 1 000, an ack
//!   for every 500);
//! - *latency*: p50 publish-to-receipt, one message per millisecond, under a stream vs not;
//! - *mass resume*: 1 000 subscriptions on a handle cut off (a TCP proxy) while 1 000
//!   messages are published: the time from the restore until every one has read them all.
//!
//! Run: `cargo bench -p pubsub-amqp --bench streams` (RabbitMQ 3.9+ at `PUBSUB_AMQP_URL`;
//! `BENCH_ROUNDS=<n>`, default 5; `BENCH_QUICK=1` for a tenth of the volumes).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use pubsub_amqp::lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use pubsub_amqp::lapin::types::{AMQPValue, FieldTable};
use pubsub_amqp::lapin::{Connection, ConnectionProperties};
use pubsub_amqp::AmqpConfig;
use pubsub_bench::Settings;
use pubsub_core::{Hub, WithOptions};
use pubsub_test_support::broker::{amqp_addr, amqp_url};
use pubsub_test_support::kit::{fast_backoff, FaultedDeadlines};
use pubsub_test_support::proxy::TcpProxy;
use pubsub_test_support::stream_bench::{self, Bench, Cuttable};

const ROUNDS: usize = 5;
const PREFETCH: u16 = 1_000;

async fn handle(config: AmqpConfig) -> Hub {
    pubsub_amqp::connect(config)
        .await
        .expect("RabbitMQ must be reachable")
}

/// Consumes the `n` messages of the stream queue of `<prefix>.>` from its first with raw
/// lapin: the time.
async fn raw_replay(connection: &Connection, prefix: String, n: usize) -> Duration {
    let start = Instant::now();
    let root = format!("{prefix}.>");
    let tag = stream_bench::stream(&prefix, 1).tag();
    let queue = format!("pubsub.stream.{tag:08x}.{root}");
    let channel = connection.create_channel().await.expect("channel");
    channel
        .basic_qos(PREFETCH, BasicQosOptions::default())
        .await
        .expect("qos");
    let arguments = FieldTable::from(BTreeMap::from([(
        "x-stream-offset".into(),
        AMQPValue::LongString("first".into()),
    )]));
    let mut consumer = channel
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            arguments,
        )
        .await
        .expect("consume");
    for i in 1..=n {
        let delivery = consumer
            .next()
            .await
            .expect("a delivery")
            .expect("no error");
        if i % usize::from(PREFETCH / 2) == 0 || i == n {
            delivery
                .acker
                .ack(BasicAckOptions { multiple: true })
                .await
                .expect("ack");
        }
    }
    let took = start.elapsed();
    let _ = channel.close(200, "done".into()).await;
    took
}

fn main() {
    let settings = Settings::from_env(ROUNDS);
    pubsub_bench::runtime().block_on(async {
        let config = || AmqpConfig::from_url(&amqp_url()).expect("valid URL");
        let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
            .await
            .expect("RabbitMQ must be reachable");
        let proxy = TcpProxy::start(&amqp_addr()).await.expect("proxy");
        let addr = proxy.local_addr();
        let cut = handle(
            config()
                .with_server(addr.ip().to_string(), addr.port())
                .with_faulted_deadlines()
                .with_backoff(fast_backoff()),
        )
        .await;
        let bench = Bench {
            backend: "RabbitMQ",
            publisher: handle(config()).await,
            reader: handle(config()).await,
            raw_replay: (
                Box::new(|prefix, n| Box::pin(raw_replay(&connection, prefix, n))),
                "lapin stream consumer",
            ),
            cuttable: Some(Cuttable::through(cut, &proxy)),
            replay_held: stream_bench::REPLAY_HELD,
        };
        stream_bench::run(bench, &settings).await;
    });
}
