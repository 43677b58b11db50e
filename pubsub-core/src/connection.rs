//! [`ConnectionGate`]: lets publishers wait, boundedly, while a driver is disconnected.

use std::time::Duration;

use tokio::sync::watch;

use crate::{Error, Result};

/// Connection state shared between a driver's connection task and its publishers.
///
/// While the connection is down, [`ConnectionGate::wait_connected`] waits up to the given time
/// and then returns [`Error::Timeout`], so a publish never silently drops.
///
/// ```
/// # async fn demo() {
/// use std::time::Duration;
/// use pubsub_core::ConnectionGate;
/// let gate = ConnectionGate::new(false);
/// assert!(gate.wait_connected(Duration::from_millis(10)).await.is_err());
/// gate.set_connected(true);
/// assert!(gate.wait_connected(Duration::from_millis(10)).await.is_ok());
/// # }
/// # tokio::runtime::Runtime::new().unwrap().block_on(demo());
/// ```
#[derive(Debug, Clone)]
pub struct ConnectionGate {
    tx: watch::Sender<bool>,
}

impl ConnectionGate {
    /// A gate in the given state.
    pub fn new(connected: bool) -> Self {
        ConnectionGate {
            tx: watch::Sender::new(connected),
        }
    }

    /// Records the connection going up or down.
    pub fn set_connected(&self, connected: bool) {
        self.tx
            .send_if_modified(|c| std::mem::replace(c, connected) != connected);
    }

    /// Whether the connection is up now.
    pub fn is_connected(&self) -> bool {
        *self.tx.borrow()
    }

    /// Returns at once when connected; otherwise waits up to `timeout` for the connection.
    pub async fn wait_connected(&self, timeout: Duration) -> Result<()> {
        if self.is_connected() {
            return Ok(());
        }
        let mut rx = self.tx.subscribe();
        let outcome = tokio::time::timeout(timeout, rx.wait_for(|c| *c))
            .await
            .map(|r| r.is_ok());
        match outcome {
            Ok(true) => Ok(()),
            Ok(false) => Err(Error::Closed),
            Err(_) => Err(Error::Timeout(format!(
                "not connected to the broker after waiting {timeout:?}"
            ))),
        }
    }
}
