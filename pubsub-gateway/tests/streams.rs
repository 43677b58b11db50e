//! Streams through the gateway, in-process on a memory bus of each test's own: positions on
//! message frames and as SSE `id:`, resuming an SSE stream with `Last-Event-ID` (no loss, no
//! duplicate), `from=` on SSE and WebSocket, the history gap, refusals (400 / 4400), and a
//! gateway that cannot declare its streams failing at start.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use pubsub_core::Position;
use pubsub_gateway::{Gateway, GatewayConfig};
use serde_json::Value;

/// `room.>` kept in full; `tiny.>` keeps 3 messages.
const STREAMS: &str = r#"
[[streams]]
root = "room.>"
max_len = 1000
max_age_secs = 600
[[streams]]
root = "tiny.>"
max_len = 3
"#;

async fn start(label: &str) -> (SocketAddr, Gateway) {
    start_in_process(&GatewayConfig::from_toml(STREAMS).unwrap(), label).await
}

/// Publishes `prefix{i}` for every `i` in `range` to `topic`, one at a time (in order).
async fn publish_run(addr: SocketAddr, topic: &str, prefix: &str, range: std::ops::Range<u32>) {
    for i in range {
        let (status, body) = publish(addr, topic, format!("{prefix}{i}"), &[]).await;
        assert_eq!(status, 202, "publish {prefix}{i}: {body}");
    }
}

/// Reads `n` frames, which must all be messages; returns them.
async fn messages(subscriber: &mut Subscriber, n: usize, what: &str) -> Vec<Value> {
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        match subscriber.next(WAIT).await {
            Some(frame) if frame["type"] == "message" => got.push(frame),
            other => panic!(
                "{what}: after {} of {n} messages, {other:?} (payloads so far: {:?})",
                got.len(),
                payloads(&got)
            ),
        }
    }
    got
}

fn payloads(frames: &[Value]) -> Vec<String> {
    frames
        .iter()
        .map(|f| f["payload"].as_str().unwrap_or("?").to_string())
        .collect()
}

fn expected(prefix: &str, range: std::ops::Range<u32>) -> Vec<String> {
    range.map(|i| format!("{prefix}{i}")).collect()
}

/// The frame's position, parsed; checks that each position comes after the one before.
fn positions(frames: &[Value]) -> Vec<Position> {
    let positions: Vec<Position> = frames
        .iter()
        .map(|f| {
            f["position"]
                .as_str()
                .unwrap_or_else(|| panic!("a message without a position: {f}"))
                .parse()
                .unwrap()
        })
        .collect();
    for pair in positions.windows(2) {
        assert!(
            pair[1].is_after(&pair[0]),
            "positions out of order: {pair:?}"
        );
    }
    positions
}

/// Asserts that nothing more arrives for a while (no duplicate, nothing extra).
async fn nothing_more(subscriber: &mut Subscriber, what: &str) {
    if let Some(frame) = subscriber.next(Duration::from_millis(500)).await {
        panic!("{what}: an extra frame {frame}");
    }
}

