//! Shared by the test targets: foreign publishers (each broker's own client library,
//! publishing as another program on the same broker would, for the `foreign_publisher` case),
//! and the NATS configuration of a handle behind the fault proxy.
#![allow(dead_code)]

use conformance_tests::kit::{fast_backoff, FaultedDeadlines};
use conformance_tests::{Foreign, ForeignMessage};
use pubsub_core::{Error, WithOptions};

/// A raw `PUBLISH` with fred (payload only: Redis has no headers); `cluster` picks fred's
/// cluster client with these seeds.
pub fn redis(url: String) -> Foreign {
    Foreign::new(false, move |m: ForeignMessage| {
        let url = url.clone();
        async move {
            use fred::prelude::{ClientLike, PubsubInterface};
            let client = fred_client(&url).await?;
            let sent: std::result::Result<i64, _> = client.publish(m.topic, m.payload).await;
            let _ = client.quit().await;
            sent.map(|_| ())
                .map_err(|e| Error::connection("fred publish", e))
        }
    })
}

/// Deletes a stream's keys (its log and its meta hash) with fred, as a `FLUSHALL` or a
/// restart without persistence would lose them.
pub async fn redis_lose_history(url: String, root: String) -> Result<(), Error> {
    use fred::prelude::{ClientLike, KeysInterface};
    let client = fred_client(&url).await?;
    let keys = vec![
        format!("pubsub:{{{root}}}:log"),
        format!("pubsub:{{{root}}}:meta"),
    ];
    let deleted: std::result::Result<i64, _> = client.del(keys).await;
    let _ = client.quit().await;
    match deleted {
        Ok(2) => Ok(()),
        Ok(n) => Err(Error::new(
            pubsub_core::ErrorKind::Backend,
            format!("deleted {n} of the stream's 2 keys"),
        )),
        Err(e) => Err(Error::connection("fred del", e)),
    }
}

/// A connected fred client of the Redis (or Redis Cluster) at `url`.
async fn fred_client(url: &str) -> Result<fred::clients::Client, Error> {
    use fred::prelude::ClientLike;
    let config = fred::types::config::Config::from_url(&redis_native_url(url))
        .map_err(|e| Error::connection("fred config", e))?;
    let client = fred::clients::Client::new(config, None, None, None);
    client
        .init()
        .await
        .map_err(|e| Error::connection("fred connect", e))?;
    Ok(client)
}

/// fred's own URL form for ours: `redis://a:1,b:2` (a cluster) is
/// `redis-cluster://a:1?node=b:2`.
fn redis_native_url(url: &str) -> String {
    let rest = url.trim_start_matches("redis://");
    let mut hosts = rest.split(',');
    let first = hosts.next().unwrap_or_default().to_string();
    let others: Vec<String> = hosts.map(|h| format!("node={h}")).collect();
    if others.is_empty() {
        format!("redis://{first}")
    } else {
        format!("redis-cluster://{first}?{}", others.join("&"))
    }
}

/// A publish with async-nats, with NATS headers.
pub fn nats(server: String) -> Foreign {
    Foreign::new(true, move |m: ForeignMessage| {
        let server = server.clone();
        async move {
            let client = async_nats::connect(server)
                .await
                .map_err(|e| Error::connection("async-nats connect", e))?;
            let mut headers = async_nats::HeaderMap::new();
            for (name, value) in &m.headers {
                headers.append(name.as_str(), value.as_str());
            }
            client
                .publish_with_headers(m.topic, headers, m.payload)
                .await
                .map_err(|e| Error::connection("async-nats publish", e))?;
            client
                .flush()
                .await
                .map_err(|e| Error::connection("async-nats flush", e))
        }
    })
}

/// A `basic.publish` with lapin to the adapter's exchange, with the headers in the AMQP
/// headers table (as string values).
pub fn amqp(url: String) -> Foreign {
    Foreign::new(true, move |m: ForeignMessage| {
        let url = url.clone();
        async move {
            use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
            use lapin::types::{AMQPValue, FieldTable};
            use lapin::{BasicProperties, Connection, ConnectionProperties};
            let failed = |what: &'static str| move |e| Error::connection(what, e);
            let conn = Connection::connect(&url, ConnectionProperties::default())
                .await
                .map_err(failed("lapin connect"))?;
            let channel = conn
                .create_channel()
                .await
                .map_err(failed("lapin channel"))?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(failed("lapin confirm_select"))?;
            let mut table = FieldTable::default();
            for (name, value) in &m.headers {
                table.insert(
                    name.as_str().into(),
                    AMQPValue::LongString(value.as_str().into()),
                );
            }
            let properties = BasicProperties::default().with_headers(table);
            channel
                .basic_publish(
                    "pubsub".into(),
                    m.topic.as_str().into(),
                    BasicPublishOptions::default(),
                    &m.payload,
                    properties,
                )
                .await
                .map_err(failed("lapin publish"))?
                .await
                .map_err(failed("lapin confirm"))?;
            let _ = conn.close(200, "bye".into()).await;
            Ok(())
        }
    })
}

