//! A binary of the workspace run as a child process, for the tests that run two server
//! processes on one broker (the gateway's, the chat example's, the socket.io example's).
//!
//! [`Server::start`] spawns the command, keeps its stderr lines (echoed when the test's log
//! variable is set), waits until `GET /healthz` answers 200, and kills the process when dropped.
//! [`Server::sigterm`] and [`Server::exits_cleanly`] are a graceful stop, in two steps so that a
//! test can check what the stop closes in between; [`Server::kill`] is a crash.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::time::{sleep, timeout, Instant};

/// A name no other run of these tests uses: `{tag}-{pid}-{nanos}`.
pub fn unique(tag: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{tag}-{}-{nanos}", std::process::id())
}

/// A local address that was free a moment ago (for a server's `--listen`).
pub async fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free local port");
    listener.local_addr().expect("the port's address")
}

/// `GET path` on `addr`: the status code and the body, or `None` if the server is not there
/// (or does not answer within 3 s).
pub async fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let request = async {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        let head = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(head.as_bytes()).await.ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await.ok()?;
        let status = response.split(' ').nth(1)?.parse().ok()?;
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())?;
        Some((status, body))
    };
    timeout(Duration::from_secs(3), request)
        .await
        .ok()
        .flatten()
}

/// Polls `GET /healthz` on `addr` until it answers `status` (within `within`); returns the
/// body. `what` names the wait in the panic message.
pub async fn wait_health(addr: SocketAddr, status: u16, what: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let answer = http_get(addr, "/healthz").await;
        if let Some((code, body)) = &answer {
            if *code == status {
                return body.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "{what}: /healthz on {addr} did not answer {status} within {within:?} (last: {answer:?})"
        );
        sleep(Duration::from_millis(50)).await;
    }
}

/// How a test's server processes log: `RUST_LOG` is the value of the test's own variable
/// (such as `CHAT_TEST_LOG`) or `default_filter`; the lines are echoed to the test's stderr,
/// tagged with the server's name, only when that variable is set.
#[derive(Debug, Clone, Copy)]
pub struct Logging {
    /// The test's log variable.
    pub variable: &'static str,
    /// `RUST_LOG` when the variable is not set.
    pub default_filter: &'static str,
}

/// A server process of a test; killed when dropped. Its stderr lines are kept ([`Server::log`]).
#[derive(Debug)]
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its name in messages and echoed log lines.
    pub name: String,
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Spawns `command` (which makes the server listen on `addr`) with stdin and stdout closed
    /// and stderr kept, then waits up to `within` until `GET /healthz` on `addr` answers 200.
    /// Panics, with the server's log, if it exits first or is not ready in time.
    pub async fn start(
        name: &str,
        mut command: Command,
        addr: SocketAddr,
        logging: Logging,
        within: Duration,
    ) -> Server {
        let echo = std::env::var(logging.variable).ok();
        command
            .env(
                "RUST_LOG",
                echo.as_deref().unwrap_or(logging.default_filter),
            )
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let log = Arc::new(Mutex::new(Vec::new()));
        if let Some(stderr) = child.stderr.take() {
            let (lines, tag, echo) = (log.clone(), name.to_string(), echo.is_some());
            tokio::spawn(async move {
                let mut reader = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = reader.next_line().await {
                    if echo {
                        eprintln!("[{tag}] {line}");
                    }
                    lines.lock().expect("the log lock").push(line);
                }
            });
        }
        let mut server = Server {
            addr,
            name: name.to_string(),
            child,
            log,
        };
        let deadline = Instant::now() + within;
        while !matches!(http_get(addr, "/healthz").await, Some((200, _))) {
            if let Some(status) = server.child.try_wait().expect("the child's status") {
                panic!(
                    "{name} on {addr} exited before it was ready: {status}\n{}",
                    server.log().join("\n")
                );
            }
            assert!(
                Instant::now() < deadline,
                "{name} on {addr} not ready in {within:?}\n{}",
                server.log().join("\n")
            );
            sleep(Duration::from_millis(50)).await;
        }
        server
    }

    /// The stderr lines so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().expect("the log lock").clone()
    }

    /// Waits until a stderr line contains `text`.
    pub async fn wait_log(&self, text: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.log().iter().any(|l| l.contains(text)) {
            assert!(
                Instant::now() < deadline,
                "{}: no log line with {text:?} within {within:?}:\n{}",
                self.name,
                self.log().join("\n")
            );
            sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL: a crash, nothing announced.
    pub async fn kill(mut self) {
        self.child.kill().await.expect("SIGKILL");
    }

    /// Sends SIGTERM (the first half of a graceful stop).
    pub async fn sigterm(&self) {
        let pid = self.child.id().expect("a running child").to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .expect("kill runs");
        assert!(status.success(), "kill -TERM {pid}");
    }

    /// Waits up to `within` for the process to exit, and asserts that it exited 0.
    pub async fn exits_cleanly(mut self, within: Duration) {
        let exit = timeout(within, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("{} did not exit after SIGTERM", self.name))
            .expect("the child's status");
        assert!(
            exit.success(),
            "{} exit status after SIGTERM: {exit}\n{}",
            self.name,
            self.log().join("\n")
        );
    }

    /// SIGTERM, then the process must exit 0 within `within`.
    pub async fn terminate(self, within: Duration) {
        self.sigterm().await;
        self.exits_cleanly(within).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_differ() {
        assert_ne!(unique("a"), unique("a"));
        assert!(unique("room").starts_with(&format!("room-{}-", std::process::id())));
    }

    #[tokio::test]
    async fn nothing_listening_is_no_answer() {
        let addr = free_port().await;
        assert_eq!(http_get(addr, "/healthz").await, None);
    }
}
