//! A broker of a test's own (Redis, NATS with JetStream, or a RabbitMQ node) on a free
//! loopback port, with its data in a directory of its own, that the test can restart: stopped
//! the way an operator stops it (so it keeps what it persists) and started again on the same
//! port and data. The shared brokers are never restarted by a parallel test; this one is.
//!
//! | broker | what it keeps across a restart |
//! |---|---|
//! | Redis | everything, through an append-only file written on every command |
//! | NATS | JetStream streams and consumers, in a file store |
//! | RabbitMQ | durable queues, stream queues and their messages (the app is stopped and started in its running node) |

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::scratch::{free_port, fresh_dir};

/// Which broker a [`PrivateBroker`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerKind {
    /// `redis-server` with `appendonly yes`, `appendfsync always`.
    Redis,
    /// `nats-server -js` with a store directory.
    Nats,
    /// A `rabbitmq-server` node of its own (guest/guest on loopback).
    RabbitMq,
}

/// A running broker of a test's own; stopped and its directory removed when dropped.
#[derive(Debug)]
pub struct PrivateBroker {
    kind: BrokerKind,
    port: u16,
    dir: PathBuf,
    /// The server process (Redis, NATS); `None` between a stop and a start.
    child: Mutex<Option<Child>>,
    /// The RabbitMQ node's name.
    node: String,
}

/// How long a broker may take to accept connections, or to stop.
const WAIT: Duration = Duration::from_secs(90);

impl PrivateBroker {
    /// Starts `kind` on a free port and waits until it accepts connections.
    pub async fn start(kind: BrokerKind) -> std::io::Result<PrivateBroker> {
        let port = free_port()?;
        let dir = fresh_dir(&format!("private-{kind:?}"))?;
        let broker = PrivateBroker {
            kind,
            port,
            node: format!("pubsub-private-{port}@localhost"),
            dir,
            child: Mutex::new(None),
        };
        if kind == BrokerKind::RabbitMq {
            broker.write_rabbitmq_files()?;
        }
        broker.spawn()?;
        broker.wait_port(true).await?;
        Ok(broker)
    }

    /// The address it listens on (127.0.0.1).
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Which broker it is.
    pub fn kind(&self) -> BrokerKind {
        self.kind
    }

    /// Stops the broker as an operator would (SIGTERM; RabbitMQ: `rabbitmqctl stop_app`), so
    /// that it writes what it persists, and starts it again on the same port and data; returns
    /// once it accepts connections.
    pub async fn restart(&self) -> std::io::Result<()> {
        match self.kind {
            BrokerKind::RabbitMq => {
                self.rabbitmqctl("stop_app").await?;
                self.wait_port(false).await?;
                self.rabbitmqctl("start_app").await?;
            }
            BrokerKind::Redis | BrokerKind::Nats => {
                self.terminate().await?;
                self.spawn()?;
            }
        }
        self.wait_port(true).await
    }

    fn spawn(&self) -> std::io::Result<()> {
        let port = self.port.to_string();
        let dir = self.dir.display().to_string();
        let mut command = match self.kind {
            BrokerKind::Redis => {
                let mut c = Command::new("redis-server");
                c.args(["--bind", "127.0.0.1", "--port", &port, "--dir", &dir])
                    .args(["--appendonly", "yes", "--appendfsync", "always"])
                    .args(["--save", "", "--daemonize", "no"]);
                c
            }
            BrokerKind::Nats => {
                let mut c = Command::new("nats-server");
                c.args(["-a", "127.0.0.1", "-p", &port, "-js", "-sd", &dir]);
                c
            }
            BrokerKind::RabbitMq => {
                let mut c = Command::new("rabbitmq-server");
                c.env("RABBITMQ_NODENAME", &self.node)
                    .env("RABBITMQ_NODE_PORT", &port)
                    .env("RABBITMQ_DIST_PORT", free_port()?.to_string())
                    .env("RABBITMQ_CONFIG_FILE", self.dir.join("rabbitmq"))
                    .env("RABBITMQ_MNESIA_BASE", self.dir.join("mnesia"))
                    .env("RABBITMQ_LOG_BASE", self.dir.join("log"))
                    .env(
                        "RABBITMQ_ENABLED_PLUGINS_FILE",
                        self.dir.join("enabled_plugins"),
                    )
                    .env("RABBITMQ_PID_FILE", self.dir.join("pid"));
                c
            }
        };
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        *self.child.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
        Ok(())
    }

    /// A minimal configuration for a RabbitMQ node of its own (plain AMQP on the port).
    fn write_rabbitmq_files(&self) -> std::io::Result<()> {
        let conf = format!(
            "listeners.tcp.default = {}\nloopback_users = none\n",
            self.port
        );
        std::fs::write(self.dir.join("rabbitmq.conf"), conf)?;
        std::fs::write(self.dir.join("enabled_plugins"), "[].\n")?;
        // Started by root, the node runs as the `rabbitmq` user: it must own its directory.
        let _ = Command::new("chown")
            .args(["-R", "rabbitmq:rabbitmq"])
            .arg(&self.dir)
            .stderr(Stdio::null())
            .status();
        Ok(())
    }

    async fn rabbitmqctl(&self, what: &str) -> std::io::Result<()> {
        let node = self.node.clone();
        let what = what.to_string();
        let status = tokio::task::spawn_blocking(move || {
            Command::new("rabbitmqctl")
                .args(["-n", &node, &what])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
        })
        .await
        .map_err(std::io::Error::other)??;
        if status.success() {
            Ok(())
        } else {
            Err(std::io::Error::other(format!("rabbitmqctl: {status}")))
        }
    }

    /// SIGTERM to the server process, then waits for it to exit.
    async fn terminate(&self) -> std::io::Result<()> {
        let Some(mut child) = self.child.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return Ok(());
        };
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()?;
        let start = Instant::now();
        while child.try_wait()?.is_none() {
            if start.elapsed() > WAIT {
                let _ = child.kill();
                return Err(std::io::Error::other("the broker did not stop on SIGTERM"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    async fn wait_port(&self, open: bool) -> std::io::Result<()> {
        let start = Instant::now();
        loop {
            let accepts = tokio::net::TcpStream::connect(self.addr()).await.is_ok();
            if accepts == open {
                return Ok(());
            }
            if let Some(child) = self
                .child
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_mut()
            {
                if let Some(status) = child.try_wait()? {
                    return Err(std::io::Error::other(format!(
                        "{:?} exited ({status}); its files are in {}",
                        self.kind,
                        self.dir.display()
                    )));
                }
            }
            if start.elapsed() > WAIT {
                return Err(std::io::Error::other(format!(
                    "{:?} on {} did not {} within {WAIT:?}",
                    self.kind,
                    self.addr(),
                    if open { "open" } else { "close" }
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        if self.kind == BrokerKind::RabbitMq {
            let _ = Command::new("rabbitmqctl")
                .args(["-n", &self.node, "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        if let Some(mut child) = self.child.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
