//! MQTT adapter for the portable pub/sub API, on [`rumqttc`] (MQTT 5) and the
//! [`pubsub_core::adapter`] kit.
//!
//! [`connect`] opens one MQTT connection and returns a [`Hub`]; its clones share it. The kit
//! does the routing, buffering, reference counting of native subscriptions, retries,
//! connection state and `close`; this crate only translates to MQTT.
//!
//! ```no_run
//! # async fn demo() -> pubsub_core::Result<()> {
//! use pubsub_core::{Message, PubSub};
//! use pubsub_mqtt::MqttConfig;
//!
//! let ps = pubsub_mqtt::connect(MqttConfig::from_url("mqtt://127.0.0.1:1883")?).await?;
//! let mut room = ps.subscribe("room.42.>".parse()?).await?;
//! let message = Message::builder("room.42.msg".parse()?).payload("hi").header("from", "ada");
//! ps.publish(message.build()?).await?;
//! assert_eq!(room.recv().await.unwrap().headers().get("from"), Some("ada"));
//! ps.close().await?;
//! # Ok(()) }
//! ```
//!
//! # Why MQTT 5
//!
//! MQTT 5 gives what the portable API needs and 3.1.1 lacks: **subscription identifiers**
//! (a received message names the subscriptions it matched, so each native filter gets exactly
//! one copy however the handle's filters overlap: Mosquitto sends one copy per matching
//! subscription), **user properties** (headers, no envelope in the payload), reason codes
//! in acknowledgements, and retain handling per subscription. Mosquitto 2.0 speaks it fully.
//!
//! A broker that speaks only MQTT 3.1.1 (RabbitMQ's MQTT plugin before 3.13, Azure IoT Hub)
//! is not supported: it refuses the MQTT 5 `CONNECT` and closes, and [`connect`] fails with a
//! `Connection` error saying that MQTT 5 is needed. Without subscription identifiers a broker
//! may send one copy per matching subscription or one for all, and a handle could not tell
//! how many of its subscriptions a copy stands for.
//!
//! # Translation
//!
//! | portable | MQTT |
//! |---|---|
//! | topic `a.b` | topic name `a/b`: one level per token |
//! | a token holding `/`, `+`, `#` or `~`, or a character brokers refuse (U+FDD0–U+FDEF, U+xxFFFE/U+xxFFFF) | that character as `~HH` per UTF-8 byte (`a/b` → `a~2Fb`); the kit's hex escape, reversible |
//! | a topic whose MQTT name would begin with `$` (`$SYS.x`) | `~24SYS/x`: never a broker topic |
//! | `*`, `>` | `+`, `#` (`#` also matches the parent level; the kit's exact matcher decides delivery) |
//! | exact pattern or wildcard | one `SUBSCRIBE` per native filter, QoS 0, with a subscription identifier of its own, "do not send retained messages" |
//! | headers | user properties, in order; a value Mosquitto would refuse (control characters such as a tab, non-characters) or that starts with `=?` travels as an encoded word (the kit's `encoded_word`) |
//! | readiness | the `SUBACK` |
//! | delivery | `deliver_via` the filter of each subscription identifier the message carries |
//! | reconnect | a clean start; the kit subscribes again (`reconnected`) |
//!
//! Messages whose MQTT topic is not an encoded portable topic (`a//b`, a needless escape, a
//! `$SYS` topic) are skipped. [`encode_topic`] and [`decode_topic`] give the mapping to other
//! programs on the broker.
//!
//! # Guarantees
//!
//! - **`publish` resolves `Ok` once the broker has acknowledged the message**: it goes at
//!   QoS 1 and waits for the `PUBACK` (its reason code checked: a refusal is an `Auth` or
//!   `Backend` error), at most the publish timeout (then a temporary `Timeout`). The broker
//!   has then taken it for every subscription it had.
//! - **Delivery is at most once**: subscriptions are QoS 0, as on every other backend; a
//!   message the broker sends while the connection breaks is lost, and the subscriptions get
//!   an outage gap. A publish under way when the connection breaks fails with a temporary
//!   `Connection` error (the broker may or may not have taken it); it is never re-sent behind
//!   the caller's back.
//! - One handle's publishes to one topic reach every subscription in order (one connection,
//!   rumqttc's channel, in-order acknowledgements).
//! - **Connection loss**: rumqttc reconnects, after the options' backoff, with a clean start
//!   (the broker keeps no session, so nothing queued for an absent handle piles up), and the
//!   kit restores every filter before the handle counts as up.
//! - **Half-open connections**: rumqttc pings every keep-alive, which is the heartbeat in whole
//!   seconds but at least 5 s (rumqttc's minimum); a broker silent for the keep-alive plus two
//!   heartbeats is taken as gone and the connection is made again. A zero heartbeat turns this
//!   off (the keep-alive is then 65 535 s, MQTT's longest).
//!
//! # Limits
//!
//! - **Payload**: a message whose PUBLISH packet (topic, user properties and payload) exceeds
//!   the broker's Maximum Packet Size (from its `CONNACK`), or MQTT's 268 435 455 bytes when it
//!   announces none (Mosquitto's default), fails with `PayloadTooLarge` before any I/O;
//!   `max_payload` lowers the limit. Received packets may be as large as MQTT allows.
//! - **Topics**: an MQTT name is at most 65 535 bytes ([`MAX_NAME`]); portable topics (255 bytes,
//!   at most three times that once escaped) always fit, and a longer one would be an `Invalid`
//!   error.
//! - **Streams and groups** are not offered: MQTT keeps no history beyond one retained message
//!   per topic, and its shared subscriptions have no acknowledgements to settle; those calls
//!   fail with `Unsupported`.
//! - **Throughput**: each publish waits for its `PUBACK` (one round trip; the client socket has
//!   `TCP_NODELAY`). A Mosquitto without `set_tcp_nodelay true` delays its small packets behind
//!   delayed ACKs: about 2 000 publishes a second on one connection instead of some 25 000
//!   (`benches/throughput.rs`; raw rumqttc is no faster).
//! - Credentials go in the `CONNECT` packet: use `mqtts://` (rustls) where the network is not
//!   trusted.
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod config;
mod driver;
mod topic;

