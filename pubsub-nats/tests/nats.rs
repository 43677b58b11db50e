//! NATS-specific behaviour against a real server (`PUBSUB_NATS_URL`, default
//! `nats://127.0.0.1:4222`): interoperation with plain NATS clients, the server's payload limit,
//! slow consumers, shared clients, connection loss. The portable behaviour is covered by the
//! conformance suite (`conformance-tests/tests/nats.rs`). These tests fail when NATS is down.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use pubsub_core::{
    Backoff, ErrorKind, Headers, Hub, Message, PubSub, SubscribeOptions, Subscription,
};
use pubsub_nats::NatsConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

fn url() -> String {
    std::env::var("PUBSUB_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_string())
}

fn config() -> NatsConfig {
    NatsConfig::from_url(&url()).expect("PUBSUB_NATS_URL parses")
}

async fn handle() -> Hub {
    pubsub_nats::connect(config())
        .await
        .unwrap_or_else(|e| panic!("NATS must be reachable at {}: {e}", url()))
}

async fn raw() -> async_nats::Client {
    let config = config();
    async_nats::connect(config.servers[0].as_str())
        .await
        .expect("NATS reachable")
}

fn prefix() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "natstest{}x{}x{}",
        std::process::id(),
        nanos % 1_000_000_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

async fn next(sub: &mut Subscription) -> Message {
    tokio::time::timeout(Duration::from_secs(5), sub.recv())
        .await
        .expect("a message within 5 s")
        .expect("stream open")
}

async fn nothing(sub: &mut Subscription, wait: Duration) {
    if let Ok(m) = tokio::time::timeout(wait, sub.recv()).await {
        panic!("unexpected {m:?}");
    }
}

fn msg(topic: &str, payload: impl Into<bytes::Bytes>) -> Message {
    Message::new(topic.parse().unwrap(), payload)
}

#[tokio::test]
async fn headers_round_trip_exactly_and_interoperate() {
    let p = prefix();
    let ps = handle().await;
    let raw = raw().await;
    let mut sub = ps
        .subscribe(format!("{p}.>").parse().unwrap())
        .await
        .unwrap();
    let mut raw_sub = raw.subscribe(format!("{p}.>")).await.unwrap();
    // `flush` only writes the SUB out; the server has it once our own message comes back.
    raw.publish(format!("{p}.ready"), "".into()).await.unwrap();
    let ready = tokio::time::timeout(Duration::from_secs(5), raw_sub.next())
        .await
        .unwrap()
        .unwrap();
    assert!(ready.subject.as_str().ends_with(".ready"));
    assert!(next(&mut sub).await.topic().as_str().ends_with(".ready"));

    let mut headers = Headers::new();
    for (n, v) in [
        ("z-last", "1"),
        ("a-first", " padded "),
        ("Content-Type", "text/plain; charset=utf-8"),
        ("empty", ""),
        ("enc", "=?UTF-8?Q?x?="),
        ("uni", "café ☃\u{3000}"),
        ("Pubsub-Order", "user value"),
    ] {
        headers.insert(n, v).unwrap();
    }
    let sent = Message::with_headers(
        format!("{p}.h").parse().unwrap(),
        vec![0u8, 255, 10, 13],
        headers,
    );
    ps.publish(sent.clone()).await.unwrap();
    let got = next(&mut sub).await;
    assert_eq!(got, sent);
    assert_eq!(
        got.headers().iter().collect::<Vec<_>>(),
        sent.headers().iter().collect::<Vec<_>>()
    );

    // A plain NATS client sees plain headers.
    let simple = Message::builder(format!("{p}.s").parse().unwrap())
        .payload("x")
        .header("trace-id", "abc")
        .build()
        .unwrap();
    ps.publish(simple).await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        seen.push(
            tokio::time::timeout(Duration::from_secs(5), raw_sub.next())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    let plain = seen
        .iter()
        .find(|m| m.subject.as_str().ends_with(".s"))
        .unwrap();
    let h = plain.headers.as_ref().unwrap();
    assert_eq!(h.get("trace-id").unwrap().as_str(), "abc");
    assert_eq!(h.len(), 1, "no order header for a single header");
    let _ = next(&mut sub).await;

    // A foreign message with a repeated header: the last value wins.
    let mut foreign = async_nats::HeaderMap::new();
    foreign.append("k", "one");
    foreign.append("k", "two");
    raw.publish_with_headers(format!("{p}.f"), foreign, "f".into())
        .await
        .unwrap();
    // A subject that is not a portable topic is skipped; a plain message without headers
    // arrives with none.
    raw.publish(format!("{p}.not*portable"), "skip".into())
        .await
        .unwrap();
    raw.publish(format!("{p}.plain"), "plain".into())
        .await
        .unwrap();
    let got = next(&mut sub).await;
    assert_eq!(got.headers().get("k"), Some("two"));
    assert_eq!(got.headers().len(), 1);
    let got = next(&mut sub).await;
    assert_eq!(got.topic().as_str(), format!("{p}.plain"));
    assert!(got.headers().is_empty());
    ps.close().await.unwrap();
}

#[tokio::test]
async fn max_payload_comes_from_the_server_and_counts_headers() {
    let p = prefix();
    let ps = handle().await;
    let max = ps.max_payload();
    let info_max = raw().await.server_info().max_payload;
    assert_eq!(max, info_max);
    let mut sub = ps
        .subscribe(format!("{p}.big").parse().unwrap())
        .await
        .unwrap();
    let full = msg(&format!("{p}.big"), vec![7u8; max]);
    ps.publish(full.clone()).await.unwrap();
    assert_eq!(next(&mut sub).await, full);
    match ps
        .publish(msg(&format!("{p}.big"), vec![7u8; max + 1]))
        .await
    {
        Err(pubsub_core::Error::PayloadTooLarge { size, max: m }) => {
            assert_eq!((size, m), (max + 1, max))
        }
        other => panic!("{other:?}"),
    }
    let with_header = Message::builder(format!("{p}.big").parse().unwrap())
        .payload(vec![7u8; max])
        .header("h", "v")
        .build()
        .unwrap();
    let err = ps.publish(with_header).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PayloadTooLarge, "{err}");
    ps.publish(msg(&format!("{p}.big"), "still fine"))
        .await
        .unwrap();
    assert_eq!(next(&mut sub).await.payload().as_ref(), b"still fine");
    ps.close().await.unwrap();
}

#[tokio::test]
async fn subscribe_is_live_at_the_server_when_it_resolves() {
    let p = prefix();
    let (a, b) = (handle().await, handle().await);
    for i in 0..100 {
        let topic = format!("{p}.r{i}");
        let mut sub = a.subscribe(topic.parse().unwrap()).await.unwrap();
        b.publish(msg(&topic, "now")).await.unwrap();
        assert_eq!(next(&mut sub).await.payload().as_ref(), b"now");
        if i % 2 == 0 {
            sub.unsubscribe().await.unwrap();
        }
    }
    a.close().await.unwrap();
    b.close().await.unwrap();
}

#[tokio::test]
async fn overlapping_native_subscriptions_give_one_copy_each() {
    let p = prefix();
    let ps = handle().await;
    let mut star = ps
        .subscribe(format!("{p}.*").parse().unwrap())
        .await
        .unwrap();
    let mut all = ps
        .subscribe(format!("{p}.>").parse().unwrap())
        .await
        .unwrap();
    let mut exact = ps
        .subscribe(format!("{p}.x").parse().unwrap())
        .await
        .unwrap();
    let mut all2 = ps
        .subscribe(format!("{p}.>").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(ps.stats().native_filters, 3);
    ps.publish(msg(&format!("{p}.x"), "1")).await.unwrap();
    ps.publish(msg(&format!("{p}.x.y"), "2")).await.unwrap();
    ps.publish(msg(&p, "3")).await.unwrap();
    assert_eq!(next(&mut star).await.payload().as_ref(), b"1");
    assert_eq!(next(&mut exact).await.payload().as_ref(), b"1");
    for sub in [&mut all, &mut all2] {
        assert_eq!(next(sub).await.payload().as_ref(), b"1");
        assert_eq!(next(sub).await.payload().as_ref(), b"2");
    }
    for sub in [&mut star, &mut all, &mut exact, &mut all2] {
        nothing(sub, Duration::from_millis(200)).await;
    }
    drop(all);
    all2.unsubscribe().await.unwrap();
    assert_eq!(ps.stats().native_filters, 2);
    ps.close().await.unwrap();
}

/// One subscription that is never read, and 100 000 messages: the reader drains the socket, the
/// stalled subscription drops its oldest messages (counted exactly), the server never sees a
/// slow consumer, and the connection stays healthy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_subscription_never_makes_a_slow_consumer() {
    const N: usize = 100_000;
    let p = prefix();
    let ps = handle().await;
    let publisher = handle().await;
    let topic = format!("{p}.flood");
    let stalled = ps.subscribe(topic.parse().unwrap()).await.unwrap();
    let mut reading = ps
        .subscribe_with(
            topic.parse().unwrap(),
            SubscribeOptions::default().with_capacity(N),
        )
        .await
        .unwrap();
    let reader = tokio::spawn(async move {
        let mut n = 0;
        while n < N {
            match tokio::time::timeout(Duration::from_secs(10), reading.recv()).await {
                Ok(Some(_)) => n += 1,
                _ => break,
            }
        }
        (n, reading)
    });
    for i in 0..N {
        publisher
            .publish(msg(&topic, format!("{i:016}")))
            .await
            .unwrap();
    }
    let (n, reading) = reader.await.unwrap();
    assert_eq!(n, N, "the reading subscription got everything");
    assert_eq!(Subscription::buffered(&stalled), 1024);
    assert_eq!(stalled.dropped(), (N - 1024) as u64);
    assert_eq!(reading.dropped(), 0);
    // Nothing was lost before the router (async-nats reports no slow consumer). The router
    // counts a drop just after the push, so allow it a moment.
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while ps.stats().dropped != stalled.dropped() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(ps.stats().dropped, stalled.dropped());
    // Still healthy.
    let mut check = ps
        .subscribe(format!("{p}.after").parse().unwrap())
        .await
        .unwrap();
    publisher
        .publish(msg(&format!("{p}.after"), "ok"))
        .await
        .unwrap();
    assert_eq!(next(&mut check).await.payload().as_ref(), b"ok");
    ps.close().await.unwrap();
    publisher.close().await.unwrap();
}

#[tokio::test]
async fn close_leaves_no_task_behind() {
    let metrics = tokio::runtime::Handle::current().metrics();
    let before = metrics.num_alive_tasks();
    let p = prefix();
    let ps = handle().await;
    let mut subs = Vec::new();
    for t in ["a", "b.*", "c.>"] {
        subs.push(
            ps.subscribe(format!("{p}.{t}").parse().unwrap())
                .await
                .unwrap(),
        );
    }
    ps.publish(msg(&format!("{p}.a"), "x")).await.unwrap();
    assert!(metrics.num_alive_tasks() > before);
    ps.close().await.unwrap();
    for sub in &mut subs {
        let _ = sub.recv().await; // the message, then the end
        assert!(tokio::time::timeout(Duration::from_secs(1), sub.recv())
            .await
            .unwrap()
            .is_none());
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while metrics.num_alive_tasks() > before && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(metrics.num_alive_tasks(), before);
    assert_eq!(
        ps.publish(msg(&format!("{p}.a"), "x"))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Closed
    );
    ps.close().await.unwrap();
}

#[tokio::test]
async fn from_client_shares_the_connection_and_leaves_it_open() {
    let p = prefix();
    let client = raw().await;
    let ps = pubsub_nats::from_client(client.clone(), NatsConfig::default())
        .await
        .unwrap();
    let mut sub = ps
        .subscribe(format!("{p}.>").parse().unwrap())
        .await
        .unwrap();
    client
        .publish(format!("{p}.raw"), "r".into())
        .await
        .unwrap();
    assert_eq!(next(&mut sub).await.payload().as_ref(), b"r");
    ps.close().await.unwrap();
    assert!(sub.recv().await.is_none());
    let mut raw_sub = client.subscribe(format!("{p}.again")).await.unwrap();
    client
        .publish(format!("{p}.again"), "still".into())
        .await
        .unwrap();
    let m = tokio::time::timeout(Duration::from_secs(5), raw_sub.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.payload.as_ref(), b"still");
}

#[tokio::test]
async fn unreachable_server_is_a_typed_error() {
    let config = NatsConfig::from_url("nats://alice:hunter2@127.0.0.1:1").unwrap();
    let err = pubsub_nats::connect(config).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connection, "{err}");
    assert!(!format!("{err} {err:?}").contains("hunter2"));
    let err = NatsConfig::from_url("nats://alice:hunter2@127.0.0.1:notaport").unwrap_err();
    assert!(!format!("{err} {err:?}").contains("hunter2"));
}

/// A TCP proxy whose connections can be cut (a network fault) and restored.
struct Proxy {
    addr: std::net::SocketAddr,
    cut: Arc<std::sync::atomic::AtomicBool>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let upstream = upstream.to_string();
        let (c, cs) = (cut.clone(), conns.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut down, _)) = listener.accept().await {
                if c.load(Ordering::SeqCst) {
                    drop(down);
                    continue;
                }
                let upstream = upstream.clone();
                cs.lock().await.push(tokio::spawn(async move {
                    if let Ok(mut up) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                    }
                }));
            }
        });
        Proxy {
            addr,
            cut,
            conns,
            accept,
        }
    }

    async fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for c in self.conns.lock().await.drain(..) {
            c.abort();
        }
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_a_cut_and_keeps_subscriptions() {
    let p = prefix();
    let upstream = config().servers[0]
        .trim_start_matches("nats://")
        .to_string();
    let proxy = Proxy::start(&upstream).await;
    let cut_config = NatsConfig::default()
        .with_servers([format!("nats://{}", proxy.addr)])
        .with_discovered_servers(false)
        .with_publish_timeout(Duration::from_millis(300))
        .with_backoff(
            Backoff::default()
                .with_initial(Duration::from_millis(20))
                .with_max(Duration::from_millis(200)),
        );
    let ps = pubsub_nats::connect(cut_config).await.unwrap();
    let direct = handle().await;
    let topic = format!("{p}.live");
    let mut sub = ps.subscribe(topic.parse().unwrap()).await.unwrap();
    let mut wild = ps
        .subscribe(format!("{p}.*").parse().unwrap())
        .await
        .unwrap();
    direct.publish(msg(&topic, "before")).await.unwrap();
    assert_eq!(next(&mut sub).await.payload().as_ref(), b"before");
    assert_eq!(next(&mut wild).await.payload().as_ref(), b"before");

    proxy.cut().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    // While disconnected, publish waits for the timeout and fails with a typed error.
    let started = std::time::Instant::now();
    let err = ps.publish(msg(&topic, "during")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(started.elapsed() >= Duration::from_millis(250));
    // Subscribing waits too (command timeout), so do not; restore.
    proxy.restore();

    // Recovery: publishing from the cut handle waits for the connection and succeeds.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match ps.publish(msg(&topic, "from-cut-handle")).await {
            Ok(()) => break,
            Err(e) if e.kind() == ErrorKind::Timeout && std::time::Instant::now() < deadline => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(next(&mut sub).await.payload().as_ref(), b"from-cut-handle");
    assert_eq!(next(&mut wild).await.payload().as_ref(), b"from-cut-handle");
    for i in 0..100 {
        direct.publish(msg(&topic, format!("{i}"))).await.unwrap();
    }
    for i in 0..100 {
        assert_eq!(next(&mut sub).await.payload(), format!("{i}").as_bytes());
        assert_eq!(next(&mut wild).await.payload(), format!("{i}").as_bytes());
    }
    // New subscriptions work after recovery, and the hub's filter count is unchanged.
    assert_eq!(ps.stats().native_filters, 2);
    let mut later = ps
        .subscribe(format!("{p}.later").parse().unwrap())
        .await
        .unwrap();
    direct
        .publish(msg(&format!("{p}.later"), "l"))
        .await
        .unwrap();
    assert_eq!(next(&mut later).await.payload().as_ref(), b"l");
    ps.close().await.unwrap();
    direct.close().await.unwrap();
}
