//! Throughput and latency of the Redis adapter next to raw fred pub/sub doing the same work.
//!
//! Run with `cargo bench -p pubsub-redis` (Redis at `PUBSUB_REDIS_URL`, default
//! `redis://127.0.0.1:6379`). Each row: one publisher sends N messages to one channel
//! (pipelined, at most `WINDOW` publishes in flight, each resolving on its PUBLISH reply) and
//! 1 or 10 subscriptions receive all of them. The adapter uses one handle (its publisher and
//! subscriber connections); raw fred uses one publisher client and one subscriber client with
//! the same settings, and one broadcast receiver per subscription. Every payload carries its
//! send time, so latency is publish-call-to-receipt. Rates and latencies are the median of
//! `ROUNDS` runs; adapter and raw run back to back in each round, and the ratio is the median
//! of the per-round ratios (the machine's load varies less within a round). Set `BENCH_QUICK=1` for a smoke run; `BENCH_ROW=<i>`,
//! `BENCH_MODE=adapter|raw`, `BENCH_ROUNDS=<n>` and `BENCH_PUBLISH_ONLY=1` help profiling.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use pubsub_core::{Message, PubSub, Subscription, Topic};
use pubsub_redis::fred::clients::Client;
use pubsub_redis::fred::interfaces::{ClientLike, EventInterface, PubsubInterface};
use pubsub_redis::fred::types::config::{Config, ConnectionConfig, PerformanceConfig, TcpConfig};
use pubsub_redis::fred::types::Value;
use pubsub_redis::RedisConfig;

const WINDOW: usize = 128;
const ROUNDS: usize = 7;
const IDLE: Duration = Duration::from_secs(3);

