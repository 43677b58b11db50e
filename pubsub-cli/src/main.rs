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
    ///
    /// The URL may be left out when `PUBSUB_URL` is set: `pubsub pub room.42.msg hello`.
    Pub {
        /// `[URL] TOPIC [PAYLOAD]`. URL: memory://, redis://host:6379, nats://host:4222,
        /// amqp://host:5672, kafka://host:9092 (default: $PUBSUB_URL; the first argument is
        /// the URL when it has `://`). TOPIC, such as room.42.msg. PAYLOAD: `-` or absent
        /// reads standard input.
        #[arg(required = true, num_args = 1..=3, value_name = "[URL] TOPIC [PAYLOAD]")]
        args: Vec<String>,
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
    ///
    /// The first line, `{"type":"subscribed","patterns":[…]}` (on stderr with `--raw`), says
    /// that every pattern is live: what is published from then on arrives. A script waits for
    /// it before it publishes. The URL may be left out when `PUBSUB_URL` is set.
    Sub {
        /// `[URL] PATTERN…`. URL as for `pub` (default: $PUBSUB_URL); patterns such as
        /// room.*.msg or room.42.>.
        #[arg(required = true, value_name = "[URL] PATTERN")]
        args: Vec<String>,
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

/// The environment variable that gives the URL when the command line has none.
const URL_VARIABLE: &str = "PUBSUB_URL";

/// Splits the URL off `args` (the first argument, when it has `://`), else takes
/// `$PUBSUB_URL`.
fn with_url(mut args: Vec<String>) -> Result<(String, Vec<String>), String> {
    if args.first().is_some_and(|first| first.contains("://")) {
        let url = args.remove(0);
        return Ok((url, args));
    }
    match std::env::var(URL_VARIABLE) {
        Ok(url) if !url.is_empty() => Ok((url, args)),
        _ => Err(format!(
            "no backend URL: give one first (redis://…, nats://…) or set {URL_VARIABLE}"
        )),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    pubsub_gateway::server::init_logging_with(match cli.command {
        Command::Serve(_) => "info",
        _ => "warn",
    });
    let outcome = match cli.command {
        Command::Pub {
            args,
            headers,
            count,
            rate,
        } => match with_url(args) {
            Ok((url, mut rest)) => {
                let payload = (rest.len() > 1).then(|| rest.remove(1));
                match (rest.first(), rest.len()) {
                    (Some(topic), 1) => publish(&url, topic, payload, &headers, count, rate).await,
                    (None, _) => Err("a topic is required".into()),
                    _ => Err("too many arguments: [URL] TOPIC [PAYLOAD]".into()),
                }
            }
            Err(e) => Err(e),
        },
        Command::Sub { args, raw, count } => match with_url(args) {
            Ok((url, patterns)) if !patterns.is_empty() => {
                subscribe(&url, &patterns, raw, count).await
            }
            Ok(_) => Err("at least one pattern is required".into()),
            Err(e) => Err(e),
        },
        Command::Bench(args) => bench::run(args).await,
        Command::Serve(args) => args.run().await.map_err(|e| e.to_string()),
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
    // Every pattern is live now: say so, where gaps are said.
    let live: Vec<Pattern> = deliveries.subscription().patterns().cloned().collect();
    let live = pubsub_gateway::frames::subscribed(&live).to_string();
    if raw {
        eprintln!("{live}");
    } else if out.write_all(format!("{live}\n").as_bytes()).await.is_err()
        || out.flush().await.is_err()
    {
        return hub.close().await.map_err(|e| e.to_string());
    }
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
