//! The whole conformance suite against the adapter, with one macro call.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use conformance_tests::{Foreign, ForeignMessage, Harness, Link};
use custom_adapter::{Exchange, Wire};
use pubsub_core::{CommonOptions, Headers, Message, PubSub, WithOptions};

/// The suite's view of a [`Wire`].
struct WireLink(Wire);

#[async_trait]
impl Link for WireLink {
    async fn cut(&self) {
        self.0.cut().await;
    }
    async fn restore(&self) {
        self.0.mend().await;
    }
    async fn freeze(&self) {
        self.0.freeze().await;
    }
    async fn thaw(&self) {
        self.0.mend().await;
    }
}

/// One exchange per case: its handles see each other, and no other case's traffic.
fn harness() -> Harness {
    let exchange = Exchange::new(1 << 16);
    let cuttable = exchange.clone();
    let other = exchange.clone();
    Harness::new(
        "exchange",
        move || {
            let exchange = exchange.clone();
            async move {
                let (hub, _wire) = exchange.connect(CommonOptions::default()).await?;
                Ok(Arc::new(hub) as Arc<dyn PubSub>)
            }
        },
        move || {
            let exchange = cuttable.clone();
            async move {
                let options = CommonOptions::default()
                    .with_publish_timeout(Duration::from_millis(500))
                    .with_heartbeat(conformance_tests::kit::fast_heartbeat());
                let (hub, wire) = exchange.connect(options).await?;
                Ok((
                    Arc::new(hub) as Arc<dyn PubSub>,
                    Box::new(WireLink(wire)) as Box<dyn Link>,
                ))
            }
        },
    )
    // Another client of the exchange sends straight into it.
    .with_foreign(Foreign::new(true, move |m: ForeignMessage| {
        let exchange = other.clone();
        async move {
            let mut headers = Headers::new();
            for (name, value) in &m.headers {
                headers.insert(name, value)?;
            }
            let topic = m.topic.parse()?;
            exchange.send(Message::with_headers(topic, m.payload, headers));
            Ok(())
        }
    }))
    .lacking(
        conformance_tests::Capability::Streams,
        "the example keeps no history",
    )
    .lacking(
        conformance_tests::Capability::Groups,
        "groups are not written for the example yet",
    )
}

conformance_tests::suite!(harness);
