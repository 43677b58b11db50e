//! Node presence over any pubsub backend: which nodes of a cluster are alive right now.
//!
//! Every node publishes a small heartbeat on one topic and listens to everyone else's; a node
//! whose heartbeat stops for longer than its expiry is gone, a node that stops on purpose says
//! so and is gone at once. Works on every backend of the workspace (memory, Redis, NATS,
//! RabbitMQ) through the [`PubSub`](pubsub_core::PubSub) trait.
//!
//! It is not tied to any framework: a realtime server uses it to know its peers (and how many
//! serve a given thing, with tags), to stop waiting for answers from a node that died, or to
//! rebalance work when nodes come and go. `pubsub-socketioxide` uses it to answer socket.io's
//! "how many servers" question.
//!
//! - [`Presence::start`] with a [`PresenceConfig`] (topic, interval, expiry, node id, tags);
//! - [`Presence::alive`], [`Presence::count_tagged`], [`Presence::watch_alive`],
//!   [`Presence::wait_until`];
//! - [`Presence::events`]: [`PresenceEvent::Joined`], [`PresenceEvent::Updated`],
//!   [`PresenceEvent::Left`] with a [`LeaveReason`];
//! - [`Presence::leave`] to stop with an announcement.
//!
//! Heartbeats are JSON (`{"v":1,"node":"…","kind":"beat","expiry_ms":3000,"tags":[…]}`): any
//! language can take part.
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod config;
mod presence;
mod wire;

pub use config::PresenceConfig;
pub use presence::{LeaveReason, NodeInfo, Presence, PresenceEvent};

#[cfg(test)]
mod tests;
