//! [`Supervisor`]: one connection state machine per handle.
//!
//! A driver registers each of its broker connections as a [`LinkReporter`] and reports what
//! happens to it. The supervisor derives the handle's [`ConnectionState`], publishes it to
//! users, gates `publish` while a link is down (up to the publish timeout), and asks the
//! reconciler to restore every native filter after a link that lost them comes back.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use tokio::sync::{watch, Notify};

use crate::{ConnectionState, Error, Result};

/// The state machine of one handle's connection; cheap to clone.
#[derive(Clone, Debug)]
pub struct Supervisor {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    state: watch::Sender<ConnectionState>,
    links: Mutex<Links>,
    /// Mirrors `state == Up`, for the publish fast path.
    up: AtomicBool,
    restore: Notify,
    /// Outages that ended, counted.
    outages: std::sync::atomic::AtomicU64,
    /// Told of each outage as it goes (the handle places its gaps).
    listener: std::sync::OnceLock<Listener>,
}

#[derive(Debug, Default)]
struct Links {
    states: Vec<LinkState>,
    down_since: Option<SystemTime>,
    /// The handle was up once: from then on a lost link is an outage, and a link that is
    /// still connecting (one opened later) does not take the handle down.
    was_up: bool,
    closed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinkState {
    Connecting,
    Up,
    Down,
    /// Back, but the native filters it carried must be restored before it counts as up.
    Restoring,
}

/// What the handle does as an outage goes. Each call is made under the supervisor's lock, in
/// order, before the state it leads to is published.
pub(crate) trait OutageListener: Send + Sync {
    /// The handle was up and lost a link at `since`.
    fn began(&self, since: SystemTime);
    /// A lost link is connected again: what it delivers from now on left the broker after
    /// the cut (its filters may still be being restored).
    fn link_back(&self);
    /// Every link is up and restored again at `until`.
    fn ended(&self, since: SystemTime, until: SystemTime);
}

struct Listener(Box<dyn OutageListener>);

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OutageListener")
    }
}

/// Reports what happens to one broker connection of a handle (from the driver).
#[derive(Clone, Debug)]
pub struct LinkReporter {
    shared: Arc<Shared>,
    index: usize,
}

