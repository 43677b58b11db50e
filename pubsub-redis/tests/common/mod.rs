//! Helpers for the Redis integration tests: the server address and a TCP proxy that can cut
//! and restore every connection passing through it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use pubsub_core::{Message, Subscription};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// `PUBSUB_REDIS_URL`, or the local default.
pub fn redis_url() -> String {
    std::env::var("PUBSUB_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string())
}

/// `host:port` of [`redis_url`].
pub fn redis_addr() -> String {
    let url = url::Url::parse(&redis_url()).expect("PUBSUB_REDIS_URL parses");
    format!(
        "{}:{}",
        url.host_str().expect("host"),
        url.port().unwrap_or(6379)
    )
}

/// A unique topic prefix for one test.
pub fn prefix(name: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "t{}x{}x{}.{name}",
        std::process::id(),
        nanos % 1_000_000_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The next message, or `None` after `wait` without one.
pub async fn next(sub: &mut Subscription, wait: Duration) -> Option<Message> {
    tokio::time::timeout(wait, sub.recv()).await.ok().flatten()
}

/// Everything that arrives until the subscription is quiet for `idle`.
pub async fn drain(sub: &mut Subscription, idle: Duration) -> Vec<Message> {
    let mut out = Vec::new();
    while let Some(m) = next(sub, idle).await {
        out.push(m);
    }
    out
}

/// A TCP proxy in front of one upstream address.
pub struct TcpProxy {
    addr: SocketAddr,
    state: Arc<ProxyState>,
    accept: JoinHandle<()>,
}

struct ProxyState {
    upstream: String,
    cut: AtomicBool,
    frozen: AtomicBool,
    pipes: Mutex<Vec<JoinHandle<()>>>,
}

impl TcpProxy {
    pub async fn start(upstream: &str) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(ProxyState {
            upstream: upstream.to_string(),
            cut: AtomicBool::new(false),
            frozen: AtomicBool::new(false),
            pipes: Mutex::new(Vec::new()),
        });
        let s = state.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    return;
                };
                if s.cut.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let upstream = s.upstream.clone();
                let state = s.clone();
                let pipe = tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let (ar, aw) = inbound.into_split();
                    let (br, bw) = outbound.into_split();
                    tokio::select! {
                        _ = relay(ar, bw, &state) => {}
                        _ = relay(br, aw, &state) => {}
                    }
                });
                let mut pipes = s.pipes.lock();
                pipes.retain(|p| !p.is_finished());
                pipes.push(pipe);
            }
        });
        TcpProxy {
            addr,
            state,
            accept,
        }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections currently open through the proxy.
    pub fn connections(&self) -> usize {
        let mut pipes = self.state.pipes.lock();
        pipes.retain(|p| !p.is_finished());
        pipes.len()
    }

    /// Closes every connection and refuses new ones until [`TcpProxy::restore`].
    pub fn cut(&self) {
        self.state.cut.store(true, Ordering::SeqCst);
        for pipe in self.state.pipes.lock().drain(..) {
            pipe.abort();
        }
    }

    pub fn restore(&self) {
        self.state.cut.store(false, Ordering::SeqCst);
    }

    /// Stops relaying bytes without closing anything, like a network that silently drops
    /// packets; [`TcpProxy::thaw`] resumes.
    pub fn freeze(&self) {
        self.state.frozen.store(true, Ordering::SeqCst);
    }

    pub fn thaw(&self) {
        self.state.frozen.store(false, Ordering::SeqCst);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.accept.abort();
        for pipe in self.state.pipes.lock().drain(..) {
            pipe.abort();
        }
    }
}

async fn relay(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    state: &ProxyState,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        while state.frozen.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while state.frozen.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
