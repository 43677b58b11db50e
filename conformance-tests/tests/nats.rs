//! The conformance suite on NATS (`PUBSUB_NATS_URL`, default `nats://127.0.0.1:4222`).
//!
//! Every case connects to a real nats-server; when it cannot be reached the cases fail (they
//! never skip). The `reconnect` case goes through a [`TcpProxy`] that it cuts and restores; that
//! handle dials only the proxy (no server discovered from the cluster), so every reconnect goes
//! through it too.

use std::sync::Arc;
use std::time::Duration;

use conformance_tests::proxy::TcpProxy;
use conformance_tests::{Harness, Link};
use pubsub_core::{Backoff, PubSub};
use pubsub_nats::NatsConfig;

fn nats_url() -> String {
    std::env::var("PUBSUB_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_string())
}

fn config() -> pubsub_core::Result<NatsConfig> {
    NatsConfig::from_url(&nats_url())
}

fn nats_harness() -> Harness {
    Harness::new(
        "nats",
        || async {
            let hub = pubsub_nats::connect(config()?).await?;
            Ok(Arc::new(hub) as Arc<dyn PubSub>)
        },
        || async {
            let config = config()?;
            let upstream = config
                .servers
                .first()
                .and_then(|s| s.split_once("://"))
                .map(|(_, hostport)| hostport.to_string())
                .ok_or_else(|| pubsub_core::Error::InvalidConfig("no NATS server".into()))?;
            let proxy = TcpProxy::start(&upstream)
                .await
                .map_err(|e| pubsub_core::Error::connection("starting the test's TCP proxy", e))?;
            let config = config
                .with_servers([format!("nats://{}", proxy.local_addr())])
                .with_discovered_servers(false)
                .with_publish_timeout(Duration::from_millis(500))
                .with_backoff(
                    Backoff::default()
                        .with_initial(Duration::from_millis(50))
                        .with_max(Duration::from_millis(500)),
                );
            let hub = pubsub_nats::connect(config).await?;
            Ok((
                Arc::new(hub) as Arc<dyn PubSub>,
                Box::new(proxy) as Box<dyn Link>,
            ))
        },
    )
}

conformance_tests::suite!(nats_harness);
