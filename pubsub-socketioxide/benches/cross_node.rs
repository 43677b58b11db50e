//! Cross-node socket.io broadcast: two socketioxide servers in this process, a socket.io client
//! (rust_socketio) connected to server B in room `bench`, broadcasts emitted on server A.
//!
//! Transports, all in the same run:
//! - `pubsub-socketioxide` over Redis and over NATS (and memory, as the floor);
//! - socketioxide's own Redis adapter, `socketioxide-redis`, with its fred driver and with its
//!   redis driver (both on the same Redis).
//!
//! The reference is socketioxide-redis with its redis driver (the fred driver drops messages
//! under a burst: its `lost` column; its rate counts only what arrived).
//!
//! Throughput: `SIO_BENCH_N` broadcasts (default 20 000, 100-byte payloads) emitted by 64
//! concurrent tasks on A; time until the client on B got them all. Latency: `SIO_BENCH_LAT`
//! broadcasts (default 500) one at a time, each timed from the emit on A to its arrival at the
//! client on B. Each figure is the median of `SIO_BENCH_ROUNDS` rounds (default 5), the rounds
//! interleaving the transports; `SIO_BENCH_ONLY=nats` keeps the reference and the transports
//! whose name contains the text.
//!
//! `cargo bench -p pubsub-socketioxide --bench cross_node`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use pubsub_socketioxide::{AdapterConfig, DriverConfig, PubSubDriver};
use rust_socketio::asynchronous::{Client, ClientBuilder};
use rust_socketio::{Payload, TransportType};
use serde_json::Value;
use socketioxide::adapter::Emitter;
use socketioxide::extract::SocketRef;
use socketioxide::SocketIo;
use socketioxide_redis::drivers::Driver;
use socketioxide_redis::{CustomRedisAdapter, RedisAdapterCtr};
use tokio::sync::mpsc;

const WINDOW: usize = 64;
const PAYLOAD: usize = 100;
/// Socket and adapter buffers (socketioxide's defaults are 128 and 1024).
const BUFFER: usize = 1 << 17;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

