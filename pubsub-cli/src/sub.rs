//! `pubsub sub`: print the messages of a subscription, one JSON line each (the gateway's
//! frames) or raw payloads, optionally with their stream positions.

use futures::StreamExt;
use pubsub::StartAt;
use pubsub::{Delivery, ErrorKind, GroupConfig, Hub, Message, Pattern, SubscribeOptions};
use tokio::io::AsyncWriteExt;

use crate::streams;

/// How `sub` subscribes and prints.
#[derive(Debug, Default)]
pub struct SubOptions {
    /// Payloads as they are instead of JSON lines.
    pub raw: bool,
    /// Stop after this many messages.
    pub count: Option<u64>,
    /// Where to begin in the stream the patterns are under.
    pub from: Option<StartAt>,
    /// Print each message's stream position.
    pub positions: bool,
    /// Streams to declare on the handle first.
    pub streams: Vec<Pattern>,
    /// Join this consumer group instead of subscribing.
    pub group: Option<String>,
}

/// What a message prints as, newline included: its JSON frame (with `position` only when
/// `positions`), or with `raw` its payload (after `<position> `, or `- ` for a message under
/// no stream, when `positions`).
pub fn message_line(message: &Message, raw: bool, positions: bool) -> Vec<u8> {
    if raw {
        let mut bytes = Vec::with_capacity(message.payload().len() + 32);
        if positions {
            match message.position() {
                Some(position) => bytes.extend_from_slice(position.to_string().as_bytes()),
                None => bytes.push(b'-'),
            }
            bytes.push(b' ');
        }
        bytes.extend_from_slice(message.payload());
        bytes.push(b'\n');
        return bytes;
    }
    let mut frame = pubsub_gateway::frames::message(message);
    if !positions {
        if let Some(fields) = frame.as_object_mut() {
            fields.remove("position");
        }
    }
    let mut line = frame.to_string();
    line.push('\n');
    line.into_bytes()
}

/// Subscribes to `patterns` on `url` and prints what arrives (see `pubsub sub --help`).
pub async fn subscribe(url: &str, patterns: &[String], options: SubOptions) -> Result<(), String> {
    let SubOptions {
        raw,
        count,
        from,
        positions,
        streams,
        group,
    } = options;
    let patterns = patterns
        .iter()
        .map(|p| Pattern::new(p).map_err(|e| format!("pattern `{p}`: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let group = match group {
        Some(name) => {
            let config =
                GroupConfig::new(&name, patterns.clone()).map_err(|e| format!("--group: {e}"))?;
            Some(match from {
                Some(start) => config.starting_at(start),
                None => config,
            })
        }
        None => None,
    };
    let hub = pubsub::connect(url).await.map_err(|e| e.to_string())?;
    if let Err(e) = streams::declare(&hub, &streams).await {
        let _ = hub.close().await;
        return Err(e);
    }
    if let Some(group) = group {
        let printer = Printer { raw, positions };
        let result = consume_group(&hub, group, count, printer, streams.is_empty()).await;
        let closed = hub.close().await.map_err(|e| e.to_string());
        return result.and(closed);
    }
    let mut subscribe_options = SubscribeOptions::default();
    if let Some(start) = from {
        subscribe_options = subscribe_options.starting_at(start);
    }
    let subscription = match hub.subscribe_all(patterns, subscribe_options).await {
        Ok(subscription) => subscription,
        Err(e) => {
            let _ = hub.close().await;
            return Err(match (from, streams.is_empty()) {
                (Some(_), true) if e.kind() == ErrorKind::Invalid => {
                    format!("{e} (declare it with --stream ROOT)")
                }
                _ => e.to_string(),
            });
        }
    };
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
                message_line(&message, raw, positions)
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

/// How messages are printed.
#[derive(Debug, Clone, Copy)]
struct Printer {
    raw: bool,
    positions: bool,
}

/// Joins `group` and prints its deliveries, acknowledging each once it is written; leaves the
/// group (giving back what it read but did not print) at the end.
async fn consume_group(
    hub: &Hub,
    group: GroupConfig,
    count: Option<u64>,
    printer: Printer,
    no_stream_given: bool,
) -> Result<(), String> {
    let patterns: Vec<Pattern> = group.patterns().to_vec();
    let mut member = hub.join_group(group).await.map_err(|e| {
        if e.kind() == ErrorKind::Invalid && no_stream_given {
            format!("{e} (declare it with --stream ROOT)")
        } else {
            e.to_string()
        }
    })?;
    let mut out = tokio::io::stdout();
    let joined = pubsub_gateway::frames::subscribed(&patterns).to_string();
    if printer.raw {
        eprintln!("{joined}");
    } else if out
        .write_all(format!("{joined}\n").as_bytes())
        .await
        .is_err()
        || out.flush().await.is_err()
    {
        return member.leave().await.map_err(|e| e.to_string());
    }
    let mut seen = 0u64;
    let mut last = None;
    let stop = pubsub_gateway::shutdown_signal();
    tokio::pin!(stop);
    while count.is_none_or(|max| seen < max) {
        let delivery = tokio::select! {
            _ = &mut stop => break,
            delivery = member.recv() => match delivery {
                Some(delivery) => delivery,
                None => break,
            },
        };
        let line = message_line(delivery.message(), printer.raw, printer.positions);
        if out.write_all(&line).await.is_err() || out.flush().await.is_err() {
            // Not printed (stdout closed): back to the group for another member.
            let _ = delivery.nack(std::time::Duration::ZERO).await;
            break;
        }
        seen += 1;
        last = Some(delivery.ack());
    }
    let acked = match last {
        Some(last) => last.await.map_err(|e| format!("acknowledging: {e}")),
        None => Ok(()),
    };
    let left = member.leave().await.map_err(|e| e.to_string());
    acked.and(left)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pubsub::{Offset, Position};

    #[test]
    fn lines_with_and_without_positions() {
        let position = Position::new(0x1f, 2, Offset(0, 0x2a));
        let under = Message::new("a.b".parse().unwrap(), "hi").with_position(position);
        let plain = Message::new("a.b".parse().unwrap(), "hi");
        let text = |bytes: Vec<u8>| String::from_utf8(bytes).unwrap();
        assert_eq!(text(message_line(&under, true, true)), "ps1-1f-2-0-2a hi\n");
        assert_eq!(text(message_line(&plain, true, true)), "- hi\n");
        assert_eq!(text(message_line(&under, true, false)), "hi\n");
        let json: serde_json::Value =
            serde_json::from_slice(&message_line(&under, false, true)).unwrap();
        assert_eq!(json["position"], "ps1-1f-2-0-2a");
        assert_eq!(json["payload"], "hi");
        let json: serde_json::Value =
            serde_json::from_slice(&message_line(&under, false, false)).unwrap();
        assert!(json.get("position").is_none(), "{json}");
    }
}
