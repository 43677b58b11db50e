//! Streams on Redis: a Redis Stream per declared root, appended to and published in one
//! script call, read back in batches by another (see the crate documentation).
//!
//! Keys (one hash slot per stream, so that the scripts run on a cluster too):
//!
//! | key | what |
//! |---|---|
//! | `pubsub:streams` | hash: root → `max_len:max_age_ms`, for declarations across handles |
//! | `pubsub:{<root>}:log` | the Redis Stream: fields `t` (topic) and `m` (envelope frame) |
//! | `pubsub:{<root>}:meta` | hash: `epoch` (a random number set when the log (re)starts) and `seq` (appends so far) |
//! | `pubsub:{<root>}:groups` | hash: group name → the group's settings (see `group`) |

mod group;
mod scripts;
mod wire;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use fred::clients::{Client, Pipeline, WithOptions};
use fred::interfaces::{ClientLike, HashesInterface, LuaInterface};
use fred::types::scripts::Script;
use fred::types::{ClusterHash, CustomCommand, Value};
use pubsub_core::adapter::{
    check_declaration, envelope, stream_conflict, LogRead, ReadFrom, StreamTable, TopicMemo,
    POSITION_HEADER,
};
use pubsub_core::{
    Error, ErrorKind, Headers, Message, Offset, Position, Result, StreamConfig, Topic,
};

use crate::driver::fred_error;

pub(crate) use group::MemberConnection;

/// The hash of every stream declared on the server.
const REGISTRY: &str = "pubsub:streams";

/// Largest `last:N` asked of Redis (more is "everything held").
const MAX_LAST: u64 = 1 << 50;

/// The streams of one handle, and the scripts that append to and read them.
pub(crate) struct Streams {
    table: StreamTable,
    append: Script,
    read: Script,
    /// Epoch candidates: a random seed, stepped for each use.
    seed: u64,
    next: AtomicU64,
    groups: group::Groups,
}

/// A stream's keys.
struct Keys {
    log: String,
    meta: String,
    groups: String,
}

impl Keys {
    fn of(stream: &StreamConfig) -> Self {
        let root = stream.root();
        Keys {
            log: format!("pubsub:{{{root}}}:log"),
            meta: format!("pubsub:{{{root}}}:meta"),
            groups: format!("pubsub:{{{root}}}:groups"),
        }
    }
}

impl Streams {
    pub(crate) fn new() -> Self {
        Streams {
            table: StreamTable::new(),
            append: Script::from_lua(scripts::APPEND),
            read: Script::from_lua(scripts::READ),
            seed: pubsub_core::adapter::random_u64(),
            next: AtomicU64::new(0),
            groups: group::Groups::new(),
        }
    }

    /// The stream `topic` is under, if one was declared on this handle.
    pub(crate) fn find(&self, topic: &Topic) -> Option<StreamConfig> {
        if self.table.is_empty() {
            return None;
        }
        self.table.find(topic)
    }

    /// A fresh epoch candidate (never 0).
    fn candidate(&self) -> String {
        let step = self.next.fetch_add(1, Ordering::Relaxed);
        splitmix(self.seed.wrapping_add(step)).max(1).to_string()
    }

    /// Records `stream` in the server's registry (refusing other limits or an overlapping
    /// root declared by any handle), then on this handle.
    pub(crate) async fn declare(&self, client: &Client, stream: &StreamConfig) -> Result<()> {
        if !self.table.check(stream)? {
            return Ok(());
        }
        let root = stream.root().as_str();
        let value = registry_value(stream);
        loop {
            let known: HashMap<String, String> = client
                .hgetall(REGISTRY)
                .await
                .map_err(|e| fred_error("reading the stream registry", e))?;
            let others: Vec<StreamConfig> = known
                .iter()
                .filter_map(|(root, value)| parse_registry(root, value))
                .collect();
            if let Some(there) = known.get(root) {
                if *there != value {
                    let there = parse_registry(root, there).ok_or_else(|| {
                        Error::new(
                            ErrorKind::Invalid,
                            format!(
                                "stream `{root}` is registered with unreadable limits {there:?}"
                            ),
                        )
                    })?;
                    return Err(stream_conflict(&there, stream));
                }
                break;
            }
            check_declaration(&others, stream)?;
            let added: bool = client
                .hsetnx(REGISTRY, root, value.as_str())
                .await
                .map_err(|e| fred_error("registering the stream", e))?;
            if added {
                break;
            }
            // Another handle registered it meanwhile: check its limits.
        }
        self.table.insert(stream)?;
        Ok(())
    }

