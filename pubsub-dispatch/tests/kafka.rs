//! The dispatcher suite on Kafka (`PUBSUB_KAFKA_URL`, default `kafka://127.0.0.1:9092`: Tansu,
//! started by `scripts/brokers.sh kafka`); fails when the broker cannot be reached.
mod common;

fn backend() -> common::Backend {
    common::Backend::new("kafka", pubsub_test_support::broker::kafka_url())
}

dispatch_suite!(backend);

/// Routes in a group (a Kafka consumer group; a stream is one partition, so one member at a
/// time takes the work).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_handlers() {
    common::group_handlers(&backend(), common::Sharing::OneMemberAtATime).await;
}
