//! The conformance suite on PostgreSQL `LISTEN`/`NOTIFY` (`PUBSUB_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`: PostgreSQL 15, started by
//! `scripts/brokers.sh postgres`).
//!
//! Every case connects to a real server; when it cannot be reached the cases fail (they never
//! skip). The fault cases go through a fault proxy (`conformance_tests::proxy::TcpProxy`) that
//! they cut or freeze; that handle dials only the proxy, so every reconnect goes through it too.

use conformance_tests::broker::{postgres_addr, postgres_url};
use conformance_tests::kit::{fast_backoff, FaultedDeadlines};
use conformance_tests::{Capability, Harness};
use pubsub_core::WithOptions;
use pubsub_postgres::PostgresConfig;

mod support;

fn postgres_harness() -> Harness {
    Harness::proxied("postgres", postgres_addr(), |proxy| async move {
        let mut config = PostgresConfig::from_url(&postgres_url())?;
        if let Some(addr) = proxy {
            config = config
                .with_server(addr.ip().to_string(), addr.port())
                .with_faulted_deadlines()
                .with_backoff(fast_backoff());
        }
        pubsub_postgres::connect(config).await
    })
    .with_foreign(support::postgres(postgres_url()))
    .lacking(
        Capability::Streams,
        "PostgreSQL keeps no notification once delivered (no history)",
    )
    .lacking(
        Capability::Groups,
        "PostgreSQL notifications go to every listener (no acknowledged groups)",
    )
}

conformance_tests::suite!(postgres_harness);
