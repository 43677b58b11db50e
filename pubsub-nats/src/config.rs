//! [`NatsConfig`]: where the NATS servers are and how the adapter behaves.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use pubsub_core::{Backoff, HubConfig};

/// Default NATS port.
pub const DEFAULT_PORT: u16 = 4222;

/// Default capacity of async-nats's channel of received messages, per native subscription.
///
/// The adapter's reader task empties it into the subscriptions' bounded buffers without ever
/// waiting, so it only has to absorb scheduling hiccups; when it overflows async-nats drops the
/// message and reports a slow consumer, which the adapter counts in
/// [`Stats::dropped`](pubsub_core::Stats::dropped).
pub const DEFAULT_SUBSCRIPTION_CAPACITY: usize = 64 * 1024;

/// How a handle proves who it is to the server.
#[derive(Clone, Default, PartialEq, Eq)]
enum Credentials {
    #[default]
    None,
    Token(String),
    UserPassword {
        user: String,
        password: String,
    },
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::None => f.write_str("None"),
            Credentials::Token(_) => f.write_str("Token(<redacted>)"),
            Credentials::UserPassword { user, .. } => f
                .debug_struct("UserPassword")
                .field("user", user)
                .field("password", &format_args!("<redacted>"))
                .finish(),
        }
    }
}

/// Settings of a NATS handle.
///
/// Build it from a URL with [`NatsConfig::from_url`]
/// (`nats://[user:password@|token@]host[:port][,host[:port]…]`, or `tls://…` for TLS), or start
/// from [`NatsConfig::default`] (`nats://127.0.0.1:4222`), then adjust it with the `with_*`
/// setters. `Debug` never shows the password or the token.
///
/// ```
/// use std::time::Duration;
/// use pubsub_nats::NatsConfig;
/// let config = NatsConfig::from_url("nats://app:s3cret@127.0.0.1:4222,127.0.0.1:4223")?
///     .with_publish_timeout(Duration::from_secs(2));
/// assert_eq!(config.servers, ["nats://127.0.0.1:4222", "nats://127.0.0.1:4223"]);
/// assert_eq!(config.user(), Some("app"));
/// assert!(!format!("{config:?}").contains("s3cret"));
/// # Ok::<(), pubsub_core::Error>(())
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct NatsConfig {
    /// Server URLs without credentials (`nats://host:port` or `tls://host:port`). The client
    /// connects to one of them and fails over to the others.
    pub servers: Vec<String>,
    credentials: Credentials,
    /// Require TLS on every server (also implied by a `tls://` URL).
    pub tls: bool,
    /// Extra root certificates (PEM files) to trust for TLS, on top of the system's.
    pub root_certificates: Vec<PathBuf>,
    /// Client certificate and key (PEM files) for mutual TLS.
    pub client_certificate: Option<(PathBuf, PathBuf)>,
    /// Connection name shown by the server's monitoring.
    pub name: Option<String>,
    /// How long `publish` waits while the connection is down before failing with
    /// [`Error::Timeout`](pubsub_core::Error::Timeout).
    pub publish_timeout: Duration,
    /// How long `subscribe`, `unsubscribe` and `close` wait for the server (including while the
    /// connection is down).
    pub command_timeout: Duration,
    /// How long one connection attempt (TCP, TLS and the NATS handshake) may take.
    pub connect_timeout: Duration,
    /// How often the client pings the server; two unanswered pings mark the connection dead.
    pub ping_interval: Duration,
    /// Delay between reconnect attempts (exponential, capped, with jitter). The first attempt
    /// after a connection loss is immediate.
    pub backoff: Backoff,
    /// Settings of the shared hub (default subscription buffer size).
    pub hub: HubConfig,
    /// Capacity of async-nats's channel of received messages per native subscription.
    pub subscription_capacity: usize,
    /// Whether to also use the server URLs a cluster advertises (`connect_urls`) when
    /// reconnecting. Off, the client only ever dials [`NatsConfig::servers`] (needed behind a
    /// proxy or a load balancer).
    pub use_discovered_servers: bool,
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            servers: vec![format!("nats://127.0.0.1:{DEFAULT_PORT}")],
            credentials: Credentials::None,
            tls: false,
            root_certificates: Vec::new(),
            client_certificate: None,
            name: None,
            publish_timeout: Duration::from_secs(5),
            command_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            ping_interval: Duration::from_secs(30),
            backoff: Backoff::default(),
            hub: HubConfig::default(),
            subscription_capacity: DEFAULT_SUBSCRIPTION_CAPACITY,
            use_discovered_servers: true,
        }
    }
}

