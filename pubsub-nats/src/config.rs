//! [`NatsConfig`]: the servers, the credentials, and the settings only NATS has.

use std::fmt;
use std::time::Duration;

use async_nats::{ConnectOptions, ServerAddr};
use pubsub_core::adapter::{config_setters, ServerUrl};
use pubsub_core::{CommonOptions, Error, Result, Secret, TlsOptions, WithOptions};

/// Default NATS port.
pub const DEFAULT_PORT: u16 = 4222;

/// Default capacity of async-nats's channel of received messages, per native subscription.
///
/// The adapter's reader task empties it into the subscriptions' buffers without ever waiting,
/// so it only absorbs scheduling hiccups; when it overflows, async-nats drops the message and
/// reports a slow consumer, which shows in [`Stats::dropped`](pubsub_core::Stats::dropped).
/// The channel takes memory only for what it holds, so the default is generous: a burst of
/// 100 000 messages while the reader task waited for a busy CPU fits.
pub const DEFAULT_SUBSCRIPTION_CAPACITY: usize = 256 * 1024;

/// How a handle authenticates. `Debug` never shows the token or the password.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Credentials {
    /// A token (`nats://token@host`).
    Token(Secret),
    /// A user name and password (`nats://user:password@host`).
    UserPassword {
        /// The user name.
        user: String,
        /// The password.
        password: Secret,
    },
}

/// Settings of a NATS handle.
///
/// From a URL with [`NatsConfig::from_url`], or from [`NatsConfig::default`]
/// (`nats://127.0.0.1:4222`) and the setters: the NATS ones here, the shared ones
/// (`with_publish_timeout`, `with_command_timeout`, `with_connect_timeout`, `with_backoff`,
/// `with_buffer`, `with_max_payload`) from [`WithOptions`]. `Debug` never shows a password or
/// token.
///
/// ```
/// use std::time::Duration;
/// use pubsub_core::WithOptions;
/// use pubsub_nats::NatsConfig;
/// let config = NatsConfig::from_url("nats://app:s3cret@127.0.0.1:4222,127.0.0.1:4223?buffer=64")?
///     .with_publish_timeout(Duration::from_secs(2));
/// assert_eq!(config.servers, ["nats://127.0.0.1:4222", "nats://127.0.0.1:4223"]);
/// assert_eq!(config.options.buffer, 64);
/// assert!(!format!("{config:?}").contains("s3cret"));
/// # Ok::<(), pubsub_core::Error>(())
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct NatsConfig {
    /// The settings every backend shares.
    pub options: CommonOptions,
    /// Server URLs without credentials (`nats://host:port` or `tls://host:port`); the client
    /// connects to one of them and fails over to the others.
    pub servers: Vec<String>,
    /// How to authenticate, if at all.
    pub credentials: Option<Credentials>,
    /// TLS on every server (set by a `tls://` server): the system's roots plus the given ones,
    /// and a client certificate for mutual TLS. `None`: plain TCP.
    pub tls: Option<TlsOptions>,
    /// Connection name shown by the server's monitoring (default `pubsub-nats`).
    pub name: Option<String>,
    /// Capacity of async-nats's channel of received messages per native subscription.
    pub subscription_capacity: usize,
    /// Also reconnect to the servers a cluster advertises. Off, the client only ever dials
    /// [`NatsConfig::servers`] (behind a proxy or a load balancer).
    pub use_discovered_servers: bool,
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            options: CommonOptions::default(),
            servers: vec![format!("nats://127.0.0.1:{DEFAULT_PORT}")],
            credentials: None,
            tls: None,
            name: None,
            subscription_capacity: DEFAULT_SUBSCRIPTION_CAPACITY,
            use_discovered_servers: true,
        }
    }
}

impl WithOptions for NatsConfig {
    fn options_mut(&mut self) -> &mut CommonOptions {
        &mut self.options
    }
}

config_setters!(NatsConfig {
    /// Requires TLS on every server, with these settings (`None`: plain TCP).
    with_tls(tls: Option<TlsOptions>),
    /// Sets the capacity of async-nats's channel per native subscription (0 counts as 1).
    with_subscription_capacity(subscription_capacity: usize),
    /// Whether to also reconnect to the servers a cluster advertises.
    with_discovered_servers(use_discovered_servers: bool),
});

