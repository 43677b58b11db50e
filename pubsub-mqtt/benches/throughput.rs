//! Throughput and latency of the MQTT adapter next to raw rumqttc (MQTT 5) doing the same work.
//!
//! Run with `cargo bench -p pubsub-mqtt --bench throughput` (the broker at `PUBSUB_MQTT_URL`,
//! default Mosquitto on `mqtt://127.0.0.1:1883`). Each row: one connection publishes N messages
//! to one topic at QoS 1 and 1 or 10 subscriptions on the same connection receive all of them
//! (one MQTT subscription at QoS 0 on both sides, fanned out locally). The adapter keeps at
//! most `WINDOW` publishes in flight, each resolving on its PUBACK; raw rumqttc's `publish`
//! resolves once the request is queued, and rumqttc itself holds back what the broker's
//! Receive Maximum (Mosquitto: 20) does not let through. Every payload carries its send time,
//! so latency is publish-call-to-receipt.
//!
//! The harness (rounds interleaved adapter / raw, medians, the table, `BENCH_QUICK=1` for a
//! smoke run, `BENCH_ROWS`, `BENCH_ROUNDS`, `BENCH_MODE=adapter|raw`) is `pubsub_bench`.

use bytes::Bytes;
use pubsub_bench::{publish_pipelined, stamp, Outcome, Row};
use pubsub_core::Topic;
use pubsub_mqtt::{encode_topic, MqttConfig};
use pubsub_test_support::broker::mqtt_url;
use pubsub_test_support::throughput::connect_and_run;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use rumqttc::NetworkOptions;

/// Publishes in flight (the adapter's side).
const WINDOW: usize = 64;
/// Rounds per row (each runs the adapter and raw rumqttc once).
const ROUNDS: usize = 5;

async fn run_adapter(row: Row, topic: String) -> Outcome {
    let config = MqttConfig::from_url(&mqtt_url()).expect("valid URL");
    connect_and_run(pubsub_mqtt::connect(config), "MQTT", row, &topic, WINDOW).await
}

async fn run_raw(row: Row, topic: String) -> Outcome {
    let config = MqttConfig::from_url(&mqtt_url()).expect("valid URL");
    let id = pubsub_bench::run_id("raw");
    let mut options = MqttOptions::new(id, config.host.clone(), config.port);
    options.set_max_packet_size(Some(1 << 20));
    // As the adapter: no Nagle delay on small packets.
    let mut network = NetworkOptions::new();
    network.set_tcp_nodelay(true);
    options.set_network_options(network);
    let (client, mut events) = AsyncClient::new(options, 4096);
    let name = encode_topic(&topic.parse::<Topic>().expect("topic")).expect("name");
    let mut receivers = row.receivers();
    let senders = receivers.spawn_channels(row.subs);
    let (ready, subscribed) = tokio::sync::oneshot::channel();
    let mut ready = Some(ready);
    let poller = tokio::spawn(async move {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    ready.take().map(|r| r.send(()));
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let payload: Bytes = p.payload;
                    for tx in &senders {
                        let _ = tx.unbounded_send(payload.clone());
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    client
        .subscribe(name.clone(), QoS::AtMostOnce)
        .await
        .expect("raw subscribe");
    subscribed.await.expect("SUBACK");
    let (started, published) = publish_pipelined(row.count, WINDOW, |seq| {
        let (client, name) = (client.clone(), name.clone());
        let payload = stamp(seq, row.size);
        async move {
            client
                .publish_bytes(name, QoS::AtLeastOnce, false, payload)
                .await
        }
    })
    .await;
    let outcome = receivers.finish(started, published).await;
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), poller).await;
    outcome
}

fn main() {
    let title = format!(
        "MQTT 5 (Mosquitto), 1 connection publishing at QoS 1 (adapter: {WINDOW} in flight, each \
         awaiting its PUBACK; raw: queued, rumqttc's inflight limit) and subscribed at QoS 0, \
         adapter and raw rumqttc interleaved"
    );
    pubsub_bench::throughput_main(ROUNDS, &title, run_adapter, run_raw);
}
