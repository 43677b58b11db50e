//! `pubsub`: publish, subscribe, benchmark and serve on any pubsub backend URL
//! (`memory://`, `redis://…`, `nats://…`, `amqp://…`). See `pubsub --help`.

mod bench;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use futures::StreamExt;
use pubsub::{Delivery, Headers, Message, Pattern, Topic};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Publish, subscribe, benchmark or serve the gateway on a pubsub backend.
#[derive(Debug, Parser)]
#[command(name = "pubsub", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Publish a message (the payload argument, or standard input with `-` or none).
    Pub {
        /// Backend URL: memory://, redis://host:6379, nats://host:4222, amqp://host:5672.
        url: String,
        /// Topic, such as room.42.msg.
        topic: String,
        /// Payload; `-` or absent reads standard input.
        payload: Option<String>,
        /// A header `name=value` (repeatable).
        #[arg(short = 'H', long = "header", value_name = "NAME=VALUE")]
        headers: Vec<String>,
        /// How many times to publish it.
        #[arg(long, default_value_t = 1)]
        count: u64,
        /// At most this many messages per second (0: as fast as accepted).
        #[arg(long, default_value_t = 0.0)]
        rate: f64,
    },
    /// Print messages matching the patterns, one JSON object per line (or raw payloads).
    Sub {
        /// Backend URL.
        url: String,
        /// Patterns, such as room.*.msg or room.42.>.
        #[arg(required = true)]
        patterns: Vec<String>,
        /// Print each payload as it is, followed by a newline, instead of JSON.
        #[arg(long)]
        raw: bool,
        /// Stop after this many messages.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Measure throughput and latency: publishers, subscribers, message size and count.
    Bench(bench::BenchArgs),
    /// Run the HTTP/WebSocket/SSE gateway (see `pubsub-gateway --help`).
    Serve(pubsub_gateway::server::ServeArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Pub {
            url,
            topic,
            payload,
            headers,
            count,
            rate,
        } => publish(&url, &topic, payload, &headers, count, rate).await,
        Command::Sub {
            url,
            patterns,
            raw,
            count,
        } => subscribe(&url, &patterns, raw, count).await,
        Command::Bench(args) => bench::run(args).await,
        Command::Serve(args) => {
            pubsub_gateway::server::init_logging();
            args.run().await.map_err(|e| e.to_string())
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("pubsub: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Parses `name=value` headers.
fn parse_headers(pairs: &[String]) -> Result<Headers, String> {
    let mut headers = Headers::default();
    for pair in pairs {
        let (name, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("header `{pair}` is not NAME=VALUE"))?;
        headers.insert(name, value).map_err(|e| e.to_string())?;
    }
    Ok(headers)
}

async fn publish(
    url: &str,
    topic: &str,
    payload: Option<String>,
    headers: &[String],
    count: u64,
    rate: f64,
) -> Result<(), String> {
    let topic: Topic = topic.parse().map_err(|e| format!("topic: {e}"))?;
    let headers = parse_headers(headers)?;
    let payload = match payload.as_deref() {
        Some("-") | None => {
            let mut bytes = Vec::new();
            tokio::io::stdin()
                .read_to_end(&mut bytes)
                .await
                .map_err(|e| format!("reading standard input: {e}"))?;
            bytes::Bytes::from(bytes)
        }
        Some(text) => bytes::Bytes::from(text.to_string()),
    };
    let hub = pubsub::connect(url).await.map_err(|e| e.to_string())?;
    let mut ticker = (rate > 0.0).then(|| {
        let mut interval = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval
    });
    let mut outcome = Ok(());
    for _ in 0..count {
        if let Some(ticker) = ticker.as_mut() {
            ticker.tick().await;
        }
        let message = Message::with_headers(topic.clone(), payload.clone(), headers.clone());
        if let Err(e) = hub.publish(message).await {
            outcome = Err(e.to_string());
            break;
        }
    }
    hub.close().await.map_err(|e| e.to_string())?;
    outcome
}

async fn subscribe(
    url: &str,
    patterns: &[String],
    raw: bool,
    count: Option<u64>,
) -> Result<(), String> {
    let patterns = patterns
        .iter()
        .map(|p| Pattern::new(p).map_err(|e| format!("pattern `{p}`: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let hub = pubsub::connect(url).await.map_err(|e| e.to_string())?;
    let subscription = hub
        .subscribe_all(patterns, Default::default())
        .await
        .map_err(|e| e.to_string())?;
    let mut deliveries = subscription.deliveries();
    let mut out = tokio::io::stdout();
    let mut seen = 0u64;
    let stop = pubsub_gateway::shutdown_signal();
    tokio::pin!(stop);
    while count.is_none_or(|max| seen < max) {
        let delivery = tokio::select! {
            _ = &mut stop => break,
            delivery = deliveries.next() => match delivery {
                Some(delivery) => delivery,
                None => break,
            },
        };
        let line = match delivery {
            Delivery::Message(message) => {
                seen += 1;
                if raw {
                    let mut bytes = message.payload().to_vec();
                    bytes.push(b'\n');
                    bytes
                } else {
                    let mut line = pubsub_gateway::frames::message(&message).to_string();
                    line.push('\n');
                    line.into_bytes()
                }
            }
            Delivery::Gap(gap) => {
                // Loss is said on stderr in raw mode, in-band as JSON otherwise.
                let frame = pubsub_gateway::frames::gap(&gap).to_string();
                if raw {
                    eprintln!("{frame}");
                    continue;
                }
                format!("{frame}\n").into_bytes()
            }
            _ => continue,
        };
        if out.write_all(&line).await.is_err() || out.flush().await.is_err() {
            break; // stdout closed (a pipe to `head`)
        }
    }
    drop(deliveries);
    hub.close().await.map_err(|e| e.to_string())
}
