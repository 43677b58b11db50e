//! What the memory backend's fan-out benches (`fanout`, `deliveries`) share: the message,
//! subscriptions with room for a whole round each read by a task, and the timed publish loop.

use std::future::Future;
use std::time::{Duration, Instant};

use pubsub_core::{Hub, Message, SubscribeOptions, Subscription, Topic};
use tokio::task::JoinHandle;

/// A 64-byte message on `topic`.
pub fn message(topic: &str) -> Message {
    Message::new(Topic::new(topic).expect("topic"), vec![7u8; 64])
}

/// `subscribers` subscriptions to `msg`'s topic on `hub`, each with room for `messages`, each
/// read by a task running `read`.
pub async fn readers<F, Fut>(
    hub: &Hub,
    msg: &Message,
    subscribers: usize,
    messages: usize,
    read: F,
) -> Vec<JoinHandle<()>>
where
    F: Fn(Subscription) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut readers = Vec::with_capacity(subscribers);
    for _ in 0..subscribers {
        let options = SubscribeOptions::default().with_capacity(messages);
        let sub = hub
            .subscribe_with(msg.topic().clone().into(), options)
            .await
            .expect("subscribe");
        readers.push(tokio::spawn(read(sub)));
    }
    readers
}

/// Publishes `msg` `messages` times on `hub`, then waits for every reader: the time from the
/// first publish to the last reader's end.
pub async fn publish_and_join(
    hub: &Hub,
    msg: &Message,
    messages: usize,
    readers: Vec<JoinHandle<()>>,
) -> Duration {
    let start = Instant::now();
    for _ in 0..messages {
        hub.publish(msg.clone()).await.expect("publish");
    }
    for r in readers {
        r.await.expect("reader");
    }
    start.elapsed()
}
