//! [`TcpProxy`]: a TCP relay between a client and its broker that tests can cut, restore,
//! freeze and thaw, as network faults would.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Duration, Instant};

/// Relays every connection made to [`TcpProxy::local_addr`] to the upstream broker.
///
/// - [`TcpProxy::cut`] closes every open connection and makes new ones close at once, like a
///   network fault the client notices; [`TcpProxy::restore`] lets them through again.
/// - [`TcpProxy::freeze`] stops relaying bytes in both directions without closing anything,
///   like a black-holed network the client cannot notice except by waiting;
///   [`TcpProxy::thaw`] resumes and delivers what was held back.
/// - [`TcpProxy::set_latency`] holds every chunk of bytes back for a while before relaying it,
///   in both directions (order kept, throughput not limited), like a slow network.
/// - [`TcpProxy::connections`] counts the connections open through the proxy.
///
/// Dropping the proxy closes every relayed connection and stops all of its tasks.
#[derive(Debug)]
pub struct TcpProxy {
    local: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

#[derive(Debug)]
struct Shared {
    upstream: String,
    cut: AtomicBool,
    /// Whether relaying is paused.
    frozen: watch::Sender<bool>,
    /// How long each chunk is held back, each way.
    latency: watch::Sender<Duration>,
    /// Bumped on every cut (and on drop): each relay ends when it changes.
    generation: watch::Sender<u64>,
    /// Relayed connections still open.
    open: AtomicUsize,
}

/// Counts one relayed connection for as long as it lives.
struct Open(Arc<Shared>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

impl TcpProxy {
    /// Listens on an ephemeral port of 127.0.0.1 and relays to `upstream` (`"host:port"`).
    pub async fn start(upstream: &str) -> std::io::Result<TcpProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let local = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream: upstream.to_string(),
            cut: AtomicBool::new(false),
            frozen: watch::Sender::new(false),
            latency: watch::Sender::new(Duration::ZERO),
            generation: watch::Sender::new(0),
            open: AtomicUsize::new(0),
        });
        let accept = tokio::spawn(accept_loop(listener, shared.clone()));
        Ok(TcpProxy {
            local,
            shared,
            accept,
        })
    }

    /// The address clients should connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Connections currently open through the proxy.
    pub fn connections(&self) -> usize {
        self.shared.open.load(Ordering::SeqCst)
    }

    /// Closes every relayed connection and refuses new ones until [`TcpProxy::restore`].
    pub fn cut(&self) {
        self.shared.cut.store(true, Ordering::SeqCst);
        self.shared.generation.send_modify(|g| *g += 1);
    }

    /// Lets new connections through again.
    pub fn restore(&self) {
        self.shared.cut.store(false, Ordering::SeqCst);
    }

    /// Stops relaying bytes, in both directions and on new connections too, without closing
    /// anything; what is sent meanwhile is held back until [`TcpProxy::thaw`].
    pub fn freeze(&self) {
        self.shared.frozen.send_replace(true);
    }

    /// Resumes relaying after [`TcpProxy::freeze`].
    pub fn thaw(&self) {
        self.shared.frozen.send_replace(false);
    }

    /// Holds every chunk back for `latency` before relaying it, each way (zero: none).
    pub fn set_latency(&self, latency: Duration) {
        self.shared.latency.send_replace(latency);
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        // Subscribed before the check: a cut after it is seen as a change.
        let mut ended = shared.generation.subscribe();
        if shared.cut.load(Ordering::SeqCst) {
            drop(client);
            continue;
        }
        shared.open.fetch_add(1, Ordering::SeqCst);
        let open = Open(shared.clone());
        tokio::spawn(async move {
            let shared = &open.0;
            let connect = TcpStream::connect(&shared.upstream);
            let server = tokio::select! {
                server = connect => server,
                _ = ended.changed() => return,
            };
            let Ok(server) = server else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            tokio::select! {
                _ = relay(client_read, server_write, shared) => {}
                _ = relay(server_read, client_write, shared) => {}
                _ = ended.changed() => {}
            }
        });
    }
}

