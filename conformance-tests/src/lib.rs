//! The behaviour suite every backend must pass (DESIGN.md section 8).
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
//! the `PUBSUB_TEST_TIME_SCALE` environment variable ([`idle_timeout`]).
#![deny(missing_docs)]

mod harness;
pub mod proxy;
pub mod scenarios;
mod support;

pub use harness::{
    idle_timeout, memory_harness, report, run_case, unique_prefix, Capability, Connect,
    ConnectCuttable, Harness, Link,
};

/// The names of every scenario, in the order the suite runs them.
pub const CASES: &[&str] = &[
    "round_trip",
    "subscribe_readiness",
    "wildcard_table",
    "overlapping_subscriptions",
    "isolation",
    "ordering",
    "fan_out",
    "unsubscribe",
    "slow_subscriber",
    "concurrency",
    "close",
    "invalid_input",
    "reconnect",
];

/// Expands to one `#[tokio::test]` per scenario for the backend that `$harness()` describes,
/// plus a `report` test that prints the case count and any skipped case with its reason.
#[macro_export]
macro_rules! suite {
    ($harness:path) => {
        $crate::suite!(@cases $harness;
            round_trip, subscribe_readiness, wildcard_table, overlapping_subscriptions, isolation,
            ordering, fan_out, unsubscribe, slow_subscriber, concurrency, close, invalid_input,
            reconnect);
    };
    (@cases $harness:path; $($case:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let harness = $harness();
                $crate::run_case(&harness, stringify!($case), $crate::scenarios::$case(&harness)).await;
            }
        )*

        #[test]
        fn report() {
            $crate::report(&$harness(), &[$(stringify!($case)),*]);
        }
    };
}
