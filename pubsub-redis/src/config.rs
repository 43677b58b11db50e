//! [`RedisConfig`]: where the Redis server is and how the adapter behaves.

use std::time::Duration;

use fred::types::config::{
    Config as FredConfig, ConnectionConfig, PerformanceConfig, ReconnectPolicy, ServerConfig,
    TcpConfig, TlsConfig, UnresponsiveConfig,
};
use pubsub_core::adapter::{config_setters, tls, ServerUrl};
use pubsub_core::{Backoff, CommonOptions, Error, Result, Secret, TlsOptions, WithOptions};

/// Default largest payload: 4 MiB.
///
/// Redis itself accepts bulk strings up to 512 MB, but it disconnects a subscriber whose output
/// buffer passes 32 MB (`client-output-buffer-limit pubsub 32mb 8mb 60` by default), so a
/// limit far below that keeps one large message from costing every subscriber its connection.
pub const DEFAULT_MAX_PAYLOAD: usize = 4 * 1024 * 1024;

/// Room for headers on top of `max_payload`: a message whose envelope (payload plus headers)
/// is larger than `max_payload + HEADER_ALLOWANCE` is refused before any I/O.
pub const HEADER_ALLOWANCE: usize = 64 * 1024;

/// The largest `max_payload` the adapter takes: Redis refuses a bulk string over
/// `proto-max-bulk-len` (512 MiB by default), and the envelope needs [`HEADER_ALLOWANCE`]
/// beside the payload. A larger `max_payload` is lowered to this.
pub const MAX_PAYLOAD_CEILING: usize = 512 * 1024 * 1024 - HEADER_ALLOWANCE;

/// Default capacity of fred's broadcast channel of received messages, per subscriber connection.
pub const DEFAULT_BROADCAST_CAPACITY: usize = 16 * 1024;

/// Default number of leading literal tokens of a wildcard pattern that go into its `PSUBSCRIBE`
/// glob (see [`RedisConfig::pattern_depth`]).
pub const DEFAULT_PATTERN_DEPTH: usize = 2;

/// Default number of `PSUBSCRIBE` globs a handle takes before it widens new ones (see
/// [`RedisConfig::max_globs`]).
pub const DEFAULT_MAX_GLOBS: usize = 64;

/// Largest [`RedisConfig::pattern_depth`]: a topic of at most 255 bytes has at most 128 tokens.
pub const MAX_PATTERN_DEPTH: usize = 128;

