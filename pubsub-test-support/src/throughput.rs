//! The adapter's side of a throughput bench row (`pubsub_bench::throughput_table` runs the
//! rows): it needs a `pubsub_core::Hub`, which the bench harness itself does not know.

use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;
use pubsub_bench::{publish_pipelined, stamp, Outcome, Row};

/// The adapter's side of a row: `row.subs` subscriptions to `topic` on `ps` (with buffers big
/// enough for the whole run), `row.count` stamped messages published with `window` in flight;
/// closes `ps` at the end.
pub async fn adapter_run(ps: pubsub_core::Hub, row: Row, topic: &str, window: usize) -> Outcome {
    use pubsub_core::{Message, SubscribeOptions, Topic};
    let ps = Arc::new(ps);
    let topic: Topic = topic.parse().expect("topic");
    let mut receivers = row.receivers();
    for _ in 0..row.subs {
        let options = SubscribeOptions::default().with_capacity(row.count + 16);
        let sub = ps
            .subscribe_with(topic.clone().into(), options)
            .await
            .expect("subscribe");
        receivers.spawn(sub.map(|m| m.payload().clone()));
    }
    let (started, published) = publish_pipelined(row.count, window, |seq| {
        let m = Message::new(topic.clone(), stamp(seq, row.size));
        let ps = ps.clone();
        async move { ps.publish(m).await }
    })
    .await;
    let outcome = receivers.finish(started, published).await;
    ps.close().await.expect("close");
    outcome
}

/// The adapter's side of a row on the handle `connect` opens: [`adapter_run`] with `window`
/// publishes in flight. Panics when `broker` (its name, for the message) cannot be reached.
pub async fn connect_and_run(
    connect: impl Future<Output = pubsub_core::Result<pubsub_core::Hub>>,
    broker: &str,
    row: Row,
    topic: &str,
    window: usize,
) -> Outcome {
    let ps = connect
        .await
        .unwrap_or_else(|e| panic!("{broker} must be reachable: {e}"));
    adapter_run(ps, row, topic, window).await
}
