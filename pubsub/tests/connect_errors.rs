//! A connect that fails says where it went and why: on every backend, a closed port gives an
//! error whose `Display` names `host:port` and the OS's reason, whose `source()` chain reaches
//! it, and which holds no password. Kafka's fails at once, not after its connect timeout.

use std::error::Error as _;
use std::time::{Duration, Instant};

use pubsub::{ErrorKind, Operation};

/// A local port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

async fn refused(url: &str, backend: &str, port: u16) {
    let started = Instant::now();
    let error = tokio::time::timeout(Duration::from_secs(20), pubsub::connect(url))
        .await
        .unwrap_or_else(|_| panic!("{backend}: connect did not fail in time"))
        .expect_err("a closed port");
    let elapsed = started.elapsed();
    let endpoint = format!("127.0.0.1:{port}");
    let shown = error.to_string();
    assert_eq!(error.kind(), ErrorKind::Connection, "{backend}: {shown}");
    assert_eq!(error.operation(), Some(Operation::Connect), "{shown}");
    assert_eq!(error.endpoint(), Some(endpoint.as_str()), "{shown}");
    assert!(
        shown.starts_with(&format!("{backend}: connect to {endpoint}: ")),
        "{shown}"
    );
    assert!(shown.to_lowercase().contains("refused"), "{shown}");
    // The chain of causes reaches the OS's reason.
    let mut chain = Vec::new();
    let mut cause = error.source();
    while let Some(e) = cause {
        chain.push(e.to_string());
        cause = e.source();
    }
    assert!(
        chain.iter().any(|c| c.to_lowercase().contains("refused")),
        "{backend}: {chain:?}"
    );
    for text in [shown.clone(), format!("{error:?}"), chain.join(" / ")] {
        assert!(!text.contains("s3cret"), "{backend}: {text}");
    }
    assert!(
        elapsed < Duration::from_secs(3),
        "{backend}: took {elapsed:?}"
    );
}

#[tokio::test]
async fn redis_names_the_endpoint_and_the_cause() {
    let port = closed_port();
    refused(&format!("redis://:s3cret@127.0.0.1:{port}"), "redis", port).await;
}

#[tokio::test]
async fn nats_names_the_endpoint_and_the_cause() {
    let port = closed_port();
    refused(&format!("nats://app:s3cret@127.0.0.1:{port}"), "nats", port).await;
}

#[tokio::test]
async fn amqp_names_the_endpoint_and_the_cause() {
    let port = closed_port();
    refused(
        &format!("amqp://guest:s3cret@127.0.0.1:{port}"),
        "amqp",
        port,
    )
    .await;
}

/// Kafka's unreachable bootstrap fails within the connect timeout (here 5 s; it fails at once).
#[tokio::test]
async fn kafka_names_the_endpoint_and_the_cause_at_once() {
    let port = closed_port();
    let url = format!("kafka://app:s3cret@127.0.0.1:{port}?connect_timeout=5s");
    refused(&url, "kafka", port).await;
}

#[tokio::test]
async fn mqtt_names_the_endpoint_and_the_cause() {
    let port = closed_port();
    refused(&format!("mqtt://app:s3cret@127.0.0.1:{port}"), "mqtt", port).await;
}

#[tokio::test]
async fn postgres_names_the_endpoint_and_the_cause() {
    let port = closed_port();
    let url = format!("postgres://app:s3cret@127.0.0.1:{port}/db");
    refused(&url, "postgres", port).await;
}
