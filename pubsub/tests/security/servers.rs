//! Private `redis-server` and `nats-server` instances on free loopback ports, and the test
//! certificates: each lives in a directory of its own and is gone when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pubsub_test_support::scratch;

/// How long a server may take to accept connections.
const START_WAIT: Duration = Duration::from_secs(15);

/// A fresh directory under the system's temporary directory.
fn fresh_dir(kind: &str) -> PathBuf {
    scratch::fresh_dir(&format!("security-{kind}")).expect("creating a test directory")
}

/// A loopback port nobody listens on right now.
fn free_port() -> u16 {
    scratch::free_port().expect("no free loopback port")
}

/// The certificates `scripts/tls.sh` generates, in a directory of their own.
pub struct Certs {
    dir: PathBuf,
}

impl Certs {
    /// Runs `scripts/tls.sh` into a fresh directory.
    pub fn generate() -> Certs {
        let dir = fresh_dir("certs");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/tls.sh");
        let status = Command::new("bash")
            .arg(&script)
            .arg(&dir)
            .status()
            .expect("running scripts/tls.sh");
        assert!(status.success(), "scripts/tls.sh failed: {status}");
        Certs { dir }
    }

    /// One of the files (`ca.pem`, `server.key`, `client.pem`, `other-ca.pem`, …).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A running server process, killed when dropped.
pub struct Server {
    child: Child,
    /// Its loopback port (the TLS port when it has TLS).
    pub port: u16,
    dir: PathBuf,
    log: PathBuf,
    /// A log line holding one of these is one connection the server accepted (or refused in
    /// its TLS handshake).
    accepted: &'static [&'static str],
    /// More directories to remove with it.
    extra_dirs: Vec<PathBuf>,
}

