//! `socketio-chat --url <pubsub url> --listen <addr> [--name NODE]`: the socket.io chat (see the
//! crate docs). Run two or more on one broker URL and their clients share rooms.
//!
//! The URL defaults to `$PUBSUB_URL`, then `memory://`; the address to `127.0.0.1:3000`.
//! Logs go to stderr (`RUST_LOG`, default `info`).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use pubsub_socketio_chat::{start, ChatOptions};

const USAGE: &str = "usage: socketio-chat [--url PUBSUB_URL] [--listen ADDR] [--name NODE] [--root TOPIC]
                     [--heartbeat-ms N] [--expiry-ms N] [--request-timeout-ms N]
  --url                 pub/sub URL: memory://, redis://host:6379, nats://host:4222, amqp://host:5672
                        (default: $PUBSUB_URL or memory://)
  --listen              address to serve on (default: 127.0.0.1:3000)
  --name                this node's name (default: node-<pid>)
  --root                root topic shared by the nodes of one cluster (default: socketio-chat)
  --heartbeat-ms        presence heartbeat interval (default 1000)
  --expiry-ms           presence expiry: when a silent node stops being waited for (default 3000)
  --request-timeout-ms  how long cross-node requests wait for answers (default 5000)";

struct Args {
    url: String,
    listen: SocketAddr,
    options: ChatOptions,
}

fn millis(flag: &str, value: Option<String>) -> Result<Duration, String> {
    let value = value.ok_or(format!("{flag} needs a value"))?;
    value
        .parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| format!("{flag}: `{value}` is not a number of milliseconds"))
}

/// The arguments, `Ok(None)` for `--help`, or what is wrong with them.
fn parse_args() -> Result<Option<Args>, String> {
    let mut url = std::env::var("PUBSUB_URL").unwrap_or_else(|_| "memory://".to_string());
    let mut listen = SocketAddr::from(([127, 0, 0, 1], 3000));
    let mut options = ChatOptions::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--url" => url = args.next().ok_or("--url needs a value")?,
            "--listen" => {
                let value = args.next().ok_or("--listen needs a value")?;
                listen = value.parse().map_err(|_| {
                    format!("--listen: `{value}` is not an address like 127.0.0.1:3000")
                })?;
            }
            "--root" => options.root = args.next().ok_or("--root needs a value")?,
            "--name" => options.node = args.next().ok_or("--name needs a value")?,
            "--heartbeat-ms" => options.heartbeat = millis(&arg, args.next())?,
            "--expiry-ms" => options.expiry = millis(&arg, args.next())?,
            "--request-timeout-ms" => options.request_timeout = millis(&arg, args.next())?,
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        }
    }
    Ok(Some(Args {
        url,
        listen,
        options,
    }))
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = match parse_args() {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let hub = match pubsub::connect(&args.url).await {
        Ok(hub) => hub,
        Err(error) => {
            eprintln!("cannot connect to the pub/sub backend: {error}");
            return ExitCode::FAILURE;
        }
    };
    let node = match start(Arc::new(hub.clone()), args.options).await {
        Ok(node) => node,
        Err(error) => {
            eprintln!("cannot start the chat: {error}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("cannot listen on {}: {error}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(listen = %args.listen, backend = hub.backend(), node = node.driver.presence().node_id(), "socket.io chat serving");
    // On SIGTERM: announce the departure and close the socket.io connections, which lets the
    // HTTP server's graceful shutdown finish.
    let closing = node.clone();
    let served = axum::serve(listener, node.router.clone())
        .with_graceful_shutdown(async move {
            pubsub::shutdown_signal().await;
            tracing::info!("shutting down");
            closing.shutdown().await;
        })
        .await;
    let _ = hub.close().await;
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("server error: {error}");
            ExitCode::FAILURE
        }
    }
}
