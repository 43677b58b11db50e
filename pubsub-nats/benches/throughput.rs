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
//! Each cell is the median of `ROUNDS` runs, adapter and raw interleaved. `BENCH_QUICK=1` for a
//! smoke run; `BENCH_ROWS=0,3`, `BENCH_ROUNDS=5` and `BENCH_IMPL=raw|adapter` narrow it down
//! (for profiling).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use pubsub_core::{Message, PubSub, SubscribeOptions, Topic};
use pubsub_nats::NatsConfig;

/// Bytes the publisher may have in flight (sent, not yet received by every subscription):
/// enough to keep the pipeline full, far below the server's per-connection pending limit
/// (64 MiB), so no side is ever marked a slow consumer.
const WINDOW_BYTES: usize = 4 << 20;
const ROUNDS: usize = 3;
/// The latency runs: this many messages at `PACED_PER_MS` thousand messages per second.
const PACED_COUNT: usize = 2_000;
const PACED_PER_MS: u64 = 5;
const IDLE: Duration = Duration::from_secs(3);

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

#[derive(Clone, Copy, Debug)]
struct Outcome {
    /// Published messages per second, from the first publish to the last receipt.
    rate: f64,
    p50: Duration,
    p99: Duration,
    /// Copies that never arrived (should be 0).
    missing: usize,
}

