//! `pubsub-gateway`: the HTTP, WebSocket and SSE gateway as a server (see the crate docs and
//! `pubsub-gateway --help`).

use std::process::ExitCode;

use clap::Parser;
use pubsub_gateway::server::{init_logging, ServeArgs};

/// HTTP, WebSocket and Server-Sent Events gateway over any pubsub backend.
#[derive(Debug, Parser)]
#[command(name = "pubsub-gateway", version)]
struct Cli {
    #[command(flatten)]
    serve: ServeArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match cli.serve.run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "gateway failed");
            eprintln!("pubsub-gateway: {error}");
            ExitCode::FAILURE
        }
    }
}
