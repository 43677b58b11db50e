//! `chat --url <pubsub url> --listen <addr>`: the multi-room WebSocket chat (see the crate docs).
//!
//! The URL defaults to `$PUBSUB_URL`, then `memory://`; the address to `127.0.0.1:3000`.
//! Logs go to stderr (`RUST_LOG`, default `info`).

use std::net::SocketAddr;
use std::process::ExitCode;

const USAGE: &str = "usage: chat [--url PUBSUB_URL] [--listen ADDR]
  --url     pub/sub URL: memory://, redis://host:6379, nats://host:4222 (default: $PUBSUB_URL or memory://)
  --listen  address to serve on (default: 127.0.0.1:3000)";

struct Args {
    url: String,
    listen: SocketAddr,
}

/// The arguments, `Ok(None)` for `--help`, or what is wrong with them.
fn parse_args() -> Result<Option<Args>, String> {
    let mut url = std::env::var("PUBSUB_URL").unwrap_or_else(|_| "memory://".to_string());
    let mut listen = SocketAddr::from(([127, 0, 0, 1], 3000));
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
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        }
    }
    Ok(Some(Args { url, listen }))
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
    match pubsub_chat::run(&args.url, args.listen, pubsub::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("chat: {error}");
            ExitCode::FAILURE
        }
    }
}
