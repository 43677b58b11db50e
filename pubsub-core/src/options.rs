//! [`CommonOptions`]: the settings every backend shares, from URL query parameters or setters;
//! [`Secret`] for passwords and tokens.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use crate::{Backoff, Error, Overflow, Result};

/// The URL query parameters [`CommonOptions::take_query`] knows.
pub(crate) const QUERY_KEYS: &[&str] = &[
    "buffer",
    "overflow",
    "publish_timeout",
    "command_timeout",
    "connect_timeout",
    "max_payload",
    "backoff_initial",
    "backoff_max",
    "heartbeat",
];

/// Default [`CommonOptions::heartbeat`]: 3 s, so a silent connection is noticed within 10 s.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(3);

/// Default buffer of a subscription, in messages.
pub const DEFAULT_BUFFER: usize = 1024;

/// Settings every backend shares. Each adapter's config holds one and adds only its broker's
/// own settings.
///
/// Set them with the [`WithOptions`] setters, or in a connection URL's query:
///
/// | parameter | meaning | example |
/// |---|---|---|
/// | `buffer` | default subscription buffer, in messages | `buffer=4096` |
/// | `overflow` | default overflow policy: `drop_oldest`, `drop_newest` or `close` | `overflow=close` |
/// | `publish_timeout` | how long `publish` waits while disconnected | `publish_timeout=2s` |
/// | `command_timeout` | how long `subscribe`/`unsubscribe`/`close` wait for the broker | `command_timeout=500ms` |
/// | `connect_timeout` | how long one connection attempt may take | `connect_timeout=10s` |
/// | `max_payload` | largest payload accepted, in bytes (at most the backend's own limit) | `max_payload=65536` |
/// | `backoff_initial`, `backoff_max` | reconnect delays | `backoff_max=30s` |
/// | `heartbeat` | liveness check of an idle connection; `0` turns it off | `heartbeat=1s` |
///
/// Durations are a number with `ms`, `s` or `m` (`heartbeat` also takes a bare number of
/// seconds).
///
/// ```
/// use std::time::Duration;
/// use pubsub_core::{CommonOptions, WithOptions};
/// let mut query = vec![("buffer".to_string(), "64".to_string())];
/// let options = CommonOptions::default()
///     .with_publish_timeout(Duration::from_secs(1))
///     .take_query(&mut query)?;
/// assert_eq!(options.buffer, 64);
/// assert!(query.is_empty());
/// # Ok::<(), pubsub_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct CommonOptions {
    /// Default buffer of a subscription, in messages (at least 1); when full, the oldest
    /// message is dropped and counted.
    pub buffer: usize,
    /// What a subscription does when its buffer is full (by default; each subscription may
    /// choose).
    pub overflow: Overflow,
    /// How long `publish` waits while the connection is down before it fails with a timeout.
    pub publish_timeout: Duration,
    /// How long `subscribe`, `unsubscribe` and `close` wait for the broker.
    pub command_timeout: Duration,
    /// How long one connection attempt may take.
    pub connect_timeout: Duration,
    /// Largest payload accepted, in bytes; `None` uses the backend's own limit. A larger value
    /// than the backend's limit is lowered to it.
    pub max_payload: Option<usize>,
    /// Delays between reconnect attempts (and retries of failed broker-side changes).
    pub backoff: Backoff,
    /// How often the connection's liveness is checked (NATS `PING`, AMQP heartbeat, Redis
    /// `PING`, …). A connection whose peer stays silent for about three heartbeats is taken as
    /// dead, even though its socket is still open (a half-open connection: a crashed host, a
    /// NAT or firewall that dropped its state), and is reconnected. `Duration::ZERO` turns the
    /// check off, leaving only what TCP notices by itself (minutes, or never on an idle
    /// connection). Default [`DEFAULT_HEARTBEAT`].
    pub heartbeat: Duration,
}

impl Default for CommonOptions {
    fn default() -> Self {
        CommonOptions {
            buffer: DEFAULT_BUFFER,
            overflow: Overflow::DropOldest,
            publish_timeout: Duration::from_secs(5),
            command_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            max_payload: None,
            backoff: Backoff::default(),
            heartbeat: DEFAULT_HEARTBEAT,
        }
    }
}

