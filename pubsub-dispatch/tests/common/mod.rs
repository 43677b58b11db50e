//! The dispatcher's behaviour suite: plain `async fn(&Backend)` scenarios, run on every backend
//! by [`dispatch_suite!`] (one `#[tokio::test]` per scenario, so each shows by name).
//!
//! Every scenario works under a fresh topic prefix, waits on events (channels) rather than
//! sleeps, and bounds every wait (`pubsub_test_support::kit::idle`, scaled by
//! `PUBSUB_TEST_TIME_SCALE`).
#![allow(dead_code)]

pub mod capture;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pubsub_core::{Backoff, Gap, Message, PubSub, Topic};
use pubsub_dispatch::{
    dead_letter, Dispatcher, Event, HandlerError, Meta, Publisher, Raw, Retry, Route,
};
use pubsub_test_support::kit::{idle, next, next_within, quiet, subscribe, unique_prefix};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, Semaphore};

/// A backend as the suite sees it: a URL for `pubsub::connect`.
#[derive(Debug, Clone)]
pub struct Backend {
    pub name: &'static str,
    pub url: String,
}

impl Backend {
    pub fn new(name: &'static str, url: String) -> Self {
        Backend { name, url }
    }

    /// A memory backend on a bus of its own (every handle of one case shares it).
    pub fn memory() -> Self {
        Backend::new("memory", format!("memory://{}", unique_prefix("bus")))
    }

    /// A new handle; panics when the backend cannot be reached.
    ///
    /// Keep a handle alive until what it published was delivered: dropping one without
    /// `close` may lose what is still in its client's outgoing buffer (seen on NATS).
    pub async fn connect(&self) -> Arc<dyn PubSub> {
        match pubsub::connect(&self.url).await {
            Ok(hub) => Arc::new(hub),
            Err(e) => panic!("[{}] cannot connect: {e}", self.name),
        }
    }

    /// `messaging.system` of this backend.
    pub fn system(&self) -> &'static str {
        match self.name {
            "amqp" => "rabbitmq",
            other => other,
        }
    }
}

/// Expands to one test per scenario for `$backend()`.
#[macro_export]
macro_rules! dispatch_suite {
    ($backend:path) => {
        $crate::dispatch_suite!(@cases $backend;
            typed_round_trip,
            concurrency_limit,
            ordered_under_retries,
            retry_then_success,
            retry_exhaustion_dead_letters,
            decode_error_and_panic_dead_letter,
            trace_continues,
            graceful_drain,
            shutdown_deadline_cuts_off,
            gaps_are_reported,
        );
    };
    (@cases $backend:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                common::$case(&$backend()).await;
            }
        )*
    };
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    pub id: u64,
    pub item: String,
    pub cents: u64,
}

pub fn order(id: u64) -> Order {
    Order {
        id,
        item: format!("item-{id}"),
        cents: 100 * id,
    }
}

pub fn topic(s: &str) -> Topic {
    Topic::new(s).unwrap_or_else(|e| panic!("bad test topic {s}: {e}"))
}

/// Short retries for tests: 10 ms, at most 50 ms.
pub fn fast_retry(attempts: u32) -> Retry {
    Retry::attempts(attempts).with_backoff(
        Backoff::default()
            .with_initial(Duration::from_millis(10))
            .with_max(Duration::from_millis(50)),
    )
}

/// The next item of `rx`, or a panic naming `what` after the idle timeout.
pub async fn recv<T>(rx: &mut mpsc::UnboundedReceiver<T>, what: &str) -> T {
    match tokio::time::timeout(idle(), rx.recv()).await {
        Ok(Some(v)) => v,
        Ok(None) => panic!("channel closed while waiting for {what}"),
        Err(_) => panic!("nothing within {:?} while waiting for {what}", idle()),
    }
}

/// Asserts nothing more arrives on `rx` for the quiet period.
pub async fn assert_quiet<T: std::fmt::Debug>(rx: &mut mpsc::UnboundedReceiver<T>, what: &str) {
    if let Ok(Some(v)) = tokio::time::timeout(quiet(), rx.recv()).await {
        panic!("{what}: unexpected {v:?}");
    }
}