/// Settings of a Redis handle.
///
/// Build it from a URL with [`RedisConfig::from_url`], or start from [`RedisConfig::default`]
/// (`redis://127.0.0.1:6379`), then adjust it with the `with_*` setters (the shared ones come
/// from [`WithOptions`]). `Debug` never shows the password.
///
/// ```
/// use std::time::Duration;
/// use pubsub_core::WithOptions;
/// use pubsub_redis::RedisConfig;
/// let config = RedisConfig::from_url("redis://app:s3cret@127.0.0.1:6379/0?pattern_depth=1")?
///     .with_publish_timeout(Duration::from_secs(2))
///     .with_max_payload(1 << 20);
/// assert_eq!((config.port, config.pattern_depth), (6379, 1));
/// assert!(!format!("{config:?}").contains("s3cret"));
/// # Ok::<(), pubsub_core::Error>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RedisConfig {
    /// The settings every backend shares (buffer, timeouts, backoff, payload limit).
    pub options: CommonOptions,
    /// Host name or IP address of the server.
    pub host: String,
    /// TCP port of the server.
    pub port: u16,
    /// Redis Cluster: `Some(seeds)` connects to a cluster discovered from these `host:port`
    /// nodes (`host`/`port` are then ignored); `None` (the default) talks to the one server at
    /// `host:port`. In a cluster, `PUBLISH` goes to the master of the channel's hash slot (so
    /// one topic's messages keep their order) and Redis forwards it to every node; a handle's
    /// subscriptions live on the master of its connection's hash slot and are restored on the
    /// new master after a failover.
    pub cluster: Option<Vec<(String, u16)>>,
    /// ACL user name, if any.
    pub username: Option<String>,
    /// The password (`AUTH`), if any.
    pub password: Option<Secret>,
    /// Database number (`SELECT`); pub/sub channels are global, so this rarely matters.
    pub database: Option<u8>,
    /// TLS (`rediss://`): the system's root certificates plus the given ones, and a client
    /// certificate for mutual TLS. `None`: plain TCP.
    pub tls: Option<TlsOptions>,
    /// Capacity of fred's broadcast channel of received messages, per subscriber connection.
    /// When the reader falls this far behind, messages are lost and counted in
    /// [`Stats::dropped`](pubsub_core::Stats::dropped).
    pub broadcast_capacity: usize,
    /// How many leading literal tokens of a wildcard pattern go into its `PSUBSCRIBE` glob.
    ///
    /// `room.42.>` becomes `room.42.*` with depth 2 and `room.*` with depth 1. Deeper globs let
    /// Redis filter more precisely; each distinct glob depth in use takes one subscriber
    /// connection (at most `pattern_depth + 1`, created when first needed), because that is how
    /// the adapter tells which glob a message came through. Depth 0 uses the single glob `*`
    /// (every channel) and one subscriber connection.
    pub pattern_depth: usize,
    /// How many `PSUBSCRIBE` globs the handle takes before it widens new ones.
    ///
    /// Redis tests every glob of every client on every `PUBLISH`, so each glob costs the whole
    /// server a little on every message. Up to this many, a wildcard pattern gets the glob of
    /// its first `pattern_depth` literal tokens. Beyond it, a new wildcard pattern shares the
    /// narrowest glob of its prefix the handle already has (`room.*` for `room.42.>`), or else
    /// gets the glob of its first token: the handle then holds at most `max_globs` globs plus one
    /// per distinct first token, and its router filters out what a broader glob brings in
    /// (see the crate documentation). Exact patterns are channels and never count.
    pub max_globs: usize,
    /// Payloads as they are, both ways, for interoperation with other Redis clients: `publish`
    /// sends the payload without the envelope (a message with headers is refused with an
    /// `Unsupported` error), and every received payload is delivered as it is, never decoded.
    /// Off (the default), headers travel in the envelope, and a received payload that starts
    /// with the envelope's magic bytes and decodes as a frame is read as one: a foreign
    /// publisher whose binary payload happens to be a valid frame would be misread.
    pub raw_payloads: bool,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            options: CommonOptions::default(),
            host: "127.0.0.1".to_string(),
            port: 6379,
            cluster: None,
            username: None,
            password: None,
            database: None,
            tls: None,
            broadcast_capacity: DEFAULT_BROADCAST_CAPACITY,
            pattern_depth: DEFAULT_PATTERN_DEPTH,
            max_globs: DEFAULT_MAX_GLOBS,
            raw_payloads: false,
        }
    }
}

impl WithOptions for RedisConfig {
    fn options_mut(&mut self) -> &mut CommonOptions {
        &mut self.options
    }
}

config_setters!(RedisConfig {
    /// Selects a database number.
    with_database(database: Option<u8>),
    /// Uses TLS with these settings (`None`: plain TCP).
    with_tls(tls: Option<TlsOptions>),
    /// Sets the capacity of fred's broadcast channel of received messages (at least 1).
    with_broadcast_capacity(broadcast_capacity: usize),
    /// Sets how many leading literal tokens of a wildcard pattern go into its glob.
    with_pattern_depth(pattern_depth: usize),
    /// Sets how many globs the handle takes before it widens new ones.
    with_max_globs(max_globs: usize),
    /// Sends and receives payloads as they are, without the envelope (no headers).
    with_raw_payloads(raw_payloads: bool),
});

/// The query parameters of a Redis URL besides the [`CommonOptions`] ones.
const QUERY_KEYS: &[&str] = &[
    "pattern_depth",
    "max_globs",
    "broadcast_capacity",
    "raw_payloads",
    "cluster",
];

