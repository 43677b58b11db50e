//! What a group costs on RabbitMQ against raw lapin doing the same work, in interleaved rounds
//! of one run: one member consumes N × 64 B already in the group's queue and acknowledges
//! each message, vs raw lapin consuming a quorum queue holding the same N with manual acks and
//! the same prefetch, acknowledging either as the adapter does (one `multiple` ack when
//! nothing more is ready, or every prefetch / 2 deliveries) or one `basic.ack` per message,
//! each awaited before the next delivery is read (the plain way).
//!
//! Each round fills its queue first (not timed): the adapter's through a member that joined
//! and left (the group's quorum queue keeps what is published meanwhile), raw lapin's a quorum
//! queue bound to the exchange. Timed: from the join (raw: opening the channel and
//! `basic.consume`) until the last message is read and its ack confirmed taken (raw: sent).
//! The queues are deleted after each round.
//!
//! A last row: three members on three handles vs one member, the same work.
//!
//! Run: `cargo bench -p pubsub-amqp --bench groups` (RabbitMQ 3.10+ at `PUBSUB_AMQP_URL`;
//! `BENCH_ROUNDS=<n>`, default 5; `BENCH_QUICK=1` for a tenth of the volume).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use pubsub_amqp::lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use pubsub_amqp::lapin::types::{AMQPValue, FieldTable};
use pubsub_amqp::lapin::{Channel, Connection, ConnectionProperties};
use pubsub_amqp::AmqpConfig;
use pubsub_bench::{interleave_async, Settings, Side};
use pubsub_core::{GroupConfig, Hub};
use pubsub_test_support::broker::amqp_url;
use pubsub_test_support::group_bench::{members_consume, redelivery_row};
use pubsub_test_support::stream_bench::{fill, stream};
use pubsub_test_support::unique_prefix;

const ROUNDS: usize = 5;
const WINDOW: usize = 128;
/// The prefetches compared (the first is the groups' default).
/// The ack deadline of the redelivery row.
const KILL_DEADLINE: Duration = Duration::from_secs(1);
const ROWS: [(u16, Acks); 3] = [
    (64, Acks::Batched),
    (1_000, Acks::Batched),
    (64, Acks::EachAwaited),
];

/// How raw lapin acknowledges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Acks {
    /// One `multiple` ack when nothing more is ready, or every prefetch / 2 deliveries.
    Batched,
    /// One ack per delivery, awaited before the next is read.
    EachAwaited,
}

/// The adapter's round: members of a new group, one on each of `hubs`, join, read and ack
/// `n` that wait in the group's queue.
async fn adapter_round(hubs: &[Hub], admin: &Channel, n: usize, prefetch: u16) -> Duration {
    let p = unique_prefix("bench_group");
    let config = stream(&p, 10_000_000);
    for hub in hubs {
        hub.declare_stream(config.clone()).await.expect("declare");
    }
    let hub = &hubs[0];
    let group = GroupConfig::new(
        &p.replace('_', "-"),
        vec![format!("{p}.>").parse().unwrap()],
    )
    .expect("group")
    .with_prefetch(prefetch.into());
    // Created, then left: the queue keeps what is published while nobody is in it.
    hub.join_group(group.clone())
        .await
        .expect("join")
        .leave()
        .await
        .expect("leave");
    fill(hub, &format!("{p}.t"), n, WINDOW).await;
    let took = members_consume(hubs, &group, n).await;
    let tag = config.tag();
    delete(admin, &format!("pubsub.group.{tag:08x}.{}", group.name())).await;
    delete(admin, &format!("pubsub.stream.{tag:08x}.{p}.>")).await;
    took
}

