//! Requests in flight and the nodes they still wait for. When presence forgets a node, the
//! requests waiting for its answer get an empty answer in its name (no sockets, no rooms, no
//! acknowledgements), so they return at once with what the other nodes gave instead of
//! waiting out the adapter's request timeout.
//!
//! socketioxide's adapter counts the nodes to wait for ([`num_serv`] from presence) when it
//! sends a request, then waits for that many answers on its response channel. The driver sees
//! both: the request it publishes (who asks, what kind) and every answer that comes back (who
//! answered). A node's adapter id is read from its presence tags: the specific request channel
//! it subscribes to, `{prefix}-request#{namespace}#{uid}#`.
//!
//! Only a node that has not answered at all is answered for. A node that died after giving its
//! acknowledgement count but before its acknowledgements still costs the request timeout.
//!
//! [`num_serv`]: socketioxide_redis::drivers::Driver::num_serv

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pubsub_presence::NodeInfo;
use serde::Deserialize;
use socketioxide_core::adapter::remote_packet::{RequestIn, RequestTypeIn, Response, ResponseType};
use socketioxide_core::{Sid, Uid};

/// A request older than this is forgotten (the adapter has given up on it long before).
const FORGET_AFTER: Duration = Duration::from_secs(300);

/// The kind of answer a request waits for.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// `broadcast().emit_with_ack`: first the number of acknowledgements to expect.
    AckCount,
    /// `rooms()`.
    Rooms,
    /// `fetch_sockets()`.
    Sockets,
}

/// One request this node sent.
#[derive(Debug)]
struct Pending {
    /// The channel its answers come on (this node's response channel).
    response_chan: String,
    kind: Kind,
    /// The nodes that have not answered: presence id → adapter id.
    waiting: HashMap<String, Uid>,
    since: Instant,
}

/// The requests of this node that wait for answers.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    pending: Mutex<HashMap<Sid, Pending>>,
}

/// The head of an answer: who sent it.
#[derive(Deserialize)]
struct Answer {
    node_id: Uid,
    #[allow(dead_code)] // read past, never used
    r#type: serde::de::IgnoredAny,
}

impl InFlight {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Sid, Pending>> {
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Notes the request `payload` this node is about to publish on `chan`, with the alive
    /// nodes as presence sees them now (what `num_serv` counted).
    pub(crate) fn requested(&self, chan: &str, payload: &[u8], alive: &[NodeInfo]) {
        let Ok(request) = rmp_serde::from_slice::<RequestIn>(payload) else {
            return; // not a request this module knows
        };
        let kind = match request.r#type {
            RequestTypeIn::BroadcastWithAck(_) => Kind::AckCount,
            RequestTypeIn::AllRooms => Kind::Rooms,
            RequestTypeIn::FetchSockets => Kind::Sockets,
            _ => return, // no answer expected
        };
        // `chan` is the global request channel `{prefix}-request#{ns}#`, or one node's
        // `{prefix}-request#{ns}#{uid}#`.
        let (global, target) = match specific(chan, alive) {
            Some((global, uid)) => (global, Some(uid)),
            None => (chan.to_string(), None),
        };
        let Some((prefix, namespace)) = global.rsplit_once("-request#") else {
            return;
        };
        let response_chan = format!("{prefix}-response#{namespace}{}#", request.node_id);
        let waiting: HashMap<String, Uid> = alive
            .iter()
            .filter(|node| !node.local && node.tags.contains(&global))
            .filter_map(|node| Some((node.id.clone(), uid_of(node, &global)?)))
            .filter(|(_, uid)| target.is_none_or(|t| t == *uid))
            .collect();
        let mut pending = self.lock();
        pending.retain(|_, p| p.since.elapsed() < FORGET_AFTER);
        if !waiting.is_empty() {
            pending.insert(
                request.id,
                Pending {
                    response_chan,
                    kind,
                    waiting,
                    since: Instant::now(),
                },
            );
        }
    }

    /// Notes an answer that came on a response channel.
    pub(crate) fn answered(&self, payload: &[u8]) {
        let Ok((id, answer)) = rmp_serde::from_slice::<(Sid, Answer)>(payload) else {
            return;
        };
        let mut pending = self.lock();
        if let Some(request) = pending.get_mut(&id) {
            request.waiting.retain(|_, uid| *uid != answer.node_id);
            if request.waiting.is_empty() {
                pending.remove(&id);
            }
        }
    }

    /// The node `id` was forgotten: the empty answers to hand to the adapter in its name, as
    /// (response channel, payload).
    pub(crate) fn forgotten(&self, id: &str) -> Vec<(String, Vec<u8>)> {
        let mut answers = Vec::new();
        let mut pending = self.lock();
        pending.retain(|request_id, request| {
            let Some(uid) = request.waiting.remove(id) else {
                return true;
            };
            let r#type = match request.kind {
                Kind::AckCount => ResponseType::BroadcastAckCount(0),
                Kind::Rooms => ResponseType::AllRooms(HashSet::new()),
                Kind::Sockets => ResponseType::FetchSockets(Vec::new()),
            };
            let answer = Response::<()> {
                node_id: uid,
                r#type,
            };
            if let Ok(payload) = rmp_serde::to_vec(&(request_id, answer)) {
                answers.push((request.response_chan.clone(), payload));
            }
            !request.waiting.is_empty()
        });
        answers
    }
}

/// When `chan` is one node's request channel, `{global}{uid}#` with `global` a channel alive
/// nodes subscribe to: the global channel and the uid.
fn specific(chan: &str, alive: &[NodeInfo]) -> Option<(String, Uid)> {
    let (head, last) = chan.strip_suffix('#')?.rsplit_once('#')?;
    let uid = Uid::from_str(last).ok()?;
    let global = format!("{head}#");
    alive
        .iter()
        .any(|node| node.tags.contains(&global))
        .then_some((global, uid))
}

/// A node's adapter id: from its tag `{global}{uid}#`.
fn uid_of(node: &NodeInfo, global: &str) -> Option<Uid> {
    node.tags.iter().find_map(|tag| {
        let rest = tag.strip_prefix(global)?.strip_suffix('#')?;
        Uid::from_str(rest).ok()
    })
}
