//! [`ServerUrl`]: one parser for every backend's connection URL.
//!
//! `scheme://[user[:password]@]host[:port][,[scheme://]host[:port]…][/path][?key=value&…]`
//!
//! Several hosts (NATS, Kafka) are separated by commas. User name, password, path and query are
//! percent-decoded here, once. Errors never repeat any text of the URL (not even an unknown
//! scheme or query key: in a mistyped URL, a password can land there), only which part is
//! wrong and the expected form: a mistyped URL cannot put a password in a log.

use percent_encoding::percent_decode_str;

use crate::{Error, Result, Secret};

/// One `host[:port]` of a [`ServerUrl`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HostPort {
    /// The scheme written before this host, when it repeats one (`nats://a,tls://b`): lowercase.
    pub scheme: Option<String>,
    /// Host name or IP address (an IPv6 address without its brackets).
    pub host: String,
    /// The port, if given.
    pub port: Option<u16>,
}

impl HostPort {
    /// `host:port` (IPv6 in brackets), with `default_port` when none was given.
    pub fn address(&self, default_port: u16) -> String {
        address(&self.host, self.port.unwrap_or(default_port))
    }
}

/// `host:port`, an IPv6 address in brackets: where a connection goes, for
/// [`Error::with_endpoint`] (an adapter whose config holds a host and a port).
///
/// ```
/// use pubsub_core::adapter::address;
/// assert_eq!(address("::1", 5432), "[::1]:5432");
/// assert_eq!(address("db.example", 5432), "db.example:5432");
/// ```
pub fn address(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A parsed connection URL.
///
/// ```
/// use pubsub_core::adapter::ServerUrl;
/// let url = ServerUrl::parse("nats://app:p%40ss@a:4222,b?buffer=64", &["nats", "tls"])?;
/// assert_eq!(url.scheme, "nats");
/// assert_eq!(url.user.as_deref(), Some("app"));
/// assert_eq!(url.password.as_ref().map(|p| p.expose()), Some("p@ss"));
/// assert_eq!(url.hosts[1].address(4222), "b:4222");
/// assert_eq!(url.query, [("buffer".to_string(), "64".to_string())]);
/// assert!(!format!("{url:?}").contains("p@ss"));
/// # Ok::<(), pubsub_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerUrl {
    /// The scheme, lowercase.
    pub scheme: String,
    /// The user name, if any (empty is `None`).
    pub user: Option<String>,
    /// The password (after `user:`), or a user info without `:`, which is a secret by itself
    /// (a token for NATS, a password for Redis): `secret@host` gives `user: None`.
    pub password: Option<Secret>,
    /// The hosts, at least one.
    pub hosts: Vec<HostPort>,
    /// The path without its leading `/`, decoded (a database number, a vhost).
    pub path: String,
    /// The query parameters, decoded, in order.
    pub query: Vec<(String, String)>,
}

impl ServerUrl {
    /// Its hosts as `host:port` (with `default_port` where none is given), separated by
    /// commas: where a connect went, for [`Error::with_endpoint`]. Never the user or password.
    ///
    /// ```
    /// use pubsub_core::adapter::ServerUrl;
    /// let url = ServerUrl::parse("nats://u:pw@a,b:4223", &["nats"])?;
    /// assert_eq!(url.endpoint(4222), "a:4222,b:4223");
    /// # Ok::<(), pubsub_core::Error>(())
    /// ```
    pub fn endpoint(&self, default_port: u16) -> String {
        let addresses: Vec<String> = self.hosts.iter().map(|h| h.address(default_port)).collect();
        addresses.join(",")
    }

