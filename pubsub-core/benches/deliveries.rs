//! What reading a subscription as deliveries (messages and gaps) costs over reading plain
//! messages: 1 publisher -> 10 subscriptions on the memory backend, 64 B, read with `recv()`
//! in one round and with `recv_delivery()` in the next, interleaved.
//!
//! Run: `cargo bench -p pubsub-core --bench deliveries` (`BENCH_ROUNDS=<n>`, default 7).
//! Prints the median throughput of each form and the median of the per-round ratios with its
//! spread (the aim: the delivery form within 5% of the plain one).

mod common;

use std::time::Duration;

use pubsub_bench::{interleave_async, Settings, Side};

use pubsub_core::memory::MemoryBus;
use pubsub_core::{Delivery, Message};

const SUBSCRIBERS: usize = 10;
const MESSAGES: usize = 200_000;
const ROUNDS: usize = 7;

async fn round(bus: &MemoryBus, msg: &Message, as_deliveries: bool) -> Duration {
    let hub = bus.connect().await.expect("connect");
    let readers = common::readers(&hub, msg, SUBSCRIBERS, MESSAGES, |mut sub| async move {
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
    })
    .await;
    let took = common::publish_and_join(&hub, msg, MESSAGES, readers).await;
    hub.close().await.expect("close");
    took
}

fn main() {
    let settings = Settings::from_env(ROUNDS);
    pubsub_bench::runtime().block_on(async {
        let bus = MemoryBus::new();
        let msg = common::message("bench.deliveries");
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
