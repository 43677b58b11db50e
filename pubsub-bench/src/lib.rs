//! The bench harness of the workspace (a dev-dependency only, never published): the core's
//! benches (`cargo bench -p pubsub-core`) and the adapters' throughput benchmarks
//! (`cargo bench -p pubsub-redis`, …) share it. An adapter bench compares the adapter with its
//! raw client library doing the same work, and keeps only the broker-specific code
//! (connecting, subscribing, publishing with the raw client) and its rows.
//!
//! The crate knows nothing of `pubsub-core`, so that the core's own benches can use it without
//! a dependency cycle; the adapter's side of a throughput row (`adapter_run`, which needs a
//! `pubsub_core::Hub`) lives in `pubsub-test-support`.
//!
//! - Payloads carry their send time ([`stamp`]); each receiving subscription is a task that
//!   records the latency of every copy ([`Receivers`]), and a run ends in an [`Outcome`]: the
//!   rate from the first publish to the last receipt, p50 / p99 latency, copies missing.
//! - [`compare`] runs the rounds interleaved (adapter, raw, adapter, raw, …) so both sides see
//!   the same machine load, and reports the median of each side and the median of the
//!   per-round ratios ([`Compared`]).
//! - [`interleave`] and [`interleave_async`] do the same for benches that time a fixed amount of
//!   work (the core's fan-out, routing, …): [`Timed`] holds both sides' round times, their
//!   medians, and the median and spread of the per-round speed ratios.
//! - [`CountingAlloc`], installed as a bench's global allocator, counts allocations, so a
//!   bench can report allocations per message ([`allocations`]).
//! - [`Settings::from_env`] reads the knobs every bench shares: `BENCH_QUICK=1` (a smoke run:
//!   fewer messages), `BENCH_ROUNDS=<n>`, `BENCH_ROWS=0,3` (some rows only) and
//!   `BENCH_MODE=adapter|raw` (one side only, for profiling).
#![deny(missing_docs)]

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use futures::{Stream, StreamExt};
use tokio::task::JoinHandle;

/// Rounds in a smoke run (`BENCH_QUICK=1`) unless `BENCH_ROUNDS` says otherwise.
pub const QUICK_ROUNDS: usize = 5;
/// How long a receiver waits for the next copy before it gives up (counted as missing).
pub const RECEIVE_IDLE: Duration = Duration::from_secs(3);

/// Which side of a comparison a run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The pub/sub adapter: the side under test.
    Adapter,
    /// The baseline: the broker's client library used directly (or, in a bench comparing two
    /// setups of the adapter, the reference setup).
    Raw,
}

/// The knobs every bench reads from the environment.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `BENCH_QUICK` is set: a smoke run with fewer messages.
    pub quick: bool,
    /// Rounds per row: `BENCH_ROUNDS`, else [`QUICK_ROUNDS`] or the bench's default.
    pub rounds: usize,
    /// `BENCH_ROWS`: the row indexes to run (all when unset).
    pub rows: Option<Vec<usize>>,
    /// `BENCH_MODE`: one side only.
    pub only: Option<Side>,
}

impl Settings {
    /// Reads the environment; `default_rounds` (at least 5 for reported figures) is used
    /// unless `BENCH_QUICK` or `BENCH_ROUNDS` is set.
    pub fn from_env(default_rounds: usize) -> Settings {
        let quick = std::env::var_os("BENCH_QUICK").is_some();
        let rounds = std::env::var("BENCH_ROUNDS")
            .ok()
            .and_then(|r| r.trim().parse().ok())
            .unwrap_or(if quick { QUICK_ROUNDS } else { default_rounds })
            .max(1);
        let rows = std::env::var("BENCH_ROWS")
            .ok()
            .map(|v| v.split(',').filter_map(|r| r.trim().parse().ok()).collect());
        let only = match std::env::var("BENCH_MODE").ok().as_deref() {
            Some("adapter") => Some(Side::Adapter),
            Some("raw") => Some(Side::Raw),
            _ => None,
        };
        Settings {
            quick,
            rounds,
            rows,
            only,
        }
    }

