//! [`AmqpConfig`]: where the broker is and how the adapter uses it.

use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::uri::{AMQPAuthority, AMQPQueryString, AMQPScheme, AMQPUri, AMQPUserInfo};
use pubsub_core::adapter::{config_setters, ServerUrl};
use pubsub_core::{CommonOptions, Error, Result, Secret, TlsOptions, WithOptions};

/// Default largest payload: 16 MiB (RabbitMQ 4 refuses messages over 16 MiB by default).
pub const DEFAULT_MAX_PAYLOAD: usize = 16 * 1024 * 1024;

/// The largest `max_payload` the adapter takes: 128 MiB, RabbitMQ 3.x's default
/// `max_message_size` (the broker does not tell a client its setting; RabbitMQ 4 lowered the
/// default to 16 MiB, [`DEFAULT_MAX_PAYLOAD`]). A larger `max_payload` is lowered to this.
pub const MAX_PAYLOAD_CEILING: usize = 128 * 1024 * 1024;

/// The query parameters of an AMQP URL besides the [`CommonOptions`] ones.
const QUERY_KEYS: &[&str] = &[
    "exchange",
    "durable_exchange",
    "queue_max_length",
    "prefetch",
];

/// Settings of an AMQP handle.
///
/// Build it from a URL with [`AmqpConfig::from_url`], or start from [`AmqpConfig::default`]
/// (`amqp://guest:guest@127.0.0.1:5672/%2f`), then adjust it with the `with_*` setters (the
/// shared ones come from [`WithOptions`]). `Debug` never shows the password.
///
/// ```
/// use pubsub_amqp::AmqpConfig;
/// let config = AmqpConfig::from_url("amqp://app:s3cret@mq:5673/prod?exchange=events")?;
/// assert_eq!((config.port, config.vhost.as_str(), config.exchange.as_str()), (5673, "prod", "events"));
/// assert!(!format!("{config:?}").contains("s3cret"));
/// # Ok::<(), pubsub_core::Error>(())
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct AmqpConfig {
    /// The settings every backend shares (buffer, timeouts, backoff, payload limit).
    pub options: CommonOptions,
    /// Host name or IP address of the broker.
    pub host: String,
    /// TCP port of the broker.
    pub port: u16,
    /// Virtual host (the URL's path, percent-decoded; `/` when the path is empty).
    pub vhost: String,
    /// User name (`guest` when `None`).
    pub user: Option<String>,
    /// Password (`guest` when neither user nor password is given, else empty when `None`).
    pub password: Option<Secret>,
    /// TLS (`amqps://`): the system's root certificates plus the given ones, and a client
    /// certificate for mutual TLS. `None`: plain TCP.
    pub tls: Option<TlsOptions>,
    /// The topic exchange every topic is published to (declared if missing).
    pub exchange: String,
    /// Whether the exchange is declared durable (default: yes). A durable exchange keeps, with
    /// its bindings to durable queues, the streams and groups fed through a broker restart. An
    /// existing exchange of that name with the other durability is used as it is (with a
    /// warning).
    pub durable_exchange: bool,
    /// Longest backlog of the handle's queue (`x-max-length`); beyond it the oldest messages
    /// are dropped by the broker (`x-overflow: drop-head`).
    pub queue_max_length: u32,
    /// Unacknowledged deliveries the broker may have in flight to the handle (`basic.qos`).
    pub prefetch: u16,
}

impl Default for AmqpConfig {
    fn default() -> Self {
        AmqpConfig {
            options: CommonOptions::default(),
            host: "127.0.0.1".to_string(),
            port: 5672,
            vhost: "/".to_string(),
            user: None,
            password: None,
            tls: None,
            exchange: "pubsub".to_string(),
            durable_exchange: true,
            queue_max_length: 100_000,
            prefetch: 1000,
        }
    }
}

impl WithOptions for AmqpConfig {
    fn options_mut(&mut self) -> &mut CommonOptions {
        &mut self.options
    }
}

config_setters!(AmqpConfig {
    /// Sets the virtual host.
    with_vhost(vhost: String),
    /// Uses TLS with these settings (`None`: plain TCP).
    with_tls(tls: Option<TlsOptions>),
    /// Sets the topic exchange.
    with_exchange(exchange: String),
    /// Declares the exchange durable or not.
    with_durable_exchange(durable_exchange: bool),
    /// Sets the handle queue's `x-max-length`.
    with_queue_max_length(queue_max_length: u32),
    /// Sets the consumer prefetch (`basic.qos`).
    with_prefetch(prefetch: u16),
});

