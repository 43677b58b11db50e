//! The conformance suite on a 3-node NATS cluster, and the failover of a node.
//!
//! The suite runs against the cluster `scripts/clusters.sh` starts (`PUBSUB_NATS_CLUSTER_URL`,
//! default `nats://127.0.0.1:4301,127.0.0.1:4302,127.0.0.1:4303`): each handle starts on the
//! next node in turn and learns the others from the cluster, so a case's handles sit on
//! different nodes. The fault cases cut or freeze a proxy in front of one node
//! (a network fault between a client and its node). `node_kill_failover` starts a cluster of
//! its own and kills the node a subscribed handle is connected to while messages flow.

use std::sync::atomic::{AtomicUsize, Ordering};
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
    let nodes: Vec<String> = url
        .trim_start_matches("nats://")
        .split(',')
        .map(str::to_string)
        .collect();
    let first = nodes.first().cloned().unwrap_or_default();
    let foreign = support::nats(first.clone());
    Harness::proxied("nats-cluster", first, move |proxy| {
        let (url, nodes) = (url.clone(), nodes.clone());
        async move {
            // Each handle starts on the next node in turn (and learns the others, to fail
            // over), so that a case's handles sit on different nodes and what one publishes
            // crosses a route to reach another's subscriptions.
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let node = &nodes[NEXT.fetch_add(1, Ordering::Relaxed) % nodes.len()];
            let mut config = NatsConfig::from_url(&url)?.with_servers([format!("nats://{node}")]);
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
