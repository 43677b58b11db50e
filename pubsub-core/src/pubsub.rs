//! The portable [`PubSub`] trait.

use std::fmt;

use futures::future::BoxFuture;
use tokio::sync::watch;

use crate::{
    ConnectionState, GroupConfig, GroupSubscription, Message, Overflow, Pattern, Result, StartAt,
    StreamConfig, Subscription,
};

/// A pub/sub handle: publish messages to topics, subscribe to patterns.
///
/// Object-safe: hold it as `Arc<dyn PubSub>` to switch backends by URL. Every backend gives the
/// same guarantees (readiness, ordering, bounded buffers, `close`), checked by one conformance
/// suite.
///
/// ```
/// # async fn demo() -> pubsub_core::Result<()> {
/// use futures::StreamExt;
/// use pubsub_core::{memory::MemoryBus, Message, PubSub};
///
/// let bus = MemoryBus::new();
/// let ps = bus.connect().await?;
/// let mut sub = ps.subscribe("room.*.msg".parse()?).await?;
/// ps.publish(Message::new("room.42.msg".parse()?, "hi")).await?;
/// let got = sub.next().await.expect("one message");
/// assert_eq!(got.payload().as_ref(), b"hi");
/// ps.close().await?;
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
/// ```
pub trait PubSub: Send + Sync + fmt::Debug {
    /// Short backend name, such as `"memory"` or `"redis"`.
    fn backend(&self) -> &'static str;

    /// Largest payload accepted, in bytes; a larger one fails with
    /// [`ErrorKind::PayloadTooLarge`](crate::ErrorKind::PayloadTooLarge) before any I/O.
    fn max_payload(&self) -> usize;

    /// Publishes one message. Resolves once the backend accepted it. Messages one task publishes
    /// to one topic reach every subscription in the order published. While the connection is
    /// down it waits up to the publish timeout, then fails with a temporary error: a message is
    /// never dropped silently. Every publish spends one unit of the task's tokio cooperative
    /// budget (`tokio::task::coop`), so a task publishing in a loop yields now and then and
    /// lets the subscribers on its runtime read, even on a backend that never makes it wait.
    fn publish(&self, message: Message) -> BoxFuture<'_, Result<()>>;

    /// Subscribes with the handle's default options. Resolves once the subscription is live at
    /// the broker: every matching message published after that is delivered.
    fn subscribe(&self, pattern: Pattern) -> BoxFuture<'_, Result<Subscription>> {
        self.subscribe_with(pattern, SubscribeOptions::default())
    }

    /// Subscribes with explicit options (buffer, overflow policy, skipping own messages).
    fn subscribe_with(
        &self,
        pattern: Pattern,
        options: SubscribeOptions,
    ) -> BoxFuture<'_, Result<Subscription>> {
        self.subscribe_all(vec![pattern], options)
    }

    /// One subscription to several patterns: a message matching several of them arrives once.
    /// For a client in 20 rooms: one stream, not 20 merged by hand.
    fn subscribe_all(
        &self,
        patterns: Vec<Pattern>,
        options: SubscribeOptions,
    ) -> BoxFuture<'_, Result<Subscription>>;

    /// Lets publishes under way finish, ends every subscription stream, disconnects and stops
    /// every task. Idempotent. Afterwards `publish` and `subscribe` fail with
    /// [`ErrorKind::Closed`](crate::ErrorKind::Closed).
    fn close(&self) -> BoxFuture<'_, Result<()>>;

    /// Declares a stream: from now on every message published to a topic under
    /// `stream.root()` is kept (up to its limits) by the broker, delivered with its
    /// [`Position`](crate::Position), and a subscription under it can begin in its history
    /// ([`SubscribeOptions::starting_at`]) and is resumed after an outage without loss.
    ///
    /// Declaring the same stream again (on any handle of the broker) does nothing; declaring
    /// its root with other limits, or a root that overlaps another stream's, fails with
    /// `Invalid`. Every handle that publishes or subscribes under the stream declares it
    /// (some brokers keep the history whoever publishes; see the README).
    ///
    /// By default (an implementation without streams) it fails with `Unsupported`.
    fn declare_stream(&self, stream: StreamConfig) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            Err(crate::Error::new(
                crate::ErrorKind::Unsupported,
                format!(
                    "{} has no streams (declaring `{}`)",
                    self.backend(),
                    stream.root()
                ),
            ))
        })
    }

    /// Joins `group` as a new member: the group's messages are shared among its members,
    /// each delivered to one member at a time and settled by it (see [`GroupConfig`] and
    /// [`GroupMessage`](crate::GroupMessage)). The group reads the stream its patterns are
    /// under, which must be declared on this handle ([`PubSub::declare_stream`]); it is
    /// created on the first join, starting where [`GroupConfig::starting_at`] says, and keeps
    /// its progress while no member is there. Delivery is at least once: a message a member
    /// did not acknowledge in time, or whose member went away, is delivered again.
    ///
    /// Fails with `Invalid` for patterns under no declared stream or settings that conflict
    /// with the group's; by default (an implementation without groups) with `Unsupported`.
    fn join_group(&self, group: GroupConfig) -> BoxFuture<'_, Result<GroupSubscription>> {
        Box::pin(async move {
            Err(crate::Error::new(
                crate::ErrorKind::Unsupported,
                format!(
                    "{} has no groups (joining `{}`)",
                    self.backend(),
                    group.name()
                ),
            ))
        })
    }

    /// Counters for tests and monitoring.
    fn stats(&self) -> Stats;

    /// Where the connection to the broker stands now.
    fn connection_state(&self) -> ConnectionState;

    /// A receiver that sees every change of [`PubSub::connection_state`].
    fn watch_connection(&self) -> watch::Receiver<ConnectionState>;
}

