//! The gateway as a command: [`ServeArgs`] (shared by `pubsub-gateway` and `pubsub serve`),
//! configuration precedence and logging.
//!
//! Settings come from, in increasing precedence: defaults, the TOML file (`--config`), the
//! environment (see [`config`](crate::config)), then the command line (`--backend`,
//! `--listen`, `--static-dir`).

use std::net::SocketAddr;
use std::path::PathBuf;

use pubsub::Secret;

use crate::{GatewayConfig, GatewayError};

/// Command-line options of the gateway server.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Pub/sub URL: memory://, redis://host:6379, nats://host:4222, amqp://host:5672
    /// (default: the file, $PUBSUB_GATEWAY_BACKEND, $PUBSUB_URL, then memory://).
    #[arg(long, short = 'b', value_name = "URL")]
    pub backend: Option<String>,
    /// Address to listen on (default 127.0.0.1:8080).
    #[arg(long, short = 'l', value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Folder of files to serve under `/`.
    #[arg(long, value_name = "DIR")]
    pub static_dir: Option<PathBuf>,
}

impl ServeArgs {
    /// The configuration these options describe: defaults, file, environment, options.
    pub fn config(&self) -> Result<GatewayConfig, GatewayError> {
        let mut config = match &self.config {
            Some(path) => GatewayConfig::from_file(path)?,
            None => GatewayConfig::default(),
        };
        config.apply_env()?;
        if let Some(backend) = &self.backend {
            config.backend = Secret::from(backend.as_str());
        }
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        if let Some(dir) = &self.static_dir {
            config.static_dir = Some(dir.clone());
        }
        config.validate()?;
        Ok(config)
    }

    /// Runs the gateway until Ctrl-C or SIGTERM.
    pub async fn run(&self) -> Result<(), GatewayError> {
        crate::run(self.config()?, crate::shutdown_signal()).await
    }
}

/// Logs to stderr: `RUST_LOG` filters (default `info`); `PUBSUB_LOG_FORMAT=json` gives one
/// JSON object per line. Colours only when stderr is a terminal (not in a file or a pipe).
pub fn init_logging() {
    init_logging_with("info");
}

/// Like [`init_logging`], with `default_filter` when `RUST_LOG` is not set (the `pubsub`
/// command logs `warn` and above for `pub`, `sub` and `bench`).
pub fn init_logging_with(default_filter: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let json = std::env::var("PUBSUB_LOG_FORMAT").is_ok_and(|v| v == "json");
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
