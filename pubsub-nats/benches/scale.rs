//! Scale: `n` distinct patterns on one handle, memory and NATS (`SCALE_BACKENDS=memory`, `=nats`
//! for one). The shape is `pubsub_test_support::scale`, for other backends' benches too. For each backend and each `n` (`SCALE_N`, default 10000,100000):
//!
//! - **subscribe** / **unsubscribe**: the time until the broker confirmed all `n`, every
//!   subscribe (unsubscribe) issued at once; cost is linear when the time per pattern stays
//!   flat (target: 100 000 takes no more than 12× the time of 10 000);
//! - **publish with n present**: the rate of one publisher to one subscription on a handle
//!   that also holds the `n` subscriptions, over the same on a handle holding only that one
//!   subscription (median of `BENCH_ROUNDS`, default 5, rounds interleaved; target ≥ 0.9×).
//!
//! `cargo bench -p pubsub-nats --bench scale` (NATS at `PUBSUB_NATS_URL`).

use std::time::Duration;

use pubsub_bench::median;
use pubsub_core::memory::MemoryBus;
use pubsub_core::{Hub, Topic};
use pubsub_test_support::broker::nats_url;
use pubsub_test_support::scale::{publish_rate, receiver, subscribe_many, unsubscribe_all};

/// Messages per publish round (memory: ten times as many).
const PUBLISHED: usize = 20_000;

/// Connects two handles of `backend` (a subscriber and a publisher) that see each other.
async fn connect_pair(backend: &str, bus: &MemoryBus) -> (Hub, Hub) {
    async fn one(backend: &str, bus: &MemoryBus) -> Hub {
        match backend {
            "memory" => bus.connect().await.expect("memory"),
            "nats" => {
                let config = pubsub_nats::NatsConfig::from_url(&nats_url()).expect("url");
                pubsub_nats::connect(config).await.expect("nats")
            }
            other => panic!("unknown backend {other}"),
        }
    }
    (one(backend, bus).await, one(backend, bus).await)
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

async fn run(backend: &str, sizes: &[usize], rounds: usize) {
    let bus = MemoryBus::new();
    let prefix = format!("scale.{}.{backend}", std::process::id());
    let count = if backend == "memory" {
        PUBLISHED * 10
    } else {
        PUBLISHED
    };
    let mut per_pattern = Vec::new();
    for &n in sizes {
        let (loaded, publisher) = connect_pair(backend, &bus).await;
        let (bare, _) = connect_pair(backend, &bus).await;
        let hot_loaded: Topic = format!("{prefix}.n{n}.hot.loaded").parse().expect("topic");
        let hot_bare: Topic = format!("{prefix}.n{n}.hot.bare").parse().expect("topic");
        let mut rx_loaded = receiver(&loaded, &hot_loaded, count).await;
        let mut rx_bare = receiver(&bare, &hot_bare, count).await;

        let (subs, subscribe) = subscribe_many(&loaded, &format!("{prefix}.n{n}"), n).await;
        assert_eq!(loaded.stats().subscriptions, n + 1);
        let mut ratios = Vec::new();
        for _ in 0..rounds {
            let with = publish_rate(&publisher, &hot_loaded, &mut rx_loaded, count).await;
            let without = publish_rate(&publisher, &hot_bare, &mut rx_bare, count).await;
            ratios.push(with / without);
        }
        let unsubscribe = unsubscribe_all(subs).await;
        assert_eq!(loaded.stats().subscriptions, 1);
        let ratio = median(ratios.clone());
        let spread = ratios.iter().cloned().fold(f64::INFINITY, f64::min)
            ..=ratios.iter().cloned().fold(0.0, f64::max);
        println!(
            "| {backend} | {n} | {} | {} | {:.1} µs / {:.1} µs | {ratio:.2}× ({:.2}–{:.2}) |",
            ms(subscribe),
            ms(unsubscribe),
            subscribe.as_secs_f64() * 1e6 / n as f64,
            unsubscribe.as_secs_f64() * 1e6 / n as f64,
            spread.start(),
            spread.end(),
        );
        per_pattern.push((n, subscribe, unsubscribe));
        for hub in [loaded, publisher, bare] {
            let _ = hub.close().await;
        }
    }
    if let [(n0, s0, u0), .., (n1, s1, u1)] = per_pattern[..] {
        println!(
            "| {backend} | {n1} vs {n0} | {:.1}× the time | {:.1}× the time | | |",
            s1.as_secs_f64() / s0.as_secs_f64(),
            u1.as_secs_f64() / u0.as_secs_f64(),
        );
    }
}

fn main() {
    let backends = std::env::var("SCALE_BACKENDS").unwrap_or_else(|_| "memory,nats".into());
    let sizes: Vec<usize> = std::env::var("SCALE_N")
        .unwrap_or_else(|_| "10000,100000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let rounds = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    println!("Scale: n distinct patterns on one handle; publish ratio = with n / with none");
    println!("(median of {rounds} interleaved rounds, min–max in brackets)");
    println!();
    println!("| backend | n | subscribe n | unsubscribe n | per pattern (sub / unsub) | publish with n present |");
    println!("|---|---:|---:|---:|---:|---:|");
    pubsub_bench::runtime().block_on(async {
        for backend in backends.split(',') {
            run(backend.trim(), &sizes, rounds).await;
        }
    });
}