impl Server {
    /// How many connections the server accepted so far (from its log).
    pub fn connections(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| self.accepted.iter().any(|mark| l.contains(mark)))
            .count()
    }

    /// Waits until the port accepts connections, then lets the probe's log line land.
    fn wait_ready(mut self) -> Server {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "the server exited ({status}): {}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                std::thread::sleep(Duration::from_millis(150));
                return self;
            }
            assert!(
                start.elapsed() < START_WAIT,
                "nothing listens on 127.0.0.1:{}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Server {
    /// Removes `dir` too when the server is dropped.
    fn keep(&mut self, dir: PathBuf) {
        self.extra_dirs.push(dir);
    }

    /// Rewrites the configuration file of a server from [`nats_with_config`] and has it
    /// reload it (`SIGHUP`), as an operator revoking a permission would.
    pub fn reload_nats_config(&self, conf: &str) {
        let path = self
            .extra_dirs
            .iter()
            .map(|d| d.join("nats.conf"))
            .find(|p| p.exists())
            .expect("a server started by nats_with_config");
        std::fs::write(&path, conf).expect("writing nats.conf");
        let status = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -HUP failed: {status}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
        for dir in &self.extra_dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// How a private server listens.
pub enum Listen<'a> {
    /// Plain TCP.
    Plain,
    /// TLS only, with the test server certificate; `verify_clients` requires a client
    /// certificate signed by the test CA (mutual TLS).
    Tls {
        certs: &'a Certs,
        verify_clients: bool,
    },
}

/// A `redis-server` on a free port, with `extra` arguments (`--requirepass …`, `--user …`).
pub fn redis(listen: Listen<'_>, extra: &[&str]) -> Server {
    let dir = fresh_dir("redis");
    let log = dir.join("redis.log");
    let port = free_port();
    let mut cmd = Command::new("redis-server");
    cmd.args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(&dir)
        .arg("--logfile")
        .arg(&log)
        .args(["--loglevel", "verbose"]);
    match listen {
        Listen::Plain => {
            cmd.args(["--port", &port.to_string()]);
        }
        Listen::Tls {
            certs,
            verify_clients,
        } => {
            cmd.args(["--port", "0", "--tls-port", &port.to_string()])
                .arg("--tls-cert-file")
                .arg(certs.path("server.pem"))
                .arg("--tls-key-file")
                .arg(certs.path("server.key"))
                .arg("--tls-ca-cert-file")
                .arg(certs.path("ca.pem"))
                .args([
                    "--tls-auth-clients",
                    if verify_clients { "yes" } else { "no" },
                ]);
        }
    }
    let child = cmd
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting redis-server");
    Server {
        child,
        port,
        dir,
        log,
        accepted: &["Accepted "],
        extra_dirs: Vec::new(),
    }
    .wait_ready()
}

/// A `nats-server` on a free port (debug log: one line per accepted connection), with `extra`
/// arguments (`--user`/`--pass`, `--auth`).
pub fn nats(listen: Listen<'_>, extra: &[&str]) -> Server {
    let dir = fresh_dir("nats");
    let log = dir.join("nats.log");
    let port = free_port();
    let mut cmd = Command::new("nats-server");
    cmd.args(["-a", "127.0.0.1", "-p", &port.to_string(), "-D", "-l"])
        .arg(&log);
    if let Listen::Tls {
        certs,
        verify_clients,
    } = listen
    {
        cmd.arg("--tls")
            .arg("--tlscert")
            .arg(certs.path("server.pem"))
            .arg("--tlskey")
            .arg(certs.path("server.key"));
        if verify_clients {
            cmd.arg("--tlsverify")
                .arg("--tlscacert")
                .arg(certs.path("ca.pem"));
        }
    }
    let child = cmd
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting nats-server");
    Server {
        child,
        port,
        dir,
        log,
        accepted: &["Client connection created"],
        extra_dirs: Vec::new(),
    }
    .wait_ready()
}

/// A `nats-server` on a free port with the configuration file text `conf` (accounts, users,
/// permissions).
pub fn nats_with_config(conf: &str) -> Server {
    let dir = fresh_dir("nats-conf");
    let path = dir.join("nats.conf");
    std::fs::write(&path, conf).expect("writing nats.conf");
    let path = path.to_str().expect("a UTF-8 temporary path").to_string();
    let mut server = nats(Listen::Plain, &["-c", &path]);
    // The configuration lives as long as the server.
    server.keep(dir);
    server
}

/// A second RabbitMQ node (its own node name, ports, files and plugin list: nothing shared with
/// the machine's broker but the Erlang port mapper) with only a TLS listener, which requires a
/// client certificate signed by the test CA. Stopped with `rabbitmqctl stop` when dropped.
pub struct Rabbit {
    server: Server,
    node: String,
}

impl std::ops::Deref for Rabbit {
    type Target = Server;

    fn deref(&self) -> &Server {
        &self.server
    }
}

impl Drop for Rabbit {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .args(["-n", &self.node, "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Starts a [`Rabbit`] node with mutual TLS; waits up to a minute for it.
pub fn rabbitmq_mutual_tls(certs: &Certs) -> Rabbit {
    let dir = fresh_dir("rabbitmq");
    let port = free_port();
    let node = format!("pubsub-tls-{port}@localhost");
    // The node runs as the `rabbitmq` user when started by root: it gets copies it can read.
    for name in ["ca.pem", "server.pem", "server.key"] {
        std::fs::copy(certs.path(name), dir.join(name)).expect("copying a certificate");
    }
    let conf = format!(
        "listeners.tcp = none\n\
         listeners.ssl.default = {port}\n\
         ssl_options.cacertfile = {dir}/ca.pem\n\
         ssl_options.certfile = {dir}/server.pem\n\
         ssl_options.keyfile = {dir}/server.key\n\
         ssl_options.verify = verify_peer\n\
         ssl_options.fail_if_no_peer_cert = true\n\
         loopback_users = none\n",
        dir = dir.display()
    );
    std::fs::write(dir.join("rabbitmq.conf"), conf).expect("writing rabbitmq.conf");
    std::fs::write(dir.join("enabled_plugins"), "[].\n").expect("writing enabled_plugins");
    let _ = Command::new("chown")
        .args(["-R", "rabbitmq:rabbitmq"])
        .arg(&dir)
        .stderr(Stdio::null())
        .status();
    let log_dir = dir.join("log");
    let child = Command::new("rabbitmq-server")
        .env("RABBITMQ_NODENAME", &node)
        .env("RABBITMQ_NODE_PORT", port.to_string())
        .env("RABBITMQ_DIST_PORT", free_port().to_string())
        .env("RABBITMQ_CONFIG_FILE", dir.join("rabbitmq"))
        .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
        .env("RABBITMQ_LOG_BASE", &log_dir)
        .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins"))
        .env("RABBITMQ_PID_FILE", dir.join("pid"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting rabbitmq-server");
    let server = Server {
        child,
        port,
        log: log_dir.join(format!("{node}.log")),
        dir,
        accepted: &["accepting AMQP connection", "TLS server: "],
        extra_dirs: Vec::new(),
    };
    // Boot takes a few seconds; the port opens once the node is ready.
    let start = Instant::now();
    let mut server = server;
    loop {
        if let Ok(Some(status)) = server.child.try_wait() {
            panic!("rabbitmq-server exited ({status})");
        }
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the RabbitMQ node did not open 127.0.0.1:{port}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    Rabbit { server, node }
}
