//! The dispatcher suite on Redis (`PUBSUB_REDIS_URL`, default `redis://127.0.0.1:6379`); fails
//! when Redis cannot be reached.
mod common;

fn backend() -> common::Backend {
    common::Backend::new("redis", pubsub_test_support::broker::redis_url())
}

dispatch_suite!(backend);
