//! [`KafkaConfig`]: where the brokers are and how the adapter uses them.

use std::fmt;
use std::time::Duration;

use pubsub_core::adapter::{config_setters, ServerUrl};
use pubsub_core::{CommonOptions, Error, Result, Secret, WithOptions};
use rdkafka::ClientConfig;

/// Default largest payload: 1 MiB (Kafka's default `message.max.bytes` is about 1 MiB, and
/// the record's headers and topic must fit beside it).
pub const DEFAULT_MAX_PAYLOAD: usize = 1024 * 1024 - 16 * 1024;

/// Room the producer's `message.max.bytes` leaves beside the payload for the record's topic,
/// headers and framing.
pub(crate) const RECORD_ALLOWANCE: usize = 64 * 1024;

/// The largest `max_payload` the adapter takes: librdkafka's `message.max.bytes` is at most
/// 1 000 000 000, and the producer sets it to the payload limit plus 64 KiB for the record's
/// topic and headers. A larger `max_payload` is lowered to this (the broker's own
/// `message.max.bytes`, about 1 MiB by default, may refuse less).
pub const MAX_PAYLOAD_CEILING: usize = 1_000_000_000 - RECORD_ALLOWANCE;

/// The query parameters of a Kafka URL besides the [`CommonOptions`] ones.
const QUERY_KEYS: &[&str] = &[
    "client_id",
    "partitions",
    "replication",
    "linger",
    "fetch_wait",
    "discovery_interval",
    "idempotence",
];

/// Settings of a Kafka handle.
///
/// Build it from a URL with [`KafkaConfig::from_url`] or start from [`KafkaConfig::default`]
/// (`kafka://127.0.0.1:9092`), then adjust it with the `with_*` setters (the shared ones come
/// from [`WithOptions`]). Anything else librdkafka takes (TLS, SASL, buffer sizes…) goes
/// through [`KafkaConfig::with_setting`], or comes with the application's own
/// [`rdkafka::ClientConfig`] ([`KafkaConfig::with_client_config`]). `Debug` shows the names
/// of those settings, never their values.
///
/// ```
/// use std::time::Duration;
/// use pubsub_kafka::KafkaConfig;
/// let config = KafkaConfig::from_url("kafka://k1:9092,k2?partitions=3&linger=5ms")?
///     .with_setting("sasl.password", "s3cret");
/// assert_eq!(config.servers, ["k1:9092", "k2:9092"]);
/// assert_eq!((config.partitions, config.linger), (3, Duration::from_millis(5)));
/// assert!(!format!("{config:?}").contains("s3cret"));
/// # Ok::<(), pubsub_core::Error>(())
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct KafkaConfig {
    /// The settings every backend shares (buffer, timeouts, backoff, payload limit).
    pub options: CommonOptions,
    /// Bootstrap servers, `host:port` each.
    pub servers: Vec<String>,
    /// The client id the handle's clients announce (`client.id`); default `pubsub`.
    pub client_id: String,
    /// Partitions of each topic the handle creates (default 1). A publisher's messages to a
    /// topic always go to one partition (the record key is the handle's id), so their order
    /// holds whatever the count.
    pub partitions: i32,
    /// Replication factor of each topic the handle creates (default 1).
    pub replication: i32,
    /// How long the producer waits to batch messages (`linger.ms`, default 0: latency).
    pub linger: Duration,
    /// How long the broker may hold a fetch open when it has no data (`fetch.wait.max.ms`,
    /// default 10 ms). Lower gives less latency and more fetch requests.
    pub fetch_wait: Duration,
    /// How often the handle looks for new topics matching its wildcard patterns (default
    /// 250 ms): a topic created after a wildcard subscribe is delivered from its first message
    /// within about this long.
    pub discovery_interval: Duration,
    /// Whether the producer is idempotent (default true), so that retries neither duplicate
    /// nor reorder.
    pub idempotence: bool,
    /// Further librdkafka settings, applied last (they win over the adapter's own).
    pub settings: Vec<(String, Secret)>,
    /// The application's client configuration, the base of the adapter's.
    pub client_config: Option<ClientConfig>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            options: CommonOptions::default(),
            servers: vec!["127.0.0.1:9092".to_string()],
            client_id: "pubsub".to_string(),
            partitions: 1,
            replication: 1,
            linger: Duration::ZERO,
            fetch_wait: Duration::from_millis(10),
            discovery_interval: Duration::from_millis(250),
            idempotence: true,
            settings: Vec::new(),
            client_config: None,
        }
    }
}

impl fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.settings.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("KafkaConfig")
            .field("options", &self.options)
            .field("servers", &self.servers)
            .field("client_id", &self.client_id)
            .field("partitions", &self.partitions)
            .field("replication", &self.replication)
            .field("linger", &self.linger)
            .field("fetch_wait", &self.fetch_wait)
            .field("discovery_interval", &self.discovery_interval)
            .field("idempotence", &self.idempotence)
            .field("settings", &names)
            .field("client_config", &self.client_config.is_some())
            .finish()
    }
}

