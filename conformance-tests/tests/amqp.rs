//! The conformance suite on RabbitMQ (`PUBSUB_AMQP_URL`, default
//! `amqp://guest:guest@127.0.0.1:5672/%2f`).
//!
//! Every case connects to a real broker; when it cannot be reached the cases fail (they never
//! skip). The fault cases go through a fault proxy (`conformance_tests::proxy::TcpProxy`) that
//! they cut or freeze; that handle dials only the proxy, so every reconnect goes through it too.

use conformance_tests::broker::{amqp_addr, amqp_url};
use conformance_tests::kit::fast_backoff;
use conformance_tests::kit::FaultedDeadlines;
use conformance_tests::private_broker::BrokerKind;
use conformance_tests::Harness;
use pubsub_amqp::AmqpConfig;
use pubsub_core::WithOptions;

mod support;

fn amqp_harness() -> Harness {
    Harness::proxied("amqp", amqp_addr(), |proxy| async move {
        let mut config = AmqpConfig::from_url(&amqp_url())?;
        if let Some(addr) = proxy {
            config = config
                .with_server(addr.ip().to_string(), addr.port())
                .with_faulted_deadlines()
                .with_backoff(fast_backoff());
        }
        pubsub_amqp::connect(config).await
    })
    .with_foreign(support::amqp(amqp_url()))
    .with_restart(BrokerKind::RabbitMq)
}

conformance_tests::suite!(amqp_harness);