use std::sync::Arc;

use pubsub_core::adapter::{launch, tls, Context};
use pubsub_core::{Error, ErrorKind, Hub, Result};
use rumqttc::v5::mqttbytes::v5::ConnectReturnCode;
use rumqttc::v5::{AsyncClient, ConnectionError, Event, MqttOptions, StateError};
use rumqttc::{NetworkOptions, TlsConfiguration, Transport};

pub use config::{MqttConfig, DEFAULT_PORT, DEFAULT_TLS_PORT};
pub use topic::{decode_topic, encode_filter, encode_topic, MAX_NAME};

use driver::{MqttDriver, Shared};

/// Connects to an MQTT broker and returns a handle.
///
/// Fails with a typed error when the broker cannot be reached (the first connection is not
/// retried), refuses the credentials (`Auth`) or the TLS certificate (`Auth`); reconnects on
/// its own afterwards.
pub async fn connect(config: MqttConfig) -> Result<Hub> {
    launch(config.options.clone(), |cx: Context<String>| async move {
        let options = mqtt_options(&config).await?;
        let (client, mut events) = AsyncClient::new(options, driver::ROOM);
        let first = async {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(rumqttc::v5::Incoming::ConnAck(connack))) => {
                        return Ok(connack)
                    }
                    Ok(_) => {}
                    Err(e) => return Err(connect_error(e).with_endpoint(config.endpoint())),
                }
            }
        };
        let timeout = cx.options.connect_timeout;
        let connack = tokio::time::timeout(timeout, first)
            .await
            .map_err(|_| Error::timeout(format!("no CONNACK within {timeout:?}")))??;
        let shared = Shared::new(client);
        let max = connack.properties.and_then(|p| p.max_packet_size);
        let max = max.map_or(driver::MAX_PACKET, |m| (m as usize).min(driver::MAX_PACKET));
        shared
            .max_packet
            .store(max, std::sync::atomic::Ordering::Relaxed);
        shared
            .connected
            .store(true, std::sync::atomic::Ordering::Release);
        let link = cx.supervisor.link();
        link.up();
        let events = Arc::new(tokio::sync::Mutex::new(events));
        let owned = events.clone().lock_owned().await;
        let task = driver::run(owned, shared.clone(), cx.inbound, link, cx.options.clone());
        cx.tasks.spawn(task);
        Ok(MqttDriver {
            shared,
            events,
            options: cx.options,
        })
    })
    .await
}

