//! Connection URLs holding a secret, mistyped in many ways, on every backend: no error, and no
//! `Debug` of a configuration, ever shows the secret. A lone `user@` part is read as a secret
//! on Redis (the password) and NATS (a token), refused on AMQP, and is the user name on MQTT
//! and PostgreSQL (as in libpq), which may show it.

use proptest::prelude::*;
use pubsub::amqp::AmqpConfig;
use pubsub::mqtt::MqttConfig;
use pubsub::nats::NatsConfig;
use pubsub::postgres::PostgresConfig;
use pubsub::redis::RedisConfig;
use pubsub::{Error, Scheme};
use pubsub_core::adapter::ServerUrl;

use crate::check::{connect_url, error_text};

/// The secret in every URL: letters and digits, so that it survives any filtering to
/// "printable" text an error message might do.
const MARKER: &str = "Zq7Sekr3tXw9";

/// URLs with the secret as a password, a lone user info or a token, on every scheme.
const BASES: &[&str] = &[
    "redis://MARKER@cache.example:6379/0",
    "redis://user:MARKER@cache.example:6379/0?buffer=8",
    "rediss://:MARKER@cache.example:6380",
    "redis://user:MARKER@a:7000,b:7001",
    "nats://MARKER@n1.example:4222",
    "nats://user:MARKER@n1.example:4222,n2.example:4223",
    "tls://user:MARKER@n1.example",
    "amqp://user:MARKER@mq.example:5672/%2f",
    "amqps://user:MARKER@mq.example/vhost?prefetch=4",
    "amqp://MARKER@mq.example",
    "memory://user:MARKER@x",
    "mqtt://user:MARKER@broker.example:1883",
    "mqtts://user:MARKER@broker.example?client_id=a",
    "postgres://user:MARKER@db.example:5432/app",
    "postgresql://user:MARKER@db.example/app?channel=events",
];

/// Characters a mistyped URL gets: the URL's own delimiters and a few others.
const TYPOS: &[char] = &[
    ':', '/', '@', '?', '#', '%', ',', '[', ']', '=', '&', '.', ' ', 'x', '1',
];

/// Whether `text` holds a part of the secret longer than 3 characters.
fn has_marker(text: &str) -> bool {
    MARKER
        .as_bytes()
        .windows(4)
        .any(|w| text.contains(std::str::from_utf8(w).unwrap()))
}

fn assert_no_marker(what: &str, url: &str, text: &str) {
    assert!(
        !has_marker(text),
        "{what} of {:?} shows part of the secret: {text}",
        url.replace(MARKER, "<SECRET>")
    );
}

fn check_error(url: &str, error: &Error) {
    assert_no_marker("the error", url, &error_text(error));
}

/// A configuration may show the user name and the hosts (a mistyped URL can make a host of
/// the secret: `nats://SECRET,h`); it never shows a password or token.
fn check_config(url: &str, debug: String) {
    let schemes = [
        "redis",
        "rediss",
        "nats",
        "tls",
        "amqp",
        "amqps",
        "mqtt",
        "mqtts",
        "postgres",
        "postgresql",
    ];
    let shown_anyway = ServerUrl::parse(url, &schemes)
        .map(|u| {
            // A typo can move the secret into a part that is not secret by nature (a user
            // name, a host, a path such as a vhost); no parser can tell.
            u.user.as_deref().is_some_and(has_marker)
                // On PostgreSQL a lone user info is the user name (as in libpq).
                || (u.scheme.starts_with("postgres")
                    && u.user.is_none()
                    && u.password.as_ref().is_some_and(|p| has_marker(p.expose())))
                || u.hosts.iter().any(|h| has_marker(&h.host))
                || has_marker(&u.path)
        })
        .unwrap_or(false);
    if !shown_anyway {
        assert_no_marker("the Debug", url, &debug);
    }
}

/// Parses `url` with every backend's `from_url` and `Scheme::of`, checking what comes back.
fn check_every_parser(url: &str) {
    match RedisConfig::from_url(url) {
        Ok(c) => check_config(url, format!("{c:?} {c:#?}")),
        Err(e) => check_error(url, &e),
    }
    match NatsConfig::from_url(url) {
        Ok(c) => check_config(url, format!("{c:?} {c:#?}")),
        Err(e) => check_error(url, &e),
    }
    match AmqpConfig::from_url(url) {
        Ok(c) => check_config(url, format!("{c:?} {c:#?}")),
        Err(e) => check_error(url, &e),
    }
    match MqttConfig::from_url(url) {
        Ok(c) => check_config(url, format!("{c:?} {c:#?}")),
        Err(e) => check_error(url, &e),
    }
    match PostgresConfig::from_url(url) {
        Ok(c) => check_config(url, format!("{c:?} {c:#?}")),
        Err(e) => check_error(url, &e),
    }
    if let Err(e) = Scheme::of(url) {
        check_error(url, &e);
    }
}

