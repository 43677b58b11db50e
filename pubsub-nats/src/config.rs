//! [`NatsConfig`]: the servers, the credentials, and the settings only NATS has.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_nats::rustls::pki_types::pem::PemObject;
use async_nats::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use async_nats::rustls::{self, ClientConfig, RootCertStore};
use async_nats::{ConnectOptions, ServerAddr};
use pubsub_core::adapter::{config_setters, ServerUrl};
use pubsub_core::{CommonOptions, Error, Result, Secret, WithOptions};

/// Default NATS port.
pub const DEFAULT_PORT: u16 = 4222;

/// Default capacity of async-nats's channel of received messages, per native subscription.
///
/// The adapter's reader task empties it into the subscriptions' buffers without ever waiting,
/// so it only absorbs scheduling hiccups; when it overflows, async-nats drops the message and
/// reports a slow consumer, which shows in [`Stats::dropped`](pubsub_core::Stats::dropped).
pub const DEFAULT_SUBSCRIPTION_CAPACITY: usize = 64 * 1024;

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
    /// Require TLS on every server (also set by a `tls://` server and the certificate setters).
    pub tls: bool,
    /// Extra root certificates (PEM files) to trust, on top of the system's.
    pub root_certificates: Vec<PathBuf>,
    /// Client certificate chain and private key (PEM files) for mutual TLS.
    pub client_certificate: Option<(PathBuf, PathBuf)>,
    /// Connection name shown by the server's monitoring (default `pubsub-nats`).
    pub name: Option<String>,
    /// How often the client pings the server; two unanswered pings mark the connection dead.
    pub ping_interval: Duration,
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
            tls: false,
            root_certificates: Vec::new(),
            client_certificate: None,
            name: None,
            ping_interval: Duration::from_secs(30),
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
    /// Requires TLS (or not) on every server.
    with_tls(tls: bool),
    /// Sets how often the client pings the server.
    with_ping_interval(ping_interval: Duration),
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
            tls: servers.iter().any(|s| s.starts_with("tls://")),
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

    /// Trusts one more root certificate (PEM file), and requires TLS.
    pub fn with_root_certificate(mut self, path: impl Into<PathBuf>) -> Self {
        self.root_certificates.push(path.into());
        self.with_tls(true)
    }

    /// Presents a client certificate chain and key (PEM files) for mutual TLS, and requires TLS.
    pub fn with_client_certificate(
        mut self,
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> Self {
        self.client_certificate = Some((cert.into(), key.into()));
        self.with_tls(true)
    }

    /// Sets the connection name shown by the server's monitoring.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The async-nats options for this configuration, without callbacks or TLS config.
    pub(crate) fn connect_options(&self) -> ConnectOptions {
        let name = self.name.as_deref().unwrap_or("pubsub-nats");
        let mut options = ConnectOptions::new()
            .connection_timeout(self.options.connect_timeout)
            .ping_interval(self.ping_interval)
            .subscription_capacity(self.subscription_capacity.max(1))
            .require_tls(self.tls)
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

    /// The rustls configuration when TLS is in play: the system's roots plus
    /// [`NatsConfig::root_certificates`], and the client certificate. The files are read on a
    /// blocking thread.
    pub(crate) async fn tls_client_config(&self) -> Result<Option<ClientConfig>> {
        if !self.tls && self.root_certificates.is_empty() && self.client_certificate.is_none() {
            return Ok(None);
        }
        let (roots, client) = (
            self.root_certificates.clone(),
            self.client_certificate.clone(),
        );
        tokio::task::spawn_blocking(move || tls_config(&roots, client.as_ref()))
            .await
            .map_err(|e| {
                Error::invalid_config("loading the TLS certificates failed").with_source(e)
            })?
            .map(Some)
    }
}

fn tls_config(roots: &[PathBuf], client: Option<&(PathBuf, PathBuf)>) -> Result<ClientConfig> {
    let mut store = RootCertStore::empty();
    let system = rustls_native_certs::load_native_certs();
    for error in &system.errors {
        tracing::debug!(%error, "skipping a system root certificate");
    }
    store.add_parsable_certificates(system.certs);
    for path in roots {
        for cert in certificates(path)? {
            store
                .add(cert)
                .map_err(|e| bad_file(path, "is not a usable root certificate", e))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::invalid_config("no usable TLS protocol version").with_source(e))?
        .with_root_certificates(store);
    let Some((cert, key)) = client else {
        return Ok(builder.with_no_client_auth());
    };
    let pem = read(key)?;
    let key_der = PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| bad_file(key, "holds no private key", e))?;
    builder
        .with_client_auth_cert(certificates(cert)?, key_der)
        .map_err(|e| bad_file(cert, "and its key are not a usable client certificate", e))
}

/// The certificates of a PEM file (at least one).
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad_file(path, "is not valid PEM", e))?;
    if certs.is_empty() {
        return Err(Error::invalid_config(format!(
            "{} holds no certificate",
            path.display()
        )));
    }
    Ok(certs)
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| bad_file(path, "cannot be read", e))
}

