//! The hot paths, one scenario per run, for counting instructions under
//! `valgrind --tool=callgrind` (`scripts/instructions.sh` runs each twice, with N and 2N
//! messages, so that the fixed cost of setting up cancels out).
//!
//! `cargo run --release -p conformance-tests --example instructions -- SCENARIO SIDE N`
//!
//! - `fanout`: 1 publisher → 100 subscriptions, 64 B; `ours` is a memory handle, `base`
//!   `tokio::sync::broadcast`, each with room for all N. Both publish in batches of [`BATCH`]
//!   and then yield, so the receivers drain their buffers on the one thread (a broadcast
//!   receiver also yields every 128 messages: tokio's cooperative budget).
//! - `routing`: one topic routed against 1000 patterns (the mix of `benches/routing.rs`);
//!   `ours` is the token trie, `base` a scan testing every pattern's compiled regex.
//! - `envelope`: a 64 B message with two headers encoded into a frame and decoded back;
//!   `base` copies the same bytes into one buffer and back out.
//! - `nats` / `redis`: the inbound path: N messages of 64 B published by a raw client in a
//!   child process (not measured) are received by one subscription: `ours` the adapter,
//!   `base` the raw client (async-nats, fred). Needs the local brokers
//!   (`PUBSUB_NATS_URL`, `PUBSUB_REDIS_URL`).
//!
//! Everything runs on a current-thread runtime: under valgrind threads run one at a time
//! anyway, and one thread keeps the counts repeatable.

use std::hint::black_box;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use pubsub_bench::{mixed_patterns, pattern_regex};
use pubsub_core::adapter::{envelope, PatternTrie};
use pubsub_core::memory::MemoryBus;
use pubsub_core::{Headers, Message, Pattern, SubscribeOptions, Topic};
use pubsub_test_support::broker::{nats_url, redis_url};

/// Subscriptions of the fan-out scenario.
const SUBSCRIBERS: usize = 100;
/// Messages published between two yields in the fan-out scenario.
const BATCH: usize = 256;
/// Payload size of every scenario.
const SIZE: usize = 64;
/// Patterns of the routing scenario.
const PATTERNS: usize = 1000;
/// How long a receiver waits for the next message before it gives up.
const IDLE: Duration = Duration::from_secs(20);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or_default();
    let n: usize = arg(2).parse().unwrap_or(1000);
    let publisher = arg(0).starts_with("publish-");
    let ours = match arg(1) {
        "ours" => true,
        "base" => false,
        _ if publisher => false,
        other => usage(&format!("SIDE is ours or base, not {other:?}")),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let received = rt.block_on(async {
        match arg(0) {
            "fanout" if ours => fanout_memory(n).await,
            "fanout" => fanout_broadcast(n).await,
            "routing" => routing(ours, n),
            "envelope" => envelope_round_trips(ours, n),
            "nats" if ours => nats_adapter(n).await,
            "nats" => nats_raw(n).await,
            "redis" if ours => redis_adapter(n).await,
            "redis" => redis_raw(n).await,
            "publish-nats" => publish_nats(arg(1), n).await,
            "publish-redis" => publish_redis(arg(1), n).await,
            other => usage(&format!("unknown scenario {other:?}")),
        }
    });
    // The script checks this: a run that lost messages measures nothing useful.
    eprintln!("handled {received} of {n}");
}

fn usage(why: &str) -> ! {
    eprintln!("{why}\nusage: instructions fanout|routing|envelope|nats|redis ours|base N");
    std::process::exit(2)
}

fn payload() -> Bytes {
    Bytes::from(vec![7u8; SIZE])
}