/// Polls `check` until true (bounded by the idle timeout); for counters only, after the event
/// that caused them was awaited.
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + idle();
    while !check() {
        if tokio::time::Instant::now() > deadline {
            panic!("not true within {:?}: {what}", idle());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub async fn shutdown(d: Dispatcher) {
    let report = d.shutdown(idle()).await;
    assert!(report.drained, "shutdown did not drain: {report:?}");
}

// ---------------------------------------------------------------------------------------------

/// A typed event published by the `Publisher` on one handle reaches a typed handler on
/// another, with its CloudEvents attributes; a raw route sees a non-JSON payload as it is.
pub async fn typed_round_trip(b: &Backend) {
    let p = unique_prefix("round_trip");
    let (ps, pub_ps) = (b.connect().await, b.connect().await);
    let (tx, mut rx) = mpsc::unbounded_channel::<(Order, Meta)>();
    let (raw_tx, mut raw_rx) = mpsc::unbounded_channel::<(bytes::Bytes, Meta)>();
    let d = Dispatcher::builder(ps.clone())
        .route(
            Route::new(format!("{p}.orders.*.created"), move |e: Event<Order>| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send((e.data, e.meta));
                    Ok::<_, HandlerError>(())
                }
            })
            .name("created"),
        )
        .route(Route::new(
            format!("{p}.blobs"),
            move |Raw(bytes): Raw, meta: Meta| {
                let raw_tx = raw_tx.clone();
                async move {
                    let _ = raw_tx.send((bytes, meta));
                    Ok::<_, HandlerError>(())
                }
            },
        ))
        .start()
        .await
        .expect("start");
    let publisher = Publisher::new(pub_ps.clone(), "/orders-test");
    let t = topic(&format!("{p}.orders.eu.created"));
    let sent = publisher
        .publish(t.clone(), "com.example.order.created", &order(42))
        .await
        .expect("publish");
    let (got, meta) = recv(&mut rx, "the typed order").await;
    assert_eq!(got, order(42));
    assert_eq!(meta.topic(), &t);
    assert_eq!(meta.id(), Some(sent.id.as_str()));
    assert_eq!(meta.event_type(), Some("com.example.order.created"));
    assert_eq!(meta.source(), Some("/orders-test"));
    assert_eq!(meta.spec_version(), Some("1.0"));
    assert_eq!(meta.content_type(), Some("application/json"));
    assert_eq!(meta.route(), "created");
    assert_eq!(meta.attempt(), 1);
    let age = std::time::SystemTime::now()
        .duration_since(meta.time().expect("ce-time is RFC 3339"))
        .unwrap_or_default();
    assert!(age < Duration::from_secs(60), "ce-time is now-ish: {age:?}");

    let blob = vec![0u8, 159, 146, 150, 255];
    publisher
        .publish_raw(
            topic(&format!("{p}.blobs")),
            "blob",
            "application/octet-stream",
            blob.clone(),
        )
        .await
        .expect("publish raw");
    let (bytes, meta) = recv(&mut raw_rx, "the raw payload").await;
    assert_eq!(bytes.as_ref(), &blob[..]);
    assert_eq!(meta.content_type(), Some("application/octet-stream"));
    assert_quiet(&mut rx, "one event, one call").await;
    eventually("handled counted", || {
        d.stats("created").expect("route").handled == 1
    })
    .await;
    assert_eq!(d.stats("created").expect("route").failed, 0);
    shutdown(d).await;
}

