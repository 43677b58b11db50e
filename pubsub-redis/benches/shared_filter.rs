//! Thousands of patterns sharing one native filter: one Redis handle holds 4000 subscriptions
//! `P.*.u<i>` (all served by the one glob `P.*`), another publishes a burst to `P.x.u7`; the
//! subscription `P.*.u7` must receive every message. Compared, in interleaved rounds, with a
//! handle holding only `P.*.u7`. Routing goes through the trie, so the 3999 other patterns on
//! the same glob should cost next to nothing: the aim is at least 0.9× the single pattern.
//!
//! Run: `cargo bench -p pubsub-redis --bench shared_filter` (Redis at `PUBSUB_REDIS_URL`,
//! default `redis://127.0.0.1:6379`); `BENCH_QUICK=1` for a smoke run. The rounds, medians
//! and settings are `pubsub_bench`'s (the side under test is the handle with 4000
//! patterns, the baseline the one with a single pattern).

use std::time::{Duration, Instant};

use pubsub_bench::{compare, Outcome, Settings, Side};
use pubsub_core::{Hub, Message, SubscribeOptions, Topic};
use pubsub_redis::RedisConfig;
use pubsub_test_support::broker::redis_url;
use pubsub_test_support::kit::receive;

const PATTERNS: usize = 4000;
const ROUNDS: usize = 5;

async fn connect() -> Hub {
    let config = RedisConfig::from_url(&redis_url()).expect("PUBSUB_REDIS_URL");
    pubsub_redis::connect(config).await.expect("connect")
}

/// The rate at which `P.*.u7` receives while the handle holds `others` more patterns.
async fn round(round: usize, others: usize, count: usize) -> Outcome {
    let prefix = format!("bench_shared_{}_{round}_{others}", std::process::id());
    let (receiver, publisher) = (connect().await, connect().await);
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
        let got = receive(&mut target, count, Duration::from_secs(5), drop).await;
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
    assert!(
        held.iter().all(|s| s.is_empty()),
        "the other patterns get nothing"
    );
    receiver.close().await.expect("close");
    publisher.close().await.expect("close");
    Outcome {
        rate: count as f64 / took.as_secs_f64(),
        ..Outcome::default()
    }
}

fn main() {
    let settings = Settings::from_env(ROUNDS);
    let count = settings.count(50_000, 10);
    pubsub_bench::main(async {
        let compared = compare(&settings, |side, r| async move {
            let others = match side {
                Side::Adapter => PATTERNS - 1,
                Side::Raw => 0,
            };
            round(r, others, count).await
        })
        .await;
        let rate = |o: Option<Outcome>| o.map_or(0.0, |o| o.rate);
        println!(
            "{count} messages to P.x.u7, received by P.*.u7 (median of {} interleaved rounds)",
            settings.rounds
        );
        println!(
            "  1 pattern on the handle      : {:>10.0} msg/s",
            rate(compared.raw)
        );
        println!(
            "  {PATTERNS} patterns on one glob : {:>10.0} msg/s",
            rate(compared.adapter)
        );
        if let Some(ratio) = compared.ratio {
            println!("  ratio {PATTERNS} / 1 = {ratio:.2}x (median of the per-round ratios)");
        }
    });
}
