//! [`connect`]: choose a backend by URL scheme.

use std::sync::Arc;

use pubsub_core::memory::MemoryBus;
use pubsub_core::{Error, PubSub, Result};

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
            .ok_or_else(|| Error::InvalidConfig("a pub/sub URL looks like `scheme://…`".into()))?;
        Ok(match scheme.as_str() {
            "memory" => Scheme::Memory,
            "redis" | "rediss" => Scheme::Redis,
            "nats" | "tls" => Scheme::Nats,
            "amqp" | "amqps" => Scheme::Amqp,
            "kafka" => Scheme::Kafka,
            // The scheme is printed, the rest of the URL (which may hold a password) is not.
            other => {
                return Err(Error::InvalidConfig(format!(
                    "unknown pub/sub URL scheme `{other}`"
                )))
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
        }
    }
}

/// Connects to the backend named by `url` and returns a shareable handle.
///
/// A scheme whose Cargo feature is off gives [`Error::FeatureDisabled`] naming the feature.
/// Errors never repeat a password from the URL.
///
/// ```
/// # async fn demo() {
/// use pubsub::ErrorKind;
/// let err = pubsub::connect("kafka://localhost:9092").await.unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::Unsupported);
/// # }
/// # tokio::runtime::Runtime::new().unwrap().block_on(demo());
/// ```
pub async fn connect(url: &str) -> Result<Arc<dyn PubSub>> {
    let scheme = Scheme::of(url)?;
    match scheme {
        Scheme::Memory => connect_memory(url).await,
        #[cfg(feature = "redis")]
        Scheme::Redis => {
            let config = pubsub_redis::RedisConfig::from_url(url)?;
            Ok(Arc::new(pubsub_redis::connect(config).await?))
        }
        #[cfg(feature = "nats")]
        Scheme::Nats => {
            let config = pubsub_nats::NatsConfig::from_url(url)?;
            Ok(Arc::new(pubsub_nats::connect(config).await?))
        }
        #[cfg(feature = "amqp")]
        Scheme::Amqp => Err(Error::Unsupported {
            backend: "amqp",
            what: "the AMQP adapter is not implemented yet".into(),
        }),
        #[cfg(feature = "kafka")]
        Scheme::Kafka => Err(Error::Unsupported {
            backend: "kafka",
            what: "the Kafka adapter is not implemented yet".into(),
        }),
        #[allow(unreachable_patterns)]
        other => Err(disabled(url, other)),
    }
}

async fn connect_memory(url: &str) -> Result<Arc<dyn PubSub>> {
    let rest = url.split_once("://").map_or("", |(_, rest)| rest);
    let name = rest.trim_end_matches('/');
    let bus = if name.is_empty() {
        MemoryBus::global()
    } else if name.contains(['/', '?', '#', '@']) {
        return Err(Error::InvalidConfig(
            "a memory URL is `memory://` or `memory://NAME` (no path, query or user)".into(),
        ));
    } else {
        MemoryBus::named(name)
    };
    Ok(Arc::new(bus.connect().await?))
}

#[allow(dead_code)]
fn disabled(url: &str, scheme: Scheme) -> Error {
    let scheme_text = url.split_once("://").map_or("", |(s, _)| s).to_string();
    Error::FeatureDisabled {
        scheme: scheme_text,
        feature: scheme.feature().unwrap_or("none"),
    }
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
            for url in ["memory://", "memory://x", "MEMORY://x/"] {
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
            assert_eq!(sc.buffered(), 0);
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
            ];
            for &(url, feature, enabled) in cases {
                if enabled {
                    continue;
                }
                match connect(url).await.unwrap_err() {
                    Error::FeatureDisabled { feature: f, .. } => assert_eq!(f, feature),
                    other => panic!("{url}: {other}"),
                }
                let text = connect(url).await.unwrap_err().to_string();
                assert!(text.contains(feature) && !text.contains("secret"), "{text}");
            }
        });
    }
}