/// A route with `concurrency(3)` runs three handlers at once and never a fourth.
pub async fn concurrency_limit(b: &Backend) {
    let p = unique_prefix("concurrency");
    let (ps, pub_ps) = (b.connect().await, b.connect().await);
    let gate = Arc::new(Semaphore::new(0));
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (started_tx, mut started) = mpsc::unbounded_channel::<u64>();
    let (done_tx, mut done) = mpsc::unbounded_channel::<u64>();
    let handler = {
        let (gate, running, peak) = (gate.clone(), running.clone(), peak.clone());
        move |e: Event<Order>| {
            let (gate, running, peak) = (gate.clone(), running.clone(), peak.clone());
            let (started_tx, done_tx) = (started_tx.clone(), done_tx.clone());
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                let _ = started_tx.send(e.id);
                let permit = gate.acquire().await.map_err(HandlerError::new)?;
                permit.forget();
                running.fetch_sub(1, Ordering::SeqCst);
                let _ = done_tx.send(e.id);
                Ok::<_, HandlerError>(())
            }
        }
    };
    let d = Dispatcher::builder(ps.clone())
        .route(
            Route::new(format!("{p}.>"), handler)
                .name("limited")
                .concurrency(3),
        )
        .start()
        .await
        .expect("start");
    let publisher = Publisher::new(pub_ps.clone(), "/test");
    for i in 0..10 {
        publisher
            .publish(topic(&format!("{p}.t{}", i % 4)), "order", &order(i))
            .await
            .expect("publish");
    }
    for _ in 0..3 {
        recv(&mut started, "three handlers to start").await;
    }
    assert_quiet(&mut started, "a fourth handler while three run").await;
    assert_eq!(d.stats("limited").expect("route").in_flight, 3);
    gate.add_permits(100);
    let mut finished = Vec::new();
    for _ in 0..10 {
        finished.push(recv(&mut done, "every message handled").await);
    }
    finished.sort_unstable();
    assert_eq!(finished, (0..10).collect::<Vec<_>>());
    assert_eq!(peak.load(Ordering::SeqCst), 3, "peak concurrency");
    shutdown(d).await;
}

/// An ordered route (4 lanes) handles each topic's messages in publish order even when some
/// fail and are retried; topics still run side by side.
pub async fn ordered_under_retries(b: &Backend) {
    let p = unique_prefix("ordered");
    let (ps, pub_ps) = (b.connect().await, b.connect().await);
    let (tx, mut rx) = mpsc::unbounded_channel::<(String, u64, u32)>();
    let handler = move |e: Event<Order>| {
        let tx = tx.clone();
        async move {
            // Every third message fails its first two attempts.
            if e.id.is_multiple_of(3) && e.meta.attempt() < 3 {
                return Err(HandlerError::msg(format!("flaky {}", e.id)));
            }
            let _ = tx.send((e.meta.topic().to_string(), e.id, e.meta.attempt()));
            Ok(())
        }
    };
    let d = Dispatcher::builder(ps.clone())
        .route(
            Route::new(format!("{p}.*"), handler)
                .name("ordered")
                .ordered(4)
                .retry(fast_retry(5)),
        )
        .start()
        .await
        .expect("start");
    let publisher = Publisher::new(pub_ps.clone(), "/test");
    let topics = ["a", "b", "c"];
    for i in 0..12 {
        for t in topics {
            publisher
                .publish(topic(&format!("{p}.{t}")), "order", &order(i))
                .await
                .expect("publish");
        }
    }
    let mut seen: HashMap<String, Vec<u64>> = HashMap::new();
    let mut retried = 0;
    for _ in 0..36 {
        let (t, id, attempt) = recv(&mut rx, "every message handled").await;
        if attempt > 1 {
            retried += 1;
        }
        seen.entry(t).or_default().push(id);
    }
    assert_eq!(retried, 12, "the flaky messages were retried");
    for t in topics {
        assert_eq!(
            seen[&format!("{p}.{t}")],
            (0..12).collect::<Vec<_>>(),
            "order of topic {t}"
        );
    }
    eventually("all handled counted", || {
        d.stats("ordered").expect("route").handled == 36
    })
    .await;
    let stats = d.stats("ordered").expect("route");
    assert_eq!((stats.retried, stats.dead_lettered), (24, 0));
    shutdown(d).await;
}

