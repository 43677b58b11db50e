//! [`TcpProxy`]: a TCP relay between a client and its broker that tests can cut and restore.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::Link;

/// Relays every connection made to [`TcpProxy::local_addr`] to the upstream broker.
///
/// [`TcpProxy::cut`] closes every open connection and makes new ones close at once, as a
/// network fault would; [`TcpProxy::restore`] lets them through again. Dropping the proxy stops
/// all of its tasks.
#[derive(Debug)]
pub struct TcpProxy {
    local: SocketAddr,
    cut: Arc<AtomicBool>,
    /// Bumped on every cut (and on drop): each relay ends when it changes.
    generation: watch::Sender<u64>,
    accept: JoinHandle<()>,
}

impl TcpProxy {
    /// Listens on an ephemeral port of 127.0.0.1 and relays to `upstream` (`"host:port"`).
    pub async fn start(upstream: &str) -> std::io::Result<TcpProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let local = listener.local_addr()?;
        let cut = Arc::new(AtomicBool::new(false));
        let generation = watch::Sender::new(0u64);
        let accept = tokio::spawn(accept_loop(
            listener,
            upstream.to_string(),
            cut.clone(),
            generation.clone(),
        ));
        Ok(TcpProxy {
            local,
            cut,
            generation,
            accept,
        })
    }

    /// The address clients should connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Closes every relayed connection and refuses new ones until [`TcpProxy::restore`].
    pub fn cut_now(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    /// Lets new connections through again.
    pub fn restore_now(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: String,
    cut: Arc<AtomicBool>,
    generation: watch::Sender<u64>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        if cut.load(Ordering::SeqCst) {
            drop(client);
            continue;
        }
        let mut ended = generation.subscribe();
        let upstream = upstream.clone();
        tokio::spawn(async move {
            let Ok(mut server) = TcpStream::connect(&upstream).await else {
                return;
            };
            let mut client = client;
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                _ = ended.changed() => {}
            }
        });
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.generation.send_modify(|g| *g += 1);
    }
}

#[async_trait]
impl Link for TcpProxy {
    async fn cut(&self) {
        self.cut_now();
    }
    async fn restore(&self) {
        self.restore_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn relays_cuts_and_restores() {
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let echo_addr = echo.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        let proxy = TcpProxy::start(&echo_addr.to_string()).await.unwrap();
        let mut c = TcpStream::connect(proxy.local_addr()).await.unwrap();
        c.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");

        proxy.cut().await;
        let n = c.read(&mut buf).await.unwrap_or(0);
        assert_eq!(n, 0, "a cut connection is closed");
        let mut d = TcpStream::connect(proxy.local_addr()).await.unwrap();
        assert_eq!(
            d.read(&mut buf).await.unwrap_or(0),
            0,
            "new connections close while cut"
        );

        proxy.restore().await;
        let mut e = TcpStream::connect(proxy.local_addr()).await.unwrap();
        e.write_all(b"pong").await.unwrap();
        e.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"pong");
    }
}
