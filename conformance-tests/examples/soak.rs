//! Soak test: minutes of mixed traffic with connection cuts on one backend, printing once a
//! minute what would show a leak or a silent loss. Not part of the test command; run it with
//! `scripts/soak.sh` or:
//!
//! ```text
//! cargo run --release -p conformance-tests --example soak -- BACKEND MINUTES
//! ```
//!
//! BACKEND is `memory`, `redis`, `nats`, `amqp`, `mqtt` or `postgres` (the brokers of
//! `scripts/brokers.sh`). Four
//! subscriber handles reach the broker through a fault proxy that is cut for two seconds every
//! 30 seconds; each keeps one stable subscription (checked message by message) and churns
//! others (a new pattern and an unsubscribe every 100 ms). A direct handle publishes 1000
//! numbered messages a second to the stable topic, and as many to churned topics.
//!
//! Each minute: resident memory, live tokio tasks, open file descriptors and sockets,
//! deliveries, losses reported by a gap (at most once: expected around cuts) and silent
//! losses (must stay 0). Memory, tasks and descriptors must not grow from minute to minute.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use pubsub_core::memory::{MemoryBus, MemoryConfig, MemoryLink};
use pubsub_core::{Delivery, Message, PubSub, Result, SubscribeOptions, WithOptions};
use pubsub_test_support::broker::{
    amqp_addr, amqp_url, mqtt_addr, mqtt_url, nats_addr, nats_url, postgres_addr, postgres_url,
    redis_addr, redis_url,
};
use pubsub_test_support::kit::{fast_backoff, fast_heartbeat, pattern, seq, topic, unseq};
use pubsub_test_support::proxy::TcpProxy;
use tokio::time::Instant;

const SUBSCRIBERS: usize = 4;
const RATE_PER_SECOND: u64 = 1000;

/// Where the subscriber handles' connections can be cut.
enum Cut {
    Proxy(TcpProxy),
    Memory(Vec<MemoryLink>),
}

impl Cut {
    fn cut(&self) {
        match self {
            Cut::Proxy(p) => p.cut(),
            Cut::Memory(links) => links.iter().for_each(MemoryLink::cut),
        }
    }

    fn restore(&self) {
        match self {
            Cut::Proxy(p) => p.restore(),
            Cut::Memory(links) => links.iter().for_each(MemoryLink::restore),
        }
    }
}

#[derive(Default)]
struct Counters {
    delivered: AtomicU64,
    covered: AtomicU64,
    silent: AtomicU64,
    published: AtomicU64,
    publish_errors: AtomicU64,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let backend = args.get(1).map_or("memory", String::as_str).to_string();
    let minutes: u64 = args.get(2).and_then(|m| m.parse().ok()).unwrap_or(1);
    let (publisher, subscribers, cut) = connect(&backend).await?;
    let counters = Arc::new(Counters::default());
    let prefix = pubsub_test_support::unique_prefix("soak");
    let stable = format!("{prefix}.stable");

    for (i, ps) in subscribers.iter().enumerate() {
        let sub = ps
            .subscribe_with(
                pattern(&stable),
                SubscribeOptions::default().with_capacity(100_000),
            )
            .await?;
        tokio::spawn(check_stable(sub, counters.clone()));
        tokio::spawn(churn(ps.clone(), format!("{prefix}.churn.{i}")));
    }
    tokio::spawn(publish(publisher.clone(), prefix.clone(), counters.clone()));
    let started = Instant::now();
    let end = started + Duration::from_secs(minutes * 60);
    let mut next_cut = started + Duration::from_secs(30);
    let mut next_report = started + Duration::from_secs(60);
    println!(
        "soak[{backend}] minute  rss_kib  tasks  fds  sockets  published  publish_errors  delivered  lost_with_gap  silent_loss"
    );
    report(&backend, 0, &counters);
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = Instant::now();
        if now >= next_cut {
            cut.cut();
            tokio::time::sleep(Duration::from_secs(2)).await;
            cut.restore();
            next_cut += Duration::from_secs(30);
        }
        if now >= next_report {
            report(&backend, (now - started).as_secs() / 60, &counters);
            next_report += Duration::from_secs(60);
        }
    }
    for ps in subscribers.iter().chain([&publisher]) {
        let _ = ps.close().await;
    }
    let silent = counters.silent.load(Ordering::Relaxed);
    println!("soak[{backend}] done: silent losses {silent}");
    if silent > 0 {
        std::process::exit(1);
    }
    Ok(())
}

