//! [`GatewayConfig`]: what a gateway serves and how, from a TOML file, the environment and
//! code.
//!
//! ```toml
//! listen = "0.0.0.0:8080"
//! backend = "redis://127.0.0.1:6379"
//! static_dir = "public"          # optional: files served under `/` (a web app)
//! sse_heartbeat = "15s"
//!
//! [limits]
//! max_payload = 1048576          # bytes of one published message
//! max_patterns = 16              # patterns of one subscription (one connection)
//! max_connections_per_token = 100
//! buffer = 256                   # messages queued for one connection
//! slow_client = "drop"           # or "disconnect"
//! send_timeout = "10s"           # a frame the client does not take in this long: disconnect
//!
//! [auth]
//! jwt_secret = "…"               # HS256 tokens with `publish` / `subscribe` claims
//!
//! [[auth.tokens]]
//! name = "frontend"
//! token = "…"
//! publish = ["room.*.msg"]
//! subscribe = ["room.>"]
//!
//! [auth.anonymous]              # what a request without a token may do (none if absent)
//! subscribe = ["public.>"]
//!
//! [[streams]]                    # a history kept by the broker, declared at start
//! root = "room.>"
//! max_len = 10000                # messages kept (default 10 000)
//! max_age_secs = 3600            # seconds a message is kept (default 24 hours)
//! ```
//!
//! With no `[[auth.tokens]]`, no `jwt_secret` and no `[auth.anonymous]`, the gateway is open:
//! anyone may publish and subscribe to anything (fine on a laptop, not on a network).
//!
//! Environment variables override the file ([`GatewayConfig::apply_env`]):
//! `PUBSUB_GATEWAY_LISTEN`, `PUBSUB_GATEWAY_BACKEND` (else `PUBSUB_URL`),
//! `PUBSUB_GATEWAY_STATIC_DIR`, `PUBSUB_GATEWAY_JWT_SECRET`, `PUBSUB_GATEWAY_MAX_PAYLOAD`,
//! `PUBSUB_GATEWAY_MAX_PATTERNS`, `PUBSUB_GATEWAY_MAX_CONNECTIONS_PER_TOKEN`,
//! `PUBSUB_GATEWAY_BUFFER`, `PUBSUB_GATEWAY_SLOW_CLIENT`, `PUBSUB_GATEWAY_SSE_HEARTBEAT`.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pubsub::{Pattern, Secret};
use pubsub::{StreamConfig, DEFAULT_STREAM_MAX_AGE, DEFAULT_STREAM_MAX_LEN};
use serde::{Deserialize, Deserializer};

use crate::GatewayError;

/// Everything a gateway needs to know. `Default` is an open gateway on `memory://` at
/// `127.0.0.1:8080`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Address to listen on (the server only; a [`Router`](axum::Router) nested in an
    /// application ignores it).
    pub listen: SocketAddr,
    /// The pub/sub URL (`memory://`, `redis://…`, `nats://…`, `amqp://…`).
    #[serde(deserialize_with = "secret")]
    pub backend: Secret,
    /// A folder served under `/` (an application's pages), if any.
    pub static_dir: Option<PathBuf>,
    /// How often an idle Server-Sent Events stream gets a comment line, so that proxies keep it.
    #[serde(deserialize_with = "duration")]
    pub sse_heartbeat: Duration,
    /// Limits per message, connection and token.
    pub limits: Limits,
    /// Who may publish and subscribe to what.
    pub auth: AuthConfig,
    /// Streams declared on the handle at start (see [`StreamSettings`]).
    pub streams: Vec<StreamSettings>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            backend: Secret::from("memory://"),
            static_dir: None,
            sse_heartbeat: Duration::from_secs(15),
            limits: Limits::default(),
            auth: AuthConfig::default(),
            streams: Vec::new(),
        }
    }
}

/// A stream the gateway declares on its handle when it starts (`[[streams]]`): every message
/// published under `root` is kept by the broker, delivered with its position, and a
/// subscriber can begin in the history (`from=`, `Last-Event-ID`; see
/// [`subscribe`](crate::subscribe)).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamSettings {
    /// The root pattern, such as `room.>`.
    #[serde(deserialize_with = "pattern")]
    pub root: Pattern,
    /// The most messages kept (default [`DEFAULT_STREAM_MAX_LEN`]).
    #[serde(default = "default_max_len")]
    pub max_len: u64,
    /// The longest a message is kept, in seconds (default [`DEFAULT_STREAM_MAX_AGE`]).
    #[serde(default = "default_max_age_secs")]
    pub max_age_secs: u64,
}

