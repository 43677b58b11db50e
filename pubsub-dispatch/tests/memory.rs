//! The dispatcher suite on the in-process memory backend, plus what only memory (or a wrapped
//! handle) can set up: failing dead-letter publishes, middleware, metrics.
mod common;

use common::Backend;

dispatch_suite!(Backend::memory);

/// Groups: on memory now; each broker's dispatcher suite takes this case once its adapter
/// has groups.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_handlers() {
    common::group_handlers(&Backend::memory(), common::Sharing::AcrossMembers).await;
}

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{eventually, fast_retry, order, recv, topic, Order};
use futures::future::BoxFuture;
use pubsub_core::{
    Backoff, ConnectionState, Error, ErrorKind, Message, Pattern, PubSub, Stats, SubscribeOptions,
    Subscription,
};
use pubsub_dispatch::{
    dead_letter, DeadLetter, DedupLayer, Dispatcher, Event, HandlerError, Meta, Publisher, Route,
    TimeoutLayer,
};
use pubsub_test_support::kit::{next, subscribe};
use tokio::sync::{mpsc, watch};

/// A handle whose publishes to `dlq.…` always fail (a broker refusing the dead-letter topic).
#[derive(Debug)]
struct RefusesDeadLetters {
    inner: Arc<dyn PubSub>,
    refused: AtomicU32,
}

impl PubSub for RefusesDeadLetters {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    fn max_payload(&self) -> usize {
        self.inner.max_payload()
    }
    fn publish(&self, message: Message) -> BoxFuture<'_, pubsub_core::Result<()>> {
        if message.topic().as_str().starts_with("dlq.") {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return Box::pin(async {
                Err(Error::connection(
                    "the test refuses dead letters",
                    "refused",
                ))
            });
        }
        self.inner.publish(message)
    }
    fn subscribe_all(
        &self,
        patterns: Vec<Pattern>,
        options: SubscribeOptions,
    ) -> BoxFuture<'_, pubsub_core::Result<Subscription>> {
        self.inner.subscribe_all(patterns, options)
    }
    fn close(&self) -> BoxFuture<'_, pubsub_core::Result<()>> {
        self.inner.close()
    }
    fn stats(&self) -> Stats {
        self.inner.stats()
    }
    fn connection_state(&self) -> ConnectionState {
        self.inner.connection_state()
    }
    fn watch_connection(&self) -> watch::Receiver<ConnectionState> {
        self.inner.watch_connection()
    }
}

/// A dead letter that cannot be published is retried, then handed to the hook (with the
/// original message and the copy), counted, never silently lost; the route keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_dead_letter_publish_is_reported() {
    let b = Backend::memory();
    let p = pubsub_test_support::unique_prefix("dlq_fail");
    let wrapped = Arc::new(RefusesDeadLetters {
        inner: b.connect().await,
        refused: AtomicU32::new(0),
    });
    let ps: Arc<dyn PubSub> = wrapped.clone();
    let (tx, mut failures) = mpsc::unbounded_channel();
    let (ok_tx, mut ok) = mpsc::unbounded_channel::<u64>();
    let d = Dispatcher::builder(ps.clone())
        .dead_letter(
            DeadLetter::default()
                .with_publish_attempts(3)
                .with_backoff(Backoff::default().with_initial(Duration::from_millis(5))),
        )
        .route(
            Route::new(format!("{p}.*"), move |e: Event<Order>| {
                let ok_tx = ok_tx.clone();
                async move {
                    if e.id == 0 {
                        return Err(HandlerError::permanent("order 0 is invalid"));
                    }
                    let _ = ok_tx.send(e.id);
                    Ok(())
                }
            })
            .name("r"),
        )
        .on_dead_letter_failure(move |f| {
            let _ = tx.send(f);
        })
        .start()
        .await
        .expect("start");
    let publisher = Publisher::new(b.connect().await, "/test");
    let t = topic(&format!("{p}.x"));
    publisher
        .publish(t.clone(), "order", &order(0))
        .await
        .expect("publish");
    let failure = recv(&mut failures, "the dead-letter failure").await;
    assert_eq!(failure.route, "r");
    assert_eq!(failure.message.topic(), &t);
    assert_eq!(failure.error.kind(), ErrorKind::Connection);
    assert_eq!(
        failure.handler_error.kind(),
        pubsub_dispatch::FailureKind::Permanent
    );
    let copy = failure.dead_letter.expect("the copy was built");
    assert_eq!(
        copy.headers().get(dead_letter::DLQ_REASON),
        Some("permanent")
    );
    assert_eq!(wrapped.refused.load(Ordering::SeqCst), 3, "publish retried");
    assert_eq!(d.stats("r").expect("route").dead_letter_failures, 1);
    publisher
        .publish(t, "order", &order(1))
        .await
        .expect("publish");
    assert_eq!(recv(&mut ok, "still serving").await, 1);
    common::shutdown(d).await;
}

