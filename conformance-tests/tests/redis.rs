//! The conformance suite on Redis (`PUBSUB_REDIS_URL`, default `redis://127.0.0.1:6379`).
//!
//! Every case connects to a real Redis; when it cannot be reached the cases fail (they never
//! skip). The `reconnect` and `stalled_subscribe` cases go through a fault proxy
//! (`conformance_tests::proxy::TcpProxy`) that they cut or freeze.

use conformance_tests::broker::{redis_addr, redis_url};
use conformance_tests::kit::FaultedDeadlines;
use conformance_tests::private_broker::BrokerKind;
use conformance_tests::Harness;
use pubsub_redis::RedisConfig;

mod support;

fn redis_harness() -> Harness {
    Harness::proxied("redis", redis_addr(), |proxy| async move {
        let mut config = RedisConfig::from_url(&redis_url())?;
        if let Some(addr) = proxy {
            config = config
                .with_server(addr.ip().to_string(), addr.port())
                .with_faulted_deadlines();
        }
        pubsub_redis::connect(config).await
    })
    .with_foreign(support::redis(redis_url()))
    .with_history_loss(|root| support::redis_lose_history(redis_url(), root))
    .with_restart(BrokerKind::Redis)
}

conformance_tests::suite!(redis_harness);
