//! The conformance suite on Redis (`PUBSUB_REDIS_URL`, default `redis://127.0.0.1:6379`).
//!
//! Every case connects to a real Redis; when it cannot be reached the cases fail (they never
//! skip). The `reconnect` case goes through a [`TcpProxy`] that it cuts and restores.

use std::sync::Arc;
use std::time::Duration;

use conformance_tests::proxy::TcpProxy;
use conformance_tests::{Harness, Link};
use pubsub_core::PubSub;
use pubsub_redis::RedisConfig;

fn redis_url() -> String {
    std::env::var("PUBSUB_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string())
}

fn config() -> pubsub_core::Result<RedisConfig> {
    Ok(RedisConfig::from_url(&redis_url())?)
}

fn redis_harness() -> Harness {
    Harness::new(
        "redis",
        || async {
            let hub = pubsub_redis::connect(config()?).await?;
            Ok(Arc::new(hub) as Arc<dyn PubSub>)
        },
        || async {
            let config = config()?;
            let upstream = format!("{}:{}", config.host, config.port);
            let proxy = TcpProxy::start(&upstream)
                .await
                .map_err(|e| pubsub_core::Error::connection("starting the test's TCP proxy", e))?;
            let local = proxy.local_addr();
            let config = config
                .with_server(local.ip().to_string(), local.port())
                .with_publish_timeout(Duration::from_millis(500));
            let hub = pubsub_redis::connect(config).await?;
            Ok((
                Arc::new(hub) as Arc<dyn PubSub>,
                Box::new(proxy) as Box<dyn Link>,
            ))
        },
    )
}

conformance_tests::suite!(redis_harness);
