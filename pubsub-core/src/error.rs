//! The one error type every backend speaks.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

/// A boxed error from a backend library, kept as the `source` of an [`Error`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Shorthand for `Result<T, pubsub_core::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong: a [kind](ErrorKind), the backend and the operation it happened in, a
/// message, and the original error of the backend library as [`std::error::Error::source`].
///
/// Every backend returns this type. Branch on [`Error::kind`]; use [`Error::is_temporary`] to
/// decide whether a retry can help. The handle fills in [`Error::backend`] and
/// [`Error::operation`], and a failed connect names the broker's address
/// ([`Error::endpoint`], `host:port`, never a user or password), so they are fields, never
/// hidden in the text.
///
/// `Display` shows them all, and for a [connection error](ErrorKind::Connection) the chain of
/// causes too (connection refused? DNS? TLS?):
/// `redis: connect to 127.0.0.1:6390: connection error: connecting the publisher: IO Error:
/// Connection refused (os error 111)`.
///
/// ```
/// use pubsub_core::{ErrorKind, Topic};
/// let err = pubsub_core::Error::from(Topic::new("a..b").unwrap_err());
/// assert_eq!(err.kind(), ErrorKind::Invalid);
/// assert!(!err.is_temporary());
/// ```
#[derive(Clone)]
pub struct Error {
    inner: Box<Inner>,
}

#[derive(Clone)]
struct Inner {
    kind: ErrorKind,
    backend: Option<&'static str>,
    operation: Option<Operation>,
    endpoint: Option<Box<str>>,
    message: Cow<'static, str>,
    payload: Option<(usize, usize)>,
    source: Option<Arc<dyn std::error::Error + Send + Sync + 'static>>,
}

/// The kind of an [`Error`], for matching without caring about details.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Invalid topic, pattern, header, envelope frame, URL or configuration value.
    Invalid,
    /// Payload over the backend's limit; nothing was sent.
    PayloadTooLarge,
    /// The backend cannot do it, or its Cargo feature is off.
    Unsupported,
    /// Connection-level failure (connect, I/O, TLS, protocol).
    Connection,
    /// An operation did not complete in time (for example a publish while disconnected).
    Timeout,
    /// The broker refused or failed an operation it understood.
    Backend,
    /// Authentication failed, either way: the broker refused the credentials (wrong password,
    /// user or token; a client certificate it does not accept) or denied the operation, or the
    /// broker's TLS certificate does not verify against the trusted roots. Not temporary: the
    /// same settings fail the same way, so a connect fails at once instead of retrying.
    Auth,
    /// The handle is closed; no further publish or subscribe is possible.
    Closed,
    /// Called outside a tokio runtime.
    NoRuntime,
}

/// The operation an [`Error`] happened in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// Reading a URL or configuration.
    Configure,
    /// Connecting to the broker.
    Connect,
    /// Publishing a message.
    Publish,
    /// Subscribing.
    Subscribe,
    /// Unsubscribing.
    Unsubscribe,
    /// Closing the handle.
    Close,
    /// Restoring subscriptions after a reconnect.
    Restore,
    /// Acknowledging or negatively acknowledging a group's delivery.
    Settle,
}

impl Error {
    /// An error of `kind` with a message.
    pub fn new(kind: ErrorKind, message: impl Into<Cow<'static, str>>) -> Self {
        Error {
            inner: Box::new(Inner {
                kind,
                backend: None,
                operation: None,
                endpoint: None,
                message: message.into(),
                payload: None,
                source: None,
            }),
        }
    }

    /// The handle is closed.
    pub fn closed() -> Self {
        Error::new(ErrorKind::Closed, "the pub/sub handle is closed")
    }

    /// Timed out while doing what `message` says.
    pub fn timeout(message: impl Into<Cow<'static, str>>) -> Self {
        Error::new(ErrorKind::Timeout, message)
    }

    /// A URL or configuration value is not usable. The message must not contain secrets.
    pub fn invalid_config(message: impl Into<Cow<'static, str>>) -> Self {
        Error::new(ErrorKind::Invalid, message).with_operation(Operation::Configure)
    }

    /// The backend cannot do what `message` says.
    pub fn unsupported(message: impl Into<Cow<'static, str>>) -> Self {
        Error::new(ErrorKind::Unsupported, message)
    }

