//! The one error type every backend speaks.

use std::fmt;

/// A boxed error from a backend library, kept as the `source` of an [`Error`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Shorthand for `Result<T, pubsub_core::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, in words every backend shares.
///
/// Adapter crates convert their own errors into this type and keep the original as
/// [`std::error::Error::source`]. Use [`Error::kind`] to branch and [`Error::is_temporary`] to
/// decide whether a retry can help.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A topic did not parse.
    #[error("invalid topic: {0}")]
    InvalidTopic(#[from] crate::topic::TopicError),
    /// A pattern did not parse.
    #[error("invalid pattern: {0}")]
    InvalidPattern(#[from] crate::pattern::PatternError),
    /// A header name or value is not allowed.
    #[error("invalid header: {0}")]
    InvalidHeader(#[from] crate::headers::HeaderError),
    /// Bytes that start like an envelope frame are not a valid one.
    #[error("invalid envelope frame: {0}")]
    InvalidFrame(#[from] crate::envelope::EnvelopeError),
    /// A connection URL or configuration value is not usable.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// The payload is larger than the backend accepts; nothing was sent.
    #[error("payload of {size} bytes exceeds the backend's limit of {max} bytes")]
    PayloadTooLarge {
        /// Size of the rejected payload in bytes.
        size: usize,
        /// The backend's `max_payload`.
        max: usize,
    },
    /// The backend cannot do this at all (not a transient condition).
    #[error("unsupported by the {backend} backend: {what}")]
    Unsupported {
        /// Backend name, e.g. `"redis"`.
        backend: &'static str,
        /// What was asked for.
        what: String,
    },
    /// The URL names a backend whose Cargo feature is off.
    #[error("the `{scheme}://` scheme needs the `{feature}` feature of the `pubsub` crate")]
    FeatureDisabled {
        /// The URL scheme that was asked for.
        scheme: String,
        /// The Cargo feature that enables it.
        feature: &'static str,
    },
    /// Talking to the broker failed (connect, I/O, protocol).
    #[error("connection error: {message}")]
    Connection {
        /// What was being done.
        message: String,
        /// The backend library's error, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// An operation did not complete in time (for example a publish while disconnected).
    #[error("timed out: {0}")]
    Timeout(String),
    /// The broker refused or failed an operation it understood.
    #[error("backend error: {message}")]
    Backend {
        /// What was being done.
        message: String,
        /// The backend library's error, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// The handle was closed; no further publish or subscribe is possible.
    #[error("the pub/sub handle is closed")]
    Closed,
}

/// The kind of an [`Error`], for matching without caring about details.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Invalid topic, pattern, header or configuration (URL).
    Invalid,
    /// Payload over the backend's limit.
    PayloadTooLarge,
    /// The backend cannot do it; or its feature is off.
    Unsupported,
    /// Connection-level failure.
    Connection,
    /// Timed out.
    Timeout,
    /// The broker failed the operation.
    Backend,
    /// The handle is closed.
    Closed,
}

impl Error {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidTopic(_)
            | Error::InvalidPattern(_)
            | Error::InvalidHeader(_)
            | Error::InvalidFrame(_)
            | Error::InvalidConfig(_) => ErrorKind::Invalid,
            Error::PayloadTooLarge { .. } => ErrorKind::PayloadTooLarge,
            Error::Unsupported { .. } | Error::FeatureDisabled { .. } => ErrorKind::Unsupported,
            Error::Connection { .. } => ErrorKind::Connection,
            Error::Timeout(_) => ErrorKind::Timeout,
            Error::Backend { .. } => ErrorKind::Backend,
            Error::Closed => ErrorKind::Closed,
        }
    }

    /// Whether retrying the same call later may succeed (connection trouble, time-outs).
    pub fn is_temporary(&self) -> bool {
        matches!(self.kind(), ErrorKind::Connection | ErrorKind::Timeout)
    }

    /// A connection error with a source.
    pub fn connection(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Connection {
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// A backend error with a source.
    pub fn backend(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Backend {
            message: message.into(),
            source: Some(source.into()),
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}