/// A handler failing twice succeeds on the third attempt: no dead letter.
pub async fn retry_then_success(b: &Backend) {
    let p = unique_prefix("retry_ok");
    let (ps, pub_ps) = (b.connect().await, b.connect().await);
    let mut dlq = subscribe(&pub_ps, &format!("dlq.{p}.>")).await;
    let (tx, mut rx) = mpsc::unbounded_channel::<u32>();
    let handler = move |meta: Meta, _: Event<Order>| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(meta.attempt());
            if meta.attempt() < 3 {
                Err(HandlerError::msg("not yet"))
            } else {
                Ok(())
            }
        }
    };
    let d = Dispatcher::builder(ps.clone())
        .retry(fast_retry(3))
        .route(Route::new(format!("{p}.x"), handler).name("flaky"))
        .start()
        .await
        .expect("start");
    Publisher::new(pub_ps.clone(), "/test")
        .publish(topic(&format!("{p}.x")), "order", &order(1))
        .await
        .expect("publish");
    for want in 1..=3 {
        assert_eq!(recv(&mut rx, "attempts 1, 2, 3").await, want);
    }
    eventually("handled counted", || {
        d.stats("flaky").expect("route").handled == 1
    })
    .await;
    let stats = d.stats("flaky").expect("route");
    assert_eq!(
        (stats.failed, stats.retried, stats.dead_lettered),
        (2, 2, 0)
    );
    assert!(
        next_within(&mut dlq, quiet()).await.is_none(),
        "no dead letter"
    );
    assert_quiet(&mut rx, "no fourth attempt").await;
    shutdown(d).await;
}

/// After the last attempt the message lands on `dlq.<topic>` with its payload, its headers and
/// the documented `dlq-*` headers.
pub async fn retry_exhaustion_dead_letters(b: &Backend) {
    let p = unique_prefix("exhaust");
    let (ps, pub_ps) = (b.connect().await, b.connect().await);
    let mut dlq = subscribe(&pub_ps, &format!("dlq.{p}.>")).await;
    let d = Dispatcher::builder(ps.clone())
        .route(
            Route::new(format!("{p}.*"), |_: Event<Order>| async {
                Err::<(), _>(HandlerError::msg("warehouse unreachable"))
            })
            .name("doomed")
            .retry(fast_retry(3)),
        )
        .start()
        .await
        .expect("start");
    let t = topic(&format!("{p}.created"));
    let publisher = Publisher::new(pub_ps.clone(), "/test");
    let sent = publisher
        .publish(t.clone(), "order", &order(9))
        .await
        .expect("publish");
    let dead = next(&mut dlq, "the dead letter").await;
    assert_eq!(dead.topic().as_str(), format!("dlq.{t}"));
    assert_eq!(
        serde_json::from_slice::<Order>(dead.payload()).expect("payload kept"),
        order(9)
    );
    let h = dead.headers();
    assert_eq!(h.get(dead_letter::DLQ_TOPIC), Some(t.as_str()));
    assert_eq!(h.get(dead_letter::DLQ_ATTEMPTS), Some("3"));
    assert_eq!(h.get(dead_letter::DLQ_REASON), Some("failed"));
    assert_eq!(h.get(dead_letter::DLQ_ROUTE), Some("doomed"));
    let error = h.get(dead_letter::DLQ_ERROR).expect("dlq-error");
    assert!(error.contains("warehouse unreachable"), "{error}");
    assert!(h.get(dead_letter::DLQ_TIME).is_some());
    assert_eq!(
        h.get("ce-id"),
        Some(sent.id.as_str()),
        "original headers kept"
    );
    eventually("dead letter counted", || {
        d.stats("doomed").expect("route").dead_lettered == 1
    })
    .await;
    let stats = d.stats("doomed").expect("route");
    assert_eq!((stats.failed, stats.retried), (3, 2));
    assert!(
        next_within(&mut dlq, quiet()).await.is_none(),
        "one dead letter"
    );
    shutdown(d).await;
}

