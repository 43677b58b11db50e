//! The adapter's side of the groups benchmarks' members row, the same on every backend: a new
//! group's members, one per handle, read a stream's held messages together, acknowledging
//! each (each backend's bench compares three members with one).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pubsub_core::{GroupConfig, Hub};

/// Members of `config`, one on each of `hubs`, read `n` messages together, acknowledging each
/// (acknowledgements batched by the kit): the time from the first join until the broker took
/// the `n`-th acknowledgement.
pub async fn members_consume(hubs: &[Hub], config: &GroupConfig, n: usize) -> Duration {
    let start = Instant::now();
    let acked = Arc::new(AtomicUsize::new(0));
    let (done, mut finished) = tokio::sync::mpsc::channel::<()>(1);
    let mut members = Vec::with_capacity(hubs.len());
    for hub in hubs {
        let mut member = hub.join_group(config.clone()).await.expect("join");
        let (acked, done) = (acked.clone(), done.clone());
        members.push(tokio::spawn(async move {
            while let Some(message) = member.recv().await {
                let settled = message.ack();
                if acked.fetch_add(1, Ordering::Relaxed) + 1 == n {
                    settled.await.expect("ack");
                    let _ = done.send(()).await;
                }
            }
        }));
    }
    drop(done);
    finished.recv().await.expect("all acknowledged");
    let took = start.elapsed();
    for member in members {
        member.abort();
    }
    took
}

/// The redelivery row: a member on `doomed` takes a message published to `topic` (under the
/// stream of `config`, declared on both handles) and is killed holding it unacknowledged (its
/// handle dropped: no `leave`, no `close`); a member on `survivor` that joins right after the
/// kill gets it again. Returns how long after the kill that took (the group's ack deadline
/// included: the promise is "within the ack deadline").
pub async fn redelivery_after_kill(
    doomed: Hub,
    survivor: &Hub,
    config: &GroupConfig,
    topic: &pubsub_core::Topic,
) -> Duration {
    let mut member = doomed.join_group(config.clone()).await.expect("join");
    survivor
        .publish(pubsub_core::Message::new(topic.clone(), "held"))
        .await
        .expect("publish");
    let held = member.recv().await.expect("the doomed member's delivery");
    let killed_at = Instant::now();
    drop(held);
    drop(member);
    drop(doomed);
    // Joins after the kill (as in the conformance case): on Kafka's test broker a member that
    // was standing by when the reader went does not take over.
    let mut standby = survivor.join_group(config.clone()).await.expect("join");
    let again = tokio::time::timeout(config.ack_deadline() * 10, standby.recv())
        .await
        .expect("no redelivery within ten ack deadlines")
        .expect("the survivor's delivery");
    let took = killed_at.elapsed();
    assert!(again.deliveries() >= 2, "not a redelivery");
    again.ack().await.expect("ack");
    standby.leave().await.expect("leave");
    took
}

/// The redelivery row, `rounds` times (a new group each, named `<name>-<round>`, reading
/// `pattern`, acknowledgement deadline `deadline`): `connect` makes the doomed handle of each
/// round (with the stream declared). Prints the row and returns the median.
pub async fn redelivery_row<F, Fut>(
    backend: &str,
    survivor: &Hub,
    connect: F,
    name: &str,
    pattern: &str,
    deadline: Duration,
    rounds: usize,
) -> Duration
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Hub>,
{
    // `a.b.>` → `a.b.held`
    let topic: pubsub_core::Topic = format!("{}held", pattern.trim_end_matches('>'))
        .parse()
        .expect("a pattern ending in `>`");
    let mut took = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let config = GroupConfig::new(
            &format!("{name}-{round}"),
            vec![pattern.parse().expect("pattern")],
        )
        .expect("group")
        .with_ack_deadline(deadline);
        took.push(redelivery_after_kill(connect().await, survivor, &config, &topic).await);
    }
    took.sort_unstable();
    let median = took[took.len() / 2];
    pubsub_bench::print_header(&[
        format!("{backend} group, member killed"),
        "redelivered after (median)".into(),
        "range".into(),
        "beyond the ack deadline".into(),
    ]);
    pubsub_bench::print_row(&[
        format!("ack deadline {}", pubsub_bench::fmt_duration(deadline)),
        pubsub_bench::fmt_duration(median),
        format!(
            "{}–{}",
            pubsub_bench::fmt_duration(took[0]),
            pubsub_bench::fmt_duration(took[took.len() - 1])
        ),
        pubsub_bench::fmt_duration(median.saturating_sub(deadline)),
    ]);
    median
}
