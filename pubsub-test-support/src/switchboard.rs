//! [`Switchboard`]: routes each Kafka connection by the client id in its first request, so
//! that the fault cases can put a [`TcpProxy`](crate::proxy::TcpProxy) between one handle
//! and a Kafka broker while the other handles of the case reach the same broker directly.
//!
//! A Kafka client reconnects to the address the broker *advertises* in its metadata, not to
//! the one it bootstrapped from, so a proxy in front of the broker's own port only sees the
//! first connection. The fault cases therefore start a broker that advertises the
//! switchboard's address: each connection to it names its client id in the header of its
//! first request, and the switchboard relays it to the route registered for that id (the
//! case's proxy) or, for any other id, straight to the broker.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Client id → where its connections go.
type Routes = Arc<std::sync::Mutex<HashMap<String, SocketAddr>>>;

/// A listener that relays each Kafka connection to the route of its client id.
#[derive(Debug)]
pub struct Switchboard {
    local: SocketAddr,
    routes: Routes,
    default: Arc<std::sync::Mutex<SocketAddr>>,
    accept: JoinHandle<()>,
}

impl Switchboard {
    /// Listens on an ephemeral port of 127.0.0.1; connections whose client id has no route
    /// go to `broker`.
    pub async fn start(broker: SocketAddr) -> std::io::Result<Switchboard> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let local = listener.local_addr()?;
        let routes: Routes = Arc::default();
        let default = Arc::new(std::sync::Mutex::new(broker));
        let accept = tokio::spawn(accept_loop(listener, default.clone(), routes.clone()));
        Ok(Switchboard {
            local,
            routes,
            default,
            accept,
        })
    }

    /// The address the broker should advertise.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Sends the connections without a route to `broker` from now on (the broker is often
    /// started after the switchboard, whose address it advertises).
    pub fn set_default(&mut self, broker: SocketAddr) {
        if let Ok(mut default) = self.default.lock() {
            *default = broker;
        }
    }

    /// Sends the connections of `client_id` to `to` from now on.
    pub fn route(&self, client_id: &str, to: SocketAddr) {
        if let Ok(mut routes) = self.routes.lock() {
            routes.insert(client_id.to_string(), to);
        }
    }
}

impl Drop for Switchboard {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    default: Arc<std::sync::Mutex<SocketAddr>>,
    routes: Routes,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let routes = routes.clone();
        let Ok(broker) = default.lock().map(|d| *d) else {
            continue;
        };
        tokio::spawn(async move {
            let _ = relay(client, broker, routes).await;
        });
    }
}

/// Reads the first request's header (size, api key, api version, correlation id, client
/// id), connects to the client id's route, replays what was read and relays both ways.
async fn relay(mut client: TcpStream, broker: SocketAddr, routes: Routes) -> std::io::Result<()> {
    let mut head = vec![0u8; 14];
    client.read_exact(&mut head).await?;
    let id_len = usize::try_from(i16::from_be_bytes([head[12], head[13]])).unwrap_or(0);
    head.resize(14 + id_len, 0);
    client.read_exact(&mut head[14..]).await?;
    let to = std::str::from_utf8(&head[14..])
        .ok()
        .and_then(|id| routes.lock().ok()?.get(id).copied())
        .unwrap_or(broker);
    let mut upstream = TcpStream::connect(to).await?;
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    upstream.write_all(&head).await?;
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}
