//! A real browser: headless Chromium (driven through chromedriver's WebDriver API) opens a
//! page served by gateway A (`tests/browser/index.html`), subscribes over WebSocket and over
//! SSE with a token, receives what is posted to gateway B, and sees a gap frame after A's
//! link to Redis is cut and restored; then the close codes it sees (its own close answered
//! with 1000, a refused subscribe as 4403 with the reason, 1001 when the gateway shuts down).
//! And a page's plain `EventSource` under a stream (`tests/browser/resume.html`) whose
//! connection is cut twice mid-stream shows every message exactly once, in order: the browser
//! reconnects with `Last-Event-ID` and the gateway resumes after it.
//!
//! Needs `chromium` and `chromedriver` (`scripts/brokers.sh chromium` installs them; the test
//! fails, never skips, without them) and Redis.

mod common;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use pubsub_test_support::broker;
use pubsub_test_support::proxy::TcpProxy;
use serde_json::{json, Value};
use tokio::process::{Child, Command};
use tokio::time::{sleep, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A chromedriver process and one headless Chromium session.
struct Browser {
    driver: Child,
    base: String,
    session: String,
}

impl Browser {
    async fn start() -> Browser {
        for tool in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                std::path::Path::new(tool).exists(),
                "{tool} is missing: run `bash scripts/brokers.sh chromium` (apt-get install chromium chromium-driver)"
            );
        }
        let port = free_port().await.port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + WAIT;
        while http().get(format!("{base}/status")).send().await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            sleep(Duration::from_millis(100)).await;
        }
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
            },
        }}});
        let created: Value = http()
            .post(format!("{base}/session"))
            .timeout(Duration::from_secs(60))
            .json(&capabilities)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {created}"))
            .to_string();
        Browser {
            driver,
            base,
            session,
        }
    }

    async fn command(&self, path: &str, body: Value) -> Value {
        let answer: Value = http()
            .post(format!("{}/session/{}/{path}", self.base, self.session))
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        answer["value"].clone()
    }

    async fn open(&self, url: &str) {
        self.command("url", json!({ "url": url })).await;
    }

    /// The frames the page recorded: `(websocket, sse)`.
    async fn frames(&self) -> (Vec<Value>, Vec<Value>) {
        let value = self
            .command(
                "execute/sync",
                json!({ "script": "return JSON.stringify([window.wsFrames || [], window.sseFrames || []]);", "args": [] }),
            )
            .await;
        let both: Vec<Vec<Value>> =
            serde_json::from_str(value.as_str().unwrap_or("[[],[]]")).unwrap();
        let mut both = both.into_iter();
        (
            both.next().unwrap_or_default(),
            both.next().unwrap_or_default(),
        )
    }

    /// Waits until both the WebSocket and the SSE stream of the page have a frame satisfying
    /// `wanted`.
    async fn wait_for(&self, what: &str, wanted: impl Fn(&Value) -> bool) -> (Value, Value) {
        let deadline = Instant::now() + WAIT;
        loop {
            let (ws, sse) = self.frames().await;
            if let (Some(a), Some(b)) = (
                ws.iter().find(|f| wanted(f)),
                sse.iter().find(|f| wanted(f)),
            ) {
                return (a.clone(), b.clone());
            }
            assert!(
                Instant::now() < deadline,
                "the page did not get {what} over both transports in {WAIT:?}: ws {ws:?}, sse {sse:?}"
            );
            sleep(Duration::from_millis(100)).await;
        }
    }

    /// Runs `script` in the page with a `done(value)` callback as its last argument; returns
    /// the value it gave.
    async fn run_async(&self, script: &str, args: Value) -> Value {
        self.command("execute/async", json!({ "script": script, "args": args }))
            .await
    }

    async fn quit(mut self) {
        let _ = http()
            .delete(format!("{}/session/{}", self.base, self.session))
            .send()
            .await;
        let _ = self.driver.kill().await;
    }
}

