//! What reading a subscription as deliveries (messages and gaps) costs over reading plain
//! messages: 1 publisher -> 10 subscriptions on the memory backend, 64 B, read with `recv()`
//! in one round and with `recv_delivery()` in the next, interleaved.
//!
//! Run: `cargo bench -p pubsub-core --bench deliveries` (`BENCH_ROUNDS=<n>`, default 7).
//! Prints the median throughput of each form and the median of the per-round ratios with its
//! spread (the aim: the delivery form within 5% of the plain one).

use std::time::{Duration, Instant};

use pubsub_bench::{interleave_async, Settings, Side};

use pubsub_core::memory::MemoryBus;
use pubsub_core::{Delivery, Message, SubscribeOptions, Topic};

const SUBSCRIBERS: usize = 10;
const MESSAGES: usize = 200_000;
const ROUNDS: usize = 7;

async fn round(bus: &MemoryBus, msg: &Message, as_deliveries: bool) -> Duration {
    let hub = bus.connect().await.expect("connect");
    let mut readers = Vec::new();
    for _ in 0..SUBSCRIBERS {
        let options = SubscribeOptions::default().with_capacity(MESSAGES);
        let mut sub = hub
            .subscribe_with(msg.topic().clone().into(), options)
            .await
            .expect("subscribe");
        readers.push(tokio::spawn(async move {
            for _ in 0..MESSAGES {
                if as_deliveries {
                    match sub.recv_delivery().await {
                        Some(Delivery::Message(_)) => {}
                        other => panic!("unexpected {other:?}"),
                    }
                } else {
                    sub.recv().await.expect("message");
                }
            }
        }));
    }
    let start = Instant::now();
    for _ in 0..MESSAGES {
        hub.publish(msg.clone()).await.expect("publish");
    }
    for r in readers {
        r.await.expect("reader");
    }
    let took = start.elapsed();
    hub.close().await.expect("close");
    took
}

fn main() {
    let settings = Settings::from_env(ROUNDS);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let bus = MemoryBus::new();
        let msg = Message::new(
            Topic::new("bench.deliveries").expect("topic"),
            vec![7u8; 64],
        );
        // The side under test reads deliveries; the baseline reads plain messages.
        let timed = interleave_async(settings.rounds, |side| {
            round(&bus, &msg, side == Side::Adapter)
        })
        .await;
        let rate = |d: Duration| (MESSAGES * SUBSCRIBERS) as f64 / d.as_secs_f64();
        println!(
            "1 -> {SUBSCRIBERS} subscriptions, {MESSAGES} x 64 B (median of {} interleaved rounds)",
            settings.rounds
        );
        println!(
            "  plain messages : {:>12.0} deliveries/s",
            rate(timed.base_median())
        );
        println!(
            "  deliveries     : {:>12.0} deliveries/s",
            rate(timed.ours_median())
        );
        println!("  ratio deliveries/plain = {}", timed.ratio_cell());
    });
}
