//! Throughput and latency of the AMQP adapter next to raw lapin doing the same work.
//!
//! Run with `cargo bench -p pubsub-amqp` (RabbitMQ at `PUBSUB_AMQP_URL`, default
//! `amqp://guest:guest@127.0.0.1:5672/%2f`). Each row: one publisher sends N messages to one
//! topic (pipelined, at most `WINDOW` publishes in flight, each resolving on its publisher
//! confirm) and 1 or 10 subscriptions receive all of them. The adapter uses one handle; raw
//! lapin uses one connection with a confirm-mode channel for publishing and one channel whose
//! queue (same arguments, same prefetch, the same batched `multiple` acks) is bound to the
//! topic and consumed by a task that fans each payload out to one channel per subscription,
//! as the adapter's router does. Every payload carries its send time, so latency is
//! publish-call-to-receipt.
//!
//! The harness (rounds interleaved adapter / raw, medians, the table, `BENCH_QUICK=1` for a
//! smoke run, `BENCH_ROWS`, `BENCH_ROUNDS`, `BENCH_MODE=adapter|raw`) is
//! `pubsub_bench`.

use std::sync::Arc;

use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use pubsub_amqp::lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use pubsub_amqp::lapin::types::{AMQPValue, FieldTable};
use pubsub_amqp::lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};
use pubsub_amqp::AmqpConfig;
use pubsub_bench::{publish_pipelined, stamp, Outcome, Row};
use pubsub_test_support::broker::amqp_url;
use pubsub_test_support::throughput::connect_and_run;

/// Publishes in flight.
const WINDOW: usize = 128;
/// Rounds per row (each runs the adapter and raw lapin once).
const ROUNDS: usize = 7;
/// The adapter's defaults, used by both sides.
const PREFETCH: u16 = 1000;
const MAX_LENGTH: i64 = 100_000;

async fn run_adapter(row: Row, topic: String) -> Outcome {
    let config = AmqpConfig::from_url(&amqp_url()).expect("valid URL");
    connect_and_run(
        pubsub_amqp::connect(config),
        "RabbitMQ",
        row,
        &topic,
        WINDOW,
    )
    .await
}

async fn run_raw(row: Row, topic: String) -> Outcome {
    let topic = topic.as_str();
    let conn = Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .expect("RabbitMQ must be reachable");
    let publisher = conn.create_channel().await.expect("channel");
    publisher
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let ch = conn.create_channel().await.expect("channel");
    let table = FieldTable::default;
    ch.exchange_declare(
        "pubsub".into(),
        ExchangeKind::Topic,
        ExchangeDeclareOptions::default(),
        table(),
    )
    .await
    .expect("exchange");
    let mut args = table();
    args.insert("x-max-length".into(), AMQPValue::LongLongInt(MAX_LENGTH));
    args.insert(
        "x-overflow".into(),
        AMQPValue::LongString("drop-head".into()),
    );
    let queue = QueueDeclareOptions {
        exclusive: true,
        auto_delete: true,
        ..Default::default()
    };
    let q = ch
        .queue_declare("".into(), queue, args)
        .await
        .expect("queue");
    ch.queue_bind(
        q.name().clone(),
        "pubsub".into(),
        topic.into(),
        QueueBindOptions::default(),
        table(),
    )
    .await
    .expect("bind");
    ch.basic_qos(PREFETCH, BasicQosOptions::default())
        .await
        .expect("qos");
    let mut consumer = ch
        .basic_consume(
            q.name().clone(),
            "".into(),
            BasicConsumeOptions::default(),
            table(),
        )
        .await
        .expect("consume");
    let mut receivers = row.receivers();
    let senders = receivers.spawn_channels(row.subs);
    // The reader: fan out, and ack in batches as the adapter does.
    let reader = tokio::spawn(async move {
        let (mut last, mut unacked) = (0, 0);
        let ack = |tag| ch.basic_ack(tag, BasicAckOptions { multiple: true });
        loop {
            let next = match consumer.next().now_or_never() {
                Some(next) => next,
                None => {
                    if unacked > 0 {
                        ack(last).await.expect("ack");
                        unacked = 0;
                    }
                    consumer.next().await
                }
            };
            let Some(Ok(delivery)) = next else { return };
            last = delivery.delivery_tag;
            unacked += 1;
            let payload = Bytes::from(delivery.data);
            for tx in &senders {
                let _ = tx.unbounded_send(payload.clone());
            }
            if unacked >= u64::from(PREFETCH / 2) {
                ack(last).await.expect("ack");
                unacked = 0;
            }
        }
    });
    let key: Arc<str> = Arc::from(topic);
    let (started, published) = publish_pipelined(row.count, WINDOW, |seq| {
        let (publisher, key) = (publisher.clone(), key.clone());
        let payload = stamp(seq, row.size);
        async move {
            let options = BasicPublishOptions::default();
            let confirm = publisher
                .basic_publish(
                    "pubsub".into(),
                    (&*key).into(),
                    options,
                    &payload,
                    BasicProperties::default(),
                )
                .await?;
            confirm.await.map(drop)
        }
    })
    .await;
    let outcome = receivers.finish(started, published).await;
    let _ = conn.close(200, "OK".into()).await;
    let _ = reader.await;
    outcome
}

fn main() {
    let title = format!("RabbitMQ, 1 publisher ({WINDOW} confirmed publishes in flight), adapter and raw lapin interleaved");
    pubsub_bench::throughput_main(ROUNDS, &title, run_adapter, run_raw);
}
