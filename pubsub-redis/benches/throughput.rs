//! Throughput and latency of the Redis adapter next to raw fred pub/sub doing the same work.
//!
//! Run with `cargo bench -p pubsub-redis` (Redis at `PUBSUB_REDIS_URL`, default
//! `redis://127.0.0.1:6379`). Each row: one publisher sends N messages to one channel
//! (pipelined, at most `WINDOW` publishes in flight, each resolving on its PUBLISH reply) and
//! 1 or 10 subscriptions receive all of them. The adapter uses one handle (its publisher and
//! subscriber connections); raw fred uses one publisher client and one subscriber client with
//! the same settings, and one broadcast receiver per subscription. Every payload carries its
//! send time, so latency is publish-call-to-receipt.
//!
//! The harness (rounds interleaved adapter / raw, medians, the table, `BENCH_QUICK=1` for a
//! smoke run, `BENCH_ROWS`, `BENCH_ROUNDS`, `BENCH_MODE=adapter|raw`) is
//! `pubsub_bench`; `BENCH_PUBLISH_ONLY=1` measures the publish path alone.

use std::sync::Arc;

use pubsub_bench::{publish_pipelined, stamp, Outcome, Row, Settings};
use pubsub_redis::fred::clients::Client;
use pubsub_redis::fred::interfaces::{ClientLike, EventInterface, PubsubInterface};
use pubsub_redis::fred::types::config::{Config, ConnectionConfig, PerformanceConfig, TcpConfig};
use pubsub_redis::fred::types::Value;
use pubsub_redis::RedisConfig;
use pubsub_test_support::broker::redis_url;
use pubsub_test_support::throughput::connect_and_run;
use tokio::sync::broadcast::error::RecvError;

/// Publishes in flight.
const WINDOW: usize = 128;
/// Rounds per row (each runs the adapter and raw fred once).
const ROUNDS: usize = 7;

async fn run_adapter(row: Row, topic: String) -> Outcome {
    let config = RedisConfig::from_url(&redis_url()).expect("valid URL");
    connect_and_run(pubsub_redis::connect(config), "Redis", row, &topic, WINDOW).await
}

fn raw_client(capacity: usize) -> Client {
    // The same settings the adapter gives fred (see RedisConfig).
    let config = Config::from_url(&redis_url()).expect("valid URL");
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

async fn run_raw(row: Row, topic: String) -> Outcome {
    let topic = topic.as_str();
    let publisher = raw_client(64);
    let subscriber = raw_client(pubsub_redis::DEFAULT_BROADCAST_CAPACITY);
    let pub_task = publisher.init().await.expect("Redis must be reachable");
    let sub_task = subscriber.init().await.expect("Redis must be reachable");
    let rxs: Vec<_> = (0..row.subs).map(|_| subscriber.message_rx()).collect();
    subscriber.subscribe(topic).await.expect("subscribe");
    let _: Value = subscriber.ping(None).await.expect("ping");
    let mut receivers = row.receivers();
    for rx in rxs {
        // A broadcast receiver as a stream of payloads (a lagged receiver just goes on).
        receivers.spawn(futures::stream::unfold(rx, |mut rx| async move {
            loop {
                let bytes = match rx.recv().await {
                    Ok(m) => match m.value {
                        Value::Bytes(b) => b,
                        Value::String(s) => s.into_inner(),
                        _ => continue,
                    },
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return None,
                };
                return Some((bytes, rx));
            }
        }));
    }
    let channel: Arc<str> = Arc::from(topic);
    let (started, published) = publish_pipelined(row.count, WINDOW, |seq| {
        let p = stamp(seq, row.size);
        let publisher = publisher.clone();
        let channel = channel.clone();
        async move { publisher.publish::<(), _, _>(&*channel, p).await }
    })
    .await;
    let outcome = receivers.finish(started, published).await;
    let _ = subscriber.quit().await;
    let _ = publisher.quit().await;
    let _ = pub_task.await;
    let _ = sub_task.await;
    outcome
}

fn main() {
    let settings = Settings::from_env(ROUNDS);
    let mut rows = settings.grid();
    if std::env::var_os("BENCH_PUBLISH_ONLY").is_some() {
        // Diagnostic: the publish path alone (no subscription).
        rows.iter_mut().for_each(|row| row.subs = 0);
    }
    let title = format!("Redis pub/sub, 1 publisher ({WINDOW} publishes in flight), adapter and raw fred interleaved");
    pubsub_bench::main(pubsub_bench::throughput_table(
        &settings,
        &title,
        &rows,
        run_adapter,
        run_raw,
    ));
}