    /// The URL scheme `scheme` needs the Cargo feature `feature` of the `pubsub` crate.
    pub fn feature_disabled(scheme: &str, feature: &'static str) -> Self {
        let scheme: String = scheme
            .chars()
            .take(16)
            .filter(char::is_ascii_alphanumeric)
            .collect();
        Error::unsupported(format!(
            "the `{scheme}://` scheme needs the `{feature}` feature of the `pubsub` crate"
        ))
        .with_operation(Operation::Configure)
    }

    /// A payload of `size` bytes is over the backend's limit `max`.
    pub fn payload_too_large(size: usize, max: usize) -> Self {
        let mut e = Error::new(
            ErrorKind::PayloadTooLarge,
            format!("payload of {size} bytes exceeds the limit of {max} bytes"),
        );
        e.inner.payload = Some((size, max));
        e
    }

    /// Called outside a tokio runtime.
    pub fn no_runtime() -> Self {
        Error::new(
            ErrorKind::NoRuntime,
            "this must be called from inside a tokio runtime",
        )
    }

    /// A connection error caused by `source`.
    pub fn connection(message: impl Into<Cow<'static, str>>, source: impl Into<BoxError>) -> Self {
        Error::new(ErrorKind::Connection, message).with_source(source)
    }

    /// The broker failed an operation; `source` is the backend library's error.
    pub fn backend(message: impl Into<Cow<'static, str>>, source: impl Into<BoxError>) -> Self {
        Error::new(ErrorKind::Backend, message).with_source(source)
    }

    /// Authentication failed (see [`ErrorKind::Auth`]); `source` is the backend library's
    /// error. The message must not contain the secret.
    pub fn auth(message: impl Into<Cow<'static, str>>, source: impl Into<BoxError>) -> Self {
        Error::new(ErrorKind::Auth, message).with_source(source)
    }

    /// Keeps `source` as the cause of this error.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.inner.source = Some(Arc::from(source.into()));
        self
    }

    /// Names the backend, unless one is named already.
    pub fn with_backend(mut self, backend: &'static str) -> Self {
        self.inner.backend.get_or_insert(backend);
        self
    }

    /// Names the operation, unless one is named already.
    pub fn with_operation(mut self, operation: Operation) -> Self {
        self.inner.operation.get_or_insert(operation);
        self
    }

    /// Names the broker address the error happened with (`host:port`, or several separated by
    /// commas), unless one is named already. It must hold no user name or password.
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        if self.inner.endpoint.is_none() {
            self.inner.endpoint = Some(endpoint.into().into_boxed_str());
        }
        self
    }

    /// The broker address (`host:port`) it happened with, where known: set for a failed
    /// connect of a handle configured from a URL.
    pub fn endpoint(&self) -> Option<&str> {
        self.inner.endpoint.as_deref()
    }

    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// The backend it happened in (`"redis"`, `"nats"`, …), where known.
    pub fn backend_name(&self) -> Option<&'static str> {
        self.inner.backend
    }

    /// The operation it happened in, where known.
    pub fn operation(&self) -> Option<Operation> {
        self.inner.operation
    }

    /// What happened, without the backend, operation or source.
    pub fn message(&self) -> &str {
        &self.inner.message
    }

    /// For [`ErrorKind::PayloadTooLarge`]: the payload's size and the limit, in bytes.
    pub fn payload_limit(&self) -> Option<(usize, usize)> {
        self.inner.payload
    }

    /// Whether retrying the same call later may succeed (connection trouble, time-outs).
    pub fn is_temporary(&self) -> bool {
        matches!(self.kind(), ErrorKind::Connection | ErrorKind::Timeout)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(backend) = self.inner.backend {
            write!(f, "{backend}: ")?;
        }
        match (self.inner.operation, &self.inner.endpoint) {
            (Some(operation), Some(endpoint)) => write!(f, "{operation} to {endpoint}: ")?,
            (Some(operation), None) => write!(f, "{operation}: ")?,
            (None, Some(endpoint)) => write!(f, "{endpoint}: ")?,
            (None, None) => {}
        }
        write!(f, "{}: {}", self.inner.kind, self.inner.message)?;
        if self.inner.kind == ErrorKind::Connection {
            // The causes, which say why (refused, DNS, TLS), each once.
            let mut shown = self.inner.message.to_string();
            let mut cause = std::error::Error::source(self);
            while let Some(error) = cause {
                let text = error.to_string();
                if !text.is_empty() && !shown.contains(&text) {
                    write!(f, ": {text}")?;
                    shown.push_str(&text);
                }
                cause = error.source();
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.inner.kind);
        if let Some(backend) = self.inner.backend {
            d.field("backend", &backend);
        }
        if let Some(operation) = self.inner.operation {
            d.field("operation", &operation);
        }
        if let Some(endpoint) = &self.inner.endpoint {
            d.field("endpoint", endpoint);
        }
        d.field("message", &self.inner.message);
        if let Some(source) = &self.inner.source {
            d.field("source", &format_args!("{source}"));
        }
        d.finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner
            .source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::Invalid => "invalid input",
            ErrorKind::PayloadTooLarge => "payload too large",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Connection => "connection error",
            ErrorKind::Timeout => "timed out",
            ErrorKind::Backend => "backend error",
            ErrorKind::Auth => "authentication failed",
            ErrorKind::Closed => "closed",
            ErrorKind::NoRuntime => "no tokio runtime",
        })
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operation::Configure => "configure",
            Operation::Settle => "settle",
            Operation::Connect => "connect",
            Operation::Publish => "publish",
            Operation::Subscribe => "subscribe",
            Operation::Unsubscribe => "unsubscribe",
            Operation::Close => "close",
            Operation::Restore => "restore",
        })
    }
}