impl StreamSettings {
    /// A stream of `root` with the default limits.
    pub fn new(root: Pattern) -> Self {
        StreamSettings {
            root,
            max_len: default_max_len(),
            max_age_secs: default_max_age_secs(),
        }
    }

    /// The core's description of this stream.
    pub fn to_stream_config(&self) -> StreamConfig {
        StreamConfig::new(self.root.clone())
            .with_max_len(self.max_len)
            .with_max_age(Duration::from_secs(self.max_age_secs))
    }
}

fn default_max_len() -> u64 {
    DEFAULT_STREAM_MAX_LEN
}

fn default_max_age_secs() -> u64 {
    DEFAULT_STREAM_MAX_AGE.as_secs()
}

/// The limits a gateway enforces.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// The largest payload `POST /pub/{topic}` accepts, in bytes (413 above; the backend's own
    /// limit applies too).
    pub max_payload: usize,
    /// The most patterns one subscription (one WebSocket or SSE connection) may have.
    pub max_patterns: usize,
    /// The most WebSocket and SSE connections open at once per token (all anonymous clients
    /// share one count).
    pub max_connections_per_token: usize,
    /// Messages queued for one connection before the slow-client policy applies.
    pub buffer: usize,
    /// What happens to a connection whose queue is full.
    pub slow_client: SlowClient,
    /// A frame the client has not taken in this long ends its connection.
    #[serde(deserialize_with = "duration")]
    pub send_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_payload: 1024 * 1024,
            max_patterns: 16,
            max_connections_per_token: 10_000,
            buffer: 256,
            slow_client: SlowClient::Drop,
            send_timeout: Duration::from_secs(10),
        }
    }
}

/// What a gateway does with a client that does not keep up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlowClient {
    /// Drop the oldest queued messages and send a gap frame saying how many (the default).
    #[default]
    Drop,
    /// Send a final `closing` frame (reason `slow_client`) and close the connection.
    Disconnect,
}

impl SlowClient {
    fn parse(text: &str) -> Option<SlowClient> {
        match text {
            "drop" => Some(SlowClient::Drop),
            "disconnect" => Some(SlowClient::Disconnect),
            _ => None,
        }
    }
}

/// Bearer tokens and what they grant.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Static tokens.
    pub tokens: Vec<StaticToken>,
    /// The HS256 key of JSON Web Tokens, if they are accepted.
    #[serde(deserialize_with = "optional_secret")]
    pub jwt_secret: Option<Secret>,
    /// What a request without a token may do; `None`: it gets 401 (unless the gateway is open).
    pub anonymous: Option<GrantConfig>,
}

impl AuthConfig {
    /// True when nothing is configured: every request may do everything.
    pub fn is_open(&self) -> bool {
        self.tokens.is_empty() && self.jwt_secret.is_none() && self.anonymous.is_none()
    }
}

/// A static bearer token from the configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticToken {
    /// A name for logs and metrics (the token itself is never logged).
    pub name: String,
    /// The token a client sends.
    #[serde(deserialize_with = "secret")]
    pub token: Secret,
    /// Patterns of the topics it may publish to.
    #[serde(default, deserialize_with = "patterns")]
    pub publish: Vec<Pattern>,
    /// Patterns it may subscribe within.
    #[serde(default, deserialize_with = "patterns")]
    pub subscribe: Vec<Pattern>,
}

/// Publish and subscribe patterns, as written in the configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantConfig {
    /// Patterns of the topics it may publish to.
    #[serde(default, deserialize_with = "patterns")]
    pub publish: Vec<Pattern>,
    /// Patterns it may subscribe within.
    #[serde(default, deserialize_with = "patterns")]
    pub subscribe: Vec<Pattern>,
}

impl GatewayConfig {
    /// Reads a TOML configuration (unknown keys are errors; missing ones take defaults).
    pub fn from_toml(text: &str) -> Result<GatewayConfig, GatewayError> {
        toml::from_str(text).map_err(|e| GatewayError::Config(e.message().to_string()))
    }

