//! What a stream costs and gives on Redis, each figure against the same work without it or
//! with raw fred, in interleaved rounds of one run:
//!
//! - *publish*: one handle publishes N × 64 B (128 in flight) to a topic under a stream (one
//!   `EVALSHA`: `XADD` + `PUBLISH`) while one subscription reads them, vs a topic under no
//!   stream (`PUBLISH`);
//! - *replay*: a subscription from the start of a stream holding 100 000 × 64 B, read to the
//!   end, vs raw fred reading the same Redis Stream with `XRANGE … COUNT 512` (the adapter's
//!   batch);
//! - *latency*: p50 publish-to-receipt, one message per millisecond, under a stream vs not;
//! - *mass resume*: 1 000 subscriptions on a handle cut off while 1 000 messages are
//!   published: the time from the restore until every subscription has read all of them.
//!
//! Run: `cargo bench -p pubsub-redis --bench streams` (Redis at `PUBSUB_REDIS_URL`;
//! `BENCH_ROUNDS=<n>`, default 5; `BENCH_QUICK=1` for a tenth of the volumes).

use std::time::{Duration, Instant};

use pubsub_bench::{interleave_async, Settings, Side};
use pubsub_core::Hub;
use pubsub_redis::fred::clients::Client;
use pubsub_redis::fred::interfaces::ClientLike;
use pubsub_redis::fred::types::config::Config;
use pubsub_redis::fred::types::{CustomCommand, Value};
use pubsub_redis::RedisConfig;
use pubsub_test_support::broker::redis_url;
use pubsub_test_support::kit::FaultedDeadlines;
use pubsub_test_support::proxy::TcpProxy;
use pubsub_test_support::stream_bench::{self, stream};
use pubsub_test_support::unique_prefix;

const ROUNDS: usize = 5;
const WINDOW: usize = 128;
/// The adapter's replay batch (`pubsub_core`'s follower reads 512 entries per call).
const BATCH: usize = 512;

async fn handle() -> Hub {
    let config = RedisConfig::from_url(&redis_url()).expect("valid URL");
    pubsub_redis::connect(config)
        .await
        .expect("Redis must be reachable")
}

/// Reads the whole Redis Stream `key` with raw fred, `BATCH` entries per `XRANGE`: the time.
async fn raw_replay(client: &Client, key: &str, n: usize) -> Duration {
    let xrange = CustomCommand::new_static("XRANGE", None, false);
    let start = Instant::now();
    let mut from = "-".to_string();
    let mut read = 0;
    while read < n {
        let batch: Value = client
            .custom(
                xrange.clone(),
                vec![
                    key.to_string(),
                    from.clone(),
                    "+".into(),
                    "COUNT".into(),
                    BATCH.to_string(),
                ],
            )
            .await
            .expect("XRANGE");
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
    let n = settings.count(20_000, 10);
    let held = settings.count(100_000, 10);
    let latency_n = settings.count(2_000, 10);
    pubsub_bench::runtime().block_on(async {
        let rate = |n: usize, d: Duration| n as f64 / d.as_secs_f64();

        let ps = handle().await;
        let p = unique_prefix("bench_stream");
        ps.declare_stream(stream(&p, 10_000_000)).await.expect("declare");
        let under = format!("{p}.t");
        let plain = format!("{}.t", unique_prefix("bench_plain"));
        let publish = interleave_async(settings.rounds, |side| {
            let (ps, under, plain) = (&ps, &under, &plain);
            async move {
                let topic = if side == Side::Adapter { under } else { plain };
                stream_bench::publish_and_read(ps, topic, n, WINDOW).await
            }
        })
        .await;
        println!("Redis, {n} x 64 B, {WINDOW} in flight, 1 subscription (median of {} interleaved rounds)", settings.rounds);
        println!("  publish under a stream : {:>10.0} msg/s", rate(n, publish.ours_median()));
        println!("  publish, no stream     : {:>10.0} msg/s", rate(n, publish.base_median()));
        println!("  ratio stream/plain     = {}", publish.ratio_cell());

        let r = unique_prefix("bench_replay");
        ps.declare_stream(stream(&r, 10_000_000)).await.expect("declare");
        stream_bench::fill(&ps, &format!("{r}.t"), held, WINDOW).await;
        let raw = Client::new(Config::from_url(&redis_url()).expect("URL"), None, None, None);
        raw.init().await.expect("Redis must be reachable");
        let key = format!("pubsub:{{{r}.>}}:log");
        let pattern = format!("{r}.>");
        let replay = interleave_async(settings.rounds, |side| {
            let (ps, raw, key, pattern) = (&ps, &raw, &key, &pattern);
            async move {
                match side {
                    Side::Adapter => stream_bench::replay(ps, pattern, held).await,
                    Side::Raw => raw_replay(raw, key, held).await,
                }
            }
        })
        .await;
        println!("replay of {held} x 64 B from the start");
        println!("  adapter (subscribe from start) : {:>10.0} msg/s", rate(held, replay.ours_median()));
        println!("  raw fred XRANGE COUNT {BATCH}      : {:>10.0} msg/s", rate(held, replay.base_median()));
        println!("  ratio adapter/raw              = {}", replay.ratio_cell());

        let reader = handle().await;
        reader.declare_stream(stream(&p, 10_000_000)).await.expect("declare");
        let every = Duration::from_millis(1);
        let latency = interleave_async(settings.rounds, |side| {
            let (ps, reader, under, plain) = (&ps, &reader, &under, &plain);
            async move {
                let topic = if side == Side::Adapter { under } else { plain };
                stream_bench::latency_p50(ps, reader, topic, latency_n, every).await
            }
        })
        .await;
        println!("live latency, {latency_n} messages, 1 per ms, p50 (median over rounds)");
        println!("  under a stream : {:?}", latency.ours_median());
        println!("  no stream      : {:?}", latency.base_median());
        println!("  ratio stream/plain = {:.2}x", latency.ours_median().as_secs_f64() / latency.base_median().as_secs_f64());

        let subs = 1_000;
        let behind = 1_000;
        let m = unique_prefix("bench_mass");
        ps.declare_stream(stream(&m, 10_000_000)).await.expect("declare");
        let addr = pubsub_test_support::broker::redis_addr();
        let proxy = TcpProxy::start(&addr).await.expect("proxy");
        let config = RedisConfig::from_url(&redis_url())
            .expect("URL")
            .with_server(proxy.local_addr().ip().to_string(), proxy.local_addr().port())
            .with_faulted_deadlines();
        let cut_handle = pubsub_redis::connect(config).await.expect("connect");
        cut_handle.declare_stream(stream(&m, 10_000_000)).await.expect("declare");
        let took = stream_bench::mass_resume(
            &cut_handle,
            &ps,
            &format!("{m}.t"),
            subs,
            behind,
            || proxy.cut(),
            || proxy.restore(),
        )
        .await;
        println!("mass resume: {subs} subscriptions, each {behind} messages behind after a cut");
        println!("  all recovered {took:?} after the restore");
        cut_handle.close().await.expect("close");
        reader.close().await.expect("close");
        ps.close().await.expect("close");
        let _ = raw.quit().await;
    });
}
