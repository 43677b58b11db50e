//! Groups on a real RabbitMQ (`PUBSUB_AMQP_URL`, default
//! `amqp://guest:guest@127.0.0.1:5672/%2f`), beyond the conformance cases: a backlog larger
//! than one copy batch, the ack deadline of a live member, settings compared across handles,
//! and two handles creating the same group at once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use pubsub_amqp::AmqpConfig;
use pubsub_core::{
    ErrorKind, GroupConfig, GroupMessage, GroupSubscription, Message, PubSub, StartAt, StreamConfig,
};
use pubsub_test_support::broker::amqp_url;
use pubsub_test_support::kit::{publish, seq, shared, unique_prefix, unseq};

const WAIT: Duration = Duration::from_secs(10);

async fn handle() -> Arc<dyn PubSub> {
    let config = AmqpConfig::from_url(&amqp_url()).expect("a valid URL");
    shared(
        pubsub_amqp::connect(config)
            .await
            .expect("RabbitMQ must be reachable at PUBSUB_AMQP_URL"),
    )
}

async fn declare(ps: &Arc<dyn PubSub>, p: &str) {
    let stream = StreamConfig::new(format!("{p}.>").parse().unwrap())
        .with_max_len(100_000)
        .with_max_age(Duration::from_secs(600));
    ps.declare_stream(stream).await.expect("declaring a stream");
}

fn group(p: &str) -> GroupConfig {
    let name = p.replace('_', "-");
    GroupConfig::new(&name, vec![format!("{p}.>").parse().unwrap()]).unwrap()
}

async fn next(member: &mut GroupSubscription) -> GroupMessage {
    tokio::time::timeout(WAIT, member.recv())
        .await
        .expect("a delivery in time")
        .expect("the member's stream goes on")
}

async fn nothing_within(member: &mut GroupSubscription, wait: Duration) -> bool {
    tokio::time::timeout(wait, member.recv()).await.is_err()
}

#[tokio::test]
async fn a_group_from_the_start_gets_a_backlog_of_several_batches_in_order() {
    const N: u32 = 4_500;
    let p = unique_prefix("gbacklog");
    let ps = handle().await;
    declare(&ps, &p).await;
    for i in 0..N {
        let message = Message::builder(format!("{p}.t{}", i % 3).parse().unwrap())
            .payload(seq(0, i))
            .header("x-i", i.to_string())
            .build()
            .unwrap();
        ps.publish(message).await.unwrap();
    }
    let config = group(&p).starting_at(StartAt::Start).with_prefetch(500);
    let mut member = ps.join_group(config).await.expect("joining");
    for i in 0..N {
        let message = next(&mut member).await;
        assert_eq!(unseq(&message), (0, i));
        assert_eq!(message.topic().as_str(), format!("{p}.t{}", i % 3));
        // RabbitMQ 3.10's streams drop header values that are arrays, as the adapter's
        // portable headers are: a copy from the stream has the headers the stream kept, and
        // none of the broker's own.
        assert!(
            message.headers().get("x-stream-offset").is_none(),
            "{message:?}"
        );
        assert_eq!(message.deliveries(), 1);
        message.ack();
    }
    // Then what is published from now on, once.
    publish(&ps, &format!("{p}.t0"), seq(1, 0)).await;
    let message = next(&mut member).await;
    assert_eq!(unseq(&message), (1, 0));
    message.ack().await.expect("ack");
    assert!(nothing_within(&mut member, Duration::from_millis(500)).await);
    ps.close().await.unwrap();
}

#[tokio::test]
async fn a_delivery_held_past_the_ack_deadline_comes_back_to_the_live_member() {
    let p = unique_prefix("gdeadline");
    let ps = handle().await;
    declare(&ps, &p).await;
    let deadline = Duration::from_millis(700);
    let mut member = ps
        .join_group(group(&p).with_ack_deadline(deadline))
        .await
        .unwrap();
    publish(&ps, &format!("{p}.t"), seq(0, 0)).await;
    let first = next(&mut member).await;
    let held_at = tokio::time::Instant::now();
    assert_eq!(first.deliveries(), 1);
    // Held, never settled.
    let _message = first.into_message();
    let again = next(&mut member).await;
    assert!(held_at.elapsed() + Duration::from_millis(100) >= deadline);
    assert_eq!((unseq(&again), again.deliveries()), ((0, 0), 2));
    again.ack().await.unwrap();
    assert!(nothing_within(&mut member, deadline * 2).await);
    ps.close().await.unwrap();
}

