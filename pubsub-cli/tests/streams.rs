//! `pubsub sub --from/--stream/--positions` and `pubsub pub --stream` as a script sees them:
//! exit codes and what stdout and stderr say. On `memory://` two processes share no history,
//! so these check the refusals and that declaring and starting in a stream work; the
//! positions printed are checked by `sub`'s unit tests.

use std::time::Duration;

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
