//! What a stream costs and gives on Redis, each figure against the same work without it or
//! with raw fred, in interleaved rounds of one run (`pubsub_test_support::stream_bench::run`):
//!
//! - *publish*: N × 64 B (128 in flight) to a topic under a stream (one `EVALSHA`: `XADD` +
//!   `PUBLISH`) while one subscription reads them, vs a topic under no stream (`PUBLISH`);
//! - *replay*: a subscription from the start of a stream holding 100 000 × 64 B, read to the
//!   end, vs raw fred reading the same Redis Stream with `XRANGE … COUNT 512` (the adapter's
//!   batch);
//! - *latency*: p50 publish-to-receipt, one message per millisecond, under a stream vs not;
//! - *mass resume*: 1 000 subscriptions on a handle cut off (a TCP proxy) while 1 000
//!   messages are published: the time from the restore until every one has read them all.
//!
//! Run: `cargo bench -p pubsub-redis --bench streams` (Redis at `PUBSUB_REDIS_URL`;
//! `BENCH_ROUNDS=<n>`, default 5; `BENCH_QUICK=1` for a tenth of the volumes).

use std::time::{Duration, Instant};

use pubsub_bench::Settings;
use pubsub_core::Hub;
use pubsub_redis::fred::clients::Client;
use pubsub_redis::fred::interfaces::ClientLike;
use pubsub_redis::fred::types::config::Config;
use pubsub_redis::fred::types::{CustomCommand, Value};
use pubsub_redis::RedisConfig;
use pubsub_test_support::broker::{redis_addr, redis_url};
use pubsub_test_support::kit::FaultedDeadlines;
use pubsub_test_support::proxy::TcpProxy;
use pubsub_test_support::stream_bench::{self, Bench, Cuttable};

const ROUNDS: usize = 5;
/// The adapter's replay batch (`pubsub_core`'s follower reads 512 entries per call).
const BATCH: usize = 512;

async fn handle(config: RedisConfig) -> Hub {
    pubsub_redis::connect(config)
        .await
        .expect("Redis must be reachable")
}

/// Reads the whole Redis Stream `key` with raw fred, `BATCH` entries per `XRANGE`: the time.
async fn raw_replay(client: &Client, key: String, n: usize) -> Duration {
    let xrange = CustomCommand::new_static("XRANGE", None, false);
    let start = Instant::now();
    let mut from = "-".to_string();
    let mut read = 0;
    while read < n {
        let args = vec![
            key.clone(),
            from.clone(),
            "+".into(),
            "COUNT".into(),
            BATCH.to_string(),
        ];
        let batch: Value = client.custom(xrange.clone(), args).await.expect("XRANGE");
        let Value::Array(entries) = batch else {
            panic!("XRANGE reply")
        };
        let Some(Value::Array(last)) = entries.last() else {
            panic!("empty batch at {read}")
        };
        let id = last[0].as_str().expect("an id").to_string();
        read += entries.len();
        from = format!("({id}");
    }
    start.elapsed()
}

fn main() {
    let settings = Settings::from_env(ROUNDS);
    pubsub_bench::runtime().block_on(async {
        let config = || RedisConfig::from_url(&redis_url()).expect("valid URL");
        let raw = Client::new(
            Config::from_url(&redis_url()).expect("URL"),
            None,
            None,
            None,
        );
        raw.init().await.expect("Redis must be reachable");
        let proxy = TcpProxy::start(&redis_addr()).await.expect("proxy");
        let addr = proxy.local_addr();
        let cut = handle(
            config()
                .with_server(addr.ip().to_string(), addr.port())
                .with_faulted_deadlines(),
        )
        .await;
        let bench = Bench {
            backend: "Redis",
            publisher: handle(config()).await,
            reader: handle(config()).await,
            raw_replay: (
                Box::new(|prefix, n| {
                    Box::pin(raw_replay(&raw, format!("pubsub:{{{prefix}.>}}:log"), n))
                }),
                "fred XRANGE COUNT 512",
            ),
            cuttable: Some(Cuttable::through(cut, &proxy)),
            replay_held: stream_bench::REPLAY_HELD,
        };
        stream_bench::run(bench, &settings).await;
        let _ = raw.quit().await;
    });
}