type Handles = (Arc<dyn PubSub>, Vec<Arc<dyn PubSub>>, Cut);

/// The direct publisher, the subscriber handles and what cuts them.
async fn connect(backend: &str) -> Result<Handles> {
    if backend == "memory" {
        let bus = MemoryBus::new();
        let publisher: Arc<dyn PubSub> = Arc::new(bus.connect().await?);
        let mut subs = Vec::new();
        let mut links = Vec::new();
        for _ in 0..SUBSCRIBERS {
            let config = MemoryConfig::default().with_heartbeat(fast_heartbeat());
            let (hub, link) = bus.connect_with(config).await?;
            subs.push(Arc::new(hub) as Arc<dyn PubSub>);
            links.push(link);
        }
        return Ok((publisher, subs, Cut::Memory(links)));
    }
    let upstream = match backend {
        "redis" => redis_addr(),
        "nats" => nats_addr(),
        "amqp" => amqp_addr(),
        "mqtt" => mqtt_addr(),
        "postgres" => postgres_addr(),
        other => panic!("unknown backend {other}: memory, redis, nats, amqp, mqtt or postgres"),
    };
    let proxy = TcpProxy::start(&upstream)
        .await
        .map_err(|e| pubsub_core::Error::connection("starting the proxy", e))?;
    let via = proxy.local_addr();
    let publisher = connect_one(backend, None).await?;
    let mut subs = Vec::new();
    for _ in 0..SUBSCRIBERS {
        subs.push(connect_one(backend, Some(via)).await?);
    }
    Ok((publisher, subs, Cut::Proxy(proxy)))
}

async fn connect_one(backend: &str, via: Option<std::net::SocketAddr>) -> Result<Arc<dyn PubSub>> {
    let faulted = |o: pubsub_core::CommonOptions| {
        o.with_backoff(fast_backoff())
            .with_heartbeat(fast_heartbeat())
            .with_publish_timeout(Duration::from_millis(500))
    };
    Ok(match backend {
        "redis" => {
            let mut c = pubsub_redis::RedisConfig::from_url(&redis_url())?;
            if let Some(a) = via {
                c = c.with_server(a.ip().to_string(), a.port());
                c.options = faulted(c.options);
            }
            Arc::new(pubsub_redis::connect(c).await?)
        }
        "nats" => {
            let mut c = pubsub_nats::NatsConfig::from_url(&nats_url())?;
            if let Some(a) = via {
                c = c
                    .with_servers([format!("nats://{a}")])
                    .with_discovered_servers(false);
                c.options = faulted(c.options);
            }
            Arc::new(pubsub_nats::connect(c).await?)
        }
        "mqtt" => {
            let mut c = pubsub_mqtt::MqttConfig::from_url(&mqtt_url())?;
            if let Some(a) = via {
                c = c.with_server(a.ip().to_string(), a.port());
                c.options = faulted(c.options);
            }
            Arc::new(pubsub_mqtt::connect(c).await?)
        }
        "postgres" => {
            let mut c = pubsub_postgres::PostgresConfig::from_url(&postgres_url())?;
            if let Some(a) = via {
                c = c.with_server(a.ip().to_string(), a.port());
                c.options = faulted(c.options);
            }
            Arc::new(pubsub_postgres::connect(c).await?)
        }
        _ => {
            let mut c = pubsub_amqp::AmqpConfig::from_url(&amqp_url())?;
            if let Some(a) = via {
                c = c.with_server(a.ip().to_string(), a.port());
                c.options = faulted(c.options);
            }
            Arc::new(pubsub_amqp::connect(c).await?)
        }
    })
}

