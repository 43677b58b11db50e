//! Fan-out: 1 publisher → 100 subscriptions, 64-byte payload, memory backend against
//! `tokio::sync::broadcast` doing the same work (same message type, same receivers, no loss).
//!
//! Run: `cargo bench -p pubsub-core --bench fanout` (`BENCH_ROUNDS=<n>`, default 7). Rounds
//! alternate (memory, broadcast, memory, …); prints the median deliveries per second of each,
//! the median of the per-round ratios memory / broadcast with its spread, and allocations per
//! published message (a counting global allocator; the payload is shared by all copies).

mod common;

use std::cell::Cell;
use std::time::{Duration, Instant};

use pubsub_bench::{allocations, interleave_async, CountingAlloc, Settings, Side};
use pubsub_core::memory::MemoryBus;
use pubsub_core::Message;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const SUBSCRIBERS: usize = 100;
const MESSAGES: usize = 20_000;
const ROUNDS: usize = 7;

/// Allocations per published message in the timed part of the last round of each side.
#[derive(Default)]
struct PerMessage {
    memory: Cell<f64>,
    broadcast: Cell<f64>,
}

async fn memory_round(bus: &MemoryBus, msg: &Message, allocs: &Cell<f64>) -> Duration {
    let hub = bus.connect().await.expect("connect");
    let readers = common::readers(&hub, msg, SUBSCRIBERS, MESSAGES, |mut sub| async move {
        for _ in 0..MESSAGES {
            sub.recv().await.expect("message");
        }
        assert_eq!(sub.dropped(), 0, "nothing may be dropped");
    })
    .await;
    let before = allocations();
    let took = common::publish_and_join(&hub, msg, MESSAGES, readers).await;
    allocs.set((allocations() - before) as f64 / MESSAGES as f64);
    hub.close().await.expect("close");
    took
}

async fn broadcast_round(msg: &Message, allocs: &Cell<f64>) -> Duration {
    let (tx, _) = tokio::sync::broadcast::channel::<Message>(MESSAGES);
    let mut receivers = Vec::new();
    for _ in 0..SUBSCRIBERS {
        let mut rx = tx.subscribe();
        receivers.push(tokio::spawn(async move {
            for _ in 0..MESSAGES {
                rx.recv().await.expect("message");
            }
        }));
    }
    let before = allocations();
    let start = Instant::now();
    for _ in 0..MESSAGES {
        tx.send(msg.clone()).expect("send");
    }
    for r in receivers {
        r.await.expect("join");
    }
    let took = start.elapsed();
    allocs.set((allocations() - before) as f64 / MESSAGES as f64);
    took
}

fn main() {
    let settings = Settings::from_env(ROUNDS);
    pubsub_bench::runtime().block_on(async {
        let bus = MemoryBus::new();
        let msg = common::message("bench.fanout.msg");
        let per = PerMessage::default();
        // Warm-up, not counted.
        memory_round(&bus, &msg, &per.memory).await;
        broadcast_round(&msg, &per.broadcast).await;
        let timed = interleave_async(settings.rounds, |side| {
            let (msg, bus, per) = (&msg, &bus, &per);
            async move {
                match side {
                    Side::Adapter => memory_round(bus, msg, &per.memory).await,
                    Side::Raw => broadcast_round(msg, &per.broadcast).await,
                }
            }
        })
        .await;
        let rate = |d: Duration| (MESSAGES * SUBSCRIBERS) as f64 / d.as_secs_f64();
        println!(
            "fanout 1 -> {SUBSCRIBERS} subs, {MESSAGES} msgs x 64 B (median of {} interleaved rounds)",
            settings.rounds
        );
        println!(
            "  tokio broadcast : {:>12.0} deliveries/s, {:.2} allocations per message",
            rate(timed.base_median()),
            per.broadcast.get()
        );
        println!(
            "  memory backend  : {:>12.0} deliveries/s, {:.2} allocations per message",
            rate(timed.ours_median()),
            per.memory.get()
        );
        println!("  ratio memory/broadcast = {}", timed.ratio_cell());
    });
}
