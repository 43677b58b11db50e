//! The adapter's side of the streams benchmarks, the same on every backend (each backend's
//! bench adds its raw client's side): publishing under a stream or not, replaying a held
//! history, live latency under a stream or not, and a mass resume after a cut.
//!
//! Every message is 64 bytes, stamped with its send time and sequence number
//! ([`pubsub_bench::stamp`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use pubsub_core::{Hub, Message, StartAt, StreamConfig, SubscribeOptions, Topic};

/// The payload size of every stream bench.
pub const SIZE: usize = 64;

/// A stream under `<prefix>.>` that holds `max_len` messages for an hour.
pub fn stream(prefix: &str, max_len: u64) -> StreamConfig {
    StreamConfig::new(format!("{prefix}.>").parse().expect("a valid root"))
        .with_max_len(max_len)
        .with_max_age(Duration::from_secs(3600))
}

fn message(topic: &Topic, seq: u64) -> Message {
    Message::new(topic.clone(), pubsub_bench::stamp(seq, SIZE))
}

/// Publishes `n` messages to `topic` (at most `window` in flight) while one subscription to
/// it on the same handle reads them all: the time until the last one was read.
pub async fn publish_and_read(hub: &Hub, topic: &str, n: usize, window: usize) -> Duration {
    let topic: Topic = topic.parse().expect("a valid topic");
    let options = SubscribeOptions::default().with_capacity(n.max(1));
    let mut sub = hub
        .subscribe_with(topic.as_str().parse().expect("a pattern"), options)
        .await
        .expect("subscribe");
    let reader = tokio::spawn(async move {
        for _ in 0..n {
            sub.recv().await.expect("a message");
        }
    });
    let start = Instant::now();
    fill(hub, topic.as_str(), n, window).await;
    reader.await.expect("reader");
    start.elapsed()
}

/// Publishes `n` messages to `topic` for a later replay.
pub async fn fill(hub: &Hub, topic: &str, n: usize, window: usize) {
    let topic: Topic = topic.parse().expect("a valid topic");
    futures::stream::iter(0..n as u64)
        .map(|seq| hub.publish(message(&topic, seq)))
        .buffered(window)
        .for_each(|r| {
            r.expect("publish");
            futures::future::ready(())
        })
        .await;
}

/// Subscribes to `pattern` from the start of its stream and reads `n` messages: the time
/// from the subscribe call to the last one read.
pub async fn replay(hub: &Hub, pattern: &str, n: usize) -> Duration {
    let options = SubscribeOptions::default()
        .starting_at(StartAt::Start)
        .with_capacity(4096);
    let start = Instant::now();
    let mut sub = hub
        .subscribe_with(pattern.parse().expect("a pattern"), options)
        .await
        .expect("subscribe");
    for _ in 0..n {
        sub.recv().await.expect("a message");
    }
    start.elapsed()
}

/// Publishes `n` messages to `topic` one every `every`, each read by one subscription on
/// `reader`: the median publish-to-receipt latency.
pub async fn latency_p50(
    publisher: &Hub,
    reader: &Hub,
    topic: &str,
    n: usize,
    every: Duration,
) -> Duration {
    let topic: Topic = topic.parse().expect("a valid topic");
    let mut sub = reader
        .subscribe(topic.as_str().parse().expect("a pattern"))
        .await
        .expect("subscribe");
    let collect = tokio::spawn(async move {
        let mut latencies = Vec::with_capacity(n);
        for _ in 0..n {
            let m = sub.recv().await.expect("a message");
            latencies.push(pubsub_bench::latency(m.payload()));
        }
        latencies
    });
    let mut tick = tokio::time::interval(every);
    for seq in 0..n as u64 {
        tick.tick().await;
        publisher
            .publish(message(&topic, seq))
            .await
            .expect("publish");
    }
    pubsub_bench::median(collect.await.expect("reader"))
}

