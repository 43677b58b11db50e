//! Thousands of patterns sharing one native filter: one Redis handle holds 4000 subscriptions
//! `P.*.u<i>` (all served by the one glob `P.*`), another publishes a burst to `P.x.u7`; the
//! subscription `P.*.u7` must receive every message. Compared, in interleaved rounds, with a
//! handle holding only `P.*.u7`. Routing goes through the trie, so the 3999 other patterns on
//! the same glob should cost next to nothing: the aim is at least 0.9× the single pattern.
//!
//! Run: `cargo bench -p pubsub-redis --bench shared_filter` (Redis at `PUBSUB_REDIS_URL`,
//! default `redis://127.0.0.1:6379`); `BENCH_QUICK=1` for a smoke run.

use std::time::{Duration, Instant};

use pubsub_core::{Hub, Message, SubscribeOptions, Topic};
use pubsub_redis::RedisConfig;

const PATTERNS: usize = 4000;

fn config() -> RedisConfig {
    let url =
        std::env::var("PUBSUB_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    RedisConfig::from_url(&url).expect("PUBSUB_REDIS_URL")
}

/// Messages per second received by `P.*.u7` while the handle holds `others` more patterns.
async fn round(round: usize, others: usize, count: usize) -> f64 {
    let prefix = format!("bench_shared_{}_{round}_{others}", std::process::id());
    let receiver: Hub = pubsub_redis::connect(config()).await.expect("connect");
    let publisher: Hub = pubsub_redis::connect(config()).await.expect("connect");
    let mut held = Vec::with_capacity(others);
    for i in (0..=others).filter(|i| *i != 7) {
        let p = format!("{prefix}.*.u{i}").parse().expect("pattern");
        held.push(receiver.subscribe(p).await.expect("subscribe"));
    }
    let mut target = receiver
        .subscribe_with(
            format!("{prefix}.*.u7").parse().expect("pattern"),
            SubscribeOptions::default().with_capacity(count),
        )
        .await
        .expect("subscribe");
    let topic = Topic::new(&format!("{prefix}.x.u7")).expect("topic");
    let started = Instant::now();
    let reader = tokio::spawn(async move {
        let mut got = 0;
        while got < count {
            match tokio::time::timeout(Duration::from_secs(5), target.recv()).await {
                Ok(Some(_)) => got += 1,
                _ => break,
            }
        }
        (got, target.dropped())
    });
    for i in 0..count {
        let payload = (i as u64).to_le_bytes().to_vec();
        publisher
            .publish(Message::new(topic.clone(), payload))
            .await
            .expect("publish");
    }
    let (got, dropped) = reader.await.expect("reader");
    let took = started.elapsed();
    assert_eq!((got, dropped), (count, 0), "every message, none dropped");
    assert!(held.iter().all(|s| s.is_empty()), "the other patterns get nothing");
    receiver.close().await.expect("close");
    publisher.close().await.expect("close");
    count as f64 / took.as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let quick = std::env::var_os("BENCH_QUICK").is_some();
    let (rounds, count) = if quick { (3, 5_000) } else { (5, 50_000) };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (mut alone, mut shared) = (Vec::new(), Vec::new());
        for r in 0..rounds {
            alone.push(round(r, 0, count).await);
            shared.push(round(r, PATTERNS - 1, count).await);
        }
        let (alone, shared) = (median(alone), median(shared));
        println!("{count} messages to P.x.u7, received by P.*.u7 (median of {rounds} interleaved rounds)");
        println!("  1 pattern on the handle      : {alone:>10.0} msg/s");
        println!("  {PATTERNS} patterns on one glob : {shared:>10.0} msg/s");
        println!("  ratio {PATTERNS} / 1 = {:.2}x", shared / alone);
    });
}
