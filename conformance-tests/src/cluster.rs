//! Local broker clusters a test starts, controls and stops: a NATS cluster ([`NatsCluster`],
//! `nats-server` processes joined by routes) and a Redis Cluster ([`RedisCluster`], masters with
//! replicas, created with `redis-cli --cluster create`).
//!
//! Every node listens on loopback ports chosen free at start, keeps its files in a directory of
//! its own under the system's temporary directory, and is killed when the cluster is dropped,
//! so a test can kill, freeze and restart nodes without disturbing anything else. The long-lived
//! clusters the conformance suite shares are started by `scripts/clusters.sh` instead.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use crate::failover::NodeControl;

/// How long a node may take to accept connections after its start.
const START_WAIT: Duration = Duration::from_secs(20);

/// A loopback port nobody listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

/// A fresh directory for one cluster's files.
fn cluster_dir(kind: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(crate::unique_prefix(kind));
    std::fs::create_dir_all(&dir).expect("creating the cluster's directory");
    dir
}

/// Whether 127.0.0.1:`port` accepts connections.
async fn accepts(port: u16) -> bool {
    tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_ok()
}

/// Waits until 127.0.0.1:`port` accepts connections.
async fn wait_open(what: &str, port: u16) {
    let deadline = Instant::now() + START_WAIT;
    while !accepts(port).await {
        assert!(
            Instant::now() < deadline,
            "{what} did not open port {port} within {START_WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `check` every 50 ms until it holds, for at most `limit`.
async fn wait_until<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "{what}: not the case after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends a signal to a process (`kill -STOP`, `-CONT`).
async fn signal(child: &Child, sig: &str) {
    let pid = child.id().expect("the node is not running").to_string();
    let status = Command::new("kill")
        .args([sig, &pid])
        .status()
        .await
        .expect("running kill");
    assert!(status.success(), "kill {sig} {pid}: {status}");
}

/// The node processes of a local cluster and the directory of their files: what a NATS cluster
/// and a Redis Cluster share. Every node has a client port chosen free at the start; the
/// processes are killed and the directory removed on drop.
struct Nodes {
    dir: PathBuf,
    /// The server binary (for messages).
    program: &'static str,
    ports: Vec<u16>,
    processes: Vec<Option<Child>>,
}

impl Nodes {
    fn new(kind: &str, program: &'static str, count: usize) -> Nodes {
        Nodes {
            dir: cluster_dir(kind),
            program,
            ports: (0..count).map(|_| free_port()).collect(),
            processes: (0..count).map(|_| None).collect(),
        }
    }

    /// Runs `command` as node `i` (no stdio; killed on drop).
    fn run(&mut self, i: usize, mut command: Command) {
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {} (is it installed?): {e}", self.program));
        self.processes[i] = Some(child);
    }

    /// Waits until node `i` accepts connections.
    async fn wait_open(&self, i: usize) {
        wait_open(self.program, self.ports[i]).await;
    }

    /// Whether node `i` runs.
    fn runs(&self, i: usize) -> bool {
        self.processes[i].is_some()
    }

    /// `scheme://127.0.0.1:p1,127.0.0.1:p2,…`: every node.
    fn url(&self, scheme: &str) -> String {
        let hosts: Vec<String> = self
            .ports
            .iter()
            .map(|port| format!("127.0.0.1:{port}"))
            .collect();
        format!("{scheme}://{}", hosts.join(","))
    }

    /// Kills node `i` (SIGKILL).
    async fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.processes[i].take() {
            let _ = child.kill().await;
        }
    }

    /// Sends `sig` (`-STOP`, `-CONT`) to node `i`, if it runs.
    async fn signal(&self, i: usize, sig: &str) {
        if let Some(child) = &self.processes[i] {
            signal(child, sig).await;
        }
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for child in self.processes.iter_mut().flatten() {
            // A frozen node ignores SIGTERM but not SIGKILL.
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The other ports of a `nats-server` of a [`NatsCluster`].
struct NatsPorts {
    route: u16,
    monitor: u16,
}

/// A NATS cluster of `nats-server` processes on loopback, fully meshed by routes.
///
/// ```no_run
/// # async fn demo() {
/// use conformance_tests::cluster::NatsCluster;
/// let mut cluster = NatsCluster::start(3).await;
/// let url = cluster.url(); // nats://127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3
/// let node = cluster.node_of("subscriber").await; // where the client named so is connected
/// cluster.kill(node.unwrap()).await;
/// # }
/// ```
pub struct NatsCluster {
    nodes: Nodes,
    ports: Vec<NatsPorts>,
}

impl NatsCluster {
    /// Starts `size` nodes and waits until every node has a route to every other.
    pub async fn start(size: usize) -> NatsCluster {
        let nodes = Nodes::new("nats_cluster", "nats-server", size);
        let ports = (0..size)
            .map(|_| NatsPorts {
                route: free_port(),
                monitor: free_port(),
            })
            .collect();
        let mut cluster = NatsCluster { nodes, ports };
        for i in 0..size {
            cluster.spawn(i);
        }
        for i in 0..size {
            cluster.nodes.wait_open(i).await;
        }
        cluster.wait_meshed().await;
        cluster
    }

    fn spawn(&mut self, i: usize) {
        let routes: Vec<String> = self
            .ports
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, p)| format!("nats://127.0.0.1:{}", p.route))
            .collect();
        let (port, ports) = (self.nodes.ports[i], &self.ports[i]);
        let log = self.nodes.dir.join(format!("nats-{port}.log"));
        let mut command = Command::new(nats_server());
        command
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .args(["-m", &ports.monitor.to_string()])
            .args(["--cluster_name", "pubsub-test"])
            .args(["--cluster", &format!("nats://127.0.0.1:{}", ports.route)])
            .args(["--routes", &routes.join(",")])
            .args(["-n", &format!("node{i}")])
            .arg("-l")
            .arg(&log);
        self.nodes.run(i, command);
    }

    /// Waits until every running node has a route to every other running node.
    async fn wait_meshed(&self) {
        let running: Vec<usize> = (0..self.ports.len())
            .filter(|i| self.nodes.runs(*i))
            .collect();
        let want = running.len().saturating_sub(1);
        for i in running {
            let port = self.ports[i].monitor;
            wait_until("the NATS cluster's routes", START_WAIT, || async move {
                http_get(port, "/routez")
                    .await
                    .is_some_and(|body| json_number(&body, "num_routes") == Some(want as u64))
            })
            .await;
        }
    }

    /// `nats://127.0.0.1:p1,127.0.0.1:p2,…`: every node, as a client URL.
    pub fn url(&self) -> String {
        self.nodes.url("nats")
    }

    /// The client URL of node `i` alone.
    pub fn node_url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes.ports[i])
    }

    /// The node where a client with connection name `name` is connected, if any.
    pub async fn node_of(&self, name: &str) -> Option<usize> {
        let needle = format!("\"name\": \"{name}\"");
        for (i, ports) in self.ports.iter().enumerate() {
            if !self.nodes.runs(i) {
                continue;
            }
            if let Some(body) = http_get(ports.monitor, "/connz").await {
                if body.contains(&needle) {
                    return Some(i);
                }
            }
        }
        None
    }

    /// Kills node `i` (SIGKILL: no goodbye to its clients or routes).
    pub async fn kill(&mut self, i: usize) {
        self.nodes.kill(i).await;
    }

    /// Starts node `i` again (after [`NatsCluster::kill`]) and waits until the cluster is
    /// whole.
    pub async fn restart(&mut self, i: usize) {
        self.spawn(i);
        self.nodes.wait_open(i).await;
        self.wait_meshed().await;
    }
}

/// The `nats-server` binary: `NATS_SERVER` or the one on `PATH` (Debian installs it in
/// `/usr/sbin`).
fn nats_server() -> String {
    if let Ok(path) = std::env::var("NATS_SERVER") {
        return path;
    }
    if Path::new("/usr/sbin/nats-server").exists() {
        return "/usr/sbin/nats-server".to_string();
    }
    "nats-server".to_string()
}

/// `GET path` on the loopback HTTP server at `port`; the body, or `None` when it fails.
async fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&response);
    text.split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
}