impl NatsConfig {
    /// Parses `nats://[user:password@|token@]host[:port][,[scheme://]host[:port]…][?query]`
    /// (`tls://` for TLS).
    ///
    /// `user:password@` is a user and password, a bare `token@` a token; both are
    /// percent-decoded. Hosts are separated by commas, each may repeat the scheme, the port
    /// defaults to 4222, and one `tls://` host requires TLS on all. The query takes the
    /// [`CommonOptions`] parameters (`buffer`, `publish_timeout`, …) and nothing else; there is
    /// no path. Errors are [`ErrorKind::Invalid`](pubsub_core::ErrorKind::Invalid) and never
    /// repeat the URL, the password or the token.
    pub fn from_url(url: &str) -> Result<Self> {
        let mut url = ServerUrl::parse(url, &["nats", "tls"])?;
        if !url.path.is_empty() {
            return Err(Error::invalid_config("the NATS URL takes no path"));
        }
        let options = CommonOptions::default().take_query(&mut url.query)?;
        url.reject_unknown_query(&[])?;
        let credentials = match (url.user, url.password) {
            (None, None) => None,
            // `token@host` (or `:token@host`).
            (None, Some(token)) => Some(Credentials::Token(token)),
            (Some(user), Some(password)) => Some(Credentials::UserPassword { user, password }),
            (Some(_), None) => {
                return Err(Error::invalid_config(
                    "the NATS URL has a user name but no password",
                ))
            }
        };
        let servers: Vec<String> = (url.hosts.iter())
            .map(|h| {
                let scheme = h.scheme.as_deref().unwrap_or(&url.scheme);
                format!("{scheme}://{}", h.address(DEFAULT_PORT))
            })
            .collect();
        Ok(NatsConfig {
            options,
            tls: servers
                .iter()
                .any(|s| s.starts_with("tls://"))
                .then(TlsOptions::default),
            servers,
            credentials,
            ..NatsConfig::default()
        })
    }

    /// Sets the server URLs (`nats://host:port` or `tls://host:port`, without credentials).
    pub fn with_servers<I: IntoIterator<Item = S>, S: Into<String>>(mut self, servers: I) -> Self {
        self.servers = servers.into_iter().map(Into::into).collect();
        self
    }

    /// Authenticates with a token.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.credentials = Some(Credentials::Token(Secret::from(token.into())));
        self
    }

    /// Authenticates with a user name and password.
    pub fn with_user_password(
        mut self,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        let (user, password) = (user.into(), Secret::from(password.into()));
        self.credentials = Some(Credentials::UserPassword { user, password });
        self
    }

    /// Removes the credentials.
    pub fn without_credentials(mut self) -> Self {
        self.credentials = None;
        self
    }

    /// Sets the connection name shown by the server's monitoring.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// How often async-nats pings the server: every [`CommonOptions::heartbeat`] (so two
    /// unanswered pings, which async-nats takes as a dead connection, take at most three
    /// heartbeats); a zero heartbeat is a ping a day.
    fn ping_interval(&self) -> Duration {
        match self.options.heartbeat {
            d if d.is_zero() => Duration::from_secs(24 * 60 * 60),
            d => d,
        }
    }

    /// The async-nats options for this configuration, without callbacks or TLS config.
    pub(crate) fn connect_options(&self) -> ConnectOptions {
        let name = self.name.as_deref().unwrap_or("pubsub-nats");
        let mut options = ConnectOptions::new()
            .connection_timeout(self.options.connect_timeout)
            .ping_interval(self.ping_interval())
            .subscription_capacity(self.subscription_capacity.max(1))
            .require_tls(self.tls.is_some())
            .name(name);
        options = match &self.credentials {
            None => options,
            Some(Credentials::Token(token)) => options.token(token.expose().to_string()),
            Some(Credentials::UserPassword { user, password }) => {
                options.user_and_password(user.clone(), password.expose().to_string())
            }
        };
        if !self.use_discovered_servers {
            options = options.ignore_discovered_servers();
        }
        options
    }

    /// The server addresses, checked (one host each, no credentials, no path or query).
    pub(crate) fn server_addrs(&self) -> Result<Vec<ServerAddr>> {
        if self.servers.is_empty() {
            return Err(Error::invalid_config("no NATS server given"));
        }
        let check = |n: usize, server: &str| {
            let bad = |what: &str| Error::invalid_config(format!("server {n} {what}"));
            let url = ServerUrl::parse(server, &["nats", "tls"])
                .map_err(|e| bad(&format!("is not a NATS URL ({})", e.message())))?;
            if url.user.is_some() || url.password.is_some() {
                return Err(bad(
                    "has credentials; use `with_token` or `with_user_password`",
                ));
            }
            match url.hosts.as_slice() {
                [host] if url.path.is_empty() && url.query.is_empty() => {
                    format!("{}://{}", url.scheme, host.address(DEFAULT_PORT))
                        .parse::<ServerAddr>()
                        .map_err(|e| bad("is not a NATS server address").with_source(e))
                }
                _ => Err(bad("must be one scheme://host:port")),
            }
        };
        (self.servers.iter().enumerate())
            .map(|(i, server)| check(i + 1, server))
            .collect()
    }
}

