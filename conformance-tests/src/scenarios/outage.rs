//! An outage on purpose: cut a handle's link and wait until it says it is down, restore it
//! and wait until it is up again (the fault scenarios' common steps).

use std::time::Duration;

use pubsub_core::ConnectionState;
use tokio::sync::watch;

use crate::kit::idle_timeout;
use crate::Link;

/// Waits (at most `limit`, scaled) until the handle's state satisfies `want`.
pub(super) async fn state_becomes(
    state: &mut watch::Receiver<ConnectionState>,
    what: &str,
    limit: Duration,
    want: impl FnMut(&ConnectionState) -> bool,
) {
    tokio::time::timeout(idle_timeout(limit), state.wait_for(want))
        .await
        .unwrap_or_else(|_| panic!("{what}: not within {limit:?}"))
        .expect("the connection state is gone");
}

pub(super) fn is_down(s: &ConnectionState) -> bool {
    matches!(s, ConnectionState::Down { .. })
}

/// Cuts `link` and waits until the handle whose `state` this is says it is down.
pub(super) async fn cut_until_down(link: &dyn Link, state: &mut watch::Receiver<ConnectionState>) {
    link.cut().await;
    state_becomes(state, "down after a cut", Duration::from_secs(10), is_down).await;
}

/// Restores `link` and waits until the handle whose `state` this is says it is up again.
pub(super) async fn restore_until_up(
    link: &dyn Link,
    state: &mut watch::Receiver<ConnectionState>,
) {
    link.restore().await;
    state_becomes(
        state,
        "up again after a restore",
        Duration::from_secs(30),
        ConnectionState::is_up,
    )
    .await;
}
