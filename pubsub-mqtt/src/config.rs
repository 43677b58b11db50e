//! [`MqttConfig`]: the broker, the credentials, and the settings only MQTT has.

use std::fmt;

use pubsub_core::adapter::{config_setters, random_u64, ServerUrl};
use pubsub_core::{CommonOptions, Error, Result, Secret, TlsOptions, WithOptions};

/// Default MQTT port (`mqtt://`).
pub const DEFAULT_PORT: u16 = 1883;

/// Default MQTT port over TLS (`mqtts://`).
pub const DEFAULT_TLS_PORT: u16 = 8883;

/// Settings of an MQTT handle.
///
/// From a URL with [`MqttConfig::from_url`], or from [`MqttConfig::default`]
/// (`mqtt://127.0.0.1:1883`) and the setters: the MQTT ones here, the shared ones
/// (`with_publish_timeout`, `with_heartbeat`, `with_max_payload`, …) from [`WithOptions`].
/// `Debug` never shows the password.
///
/// ```
/// use pubsub_mqtt::MqttConfig;
/// let config = MqttConfig::from_url("mqtts://app:s3cret@broker.example?client_id=svc-1&buffer=64")?;
/// assert_eq!((config.host.as_str(), config.port), ("broker.example", 8883));
/// assert!(config.tls.is_some());
/// assert_eq!(config.client_id.as_deref(), Some("svc-1"));
/// assert!(!format!("{config:?}").contains("s3cret"));
/// # Ok::<(), pubsub_core::Error>(())
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct MqttConfig {
    /// The settings every backend shares.
    pub options: CommonOptions,
    /// The broker's host name or address.
    pub host: String,
    /// The broker's port.
    pub port: u16,
    /// The user name and password, if the broker wants them.
    pub credentials: Option<(String, Secret)>,
    /// TLS (set by `mqtts://`): the system's roots plus the given ones, and a client
    /// certificate for mutual TLS. `None`: plain TCP.
    pub tls: Option<TlsOptions>,
    /// The MQTT client identifier; `None`: `pubsub-` and 16 random hex digits, new for each
    /// handle (two connections with one identifier make the broker drop the older one).
    pub client_id: Option<String>,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            options: CommonOptions::default(),
            host: "127.0.0.1".to_string(),
            port: DEFAULT_PORT,
            credentials: None,
            tls: None,
            client_id: None,
        }
    }
}

impl WithOptions for MqttConfig {
    fn options_mut(&mut self) -> &mut CommonOptions {
        &mut self.options
    }
}

config_setters!(MqttConfig {
    /// Requires TLS, with these settings (`None`: plain TCP).
    with_tls(tls: Option<TlsOptions>),
    /// Sets the MQTT client identifier (`None`: a random one per handle).
    with_client_id(client_id: Option<String>),
});

impl MqttConfig {
    /// Parses `mqtt://[user:password@]host[:port][?query]` (`mqtts://` for TLS, port 8883 by
    /// default).
    ///
    /// The user and password are percent-decoded; a user info without `:` (a bare secret) is
    /// refused, as MQTT has no token. The query takes `client_id` and the [`CommonOptions`]
    /// parameters (`buffer`, `publish_timeout`, `heartbeat`, `max_payload`, …); there is no
    /// path. Errors are [`ErrorKind::Invalid`](pubsub_core::ErrorKind::Invalid) and never repeat
    /// the URL or the password.
    pub fn from_url(url: &str) -> Result<Self> {
        let mut url = ServerUrl::parse(url, &["mqtt", "mqtts"])?;
        if !url.path.is_empty() {
            return Err(Error::invalid_config("the MQTT URL takes no path"));
        }
        let options = CommonOptions::default().take_query(&mut url.query)?;
        let client_id = url.take_parsed::<String>("client_id")?;
        url.reject_unknown_query(&["client_id"])?;
        let credentials = match (url.user.take(), url.password.take()) {
            (None, None) => None,
            (Some(user), Some(password)) => Some((user, password)),
            _ => {
                return Err(Error::invalid_config(
                    "the MQTT URL's user info must be `user:password@` (MQTT has no token)",
                ))
            }
        };
        let tls = url.scheme == "mqtts";
        let host = url.single_host()?;
        Ok(MqttConfig {
            options,
            host: host.host.clone(),
            port: host
                .port
                .unwrap_or(if tls { DEFAULT_TLS_PORT } else { DEFAULT_PORT }),
            credentials,
            tls: tls.then(TlsOptions::default),
            client_id,
        })
    }

