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
//! - [`ServerUrl`] and [`CommonOptions`](crate::CommonOptions): URL parsing and the shared
//!   settings; [`envelope`]: header framing for brokers without native headers;
//! - streams: a driver appends what is published under a declared stream ([`StreamTable`]),
//!   positions its live messages and reads its log in batches ([`ReadFrom`], [`LogRead`]);
//!   the kit replays, merges replay and live without a duplicate or a hole, and resumes
//!   each stream subscription from its last position after an outage;
//! - groups: a driver creates a group, reads deliveries for a member ([`GroupEntry`], each with
//!   its [`Receipt`]) and carries out [`Settlement`]s; the kit runs each member (prefetch,
//!   dead letters, batched settlements).
//!
//! See `docs/ARCHITECTURE.md` in the repository for a walk through writing an adapter, with
//! the memory backend (`pubsub_core::memory`) as the worked example.

pub(crate) mod driver;
pub mod encoded_word;
mod filter_readers;
pub(crate) mod group_log;
pub mod headerless;
mod polled_state;
mod random;
mod reader;
mod refusals;
pub(crate) mod stream_log;
pub(crate) mod supervisor;
pub(crate) mod tasks;
#[cfg(feature = "tls")]
pub mod tls;
mod topic_memo;
mod url;
mod watchdog;

pub mod envelope;
pub use crate::escape::{
    hex_escape, hex_unescape, push_hex_escape, upper_hex_digit, HOSTILE_TEXTS,
};
pub use crate::hub::launch::{launch, Context};
pub use crate::router::{Inbound, PatternTrie};
pub use driver::{Driver, FiltersInUse};
pub use filter_readers::FilterReaders;
pub use group_log::{GroupEntry, Receipt, Settlement};
pub use polled_state::watch_polled;
pub use random::random_u64;
pub use reader::drain_broadcast;
pub use refusals::Refusals;
pub use stream_log::{
    check_declaration, conflict as stream_conflict, LogRead, ReadFrom, StreamTable, POSITION_HEADER,
};
pub use supervisor::{LinkReporter, Supervisor};
pub use tasks::Tasks;
pub use topic_memo::TopicMemo;
pub use url::{address, parse_query, HostPort, ServerUrl};
pub use watchdog::Watchdog;

pub use crate::__config_setters as config_setters;

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