    /// Reads a TOML file (see [`GatewayConfig::from_toml`]).
    pub fn from_file(path: &Path) -> Result<GatewayConfig, GatewayError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| GatewayError::Config(format!("cannot read {}: {e}", path.display())))?;
        GatewayConfig::from_toml(&text)
    }

    /// Overrides settings from the process environment (see the module docs).
    pub fn apply_env(&mut self) -> Result<(), GatewayError> {
        self.apply_vars(|name| std::env::var(name).ok())
    }

    /// Overrides settings from `var` (a lookup of environment variables by name).
    pub fn apply_vars(&mut self, var: impl Fn(&str) -> Option<String>) -> Result<(), GatewayError> {
        let bad = |name: &str, what: &str| GatewayError::Config(format!("{name}: {what}"));
        if let Some(v) = var("PUBSUB_GATEWAY_LISTEN") {
            self.listen = v
                .parse()
                .map_err(|_| bad("PUBSUB_GATEWAY_LISTEN", "an address like 0.0.0.0:8080"))?;
        }
        if let Some(v) = var("PUBSUB_GATEWAY_BACKEND").or_else(|| var("PUBSUB_URL")) {
            self.backend = Secret::from(v);
        }
        if let Some(v) = var("PUBSUB_GATEWAY_STATIC_DIR") {
            self.static_dir = Some(PathBuf::from(v));
        }
        if let Some(v) = var("PUBSUB_GATEWAY_JWT_SECRET") {
            self.auth.jwt_secret = Some(Secret::from(v));
        }
        let number =
            |name: &str, v: String| v.parse::<usize>().map_err(|_| bad(name, "a whole number"));
        if let Some(v) = var("PUBSUB_GATEWAY_MAX_PAYLOAD") {
            self.limits.max_payload = number("PUBSUB_GATEWAY_MAX_PAYLOAD", v)?;
        }
        if let Some(v) = var("PUBSUB_GATEWAY_MAX_PATTERNS") {
            self.limits.max_patterns = number("PUBSUB_GATEWAY_MAX_PATTERNS", v)?;
        }
        if let Some(v) = var("PUBSUB_GATEWAY_MAX_CONNECTIONS_PER_TOKEN") {
            self.limits.max_connections_per_token =
                number("PUBSUB_GATEWAY_MAX_CONNECTIONS_PER_TOKEN", v)?;
        }
        if let Some(v) = var("PUBSUB_GATEWAY_BUFFER") {
            self.limits.buffer = number("PUBSUB_GATEWAY_BUFFER", v)?;
        }
        if let Some(v) = var("PUBSUB_GATEWAY_SLOW_CLIENT") {
            self.limits.slow_client = SlowClient::parse(&v)
                .ok_or_else(|| bad("PUBSUB_GATEWAY_SLOW_CLIENT", "`drop` or `disconnect`"))?;
        }
        if let Some(v) = var("PUBSUB_GATEWAY_SSE_HEARTBEAT") {
            self.sse_heartbeat = parse_duration(&v)
                .ok_or_else(|| bad("PUBSUB_GATEWAY_SSE_HEARTBEAT", "a duration like 15s"))?;
        }
        Ok(())
    }

    /// Checks values that parse but make no sense (a zero buffer, a zero heartbeat).
    pub fn validate(&self) -> Result<(), GatewayError> {
        let bad = |what: &str| Err(GatewayError::Config(what.to_string()));
        if self.limits.buffer == 0 {
            return bad("limits.buffer must be at least 1");
        }
        if self.limits.max_patterns == 0 {
            return bad("limits.max_patterns must be at least 1");
        }
        if self.sse_heartbeat.is_zero() || self.limits.send_timeout.is_zero() {
            return bad("sse_heartbeat and limits.send_timeout must be longer than 0");
        }
        for token in &self.auth.tokens {
            if token.token.expose().is_empty() {
                return Err(GatewayError::Config(format!(
                    "auth token `{}` is empty",
                    token.name
                )));
            }
        }
        for stream in &self.streams {
            stream
                .to_stream_config()
                .validate()
                .map_err(|e| GatewayError::Config(format!("streams: {}", e.message())))?;
        }
        Ok(())
    }
}

/// Parses `250ms`, `15s` or `2m`.
pub(crate) fn parse_duration(text: &str) -> Option<Duration> {
    let at = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(at);
    let n: u64 = number.parse().ok()?;
    match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => Some(Duration::from_secs(n.saturating_mul(60))),
        _ => None,
    }
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    parse_duration(&text)
        .ok_or_else(|| serde::de::Error::custom("a duration such as 500ms, 15s or 1m"))
}

fn patterns<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Pattern>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|text| {
            Pattern::new(text)
                .map_err(|e| serde::de::Error::custom(format!("pattern `{text}`: {e}")))
        })
        .collect()
}

fn pattern<'de, D: Deserializer<'de>>(d: D) -> Result<Pattern, D::Error> {
    let text = String::deserialize(d)?;
    Pattern::new(&text).map_err(|e| serde::de::Error::custom(format!("pattern `{text}`: {e}")))
}