impl AmqpConfig {
    /// The heartbeat proposed to the broker: [`CommonOptions::heartbeat`] in whole seconds
    /// (rounded up; 0 turns heartbeats off). A peer silent for two heartbeats is taken as gone.
    pub(crate) fn heartbeat_seconds(&self) -> u16 {
        let heartbeat = self.options.heartbeat;
        if heartbeat.is_zero() {
            return 0;
        }
        let seconds = heartbeat.as_millis().div_ceil(1000);
        u16::try_from(seconds).unwrap_or(u16::MAX)
    }

    /// Parses `amqp://[user[:password]@]host[:port][/vhost][?param=value…]` or `amqps://…`.
    ///
    /// The vhost is the percent-decoded path (`%2f` is `/`, the default). A user info without
    /// `:` (`amqp://something@host`) is refused with an
    /// [`ErrorKind::Invalid`](pubsub_core::ErrorKind::Invalid) error that does not repeat it:
    /// every backend reads a lone user info as a secret (Redis as the password, NATS as a
    /// token), and AMQP has no login by a secret alone; write `user:password@` (RabbitMQ
    /// refuses empty passwords anyway). The query takes the [`CommonOptions`] parameters, `exchange`,
    /// `durable_exchange`, `queue_max_length`, `prefetch` and `heartbeat`. Errors never contain the password.
    pub fn from_url(url: &str) -> Result<Self> {
        let mut parsed = ServerUrl::parse(url, &["amqp", "amqps"])?;
        let host = parsed.single_host()?.clone();
        let (user, password) = match (parsed.user.take(), parsed.password.take()) {
            (None, Some(_lone)) => {
                return Err(Error::invalid_config(
                    "an AMQP URL takes `user:password@` before the host, not one part alone \
                     (a lone part is read as a secret on every backend, and AMQP has no \
                     login by a secret alone)",
                ))
            }
            other => other,
        };
        let tls = (parsed.scheme == "amqps").then(TlsOptions::default);
        let mut config = AmqpConfig {
            options: CommonOptions::default().take_query(&mut parsed.query)?,
            port: host.port.unwrap_or(if tls.is_some() { 5671 } else { 5672 }),
            host: host.host,
            vhost: match parsed.path.as_str() {
                "" => "/".to_string(),
                path => path.to_string(),
            },
            user,
            password,
            tls,
            ..AmqpConfig::default()
        };
        parsed.take_into("exchange", &mut config.exchange)?;
        parsed.take_into("durable_exchange", &mut config.durable_exchange)?;
        parsed.take_into("queue_max_length", &mut config.queue_max_length)?;
        parsed.take_into("prefetch", &mut config.prefetch)?;
        parsed.reject_unknown_query(QUERY_KEYS)?;
        config.validate()?;
        Ok(config)
    }

    /// Sets the broker address.
    pub fn with_server(mut self, host: impl Into<String>, port: u16) -> Self {
        self.host = host.into();
        self.port = port;
        self
    }

    /// Sets the user name and password.
    pub fn with_credentials(
        mut self,
        user: impl Into<String>,
        password: impl Into<Secret>,
    ) -> Self {
        self.user = Some(user.into());
        self.password = Some(password.into());
        self
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.host.is_empty() {
            return Err(Error::invalid_config("the AMQP host is empty"));
        }
        if self.exchange.is_empty() || self.exchange.len() > 255 {
            return Err(Error::invalid_config(
                "the exchange name must be 1 to 255 bytes",
            ));
        }
        if self.queue_max_length == 0 || self.prefetch == 0 {
            return Err(Error::invalid_config(
                "queue_max_length and prefetch must be at least 1",
            ));
        }
        Ok(())
    }

    /// The largest payload: the configured one, or [`DEFAULT_MAX_PAYLOAD`], at most
    /// [`MAX_PAYLOAD_CEILING`].
    pub(crate) fn max_payload(&self) -> usize {
        self.options
            .payload_limit_within(DEFAULT_MAX_PAYLOAD, MAX_PAYLOAD_CEILING)
    }

    /// lapin's TLS settings from [`AmqpConfig::tls`]: the extra roots (added to the system's)
    /// and the client certificate, read off the async runtime. A file that cannot be read is
    /// an [`ErrorKind::Invalid`](pubsub_core::ErrorKind::Invalid) error naming it.
    pub(crate) async fn lapin_tls(&self) -> Result<OwnedTLSConfig> {
        let Some(tls) = self.tls.clone() else {
            return Ok(OwnedTLSConfig::default());
        };
        tokio::task::spawn_blocking(move || {
            let read = |path: &std::path::Path| {
                std::fs::read(path).map_err(|e| {
                    Error::invalid_config(format!("{} cannot be read", path.display()))
                        .with_source(e)
                })
            };
            let mut roots = String::new();
            for path in &tls.root_certificates {
                let pem = String::from_utf8(read(path)?).map_err(|e| {
                    Error::invalid_config(format!("{} is not PEM text", path.display()))
                        .with_source(e)
                })?;
                roots.push_str(&pem);
                roots.push('\n');
            }
            let identity = match &tls.client_certificate {
                Some((cert, key)) => Some(OwnedIdentity::PKCS8 {
                    pem: read(cert)?,
                    key: read(key)?,
                }),
                None => None,
            };
            Ok(OwnedTLSConfig {
                identity,
                cert_chain: (!roots.is_empty()).then_some(roots),
            })
        })
        .await
        .map_err(|e| Error::invalid_config("loading the TLS certificates failed").with_source(e))?
    }

