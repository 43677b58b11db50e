//! The conformance suite on MQTT (`PUBSUB_MQTT_URL`, default `mqtt://127.0.0.1:1883`:
//! Mosquitto 2.0, started by `scripts/brokers.sh mqtt`).
//!
//! Every case connects to a real broker; when it cannot be reached the cases fail (they never
//! skip). The fault cases go through a fault proxy (`conformance_tests::proxy::TcpProxy`) that
//! they cut or freeze; that handle dials only the proxy, so every reconnect goes through it too.

use conformance_tests::broker::{mqtt_addr, mqtt_url};
use std::time::Duration;

use conformance_tests::kit::{fast_backoff, fast_heartbeat, FaultedDeadlines};
use conformance_tests::{Capability, Harness};
use pubsub_core::WithOptions;
use pubsub_mqtt::MqttConfig;

mod support;

fn mqtt_harness() -> Harness {
    Harness::proxied("mqtt", mqtt_addr(), |proxy| async move {
        let mut config = MqttConfig::from_url(&mqtt_url())?;
        if let Some(addr) = proxy {
            config = config
                .with_server(addr.ip().to_string(), addr.port())
                .with_faulted_deadlines()
                .with_backoff(fast_backoff());
        }
        pubsub_mqtt::connect(config).await
    })
    .with_foreign(support::mqtt(mqtt_addr()))
    // The keep-alive is at least 5 s (rumqttc), and a broker silent for it plus two
    // heartbeats is taken as dead.
    .noticing_silence_within(Duration::from_secs(5) + fast_heartbeat() * 2 + Duration::from_secs(2))
    .lacking(
        Capability::Streams,
        "MQTT keeps no history (one retained message per topic at most)",
    )
    .lacking(
        Capability::Groups,
        "MQTT has no acknowledged groups (shared subscriptions settle nothing)",
    )
}

conformance_tests::suite!(mqtt_harness);