#[derive(Clone, Copy)]
struct Row {
    subs: usize,
    size: usize,
    count: usize,
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
    std::env::var("PUBSUB_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string())
}

fn payload(base: Instant, seq: u64, size: usize) -> Bytes {
    let mut b = BytesMut::with_capacity(size);
    b.put_u64_le(base.elapsed().as_nanos() as u64);
    b.put_u64_le(seq);
    b.resize(size, 0xAB);
    b.freeze()
}

fn latency(base: Instant, payload: &[u8]) -> Duration {
    let sent = u64::from_le_bytes(payload[..8].try_into().expect("8 bytes"));
    base.elapsed().saturating_sub(Duration::from_nanos(sent))
}

fn summarize(
    base: Instant,
    started: Duration,
    published: Duration,
    row: Row,
    results: Vec<(Vec<Duration>, Duration)>,
) -> Outcome {
    let last = results
        .iter()
        .map(|(_, at)| *at)
        .max()
        .unwrap_or(published)
        .max(published);
    let mut all: Vec<Duration> = results
        .iter()
        .flat_map(|(l, _)| l.iter().copied())
        .collect();
    let missing = row.count * row.subs - all.len();
    all.sort_unstable();
    let pick = |q: f64| {
        all.get(((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    let _ = base;
    Outcome {
        rate: row.count as f64 / (last - started).as_secs_f64(),
        p50: pick(0.50),
        p99: pick(0.99),
        missing,
    }
}

async fn run_adapter(row: Row, topic: &str) -> Outcome {
    let ps = pubsub_redis::connect(
        RedisConfig::from_url(&url())
            .expect("valid URL")
            .with_subscription_capacity(row.count + 16),
    )
    .await
    .expect("Redis must be reachable");
    let topic: Topic = topic.parse().expect("topic");
    let mut subs: Vec<Subscription> = Vec::new();
    for _ in 0..row.subs {
        subs.push(
            ps.subscribe(topic.as_str().parse().expect("pattern"))
                .await
                .expect("subscribe"),
        );
    }
    let base = Instant::now();
    let receivers: Vec<_> = subs
        .into_iter()
        .map(|mut sub| {
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(row.count);
                let mut last = base.elapsed();
                while lat.len() < row.count {
                    match tokio::time::timeout(IDLE, sub.recv()).await {
                        Ok(Some(m)) => {
                            lat.push(latency(base, m.payload()));
                            last = base.elapsed();
                        }
                        _ => break,
                    }
                }
                (lat, last)
            })
        })
        .collect();
    let started = base.elapsed();
    let ps2 = ps.clone();
    futures::stream::iter(0..row.count)
        .map(|i| {
            let m = Message::new(topic.clone(), payload(base, i as u64, row.size));
            let ps = ps2.clone();
            async move { ps.publish(m).await }
        })
        .buffered(WINDOW)
        .for_each(|r| {
            r.expect("publish");
            futures::future::ready(())
        })
        .await;
    let published = base.elapsed();
    let mut results = Vec::new();
    for r in receivers {
        results.push(r.await.expect("receiver"));
    }
    ps.close().await.expect("close");
    summarize(base, started, published, row, results)
}

fn raw_client(capacity: usize) -> Client {
    // The same settings the adapter gives fred (see RedisConfig).
    let config = Config::from_url(&url()).expect("valid URL");
    let perf = PerformanceConfig {
        broadcast_channel_capacity: capacity,
        ..PerformanceConfig::default()
    };
    let conn = ConnectionConfig {
        tcp: TcpConfig {
            nodelay: Some(true),
            ..TcpConfig::default()
        },
        ..ConnectionConfig::default()
    };
    Client::new(config, Some(perf), Some(conn), None)
}

async fn run_raw(row: Row, topic: &str) -> Outcome {
    let publisher = raw_client(64);
    let subscriber = raw_client(pubsub_redis::DEFAULT_BROADCAST_CAPACITY);
    let pub_task = publisher.init().await.expect("Redis must be reachable");
    let sub_task = subscriber.init().await.expect("Redis must be reachable");
    let rxs: Vec<_> = (0..row.subs).map(|_| subscriber.message_rx()).collect();
    subscriber.subscribe(topic).await.expect("subscribe");
    let _: Value = subscriber.ping(None).await.expect("ping");
    let base = Instant::now();
    let receivers: Vec<_> = rxs
        .into_iter()
        .map(|mut rx| {
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(row.count);
                let mut last = base.elapsed();
                while lat.len() < row.count {
                    match tokio::time::timeout(IDLE, rx.recv()).await {
                        Ok(Ok(m)) => {
                            let bytes = match m.value {
                                Value::Bytes(b) => b,
                                Value::String(s) => s.into_inner(),
                                _ => continue,
                            };
                            lat.push(latency(base, &bytes));
                            last = base.elapsed();
                        }
                        Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => continue,
                        _ => break,
                    }
                }
                (lat, last)
            })
        })
        .collect();
    let started = base.elapsed();
    let channel: Arc<str> = Arc::from(topic);
    futures::stream::iter(0..row.count)
        .map(|i| {
            let p = payload(base, i as u64, row.size);
            let publisher = publisher.clone();
            let channel = channel.clone();
            async move { publisher.publish::<(), _, _>(&*channel, p).await }
        })
        .buffered(WINDOW)
        .for_each(|r| {
            r.expect("publish");
            futures::future::ready(())
        })
        .await;
    let published = base.elapsed();
    let mut results = Vec::new();
    for r in receivers {
        results.push(r.await.expect("receiver"));
    }
    let _ = subscriber.quit().await;
    let _ = publisher.quit().await;
    let _ = pub_task.await;
    let _ = sub_task.await;
    summarize(base, started, published, row, results)
}

fn median(mut v: Vec<Outcome>) -> Outcome {
    v.sort_by(|a, b| a.rate.total_cmp(&b.rate));
    let mut m = v[v.len() / 2];
    m.missing = v.iter().map(|o| o.missing).max().unwrap_or(0);
    m
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

fn main() {
    let quick = std::env::var("BENCH_QUICK").is_ok();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let scale = if quick { 10 } else { 1 };
    let publish_only = std::env::var("BENCH_PUBLISH_ONLY").is_ok();
    let mut rows = [
        Row {
            subs: 1,
            size: 64,
            count: 50_000 / scale,
        },
        Row {
            subs: 10,
            size: 64,
            count: 50_000 / scale,
        },
        Row {
            subs: 1,
            size: 4096,
            count: 20_000 / scale,
        },
        Row {
            subs: 10,
            size: 4096,
            count: 20_000 / scale,
        },
    ];
    if publish_only {
        // Diagnostic: the publish path alone (no subscription).
        for row in &mut rows {
            row.subs = 0;
        }
    }
    let rounds = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(if quick { 1 } else { ROUNDS });
    // Profiling aids: BENCH_ROW=<index> runs one row, BENCH_MODE=adapter|raw one side.
    let only_row: Option<usize> = std::env::var("BENCH_ROW").ok().and_then(|r| r.parse().ok());
    let mode_var = std::env::var("BENCH_MODE").ok();
    let mode = mode_var.as_deref();
    let started = Instant::now();
    runtime.block_on(async {
        // Warm up connections, allocator and Redis.
        let warm = Row { subs: 1, size: 64, count: 2_000 / scale };
        let _ = run_adapter(warm, &format!("bench.{}.warm.a", std::process::id())).await;
        let _ = run_raw(warm, &format!("bench.{}.warm.r", std::process::id())).await;

        println!(
            "Redis pub/sub, 1 publisher ({WINDOW} publishes in flight), median of {rounds} rounds"
        );
        println!(
            "| subs | payload | msgs | adapter msg/s | raw msg/s | ratio | adapter p50 / p99 ms | raw p50 / p99 ms | missing a/r |"
        );
        println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for (r, row) in rows.iter().enumerate() {
            if only_row.is_some_and(|only| only != r) {
                continue;
            }
            let mut a = Vec::new();
            let mut w = Vec::new();
            for round in 0..rounds {
                let topic = format!("bench.{}.r{r}.n{round}", std::process::id());
                if mode != Some("raw") {
                    a.push(run_adapter(*row, &format!("{topic}.a")).await);
                }
                if mode != Some("adapter") {
                    w.push(run_raw(*row, &format!("{topic}.r")).await);
                }
            }
            if a.is_empty() {
                a = w.clone();
            }
            if w.is_empty() {
                w = a.clone();
            }
            // Each round runs the adapter and raw fred back to back, under the same machine load;
            // the ratio is the median of the per-round ratios.
            let mut ratios: Vec<f64> = a.iter().zip(&w).map(|(a, w)| a.rate / w.rate).collect();
            ratios.sort_by(f64::total_cmp);
            let ratio = ratios[ratios.len() / 2];
            let (a, w) = (median(a), median(w));
            println!(
                "| {} | {} B | {} | {:.0} | {:.0} | {:.3} | {} / {} | {} / {} | {}/{} |",
                row.subs,
                row.size,
                row.count,
                a.rate,
                w.rate,
                ratio,
                ms(a.p50),
                ms(a.p99),
                ms(w.p50),
                ms(w.p99),
                a.missing,
                w.missing
            );
        }
    });
    println!("total bench time: {:.1} s", started.elapsed().as_secs_f64());
}