impl RedisConfig {
    /// Parses `redis://[[user]:password@]host[:port][/db][?param=value…]` or `rediss://…` (TLS).
    ///
    /// Several hosts (`redis://h1:7000,h2:7001,h3:7002`) or `?cluster=true` select Redis
    /// Cluster mode, with the hosts as seeds (see [`RedisConfig::cluster`]); a cluster has no
    /// database number.
    ///
    /// User name and password are percent-decoded. A user info without `:` (`redis://secret@h`)
    /// is taken as the password, since Redis authenticates with a password alone or a user and
    /// a password, never a user alone. The query takes the [`CommonOptions`] parameters,
    /// `pattern_depth` and `broadcast_capacity`. Errors never contain the password or the URL.
    pub fn from_url(url: &str) -> Result<Self> {
        let mut parsed = ServerUrl::parse(url, &["redis", "rediss"])?;
        let seeds: Vec<(String, u16)> = parsed
            .hosts
            .iter()
            .map(|h| (h.host.clone(), h.port.unwrap_or(6379)))
            .collect();
        if parsed.hosts.iter().any(|h| h.scheme.is_some()) {
            return Err(Error::invalid_config(
                "a Redis URL names its scheme once, before the first host",
            ));
        }
        let host = parsed.single_host().or_else(|_| {
            parsed
                .hosts
                .first()
                .ok_or_else(|| Error::invalid_config("a Redis URL needs a host"))
        })?;
        let host = host.clone();
        let (username, password) = (parsed.user.take(), parsed.password.take());
        let database = match parsed.path.as_str() {
            "" => None,
            db => Some(db.parse::<u8>().map_err(|_| {
                Error::invalid_config(
                    "the path of a Redis URL must be a database number from 0 to 255",
                )
            })?),
        };
        let mut config = RedisConfig {
            options: CommonOptions::default().take_query(&mut parsed.query)?,
            host: host.host,
            port: host.port.unwrap_or(6379),
            username,
            password,
            database,
            tls: (parsed.scheme == "rediss").then(TlsOptions::default),
            ..RedisConfig::default()
        };
        parsed.take_into("pattern_depth", &mut config.pattern_depth)?;
        parsed.take_into("max_globs", &mut config.max_globs)?;
        parsed.take_into("broadcast_capacity", &mut config.broadcast_capacity)?;
        parsed.take_into("raw_payloads", &mut config.raw_payloads)?;
        let mut cluster = seeds.len() > 1;
        parsed.take_into("cluster", &mut cluster)?;
        if cluster {
            config.cluster = Some(seeds);
        } else if seeds.len() > 1 {
            return Err(Error::invalid_config(
                "several Redis hosts name a cluster; `cluster=false` needs exactly one host",
            ));
        }
        parsed.reject_unknown_query(QUERY_KEYS)?;
        config.validate()?;
        Ok(config)
    }

    /// Sets the server address.
    pub fn with_server(mut self, host: impl Into<String>, port: u16) -> Self {
        self.host = host.into();
        self.port = port;
        self
    }

    /// Connects to a Redis Cluster discovered from these seed nodes (see
    /// [`RedisConfig::cluster`]).
    ///
    /// ```
    /// use pubsub_redis::RedisConfig;
    /// let config = RedisConfig::default().with_cluster([("127.0.0.1", 7000), ("127.0.0.1", 7001)]);
    /// assert_eq!(config.cluster.as_ref().map(Vec::len), Some(2));
    /// ```
    pub fn with_cluster<I, S>(mut self, seeds: I) -> Self
    where
        I: IntoIterator<Item = (S, u16)>,
        S: Into<String>,
    {
        self.cluster = Some(seeds.into_iter().map(|(h, p)| (h.into(), p)).collect());
        self
    }

    /// Sets the credentials: an ACL user (or `None` for the default user) and its password.
    pub fn with_credentials(
        mut self,
        username: Option<String>,
        password: impl Into<Secret>,
    ) -> Self {
        self.username = username;
        self.password = Some(password.into());
        self
    }

