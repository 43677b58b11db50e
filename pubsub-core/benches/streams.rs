//! What a stream costs on the memory backend, each against the same work without it, in
//! interleaved rounds:
//!
//! - *publish*: 1 publisher → 1 subscription, 64 B, the topic under a declared stream (append
//!   to the ring, positions on every copy, the follower between the live path and the reader)
//!   vs the same topic on a bus without streams;
//! - *replay*: a subscription from the start of a stream holding 100 000 messages, read to the
//!   end, vs the same 100 000 messages delivered live (publish and read).
//!
//! Run: `cargo bench -p pubsub-core --bench streams` (`BENCH_ROUNDS=<n>`, default 7;
//! `BENCH_QUICK=1` for 10 000 messages). Prints each median rate and the median of the
//! per-round ratios (stream / plain) with its spread.

use std::time::{Duration, Instant};

use pubsub_bench::{interleave_async, Settings, Side};
use pubsub_core::memory::MemoryBus;
use pubsub_core::{Hub, Message, StartAt, StreamConfig, SubscribeOptions, Topic};

const ROUNDS: usize = 7;
const TOPIC: &str = "bench.stream.t";

/// A 64-byte message on the stream's topic.
fn message() -> Message {
    Message::new(Topic::new(TOPIC).expect("topic"), vec![7u8; 64])
}

fn stream() -> StreamConfig {
    StreamConfig::new("bench.stream.>".parse().expect("root")).with_max_len(1_000_000)
}

async fn handle(with_stream: bool) -> Hub {
    let hub = MemoryBus::new().connect().await.expect("connect");
    if with_stream {
        hub.declare_stream(stream()).await.expect("declare");
    }
    hub
}

/// Publishes `n` messages while one subscription reads them: the time to the last one read.
async fn live_round(with_stream: bool, n: usize) -> Duration {
    let hub = handle(with_stream).await;
    let msg = message();
    let options = SubscribeOptions::default().with_capacity(n);
    let mut sub = hub
        .subscribe_with(TOPIC.parse().expect("pattern"), options)
        .await
        .expect("subscribe");
    let reader = tokio::spawn(async move {
        for _ in 0..n {
            sub.recv().await.expect("message");
        }
    });
    let start = Instant::now();
    for _ in 0..n {
        hub.publish(msg.clone()).await.expect("publish");
    }
    reader.await.expect("reader");
    let took = start.elapsed();
    hub.close().await.expect("close");
    took
}

/// Replays `n` messages a stream holds from its start: the time to the last one read.
async fn replay_round(hub: &Hub, n: usize) -> Duration {
    let options = SubscribeOptions::default().starting_at(StartAt::Start);
    let start = Instant::now();
    let mut sub = hub
        .subscribe_with(TOPIC.parse().expect("pattern"), options)
        .await
        .expect("subscribe");
    for _ in 0..n {
        sub.recv().await.expect("message");
    }
    start.elapsed()
}

fn main() {
    let settings = Settings::from_env(ROUNDS);
    let n = settings.count(100_000, 10);
    pubsub_bench::runtime().block_on(async {
        let rate = |d: Duration| n as f64 / d.as_secs_f64();
        let live =
            interleave_async(settings.rounds, |side| live_round(side == Side::Adapter, n)).await;
        println!(
            "memory, 1 publisher -> 1 subscription, {n} x 64 B (median of {} interleaved rounds)",
            settings.rounds
        );
        println!(
            "  under a stream : {:>12.0} msg/s",
            rate(live.ours_median())
        );
        println!(
            "  no stream      : {:>12.0} msg/s",
            rate(live.base_median())
        );
        println!("  ratio stream/plain = {}", live.ratio_cell());

        let held = handle(true).await;
        let msg = message();
        for _ in 0..n {
            held.publish(msg.clone()).await.expect("publish");
        }
        let replay = interleave_async(settings.rounds, |side| {
            let held = held.clone();
            async move {
                match side {
                    Side::Adapter => replay_round(&held, n).await,
                    Side::Raw => live_round(false, n).await,
                }
            }
        })
        .await;
        println!("replay of {n} x 64 B from the start vs the same delivered live");
        println!(
            "  replay         : {:>12.0} msg/s",
            rate(replay.ours_median())
        );
        println!(
            "  live           : {:>12.0} msg/s",
            rate(replay.base_median())
        );
        println!("  ratio replay/live = {}", replay.ratio_cell());
        held.close().await.expect("close");
    });
}