/// `DedupLayer` calls the handler once per `ce-id`; `TimeoutLayer` turns a slow attempt into
/// a retryable timeout that ends in the dead-letter topic with reason `timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedup_and_timeout_middleware() {
    let b = Backend::memory();
    let p = pubsub_test_support::unique_prefix("middleware");
    let ps = b.connect().await;
    let mut dlq = subscribe(&ps, &format!("dlq.{p}.>")).await;
    let dedup = DedupLayer::new(100);
    let (tx, mut calls) = mpsc::unbounded_channel::<String>();
    let d = Dispatcher::builder(ps.clone())
        .route(
            Route::new(format!("{p}.pay"), move |meta: Meta| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(meta.id().unwrap_or_default().to_owned());
                    Ok::<_, HandlerError>(())
                }
            })
            .name("pay")
            .layer(dedup.clone()),
        )
        .route(
            Route::new(format!("{p}.slow"), |_: Meta| async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok::<_, HandlerError>(())
            })
            .name("slow")
            .retry(fast_retry(2))
            .layer(TimeoutLayer::new(Duration::from_millis(50))),
        )
        .start()
        .await
        .expect("start");
    let publisher = Publisher::new(ps.clone(), "/test");
    let event =
        pubsub_dispatch::OutgoingEvent::raw(topic(&format!("{p}.pay")), "pay", "text/plain", "x");
    let (message, sent) = publisher.stamp(event).expect("stamp");
    for _ in 0..3 {
        ps.publish(message.clone())
            .await
            .expect("publish the same event again");
    }
    publisher
        .publish_raw(topic(&format!("{p}.pay")), "pay", "text/plain", "y")
        .await
        .expect("publish");
    assert_eq!(recv(&mut calls, "first delivery").await, sent.id);
    let second = recv(&mut calls, "the other event").await;
    assert_ne!(second, sent.id);
    common::assert_quiet(&mut calls, "duplicates skipped").await;
    assert_eq!(dedup.skipped(), 2);

    publisher
        .publish_raw(topic(&format!("{p}.slow")), "job", "text/plain", "z")
        .await
        .expect("publish");
    let dead = next(&mut dlq, "the timed-out message").await;
    assert_eq!(dead.headers().get(dead_letter::DLQ_REASON), Some("timeout"));
    assert_eq!(dead.headers().get(dead_letter::DLQ_ATTEMPTS), Some("2"));
    common::shutdown(d).await;
}

/// A layer added to the dispatcher wraps every route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatcher_wide_layer() {
    let b = Backend::memory();
    let p = pubsub_test_support::unique_prefix("global_layer");
    let ps = b.connect().await;
    let mut dlq = subscribe(&ps, &format!("dlq.{p}.>")).await;
    let d = Dispatcher::builder(ps.clone())
        .retry(pubsub_dispatch::Retry::none())
        .layer(TimeoutLayer::new(Duration::from_millis(20)))
        .handle(format!("{p}.a"), |_: Meta| async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok::<_, HandlerError>(())
        })
        .start()
        .await
        .expect("start");
    pubsub_test_support::kit::publish(&ps, &format!("{p}.a"), "x").await;
    let dead = next(&mut dlq, "timed out by the global layer").await;
    assert_eq!(dead.headers().get(dead_letter::DLQ_REASON), Some("timeout"));
    assert_eq!(
        dead.headers().get(dead_letter::DLQ_ROUTE),
        Some(&*format!("{p}.a"))
    );
    common::shutdown(d).await;
}

