//! `pubsub::connect("kafka://…")` with the `kafka` feature, against the local broker
//! (`PUBSUB_KAFKA_URL`, default Tansu on 127.0.0.1:9092, started by `scripts/brokers.sh kafka`).
#![cfg(feature = "kafka")]

use pubsub::{Message, Topic};

mod by_url;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_kafka_url_round_trips() {
    let ps = by_url::connect(&pubsub_test_support::broker::kafka_url(), "kafka").await;
    let topic: Topic = format!("{}.msg", by_url::prefix("facade_kafka"))
        .parse()
        .unwrap();
    let msg = Message::builder(topic.clone())
        .payload("hi")
        .header("h", "v")
        .build()
        .unwrap();
    let got = by_url::round_trip(&ps, topic.as_str(), msg).await;
    assert_eq!(got.payload().as_ref(), b"hi");
    assert_eq!(got.headers().get("h"), Some("v"));
    ps.close().await.expect("close");
}
