//! What a group costs on NATS (JetStream): one member consuming N × 64 B with an ack each,
//! through the portable API vs raw async-nats doing the same with a durable pull consumer, in
//! interleaved rounds of one run.
//!
//! Each round first fills a subject of its own under one stream (not timed), then times from
//! the join (or the consumer's creation) until every message was received and acknowledged
//! and the last ack confirmed:
//!
//! - *ours*: `join_group` starting at the stream's start with the subject as its one pattern
//!   and a prefetch of [`BATCH`], `recv` + `ack` per message, the last ack awaited;
//! - *raw*: a durable pull consumer with the same configuration (explicit acks, the subject as
//!   filter, deliver all), `fetch` of [`BATCH`] at a time, `ack` per message (async-nats
//!   publishes `+ACK` without waiting), then one flush.
//!
//! A second row: three members on three handles vs one member, the same work.
//!
//! Run: `cargo bench -p pubsub-nats --bench groups` (NATS with JetStream at
//! `PUBSUB_NATS_URL`; `BENCH_ROUNDS=<n>`, default 5; `BENCH_QUICK=1` for a tenth of the
//! messages).

use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use futures::StreamExt;
use pubsub_bench::{interleave_async, Settings, Side};
use pubsub_core::{GroupConfig, Hub, StartAt};
use pubsub_nats::NatsConfig;
use pubsub_test_support::broker::{nats_addr, nats_url};
use pubsub_test_support::group_bench::{members_consume, redelivery_row};
use pubsub_test_support::stream_bench;

const ROUNDS: usize = 5;
/// Messages per round.
const MESSAGES: usize = 100_000;
/// The member's prefetch, and the raw consumer's fetch size.
const BATCH: usize = 64;
/// Publishes in flight while filling.
const WINDOW: usize = 128;
/// The ack deadline of the redelivery row.
const KILL_DEADLINE: Duration = Duration::from_secs(1);

async fn handle() -> Hub {
    let config = NatsConfig::from_url(&nats_url()).expect("valid URL");
    pubsub_nats::connect(config)
        .await
        .expect("NATS must be reachable")
}

/// A new group reading `subject` from the start, with the bench's prefetch.
fn group(subject: &str, name: &str) -> GroupConfig {
    GroupConfig::new(name, vec![subject.parse().expect("a pattern")])
        .expect("a group")
        .starting_at(StartAt::Start)
        .with_prefetch(BATCH)
}

/// A raw durable pull consumer reads `subject` from the start, `BATCH` at a time: the time
/// until all `n` are acknowledged and flushed.
async fn raw(
    js: &async_nats::jetstream::Context,
    stream: &str,
    subject: &str,
    n: usize,
) -> Duration {
    let name = format!("raw-{}", subject.replace('.', "-"));
    let start = Instant::now();
    let consumer = js
        .create_consumer_on_stream(
            pull::Config {
                durable_name: Some(name),
                deliver_policy: DeliverPolicy::All,
                ack_policy: AckPolicy::Explicit,
                ack_wait: Duration::from_secs(30),
                max_deliver: -1,
                filter_subject: subject.to_string(),
                ..Default::default()
            },
            stream,
        )
        .await
        .expect("a pull consumer");
    let mut got = 0;
    while got < n {
        let mut batch = consumer
            .fetch()
            .max_messages(BATCH)
            .messages()
            .await
            .expect("fetch");
        while let Some(message) = batch.next().await {
            message.expect("a message").ack().await.expect("ack");
            got += 1;
        }
    }
    js.client().flush().await.expect("flush");
    start.elapsed()
}

fn main() {
    let settings = Settings::from_env(ROUNDS);
    let n = settings.count(MESSAGES, 10);
    pubsub_bench::runtime().block_on(async {
        let prefix = pubsub_bench::run_id("groups");
        let hub = handle().await;
        let stream = stream_bench::stream(&prefix, (2 * n * settings.rounds) as u64);
        hub.declare_stream(stream.clone()).await.expect("declare");
        let client = async_nats::connect(nats_addr())
            .await
            .expect("NATS must be reachable");
        let js = async_nats::jetstream::new(client);
        let stream_name = js
            .stream_by_subject(format!("{prefix}.x"))
            .await
            .expect("the JetStream stream");
        let mut round = 0;
        let timed = interleave_async(settings.rounds, |side| {
            round += 1;
            let subject = format!("{prefix}.r{round}");
            let (hub, js, stream_name) = (&hub, &js, &stream_name);
            async move {
                stream_bench::fill(hub, &subject, n, WINDOW).await;
                match side {
                    Side::Adapter => {
                        let group = group(&subject, &subject.replace('.', "-"));
                        members_consume(std::slice::from_ref(hub), &group, n).await
                    }
                    Side::Raw => raw(js, stream_name, &subject, n).await,
                }
            }
        })
        .await;
        let rate = |d: Duration| n as f64 / d.as_secs_f64();
        println!(
            "NATS groups: 1 member, {n} x 64 B, ack each, batch {BATCH} (median of {} \
             interleaved rounds)",
            settings.rounds
        );
        println!(
            "  raw pull consumer : {:>10.0} msg/s",
            rate(timed.base_median())
        );
        println!(
            "  group member      : {:>10.0} msg/s",
            rate(timed.ours_median())
        );
        println!("  ratio ours/raw = {}", timed.ratio_cell());

        // Three members on three handles vs one member, the same work.
        let mut hubs = vec![hub.clone()];
        for _ in 0..2 {
            let other = handle().await;
            other.declare_stream(stream.clone()).await.expect("declare");
            hubs.push(other);
        }
        let members = interleave_async(settings.rounds, |side| {
            round += 1;
            let subject = format!("{prefix}.r{round}");
            let hubs = &hubs;
            async move {
                stream_bench::fill(&hubs[0], &subject, n, WINDOW).await;
                let group = group(&subject, &subject.replace('.', "-"));
                match side {
                    Side::Adapter => members_consume(hubs, &group, n).await,
                    Side::Raw => members_consume(&hubs[..1], &group, n).await,
                }
            }
        })
        .await;
        println!("NATS groups: 3 members on 3 handles vs 1 member, {n} x 64 B, ack each");
        println!("  3 members : {:>10.0} msg/s", rate(members.ours_median()));
        println!("  1 member  : {:>10.0} msg/s", rate(members.base_median()));
        println!("  ratio 3/1 = {}", members.ratio_cell());
        redelivery_row(
            "NATS",
            &hub,
            || async {
                let doomed = handle().await;
                doomed
                    .declare_stream(stream.clone())
                    .await
                    .expect("declare");
                doomed
            },
            &format!("{}-killed", prefix.replace('.', "-")),
            &format!("{prefix}.>"),
            KILL_DEADLINE,
            settings.rounds,
        )
        .await;
        for other in &hubs[1..] {
            other.close().await.expect("close");
        }
        hub.close().await.expect("close");
        // Its consumers go with it.
        if let Err(error) = js.delete_stream(&stream_name).await {
            eprintln!("deleting the bench's stream {stream_name} failed: {error}");
        }
    });
}