/// rumqttc's options for `config`.
async fn mqtt_options(config: &MqttConfig) -> Result<MqttOptions> {
    let mut options = MqttOptions::new(config.client_id(), config.host.clone(), config.port);
    let connect_secs = config.options.connect_timeout.as_secs_f64().ceil() as u64;
    options
        .set_clean_start(true)
        .set_keep_alive(driver::keep_alive(config.options.heartbeat).0)
        .set_connection_timeout(connect_secs.max(1))
        .set_request_channel_capacity(driver::ROOM)
        .set_max_packet_size(Some(driver::MAX_PACKET as u32));
    // Each publish waits for its PUBACK: Nagle's algorithm would hold small packets back.
    let mut network = NetworkOptions::new();
    network.set_tcp_nodelay(true);
    network.set_connection_timeout(connect_secs.max(1));
    options.set_network_options(network);
    if let Some((user, password)) = &config.credentials {
        options.set_credentials(user.clone(), password.expose().to_string());
    }
    if let Some(settings) = &config.tls {
        let rustls = tls::client_config(settings).await?;
        options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            Arc::new(rustls),
        )));
    }
    Ok(options)
}

/// The typed error of a first connection that failed.
fn connect_error(error: ConnectionError) -> Error {
    let refused = |code: &ConnectReturnCode| {
        let auth = matches!(
            code,
            ConnectReturnCode::BadUserNamePassword
                | ConnectReturnCode::NotAuthorized
                | ConnectReturnCode::Banned
                | ConnectReturnCode::BadAuthenticationMethod
        );
        let kind = if auth {
            ErrorKind::Auth
        } else {
            ErrorKind::Connection
        };
        Error::new(kind, format!("the broker refused the connection: {code:?}"))
    };
    match &error {
        ConnectionError::ConnectionRefused(code) => refused(code),
        ConnectionError::Timeout(_) => {
            Error::timeout("connecting to the MQTT broker").with_source(error)
        }
        _ if tls::is_certificate_error(&error) => {
            Error::auth("the broker's TLS certificate was refused", error)
        }
        // What an MQTT 3.1.1-only broker does with an MQTT 5 `CONNECT`: a `CONNACK` rumqttc
        // cannot read, then the connection closed.
        ConnectionError::MqttState(StateError::ConnectionAborted) => Error::connection(
            "the MQTT broker closed the connection instead of answering its CONNECT (a broker \
             that does not speak MQTT 5 does so: pubsub-mqtt needs MQTT 5)",
            error,
        ),
        _ => Error::connection("connecting to the MQTT broker", error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn options_carry_the_settings_and_no_secret_shows() {
        let config =
            MqttConfig::from_url("mqtt://u:hunter2@h:7?heartbeat=12s&connect_timeout=1500ms")
                .unwrap();
        let options = mqtt_options(&config).await.unwrap();
        assert_eq!(options.keep_alive(), Duration::from_secs(12));
        assert_eq!(options.connection_timeout(), 2);
        assert_eq!(options.broker_address(), ("h".to_string(), 7));
        assert!(options.clean_start());
        assert_eq!(options.network_options().connection_timeout(), 2);
        let refused = connect_error(ConnectionError::ConnectionRefused(
            ConnectReturnCode::BadUserNamePassword,
        ));
        assert_eq!(refused.kind(), ErrorKind::Auth);
        assert!(!format!("{refused} {config:?}").contains("hunter2"));
    }

    /// A broker that speaks only MQTT 3.1.1 answers an MQTT 5 `CONNECT` with a 3.1.1
    /// `CONNACK` "unacceptable protocol version" and closes: the error says that MQTT 5 is
    /// needed (rumqttc cannot tell this from another early close, so it stays a `Connection`
    /// error).
    #[tokio::test]
    async fn a_broker_without_mqtt_5_is_unsupported() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut connect = [0u8; 256];
            let _ = socket.read(&mut connect).await.unwrap();
            socket.write_all(&[0x20, 0x02, 0x00, 0x01]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
        });
        let config = MqttConfig::default().with_server("127.0.0.1", port);
        let error = connect(config).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Connection, "{error}");
        assert!(error.to_string().contains("MQTT 5"), "{error}");
    }

    #[tokio::test]
    async fn a_broker_that_is_not_there_is_a_connection_error() {
        let config = MqttConfig::default().with_server("127.0.0.1", 1);
        let error = connect(config).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Connection, "{error}");
    }
}