/// A payload that does not decode is dead-lettered at once (the handler never runs); a
/// panicking handler is caught, retried, dead-lettered; both routes keep serving.
pub async fn decode_error_and_panic_dead_letter(b: &Backend) {
    let p = unique_prefix("poison");
    let (ps, pub_ps) = (b.connect().await, b.connect().await);
    let mut dlq = subscribe(&pub_ps, &format!("dlq.{p}.>")).await;
    let (typed_tx, mut typed) = mpsc::unbounded_channel::<u64>();
    let (panicky_tx, mut panicky) = mpsc::unbounded_channel::<u64>();
    let d = Dispatcher::builder(ps.clone())
        .retry(fast_retry(2))
        .route(
            Route::new(format!("{p}.typed"), move |e: Event<Order>| {
                let tx = typed_tx.clone();
                async move {
                    let _ = tx.send(e.id);
                    Ok::<_, HandlerError>(())
                }
            })
            .name("typed"),
        )
        .route(
            Route::new(format!("{p}.panicky"), move |e: Event<Order>| {
                let tx = panicky_tx.clone();
                async move {
                    if e.item == "boom" {
                        panic!("handler exploded on order {}", e.id);
                    }
                    let _ = tx.send(e.id);
                    Ok::<_, HandlerError>(())
                }
            })
            .name("panicky"),
        )
        .start()
        .await
        .expect("start");
    let publisher = Publisher::new(pub_ps.clone(), "/test");
    publisher
        .publish_raw(
            topic(&format!("{p}.typed")),
            "order",
            "application/json",
            "{not json",
        )
        .await
        .expect("publish");
    let dead = next(&mut dlq, "the undecodable message").await;
    assert_eq!(dead.headers().get(dead_letter::DLQ_REASON), Some("decode"));
    assert_eq!(dead.headers().get(dead_letter::DLQ_ATTEMPTS), Some("1"));
    assert_eq!(dead.payload().as_ref(), b"{not json");

    let mut bomb = order(7);
    bomb.item = "boom".into();
    publisher
        .publish(topic(&format!("{p}.panicky")), "order", &bomb)
        .await
        .expect("publish");
    let dead = next(&mut dlq, "the message whose handler panicked").await;
    assert_eq!(dead.headers().get(dead_letter::DLQ_REASON), Some("panic"));
    assert_eq!(dead.headers().get(dead_letter::DLQ_ATTEMPTS), Some("2"));
    let error = dead
        .headers()
        .get(dead_letter::DLQ_ERROR)
        .expect("dlq-error");
    assert!(error.contains("handler exploded on order 7"), "{error}");

    // Still serving, both routes.
    publisher
        .publish(topic(&format!("{p}.typed")), "order", &order(1))
        .await
        .expect("publish");
    publisher
        .publish(topic(&format!("{p}.panicky")), "order", &order(2))
        .await
        .expect("publish");
    assert_eq!(
        recv(&mut typed, "a good message after the decode error").await,
        1
    );
    assert_eq!(
        recv(&mut panicky, "a good message after the panic").await,
        2
    );
    eventually("handled counted", || {
        d.stats("typed").expect("route").handled == 1
            && d.stats("panicky").expect("route").handled == 1
    })
    .await;
    assert_eq!(d.stats("typed").expect("route").decode_errors, 1);
    let panicky_stats = d.stats("panicky").expect("route");
    assert_eq!((panicky_stats.panics, panicky_stats.dead_lettered), (2, 1));
    shutdown(d).await;
}