/// Nanoseconds since the process-wide base (the payload carries it).
fn now_ns() -> u64 {
    u64::try_from(base().elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// One server: the socket.io layer served on an ephemeral port.
struct Server<D: Driver> {
    io: SocketIo<CustomRedisAdapter<Emitter, D>>,
    addr: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

async fn server<D: Driver>(state: RedisAdapterCtr<D>) -> Server<D> {
    // Room for a whole burst per client: losses would measure the client, not the transport.
    let (layer, io) = SocketIo::builder()
        .max_buffer_size(BUFFER)
        .with_adapter::<CustomRedisAdapter<Emitter, D>>(state)
        .build_layer();
    io.ns(
        "/",
        async |socket: SocketRef<CustomRedisAdapter<Emitter, D>>| {
            socket.join("bench");
        },
    )
    .await
    .map_err(|e| format!("{e:?}"))
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().layer(layer);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Server { io, addr, task }
}

/// What the client on B saw: arrival latencies in ns, and a count.
struct Received {
    rx: mpsc::UnboundedReceiver<u64>,
    count: Arc<AtomicU64>,
}

async fn client(addr: std::net::SocketAddr) -> (Client, Received) {
    let (tx, rx) = mpsc::unbounded_channel();
    let count = Arc::new(AtomicU64::new(0));
    let seen = count.clone();
    let client = ClientBuilder::new(format!("http://{addr}"))
        .transport_type(TransportType::Websocket)
        .on(
            "m",
            move |payload: Payload, _: Client| -> BoxFuture<'static, ()> {
                let now = now_ns();
                if let Payload::Text(values) = payload {
                    if let Some(sent) = values.first().and_then(|v| v["t"].as_u64()) {
                        let _ = tx.send(now.saturating_sub(sent));
                    }
                }
                seen.fetch_add(1, Ordering::Relaxed);
                async {}.boxed()
            },
        )
        .connect()
        .await
        .unwrap();
    (client, Received { rx, count })
}

fn message() -> Value {
    serde_json::json!({ "t": now_ns(), "pad": "x".repeat(PAYLOAD - 30) })
}

struct Outcome {
    rate: f64,
    /// Broadcasts of the throughput run that never arrived.
    lost: u64,
    p50: Duration,
    p99: Duration,
}

async fn run<D: Driver>(a: RedisAdapterCtr<D>, b: RedisAdapterCtr<D>) -> Outcome {
    let n = env_usize("SIO_BENCH_N", 20_000);
    let lat = env_usize("SIO_BENCH_LAT", 500);
    let a = server(a).await;
    let b = server(b).await;
    let (client, mut received) = client(b.addr).await;
    // Warm up until a broadcast from A reaches B (the nodes see each other, the client joined).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let _ = a.io.to("bench").emit("m", &message()).await;
        if tokio::time::timeout(Duration::from_millis(100), received.rx.recv())
            .await
            .is_ok()
        {
            break;
        }
        assert!(Instant::now() < deadline, "the cluster did not form");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    while received.rx.try_recv().is_ok() {}

    // Latency: one at a time.
    let mut samples = Vec::with_capacity(lat);
    for _ in 0..lat {
        a.io.to("bench").emit("m", &message()).await.unwrap();
        let ns = tokio::time::timeout(Duration::from_secs(5), received.rx.recv())
            .await
            .expect("a broadcast was lost")
            .unwrap();
        samples.push(ns);
    }
    samples.sort_unstable();
    let p50 = Duration::from_nanos(samples[samples.len() / 2]);
    let p99 = Duration::from_nanos(samples[samples.len() * 99 / 100]);

    // Throughput: WINDOW emitters in flight.
    let before = received.count.load(Ordering::Relaxed);
    let started = Instant::now();
    futures::stream::iter(0..n)
        .for_each_concurrent(WINDOW, |_| {
            let io = a.io.clone();
            async move {
                io.to("bench").emit("m", &message()).await.unwrap();
            }
        })
        .await;
    // Until all arrived, or nothing more arrives for 2 s (then the rest are counted as lost).
    let target = before + n as u64;
    let mut last = (received.count.load(Ordering::Relaxed), Instant::now());
    let mut arrived_at = Instant::now();
    loop {
        let count = received.count.load(Ordering::Relaxed);
        if count != last.0 {
            last = (count, Instant::now());
            arrived_at = last.1;
        }
        if count >= target || last.1.elapsed() > Duration::from_secs(2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let delivered = received.count.load(Ordering::Relaxed) - before;
    let rate = delivered as f64 / (arrived_at - started).as_secs_f64();
    let lost = n as u64 - delivered.min(n as u64);
    let _ = client.disconnect().await;
    a.io.close().await;
    b.io.close().await;
    a.task.abort();
    b.task.abort();
    Outcome {
        rate,
        p50,
        p99,
        lost,
    }
}

/// Two nodes of ours on `url`, seeing each other.
async fn ours(url: &str) -> Vec<PubSubDriver> {
    let root = format!("siobench{}x{}", std::process::id(), now_ns());
    let mut drivers = Vec::new();
    for _ in 0..2 {
        let hub = pubsub::connect(url).await.unwrap();
        let config = DriverConfig::new(root.parse().unwrap()).unwrap();
        drivers.push(PubSubDriver::start(Arc::new(hub), config).await.unwrap());
    }
    for d in &drivers {
        d.presence()
            .wait_until(Duration::from_secs(10), |alive| alive.len() == 2)
            .await
            .unwrap();
    }
    drivers
}

async fn run_ours(url: &str) -> Outcome {
    let drivers = ours(url).await;
    let config = AdapterConfig::default().with_stream_buffer(BUFFER);
    let a = drivers[0].adapter(config.clone());
    let b = drivers[1].adapter(config);
    let outcome = run(a, b).await;
    for d in &drivers {
        let _ = d.leave().await;
        let _ = d.pubsub().close().await;
    }
    outcome
}

async fn fred_ctr(url: &str) -> RedisAdapterCtr<socketioxide_redis::drivers::fred::FredDriver> {
    use fred::prelude::{Builder, Config};
    let mut config = Config::from_url(url).unwrap();
    config.version = fred::types::RespVersion::RESP3;
    let client = Builder::from_config(config)
        .build_subscriber_client()
        .unwrap();
    RedisAdapterCtr::new_with_fred_config(client, prefixed())
        .await
        .unwrap()
}

async fn redis_ctr(url: &str) -> RedisAdapterCtr<socketioxide_redis::drivers::redis::RedisDriver> {
    let client = redis::Client::open(format!("{url}?protocol=resp3")).unwrap();
    RedisAdapterCtr::new_with_redis_config(&client, prefixed())
        .await
        .unwrap()
}

/// A channel prefix of its own, so a run never hears another's.
fn prefixed() -> AdapterConfig {
    static PREFIX: OnceLock<String> = OnceLock::new();
    let prefix = PREFIX.get_or_init(|| format!("siobench-{}-{}", std::process::id(), now_ns()));
    AdapterConfig::default()
        .with_prefix(prefix.clone())
        .with_stream_buffer(BUFFER)
}

fn row(name: &str, o: &Outcome, reference: Option<&Outcome>) {
    let ratio = reference
        .map(|r| format!("{:.2}x", o.rate / r.rate))
        .unwrap_or_else(|| "1.00x".into());
    let lat_ratio = reference
        .map(|r| format!("{:.2}x", o.p50.as_secs_f64() / r.p50.as_secs_f64()))
        .unwrap_or_else(|| "1.00x".into());
    println!(
        "| {name:<44} | {:>10.0} | {ratio:>8} | {:>9.1?} | {:>9.1?} | {lat_ratio:>8} | {:>6} |",
        o.rate, o.p50, o.p99, o.lost
    );
}

fn median(mut runs: Vec<Outcome>) -> Outcome {
    runs.sort_by(|a, b| a.rate.total_cmp(&b.rate));
    let mid = runs.len() / 2;
    let rate = runs[mid].rate;
    let mut p50s: Vec<Duration> = runs.iter().map(|o| o.p50).collect();
    let mut p99s: Vec<Duration> = runs.iter().map(|o| o.p99).collect();
    p50s.sort();
    p99s.sort();
    Outcome {
        rate,
        p50: p50s[mid],
        p99: p99s[mid],
        lost: runs.iter().map(|o| o.lost).sum(),
    }
}

/// The transports compared, in the order of the table.
const TRANSPORTS: [&str; 5] = [
    "socketioxide-redis, redis driver (reference)",
    "socketioxide-redis, fred driver",
    "pubsub-socketioxide on Redis (fred)",
    "pubsub-socketioxide on NATS",
    "pubsub-socketioxide on memory (one process)",
];

async fn run_transport(index: usize, redis: &str, nats: &str) -> Outcome {
    match index {
        0 => {
            let (a, b) = (redis_ctr(redis).await, redis_ctr(redis).await);
            run(a, b).await
        }
        1 => {
            let (a, b) = (fred_ctr(redis).await, fred_ctr(redis).await);
            run(a, b).await
        }
        2 => run_ours(redis).await,
        3 => run_ours(nats).await,
        _ => run_ours("memory://siobench").await,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing we need.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let _ = base();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let redis = pubsub_test_support::broker::redis_url();
        let nats = pubsub_test_support::broker::nats_url();
        let only = std::env::var("SIO_BENCH_ONLY").unwrap_or_default();
        let wants = |name: &str| only.is_empty() || name.contains(&only);
        println!(
            "cross-node socket.io broadcast: {} broadcasts of {PAYLOAD} B, {WINDOW} in flight; latency over {} one at a time; median of {} rounds",
            env_usize("SIO_BENCH_N", 20_000),
            env_usize("SIO_BENCH_LAT", 500),
            env_usize("SIO_BENCH_ROUNDS", 5)
        );
        println!(
            "| {:<44} | {:>10} | {:>8} | {:>9} | {:>9} | {:>8} | {:>6} |",
            "transport", "msg/s", "vs ref", "p50", "p99", "p50 vs", "lost"
        );
        println!(
            "|{:-<46}|{:->12}|{:->10}|{:->11}|{:->11}|{:->10}|{:->8}|",
            "", "", "", "", "", "", ""
        );
        // Rounds interleave the transports, so a busy moment of the machine hits them alike.
        let mut runs: Vec<Vec<Outcome>> = TRANSPORTS.iter().map(|_| Vec::new()).collect();
        for _ in 0..env_usize("SIO_BENCH_ROUNDS", 5).max(1) {
            for (i, name) in TRANSPORTS.iter().enumerate() {
                if i == 0 || wants(name) {
                    runs[i].push(run_transport(i, &redis, &nats).await);
                }
            }
        }
        let mut outcomes = runs.into_iter().map(|r| (!r.is_empty()).then(|| median(r)));
        let reference = outcomes.next().flatten().unwrap();
        row(TRANSPORTS[0], &reference, None);
        for (name, outcome) in TRANSPORTS.iter().skip(1).zip(outcomes) {
            if let Some(o) = outcome {
                row(name, &o, Some(&reference));
            }
        }
    });
}
