//! Failover: the broker node a handle is connected to dies while messages flow, and the
//! handle must move on by itself. For clustered deployments ([`crate::cluster`]).
//!
//! [`node_failure`] is the scenario; [`NodeLink`] turns a cluster's node control into the
//! suite's [`Link`], so that the fault cases of the suite kill or freeze a real node.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use pubsub_core::{ConnectionState, Delivery, Gap, Message, PubSub, Result};
use tokio::sync::Mutex as AsyncMutex;
use tokio::time::Instant;

use crate::kit::{idle, seq, subscribe_cap, topic, unique_prefix, unseq};
use crate::{Connect, Link};

/// What one [`node_failure`] run measured.
#[derive(Debug, Clone, Copy)]
pub struct Failover {
    /// From the kill until the handle reported the connection down (`None`: the handle was
    /// already back when the state was read, so no down state was seen).
    pub detected: Option<Duration>,
    /// From the kill until the handle was up again with every subscription restored.
    pub recovered: Duration,
    /// Publishes that succeeded during the run.
    pub published: usize,
    /// Of those, how many never arrived (all published before the recovery, behind a gap).
    pub lost: usize,
}

/// The node a subscribed handle is connected to is killed while a second handle publishes
/// every millisecond: the subscribed handle reports the outage (connection state, and a
/// [`Gap::Outage`] in each subscription before anything published after the recovery), comes
/// back by itself with its subscriptions restored, and every message published after it is up
/// again arrives, in order, once. `kill` kills the node the subscriber is on (it runs after the
/// subscriptions are live).
pub async fn node_failure<K, F>(
    subscriber: Arc<dyn PubSub>,
    publisher: Arc<dyn PubSub>,
    kill: K,
) -> Failover
where
    K: FnOnce() -> F,
    F: Future<Output = ()>,
{
    let p = unique_prefix("failover");
    let t = format!("{p}.flow");
    let mut exact = subscribe_cap(&subscriber, &t, 1_000_000).await;
    let mut wild = subscribe_cap(&subscriber, &format!("{p}.>"), 1_000_000).await;

    let states = record_states(&*subscriber);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sent = Arc::new(Mutex::new(Vec::<(u32, Instant, bool)>::new()));
    let flow = tokio::spawn(publish_flow(
        publisher,
        t.clone(),
        stop.clone(),
        sent.clone(),
    ));

    // Wait for the flow to reach the subscriber before the kill.
    match tokio::time::timeout(idle(), exact.recv()).await {
        Ok(Some(_)) => {}
        other => panic!("no message flowed before the kill: {other:?}"),
    }
    let killed_at = Instant::now();
    kill().await;

    let deadline = killed_at + Duration::from_secs(60);
    let (detected, recovered_at) = loop {
        assert!(
            Instant::now() < deadline,
            "the handle did not recover within 60 s of the kill; states: {:?}",
            states.lock()
        );
        let seen = states.lock().clone();
        let after: Vec<&(Instant, ConnectionState)> =
            seen.iter().filter(|(at, _)| *at >= killed_at).collect();
        let down = after
            .iter()
            .find(|(_, s)| matches!(s, ConnectionState::Down { .. }))
            .map(|(at, _)| *at);
        let up = after
            .iter()
            .find(|(_, s)| s.is_up())
            .map(|(at, _)| *at)
            .filter(|up| down.is_none_or(|down| *up >= down));
        if let Some(up) = up {
            break (down.map(|d| d - killed_at), up);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    flow.await.expect("the publishing task panicked");

    let sent = sent.lock().clone();
    let ok: Vec<u32> = sent.iter().filter(|s| s.2).map(|s| s.0).collect();
    let expected: Vec<u32> = sent
        .iter()
        .filter(|(_, at, ok)| *ok && *at >= recovered_at)
        .map(|s| s.0)
        .collect();
    assert!(
        expected.len() >= 100,
        "too few publishes succeeded after the recovery to judge it ({}); sent: {}",
        expected.len(),
        sent.len()
    );
    let mut lost = 0;
    for (name, sub) in [("exact", &mut exact), ("wildcard", &mut wild)] {
        let got = read_until(sub, *expected.last().unwrap_or(&0)).await;
        let gap = got.iter().position(|d| matches!(d, Read::Outage));
        let seqs: Vec<u32> = got
            .iter()
            .filter_map(|d| match d {
                Read::Seq(n) => Some(*n),
                Read::Outage => None,
            })
            .collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "{name}: out of order or duplicated around the failover"
        );
        let gap = gap.unwrap_or_else(|| panic!("{name}: no outage gap after the failover"));
        for want in &expected {
            let at = got
                .iter()
                .position(|d| matches!(d, Read::Seq(n) if n == want));
            let at = at.unwrap_or_else(|| {
                panic!(
                    "{name}: message {want}, published after the recovery, never arrived \
                     ({} of {} after the recovery arrived)",
                    expected.iter().filter(|w| seqs.contains(w)).count(),
                    expected.len()
                )
            });
            assert!(
                at > gap,
                "{name}: message {want} came before the outage gap"
            );
        }
        lost = lost.max(ok.iter().filter(|n| !seqs.contains(n)).count());
    }
    Failover {
        detected,
        recovered: recovered_at - killed_at,
        published: ok.len(),
        lost,
    }
}

/// One delivery as the scenario reads it.
#[derive(Debug)]
enum Read {
    Seq(u32),
    Outage,
}

/// Reads `sub` (skipping the messages that came before the kill's window is unknown) until
/// message `last` arrived or nothing came for [`idle`].
async fn read_until(sub: &mut pubsub_core::Subscription, last: u32) -> Vec<Read> {
    let mut got = Vec::new();
    loop {
        match tokio::time::timeout(idle(), sub.recv_delivery()).await {
            Ok(Some(Delivery::Message(m))) => {
                let (_, n) = unseq(&m);
                got.push(Read::Seq(n));
                if n == last {
                    return got;
                }
            }
            Ok(Some(Delivery::Gap(Gap::Outage { .. }))) => got.push(Read::Outage),
            Ok(Some(Delivery::Gap(other))) => panic!("unexpected gap {other:?}"),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return got,
        }
    }
}

/// Every connection state `ps` goes through, with the time it was seen.
fn record_states(ps: &dyn PubSub) -> Arc<Mutex<Vec<(Instant, ConnectionState)>>> {
    let mut watch = ps.watch_connection();
    let seen = Arc::new(Mutex::new(vec![(
        Instant::now(),
        *watch.borrow_and_update(),
    )]));
    let record = seen.clone();
    tokio::spawn(async move {
        while watch.changed().await.is_ok() {
            let state = *watch.borrow_and_update();
            record.lock().push((Instant::now(), state));
        }
    });
    seen
}

/// Publishes a numbered message on `t` every millisecond until `stop`, recording each with the
/// time it was sent and whether the publish succeeded.
async fn publish_flow(
    ps: Arc<dyn PubSub>,
    t: String,
    stop: Arc<std::sync::atomic::AtomicBool>,
    sent: Arc<Mutex<Vec<(u32, Instant, bool)>>>,
) {
    let topic = topic(&t);
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n = 0u32;
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        tick.tick().await;
        let at = Instant::now();
        let result = tokio::time::timeout(
            Duration::from_secs(10),
            ps.publish(Message::new(topic.clone(), seq(0, n))),
        )
        .await;
        let ok = matches!(result, Ok(Ok(())));
        sent.lock().push((n, at, ok));
        n += 1;
    }
    let _ = ps.close().await;
}

