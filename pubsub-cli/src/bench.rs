//! `pubsub bench URL`: publishers and subscribers on one handle each, throughput and latency
//! percentiles (HDR histogram), as a table or JSON.
//!
//! Each publisher sends `count` messages of `size` bytes to its own topic
//! `bench.<run>.<publisher>`, at most `window` unconfirmed at a time; each subscriber listens
//! to `bench.<run>.>` and so receives every message. A payload starts with its send time, so
//! latency is publish call to delivery, in this process.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use pubsub::{Delivery, Gap, Hub, Message, SubscribeOptions, Topic};
use serde_json::json;

/// Options of `pubsub bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Backend URL (default: $PUBSUB_URL).
    #[arg(env = "PUBSUB_URL")]
    url: String,
    /// Publishing tasks (each with its own handle).
    #[arg(long, default_value_t = 1)]
    publishers: usize,
    /// Subscribing tasks (each with its own handle).
    #[arg(long, default_value_t = 1)]
    subscribers: usize,
    /// Payload size in bytes (at least 8: the send time).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Messages per publisher.
    #[arg(long, default_value_t = 100_000)]
    count: u64,
    /// Publishes in flight per publisher.
    #[arg(long, default_value_t = 64)]
    window: usize,
    /// Print one JSON object instead of a table (and no progress bar).
    #[arg(long)]
    json: bool,
}

/// The smallest payload: the send time, 8 bytes.
const MIN_SIZE: usize = 8;

/// What one subscriber saw.
struct Received {
    messages: u64,
    dropped: u64,
    outages: u64,
    latency: Histogram<u64>,
}

pub async fn run(args: BenchArgs) -> Result<(), String> {
    if args.publishers == 0 || args.subscribers == 0 || args.count == 0 {
        return Err("publishers, subscribers and count must be at least 1".into());
    }
    if args.size < MIN_SIZE {
        return Err(format!(
            "--size {} is too small: a bench payload is at least {MIN_SIZE} bytes (it starts \
             with its send time, for the latency)",
            args.size
        ));
    }
    let size = args.size;
    let run = format!("{}x{}", std::process::id(), rand_suffix());
    let expected = args.count * args.publishers as u64;
    let connect =
        |url: String| async move { pubsub::connect(&url).await.map_err(|e| e.to_string()) };

    let mut subscriber_hubs = Vec::new();
    let mut subscriptions = Vec::new();
    for _ in 0..args.subscribers {
        let hub = connect(args.url.clone()).await?;
        let pattern = format!("bench.{run}.>")
            .parse()
            .map_err(|e| format!("{e}"))?;
        let options = SubscribeOptions::default().with_capacity(65_536);
        let subscription = hub
            .subscribe_all(vec![pattern], options)
            .await
            .map_err(|e| e.to_string())?;
        subscriptions.push(subscription);
        subscriber_hubs.push(hub);
    }
    let mut publisher_hubs = Vec::new();
    for _ in 0..args.publishers {
        publisher_hubs.push(connect(args.url.clone()).await?);
    }

    let progress = if args.json {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::with_draw_target(
            Some(expected * args.subscribers as u64),
            ProgressDrawTarget::stderr(),
        );
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} deliveries ({per_sec})",
        ) {
            bar.set_style(style);
        }
        bar
    };
    let base = Instant::now();
    let published_all = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = subscriptions
        .into_iter()
        .map(|subscription| {
            let progress = progress.clone();
            let published_all = published_all.clone();
            let publishers = args.publishers as u64;
            tokio::spawn(async move {
                read(
                    subscription.deliveries(),
                    expected,
                    base,
                    progress,
                    published_all,
                    publishers,
                )
                .await
            })
        })
        .collect();

    let start = Instant::now();
    let payload_size = size;
    let writers: Vec<_> = publisher_hubs
        .iter()
        .cloned()
        .enumerate()
        .map(|(index, hub)| {
            let topic: Result<Topic, _> = format!("bench.{run}.{index}").parse();
            let published_all = published_all.clone();
            let (count, window) = (args.count, args.window.max(1));
            tokio::spawn(async move {
                let topic = topic.map_err(|e| format!("{e}"))?;
                let result = publish(&hub, topic, count, payload_size, window, base).await;
                published_all.fetch_add(1, Ordering::SeqCst);
                result
            })
        })
        .collect();
    for writer in writers {
        writer.await.map_err(|e| e.to_string())??;
    }
    let publish_elapsed = start.elapsed();
    let mut received = Vec::new();
    for reader in readers {
        received.push(reader.await.map_err(|e| e.to_string())?);
    }
    let elapsed = start.elapsed();
    progress.finish_and_clear();
    for hub in publisher_hubs.iter().chain(&subscriber_hubs) {
        hub.close().await.map_err(|e| e.to_string())?;
    }

    let mut latency = Histogram::<u64>::new(3).map_err(|e| e.to_string())?;
    let (mut delivered, mut dropped, mut outages) = (0, 0, 0);
    for r in &received {
        latency.add(&r.latency).map_err(|e| e.to_string())?;
        delivered += r.messages;
        dropped += r.dropped;
        outages += r.outages;
    }
    let published = expected;
    let pub_rate = published as f64 / publish_elapsed.as_secs_f64();
    let delivery_rate = delivered as f64 / elapsed.as_secs_f64();
    let us = |q: f64| latency.value_at_quantile(q) as f64 / 1000.0;
    let report = json!({
        "backend": publisher_hubs.first().map(Hub::backend),
        "publishers": args.publishers,
        "subscribers": args.subscribers,
        "size": size,
        "published": published,
        "delivered": delivered,
        "expected_deliveries": expected * args.subscribers as u64,
        "dropped": dropped,
        "outages": outages,
        "seconds": elapsed.as_secs_f64(),
        "publish_rate": pub_rate,
        "delivery_rate": delivery_rate,
        "delivery_mb_per_s": delivery_rate * size as f64 / 1e6,
        "latency_us": {
            "p50": us(0.5), "p90": us(0.9), "p99": us(0.99), "p999": us(0.999),
            "max": latency.max() as f64 / 1000.0,
        },
    });
    if args.json {
        println!("{report}");
    } else {
        println!(
            "backend        {}",
            report["backend"].as_str().unwrap_or("?")
        );
        println!(
            "setup          {} publisher(s) x {} message(s) of {} B -> {} subscriber(s)",
            args.publishers, args.count, size, args.subscribers
        );
        println!(
            "published      {published} in {:.2}s: {pub_rate:.0} msg/s",
            publish_elapsed.as_secs_f64()
        );
        println!(
            "delivered      {delivered} of {} in {:.2}s: {delivery_rate:.0} msg/s, {:.1} MB/s",
            expected * args.subscribers as u64,
            elapsed.as_secs_f64(),
            delivery_rate * size as f64 / 1e6
        );
        println!("dropped        {dropped} (outages: {outages})");
        println!(
            "latency (us)   p50 {:.0}  p90 {:.0}  p99 {:.0}  p99.9 {:.0}  max {:.0}",
            us(0.5),
            us(0.9),
            us(0.99),
            us(0.999),
            latency.max() as f64 / 1000.0
        );
    }
    if delivered + dropped < expected * args.subscribers as u64 {
        return Err(format!(
            "{} deliveries missing (neither delivered nor reported as dropped)",
            expected * args.subscribers as u64 - delivered - dropped
        ));
    }
    Ok(())
}

