//! What a group costs on the memory backend, in interleaved rounds:
//!
//! - *one member*: a new group reads a stream holding 100 000 × 64 B from the start,
//!   acknowledging each message, vs a stream subscription reading the same messages from the
//!   start (no acknowledgements: memory has no raw client, so the baseline is the replay);
//! - *three members* on three handles of one bus vs one member, the same work.
//!
//! Run: `cargo bench -p pubsub-core --bench groups` (`BENCH_ROUNDS=<n>`, default 5;
//! `BENCH_QUICK=1` for 10 000 messages). The brokers' group benches
//! (`cargo bench -p pubsub-<backend> --bench groups`) compare with their raw clients.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pubsub_bench::{interleave_async, Settings, Side};
use pubsub_core::memory::MemoryBus;
use pubsub_core::{GroupConfig, Hub, Message, StartAt, StreamConfig, SubscribeOptions, Topic};

const ROUNDS: usize = 5;
const PREFETCH: usize = 64;
const ROOT: &str = "bench.group.>";

fn group(name: &str) -> GroupConfig {
    GroupConfig::new(name, vec![ROOT.parse().expect("pattern")])
        .expect("group")
        .starting_at(StartAt::Start)
        .with_prefetch(PREFETCH)
}

/// Members of a new group `name`, one per handle, read `n` messages, acknowledging each.
async fn consume(hubs: &[Hub], name: &str, n: usize) -> Duration {
    let start = Instant::now();
    let acked = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(tokio::sync::Notify::new());
    let mut members = Vec::new();
    for hub in hubs {
        let mut member = hub.join_group(group(name)).await.expect("join");
        let (acked, done) = (acked.clone(), done.clone());
        members.push(tokio::spawn(async move {
            while let Some(message) = member.recv().await {
                message.ack();
                if acked.fetch_add(1, Ordering::Relaxed) + 1 == n {
                    done.notify_one();
                }
            }
        }));
    }
    done.notified().await;
    let took = start.elapsed();
    members.iter().for_each(|m| m.abort());
    took
}

/// A stream subscription from the start reads the `n` messages.
async fn replay(hub: &Hub, n: usize) -> Duration {
    let options = SubscribeOptions::default()
        .starting_at(StartAt::Start)
        .with_capacity(PREFETCH);
    let start = Instant::now();
    let mut sub = hub
        .subscribe_with(ROOT.parse().expect("pattern"), options)
        .await
        .expect("subscribe");
    for _ in 0..n {
        sub.recv().await.expect("a message");
    }
    start.elapsed()
}

fn main() {
    let settings = Settings::from_env(ROUNDS);
    let n = settings.count(100_000, 10);
    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    pubsub_bench::runtime().block_on(async {
        let bus = MemoryBus::new();
        let mut hubs = Vec::new();
        for _ in 0..3 {
            let hub = bus.connect().await.expect("connect");
            let stream = StreamConfig::new(ROOT.parse().expect("root")).with_max_len(10_000_000);
            hub.declare_stream(stream).await.expect("declare");
            hubs.push(hub);
        }
        let topic = Topic::new("bench.group.t").expect("topic");
        for _ in 0..n {
            let message = Message::new(topic.clone(), vec![7u8; 64]);
            hubs[0].publish(message).await.expect("publish");
        }
        let mut round = 0;
        let one = interleave_async(settings.rounds, |side| {
            round += 1;
            let name = format!("one-{round}");
            let hubs = &hubs;
            async move {
                match side {
                    Side::Adapter => consume(&hubs[..1], &name, n).await,
                    Side::Raw => replay(&hubs[0], n).await,
                }
            }
        })
        .await;
        println!(
            "memory: one member of a new group reads {n} x 64 B from the start, acking each \
             (prefetch {PREFETCH}; median of {} interleaved rounds)",
            settings.rounds
        );
        println!(
            "  group member          : {:>10.0} msg/s",
            rate(one.ours_median())
        );
        println!(
            "  stream replay, no acks: {:>10.0} msg/s",
            rate(one.base_median())
        );
        println!("  ratio group/replay = {}", one.ratio_cell());
        let three = interleave_async(settings.rounds, |side| {
            round += 1;
            let name = format!("three-{round}");
            let hubs = &hubs;
            async move {
                match side {
                    Side::Adapter => consume(hubs, &name, n).await,
                    Side::Raw => consume(&hubs[..1], &name, n).await,
                }
            }
        })
        .await;
        println!("memory: three members on three handles vs one member, {n} messages");
        println!(
            "  three members : {:>10.0} msg/s",
            rate(three.ours_median())
        );
        println!(
            "  one member    : {:>10.0} msg/s",
            rate(three.base_median())
        );
        println!("  ratio three/one = {}", three.ratio_cell());
    });
}
