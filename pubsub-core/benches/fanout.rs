//! Fan-out: 1 publisher → 100 subscriptions, 64-byte payload, memory backend against
//! `tokio::sync::broadcast` doing the same work (same message type, same receivers, no loss).
//!
//! Run: `cargo bench -p pubsub-core --bench fanout`. Prints deliveries per second for both and
//! the ratio memory / broadcast, measured in the same run (best of several alternating rounds).

use std::time::{Duration, Instant};

use pubsub_core::memory::MemoryBus;
use pubsub_core::{Message, SubscribeOptions, Topic};

const SUBSCRIBERS: usize = 100;
const MESSAGES: usize = 20_000;
const ROUNDS: usize = 5;

async fn memory_round(bus: &MemoryBus, msg: &Message) -> Duration {
    let hub = bus.connect().await.expect("connect");
    let mut receivers = Vec::new();
    for _ in 0..SUBSCRIBERS {
        let mut sub = hub
            .subscribe_with(
                msg.topic().clone().into(),
                SubscribeOptions::default().with_capacity(MESSAGES),
            )
            .await
            .expect("subscribe");
        receivers.push(tokio::spawn(async move {
            for _ in 0..MESSAGES {
                sub.recv().await.expect("message");
            }
            sub.dropped()
        }));
    }
    let start = Instant::now();
    for _ in 0..MESSAGES {
        hub.publish(msg.clone()).await.expect("publish");
    }
    for r in receivers {
        assert_eq!(r.await.expect("join"), 0, "nothing may be dropped");
    }
    let took = start.elapsed();
    hub.close().await.expect("close");
    took
}

async fn broadcast_round(msg: &Message) -> Duration {
    let (tx, _) = tokio::sync::broadcast::channel::<Message>(MESSAGES);
    let mut receivers = Vec::new();
    for _ in 0..SUBSCRIBERS {
        let mut rx = tx.subscribe();
        receivers.push(tokio::spawn(async move {
            for _ in 0..MESSAGES {
                rx.recv().await.expect("message");
            }
            0u64
        }));
    }
    let start = Instant::now();
    for _ in 0..MESSAGES {
        tx.send(msg.clone()).expect("send");
    }
    for r in receivers {
        r.await.expect("join");
    }
    start.elapsed()
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let bus = MemoryBus::new();
        let msg = Message::new(
            Topic::new("bench.fanout.msg").expect("topic"),
            vec![7u8; 64],
        );
        let (mut best_mem, mut best_bc) = (Duration::MAX, Duration::MAX);
        for _ in 0..ROUNDS {
            best_bc = best_bc.min(broadcast_round(&msg).await);
            best_mem = best_mem.min(memory_round(&bus, &msg).await);
        }
        let rate = |d: Duration| (MESSAGES * SUBSCRIBERS) as f64 / d.as_secs_f64();
        println!(
            "fanout 1 -> {SUBSCRIBERS} subs, {MESSAGES} msgs x 64 B (best of {ROUNDS} rounds)"
        );
        println!("  tokio broadcast : {:>12.0} deliveries/s", rate(best_bc));
        println!("  memory backend  : {:>12.0} deliveries/s", rate(best_mem));
        println!(
            "  ratio memory/broadcast = {:.2}x",
            best_bc.as_secs_f64() / best_mem.as_secs_f64()
        );
    });
}