async fn fanout_memory(n: usize) -> usize {
    let hub = MemoryBus::new().connect().await.expect("connect");
    let topic = Topic::new("bench.fanout.msg").expect("topic");
    let msg = Message::new(topic.clone(), payload());
    let mut receivers = Vec::new();
    for _ in 0..SUBSCRIBERS {
        let options = SubscribeOptions::default().with_capacity(n);
        let mut sub = hub
            .subscribe_with(topic.clone().into(), options)
            .await
            .expect("subscribe");
        receivers.push(tokio::spawn(async move {
            for _ in 0..n {
                sub.recv().await.expect("message");
            }
            sub.dropped()
        }));
    }
    for i in 0..n {
        hub.publish(msg.clone()).await.expect("publish");
        if i % BATCH == BATCH - 1 {
            tokio::task::yield_now().await;
        }
    }
    for r in receivers {
        assert_eq!(r.await.expect("join"), 0, "nothing may be dropped");
    }
    hub.close().await.expect("close");
    n
}

async fn fanout_broadcast(n: usize) -> usize {
    let msg = Message::new(Topic::new("bench.fanout.msg").expect("topic"), payload());
    let (tx, _) = tokio::sync::broadcast::channel::<Message>(n);
    let mut receivers = Vec::new();
    for _ in 0..SUBSCRIBERS {
        let mut rx = tx.subscribe();
        receivers.push(tokio::spawn(async move {
            for _ in 0..n {
                rx.recv().await.expect("message");
            }
        }));
    }
    for i in 0..n {
        tx.send(msg.clone()).expect("send");
        if i % BATCH == BATCH - 1 {
            tokio::task::yield_now().await;
        }
    }
    for r in receivers {
        r.await.expect("join");
    }
    n
}

fn routing(ours: bool, n: usize) -> usize {
    let topics = [
        "tenant7.room3.msg",
        "tenant42.room9.typing",
        "tenant1.nope.x.y",
    ];
    let pats = mixed_patterns(PATTERNS);
    let mut hits = 0usize;
    if ours {
        let mut trie = PatternTrie::default();
        for (i, p) in pats.iter().enumerate() {
            trie.insert(&Pattern::new(p).expect("pattern"), i as u64, i);
        }
        for i in 0..n {
            trie.for_each_match(topics[i % topics.len()], |_| hits += 1);
        }
    } else {
        let regexes: Vec<_> = pats.iter().map(|p| pattern_regex(p)).collect();
        for i in 0..n {
            let t = topics[i % topics.len()];
            hits += regexes.iter().filter(|r| r.is_match(t)).count();
        }
    }
    black_box(hits);
    n
}

fn envelope_round_trips(ours: bool, n: usize) -> usize {
    let mut headers = Headers::new();
    headers.insert("trace", "4bf92f3577b34da6").expect("header");
    headers
        .insert("content-type", "text/plain")
        .expect("header");
    let payload = payload();
    for _ in 0..n {
        if ours {
            let frame = envelope::encode(black_box(&headers), black_box(&payload));
            let decoded = envelope::decode(frame).expect("decode");
            black_box(decoded);
        } else {
            // The same bytes copied into one buffer and back out, nothing parsed.
            let mut frame = BytesMut::with_capacity(envelope::encoded_len(&headers, SIZE));
            for (name, value) in black_box(&headers).iter() {
                frame.put_slice(name.as_bytes());
                frame.put_slice(value.as_bytes());
            }
            frame.put_slice(black_box(&payload));
            let frame = frame.freeze();
            black_box(Bytes::copy_from_slice(&frame[frame.len() - SIZE..]));
        }
    }
    n
}

/// A subject only this run uses.
fn subject() -> String {
    format!("instr.{}.x", std::process::id())
}

/// Starts this program again (natively: valgrind does not follow children) to publish `n`
/// messages to `subject` with the raw client.
fn spawn_publisher(kind: &str, subject: &str, n: usize) -> std::process::Child {
    let exe = std::env::current_exe().expect("own path");
    std::process::Command::new(exe)
        .args([kind, subject, &n.to_string()])
        .spawn()
        .expect("publisher process")
}