    /// `full` messages, or `full / quick_divisor` in a smoke run.
    pub fn count(&self, full: usize, quick_divisor: usize) -> usize {
        if self.quick {
            (full / quick_divisor.max(1)).max(1)
        } else {
            full
        }
    }

    /// Whether row `index` is to run.
    pub fn runs_row(&self, index: usize) -> bool {
        self.rows.as_ref().is_none_or(|rows| rows.contains(&index))
    }

    /// Whether `side` is to run.
    pub fn runs(&self, side: Side) -> bool {
        self.only.is_none_or(|only| only == side)
    }
}

/// The runtime every bench uses: multi-threaded, 2 workers (the machine has 2 cores).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// A unique prefix for one bench run's topics (the process id and a label).
pub fn run_id(label: &str) -> String {
    format!("bench.{}.{label}", std::process::id())
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// A payload of `size` bytes (at least 16) carrying its send time and `seq`.
pub fn stamp(seq: u64, size: usize) -> Bytes {
    let mut b = BytesMut::with_capacity(size.max(16));
    b.put_u64_le(epoch().elapsed().as_nanos() as u64);
    b.put_u64_le(seq);
    b.resize(size.max(16), 0xAB);
    b.freeze()
}

/// Time since a [`stamp`]ed payload was made.
pub fn latency(payload: &[u8]) -> Duration {
    let mut sent = [0u8; 8];
    sent.copy_from_slice(&payload[..8]);
    epoch()
        .elapsed()
        .saturating_sub(Duration::from_nanos(u64::from_le_bytes(sent)))
}

/// What one subscription received in a run.
#[derive(Debug, Default)]
pub struct Receipts {
    latencies: Vec<Duration>,
    last: Option<Instant>,
}

/// The result of one run of one side.
#[derive(Clone, Copy, Debug, Default)]
pub struct Outcome {
    /// Published messages per second, from the first publish to the last receipt.
    pub rate: f64,
    /// Median publish-to-receipt latency.
    pub p50: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
    /// Copies that never arrived (should be 0).
    pub missing: usize,
}

impl Outcome {
    /// From the receipts of every subscription: `count` messages published between `started`
    /// and `published`.
    pub fn summarize(
        count: usize,
        started: Instant,
        published: Instant,
        all: Vec<Receipts>,
    ) -> Self {
        let end = all
            .iter()
            .filter_map(|r| r.last)
            .max()
            .unwrap_or(published)
            .max(published);
        let copies = count * all.len();
        let mut lat: Vec<Duration> = all.into_iter().flat_map(|r| r.latencies).collect();
        let missing = copies.saturating_sub(lat.len());
        lat.sort_unstable();
        let pick = |q: f64| {
            lat.get(((lat.len() as f64 * q) as usize).min(lat.len().saturating_sub(1)))
                .copied()
                .unwrap_or_default()
        };
        Outcome {
            rate: count as f64 / (end - started).as_secs_f64().max(1e-9),
            p50: pick(0.50),
            p99: pick(0.99),
            missing,
        }
    }

    /// The median of each figure over several runs; `missing` is the largest.
    pub fn median(runs: &[Outcome]) -> Outcome {
        Outcome {
            rate: median(runs.iter().map(|o| o.rate).collect()),
            p50: median(runs.iter().map(|o| o.p50).collect()),
            p99: median(runs.iter().map(|o| o.p99).collect()),
            missing: runs.iter().map(|o| o.missing).max().unwrap_or(0),
        }
    }

    /// `p50 / p99`, formatted.
    pub fn latencies(&self) -> String {
        format!("{} / {}", fmt_duration(self.p50), fmt_duration(self.p99))
    }
}

/// The middle value (the upper one of an even count); the default for none.
pub fn median<T: Copy + PartialOrd + Default>(mut xs: Vec<T>) -> T {
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    xs.get(xs.len() / 2).copied().unwrap_or_default()
}

/// Counts what each subscription received, so that the publisher can stay at most a window
/// of messages ahead of the slowest one ([`Receivers::wait_window`]).
#[derive(Debug)]
struct Window {
    received: Vec<AtomicU64>,
    moved: tokio::sync::Notify,
    size: u64,
}

impl Window {
    fn record(&self, i: usize) {
        let n = self.received[i].fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_multiple_of((self.size / 4).max(1)) {
            self.moved.notify_one();
        }
    }
}

/// The receiving side of one run: a task per subscription, each expecting `count` copies.
#[derive(Debug)]
pub struct Receivers {
    count: usize,
    window: Arc<Window>,
    tasks: Vec<JoinHandle<Receipts>>,
}

impl Receivers {
    /// For `subs` subscriptions receiving `count` messages of `size` bytes each; the
    /// publisher may stay up to `window_bytes` ahead of the slowest (64 to 65 536 messages).
    pub fn new(count: usize, subs: usize, size: usize, window_bytes: usize) -> Receivers {
        let size_window = (window_bytes / (size.max(1) * subs.max(1))).clamp(64, 65_536);
        Receivers {
            count,
            window: Arc::new(Window {
                received: (0..subs).map(|_| AtomicU64::new(0)).collect(),
                moved: tokio::sync::Notify::new(),
                size: size_window as u64,
            }),
            tasks: Vec::with_capacity(subs),
        }
    }

    /// Starts the receiver of the next subscription, given as a stream of payloads.
    pub fn spawn<S, T>(&mut self, stream: S)
    where
        S: Stream<Item = T> + Send + 'static,
        T: AsRef<[u8]>,
    {
        let index = self.tasks.len();
        assert!(
            index < self.window.received.len(),
            "more receivers than subs"
        );
        let (count, window) = (self.count, self.window.clone());
        self.tasks.push(tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            let mut got = Receipts {
                latencies: Vec::with_capacity(count),
                last: None,
            };
            while got.latencies.len() < count {
                match tokio::time::timeout(RECEIVE_IDLE, stream.next()).await {
                    // Not a stamped payload (at least 16 bytes): not part of the run.
                    Ok(Some(payload)) if payload.as_ref().len() < 16 => {}
                    Ok(Some(payload)) => {
                        got.latencies.push(latency(payload.as_ref()));
                        got.last = Some(Instant::now());
                        window.record(index);
                    }
                    _ => break,
                }
            }
            got
        }));
    }

    /// Starts the receivers of `subs` subscriptions fed by channels: for a raw client whose one
    /// consumer fans every payload out itself, one sender per subscription.
    pub fn spawn_channels(
        &mut self,
        subs: usize,
    ) -> Vec<futures::channel::mpsc::UnboundedSender<Bytes>> {
        (0..subs)
            .map(|_| {
                let (tx, rx) = futures::channel::mpsc::unbounded::<Bytes>();
                self.spawn(rx);
                tx
            })
            .collect()
    }

    /// Waits until the slowest subscription is at most the window behind message `sent`.
    pub async fn wait_window(&self, sent: u64) {
        loop {
            let slowest = self
                .window
                .received
                .iter()
                .map(|r| r.load(Ordering::Relaxed))
                .min()
                .unwrap_or(sent);
            if sent.saturating_sub(slowest) <= self.window.size {
                return;
            }
            // A stored permit or a later notification; re-check either way.
            let wait = self.window.moved.notified();
            let _ = tokio::time::timeout(Duration::from_millis(1), wait).await;
        }
    }

    /// Waits for every receiver and summarizes the run.
    pub async fn finish(self, started: Instant, published: Instant) -> Outcome {
        let mut all = Vec::with_capacity(self.tasks.len());
        for task in self.tasks {
            all.push(task.await.expect("a receiver panicked"));
        }
        Outcome::summarize(self.count, started, published, all)
    }
}