/// Options for one subscription; what is not set comes from the handle's
/// [`CommonOptions`](crate::CommonOptions).
///
/// ```
/// use pubsub_core::{Overflow, SubscribeOptions};
/// let options = SubscribeOptions::default()
///     .with_capacity(64)
///     .with_overflow(Overflow::Close)
///     .skipping_own();
/// assert!(options.skip_own);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SubscribeOptions {
    /// Buffer capacity in messages; `None` uses the handle's default.
    pub capacity: Option<usize>,
    /// What happens when the buffer is full; `None` uses the handle's default.
    pub overflow: Option<Overflow>,
    /// Do not receive messages this handle published. The handle then stamps what it publishes
    /// with a `pubsub-origin` header (other subscribers see it).
    pub skip_own: bool,
    /// Where to begin in the stream the patterns are under (see
    /// [`PubSub::declare_stream`]): replay what the stream holds from there, then go on live.
    /// `None` is [`StartAt::Now`] for patterns under a declared stream (still recovered after
    /// an outage), and plain live delivery for others. Setting it for patterns under no
    /// declared stream fails with `Invalid`.
    pub from: Option<StartAt>,
}

impl SubscribeOptions {
    /// Sets the buffer capacity (at least 1).
    pub fn with_capacity(mut self, capacity: usize) -> Self {
        self.capacity = Some(capacity.max(1));
        self
    }

    /// Sets the overflow policy.
    pub fn with_overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = Some(overflow);
        self
    }

    /// Skips messages this handle published.
    pub fn skipping_own(mut self) -> Self {
        self.skip_own = true;
        self
    }

    /// Begins at `start` in the stream the patterns are under.
    pub fn starting_at(mut self, start: StartAt) -> Self {
        self.from = Some(start);
        self
    }
}

/// Counters of one handle.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct Stats {
    /// Live subscriptions.
    pub subscriptions: usize,
    /// Native filters currently active at the broker (reference-counted by the hub).
    pub native_filters: usize,
    /// Messages published successfully.
    pub published: u64,
    /// Copies handed to subscription buffers.
    pub delivered: u64,
    /// Copies dropped because a subscription buffer was full (or, for a backend that can see
    /// it, lost before reaching the router).
    pub dropped: u64,
}
