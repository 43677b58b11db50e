//! What each backend's facade test does by URL: connect, subscribe, publish one message and
//! read it back.

use std::time::Duration;

use pubsub::{Hub, Message};

/// Connects to `url`, checking that it reached `backend`.
pub async fn connect(url: &str, backend: &str) -> Hub {
    let ps = pubsub::connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"));
    assert_eq!(ps.backend(), backend);
    ps
}

/// A topic prefix of this run's own.
pub fn prefix(case: &str) -> String {
    pubsub_test_support::names::unique_prefix(case)
}

/// Subscribes `ps` to `pattern`, publishes `message`, and returns what the subscription got
/// (within 10 s).
pub async fn round_trip(ps: &Hub, pattern: &str, message: Message) -> Message {
    let mut sub = ps
        .subscribe(pattern.parse().expect("a pattern"))
        .await
        .expect("subscribe");
    ps.publish(message).await.expect("publish");
    tokio::time::timeout(Duration::from_secs(10), sub.recv())
        .await
        .expect("in time")
        .expect("a message")
}
