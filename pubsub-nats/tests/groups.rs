//! Groups on NATS against a real server with JetStream (`PUBSUB_NATS_URL`, default
//! `nats://127.0.0.1:4222`): what the conformance suite does not show: the consumer at the
//! server, several patterns (no filter subject), subjects that are no portable topic, and a
//! consumer of the group's name that is not a group's. These tests fail when NATS (with
//! JetStream) is down.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy};
use pubsub_core::{ErrorKind, GroupConfig, GroupSubscription, PubSub, StreamConfig};
use pubsub_nats::NatsConfig;
use pubsub_test_support::broker::nats_url;
use pubsub_test_support::kit::{idle, pattern, publish, quiet, shared, shut_down, unique_prefix};

async fn handle() -> Arc<dyn PubSub> {
    let config = NatsConfig::from_url(&nats_url()).expect("PUBSUB_NATS_URL parses");
    let hub = pubsub_nats::connect(config).await;
    shared(hub.unwrap_or_else(|e| panic!("NATS must be reachable at {}: {e}", nats_url())))
}

async fn jetstream() -> async_nats::jetstream::Context {
    let first = nats_url().split(',').next().unwrap_or_default().to_string();
    let client = async_nats::connect(first).await.expect("NATS reachable");
    async_nats::jetstream::new(client)
}

/// Declares `{p}.>` and returns the name of its JetStream stream.
async fn declare(ps: &Arc<dyn PubSub>, js: &async_nats::jetstream::Context, p: &str) -> String {
    let stream = StreamConfig::new(pattern(&format!("{p}.>")));
    ps.declare_stream(stream).await.expect("declare");
    js.stream_by_subject(format!("{p}.x"))
        .await
        .expect("the JetStream stream")
}

fn group(name: &str, patterns: &[String]) -> GroupConfig {
    let name = name.replace(|c: char| !c.is_ascii_alphanumeric(), "-");
    GroupConfig::new(&name, patterns.iter().map(|p| pattern(p)).collect()).expect("a group")
}

async fn payload_of(member: &mut GroupSubscription) -> String {
    let message = tokio::time::timeout(idle(), member.recv())
        .await
        .expect("a delivery in time")
        .expect("the member is open");
    let payload = String::from_utf8_lossy(message.message().payload()).to_string();
    message.ack().await.expect("ack");
    payload
}

/// The consumer's count of deliveries not acknowledged yet, once it stops changing.
async fn unacknowledged(js: &async_nats::jetstream::Context, stream: &str, name: &str) -> usize {
    tokio::time::sleep(quiet()).await;
    let stream = js.get_stream(stream).await.expect("the stream");
    let info = stream.consumer_info(name).await.expect("the consumer");
    info.num_ack_pending
}

/// A group is a durable pull consumer named after it, with explicit acks, the ack deadline
/// as `ack_wait`, its one pattern as the filter, no limit on deliveries or unacknowledged
/// ones, and its other settings in the description.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_group_is_a_durable_pull_consumer() {
    let p = unique_prefix("gcons");
    let (ps, js) = (handle().await, jetstream().await);
    let stream = declare(&ps, &js, &p).await;
    let config = group(&p, &[format!("{p}.a.*")])
        .with_ack_deadline(Duration::from_millis(2500))
        .with_max_deliveries(4);
    let _member = ps.join_group(config.clone()).await.expect("join");
    let stream = js.get_stream(&stream).await.expect("the stream");
    let info = stream.consumer_info(config.name()).await.expect("consumer");
    let c = &info.config;
    assert_eq!(c.durable_name.as_deref(), Some(config.name()));
    assert!(c.deliver_subject.is_none(), "a pull consumer");
    assert_eq!(c.ack_policy, AckPolicy::Explicit);
    assert_eq!(c.ack_wait, Duration::from_millis(2500));
    assert_eq!(c.filter_subject, format!("{p}.a.*"));
    assert!(c.max_deliver <= 0, "no delivery limit: {}", c.max_deliver);
    assert_eq!(
        c.max_ack_pending, -1,
        "no limit on unacknowledged deliveries"
    );
    let description = c.description.as_deref().unwrap_or_default();
    assert!(
        description.contains("max_deliveries 4") && description.contains("dead_letter"),
        "{description}"
    );
    shut_down(&ps).await;
}