    /// Appends `frame` (the message's envelope) to `stream`'s log and publishes it with its
    /// position, in one script call.
    pub(crate) async fn append(
        &self,
        client: &WithOptions<Client>,
        stream: &StreamConfig,
        topic: &Topic,
        frame: Bytes,
    ) -> Result<()> {
        let keys = Keys::of(stream);
        let (head, cut) = wire::splice_head(&frame);
        let args: Vec<Value> = vec![
            topic.as_str().into(),
            Value::Bytes(frame),
            stream.max_len().to_string().into(),
            stream.max_age().as_millis().to_string().into(),
            self.candidate().into(),
            wire::tag_text(stream.tag()).into(),
            Value::Bytes(head),
            cut.to_string().into(),
        ];
        self.eval::<Value>(
            client,
            &self.append,
            vec![keys.log, keys.meta],
            args,
            "publishing to a stream",
        )
        .await
        .map(drop)
    }

    /// Reads at most `limit` entries of `stream`'s log from `from`.
    pub(crate) async fn read(
        &self,
        client: &WithOptions<Client>,
        stream: &StreamConfig,
        from: ReadFrom,
        limit: usize,
    ) -> Result<LogRead> {
        let keys = Keys::of(stream);
        let (mode, arg) = match from {
            ReadFrom::Start => ("start", String::new()),
            ReadFrom::After(Offset(_, n)) => match n.checked_add(1) {
                Some(next) => ("after", next.to_string()),
                None => ("end", String::new()),
            },
            ReadFrom::Last(0) | ReadFrom::End => ("end", String::new()),
            ReadFrom::Last(n) => ("last", n.min(MAX_LAST).to_string()),
            ReadFrom::Time(time) => {
                let ms = time
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
                ("time", ms.to_string())
            }
        };
        let pipelined = match mode {
            "start" => Some("-"),
            "after" => Some(arg.as_str()),
            "end" => None,
            _ => Some(""),
        };
        let read = match pipelined {
            Some("") => None,
            from => self.read_pipelined(client, &keys, from, limit).await?,
        };
        let read = match read {
            Some(read) => read,
            None => {
                let args: Vec<Value> = vec![
                    mode.into(),
                    arg.into(),
                    limit.to_string().into(),
                    self.candidate().into(),
                ];
                let reply: Value = self
                    .eval(
                        client,
                        &self.read,
                        vec![keys.log, keys.meta],
                        args,
                        "reading a stream",
                    )
                    .await?;
                parse_read(reply)?
            }
        };
        let missed = match from {
            ReadFrom::After(Offset(_, after)) => missed(after, read.first, read.last),
            _ => None,
        };
        Ok(LogRead {
            epoch: read.epoch,
            entries: read.entries,
            end: Offset(0, read.last),
            missed,
        })
    }

    /// Reads with native commands in one pipeline (faster than the script, which copies every
    /// entry through Lua): the meta hash, the first entry held, the batch from `from`
    /// (inclusive; none for `None`), and the epoch again. `None` when the log has no epoch
    /// (the script then starts one) or the epoch changed during the read.
    async fn read_pipelined(
        &self,
        client: &WithOptions<Client>,
        keys: &Keys,
        from: Option<&str>,
        limit: usize,
    ) -> Result<Option<Read>> {
        let xrange = || CustomCommand::new_static("XRANGE", ClusterHash::FirstKey, false);
        let pipeline = Pipeline::from(client.clone());
        let queue = |e| fred_error("reading a stream", e);
        pipeline
            .hmget::<(), _, _>(keys.meta.as_str(), vec!["epoch", "seq"])
            .await
            .map_err(queue)?;
        let first = vec![
            keys.log.clone(),
            "-".into(),
            "+".into(),
            "COUNT".into(),
            "1".into(),
        ];
        pipeline
            .custom::<(), _>(xrange(), first)
            .await
            .map_err(queue)?;
        if let Some(from) = from {
            let batch = vec![
                keys.log.clone(),
                from.to_string(),
                "+".into(),
                "COUNT".into(),
                limit.to_string(),
            ];
            pipeline
                .custom::<(), _>(xrange(), batch)
                .await
                .map_err(queue)?;
        }
        pipeline
            .hget::<(), _, _>(keys.meta.as_str(), "epoch")
            .await
            .map_err(queue)?;
        let replies: Vec<Value> = pipeline.all().await.map_err(queue)?;
        let mut replies = replies.into_iter();
        let Some(Value::Array(meta)) = replies.next() else {
            return Err(malformed("no meta"));
        };
        let mut meta = meta.into_iter().map(Value::into_string);
        let (Some(Some(epoch)), Some(Some(seq))) = (meta.next(), meta.next()) else {
            return Ok(None);
        };
        let first = match replies.next() {
            Some(Value::Array(head)) => head
                .into_iter()
                .next()
                .and_then(|entry| match entry {
                    Value::Array(pair) => pair.into_iter().next().and_then(Value::into_string),
                    _ => None,
                })
                .and_then(|id| wire::parse_id(&id))
                .map_or(0, |offset| offset.1),
            _ => 0,
        };
        let entries = match from {
            Some(_) => replies.next().unwrap_or(Value::Null),
            None => Value::Null,
        };
        let again = replies.next().and_then(Value::into_string);
        if again.as_deref() != Some(epoch.as_str()) {
            return Ok(None);
        }
        let parse = |text: &str, what| text.parse::<u64>().map_err(|_| malformed(what));
        Ok(Some(Read {
            epoch: parse(&epoch, "a bad epoch")?,
            last: parse(&seq, "a bad last sequence number")?,
            first,
            entries: parse_entries(entries)?,
        }))
    }

