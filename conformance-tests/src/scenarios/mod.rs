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
pub use lifecycle::{close, concurrency, slow_subscriber, unsubscribe};
pub use reconnect::reconnect;
pub use wildcards::{overlapping_subscriptions, wildcard_table};
