//! The behaviour suite every backend must pass (see docs/ARCHITECTURE.md, "Semantics every backend gives").
//!
//! Each scenario is a plain `async fn(&Harness)` in [`scenarios`]; the [`suite!`] macro expands
//! to one `#[tokio::test]` per scenario for one backend, so every case shows by name in the test
//! output, plus a `report` test that prints how many cases ran and which the backend skipped.
//!
//! ```text
//! // tests/my_backend.rs
//! fn my_harness() -> conformance_tests::Harness { /* how to connect */ }
//! conformance_tests::suite!(my_harness);
//! ```
//!
//! Every case works under a fresh, unique topic prefix ([`unique_prefix`]), so cases and reruns
//! never see each other's messages. Waits are idle timeouts, reset on every message and scaled by
//! the `PUBSUB_TEST_TIME_SCALE` environment variable ([`idle_timeout`]). The list of cases lives
//! in one place (`with_cases!` in this file): [`CASES`] and [`suite!`] both expand it.
//!
//! The suite builds on the workspace's test support (`pubsub-test-support`), and re-exports
//! what its scenarios use, for backends outside the workspace:
//!
//! - [`kit`]: connect through a [`Harness`], subscribe, publish and bounded waits (`next`,
//!   `drain`, `take`, …);
//! - [`proxy::TcpProxy`]: a TCP fault proxy that can cut, restore, freeze and thaw connections;
//! - [`broker`]: where the test brokers are, stopping / starting the local Redis, and
//!   starting a Tansu (Kafka) broker of a test's own;
//! - [`switchboard::Switchboard`]: routes Kafka connections by client id (fault cases on Kafka).
//!
//! An adapter's own tests and benches use `pubsub-test-support` and `pubsub-bench` directly,
//! never this crate (which sits above the adapters).
#![deny(missing_docs)]

pub mod cluster;
pub mod failover;
mod harness;
pub mod kit;
pub mod scenarios;

pub use harness::{
    memory_harness, report, run_case, Capability, Connect, ConnectCuttable, ConnectTo, Foreign,
    ForeignMessage, Harness, Link, LoseHistory, StartRestartable, LONG_TOPIC_CASES, SHORT_TOPIC,
};
pub use pubsub_test_support::{
    broker, idle_timeout, private_broker, proxy, switchboard, unique_prefix,
};

/// The one list of cases, in the order the suite runs them: each name is a function in
/// [`scenarios`]. Adding a case is adding its name here (and writing the function).
///
/// Expands to `$then! { $($args)* ; case, case, … }`, for [`suite!`] and [`CASES`].
#[doc(hidden)]
#[macro_export]
macro_rules! with_cases {
    ($then:ident ! ($($args:tt)*)) => {
        $crate::$then! { $($args)* ;
            round_trip,
            subscribe_readiness,
            no_earlier_messages,
            wildcard_table,
            overlapping_subscriptions,
            isolation,
            ordering,
            fan_out,
            unsubscribe,
            slow_subscriber,
            publish_loop,
            concurrency,
            close,
            close_race,
            invalid_input,
            reconnect,
            shared_filter_fanin,
            stalled_subscribe,
            removal_is_retried,
            dropped_handle_is_detached,
            overflow_gap,
            drop_newest,
            close_slow,
            outage_gap,
            multi_pattern,
            skip_own,
            escaped_topics,
            repeated_cuts,
            gap_under_traffic,
            outage_operations,
            half_open,
            added_latency,
            foreign_publisher,
            stream_replay_then_live,
            stream_resume_from_position,
            stream_trimmed_gap,
            stream_reset_gap,
            stream_recovery_through_cuts,
            stream_patterns_filter_replay,
            stream_two_side_by_side,
            stream_bad_input,
            stream_mass_resume,
            group_one_member,
            group_members_split,
            group_killed_member,
            group_nack_delay,
            group_dead_letter,
            group_start,
            group_two_groups,
            group_bad_input,
            group_through_cut,
            group_through_restart,
        }
    };
}

/// Expands to one `#[tokio::test]` per scenario for the backend that `$harness()` describes,
/// plus a `report` test that prints the case count and any skipped case with its reason.
#[macro_export]
macro_rules! suite {
    ($harness:path) => {
        $crate::with_cases!(suite!(@tests $harness));
    };
    (@tests $harness:path; $($case:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let harness = $harness();
                $crate::run_case(&harness, stringify!($case), $crate::scenarios::$case(&harness)).await;
            }
        )*

        #[test]
        fn report() {
            $crate::report(&$harness(), $crate::CASES);
        }
    };
    (@names; $($case:ident),* $(,)?) => {
        &[$(stringify!($case)),*]
    };
}

/// The names of every scenario, in the order the suite runs them.
pub const CASES: &[&str] = with_cases!(suite!(@names));
