//! `pubsub::connect("mqtt://…")` with the `mqtt` feature, against the local broker
//! (`PUBSUB_MQTT_URL`, default Mosquitto on 127.0.0.1:1883, started by `scripts/brokers.sh mqtt`).
#![cfg(feature = "mqtt")]

use pubsub::{ErrorKind, Message, Topic};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_mqtt_url_round_trips() {
    let url = std::env::var("PUBSUB_MQTT_URL").unwrap_or_else(|_| "mqtt://127.0.0.1:1883".into());
    let ps = pubsub::connect(&format!("{url}?buffer=16"))
        .await
        .expect("connect mqtt://");
    assert_eq!(ps.backend(), "mqtt");
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let topic: Topic = format!("facade.m{nanos}.a/b").parse().unwrap();
    let mut sub = ps
        .subscribe(format!("facade.m{nanos}.>").parse().unwrap())
        .await
        .expect("subscribe");
    let msg = Message::builder(topic.clone())
        .payload("hi")
        .header("h", "v\tw")
        .build()
        .unwrap();
    ps.publish(msg).await.expect("publish");
    let got = tokio::time::timeout(std::time::Duration::from_secs(10), sub.recv())
        .await
        .expect("in time")
        .expect("a message");
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
