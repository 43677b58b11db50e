//! The adapter's side of the groups benchmarks, the same on every backend (each backend's
//! bench adds its raw client's side):
//!
//! - *one member*: a new group, from the start of a stream holding N × 64 B, read to the end
//!   by one member acknowledging each message (acknowledgements batched, the last one
//!   awaited), vs the raw client doing the same work its own way;
//! - *three members*: the same by three members on three handles, vs one member;
//! - *redelivery*: a member holding unacknowledged messages is dropped with its handle; the
//!   time until another member has them all, against the ack deadline.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pubsub_core::{GroupConfig, Hub, StartAt};

use crate::stream_bench::{fill, stream, SIZE};

/// The raw client's side of the one-member row: given the stream's prefix (the stream is
/// `<prefix>.>`, holding `n` messages as the adapter stored them) and a fresh group name,
/// consumes the `n` messages in that new group with acknowledgements; returns the time.
pub type RawConsume<'a> =
    Box<dyn Fn(String, String, usize) -> futures::future::BoxFuture<'a, Duration> + 'a>;

/// One backend's groups bench.
pub struct GroupBench<'a> {
    /// For the output (`Redis`, `NATS`…).
    pub backend: &'static str,
    /// Three handles: the first publishes and runs the one-member rows; all three run the
    /// three-member row.
    pub hubs: [Hub; 3],
    /// The raw client's consumption, and what it is (`XREADGROUP COUNT 64 + XACK`…).
    pub raw_consume: (RawConsume<'a>, &'static str),
    /// Each member's prefetch, and the raw client's batch (the same on both sides).
    pub prefetch: usize,
}

/// A fresh group name (1 to 64 of `A-Z a-z 0-9 _ -`).
pub fn group_name(label: &str) -> String {
    crate::unique_prefix(label)
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(64)
        .collect()
}

/// A new group `name` on `<prefix>.>`, from the start, with `prefetch`.
pub fn group(prefix: &str, name: &str, prefetch: usize) -> GroupConfig {
    GroupConfig::new(name, vec![format!("{prefix}.>").parse().expect("a pattern")])
        .expect("a valid group")
        .starting_at(StartAt::Start)
        .with_prefetch(prefetch)
}

/// One member of `config` on `hub` reads `n` messages, acknowledging each: the time from the
/// join until the broker took the last acknowledgement.
pub async fn consume(hub: &Hub, config: GroupConfig, n: usize) -> Duration {
    let start = Instant::now();
    let mut member = hub.join_group(config).await.expect("join");
    let mut last = None;
    for _ in 0..n {
        let message = member.recv().await.expect("a message");
        last = Some(message.ack());
    }
    if let Some(last) = last {
        last.await.expect("ack");
    }
    let took = start.elapsed();
    member.leave().await.expect("leave");
    took
}

/// Members of `config`, one on each of `hubs`, read `n` messages together, acknowledging
/// each: the time from the first join until `n` were acknowledged.
pub async fn consume_shared(hubs: &[Hub], config: GroupConfig, n: usize) -> Duration {
    let start = Instant::now();
    let acked = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(tokio::sync::Notify::new());
    let mut members = Vec::new();
    for hub in hubs {
        let mut member = hub.join_group(config.clone()).await.expect("join");
        let (acked, done) = (acked.clone(), done.clone());
        members.push(tokio::spawn(async move {
            while let Some(message) = member.recv().await {
                message.ack().await.expect("ack");
                if acked.fetch_add(1, Ordering::Relaxed) + 1 >= n {
                    done.notify_one();
                }
            }
        }));
    }
    done.notified().await;
    let took = start.elapsed();
    for member in members {
        member.abort();
    }
    took
}

/// A member on `doomed` (holding `n` unacknowledged messages) is dropped with its handle;
/// the time until a member on `survivor` has had them all.
pub async fn redelivery(survivor: &Hub, doomed: Hub, config: GroupConfig, n: usize) -> Duration {
    let mut holder = doomed.join_group(config.clone()).await.expect("join");
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        held.push(holder.recv().await.expect("a message"));
    }
    let mut other = survivor.join_group(config).await.expect("join");
    let killed = Instant::now();
    drop(held);
    drop(holder);
    drop(doomed);
    for _ in 0..n {
        let message = other.recv().await.expect("a redelivery");
        message.ack();
    }
    killed.elapsed()
}

/// Runs every row of `bench` with `settings` and prints them (N = 20 000; `BENCH_QUICK=1`
/// divides it by ten).
pub async fn run(bench: GroupBench<'_>, settings: &pubsub_bench::Settings) {
    use pubsub_bench::{interleave_async, Side};
    const WINDOW: usize = 128;
    let n = settings.count(20_000, 10);
    let rate = |n: usize, d: Duration| n as f64 / d.as_secs_f64();
    let name = bench.backend;
    let [one, two, three] = &bench.hubs;
    let p = crate::unique_prefix("bench_group");
    for hub in &bench.hubs {
        hub.declare_stream(stream(&p, 10_000_000))
            .await
            .expect("declare");
    }
    fill(one, &format!("{p}.t"), n, WINDOW).await;

    let (raw_consume, raw_what) = &bench.raw_consume;
    let prefetch = bench.prefetch;
    let timed = interleave_async(settings.rounds, |side| {
        let group_name = group_name("g1");
        match side {
            Side::Adapter => Box::pin(consume(one, group(&p, &group_name, prefetch), n))
                as futures::future::BoxFuture<'_, _>,
            Side::Raw => raw_consume(p.clone(), group_name, n),
        }
    })
    .await;
    println!(
        "{name}: one member of a new group reads {n} x {SIZE} B from the start, acknowledging each \
         (prefetch {prefetch}; median of {} interleaved rounds)",
        settings.rounds
    );
    println!(
        "  adapter (join_group + ack)   : {:>10.0} msg/s",
        rate(n, timed.ours_median())
    );
    println!(
        "  raw: {raw_what:<25}: {:>10.0} msg/s",
        rate(n, timed.base_median())
    );
    println!("  ratio adapter/raw = {}", timed.ratio_cell());

    let hubs = [one.clone(), two.clone(), three.clone()];
    let shared = interleave_async(settings.rounds, |side| {
        let group_name = group_name("g3");
        let config = group(&p, &group_name, prefetch);
        let hubs = hubs.clone();
        async move {
            match side {
                Side::Adapter => consume_shared(&hubs, config, n).await,
                Side::Raw => consume(&hubs[0], config, n).await,
            }
        }
    })
    .await;
    println!("{name}: three members on three handles vs one member, {n} messages");
    println!(
        "  three members : {:>10.0} msg/s",
        rate(n, shared.ours_median())
    );
    println!(
        "  one member    : {:>10.0} msg/s",
        rate(n, shared.base_median())
    );
    println!("  ratio three/one = {}", shared.ratio_cell());

    let deadline = Duration::from_secs(1);
    let r = crate::unique_prefix("bench_redeliver");
    let doomed = bench.hubs[1].clone();
    for hub in [one, &doomed] {
        hub.declare_stream(stream(&r, 10_000_000))
            .await
            .expect("declare");
    }
    let held = 100.min(n);
    let config = group(&r, &group_name("gr"), held).with_ack_deadline(deadline);
    let member = one.join_group(config.clone()).await.expect("create the group");
    drop(member);
    fill(one, &format!("{r}.t"), held, WINDOW).await;
    let took = redelivery(one, doomed, config, held).await;
    println!(
        "{name}: a member holding {held} unacknowledged messages is dropped with its handle \
         (ack deadline {deadline:?})"
    );
    println!("  all redelivered to another member after {took:?}");
}
