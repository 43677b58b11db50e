//! `rediss://` and `tls://` (NATS) against private servers with the test CA: a round trip with
//! the CA in `TlsOptions`, mutual TLS, and typed refusals for an unrelated CA, a missing client
//! certificate and a plaintext client.

use pubsub::amqp::AmqpConfig;
use pubsub::nats::NatsConfig;
use pubsub::redis::RedisConfig;
use std::time::Duration;

use pubsub::{ErrorKind, TlsOptions, WithOptions};

use crate::check::{expect_refused, expect_refused_uncounted, round_trip};
use crate::logs;
use crate::servers::{self, Certs, Listen};

fn trusting(certs: &Certs, ca: &str) -> TlsOptions {
    TlsOptions::default().with_root_certificate(certs.path(ca))
}

fn with_client_cert(tls: TlsOptions, certs: &Certs) -> TlsOptions {
    tls.with_client_certificate(certs.path("client.pem"), certs.path("client.key"))
}

fn rediss(port: u16, tls: TlsOptions) -> RedisConfig {
    RedisConfig::from_url(&format!("rediss://127.0.0.1:{port}"))
        .unwrap()
        .with_tls(Some(tls))
}

fn nats_tls(port: u16, tls: TlsOptions) -> NatsConfig {
    NatsConfig::from_url(&format!("tls://127.0.0.1:{port}"))
        .unwrap()
        .with_tls(Some(tls))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_tls_with_the_test_ca() {
    logs::capture();
    let certs = Certs::generate();
    let tls = Listen::Tls {
        certs: &certs,
        verify_clients: false,
    };
    let server = servers::redis(tls, &[]);
    let ps = pubsub::redis::connect(rediss(server.port, trusting(&certs, "ca.pem")))
        .await
        .unwrap();
    round_trip(ps).await;

    // The server's certificate is signed by a CA we do not trust: refused for good.
    let other = rediss(server.port, trusting(&certs, "other-ca.pem"));
    expect_refused(
        &server,
        pubsub::redis::connect(other),
        &[ErrorKind::Auth],
        &[],
    )
    .await;

    // A plaintext client on the TLS port: the server hangs up; typed, prompt, not retried.
    let plain = RedisConfig::from_url(&format!("redis://127.0.0.1:{}", server.port)).unwrap();
    expect_refused(
        &server,
        pubsub::redis::connect(plain),
        &[ErrorKind::Connection, ErrorKind::Timeout],
        &[],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_mutual_tls() {
    logs::capture();
    let certs = Certs::generate();
    let tls = Listen::Tls {
        certs: &certs,
        verify_clients: true,
    };
    let server = servers::redis(tls, &[]);
    let both = with_client_cert(trusting(&certs, "ca.pem"), &certs);
    let ps = pubsub::redis::connect(rediss(server.port, both))
        .await
        .unwrap();
    round_trip(ps).await;

    // No client certificate: the server refuses the handshake.
    let anonymous = rediss(server.port, trusting(&certs, "ca.pem"));
    expect_refused(
        &server,
        pubsub::redis::connect(anonymous),
        &[ErrorKind::Auth],
        &[],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_tls_with_the_test_ca() {
    logs::capture();
    let certs = Certs::generate();
    let tls = Listen::Tls {
        certs: &certs,
        verify_clients: false,
    };
    let server = servers::nats(tls, &[]);
    let ps = pubsub::nats::connect(nats_tls(server.port, trusting(&certs, "ca.pem")))
        .await
        .unwrap();
    round_trip(ps).await;

    let other = nats_tls(server.port, trusting(&certs, "other-ca.pem"));
    expect_refused(
        &server,
        pubsub::nats::connect(other),
        &[ErrorKind::Auth],
        &[],
    )
    .await;

    // `nats://` on a server that requires TLS: async-nats upgrades (the server's INFO says
    // TLS is required), and without the test CA the certificate does not verify.
    let plain = NatsConfig::from_url(&format!("nats://127.0.0.1:{}", server.port)).unwrap();
    expect_refused(
        &server,
        pubsub::nats::connect(plain),
        &[ErrorKind::Auth],
        &[],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_mutual_tls() {
    logs::capture();
    let certs = Certs::generate();
    let tls = Listen::Tls {
        certs: &certs,
        verify_clients: true,
    };
    let server = servers::nats(tls, &[]);
    let both = with_client_cert(trusting(&certs, "ca.pem"), &certs);
    let ps = pubsub::nats::connect(nats_tls(server.port, both))
        .await
        .unwrap();
    round_trip(ps).await;

    let anonymous = nats_tls(server.port, trusting(&certs, "ca.pem"));
    expect_refused(
        &server,
        pubsub::nats::connect(anonymous),
        &[ErrorKind::Auth],
        &[],
    )
    .await;
}

/// A TLS client on a plaintext port. Redis never answers a TLS `ClientHello` (it waits for
/// the end of an inline command), so that connect ends at the connect timeout: 2 s here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_client_on_a_plaintext_port_fails_typed() {
    logs::capture();
    let certs = Certs::generate();
    let redis = servers::redis(Listen::Plain, &[]);
    let config =
        rediss(redis.port, trusting(&certs, "ca.pem")).with_connect_timeout(Duration::from_secs(2));
    expect_refused(
        &redis,
        pubsub::redis::connect(config),
        &[ErrorKind::Connection, ErrorKind::Timeout],
        &[],
    )
    .await;
    let nats = servers::nats(Listen::Plain, &[]);
    let config = nats_tls(nats.port, trusting(&certs, "ca.pem"));
    expect_refused(
        &nats,
        pubsub::nats::connect(config),
        &[ErrorKind::Connection, ErrorKind::Timeout],
        &[],
    )
    .await;
}

fn amqps(port: u16, tls: TlsOptions) -> AmqpConfig {
    AmqpConfig::from_url(&format!("amqps://guest:guest@127.0.0.1:{port}/%2f"))
        .unwrap()
        .with_tls(Some(tls))
}

/// `amqps://` against a second RabbitMQ node of our own that requires a client certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_mutual_tls() {
    logs::capture();
    let certs = Certs::generate();
    let node = servers::rabbitmq_mutual_tls(&certs);
    let both = with_client_cert(trusting(&certs, "ca.pem"), &certs);
    let ps = pubsub::amqp::connect(amqps(node.port, both)).await.unwrap();
    round_trip(ps).await;

    // Without a client certificate the node resets the connection during the handshake
    // rather than sending an alert that lapin reports: it reads as a connection error.
    let anonymous = amqps(node.port, trusting(&certs, "ca.pem"));
    let kinds = [ErrorKind::Auth, ErrorKind::Connection];
    expect_refused(&node, pubsub::amqp::connect(anonymous), &kinds, &[]).await;
    // The client refuses the node's certificate: the node logs nothing, so no count here (a
    // failed first connect starts no reconnect task on AMQP).
    let other = with_client_cert(trusting(&certs, "other-ca.pem"), &certs);
    let connect = pubsub::amqp::connect(amqps(node.port, other));
    expect_refused_uncounted(connect, &[ErrorKind::Auth], &[]).await;
}