/// Control over the nodes of a cluster, for [`NodeLink`].
#[async_trait]
pub trait NodeControl: Send + Sync {
    /// The node the handle under test is connected to (the one to kill or freeze).
    async fn node_of_handle(&self) -> usize;
    /// Kills node `i`.
    async fn kill(&mut self, i: usize);
    /// Starts node `i` again after a kill, and waits until the cluster is whole.
    async fn restart(&mut self, i: usize);
    /// Stops node `i` without closing its sockets.
    async fn freeze(&self, i: usize);
    /// Lets node `i` run again.
    async fn thaw(&self, i: usize);
}

/// A [`Link`] whose faults happen to a real node: `cut` kills the node the handle is connected
/// to and `restore` starts it again; `freeze` / `thaw` stop and continue that node's process.
/// Its [`Link::connect_peer`] connects handles to the same cluster with `peer`.
pub struct NodeLink<C: NodeControl> {
    control: AsyncMutex<C>,
    victim: Mutex<Option<usize>>,
    peer: Connect,
}

impl<C: NodeControl> NodeLink<C> {
    /// A link over `control`'s cluster; `peer` connects healthy handles to it.
    pub fn new(control: C, peer: Connect) -> Self {
        NodeLink {
            control: AsyncMutex::new(control),
            victim: Mutex::new(None),
            peer,
        }
    }
}

#[async_trait]
impl<C: NodeControl> Link for NodeLink<C> {
    async fn cut(&self) {
        let mut control = self.control.lock().await;
        let node = control.node_of_handle().await;
        control.kill(node).await;
        *self.victim.lock() = Some(node);
    }

    async fn restore(&self) {
        let node = self.victim.lock().take();
        if let Some(node) = node {
            self.control.lock().await.restart(node).await;
        }
    }

    async fn freeze(&self) {
        let control = self.control.lock().await;
        let node = control.node_of_handle().await;
        control.freeze(node).await;
        *self.victim.lock() = Some(node);
    }

    async fn thaw(&self) {
        let node = self.victim.lock().take();
        if let Some(node) = node {
            self.control.lock().await.thaw(node).await;
        }
    }

    async fn connect_peer(&self) -> Option<Result<Arc<dyn PubSub>>> {
        Some((self.peer)().await)
    }
}
