//! Load test of one gateway on loopback: 1000 WebSocket clients in 100 rooms (10 per room) on
//! one `pubsub-gateway` process (memory backend); publishers POST to the rooms as fast as the
//! gateway accepts; reports deliveries per second, latency percentiles (POST sent to frame
//! received) and the gateway's resident memory per connection.
//!
//! `cargo bench -p pubsub-gateway --bench load` (about half a minute). Bounded by
//! `LOAD_CLIENTS` (1000), `LOAD_ROOMS` (100), `LOAD_POSTS` (10000), `LOAD_CONCURRENCY` (32
//! publishing connections). Needs ~2 file descriptors per client (`ulimit -n`).

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use hdrhistogram::Histogram;
use tokio::process::Command;
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message as WsMessage;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Resident memory of process `pid` in KiB (Linux).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let clients = env("LOAD_CLIENTS", 1000);
    let rooms = env("LOAD_ROOMS", 100).max(1);
    let posts = env("LOAD_POSTS", 10_000);
    let concurrency = env("LOAD_CONCURRENCY", 32).max(1);

    let addr: SocketAddr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let mut gateway = Command::new(env!("CARGO_BIN_EXE_pubsub-gateway"))
        .args(["--backend", "memory://", "--listen", &addr.to_string()])
        .env("RUST_LOG", "warn")
        .env("PUBSUB_GATEWAY_BUFFER", "1024")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = gateway.id().unwrap();
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while http
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "gateway did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let idle_rss = rss_kib(pid);

    // Connect every client and wait for its `subscribed` frame.
    let base = Instant::now();
    let latency = Arc::new(Mutex::new(Histogram::<u64>::new(3).unwrap()));
    let delivered = Arc::new(AtomicU64::new(0));
    let gaps = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    let connect_start = Instant::now();
    for i in 0..clients {
        let url = format!("ws://{addr}/sub/load.room.{}", i % rooms);
        let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let (_, mut frames) = ws.split();
        match frames.next().await {
            Some(Ok(WsMessage::Text(t))) if t.contains("subscribed") => {}
            other => panic!("client {i}: no subscribed frame: {other:?}"),
        }
        let (latency, delivered, gaps) = (latency.clone(), delivered.clone(), gaps.clone());
        readers.push(tokio::spawn(async move {
            let mut local = Histogram::<u64>::new(3).unwrap();
            while let Some(Ok(frame)) = frames.next().await {
                let WsMessage::Text(text) = frame else {
                    continue;
                };
                let frame: serde_json::Value = serde_json::from_str(text.as_str()).unwrap();
                match frame["type"].as_str() {
                    Some("message") => {
                        let sent: u64 = frame["payload"].as_str().unwrap().parse().unwrap();
                        let now = base.elapsed().as_nanos() as u64;
                        local.record(now.saturating_sub(sent).max(1)).unwrap();
                        delivered.fetch_add(1, Ordering::Relaxed);
                    }
                    Some("gap") => {
                        gaps.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => break,
                }
            }
            latency.lock().await.add(&local).unwrap();
        }));
    }
    let connect_time = connect_start.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let loaded_rss = rss_kib(pid);

    // Publish: `posts` POSTs spread over the rooms, `concurrency` at a time.
    let expected = (0..posts)
        .map(|p| {
            let room = p % rooms;
            (0..clients).filter(|c| c % rooms == room).count() as u64
        })
        .sum::<u64>();
    let start = Instant::now();
    futures::stream::iter(0..posts)
        .for_each_concurrent(concurrency, |p| {
            let http = http.clone();
            async move {
                let sent = base.elapsed().as_nanos() as u64;
                let response = http
                    .post(format!("http://{addr}/pub/load.room.{}", p % rooms))
                    .body(sent.to_string())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status().as_u16(), 202);
            }
        })
        .await;
    let publish_time = start.elapsed();
    let wait_until = Instant::now() + Duration::from_secs(30);
    while delivered.load(Ordering::Relaxed) + gaps.load(Ordering::Relaxed) < expected
        && Instant::now() < wait_until
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = start.elapsed();
    let peak_rss = rss_kib(pid);

    // SIGTERM: every client gets its closing frame, the readers end.
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await
        .unwrap();
    for reader in readers {
        let _ = tokio::time::timeout(Duration::from_secs(15), reader).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(15), gateway.wait()).await;

    let latency = latency.lock().await;
    let got = delivered.load(Ordering::Relaxed);
    let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1e6;
    println!("gateway load test: {clients} WebSocket clients in {rooms} rooms, {posts} POSTs ({concurrency} at a time), memory backend, loopback");
    println!(
        "  connect + subscribe  {:.2}s for {clients} clients",
        connect_time.as_secs_f64()
    );
    println!(
        "  deliveries           {got} of {expected} ({} gap frames) in {:.2}s: {:.0} deliveries/s ({:.0} POSTs/s accepted)",
        gaps.load(Ordering::Relaxed),
        elapsed.as_secs_f64(),
        got as f64 / elapsed.as_secs_f64(),
        posts as f64 / publish_time.as_secs_f64()
    );
    println!(
        "  latency (ms)         p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
        ms(0.5),
        ms(0.9),
        ms(0.99),
        latency.max() as f64 / 1e6
    );
    println!(
        "  gateway RSS          idle {:.1} MiB, {clients} connections {:.1} MiB ({:.1} KiB per connection), after the run {:.1} MiB",
        idle_rss as f64 / 1024.0,
        loaded_rss as f64 / 1024.0,
        loaded_rss.saturating_sub(idle_rss) as f64 / clients as f64,
        peak_rss as f64 / 1024.0
    );
    assert!(got > 0, "nothing delivered");
}
