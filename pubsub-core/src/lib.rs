//! Portable pub/sub: the grammar, the message, the [`PubSub`] trait, and the machinery every
//! adapter shares.
//!
//! For applications (everything at the crate root):
//! - [`Topic`] and [`Pattern`]: the portable grammar (`*` = one token, `>` = one or more
//!   trailing tokens) and the one exact matcher every backend's delivery is decided by.
//! - [`Message`]: a topic, an opaque payload and ordered [`Headers`].
//! - [`PubSub`]: the trait; [`Hub`]: the handle every backend returns; [`Subscription`]: a
//!   `Stream` of messages.
//! - [`Error`] with its [`ErrorKind`]; [`CommonOptions`] with the [`WithOptions`] setters;
//!   [`ConnectionState`]; [`memory`]: the in-process backend.
//! - Streams: [`StreamConfig`] (a bounded history under a root pattern, kept by the broker),
//!   [`Position`] (where a message stands in it) and [`StartAt`] (where a subscription
//!   begins: replay, then live, recovered after an outage).
//!
//! For adapter authors: [`adapter`], the kit an adapter is written on (driver contract,
//! router, reconciler, connection supervisor, tasks, URL parsing, envelope framing).
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod adapter;
mod backoff;
mod delivery;
mod error;
mod escape;
mod group;
pub mod headers;
mod hub;
pub mod memory;
mod message;
mod options;
pub mod pattern;
mod pubsub;
mod router;
mod state;
mod stream;
mod subscription;
mod token;
pub mod topic;

pub use backoff::Backoff;
pub use delivery::{Delivery, EndReason, Gap, Overflow};
pub use error::{BoxError, Error, ErrorKind, Operation, Result};
pub use group::{
    GroupConfig, GroupMessage, GroupSubscription, Settled, DEAD_LETTER_REASON_HEADER,
    DEFAULT_ACK_DEADLINE, DEFAULT_MAX_DELIVERIES, DEFAULT_PREFETCH, DELIVERIES_HEADER,
    GROUP_HEADER, ORIGINAL_TOPIC_HEADER,
};
pub use headers::Headers;
pub use hub::Hub;
pub use message::{Message, MessageBuilder};
pub use options::{
    CommonOptions, Secret, TlsOptions, WithOptions, DEFAULT_BUFFER, DEFAULT_HEARTBEAT,
};
pub use pattern::Pattern;
pub use pubsub::{PubSub, Stats, SubscribeOptions};
pub use state::ConnectionState;
pub use stream::{
    Offset, Position, StartAt, StreamConfig, DEFAULT_MAX_AGE as DEFAULT_STREAM_MAX_AGE,
    DEFAULT_MAX_LEN as DEFAULT_STREAM_MAX_LEN,
};
pub use subscription::{Deliveries, Subscription};
pub use token::{Token, TokenError, MAX_LEN as MAX_TOPIC_LEN};
pub use topic::Topic;
