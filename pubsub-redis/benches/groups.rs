//! What a group costs on Redis against raw fred doing the same work: one member consumes N ×
//! 64 B messages a stream holds and acknowledges each, through the API (`join_group` from the
//! start, `recv`, `ack`; the kit reads up to the prefetch and batches the acks) vs raw fred
//! (`XGROUP CREATE … 0`, then `XREADGROUP … COUNT <batch>` and one `XACK` of the batch's ids
//! in a loop), with the same batch (the prefetch). Rounds are interleaved in one run, each
//! with a new group on the same log.
//!
//! A second row: three members on three handles vs one member, the same work.
//!
//! Run: `cargo bench -p pubsub-redis --bench groups` (Redis at `PUBSUB_REDIS_URL`;
//! `BENCH_ROUNDS=<n>`, default 5; `BENCH_QUICK=1` for a tenth of the volume).

use std::time::{Duration, Instant};

use pubsub_bench::{Settings, Side};
use pubsub_core::{GroupConfig, Message, StartAt, StreamConfig};
use pubsub_redis::fred::clients::Client;
use pubsub_redis::fred::interfaces::ClientLike;
use pubsub_redis::fred::types::config::Config;
use pubsub_redis::fred::types::{CustomCommand, Value};
use pubsub_redis::RedisConfig;
use pubsub_test_support::broker::redis_url;
use pubsub_test_support::group_bench::{members_consume, redelivery_row};

const ROUNDS: usize = 5;
/// Messages consumed per round.
const N: usize = 50_000;
/// The member's prefetch, and raw fred's `XREADGROUP` count.
const BATCH: usize = 256;
const SIZE: usize = 64;
/// The ack deadline of the redelivery row.
const KILL_DEADLINE: Duration = Duration::from_secs(1);

/// The bench's stream under `{prefix}.>`, holding twice the `n` published.
fn stream_config(prefix: &str, n: usize) -> StreamConfig {
    StreamConfig::new(format!("{prefix}.>").parse().expect("root"))
        .with_max_len(n as u64 * 2)
        .with_max_age(Duration::from_secs(3600))
}

/// A new group `name` on the stream, from its start, with the bench's prefetch.
fn group_config(prefix: &str, name: &str) -> GroupConfig {
    GroupConfig::new(name, vec![format!("{prefix}.>").parse().expect("pattern")])
        .expect("group")
        .starting_at(StartAt::Start)
        .with_prefetch(BATCH)
}

/// The same with raw fred: `XREADGROUP COUNT BATCH`, then one `XACK` of the batch.
async fn raw(client: &Client, key: &str, round: usize, n: usize) -> Duration {
    let group = format!("raw-{round}");
    let custom = |name| CustomCommand::new_static(name, None, false);
    let start = Instant::now();
    let _: Value = client
        .custom(
            custom("XGROUP"),
            vec!["CREATE".into(), key.to_string(), group.clone(), "0".into()],
        )
        .await
        .expect("XGROUP CREATE");
    let mut read = 0;
    while read < n {
        let args = vec![
            "GROUP".to_string(),
            group.clone(),
            "member".into(),
            "COUNT".into(),
            BATCH.to_string(),
            "STREAMS".into(),
            key.to_string(),
            ">".into(),
        ];
        let reply: Value = client
            .custom(custom("XREADGROUP"), args)
            .await
            .expect("XREADGROUP");
        let mut ids = vec![key.to_string(), group.clone()];
        if let Value::Array(streams) = reply {
            for stream in streams {
                let Value::Array(mut pair) = stream else {
                    continue;
                };
                let Some(Value::Array(entries)) = pair.pop() else {
                    continue;
                };
                for entry in entries {
                    if let Value::Array(entry) = entry {
                        if let Some(id) = entry.first().and_then(Value::as_string) {
                            ids.push(id);
                        }
                    }
                }
            }
        }
        let got = ids.len() - 2;
        assert!(got > 0, "the log ran out after {read}");
        read += got;
        let _: Value = client.custom(custom("XACK"), ids).await.expect("XACK");
    }
    start.elapsed()
}

