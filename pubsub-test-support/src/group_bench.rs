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