impl NatsConfig {
    /// Parses `nats://[user:password@|token@]host[:port][,host[:port]…]` or `tls://…`.
    ///
    /// - `user:password@` authenticates with a user name and password, a bare `token@` with a
    ///   token; both are percent-decoded.
    /// - Several servers are separated by commas; each may repeat the scheme
    ///   (`nats://a:4222,nats://b:4222`). The port defaults to 4222.
    /// - `tls://` requires TLS (with the system's root certificates; add more with
    ///   [`NatsConfig::with_root_certificate`]).
    ///
    /// Errors are [`Error::InvalidConfig`](pubsub_core::Error::InvalidConfig) and never contain
    /// the URL, the password or the token.
    pub fn from_url(url: &str) -> Result<Self, pubsub_core::Error> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| invalid("the NATS URL has no scheme; expected `nats://` or `tls://`"))?;
        let scheme = scheme.to_ascii_lowercase();
        let tls = match scheme.as_str() {
            "nats" => false,
            "tls" => true,
            other => {
                return Err(invalid(format!(
                    "unsupported URL scheme `{}`; expected `nats://` or `tls://`",
                    sanitize(other)
                )))
            }
        };
        if rest.contains(['?', '#']) {
            return Err(invalid(
                "the NATS URL takes no query parameters; use the `with_*` setters of NatsConfig",
            ));
        }
        // `[userinfo@]host[:port]` then `,[scheme://]host[:port]` for each further server.
        // Credentials come once, before the first host; a `,`, `/`, `?`, `#` or `@` in them
        // must be percent-encoded, as in any URL.
        let mut entries = rest.split(',');
        let first = entries.next().unwrap_or_default();
        let (userinfo, first) = match first.rsplit_once('@') {
            Some((userinfo, host)) => (Some(userinfo), host),
            None => (None, first),
        };
        let credentials = match userinfo {
            None => Credentials::None,
            Some(info) => match info.split_once(':') {
                Some((user, password)) => Credentials::UserPassword {
                    user: percent_decode(user, "user name")?,
                    password: percent_decode(password, "password")?,
                },
                None if info.is_empty() => {
                    return Err(invalid("the NATS URL has an empty token before `@`"))
                }
                None => Credentials::Token(percent_decode(info, "token")?),
            },
        };
        if let Credentials::UserPassword { user, .. } = &credentials {
            if user.is_empty() {
                return Err(invalid("the NATS URL has a password but no user name"));
            }
        }
        let mut servers = Vec::new();
        let mut any_tls = tls;
        for (index, entry) in std::iter::once(first).chain(entries).enumerate() {
            let entry = entry.trim();
            let (entry_tls, host) = if index == 0 {
                (tls, entry)
            } else {
                match entry.split_once("://") {
                    Some((s, h)) => match s.to_ascii_lowercase().as_str() {
                        "nats" => (false, h),
                        "tls" => (true, h),
                        other => {
                            return Err(invalid(format!(
                                "server {} of the NATS URL has unsupported scheme `{}`",
                                index + 1,
                                sanitize(other)
                            )))
                        }
                    },
                    None => (tls, entry),
                }
            };
            let host = host.strip_suffix('/').unwrap_or(host);
            if host.contains('/') {
                return Err(invalid(format!(
                    "server {} of the NATS URL has a path; the NATS URL takes none",
                    index + 1
                )));
            }
            any_tls |= entry_tls;
            servers.push(server_url(entry_tls, host, index)?);
        }
        Ok(NatsConfig {
            servers,
            credentials,
            tls: any_tls,
            ..NatsConfig::default()
        })
    }

    /// Sets the server URLs (`nats://host:port` or `tls://host:port`, without credentials:
    /// set those with [`NatsConfig::with_token`] or [`NatsConfig::with_user_password`]).
    pub fn with_servers<I, S>(mut self, servers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.servers = servers.into_iter().map(Into::into).collect();
        self
    }

    /// Authenticates with a token.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.credentials = Credentials::Token(token.into());
        self
    }

    /// Authenticates with a user name and password.
    pub fn with_user_password(
        mut self,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.credentials = Credentials::UserPassword {
            user: user.into(),
            password: password.into(),
        };
        self
    }

    /// Removes any credentials.
    pub fn without_credentials(mut self) -> Self {
        self.credentials = Credentials::None;
        self
    }

    /// The user name, when authenticating with user and password.
    pub fn user(&self) -> Option<&str> {
        match &self.credentials {
            Credentials::UserPassword { user, .. } => Some(user),
            _ => None,
        }
    }

    /// Whether a password or token is set (the secret itself is only handed to async-nats).
    pub fn has_secret(&self) -> bool {
        !matches!(self.credentials, Credentials::None)
    }

    /// Requires TLS (or not) on every server.
    pub fn with_tls(mut self, tls: bool) -> Self {
        self.tls = tls;
        self
    }

    /// Trusts one more root certificate (PEM file) for TLS, and requires TLS.
    pub fn with_root_certificate(mut self, path: impl Into<PathBuf>) -> Self {
        self.root_certificates.push(path.into());
        self.tls = true;
        self
    }

    /// Presents a client certificate and key (PEM files) for mutual TLS, and requires TLS.
    pub fn with_client_certificate(
        mut self,
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> Self {
        self.client_certificate = Some((cert.into(), key.into()));
        self.tls = true;
        self
    }

    /// Sets the connection name shown by the server's monitoring.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Sets how long `publish` waits while the connection is down.
    pub fn with_publish_timeout(mut self, timeout: Duration) -> Self {
        self.publish_timeout = timeout;
        self
    }

    /// Sets how long `subscribe`, `unsubscribe` and `close` wait for the server.
    pub fn with_command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// Sets how long one connection attempt may take.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets how often the client pings the server.
    pub fn with_ping_interval(mut self, interval: Duration) -> Self {
        self.ping_interval = interval;
        self
    }

    /// Sets the reconnect policy.
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Sets the hub's settings (default subscription buffer size).
    pub fn with_hub(mut self, hub: HubConfig) -> Self {
        self.hub = hub;
        self
    }

    /// Sets the capacity of async-nats's channel of received messages per native subscription
    /// (at least 1).
    pub fn with_subscription_capacity(mut self, capacity: usize) -> Self {
        self.subscription_capacity = capacity.max(1);
        self
    }

    /// Whether to also reconnect to server URLs that a cluster advertises.
    pub fn with_discovered_servers(mut self, use_them: bool) -> Self {
        self.use_discovered_servers = use_them;
        self
    }

    /// The async-nats connect options for this configuration, without callbacks.
    pub(crate) fn connect_options(&self) -> async_nats::ConnectOptions {
        let mut options = async_nats::ConnectOptions::new()
            .connection_timeout(self.connect_timeout)
            .ping_interval(self.ping_interval)
            .subscription_capacity(self.subscription_capacity)
            .name(
                self.name
                    .clone()
                    .unwrap_or_else(|| "pubsub-nats".to_string()),
            );
        options = match &self.credentials {
            Credentials::None => options,
            Credentials::Token(token) => options.token(token.clone()),
            Credentials::UserPassword { user, password } => {
                options.user_and_password(user.clone(), password.clone())
            }
        };
        if self.tls {
            options = options.require_tls(true);
        }
        for path in &self.root_certificates {
            options = options.add_root_certificates(path.clone());
        }
        if let Some((cert, key)) = &self.client_certificate {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        if !self.use_discovered_servers {
            options = options.ignore_discovered_servers();
        }
        options
    }

    /// The server addresses, checked.
    pub(crate) fn server_addrs(&self) -> Result<Vec<async_nats::ServerAddr>, pubsub_core::Error> {
        if self.servers.is_empty() {
            return Err(invalid("no NATS server given"));
        }
        self.servers
            .iter()
            .enumerate()
            .map(|(index, server)| {
                let url = url::Url::parse(server).map_err(|e| {
                    invalid(format!("server {} does not parse: {e}", index + 1))
                })?;
                if !url.username().is_empty() || url.password().is_some() {
                    return Err(invalid(format!(
                        "server {} carries credentials; set them with `with_token` or `with_user_password`",
                        index + 1
                    )));
                }
                async_nats::ServerAddr::from_url(url).map_err(|_| {
                    invalid(format!(
                        "server {} has an unsupported scheme; expected `nats://` or `tls://`",
                        index + 1
                    ))
                })
            })
            .collect()
    }
}

impl fmt::Debug for NatsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let servers: Vec<String> = self.servers.iter().map(|s| redact_url(s)).collect();
        f.debug_struct("NatsConfig")
            .field("servers", &servers)
            .field("credentials", &self.credentials)
            .field("tls", &self.tls)
            .field("root_certificates", &self.root_certificates)
            .field("client_certificate", &self.client_certificate)
            .field("name", &self.name)
            .field("publish_timeout", &self.publish_timeout)
            .field("command_timeout", &self.command_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("ping_interval", &self.ping_interval)
            .field("backoff", &self.backoff)
            .field("hub", &self.hub)
            .field("subscription_capacity", &self.subscription_capacity)
            .field("use_discovered_servers", &self.use_discovered_servers)
            .finish()
    }
}

