//! The dispatcher suite on RabbitMQ (`PUBSUB_AMQP_URL`, default
//! `amqp://guest:guest@127.0.0.1:5672/%2f`); fails when the broker cannot be reached.
mod common;

fn backend() -> common::Backend {
    common::Backend::new("amqp", pubsub_test_support::broker::amqp_url())
}

dispatch_suite!(backend);

/// Routes in a group (a quorum queue per group).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_handlers() {
    common::group_handlers(&backend(), common::Sharing::AcrossMembers).await;
}