    /// `EVALSHA`, loading the script first when the server does not know it (a new server, a
    /// restart, `SCRIPT FLUSH`).
    async fn eval<R: fred::types::FromValue>(
        &self,
        client: &WithOptions<Client>,
        script: &Script,
        keys: Vec<String>,
        args: Vec<Value>,
        what: &'static str,
    ) -> Result<R> {
        match client
            .evalsha(script.sha1().clone(), keys.clone(), args.clone())
            .await
        {
            Err(error) if error.details().starts_with("NOSCRIPT") => {
                let lua = script.lua().cloned().unwrap_or_default();
                client
                    .script_load_cluster::<(), _>(lua)
                    .await
                    .map_err(|e| fred_error("loading a stream script", e))?;
                client
                    .evalsha(script.sha1().clone(), keys, args)
                    .await
                    .map_err(|e| fred_error(what, e))
            }
            result => result.map_err(|e| fred_error(what, e)),
        }
    }
}

/// The message a live frame carries, with its position when the append script gave it one
/// (the header is taken off).
pub(crate) fn live_message(topic: Topic, payload: Bytes) -> Message {
    if !payload.starts_with(&envelope::MAGIC) {
        return Message::new(topic, payload);
    }
    let decoded = envelope::decode_lossy(payload);
    let (headers, position) = take_position(decoded.headers);
    let message = Message::with_headers(topic, decoded.payload, headers);
    match position {
        Some(position) => message.with_position(position),
        None => message,
    }
}

/// `headers` without the position header, and the position it held.
fn take_position(mut headers: Headers) -> (Headers, Option<Position>) {
    if headers.get(POSITION_HEADER).is_none() {
        return (headers, None);
    }
    let value = headers.remove(POSITION_HEADER).unwrap_or_default();
    let position = wire::parse_header(&value);
    if position.is_none() {
        tracing::debug!(%value, "ignoring an unreadable stream position header");
    }
    (headers, position)
}

/// How many entries after `after` were trimmed before they could be read, when the log's
/// first entry held is `first` (`0`: none held) and its last appended `last`.
fn missed(after: u64, first: u64, last: u64) -> Option<Option<u64>> {
    let lost = if first == 0 {
        last.saturating_sub(after)
    } else {
        first.saturating_sub(after.saturating_add(1))
    };
    (lost > 0).then_some(Some(lost))
}

/// The registry's text of a stream's limits.
fn registry_value(stream: &StreamConfig) -> String {
    format!("{}:{}", stream.max_len(), stream.max_age().as_millis())
}

/// A registry entry as a stream; `None` when it does not read as one.
fn parse_registry(root: &str, value: &str) -> Option<StreamConfig> {
    let (len, age) = value.split_once(':')?;
    Some(
        StreamConfig::new(root.parse().ok()?)
            .with_max_len(len.parse().ok()?)
            .with_max_age(Duration::from_millis(age.parse().ok()?)),
    )
}

/// The read script's reply, parsed.
struct Read {
    epoch: u64,
    /// Appends so far: the last entry's `n`.
    last: u64,
    /// The `n` of the first entry held (`0`: none).
    first: u64,
    entries: Vec<(Offset, Message)>,
}

fn malformed(what: &str) -> Error {
    Error::new(
        ErrorKind::Backend,
        format!("the stream read script replied with {what}"),
    )
}

fn parse_read(reply: Value) -> Result<Read> {
    let Value::Array(parts) = reply else {
        return Err(malformed("no array"));
    };
    let mut parts = parts.into_iter();
    let mut text = |what| {
        parts
            .next()
            .and_then(|v| v.into_string())
            .ok_or_else(|| malformed(what))
    };
    let mut number = |what| -> Result<u64> { text(what)?.parse().map_err(|_| malformed(what)) };
    let epoch = number("a bad epoch")?;
    let last = number("a bad last sequence number")?;
    let first = number("a bad first sequence number")?;
    let entries = parse_entries(parts.next().unwrap_or(Value::Null))?;
    Ok(Read {
        epoch,
        last,
        first,
        entries,
    })
}

