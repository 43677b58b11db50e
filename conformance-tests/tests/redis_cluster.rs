//! The conformance suite on a Redis Cluster (3 masters, 3 replicas), and the failover of a
//! master.
//!
//! The suite runs against the cluster `scripts/clusters.sh` starts (`PUBSUB_REDIS_CLUSTER_URL`,
//! default `redis://127.0.0.1:7101,…,127.0.0.1:7106`). Its fault cases need a node to fail,
//! which would disturb every other case on a shared cluster, so each of them starts a cluster
//! of its own: a cut kills the master holding the handle's subscriber connection (its replica
//! takes over) and a restore starts it again; a freeze stops that master's process.
//! `master_kill_failover` kills that master while messages flow.

use std::sync::Arc;

use conformance_tests::cluster::RedisCluster;
use conformance_tests::failover::{node_failure, NodeControl, NodeLink};
use conformance_tests::kit::fast_backoff;
use conformance_tests::kit::FaultedDeadlines;
use conformance_tests::{Connect, Harness, Link};
use pubsub_core::{PubSub, Result, WithOptions};
use pubsub_redis::RedisConfig;

fn cluster_url() -> String {
    std::env::var("PUBSUB_REDIS_CLUSTER_URL").unwrap_or_else(|_| {
        let nodes: Vec<String> = (7101..=7106).map(|p| format!("127.0.0.1:{p}")).collect();
        format!("redis://{}", nodes.join(","))
    })
}

/// A handle on the cluster at `url`, with short deadlines when it is the one the case faults.
async fn connect(url: String, faulted: bool) -> Result<Arc<dyn PubSub>> {
    let mut config = RedisConfig::from_url(&url)?;
    if faulted {
        config = config.with_faulted_deadlines().with_backoff(fast_backoff());
    }
    Ok(Arc::new(pubsub_redis::connect(config).await?))
}

mod support;

fn redis_cluster_harness() -> Harness {
    Harness::new(
        "redis-cluster",
        || connect(cluster_url(), false),
        || async {
            let cluster = RedisCluster::start(3, 1).await;
            let url = cluster.url();
            let handle = connect(url.clone(), true).await?;
            let peer: Connect = Arc::new(move || Box::pin(connect(url.clone(), false)));
            Ok((
                handle,
                Box::new(NodeLink::new(cluster, peer)) as Box<dyn Link>,
            ))
        },
    )
    .with_foreign(support::redis(cluster_url()))
    .with_history_loss(|root| support::redis_lose_history(cluster_url(), root))
    .lacking(
        conformance_tests::Capability::HistoryThroughCuts,
        "the cut kills the master the handle is connected to, and the suite's Redis nodes \
         keep nothing on disk: a stream whose slot is on that master loses its history (the \
         cut cases run on the single server)",
    )
    .lacking(
        conformance_tests::Capability::Restart,
        "the restart case runs on a single server of its own (the redis target); the \
         cluster's node failures are master_kill_failover's",
    )
}

conformance_tests::suite!(redis_cluster_harness);

/// Kills the master holding a subscribed handle's connection while another handle publishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_kill_failover() {
    let mut cluster = RedisCluster::start(3, 1).await;
    let subscriber = connect(cluster.url(), true).await.expect("subscriber");
    let publisher = connect(cluster.url(), true).await.expect("publisher");
    let report = node_failure(subscriber, publisher, || async {
        let victim = cluster.node_of_handle().await;
        cluster.kill(victim).await;
    })
    .await;
    println!("redis-cluster failover: {report:?}");
}
