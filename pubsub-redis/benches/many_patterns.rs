//! Delivery with 10 000 mixed patterns on one Redis handle against the same handle with one
//! pattern: Redis tests every `PSUBSCRIBE` glob on every `PUBLISH`, so without planning the
//! ~2600 globs of this mix slow the server itself (issue 14 measured 0.14×); the adapter's glob
//! planning (`RedisConfig::max_globs`) bounds them. The aim is at least 0.8×.
//!
//! Each round, one handle holds the routing bench's mix of 10 000 patterns (60% exact, 25% `*`,
//! 15% `>` over 100 tenants) plus the target `T7.room3.*` (or the target alone, the baseline),
//! and another handle publishes a burst to `T7.room3.zz` with 128 publishes in flight, which
//! only the target matches. Rounds interleave, the ratio is the median of the per-round ratios.
//!
//! Run: `cargo bench -p pubsub-redis --bench many_patterns` (Redis at `PUBSUB_REDIS_URL`,
//! default `redis://127.0.0.1:6379`); `BENCH_QUICK=1` for a smoke run; `BENCH_MAX_GLOBS=<n>`
//! for another glob budget (`BENCH_MAX_GLOBS=1000000` plans nothing: the behaviour before
//! planning).

mod common;

use std::time::{Duration, Instant};

use pubsub_bench::{compare, publish_pipelined, Outcome, Settings, Side};
use pubsub_core::{Message, SubscribeOptions, Topic};
use pubsub_test_support::kit::receive;

const PATTERNS: usize = 10_000;
const ROUNDS: usize = 5;
const WINDOW: usize = 128;

/// The rate at which the target receives while its handle holds `others` more patterns.
async fn round(round: usize, others: usize, count: usize) -> (Outcome, usize) {
    let run = format!("m{}r{round}o{others}", std::process::id());
    let (receiver, publisher) = (common::connect().await, common::connect().await);
    let held = common::subscribe_all(&receiver, common::mixed(&run, others)).await;
    let target_tenant = common::tenant(&run, 7);
    let mut target = receiver
        .subscribe_with(
            format!("{target_tenant}.room3.*").parse().expect("pattern"),
            SubscribeOptions::default().with_capacity(count),
        )
        .await
        .expect("subscribe");
    let globs = common::server_globs().await;
    let topic = Topic::new(&format!("{target_tenant}.room3.zz")).expect("topic");
    let reader = tokio::spawn(async move {
        let got = receive(&mut target, count, Duration::from_secs(5), drop).await;
        (got, target.dropped(), Instant::now())
    });
    let (started, _) = publish_pipelined(count, WINDOW, |i| {
        publisher.publish(Message::new(topic.clone(), i.to_le_bytes().to_vec()))
    })
    .await;
    let (got, dropped, done) = reader.await.expect("reader");
    assert!(
        held.iter().all(|s| s.is_empty()),
        "the other patterns get nothing"
    );
    drop(held);
    receiver.close().await.expect("close");
    publisher.close().await.expect("close");
    let outcome = Outcome {
        rate: got as f64 / (done - started).as_secs_f64(),
        missing: count - got + dropped as usize,
        ..Outcome::default()
    };
    (outcome, globs)
}

fn main() {
    let settings = Settings::from_env(ROUNDS);
    let count = settings.count(50_000, 10);
    pubsub_bench::main(async {
        let globs = std::cell::Cell::new(0);
        let compared = compare(&settings, |side, r| {
            let others = match side {
                Side::Adapter => PATTERNS,
                Side::Raw => 0,
            };
            let globs = &globs;
            async move {
                let (outcome, n) = round(r, others, count).await;
                if others > 0 {
                    globs.set(n);
                }
                outcome
            }
        })
        .await;
        let rate = |o: Option<Outcome>| o.map_or(0.0, |o| o.rate);
        let missing = |o: Option<Outcome>| o.map_or(0, |o| o.missing);
        println!(
            "{count} messages, {WINDOW} in flight, to T7.room3.zz, received by T7.room3.* \
             (max_globs {}, median of {} interleaved rounds)",
            common::max_globs(),
            settings.rounds
        );
        println!(
            "  1 pattern on the handle          : {:>10.0} msg/s (missing {})",
            rate(compared.raw),
            missing(compared.raw)
        );
        println!(
            "  {PATTERNS} mixed patterns + target : {:>10.0} msg/s (missing {}; {} globs at the server)",
            rate(compared.adapter),
            missing(compared.adapter),
            globs.get()
        );
        if let Some(ratio) = compared.ratio {
            println!("  ratio {PATTERNS} / 1 = {ratio:.2}x (median of the per-round ratios)");
        }
    });
}
