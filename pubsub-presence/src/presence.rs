//! [`Presence`]: this node's heartbeats out, the other nodes' heartbeats in, the alive set.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use pubsub_core::{Delivery, Gap, Message, PubSub, Result, Subscription, Topic};
use tokio::sync::{broadcast, watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::PresenceConfig;
use crate::wire::{Beat, Kind, VERSION};

/// One alive node as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// Its id.
    pub id: String,
    /// Its tags, as of its last heartbeat.
    pub tags: BTreeSet<String>,
    /// Whether it is this node.
    pub local: bool,
}

/// Why a node left the alive set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaveReason {
    /// It said so ([`Presence::leave`]).
    Announced,
    /// No heartbeat from it within its expiry (crashed, cut off, or paused).
    Expired,
}

/// A change of the alive set.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PresenceEvent {
    /// A node was seen for the first time (or again after it had left).
    Joined(NodeInfo),
    /// A known node announced different tags.
    Updated(NodeInfo),
    /// A node left.
    Left {
        /// Its id.
        id: String,
        /// Why.
        reason: LeaveReason,
    },
}

/// Node presence over any [`PubSub`] handle: every node publishes a heartbeat on one topic and
/// listens to the others'; a node silent for longer than its expiry is gone.
///
/// It is independent of any framework: a WebSocket server, a socket.io adapter or a job
/// runner can use it to know its peers, count the nodes that serve something (tags), and react
/// to nodes joining and leaving.
///
/// - A new node says `hello`; every node that hears it answers with a heartbeat at once, so a
///   node knows its peers within one round trip instead of one interval. The same happens when
///   a node's connection comes back after an outage.
/// - Tags (for example the channels or rooms a node serves) travel in the heartbeat; changing
///   them publishes a heartbeat at once.
/// - [`Presence::leave`] announces the departure: peers forget the node immediately. A node
///   that crashes is forgotten once its expiry passes.
/// - Malformed heartbeats are ignored (logged at debug), never a panic.
///
/// Cloning gives another handle to the same presence; the tasks stop when the last handle is
/// dropped (without announcing) or at [`Presence::leave`].
///
/// ```
/// # async fn demo() -> pubsub_core::Result<()> {
/// use std::{sync::Arc, time::Duration};
/// use pubsub_core::memory::MemoryBus;
/// use pubsub_presence::{Presence, PresenceConfig};
///
/// let bus = MemoryBus::new();
/// let config = PresenceConfig::new("app.presence".parse()?)
///     .with_interval(Duration::from_millis(100))
///     .with_expiry(Duration::from_millis(300));
/// let a = Presence::start(Arc::new(bus.connect().await?), config.clone().with_tag("chat")).await?;
/// let b = Presence::start(Arc::new(bus.connect().await?), config).await?;
/// a.wait_until(Duration::from_secs(2), |alive| alive.len() == 2).await?;
/// b.wait_until(Duration::from_secs(2), |alive| alive.len() == 2).await?;
/// assert_eq!(b.count_tagged("chat"), 1);
/// b.leave().await?;
/// a.wait_until(Duration::from_secs(2), |alive| alive.len() == 1).await?;
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
/// ```
#[derive(Clone)]
pub struct Presence {
    handle: Arc<Handle>,
}

/// Owns the tasks: dropping the last [`Presence`] stops them.
struct Handle {
    shared: Arc<Shared>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
    }
}

/// What the tasks and the handles share.
struct Shared {
    ps: Arc<dyn PubSub>,
    topic: Topic,
    node_id: String,
    interval: Duration,
    expiry: Duration,
    state: Mutex<State>,
    events: broadcast::Sender<PresenceEvent>,
    alive: watch::Sender<Vec<NodeInfo>>,
    /// Wakes the heartbeat task for a heartbeat now.
    beat_now: Notify,
    /// The next heartbeat is a `hello` (everyone answers).
    hello: AtomicBool,
    left: AtomicBool,
}