fn bad_file(path: &Path, what: &str, source: impl Into<pubsub_core::BoxError>) -> Error {
    Error::invalid_config(format!("{} {what}", path.display())).with_source(source)
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
            .field("root_certificates", &self.root_certificates)
            .field("client_certificate", &self.client_certificate)
            .field("name", &self.name)
            .field("ping_interval", &self.ping_interval)
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
        assert!(!c.tls && c.credentials.is_none());
        let c = parse("tls://[::1]:4443");
        assert_eq!(c.servers, ["tls://[::1]:4443"]);
        assert!(c.tls);
        assert!(
            parse("nats://a:1,tls://b:2").tls,
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

    /// A self-signed certificate (valid until 2126) and its key, as root and as client.
    const CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBjDCCATOgAwIBAgIUeqVVfv1F6tIuVbx7Z3+5+o9vtxowCgYIKoZIzj0EAwIw
GzEZMBcGA1UEAwwQcHVic3ViLW5hdHMtdGVzdDAgFw0yNjExMzAxNTUxMzVaGA8y
MTI2MTEwNjE1NTEzNVowGzEZMBcGA1UEAwwQcHVic3ViLW5hdHMtdGVzdDBZMBMG
ByqGSM49AgEGCCqGSM49AwEHA0IABC3Z5ZCNW/dvC/z47zx4Z62HkUeQGRWabWjN
fDiAlNJTDerFEkh6UmF61Yb5/JXld3EGbdytyefsDoBgFbvm1mCjUzBRMB0GA1Ud
DgQWBBTwsJy5E+6GtV8wtdPVDoKCus5vETAfBgNVHSMEGDAWgBTwsJy5E+6GtV8w
tdPVDoKCus5vETAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0cAMEQCIGuQ
Pl3pKZpidwN86pwTZZ0dh+g1E8xiQIyODJx48s7VAiAMSMqlwdJ8rmuFKfg3Fzh6
M4Z1AA6E6j+9GNDPSEfJFg==
-----END CERTIFICATE-----
";
    const KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgXlx3QqGmteNBKK5C
dQUFLJt+7ujqdjsBCmJ9chp1NDChRANCAAQt2eWQjVv3bwv8+O88eGeth5FHkBkV
mm1ozXw4gJTSUw3qxRJIelJhetWG+fyV5XdxBm3crcnn7A6AYBW75tZg
-----END PRIVATE KEY-----
";

    #[tokio::test]
    async fn tls_files_load_or_fail_typed() {
        let dir = std::env::temp_dir().join(format!("pubsub-nats-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let (cert, key) = (file("cert.pem", CERT), file("key.pem", KEY));
        let junk = file("junk.pem", "not a certificate");
        let broken = file(
            "broken.pem",
            "-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n",
        );
        let config = NatsConfig::default().with_root_certificate(&cert);
        assert!(config
            .with_client_certificate(&cert, &key)
            .tls_client_config()
            .await
            .unwrap()
            .is_some());
        assert!(NatsConfig::default()
            .tls_client_config()
            .await
            .unwrap()
            .is_none());
        let bad = [
            (&junk, None),
            (&broken, None),
            (&dir.join("missing.pem"), None),
        ];
        for (root, client) in bad
            .into_iter()
            .chain([(&cert, Some((&cert, &cert))), (&cert, Some((&key, &key)))])
        {
            let mut config = NatsConfig::default().with_root_certificate(root);
            if let Some((c, k)) = client {
                config = config.with_client_certificate(c, k);
            }
            let e = config.tls_client_config().await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Invalid, "{e}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
