//! Subscribing and unsubscribing many patterns on one Redis handle: the time should grow
//! linearly (issue 14: 100 000 patterns in at most 12× the time of 10 000).
//!
//! Each round subscribes N patterns of the routing bench's mix (60% exact, 25% `*`, 15% `>`,
//! 100 tenants) on a fresh handle, 512 subscribes in flight (each resolves once Redis confirmed
//! its filter), then unsubscribes them all the same way (each resolves once Redis released what
//! no other subscription needs). Rounds alternate 10 000 and 100 000; the figures are medians.
//!
//! Run: `cargo bench -p pubsub-redis --bench subscribe_scale` (Redis at `PUBSUB_REDIS_URL`);
//! `BENCH_QUICK=1` runs 1 000 against 10 000; `BENCH_MAX_GLOBS=<n>` sets the glob budget
//! (`1000000` plans nothing: the behaviour before planning).

mod common;

use std::time::{Duration, Instant};

use pubsub_bench::{median, Settings};

const ROUNDS: usize = 5;

/// Times to subscribe and to unsubscribe `n` patterns, and the globs at the server meanwhile.
async fn round(round: usize, n: usize) -> (Duration, Duration, usize) {
    let run = format!("s{}r{round}n{n}", std::process::id());
    let hub = common::connect().await;
    let patterns = common::mixed(&run, n);
    let started = Instant::now();
    let subs = common::subscribe_all(&hub, patterns).await;
    let subscribed = started.elapsed();
    let globs = common::server_globs().await;
    let started = Instant::now();
    common::unsubscribe_all(subs).await;
    let unsubscribed = started.elapsed();
    assert_eq!(hub.stats().native_filters, 0, "every filter released");
    hub.close().await.expect("close");
    (subscribed, unsubscribed, globs)
}

fn main() {
    let settings = Settings::from_env(ROUNDS);
    let (small, large) = match settings.quick {
        true => (1_000, 10_000),
        false => (10_000, 100_000),
    };
    pubsub_bench::main(async {
        let mut rows: Vec<(usize, Vec<Duration>, Vec<Duration>, usize)> =
            vec![(small, vec![], vec![], 0), (large, vec![], vec![], 0)];
        for r in 0..settings.rounds {
            for (n, subs, unsubs, globs) in rows.iter_mut() {
                let (s, u, g) = round(r, *n).await;
                subs.push(s);
                unsubs.push(u);
                *globs = g;
            }
        }
        println!(
            "subscribe / unsubscribe N mixed patterns on one handle, {} in flight \
             (max_globs {}, median of {} interleaved rounds)",
            common::IN_FLIGHT,
            common::max_globs(),
            settings.rounds
        );
        let mut medians = Vec::new();
        for (n, subs, unsubs, globs) in rows {
            let (s, u) = (median(subs), median(unsubs));
            println!(
                "  {n:>7} patterns: subscribe {:>8.3} s ({:>6.1} µs each), unsubscribe {:>8.3} s \
                 ({:>6.1} µs each); {globs} globs at the server",
                s.as_secs_f64(),
                s.as_secs_f64() * 1e6 / n as f64,
                u.as_secs_f64(),
                u.as_secs_f64() * 1e6 / n as f64,
            );
            medians.push((s, u));
        }
        let ratio = |a: Duration, b: Duration| b.as_secs_f64() / a.as_secs_f64();
        println!(
            "  time ratio {large} / {small}: subscribe {:.2}x, unsubscribe {:.2}x (linear: {}x)",
            ratio(medians[0].0, medians[1].0),
            ratio(medians[0].1, medians[1].1),
            large / small
        );
    });
}
