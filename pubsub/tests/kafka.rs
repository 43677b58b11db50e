//! `pubsub::connect("kafka://…")` with the `kafka` feature, against the local broker
//! (`PUBSUB_KAFKA_URL`, default Tansu on 127.0.0.1:9092, started by `scripts/brokers.sh kafka`).
#![cfg(feature = "kafka")]

use pubsub::{Message, Topic};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_kafka_url_round_trips() {
    let url = std::env::var("PUBSUB_KAFKA_URL").unwrap_or_else(|_| "kafka://127.0.0.1:9092".into());
    let ps = pubsub::connect(&url).await.expect("connect kafka://");
    assert_eq!(ps.backend(), "kafka");
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let topic: Topic = format!("facade.k{nanos}.msg").parse().unwrap();
    let mut sub = ps.subscribe(topic.clone().into()).await.expect("subscribe");
    let msg = Message::builder(topic)
        .payload("hi")
        .header("h", "v")
        .build()
        .unwrap();
    ps.publish(msg).await.expect("publish");
    let got = tokio::time::timeout(std::time::Duration::from_secs(10), sub.recv())
        .await
        .expect("in time")
        .expect("a message");
    assert_eq!(got.payload().as_ref(), b"hi");
    assert_eq!(got.headers().get("h"), Some("v"));
    ps.close().await.expect("close");
}
