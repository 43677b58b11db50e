//! [`connect`]: choose a backend by URL scheme.

use pubsub_core::adapter::parse_query;
use pubsub_core::memory::{MemoryBus, MemoryConfig};
use pubsub_core::{CommonOptions, Error, Hub, Result, WithOptions};

/// The backends [`connect`] knows, by URL scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Scheme {
    /// `memory://[NAME]`
    Memory,
    /// `redis://`, `rediss://`
    Redis,
    /// `nats://`, `tls://`
    Nats,
    /// `amqp://`, `amqps://`
    Amqp,
    /// `kafka://`
    Kafka,
    /// `mqtt://`, `mqtts://`
    Mqtt,
    /// `postgres://`, `postgresql://`
    Postgres,
}

impl Scheme {
    /// Reads the scheme of `url` (the part before `://`, case-insensitive).
    ///
    /// ```
    /// use pubsub::Scheme;
    /// assert_eq!(Scheme::of("rediss://h:6380").unwrap(), Scheme::Redis);
    /// assert!(Scheme::of("ftp://x").is_err());
    /// ```
    pub fn of(url: &str) -> Result<Scheme> {
        let scheme = url
            .split_once("://")
            .map(|(s, _)| s.to_ascii_lowercase())
            .ok_or_else(|| Error::invalid_config("a pub/sub URL looks like `scheme://…`"))?;
        Ok(match scheme.as_str() {
            "memory" => Scheme::Memory,
            "redis" | "rediss" => Scheme::Redis,
            "nats" | "tls" => Scheme::Nats,
            "amqp" | "amqps" => Scheme::Amqp,
            "kafka" | "kafkas" => Scheme::Kafka,
            "mqtt" | "mqtts" => Scheme::Mqtt,
            "postgres" | "postgresql" => Scheme::Postgres,
            // Nothing of the URL is printed: when its `://` comes late (`u:pass@h?x=nats://`),
            // what reads as the scheme holds the password.
            _ => {
                return Err(Error::invalid_config(
                    "unknown pub/sub URL scheme; expected memory://, redis://, rediss://, \
                     nats://, tls://, amqp://, amqps://, kafka://, mqtt://, mqtts://, postgres:// or \
                     postgresql://",
                ));
            }
        })
    }

    /// The Cargo feature of the `pubsub` crate that enables this backend (`None`: always on).
    pub fn feature(self) -> Option<&'static str> {
        match self {
            Scheme::Memory => None,
            Scheme::Redis => Some("redis"),
            Scheme::Nats => Some("nats"),
            Scheme::Amqp => Some("amqp"),
            Scheme::Kafka => Some("kafka"),
            Scheme::Mqtt => Some("mqtt"),
            Scheme::Postgres => Some("postgres"),
        }
    }
}

/// Connects to the backend named by `url` and returns a shareable handle.
///
/// A scheme whose Cargo feature is off gives an [`ErrorKind::Unsupported`](crate::ErrorKind)
/// error naming the feature. Errors never repeat a password from the URL; a failed connect
/// names where it went ([`Error::endpoint`], `host:port`) and, in its `Display`, why
/// (`redis: connect to 127.0.0.1:6390: connection error: …: Connection refused (os error 111)`).
///
/// ```
/// # async fn demo() {
/// use pubsub::ErrorKind;
/// let err = pubsub::connect("unknown://localhost:9092").await.unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::Invalid);
/// # }
/// # tokio::runtime::Runtime::new().unwrap().block_on(demo());
/// ```
pub async fn connect(url: &str) -> Result<Hub> {
    let scheme = Scheme::of(url)?;
    match scheme {
        Scheme::Memory => connect_memory(url).await,
        #[cfg(feature = "redis")]
        Scheme::Redis => {
            let config = pubsub_redis::RedisConfig::from_url(url)?;
            pubsub_redis::connect(config)
                .await
                .map_err(|e| at_endpoint(e, url, &["redis", "rediss"], 6379))
        }
        #[cfg(feature = "nats")]
        Scheme::Nats => {
            let config = pubsub_nats::NatsConfig::from_url(url)?;
            pubsub_nats::connect(config)
                .await
                .map_err(|e| at_endpoint(e, url, &["nats", "tls"], 4222))
        }
        #[cfg(feature = "amqp")]
        Scheme::Amqp => {
            let config = pubsub_amqp::AmqpConfig::from_url(url)?;
            pubsub_amqp::connect(config)
                .await
                .map_err(|e| at_endpoint(e, url, &["amqp", "amqps"], 5672))
        }
        #[cfg(feature = "kafka")]
        Scheme::Kafka => {
            let config = pubsub_kafka::KafkaConfig::from_url(url)?;
            pubsub_kafka::connect(config)
                .await
                .map_err(|e| at_endpoint(e, url, &["kafka", "kafkas"], 9092))
        }
        #[cfg(feature = "mqtt")]
        Scheme::Mqtt => {
            let config = pubsub_mqtt::MqttConfig::from_url(url)?;
            pubsub_mqtt::connect(config)
                .await
                .map_err(|e| at_endpoint(e, url, &["mqtt", "mqtts"], config_port(url)))
        }
        #[cfg(feature = "postgres")]
        Scheme::Postgres => {
            let config = pubsub_postgres::PostgresConfig::from_url(url)?;
            pubsub_postgres::connect(config).await.map_err(|e| {
                let schemes = ["postgres", "postgresql"];
                at_endpoint(e, url, &schemes, pubsub_postgres::DEFAULT_PORT)
            })
        }
        #[allow(unreachable_patterns)]
        other => Err(disabled(url, other)),
    }
}

