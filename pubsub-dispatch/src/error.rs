//! [`HandlerError`]: why handling one message failed, and whether a retry can help.

use std::fmt;
use std::time::Duration;

use pubsub_core::BoxError;

/// What kind of failure a [`HandlerError`] is; decides retrying and the `dlq-reason` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailureKind {
    /// The handler returned an error; retried while attempts remain.
    Failed,
    /// The handler said retrying cannot help ([`HandlerError::permanent`]): dead-lettered at
    /// once.
    Permanent,
    /// The payload could not be decoded as the handler's type: dead-lettered at once.
    Decode,
    /// The handler panicked; caught, counted, and retried like [`FailureKind::Failed`].
    Panic,
    /// The handler did not finish in time ([`TimeoutLayer`](crate::TimeoutLayer)); retried.
    Timeout,
}

impl FailureKind {
    /// The value of the `dlq-reason` header: `failed`, `permanent`, `decode`, `panic` or
    /// `timeout`.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Failed => "failed",
            FailureKind::Permanent => "permanent",
            FailureKind::Decode => "decode",
            FailureKind::Panic => "panic",
            FailureKind::Timeout => "timeout",
        }
    }

    /// Whether another attempt may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            FailureKind::Failed | FailureKind::Panic | FailureKind::Timeout
        )
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why handling a message failed.
///
/// Any `std::error::Error` converts into it with `?` (as a retryable [`FailureKind::Failed`]);
/// [`HandlerError::permanent`] marks a failure no retry can fix (straight to the dead-letter
/// topic), [`HandlerError::msg`] makes one from text.
///
/// ```
/// use pubsub_dispatch::{FailureKind, HandlerError};
/// fn parse(s: &str) -> Result<u32, HandlerError> {
///     Ok(s.parse::<u32>()?) // ParseIntError -> HandlerError (retryable)
/// }
/// assert_eq!(parse("x").unwrap_err().kind(), FailureKind::Failed);
/// assert!(!HandlerError::permanent("unknown customer").kind().is_retryable());
/// ```
pub struct HandlerError {
    kind: FailureKind,
    source: BoxError,
}

impl HandlerError {
    /// A retryable failure caused by `error`.
    pub fn new(error: impl Into<BoxError>) -> Self {
        Self::of_kind(FailureKind::Failed, error)
    }

    /// A retryable failure described by `message`.
    pub fn msg(message: impl fmt::Display) -> Self {
        Self::new(message.to_string())
    }

    /// A failure no retry can fix: the message goes to the dead-letter topic at once.
    pub fn permanent(error: impl Into<BoxError>) -> Self {
        Self::of_kind(FailureKind::Permanent, error)
    }

    /// The payload could not be decoded (dead-lettered at once).
    pub fn decode(error: impl Into<BoxError>) -> Self {
        Self::of_kind(FailureKind::Decode, error)
    }

    /// The handler did not finish within `limit`.
    pub fn timeout(limit: Duration) -> Self {
        Self::of_kind(
            FailureKind::Timeout,
            format!("the handler did not finish within {limit:?}"),
        )
    }

    /// The handler panicked with `message`.
    pub fn panic(message: impl fmt::Display) -> Self {
        Self::of_kind(
            FailureKind::Panic,
            format!("the handler panicked: {message}"),
        )
    }

    /// A failure of `kind` caused by `error`.
    pub fn of_kind(kind: FailureKind, error: impl Into<BoxError>) -> Self {
        HandlerError {
            kind,
            source: error.into(),
        }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> FailureKind {
        self.kind
    }

    /// The underlying error.
    pub fn source(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.source
    }

    /// The underlying error, owned.
    pub fn into_source(self) -> BoxError {
        self.source
    }
}

impl<E> From<E> for HandlerError
where
    E: std::error::Error + Send + Sync + 'static,
{
    fn from(error: E) -> Self {
        HandlerError::new(error)
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.source)?;
        let mut cause = self.source.source();
        while let Some(c) = cause {
            write!(f, ": {c}")?;
            cause = c.source();
        }
        Ok(())
    }
}

impl fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerError")
            .field("kind", &self.kind)
            .field("source", &self.source)
            .finish()
    }
}

/// The text of a caught panic's payload.
pub(crate) fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a non-text panic payload)".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_text() {
        let e: HandlerError = "x".parse::<u8>().unwrap_err().into();
        assert_eq!(e.kind(), FailureKind::Failed);
        assert!(e.to_string().starts_with("failed: "), "{e}");
        assert_eq!(HandlerError::decode("bad").kind(), FailureKind::Decode);
        assert!(!FailureKind::Decode.is_retryable());
        assert!(FailureKind::Panic.is_retryable());
        assert!(HandlerError::panic("boom").to_string().contains("boom"));
        assert!(HandlerError::timeout(Duration::from_millis(5))
            .to_string()
            .contains("5ms"));
        let boxed: Box<dyn std::any::Any + Send> = Box::new(String::from("owned"));
        assert_eq!(panic_text(&*boxed), "owned");
        let boxed: Box<dyn std::any::Any + Send> = Box::new(7u8);
        assert!(panic_text(&*boxed).contains("non-text"));
    }
}
