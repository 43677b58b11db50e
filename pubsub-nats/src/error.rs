//! async-nats errors → [`pubsub_core::Error`] kinds, keeping the async-nats error as `source`.

use async_nats::client::{FlushError, PublishErrorKind, SubscribeErrorKind};
use async_nats::{ConnectError, ConnectErrorKind, PublishError, SubscribeError};
use pubsub_core::adapter::tls;
use pubsub_core::{Error, ErrorKind};

/// A failed first connection: refused credentials and certificates are `Auth`, a handshake
/// that took too long is `Timeout`, an address async-nats cannot parse is `Invalid`, the rest
/// `Connection`.
pub(crate) fn connect(error: ConnectError) -> Error {
    let (kind, message) = match error.kind() {
        ConnectErrorKind::Authentication | ConnectErrorKind::AuthorizationViolation => {
            (ErrorKind::Auth, "the server refused the credentials")
        }
        ConnectErrorKind::Tls | ConnectErrorKind::Io if tls::is_certificate_error(&error) => (
            ErrorKind::Auth,
            "a TLS certificate was refused (the server's does not verify, or the server refused ours)",
        ),
        ConnectErrorKind::TimedOut => (ErrorKind::Timeout, "the connection handshake timed out"),
        ConnectErrorKind::ServerParse => (ErrorKind::Invalid, "a server address does not parse"),
        ConnectErrorKind::Tls => (ErrorKind::Connection, "the TLS handshake failed"),
        ConnectErrorKind::Dns => (ErrorKind::Connection, "resolving the server address failed"),
        _ => (ErrorKind::Connection, "connecting failed"),
    };
    Error::new(kind, message).with_source(error)
}

/// A publish async-nats refused.
pub(crate) fn publish(error: PublishError) -> Error {
    let (kind, message) = match error.kind() {
        // The server's limit shrank between our check and the send (a reconnect elsewhere).
        PublishErrorKind::MaxPayloadExceeded => (
            ErrorKind::PayloadTooLarge,
            "the message is over the server's max_payload",
        ),
        PublishErrorKind::InvalidSubject => (ErrorKind::Invalid, "the subject is not valid"),
        _ => (ErrorKind::Connection, "the NATS connection is closed"),
    };
    Error::new(kind, message).with_source(error)
}

/// A `SUB` async-nats refused.
pub(crate) fn subscribe(error: SubscribeError) -> Error {
    let (kind, message) = match error.kind() {
        SubscribeErrorKind::Other => (ErrorKind::Connection, "the NATS connection is closed"),
        _ => (ErrorKind::Invalid, "the subject is not valid"),
    };
    Error::new(kind, message).with_source(error)
}

/// A flush that did not complete (the connection went away).
pub(crate) fn flush(error: FlushError) -> Error {
    Error::connection("flushing the connection failed", error)
}

/// The client's connection ended for good (drained, or every clone dropped).
pub(crate) fn gone() -> Error {
    Error::new(ErrorKind::Connection, "the NATS connection is closed")
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_nats::client::FlushErrorKind;
    use std::error::Error as _;

    #[test]
    fn kinds_and_sources() {
        use ConnectErrorKind as C;
        use ErrorKind as K;
        let e = connect(ConnectError::with_source(C::Io, "connection refused"));
        assert_eq!(e.kind(), K::Connection);
        assert!(e
            .source()
            .unwrap()
            .to_string()
            .contains("connection refused"));
        let connects = [
            (C::AuthorizationViolation, K::Auth),
            (C::Authentication, K::Auth),
        ];
        let connects = connects
            .into_iter()
            .chain([(C::TimedOut, K::Timeout), (C::Tls, K::Connection)]);
        for (kind, want) in connects.chain([(C::ServerParse, K::Invalid), (C::Dns, K::Connection)])
        {
            assert_eq!(connect(ConnectError::new(kind)).kind(), want, "{kind:?}");
        }
        let big = publish(PublishError::new(PublishErrorKind::MaxPayloadExceeded));
        assert_eq!(
            (big.kind(), big.source().is_some()),
            (K::PayloadTooLarge, true)
        );
        assert_eq!(
            publish(PublishError::new(PublishErrorKind::Send)).kind(),
            K::Connection
        );
        assert_eq!(
            publish(PublishError::new(PublishErrorKind::InvalidSubject)).kind(),
            K::Invalid
        );
        assert!(subscribe(SubscribeError::new(SubscribeErrorKind::Other)).is_temporary());
        let e = subscribe(SubscribeError::new(SubscribeErrorKind::InvalidSubject));
        assert_eq!(e.kind(), K::Invalid);
        assert!(flush(FlushError::new(FlushErrorKind::SendError)).is_temporary());
    }
}