/// Receives up to `n` items, each within [`IDLE`]; returns how many came.
async fn receive<S: futures::Stream + Unpin>(mut stream: S, n: usize) -> usize {
    let mut got = 0;
    while got < n {
        match tokio::time::timeout(IDLE, stream.next()).await {
            Ok(Some(_)) => got += 1,
            _ => break,
        }
    }
    got
}

async fn nats_adapter(n: usize) -> usize {
    let config = pubsub_nats::NatsConfig::from_url(&nats_url()).expect("url");
    let hub = pubsub_nats::connect(config).await.expect("connect");
    adapter_receives(hub, "publish-nats", n).await
}

/// Subscribes `hub` to a fresh subject, has a child process publish `n` messages to it with
/// the raw client (`publisher`), and counts what arrives.
async fn adapter_receives(hub: pubsub_core::Hub, publisher: &str, n: usize) -> usize {
    let subject = subject();
    let options = SubscribeOptions::default().with_capacity(n + 16);
    let sub = hub
        .subscribe_with(subject.parse().expect("pattern"), options)
        .await
        .expect("subscribe");
    let mut publisher = spawn_publisher(publisher, &subject, n);
    let got = receive(sub, n).await;
    let _ = publisher.wait();
    hub.close().await.expect("close");
    got
}

async fn nats_raw(n: usize) -> usize {
    let client = async_nats::ConnectOptions::new()
        .connect(nats_url().as_str())
        .await
        .expect("connect");
    let subject = subject();
    let sub = client.subscribe(subject.clone()).await.expect("subscribe");
    // The server has the SUB once it answered a PING sent after it.
    client.flush().await.expect("flush");
    let mut publisher = spawn_publisher("publish-nats", &subject, n);
    let got = receive(sub, n).await;
    let _ = publisher.wait();
    let _ = client.drain().await;
    got
}

async fn publish_nats(subject: &str, n: usize) -> usize {
    let client = async_nats::connect(nats_url().as_str())
        .await
        .expect("connect");
    let subject = async_nats::Subject::from(subject);
    for _ in 0..n {
        client
            .publish(subject.clone(), payload())
            .await
            .expect("publish");
    }
    client.flush().await.expect("flush");
    n
}

async fn redis_adapter(n: usize) -> usize {
    let config = pubsub_redis::RedisConfig::from_url(&redis_url()).expect("url");
    let hub = pubsub_redis::connect(config).await.expect("connect");
    adapter_receives(hub, "publish-redis", n).await
}

fn fred_client(capacity: usize) -> pubsub_redis::fred::clients::Client {
    use pubsub_redis::fred::types::config::{Config, PerformanceConfig};
    let config = Config::from_url(&redis_url()).expect("url");
    let perf = PerformanceConfig {
        broadcast_channel_capacity: capacity,
        ..PerformanceConfig::default()
    };
    pubsub_redis::fred::clients::Client::new(config, Some(perf), None, None)
}

async fn redis_raw(n: usize) -> usize {
    use pubsub_redis::fred::interfaces::{ClientLike, EventInterface, PubsubInterface};
    let client = fred_client(pubsub_redis::DEFAULT_BROADCAST_CAPACITY);
    let task = client.init().await.expect("connect");
    let rx = client.message_rx();
    let subject = subject();
    client.subscribe(subject.as_str()).await.expect("subscribe");
    let mut publisher = spawn_publisher("publish-redis", &subject, n);
    let messages = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.ok().map(|m| (m.value, rx))
    });
    let got = receive(Box::pin(messages), n).await;
    let _ = publisher.wait();
    let _ = client.quit().await;
    let _ = task.await;
    got
}

async fn publish_redis(channel: &str, n: usize) -> usize {
    use pubsub_redis::fred::interfaces::{ClientLike, PubsubInterface};
    let client = fred_client(64);
    let task = client.init().await.expect("connect");
    for _ in 0..n {
        client
            .publish::<(), _, _>(channel, payload())
            .await
            .expect("publish");
    }
    let _ = client.quit().await;
    let _ = task.await;
    n
}