impl fmt::Debug for NatsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A server given with credentials despite the docs shows without them.
        let servers: Vec<String> = (self.servers.iter())
            .map(|s| match (s.split_once("://"), s.rsplit_once('@')) {
                (Some((scheme, _)), Some((_, host))) => format!("{scheme}://<redacted>@{host}"),
                _ => s.clone(),
            })
            .collect();
        f.debug_struct("NatsConfig")
            .field("options", &self.options)
            .field("servers", &servers)
            .field("credentials", &self.credentials)
            .field("tls", &self.tls)
            .field("name", &self.name)
            .field("subscription_capacity", &self.subscription_capacity)
            .field("use_discovered_servers", &self.use_discovered_servers)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pubsub_core::ErrorKind;

    fn parse(url: &str) -> NatsConfig {
        NatsConfig::from_url(url).unwrap()
    }

    #[test]
    fn hosts_schemes_and_query() {
        let c = parse("NATS://a:1,b,nats://c:3/");
        assert_eq!(c.servers, ["nats://a:1", "nats://b:4222", "nats://c:3"]);
        assert!(c.tls.is_none() && c.credentials.is_none());
        let c = parse("tls://[::1]:4443");
        assert_eq!(c.servers, ["tls://[::1]:4443"]);
        assert!(c.tls.is_some());
        assert!(
            parse("nats://a:1,tls://b:2").tls.is_some(),
            "one tls:// host requires TLS"
        );
        let c = parse("nats://h?publish_timeout=250ms&max_payload=100");
        assert_eq!(c.options.publish_timeout, Duration::from_millis(250));
        assert_eq!(c.options.max_payload, Some(100));
        assert_eq!(c.server_addrs().unwrap().len(), 1);
        assert_eq!(NatsConfig::default().servers, ["nats://127.0.0.1:4222"]);
    }

    #[test]
    fn credentials() {
        let c = parse("nats://alice:p%40ss%3Aw0rd@h");
        let Some(Credentials::UserPassword { user, password }) = &c.credentials else {
            panic!("{c:?}")
        };
        assert_eq!((user.as_str(), password.expose()), ("alice", "p@ss:w0rd"));
        let c = parse("nats://s3cr3t%2Ft0ken@h1,h2");
        assert_eq!(
            c.credentials,
            Some(Credentials::Token("s3cr3t/t0ken".into()))
        );
        assert_eq!(c.servers.len(), 2);
        let c = c.without_credentials().with_user_password("u", "p");
        assert!(matches!(
            c.credentials,
            Some(Credentials::UserPassword { .. })
        ));
    }

    #[test]
    fn secrets_never_show() {
        for url in [
            "redis://u:hunter2@h",
            "nats://u:hunter2@h:notaport",
            "nats://u:hunter2@h/path",
            "nats://u:hunter2@h?token=hunter2",
            "nats://u:hunter2@h,,h2",
            "nats://u:hunter2@h,ftp://x",
            "nats://u:hunter2%ff@h",
            "nats://u:hunter2@ho st",
        ] {
            let e = NatsConfig::from_url(url).expect_err(url);
            assert_eq!(e.kind(), ErrorKind::Invalid, "{url}: {e}");
            assert!(!format!("{e} {e:?}").contains("hunter2"), "{url}: {e}");
        }
        for c in [
            parse("nats://:hunter2@h"),
            parse("nats://alice:hunter2@h"),
            parse("tls://hunter2@h"),
            NatsConfig::default().with_token("hunter2"),
            NatsConfig::default().with_servers(["nats://x:hunter2@h:1"]),
        ] {
            let text = format!("{c:?} {:?}", c.connect_options());
            assert!(!text.contains("hunter2"), "{text}");
        }
        let c = NatsConfig::default().with_servers(["nats://x:hunter2@h:1"]);
        let e = c.server_addrs().unwrap_err().to_string();
        assert!(e.contains("credentials") && !e.contains("hunter2"), "{e}");
    }
}
