//! What runs a route: the reader of its subscription, the lanes or tasks it hands messages to,
//! and the attempt loop of one message (handler, panic isolation, retries, dead letter).

use std::hash::BuildHasher;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use futures::{FutureExt, StreamExt};
use parking_lot::Mutex;
use pubsub_core::{
    Deliveries, Delivery, ErrorKind, Gap, GroupMessage, GroupSubscription, Message, PubSub,
};
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

/// Where a route's messages come from.
pub(crate) enum Source {
    /// A subscription: every dispatcher on the pattern gets every message.
    Broadcast(pubsub_core::Subscription),
    /// A group membership: the messages are shared with the group's other members.
    Group(GroupSubscription),
}

/// One message for a route to handle: broadcast (handled with in-process retries), or a group
/// delivery (settled with the group: acknowledged, or negatively acknowledged to come back).
pub(crate) enum Job {
    Broadcast(Message),
    Group(GroupMessage),
}

impl Job {
    fn message(&self) -> &Message {
        match self {
            Job::Broadcast(message) => message,
            Job::Group(delivery) => delivery.message(),
        }
    }

    /// Not started after all: a group delivery goes back to the group at once; a broadcast
    /// message is only counted.
    fn not_started(self, rt: &RouteRuntime) {
        rt.not_started.fetch_add(1, Ordering::Relaxed);
        if let Job::Group(delivery) = self {
            drop(delivery.nack(std::time::Duration::ZERO));
        }
    }
}

