//! Application hooks: gaps in a route's subscription, and dead letters that could not be
//! published.

use pubsub_core::{Error, Gap, Message};

use crate::error::HandlerError;

/// A route's subscription reported lost messages (see [`Gap`]).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct GapEvent {
    /// The route's name.
    pub route: String,
    /// What was lost.
    pub gap: Gap,
}

/// A message whose handling failed and whose dead-letter copy could not be published either:
/// the hook is its last stop (write it to a file, a table, another broker).
#[derive(Debug)]
#[non_exhaustive]
pub struct DeadLetterFailure {
    /// The route's name.
    pub route: String,
    /// The original message.
    pub message: Message,
    /// The dead-letter copy, when it could be built (`None`, for example, when the dead-letter
    /// topic would be longer than 255 bytes).
    pub dead_letter: Option<Message>,
    /// Why publishing (or building) the copy failed.
    pub error: Error,
    /// Why the handler failed.
    pub handler_error: HandlerError,
}

type GapHook = Box<dyn Fn(&GapEvent) + Send + Sync>;
type FailureHook = Box<dyn Fn(DeadLetterFailure) + Send + Sync>;

/// The hooks of one dispatcher.
#[derive(Default)]
pub(crate) struct Hooks {
    pub on_gap: Option<GapHook>,
    pub on_dead_letter_failure: Option<FailureHook>,
}
