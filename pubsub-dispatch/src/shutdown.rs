//! What [`Dispatcher::shutdown`](crate::Dispatcher::shutdown) reports.

use pubsub_core::Topic;

/// A message whose handling was cut off by the shutdown deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CutOff {
    /// The route's name.
    pub route: String,
    /// The message's topic.
    pub topic: Topic,
    /// Its `ce-id`, if it had one.
    pub id: Option<String>,
}

/// How a shutdown went.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Whether every handler in flight finished before the deadline.
    pub drained: bool,
    /// The messages still being handled (or waiting for a retry) at the deadline; their
    /// handlers were dropped.
    pub cut_off: Vec<CutOff>,
    /// Messages received but not started (buffered in the subscription or queued for a lane),
    /// dropped by the shutdown.
    pub not_started: u64,
}