/// Publishes numbered messages to the stable topic, and to churned topics, at the rate.
async fn publish(ps: Arc<dyn PubSub>, prefix: String, counters: Arc<Counters>) {
    let stable = topic(&format!("{prefix}.stable"));
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / RATE_PER_SECOND));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut n = 0u32;
    loop {
        tick.tick().await;
        let ok = ps
            .publish(Message::new(stable.clone(), seq(0, n)))
            .await
            .is_ok();
        let churned = topic(&format!(
            "{prefix}.churn.{}.t{}",
            n % SUBSCRIBERS as u32,
            n % 50
        ));
        let _ = ps.publish(Message::new(churned, "c")).await;
        counters.published.fetch_add(1, Ordering::Relaxed);
        if !ok {
            counters.publish_errors.fetch_add(1, Ordering::Relaxed);
        }
        n = n.wrapping_add(1);
    }
}

/// Checks the stable subscription message by message: a hole is a loss covered by a gap when
/// a gap came since the last message, and a silent loss otherwise.
async fn check_stable(mut sub: pubsub_core::Subscription, counters: Arc<Counters>) {
    let mut expected: Option<u32> = None;
    let mut gap_since_last = false;
    while let Some(delivery) = sub.recv_delivery().await {
        match delivery {
            Delivery::Gap(_) => gap_since_last = true,
            Delivery::Message(m) => {
                let (_, n) = unseq(&m);
                counters.delivered.fetch_add(1, Ordering::Relaxed);
                if let Some(want) = expected {
                    if n > want {
                        let missing = u64::from(n - want);
                        if gap_since_last {
                            counters.covered.fetch_add(missing, Ordering::Relaxed);
                        } else {
                            counters.silent.fetch_add(missing, Ordering::Relaxed);
                            eprintln!("silent loss: expected {want}, got {n}");
                        }
                    }
                }
                expected = Some(n.wrapping_add(1));
                gap_since_last = false;
            }
            _ => {}
        }
    }
}

/// Subscribes a new pattern and drops the oldest every 100 ms, keeping about 20 live.
async fn churn(ps: Arc<dyn PubSub>, prefix: String) {
    let mut live = std::collections::VecDeque::new();
    let mut i = 0u64;
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let p = if i.is_multiple_of(2) {
            format!("{prefix}.t{}", i % 50)
        } else {
            format!("{prefix}.*")
        };
        if let Ok(Ok(sub)) =
            tokio::time::timeout(Duration::from_secs(5), ps.subscribe(pattern(&p))).await
        {
            live.push_back(sub);
        }
        while live.len() > 20 {
            if let Some(old) = live.pop_front() {
                let _ = tokio::time::timeout(Duration::from_secs(5), old.unsubscribe()).await;
            }
        }
        // Drain what the churned subscriptions got, so their buffers do not fill.
        for sub in live.iter_mut() {
            while sub.recv().now_or_never().flatten().is_some() {}
        }
        i += 1;
    }
}

fn report(backend: &str, minute: u64, c: &Counters) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .map(|v| v.trim().trim_end_matches(" kB").to_string())
        .unwrap_or_default();
    let (mut fds, mut sockets) = (0, 0);
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        for entry in dir.flatten() {
            fds += 1;
            if std::fs::read_link(entry.path())
                .is_ok_and(|t| t.to_string_lossy().starts_with("socket:"))
            {
                sockets += 1;
            }
        }
    }
    let tasks = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    println!(
        "soak[{backend}] {minute:>6}  {rss:>7}  {tasks:>5}  {fds:>3}  {sockets:>7}  {:>9}  {:>14}  {:>9}  {:>13}  {:>11}",
        c.published.load(Ordering::Relaxed),
        c.publish_errors.load(Ordering::Relaxed),
        c.delivered.load(Ordering::Relaxed),
        c.covered.load(Ordering::Relaxed),
        c.silent.load(Ordering::Relaxed),
    );
}