/// Publishes `count` messages, at most `window` in flight (each resolving on the broker's
/// reply); returns when the first was started and when the last was acknowledged.
pub async fn publish_pipelined<F, Fut, E>(
    count: usize,
    window: usize,
    publish: F,
) -> (Instant, Instant)
where
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Debug,
{
    let started = Instant::now();
    futures::stream::iter(0..count as u64)
        .map(publish)
        .buffered(window)
        .for_each(|r| {
            r.expect("publish");
            futures::future::ready(())
        })
        .await;
    (started, Instant::now())
}

/// Publishes `count` messages one after another, each after [`Receivers::wait_window`] and,
/// when `per_ms > 0`, paced to `per_ms` messages per millisecond; returns when the first was
/// started and the last returned.
pub async fn publish_paced<F, Fut, E>(
    receivers: &Receivers,
    count: usize,
    per_ms: u64,
    mut publish: F,
) -> (Instant, Instant)
where
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Debug,
{
    let mut ticker = (per_ms > 0).then(|| {
        let mut t = tokio::time::interval(Duration::from_millis(1));
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    let started = Instant::now();
    for seq in 0..count as u64 {
        receivers.wait_window(seq).await;
        if let Some(ticker) = &mut ticker {
            if seq.is_multiple_of(per_ms) {
                ticker.tick().await;
            }
        }
        publish(seq).await.expect("publish");
    }
    (started, Instant::now())
}

/// Both sides of one row over every round.
#[derive(Debug, Clone, Copy)]
pub struct Compared {
    /// The adapter's median, if it ran.
    pub adapter: Option<Outcome>,
    /// The raw client's median, if it ran.
    pub raw: Option<Outcome>,
    /// The median of the per-round adapter/raw rate ratios, if both ran.
    pub ratio: Option<f64>,
    /// The smallest and largest per-round ratio, if both ran.
    pub spread: Option<(f64, f64)>,
}

/// Runs `rounds` rounds of `run(side, round)`, interleaved: adapter, raw, adapter, raw, …
pub async fn compare<F, Fut>(settings: &Settings, mut run: F) -> Compared
where
    F: FnMut(Side, usize) -> Fut,
    Fut: Future<Output = Outcome>,
{
    let (mut adapter, mut raw) = (Vec::new(), Vec::new());
    for round in 0..settings.rounds {
        if settings.runs(Side::Adapter) {
            adapter.push(run(Side::Adapter, round).await);
        }
        if settings.runs(Side::Raw) {
            raw.push(run(Side::Raw, round).await);
        }
    }
    let ratios: Vec<f64> = adapter
        .iter()
        .zip(&raw)
        .map(|(a, r)| a.rate / r.rate)
        .collect();
    let med = |v: &[Outcome]| (!v.is_empty()).then(|| Outcome::median(v));
    Compared {
        adapter: med(&adapter),
        raw: med(&raw),
        spread: spread(&ratios),
        ratio: (!ratios.is_empty()).then(|| median(ratios)),
    }
}

/// The columns of [`Compared::cells`].
pub const COMPARED_COLUMNS: [&str; 6] = [
    "adapter msg/s",
    "raw msg/s",
    "adapter/raw",
    "adapter p50 / p99",
    "raw p50 / p99",
    "missing a/r",
];

impl Compared {
    /// Table cells: rates, ratio, latencies and missing copies of both sides.
    pub fn cells(&self) -> Vec<String> {
        let dash = || "-".to_string();
        let rate = |o: &Option<Outcome>| o.map_or_else(dash, |o| format!("{:.0}", o.rate));
        let lat = |o: &Option<Outcome>| o.map_or_else(dash, |o| o.latencies());
        let missing = |o: &Option<Outcome>| o.map_or_else(dash, |o| o.missing.to_string());
        vec![
            rate(&self.adapter),
            rate(&self.raw),
            self.ratio.map_or_else(dash, |r| fmt_ratio(r, self.spread)),
            lat(&self.adapter),
            lat(&self.raw),
            format!("{}/{}", missing(&self.adapter), missing(&self.raw)),
        ]
    }
}

/// The smallest and largest of `xs`, if any.
pub fn spread(xs: &[f64]) -> Option<(f64, f64)> {
    let min = xs.iter().copied().reduce(f64::min)?;
    let max = xs.iter().copied().reduce(f64::max)?;
    Some((min, max))
}

/// `0.98×`, or `0.98× (0.95–1.01)` with the spread of the rounds.
pub fn fmt_ratio(ratio: f64, spread: Option<(f64, f64)>) -> String {
    match spread {
        Some((lo, hi)) if lo != hi => format!("{ratio:.2}× ({lo:.2}–{hi:.2})"),
        _ => format!("{ratio:.2}×"),
    }
}

/// The round times of both sides of a bench that times a fixed amount of work, from
/// [`interleave`] or [`interleave_async`].
#[derive(Debug, Clone, Default)]
pub struct Timed {
    /// The side under test, one time per round.
    pub ours: Vec<Duration>,
    /// The baseline, one time per round.
    pub base: Vec<Duration>,
}

impl Timed {
    /// The median round time of the side under test.
    pub fn ours_median(&self) -> Duration {
        median(self.ours.clone())
    }

    /// The median round time of the baseline.
    pub fn base_median(&self) -> Duration {
        median(self.base.clone())
    }

    /// Per round, how much faster ours is: baseline time / our time (above 1: ours is faster).
    pub fn speed_ratios(&self) -> Vec<f64> {
        self.ours
            .iter()
            .zip(&self.base)
            .map(|(o, b)| b.as_secs_f64() / o.as_secs_f64().max(1e-12))
            .collect()
    }

    /// The median of [`Timed::speed_ratios`].
    pub fn ratio(&self) -> f64 {
        median(self.speed_ratios())
    }

    /// `1.03× (0.97–1.08)`: the median speed ratio and its spread over the rounds.
    pub fn ratio_cell(&self) -> String {
        fmt_ratio(self.ratio(), spread(&self.speed_ratios()))
    }
}

/// Runs `rounds` rounds of `run(side)`, interleaved: ours ([`Side::Adapter`]), baseline
/// ([`Side::Raw`]), ours, …; each run returns the time its work took.
pub fn interleave(rounds: usize, mut run: impl FnMut(Side) -> Duration) -> Timed {
    let mut timed = Timed::default();
    for _ in 0..rounds.max(1) {
        timed.ours.push(run(Side::Adapter));
        timed.base.push(run(Side::Raw));
    }
    timed
}

/// [`interleave`] for async rounds.
pub async fn interleave_async<F, Fut>(rounds: usize, mut run: F) -> Timed
where
    F: FnMut(Side) -> Fut,
    Fut: Future<Output = Duration>,
{
    let mut timed = Timed::default();
    for _ in 0..rounds.max(1) {
        timed.ours.push(run(Side::Adapter).await);
        timed.base.push(run(Side::Raw).await);
    }
    timed
}

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

/// A global allocator that counts allocations (and reallocations) of every thread, then
/// hands them to the system allocator. Install it in a bench with
/// `#[global_allocator] static ALLOC: CountingAlloc = CountingAlloc;` and read [`allocations`].
#[derive(Debug, Clone, Copy, Default)]
pub struct CountingAlloc;

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on.
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on.
        unsafe { std::alloc::System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: the caller's contract is passed on.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on.
        unsafe { std::alloc::System.realloc(ptr, layout, new) }
    }
}

/// Allocations so far, in every thread (0 unless [`CountingAlloc`] is the global allocator).
pub fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

/// Prints a Markdown table header.
pub fn print_header<S: AsRef<str>>(columns: &[S]) {
    let names: Vec<&str> = columns.iter().map(AsRef::as_ref).collect();
    println!("| {} |", names.join(" | "));
    println!("|{}", "---:|".repeat(names.len()));
}

/// Prints a Markdown table row.
pub fn print_row<S: AsRef<str>>(cells: &[S]) {
    let cells: Vec<&str> = cells.iter().map(AsRef::as_ref).collect();
    println!("| {} |", cells.join(" | "));
}

/// `812 µs` or `3.25 ms`.
pub fn fmt_duration(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{} µs", d.as_micros())
    } else {
        format!("{:.2} ms", d.as_secs_f64() * 1e3)
    }
}

