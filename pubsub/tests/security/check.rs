//! What every security test checks: a round trip through a handle that connected, and a
//! refusal that is typed, prompt, not retried, and shows no secret.

use std::future::Future;
use std::time::{Duration, Instant};

use pubsub::{Error, ErrorKind, Hub, Message, Result};

use crate::servers::Server;

/// A refused connect must return within this.
pub const PROMPT: Duration = Duration::from_secs(5);

/// How many connections the server may see for one refused connect (the first one fails and
/// the handle gives up: fred and async-nats do not retry a first connection).
pub const MAX_ATTEMPTS: usize = 2;

/// Subscribes, publishes and receives one message on `ps`, then closes it.
pub async fn round_trip(ps: Hub) {
    let mut sub = ps.subscribe("secure.check".parse().unwrap()).await.unwrap();
    ps.publish(Message::new("secure.check".parse().unwrap(), "sealed"))
        .await
        .unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(5), sub.recv())
        .await
        .expect("no message within 5 s")
        .expect("the subscription ended");
    assert_eq!(msg.payload().as_ref(), b"sealed");
    ps.close().await.unwrap();
}

/// Fails if `text` holds one of `secrets`.
pub fn assert_no_secret(what: &str, text: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(
            !text.contains(secret),
            "{what} shows a secret: {}",
            text.replace(secret, "<SECRET>")
        );
    }
}

/// `Display`, `Debug` and every source of `error`, as one text.
pub fn error_text(error: &Error) -> String {
    let mut text = format!("{error} | {error:?} | {error:#?}");
    let mut source = std::error::Error::source(error);
    while let Some(s) = source {
        text.push_str(&format!(" | {s} | {s:?}"));
        source = s.source();
    }
    text
}

/// Runs `connect` against `server` and expects it to fail with one of `kinds` within
/// [`PROMPT`], after at most [`MAX_ATTEMPTS`] connections to the server and none more later
/// (no retries in the background), with no secret in the error.
pub async fn expect_refused(
    server: &Server,
    connect: impl Future<Output = Result<Hub>>,
    kinds: &[ErrorKind],
    secrets: &[&str],
) -> Error {
    let before = server.connections();
    let error = expect_refused_uncounted(connect, kinds, secrets).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let attempts = server.connections() - before;
    assert!(
        (1..=MAX_ATTEMPTS).contains(&attempts),
        "{attempts} connections for one refused connect"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        server.connections() - before,
        attempts,
        "the refused handle keeps connecting in the background"
    );
    error
}

/// [`expect_refused`] where the server cannot tell (it logs nothing when the client refuses
/// its certificate): the refusal only.
pub async fn expect_refused_uncounted(
    connect: impl Future<Output = Result<Hub>>,
    kinds: &[ErrorKind],
    secrets: &[&str],
) -> Error {
    let start = Instant::now();
    let result = tokio::time::timeout(PROMPT * 3, connect)
        .await
        .expect("connect hung");
    let elapsed = start.elapsed();
    let error = match result {
        Ok(ps) => {
            let _ = ps.close().await;
            panic!("connected, but it should have been refused");
        }
        Err(e) => e,
    };
    assert!(kinds.contains(&error.kind()), "unexpected kind: {error:?}");
    if error.kind() == ErrorKind::Auth {
        assert!(!error.is_temporary());
    }
    assert!(
        elapsed < PROMPT,
        "refused only after {elapsed:?}: {error:?}"
    );
    assert_no_secret("the error", &error_text(&error), secrets);
    eprintln!("refused in {elapsed:?}: {error} ({error:?})");
    error
}

/// `pubsub::connect(url)` holding its URL.
pub async fn connect_url(url: String) -> Result<Hub> {
    pubsub::connect(&url).await
}