    /// `host:port` for messages and `Debug` (never the credentials).
    pub(crate) fn server_label(&self) -> String {
        if let Some(seeds) = &self.cluster {
            let seeds: Vec<String> = seeds.iter().map(|(h, p)| host_label(h, *p)).collect();
            return format!("cluster {}", seeds.join(","));
        }
        host_label(&self.host, self.port)
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if let Some(seeds) = &self.cluster {
            if seeds.is_empty() || seeds.iter().any(|(h, _)| h.is_empty()) {
                return Err(Error::invalid_config(
                    "a Redis Cluster needs at least one seed host",
                ));
            }
            if self.database.is_some_and(|db| db != 0) {
                return Err(Error::invalid_config("Redis Cluster has only database 0"));
            }
        }
        if self.host.is_empty() {
            return Err(Error::invalid_config("the Redis host is empty"));
        }
        if self.broadcast_capacity == 0 {
            return Err(Error::invalid_config(
                "broadcast_capacity must be at least 1",
            ));
        }
        if self.pattern_depth > MAX_PATTERN_DEPTH {
            return Err(Error::invalid_config(format!(
                "pattern_depth must be at most {MAX_PATTERN_DEPTH}"
            )));
        }
        Ok(())
    }

    /// The largest payload: the configured one, or [`DEFAULT_MAX_PAYLOAD`], at most
    /// [`MAX_PAYLOAD_CEILING`].
    pub(crate) fn max_payload(&self) -> usize {
        self.options
            .payload_limit_within(DEFAULT_MAX_PAYLOAD, MAX_PAYLOAD_CEILING)
    }

    /// fred's connection settings for one client of this handle; with TLS, the rustls
    /// configuration is built from [`RedisConfig::tls`] (reading the certificate files off the
    /// runtime).
    pub(crate) async fn fred_config(&self) -> Result<FredConfig> {
        let tls = match &self.tls {
            Some(tls) => Some(TlsConfig::from(tls::client_config(tls).await?)),
            None => None,
        };
        Ok(FredConfig {
            server: match &self.cluster {
                Some(seeds) => ServerConfig::new_clustered(seeds.clone()),
                None => ServerConfig::new_centralized(self.host.clone(), self.port),
            },
            username: self.username.clone(),
            password: self.password.as_ref().map(|p| p.expose().to_string()),
            database: self.database,
            tls,
            fail_fast: true,
            ..FredConfig::default()
        })
    }

    /// fred's performance settings; `capacity` sizes its broadcast channels.
    pub(crate) fn fred_performance(&self, capacity: usize) -> PerformanceConfig {
        PerformanceConfig {
            broadcast_channel_capacity: capacity,
            ..PerformanceConfig::default()
        }
    }

    /// fred's connection settings: `TCP_NODELAY`, and TCP keepalive with `TCP_USER_TIMEOUT`
    /// (the command timeout) so that a connection whose peer vanished without a
    /// reset (a silent network fault) is closed and reconnected, whether it is idle (keepalive,
    /// within about a minute) or has data waiting to be acknowledged. Both are socket options:
    /// they cost nothing per message.
    pub(crate) fn fred_connection(&self) -> ConnectionConfig {
        let keepalive = socket2::TcpKeepalive::new()
            .with_time(Duration::from_secs(30))
            .with_interval(Duration::from_secs(10))
            .with_retries(3);
        ConnectionConfig {
            connection_timeout: self.options.connect_timeout,
            internal_command_timeout: self.options.connect_timeout,
            unresponsive: self.fred_unresponsive(),
            tcp: TcpConfig {
                nodelay: Some(true),
                keepalive: Some(keepalive),
                user_timeout: Some(self.options.command_timeout),
                ..TcpConfig::default()
            },
            ..ConnectionConfig::default()
        }
    }

    /// fred's check for unresponsive connections: a command (the driver sends a `PING` every
    /// [`CommonOptions::heartbeat`]) unanswered for two heartbeats closes its connection, which
    /// is then reconnected. So a half-open connection is noticed within about 3¼ heartbeats.
    pub(crate) fn fred_unresponsive(&self) -> UnresponsiveConfig {
        let heartbeat = self.options.heartbeat;
        if heartbeat.is_zero() {
            return UnresponsiveConfig::default();
        }
        UnresponsiveConfig {
            max_timeout: Some(heartbeat * 2),
            interval: (heartbeat / 4).max(Duration::from_millis(10)),
        }
    }

    /// fred's reconnect policy built from the configured backoff.
    pub(crate) fn fred_policy(&self) -> ReconnectPolicy {
        reconnect_policy(&self.options.backoff)
    }
}