/// The handler's context continues the publisher's trace: same trace id, the publish span as
/// parent; an event the handler publishes continues it again; the handler's span carries the
/// ids and the OpenTelemetry messaging attributes.
pub async fn trace_continues(b: &Backend) {
    capture::install();
    let p = unique_prefix("trace");
    let (ps, pub_ps) = (b.connect().await, b.connect().await);
    let (tx, mut rx) = mpsc::unbounded_channel::<(&'static str, Meta)>();
    let follow_up = Publisher::new(ps.clone(), "/handler");
    let first = {
        let (tx, follow_up, p) = (tx.clone(), follow_up.clone(), p.clone());
        move |e: Event<Order>| {
            let (tx, follow_up, p) = (tx.clone(), follow_up.clone(), p.clone());
            async move {
                follow_up
                    .publish(topic(&format!("{p}.shipped")), "order.shipped", &e.data)
                    .await?;
                let _ = tx.send(("first", e.meta));
                Ok::<_, HandlerError>(())
            }
        }
    };
    let second = move |meta: Meta| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(("second", meta));
            Ok::<_, HandlerError>(())
        }
    };
    let d = Dispatcher::builder(ps.clone())
        .route(Route::new(format!("{p}.created"), first).name("first"))
        .route(Route::new(format!("{p}.shipped"), second).name("second"))
        .start()
        .await
        .expect("start");
    let root = pubsub_dispatch::TraceContext::new_root();
    let sent = root
        .clone()
        .scope(Publisher::new(pub_ps.clone(), "/test").publish(
            topic(&format!("{p}.created")),
            "order",
            &order(3),
        ))
        .await
        .expect("publish");
    assert_eq!(
        sent.trace.trace_id(),
        root.trace_id(),
        "publish continues the caller's trace"
    );
    let mut metas = HashMap::new();
    for _ in 0..2 {
        let (which, meta) = recv(&mut rx, "both handlers").await;
        metas.insert(which, meta);
    }
    let (first, second) = (&metas["first"], &metas["second"]);
    assert_eq!(first.trace().trace_id(), root.trace_id());
    assert_eq!(
        first.parent_trace().map(|t| t.span_id()),
        Some(sent.trace.span_id())
    );
    assert_ne!(first.trace().span_id(), sent.trace.span_id());
    assert_eq!(
        second.trace().trace_id(),
        root.trace_id(),
        "the chain is one trace"
    );
    let second_parent = second.parent_trace().expect("traceparent on the follow-up");
    assert_ne!(
        second_parent.span_id(),
        first.trace().span_id(),
        "the follow-up's publish span"
    );

    let span = capture::find_span("process", &first.trace().span_id_hex())
        .await
        .expect("the handler's process span was recorded");
    assert_eq!(
        span.get("trace_id").map(String::as_str),
        Some(&*root.trace_id_hex())
    );
    assert_eq!(
        span.get("parent_span_id").map(String::as_str),
        Some(&*sent.trace.span_id_hex())
    );
    assert_eq!(
        span.get("messaging.system").map(String::as_str),
        Some(b.system())
    );
    assert_eq!(
        span.get("messaging.destination.name").map(String::as_str),
        Some(&*format!("{p}.created"))
    );
    assert_eq!(
        span.get("messaging.operation").map(String::as_str),
        Some("process")
    );
    assert_eq!(span.get("otel.kind").map(String::as_str), Some("consumer"));
    shutdown(d).await;
}

/// Shutdown stops taking messages, waits for the handlers in flight, and reports a drain.
pub async fn graceful_drain(b: &Backend) {
    let p = unique_prefix("drain");
    let (ps, pub_ps) = (b.connect().await, b.connect().await);
    let gate = Arc::new(Semaphore::new(0));
    let (started_tx, mut started) = mpsc::unbounded_channel::<u64>();
    let (done_tx, mut done) = mpsc::unbounded_channel::<u64>();
    let handler = {
        let gate = gate.clone();
        move |e: Event<Order>| {
            let (gate, started_tx, done_tx) = (gate.clone(), started_tx.clone(), done_tx.clone());
            async move {
                let _ = started_tx.send(e.id);
                gate.acquire().await.map_err(HandlerError::new)?.forget();
                let _ = done_tx.send(e.id);
                Ok::<_, HandlerError>(())
            }
        }
    };
    let d = Dispatcher::builder(ps.clone())
        .route(
            Route::new(format!("{p}.*"), handler)
                .name("slow")
                .concurrency(2),
        )
        .start()
        .await
        .expect("start");
    let publisher = Publisher::new(pub_ps.clone(), "/test");
    for i in 0..2 {
        publisher
            .publish(topic(&format!("{p}.t")), "order", &order(i))
            .await
            .expect("publish");
    }
    for _ in 0..2 {
        recv(&mut started, "both handlers running").await;
    }
    let shutting = tokio::spawn(d.shutdown(idle()));
    // Shutdown waits for the two handlers in flight.
    tokio::task::yield_now().await;
    assert!(
        !shutting.is_finished(),
        "shutdown returned with handlers in flight"
    );
    // New messages are no longer taken (the route unsubscribed or stopped reading).
    let mut probe = subscribe(&pub_ps, &format!("{p}.late")).await;
    publisher
        .publish(topic(&format!("{p}.late")), "order", &order(99))
        .await
        .expect("publish");
    next(&mut probe, "the late message is on the bus").await;
    gate.add_permits(10);
    let report = tokio::time::timeout(idle(), shutting)
        .await
        .expect("shutdown finished")
        .expect("shutdown task");
    assert!(report.drained, "{report:?}");
    assert!(report.cut_off.is_empty(), "{report:?}");
    let mut finished = vec![
        recv(&mut done, "first drained").await,
        recv(&mut done, "second drained").await,
    ];
    finished.sort_unstable();
    assert_eq!(finished, [0, 1]);
    assert_quiet(&mut started, "the late message was not taken").await;
}

