//! The dispatcher suite on NATS (`PUBSUB_NATS_URL`, default `nats://127.0.0.1:4222`); fails
//! when the server cannot be reached.
mod common;

fn backend() -> common::Backend {
    common::Backend::new("nats", pubsub_test_support::broker::nats_url())
}

dispatch_suite!(backend);