#[derive(Default)]
struct State {
    tags: BTreeSet<String>,
    peers: HashMap<String, Peer>,
}

struct Peer {
    tags: BTreeSet<String>,
    expires: Instant,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn random_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

impl Presence {
    /// Subscribes to the presence topic, says `hello`, and starts the heartbeat and expiry
    /// tasks. Fails if the settings are invalid or the first subscribe or publish fails.
    pub async fn start(ps: Arc<dyn PubSub>, config: PresenceConfig) -> Result<Presence> {
        config.validate()?;
        let node_id = config.node_id.clone().unwrap_or_else(random_id);
        let (events, _) = broadcast::channel(256);
        let shared = Arc::new(Shared {
            topic: config.topic.clone(),
            node_id,
            interval: config.interval,
            expiry: config.expiry,
            state: Mutex::new(State {
                tags: config.tags.clone(),
                peers: HashMap::new(),
            }),
            events,
            alive: watch::Sender::new(Vec::new()),
            beat_now: Notify::new(),
            hello: AtomicBool::new(false),
            left: AtomicBool::new(false),
            ps,
        });
        shared.publish_alive();
        let subscription = shared.ps.subscribe(config.topic.clone().into()).await?;
        shared.publish(Kind::Hello).await?;
        let listener = tokio::spawn(listen(shared.clone(), subscription));
        let beater = tokio::spawn(beat(shared.clone()));
        tracing::debug!(node = %shared.node_id, topic = %shared.topic, "presence started");
        Ok(Presence {
            handle: Arc::new(Handle {
                shared,
                tasks: Mutex::new(vec![listener, beater]),
            }),
        })
    }

    fn shared(&self) -> &Shared {
        &self.handle.shared
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.shared().node_id
    }

    /// The expiry this node announces.
    pub fn expiry(&self) -> Duration {
        self.shared().expiry
    }

    /// Every alive node, this one included (first), the others by id.
    pub fn alive(&self) -> Vec<NodeInfo> {
        self.shared().alive.borrow().clone()
    }

    /// The other alive nodes' ids.
    pub fn peers(&self) -> Vec<String> {
        let state = lock(&self.shared().state);
        let mut ids: Vec<String> = state.peers.keys().cloned().collect();
        ids.sort();
        ids
    }

    /// How many alive nodes (this one included) carry `tag`.
    pub fn count_tagged(&self, tag: &str) -> usize {
        let state = lock(&self.shared().state);
        usize::from(state.tags.contains(tag))
            + state
                .peers
                .values()
                .filter(|p| p.tags.contains(tag))
                .count()
    }

    /// Adds a tag to this node and publishes a heartbeat at once if it was new.
    pub fn add_tag(&self, tag: impl Into<String>) {
        let added = lock(&self.shared().state).tags.insert(tag.into());
        if added {
            self.shared().tags_changed();
        }
    }

    /// Removes a tag from this node and publishes a heartbeat at once if it had it.
    pub fn remove_tag(&self, tag: &str) {
        let removed = lock(&self.shared().state).tags.remove(tag);
        if removed {
            self.shared().tags_changed();
        }
    }

    /// This node's tags.
    pub fn tags(&self) -> BTreeSet<String> {
        lock(&self.shared().state).tags.clone()
    }

    /// Joins, updates and departures from now on. A receiver that falls more than 256 events
    /// behind loses the oldest (`RecvError::Lagged`); [`Presence::alive`] is always current.
    pub fn events(&self) -> broadcast::Receiver<PresenceEvent> {
        self.shared().events.subscribe()
    }

    /// A receiver of the alive set (as [`Presence::alive`]) that sees every change.
    pub fn watch_alive(&self) -> watch::Receiver<Vec<NodeInfo>> {
        self.shared().alive.subscribe()
    }