fn secret<'de, D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
    String::deserialize(d).map(Secret::from)
}

fn optional_secret<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
    Option::<String>::deserialize(d).map(|s| s.map(Secret::from))
}

impl fmt::Display for SlowClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SlowClient::Drop => "drop",
            SlowClient::Disconnect => "disconnect",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_full_file() {
        let config = GatewayConfig::from_toml(
            r#"
            listen = "0.0.0.0:9000"
            backend = "redis://:pw@127.0.0.1:6379"
            sse_heartbeat = "5s"
            [limits]
            max_payload = 100
            slow_client = "disconnect"
            send_timeout = "250ms"
            [auth]
            jwt_secret = "k"
            [[auth.tokens]]
            name = "front"
            token = "t0k"
            publish = ["room.*.msg"]
            subscribe = ["room.>"]
            [auth.anonymous]
            subscribe = ["public.>"]
            "#,
        )
        .unwrap();
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.sse_heartbeat, Duration::from_secs(5));
        assert_eq!(config.limits.max_payload, 100);
        assert_eq!(config.limits.buffer, 256);
        assert_eq!(config.limits.slow_client, SlowClient::Disconnect);
        assert_eq!(config.limits.send_timeout, Duration::from_millis(250));
        assert_eq!(config.auth.tokens[0].subscribe[0].as_str(), "room.>");
        assert!(!config.auth.is_open());
        // Secrets stay out of Debug.
        let shown = format!("{config:?}");
        assert!(!shown.contains("t0k") && !shown.contains(":pw@"), "{shown}");
    }

    #[test]
    fn refuses_bad_files() {
        for text in [
            "listen = 3",
            "nope = 1",
            "[limits]\nslow_client = \"sometimes\"",
            "sse_heartbeat = \"soon\"",
            "[[auth.tokens]]\nname = \"a\"\ntoken = \"b\"\nsubscribe = [\"a.>.b\"]",
        ] {
            assert!(GatewayConfig::from_toml(text).is_err(), "{text}");
        }
        let mut config = GatewayConfig::default();
        config.limits.buffer = 0;
        assert!(config.validate().is_err());
    }

    #[test]
    fn reads_streams() {
        let config = GatewayConfig::from_toml(
            r#"
            [[streams]]
            root = "room.>"
            max_len = 500
            max_age_secs = 60
            [[streams]]
            root = "news.*"
            "#,
        )
        .unwrap();
        let room = config.streams[0].to_stream_config();
        assert_eq!(room.root().as_str(), "room.>");
        assert_eq!(room.max_len(), 500);
        assert_eq!(room.max_age(), Duration::from_secs(60));
        let news = config.streams[1].to_stream_config();
        assert_eq!(news.max_len(), DEFAULT_STREAM_MAX_LEN);
        assert_eq!(news.max_age(), DEFAULT_STREAM_MAX_AGE);
        config.validate().unwrap();
        for text in [
            "[[streams]]\nmax_len = 5",
            "[[streams]]\nroot = \"a.>.b\"",
            "[[streams]]\nroot = \"a.>\"\nmax_age = \"5s\"",
        ] {
            assert!(GatewayConfig::from_toml(text).is_err(), "{text}");
        }
        let zero = GatewayConfig::from_toml("[[streams]]\nroot = \"a.>\"\nmax_len = 0").unwrap();
        let error = zero.validate().unwrap_err().to_string();
        assert!(
            error.contains("a.>") && error.contains("max_len"),
            "{error}"
        );
    }

    #[test]
    fn environment_overrides() {
        let mut config = GatewayConfig::default();
        config
            .apply_vars(|name| match name {
                "PUBSUB_GATEWAY_LISTEN" => Some("127.0.0.1:1".into()),
                "PUBSUB_URL" => Some("nats://127.0.0.1:4222".into()),
                "PUBSUB_GATEWAY_SLOW_CLIENT" => Some("disconnect".into()),
                "PUBSUB_GATEWAY_BUFFER" => Some("8".into()),
                _ => None,
            })
            .unwrap();
        assert_eq!(config.listen.port(), 1);
        assert_eq!(config.backend.expose(), "nats://127.0.0.1:4222");
        assert_eq!(config.limits.slow_client, SlowClient::Disconnect);
        assert_eq!(config.limits.buffer, 8);
        assert!(config
            .apply_vars(|name| (name == "PUBSUB_GATEWAY_BUFFER").then(|| "x".into()))
            .is_err());
    }
}
