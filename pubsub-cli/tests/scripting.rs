//! The `pubsub` command as a script uses it: wait for `sub`'s `subscribed` line, then
//! publish once; the URL from `PUBSUB_URL`; headers in the order sent; clear refusals and
//! connect errors; warnings without colour codes on a pipe.

use std::process::Stdio;
use std::time::Duration;

use pubsub_test_support::broker;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::time::timeout;

const BIN: &str = env!("CARGO_BIN_EXE_pubsub");
const WAIT: Duration = Duration::from_secs(20);

fn pubsub() -> Command {
    let mut command = Command::new(BIN);
    command.env_remove("PUBSUB_URL").env_remove("RUST_LOG");
    command
}

async fn run(command: &mut Command) -> std::process::Output {
    timeout(WAIT, command.output())
        .await
        .expect("pubsub timed out")
        .unwrap()
}

/// `sub` says when it is live; one publish after that line arrives (no retry loop). The URL
/// comes from `PUBSUB_URL` for both commands, and headers keep their order.
#[tokio::test]
async fn sub_says_subscribed_then_one_publish_arrives() {
    let url = broker::nats_url();
    let topic = format!("script.{}", std::process::id());
    let pattern = format!("{topic}.>");
    let mut sub = pubsub()
        .env("PUBSUB_URL", &url)
        .args(["sub", &pattern, "--count", "1"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(sub.stdout.take().unwrap()).lines();
    let first = timeout(WAIT, lines.next_line())
        .await
        .expect("no subscribed line")
        .unwrap()
        .unwrap();
    let first: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(
        first,
        serde_json::json!({"type": "subscribed", "patterns": [pattern]})
    );
    let published = run(pubsub().env("PUBSUB_URL", &url).args([
        "pub",
        &format!("{topic}.x"),
        "hello",
        "-H",
        "zeta=1",
        "-H",
        "alpha=2",
        "-H",
        "mid=3",
    ]))
    .await;
    assert!(
        published.status.success(),
        "{}",
        String::from_utf8_lossy(&published.stderr)
    );
    let line = timeout(WAIT, lines.next_line())
        .await
        .expect("the message published after `subscribed` did not arrive")
        .unwrap()
        .unwrap();
    let message: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(message["payload"], "hello", "{line}");
    let (z, a, m) = (
        line.find("\"zeta\"").unwrap(),
        line.find("\"alpha\"").unwrap(),
        line.find("\"mid\"").unwrap(),
    );
    assert!(z < a && a < m, "headers reordered: {line}");
    assert!(timeout(WAIT, sub.wait()).await.unwrap().unwrap().success());
}

#[tokio::test]
async fn without_a_url_or_pubsub_url_the_error_says_so() {
    let output = run(pubsub().args(["pub", "a.b", "x"])).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("PUBSUB_URL"), "{stderr}");
}

#[tokio::test]
async fn bench_refuses_a_size_below_eight_bytes() {
    let output = run(pubsub().args(["bench", "memory://", "--size", "4", "--count", "10"])).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--size 4 is too small"), "{stderr}");
    assert!(stderr.contains("at least 8 bytes"), "{stderr}");
}

#[tokio::test]
async fn bench_takes_pubsub_url() {
    let output = run(pubsub()
        .env("PUBSUB_URL", "memory://")
        .args(["bench", "--count", "100", "--json"]))
    .await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["backend"], "memory");
}

/// A connect error names host:port and the OS's reason, never the password.
#[tokio::test]
async fn a_connect_error_says_where_and_why() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let output = run(pubsub().args([
        "pub",
        &format!("redis://:s3cret@127.0.0.1:{port}"),
        "a.b",
        "x",
    ]))
    .await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("redis: connect to 127.0.0.1:{port}: ")),
        "{stderr}"
    );
    assert!(stderr.to_lowercase().contains("refused"), "{stderr}");
    assert!(!stderr.contains("s3cret"), "{stderr}");
}

/// A password given to a Redis that has none is warned about (as `redis-cli` does), on a
/// pipe without colour codes.
#[tokio::test]
async fn a_password_redis_does_not_need_is_warned_about() {
    let url = broker::redis_url();
    let with_password = url.replacen("redis://", "redis://:unneeded@", 1);
    let output = run(pubsub().args(["pub", &with_password, "cli.warn", "x"])).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("WARN"), "{stderr}");
    assert!(
        stderr.contains("without any password configured") || stderr.contains("no password is set"),
        "{stderr}"
    );
    assert!(!stderr.contains("unneeded"), "{stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "ANSI codes on a pipe: {stderr:?}"
    );
}