/// The entries of an `XRANGE` reply.
fn parse_entries(reply: Value) -> Result<Vec<(Offset, Message)>> {
    let entries = match reply {
        Value::Array(entries) => entries,
        Value::Null => Vec::new(),
        _ => return Err(malformed("entries that are not an array")),
    };
    let mut topics = TopicMemo::default();
    Ok(entries
        .into_iter()
        .filter_map(|entry| parse_entry(entry, &mut topics))
        .collect())
}

/// One `XRANGE` entry (`[id, [field, value, …]]`) as a message; `None` (logged) for an entry
/// this adapter did not write.
fn parse_entry(entry: Value, topics: &mut TopicMemo) -> Option<(Offset, Message)> {
    let Value::Array(mut pair) = entry else {
        return None;
    };
    let fields = pair.pop()?;
    let id = pair.pop()?.into_string()?;
    let offset = wire::parse_id(&id)?;
    let Value::Array(fields) = fields else {
        return None;
    };
    let (mut topic, mut frame) = (None, None);
    let mut fields = fields.into_iter();
    while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
        match name.as_bytes() {
            Some(b"t") => topic = value.as_str().and_then(|t| topics.topic(&t)),
            Some(b"m") => frame = value.into_bytes(),
            _ => {}
        }
    }
    let (Some(topic), Some(frame)) = (topic, frame) else {
        tracing::debug!(%id, "skipping a stream entry without a topic and a frame");
        return None;
    };
    let message = live_message(topic, frame);
    Some((offset, message))
}

/// SplitMix64: spreads consecutive inputs over the whole range.
fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_entries_round_trip() {
        let stream = StreamConfig::new("room.>".parse().unwrap())
            .with_max_len(7)
            .with_max_age(Duration::from_secs(9));
        let back = parse_registry("room.>", &registry_value(&stream)).unwrap();
        assert_eq!(back, stream);
        assert!(parse_registry("room.>", "7").is_none());
        assert!(parse_registry("not a pattern..", "7:9").is_none());
    }

    #[test]
    fn the_position_header_is_taken_off_a_live_frame() {
        let topic: Topic = "room.1".parse().unwrap();
        let mut headers = Headers::new();
        headers.insert("k", "v").unwrap();
        headers.insert(POSITION_HEADER, "a-5-17").unwrap();
        let frame = envelope::encode(&headers, &Bytes::from_static(b"x"));
        let message = live_message(topic.clone(), frame);
        assert_eq!(
            message.position(),
            Some(&Position::new(0xa, 5, Offset(0, 17)))
        );
        assert_eq!(message.headers().len(), 1);
        let plain = live_message(topic, Bytes::from_static(b"plain"));
        assert!(plain.position().is_none());
    }

    #[test]
    fn what_a_reader_missed_is_counted_exactly() {
        assert_eq!(missed(5, 6, 9), None, "the next one is held");
        assert_eq!(missed(5, 9, 12), Some(Some(3)), "6, 7 and 8 were trimmed");
        assert_eq!(missed(5, 0, 9), Some(Some(4)), "everything after 5 expired");
        assert_eq!(missed(9, 0, 9), None, "nothing after 9 was appended");
        assert_eq!(missed(20, 3, 9), None, "a position beyond the end");
    }

    #[test]
    fn epoch_candidates_differ() {
        let streams = Streams::new();
        assert_ne!(streams.candidate(), streams.candidate());
    }

    #[test]
    fn read_replies_parse_and_odd_entries_are_skipped() {
        let entry = |id: &str, t: &str| {
            Value::Array(vec![
                id.into(),
                Value::Array(vec!["t".into(), t.into(), "m".into(), "hi".into()]),
            ])
        };
        let reply = Value::Array(vec![
            "42".into(),
            "10".into(),
            "9".into(),
            Value::Array(vec![
                entry("9-1700000000000", "a.b"),
                entry("10-1700000000001", "not..a topic"),
                Value::Array(vec!["x".into()]),
            ]),
        ]);
        let read = parse_read(reply).unwrap();
        assert_eq!((read.epoch, read.last, read.first), (42, 10, 9));
        assert_eq!(read.entries.len(), 1);
        assert_eq!(read.entries[0].1.payload(), &Bytes::from_static(b"hi"));
        assert!(parse_read(Value::Null).is_err());
    }
}