fn url() -> String {
    std::env::var("PUBSUB_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_string())
}

fn payload(base: Instant, seq: u64, size: usize) -> Bytes {
    let mut b = BytesMut::with_capacity(size);
    b.put_u64_le(base.elapsed().as_nanos() as u64);
    b.put_u64_le(seq);
    b.resize(size, 0xAB);
    b.freeze()
}

fn latency(base: Instant, payload: &[u8]) -> Duration {
    let mut sent = [0u8; 8];
    sent.copy_from_slice(&payload[..8]);
    base.elapsed()
        .saturating_sub(Duration::from_nanos(u64::from_le_bytes(sent)))
}

/// The subject published to, and the subjects subscribed to.
fn subjects(round: &str, row: Row) -> (String, Vec<String>) {
    let topic = format!("bench.{round}.a.b.c");
    let subs = if row.distinct {
        let p = format!("bench.{round}");
        [
            "a.b.c", "*.b.c", "a.*.c", "a.b.*", "*.*.c", "*.b.*", "a.*.*", "*.*.*", ">", "a.>",
        ]
        .iter()
        .take(row.subs)
        .map(|s| format!("{p}.{s}"))
        .collect()
    } else {
        vec![topic.clone(); row.subs]
    };
    (topic, subs)
}

/// Lets the publisher stay at most `WINDOW_BYTES` ahead of the slowest subscription.
struct Progress {
    received: Vec<AtomicU64>,
    moved: tokio::sync::Notify,
    window: u64,
}

impl Progress {
    fn new(row: Row) -> Arc<Self> {
        let window = (WINDOW_BYTES / (row.size * row.subs)).clamp(64, 65_536) as u64;
        Arc::new(Progress {
            received: (0..row.subs).map(|_| AtomicU64::new(0)).collect(),
            moved: tokio::sync::Notify::new(),
            window,
        })
    }

    /// Called by subscription `i` for each message.
    fn record(&self, i: usize) {
        let n = self.received[i].fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_multiple_of(self.window / 4) {
            self.moved.notify_one();
        }
    }

    async fn wait_window(&self, sent: u64) {
        loop {
            let slowest = self
                .received
                .iter()
                .map(|r| r.load(Ordering::Relaxed))
                .min()
                .unwrap_or(sent);
            if sent.saturating_sub(slowest) <= self.window {
                return;
            }
            // A stored permit or a later notification; re-check either way.
            let _ = tokio::time::timeout(Duration::from_millis(1), self.moved.notified()).await;
        }
    }
}

/// Paces a latency run: `pace_per_ms` messages every millisecond.
struct Pacer {
    per_ms: u64,
    ticker: Option<tokio::time::Interval>,
}

fn pacer(row: Row) -> Pacer {
    let ticker = (row.pace_per_ms > 0).then(|| {
        let mut t = tokio::time::interval(Duration::from_millis(1));
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    Pacer {
        per_ms: row.pace_per_ms,
        ticker,
    }
}

impl Pacer {
    async fn wait(&mut self, seq: u64) {
        if let Some(ticker) = &mut self.ticker {
            if seq.is_multiple_of(self.per_ms) {
                ticker.tick().await;
            }
        }
    }
}

fn summarize(started: Instant, row: Row, results: Vec<(Vec<Duration>, Instant)>) -> Outcome {
    let last = results.iter().map(|(_, at)| *at).max().unwrap_or(started);
    let mut all: Vec<Duration> = results.into_iter().flat_map(|(l, _)| l).collect();
    let missing = row.count * row.subs - all.len();
    all.sort_unstable();
    let pick = |q: f64| {
        all.get(((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Outcome {
        rate: row.count as f64 / (last - started).as_secs_f64(),
        p50: pick(0.50),
        p99: pick(0.99),
        missing,
    }
}

async fn raw_round(base: Instant, round: &str, row: Row) -> Outcome {
    let server = NatsConfig::from_url(&url()).expect("url").servers[0].clone();
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
    let progress = Progress::new(row);
    let mut tasks = Vec::new();
    for (i, subject) in subjects.into_iter().enumerate() {
        let mut sub = subscriber.subscribe(subject).await.expect("raw subscribe");
        let progress = progress.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(row.count);
            let mut last = Instant::now();
            while lat.len() < row.count {
                match tokio::time::timeout(IDLE, sub.next()).await {
                    Ok(Some(m)) => {
                        lat.push(latency(base, &m.payload));
                        last = Instant::now();
                        progress.record(i);
                    }
                    _ => break,
                }
            }
            (lat, last)
        }));
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
    let mut pace = pacer(row);
    let started = Instant::now();
    for seq in 0..row.count as u64 {
        progress.wait_window(seq).await;
        pace.wait(seq).await;
        publisher
            .publish(subject.clone(), payload(base, seq, row.size))
            .await
            .expect("raw publish");
    }
    publisher.flush().await.expect("flush");
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.expect("join"));
    }
    drop(ready_sub);
    let _ = publisher.drain().await;
    let _ = subscriber.drain().await;
    summarize(started, row, results)
}

async fn adapter_round(base: Instant, round: &str, row: Row) -> Outcome {
    let config = NatsConfig::from_url(&url())
        .expect("url")
        .with_subscription_capacity(row.count + 1024);
    let publisher = pubsub_nats::connect(config.clone()).await.expect("connect");
    let subscriber = pubsub_nats::connect(config).await.expect("connect");
    let (topic, patterns) = subjects(round, row);
    let topic: Topic = topic.parse().expect("topic");
    let progress = Progress::new(row);
    let mut tasks = Vec::new();
    for (i, pattern) in patterns.into_iter().enumerate() {
        // subscribe resolves once the server has the subscription.
        let mut sub = subscriber
            .subscribe_with(
                pattern.parse().expect("pattern"),
                SubscribeOptions::default().with_capacity(row.count),
            )
            .await
            .expect("subscribe");
        let progress = progress.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(row.count);
            let mut last = Instant::now();
            while lat.len() < row.count {
                match tokio::time::timeout(IDLE, sub.recv()).await {
                    Ok(Some(m)) => {
                        lat.push(latency(base, m.payload()));
                        last = Instant::now();
                        progress.record(i);
                    }
                    _ => break,
                }
            }
            assert_eq!(sub.dropped(), 0, "no drops expected");
            (lat, last)
        }));
    }
    let mut pace = pacer(row);
    let started = Instant::now();
    for seq in 0..row.count as u64 {
        progress.wait_window(seq).await;
        pace.wait(seq).await;
        publisher
            .publish(Message::new(topic.clone(), payload(base, seq, row.size)))
            .await
            .expect("publish");
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.expect("join"));
    }
    publisher.close().await.expect("close");
    subscriber.close().await.expect("close");
    summarize(started, row, results)
}

/// The median rate; latency percentiles are the medians of each percentile.
fn median(v: Vec<Outcome>) -> Outcome {
    fn mid<T: Copy + PartialOrd>(mut xs: Vec<T>) -> T {
        xs.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        xs[xs.len() / 2]
    }
    Outcome {
        rate: mid(v.iter().map(|o| o.rate).collect()),
        p50: mid(v.iter().map(|o| o.p50).collect()),
        p99: mid(v.iter().map(|o| o.p99).collect()),
        missing: v.iter().map(|o| o.missing).sum(),
    }
}

fn fmt_d(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{} µs", d.as_micros())
    } else {
        format!("{:.2} ms", d.as_secs_f64() * 1e3)
    }
}

