//! What the workspace's tests and benches share, in one crate of its own (a dev-dependency
//! only, never published). It depends on `pubsub-core` and the bench harness `pubsub-bench`
//! and on nothing above them, so every crate (the core's adapters included) may use it without
//! an arrow pointing up:
//!
//! - [`broker`]: where the test brokers are, stopping / starting the local Redis, and
//!   starting a Tansu (Kafka) broker of a test's own;
//! - [`kit`]: subscribe, publish and bounded waits (`next`, `drain`, `take`, …);
//! - [`names`]: fresh topic prefixes and timeouts scaled for slow machines;
//! - [`private_broker::PrivateBroker`]: a Redis, NATS or RabbitMQ of a test's own that it can
//!   restart (keeping what the broker persists);
//! - [`proxy::TcpProxy`]: a TCP fault proxy that can cut, restore, freeze and thaw connections;
//! - [`scratch`]: a free loopback port and a fresh directory, for a test's own servers;
//! - [`switchboard::Switchboard`]: routes Kafka connections by client id;
//! - [`process`]: a binary of the workspace run as a child process for a two-process test;
//! - [`throughput`]: the adapter's side of a throughput bench row;
//! - [`scale`]: the shape of the scale benchmark (many patterns on one handle);
//! - [`stream_bench`]: the adapter's side of the streams benchmarks;
//! - [`group_bench`]: the members row of the groups benchmarks.
//!
//! The behaviour suite (`conformance-tests`) builds on it.
#![deny(missing_docs)]

pub mod broker;
pub mod group_bench;
pub mod kit;
pub mod names;
pub mod private_broker;
pub mod process;
pub mod proxy;
pub mod scale;
pub mod scratch;
pub mod stream_bench;
pub mod switchboard;
pub mod throughput;

pub use names::{idle_timeout, unique_prefix};
