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
    futures::stream::iter(0..n as u64)
        .map(|seq| hub.publish(message(&topic, seq)))
        .buffered(window)
        .for_each(|r| {
            r.expect("publish");
            futures::future::ready(())
        })
        .await;
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