#[tokio::test]
async fn settings_are_compared_across_handles() {
    let p = unique_prefix("gsettings");
    let (a, b) = (handle().await, handle().await);
    declare(&a, &p).await;
    declare(&b, &p).await;
    let _member = a.join_group(group(&p)).await.unwrap();
    let other = b.join_group(group(&p).with_max_deliveries(2)).await;
    assert_eq!(other.map(|_| ()).unwrap_err().kind(), ErrorKind::Invalid);
    let same = b.join_group(group(&p).with_prefetch(1)).await;
    assert!(same.is_ok());
    a.close().await.unwrap();
    b.close().await.unwrap();
}

#[tokio::test]
async fn two_handles_creating_a_group_at_once_copy_the_backlog_once() {
    const N: u32 = 300;
    let p = unique_prefix("gtwice");
    let (a, b) = (handle().await, handle().await);
    declare(&a, &p).await;
    declare(&b, &p).await;
    for i in 0..N {
        publish(&a, &format!("{p}.t"), seq(0, i)).await;
    }
    let config = group(&p).starting_at(StartAt::Start);
    let (ma, mb) = tokio::join!(a.join_group(config.clone()), b.join_group(config));
    let mut seen = BTreeMap::new();
    for mut member in [ma.unwrap(), mb.unwrap()] {
        while let Ok(Some(message)) =
            tokio::time::timeout(Duration::from_secs(2), member.recv()).await
        {
            *seen.entry(unseq(&message).1).or_insert(0) += 1;
            message.ack();
        }
    }
    assert_eq!(seen.len(), N as usize, "every message");
    assert!(seen.values().all(|n| *n == 1), "each once: {seen:?}");
    a.close().await.unwrap();
    b.close().await.unwrap();
}

#[tokio::test]
async fn closing_right_after_a_join_is_clean() {
    let p = unique_prefix("gclose");
    let config = group(&p);
    for _ in 0..10 {
        let ps = handle().await;
        declare(&ps, &p).await;
        let _member = ps.join_group(config.clone()).await.unwrap();
        ps.close()
            .await
            .expect("a clean close while the member opens");
    }
}

/// A group from the start created while another handle publishes without pause: nothing
/// published is missed (what is published around the switch from the copy to the binding may
/// come twice).
#[tokio::test]
async fn a_group_created_while_publishing_misses_nothing() {
    let p = unique_prefix("gswitch");
    let (publisher, ps) = (handle().await, handle().await);
    declare(&publisher, &p).await;
    declare(&ps, &p).await;
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let topic = format!("{p}.t");
    let publishing = tokio::spawn({
        let publisher = publisher.clone();
        async move {
            let mut i = 0;
            while !*stopped.borrow_and_update() {
                publish(&publisher, &topic, seq(0, i)).await;
                i += 1;
            }
            i
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut member = ps
        .join_group(group(&p).starting_at(StartAt::Start).with_prefetch(500))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.send_replace(true);
    let published = publishing.await.unwrap();
    let mut seen = BTreeMap::new();
    while let Ok(Some(message)) = tokio::time::timeout(Duration::from_secs(2), member.recv()).await
    {
        *seen.entry(unseq(&message).1).or_insert(0u32) += 1;
        message.ack();
    }
    let missing: Vec<u32> = (0..published).filter(|i| !seen.contains_key(i)).collect();
    assert!(
        missing.is_empty(),
        "{} of {published} missed: {missing:?}",
        missing.len()
    );
    let twice = seen.values().filter(|n| **n > 1).count();
    println!("{published} published around the creation; {twice} delivered twice");
    ps.close().await.unwrap();
    publisher.close().await.unwrap();
}