/// A handler still running at the shutdown deadline is cut off and reported with its topic
/// and `ce-id`.
pub async fn shutdown_deadline_cuts_off(b: &Backend) {
    let p = unique_prefix("cutoff");
    let (ps, pub_ps) = (b.connect().await, b.connect().await);
    let (started_tx, mut started) = mpsc::unbounded_channel::<u64>();
    let handler = move |e: Event<Order>| {
        let started_tx = started_tx.clone();
        async move {
            let _ = started_tx.send(e.id);
            std::future::pending::<()>().await;
            Ok::<_, HandlerError>(())
        }
    };
    let d = Dispatcher::builder(ps.clone())
        .route(Route::new(format!("{p}.*"), handler).name("stuck"))
        .start()
        .await
        .expect("start");
    let t = topic(&format!("{p}.t"));
    let sent = Publisher::new(pub_ps.clone(), "/test")
        .publish(t.clone(), "order", &order(5))
        .await
        .expect("publish");
    recv(&mut started, "the stuck handler running").await;
    assert_eq!(d.in_flight(), 1);
    let report = d.shutdown(Duration::from_millis(200)).await;
    assert!(!report.drained);
    assert_eq!(report.cut_off.len(), 1, "{report:?}");
    assert_eq!(report.cut_off[0].topic, t);
    assert_eq!(report.cut_off[0].id.as_deref(), Some(sent.id.as_str()));
    assert_eq!(report.cut_off[0].route, "stuck");
}

/// Messages dropped because the route's buffer overflowed are reported as a gap (hook and
/// counter), not lost silently.
pub async fn gaps_are_reported(b: &Backend) {
    let p = unique_prefix("gaps");
    let (ps, pub_ps) = (b.connect().await, b.connect().await);
    let gate = Arc::new(Semaphore::new(0));
    let (started_tx, mut started) = mpsc::unbounded_channel::<u64>();
    let (gap_tx, mut gaps) = mpsc::unbounded_channel::<Gap>();
    let handler = {
        let gate = gate.clone();
        move |e: Event<Order>| {
            let (gate, started_tx) = (gate.clone(), started_tx.clone());
            async move {
                let _ = started_tx.send(e.id);
                gate.acquire().await.map_err(HandlerError::new)?.forget();
                Ok::<_, HandlerError>(())
            }
        }
    };
    let d = Dispatcher::builder(ps.clone())
        .route(Route::new(format!("{p}.*"), handler).name("tiny").buffer(1))
        .on_gap(move |event| {
            assert_eq!(event.route, "tiny");
            let _ = gap_tx.send(event.gap);
        })
        .start()
        .await
        .expect("start");
    let publisher = Publisher::new(pub_ps.clone(), "/test");
    publisher
        .publish(topic(&format!("{p}.t")), "order", &order(0))
        .await
        .expect("publish");
    recv(&mut started, "the first handler blocked").await;
    for i in 1..6 {
        publisher
            .publish(topic(&format!("{p}.t")), "order", &order(i))
            .await
            .expect("publish");
    }
    // Let the flood reach the (one-message) buffer before unblocking.
    eventually("the buffer overflowed", || ps.stats().dropped >= 4).await;
    gate.add_permits(100);
    let mut lost = 0;
    while lost < 4 {
        match recv(&mut gaps, "the gap").await {
            Gap::Dropped { count } => lost += count,
            other => panic!("unexpected gap {other:?}"),
        }
    }
    assert_eq!(lost, 4);
    eventually("the gap counted", || {
        d.stats("tiny").expect("route").gaps >= 1
    })
    .await;
    shutdown(d).await;
}

