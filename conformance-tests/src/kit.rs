//! The scenarios' kit: the shared test kit (`pubsub_test_support::kit`: parse, subscribe,
//! publish, bounded waits, order checks) plus connecting through a [`Harness`].

use std::sync::Arc;

use pubsub_core::PubSub;
pub use pubsub_test_support::kit::*;

use crate::{Harness, Link};

/// A new handle from the harness; panics when the broker cannot be reached.
pub async fn connect(h: &Harness) -> Arc<dyn PubSub> {
    match (h.connect)().await {
        Ok(ps) => ps,
        Err(e) => panic!("[{}] cannot connect to the broker: {e}", h.name),
    }
}

/// A new handle through the harness's [`Link`]; panics when the broker cannot be reached.
pub async fn connect_cuttable(h: &Harness) -> (Arc<dyn PubSub>, Box<dyn Link>) {
    match (h.connect_cuttable)().await {
        Ok(x) => x,
        Err(e) => panic!("[{}] cannot connect through the cuttable link: {e}", h.name),
    }
}

/// A healthy handle on the broker behind `link` (a case's peer of the cut handle); panics when
/// the broker cannot be reached.
pub async fn connect_peer(h: &Harness, link: &dyn Link) -> Arc<dyn PubSub> {
    match link.connect_peer().await {
        Some(Ok(ps)) => ps,
        Some(Err(e)) => panic!("[{}] cannot connect a peer beside the link: {e}", h.name),
        None => connect(h).await,
    }
}