impl CommonOptions {
    /// Applies and removes the query parameters this type knows (see the table above); the
    /// others stay in `query` for the adapter. Values are checked; errors name the parameter,
    /// never its value.
    pub fn take_query(mut self, query: &mut Vec<(String, String)>) -> Result<Self> {
        let mut error = None;
        query.retain(|(key, value)| {
            let applied = match key.as_str() {
                "buffer" => count(key, value).map(|v| self.buffer = v.max(1)),
                "overflow" => Overflow::parse(value)
                    .map(|v| self.overflow = v)
                    .ok_or_else(|| {
                        Error::invalid_config("`overflow` takes drop_oldest, drop_newest or close")
                    }),
                "publish_timeout" => duration(key, value).map(|v| self.publish_timeout = v),
                "command_timeout" => duration(key, value).map(|v| self.command_timeout = v),
                "connect_timeout" => duration(key, value).map(|v| self.connect_timeout = v),
                "max_payload" => count(key, value).map(|v| self.max_payload = Some(v)),
                "backoff_initial" => duration(key, value).map(|v| self.backoff.initial = v),
                "backoff_max" => duration(key, value).map(|v| self.backoff.max = v),
                // A bare number is seconds here (as AMQP's own `heartbeat` parameter was).
                "heartbeat" => match value.parse::<u64>() {
                    Ok(seconds) => {
                        self.heartbeat = Duration::from_secs(seconds);
                        Ok(())
                    }
                    Err(_) => duration(key, value).map(|v| self.heartbeat = v),
                },
                _ => return true,
            };
            if let Err(e) = applied {
                error.get_or_insert(e);
            }
            false
        });
        match error {
            Some(e) => Err(e),
            None => self.validated(),
        }
    }

    /// Checks that the settings make sense (timeouts positive, a payload limit of at least 1).
    pub fn validated(self) -> Result<Self> {
        if self.publish_timeout.is_zero()
            || self.command_timeout.is_zero()
            || self.connect_timeout.is_zero()
        {
            return Err(Error::invalid_config("timeouts must be positive"));
        }
        if self.max_payload == Some(0) {
            return Err(Error::invalid_config("max_payload must be at least 1"));
        }
        Ok(self)
    }

    /// The payload limit: the configured one, but never above `backend_limit`.
    pub fn payload_limit(&self, backend_limit: usize) -> usize {
        self.max_payload
            .map_or(backend_limit, |m| m.min(backend_limit))
    }

    /// An adapter's payload limit when its default (`default`) is below what the broker or
    /// its client library can take (`ceiling`): the configured `max_payload`, else `default`,
    /// lowered to `ceiling` when larger. An adapter's [`Driver::max_payload`] returns this, so
    /// a `max_payload` above the broker's limit connects and reports the broker's limit.
    ///
    /// [`Driver::max_payload`]: crate::adapter::Driver::max_payload
    pub fn payload_limit_within(&self, default: usize, ceiling: usize) -> usize {
        self.max_payload.unwrap_or(default).min(ceiling)
    }
}

fn count(key: &str, value: &str) -> Result<usize> {
    value
        .parse::<usize>()
        .map_err(|_| Error::invalid_config(format!("`{key}` takes a whole number")))
}

/// Parses `250ms`, `5s` or `2m` (a unit is required: a bare `5` could mean seconds or ms).
pub(crate) fn duration(key: &str, value: &str) -> Result<Duration> {
    let bad = || Error::invalid_config(format!("`{key}` takes a duration such as 500ms, 5s or 1m"));
    let (number, unit) = value
        .find(|c: char| !c.is_ascii_digit())
        .map_or((value, ""), |at| value.split_at(at));
    let n: u64 = number.parse().map_err(|_| bad())?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n.saturating_mul(60))),
        _ => Err(bad()),
    }
}

/// The `with_*` setters of [`CommonOptions`], for every config that holds one: an adapter's
/// config implements [`WithOptions::options_mut`] and gets them all.
///
/// ```
/// use std::time::Duration;
/// use pubsub_core::WithOptions;
/// use pubsub_core::memory::MemoryConfig;
/// let config = MemoryConfig::default().with_buffer(16).with_publish_timeout(Duration::from_millis(200));
/// assert_eq!(config.options.buffer, 16);
/// ```
pub trait WithOptions: Sized {
    /// The options to change.
    fn options_mut(&mut self) -> &mut CommonOptions;

    /// Sets all common options at once.
    fn with_options(mut self, options: CommonOptions) -> Self {
        *self.options_mut() = options;
        self
    }

    /// Sets the default overflow policy of subscriptions.
    fn with_overflow(mut self, overflow: Overflow) -> Self {
        self.options_mut().overflow = overflow;
        self
    }

    /// Sets the default subscription buffer (at least 1).
    fn with_buffer(mut self, messages: usize) -> Self {
        self.options_mut().buffer = messages.max(1);
        self
    }

    /// Sets how long `publish` waits while disconnected.
    fn with_publish_timeout(mut self, timeout: Duration) -> Self {
        self.options_mut().publish_timeout = timeout;
        self
    }

    /// Sets how long `subscribe`, `unsubscribe` and `close` wait for the broker.
    fn with_command_timeout(mut self, timeout: Duration) -> Self {
        self.options_mut().command_timeout = timeout;
        self
    }

