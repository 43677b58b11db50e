//! The scenarios, one `pub async fn(&Harness)` each, grouped by theme.
//!
//! A failing scenario panics with what it expected and what it saw.

mod delivery;
mod input;
mod lifecycle;
mod reconnect;
mod wildcards;

pub use delivery::{fan_out, isolation, ordering, round_trip, subscribe_readiness};
pub use input::invalid_input;
pub use lifecycle::{close, concurrency, dropped_handle_is_detached, slow_subscriber, unsubscribe};
pub use reconnect::{reconnect, removal_is_retried, stalled_subscribe};
pub use wildcards::{overlapping_subscriptions, shared_filter_fanin, wildcard_table};
