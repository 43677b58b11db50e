//! [`PostgresConfig`]: the server, the credentials, the database and the channel.

use std::fmt;

use pubsub_core::adapter::{address, ServerUrl};
use pubsub_core::{CommonOptions, Error, Result, Secret, WithOptions};

use crate::frame::check_channel;

/// Default PostgreSQL port.
pub const DEFAULT_PORT: u16 = 5432;

/// Default channel of a handle (see [`PostgresConfig::channel`]).
pub const DEFAULT_CHANNEL: &str = "pubsub";

/// Settings of a PostgreSQL handle.
///
/// From a URL with [`PostgresConfig::from_url`], or from [`PostgresConfig::default`]
/// (`postgres://postgres@127.0.0.1:5432`, channel `pubsub`) and the setters: the PostgreSQL
/// ones here, the shared ones (`with_publish_timeout`, `with_heartbeat`, …) from
/// [`WithOptions`]. `Debug` never shows the password.
///
/// ```
/// use pubsub_postgres::PostgresConfig;
/// let config = PostgresConfig::from_url("postgresql://app:s3cret@db.example/orders?channel=events")?;
/// assert_eq!((config.host.as_str(), config.port), ("db.example", 5432));
/// assert_eq!((config.user.as_str(), config.dbname.as_deref()), ("app", Some("orders")));
/// assert_eq!(config.channel, "events");
/// assert!(!format!("{config:?}").contains("s3cret"));
/// # Ok::<(), pubsub_core::Error>(())
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct PostgresConfig {
    /// The settings every backend shares.
    pub options: CommonOptions,
    /// The server's host name or address.
    pub host: String,
    /// The server's port.
    pub port: u16,
    /// The role to log in as.
    pub user: String,
    /// Its password, if the server asks for one.
    pub password: Option<Secret>,
    /// The database; `None`: the one named like the user (PostgreSQL's default).
    pub dbname: Option<String>,
    /// The channel every message of the handle goes through (1 to 63 bytes, no NUL): handles
    /// on one channel of one database see each other's messages, other channels not.
    pub channel: String,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        PostgresConfig {
            options: CommonOptions::default(),
            host: "127.0.0.1".to_string(),
            port: DEFAULT_PORT,
            user: "postgres".to_string(),
            password: None,
            dbname: None,
            channel: DEFAULT_CHANNEL.to_string(),
        }
    }
}

impl WithOptions for PostgresConfig {
    fn options_mut(&mut self) -> &mut CommonOptions {
        &mut self.options
    }
}

impl PostgresConfig {
    /// Parses `postgres://[user[:password]@]host[:port][/dbname][?query]` (or `postgresql://`).
    ///
    /// The user and password are percent-decoded (the user defaults to `postgres`). The query
    /// takes `channel`, `sslmode=disable` (TLS is not offered: any other `sslmode` is refused)
    /// and the [`CommonOptions`] parameters (`buffer`, `publish_timeout`, `heartbeat`, …).
    /// Errors are [`ErrorKind::Invalid`](pubsub_core::ErrorKind::Invalid) or `Unsupported`, and
    /// never repeat the URL or the password.
    pub fn from_url(url: &str) -> Result<Self> {
        let mut parsed = ServerUrl::parse(url, &["postgres", "postgresql"])?;
        let options = CommonOptions::default().take_query(&mut parsed.query)?;
        let channel = parsed.take_parsed::<String>("channel")?;
        if let Some(mode) = parsed.take_parsed::<String>("sslmode")? {
            if mode != "disable" {
                return Err(Error::unsupported(
                    "TLS to PostgreSQL is not offered yet: only sslmode=disable is taken",
                ));
            }
        }
        parsed.reject_unknown_query(&["channel", "sslmode"])?;
        // `user@host` is a user name (the kit reads a user info without `:` as a secret).
        let userinfo_is_user = !url
            .split_once("://")
            .is_some_and(|(_, r)| r.starts_with(':'));
        let (user, password) = match (parsed.user.take(), parsed.password.take()) {
            (None, Some(token)) if userinfo_is_user => (Some(token.expose().to_string()), None),
            (None, Some(_)) => {
                return Err(Error::invalid_config(
                    "the PostgreSQL URL has a password but no user name",
                ))
            }
            (user, password) => (user, password),
        };
        if parsed.path.contains('/') {
            return Err(Error::invalid_config(
                "the PostgreSQL URL's path is one database name",
            ));
        }
        let host = parsed.single_host()?;
        let config = PostgresConfig {
            options,
            host: host.host.clone(),
            port: host.port.unwrap_or(DEFAULT_PORT),
            user: user.unwrap_or_else(|| "postgres".to_string()),
            password,
            dbname: Some(parsed.path.clone()).filter(|d| !d.is_empty()),
            channel: channel.unwrap_or_else(|| DEFAULT_CHANNEL.to_string()),
        };
        check_channel(&config.channel)?;
        Ok(config)
    }

