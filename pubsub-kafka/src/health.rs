//! The connection state of a handle's Kafka clients, for the kit's supervisor.
//!
//! librdkafka reconnects by itself and keeps the consumer's assignment, so the adapter only
//! watches: every client reports "all brokers down" through its context, which takes the
//! link down; a task then probes the cluster (with the handle's backoff) until it answers,
//! and reports the link up again (no filter needs restoring).

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
            tracing::warn!("lost every Kafka broker connection; librdkafka reconnects");
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
