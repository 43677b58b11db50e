//! `pubsub::connect("mqtt://…")` with the `mqtt` feature, against the local broker
//! (`PUBSUB_MQTT_URL`, default Mosquitto on 127.0.0.1:1883, started by `scripts/brokers.sh mqtt`).
#![cfg(feature = "mqtt")]

use pubsub::{ErrorKind, Message, Topic};

mod by_url;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_mqtt_url_round_trips() {
    let url = pubsub_test_support::broker::mqtt_url();
    let ps = by_url::connect(&format!("{url}?buffer=16"), "mqtt").await;
    let prefix = by_url::prefix("facade_mqtt");
    let topic: Topic = format!("{prefix}.a/b").parse().unwrap();
    let msg = Message::builder(topic.clone())
        .payload("hi")
        .header("h", "v\tw")
        .build()
        .unwrap();
    let got = by_url::round_trip(&ps, &format!("{prefix}.>"), msg).await;
    assert_eq!((got.topic(), got.payload().as_ref()), (&topic, &b"hi"[..]));
    assert_eq!(got.headers().get("h"), Some("v\tw"));
    ps.close().await.expect("close");
}

#[tokio::test]
async fn mqtts_urls_parse_and_refuse_a_bare_secret() {
    let config = pubsub::mqtt::MqttConfig::from_url("mqtts://u:s3cret@broker.example").unwrap();
    assert!(config.tls.is_some() && config.port == 8883);
    let error = pubsub::connect("mqtt://s3cret@127.0.0.1")
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Invalid);
    assert!(!error.to_string().contains("s3cret"), "{error}");
}