    /// Sets the broker's host and port.
    pub fn with_server(mut self, host: impl Into<String>, port: u16) -> Self {
        (self.host, self.port) = (host.into(), port);
        self
    }

    /// Authenticates with a user name and password.
    pub fn with_user_password(
        mut self,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.credentials = Some((user.into(), Secret::from(password.into())));
        self
    }

    /// `host:port`, for errors (never the credentials).
    pub(crate) fn endpoint(&self) -> String {
        pubsub_core::adapter::address(&self.host, self.port)
    }

    /// The client identifier to connect with.
    pub(crate) fn client_id(&self) -> String {
        (self.client_id.clone()).unwrap_or_else(|| format!("pubsub-{:016x}", random_u64()))
    }
}

impl fmt::Debug for MqttConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let user = self.credentials.as_ref().map(|(user, _)| user);
        f.debug_struct("MqttConfig")
            .field("options", &self.options)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &user)
            .field("password", &self.credentials.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls)
            .field("client_id", &self.client_id)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pubsub_core::ErrorKind;
    use std::time::Duration;

    fn parse(url: &str) -> MqttConfig {
        MqttConfig::from_url(url).unwrap()
    }

    #[test]
    fn hosts_ports_and_query() {
        let c = parse("MQTT://h");
        assert_eq!(
            (c.host.as_str(), c.port, c.tls.is_none()),
            ("h", 1883, true)
        );
        let c = parse("mqtts://[::1]:9?heartbeat=5s&max_payload=100&client_id=a%2Fb");
        assert_eq!((c.host.as_str(), c.port, c.tls.is_some()), ("::1", 9, true));
        assert_eq!(c.endpoint(), "[::1]:9");
        assert_eq!(c.options.heartbeat, Duration::from_secs(5));
        assert_eq!(c.options.max_payload, Some(100));
        assert_eq!(c.client_id(), "a/b");
        let (a, b) = (
            MqttConfig::default().client_id(),
            MqttConfig::default().client_id(),
        );
        assert!(a.starts_with("pubsub-") && a != b, "{a} {b}");
    }

    #[test]
    fn credentials() {
        let c = parse("mqtt://alice:p%40ss%3Aw0rd@h");
        let (user, password) = c.credentials.unwrap();
        assert_eq!((user.as_str(), password.expose()), ("alice", "p@ss:w0rd"));
        let c = parse("mqtt://alice:@h").credentials.unwrap();
        assert_eq!(c.1.expose(), "");
    }

    #[test]
    fn secrets_never_show() {
        for url in [
            "mqtt://hunter2@h",
            "mqtt://:hunter2@h",
            "mqtt://u:hunter2@h:notaport",
            "mqtt://u:hunter2@h/path",
            "mqtt://u:hunter2@h?token=hunter2",
            "mqtt://u:hunter2@h,h2",
            "ftp://u:hunter2@h",
            "mqtt://u:hunter2%ff@h",
            "mqtt://u:hunter2@ho st",
        ] {
            let e = MqttConfig::from_url(url).expect_err(url);
            assert_eq!(e.kind(), ErrorKind::Invalid, "{url}: {e}");
            assert!(!format!("{e} {e:?}").contains("hunter2"), "{url}: {e}");
        }
        for c in [
            parse("mqtt://alice:hunter2@h"),
            parse("mqtts://alice:hunter2@h"),
            MqttConfig::default().with_user_password("u", "hunter2"),
        ] {
            let text = format!("{c:?} {}", c.endpoint());
            assert!(
                !text.contains("hunter2") && text.contains("<redacted>"),
                "{text}"
            );
        }
    }
}