    /// Waits until the alive set satisfies `condition`, at most `within`: a
    /// [`Timeout`](pubsub_core::ErrorKind::Timeout) error otherwise.
    pub async fn wait_until(
        &self,
        within: Duration,
        condition: impl FnMut(&Vec<NodeInfo>) -> bool,
    ) -> Result<()> {
        let mut alive = self.watch_alive();
        let outcome = tokio::time::timeout(within, alive.wait_for(condition))
            .await
            .map(|r| r.map(|_| ()));
        match outcome {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(pubsub_core::Error::closed()),
            Err(_) => Err(pubsub_core::Error::timeout(format!(
                "presence: the alive set did not reach the condition within {within:?}"
            ))),
        }
    }

    /// Announces that this node leaves (peers forget it at once) and stops the tasks. Other
    /// handles of this presence then see only this node. The pub/sub handle stays open.
    pub async fn leave(&self) -> Result<()> {
        let shared = self.shared();
        if shared.left.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        for task in lock(&self.handle.tasks).drain(..) {
            task.abort();
        }
        let gone: Vec<String> = lock(&shared.state)
            .peers
            .drain()
            .map(|(id, _)| id)
            .collect();
        shared.publish_alive();
        for id in gone {
            let _ = shared.events.send(PresenceEvent::Left {
                id,
                reason: LeaveReason::Announced,
            });
        }
        tracing::debug!(node = %shared.node_id, "presence: leaving");
        shared.publish(Kind::Leave).await
    }
}

impl fmt::Debug for Presence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shared = self.shared();
        f.debug_struct("Presence")
            .field("node_id", &shared.node_id)
            .field("topic", &shared.topic)
            .field("alive", &shared.alive.borrow().len())
            .finish()
    }
}

impl Shared {
    async fn publish(&self, kind: Kind) -> Result<()> {
        let beat = Beat {
            v: VERSION,
            node: self.node_id.clone(),
            kind,
            expiry_ms: u64::try_from(self.expiry.as_millis()).unwrap_or(u64::MAX),
            tags: lock(&self.state).tags.clone(),
        };
        self.ps
            .publish(Message::new(self.topic.clone(), beat.encode()))
            .await
    }

    fn tags_changed(&self) {
        self.publish_alive();
        self.beat_now.notify_one();
    }

    /// Rebuilds the alive set for the watchers.
    fn publish_alive(&self) {
        let state = lock(&self.state);
        let mut alive = Vec::with_capacity(state.peers.len() + 1);
        alive.push(NodeInfo {
            id: self.node_id.clone(),
            tags: state.tags.clone(),
            local: true,
        });
        let mut peers: Vec<NodeInfo> = state
            .peers
            .iter()
            .map(|(id, peer)| NodeInfo {
                id: id.clone(),
                tags: peer.tags.clone(),
                local: false,
            })
            .collect();
        peers.sort_by(|a, b| a.id.cmp(&b.id));
        alive.extend(peers);
        drop(state);
        self.alive.send_replace(alive);
    }

    /// Applies one heartbeat from a peer.
    fn on_beat(&self, beat: Beat) {
        if beat.node == self.node_id {
            return;
        }
        let event = {
            let mut state = lock(&self.state);
            match beat.kind {
                Kind::Leave => state.peers.remove(&beat.node).map(|_| PresenceEvent::Left {
                    id: beat.node.clone(),
                    reason: LeaveReason::Announced,
                }),
                Kind::Hello | Kind::Beat => {
                    let expires = Instant::now() + beat.expiry();
                    let info = NodeInfo {
                        id: beat.node.clone(),
                        tags: beat.tags.clone(),
                        local: false,
                    };
                    match state.peers.get_mut(&beat.node) {
                        Some(peer) => {
                            peer.expires = expires;
                            (peer.tags != beat.tags).then(|| {
                                peer.tags = beat.tags.clone();
                                PresenceEvent::Updated(info)
                            })
                        }
                        None => {
                            state.peers.insert(
                                beat.node.clone(),
                                Peer {
                                    tags: beat.tags.clone(),
                                    expires,
                                },
                            );
                            Some(PresenceEvent::Joined(info))
                        }
                    }
                }
            }
        };
        // A hello, or a node we did not know: answer at once so it knows us within a round trip.
        if beat.kind == Kind::Hello || matches!(event, Some(PresenceEvent::Joined(_))) {
            self.beat_now.notify_one();
        }
        if let Some(event) = event {
            match &event {
                PresenceEvent::Joined(info) => {
                    tracing::info!(node = %self.node_id, peer = %info.id, "presence: node joined")
                }
                PresenceEvent::Left { id, .. } => {
                    tracing::info!(node = %self.node_id, peer = %id, "presence: node left")
                }
                PresenceEvent::Updated(_) => {}
            }
            self.publish_alive();
            let _ = self.events.send(event);
        }
    }