impl WithOptions for KafkaConfig {
    fn options_mut(&mut self) -> &mut CommonOptions {
        &mut self.options
    }
}

config_setters!(KafkaConfig {
    /// Sets the partition count of the topics the handle creates.
    with_partitions(partitions: i32),
    /// Sets the replication factor of the topics the handle creates.
    with_replication(replication: i32),
    /// Sets the producer's `linger.ms`.
    with_linger(linger: Duration),
    /// Sets the consumer's `fetch.wait.max.ms`.
    with_fetch_wait(fetch_wait: Duration),
    /// Sets how often wildcard patterns look for new topics.
    with_discovery_interval(discovery_interval: Duration),
    /// Turns the idempotent producer on or off.
    with_idempotence(idempotence: bool),
});

impl KafkaConfig {
    /// Parses `kafka://[user:password@]host[:port][,host[:port]…][?param=value…]` (port 9092 by
    /// default), or `kafkas://…` for TLS.
    ///
    /// A user and password turn on SASL PLAIN (`SASL_PLAINTEXT`, or `SASL_SSL` with
    /// `kafkas://`). The query takes the [`CommonOptions`] parameters, `client_id`,
    /// `partitions`, `replication`, `linger`, `fetch_wait`, `discovery_interval` (durations
    /// such as `5ms`) and `idempotence`. Errors never contain the password.
    pub fn from_url(url: &str) -> Result<Self> {
        let mut parsed = ServerUrl::parse(url, &["kafka", "kafkas"])?;
        let tls = parsed.scheme == "kafkas";
        let mut config = KafkaConfig {
            options: CommonOptions::default().take_query(&mut parsed.query)?,
            servers: parsed.hosts.iter().map(|h| h.address(9092)).collect(),
            ..KafkaConfig::default()
        };
        match (parsed.user.take(), parsed.password.take()) {
            (None, None) if tls => config = config.with_setting("security.protocol", "ssl"),
            (None, None) => {}
            (user, password) => {
                let protocol = if tls { "sasl_ssl" } else { "sasl_plaintext" };
                config = config
                    .with_setting("security.protocol", protocol)
                    .with_setting("sasl.mechanism", "PLAIN")
                    .with_setting("sasl.username", user.unwrap_or_default());
                if let Some(password) = password {
                    config
                        .settings
                        .push(("sasl.password".to_string(), password));
                }
            }
        }
        parsed.take_into("client_id", &mut config.client_id)?;
        parsed.take_into("partitions", &mut config.partitions)?;
        parsed.take_into("replication", &mut config.replication)?;
        parsed.take_duration("linger", &mut config.linger)?;
        parsed.take_duration("fetch_wait", &mut config.fetch_wait)?;
        parsed.take_duration("discovery_interval", &mut config.discovery_interval)?;
        parsed.take_into("idempotence", &mut config.idempotence)?;
        parsed.reject_unknown_query(QUERY_KEYS)?;
        config.validate()?;
        Ok(config)
    }

    /// Sets the bootstrap servers (`host:port` each).
    pub fn with_servers<S: Into<String>>(mut self, servers: impl IntoIterator<Item = S>) -> Self {
        self.servers = servers.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the client id.
    pub fn with_client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = client_id.into();
        self
    }

    /// Adds a librdkafka setting (`security.protocol`, `ssl.ca.location`, `sasl.password`…),
    /// applied after the adapter's own. Its value is kept as a [`Secret`].
    pub fn with_setting(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.push((key.into(), Secret::from(value.into())));
        self
    }

    /// Starts from the application's own client configuration: the adapter adds its settings
    /// to it (the servers come from it when it sets `bootstrap.servers`).
    pub fn with_client_config(mut self, client_config: ClientConfig) -> Self {
        self.client_config = Some(client_config);
        self
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let has_servers = self
            .client_config
            .as_ref()
            .is_some_and(|c| c.get("bootstrap.servers").is_some());
        if self.servers.is_empty() && !has_servers {
            return Err(Error::invalid_config("no Kafka bootstrap server"));
        }
        if self.partitions < 1 || self.replication < 1 {
            return Err(Error::invalid_config(
                "partitions and replication must be at least 1",
            ));
        }
        if self.client_id.is_empty() {
            return Err(Error::invalid_config("the client id is empty"));
        }
        if self.discovery_interval.is_zero() {
            return Err(Error::invalid_config("discovery_interval must not be zero"));
        }
        Ok(())
    }

    /// The largest payload: the configured one, or [`DEFAULT_MAX_PAYLOAD`], at most
    /// [`MAX_PAYLOAD_CEILING`].
    pub(crate) fn max_payload(&self) -> usize {
        self.options
            .payload_limit_within(DEFAULT_MAX_PAYLOAD, MAX_PAYLOAD_CEILING)
    }

