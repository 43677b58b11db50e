//! The conformance suite on Kafka (`PUBSUB_KAFKA_URL`, default `kafka://127.0.0.1:9092`:
//! Tansu, started by `scripts/brokers.sh kafka`).
//!
//! Every case connects to a real broker; when it cannot be reached the cases fail (they never
//! skip). A Kafka client reconnects to the address its broker advertises, so a proxy in front
//! of the shared broker would only see the first connection. A case that cuts a link
//! therefore gets a Tansu of its own that advertises a
//! [`Switchboard`](conformance_tests::switchboard::Switchboard): the cut handle's connections
//! (by client id) go through the case's fault proxy, and every other handle of that case
//! reaches the same broker directly.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use conformance_tests::broker::{kafka_url, Tansu};
use conformance_tests::kit::{fast_backoff, FaultedDeadlines};
use conformance_tests::proxy::TcpProxy;
use conformance_tests::switchboard::Switchboard;
use conformance_tests::{Harness, Link};
use pubsub_core::{Error, PubSub, WithOptions};
use pubsub_kafka::KafkaConfig;
use tokio::sync::Mutex;

/// The broker of a fault case: a Tansu advertising the switchboard in front of it.
struct FaultBroker {
    switchboard: Switchboard,
    tansu: Tansu,
}

/// The fault proxy of one handle, and what keeps its broker alive.
struct FaultLink {
    proxy: TcpProxy,
    _broker: Arc<FaultBroker>,
}

#[async_trait::async_trait]
impl Link for FaultLink {
    async fn cut(&self) {
        self.proxy.cut();
    }
    async fn restore(&self) {
        self.proxy.restore();
    }
    async fn freeze(&self) {
        self.proxy.freeze();
    }
    async fn thaw(&self) {
        self.proxy.thaw();
    }
    async fn set_latency(&self, latency: Duration) -> bool {
        self.proxy.set_latency(latency);
        true
    }
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::connection(what, e)
}

mod support;

fn kafka_harness() -> Harness {
    // Set once this case cut a link: its other handles go to the same broker.
    let fault: Arc<Mutex<Option<Arc<FaultBroker>>>> = Arc::default();
    let direct = fault.clone();
    Harness::new(
        "kafka",
        move || {
            let fault = direct.clone();
            async move {
                let mut config = suite_config()?;
                if let Some(broker) = fault.lock().await.as_ref() {
                    config = config.with_servers([broker.tansu.addr().to_string()]);
                }
                Ok(Arc::new(pubsub_kafka::connect(config).await?) as Arc<dyn PubSub>)
            }
        },
        move || {
            let fault = fault.clone();
            async move {
                let broker = {
                    let mut fault = fault.lock().await;
                    match fault.as_ref() {
                        Some(broker) => broker.clone(),
                        None => {
                            let placeholder: SocketAddr = ([127, 0, 0, 1], 9).into();
                            let mut switchboard = Switchboard::start(placeholder)
                                .await
                                .map_err(io("starting the switchboard"))?;
                            let tansu = Tansu::start(switchboard.local_addr())
                                .await
                                .map_err(io("starting Tansu"))?;
                            switchboard.set_default(tansu.addr());
                            let broker = Arc::new(FaultBroker { switchboard, tansu });
                            *fault = Some(broker.clone());
                            broker
                        }
                    }
                };
                static NEXT: AtomicU32 = AtomicU32::new(0);
                let client_id = format!("pubsub-cut-{}", NEXT.fetch_add(1, Ordering::Relaxed));
                let proxy = TcpProxy::start(&broker.tansu.addr().to_string())
                    .await
                    .map_err(io("starting the fault proxy"))?;
                broker.switchboard.route(&client_id, proxy.local_addr());
                let config = suite_config()?
                    .with_servers([proxy.local_addr().to_string()])
                    .with_client_id(client_id)
                    .with_faulted_deadlines()
                    .with_backoff(fast_backoff());
                let handle = pubsub_kafka::connect(config).await?;
                let link = FaultLink {
                    proxy,
                    _broker: broker,
                };
                Ok((
                    Arc::new(handle) as Arc<dyn PubSub>,
                    Box::new(link) as Box<dyn Link>,
                ))
            }
        },
    )
    .with_foreign(support::kafka(kafka_bootstrap()))
    .lacking(
        conformance_tests::Capability::GroupSharing,
        "a group reads its stream's topic, which has one partition: a Kafka consumer group \
         gives it to one member at a time, the others stand by",
    )
    .lacking(
        conformance_tests::Capability::Restart,
        "the test broker (Tansu with memory storage) keeps nothing across a restart; real \
         Kafka keeps the log and the committed offsets",
    )
}

/// How long a fetch of the suite's consumers waits for data at most, unless the URL sets it.
/// The test broker (Tansu with memory storage) lists every batch of a partition before it
/// answers a fetch, and answers empty once that takes longer than the fetch wait: with the
/// adapter's default (10 ms) a partition of some 20 000 single-record batches is no longer
/// served. 100 ms serves the suite's longest topic (20 000 messages) with room to spare; on
/// this broker a message on a quiet topic then waits up to about that long.
const SUITE_FETCH_WAIT: Duration = Duration::from_millis(100);

/// The handle configuration of [`kafka_url`], with [`SUITE_FETCH_WAIT`].
fn suite_config() -> Result<KafkaConfig, Error> {
    let url = kafka_url();
    let config = KafkaConfig::from_url(&url)?;
    Ok(if url.contains("fetch_wait=") {
        config
    } else {
        config.with_fetch_wait(SUITE_FETCH_WAIT)
    })
}

/// `host:port[,host:port]` of [`kafka_url`].
fn kafka_bootstrap() -> String {
    let url = kafka_url();
    let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    authority
        .rsplit_once('@')
        .map_or(authority, |(_, h)| h)
        .to_string()
}

conformance_tests::suite!(kafka_harness);