    /// Sets how long one connection attempt may take.
    fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.options_mut().connect_timeout = timeout;
        self
    }

    /// Sets the largest payload accepted (lowered to the backend's own limit if above it).
    fn with_max_payload(mut self, bytes: usize) -> Self {
        self.options_mut().max_payload = Some(bytes);
        self
    }

    /// Sets the reconnect policy.
    fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.options_mut().backoff = backoff;
        self
    }

    /// Sets how often the connection's liveness is checked ([`CommonOptions::heartbeat`];
    /// `Duration::ZERO`: never).
    fn with_heartbeat(mut self, heartbeat: Duration) -> Self {
        self.options_mut().heartbeat = heartbeat;
        self
    }
}

impl WithOptions for CommonOptions {
    fn options_mut(&mut self) -> &mut CommonOptions {
        self
    }
}

/// TLS settings every backend shares: the system's root certificates are always trusted;
/// these add more, and a client certificate for mutual TLS. Files are PEM, read when the handle
/// connects (off the async runtime); a missing or malformed file is an
/// [`ErrorKind::Invalid`](crate::ErrorKind::Invalid) error.
///
/// ```
/// use pubsub_core::TlsOptions;
/// let tls = TlsOptions::default()
///     .with_root_certificate("/etc/my-ca.pem")
///     .with_client_certificate("/etc/me.pem", "/etc/me.key");
/// assert_eq!(tls.root_certificates.len(), 1);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsOptions {
    /// Extra root certificates to trust, on top of the system's.
    pub root_certificates: Vec<PathBuf>,
    /// A client certificate chain and its private key, for mutual TLS.
    pub client_certificate: Option<(PathBuf, PathBuf)>,
}

impl TlsOptions {
    /// Trusts one more root certificate (PEM file).
    pub fn with_root_certificate(mut self, path: impl Into<PathBuf>) -> Self {
        self.root_certificates.push(path.into());
        self
    }

    /// Presents a client certificate chain and key (PEM files).
    pub fn with_client_certificate(
        mut self,
        certificate: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> Self {
        self.client_certificate = Some((certificate.into(), key.into()));
        self
    }
}

/// A password or token: `Debug` and `Display` never show it.
///
/// ```
/// use pubsub_core::Secret;
/// let s = Secret::from("hunter2");
/// assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
/// assert_eq!(s.expose(), "hunter2");
/// ```
#[derive(Clone)]
pub struct Secret(SecretString);

impl Secret {
    /// The secret itself, for handing to the client library.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(SecretString::from(s))
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret::from(s.to_string())
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn query(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn query_parameters_apply_and_leave_the_rest() {
        let mut q = query(&[
            ("buffer", "0"),
            ("overflow", "drop_newest"),
            ("publish_timeout", "250ms"),
            ("command_timeout", "3s"),
            ("connect_timeout", "1m"),
            ("max_payload", "100"),
            ("backoff_max", "9s"),
            ("heartbeat", "2"),
            ("exchange", "x"),
        ]);
        let o = CommonOptions::default().take_query(&mut q).unwrap();
        assert_eq!((o.buffer, o.overflow), (1, Overflow::DropNewest));
        assert_eq!(o.publish_timeout, Duration::from_millis(250));
        assert_eq!(o.command_timeout, Duration::from_secs(3));
        assert_eq!(o.connect_timeout, Duration::from_secs(60));
        assert_eq!(o.max_payload, Some(100));
        assert_eq!(o.backoff.max, Duration::from_secs(9));
        assert_eq!(o.heartbeat, Duration::from_secs(2));
        assert_eq!(q, query(&[("exchange", "x")]));
        assert_eq!(o.payload_limit(50), 50);
        assert_eq!(o.payload_limit(500), 100);
        assert_eq!(o.payload_limit_within(7, 50), 50);
        assert_eq!(o.payload_limit_within(7, 500), 100);
        let unset = CommonOptions::default();
        assert_eq!(unset.payload_limit_within(7, 500), 7);
        assert_eq!(unset.payload_limit_within(700, 500), 500);
        let mut off = query(&[("heartbeat", "0")]);
        let o = CommonOptions::default().take_query(&mut off).unwrap();
        assert_eq!(o.heartbeat, Duration::ZERO);
    }

    #[test]
    fn bad_values_name_the_parameter_not_the_value() {
        for (k, v) in [
            ("buffer", "lots-of-s3cret"),
            ("publish_timeout", "s3cret"),
            ("publish_timeout", "0s"),
            ("max_payload", "0"),
            ("command_timeout", "5h"),
            ("overflow", "s3cret"),
        ] {
            let e = CommonOptions::default()
                .take_query(&mut query(&[(k, v)]))
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Invalid);
            assert!(!e.to_string().contains("s3cret"), "{e}");
        }
    }
}