impl Supervisor {
    pub(crate) fn new() -> Self {
        Supervisor {
            shared: Arc::new(Shared {
                state: watch::Sender::new(ConnectionState::Connecting),
                links: Mutex::new(Links::default()),
                up: AtomicBool::new(false),
                restore: Notify::new(),
                outages: std::sync::atomic::AtomicU64::new(0),
                listener: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Registers one more broker connection, in the state "connecting".
    pub fn link(&self) -> LinkReporter {
        let mut links = self.shared.links.lock();
        links.states.push(LinkState::Connecting);
        let index = links.states.len() - 1;
        self.shared.update(&mut links);
        LinkReporter {
            shared: self.shared.clone(),
            index,
        }
    }

    /// Whether every link is up (and restored).
    pub fn is_up(&self) -> bool {
        self.shared.up.load(Ordering::Acquire)
    }

    /// The handle's state now.
    pub fn state(&self) -> ConnectionState {
        *self.shared.state.borrow()
    }

    /// A receiver that sees every change of state.
    pub fn watch(&self) -> watch::Receiver<ConnectionState> {
        self.shared.state.subscribe()
    }

    /// Returns at once when up; otherwise waits up to `timeout` for it, then fails with a
    /// timeout (or `Closed` once closed).
    pub async fn ready(&self, timeout: Duration) -> Result<()> {
        if self.is_up() {
            return Ok(());
        }
        let mut rx = self.shared.state.subscribe();
        let wait = async move {
            rx.wait_for(|s| matches!(s, ConnectionState::Up | ConnectionState::Closed))
                .await
                .map(|state| state.is_up())
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(true)) => Ok(()),
            Ok(_) => Err(Error::closed()),
            Err(_) => Err(Error::timeout(format!(
                "not connected to the broker after waiting {timeout:?}"
            ))),
        }
    }

    /// Waits until the handle is up: true, or false when it closed or `cancel` fired first.
    pub(crate) async fn up_unless(&self, cancel: &tokio_util::sync::CancellationToken) -> bool {
        let mut state = self.watch();
        let up = state.wait_for(|s| matches!(s, ConnectionState::Up | ConnectionState::Closed));
        tokio::select! {
            _ = cancel.cancelled() => false,
            state = up => matches!(state.as_deref(), Ok(ConnectionState::Up)),
        }
    }

    pub(crate) fn close(&self) {
        let mut links = self.shared.links.lock();
        links.closed = true;
        self.shared.update(&mut links);
        drop(links);
        self.shared.restore.notify_waiters();
    }

    /// Sets who is told of outages (the handle, which puts a gap in every subscription where
    /// messages may be missing). Only the first call counts.
    pub(crate) fn on_outage(&self, listener: Box<dyn OutageListener>) {
        let _ = self.shared.listener.set(Listener(listener));
    }

    /// Waits until a link asks for its filters to be restored.
    pub(crate) async fn restore_requested(&self) {
        self.shared.restore.notified().await;
    }

    /// The links waiting for their filters to be restored.
    pub(crate) fn restoring(&self) -> Vec<usize> {
        let links = self.shared.links.lock();
        (0..links.states.len())
            .filter(|&i| links.states[i] == LinkState::Restoring)
            .collect()
    }

    /// The filters were restored for `indexes` (those still waiting count as up now).
    pub(crate) fn restored(&self, indexes: &[usize]) {
        let mut links = self.shared.links.lock();
        for &i in indexes {
            if links.states.get(i) == Some(&LinkState::Restoring) {
                links.states[i] = LinkState::Up;
            }
        }
        self.shared.update(&mut links);
    }
}

impl Shared {
    fn set(&self, index: usize, state: LinkState) {
        let mut links = self.links.lock();
        if let Some(slot) = links.states.get_mut(index) {
            let back = *slot == LinkState::Down && state != LinkState::Down;
            *slot = state;
            if back && links.down_since.is_some() {
                if let Some(Listener(listener)) = self.listener.get() {
                    listener.link_back();
                }
            }
        }
        self.update(&mut links);
        drop(links);
        if state == LinkState::Restoring {
            self.restore.notify_one();
        }
    }

    fn update(&self, links: &mut Links) {
        let state = if links.closed {
            ConnectionState::Closed
        } else if !links.was_up {
            // First connection: up once every link is; nothing before that is an outage.
            if links.states.iter().all(|s| *s == LinkState::Up) {
                links.was_up = true;
                ConnectionState::Up
            } else {
                ConnectionState::Connecting
            }
        } else if links
            .states
            .iter()
            .all(|s| matches!(s, LinkState::Up | LinkState::Connecting))
        {
            if let Some(since) = links.down_since.take() {
                self.outages.fetch_add(1, Ordering::Relaxed);
                let until = SystemTime::now();
                let outage = until.duration_since(since).unwrap_or_default();
                let outage_ms = u64::try_from(outage.as_millis()).unwrap_or(u64::MAX);
                tracing::info!(outage_ms, "reconnected");
                if let Some(Listener(listener)) = self.listener.get() {
                    listener.ended(since, until);
                }
            }
            ConnectionState::Up
        } else {
            let since = match links.down_since {
                Some(since) => since,
                None => {
                    let since = SystemTime::now();
                    links.down_since = Some(since);
                    if let Some(Listener(listener)) = self.listener.get() {
                        listener.began(since);
                    }
                    since
                }
            };
            ConnectionState::Down { since }
        };
        self.up.store(state.is_up(), Ordering::Release);
        self.state
            .send_if_modified(|s| std::mem::replace(s, state) != state);
    }
}

impl LinkReporter {
    /// The connection is up and carries everything it should: the first connection, or a
    /// reconnect after which the client library restored the subscriptions itself.
    pub fn up(&self) {
        self.shared.set(self.index, LinkState::Up);
    }

    /// The connection was lost; `publish` waits (up to its timeout) until it is back.
    pub fn down(&self) {
        self.shared.set(self.index, LinkState::Down);
    }

    /// The connection is back but lost its subscriptions: the handle restores every native
    /// filter (through the driver's `restore_filters`) before it counts as up.
    pub fn reconnected(&self) {
        self.shared.set(self.index, LinkState::Restoring);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn neither_the_first_connection_nor_a_new_link_is_an_outage() {
        let sup = Supervisor::new();
        let first = sup.link();
        // A client library that reports its first connection as a reconnect.
        first.reconnected();
        assert_eq!(sup.state(), ConnectionState::Connecting);
        sup.restored(&[0]);
        assert!(sup.is_up());
        let later = sup.link();
        assert!(
            sup.is_up(),
            "a link still connecting does not take the handle down"
        );
        later.up();
        assert!(sup.is_up());
        assert_eq!(sup.shared.outages.load(Ordering::Relaxed), 0);
        later.down();
        later.up();
        assert_eq!(sup.shared.outages.load(Ordering::Relaxed), 1);
    }

    /// An outage that ends is logged once, at info, as `reconnected` with its length.
    #[test]
    fn the_end_of_an_outage_is_logged() {
        #[derive(Clone, Default)]
        struct Lines(Arc<parking_lot::Mutex<Vec<u8>>>);
        impl std::io::Write for Lines {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let sup = Supervisor::new();
            let link = sup.link();
            link.up(); // the first connection: no outage
            link.down();
            link.up();
        });
        let text = String::from_utf8(lines.0.lock().clone()).unwrap();
        let reconnected: Vec<&str> = text.lines().filter(|l| l.contains("reconnected")).collect();
        assert_eq!(reconnected.len(), 1, "{text}");
        assert!(reconnected[0].contains("INFO"), "{text}");
        assert!(reconnected[0].contains("outage_ms="), "{text}");
    }

    #[tokio::test]
    async fn state_follows_the_links() {
        let sup = Supervisor::new();
        let mut rx = sup.watch();
        let a = sup.link();
        let b = sup.link();
        assert_eq!(sup.state(), ConnectionState::Connecting);
        a.up();
        assert_eq!(sup.state(), ConnectionState::Connecting);
        b.up();
        assert!(sup.is_up());
        assert!(sup.ready(Duration::from_millis(1)).await.is_ok());
        b.down();
        let ConnectionState::Down { since } = sup.state() else {
            panic!("{:?}", sup.state())
        };
        assert!(sup
            .ready(Duration::from_millis(20))
            .await
            .unwrap_err()
            .is_temporary());
        b.reconnected();
        assert_eq!(sup.state(), ConnectionState::Down { since });
        assert_eq!(sup.restoring(), [1]);
        sup.restored(&[1]);
        assert!(sup.is_up());
        assert!(rx.has_changed().unwrap());
        rx.mark_unchanged();
        sup.close();
        assert_eq!(*rx.borrow_and_update(), ConnectionState::Closed);
        assert_eq!(
            sup.ready(Duration::from_secs(1)).await.unwrap_err().kind(),
            crate::ErrorKind::Closed
        );
    }
}
