//! The main job on the embedded default: no broker needed.
//!
//! Starts subscriptions on a few patterns, publishes a burst of chat-room events, and prints
//! what each subscription received and the publish/delivery rate.
//!
//! Run: `cargo run --release -p pubsub --example demo` (or pass another URL, such as
//! `redis://127.0.0.1:6379`, with the matching feature enabled).

use std::time::Instant;

use pubsub::{Message, SubscribeOptions};

const ROOMS: usize = 10;
const BURST: usize = 100_000;

#[tokio::main]
async fn main() -> pubsub::Result<()> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "memory://demo".into());
    let ps = pubsub::connect(&url).await?;
    println!("connected to {} ({url})", ps.backend());

    // Each pattern is its own subscription; each receives its own copy of what matches.
    let patterns = [
        "room.42.msg",
        "room.*.msg",
        "room.42.>",
        "room.>",
        "presence.*",
    ];
    let mut counters = Vec::new();
    for p in patterns {
        let mut sub = ps
            .subscribe_with(p.parse()?, SubscribeOptions::default().with_capacity(BURST))
            .await?;
        counters.push(tokio::spawn(async move {
            let mut received = 0usize;
            let mut last_topic = String::new();
            while let Some(m) = sub.recv().await {
                received += 1;
                last_topic.clear();
                last_topic.push_str(m.topic().as_str());
            }
            (p, received, last_topic, sub.dropped())
        }));
    }

    // A burst: messages and typing events across ROOMS rooms, plus presence updates.
    let topics: Vec<pubsub::Topic> = (0..ROOMS)
        .flat_map(|r| {
            [
                format!("room.{}.msg", 40 + r),
                format!("room.{}.typing", 40 + r),
            ]
        })
        .chain(["presence.online".to_string()])
        .map(|t| t.parse())
        .collect::<pubsub::Result<_>>()?;
    let start = Instant::now();
    for i in 0..BURST {
        let topic = topics[i % topics.len()].clone();
        let msg = Message::builder(topic)
            .payload(format!("event {i}"))
            .header("seq", i.to_string())
            .build()?;
        ps.publish(msg).await?;
    }
    let published_in = start.elapsed();

    // Closing flushes and ends every stream once its buffer is drained.
    ps.close().await?;
    let mut delivered = 0;
    for c in counters {
        let (pattern, received, last, dropped) = c.await.map_err(|e| {
            pubsub::Error::new(pubsub::ErrorKind::Backend, "a subscriber task failed")
                .with_source(e)
        })?;
        delivered += received;
        println!("  {pattern:<12} received {received:>7} (dropped {dropped}), last topic {last}");
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "published {BURST} messages in {:.1} ms ({:.0} msg/s); {delivered} deliveries ({:.0}/s)",
        published_in.as_secs_f64() * 1e3,
        BURST as f64 / published_in.as_secs_f64(),
        delivered as f64 / secs
    );
    Ok(())
}