/// Unused helper to keep `Message` imported for backend-specific files.
pub fn plain(t: &str, payload: &'static str) -> Message {
    Message::new(topic(t), payload)
}

/// How a backend's group spreads one stream's messages over its members.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sharing {
    /// Every member takes a share.
    AcrossMembers,
    /// One member at a time takes them all (Kafka: a stream is a topic with one partition).
    OneMemberAtATime,
}

/// Two dispatchers in one group: each good message handled once overall (shared between them
/// where the backend shares a stream's work); a failing handler's message comes back (to
/// either member) and succeeds on its second delivery; a handler that always panics ends in
/// the group's dead-letter topic after the route's attempts, with the reason; shutdown drains
/// and leaves the group.
pub async fn group_handlers(b: &Backend, sharing: Sharing) {
    const N: u64 = 60;
    let p = unique_prefix("grp");
    let group_name: String = p
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let stream = pubsub_core::StreamConfig::new(format!("{p}.>").parse().expect("pattern"));
    let (a, b_ps, pub_ps) = (b.connect().await, b.connect().await, b.connect().await);
    for ps in [&a, &b_ps, &pub_ps] {
        ps.declare_stream(stream.clone()).await.expect("declare");
    }
    let mut dead = subscribe(&pub_ps, &format!("dead-letter.{group_name}")).await;
    let (seen_tx, mut seen) = mpsc::unbounded_channel::<(usize, u64, u32)>();
    let start = |ps: Arc<dyn PubSub>, member: usize| {
        let seen_tx = seen_tx.clone();
        let name = group_name.clone();
        let pattern = format!("{p}.*.created");
        async move {
            Dispatcher::builder(ps)
                .retry(fast_retry(3))
                .route(
                    Route::new(pattern, move |e: Event<Order>, meta: Meta| {
                        let seen_tx = seen_tx.clone();
                        async move {
                            let _ = seen_tx.send((member, e.id, meta.attempt()));
                            match e.item.as_str() {
                                "boom" => panic!("order {} exploded", e.id),
                                "flaky" if meta.attempt() == 1 => Err(HandlerError::new("not yet")),
                                _ => Ok(()),
                            }
                        }
                    })
                    .name("billing")
                    .group_with(name, |g| g.with_ack_deadline(Duration::from_secs(5)))
                    .ordered(4),
                )
                .start()
                .await
                .expect("start")
        }
    };
    let (da, db) = (start(a.clone(), 0).await, start(b_ps.clone(), 1).await);
    let publisher = Publisher::new(pub_ps.clone(), "/test");
    for id in 0..N {
        let mut o = order(id);
        o.item = match id {
            7 => "flaky".into(),
            9 => "boom".into(),
            _ => o.item,
        };
        publisher
            .publish(topic(&format!("{p}.{}.created", id % 5)), "order", &o)
            .await
            .expect("publish");
    }
    let letter = next(&mut dead, "the order whose handler always panics").await;
    assert_eq!(letter.headers().get(dead_letter::DLQ_REASON), Some("panic"));
    assert_eq!(letter.headers().get(dead_letter::DLQ_ATTEMPTS), Some("3"));
    // Every message: the good ones once, the flaky one twice, the bomb three times.
    let want = N as usize - 2 + 2 + 3;
    let mut calls: HashMap<u64, Vec<u32>> = HashMap::new();
    let mut members = [0usize; 2];
    for _ in 0..want {
        let (member, id, attempt) = recv(&mut seen, "a handler call").await;
        calls.entry(id).or_default().push(attempt);
        members[member] += 1;
    }
    assert_quiet(&mut seen, "nothing more after every message was settled").await;
    for id in 0..N {
        let mut attempts = calls.remove(&id).unwrap_or_default();
        attempts.sort_unstable();
        let expected: &[u32] = match id {
            7 => &[1, 2],
            9 => &[1, 2, 3],
            _ => &[1],
        };
        assert_eq!(attempts, expected, "order {id}");
    }
    if sharing == Sharing::AcrossMembers {
        assert!(
            members.iter().all(|m| *m > 0),
            "both members did some work: {members:?}"
        );
    }
    shutdown(da).await;
    shutdown(db).await;
}
