//! [`PgDriver`]: `pg_notify` to publish, `LISTEN` and `UNLISTEN` for the channel, on one
//! connection that a task drives: it hands notifications to the router, checks the server
//! with an empty query every heartbeat, and reconnects with the options' backoff.

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::{BoxFuture, Fuse, FusedFuture, FutureExt};
use parking_lot::RwLock;
use pubsub_core::adapter::{Driver, Inbound, LinkReporter, TopicMemo, Watchdog};
use pubsub_core::{CommonOptions, Error, ErrorKind, Message, Pattern, Result};
use tokio_postgres::tls::NoTlsStream;
use tokio_postgres::{AsyncMessage, Client, NoTls, Socket, Statement};

use crate::frame;

/// A connection as tokio-postgres makes it (plain TCP).
pub(crate) type Connection = tokio_postgres::Connection<Socket, NoTlsStream>;

/// The connection in use: its client and its prepared `pg_notify`.
pub(crate) struct Live {
    client: Client,
    notify: Statement,
}

/// What the driver and the connection task share.
pub(crate) struct Shared {
    live: RwLock<Option<Arc<Live>>>,
    channel: String,
    /// The native filters added (one per pattern); the channel is listened to while there is
    /// one. Held across `LISTEN` and `UNLISTEN`, so that they go out in the order of changes.
    filters: tokio::sync::Mutex<HashSet<String>>,
    /// The server's encoding is UTF-8: text payloads go as they are.
    utf8: AtomicBool,
    watchdog: Arc<Watchdog>,
    options: CommonOptions,
}

impl Shared {
    pub(crate) fn new(channel: String, watchdog: Arc<Watchdog>, options: CommonOptions) -> Self {
        Shared {
            live: RwLock::new(None),
            channel,
            filters: tokio::sync::Mutex::default(),
            utf8: AtomicBool::new(false),
            watchdog,
            options,
        }
    }

    /// The connection to use from now on.
    pub(crate) fn set_live(&self, live: Live, utf8: bool) {
        self.utf8.store(utf8, Ordering::Relaxed);
        *self.live.write() = Some(Arc::new(live));
    }

    fn live(&self) -> Result<Arc<Live>> {
        self.live.read().clone().ok_or_else(|| {
            Error::connection("not connected to PostgreSQL", "the connection was lost")
        })
    }

    /// Runs `LISTEN` or `UNLISTEN` for the channel, bounded by the command timeout.
    async fn channel_command(&self, live: &Live, command: &str) -> Result<()> {
        let sql = format!("{command} {}", frame::quote(&self.channel));
        let timeout = self.options.command_timeout;
        tokio::time::timeout(timeout, live.client.batch_execute(&sql))
            .await
            .map_err(|_| Error::timeout(format!("no answer to {command} within {timeout:?}")))?
            .map_err(|e| pg_error(command, e))
    }
}

/// The typed error of a tokio-postgres error (its text never holds the password).
pub(crate) fn pg_error(what: &str, error: tokio_postgres::Error) -> Error {
    let kind = match error.code().map(|c| c.code()) {
        Some(code) if code.starts_with("28") || code == "42501" => ErrorKind::Auth,
        Some(code) if code.starts_with("08") || code.starts_with("57P") => ErrorKind::Connection,
        Some(_) => ErrorKind::Backend,
        None => ErrorKind::Connection,
    };
    Error::new(kind, format!("PostgreSQL: {what} failed")).with_source(error)
}

/// Opens a connection and readies it: asynchronous commits (a notification is not durable
/// anyway: the commit need not wait for the disk), the `pg_notify` statement prepared.
pub(crate) async fn open(
    config: &tokio_postgres::Config,
    options: &CommonOptions,
) -> Result<(Live, Connection, bool)> {
    let timeout = options.connect_timeout;
    let (client, mut connection) = tokio::time::timeout(timeout, config.connect(NoTls))
        .await
        .map_err(|_| Error::timeout(format!("no PostgreSQL session within {timeout:?}")))?
        .map_err(|e| pg_error("connecting", e))?;
    let utf8 = connection.parameter("server_encoding") == Some("UTF8");
    let setup = async {
        client
            .batch_execute("SET synchronous_commit TO off")
            .await?;
        client.prepare("SELECT pg_notify($1, $2)").await
    };
    // The connection carries the setup's queries only while it is polled.
    let ready = tokio::time::timeout(options.command_timeout, async {
        tokio::select! {
            ready = setup => ready.map_err(|e| pg_error("preparing the session", e)),
            ended = next_message(&mut connection) => Err(match ended {
                Err(Some(e)) => pg_error("preparing the session", e),
                _ => Error::connection("PostgreSQL closed the session", "during its setup"),
            }),
        }
    });
    let notify = ready
        .await
        .map_err(|_| Error::timeout("no answer to the session's setup"))??;
    Ok((Live { client, notify }, connection, utf8))
}

/// The next message of the connection other than a notice (also drives the client's
/// queries): `Err` once the connection failed or ended.
async fn next_message(
    connection: &mut Connection,
) -> std::result::Result<tokio_postgres::Notification, Option<tokio_postgres::Error>> {
    loop {
        match futures::future::poll_fn(|cx| connection.poll_message(cx)).await {
            Some(Ok(AsyncMessage::Notification(n))) => return Ok(n),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(Some(e)),
            None => return Err(None),
        }
    }
}

/// The PostgreSQL [`Driver`]: a native filter is a pattern, and every one of them is served by
/// the handle's channel (listened to while there is a filter, a `LISTEN` confirming each
/// batch added); the kit's matcher picks each message's subscriptions.
pub(crate) struct PgDriver {
    pub(crate) shared: Arc<Shared>,
}

