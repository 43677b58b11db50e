//! `pubsub sub --group` as a script sees it: refusals with their hints and exit codes, and
//! (on Redis, where two processes share the broker) work shared between two processes, each
//! message printed once and acknowledged, and a group that goes on where it stopped.

use std::process::Stdio;
use std::time::Duration;

use pubsub_test_support::{broker, unique_prefix};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::time::timeout;

const BIN: &str = env!("CARGO_BIN_EXE_pubsub");
const WAIT: Duration = Duration::from_secs(20);

async fn pubsub(args: &[&str]) -> (Option<i32>, String, String) {
    let output = timeout(
        WAIT,
        Command::new(BIN)
            .env_remove("PUBSUB_URL")
            .env_remove("RUST_LOG")
            .args(args)
            .output(),
    )
    .await
    .expect("pubsub timed out")
    .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn bad_groups_are_refused_with_a_hint() {
    let (code, stdout, stderr) = pubsub(&["sub", "memory://", "a.>", "--group", "no spaces"]).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(stdout, "");
    assert!(
        stderr.contains("--group") && stderr.contains("not a group name"),
        "{stderr}"
    );

    let (code, stdout, stderr) = pubsub(&["sub", "memory://", "a.>", "--group", "g"]).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(stdout, "", "nothing is printed before the refusal");
    assert!(stderr.contains("declare it with --stream ROOT"), "{stderr}");

    let (code, stdout, stderr) = pubsub(&[
        "sub",
        "memory://",
        "a.>",
        "--stream",
        "a.>",
        "--group",
        "g",
        "--count",
        "0",
    ])
    .await;
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout, "{\"type\":\"subscribed\",\"patterns\":[\"a.>\"]}\n");
}

/// A `pubsub sub --group --raw` process: its stdout lines (payloads) as they come.
struct Member {
    child: tokio::process::Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Member {
    async fn start(args: &[String]) -> Member {
        let mut child = Command::new(BIN)
            .env_remove("PUBSUB_URL")
            .env_remove("RUST_LOG")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn pubsub");
        let stdout = child.stdout.take().expect("stdout");
        // With --raw, the line saying the member joined goes to stderr.
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let first = timeout(WAIT, stderr.next_line())
            .await
            .expect("the joined line in time")
            .expect("reading stderr")
            .expect("the joined line");
        assert!(first.contains("\"subscribed\""), "{first}");
        Member {
            child,
            lines: BufReader::new(stdout).lines(),
        }
    }

    async fn line(&mut self) -> Option<String> {
        timeout(WAIT, self.lines.next_line())
            .await
            .expect("a line in time")
            .expect("reading stdout")
    }
}

#[tokio::test]
async fn two_processes_share_a_group_on_redis() {
    let url = broker::redis_url();
    let p = unique_prefix("cligrp");
    let root = format!("{p}.>");
    let group: String = p
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let member_args = |count: &'static str| {
        vec![
            "sub".to_string(),
            url.clone(),
            root.clone(),
            "--stream".into(),
            root.clone(),
            "--group".into(),
            group.clone(),
            "--raw".into(),
            "--count".into(),
            count.into(),
        ]
    };
    let mut one = Member::start(&member_args("10")).await;
    let mut two = Member::start(&member_args("10")).await;
    let topic = format!("{p}.t");
    for i in 0..20 {
        let payload = format!("m{i}");
        let (code, _, stderr) = pubsub(&["pub", &url, "--stream", &root, &topic, &payload]).await;
        assert_eq!(code, Some(0), "{stderr}");
    }
    let mut got = Vec::new();
    for member in [&mut one, &mut two] {
        while let Some(line) = member.line().await {
            got.push(line);
        }
        let status = timeout(WAIT, member.child.wait())
            .await
            .expect("exits after --count")
            .expect("status");
        assert!(status.success(), "{status:?}");
    }
    got.sort();
    let mut want: Vec<String> = (0..20).map(|i| format!("m{i}")).collect();
    want.sort();
    assert_eq!(got, want, "each message printed once by one of the two");

    // Everything was acknowledged: a member joining now sees only what comes next.
    let mut three = Member::start(&member_args("1")).await;
    let (code, _, stderr) = pubsub(&["pub", &url, "--stream", &root, &topic, "later"]).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(three.line().await.as_deref(), Some("later"));
}