/// Bad routes are typed errors at start.
#[tokio::test]
async fn bad_routes_are_refused() {
    let ps = Backend::memory().connect().await;
    let h = |_: Meta| async { Ok::<_, HandlerError>(()) };
    let err = Dispatcher::builder(ps.clone())
        .handle("a..b", h)
        .start()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid);
    assert!(err.to_string().contains("a..b"), "{err}");
    let err = Dispatcher::builder(ps.clone())
        .handle("a", h)
        .route(Route::new("b", h).name("a"))
        .start()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid);
    assert!(err.to_string().contains("named"), "{err}");
}

/// The `metrics` crate sees handled, failed, retried, dead-lettered, panics, in flight and
/// latency, labelled by route.
#[test]
fn metrics_are_recorded() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    metrics::with_local_recorder(&recorder, || {
        rt.block_on(async {
            let ps = Backend::memory().connect().await;
            let p = pubsub_test_support::unique_prefix("metrics");
            let mut dlq = subscribe(&ps, &format!("dlq.{p}.>")).await;
            let (tx, mut rx) = mpsc::unbounded_channel::<u64>();
            let d = Dispatcher::builder(ps.clone())
                .retry(fast_retry(2))
                .route(
                    Route::new(format!("{p}.*"), move |e: Event<Order>| {
                        let tx = tx.clone();
                        async move {
                            if e.id == 13 {
                                panic!("unlucky");
                            }
                            if e.id == 7 && e.meta.attempt() == 1 {
                                return Err(HandlerError::msg("once"));
                            }
                            let _ = tx.send(e.id);
                            Ok(())
                        }
                    })
                    .name("m"),
                )
                .start()
                .await
                .expect("start");
            let publisher = Publisher::new(ps.clone(), "/test");
            for id in [1, 7, 13] {
                publisher
                    .publish(topic(&format!("{p}.x")), "order", &order(id))
                    .await
                    .expect("publish");
            }
            assert_eq!(recv(&mut rx, "order 1").await, 1);
            assert_eq!(recv(&mut rx, "order 7").await, 7);
            next(&mut dlq, "order 13 dead-lettered").await;
            eventually("dead letter counted", || {
                d.stats("m").expect("route").dead_lettered == 1
            })
            .await;
            common::shutdown(d).await;
        })
    });
    let mut counters = std::collections::HashMap::new();
    let mut latency_samples = 0;
    let mut in_flight = None;
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        let route = key
            .labels()
            .find(|l| l.key() == "route")
            .map(|l| l.value().to_owned());
        if route.as_deref() != Some("m") {
            continue;
        }
        let reason = key
            .labels()
            .find(|l| l.key() == "reason")
            .map(|l| l.value().to_owned());
        match value {
            DebugValue::Counter(n) => {
                *counters
                    .entry(format!(
                        "{}{}",
                        key.name(),
                        reason.map(|r| format!("/{r}")).unwrap_or_default()
                    ))
                    .or_insert(0) += n;
            }
            DebugValue::Histogram(samples) => latency_samples += samples.len(),
            DebugValue::Gauge(g) => in_flight = Some(g.into_inner()),
        }
    }
    let c = |name: &str| counters.get(name).copied().unwrap_or(0);
    assert_eq!(c("pubsub_dispatch_handled_total"), 2, "{counters:?}");
    assert_eq!(c("pubsub_dispatch_failed_total/failed"), 1, "{counters:?}");
    assert_eq!(c("pubsub_dispatch_failed_total/panic"), 2, "{counters:?}");
    assert_eq!(c("pubsub_dispatch_retried_total"), 2, "{counters:?}");
    assert_eq!(c("pubsub_dispatch_panics_total"), 2, "{counters:?}");
    assert_eq!(c("pubsub_dispatch_dead_lettered_total"), 1, "{counters:?}");
    assert_eq!(latency_samples, 5, "one latency sample per attempt");
    assert_eq!(in_flight, Some(0.0), "nothing in flight at the end");
}