async fn publish(
    hub: &Hub,
    topic: Topic,
    count: u64,
    size: usize,
    window: usize,
    base: Instant,
) -> Result<(), String> {
    let mut results = futures::stream::iter(0..count)
        .map(|_| {
            let mut payload = vec![0u8; size];
            let sent = u64::try_from(base.elapsed().as_nanos()).unwrap_or(u64::MAX);
            payload[..8].copy_from_slice(&sent.to_be_bytes());
            hub.publish(Message::new(topic.clone(), payload))
        })
        .buffered(window);
    while let Some(result) = results.next().await {
        result.map_err(|e| e.to_string())?;
    }
    Ok(())
}

async fn read(
    mut deliveries: pubsub::Deliveries,
    expected: u64,
    base: Instant,
    progress: ProgressBar,
    published_all: Arc<AtomicU64>,
    publishers: u64,
) -> Received {
    let mut received = Received {
        messages: 0,
        dropped: 0,
        outages: 0,
        latency: Histogram::new(3)
            .unwrap_or_else(|_| unreachable!("3 significant figures is valid")),
    };
    // Once every publisher is done, wait at most this long for stragglers.
    let linger = Duration::from_secs(5);
    while received.messages + received.dropped < expected {
        let done = published_all.load(Ordering::SeqCst) >= publishers;
        let wait = if done {
            linger
        } else {
            Duration::from_secs(60)
        };
        let delivery = match tokio::time::timeout(wait, deliveries.next()).await {
            Ok(Some(delivery)) => delivery,
            Ok(None) => break,
            Err(_) if done => break,
            Err(_) => continue,
        };
        match delivery {
            Delivery::Message(message) => {
                received.messages += 1;
                progress.inc(1);
                if let Some(sent) = message.payload().get(..8) {
                    let mut bytes = [0u8; 8];
                    bytes.copy_from_slice(sent);
                    let now = u64::try_from(base.elapsed().as_nanos()).unwrap_or(u64::MAX);
                    let _ = received
                        .latency
                        .record(now.saturating_sub(u64::from_be_bytes(bytes)).max(1));
                }
            }
            Delivery::Gap(Gap::Dropped { count }) => received.dropped += count,
            Delivery::Gap(_) => received.outages += 1,
            _ => {}
        }
    }
    received
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or_default()
}
