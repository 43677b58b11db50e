//! Wildcard subscribes in a row share the cluster's topic list instead of reading it each
//! (about 45 ms a read on Tansu). A test binary of its own: the read counter is per process.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pubsub_core::PubSub;
use pubsub_kafka::KafkaConfig;
use pubsub_test_support::broker::kafka_url;
use pubsub_test_support::kit::{next, publish, subscribe};
use pubsub_test_support::unique_prefix;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_subscribes_in_a_row_share_the_topic_list() {
    const N: usize = 50;
    let p = unique_prefix("list");
    // Discovery runs seldom, so that the count is the subscribes' reads.
    let config = KafkaConfig::from_url(&kafka_url())
        .expect("url")
        .with_discovery_interval(Duration::from_secs(2));
    let ps: Arc<dyn PubSub> = Arc::new(
        pubsub_kafka::connect(config)
            .await
            .expect("connect to the Kafka broker"),
    );
    let before = pubsub_kafka::topic_list_reads();
    let start = Instant::now();
    let mut subs = Vec::new();
    for i in 0..N {
        subs.push(subscribe(&ps, &format!("{p}.s{i}.*")).await);
    }
    let took = start.elapsed();
    let reads = pubsub_kafka::topic_list_reads() - before;
    eprintln!("{N} wildcard subscribes in a row: {reads} topic-list reads, {took:?}");
    assert!(
        reads <= 10,
        "{N} wildcard subscribes in a row read the topic list {reads} times"
    );
    // A topic this handle creates right after is not missed by the next wildcard.
    publish(&ps, &format!("{p}.new.x"), "first").await;
    let mut late = subscribe(&ps, &format!("{p}.new.*")).await;
    publish(&ps, &format!("{p}.new.x"), "second").await;
    assert_eq!(
        next(&mut late, "the new topic").await.payload_str(),
        Some("second"),
        "a wildcard made after the topic's first message starts after it"
    );
    // Still served: a message on a topic made after all the subscribes.
    publish(&ps, &format!("{p}.s7.y"), "late topic").await;
    assert_eq!(
        next(&mut subs[7], "a topic created after the subscribe")
            .await
            .payload_str(),
        Some("late topic")
    );
    ps.close().await.expect("close");
}
