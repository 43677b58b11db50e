//! The dispatcher suite on PostgreSQL `LISTEN`/`NOTIFY` (`PUBSUB_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`); fails when the server cannot be reached.
//! PostgreSQL keeps no history, so there are no group routes here.
mod common;

fn backend() -> common::Backend {
    common::Backend::new("postgres", pubsub_test_support::broker::postgres_url())
}

dispatch_suite!(backend);
