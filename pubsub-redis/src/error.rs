//! The Redis adapter's error type.

/// What went wrong in the Redis adapter.
///
/// Converts into [`pubsub_core::Error`] (so `?` works in code using the portable API), keeping
/// fred's error as the [`source`](std::error::Error::source). No variant ever holds a password:
/// configuration errors describe the problem without echoing the URL.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The URL or a configuration value is not usable.
    #[error("invalid Redis configuration: {0}")]
    InvalidConfig(String),
    /// Connecting to Redis or talking to it failed (I/O, TLS, authentication, protocol).
    #[error("Redis connection error while {context}")]
    Connection {
        /// What was being done.
        context: &'static str,
        /// fred's error.
        #[source]
        source: fred::error::Error,
    },
    /// Redis did not answer in time.
    #[error("timed out while {context}")]
    Timeout {
        /// What was being done.
        context: &'static str,
    },
    /// Redis refused or failed a command it understood (including `AUTH`: bad credentials).
    #[error("Redis failed a command while {context}")]
    Command {
        /// What was being done.
        context: &'static str,
        /// fred's error.
        #[source]
        source: fred::error::Error,
    },
}

impl Error {
    /// Classifies a fred error raised while doing `context`.
    pub(crate) fn from_fred(context: &'static str, source: fred::error::Error) -> Self {
        use fred::error::ErrorKind as K;
        match source.kind() {
            K::Timeout => Error::Timeout { context },
            K::IO | K::Canceled | K::Tls | K::Protocol => Error::Connection { context, source },
            _ => Error::Command { context, source },
        }
    }
}

impl From<Error> for pubsub_core::Error {
    fn from(error: Error) -> Self {
        match error {
            Error::InvalidConfig(message) => pubsub_core::Error::InvalidConfig(message),
            Error::Connection { context, source } => {
                pubsub_core::Error::connection(format!("redis: {context}"), source)
            }
            Error::Timeout { context } => pubsub_core::Error::Timeout(format!("redis: {context}")),
            Error::Command { context, source } => {
                pubsub_core::Error::backend(format!("redis: {context}"), source)
            }
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
        let fred = fred::error::Error::new(fred::error::ErrorKind::IO, "connection reset");
        let core: pubsub_core::Error = Error::from_fred("publishing", fred).into();
        assert_eq!(core.kind(), ErrorKind::Connection);
        assert!(core.is_temporary());
        let source = core.source().expect("fred error kept as source");
        assert!(source.to_string().contains("connection reset"), "{source}");

        let fred = fred::error::Error::new(fred::error::ErrorKind::Timeout, "late");
        let core: pubsub_core::Error = Error::from_fred("subscribing", fred).into();
        assert_eq!(core.kind(), ErrorKind::Timeout);

        let fred = fred::error::Error::new(fred::error::ErrorKind::Auth, "WRONGPASS");
        let core: pubsub_core::Error = Error::from_fred("subscribing", fred).into();
        assert_eq!(core.kind(), ErrorKind::Backend);

        let core: pubsub_core::Error = Error::InvalidConfig("bad port".into()).into();
        assert_eq!(core.kind(), ErrorKind::Invalid);
    }
}