/// Reads the route's group membership until shutdown (or until it ends), hands each delivery
/// on as the route's [`Mode`] says, then leaves the group: what was read but not handed out
/// goes back to the group at once, and the deliveries being handled are settled as they finish.
pub(crate) async fn read_group(rt: Arc<RouteRuntime>, mode: Mode, mut member: GroupSubscription) {
    let mut sink = Sink::new(&rt, mode);
    let stopped = rt.stop.clone().cancelled_owned();
    tokio::pin!(stopped);
    loop {
        if rt.stopping.load(Ordering::Acquire) {
            break;
        }
        let next = tokio::select! {
            biased;
            _ = &mut stopped => break,
            next = member.recv() => next,
        };
        match next {
            Some(delivery) => {
                if !sink.hand(&rt, Job::Group(delivery)).await {
                    break;
                }
            }
            None => {
                if !rt.stop.is_cancelled() {
                    tracing::warn!(route = %rt.name, reason = ?member.end_reason(),
                        "the route's group membership ended; the route stops");
                }
                break;
            }
        }
    }
    if let Err(error) = member.leave().await {
        tracing::warn!(route = %rt.name, %error,
            "leaving the group: some settlements did not reach the broker; those messages come back after the ack deadline");
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
                if !sink.hand(&rt, Job::Broadcast(message)).await {
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
        lanes: Vec<mpsc::Sender<Job>>,
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
    async fn hand(&mut self, rt: &Arc<RouteRuntime>, job: Job) -> bool {
        match self {
            Sink::Inline(service) => {
                process(rt, service, job).await;
                true
            }
            Sink::Lanes { lanes, hasher } => {
                let topic = job.message().topic().as_str();
                let i = (hasher.hash_one(topic) % lanes.len() as u64) as usize;
                let job = match lanes[i].try_send(job) {
                    Ok(()) => return true,
                    Err(mpsc::error::TrySendError::Closed(job)) => {
                        job.not_started(rt);
                        return false;
                    }
                    Err(mpsc::error::TrySendError::Full(job)) => job,
                };
                let permit = tokio::select! {
                    biased;
                    _ = rt.stop.cancelled() => None,
                    permit = lanes[i].reserve() => permit.ok(),
                };
                match permit {
                    Some(permit) => {
                        permit.send(job);
                        true
                    }
                    None => {
                        job.not_started(rt);
                        false
                    }
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
                    job.not_started(rt);
                    return false;
                };
                let rt2 = rt.clone();
                rt.tracker
                    .spawn(until_hard_stop(rt.hard.clone(), async move {
                        let _permit = permit;
                        let mut service = rt2.service.clone();
                        process(&rt2, &mut service, job).await;
                    }));
                true
            }
        }
    }
}

/// One lane of an ordered route: its messages one at a time, in order, until shutdown.
async fn lane(rt: Arc<RouteRuntime>, mut rx: mpsc::Receiver<Job>) {
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
            Some(job) => process(&rt, &mut service, job).await,
            None => return,
        }
    }
    rx.close();
    while let Ok(job) = rx.try_recv() {
        job.not_started(&rt);
    }
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

/// Handles one job: a broadcast message with in-process retries, or a group delivery.
pub(crate) async fn process(rt: &RouteRuntime, service: &mut RouteService, job: Job) {
    match job {
        Job::Broadcast(message) => process_broadcast(rt, service, message).await,
        Job::Group(delivery) => process_group(rt, service, delivery).await,
    }
}

/// Handles one message: attempts with retries, then the dead-letter topic.
async fn process_broadcast(rt: &RouteRuntime, service: &mut RouteService, message: Message) {
    let _guard = rt.in_flight.enter(rt, &message);
    let mut meta = Meta::new(message, rt.name.clone(), 1);
    loop {
        let (span, result) = attempt(rt, service, &meta).await;
        let Err(error) = result else {
            return;
        };
        let attempt = meta.attempt();
        if !error.kind().is_retryable() || attempt >= rt.retry.attempts {
            span.in_scope(|| {
                tracing::warn!(attempt, error = %error, "giving up on the message: dead-lettering it")
            });
            if let Err((copy, e)) = dead_letter(rt, &meta, attempt, &error).await {
                lost(rt, &meta, copy, e, error);
            }
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

/// Handles one group delivery: one attempt (the delivery count is the attempt), then `Ok`
/// acknowledges; a retryable failure before the last attempt negatively acknowledges with the
/// route's backoff (the group delivers it again, to any member); otherwise the message is
/// dead-lettered and acknowledged (negatively acknowledged if the dead letter could not be
/// published, so that it is never lost).
async fn process_group(rt: &RouteRuntime, service: &mut RouteService, delivery: GroupMessage) {
    let _guard = rt.in_flight.enter(rt, delivery.message());
    let attempt_no = delivery.deliveries().max(1);
    let meta = Meta::new(delivery.message().clone(), rt.name.clone(), attempt_no);
    let (span, result) = attempt(rt, service, &meta).await;
    let settled = match result {
        Ok(()) => delivery.ack(),
        Err(error) if error.kind().is_retryable() && attempt_no < rt.retry.attempts => {
            let wait = rt.retry.backoff.delay(attempt_no - 1);
            span.in_scope(|| {
                tracing::info!(attempt = attempt_no, error = %error, retry_in = ?wait,
                "attempt failed; the group delivers it again")
            });
            rt.inst.metrics.retried.increment(1);
            bump(&rt.inst.counters.retried);
            delivery.nack(wait)
        }
        Err(error) => {
            span.in_scope(|| {
                tracing::warn!(attempt = attempt_no, error = %error, "giving up on the message: dead-lettering it")
            });
            match dead_letter(rt, &meta, attempt_no, &error).await {
                Ok(()) => delivery.ack(),
                Err((_, e)) => {
                    tracing::error!(route = %rt.name, topic = %meta.topic(), error = %e,
                        "the dead letter could not be published; the group delivers the message again");
                    let wait = rt.retry.backoff.delay(attempt_no.saturating_sub(1));
                    delivery.nack(wait)
                }
            }
        }
    };
    if let Err(error) = settled.await {
        tracing::warn!(route = %rt.name, topic = %meta.topic(), %error,
            "settling the delivery failed; the group delivers it again after its ack deadline");
    }
}

/// One attempt of the handler on `meta`: its span and the outcome (a panic is caught and
/// becomes a failure); counted in the route's metrics.
async fn attempt(
    rt: &RouteRuntime,
    service: &mut RouteService,
    meta: &Meta,
) -> (Span, Result<(), HandlerError>) {
    let span = process_span(rt, meta);
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
            return (span, Ok(()));
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
    (span, Err(error))
}

/// Publishes the dead-letter copy of the message, retrying; on failure, the copy (if it could
/// be made) and the last error.
async fn dead_letter(
    rt: &RouteRuntime,
    meta: &Meta,
    attempts: u32,
    error: &HandlerError,
) -> Result<(), (Option<Message>, pubsub_core::Error)> {
    let original = meta.message();
    let copy = dead_letter_message(&rt.dead_letter, original, &rt.name, attempts, error)
        .map_err(|e| (None, e))?;
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
                return Ok(());
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
    Err((Some(copy), e))
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
