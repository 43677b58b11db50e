//! What runs a route: the reader of its subscription, the lanes or tasks it hands messages to,
//! and the attempt loop of one message (handler, panic isolation, retries, dead letter).

use std::hash::BuildHasher;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use futures::{FutureExt, StreamExt};
use parking_lot::Mutex;
use pubsub_core::{Deliveries, Delivery, ErrorKind, Gap, Message, PubSub};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use tower_service::Service;
use tracing::{field, Instrument, Span};

use crate::dead_letter::dead_letter_message;
use crate::error::{panic_text, FailureKind, HandlerError};
use crate::hooks::{DeadLetterFailure, GapEvent, Hooks};
use crate::instruments::{bump, Instruments};
use crate::meta::{Incoming, Meta};
use crate::route::{DeadLetter, Mode, Retry, RouteService};
use crate::shutdown::CutOff;

/// Everything the tasks of one route share.
pub(crate) struct RouteRuntime {
    pub name: Arc<str>,
    pub service: RouteService,
    pub retry: Retry,
    pub dead_letter: DeadLetter,
    pub ps: Arc<dyn PubSub>,
    pub system: &'static str,
    pub inst: Instruments,
    pub hooks: Arc<Hooks>,
    pub in_flight: Arc<InFlight>,
    pub stop: CancellationToken,
    /// Set (before `stop` is cancelled) when shutdown begins: a cheap check on the hot path.
    pub stopping: Arc<AtomicBool>,
    pub hard: CancellationToken,
    pub tracker: TaskTracker,
    pub not_started: Arc<AtomicU64>,
}

/// The messages being handled now, for the shutdown report: a slab (slots reused through a
/// free list), so entering and leaving is two uncontended lock/unlock pairs, no hashing.
#[derive(Default)]
pub(crate) struct InFlight {
    slots: Mutex<Slots>,
}

#[derive(Default)]
struct Slots {
    entries: Vec<Option<(Arc<str>, Message)>>,
    free: Vec<usize>,
    used: usize,
}

