//! The dispatcher suite on NATS (`PUBSUB_NATS_URL`, default `nats://127.0.0.1:4222`); fails
//! when the server cannot be reached.
mod common;

fn backend() -> common::Backend {
    common::Backend::new("nats", pubsub_test_support::broker::nats_url())
}

dispatch_suite!(backend);

/// Routes in a group (a JetStream durable consumer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_handlers() {
    common::group_handlers(&backend(), common::Sharing::AcrossMembers).await;
}
