//! [`ConnectionState`]: whether a handle is connected to its broker.

use std::time::SystemTime;

/// Where a handle's connection to its broker stands.
///
/// Read it with [`PubSub::connection_state`](crate::PubSub::connection_state), or watch it
/// change with [`PubSub::watch_connection`](crate::PubSub::watch_connection) to show a
/// "reconnecting" banner or fail a health check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum ConnectionState {
    /// Connecting for the first time.
    Connecting,
    /// Connected, with every subscription live at the broker.
    Up,
    /// The connection was lost at `since`; the handle is reconnecting (it never gives up while
    /// open) and will restore every subscription.
    Down {
        /// When the connection was lost.
        since: SystemTime,
    },
    /// [`close`](crate::PubSub::close) was called, or the handle was dropped.
    Closed,
}

impl ConnectionState {
    /// Whether the handle is connected.
    pub fn is_up(&self) -> bool {
        matches!(self, ConnectionState::Up)
    }
}