    /// Sets the server's host and port.
    pub fn with_server(mut self, host: impl Into<String>, port: u16) -> Self {
        (self.host, self.port) = (host.into(), port);
        self
    }

    /// Logs in as `user` with `password`.
    pub fn with_user_password(
        mut self,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.user = user.into();
        self.password = Some(Secret::from(password.into()));
        self
    }

    /// Sets the database.
    pub fn with_dbname(mut self, dbname: impl Into<String>) -> Self {
        self.dbname = Some(dbname.into());
        self
    }

    /// Sets the channel (checked when connecting: 1 to 63 bytes, no NUL).
    pub fn with_channel(mut self, channel: impl Into<String>) -> Self {
        self.channel = channel.into();
        self
    }

    /// `host:port`, for errors (never the credentials).
    pub(crate) fn endpoint(&self) -> String {
        address(&self.host, self.port)
    }

    /// tokio-postgres's settings.
    pub(crate) fn client_config(&self) -> tokio_postgres::Config {
        let mut pg = tokio_postgres::Config::new();
        pg.host(&self.host)
            .port(self.port)
            .user(&self.user)
            .application_name("pubsub")
            .connect_timeout(self.options.connect_timeout);
        if let Some(password) = &self.password {
            pg.password(password.expose());
        }
        if let Some(dbname) = &self.dbname {
            pg.dbname(dbname);
        }
        pg
    }
}

impl fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("options", &self.options)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("dbname", &self.dbname)
            .field("channel", &self.channel)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pubsub_core::ErrorKind;
    use std::time::Duration;

    fn parse(url: &str) -> PostgresConfig {
        PostgresConfig::from_url(url).unwrap()
    }

    #[test]
    fn hosts_users_databases_and_query() {
        let c = parse("postgres://postgres@127.0.0.1:5432/test");
        assert_eq!(
            (c.host.as_str(), c.port, c.user.as_str()),
            ("127.0.0.1", 5432, "postgres")
        );
        assert_eq!(
            (c.dbname.as_deref(), c.password.is_none()),
            (Some("test"), true)
        );
        let c = parse("POSTGRESQL://[::1]?heartbeat=2s&channel=My%20App&sslmode=disable");
        assert_eq!(
            (c.endpoint(), c.user.as_str(), c.dbname),
            ("[::1]:5432".into(), "postgres", None)
        );
        assert_eq!(
            (c.options.heartbeat, c.channel.as_str()),
            (Duration::from_secs(2), "My App")
        );
        let c = parse("postgres://alice:p%40ss%3Aw0rd@h/db");
        assert_eq!(
            (c.user.as_str(), c.password.unwrap().expose()),
            ("alice", "p@ss:w0rd")
        );
    }

    #[test]
    fn refusals_and_secrets_never_show() {
        for (url, kind) in [
            ("postgres://:hunter2@h", ErrorKind::Invalid),
            ("postgres://u:hunter2@h/a/b", ErrorKind::Invalid),
            (
                "postgres://u:hunter2@h?sslmode=require",
                ErrorKind::Unsupported,
            ),
            (
                "postgres://u:hunter2@h?password=hunter2",
                ErrorKind::Invalid,
            ),
            ("postgres://u:hunter2@h?channel=", ErrorKind::Invalid),
            ("postgres://u:hunter2@h,h2", ErrorKind::Invalid),
            ("mysql://u:hunter2@h", ErrorKind::Invalid),
            ("postgres://u:hunter2@h:port", ErrorKind::Invalid),
        ] {
            let e = PostgresConfig::from_url(url).expect_err(url);
            assert_eq!(e.kind(), kind, "{url}: {e}");
            assert!(!format!("{e} {e:?}").contains("hunter2"), "{url}: {e}");
        }
        for c in [
            parse("postgres://alice:hunter2@h"),
            PostgresConfig::default().with_user_password("u", "hunter2"),
        ] {
            let text = format!("{c:?} {} {:?}", c.endpoint(), c.client_config());
            assert!(
                !text.contains("hunter2") && text.contains("<redacted>"),
                "{text}"
            );
        }
    }
}
