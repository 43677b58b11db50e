//! `GET /metrics` read by a real Prometheus text parser: every metric has `# HELP` and
//! `# TYPE`, and no name clashes under OpenMetrics (a counter `x_total` is the family `x`, so
//! no other metric may be named `x`).

mod common;

use std::collections::{HashMap, HashSet};

use common::*;
use futures::StreamExt;
use pubsub_gateway::{Gateway, GatewayConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_with_help_type_and_no_clash() {
    let hub = pubsub::connect(&format!("memory://{}", unique("m")))
        .await
        .unwrap();
    let gateway = Gateway::new(hub, &GatewayConfig::default()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(gateway.clone().serve(listener, std::future::pending()));
    // Record every kind of metric: a stream, a publish, a refused publish, a delivery.
    let topic = unique("t");
    let mut ws = ws_connect(addr, &format!("/sub/{topic}"), &[])
        .await
        .unwrap();
    ws.next().await.unwrap().unwrap();
    assert_eq!(publish(addr, &topic, "x", &[]).await.0, 202);
    assert_eq!(publish(addr, "bad..topic", "x", &[]).await.0, 400);
    ws.next().await.unwrap().unwrap();
    let text = metrics_text(addr).await;
    let lines = text.lines().map(|l| Ok::<_, std::io::Error>(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("Prometheus text");
    assert!(!scrape.samples.is_empty(), "{text}");

    let mut types = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            types.insert(name.to_string(), kind.to_string());
        }
    }
    let names: HashSet<&str> = scrape.samples.iter().map(|s| s.metric.as_str()).collect();
    for name in &names {
        assert!(
            scrape.docs.get(*name).is_some_and(|h| !h.is_empty()),
            "no # HELP for {name}:\n{text}"
        );
        assert!(types.contains_key(*name), "no # TYPE for {name}:\n{text}");
        if let Some(family) = name.strip_suffix("_total") {
            assert_eq!(types[*name], "counter", "{name}");
            assert!(
                !types.contains_key(family),
                "{name} and {family} clash under OpenMetrics:\n{text}"
            );
        }
    }
    for wanted in [
        "pubsub_gateway_connections",
        "pubsub_gateway_connections_opened_total",
        "pubsub_gateway_messages_in_total",
        "pubsub_gateway_publish_errors_total",
        "pubsub_gateway_messages_out_total",
    ] {
        assert!(names.contains(wanted), "no {wanted} in\n{text}");
    }
    assert!(
        !names.contains("pubsub_gateway_connections_total"),
        "{text}"
    );
}
