//! Throughput and latency of the NATS adapter next to raw async-nats doing the same work.
//!
//! Run with `cargo bench -p pubsub-nats` (NATS at `PUBSUB_NATS_URL`, default
//! `nats://127.0.0.1:4222`). Each row: one publisher connection sends N messages to one subject
//! and 1 or 10 subscriptions on a second connection receive all of them; adapter and raw use the
//! same connections, runtime (2 worker threads) and payloads. Every payload carries its send
//! time, so latency is publish-call-to-receipt.
//!
//! - **Throughput** ("full load"): the publisher keeps at most `WINDOW_BYTES` (4 MiB) ahead of
//!   the slowest subscription, so no side can overrun the server's buffers and the rate is one
//!   that can be sustained; latency at full load is mostly time spent queued in that window.
//! - **Latency** (paced): `PACED_COUNT` messages at `PACED_PER_MS` thousand messages per second.
//! - "same subject": the 10 subscriptions use the same subject. Raw async-nats has 10 NATS
//!   subscriptions (the server sends 10 copies); the adapter has 10 portable subscriptions
//!   sharing one NATS subscription, fanned out locally (by design).
//! - "distinct subjects": 10 different wildcard subjects that all match (`p.*.b.c`, `p.a.>`, …);
//!   both have 10 NATS subscriptions and receive 10 copies from the server.
//!
//! The harness (rounds interleaved adapter / raw, medians, the table, `BENCH_QUICK=1` for a
//! smoke run, `BENCH_ROWS`, `BENCH_ROUNDS`, `BENCH_MODE=adapter|raw`) is
//! `pubsub_bench`.

use bytes::Bytes;
use futures::StreamExt;
use pubsub_bench::{
    compare, fmt_size, print_header, print_row, publish_paced, stamp, Compared, Outcome, Receivers,
    Settings, Side, COMPARED_COLUMNS,
};
use pubsub_core::{Message, SubscribeOptions, Topic};
use pubsub_nats::NatsConfig;
use pubsub_test_support::broker::nats_url;

/// Bytes the publisher may have in flight (sent, not yet received by every subscription):
/// enough to keep the pipeline full, far below the server's per-connection pending limit
/// (64 MiB), so no side is ever marked a slow consumer.
const WINDOW_BYTES: usize = 4 << 20;
/// Rounds per row (each runs the adapter and raw async-nats once).
const ROUNDS: usize = 5;
/// The latency runs: this many messages at `PACED_PER_MS` thousand messages per second.
const PACED_COUNT: usize = 2_000;
const PACED_PER_MS: u64 = 5;

#[derive(Clone, Copy, Debug)]
struct Row {
    subs: usize,
    distinct: bool,
    size: usize,
    count: usize,
    /// Messages per millisecond for a paced (latency) run; 0 publishes as fast as the window
    /// allows.
    pace_per_ms: u64,
}

impl Row {
    fn receivers(&self) -> Receivers {
        Receivers::new(self.count, self.subs, self.size, WINDOW_BYTES)
    }
}

/// The subject published to, and the subjects subscribed to.
fn subjects(round: &str, row: Row) -> (String, Vec<String>) {
    let topic = format!("{round}.a.b.c");
    let subs = if row.distinct {
        [
            "a.b.c", "*.b.c", "a.*.c", "a.b.*", "*.*.c", "*.b.*", "a.*.*", "*.*.*", ">", "a.>",
        ]
        .iter()
        .take(row.subs)
        .map(|s| format!("{round}.{s}"))
        .collect()
    } else {
        vec![topic.clone(); row.subs]
    };
    (topic, subs)
}

async fn raw_round(round: &str, row: Row) -> Outcome {
    let server = nats_url().split(',').next().unwrap_or_default().to_string();
    let options = || async_nats::ConnectOptions::new().subscription_capacity(row.count + 1024);
    let publisher = options()
        .connect(server.as_str())
        .await
        .expect("raw connect");
    let subscriber = options()
        .connect(server.as_str())
        .await
        .expect("raw connect");
    let (topic, subjects) = subjects(round, row);
    let mut receivers = row.receivers();
    for subject in subjects {
        let sub = subscriber.subscribe(subject).await.expect("raw subscribe");
        receivers.spawn(sub.map(|m| m.payload));
    }
    // The server has every SUB once a message sent after them comes back.
    let ready = format!("ready.{round}");
    let mut ready_sub = subscriber.subscribe(ready.clone()).await.expect("ready");
    subscriber
        .publish(ready, Bytes::new())
        .await
        .expect("ready");
    ready_sub.next().await.expect("ready");
    // Raw at its best: the subject is built once and cloned (a reference count).
    let subject = async_nats::Subject::from(topic.as_str());
    let (started, _) = publish_paced(&receivers, row.count, row.pace_per_ms, |seq| {
        publisher.publish(subject.clone(), stamp(seq, row.size))
    })
    .await;
    publisher.flush().await.expect("flush");
    let outcome = receivers.finish(started, std::time::Instant::now()).await;
    drop(ready_sub);
    let _ = publisher.drain().await;
    let _ = subscriber.drain().await;
    outcome
}

