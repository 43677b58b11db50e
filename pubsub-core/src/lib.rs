//! Portable pub/sub: the grammar, the message, the [`PubSub`] trait, and the machinery every
//! adapter shares.
//!
//! - [`Topic`] and [`Pattern`] implement the portable grammar (`*` = one token, `>` = one or
//!   more trailing tokens) and the one exact matcher every backend's delivery is decided by.
//! - [`Message`] carries a topic, an opaque payload and [`Headers`].
//! - [`PubSub`] is the trait applications use; [`Subscription`] is a `Stream` of messages.
//! - [`Hub`] implements `PubSub` for any [`Driver`]: an adapter only translates to its broker,
//!   while the hub owns routing ([`router`]), bounded per-subscription buffers, reference-counted
//!   native filters and `close`.
//! - [`memory`] is the in-process backend; [`envelope`] frames headers for brokers without
//!   native headers; [`Backoff`] is the reconnect policy every driver uses.
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod backoff;
mod connection;
mod driver;
pub mod envelope;
mod error;
pub mod headers;
mod hub;
pub mod memory;
mod message;
pub mod pattern;
mod pubsub;
pub mod router;
mod subscription;
mod token;
pub mod topic;

pub use backoff::Backoff;
pub use connection::ConnectionGate;
pub use driver::{Driver, NativeFilter};
pub use error::{BoxError, Error, ErrorKind, Result};
pub use headers::Headers;
pub use hub::{Hub, HubConfig, DEFAULT_CAPACITY};
pub use message::{Message, MessageBuilder};
pub use pattern::Pattern;
pub use pubsub::{PubSub, Stats, SubscribeOptions};
pub use router::Inbound;
pub use subscription::Subscription;
pub use token::MAX_LEN as MAX_TOPIC_LEN;
pub use topic::Topic;
