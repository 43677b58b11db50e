//! The dispatcher suite on Redis (`PUBSUB_REDIS_URL`, default `redis://127.0.0.1:6379`); fails
//! when Redis cannot be reached.
mod common;

fn backend() -> common::Backend {
    common::Backend::new("redis", pubsub_test_support::broker::redis_url())
}

dispatch_suite!(backend);

/// Routes in a group (a Redis Streams consumer group).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_handlers() {
    common::group_handlers(&backend(), common::Sharing::AcrossMembers).await;
}