/// A group of several patterns reads the whole stream: what its patterns match is delivered,
/// the rest is acknowledged unseen (never delivered again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_patterns_read_the_stream_and_skip_the_rest() {
    let p = unique_prefix("gmany");
    let (ps, js) = (handle().await, jetstream().await);
    let stream = declare(&ps, &js, &p).await;
    let config = group(&p, &[format!("{p}.a"), format!("{p}.b.*")]);
    let mut member = ps.join_group(config.clone()).await.expect("join");
    for t in ["a", "c", "b.x", "c.d"] {
        publish(&ps, &format!("{p}.{t}"), t.to_string()).await;
    }
    assert_eq!(payload_of(&mut member).await, "a");
    assert_eq!(payload_of(&mut member).await, "b.x");
    assert!(
        tokio::time::timeout(quiet(), member.recv()).await.is_err(),
        "only what the patterns match"
    );
    assert_eq!(unacknowledged(&js, &stream, config.name()).await, 0);
    shut_down(&ps).await;
}

/// A message on a subject that is no portable topic (a plain NATS client published it under
/// the root) is acknowledged by the adapter and never delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subjects_that_are_no_topic_are_skipped() {
    let p = unique_prefix("gskip");
    let (ps, js) = (handle().await, jetstream().await);
    let stream = declare(&ps, &js, &p).await;
    let config = group(&p, &[format!("{p}.>")]);
    let mut member = ps.join_group(config.clone()).await.expect("join");
    // Longer than any portable topic.
    let long = format!("{p}.{}", "x".repeat(300));
    let raw = js.publish(long, "long".into()).await.expect("publish");
    raw.await.expect("stored");
    publish(&ps, &format!("{p}.ok"), "ok").await;
    assert_eq!(payload_of(&mut member).await, "ok");
    assert_eq!(unacknowledged(&js, &stream, config.name()).await, 0);
    shut_down(&ps).await;
}

/// A consumer of the group's name made by someone else (no group's description) is a
/// conflict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_consumer_of_that_name_is_a_conflict() {
    let p = unique_prefix("gforeign");
    let (ps, js) = (handle().await, jetstream().await);
    let stream = declare(&ps, &js, &p).await;
    let config = group(&p, &[format!("{p}.>")]);
    let foreign = pull::Config {
        durable_name: Some(config.name().to_string()),
        ack_policy: AckPolicy::Explicit,
        ..Default::default()
    };
    js.create_consumer_on_stream(foreign, &stream)
        .await
        .expect("a foreign consumer");
    let error = ps.join_group(config).await.map(drop).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Invalid, "{error}");
    assert!(error.to_string().contains("not this adapter's"), "{error}");
    shut_down(&ps).await;
}

/// A stream deleted behind the handle's back (its consumers go with it): the member's reads
/// fail, then it creates the stream and the group's consumer again and reads what is
/// published to the new stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_stream_and_consumer_are_made_again() {
    let p = unique_prefix("gdel");
    let (ps, js) = (handle().await, jetstream().await);
    let stream = declare(&ps, &js, &p).await;
    let config = group(&p, &[format!("{p}.>")])
        .starting_at(pubsub_core::StartAt::Start)
        .with_ack_deadline(Duration::from_secs(2));
    let mut member = ps.join_group(config).await.expect("join");
    publish(&ps, &format!("{p}.t"), "before").await;
    assert_eq!(payload_of(&mut member).await, "before");
    js.delete_stream(&stream).await.expect("delete the stream");
    let started = std::time::Instant::now();
    while js.get_stream(&stream).await.is_err() {
        assert!(
            started.elapsed() < idle(),
            "the stream was not created again within {:?}",
            idle()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    publish(&ps, &format!("{p}.t"), "after").await;
    assert_eq!(payload_of(&mut member).await, "after");
    shut_down(&ps).await;
}