fn main() {
    let quick = std::env::var_os("BENCH_QUICK").is_some();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let scale = |n: usize| if quick { n / 20 } else { n };
    let rows = [
        Row {
            subs: 1,
            distinct: false,
            size: 64,
            count: scale(200_000),
            pace_per_ms: 0,
        },
        Row {
            subs: 10,
            distinct: false,
            size: 64,
            count: scale(50_000),
            pace_per_ms: 0,
        },
        Row {
            subs: 10,
            distinct: true,
            size: 64,
            count: scale(50_000),
            pace_per_ms: 0,
        },
        Row {
            subs: 1,
            distinct: false,
            size: 4096,
            count: scale(50_000),
            pace_per_ms: 0,
        },
        Row {
            subs: 10,
            distinct: false,
            size: 4096,
            count: scale(10_000),
            pace_per_ms: 0,
        },
        Row {
            subs: 10,
            distinct: true,
            size: 4096,
            count: scale(10_000),
            pace_per_ms: 0,
        },
    ];
    let rounds = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(if quick { 1 } else { ROUNDS });
    let base = Instant::now();
    let bench_started = Instant::now();
    println!(
        "NATS adapter vs raw async-nats ({}), {rounds} rounds per cell, median",
        url()
    );
    println!();
    println!(
        "| subscriptions | payload | raw msg/s | adapter msg/s | adapter/raw | adapter deliveries/s \
         | full load: raw p50 / p99 | full load: adapter p50 / p99 \
         | {PACED_PER_MS}k msg/s: raw p50 / p99 | {PACED_PER_MS}k msg/s: adapter p50 / p99 |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    runtime.block_on(async {
        let which = std::env::var("BENCH_IMPL").ok();
        let which = which.as_deref();
        let only: Option<Vec<usize>> = std::env::var("BENCH_ROWS")
            .ok()
            .map(|v| v.split(',').filter_map(|r| r.trim().parse().ok()).collect());
        for (r, row) in rows.iter().enumerate() {
            if only.as_ref().is_some_and(|o| !o.contains(&r)) {
                continue;
            }
            let paced_row = Row {
                count: scale(PACED_COUNT),
                pace_per_ms: PACED_PER_MS,
                ..*row
            };
            let (mut raw, mut adapter) = (Vec::new(), Vec::new());
            let (mut raw_paced, mut adapter_paced) = (Vec::new(), Vec::new());
            for round in 0..rounds {
                let id = format!("{}r{r}x{round}", std::process::id());
                if which != Some("adapter") {
                    raw.push(raw_round(base, &format!("{id}raw"), *row).await);
                    raw_paced.push(raw_round(base, &format!("{id}rawp"), paced_row).await);
                }
                if which != Some("raw") {
                    adapter.push(adapter_round(base, &format!("{id}ad"), *row).await);
                    adapter_paced.push(adapter_round(base, &format!("{id}adp"), paced_row).await);
                }
            }
            if raw.is_empty() || adapter.is_empty() {
                println!("{row:?}: raw {raw:?} adapter {adapter:?}");
                continue;
            }
            let (raw, adapter) = (median(raw), median(adapter));
            let (raw_paced, adapter_paced) = (median(raw_paced), median(adapter_paced));
            let subs = match (row.subs, row.distinct) {
                (1, _) => "1".to_string(),
                (n, false) => format!("{n} (same subject)"),
                (n, true) => format!("{n} (distinct subjects)"),
            };
            let size = if row.size >= 1024 {
                format!("{} KiB", row.size / 1024)
            } else {
                format!("{} B", row.size)
            };
            let missing = raw.missing + adapter.missing + raw_paced.missing + adapter_paced.missing;
            let missing = if missing > 0 {
                format!(" ({missing} copies missing!)")
            } else {
                String::new()
            };
            println!(
                "| {subs} | {size} | {:.0} | {:.0} | {:.2}× | {:.0} | {} / {} | {} / {} | {} / {} | {} / {} |{missing}",
                raw.rate,
                adapter.rate,
                adapter.rate / raw.rate,
                adapter.rate * row.subs as f64,
                fmt_d(raw.p50),
                fmt_d(raw.p99),
                fmt_d(adapter.p50),
                fmt_d(adapter.p99),
                fmt_d(raw_paced.p50),
                fmt_d(raw_paced.p99),
                fmt_d(adapter_paced.p50),
                fmt_d(adapter_paced.p99),
            );
        }
    });
    println!();
    println!(
        "total bench time {:.1} s",
        bench_started.elapsed().as_secs_f64()
    );
}
