//! Dispatcher overhead per message against a hand-written subscription loop doing the same
//! work (receive, decode the 64-byte JSON payload, call the handler), on the memory backend.
//!
//! `cargo bench -p pubsub-dispatch --bench overhead` (`BENCH_QUICK=1` for a smoke run).
//! Rounds alternate (loop, dispatcher, loop, …); the median of each is compared.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pubsub_bench::median;
use pubsub_core::memory::MemoryBus;
use pubsub_core::{Message, PubSub, SubscribeOptions, Topic};
use pubsub_dispatch::{Dispatcher, HandlerError, Json, Route};
use serde::Deserialize;
use tokio::sync::Notify;

#[derive(Deserialize)]
#[allow(dead_code)]
struct Order {
    id: u64,
    item: String,
    cents: u64,
}

/// A 64-byte JSON order.
fn payload(i: u64) -> Vec<u8> {
    let mut text = format!(r#"{{"id":{i},"cents":{},"item":""#, i * 7);
    while text.len() < 62 {
        text.push('x');
    }
    text.push_str("\"}");
    assert_eq!(text.len(), 64);
    text.into_bytes()
}

fn messages(n: u64) -> Vec<Message> {
    let topic = Topic::new("bench.orders.created").expect("topic");
    (0..n)
        .map(|i| {
            Message::builder(topic.clone())
                .payload(payload(i))
                .header("content-type", "application/json")
                .build()
                .expect("message")
        })
        .collect()
}

/// The work both sides do per message.
fn handle(order: &Order, seen: &AtomicU64, n: u64, done: &Notify) {
    black_box(order);
    if seen.fetch_add(1, Ordering::Relaxed) + 1 == n {
        done.notify_one();
    }
}

async fn hand_loop(ps: &Arc<dyn PubSub>, batch: &[Message]) -> Duration {
    let n = batch.len() as u64;
    let mut sub = ps
        .subscribe_with(
            "bench.orders.*".parse().expect("pattern"),
            SubscribeOptions::default().with_capacity(batch.len()),
        )
        .await
        .expect("subscribe");
    let seen = Arc::new(AtomicU64::new(0));
    let done = Arc::new(Notify::new());
    let reader = {
        let (seen, done) = (seen.clone(), done.clone());
        tokio::spawn(async move {
            while let Some(m) = sub.recv().await {
                match serde_json::from_slice::<Order>(m.payload()) {
                    Ok(order) => handle(&order, &seen, n, &done),
                    Err(e) => panic!("decode: {e}"),
                }
                if seen.load(Ordering::Relaxed) == n {
                    break;
                }
            }
        })
    };
    let start = Instant::now();
    for m in batch {
        ps.publish(m.clone()).await.expect("publish");
    }
    done.notified().await;
    let elapsed = start.elapsed();
    reader.await.expect("reader");
    elapsed
}

async fn dispatcher(ps: &Arc<dyn PubSub>, batch: &[Message], mode: &str) -> Duration {
    let n = batch.len() as u64;
    let seen = Arc::new(AtomicU64::new(0));
    let done = Arc::new(Notify::new());
    let handler = {
        let (seen, done) = (seen.clone(), done.clone());
        move |Json(order): Json<Order>| {
            let (seen, done) = (seen.clone(), done.clone());
            async move {
                handle(&order, &seen, n, &done);
                Ok::<_, HandlerError>(())
            }
        }
    };
    let mut route = Route::new("bench.orders.*", handler).buffer(batch.len());
    route = match mode {
        "ordered(4)" => route.ordered(4),
        "concurrency(8)" => route.concurrency(8),
        _ => route,
    };
    let d = Dispatcher::builder(ps.clone())
        .route(route)
        .start()
        .await
        .expect("start");
    let start = Instant::now();
    for m in batch {
        ps.publish(m.clone()).await.expect("publish");
    }
    done.notified().await;
    let elapsed = start.elapsed();
    d.shutdown(Duration::from_secs(10)).await;
    elapsed
}

fn main() {
    let quick = std::env::var("BENCH_QUICK").is_ok();
    let (n, rounds) = if quick { (20_000, 3) } else { (100_000, 11) };
    // One thread: publisher, route and loop share it, so the figure is CPU per message without
    // cross-thread wake-ups (the steadiest comparison on a busy machine). Two threads: as a
    // service runs.
    let single = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!("dispatcher overhead, memory backend, {n} messages of 64 B JSON, median of {rounds} interleaved rounds");
    println!(
        "{:<14} {:<16} {:>10} {:>12} {:>8}",
        "runtime", "mode", "ns/msg", "loop ns/msg", "ratio"
    );
    let cases: [(&str, &tokio::runtime::Runtime, &[&str]); 2] = [
        ("1 thread", &single, &["sequential"]),
        (
            "2 threads",
            &multi,
            &["sequential", "ordered(4)", "concurrency(8)"],
        ),
    ];
    for (flavor, rt, modes) in cases {
        rt.block_on(async {
            let ps: Arc<dyn PubSub> = Arc::new(MemoryBus::new().connect().await.expect("connect"));
            let batch = messages(n);
            hand_loop(&ps, &batch[..1000]).await;
            dispatcher(&ps, &batch[..1000], "sequential").await;
            for mode in modes {
                let (mut base, mut ours) = (Vec::new(), Vec::new());
                for _ in 0..rounds {
                    base.push(hand_loop(&ps, &batch).await);
                    ours.push(dispatcher(&ps, &batch, mode).await);
                }
                let (b, o) = (median(base), median(ours));
                let per = |d: Duration| d.as_nanos() as f64 / n as f64;
                println!(
                    "{flavor:<14} {mode:<16} {:>10.0} {:>12.0} {:>7.2}x",
                    per(o),
                    per(b),
                    o.as_secs_f64() / b.as_secs_f64()
                );
            }
        });
    }
}