/// The first number after `"key":` in a JSON text.
fn json_number(body: &str, key: &str) -> Option<u64> {
    let at = body.find(&format!("\"{key}\""))?;
    let rest = body[at + key.len() + 2..].trim_start().strip_prefix(':')?;
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// A Redis Cluster on loopback: `masters` masters with `replicas` replicas each, a short
/// `cluster-node-timeout` (1 s) so that a replica takes over quickly when its master dies.
pub struct RedisCluster {
    nodes: Nodes,
}

/// `cluster-node-timeout` of a test cluster, in milliseconds.
pub const REDIS_NODE_TIMEOUT_MS: u64 = 1000;

impl RedisCluster {
    /// Starts the nodes, creates the cluster and waits until every node says it is ok.
    pub async fn start(masters: usize, replicas: usize) -> RedisCluster {
        let count = masters * (1 + replicas);
        let mut cluster = RedisCluster {
            nodes: Nodes::new("redis_cluster", "redis-server", count),
        };
        for i in 0..count {
            cluster.spawn(i);
        }
        for i in 0..count {
            cluster.nodes.wait_open(i).await;
        }
        let addrs: Vec<String> = cluster
            .nodes
            .ports
            .iter()
            .map(|port| format!("127.0.0.1:{port}"))
            .collect();
        let output = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .await
            .expect("running redis-cli --cluster create (is redis-cli installed?)");
        assert!(
            output.status.success(),
            "redis-cli --cluster create: {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout)
        );
        cluster.wait_ok().await;
        cluster
    }

    fn spawn(&mut self, i: usize) {
        let port = self.nodes.ports[i].to_string();
        let dir = self.nodes.dir.join(&port);
        std::fs::create_dir_all(&dir).expect("creating a Redis node's directory");
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &port, "--bind", "127.0.0.1"])
            .args(["--cluster-enabled", "yes"])
            .args(["--cluster-node-timeout", &REDIS_NODE_TIMEOUT_MS.to_string()])
            .args(["--cluster-replica-validity-factor", "0"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .arg("--logfile")
            .arg(dir.join("redis.log"));
        self.nodes.run(i, command);
    }

    /// Waits until every running node reports `cluster_state:ok` and every slot served.
    async fn wait_ok(&self) {
        for (i, &port) in self.nodes.ports.iter().enumerate() {
            if !self.nodes.runs(i) {
                continue;
            }
            wait_until("the Redis Cluster's state", START_WAIT, || async move {
                redis_cli(port, &["cluster", "info"])
                    .await
                    .is_some_and(|info| {
                        info.contains("cluster_state:ok") && info.contains("cluster_slots_ok:16384")
                    })
            })
            .await;
        }
    }

    /// `redis://127.0.0.1:p1,127.0.0.1:p2,…`: every node, as seeds of a cluster URL.
    pub fn url(&self) -> String {
        self.nodes.url("redis")
    }

    /// The running node that holds a connection subscribed to something (`sub` or `psub`
    /// above 0 in `CLIENT LIST`), if any: in a test where one handle subscribes, its node.
    pub async fn node_with_subscriber(&self) -> Option<usize> {
        for (i, &port) in self.nodes.ports.iter().enumerate() {
            if !self.nodes.runs(i) {
                continue;
            }
            let Some(list) = redis_cli(port, &["client", "list"]).await else {
                continue;
            };
            let subscribed = list.lines().any(|line| {
                line.split(' ').any(
                    |field| matches!(field.split_once('='), Some(("sub" | "psub", n)) if n != "0"),
                )
            });
            if subscribed {
                return Some(i);
            }
        }
        None
    }

    /// Whether node `i` is a master now.
    pub async fn is_master(&self, i: usize) -> bool {
        redis_cli(self.nodes.ports[i], &["role"])
            .await
            .is_some_and(|role| role.starts_with("master"))
    }

    /// Kills node `i` (SIGKILL).
    pub async fn kill(&mut self, i: usize) {
        self.nodes.kill(i).await;
    }

    /// Stops node `i` without closing anything (SIGSTOP): its sockets stay open, silent.
    pub async fn freeze(&self, i: usize) {
        self.nodes.signal(i, "-STOP").await;
    }

    /// Lets node `i` run again after [`RedisCluster::freeze`].
    pub async fn thaw(&self, i: usize) {
        self.nodes.signal(i, "-CONT").await;
    }

    /// Starts node `i` again (it rejoins from its cluster file, as a replica if its replica
    /// took over) and waits until the cluster is ok.
    pub async fn restart(&mut self, i: usize) {
        self.spawn(i);
        self.nodes.wait_open(i).await;
        self.wait_ok().await;
    }

    /// Waits until the cluster serves every slot again (after a failover).
    pub async fn wait_healthy(&self) {
        self.wait_ok().await;
    }
}

/// `redis-cli -p port args…`; its output, or `None` when it fails.
async fn redis_cli(port: u16, args: &[&str]) -> Option<String> {
    let output = tokio::time::timeout(
        Duration::from_secs(5),
        Command::new("redis-cli")
            .args(["-p", &port.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .ok()?
    .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

#[async_trait::async_trait]
impl NodeControl for RedisCluster {
    /// The master holding the handle's subscriber connection, or the first master.
    async fn node_of_handle(&self) -> usize {
        if let Some(node) = self.node_with_subscriber().await {
            return node;
        }
        for i in 0..self.nodes.ports.len() {
            if self.nodes.runs(i) && self.is_master(i).await {
                return i;
            }
        }
        panic!("no running master in the Redis Cluster");
    }

    async fn kill(&mut self, i: usize) {
        RedisCluster::kill(self, i).await;
    }

    async fn restart(&mut self, i: usize) {
        RedisCluster::restart(self, i).await;
    }

    async fn freeze(&self, i: usize) {
        RedisCluster::freeze(self, i).await;
    }

    async fn thaw(&self, i: usize) {
        RedisCluster::thaw(self, i).await;
    }
}

#[cfg(test)]
mod tests {
    use super::json_number;

    #[test]
    fn numbers_from_monitoring_json() {
        let body = "{\n  \"server_id\": \"X\",\n  \"num_routes\": 2,\n  \"routes\": []\n}";
        assert_eq!(json_number(body, "num_routes"), Some(2));
        assert_eq!(json_number(body, "missing"), None);
        assert_eq!(json_number(body, "server_id"), None);
    }
}
