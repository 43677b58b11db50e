//! Groups: work shared by the members of a named, durable reader of a stream, each message
//! acknowledged (at least once). [`GroupConfig`] says what the group reads;
//! [`GroupSubscription`] is one member's share, a stream of [`GroupMessage`]s to settle.

mod config;
mod member;

pub use config::{GroupConfig, DEFAULT_ACK_DEADLINE, DEFAULT_MAX_DELIVERIES, DEFAULT_PREFETCH};
pub use member::{GroupMessage, GroupSubscription, Settled};
pub(crate) use member::{MemberState, Settle, SettleRequest};

/// Header of a dead letter: why it was given up (`max-deliveries`).
pub const DEAD_LETTER_REASON_HEADER: &str = "pubsub-dead-letter-reason";
/// Header of a dead letter: how many times it was delivered.
pub const DELIVERIES_HEADER: &str = "pubsub-deliveries";
/// Header of a dead letter: the topic it was published to.
pub const ORIGINAL_TOPIC_HEADER: &str = "pubsub-original-topic";
/// Header of a dead letter: the group that gave it up.
pub const GROUP_HEADER: &str = "pubsub-group";
