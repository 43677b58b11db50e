//! What a stream costs and gives on NATS (JetStream), each figure against the same work without
//! it or with raw async-nats, in interleaved rounds of one run
//! (`pubsub_test_support::stream_bench::run`):
//!
//! - *publish*: N × 64 B (128 in flight) to a subject under a stream (captured by JetStream
//!   and re-published with its sequence) while one subscription reads them, vs a subject under
//!   no stream;
//! - *replay*: a subscription from the start of a stream holding 100 000 × 64 B, read to the
//!   end, vs raw async-nats reading the same JetStream stream with an ordered pull consumer;
//! - *latency*: p50 publish-to-receipt, one message per millisecond, under a stream vs not;
//! - *mass resume*: 1 000 subscriptions on a handle cut off (a TCP proxy) while 1 000
//!   messages are published: the time from the restore until every one has read them all.
//!
//! Run: `cargo bench -p pubsub-nats --bench streams` (NATS with JetStream at `PUBSUB_NATS_URL`;
//! `BENCH_ROUNDS=<n>`, default 5; `BENCH_QUICK=1` for a tenth of the volumes).

use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{pull::OrderedConfig, DeliverPolicy};
use futures::StreamExt;
use pubsub_bench::Settings;
use pubsub_core::Hub;
use pubsub_core::WithOptions;
use pubsub_nats::NatsConfig;
use pubsub_test_support::broker::{nats_addr, nats_url};
use pubsub_test_support::kit::{fast_backoff, FaultedDeadlines};
use pubsub_test_support::proxy::TcpProxy;
use pubsub_test_support::stream_bench::{self, Bench, Cuttable};

const ROUNDS: usize = 5;

async fn handle(config: NatsConfig) -> Hub {
    pubsub_nats::connect(config)
        .await
        .expect("NATS must be reachable")
}

/// Reads the `n` messages of the JetStream stream that captures `<prefix>.t` with an ordered
/// pull consumer from its start: the time.
async fn raw_replay(js: &async_nats::jetstream::Context, prefix: String, n: usize) -> Duration {
    let start = Instant::now();
    let name = js
        .stream_by_subject(format!("{prefix}.t"))
        .await
        .expect("the stream");
    let stream = js.get_stream(name).await.expect("the stream");
    let consumer = stream
        .create_consumer(OrderedConfig {
            deliver_policy: DeliverPolicy::All,
            ..OrderedConfig::default()
        })
        .await
        .expect("an ordered consumer");
    let mut messages = consumer.messages().await.expect("messages");
    for _ in 0..n {
        messages.next().await.expect("a message").expect("no error");
    }
    start.elapsed()
}

fn main() {
    let settings = Settings::from_env(ROUNDS);
    pubsub_bench::runtime().block_on(async {
        let config = || NatsConfig::from_url(&nats_url()).expect("valid URL");
        let client = async_nats::connect(nats_addr())
            .await
            .expect("NATS must be reachable");
        let js = async_nats::jetstream::new(client);
        let proxy = TcpProxy::start(&nats_addr()).await.expect("proxy");
        let cut = handle(
            config()
                .with_servers([format!("nats://{}", proxy.local_addr())])
                .with_discovered_servers(false)
                .with_faulted_deadlines()
                .with_backoff(fast_backoff()),
        )
        .await;
        let bench = Bench {
            backend: "NATS",
            publisher: handle(config()).await,
            reader: handle(config()).await,
            raw_replay: (
                Box::new(|prefix, n| Box::pin(raw_replay(&js, prefix, n))),
                "JetStream ordered consumer",
            ),
            cuttable: Some(Cuttable::through(cut, &proxy)),
            replay_held: stream_bench::REPLAY_HELD,
        };
        stream_bench::run(bench, &settings).await;
    });
}
