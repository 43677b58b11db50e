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
pub mod headers;
mod hub;
pub mod memory;
mod message;
mod options;
pub mod pattern;
mod pubsub;
mod router;
mod state;
mod subscription;
mod token;
pub mod topic;

pub use backoff::Backoff;
pub use delivery::{Delivery, EndReason, Gap, Overflow};
pub use error::{BoxError, Error, ErrorKind, Operation, Result};
pub use headers::Headers;
pub use hub::Hub;
pub use message::{Message, MessageBuilder};
pub use options::{
    CommonOptions, Secret, TlsOptions, WithOptions, DEFAULT_BUFFER, DEFAULT_HEARTBEAT,
};
pub use pattern::Pattern;
pub use pubsub::{PubSub, Stats, SubscribeOptions};
pub use state::ConnectionState;
pub use subscription::{Deliveries, Subscription};
pub use token::{Token, TokenError, MAX_LEN as MAX_TOPIC_LEN};
pub use topic::Topic;
