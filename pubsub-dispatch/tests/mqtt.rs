//! The dispatcher suite on MQTT (`PUBSUB_MQTT_URL`, default `mqtt://127.0.0.1:1883`); fails
//! when the broker cannot be reached. MQTT keeps no history, so there are no group routes here.
mod common;

fn backend() -> common::Backend {
    common::Backend::new("mqtt", pubsub_test_support::broker::mqtt_url())
}

dispatch_suite!(backend);
