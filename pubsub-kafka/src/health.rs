//! The connection state of a handle's Kafka clients, for the kit's supervisor.
//!
//! librdkafka reconnects by itself and keeps the consumer's assignment, so the adapter only
//! watches: every client reports "all brokers down" through its context, and a heartbeat
//! probe that gets no answer within two heartbeats ([`beat`]) means the same; either takes
//! the link down. A task then probes the cluster (with the handle's backoff) until it
//! answers, and reports the link up again (no filter needs restoring).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pubsub_core::adapter::LinkReporter;
use pubsub_core::Backoff;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use tokio::sync::Notify;

/// Whether the handle's clients reach the cluster.
pub(crate) struct Health {
    link: LinkReporter,
    down: AtomicBool,
    wake: Notify,
}

impl Health {
    pub(crate) fn new(link: LinkReporter) -> Arc<Health> {
        Arc::new(Health {
            link,
            down: AtomicBool::new(false),
            wake: Notify::new(),
        })
    }

    pub(crate) fn up(&self) {
        self.down.store(false, Ordering::SeqCst);
        self.link.up();
    }

    fn lost(&self) {
        if !self.down.swap(true, Ordering::SeqCst) {
            tracing::warn!("lost the Kafka cluster; librdkafka reconnects");
            self.link.down();
            self.wake.notify_one();
        }
    }

    /// Waits for the link to go down, then probes until the cluster answers, forever.
    pub(crate) async fn watch(
        self: Arc<Self>,
        consumer: Arc<BaseConsumer<LinkContext>>,
        backoff: Backoff,
        timeout: Duration,
    ) {
        loop {
            self.wake.notified().await;
            let mut delays = backoff.delays();
            while self.down.load(Ordering::SeqCst) {
                tokio::time::sleep(delays.next().unwrap_or(backoff.max)).await;
                let consumer = consumer.clone();
                let probe = tokio::task::spawn_blocking(move || {
                    crate::raw::probe(consumer.client().native_ptr(), timeout)
                })
                .await;
                if matches!(probe, Ok(true)) {
                    tracing::info!("the Kafka cluster answers again");
                    self.up();
                }
            }
        }
    }
}

/// Probes the cluster every `heartbeat` while the link is up; a probe unanswered within two
/// heartbeats takes the link down, so that a silent (half-open) connection is noticed within
/// three heartbeats. librdkafka alone notices one only when a request times out
/// (`socket.timeout.ms`) and then the reconnect's setup times out as well, which is silent
/// to the application until every broker is down: 19 s with the default heartbeat.
pub(crate) async fn beat(
    health: Arc<Health>,
    consumer: Arc<BaseConsumer<LinkContext>>,
    heartbeat: Duration,
) {
    let mut ticker = tokio::time::interval(heartbeat);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if health.down.load(Ordering::SeqCst) {
            continue;
        }
        let client = consumer.clone();
        let probe = tokio::task::spawn_blocking(move || {
            crate::raw::probe(client.client().native_ptr(), heartbeat * 2)
        })
        .await;
        if matches!(probe, Ok(false)) && !health.down.load(Ordering::SeqCst) {
            tracing::warn!(
                ?heartbeat,
                "the Kafka cluster did not answer a heartbeat probe"
            );
            health.lost();
        }
    }
}

/// The context of every client of a handle: reports lost connections to its [`Health`].
#[derive(Clone)]
pub(crate) struct LinkContext {
    health: Arc<Health>,
}

impl LinkContext {
    pub(crate) fn new(health: Arc<Health>) -> LinkContext {
        LinkContext { health }
    }
}

impl ClientContext for LinkContext {
    fn error(&self, error: KafkaError, reason: &str) {
        match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::AllBrokersDown) => self.health.lost(),
            _ => tracing::debug!(%error, reason, "Kafka client error"),
        }
    }

    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        tracing::debug!(?level, fac, log_message, "librdkafka");
    }
}

impl ConsumerContext for LinkContext {}