/// `64 B` or `4 KiB`.
pub fn fmt_size(bytes: usize) -> String {
    if bytes >= 1024 && bytes.is_multiple_of(1024) {
        format!("{} KiB", bytes / 1024)
    } else {
        format!("{bytes} B")
    }
}

/// Runs a bench's table on the shared runtime and prints the total time.
pub fn main<F: Future<Output = ()>>(table: F) {
    let started = Instant::now();
    epoch();
    runtime().block_on(table);
    println!();
    println!("total bench time {:.1} s", started.elapsed().as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_measure_and_summarize() {
        let p = stamp(7, 64);
        assert_eq!(p.len(), 64);
        assert_eq!(u64::from_le_bytes(p[8..16].try_into().unwrap()), 7);
        assert!(latency(&p) < Duration::from_secs(1));
        let t0 = Instant::now();
        let r = Receipts {
            latencies: vec![Duration::from_micros(5); 9],
            last: Some(t0 + Duration::from_millis(100)),
        };
        let o = Outcome::summarize(10, t0, t0 + Duration::from_millis(50), vec![r]);
        assert_eq!(o.missing, 1);
        assert!((o.rate - 100.0).abs() < 1.0, "{o:?}");
        assert_eq!(o.p50, Duration::from_micros(5));
        let none = Outcome::summarize(10, t0, t0 + Duration::from_millis(10), vec![]);
        assert!((none.rate - 1000.0).abs() < 10.0, "{none:?}");
    }

    #[test]
    fn medians_and_formatting() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(Vec::<f64>::new()), 0.0);
        assert_eq!(fmt_size(4096), "4 KiB");
        assert_eq!(fmt_size(64), "64 B");
        assert_eq!(fmt_duration(Duration::from_micros(812)), "812 µs");
        assert_eq!(fmt_duration(Duration::from_micros(3250)), "3.25 ms");
    }

    #[test]
    fn interleave_alternates_and_reports_speed_ratios() {
        let mut order = Vec::new();
        let mut n = 0u64;
        let timed = interleave(5, |side| {
            order.push(side);
            n += 1;
            match side {
                Side::Adapter => Duration::from_millis(100 + n),
                Side::Raw => Duration::from_millis(200),
            }
        });
        assert!(order.chunks(2).all(|p| p == [Side::Adapter, Side::Raw]));
        assert_eq!(timed.ours_median(), Duration::from_millis(105));
        assert!((timed.ratio() - 200.0 / 105.0).abs() < 1e-9);
        assert!(
            timed.ratio_cell().starts_with("1.90× (1.83–"),
            "{}",
            timed.ratio_cell()
        );
    }

    #[tokio::test]
    async fn compare_interleaves_and_takes_medians() {
        let settings = Settings {
            quick: true,
            rounds: 5,
            rows: None,
            only: None,
        };
        let mut order = Vec::new();
        let c = compare(&settings, |side, round| {
            order.push(side);
            let rate = match side {
                Side::Adapter => 100.0 + round as f64,
                Side::Raw => 200.0,
            };
            async move {
                Outcome {
                    rate,
                    ..Outcome::default()
                }
            }
        })
        .await;
        assert_eq!(order.len(), 10);
        assert!(order.chunks(2).all(|p| p == [Side::Adapter, Side::Raw]));
        assert_eq!(c.adapter.unwrap().rate, 102.0);
        assert_eq!(c.ratio, Some(0.51));
        assert_eq!(c.spread, Some((0.5, 0.52)));
        assert_eq!(c.cells()[2], "0.51× (0.50–0.52)");
    }
}

