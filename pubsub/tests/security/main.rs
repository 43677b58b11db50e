//! Security tests: TLS and authentication against private broker instances this test starts
//! (never the shared brokers), wrong passwords against the shared RabbitMQ, and connection URLs
//! holding a secret, mutated, on every backend.
//!
//! Each test starts its own `redis-server`, `nats-server` or RabbitMQ node on a free loopback port with
//! certificates from `scripts/tls.sh` (a CA, a server and a client certificate it signed, and a
//! second, unrelated CA), and stops it when it ends. Secrets are checked against everything a
//! user can see: `Display` and `Debug` of errors and configurations, and every `tracing` (and
//! `log`) record, captured at TRACE level for the whole process.

mod auth;
mod check;
mod logs;
mod permissions;
mod servers;
mod tls;
mod urls;
