//! One run of the NATS inbound path, small enough for `valgrind --tool=callgrind`: a
//! current-thread runtime, one publisher and one subscriber connection, `COUNT` messages of
//! `SIZE` bytes to one subject, `SUBS` subscriptions (on the same subject, or with
//! `DISTINCT=1` on distinct wildcard subjects that all match). `MODE=adapter` (default) uses
//! the adapter on both connections, `MODE=raw` async-nats itself, with the same flow control
//! (every `CHUNK` messages the publisher waits until every subscription has them; async-nats
//! writes out on its own, neither side flushes).
//!
//! Instructions per delivered message are the difference of two runs, so that connecting and
//! subscribing cancel out (`scripts/nats-instructions.sh` does that for every row):
//!
//! ```text
//! valgrind --tool=callgrind MODE=raw COUNT=20000 target/release/deps/inbound-* # and 40000
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use pubsub_core::{Message, SubscribeOptions, Topic};
use pubsub_nats::NatsConfig;
use pubsub_test_support::broker::nats_url;
use tokio::sync::Notify;

/// Messages the publisher sends before it waits for every subscription to catch up
/// (`CHUNK`, default 512; a small chunk shows the cost of waking tasks up).
fn chunk() -> u64 {
    env("CHUNK", 512).max(1) as u64
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What every receiver counts, and a wake-up for the publisher.
#[derive(Default)]
struct Progress {
    received: Vec<AtomicU64>,
    moved: Notify,
}

impl Progress {
    fn slowest(&self) -> u64 {
        self.received
            .iter()
            .map(|r| r.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0)
    }

    async fn wait_for(&self, n: u64) {
        while self.slowest() < n {
            let moved = self.moved.notified();
            if self.slowest() >= n {
                return;
            }
            moved.await;
        }
    }
}

fn receive<S, T>(progress: Arc<Progress>, index: usize, count: u64, stream: S)
where
    S: futures::Stream<Item = T> + Send + 'static,
    T: AsRef<[u8]>,
{
    let chunk = chunk();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        let mut n = 0;
        while n < count {
            let Some(payload) = stream.next().await else {
                break;
            };
            if payload.as_ref().len() == 1 {
                continue; // the raw side's readiness probe
            }
            n += 1;
            progress.received[index].store(n, Ordering::Relaxed);
            if n.is_multiple_of(chunk) || n == count {
                progress.moved.notify_one();
            }
        }
    });
}

fn subjects(prefix: &str, subs: usize, distinct: bool) -> (String, Vec<String>) {
    let topic = format!("{prefix}.a.b.c");
    let list = if distinct {
        [
            "a.b.c", "*.b.c", "a.*.c", "a.b.*", "*.*.c", "*.b.*", "a.*.*", "*.*.*", ">", "a.>",
        ]
        .iter()
        .cycle()
        .take(subs)
        .map(|s| format!("{prefix}.{s}"))
        .collect()
    } else {
        vec![topic.clone(); subs]
    };
    (topic, list)
}

async fn run_raw(count: u64, size: usize, subs: usize, distinct: bool) {
    let url = nats_url().split(',').next().unwrap_or_default().to_string();
    let (chunk, capacity) = (chunk(), 2 * chunk() as usize + 1024);
    let options = || async_nats::ConnectOptions::new().subscription_capacity(capacity);
    let publisher = options().connect(url.as_str()).await.expect("connect");
    let subscriber = options().connect(url.as_str()).await.expect("connect");
    let prefix = format!("inbound.{}.raw", std::process::id());
    let (topic, list) = subjects(&prefix, subs, distinct);
    let progress = Arc::new(Progress {
        received: (0..subs).map(|_| AtomicU64::new(0)).collect(),
        ..Progress::default()
    });
    for (i, subject) in list.into_iter().enumerate() {
        let sub = subscriber.subscribe(subject).await.expect("subscribe");
        receive(progress.clone(), i, count, sub.map(|m| m.payload));
    }
    // The server has every SUB once a message sent after them comes back.
    let ready = format!("{prefix}.ready");
    let mut probe = subscriber.subscribe(ready.clone()).await.expect("probe");
    subscriber
        .publish(ready, Bytes::from_static(b"r"))
        .await
        .expect("probe");
    probe.next().await.expect("probe");
    let subject = async_nats::Subject::from(topic.as_str());
    let payload = Bytes::from(vec![0xAB; size]);
    for seq in 1..=count {
        publisher
            .publish(subject.clone(), payload.clone())
            .await
            .expect("publish");
        if seq.is_multiple_of(chunk) || seq == count {
            progress.wait_for(seq).await;
        }
    }
}

async fn run_adapter(count: u64, size: usize, subs: usize, distinct: bool) {
    let (chunk, capacity) = (chunk(), 2 * chunk() as usize + 1024);
    let config = NatsConfig::from_url(&nats_url())
        .expect("url")
        .with_subscription_capacity(capacity);
    let publisher = pubsub_nats::connect(config.clone()).await.expect("connect");
    let subscriber = pubsub_nats::connect(config).await.expect("connect");
    let prefix = format!("inbound.{}.ad", std::process::id());
    let (topic, list) = subjects(&prefix, subs, distinct);
    let progress = Arc::new(Progress {
        received: (0..subs).map(|_| AtomicU64::new(0)).collect(),
        ..Progress::default()
    });
    for (i, pattern) in list.into_iter().enumerate() {
        let options = SubscribeOptions::default().with_capacity(capacity);
        let sub = subscriber
            .subscribe_with(pattern.parse().expect("pattern"), options)
            .await
            .expect("subscribe");
        receive(progress.clone(), i, count, sub.map(|m| m.payload().clone()));
    }
    let topic: Topic = topic.parse().expect("topic");
    let payload = Bytes::from(vec![0xAB; size]);
    for seq in 1..=count {
        let message = Message::new(topic.clone(), payload.clone());
        publisher.publish(message).await.expect("publish");
        if seq.is_multiple_of(chunk) || seq == count {
            progress.wait_for(seq).await;
        }
    }
}

fn main() {
    let count = env("COUNT", 20_000) as u64;
    let size = env("SIZE", 64);
    let subs = env("SUBS", 1).max(1);
    let distinct = env("DISTINCT", 0) == 1;
    let raw = std::env::var("MODE").is_ok_and(|m| m == "raw");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        if raw {
            run_raw(count, size, subs, distinct).await;
        } else {
            run_adapter(count, size, subs, distinct).await;
        }
    });
}