    /// Parses `url`, whose scheme must be one of `schemes` (lowercase).
    pub fn parse(url: &str, schemes: &[&str]) -> Result<ServerUrl> {
        let expected = || {
            let list: Vec<String> = schemes.iter().map(|s| format!("`{s}://`")).collect();
            list.join(" or ")
        };
        // A URL never holds raw whitespace or control characters (RFC 3986): one that does is
        // mistyped, and its parts may not be what they seem (a password read as a path).
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(Error::invalid_config(
                "the URL contains spaces or control characters; percent-encode them",
            ));
        }
        let (scheme, rest) = url.split_once("://").ok_or_else(|| {
            Error::invalid_config(format!("the URL has no scheme; expected {}", expected()))
        })?;
        let scheme = scheme.to_ascii_lowercase();
        // Never printed: a URL whose `://` comes late (`u:pass@h?x=nats://`) has its
        // password in what reads as the scheme.
        if !schemes.contains(&scheme.as_str()) {
            return Err(Error::invalid_config(format!(
                "unsupported URL scheme; expected {}",
                expected()
            )));
        }
        if rest.contains('#') {
            return Err(Error::invalid_config(
                "the URL has a `#`; percent-encode it in user names and passwords (%23)",
            ));
        }
        let (before_query, query) = match rest.split_once('?') {
            Some((a, q)) => (a, Some(q)),
            None => (rest, None),
        };
        // The user info ends at the last `@` before the path. An `@` after a `?` or `/` means
        // user info with an unescaped `?` or `/`: refuse it rather than read a password as a
        // query parameter or a path.
        let (authority, path) = before_query.split_at(path_start(before_query));
        if path.contains('@') || query.is_some_and(|q| q.contains('@')) {
            return Err(Error::invalid_config(
                "the URL has an `@` after its host; percent-encode `@`, `/`, `?` and `#` in user \
                 names and passwords (%40, %2F, %3F, %23)",
            ));
        }
        // The first `@` ends the user info: an unescaped `@` in a password then leaves an
        // `@` among the hosts, which is refused, rather than a password read as a host.
        let (userinfo, hosts) = match authority.split_once('@') {
            Some((info, hosts)) => (Some(info), hosts),
            None => (None, authority),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(info) => match info.split_once(':') {
                Some((user, password)) => (
                    Some(decode(user, "user name")?),
                    Some(Secret::from(decode(password, "password")?)),
                ),
                None => (None, Some(Secret::from(decode(info, "token")?))),
            },
        };
        let user = user.filter(|u| !u.is_empty());
        let hosts = hosts
            .split(',')
            .enumerate()
            .map(|(index, entry)| host_port(entry, index, schemes))
            .collect::<Result<Vec<_>>>()?;
        let path = decode(path.strip_prefix('/').unwrap_or(path), "path")?;
        let query = query.map_or_else(Vec::new, parse_query);
        Ok(ServerUrl {
            scheme,
            user,
            password,
            hosts,
            path,
            query,
        })
    }

    /// Fails if a query parameter is left that nobody took. The error lists the parameters
    /// the backend takes (`own`, plus the [`CommonOptions`](crate::CommonOptions) ones) and
    /// never repeats the unknown one: a mistyped URL could have put a password there.
    pub fn reject_unknown_query(&self, own: &[&str]) -> Result<()> {
        if self.query.is_empty() {
            return Ok(());
        }
        let known: Vec<&str> = crate::options::QUERY_KEYS
            .iter()
            .chain(own)
            .copied()
            .collect();
        Err(Error::invalid_config(format!(
            "the URL has a query parameter this backend does not take (it takes: {})",
            known.join(", ")
        )))
    }

    /// Removes the query parameter `key` and parses its value (the last one, if repeated);
    /// `None` when it is not there. The error names the parameter, never the value.
    ///
    /// ```
    /// use pubsub_core::adapter::ServerUrl;
    /// let mut url = ServerUrl::parse("redis://h?depth=3&other=x", &["redis"])?;
    /// assert_eq!(url.take_parsed::<usize>("depth")?, Some(3));
    /// assert_eq!(url.take_parsed::<usize>("depth")?, None);
    /// assert_eq!(url.query.len(), 1);
    /// # Ok::<(), pubsub_core::Error>(())
    /// ```
    pub fn take_parsed<T: std::str::FromStr>(&mut self, key: &str) -> Result<Option<T>> {
        let mut value = None;
        self.query.retain(|(k, v)| {
            let ours = k == key;
            if ours {
                value = Some(v.clone());
            }
            !ours
        });
        value
            .map(|v| {
                v.parse::<T>().map_err(|_| {
                    Error::invalid_config(format!("the URL parameter `{key}` has an invalid value"))
                })
            })
            .transpose()
    }

    /// Removes the query parameter `key`, if there, and parses its value into `target`.
    pub fn take_into<T: std::str::FromStr>(&mut self, key: &str, target: &mut T) -> Result<()> {
        if let Some(value) = self.take_parsed(key)? {
            *target = value;
        }
        Ok(())
    }

    /// Removes the query parameter `key`, if there, and parses its value as a duration
    /// (`500ms`, `5s`, `1m`, as the [`CommonOptions`](crate::CommonOptions) ones) into `target`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use pubsub_core::adapter::ServerUrl;
    /// let mut url = ServerUrl::parse("kafka://h?linger=5ms", &["kafka"])?;
    /// let mut linger = Duration::ZERO;
    /// url.take_duration("linger", &mut linger)?;
    /// assert_eq!(linger, Duration::from_millis(5));
    /// assert!(ServerUrl::parse("kafka://h?linger=5", &["kafka"])?.take_duration("linger", &mut linger).is_err());
    /// # Ok::<(), pubsub_core::Error>(())
    /// ```
    pub fn take_duration(&mut self, key: &str, target: &mut std::time::Duration) -> Result<()> {
        if let Some(value) = self.take_parsed::<String>(key)? {
            *target = crate::options::duration(key, &value)?;
        }
        Ok(())
    }

    /// The only host, or an error saying that this backend takes one.
    pub fn single_host(&self) -> Result<&HostPort> {
        match self.hosts.as_slice() {
            [one] => Ok(one),
            _ => Err(Error::invalid_config(
                "this backend's URL takes exactly one host",
            )),
        }
    }
}