/// `GET path` with `headers` that must be refused: the status and JSON body.
async fn refused(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut request = http().get(format!("http://{addr}{path}"));
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    assert_ne!(status, 200, "{path} {headers:?} was not refused");
    (status, response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_resumes_after_last_event_id_without_loss_or_duplicate() {
    let (addr, _gateway) = start("sse-resume").await;
    publish_run(addr, "room.1.msg", "m", 0..10).await;

    // A page opened with `?from=start` reads part of the history, then loses its connection.
    let path = "/sub/room.%3E?from=start";
    let mut first = sse(addr, path).await;
    first.subscribed().await;
    let seen = messages(&mut first, 4, "first connection").await;
    assert_eq!(payloads(&seen), expected("m", 0..4));
    let last_id = positions(&seen)[3].to_string();
    drop(first);

    publish_run(addr, "room.1.msg", "m", 10..15).await;

    // The `EventSource` reconnects to the same URL with the id of the last event it got: the
    // header wins over `from=start`.
    let mut again = sse_with(addr, path, &[("Last-Event-ID", &last_id)]).await;
    again.subscribed().await;
    let rest = messages(&mut again, 11, "after reconnecting").await;
    assert_eq!(payloads(&rest), expected("m", 4..15));
    let rest_positions = positions(&rest);
    assert!(rest_positions[0].is_after(&last_id.parse().unwrap()));
    nothing_more(&mut again, "after reconnecting").await;

    // Then live, still with ids.
    publish_run(addr, "room.2.msg", "live", 0..1).await;
    let live = messages(&mut again, 1, "live").await;
    assert_eq!(payloads(&live), ["live0"]);
    assert!(positions(&live)[0].is_after(&rest_positions[10]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_from_start_and_last_n() {
    let (addr, _gateway) = start("sse-from").await;
    publish_run(addr, "room.7.msg", "h", 0..3).await;

    let mut from_start = sse(addr, "/sub/room.7.msg?from=start").await;
    from_start.subscribed().await;
    let history = messages(&mut from_start, 3, "from=start").await;
    assert_eq!(payloads(&history), expected("h", 0..3));
    positions(&history);

    let mut last_one = sse(addr, "/sub?pattern=room.7.msg&from=last:1").await;
    last_one.subscribed().await;
    assert_eq!(
        payloads(&messages(&mut last_one, 1, "from=last:1").await),
        ["h2"]
    );

    // Without `from`, a subscriber under a stream starts now, and still gets positions.
    let mut now = sse(addr, "/sub/room.7.msg").await;
    now.subscribed().await;
    publish_run(addr, "room.7.msg", "h", 3..4).await;
    for (what, subscriber) in [
        ("from=start", &mut from_start),
        ("from=last:1", &mut last_one),
        ("now", &mut now),
    ] {
        let live = messages(subscriber, 1, what).await;
        assert_eq!(payloads(&live), ["h3"], "{what}");
        positions(&live);
        nothing_more(subscriber, what).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_past_the_history_gets_a_history_gap() {
    let (addr, _gateway) = start("sse-history").await;
    let mut first = sse(addr, "/sub/tiny.%3E").await;
    first.subscribed().await;
    publish_run(addr, "tiny.a", "t", 0..1).await;
    let seen = messages(&mut first, 1, "first connection").await;
    let last_id = positions(&seen)[0].to_string();
    drop(first);

    // The stream keeps 3: t1..t6 are trimmed by the time the client comes back.
    publish_run(addr, "tiny.a", "t", 1..10).await;
    let mut again = sse_with(addr, "/sub/tiny.%3E", &[("Last-Event-ID", &last_id)]).await;
    again.subscribed().await;
    let (gap, before) = again.expect("a gap frame", |f| f["type"] == "gap").await;
    assert!(before.is_empty(), "{before:?}");
    assert_eq!(gap["history"], true, "{gap}");
    assert_eq!(gap["reset"], false, "{gap}");
    assert!(
        gap["missed"].is_null() || gap["missed"] == 6,
        "t1..t6 were missed: {gap}"
    );
    let rest = messages(&mut again, 3, "after the gap").await;
    assert_eq!(payloads(&rest), expected("t", 7..10));
    nothing_more(&mut again, "after the gap").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_starts_are_400_with_the_json_error() {
    let (addr, _gateway) = start("sse-bad").await;
    let (status, body) = refused(
        addr,
        "/sub/room.%3E",
        &[("Last-Event-ID", "not-a-position")],
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "bad_request", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("Last-Event-ID") && message.contains("stream position"),
        "{message}"
    );

    let (status, body) = refused(addr, "/sub/room.%3E?from=bogus", &[]).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &"bad_request".into())
    );
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("from") && message.contains("now, start, last:N"),
        "{message}"
    );

    // `from` on patterns under no declared stream: the core's refusal, as a 400.
    let (status, body) = refused(addr, "/sub/news.x?from=start", &[]).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &"bad_request".into())
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("declare_stream"),
        "{body}"
    );

    // Nothing was left open by the refusals: the gateway still serves.
    let mut ok = sse(addr, "/sub/room.%3E?from=now").await;
    ok.subscribed().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_from_a_position() {
    let (addr, _gateway) = start("ws-from").await;
    publish_run(addr, "room.3.msg", "w", 0..3).await;

    let ws = ws_connect(addr, "/sub/room.>?from=start", &[])
        .await
        .unwrap();
    let mut all = ws_frames(ws);
    all.subscribed().await;
    let history = messages(&mut all, 3, "ws from=start").await;
    assert_eq!(payloads(&history), expected("w", 0..3));
    let first = positions(&history)[0].to_string();

    // The position of a message frame is the token to resume after it.
    let ws = ws_connect(addr, &format!("/sub/room.>?from={first}"), &[])
        .await
        .unwrap();
    let mut resumed = ws_frames(ws);
    resumed.subscribed().await;
    let rest = messages(&mut resumed, 2, "ws from a position").await;
    assert_eq!(payloads(&rest), expected("w", 1..3));
    assert_eq!(rest[0]["position"], history[1]["position"]);
    publish_run(addr, "room.3.msg", "w", 3..4).await;
    assert_eq!(
        payloads(&messages(&mut resumed, 1, "ws live").await),
        ["w3"]
    );
    nothing_more(&mut resumed, "ws").await;

    // A bad `from` closes the WebSocket with 4400 and says why.
    let ws = ws_connect(addr, "/sub/room.>?from=yesterday", &[])
        .await
        .unwrap();
    let mut bad = ws_frames(ws);
    let (close, _) = bad.expect("a close", |f| f["ws"] == "close").await;
    assert_eq!(close["code"], 4400, "{close}");
    assert!(
        close["reason"]
            .as_str()
            .unwrap()
            .starts_with("bad_request: from"),
        "{close}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_cannot_be_declared_fails_the_start() {
    // Overlapping roots: the handle refuses the second, and the server does not start.
    let dir = std::env::temp_dir().join(unique("gateway-streams"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("gateway.toml");
    std::fs::write(
        &file,
        "[[streams]]\nroot = \"room.>\"\n[[streams]]\nroot = \"room.1.>\"\n",
    )
    .unwrap();
    let addr = free_port().await;
    let output = tokio::time::timeout(
        WAIT,
        tokio::process::Command::new(env!("CARGO_BIN_EXE_pubsub-gateway"))
            .args(["--backend", "memory://", "--listen", &addr.to_string()])
            .arg("--config")
            .arg(&file)
            .env_remove("PUBSUB_URL")
            .env("RUST_LOG", "off")
            .output(),
    )
    .await
    .expect("the gateway did not exit")
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot declare stream `room.1.>`") && stderr.contains("overlaps"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