/// `host:port`, with brackets around an IPv6 address.
fn host_label(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// fred's exponential policy from our [`Backoff`]: retry forever; attempt `n` waits
/// `initial × (1 − jitter) × multiplier^n` plus a random `0 ..= initial × jitter`, capped at
/// `max`. So the first retry falls in `initial × (1 − jitter) ..= initial` exactly as
/// [`Backoff::delay`] says; later ones keep a jitter window of `initial × jitter` (fred adds a
/// fixed amount of jitter rather than a fraction) and fred's base is an integer (the multiplier
/// rounded, at least 1).
pub(crate) fn reconnect_policy(backoff: &Backoff) -> ReconnectPolicy {
    let ms = |d: Duration| u32::try_from(d.as_millis()).unwrap_or(u32::MAX);
    let initial = ms(backoff.initial).max(1);
    let max = ms(backoff.max).max(initial);
    let jitter = if backoff.jitter.is_finite() {
        backoff.jitter.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let jitter_ms = (f64::from(initial) * jitter).round() as u32;
    let min_delay = initial.saturating_sub(jitter_ms).max(1);
    let base = if backoff.multiplier.is_finite() {
        backoff.multiplier.round().clamp(1.0, 1000.0) as u32
    } else {
        2
    };
    let mut policy = ReconnectPolicy::new_exponential(0, min_delay, max, base);
    policy.set_jitter(jitter_ms);
    policy
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "pa55-w0rd!";

    #[test]
    fn cluster_urls() {
        let c = RedisConfig::from_url("redis://:pw@10.0.0.1:7000,10.0.0.2:7001,[::1]").unwrap();
        assert_eq!(
            c.cluster,
            Some(vec![
                ("10.0.0.1".to_string(), 7000),
                ("10.0.0.2".to_string(), 7001),
                ("::1".to_string(), 6379),
            ])
        );
        assert_eq!(
            c.server_label(),
            "cluster 10.0.0.1:7000,10.0.0.2:7001,[::1]:6379"
        );
        assert_eq!(c.password.as_ref().map(Secret::expose), Some("pw"));

        let c = RedisConfig::from_url("redis://seed:7000?cluster=true").unwrap();
        assert_eq!(c.cluster, Some(vec![("seed".to_string(), 7000)]));
        assert_eq!(RedisConfig::from_url("redis://h").unwrap().cluster, None);

        for bad in [
            "redis://a,b?cluster=false",
            "redis://a,b/3",
            "redis://a,rediss://b",
        ] {
            let e = RedisConfig::from_url(bad).unwrap_err();
            assert_eq!(e.kind(), pubsub_core::ErrorKind::Invalid, "{bad}: {e}");
        }
    }

    #[test]
    fn parses_urls() {
        let c = RedisConfig::from_url("redis://127.0.0.1:6379").unwrap();
        assert_eq!((c.host.as_str(), c.port, c.tls), ("127.0.0.1", 6379, None));
        assert_eq!(
            (c.username.clone(), c.password.is_some(), c.database),
            (None, false, None)
        );

        let c = RedisConfig::from_url("rediss://alice:p%40ss@cache.example:6380/3").unwrap();
        assert_eq!((c.host.as_str(), c.port), ("cache.example", 6380));
        assert_eq!(c.tls, Some(TlsOptions::default()));
        assert_eq!(c.username.as_deref(), Some("alice"));
        assert_eq!(c.password.as_ref().map(Secret::expose), Some("p@ss"));
        assert_eq!(c.database, Some(3));
        assert_eq!(c.max_globs, DEFAULT_MAX_GLOBS);
        let c = RedisConfig::from_url("redis://h?max_globs=5").unwrap();
        assert_eq!(c.max_globs, 5);

        let c = RedisConfig::from_url("redis://:only-pass@localhost").unwrap();
        assert_eq!((c.host.as_str(), c.port), ("localhost", 6379));
        assert_eq!(c.username, None);
        assert_eq!(c.password.as_ref().map(Secret::expose), Some("only-pass"));

        // A lone user info is the password, never a user name shown by `Debug`.
        let c = RedisConfig::from_url(&format!("redis://{SECRET}@h")).unwrap();
        assert_eq!(
            (c.username, c.password.map(|p| p.expose().to_string())),
            (None, Some(SECRET.to_string()))
        );

        let c =
            RedisConfig::from_url("redis://h?pattern_depth=0&buffer=7&publish_timeout=2s").unwrap();
        assert_eq!((c.pattern_depth, c.options.buffer), (0, 7));
        assert!(!c.raw_payloads);
        assert!(
            RedisConfig::from_url("redis://h?raw_payloads=true")
                .unwrap()
                .raw_payloads
        );
        assert_eq!(c.options.publish_timeout, Duration::from_secs(2));

        let c = RedisConfig::from_url("redis://[::1]:7000/").unwrap();
        assert_eq!((c.host.as_str(), c.port, c.database), ("::1", 7000, None));
        assert_eq!(c.server_label(), "[::1]:7000");
    }

    #[test]
    fn bad_urls_are_typed_errors_without_the_password() {
        let bad = [
            format!("http://u:{SECRET}@host"),
            format!("redis://u:{SECRET}@host:notaport"),
            format!("redis://u:{SECRET}@host:6379/db7"),
            format!("redis://u:{SECRET}@host:6379/256"),
            format!("redis://u:{SECRET}@:6379"),
            format!("redis://u:{SECRET}@host/?password={SECRET}"),
            format!("redis:u:{SECRET}@host"),
            format!("redis://u:{SECRET}%ff@host"),
            format!("u:{SECRET}@host:6379"),
            format!("redis://u?ser:{SECRET}@host:6379/0"),
            format!("redis://h?{SECRET}=1"),
            format!("redis://h?pattern_depth={SECRET}"),
            String::new(),
            "redis://".to_string(),
        ];
        for url in bad {
            let err = RedisConfig::from_url(&url).expect_err(&url.replace(SECRET, "***"));
            assert_eq!(err.kind(), pubsub_core::ErrorKind::Invalid, "{err:?}");
            let text = format!("{err} {err:?}");
            assert!(!text.contains(SECRET), "leaks the password: {text}");
        }
    }

    #[test]
    fn debug_hides_the_password() {
        let c = RedisConfig::from_url(&format!("redis://bob:{SECRET}@h:1/2")).unwrap();
        let text = format!("{c:?} {c:#?}");
        assert!(!text.contains(SECRET), "{text}");
        assert!(text.contains("redacted") && text.contains("bob"), "{text}");
        let c = RedisConfig::default().with_credentials(None, SECRET);
        assert!(!format!("{c:?}").contains(SECRET));
    }

    #[tokio::test]
    async fn tls_config_builds_without_a_global_crypto_provider() {
        let c = RedisConfig::from_url("rediss://localhost").unwrap();
        // Either the system has root certificates or we get a typed error; never a panic.
        match c.fred_config().await {
            Ok(f) => assert!(f.tls.is_some()),
            Err(e) => assert_eq!(e.kind(), pubsub_core::ErrorKind::Invalid),
        }
    }

    #[test]
    fn policy_from_backoff() {
        let b = Backoff::default()
            .with_initial(Duration::from_millis(100))
            .with_max(Duration::from_secs(5))
            .with_multiplier(2.0)
            .with_jitter(0.2);
        let mut policy = reconnect_policy(&b);
        match policy {
            ReconnectPolicy::Exponential {
                max_attempts,
                min_delay,
                max_delay,
                base,
                jitter,
                ..
            } => {
                assert_eq!(max_attempts, 0, "retry forever");
                assert_eq!((min_delay, max_delay, base, jitter), (80, 5000, 2, 20));
            }
            ref other => panic!("{other:?}"),
        }
        let delays: Vec<u64> = (0..10).map(|_| policy.next_delay().unwrap()).collect();
        assert!((80..=100).contains(&delays[0]), "{delays:?}");
        assert!((160..=180).contains(&delays[1]), "{delays:?}");
        assert_eq!(delays[9], 5000, "capped: {delays:?}");
        // Nonsense values never panic.
        let mut odd = Backoff::default();
        odd.multiplier = f64::NAN;
        odd.jitter = 7.0;
        odd.initial = Duration::ZERO;
        let _ = reconnect_policy(&odd);
    }
}