async fn post(addr: SocketAddr, topic: &str, payload: &str) {
    let (status, body) = publish(
        addr,
        topic,
        payload.to_string(),
        &[("authorization", "Bearer browser-token")],
    )
    .await;
    assert_eq!(status, 202, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_subscribes_over_websocket_and_sse() {
    let dir = std::env::temp_dir().join(unique("gateway-browser"));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        "[[auth.tokens]]\nname = \"browser\"\ntoken = \"browser-token\"\npublish = [\"browser.>\"]\nsubscribe = [\"browser.>\"]\n",
    )
    .unwrap();
    let pages = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser");
    let config_arg = config.to_string_lossy().to_string();
    let args = ["--config", &config_arg, "--static-dir", pages];

    let proxy = TcpProxy::start(&broker::redis_addr()).await.unwrap();
    let a = Node::start_with(
        &format!(
            "redis://{}?publish_timeout=500ms&command_timeout=2s&backoff_max=200ms",
            proxy.local_addr()
        ),
        &[],
        &args,
    )
    .await;
    let b = Node::start_with(&broker::redis_url(), &[], &args).await;

    let browser = Browser::start().await;
    let room = unique("browser");
    let pattern = format!("browser.{room}.>");
    browser
        .open(&format!(
            "http://{}/index.html?pattern={}&token=browser-token",
            a.addr,
            pattern.replace('>', "%3E")
        ))
        .await;
    browser
        .wait_for("the subscribed frame", |f| f["type"] == "subscribed")
        .await;

    post(b.addr, &format!("browser.{room}.msg"), "hello browser").await;
    let (ws, sse) = browser
        .wait_for("the message", |f| f["payload"] == "hello browser")
        .await;
    assert_eq!(ws, sse, "the same frame over both transports");
    assert_eq!(ws["topic"], format!("browser.{room}.msg"));

    proxy.cut();
    wait_health(a.addr, 503, "while cut").await;
    proxy.restore();
    wait_health(a.addr, 200, "after restore").await;
    let (ws, sse) = browser
        .wait_for("a gap frame", |f| f["type"] == "gap")
        .await;
    assert!(
        ws["outage_ms"].is_u64() && sse["outage_ms"].is_u64(),
        "{ws} {sse}"
    );

    post(b.addr, &format!("browser.{room}.msg"), "after the outage").await;
    browser
        .wait_for("the message after the outage", |f| {
            f["payload"] == "after the outage"
        })
        .await;

    // Close codes as the browser sees them: its own close(1000) answered with 1000 (not
    // 1006), a subscribe outside the grant closed with 4403 and the reason.
    let codes = browser
        .run_async(
            r#"const [pattern, done] = arguments;
            const open = (p) => new WebSocket(`ws://${location.host}/sub/${encodeURIComponent(p)}`,
                                             ["pubsub", "bearer.browser-token"]);
            const seen = {};
            const finish = () => { if ("mine" in seen && "refused" in seen) done(seen); };
            const mine = open(pattern);
            mine.onmessage = () => mine.close(1000, "bye");
            mine.onclose = (e) => { seen.mine = e.code; finish(); };
            const refused = open("elsewhere.x");
            refused.onclose = (e) => { seen.refused = e.code; seen.reason = e.reason; finish(); };"#,
            json!([pattern]),
        )
        .await;
    assert_eq!(codes["mine"], 1000, "{codes}");
    assert_eq!(codes["refused"], 4403, "{codes}");
    assert_eq!(
        codes["reason"], "forbidden: the token `browser` may not subscribe to `elsewhere.x`",
        "{codes}"
    );
    // The page's stream sees 1001 when gateway A shuts down.
    browser
        .run_async(
            "const done = arguments[0]; ws.addEventListener('close', (e) => { window.closeCode = e.code; }); done(true);",
            json!([]),
        )
        .await;
    a.terminate().await.await;
    let deadline = Instant::now() + WAIT;
    loop {
        let code = browser
            .command(
                "execute/sync",
                json!({ "script": "return window.closeCode || 0;", "args": [] }),
            )
            .await;
        if code != 0 {
            assert_eq!(code, 1001, "the close code on shutdown");
            break;
        }
        assert!(Instant::now() < deadline, "no close on shutdown");
        sleep(Duration::from_millis(100)).await;
    }
    browser.quit().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// What the resume page recorded: `(payloads, times the EventSource opened, gap frames)`.
async fn resume_page_state(browser: &Browser) -> (Vec<String>, u64, Vec<Value>) {
    let value = browser
        .command(
            "execute/sync",
            json!({ "script": "return JSON.stringify([window.payloads || [], window.opened || 0, window.gaps || []]);", "args": [] }),
        )
        .await;
    let (payloads, opened, gaps): (Vec<String>, u64, Vec<Value>) =
        serde_json::from_str(value.as_str().unwrap_or("[[],0,[]]")).unwrap();
    (payloads, opened, gaps)
}

/// Waits until the page has `count` payloads (and has opened its EventSource `opened` times).
async fn wait_payloads(browser: &Browser, count: usize, opened: u64, what: &str) -> Vec<String> {
    let deadline = Instant::now() + WAIT * 2;
    loop {
        let (payloads, times, gaps) = resume_page_state(browser).await;
        assert!(gaps.is_empty(), "{what}: a gap frame {gaps:?}");
        if payloads.len() >= count && times >= opened {
            return payloads;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: the page has {} of {count} messages, opened {times} times: {payloads:?}",
            payloads.len()
        );
        sleep(Duration::from_millis(100)).await;
    }
}

/// A plain `EventSource` on a pattern under a stream, behind a proxy that is cut twice while
/// messages are published: the browser reconnects on its own with `Last-Event-ID`, and the
/// page shows every message exactly once, in order, with no gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_event_source_resumes_after_its_connection_is_cut() {
    let dir = std::env::temp_dir().join(unique("gateway-resume"));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        "[[streams]]\nroot = \"resume.>\"\nmax_len = 10000\n",
    )
    .unwrap();
    let pages = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser");
    let config_arg = config.to_string_lossy().to_string();
    let node = Node::start_with(
        "memory://",
        &[],
        &["--config", &config_arg, "--static-dir", pages],
    )
    .await;
    // The browser reaches the gateway only through the proxy; the test publishes directly.
    let proxy = TcpProxy::start(&node.addr.to_string()).await.unwrap();
    let browser = Browser::start().await;
    let room = unique("resume");
    let topic = format!("resume.{room}.msg");
    browser
        .open(&format!(
            "http://{}/resume.html?pattern=resume.{room}.%3E",
            proxy.local_addr()
        ))
        .await;
    wait_payloads(&browser, 0, 1, "the EventSource opened").await;
    let send = |range: std::ops::Range<u32>| {
        let topic = topic.clone();
        async move {
            for i in range {
                let (status, body) = publish(node.addr, &topic, format!("m{i}"), &[]).await;
                assert_eq!(status, 202, "{body}");
            }
        }
    };
    send(0..20).await;
    wait_payloads(&browser, 20, 1, "before the first cut").await;
    for (cut, range) in [(2u64, 20..40), (3, 60..80)] {
        proxy.cut();
        sleep(Duration::from_millis(300)).await;
        send(range.clone()).await; // while the page is cut off
        proxy.restore();
        send(range.end..range.end + 20).await;
        wait_payloads(&browser, range.end as usize + 20, cut, "after a cut").await;
    }
    sleep(Duration::from_millis(500)).await;
    let (payloads, opened, gaps) = resume_page_state(&browser).await;
    let want: Vec<String> = (0..100).map(|i| format!("m{i}")).collect();
    assert_eq!(payloads, want, "every message once, in order");
    assert!(
        opened >= 3,
        "the EventSource reconnected after each cut ({opened})"
    );
    assert!(gaps.is_empty(), "{gaps:?}");
    browser.quit().await;
    let _ = std::fs::remove_dir_all(&dir);
}
