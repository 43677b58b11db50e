//! The driver contract: what an adapter implements ([`Driver`]) and what it is shown of the
//! handle's subscriptions when it plans a filter ([`FiltersInUse`]).
//!
//! The bottom of the kit: it depends on the message and the grammar only, and the router,
//! the reconciler and `launch` are built on it.

use std::fmt;
use std::hash::Hash;

use async_trait::async_trait;

use std::time::Duration;

use crate::adapter::group_log::{GroupEntry, Settlement};
use crate::adapter::stream_log::{LogRead, ReadFrom};
use crate::{Error, ErrorKind, GroupConfig, Message, Pattern, Result, StreamConfig};

/// The broker-specific operations of an adapter.
///
/// A driver maps each [`Pattern`] to a native filter of its own type ([`Driver::Filter`]: a
/// channel, a subject, a binding key…). Patterns that map to the same filter share it: the
/// handle asks the driver to add it for the first subscription and to remove it after the last
/// one leaves. A filter only has to select a superset of its patterns' topics; the core's exact
/// matcher decides delivery.
///
/// The handle calls [`Driver::add_filters`] and [`Driver::remove_filters`] from its reconciler,
/// possibly several batches at once (never the same filter twice at once), and
/// [`Driver::publish`] from any task; a driver must allow that concurrency.
#[async_trait]
pub trait Driver: Send + Sync + fmt::Debug + 'static {
    /// The native filter: what the broker is asked to deliver.
    type Filter: Clone + Eq + Hash + fmt::Debug + Send + Sync + 'static;

    /// Short backend name, such as `"redis"`.
    const BACKEND: &'static str;

    /// Whether every native filter is exactly one pattern, matched by the broker as the
    /// portable grammar does: then a message that came through a filter (see
    /// [`Inbound::deliver_via`](crate::adapter::Inbound::deliver_via)) goes to that filter's subscriptions without the core checking
    /// its topic against their pattern again. `false` (the default) when a filter may select
    /// more than its patterns do.
    const FILTER_IS_PATTERN: bool = false;

    /// Largest payload the broker accepts, in bytes (the handle lowers it to
    /// [`CommonOptions::max_payload`](crate::CommonOptions::max_payload) when that is set, and
    /// refuses larger payloads before calling [`Driver::publish`]).
    fn max_payload(&self) -> usize;

    /// The native filter that serves `pattern` on this broker.
    fn native_filter(&self, pattern: &Pattern) -> Result<Self::Filter>;

    /// The native filter for a new subscription's `pattern`, chosen knowing the filters the
    /// handle's subscriptions use now (`in_use`). By default [`Driver::native_filter`].
    ///
    /// A driver whose broker pays for every wildcard filter on every message can plan here:
    /// share a broader filter already in use, or choose a broader one when it holds many
    /// (the core's matcher still decides delivery, so any superset is correct). A
    /// subscription keeps the filter chosen for it until it ends, so planning never moves a
    /// live subscription from one filter to another. Concurrent subscribes may plan from the
    /// same view, so counts seen here can be exceeded by a few.
    fn plan_filter(
        &self,
        pattern: &Pattern,
        in_use: &dyn FiltersInUse<Self::Filter>,
    ) -> Result<Self::Filter> {
        let _ = in_use;
        self.native_filter(pattern)
    }

    /// Whether the broker tests `filter` against every message published (a wildcard), where
    /// other filters are looked up by name; the kit counts those in use for
    /// [`Driver::plan_filter`] ([`FiltersInUse::wildcards`]). By default `false`.
    fn is_wildcard(&self, filter: &Self::Filter) -> bool {
        let _ = filter;
        false
    }

    /// Sends one message; resolves once the broker accepted it (a confirm or delivery report
    /// where the broker has one; otherwise once written to the connection, in order). Must not
    /// hang: a driver bounds it by the publish timeout. The handle has already waited for the
    /// connection ([`Supervisor::ready`](crate::adapter::Supervisor::ready)).
    async fn publish(&self, message: Message) -> Result<()>;

    /// Sends `message` at once when that needs no waiting (a client library's queue with room,
    /// say), with the same promise as [`Driver::publish`]; gives the message back when it
    /// would have to wait, and the handle calls [`Driver::publish`] with it. Lets a publish
    /// that completes at once skip the allocation of an async call. By default it always
    /// gives the message back.
    fn publish_now(&self, message: Message) -> std::result::Result<Result<()>, Message> {
        Err(message)
    }

    /// Asks the broker to deliver what `filters` select; resolves once the broker confirmed,
    /// so that a message published after it is delivered.
    async fn add_filters(&self, filters: &[Self::Filter]) -> Result<()>;

    /// Stops what `filters` select; resolves once the broker confirmed.
    async fn remove_filters(&self, filters: &[Self::Filter]) -> Result<()>;

    /// Adds `filters` again after a link reported [`LinkReporter::reconnected`](crate::adapter::LinkReporter::reconnected). By default the
    /// same as [`Driver::add_filters`].
    async fn restore_filters(&self, filters: &[Self::Filter]) -> Result<()> {
        self.add_filters(filters).await
    }

    /// Declares `stream` at the broker (see
    /// [`PubSub::declare_stream`](crate::PubSub::declare_stream)): from now on a message
    /// published through this driver to a topic under it is appended to its log, and a live
    /// message under it is delivered with its position
    /// ([`Message::with_position`](crate::Message::with_position)). Idempotent; a stream
    /// already at the broker with other limits fails with `Invalid`. The handle has checked
    /// the limits and that the root overlaps no other stream of the handle.
    ///
    /// By default `Unsupported`: a driver without streams.
    async fn declare_stream(&self, stream: &StreamConfig) -> Result<()> {
        Err(no_streams(Self::BACKEND, stream))
    }

    /// Reads at most `limit` entries of `stream`'s log from `from`, in log order (an empty
    /// batch is the end of the log). Called only for a stream declared through this driver.
    ///
    /// By default `Unsupported`: a driver without streams.
    async fn read_stream(
        &self,
        stream: &StreamConfig,
        from: ReadFrom,
        limit: usize,
    ) -> Result<LogRead> {
        let _ = (from, limit);
        Err(no_streams(Self::BACKEND, stream))
    }

    /// Creates `group` on `stream` at the broker, or checks that the one there has the same
    /// settings ([`GroupConfig::same_group`]; otherwise `Invalid`). A new group starts at
    /// [`GroupConfig::start`]; an existing one goes on where it was. Called only for a stream
    /// declared through this driver, with a group the handle validated.
    ///
    /// By default `Unsupported`: a driver without groups.
    async fn join_group(&self, stream: &StreamConfig, group: &GroupConfig) -> Result<()> {
        let _ = stream;
        Err(no_groups(Self::BACKEND, group))
    }

    /// Reads at most `limit` deliveries of `group` for `member`: first those due again (a
    /// nack's delay or the ack deadline passed, or their member gone), then new entries of the
    /// log, each counted as delivered. Waits up to `wait` when nothing is there (an empty
    /// batch is fine: the kit asks again). Entries the group's patterns do not match may be
    /// returned; the kit acknowledges them.
    ///
    /// By default `Unsupported`: a driver without groups.
    async fn read_group(
        &self,
        stream: &StreamConfig,
        group: &GroupConfig,
        member: &str,
        limit: usize,
        wait: Duration,
    ) -> Result<Vec<GroupEntry>> {
        let _ = (stream, member, limit, wait);
        Err(no_groups(Self::BACKEND, group))
    }

    /// Carries out settlements of deliveries read by [`Driver::read_group`], in one batch
    /// where the broker allows. A receipt settled twice, or already redelivered elsewhere, is
    /// not an error.
    ///
    /// By default `Unsupported`: a driver without groups.
    async fn settle_group(
        &self,
        stream: &StreamConfig,
        group: &GroupConfig,
        settlements: &[Settlement],
    ) -> Result<()> {
        let _ = (stream, settlements);
        Err(no_groups(Self::BACKEND, group))
    }

    /// `member` left `group` (its subscription was dropped or left): the driver releases what
    /// it keeps for the member. What the member held unsettled is left to the ack deadline.
    /// By default nothing.
    async fn leave_group(&self, stream: &StreamConfig, group: &GroupConfig, member: &str) {
        let _ = (stream, group, member);
    }

    /// Flushes what was published and disconnects. Called once, by `close`, after the
    /// handle's background tasks were told to stop.
    async fn close(&self) -> Result<()>;
}

fn no_groups(backend: &str, group: &GroupConfig) -> Error {
    Error::new(
        ErrorKind::Unsupported,
        format!(
            "the {backend} adapter has no groups yet (group `{}`)",
            group.name()
        ),
    )
}

fn no_streams(backend: &str, stream: &StreamConfig) -> Error {
    Error::new(
        ErrorKind::Unsupported,
        format!(
            "the {backend} adapter has no streams yet (stream `{}`)",
            stream.root()
        ),
    )
}

/// The native filters a handle's subscriptions need, as [`Driver::plan_filter`] sees them.
pub trait FiltersInUse<F> {
    /// Whether a subscription of the handle needs `filter`.
    fn contains(&self, filter: &F) -> bool;

    /// How many of the filters needed are wildcards ([`Driver::is_wildcard`]).
    fn wildcards(&self) -> usize;
}