/// `subscriptions` subscriptions to `topic` on `cut_handle` (whose connection `cut` and
/// `restore` break and mend), then `behind` messages published by `publisher` while it is
/// cut: the time from the restore until every subscription read all of them.
pub async fn mass_resume<C, R>(
    cut_handle: &Hub,
    publisher: &Hub,
    topic: &str,
    subscriptions: usize,
    behind: usize,
    cut: C,
    restore: R,
) -> Duration
where
    C: FnOnce(),
    R: FnOnce(),
{
    let pattern = topic.parse::<pubsub_core::Pattern>().expect("a pattern");
    let mut subs = Vec::with_capacity(subscriptions);
    for _ in 0..subscriptions {
        let options = SubscribeOptions::default().with_capacity(behind.max(16));
        subs.push(
            cut_handle
                .subscribe_with(pattern.clone(), options)
                .await
                .expect("subscribe"),
        );
    }
    let mut state = cut_handle.watch_connection();
    cut();
    state
        .wait_for(|s| !s.is_up())
        .await
        .expect("the handle goes down");
    fill(publisher, topic, behind, 128).await;
    let restored = Instant::now();
    restore();
    let done = Arc::new(tokio::sync::Barrier::new(subscriptions + 1));
    for mut sub in subs {
        let done = done.clone();
        tokio::spawn(async move {
            let mut read = 0;
            while read < behind {
                match sub.recv_delivery().await.expect("a delivery") {
                    pubsub_core::Delivery::Message(_) => read += 1,
                    other => panic!("a {other:?} during the resume"),
                }
            }
            done.wait().await;
        });
    }
    done.wait().await;
    restored.elapsed()
}

/// The raw client's side of the replay: reads the `n` messages held by the stream under
/// `<prefix>.>` (as the adapter stored them) and returns the time it took.
pub type RawReplay<'a> =
    Box<dyn Fn(String, usize) -> futures::future::BoxFuture<'a, Duration> + 'a>;

/// A handle behind a link the bench can cut and restore, for the mass resume.
pub struct Cuttable<'a> {
    /// The handle whose subscriptions resume.
    pub handle: Hub,
    /// Breaks its connection.
    pub cut: Box<dyn Fn() + 'a>,
    /// Mends it.
    pub restore: Box<dyn Fn() + 'a>,
}

impl<'a> Cuttable<'a> {
    /// `handle`, connected through `proxy`: the proxy's cut and restore.
    pub fn through(handle: Hub, proxy: &'a crate::proxy::TcpProxy) -> Self {
        Cuttable {
            handle,
            cut: Box::new(|| proxy.cut()),
            restore: Box::new(|| proxy.restore()),
        }
    }
}

/// One backend's streams bench.
pub struct Bench<'a> {
    /// For the output (`Redis`, `NATS`…).
    pub backend: &'static str,
    /// Publishes (and subscribes, for the publish and replay rows).
    pub publisher: Hub,
    /// Subscribes for the latency row.
    pub reader: Hub,
    /// The raw client's replay, and what it is (`XRANGE COUNT 512`…).
    pub raw_replay: (RawReplay<'a>, &'static str),
    /// For the mass-resume row, where the backend has one.
    pub cuttable: Option<Cuttable<'a>>,
    /// Messages held for the replay row ([`REPLAY_HELD`] unless a test broker cannot serve so
    /// many).
    pub replay_held: usize,
}

/// Messages a stream holds for the replay row.
pub const REPLAY_HELD: usize = 100_000;

