//! The conformance suite on a 3-node NATS cluster, and the failover of a node.
//!
//! The suite runs against the cluster `scripts/clusters.sh` starts (`PUBSUB_NATS_CLUSTER_URL`,
//! default `nats://127.0.0.1:4301,127.0.0.1:4302,127.0.0.1:4303`): every handle starts on the
//! first node and learns the others from the cluster. The fault cases cut or freeze a proxy in front of one node
//! (a network fault between a client and its node). `node_kill_failover` starts a cluster of
//! its own and kills the node a subscribed handle is connected to while messages flow.

use std::sync::Arc;

use conformance_tests::cluster::NatsCluster;
use conformance_tests::failover::node_failure;
use conformance_tests::kit::fast_backoff;
use conformance_tests::Harness;
use pubsub_core::{PubSub, WithOptions};
use pubsub_nats::NatsConfig;

fn cluster_url() -> String {
    std::env::var("PUBSUB_NATS_CLUSTER_URL")
        .unwrap_or_else(|_| "nats://127.0.0.1:4301,127.0.0.1:4302,127.0.0.1:4303".to_string())
}

mod support;

fn nats_cluster_harness() -> Harness {
    let url = cluster_url();
    let first = url
        .trim_start_matches("nats://")
        .split(',')
        .next()
        .unwrap_or_default()
        .to_string();
    let foreign = support::nats(first.clone());
    Harness::proxied("nats-cluster", first.clone(), move |proxy| {
        let (url, first) = (url.clone(), first.clone());
        async move {
            // Every handle starts on the first node (it learns the others, to fail over):
            // interest crosses routes asynchronously, so a subscription made on one node is
            // live on the others only a route hop later, and the suite's cases publish right
            // after `subscribe` resolves (see README, "Scaling out"). Cross-node delivery is
            // exercised by `foreign_publisher` and `node_kill_failover`.
            let mut config = NatsConfig::from_url(&url)?.with_servers([format!("nats://{first}")]);
            if let Some(addr) = proxy {
                config = support::nats_through_proxy(config, addr);
            }
            pubsub_nats::connect(config).await
        }
    })
    .with_foreign(foreign)
    .lacking(
        conformance_tests::Capability::Restart,
        "the restart case runs on a single server of its own (the nats target); the cluster's \
         node failures are node_kill_failover's",
    )
}

conformance_tests::suite!(nats_cluster_harness);

/// Kills the node a subscribed handle is on, while a handle on another node publishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_kill_failover() {
    let mut cluster = NatsCluster::start(3).await;
    let subscriber = pubsub_nats::connect(
        NatsConfig::from_url(&cluster.url())
            .expect("cluster URL")
            .with_name("failover-subscriber")
            .with_backoff(fast_backoff()),
    )
    .await
    .expect("connecting the subscriber");
    let subscriber: Arc<dyn PubSub> = Arc::new(subscriber);
    let victim = cluster
        .node_of("failover-subscriber")
        .await
        .expect("the subscriber is on a node");
    let other = (victim + 1) % 3;
    let publisher = pubsub_nats::connect(
        NatsConfig::from_url(&cluster.node_url(other))
            .expect("node URL")
            .with_backoff(fast_backoff()),
    )
    .await
    .expect("connecting the publisher");
    let report = node_failure(subscriber, Arc::new(publisher), || async {
        cluster.kill(victim).await;
    })
    .await;
    println!("nats-cluster failover: {report:?}");
}