/// One row of a throughput table, the same for the adapter and the raw client.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    /// Subscriptions receiving every message.
    pub subs: usize,
    /// Payload size in bytes.
    pub size: usize,
    /// Messages published.
    pub count: usize,
}

impl Row {
    /// The receivers of a run of this row (no window: the publisher keeps `window` publishes in
    /// flight instead).
    pub fn receivers(&self) -> Receivers {
        Receivers::new(self.count, self.subs, self.size, usize::MAX)
    }
}

impl Settings {
    /// The usual grid of an adapter bench: 1 and 10 subscriptions, 64 B (50 000 messages) and
    /// 4 KiB (20 000), a tenth of that in a smoke run.
    pub fn grid(&self) -> [Row; 4] {
        let row = |subs, size, count| Row {
            subs,
            size,
            count: self.count(count, 10),
        };
        [
            row(1, 64, 50_000),
            row(10, 64, 50_000),
            row(1, 4096, 20_000),
            row(10, 4096, 20_000),
        ]
    }
}

/// The whole throughput table of an adapter bench: a warm-up run of each side, the `title`,
/// then for every row of `rows` (that [`Settings::runs_row`] lets through) the interleaved
/// rounds of [`compare`] and one printed line. `adapter` and `raw` run one row on a fresh topic.
pub async fn throughput_table<A, AF, R, RF>(
    settings: &Settings,
    title: &str,
    rows: &[Row],
    adapter: A,
    raw: R,
) where
    A: Fn(Row, String) -> AF,
    AF: Future<Output = Outcome>,
    R: Fn(Row, String) -> RF,
    RF: Future<Output = Outcome>,
{
    let run = |side: Side, row: Row, topic: String| {
        let (adapter, raw) = (&adapter, &raw);
        async move {
            match side {
                Side::Adapter => adapter(row, topic).await,
                Side::Raw => raw(row, topic).await,
            }
        }
    };
    if let Some(first) = rows.first() {
        let warm = Row {
            count: first.count.min(2_000),
            ..*first
        };
        run(Side::Adapter, warm, run_id("warm.a")).await;
        run(Side::Raw, warm, run_id("warm.r")).await;
    }
    println!("{title}, median of {} rounds", settings.rounds);
    print_header(&[&["subs", "payload", "msgs"][..], &COMPARED_COLUMNS[..]].concat());
    for (r, row) in rows.iter().enumerate() {
        if !settings.runs_row(r) {
            continue;
        }
        let compared = compare(settings, |side, round| {
            run(side, *row, run_id(&format!("r{r}.n{round}.{side:?}")))
        })
        .await;
        let label = [
            row.subs.to_string(),
            fmt_size(row.size),
            row.count.to_string(),
        ];
        print_row(&[&label[..], &compared.cells()[..]].concat());
    }
}