fn invalid(message: impl Into<String>) -> pubsub_core::Error {
    pubsub_core::Error::InvalidConfig(message.into())
}

/// `scheme://host:port` for one `host[:port]` entry, validated.
fn server_url(tls: bool, host: &str, index: usize) -> Result<String, pubsub_core::Error> {
    if host.is_empty() {
        return Err(invalid(format!(
            "server {} of the NATS URL has no host",
            index + 1
        )));
    }
    if host.contains('@') {
        return Err(invalid(format!(
            "server {} of the NATS URL has credentials; put them once, before the first host",
            index + 1
        )));
    }
    let scheme = if tls { "tls" } else { "nats" };
    let url = url::Url::parse(&format!("{scheme}://{host}")).map_err(|e| {
        invalid(format!(
            "server {} of the NATS URL is not a valid host[:port]: {e}",
            index + 1
        ))
    })?;
    let host = match url.host_str() {
        Some(h) if !h.is_empty() => h,
        _ => {
            return Err(invalid(format!(
                "server {} of the NATS URL has no host",
                index + 1
            )))
        }
    };
    if url.path() != "" && url.path() != "/" {
        return Err(invalid(format!(
            "server {} of the NATS URL is not a valid host[:port]",
            index + 1
        )));
    }
    let port = url.port().unwrap_or(DEFAULT_PORT);
    Ok(format!("{scheme}://{host}:{port}"))
}

