//! `pubsub sub --from/--stream/--positions/--group` and `pubsub pub --stream` as a script sees
//! them: exit codes and what stdout and stderr say. On `memory://` two processes share no
//! history, so these check the refusals and that declaring and starting in a stream work (the
//! positions printed are checked by `sub`'s unit tests); on Redis, two `sub --group` processes
//! share a group's work, each message printed once and acknowledged.

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
async fn from_without_a_stream_is_refused_with_a_hint() {
    let (code, stdout, stderr) = pubsub(&["sub", "memory://", "a.>", "--from", "start"]).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(stdout, "", "nothing is printed before the refusal");
    assert!(
        stderr.starts_with("pubsub: ")
            && stderr.contains("invalid input")
            && stderr.contains("declare it with --stream ROOT"),
        "{stderr}"
    );

    // A stream that does not cover the pattern: the same refusal.
    let (code, _, stderr) = pubsub(&[
        "sub",
        "memory://",
        "b.>",
        "--stream",
        "a.>",
        "--from",
        "start",
    ])
    .await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("declared on the handle"), "{stderr}");
}

#[tokio::test]
async fn a_bad_from_names_the_grammar() {
    for bad in ["bogus", "last:x", "time:soon"] {
        let (code, stdout, stderr) =
            pubsub(&["sub", "memory://", "a.>", "--stream", "a.>", "--from", bad]).await;
        assert_eq!(code, Some(2), "{bad}: {stderr}");
        assert_eq!(stdout, "");
        assert!(
            stderr.contains("--from")
                && stderr.contains(bad)
                && stderr.contains("now, start, last:N, time:<Unix ms> or a position"),
            "{bad}: {stderr}"
        );
    }
}

#[tokio::test]
async fn declaring_and_starting_in_a_stream_work_on_memory() {
    for from in ["start", "now", "last:5", "time:0", "ps1-1-2-0-3"] {
        let (code, stdout, stderr) = pubsub(&[
            "sub",
            "memory://",
            "room.>",
            "--stream",
            "room.>",
            "--from",
            from,
            "--positions",
            "--count",
            "0",
        ])
        .await;
        // A position of another stream is refused by the core; every other start is live.
        if from.starts_with("ps1-") {
            assert_eq!(code, Some(1), "{stderr}");
            assert!(stderr.contains("invalid input"), "{stderr}");
            continue;
        }
        assert_eq!(code, Some(0), "--from {from}: {stderr}");
        assert_eq!(
            stdout, "{\"type\":\"subscribed\",\"patterns\":[\"room.>\"]}\n",
            "--from {from}"
        );
    }

    let (code, _, stderr) =
        pubsub(&["pub", "memory://", "--stream", "room.>", "room.1", "hi"]).await;
    assert_eq!(code, Some(0), "{stderr}");
}

#[tokio::test]
async fn bad_stream_roots_are_refused() {
    let (code, _, stderr) = pubsub(&["pub", "memory://", "--stream", "a.>.b", "a.x", "hi"]).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("stream root `a.>.b`"), "{stderr}");

    let (code, _, stderr) = pubsub(&[
        "sub",
        "memory://",
        "a.>",
        "--stream",
        "a.>",
        "--stream",
        "a.b.>",
        "--count",
        "0",
    ])
    .await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("--stream `a.b.>`") && stderr.contains("overlaps"),
        "{stderr}"
    );
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