impl InFlight {
    pub fn snapshot(&self) -> Vec<CutOff> {
        let slots = self.slots.lock();
        slots
            .entries
            .iter()
            .flatten()
            .map(|(route, message)| CutOff {
                route: route.to_string(),
                topic: message.topic().clone(),
                id: message
                    .headers()
                    .get(crate::cloudevents::CE_ID)
                    .map(str::to_owned),
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.slots.lock().used
    }

    fn enter<'a>(&'a self, rt: &'a RouteRuntime, message: &Message) -> InFlightGuard<'a> {
        let entry = Some((rt.name.clone(), message.clone()));
        let key = {
            let mut slots = self.slots.lock();
            slots.used += 1;
            match slots.free.pop() {
                Some(key) => {
                    slots.entries[key] = entry;
                    key
                }
                None => {
                    slots.entries.push(entry);
                    slots.entries.len() - 1
                }
            }
        };
        rt.inst.metrics.in_flight.increment(1.0);
        rt.inst.counters.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlightGuard { rt, key }
    }

    fn leave(&self, key: usize) {
        let entry = {
            let mut slots = self.slots.lock();
            let entry = slots.entries.get_mut(key).and_then(Option::take);
            if entry.is_some() {
                slots.used -= 1;
                slots.free.push(key);
            }
            entry
        };
        // The message is dropped outside the lock.
        drop(entry);
    }
}

struct InFlightGuard<'a> {
    rt: &'a RouteRuntime,
    key: usize,
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        self.rt.in_flight.leave(self.key);
        self.rt.inst.metrics.in_flight.decrement(1.0);
        self.rt
            .inst
            .counters
            .in_flight
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// Runs `future` until it ends or the hard stop (shutdown deadline) drops it.
pub(crate) async fn until_hard_stop(hard: CancellationToken, future: impl std::future::Future) {
    tokio::select! {
        biased;
        _ = hard.cancelled() => {}
        _ = future => {}
    }
}

/// Reads the route's subscription until shutdown (or until it ends) and hands each message on
/// as the route's [`Mode`] says.
pub(crate) async fn read(rt: Arc<RouteRuntime>, mode: Mode, mut deliveries: Deliveries) {
    let mut sink = Sink::new(&rt, mode);
    // Registered with the token once, not once per message.
    let stopped = rt.stop.clone().cancelled_owned();
    tokio::pin!(stopped);
    loop {
        if rt.stopping.load(Ordering::Acquire) {
            break;
        }
        // A message already buffered is taken without registering for the stop signal.
        let next = match deliveries.next().now_or_never() {
            Some(next) => next,
            None => tokio::select! {
                biased;
                _ = &mut stopped => break,
                next = deliveries.next() => next,
            },
        };
        match next {
            Some(Delivery::Message(message)) => {
                if !sink.hand(&rt, message).await {
                    break;
                }
            }
            Some(Delivery::Gap(gap)) => report_gap(&rt, gap),
            Some(_) => {}
            None => {
                if !rt.stop.is_cancelled() {
                    tracing::warn!(route = %rt.name, reason = ?deliveries.subscription().end_reason(),
                        "the route's subscription ended; the route stops");
                }
                break;
            }
        }
    }
    let waiting = deliveries.subscription().len() as u64;
    rt.not_started.fetch_add(waiting, Ordering::Relaxed);
}

/// Where the reader hands messages.
enum Sink {
    /// Handled in the reader itself, one at a time, with the reader's own service.
    Inline(RouteService),
    /// One queue per lane; a topic always maps to the same lane.
    Lanes {
        lanes: Vec<mpsc::Sender<Message>>,
        hasher: std::collections::hash_map::RandomState,
    },
    /// A task per message, at most `limit` at once.
    Tasks(Arc<Semaphore>),
}

impl Sink {
    fn new(rt: &Arc<RouteRuntime>, mode: Mode) -> Sink {
        match mode {
            Mode::Sequential => Sink::Inline(rt.service.clone()),
            Mode::Ordered { lanes } => {
                let lanes = (0..lanes.max(1))
                    .map(|_| {
                        let (tx, rx) = mpsc::channel(16);
                        let rt2 = rt.clone();
                        rt.tracker
                            .spawn(until_hard_stop(rt.hard.clone(), lane(rt2, rx)));
                        tx
                    })
                    .collect();
                Sink::Lanes {
                    lanes,
                    hasher: Default::default(),
                }
            }
            Mode::Unordered { limit } => Sink::Tasks(Arc::new(Semaphore::new(limit.max(1)))),
        }
    }

    /// Hands one message on; `false` when shutdown began while waiting for room.
    async fn hand(&mut self, rt: &Arc<RouteRuntime>, message: Message) -> bool {
        match self {
            Sink::Inline(service) => {
                process(rt, service, message).await;
                true
            }
            Sink::Lanes { lanes, hasher } => {
                let i = (hasher.hash_one(message.topic().as_str()) % lanes.len() as u64) as usize;
                let message = match lanes[i].try_send(message) {
                    Ok(()) => return true,
                    Err(mpsc::error::TrySendError::Closed(_)) => return false,
                    Err(mpsc::error::TrySendError::Full(message)) => message,
                };
                tokio::select! {
                    biased;
                    _ = rt.stop.cancelled() => {
                        rt.not_started.fetch_add(1, Ordering::Relaxed);
                        false
                    }
                    sent = lanes[i].send(message) => sent.is_ok(),
                }
            }
            Sink::Tasks(limit) => {
                let permit = match limit.clone().try_acquire_owned() {
                    Ok(permit) => Some(permit),
                    Err(_) => tokio::select! {
                        biased;
                        _ = rt.stop.cancelled() => None,
                        permit = limit.clone().acquire_owned() => permit.ok(),
                    },
                };
                let Some(permit) = permit else {
                    rt.not_started.fetch_add(1, Ordering::Relaxed);
                    return false;
                };
                let rt2 = rt.clone();
                rt.tracker
                    .spawn(until_hard_stop(rt.hard.clone(), async move {
                        let _permit = permit;
                        let mut service = rt2.service.clone();
                        process(&rt2, &mut service, message).await;
                    }));
                true
            }
        }
    }
}

/// One lane of an ordered route: its messages one at a time, in order, until shutdown.
async fn lane(rt: Arc<RouteRuntime>, mut rx: mpsc::Receiver<Message>) {
    let mut service = rt.service.clone();
    let stopped = rt.stop.clone().cancelled_owned();
    tokio::pin!(stopped);
    loop {
        if rt.stopping.load(Ordering::Acquire) {
            break;
        }
        let next = match rx.try_recv() {
            Ok(message) => Some(message),
            Err(mpsc::error::TryRecvError::Disconnected) => None,
            Err(mpsc::error::TryRecvError::Empty) => tokio::select! {
                biased;
                _ = &mut stopped => break,
                next = rx.recv() => next,
            },
        };
        match next {
            Some(message) => process(&rt, &mut service, message).await,
            None => return,
        }
    }
    rx.close();
    let mut left = 0;
    while rx.try_recv().is_ok() {
        left += 1;
    }
    rt.not_started.fetch_add(left, Ordering::Relaxed);
}

/// A gap in the subscription: log, metrics, counter, hook.
fn report_gap(rt: &RouteRuntime, gap: Gap) {
    bump(&rt.inst.counters.gaps);
    match gap {
        Gap::Dropped { count } => {
            rt.inst.metrics.gaps_dropped.increment(1);
            rt.inst.metrics.dropped.increment(count);
            tracing::warn!(route = %rt.name, count, "messages were dropped before the route could take them (buffer full)");
        }
        Gap::Outage { since, until } => {
            rt.inst.metrics.gaps_outage.increment(1);
            let secs = until
                .duration_since(since)
                .unwrap_or_default()
                .as_secs_f64();
            tracing::warn!(route = %rt.name, outage_seconds = secs, "the connection was down: messages published meanwhile may be lost");
        }
        _ => tracing::warn!(route = %rt.name, ?gap, "messages were lost"),
    }
    if let Some(hook) = &rt.hooks.on_gap {
        hook(&GapEvent {
            route: rt.name.to_string(),
            gap,
        });
    }
}

/// The `messaging.system` value of a backend name (OpenTelemetry's names where it has one).
pub(crate) fn messaging_system(backend: &'static str) -> &'static str {
    match backend {
        "amqp" => "rabbitmq",
        other => other,
    }
}

/// The span of one attempt, with OpenTelemetry messaging attributes.
fn process_span(rt: &RouteRuntime, meta: &Meta) -> Span {
    let span = tracing::info_span!(
        "process",
        otel.name = field::Empty,
        otel.kind = "consumer",
        messaging.system = rt.system,
        messaging.destination.name = meta.topic().as_str(),
        messaging.operation = "process",
        messaging.message.id = field::Empty,
        route = &*rt.name,
        attempt = meta.attempt(),
        trace_id = field::Empty,
        span_id = field::Empty,
        parent_span_id = field::Empty,
    );
    if !span.is_disabled() {
        span.record("otel.name", format!("{} process", meta.topic()));
        span.record("trace_id", meta.trace().trace_id_hex());
        span.record("span_id", meta.trace().span_id_hex());
        if let Some(parent) = meta.parent_trace() {
            span.record("parent_span_id", parent.span_id_hex());
        }
        if let Some(id) = meta.id() {
            span.record("messaging.message.id", id);
        }
    }
    span
}

/// Handles one message: attempts with retries, then the dead-letter topic.
pub(crate) async fn process(rt: &RouteRuntime, service: &mut RouteService, message: Message) {
    let _guard = rt.in_flight.enter(rt, &message);
    let mut meta = Meta::new(message, rt.name.clone(), 1);
    loop {
        let span = process_span(rt, &meta);
        let started = Instant::now();
        let incoming = Incoming::new(meta.clone());
        let call = async {
            // Readiness first (a middleware may apply backpressure), then the call.
            service.ready().await?.call(incoming).await
        };
        let result = AssertUnwindSafe(meta.trace().clone().scope(call))
            .catch_unwind()
            .instrument(span.clone())
            .await;
        rt.inst.metrics.latency.record(started.elapsed());
        let error = match result {
            Ok(Ok(())) => {
                rt.inst.metrics.handled.increment(1);
                bump(&rt.inst.counters.handled);
                return;
            }
            Ok(Err(error)) => error,
            Err(payload) => {
                // The panic may have left this clone of the stack half-way: take a fresh one.
                *service = rt.service.clone();
                rt.inst.metrics.panics.increment(1);
                bump(&rt.inst.counters.panics);
                let text = panic_text(&*payload);
                // One structured line (the process's panic hook, if it prints, is the
                // application's: see the crate docs).
                span.in_scope(|| {
                    tracing::error!(route = %rt.name, attempt = meta.attempt(), panic = %text, "the handler panicked")
                });
                HandlerError::panic(text)
            }
        };
        rt.inst.metrics.failed(error.kind()).increment(1);
        bump(&rt.inst.counters.failed);
        if error.kind() == FailureKind::Decode {
            bump(&rt.inst.counters.decode_errors);
        }
        let attempt = meta.attempt();
        if !error.kind().is_retryable() || attempt >= rt.retry.attempts {
            span.in_scope(|| {
                tracing::warn!(attempt, error = %error, "giving up on the message: dead-lettering it")
            });
            dead_letter(rt, &meta, attempt, error).await;
            return;
        }
        let wait = rt.retry.backoff.delay(attempt - 1);
        span.in_scope(|| tracing::info!(attempt, error = %error, retry_in = ?wait, "attempt failed; retrying"));
        rt.inst.metrics.retried.increment(1);
        bump(&rt.inst.counters.retried);
        tokio::time::sleep(wait).await;
        meta = meta.next_attempt();
    }
}

/// Publishes the dead-letter copy of the message, retrying; reports the loss if that fails.
async fn dead_letter(rt: &RouteRuntime, meta: &Meta, attempts: u32, error: HandlerError) {
    let original = meta.message();
    let copy = match dead_letter_message(&rt.dead_letter, original, &rt.name, attempts, &error) {
        Ok(copy) => copy,
        Err(e) => return lost(rt, meta, None, e, error),
    };
    let tries = rt.dead_letter.publish_attempts.max(1);
    let mut failure = None;
    for i in 0..tries {
        if i > 0 {
            tokio::time::sleep(rt.dead_letter.backoff.delay(i - 1)).await;
        }
        match rt.ps.publish(copy.clone()).await {
            Ok(()) => {
                rt.inst.metrics.dead_lettered.increment(1);
                bump(&rt.inst.counters.dead_lettered);
                tracing::warn!(route = %rt.name, topic = %original.topic(), dead_letter_topic = %copy.topic(),
                    attempts, reason = %error.kind(), "message dead-lettered");
                return;
            }
            Err(e) => {
                let retry = e.is_temporary() || e.kind() == ErrorKind::Backend;
                tracing::warn!(route = %rt.name, dead_letter_topic = %copy.topic(), try_ = i + 1, error = %e,
                    "publishing to the dead-letter topic failed");
                failure = Some(e);
                if !retry {
                    break;
                }
            }
        }
    }
    let e = failure.unwrap_or_else(|| pubsub_core::Error::new(ErrorKind::Backend, "no attempt"));
    lost(rt, meta, Some(copy), e, error)
}

/// The dead-letter publish failed for good: never silent.
fn lost(
    rt: &RouteRuntime,
    meta: &Meta,
    dead_letter: Option<Message>,
    error: pubsub_core::Error,
    handler_error: HandlerError,
) {
    rt.inst.metrics.dead_letter_failures.increment(1);
    bump(&rt.inst.counters.dead_letter_failures);
    tracing::error!(route = %rt.name, topic = %meta.topic(), ce_id = meta.id().unwrap_or(""),
        error = %error, handler_error = %handler_error,
        "the message could not be dead-lettered and is lost to this dispatcher");
    if let Some(hook) = &rt.hooks.on_dead_letter_failure {
        hook(DeadLetterFailure {
            route: rt.name.to_string(),
            message: meta.message().clone(),
            dead_letter,
            error,
            handler_error,
        });
    }
}
