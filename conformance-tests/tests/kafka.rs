//! The conformance suite on Kafka (`PUBSUB_KAFKA_URL`, default `kafka://127.0.0.1:9092`).

use std::time::Duration;

use conformance_tests::broker::kafka_url;
use conformance_tests::kit::fast_backoff;
use conformance_tests::Harness;
use pubsub_core::WithOptions;
use pubsub_kafka::KafkaConfig;

fn kafka_harness() -> Harness {
    Harness::proxied("kafka", "127.0.0.1:9092".into(), |proxy| async move {
        let mut config = KafkaConfig::from_url(&kafka_url())?;
        if let Some(addr) = proxy {
            config = config
                .with_servers([addr.to_string()])
                .with_publish_timeout(Duration::from_millis(500))
                .with_command_timeout(Duration::from_secs(2))
                .with_backoff(fast_backoff());
        }
        pubsub_kafka::connect(config).await
    })
}

conformance_tests::suite!(kafka_harness);
