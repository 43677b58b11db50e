//! The adapter kit: what an adapter author needs, and nothing an application uses.
//!
//! An adapter implements [`Driver`], the broker-specific half of a handle, and starts handles
//! with [`launch`]. Everything else lives here once, for every backend:
//!
//! - the router ([`Inbound`]): the registry of local subscriptions in a token trie, bounded
//!   per-subscription queues, exact matching, and the native filters with reference counts;
//! - the reconciler: the desired set of native filters, applied to the broker in batches,
//!   retried with [`Backoff`](crate::Backoff) when a change fails, replayed after a reconnect,
//!   with no lock held across broker I/O;
//! - the [`Supervisor`]: the connection state machine, publish gating up to the publish
//!   deadline, and the state users watch;
//! - [`Tasks`]: every background task of a handle, stopped by one cancellation token;
//! - [`Watchdog`]: a deadline for every publish without a timer per publish;
//! - [`ServerUrl`] and [`CommonOptions`]: URL parsing and the shared
//!   settings; [`envelope`]: header framing for brokers without native headers.
//!
//! See `docs/ARCHITECTURE.md` in the repository for a walk through writing an adapter, with
//! the memory backend (`pubsub_core::memory`) as the worked example.

pub mod encoded_word;
mod filter_readers;
pub mod headerless;
mod polled_state;
mod reader;
mod refusals;
mod supervisor;
mod tasks;
#[cfg(feature = "tls")]
pub mod tls;
mod topic_memo;
mod url;
mod watchdog;

use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;

use async_trait::async_trait;

pub mod envelope;
pub use crate::escape::{push_hex_escape, upper_hex_digit, HOSTILE_TEXTS};
pub use crate::router::PatternTrie;
pub use filter_readers::FilterReaders;
pub use polled_state::watch_polled;
pub use reader::drain_broadcast;
pub use refusals::Refusals;
pub(crate) use supervisor::OutageListener;
pub use supervisor::{LinkReporter, Supervisor};
pub use tasks::Tasks;
pub use topic_memo::TopicMemo;
pub use url::{parse_query, HostPort, ServerUrl};
pub use watchdog::Watchdog;

pub use crate::__config_setters as config_setters;

use crate::router::Router;
use crate::{CommonOptions, Error, Hub, Message, Operation, Pattern, Result, Topic};

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
    /// [`Inbound::deliver_via`]) goes to that filter's subscriptions without the core checking
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
    /// connection ([`Supervisor::ready`]).
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

    /// Adds `filters` again after a link reported [`LinkReporter::reconnected`]. By default the
    /// same as [`Driver::add_filters`].
    async fn restore_filters(&self, filters: &[Self::Filter]) -> Result<()> {
        self.add_filters(filters).await
    }

    /// Flushes what was published and disconnects. Called once, by `close`, after the
    /// handle's background tasks were told to stop.
    async fn close(&self) -> Result<()>;
}

/// The native filters a handle's subscriptions need, as [`Driver::plan_filter`] sees them.
pub trait FiltersInUse<F> {
    /// Whether a subscription of the handle needs `filter`.
    fn contains(&self, filter: &F) -> bool;

    /// How many of the filters needed are wildcards ([`Driver::is_wildcard`]).
    fn wildcards(&self) -> usize;
}

/// Where a driver hands the messages it receives from the broker.
///
/// Cheap to clone. Delivery never blocks: each subscription's buffer drops its oldest message
/// when full, so a slow subscription never slows the connection.
pub struct Inbound<F> {
    router: Arc<Router<F>>,
}

impl<F> Clone for Inbound<F> {
    fn clone(&self) -> Self {
        Inbound {
            router: self.router.clone(),
        }
    }
}

impl<F> fmt::Debug for Inbound<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inbound").finish_non_exhaustive()
    }
}

impl<F: Clone + Eq + Hash> Inbound<F> {
    /// Delivers one copy of `message` to every local subscription whose pattern matches.
    ///
    /// For brokers that deliver each message once per handle (one queue or consumer per
    /// handle: AMQP, Kafka, memory).
    pub fn deliver(&self, message: Message) {
        self.router.deliver(None, message);
    }

    /// Delivers `message`, which arrived through the native `filter`, to the local
    /// subscriptions of that filter whose pattern matches.
    ///
    /// For brokers that send one copy per matching native subscription (Redis, NATS): each
    /// local subscription still gets exactly one copy, however the filters overlap. A message
    /// through a filter the handle does not (or no longer) has is dropped.
    pub fn deliver_via(&self, filter: &F, message: Message) {
        self.router.deliver_via(filter, message);
    }

