//! The scenarios, one `pub async fn(&Harness)` each, grouped by theme.
//!
//! A failing scenario panics with what it expected and what it saw.

mod delivery;
mod faults;
mod groups;
mod input;
mod lifecycle;
mod loss;
mod outage;
mod reconnect;
mod streams;
mod wildcards;

pub use delivery::{
    fan_out, isolation, no_earlier_messages, ordering, round_trip, subscribe_readiness,
};
pub use faults::{added_latency, gap_under_traffic, half_open, outage_operations, repeated_cuts};
pub use groups::{
    group_bad_input, group_dead_letter, group_killed_member, group_members_split, group_nack_delay,
    group_one_member, group_start, group_through_cut, group_through_restart, group_two_groups,
};
pub use input::{foreign_publisher, invalid_input};
pub use lifecycle::{
    close, close_race, concurrency, dropped_handle_is_detached, publish_loop, slow_subscriber,
    unsubscribe,
};
pub use loss::{
    close_slow, drop_newest, escaped_topics, multi_pattern, outage_gap, overflow_gap, skip_own,
};
pub use reconnect::{reconnect, removal_is_retried, stalled_subscribe};
pub use streams::{
    stream_bad_input, stream_mass_resume, stream_patterns_filter_replay,
    stream_recovery_through_cuts, stream_replay_then_live, stream_reset_gap,
    stream_resume_from_position, stream_trimmed_gap, stream_two_side_by_side,
};
pub use wildcards::{overlapping_subscriptions, shared_filter_fanin, wildcard_table};
