//! The dispatcher suite on Kafka (`PUBSUB_KAFKA_URL`, default `kafka://127.0.0.1:9092`: Tansu,
//! started by `scripts/brokers.sh kafka`); fails when the broker cannot be reached.
mod common;

fn backend() -> common::Backend {
    common::Backend::new("kafka", pubsub_test_support::broker::kafka_url())
}

dispatch_suite!(backend);