/// The `key=value&…` pairs of a URL query, percent-decoded, in order.
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Where the path begins: the first `/` after the hosts, skipping the `scheme://` a host may
/// repeat.
fn path_start(s: &str) -> usize {
    let mut offset = 0;
    for entry in s.split(',') {
        let skip = entry.find("://").map_or(0, |at| at + 3);
        if let Some(at) = entry[skip..].find('/') {
            return offset + skip + at;
        }
        offset += entry.len() + 1;
    }
    s.len()
}

fn host_port(entry: &str, index: usize, schemes: &[&str]) -> Result<HostPort> {
    let which = index + 1;
    let (scheme, entry) = match entry.split_once("://") {
        Some((s, rest)) => {
            let s = s.to_ascii_lowercase();
            if !schemes.contains(&s.as_str()) {
                return Err(Error::invalid_config(format!(
                    "host {which} of the URL has an unsupported scheme"
                )));
            }
            (Some(s), rest)
        }
        None => (None, entry),
    };
    if entry.contains('@') {
        return Err(Error::invalid_config(format!(
            "host {which} of the URL has user info; give it once, before the first host"
        )));
    }
    let (host, port) = if let Some(v6) = entry.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(|| {
            Error::invalid_config(format!("host {which} of the URL has an unclosed `[`"))
        })?;
        (host, after.strip_prefix(':'))
    } else {
        match entry.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (entry, None),
        }
    };
    // A `:` is only part of a host inside brackets (IPv6): `u:pass:host` (a mistyped `@`)
    // must not become a host name that `Debug` would show.
    let bracketed = entry.starts_with('[');
    if host.is_empty()
        || (!bracketed && host.contains(':'))
        || host
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "/?#[]%@".contains(c))
    {
        return Err(Error::invalid_config(format!(
            "host {which} of the URL is missing or not a valid host name"
        )));
    }
    let port = match port {
        None | Some("") => None,
        Some(p) => Some(p.parse::<u16>().map_err(|_| {
            Error::invalid_config(format!("host {which} of the URL has an invalid port"))
        })?),
    };
    Ok(HostPort {
        scheme,
        host: host.to_string(),
        port,
    })
}

