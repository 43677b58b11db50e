//! Why the adapter maps every topic to one channel: raw tokio-postgres, the two mappings side
//! by side for 1, 100 and 10 000 subscriptions of one listening session.
//!
//! Run with `cargo bench -p pubsub-postgres --bench channel_mapping` (the server at
//! `PUBSUB_POSTGRES_URL`). The subscriptions are exact topics `t.<i>`; `N` messages go
//! round-robin to them from a second session (prepared statements, `synchronous_commit` off,
//! `WINDOW` in flight), and the time runs until the listener has received all of them.
//!
//! - **one channel**: the listener `LISTEN`s one channel; each publish is one `pg_notify` on it
//!   (the client picks the subscriptions of a message).
//! - **a channel per literal prefix**: the listener `LISTEN`s one channel per subscription
//!   (`t.<i>`); each publish notifies every prefix of its topic (`t` and `t.<i>`: a subscriber
//!   of `t.>` listens on `t`), since `LISTEN` takes no wildcard.
//!
//! Prints, per mapping and subscription count, the time of the `LISTEN`s and messages a
//! second (median of `ROUNDS`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use pubsub_test_support::broker::postgres_url;
use tokio_postgres::{AsyncMessage, Client, NoTls};

const N: usize = 20_000;
const WINDOW: usize = 64;
const ROUNDS: usize = 5;

/// A session whose connection a task drives; notifications counted into `received`.
async fn session(received: Option<tokio::sync::mpsc::UnboundedSender<()>>) -> Client {
    let (client, mut connection) = tokio_postgres::connect(&postgres_url(), NoTls)
        .await
        .expect("PostgreSQL must be reachable");
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let (AsyncMessage::Notification(_), Some(tx)) = (message, &received) {
                let _ = tx.send(());
            }
        }
    });
    client
        .batch_execute("SET synchronous_commit TO off")
        .await
        .expect("SET");
    client
}

/// (time of the LISTENs, messages a second) for `subs` subscriptions.
async fn run(subs: usize, per_prefix: bool, round: usize) -> (Duration, f64) {
    let base = format!("m{}r{round}{}", std::process::id(), u8::from(per_prefix));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let listener = session(Some(tx)).await;
    let publisher = Arc::new(session(None).await);
    let listens = match per_prefix {
        false => format!("LISTEN \"{base}\";"),
        true => (0..subs)
            .map(|i| format!("LISTEN \"{base}.{i}\";"))
            .collect(),
    };
    let started = Instant::now();
    listener.batch_execute(&listens).await.expect("LISTEN");
    let listen_time = started.elapsed();
    let sql = match per_prefix {
        false => "SELECT pg_notify($1, $3), $2::text",
        true => "SELECT pg_notify($1, $3), pg_notify($2, $3)",
    };
    let statement = publisher.prepare(sql).await.expect("prepare");
    let started = Instant::now();
    let publishes = futures::stream::iter(0..N).map(|seq| {
        let (publisher, statement) = (publisher.clone(), statement.clone());
        let i = seq % subs;
        let (whole, exact) = match per_prefix {
            false => (base.clone(), base.clone()),
            true => (base.clone(), format!("{base}.{i}")),
        };
        let text = format!("t.{i} {seq:08}");
        async move {
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] = match per_prefix {
                false => [&whole, &whole, &text],
                true => [&exact, &whole, &text],
            };
            publisher
                .execute(&statement, &params)
                .await
                .expect("notify");
        }
    });
    publishes
        .buffer_unordered(WINDOW)
        .collect::<Vec<()>>()
        .await;
    for _ in 0..N {
        tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .expect("every notification in time");
    }
    let rate = N as f64 / started.elapsed().as_secs_f64();
    let _ = listener.batch_execute("UNLISTEN *").await;
    (listen_time, rate)
}

fn median<T: PartialOrd + Copy>(mut xs: Vec<T>) -> T {
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    xs[xs.len() / 2]
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    println!("PostgreSQL LISTEN/NOTIFY: {N} messages round-robin over the subscriptions, median of {ROUNDS}");
    println!("| subscriptions | mapping | LISTEN time | msg/s |");
    println!("|---:|---|---:|---:|");
    for subs in [1, 100, 10_000] {
        for per_prefix in [false, true] {
            let mut listens = Vec::new();
            let mut rates = Vec::new();
            for round in 0..ROUNDS {
                let (listen, rate) = runtime.block_on(run(subs, per_prefix, round));
                listens.push(listen);
                rates.push(rate);
            }
            let mapping = match per_prefix {
                false => "one channel",
                true => "a channel per literal prefix",
            };
            println!(
                "| {subs} | {mapping} | {:.1?} | {:.0} |",
                median(listens),
                median(rates)
            );
        }
    }
}
