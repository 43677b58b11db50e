//! Brokers that require authentication: private `redis-server` (`requirepass`, an ACL user) and
//! `nats-server` (user and password, token) instances, and the shared RabbitMQ with a wrong
//! password. The right credentials work; wrong ones give a typed `Auth` error at once, with no
//! reconnect storm; no secret shows in an error, a configuration's `Debug` or any log record.

use pubsub::amqp::AmqpConfig;
use pubsub::nats::NatsConfig;
use pubsub::redis::RedisConfig;
use pubsub::ErrorKind;

use crate::check::{assert_no_secret, connect_url, error_text, expect_refused, round_trip, PROMPT};
use crate::logs;
use crate::servers::{self, Listen};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_requirepass() {
    logs::capture();
    const RIGHT: &str = "Rq7-right-Pw9";
    const WRONG: &str = "Wx3-wrong-Pw5";
    let server = servers::redis(Listen::Plain, &["--requirepass", RIGHT]);
    let port = server.port;
    // `:password@` and a lone `password@` (read as the password) both work.
    for url in [
        format!("redis://:{RIGHT}@127.0.0.1:{port}"),
        format!("redis://{RIGHT}@127.0.0.1:{port}"),
    ] {
        let config = RedisConfig::from_url(&url).unwrap();
        assert_no_secret("the config", &format!("{config:?} {config:#?}"), &[RIGHT]);
        round_trip(pubsub::redis::connect(config).await.unwrap()).await;
    }
    for url in [
        format!("redis://:{WRONG}@127.0.0.1:{port}"),
        format!("redis://{WRONG}@127.0.0.1:{port}"),
    ] {
        let connect = connect_url(url);
        expect_refused(&server, connect, &[ErrorKind::Auth], &[RIGHT, WRONG]).await;
    }
    // No password at all: `NOAUTH` on the first command.
    let none = connect_url(format!("redis://127.0.0.1:{port}"));
    expect_refused(&server, none, &[ErrorKind::Auth], &[RIGHT]).await;
    logs::assert_never_logged(RIGHT);
    logs::assert_never_logged(WRONG);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_acl_user() {
    logs::capture();
    const RIGHT: &str = "Ac1-alice-Pw2";
    const WRONG: &str = "Ac8-wrong-Pw4";
    let password = format!(">{RIGHT}");
    let acl = ["--user", "alice", "on", &password, "~*", "&*", "+@all"];
    let server = servers::redis(
        Listen::Plain,
        &[&acl[..], &["--user", "default", "off"]].concat(),
    );
    let port = server.port;
    let config = RedisConfig::from_url(&format!("redis://alice:{RIGHT}@127.0.0.1:{port}")).unwrap();
    let text = format!("{config:?}");
    assert!(text.contains("alice"), "{text}");
    assert_no_secret("the config", &text, &[RIGHT]);
    round_trip(pubsub::redis::connect(config).await.unwrap()).await;

    let config = RedisConfig::default()
        .with_server("127.0.0.1", port)
        .with_credentials(Some("alice".to_string()), WRONG);
    assert_no_secret("the config", &format!("{config:?}"), &[WRONG]);
    let wrong = pubsub::redis::connect(config);
    expect_refused(&server, wrong, &[ErrorKind::Auth], &[RIGHT, WRONG]).await;
    let nobody = connect_url(format!("redis://mallory:{RIGHT}@127.0.0.1:{port}"));
    expect_refused(&server, nobody, &[ErrorKind::Auth], &[RIGHT]).await;
    logs::assert_never_logged(RIGHT);
    logs::assert_never_logged(WRONG);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_user_and_password() {
    logs::capture();
    const RIGHT: &str = "Nu5-right-Pw1";
    const WRONG: &str = "Nu6-wrong-Pw2";
    let server = servers::nats(Listen::Plain, &["--user", "alice", "--pass", RIGHT]);
    let port = server.port;
    let config = NatsConfig::from_url(&format!("nats://alice:{RIGHT}@127.0.0.1:{port}")).unwrap();
    assert_no_secret("the config", &format!("{config:?} {config:#?}"), &[RIGHT]);
    round_trip(pubsub::nats::connect(config).await.unwrap()).await;

    let wrong = connect_url(format!("nats://alice:{WRONG}@127.0.0.1:{port}"));
    expect_refused(&server, wrong, &[ErrorKind::Auth], &[RIGHT, WRONG]).await;
    let none = connect_url(format!("nats://127.0.0.1:{port}"));
    expect_refused(&server, none, &[ErrorKind::Auth], &[RIGHT]).await;
    logs::assert_never_logged(RIGHT);
    logs::assert_never_logged(WRONG);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_token() {
    logs::capture();
    const RIGHT: &str = "Nt7-right-Tok3";
    const WRONG: &str = "Nt8-wrong-Tok4";
    let server = servers::nats(Listen::Plain, &["--auth", RIGHT]);
    let port = server.port;
    // A lone `token@` is the token.
    let config = NatsConfig::from_url(&format!("nats://{RIGHT}@127.0.0.1:{port}")).unwrap();
    assert_no_secret("the config", &format!("{config:?} {config:#?}"), &[RIGHT]);
    round_trip(pubsub::nats::connect(config).await.unwrap()).await;
    let config = NatsConfig::default()
        .with_servers([format!("nats://127.0.0.1:{port}")])
        .with_token(RIGHT);
    round_trip(pubsub::nats::connect(config).await.unwrap()).await;

    let wrong = connect_url(format!("nats://{WRONG}@127.0.0.1:{port}"));
    expect_refused(&server, wrong, &[ErrorKind::Auth], &[RIGHT, WRONG]).await;
    logs::assert_never_logged(RIGHT);
    logs::assert_never_logged(WRONG);
}

/// The shared RabbitMQ (guest/guest) with a wrong password: refused at once, typed. Its
/// connection count is not observed here (the shared broker is busy with other tests); the
/// AMQP handle makes no connection after a failed first one (its reconnect task starts only
/// once connected).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_wrong_password() {
    logs::capture();
    const WRONG: &str = "Aq2-wrong-Pw8";
    let addr = conformance_addr();
    let url = format!("amqp://guest:{WRONG}@{addr}/%2f");
    let config = AmqpConfig::from_url(&url).unwrap();
    assert_no_secret("the config", &format!("{config:?} {config:#?}"), &[WRONG]);
    let start = std::time::Instant::now();
    let error = match pubsub::connect(&url).await {
        Ok(_) => panic!("connected with a wrong password"),
        Err(e) => e,
    };
    assert!(
        start.elapsed() < PROMPT,
        "refused after {:?}",
        start.elapsed()
    );
    assert_eq!(error.kind(), ErrorKind::Auth, "{error:?}");
    assert!(!error.is_temporary());
    assert_no_secret("the error", &error_text(&error), &[WRONG]);
    logs::assert_never_logged(WRONG);
}

/// `host:port` of the shared RabbitMQ (`PUBSUB_AMQP_URL`'s, else 127.0.0.1:5672).
fn conformance_addr() -> String {
    let url = std::env::var("PUBSUB_AMQP_URL").unwrap_or_default();
    AmqpConfig::from_url(&url)
        .map(|c| format!("{}:{}", c.host, c.port))
        .unwrap_or_else(|_| "127.0.0.1:5672".to_string())
}