    /// The URI lapin connects to (built field by field: nothing is re-encoded).
    pub(crate) fn uri(&self) -> AMQPUri {
        let (username, password) = match (&self.user, &self.password) {
            (None, None) => ("guest".to_string(), "guest".to_string()),
            (user, password) => (
                user.clone().unwrap_or_else(|| "guest".to_string()),
                password
                    .as_ref()
                    .map(|p| p.expose().to_string())
                    .unwrap_or_default(),
            ),
        };
        let timeout_ms =
            u64::try_from(self.options.connect_timeout.as_millis()).unwrap_or(u64::MAX);
        AMQPUri {
            scheme: if self.tls.is_some() {
                AMQPScheme::AMQPS
            } else {
                AMQPScheme::AMQP
            },
            authority: AMQPAuthority {
                userinfo: AMQPUserInfo { username, password },
                host: self.host.clone(),
                port: self.port,
            },
            vhost: self.vhost.clone(),
            query: AMQPQueryString {
                connection_timeout: Some(timeout_ms),
                heartbeat: Some(self.heartbeat_seconds()),
                ..AMQPQueryString::default()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "pa55-w0rd!";

    #[test]
    fn parses_urls() {
        let c = AmqpConfig::from_url("amqp://127.0.0.1").unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.vhost.as_str()),
            ("127.0.0.1", 5672, "/")
        );
        let uri = c.uri();
        assert_eq!(uri.authority.userinfo.username, "guest");
        assert_eq!(uri.authority.userinfo.password, "guest");

        let c = AmqpConfig::from_url(
            "AMQPS://u:p%40ss@mq.example/v%2fh?exchange=ev&durable_exchange=true&queue_max_length=9&prefetch=7&buffer=3&heartbeat=0",
        )
        .unwrap();
        assert_eq!((c.port, c.vhost.as_str()), (5671, "v/h"));
        assert_eq!(c.tls, Some(TlsOptions::default()));
        assert_eq!((c.exchange.as_str(), c.durable_exchange), ("ev", true));
        assert_eq!(
            (c.queue_max_length, c.prefetch, c.options.buffer),
            (9, 7, 3)
        );
        assert_eq!(c.uri().query.heartbeat, Some(0));
        assert_eq!(c.password.as_ref().map(Secret::expose), Some("p@ss"));
        assert_eq!(c.uri().scheme, AMQPScheme::AMQPS);

        let c = AmqpConfig::from_url("amqp://bob:@h:1/%2f").unwrap();
        assert_eq!((c.user.as_deref(), c.vhost.as_str()), (Some("bob"), "/"));
        assert_eq!(c.uri().authority.userinfo.password, "");
    }

    #[test]
    fn a_lone_user_info_is_refused_without_repeating_it() {
        let e = AmqpConfig::from_url(&format!("amqp://{SECRET}@h")).unwrap_err();
        assert_eq!(e.kind(), pubsub_core::ErrorKind::Invalid);
        assert!(!format!("{e} {e:?}").contains(SECRET), "{e:?}");
    }

    #[test]
    fn bad_urls_are_typed_errors_without_the_password() {
        let bad = [
            format!("redis://u:{SECRET}@host"),
            format!("amqp://u:{SECRET}@host:notaport"),
            format!("amqp://u:{SECRET}@h?prefetch={SECRET}"),
            format!("amqp://u:{SECRET}@h?prefetch=0"),
            format!("amqp://u:{SECRET}@h?exchange="),
            format!("amqp://u:{SECRET}@h?{SECRET}=1"),
            format!("amqp://u:{SECRET}@a,b"),
            format!("amqp://u:{SECRET}%ff@host"),
        ];
        for url in bad {
            let err = AmqpConfig::from_url(&url).expect_err(&url.replace(SECRET, "***"));
            assert_eq!(err.kind(), pubsub_core::ErrorKind::Invalid, "{err:?}");
            assert!(!format!("{err} {err:?}").contains(SECRET));
        }
    }

    #[test]
    fn debug_hides_the_password() {
        let c = AmqpConfig::from_url(&format!("amqp://bob:{SECRET}@h")).unwrap();
        let text = format!("{c:?} {c:#?}");
        assert!(!text.contains(SECRET) && text.contains("bob"), "{text}");
        let c = AmqpConfig::default().with_credentials("u", SECRET);
        assert!(!format!("{c:?}").contains(SECRET));
    }
}