    /// The librdkafka configuration every client of the handle starts from.
    pub(crate) fn base(&self) -> ClientConfig {
        let mut c = self.client_config.clone().unwrap_or_default();
        if c.get("bootstrap.servers").is_none() || !self.servers.is_empty() {
            c.set("bootstrap.servers", self.servers.join(","));
        }
        let backoff_max = millis(self.options.backoff.max).max(1);
        c.set("client.id", &self.client_id)
            .set(
                "reconnect.backoff.ms",
                millis(self.options.backoff.initial)
                    .clamp(1, backoff_max)
                    .to_string(),
            )
            .set("reconnect.backoff.max.ms", backoff_max.to_string())
            .set(
                "socket.connection.setup.timeout.ms",
                millis(self.options.connect_timeout).max(1000).to_string(),
            )
            .set("socket.nagle.disable", "true")
            .set("log_level", "3");
        // The heartbeat: a request unanswered for three heartbeats closes its connection
        // (`socket.max.fails` is 1 by default), so a half-open connection is noticed; the
        // consumer always has a fetch in flight, so an idle handle is covered too.
        if !self.options.heartbeat.is_zero() {
            let timeout = millis(self.options.heartbeat * 3).max(100);
            c.set("socket.timeout.ms", timeout.to_string());
        }
        c
    }

    /// Applies the user's settings last.
    pub(crate) fn finish(&self, mut c: ClientConfig) -> ClientConfig {
        for (key, value) in &self.settings {
            c.set(key, value.expose());
        }
        c
    }
}

/// `d` in whole milliseconds, saturating.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "pa55-w0rd!";

    #[test]
    fn parses_urls() {
        let c = KafkaConfig::from_url("kafka://127.0.0.1").unwrap();
        assert_eq!(c.servers, ["127.0.0.1:9092"]);
        assert_eq!(
            (c.partitions, c.linger, c.idempotence),
            (1, Duration::ZERO, true)
        );
        let c = KafkaConfig::from_url(
            "KAFKA://a:1,b?client_id=me&partitions=2&replication=3&linger=2ms&fetch_wait=1s&discovery_interval=100ms&idempotence=false&buffer=7",
        )
        .unwrap();
        assert_eq!(c.servers, ["a:1", "b:9092"]);
        assert_eq!(
            (c.client_id.as_str(), c.partitions, c.replication),
            ("me", 2, 3)
        );
        assert_eq!(c.linger, Duration::from_millis(2));
        assert_eq!(c.fetch_wait, Duration::from_secs(1));
        assert_eq!(c.discovery_interval, Duration::from_millis(100));
        assert_eq!((c.idempotence, c.options.buffer), (false, 7));
        let c = KafkaConfig::from_url(&format!("kafkas://u:{SECRET}@h")).unwrap();
        let set = c.finish(c.base());
        assert_eq!(set.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(set.get("sasl.password"), Some(SECRET));
        assert_eq!(set.get("bootstrap.servers"), Some("h:9092"));
    }

    #[test]
    fn bad_urls_are_typed_errors_without_the_password() {
        let bad = [
            format!("redis://u:{SECRET}@host"),
            format!("kafka://u:{SECRET}@host:notaport"),
            format!("kafka://u:{SECRET}@h?partitions=0"),
            format!("kafka://u:{SECRET}@h?linger={SECRET}"),
            format!("kafka://u:{SECRET}@h?linger=5"),
            format!("kafka://u:{SECRET}@h?{SECRET}=1"),
            format!("kafka://u:{SECRET}@h?discovery_interval=0ms"),
        ];
        for url in bad {
            let err = KafkaConfig::from_url(&url).expect_err(&url.replace(SECRET, "***"));
            assert_eq!(err.kind(), pubsub_core::ErrorKind::Invalid, "{err:?}");
            assert!(!format!("{err} {err:?}").contains(SECRET));
        }
    }

    #[test]
    fn debug_hides_setting_values() {
        let c = KafkaConfig::from_url(&format!("kafka://bob:{SECRET}@h"))
            .unwrap()
            .with_setting("ssl.key.password", SECRET);
        let text = format!("{c:?} {c:#?}");
        assert!(
            !text.contains(SECRET) && text.contains("ssl.key.password"),
            "{text}"
        );
    }

    #[test]
    fn the_applications_config_is_the_base() {
        let mut app = ClientConfig::new();
        app.set("bootstrap.servers", "app:1")
            .set("socket.keepalive.enable", "true");
        let c = KafkaConfig::default()
            .with_servers(Vec::<String>::new())
            .with_client_config(app);
        c.validate().unwrap();
        let set = c.finish(c.base());
        assert_eq!(set.get("bootstrap.servers"), Some("app:1"));
        assert_eq!(set.get("socket.keepalive.enable"), Some("true"));
    }
}