/// The default port of an `mqtt://` (1883) or `mqtts://` (8883) URL.
#[cfg(feature = "mqtt")]
fn config_port(url: &str) -> u16 {
    match url
        .get(..6)
        .is_some_and(|s| s.eq_ignore_ascii_case("mqtts:"))
    {
        true => pubsub_mqtt::DEFAULT_TLS_PORT,
        false => pubsub_mqtt::DEFAULT_PORT,
    }
}

/// Names where a failed connect went: the URL's hosts, never its user info.
#[allow(dead_code)] // unused when no broker feature is on
fn at_endpoint(error: Error, url: &str, schemes: &[&str], default_port: u16) -> Error {
    if error.operation() != Some(pubsub_core::Operation::Connect) {
        return error;
    }
    match pubsub_core::adapter::ServerUrl::parse(url, schemes) {
        Ok(parsed) => error.with_endpoint(parsed.endpoint(default_port)),
        Err(_) => error,
    }
}

/// `memory://[NAME][?query]`: the process-wide bus, or the one with that name.
async fn connect_memory(url: &str) -> Result<Hub> {
    let rest = url.split_once("://").map_or("", |(_, rest)| rest);
    let (name, query) = rest.split_once('?').unwrap_or((rest, ""));
    let name = name.trim_end_matches('/');
    if name.contains(['/', '#', '@', ':']) {
        return Err(Error::invalid_config(
            "a memory URL is `memory://` or `memory://NAME`, with an optional query",
        ));
    }
    let mut query = parse_query(query);
    let options = CommonOptions::default().take_query(&mut query)?;
    if !query.is_empty() {
        return Err(Error::invalid_config(
            "the memory URL has a query parameter it does not take",
        ));
    }
    let bus = if name.is_empty() {
        MemoryBus::global()
    } else {
        MemoryBus::named(name)
    };
    let config = MemoryConfig::default().with_options(options);
    Ok(bus.connect_with(config).await?.0)
}

#[allow(dead_code)]
fn disabled(url: &str, scheme: Scheme) -> Error {
    let scheme_text = url.split_once("://").map_or("", |(s, _)| s);
    Error::feature_disabled(scheme_text, scheme.feature().unwrap_or("none"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pubsub_core::ErrorKind;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn memory_urls_connect() {
        rt().block_on(async {
            for url in [
                "memory://",
                "memory://x",
                "MEMORY://x/",
                "memory://x?buffer=8",
            ] {
                let ps = connect(url).await.unwrap();
                assert_eq!(ps.backend(), "memory");
                ps.close().await.unwrap();
            }
        });
    }

    #[test]
    fn named_memory_buses_are_shared_by_name() {
        rt().block_on(async {
            let a = connect("memory://shared-name").await.unwrap();
            let b = connect("memory://shared-name").await.unwrap();
            let c = connect("memory://other-name").await.unwrap();
            let mut sb = b.subscribe("t".parse().unwrap()).await.unwrap();
            let mut sc = c.subscribe("t".parse().unwrap()).await.unwrap();
            a.publish(pubsub_core::Message::new("t".parse().unwrap(), "x"))
                .await
                .unwrap();
            assert!(sb.recv().await.is_some());
            assert!(sc.is_empty());
            for ps in [a, b, c] {
                ps.close().await.unwrap();
            }
            assert!(sc.recv().await.is_none());
        });
    }

    #[test]
    fn bad_urls_are_typed_errors() {
        rt().block_on(async {
            for url in [
                "",
                "redis",
                "ftp://x",
                "memory://a/b",
                "memory://u:secret@x",
                "memory://x?secret=1",
                "memory://x?buffer=secret",
                "u:secret@h,nats://h2",
                "secret@h?x=nats://",
            ] {
                let err = connect(url).await.unwrap_err();
                assert_eq!(err.kind(), ErrorKind::Invalid, "{url}: {err}");
                assert!(!err.to_string().contains("secret"));
            }
        });
    }

    #[test]
    fn disabled_features_are_named() {
        rt().block_on(async {
            let cases: &[(&str, &str, bool)] = &[
                (
                    "redis://:secret@localhost",
                    "redis",
                    cfg!(feature = "redis"),
                ),
                ("nats://localhost", "nats", cfg!(feature = "nats")),
                (
                    "amqp://guest:secret@localhost",
                    "amqp",
                    cfg!(feature = "amqp"),
                ),
                ("kafka://localhost:9092", "kafka", cfg!(feature = "kafka")),
                ("mqtts://u:secret@localhost", "mqtt", cfg!(feature = "mqtt")),
                (
                    "postgresql://u:secret@localhost/db",
                    "postgres",
                    cfg!(feature = "postgres"),
                ),
            ];
            for &(url, feature, enabled) in cases {
                if enabled {
                    continue;
                }
                let err = connect(url).await.unwrap_err();
                assert_eq!(err.kind(), ErrorKind::Unsupported, "{url}: {err}");
                let text = err.to_string();
                assert!(text.contains(feature) && !text.contains("secret"), "{text}");
            }
        });
    }
}