/// Raw lapin's round: a quorum queue bound to the exchange, filled, then consumed with one
/// manual ack per message.
async fn raw_round(
    hub: &Hub,
    connection: &Connection,
    admin: &Channel,
    n: usize,
    prefetch: u16,
    acks: Acks,
) -> Duration {
    let p = unique_prefix("bench_raw_group");
    let queue = format!("bench.raw-group.{p}");
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    let quorum = FieldTable::from(BTreeMap::from([(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    )]));
    admin
        .queue_declare(queue.as_str().into(), durable, quorum)
        .await
        .expect("declare");
    admin
        .queue_bind(
            queue.as_str().into(),
            "pubsub".into(),
            format!("{p}.t").into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind");
    fill(hub, &format!("{p}.t"), n, WINDOW).await;
    let start = Instant::now();
    let channel = connection.create_channel().await.expect("channel");
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await
        .expect("qos");
    let mut consumer = channel
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let ack_every = usize::from(prefetch / 2).max(1);
    let (mut unacked, mut last) = (0, 0);
    let multiple = BasicAckOptions { multiple: true };
    for got in 1..=n {
        let next = match consumer.next().now_or_never() {
            Some(next) => next,
            None => {
                // Nothing more ready: acknowledge what was read.
                if unacked > 0 {
                    channel.basic_ack(last, multiple).await.expect("ack");
                    unacked = 0;
                }
                consumer.next().await
            }
        };
        let delivery = next.expect("a delivery").expect("no error");
        if acks == Acks::EachAwaited {
            delivery
                .acker
                .ack(BasicAckOptions::default())
                .await
                .expect("ack");
            continue;
        }
        (last, unacked) = (delivery.delivery_tag, unacked + 1);
        if unacked >= ack_every || got == n {
            channel.basic_ack(last, multiple).await.expect("ack");
            unacked = 0;
        }
    }
    let took = start.elapsed();
    let _ = channel.close(200, "done".into()).await;
    delete(admin, &queue).await;
    took
}

async fn delete(admin: &Channel, queue: &str) {
    admin
        .queue_delete(queue.into(), QueueDeleteOptions::default())
        .await
        .expect("delete a bench queue");
}

fn main() {
    let settings = Settings::from_env(ROUNDS);
    pubsub_bench::runtime().block_on(async {
        let config = AmqpConfig::from_url(&amqp_url()).expect("valid URL");
        let hub = pubsub_amqp::connect(config)
            .await
            .expect("RabbitMQ must be reachable");
        let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
            .await
            .expect("RabbitMQ must be reachable");
        let admin = connection.create_channel().await.expect("channel");
        let n = settings.count(20_000, 10);
        let rate = |d: Duration| n as f64 / d.as_secs_f64();
        for (prefetch, acks) in ROWS {
            let timed = interleave_async(settings.rounds, |side| {
                let (hub, connection, admin) = (&hub, &connection, &admin);
                async move {
                    match side {
                        Side::Adapter => {
                            adapter_round(std::slice::from_ref(hub), admin, n, prefetch).await
                        }
                        Side::Raw => raw_round(hub, connection, admin, n, prefetch, acks).await,
                    }
                }
            })
            .await;
            let raw = match acks {
                Acks::Batched => "lapin, batched acks",
                Acks::EachAwaited => "lapin, ack each    ",
            };
            println!(
                "RabbitMQ: one group member reads and acks {n} x 64 B, prefetch {prefetch} (median of {} interleaved rounds)",
                settings.rounds
            );
            println!(
                "  group member        : {:>10.0} msg/s",
                rate(timed.ours_median())
            );
            println!(
                "  {raw} : {:>10.0} msg/s",
                rate(timed.base_median())
            );
            println!("  ratio group/raw = {}", timed.ratio_cell());
        }
        // Three members on three handles vs one member, the same work.
        let mut hubs = vec![hub.clone()];
        for _ in 0..2 {
            let config = AmqpConfig::from_url(&amqp_url()).expect("valid URL");
            hubs.push(pubsub_amqp::connect(config).await.expect("connect"));
        }
        let members = interleave_async(settings.rounds, |side| {
            let (hubs, admin) = (&hubs, &admin);
            async move {
                match side {
                    Side::Adapter => adapter_round(hubs, admin, n, 64).await,
                    Side::Raw => adapter_round(&hubs[..1], admin, n, 64).await,
                }
            }
        })
        .await;
        println!("RabbitMQ: 3 group members on 3 handles vs 1 member, {n} x 64 B, prefetch 64");
        println!("  3 members : {:>10.0} msg/s", rate(members.ours_median()));
        println!("  1 member  : {:>10.0} msg/s", rate(members.base_median()));
        println!("  ratio 3/1 = {}", members.ratio_cell());
        let p = unique_prefix("bench_kill");
        hub.declare_stream(stream(&p, 1_000)).await.expect("declare");
        redelivery_row(
            "RabbitMQ",
            &hub,
            || async {
                let config = AmqpConfig::from_url(&amqp_url()).expect("valid URL");
                let doomed = pubsub_amqp::connect(config).await.expect("connect");
                doomed.declare_stream(stream(&p, 1_000)).await.expect("declare");
                doomed
            },
            &p.replace('_', "-"),
            &format!("{p}.>"),
            KILL_DEADLINE,
            settings.rounds,
        )
        .await;
        let tag = stream(&p, 1_000).tag();
        for round in 0..settings.rounds {
            let name = format!("{}-{round}", p.replace('_', "-"));
            delete(&admin, &format!("pubsub.group.{tag:08x}.{name}")).await;
        }
        delete(&admin, &format!("pubsub.stream.{tag:08x}.{p}.>")).await;
        for other in &hubs[1..] {
            other.close().await.expect("close");
        }
        let _ = connection.close(200, "done".into()).await;
        hub.close().await.expect("close");
    });
}
