//! Throughput and latency of the PostgreSQL adapter next to raw tokio-postgres doing the same
//! work.
//!
//! Run with `cargo bench -p pubsub-postgres --bench throughput` (the server at
//! `PUBSUB_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`). Each row: one
//! session listens on a channel of its own (new for each run) and publishes N messages to it
//! with `SELECT pg_notify($1, $2)` (prepared, `synchronous_commit` off, `WINDOW` in flight),
//! and 1 or 10 subscriptions on the same handle receive all of them (fanned out locally). The
//! stamped payloads are bytes, so both sides send base64: the adapter its `<topic> =<base64>`
//! text, raw tokio-postgres the bare base64, decoded on receipt. Every payload carries its send
//! time, so latency is publish-call-to-receipt.
//!
//! The harness (rounds interleaved adapter / raw, medians, the table, `BENCH_QUICK=1` for a
//! smoke run, `BENCH_ROWS`, `BENCH_ROUNDS`, `BENCH_MODE=adapter|raw`) is `pubsub_bench`.

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use futures::StreamExt;
use pubsub_bench::{publish_pipelined, stamp, Outcome, Row};
use pubsub_postgres::PostgresConfig;
use pubsub_test_support::broker::postgres_url;
use pubsub_test_support::throughput::connect_and_run;
use tokio_postgres::{AsyncMessage, NoTls};

/// Publishes in flight (both sides).
const WINDOW: usize = 64;
/// Rounds per row (each runs the adapter and raw tokio-postgres once).
const ROUNDS: usize = 5;

async fn run_adapter(row: Row, topic: String) -> Outcome {
    let config = PostgresConfig::from_url(&postgres_url()).expect("valid URL");
    // The run's topic names its channel too: each run listens on a channel of its own.
    let config = config.with_channel(topic.clone());
    connect_and_run(
        pubsub_postgres::connect(config),
        "PostgreSQL",
        row,
        &topic,
        WINDOW,
    )
    .await
}

async fn run_raw(row: Row, topic: String) -> Outcome {
    let (client, mut connection) = tokio_postgres::connect(&postgres_url(), NoTls)
        .await
        .expect("PostgreSQL must be reachable");
    let mut receivers = row.receivers();
    let senders = receivers.spawn_channels(row.subs);
    let poller = tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let AsyncMessage::Notification(n) = message {
                let payload = Bytes::from(STANDARD.decode(n.payload()).expect("base64"));
                for tx in &senders {
                    let _ = tx.unbounded_send(payload.clone());
                }
            }
        }
    });
    // As the adapter: asynchronous commits, a quoted channel, a prepared pg_notify.
    let channel = topic;
    let setup = format!("SET synchronous_commit TO off; LISTEN \"{channel}\"");
    client.batch_execute(&setup).await.expect("LISTEN");
    let notify = client
        .prepare("SELECT pg_notify($1, $2)")
        .await
        .expect("prepare");
    let client = Arc::new(client);
    let (started, published) = publish_pipelined(row.count, WINDOW, |seq| {
        let (client, notify, channel) = (client.clone(), notify.clone(), channel.clone());
        let text = STANDARD.encode(stamp(seq, row.size));
        async move { client.execute(&notify, &[&channel, &text]).await.map(drop) }
    })
    .await;
    let outcome = receivers.finish(started, published).await;
    drop(client);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), poller).await;
    outcome
}

fn main() {
    let title = format!(
        "PostgreSQL 15 LISTEN/NOTIFY, 1 session listening and publishing with a prepared \
         pg_notify ({WINDOW} in flight, synchronous_commit off), adapter and raw tokio-postgres \
         interleaved"
    );
    pubsub_bench::throughput_main(ROUNDS, &title, run_adapter, run_raw);
}
