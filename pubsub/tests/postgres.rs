//! `pubsub::connect("postgres://…")` with the `postgres` feature, against the local server
//! (`PUBSUB_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`, started by
//! `scripts/brokers.sh postgres`).
#![cfg(feature = "postgres")]

use pubsub::{ErrorKind, Message, Topic};

mod by_url;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_postgres_url_round_trips() {
    let url =
        pubsub_test_support::broker::postgres_url().replacen("postgres://", "postgresql://", 1);
    let ps = by_url::connect(&format!("{url}?buffer=16"), "postgres").await;
    let prefix = by_url::prefix("facade_postgres");
    let topic: Topic = format!("{prefix}.a").parse().unwrap();
    let msg = Message::builder(topic.clone())
        .payload(vec![0u8, 1, 2])
        .header("h", "v\tw")
        .build()
        .unwrap();
    let got = by_url::round_trip(&ps, &format!("{prefix}.>"), msg).await;
    assert_eq!(
        (got.topic(), got.payload().as_ref()),
        (&topic, &[0u8, 1, 2][..])
    );
    assert_eq!(got.headers().get("h"), Some("v\tw"));
    let too_big = Message::new(topic, vec![0u8; ps.max_payload() + 1]);
    let error = ps.publish(too_big).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::PayloadTooLarge);
    ps.close().await.expect("close");
}

#[tokio::test]
async fn postgres_urls_parse_and_never_show_the_password() {
    let config =
        pubsub::postgres::PostgresConfig::from_url("postgres://app@db.example/orders").unwrap();
    assert_eq!(
        (config.user.as_str(), config.dbname.as_deref()),
        ("app", Some("orders"))
    );
    let error = pubsub::connect("postgres://app:s3cret@127.0.0.1/db?sslmode=require")
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unsupported);
    assert!(!format!("{error} {error:?}").contains("s3cret"), "{error}");
}