/// Converts a validation error of another module into an [`Error`] of kind
/// [`ErrorKind::Invalid`] whose message starts with `$what`. Invoked beside each error type
/// (topic, token, pattern, header, envelope frame), so that this module depends on none of them.
macro_rules! invalid_from {
    ($($ty:ty => $what:literal),* $(,)?) => {$(
        impl From<$ty> for $crate::Error {
            fn from(error: $ty) -> Self {
                $crate::Error::new(
                    $crate::ErrorKind::Invalid,
                    format!(concat!($what, ": {}"), error),
                )
                .with_source(error)
            }
        }
    )*};
}
pub(crate) use invalid_from;

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn fields_and_display() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        let e = Error::connection("lost the connection", io)
            .with_backend("redis")
            .with_operation(Operation::Publish)
            .with_backend("ignored");
        assert_eq!(e.kind(), ErrorKind::Connection);
        assert_eq!(e.backend_name(), Some("redis"));
        assert_eq!(e.operation(), Some(Operation::Publish));
        assert!(e.is_temporary());
        assert_eq!(
            e.to_string(),
            "redis: publish: connection error: lost the connection: reset by peer"
        );
        assert!(e.source().unwrap().to_string().contains("reset by peer"));
        let copy = e.clone();
        assert_eq!(copy.to_string(), e.to_string());
        assert!(copy.source().is_some());
    }

    #[test]
    fn endpoint_and_causes_are_shown() {
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let e = Error::connection("connecting", io)
            .with_operation(Operation::Connect)
            .with_backend("redis")
            .with_endpoint("127.0.0.1:6390")
            .with_endpoint("ignored:1");
        assert_eq!(e.endpoint(), Some("127.0.0.1:6390"));
        assert_eq!(
            e.to_string(),
            "redis: connect to 127.0.0.1:6390: connection error: connecting: connection refused"
        );
        assert!(format!("{e:?}").contains("127.0.0.1:6390"));
        // Other kinds keep their message alone.
        let e = Error::backend("refused", "NOPERM").with_endpoint("h:1");
        assert_eq!(e.to_string(), "h:1: backend error: refused");
    }

    #[test]
    fn payload_limit_is_typed() {
        let e = Error::payload_too_large(9, 8);
        assert_eq!(e.kind(), ErrorKind::PayloadTooLarge);
        assert_eq!(e.payload_limit(), Some((9, 8)));
        assert!(!e.is_temporary());
    }

    #[test]
    fn auth_is_not_temporary() {
        let e = Error::auth("the server refused the credentials", "WRONGPASS");
        assert_eq!(e.kind(), ErrorKind::Auth);
        assert!(!e.is_temporary());
        assert_eq!(
            e.to_string(),
            "authentication failed: the server refused the credentials"
        );
    }

    #[test]
    fn feature_disabled_prints_no_secret() {
        let e = Error::feature_disabled("ka:fka", "kafka");
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        assert!(e.to_string().contains("`kafka://`"), "{e}");
    }
}
