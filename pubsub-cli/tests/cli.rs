//! The `pubsub` command end to end: `pub` to `sub` on a broker, and `bench` on memory, Redis
//! and NATS (small counts; the figures are in the README).

use std::process::Stdio;
use std::time::Duration;

use pubsub_test_support::broker;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::time::timeout;

const BIN: &str = env!("CARGO_BIN_EXE_pubsub");

async fn bench(url: &str) -> serde_json::Value {
    let output = timeout(
        Duration::from_secs(60),
        Command::new(BIN)
            .args([
                "bench",
                url,
                "--count",
                "2000",
                "--subscribers",
                "2",
                "--json",
            ])
            .output(),
    )
    .await
    .expect("bench timed out")
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["published"], 2000);
    assert_eq!(report["delivered"], 4000, "{report}");
    assert!(report["delivery_rate"].as_f64().unwrap() > 0.0);
    assert!(report["latency_us"]["p99"].as_f64().unwrap() > 0.0);
    report
}

#[tokio::test]
async fn bench_on_memory() {
    assert_eq!(bench("memory://").await["backend"], "memory");
}

#[tokio::test]
async fn bench_on_redis() {
    assert_eq!(bench(&broker::redis_url()).await["backend"], "redis");
}

#[tokio::test]
async fn bench_on_nats() {
    assert_eq!(bench(&broker::nats_url()).await["backend"], "nats");
}

#[tokio::test]
async fn bench_on_mqtt() {
    assert_eq!(bench(&broker::mqtt_url()).await["backend"], "mqtt");
}

#[tokio::test]
async fn bench_on_postgres() {
    assert_eq!(bench(&broker::postgres_url()).await["backend"], "postgres");
}

/// `pubsub sub` prints one JSON line per message that `pubsub pub` sends, headers included.
#[tokio::test]
async fn pub_reaches_sub() {
    let url = broker::nats_url();
    let topic = format!("cli.{}", std::process::id());
    let mut sub = Command::new(BIN)
        .args(["sub", &url, &format!("{topic}.>"), "--count", "2"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(sub.stdout.take().unwrap()).lines();
    // Publish until the subscriber (which may still be subscribing) has printed two lines.
    let publisher = async {
        loop {
            let status = Command::new(BIN)
                .args(["pub", &url, &format!("{topic}.x"), "hello", "-H", "k=v"])
                .status()
                .await
                .unwrap();
            assert!(status.success());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let reader = async {
        let mut seen = Vec::new();
        while let Some(line) = lines.next_line().await.unwrap() {
            let frame = serde_json::from_str::<serde_json::Value>(&line).unwrap();
            if frame["type"] != "subscribed" {
                seen.push(frame);
            }
        }
        seen
    };
    let seen = timeout(Duration::from_secs(20), async {
        tokio::select! {
            seen = reader => seen,
            _ = publisher => unreachable!(),
        }
    })
    .await
    .expect("sub printed nothing");
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0]["payload"], "hello");
    assert_eq!(seen[0]["headers"]["k"], "v");
    assert!(sub.wait().await.unwrap().success());
}