async fn adapter_round(round: &str, row: Row) -> Outcome {
    let config = NatsConfig::from_url(&nats_url())
        .expect("url")
        .with_subscription_capacity(row.count + 1024);
    let publisher = pubsub_nats::connect(config.clone()).await.expect("connect");
    let subscriber = pubsub_nats::connect(config).await.expect("connect");
    let (topic, patterns) = subjects(round, row);
    let topic: Topic = topic.parse().expect("topic");
    let mut receivers = row.receivers();
    for pattern in patterns {
        // subscribe resolves once the server has the subscription.
        let options = SubscribeOptions::default().with_capacity(row.count);
        let sub = subscriber
            .subscribe_with(pattern.parse().expect("pattern"), options)
            .await
            .expect("subscribe");
        receivers.spawn(sub.map(|m| m.payload().clone()));
    }
    let (started, published) = publish_paced(&receivers, row.count, row.pace_per_ms, |seq| {
        publisher.publish(Message::new(topic.clone(), stamp(seq, row.size)))
    })
    .await;
    let outcome = receivers.finish(started, published).await;
    publisher.close().await.expect("close");
    subscriber.close().await.expect("close");
    outcome
}

/// Both sides of one row, interleaved round by round.
async fn compare_row(settings: &Settings, r: usize, kind: &str, row: Row) -> Compared {
    compare(settings, |side, round| {
        let id = pubsub_bench::run_id(&format!("r{r}{kind}x{round}"));
        async move {
            match side {
                Side::Adapter => adapter_round(&format!("{id}.ad"), row).await,
                Side::Raw => raw_round(&format!("{id}.raw"), row).await,
            }
        }
    })
    .await
}

fn main() {
    let settings = Settings::from_env(ROUNDS);
    let row = |subs: usize, distinct: bool, size: usize, count: usize| Row {
        subs,
        distinct,
        size,
        count: settings.count(count, 20),
        pace_per_ms: 0,
    };
    let rows = [
        row(1, false, 64, 200_000),
        row(10, false, 64, 50_000),
        row(10, true, 64, 50_000),
        row(1, false, 4096, 50_000),
        row(10, false, 4096, 10_000),
        row(10, true, 4096, 10_000),
    ];
    println!(
        "NATS adapter vs raw async-nats ({}), median of {} rounds per cell, adapter and raw \
         interleaved",
        nats_url(),
        settings.rounds
    );
    println!();
    let paced = format!("{PACED_PER_MS}k msg/s");
    let extra = [
        "adapter deliveries/s".to_string(),
        format!("{paced}: adapter p50 / p99"),
        format!("{paced}: raw p50 / p99"),
    ];
    let mut columns: Vec<String> = ["subscriptions", "payload", "msgs"]
        .map(String::from)
        .to_vec();
    columns.extend(COMPARED_COLUMNS.map(String::from));
    columns.extend(extra);
    print_header(&columns);
    pubsub_bench::main(async {
        for (r, row) in rows.iter().enumerate() {
            if !settings.runs_row(r) {
                continue;
            }
            let paced_row = Row {
                count: settings.count(PACED_COUNT, 20),
                pace_per_ms: PACED_PER_MS,
                ..*row
            };
            let full = compare_row(&settings, r, "f", *row).await;
            let paced = compare_row(&settings, r, "p", paced_row).await;
            let subs = match (row.subs, row.distinct) {
                (1, _) => "1".to_string(),
                (n, false) => format!("{n} (same subject)"),
                (n, true) => format!("{n} (distinct subjects)"),
            };
            let dash = || "-".to_string();
            let latencies = |o: Option<Outcome>| o.map_or_else(dash, |o| o.latencies());
            let mut cells = vec![subs, fmt_size(row.size), row.count.to_string()];
            cells.extend(full.cells());
            cells.push(
                full.adapter
                    .map_or_else(dash, |a| format!("{:.0}", a.rate * row.subs as f64)),
            );
            cells.push(latencies(paced.adapter));
            cells.push(latencies(paced.raw));
            print_row(&cells);
        }
    });
}
