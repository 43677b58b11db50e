//! The shape of the scale benchmark (`cargo bench -p pubsub-nats --bench scale` for memory and
//! NATS), for any backend: subscribe and unsubscribe `n` distinct patterns on one handle, and publish
//! with them present.
//!
//! - [`subscribe_many`] subscribes `n` distinct patterns (a mix: 60% exact, 20% ending in
//!   `*`, 20% ending in `>`, see [`pattern`]) all at once and returns once the broker
//!   confirmed every one; [`unsubscribe_all`] unsubscribes them all at once, also confirmed.
//!   Linear cost means the time per pattern stays flat from 10 000 to 100 000.
//! - [`publish_rate`] publishes `count` messages to one subscription's topic and returns the
//!   rate from the first publish to the last receipt; the bench compares a handle holding
//!   `n` other subscriptions with one holding none, rounds interleaved.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use pubsub_core::{Hub, Message, Pattern, SubscribeOptions, Subscription, Topic};

/// The `i`-th of the bench's distinct patterns under `prefix`.
pub fn pattern(prefix: &str, i: usize) -> Pattern {
    let text = match i % 5 {
        0..=2 => format!("{prefix}.t{i}.msg"),
        3 => format!("{prefix}.t{i}.*"),
        _ => format!("{prefix}.t{i}.>"),
    };
    text.parse().expect("a valid pattern")
}

/// Subscribes `n` distinct patterns on `hub`, all at once; returns the subscriptions and the
/// time until the broker confirmed the last one.
pub async fn subscribe_many(hub: &Hub, prefix: &str, n: usize) -> (Vec<Subscription>, Duration) {
    let started = Instant::now();
    let subscribing = (0..n).map(|i| hub.subscribe(pattern(prefix, i)));
    let subs = futures::future::try_join_all(subscribing)
        .await
        .expect("subscribe");
    (subs, started.elapsed())
}

/// Unsubscribes every one of `subs` at once; returns the time until the broker confirmed the
/// last one.
pub async fn unsubscribe_all(subs: Vec<Subscription>) -> Duration {
    let started = Instant::now();
    futures::future::try_join_all(subs.into_iter().map(Subscription::unsubscribe))
        .await
        .expect("unsubscribe");
    started.elapsed()
}

/// A subscription on `hub` to `topic` with room for `count` messages.
pub async fn receiver(hub: &Hub, topic: &Topic, count: usize) -> Subscription {
    let options = SubscribeOptions::default().with_capacity(count.max(1));
    hub.subscribe_with(Pattern::from(topic.clone()), options)
        .await
        .expect("subscribe")
}

/// Publishes `count` messages of 64 bytes to `topic` through `publisher` and waits until
/// `receiver` has them all; returns messages per second, first publish to last receipt.
pub async fn publish_rate(
    publisher: &Hub,
    topic: &Topic,
    receiver: &mut Subscription,
    count: usize,
) -> f64 {
    let payload = Bytes::from(vec![0xAB; 64]);
    let started = Instant::now();
    let receiving = async {
        for _ in 0..count {
            let next = tokio::time::timeout(Duration::from_secs(10), receiver.next());
            next.await.expect("a message within 10 s").expect("open");
        }
    };
    let publishing = async {
        for _ in 0..count {
            let message = Message::new(topic.clone(), payload.clone());
            publisher.publish(message).await.expect("publish");
        }
    };
    futures::join!(receiving, publishing);
    count as f64 / started.elapsed().as_secs_f64()
}