/// Copies `from` to `to` until either side closes, pausing while frozen and holding each
/// chunk back for the latency in force when it was read.
async fn relay(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, shared: &Shared) {
    let (chunks, mut pending) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let mut frozen = shared.frozen.subscribe();
    let read = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if frozen.wait_for(|f| !*f).await.is_err() {
                return;
            }
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let due = Instant::now() + *shared.latency.borrow();
            if chunks.send((due, buf[..n].to_vec())).is_err() {
                return;
            }
        }
    };
    let mut frozen = shared.frozen.subscribe();
    let write = async move {
        while let Some((due, chunk)) = pending.recv().await {
            tokio::time::sleep_until(due).await;
            // Bytes read just before a freeze are held back too.
            if frozen.wait_for(|f| !*f).await.is_err() {
                return;
            }
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
    };
    // The reader ends at the end of the stream; the writer then delivers what is queued.
    tokio::join!(read, write);
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.shared.generation.send_modify(|g| *g += 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_server() -> SocketAddr {
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = echo.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn echoes(c: &mut TcpStream, what: &[u8; 4]) {
        c.write_all(what).await.unwrap();
        let mut buf = [0u8; 4];
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, what);
    }

    /// A proxy in front of an echo server, and a client connection through it that works.
    async fn proxied_echo() -> (TcpProxy, TcpStream) {
        let proxy = TcpProxy::start(&echo_server().await.to_string())
            .await
            .unwrap();
        let mut c = TcpStream::connect(proxy.local_addr()).await.unwrap();
        echoes(&mut c, b"ping").await;
        (proxy, c)
    }

    async fn settle(proxy: &TcpProxy, n: usize) {
        for _ in 0..200 {
            if proxy.connections() == n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(proxy.connections(), n, "open connections");
    }

    #[tokio::test]
    async fn relays_cuts_and_restores() {
        let (proxy, mut c) = proxied_echo().await;
        assert_eq!(proxy.connections(), 1);

        proxy.cut();
        let mut buf = [0u8; 4];
        let n = c.read(&mut buf).await.unwrap_or(0);
        assert_eq!(n, 0, "a cut connection is closed");
        let mut d = TcpStream::connect(proxy.local_addr()).await.unwrap();
        assert_eq!(
            d.read(&mut buf).await.unwrap_or(0),
            0,
            "new connections close while cut"
        );
        settle(&proxy, 0).await;

        proxy.restore();
        let mut e = TcpStream::connect(proxy.local_addr()).await.unwrap();
        echoes(&mut e, b"pong").await;
        drop(e);
        settle(&proxy, 0).await;
    }

    #[tokio::test]
    async fn freezes_silently_and_thaws() {
        let (proxy, mut c) = proxied_echo().await;

        proxy.freeze();
        c.write_all(b"held").await.unwrap();
        let mut buf = [0u8; 4];
        let read = tokio::time::timeout(Duration::from_millis(200), c.read_exact(&mut buf)).await;
        assert!(read.is_err(), "nothing is relayed while frozen");
        assert_eq!(proxy.connections(), 1, "a frozen connection stays open");

        proxy.thaw();
        tokio::time::timeout(Duration::from_secs(5), c.read_exact(&mut buf))
            .await
            .expect("held bytes arrive after the thaw")
            .unwrap();
        assert_eq!(&buf, b"held");
        echoes(&mut c, b"more").await;

        proxy.freeze();
        proxy.cut();
        assert_eq!(
            c.read(&mut buf).await.unwrap_or(0),
            0,
            "cut ends frozen ones"
        );
        settle(&proxy, 0).await;
    }

    #[tokio::test]
    async fn holds_bytes_back_for_the_latency() {
        let (proxy, mut c) = proxied_echo().await;
        proxy.set_latency(Duration::from_millis(100));
        let started = Instant::now();
        echoes(&mut c, b"slow").await;
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(200),
            "two hops of 100 ms took {took:?}"
        );
        proxy.set_latency(Duration::ZERO);
        echoes(&mut c, b"fast").await;
    }
}