/// A record produced with rdkafka (re-exported by `pubsub-kafka`) to the topic's encoded name,
/// with Kafka record headers.
pub fn kafka(bootstrap: String) -> Foreign {
    Foreign::new(true, move |m: ForeignMessage| {
        let bootstrap = bootstrap.clone();
        async move {
            use pubsub_kafka::rdkafka::message::{Header, OwnedHeaders};
            use pubsub_kafka::rdkafka::producer::{FutureProducer, FutureRecord};
            use pubsub_kafka::rdkafka::ClientConfig;
            let topic: pubsub_core::Topic = m.topic.parse()?;
            let name = pubsub_kafka::encode_topic(&topic)?;
            let producer: FutureProducer = ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .set("linger.ms", "0")
                .create()
                .map_err(|e| Error::connection("rdkafka producer", e))?;
            let mut headers = OwnedHeaders::new();
            for (key, value) in &m.headers {
                headers = headers.insert(Header {
                    key: key.as_str(),
                    value: Some(value.as_bytes()),
                });
            }
            let record = FutureRecord::<(), [u8]>::to(&name)
                .payload(m.payload.as_ref())
                .headers(headers);
            producer
                .send(record, std::time::Duration::from_secs(10))
                .await
                .map_err(|(e, _)| Error::connection("rdkafka produce", e))?;
            Ok(())
        }
    })
}

/// A QoS 1 publish with rumqttc (MQTT 5) to the topic's encoded name, with the headers as
/// user properties, confirmed by the broker's PUBACK.
pub fn mqtt(addr: String) -> Foreign {
    Foreign::new(true, move |m: ForeignMessage| {
        let addr = addr.clone();
        async move {
            use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
            use rumqttc::v5::mqttbytes::QoS;
            use rumqttc::v5::{AsyncClient, Event, MqttOptions};
            let failed = |what: &'static str| move |e| Error::connection(what, e);
            let (host, port) = addr.rsplit_once(':').unwrap_or((&addr, "1883"));
            let port = port.parse().unwrap_or(1883);
            let id = format!("foreign-{}", pubsub_core::adapter::random_u64());
            let (client, mut events) = AsyncClient::new(MqttOptions::new(id, host, port), 16);
            let name = pubsub_mqtt::encode_topic(&m.topic.parse()?)?;
            let properties = PublishProperties {
                user_properties: m.headers.clone(),
                ..Default::default()
            };
            let payload = m.payload.clone();
            client
                .publish_with_properties(name, QoS::AtLeastOnce, false, payload, properties)
                .await
                .map_err(failed("rumqttc publish"))?;
            loop {
                let polled = events.poll().await;
                match polled.map_err(|e| Error::connection("rumqttc", e))? {
                    Event::Incoming(Packet::PubAck(_)) => break,
                    _ => continue,
                }
            }
            let _ = client.disconnect().await;
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), events.poll()).await;
            Ok(())
        }
    })
}

/// A `pg_notify` in plain SQL with tokio-postgres, as another program (a trigger, say) sends
/// one: `'<topic> ' || text`, or `'<topic> =' || encode(bytes, 'base64')` for bytes that are no
/// text (PostgreSQL's base64, with its line breaks). No headers: a notification has none.
pub fn postgres(url: String) -> Foreign {
    Foreign::new(false, move |m: ForeignMessage| {
        let url = url.clone();
        async move {
            let failed = |what: &'static str| move |e| Error::connection(what, e);
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .map_err(failed("tokio-postgres connect"))?;
            let driving = tokio::spawn(connection);
            let text = std::str::from_utf8(&m.payload)
                .ok()
                .filter(|t| !t.starts_with('=') && !t.contains('\0'));
            let sent = match text {
                Some(text) => {
                    let sql = "SELECT pg_notify('pubsub', $1 || ' ' || $2)";
                    client.execute(sql, &[&m.topic, &text]).await
                }
                None => {
                    let sql = "SELECT pg_notify('pubsub', $1 || ' =' || encode($2, 'base64'))";
                    client.execute(sql, &[&m.topic, &m.payload.as_ref()]).await
                }
            };
            drop(client);
            let _ = driving.await;
            sent.map(drop).map_err(failed("pg_notify"))
        }
    })
}

/// `config` dialling only the fault proxy at `proxy` (no server learnt from the cluster, so
/// every reconnect goes through the proxy too), with the deadlines of a faulted handle.
pub fn nats_through_proxy(
    config: pubsub_nats::NatsConfig,
    proxy: std::net::SocketAddr,
) -> pubsub_nats::NatsConfig {
    config
        .with_servers([format!("nats://{proxy}")])
        .with_discovered_servers(false)
        .with_faulted_deadlines()
        .with_backoff(fast_backoff())
}