/// The `main` of an adapter throughput bench: [`Settings::from_env`] with `rounds` by default,
/// the usual [`Settings::grid`], and the [`throughput_table`] of `adapter` and `raw` under
/// `title`, on the bench runtime ([`main`]).
pub fn throughput_main<A, AF, R, RF>(rounds: usize, title: &str, adapter: A, raw: R)
where
    A: Fn(Row, String) -> AF,
    AF: Future<Output = Outcome>,
    R: Fn(Row, String) -> RF,
    RF: Future<Output = Outcome>,
{
    let settings = Settings::from_env(rounds);
    let rows = settings.grid();
    main(throughput_table(&settings, title, &rows, adapter, raw));
}

/// The pattern mix of the routing benches: `n` patterns over 100 tenants, 60% exact room
/// topics, 10% `tenant.*.msg`, 15% `tenant.room.*`, 10% `tenant.room.>` and 5% `tenant.>`.
pub fn mixed_patterns(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let (tenant, room) = (i % 100, i / 100);
            match i % 20 {
                0..=11 => format!("tenant{tenant}.room{room}.msg"),
                12..=13 => format!("tenant{tenant}.*.msg"),
                14..=16 => format!("tenant{tenant}.room{room}.*"),
                17..=18 => format!("tenant{tenant}.room{room}.>"),
                _ => format!("tenant{tenant}.>"),
            }
        })
        .collect()
}

/// `pattern` compiled as an anchored regex: the naive baseline the routing benches compare
/// the trie with (every pattern tested against every topic).
pub fn pattern_regex(pattern: &str) -> regex::Regex {
    let body: Vec<String> = pattern
        .split('.')
        .map(|t| match t {
            "*" => "[^.]+".to_string(),
            ">" => ".+".to_string(),
            lit => regex::escape(lit),
        })
        .collect();
    regex::Regex::new(&format!("^{}$", body.join(r"\."))).expect("a pattern makes a valid regex")
}
