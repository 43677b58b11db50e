//! Metrics (`metrics` crate) and counters of one route.
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `pubsub_dispatch_handled_total` | counter: messages handled successfully | `route` |
//! | `pubsub_dispatch_failed_total` | counter: failed attempts (each retry that fails counts) | `route`, `reason` |
//! | `pubsub_dispatch_retried_total` | counter: retries scheduled | `route` |
//! | `pubsub_dispatch_dead_lettered_total` | counter: messages published to the dead-letter topic | `route` |
//! | `pubsub_dispatch_dead_letter_failures_total` | counter: dead-letter publishes that failed for good (message lost) | `route` |
//! | `pubsub_dispatch_panics_total` | counter: handler panics caught | `route` |
//! | `pubsub_dispatch_gaps_total` | counter: gaps reported by the subscription | `route`, `kind` (`dropped`, `outage`) |
//! | `pubsub_dispatch_dropped_total` | counter: messages lost in `dropped` gaps | `route` |
//! | `pubsub_dispatch_in_flight` | gauge: messages being handled (retries waiting included) | `route` |
//! | `pubsub_dispatch_handler_seconds` | histogram: duration of each attempt | `route` |
//! | `pubsub_dispatch_deduplicated_total` | counter: duplicates skipped by [`DedupLayer`](crate::DedupLayer) | `route` |

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};

use crate::error::FailureKind;

/// Metric handles of one route, resolved once when the dispatcher starts (under whatever
/// recorder is installed then).
#[derive(Clone)]
pub(crate) struct RouteMetrics {
    pub handled: Counter,
    failed: [Counter; 5],
    pub retried: Counter,
    pub dead_lettered: Counter,
    pub dead_letter_failures: Counter,
    pub panics: Counter,
    pub gaps_dropped: Counter,
    pub gaps_outage: Counter,
    pub dropped: Counter,
    pub in_flight: Gauge,
    pub latency: Histogram,
}

const KINDS: [FailureKind; 5] = [
    FailureKind::Failed,
    FailureKind::Permanent,
    FailureKind::Decode,
    FailureKind::Panic,
    FailureKind::Timeout,
];

impl RouteMetrics {
    pub fn new(route: &str) -> Self {
        let r = route.to_owned();
        RouteMetrics {
            handled: counter!("pubsub_dispatch_handled_total", "route" => r.clone()),
            failed: KINDS.map(|k| {
                counter!("pubsub_dispatch_failed_total", "route" => r.clone(), "reason" => k.as_str())
            }),
            retried: counter!("pubsub_dispatch_retried_total", "route" => r.clone()),
            dead_lettered: counter!("pubsub_dispatch_dead_lettered_total", "route" => r.clone()),
            dead_letter_failures: counter!("pubsub_dispatch_dead_letter_failures_total", "route" => r.clone()),
            panics: counter!("pubsub_dispatch_panics_total", "route" => r.clone()),
            gaps_dropped: counter!("pubsub_dispatch_gaps_total", "route" => r.clone(), "kind" => "dropped"),
            gaps_outage: counter!("pubsub_dispatch_gaps_total", "route" => r.clone(), "kind" => "outage"),
            dropped: counter!("pubsub_dispatch_dropped_total", "route" => r.clone()),
            in_flight: gauge!("pubsub_dispatch_in_flight", "route" => r.clone()),
            latency: histogram!("pubsub_dispatch_handler_seconds", "route" => r),
        }
    }

    pub fn failed(&self, kind: FailureKind) -> &Counter {
        let i = KINDS.iter().position(|k| *k == kind).unwrap_or(0);
        &self.failed[i]
    }
}

/// Counters of one route, readable by the application ([`Dispatcher::stats`](crate::Dispatcher::stats)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RouteStats {
    /// Messages handled successfully.
    pub handled: u64,
    /// Failed attempts.
    pub failed: u64,
    /// Retries scheduled.
    pub retried: u64,
    /// Messages published to the dead-letter topic.
    pub dead_lettered: u64,
    /// Dead-letter publishes that failed for good.
    pub dead_letter_failures: u64,
    /// Panics caught.
    pub panics: u64,
    /// Payloads that could not be decoded.
    pub decode_errors: u64,
    /// Gaps reported by the subscription.
    pub gaps: u64,
    /// Messages being handled now.
    pub in_flight: u64,
}

/// The live counters behind [`RouteStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub handled: AtomicU64,
    pub failed: AtomicU64,
    pub retried: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub dead_letter_failures: AtomicU64,
    pub panics: AtomicU64,
    pub decode_errors: AtomicU64,
    pub gaps: AtomicU64,
    pub in_flight: AtomicU64,
}

impl Counters {
    pub fn snapshot(&self) -> RouteStats {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RouteStats {
            handled: l(&self.handled),
            failed: l(&self.failed),
            retried: l(&self.retried),
            dead_lettered: l(&self.dead_lettered),
            dead_letter_failures: l(&self.dead_letter_failures),
            panics: l(&self.panics),
            decode_errors: l(&self.decode_errors),
            gaps: l(&self.gaps),
            in_flight: l(&self.in_flight),
        }
    }
}

/// Adds one.
pub(crate) fn bump(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

/// Shared counters plus metric handles of one route.
#[derive(Clone)]
pub(crate) struct Instruments {
    pub metrics: RouteMetrics,
    pub counters: Arc<Counters>,
}
