//! The NATS adapter's error type.

use async_nats::client::FlushErrorKind;
use async_nats::{ConnectErrorKind, PublishErrorKind};

/// What went wrong in the NATS adapter.
///
/// Converts into [`pubsub_core::Error`] (so `?` works in code using the portable API), keeping
/// async-nats's error as the [`source`](std::error::Error::source). No variant ever holds a
/// password or token: configuration errors describe the problem without echoing the URL, and
/// async-nats never sees credentials inside server addresses.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The URL or a configuration value is not usable.
    #[error("invalid NATS configuration: {0}")]
    InvalidConfig(String),
    /// The first connection to NATS failed (I/O, DNS, TLS, handshake time-out).
    #[error("could not connect to NATS")]
    Connect(#[source] async_nats::ConnectError),
    /// NATS refused the credentials.
    #[error("NATS refused the credentials")]
    Auth(#[source] async_nats::ConnectError),
    /// Handing a message to the client's connection failed.
    #[error("NATS publish failed")]
    Publish(#[source] async_nats::PublishError),
    /// Creating a subscription failed.
    #[error("NATS subscribe failed")]
    Subscribe(#[source] async_nats::SubscribeError),
    /// Flushing the connection failed.
    #[error("NATS flush failed")]
    Flush(#[source] async_nats::client::FlushError),
    /// NATS did not answer in time (also: the connection stayed down for the whole wait).
    #[error("timed out while {0}")]
    Timeout(&'static str),
    /// The client's connection is closed for good (drained or dropped).
    #[error("the NATS connection is closed")]
    Closed,
}

impl From<Error> for pubsub_core::Error {
    fn from(error: Error) -> Self {
        use pubsub_core::Error as E;
        match error {
            Error::InvalidConfig(message) => E::InvalidConfig(message),
            Error::Connect(source) => {
                let message = match source.kind() {
                    ConnectErrorKind::ServerParse => {
                        return E::InvalidConfig("a NATS server address does not parse".into())
                    }
                    ConnectErrorKind::TimedOut => {
                        return E::Timeout("nats: connecting (handshake timed out)".into())
                    }
                    ConnectErrorKind::Tls => "nats: TLS handshake failed",
                    ConnectErrorKind::Dns => "nats: resolving the server address failed",
                    _ => "nats: connecting failed",
                };
                E::connection(message, source)
            }
            Error::Auth(source) => E::backend("nats: the server refused the credentials", source),
            Error::Publish(source) => match source.kind() {
                PublishErrorKind::Send => E::Closed,
                _ => E::backend("nats: publishing failed", source),
            },
            Error::Subscribe(source) => E::backend("nats: subscribing failed", source),
            Error::Flush(source) => match source.kind() {
                FlushErrorKind::SendError => E::Closed,
                FlushErrorKind::FlushError => E::connection("nats: flushing failed", source),
            },
            Error::Timeout(context) => E::Timeout(format!("nats: {context}")),
            Error::Closed => E::Closed,
        }
    }
}

impl Error {
    /// Classifies a failed first connection.
    pub(crate) fn from_connect(source: async_nats::ConnectError) -> Self {
        match source.kind() {
            ConnectErrorKind::Authentication | ConnectErrorKind::AuthorizationViolation => {
                Error::Auth(source)
            }
            _ => Error::Connect(source),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pubsub_core::ErrorKind;
    use std::error::Error as _;

    #[test]
    fn converts_keeping_the_source() {
        let io = async_nats::ConnectError::with_source(ConnectErrorKind::Io, "connection refused");
        let core: pubsub_core::Error = Error::from_connect(io).into();
        assert_eq!(core.kind(), ErrorKind::Connection);
        assert!(core.is_temporary());
        let source = core.source().expect("async-nats error kept as source");
        assert!(
            source.to_string().contains("connection refused"),
            "{source}"
        );

        let auth = async_nats::ConnectError::new(ConnectErrorKind::AuthorizationViolation);
        let core: pubsub_core::Error = Error::from_connect(auth).into();
        assert_eq!(core.kind(), ErrorKind::Backend);
        assert!(!core.is_temporary());

        let late = async_nats::ConnectError::new(ConnectErrorKind::TimedOut);
        let core: pubsub_core::Error = Error::from_connect(late).into();
        assert_eq!(core.kind(), ErrorKind::Timeout);

        let gone = async_nats::PublishError::new(PublishErrorKind::Send);
        let core: pubsub_core::Error = Error::Publish(gone).into();
        assert_eq!(core.kind(), ErrorKind::Closed);

        let core: pubsub_core::Error = Error::Timeout("publishing").into();
        assert_eq!(core.kind(), ErrorKind::Timeout);
        assert!(core.to_string().contains("publishing"), "{core}");

        let core: pubsub_core::Error = Error::InvalidConfig("bad port".into()).into();
        assert_eq!(core.kind(), ErrorKind::Invalid);
    }
}