#[async_trait]
impl Driver for PgDriver {
    type Filter = String;
    const BACKEND: &'static str = "postgres";

    fn max_payload(&self) -> usize {
        frame::MAX_PAYLOAD
    }

    fn native_filter(&self, pattern: &Pattern) -> Result<String> {
        Ok(pattern.as_str().to_string())
    }

    async fn publish(&self, message: Message) -> Result<()> {
        let s = &self.shared;
        let text = frame::encode(&message, s.utf8.load(Ordering::Relaxed))?;
        let live = s.live()?;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&s.channel, &text];
        let notify = live.client.execute(&live.notify, &params);
        s.watchdog
            .bound(notify)
            .await?
            .map(drop)
            .map_err(|e| pg_error("pg_notify", e))
    }

    async fn add_filters(&self, filters: &[String]) -> Result<()> {
        let mut added = self.shared.filters.lock().await;
        added.extend(filters.iter().cloned());
        // Sent even when already listening: its answer is the readiness of these filters.
        let live = self.shared.live()?;
        self.shared.channel_command(&live, "LISTEN").await
    }

    async fn remove_filters(&self, filters: &[String]) -> Result<()> {
        let mut added = self.shared.filters.lock().await;
        for filter in filters {
            added.remove(filter);
        }
        // Other patterns still need the channel; without a connection there is nothing to
        // undo (a new session listens to nothing).
        let Some(live) = self.shared.live().ok().filter(|_| added.is_empty()) else {
            return Ok(());
        };
        self.shared.channel_command(&live, "UNLISTEN").await
    }

    async fn close(&self) -> Result<()> {
        // The connection task has been stopped: dropping the client ends the session.
        self.shared.live.write().take();
        Ok(())
    }
}

impl fmt::Debug for PgDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgDriver")
            .field("channel", &self.shared.channel)
            .field("connected", &self.shared.live.read().is_some())
            .finish()
    }
}

/// The connection task: drives the connection until it fails, then reports the link down,
/// reconnects (never giving up) and reports it reconnected, so that the kit listens again.
pub(crate) async fn run(
    shared: Arc<Shared>,
    config: tokio_postgres::Config,
    connection: Connection,
    inbound: Inbound<String>,
    link: LinkReporter,
) {
    let options = shared.options.clone();
    let mut session = Goodbye(Some(connection));
    loop {
        if let Some(connection) = session.0.as_mut() {
            drive(&shared, connection, &inbound).await;
        }
        shared.live.write().take();
        session.0 = None;
        link.down();
        tracing::warn!("lost the PostgreSQL connection; reconnecting");
        let mut delays = options.backoff.delays();
        session.0 = loop {
            tokio::time::sleep(delays.next().unwrap_or(options.backoff.max)).await;
            match open(&config, &options).await {
                Ok((live, connection, utf8)) => {
                    shared.set_live(live, utf8);
                    break Some(connection);
                }
                Err(error) => tracing::debug!(%error, "PostgreSQL reconnect attempt failed"),
            }
        };
        link.reconnected();
    }
}

/// The live connection of the connection task. When the handle stops (the task is dropped),
/// it is driven on until the client is gone (`close`, or the handle dropped), so that it ends
/// the session with a `Terminate` rather than a reset the server logs.
struct Goodbye(Option<Connection>);

impl Drop for Goodbye {
    fn drop(&mut self) {
        let runtime = tokio::runtime::Handle::try_current();
        if let (Some(connection), Ok(runtime)) = (self.0.take(), runtime) {
            runtime.spawn(tokio::time::timeout(Duration::from_secs(5), connection));
        }
    }
}

/// Hands every notification to the router until the connection fails or a heartbeat query
/// goes unanswered for two heartbeats (a half-open connection).
async fn drive(shared: &Shared, connection: &mut Connection, inbound: &Inbound<String>) {
    let heartbeat = shared.options.heartbeat;
    let mut ticker = tokio::time::interval(heartbeat.max(Duration::from_millis(1)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ping: Fuse<BoxFuture<'static, bool>> = Fuse::terminated();
    let mut memo = TopicMemo::default();
    loop {
        tokio::select! {
            next = next_message(connection) => match next {
                Ok(n) => match frame::decode(n.payload(), n.channel(), &mut memo) {
                    Some(message) => inbound.deliver(message),
                    None => tracing::trace!("skipping a notification on a channel that names no topic"),
                },
                Err(error) => {
                    tracing::debug!(error = ?error.map(|e| e.to_string()), "the PostgreSQL connection ended");
                    return;
                }
            },
            _ = ticker.tick(), if !heartbeat.is_zero() && ping.is_terminated() => {
                let Ok(live) = shared.live() else { return };
                ping = async move {
                    let answered = live.client.simple_query("");
                    matches!(tokio::time::timeout(heartbeat * 2, answered).await, Ok(Ok(_)))
                }
                .boxed()
                .fuse();
            }
            answered = &mut ping => if !answered {
                tracing::debug!(?heartbeat, "PostgreSQL left a heartbeat query unanswered");
                return;
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_have_kinds() {
        // A connection error without a SQLSTATE (no server answered) is temporary.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let error = runtime.block_on(async {
            let mut config = tokio_postgres::Config::new();
            config
                .host("127.0.0.1")
                .port(1)
                .user("u")
                .password("hunter2");
            config.connect(NoTls).await.err().unwrap()
        });
        let e = pg_error("connecting", error);
        assert_eq!(e.kind(), ErrorKind::Connection);
        assert!(e.is_temporary() && !format!("{e} {e:?}").contains("hunter2"));
    }
}