fn main() {
    let settings = Settings::from_env(ROUNDS);
    let n = settings.count(N, 10);
    pubsub_bench::runtime().block_on(async {
        let config = || RedisConfig::from_url(&redis_url()).expect("valid URL");
        let hub = pubsub_redis::connect(config())
            .await
            .expect("Redis must be reachable");
        let client = Client::new(
            Config::from_url(&redis_url()).expect("URL"),
            None,
            None,
            None,
        );
        client.init().await.expect("Redis must be reachable");
        let prefix = pubsub_bench::run_id("groups");
        hub.declare_stream(stream_config(&prefix, n))
            .await
            .expect("declare");
        let topic = format!("{prefix}.t");
        pubsub_bench::publish_pipelined(n, 128, |i| {
            let message = Message::new(topic.parse().expect("topic"), pubsub_bench::stamp(i, SIZE));
            hub.publish(message)
        })
        .await;
        let key = format!("pubsub:{{{prefix}.>}}:log");
        let mut round = 0;
        let timed = pubsub_bench::interleave_async(settings.rounds, |side| {
            round += 1;
            let (hub, client, prefix, key) = (&hub, &client, &prefix, &key);
            async move {
                match side {
                    Side::Adapter => {
                        let group = group_config(prefix, &format!("ours-{round}"));
                        members_consume(std::slice::from_ref(hub), &group, n).await
                    }
                    Side::Raw => raw(client, key, round, n).await,
                }
            }
        })
        .await;
        let rate = |d: Duration| format!("{:.0} msg/s", n as f64 / d.as_secs_f64());
        pubsub_bench::print_header(&[
            "Redis group, 1 member, acks",
            "ours",
            "raw fred (XREADGROUP + XACK)",
            "ours / raw speed",
        ]);
        pubsub_bench::print_row(&[
            format!("{n} × {SIZE} B, batch {BATCH}"),
            format!(
                "{} ({})",
                pubsub_bench::fmt_duration(timed.ours_median()),
                rate(timed.ours_median())
            ),
            format!(
                "{} ({})",
                pubsub_bench::fmt_duration(timed.base_median()),
                rate(timed.base_median())
            ),
            timed.ratio_cell(),
        ]);
        // Three members on three handles vs one member, the same work.
        let mut hubs = vec![hub.clone()];
        for _ in 0..2 {
            let other = pubsub_redis::connect(config()).await.expect("connect");
            other
                .declare_stream(stream_config(&prefix, n))
                .await
                .expect("declare");
            hubs.push(other);
        }
        let members = pubsub_bench::interleave_async(settings.rounds, |side| {
            round += 1;
            let group = group_config(&prefix, &format!("members-{round}"));
            let hubs = &hubs;
            async move {
                match side {
                    Side::Adapter => members_consume(hubs, &group, n).await,
                    Side::Raw => members_consume(&hubs[..1], &group, n).await,
                }
            }
        })
        .await;
        pubsub_bench::print_header(&["Redis group, acks", "3 members", "1 member", "3 / 1 speed"]);
        pubsub_bench::print_row(&[
            format!("{n} × {SIZE} B, prefetch {BATCH}"),
            rate(members.ours_median()),
            rate(members.base_median()),
            members.ratio_cell(),
        ]);
        redelivery_row(
            "Redis",
            &hub,
            || async {
                let doomed = pubsub_redis::connect(config()).await.expect("connect");
                doomed
                    .declare_stream(stream_config(&prefix, n))
                    .await
                    .expect("declare");
                doomed
            },
            "killed",
            &format!("{prefix}.>"),
            KILL_DEADLINE,
            settings.rounds,
        )
        .await;
        for other in &hubs[1..] {
            let _ = other.close().await;
        }
        let _: Value = client
            .custom(
                CustomCommand::new_static("DEL", None, false),
                vec![
                    key,
                    format!("pubsub:{{{prefix}.>}}:meta"),
                    format!("pubsub:{{{prefix}.>}}:groups"),
                ],
            )
            .await
            .unwrap_or(Value::Null);
        let _: std::result::Result<Value, _> = client
            .custom(
                CustomCommand::new_static("HDEL", None, false),
                vec!["pubsub:streams".to_string(), format!("{prefix}.>")],
            )
            .await;
        let _ = client.quit().await;
        let _ = hub.close().await;
    });
}