/// Runs every row of `bench` with `settings` and prints them: publish under a stream vs not
/// (N = 20 000, 128 in flight), replay of [`Bench::replay_held`] vs the raw client, p50 latency under a
/// stream vs not (2 000 messages, 1 per ms), and the mass resume (1 000 subscriptions × 1 000
/// messages behind). `BENCH_QUICK=1` divides the volumes by ten (not the mass resume's).
pub async fn run(bench: Bench<'_>, settings: &pubsub_bench::Settings) {
    use pubsub_bench::{interleave_async, Side};
    const WINDOW: usize = 128;
    let n = settings.count(20_000, 10);
    let held = settings.count(bench.replay_held, 10);
    let latency_n = settings.count(2_000, 10);
    let rate = |n: usize, d: Duration| n as f64 / d.as_secs_f64();
    let name = bench.backend;
    let (ps, reader) = (&bench.publisher, &bench.reader);

    let p = crate::unique_prefix("bench_stream");
    for handle in [ps, reader] {
        handle
            .declare_stream(stream(&p, 10_000_000))
            .await
            .expect("declare");
    }
    let under = format!("{p}.t");
    let plain = format!("{}.t", crate::unique_prefix("bench_plain"));
    let publish = interleave_async(settings.rounds, |side| {
        let topic = if side == Side::Adapter {
            &under
        } else {
            &plain
        };
        publish_and_read(ps, topic, n, WINDOW)
    })
    .await;
    println!(
        "{name}: publish {n} x {SIZE} B, {WINDOW} in flight, read by 1 subscription (median of {} interleaved rounds)",
        settings.rounds
    );
    println!(
        "  under a stream : {:>10.0} msg/s",
        rate(n, publish.ours_median())
    );
    println!(
        "  no stream      : {:>10.0} msg/s",
        rate(n, publish.base_median())
    );
    println!("  ratio stream/plain = {}", publish.ratio_cell());

    let r = crate::unique_prefix("bench_replay");
    ps.declare_stream(stream(&r, 10_000_000))
        .await
        .expect("declare");
    fill(ps, &format!("{r}.t"), held, WINDOW).await;
    let pattern = format!("{r}.>");
    let (raw_replay, raw_what) = &bench.raw_replay;
    let replay_timed = interleave_async(settings.rounds, |side| match side {
        Side::Adapter => Box::pin(replay(ps, &pattern, held)) as futures::future::BoxFuture<'_, _>,
        Side::Raw => raw_replay(r.clone(), held),
    })
    .await;
    println!("{name}: replay of {held} x {SIZE} B from the start");
    println!(
        "  adapter (subscribe from start) : {:>10.0} msg/s",
        rate(held, replay_timed.ours_median())
    );
    println!(
        "  raw: {raw_what:<26}: {:>10.0} msg/s",
        rate(held, replay_timed.base_median())
    );
    println!("  ratio adapter/raw = {}", replay_timed.ratio_cell());

    let every = Duration::from_millis(1);
    let latency = interleave_async(settings.rounds, |side| {
        let topic = if side == Side::Adapter {
            &under
        } else {
            &plain
        };
        latency_p50(ps, reader, topic, latency_n, every)
    })
    .await;
    println!("{name}: live latency p50, {latency_n} messages at 1 per ms (median over rounds)");
    println!("  under a stream : {:?}", latency.ours_median());
    println!("  no stream      : {:?}", latency.base_median());
    println!(
        "  ratio stream/plain = {:.2}x",
        latency.ours_median().as_secs_f64() / latency.base_median().as_secs_f64()
    );

    if let Some(cuttable) = &bench.cuttable {
        let (subs, behind) = (1_000, 1_000);
        let m = crate::unique_prefix("bench_mass");
        for handle in [ps, &cuttable.handle] {
            handle
                .declare_stream(stream(&m, 10_000_000))
                .await
                .expect("declare");
        }
        let took = mass_resume(
            &cuttable.handle,
            ps,
            &format!("{m}.t"),
            subs,
            behind,
            || (cuttable.cut)(),
            || (cuttable.restore)(),
        )
        .await;
        println!(
            "{name}: mass resume, {subs} subscriptions each {behind} messages behind after a cut"
        );
        println!("  all recovered {took:?} after the restore");
    }
}