/// Decodes `%XX` escapes (user names, passwords and tokens in URLs).
fn percent_decode(input: &str, what: &str) -> Result<String, pubsub_core::Error> {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| invalid(format!("the {what} in the NATS URL has a bad %-escape")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| {
        invalid(format!(
            "the {what} in the NATS URL is not UTF-8 once decoded"
        ))
    })
}

/// A short, printable excerpt of user input that holds no secret (a scheme).
fn sanitize(s: &str) -> String {
    let clean: String = s
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        .take(16)
        .collect();
    clean
}

/// A URL with anything between `://` and `@` replaced, for `Debug`.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(start), Some(at)) if at > start => {
            format!("{}://<redacted>@{}", &url[..start], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pubsub_core::ErrorKind;

    fn err(url: &str) -> String {
        let e = NatsConfig::from_url(url).expect_err(url);
        assert_eq!(e.kind(), ErrorKind::Invalid, "{url}: {e}");
        e.to_string()
    }

    #[test]
    fn parses_hosts_and_defaults() {
        let c = NatsConfig::from_url("nats://127.0.0.1:4222").unwrap();
        assert_eq!(c.servers, ["nats://127.0.0.1:4222"]);
        assert!(!c.tls);
        assert!(!c.has_secret());
        let c = NatsConfig::from_url("nats://localhost").unwrap();
        assert_eq!(c.servers, ["nats://localhost:4222"]);
        let c = NatsConfig::from_url("NATS://a:1,b,nats://c:3/").unwrap();
        assert_eq!(c.servers, ["nats://a:1", "nats://b:4222", "nats://c:3"]);
        let c = NatsConfig::from_url("tls://[::1]:4443").unwrap();
        assert_eq!(c.servers, ["tls://[::1]:4443"]);
        assert!(c.tls);
        let c = NatsConfig::from_url("nats://a:1,tls://b:2").unwrap();
        assert!(c.tls, "one tls:// server requires TLS");
        assert!(c.server_addrs().is_ok());
        assert_eq!(NatsConfig::default().servers, ["nats://127.0.0.1:4222"]);
    }

    #[test]
    fn parses_credentials() {
        let c = NatsConfig::from_url("nats://alice:p%40ss%3Aw0rd@h:4222").unwrap();
        assert_eq!(c.user(), Some("alice"));
        assert_eq!(
            c.credentials,
            Credentials::UserPassword {
                user: "alice".into(),
                password: "p@ss:w0rd".into()
            }
        );
        assert_eq!(c.servers, ["nats://h:4222"]);
        let c = NatsConfig::from_url("nats://s3cr3t-t0ken@h1,h2").unwrap();
        assert_eq!(c.credentials, Credentials::Token("s3cr3t-t0ken".into()));
        assert_eq!(c.user(), None);
        assert!(c.has_secret());
        assert_eq!(c.servers, ["nats://h1:4222", "nats://h2:4222"]);
        let c = NatsConfig::from_url("nats://bob:@h").unwrap();
        assert_eq!(c.user(), Some("bob"));
        let c = c.without_credentials().with_token("t");
        assert_eq!(c.credentials, Credentials::Token("t".into()));
    }

    #[test]
    fn bad_urls_are_typed_errors_without_secrets() {
        for url in [
            "",
            "127.0.0.1:4222",
            "redis://u:hunter2@h",
            "nats://",
            "nats://hunter2@",
            "nats://u:hunter2@h:notaport",
            "nats://u:hunter2@h:99999",
            "nats://u:hunter2@h/path",
            "nats://u:hunter2@h?token=hunter2",
            "nats://u:hunter2@h,,h2",
            "nats://u:hunter2@h,ftp://x",
            "nats://u:hunter2@h:1,v:hunter2@h2",
            "nats://:hunter2@h",
            "nats://u:hunter2%zz@h",
            "nats://u:hunter2%ff@h",
            "nats://@h",
            "nats://u:hunter2@ho st",
        ] {
            let message = err(url);
            assert!(!message.contains("hunter2"), "{url} -> {message}");
        }
        let message = err("nats://u:hunter2@h/path");
        assert!(message.contains("path"), "{message}");
        let message = err("redis://u:hunter2@h");
        assert!(message.contains("`redis`"), "{message}");
    }

    #[test]
    fn debug_hides_secrets() {
        let c = NatsConfig::from_url("nats://alice:hunter2@h:4222").unwrap();
        let debug = format!("{c:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("alice"), "{debug}");
        let c = NatsConfig::from_url("tls://t0psecret@h:4222").unwrap();
        let debug = format!("{c:?}");
        assert!(!debug.contains("t0psecret"), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
        let c = NatsConfig::default()
            .with_user_password("u", "hunter2")
            .with_servers(["nats://x:hunter2@h:1"]);
        let debug = format!("{c:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        let e = c.server_addrs().unwrap_err().to_string();
        assert!(!e.contains("hunter2"), "{e}");
        assert!(e.contains("credentials"), "{e}");
    }

    #[test]
    fn connect_options_carry_the_settings() {
        let c = NatsConfig::from_url("tls://u:hunter2@h")
            .unwrap()
            .with_name("svc")
            .with_discovered_servers(false);
        let debug = format!("{:?}", c.connect_options());
        assert!(
            debug.contains("tls_required: true") || debug.contains("\"tls_required\": true"),
            "{debug}"
        );
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("svc"), "{debug}");
    }
}