    /// Forgets the peers whose heartbeat expired.
    fn sweep(&self) {
        let now = Instant::now();
        let expired: Vec<String> = {
            let mut state = lock(&self.state);
            let expired: Vec<String> = state
                .peers
                .iter()
                .filter(|(_, peer)| peer.expires <= now)
                .map(|(id, _)| id.clone())
                .collect();
            for id in &expired {
                state.peers.remove(id);
            }
            expired
        };
        if expired.is_empty() {
            return;
        }
        self.publish_alive();
        for id in expired {
            tracing::warn!(node = %self.node_id, peer = %id, "presence: node expired (no heartbeat)");
            let _ = self.events.send(PresenceEvent::Left {
                id,
                reason: LeaveReason::Expired,
            });
        }
    }

    /// How often expiries are checked: a tenth of the expiry, within [5 ms, interval].
    fn sweep_period(&self) -> Duration {
        (self.expiry / 10).clamp(Duration::from_millis(5), self.interval)
    }
}

/// Reads the presence topic and expires silent peers.
async fn listen(shared: Arc<Shared>, mut subscription: Subscription) {
    let mut sweep = tokio::time::interval(shared.sweep_period());
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            delivery = subscription.recv_delivery() => match delivery {
                Some(Delivery::Message(message)) => match Beat::decode(message.payload()) {
                    Ok(beat) => shared.on_beat(beat),
                    Err(why) => tracing::debug!(?why, "presence: ignored a malformed heartbeat"),
                },
                Some(Delivery::Gap(Gap::Outage { .. })) => {
                    // Peers may have come and gone while we were cut off: ask everyone.
                    tracing::info!(node = %shared.node_id, "presence: connection back, saying hello again");
                    shared.hello.store(true, Ordering::SeqCst);
                    shared.beat_now.notify_one();
                }
                Some(Delivery::Gap(gap)) => {
                    tracing::debug!(?gap, "presence: heartbeats lost (peers refresh on the next one)");
                }
                Some(_) => {}
                None => {
                    tracing::debug!(node = %shared.node_id, "presence: subscription ended");
                    return;
                }
            },
            _ = sweep.tick() => shared.sweep(),
        }
    }
}

/// Publishes a heartbeat every interval, or at once when asked.
async fn beat(shared: Arc<Shared>) {
    let mut ticks = tokio::time::interval(shared.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await; // the first tick is immediate; `start` said hello already
    let mut failing = false;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = shared.beat_now.notified() => {}
        }
        let kind = if shared.hello.swap(false, Ordering::SeqCst) {
            Kind::Hello
        } else {
            Kind::Beat
        };
        match shared.publish(kind).await {
            Ok(()) if failing => {
                failing = false;
                tracing::info!(node = %shared.node_id, "presence: heartbeats go out again");
            }
            Ok(()) => {}
            Err(error) if error.kind() == pubsub_core::ErrorKind::Closed => return,
            Err(error) => {
                if !failing {
                    tracing::warn!(node = %shared.node_id, %error, "presence: heartbeat failed");
                }
                failing = true;
                // Peers expire us meanwhile; when it works again say hello so they answer.
                shared.hello.store(true, Ordering::SeqCst);
            }
        }
    }
}