    /// Reports `count` messages lost before they reached the router, to topics unknown (a
    /// client library's channel that lagged): every subscription gets a
    /// [`Gap::Dropped`](crate::Gap::Dropped) of `count` in its stream (at most that many were
    /// its own), and they show in [`Stats::dropped`](crate::Stats::dropped).
    pub fn record_lost(&self, count: u64) {
        self.router.lost_anywhere(count);
    }

    /// Reports that the broker dropped `count` messages published to `topic` (a bounded
    /// queue that overflowed, where the broker says so): every subscription matching it gets
    /// a [`Gap::Dropped`](crate::Gap::Dropped) in its stream and counts them.
    pub fn lost(&self, topic: &Topic, count: u64) {
        self.router.lost(topic.as_str(), count);
    }

    /// Reports that the broker refused or withdrew the native `filter` after it was live or
    /// while it was restored (a permission revoked): every subscription that needs it ends,
    /// after what it has buffered, with [`EndReason::Refused`](crate::EndReason::Refused),
    /// instead of staying open and silent. A refusal of a filter still being added is the
    /// error of [`Driver::add_filters`] as well; ending its routes then is harmless.
    pub fn refused(&self, filter: &F) {
        self.router.end_filter(filter, crate::EndReason::Refused);
    }

    /// True once the handle was closed or dropped.
    pub fn is_closed(&self) -> bool {
        self.router.is_closed()
    }
}

/// What a driver gets when its handle is launched.
#[derive(Debug)]
#[non_exhaustive]
pub struct Context<F> {
    /// Where to hand inbound messages.
    pub inbound: Inbound<F>,
    /// Where to report the state of each broker connection.
    pub supervisor: Supervisor,
    /// Where to spawn background tasks (stopped by `close` or when the handle is dropped).
    pub tasks: Tasks,
    /// The shared settings, already validated.
    pub options: CommonOptions,
}

/// Starts a handle: builds the router, supervisor and task set, lets `connect` build the
/// driver around them, and starts the reconciler. Must run inside a tokio runtime.
///
/// ```
/// # async fn demo() -> pubsub_core::Result<()> {
/// use pubsub_core::memory::MemoryBus;
/// // The memory backend is launched like any other; see its source for a complete driver.
/// let handle = MemoryBus::new().connect().await?;
/// # Ok(()) }
/// ```
pub async fn launch<D, C, Fut>(options: CommonOptions, connect: C) -> Result<Hub>
where
    D: Driver,
    C: FnOnce(Context<D::Filter>) -> Fut,
    Fut: Future<Output = Result<D>>,
{
    let decorate = |e: Error| {
        e.with_backend(D::BACKEND)
            .with_operation(Operation::Connect)
    };
    tokio::runtime::Handle::try_current().map_err(|_| decorate(Error::no_runtime()))?;
    let options = options.validated().map_err(decorate)?;
    let router = Arc::new(Router::new(D::FILTER_IS_PATTERN));
    let supervisor = Supervisor::new();
    let tasks = Tasks::new();
    let context = Context {
        inbound: Inbound {
            router: router.clone(),
        },
        supervisor: supervisor.clone(),
        tasks: tasks.clone(),
        options: options.clone(),
    };
    match connect(context).await {
        Ok(driver) => Ok(crate::hub::start(
            driver, router, supervisor, tasks, options,
        )),
        Err(error) => {
            tasks.cancel();
            Err(decorate(error))
        }
    }
}

/// Writes the plain `with_*` setters of an adapter's config: each sets one field and returns
/// the config, with the doc comment given. Setters with more to do stay hand-written.
///
/// ```
/// use pubsub_core::adapter::config_setters;
/// #[derive(Default)]
/// pub struct MyConfig {
///     pub tls: bool,
/// }
/// config_setters!(MyConfig {
///     /// Turns TLS on or off.
///     with_tls(tls: bool),
/// });
/// assert!(MyConfig::default().with_tls(true).tls);
/// ```
#[doc(hidden)]
#[macro_export]
macro_rules! __config_setters {
    ($config:ty { $( $(#[$meta:meta])* $setter:ident($field:ident: $ty:ty) ),* $(,)? }) => {
        impl $config {
            $(
                $(#[$meta])*
                pub fn $setter(mut self, $field: $ty) -> Self {
                    self.$field = $field;
                    self
                }
            )*
        }
    };
}
