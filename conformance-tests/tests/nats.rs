//! The conformance suite on NATS (`PUBSUB_NATS_URL`, default `nats://127.0.0.1:4222`).
//!
//! Every case connects to a real nats-server; when it cannot be reached the cases fail (they
//! never skip). The `reconnect` and `stalled_subscribe` cases go through a fault proxy
//! (`conformance_tests::proxy::TcpProxy`) that they cut or freeze; that handle dials only the
//! proxy (no server discovered from the cluster), so every reconnect goes through it too.

use conformance_tests::broker::{nats_addr, nats_url};
use conformance_tests::private_broker::BrokerKind;
use conformance_tests::Harness;
use pubsub_nats::NatsConfig;

mod support;

fn nats_harness() -> Harness {
    Harness::proxied("nats", nats_addr(), |proxy| async move {
        let mut config = NatsConfig::from_url(&nats_url())?;
        if let Some(addr) = proxy {
            config = support::nats_through_proxy(config, addr);
        }
        pubsub_nats::connect(config).await
    })
    .with_foreign(support::nats(nats_addr()))
    .with_restart(BrokerKind::Nats)
}

conformance_tests::suite!(nats_harness);