fn decode(part: &str, what: &str) -> Result<String> {
    percent_decode_str(part)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| {
            Error::invalid_config(format!("the {what} in the URL is not UTF-8 once decoded"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECRET: &str = "pa55-w0rd";

    fn parse(url: &str) -> Result<ServerUrl> {
        ServerUrl::parse(url, &["redis", "rediss"])
    }

    #[test]
    fn parses_the_usual_forms() {
        let u = parse("redis://127.0.0.1:6379").unwrap();
        assert_eq!(u.hosts[0].address(1), "127.0.0.1:6379");
        assert_eq!((u.user, u.password, u.path.as_str()), (None, None, ""));

        let u = parse("REDISS://alice:p%40ss@cache.example:6380/3?a=1&b=x%20y").unwrap();
        assert_eq!(u.scheme, "rediss");
        assert_eq!(u.user.as_deref(), Some("alice"));
        assert_eq!(u.password.unwrap().expose(), "p@ss");
        assert_eq!(u.path, "3");
        assert_eq!(u.query[1], ("b".to_string(), "x y".to_string()));

        let u = parse("redis://:only@[::1]:7000/").unwrap();
        assert_eq!(u.user, None);
        assert_eq!(u.hosts[0].host, "::1");
        assert_eq!(u.hosts[0].address(1), "[::1]:7000");

        let token = parse(&format!("redis://{SECRET}@h")).unwrap();
        assert!(!format!("{token:?}").contains(SECRET));

        let u = parse("redis://a,redis://b:2").unwrap();
        assert_eq!(u.hosts.len(), 2);
        assert_eq!(u.hosts[1].scheme.as_deref(), Some("redis"));
        assert!(u.single_host().is_err());
    }

    #[test]
    fn mistyped_urls_never_echo_a_secret() {
        let bad = [
            format!("http://u:{SECRET}@host"),
            format!("redis://u:{SECRET}@host:notaport"),
            format!("redis://u?ser:{SECRET}@host:6379/0"),
            format!("redis://u/ser:{SECRET}@host:6379/0"),
            format!("redis://u:{SECRET}@:6379"),
            format!("redis://u:{SECRET}%ff@host"),
            format!("redis://u:{SECRET}#@host"),
            format!("redis:u:{SECRET}@host"),
            format!("redis://u:p@{SECRET}@host"),
            format!("redis://u:{SECRET}@h1,v:pw@h2"),
            format!("redis://h?{SECRET}=1"),
            format!("u:{SECRET}@h,redis://h2"),
            format!("redis://h,{SECRET}://h2"),
            format!("{SECRET}@h?x=redis://"),
            format!("redis://:{SECRET}:host:6379"),
            format!("redis://u:{SECRET}:host"),
            String::new(),
            "redis://".to_string(),
        ];
        for url in bad {
            let result = parse(&url).and_then(|u| u.reject_unknown_query(&[]));
            let err = result.expect_err(&url.replace(SECRET, "***"));
            assert_eq!(err.kind(), crate::ErrorKind::Invalid);
            let text = format!("{err} {err:?}");
            assert!(!text.contains(SECRET), "{text}");
        }
    }

    proptest! {
        #[test]
        fn never_panics_and_never_leaks(s in "[a-z:/@?#%,\\[\\]=&.0-9A-Z-]{0,60}") {
            let url = format!("redis://{s}{SECRET}");
            if let Err(e) = parse(&url).and_then(|u| u.reject_unknown_query(&[])) {
                let text = format!("{e} {e:?}");
                prop_assert!(!text.contains(SECRET), "{}", text);
            }
        }
    }
}
