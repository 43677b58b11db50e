//! `pubsub`: publish, subscribe, benchmark and serve on any pubsub backend URL
//! (`memory://`, `redis://…`, `nats://…`, `amqp://…`). See `pubsub --help`.

mod bench;
mod streams;
mod sub;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use pubsub::StartAt;
use pubsub::{Headers, Message, Pattern, Topic};
use tokio::io::AsyncReadExt;

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
        /// Declare a stream of this root (such as `room.>`, default limits) before publishing,
        /// so that the messages are kept in its history where the publisher's handle keeps it
        /// (memory, Redis). Repeatable.
        #[arg(long = "stream", value_name = "ROOT", value_parser = streams::parse_root)]
        streams: Vec<Pattern>,
    },
    /// Print messages matching the patterns, one JSON object per line (or raw payloads).
    ///
    /// The first line, `{"type":"subscribed","patterns":[…]}` (on stderr with `--raw`), says
    /// that every pattern is live: what is published from then on arrives. A script waits for
    /// it before it publishes. The URL may be left out when `PUBSUB_URL` is set.
    ///
    /// Under a stream (`--stream ROOT`), `--from` begins in its history and `--positions`
    /// prints where each message stands: pass the last one back as `--from` to resume after
    /// it. With `--group NAME` the process joins a consumer group on the stream instead:
    /// processes in one group share the messages, and each message is acknowledged once it
    /// is printed (one not printed, because the process died, is delivered again).
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
        /// Where to begin in the stream the patterns are under: now, start, last:N,
        /// time:<Unix ms>, or a position (the first message after it). Needs the stream
        /// declared (`--stream`).
        #[arg(long, value_name = "START", value_parser = streams::parse_start)]
        from: Option<StartAt>,
        /// Print each message's stream position: a `"position"` field in JSON lines, or
        /// `<position> ` before each raw payload (`- ` for a message under no stream).
        #[arg(long)]
        positions: bool,
        /// Declare a stream of this root (such as `room.>`, default limits) before
        /// subscribing. Repeatable.
        #[arg(long = "stream", value_name = "ROOT", value_parser = streams::parse_root)]
        streams: Vec<Pattern>,
        /// Join this consumer group (1 to 64 of A-Z a-z 0-9 _ -) on the stream the patterns
        /// are under, and acknowledge each message after printing it. `--from` says where a
        /// new group starts (now, start or a position).
        #[arg(long, value_name = "NAME")]
        group: Option<String>,
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
            streams,
        } => match with_url(args) {
            Ok((url, mut rest)) => {
                let payload = (rest.len() > 1).then(|| rest.remove(1));
                let repeat = Repeat { count, rate };
                match (rest.first(), rest.len()) {
                    (Some(topic), 1) => {
                        publish(&url, topic, payload, &headers, repeat, &streams).await
                    }
                    (None, _) => Err("a topic is required".into()),
                    _ => Err("too many arguments: [URL] TOPIC [PAYLOAD]".into()),
                }
            }
            Err(e) => Err(e),
        },
        Command::Sub {
            args,
            raw,
            count,
            from,
            positions,
            streams,
            group,
        } => match with_url(args) {
            Ok((url, patterns)) if !patterns.is_empty() => {
                let options = sub::SubOptions {
                    raw,
                    count,
                    from,
                    positions,
                    streams,
                    group,
                };
                sub::subscribe(&url, &patterns, options).await
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

/// How many times `pub` publishes, and how fast.
struct Repeat {
    count: u64,
    rate: f64,
}

async fn publish(
    url: &str,
    topic: &str,
    payload: Option<String>,
    headers: &[String],
    Repeat { count, rate }: Repeat,
    streams: &[Pattern],
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
    if let Err(e) = streams::declare(&hub, streams).await {
        let _ = hub.close().await;
        return Err(e);
    }
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