#[derive(Debug, Clone)]
enum Typo {
    Insert(usize, char),
    Delete(usize),
    Replace(usize, char),
}

fn apply(url: &str, typos: &[Typo]) -> String {
    let mut chars: Vec<char> = url.chars().collect();
    for typo in typos {
        match *typo {
            Typo::Insert(at, c) => chars.insert(at % (chars.len() + 1), c),
            Typo::Delete(at) if !chars.is_empty() => {
                chars.remove(at % chars.len());
            }
            Typo::Replace(at, c) if !chars.is_empty() => {
                let at = at % chars.len();
                chars[at] = c;
            }
            _ => {}
        }
    }
    chars.into_iter().collect()
}

fn typo() -> impl Strategy<Value = Typo> {
    let c = proptest::sample::select(TYPOS);
    prop_oneof![
        (any::<usize>(), c.clone()).prop_map(|(at, c)| Typo::Insert(at, c)),
        any::<usize>().prop_map(Typo::Delete),
        (any::<usize>(), c).prop_map(|(at, c)| Typo::Replace(at, c)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn mistyped_urls_never_show_the_secret(
        base in proptest::sample::select(BASES),
        typos in proptest::collection::vec(typo(), 1..4),
    ) {
        let url = apply(&base.replace("MARKER", MARKER), &typos);
        check_every_parser(&url);
    }
}

/// The mistakes the issue reported, and their neighbours, by hand; and through
/// `pubsub::connect`, including URLs that parse but cannot connect (nothing listens on port 1).
#[tokio::test]
async fn known_mistakes_never_show_the_secret() {
    let urls = [
        "redis://u?ser:MARKER@host:6379/0",
        "redis://u/ser:MARKER@host:6379/0",
        "redis://u#ser:MARKER@host:6379/0",
        "redis://MARKER@host",
        "redis://:MARKER@host:notaport",
        "redis://u:MARKER@host?MARKER=1",
        "redis://u:MARKER@host?pattern_depth=MARKER",
        "u:MARKER@host,redis://h2",
        "MARKER@h?x=nats://",
        "nats://h,MARKER://h2",
        "nats://u:MARKER@h/path",
        "nats://u:MARKER@h?MARKER",
        "amqp://MARKER@h",
        "amqp://u:MARKER@h?exchange=",
        "amqp://u:MARKER@a,b",
        "memory://u:MARKER@x",
        "memory://x?MARKER=1",
        "kafka://u:MARKER@h:9092",
        "ftp://u:MARKER@h",
        "redis://u:MARKER@127.0.0.1:1",
        "nats://MARKER@127.0.0.1:1",
        "amqp://u:MARKER@127.0.0.1:1/%2f",
        "mqtt://u:MARKER@127.0.0.1:1",
        "postgres://u:MARKER@h/db?sslmode=require",
        "postgres://u:MARKER@h/db?channel=bad\"name",
        "postgresql://u:MARKER@127.0.0.1:1/test",
    ];
    for url in urls {
        let url = url.replace("MARKER", MARKER);
        check_every_parser(&url);
        match connect_url(url.clone()).await {
            Ok(_) => panic!("{url:?} connected"),
            Err(e) => check_error(&url, &e),
        }
    }
    // The lone user info: a password on Redis, a token on NATS, refused on AMQP.
    let redis = RedisConfig::from_url(&format!("redis://{MARKER}@h")).unwrap();
    assert_eq!(redis.username, None);
    assert_eq!(redis.password.as_ref().map(|p| p.expose()), Some(MARKER));
    let nats = NatsConfig::from_url(&format!("nats://{MARKER}@h")).unwrap();
    assert!(matches!(
        &nats.credentials,
        Some(pubsub::nats::Credentials::Token(t)) if t.expose() == MARKER
    ));
    let amqp = AmqpConfig::from_url(&format!("amqp://{MARKER}@h")).unwrap_err();
    assert_eq!(amqp.kind(), pubsub::ErrorKind::Invalid);
}
