//! Streams on NATS: one JetStream stream per declared root ([`Streams`]).
//!
//! - **Declaring** creates (or finds) a JetStream stream named after the root
//!   ([`stream_name`]) capturing the root's subjects, with the declaration's limits, and a
//!   `RePublish` of every stored message to a private subject ([`republish_subject`]), which
//!   carries the message's stream sequence (`Nats-Sequence`).
//! - **Publishing** stays a core NATS publish: the server stores what is published to the
//!   root's subjects, whoever publishes it.
//! - **Live messages** under a declared stream come through the republish subjects: their
//!   sequence is their position ([`Declared::live_message`]). A handle reads them through one
//!   NATS subscription per stream, its *feed* (`_pubsub.rp.<root>`), which hands each
//!   message in the stream's order to the re-publish filters in use whose pattern matches
//!   ([`Declared::dispatch`]); the driver starts and stops the feeds.
//! - **Reading** the log takes the stream's state (its epoch, first and last sequence), then
//!   fetches one batch through an ephemeral pull consumer starting at the wanted sequence.
//!   Identical reads asked at once (a thousand subscriptions resuming after an outage) share
//!   one round of requests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_nats::jetstream::consumer::{self, AckPolicy, DeliverPolicy};
use async_nats::jetstream::response::Response;
use async_nats::jetstream::stream::{
    Config, DiscardPolicy, Info, Republish, RetentionPolicy, StorageType,
};
use async_nats::jetstream::Context;
use async_nats::Client;
use futures::future::{BoxFuture, FutureExt, Shared};
use futures::StreamExt;
use parking_lot::{Mutex, RwLock};

use pubsub_core::adapter::{stream_conflict, LogRead, ReadFrom, StreamTable, TopicMemo};
use pubsub_core::{
    ConnectionState, Error, ErrorKind, Headers, Message, Offset, Pattern, Position, Result,
    StreamConfig,
};

use crate::headers;

/// The prefix of the private subjects a stream re-publishes its stored messages to: the
/// message stored on `room.1` comes back live on `_pubsub.rp.room.1`.
pub(crate) const REPUBLISH_PREFIX: &str = "_pubsub.rp.";

/// The headers JetStream adds to a re-published message (stripped before delivery).
const REPUBLISH_HEADERS: [&str; 5] = [
    "Nats-Stream",
    "Nats-Subject",
    "Nats-Sequence",
    "Nats-Last-Sequence",
    "Nats-Time-Stamp",
];

/// The header of a re-published message that carries its stream sequence.
const SEQUENCE_HEADER: &str = "Nats-Sequence";

/// How long an ephemeral reader (pull consumer) the adapter forgot to delete outlives its
/// last use before the server removes it.
const READER_IDLE: Duration = Duration::from_secs(30);

/// How long a read waits for an identical one under way before it starts (those asking
/// meanwhile share it).
const COALESCE_WAIT: Duration = Duration::from_millis(50);

/// The epoch of live positions while a stream's real one is not known (no stream is created at
/// the Unix epoch).
const UNKNOWN_EPOCH: u64 = 0;

/// Longest part of a stream's name taken from its root.
const NAME_ROOT_LEN: usize = 48;

/// The JetStream stream name of `stream`: `PUBSUB_`, the root's tag in hex, and the root with
/// every character a stream name may not hold replaced by `_` (deterministic, so every handle
/// declaring the root finds the same stream).
pub(crate) fn stream_name(stream: &StreamConfig) -> String {
    let mut name = format!("PUBSUB_{:08x}_", stream.tag());
    name.extend(
        stream
            .root()
            .as_str()
            .chars()
            .take(NAME_ROOT_LEN)
            .map(|c| match c {
                'a'..='z' | 'A'..='Z' | '0'..='9' | '-' => c,
                _ => '_',
            }),
    );
    name
}

/// The private subject a stored message of `subject` (or a pattern of them) is re-published
/// to.
pub(crate) fn republish_subject(subject: &str) -> String {
    format!("{REPUBLISH_PREFIX}{subject}")
}

/// The `RePublish` destination of the stream of `root`: [`republish_subject`], in the
/// server's mapping syntax (its n-th `*` is `{{wildcard(n)}}`; a trailing `>` stays).
pub(crate) fn republish_destination(root: &str) -> String {
    let mut wildcards = 0;
    let tokens: Vec<String> = root
        .split('.')
        .map(|token| match token {
            "*" => {
                wildcards += 1;
                format!("{{{{wildcard({wildcards})}}}}")
            }
            other => other.to_string(),
        })
        .collect();
    republish_subject(&tokens.join("."))
}

/// Whether `subject` is a re-published copy (never delivered as a topic of its own).
pub(crate) fn is_republished(subject: &str) -> bool {
    subject.starts_with(REPUBLISH_PREFIX)
}

/// The original subject of a re-published one.
pub(crate) fn original_subject(subject: &str) -> Option<&str> {
    subject.strip_prefix(REPUBLISH_PREFIX)
}

/// A stream's epoch: its creation time at the server, in nanoseconds since the Unix epoch (a
/// stream deleted and created again has another).
fn epoch_of(created: time::OffsetDateTime) -> u64 {
    u64::try_from(created.unix_timestamp_nanos()).unwrap_or(u64::MAX)
}

/// Where a read begins, in the stream's sequences.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Start {
    /// At this sequence.
    Seq(u64),
    /// At the first message stored at or after this time.
    Time(SystemTime),
    /// Nothing to read.
    Nothing,
}

/// Where a read `from` begins in a stream holding sequences `first..=last` (empty when
/// `last < first`), and, for [`ReadFrom::After`], how many messages after the offset are gone.
pub(crate) fn start_of(from: ReadFrom, first: u64, last: u64) -> (Start, Option<Option<u64>>) {
    let first = first.max(1);
    if last < first {
        // Empty: there is nothing to read, but a position before what was trimmed still missed
        // something.
        let missed = match from {
            ReadFrom::After(Offset(0, after)) => missed_after(after, first),
            _ => None,
        };
        return (Start::Nothing, missed);
    }
    match from {
        ReadFrom::Start => (Start::Seq(first), None),
        ReadFrom::After(Offset(0, after)) if after < last => {
            let next = after + 1;
            (Start::Seq(next.max(first)), missed_after(after, first))
        }
        // At or past the end, or an offset this stream never gives (`Offset(n, _)`, n > 0).
        ReadFrom::After(_) => (Start::Nothing, None),
        ReadFrom::Last(0) | ReadFrom::End => (Start::Nothing, None),
        ReadFrom::Last(n) => (Start::Seq(last.saturating_sub(n - 1).max(first)), None),
        ReadFrom::Time(time) => (Start::Time(time), None),
    }
}

/// For a read after sequence `after` whose first message held is `first`: how many were
/// trimmed or expired in between (`None` when none).
pub(crate) fn missed_after(after: u64, first: u64) -> Option<Option<u64>> {
    let next = after.saturating_add(1);
    first.checked_sub(next).filter(|&n| n > 0).map(Some)
}

/// The JetStream configuration of `stream`.
fn config_of(stream: &StreamConfig, name: &str) -> Config {
    let subject = stream.root().as_str().to_string();
    Config {
        name: name.to_string(),
        subjects: vec![subject.clone()],
        max_messages: i64::try_from(stream.max_len()).unwrap_or(i64::MAX),
        max_age: stream.max_age(),
        discard: DiscardPolicy::Old,
        retention: RetentionPolicy::Limits,
        storage: StorageType::File,
        num_replicas: 1,
        republish: Some(Republish {
            destination: republish_destination(&subject),
            source: subject,
            headers_only: false,
        }),
        ..Config::default()
    }
}

/// Whether the stream found at the server is the one `wanted` describes (the limits, the
/// subjects, the republish).
fn same_stream(found: &Config, wanted: &Config) -> bool {
    let republish = |c: &Config| {
        c.republish
            .as_ref()
            .map(|r| (r.source.clone(), r.destination.clone(), r.headers_only))
    };
    found.subjects == wanted.subjects
        && found.max_messages == wanted.max_messages
        && found.max_age == wanted.max_age
        && found.discard == wanted.discard
        && republish(found) == republish(wanted)
}

/// The portable description of a stream found at the server (for the conflict's message).
fn found_as(stream: &StreamConfig, found: &Config) -> StreamConfig {
    StreamConfig::new(stream.root().clone())
        .with_max_len(u64::try_from(found.max_messages).unwrap_or(u64::MAX))
        .with_max_age(found.max_age)
}

/// Portable headers of a stored or re-published message, without JetStream's own.
pub(crate) fn headers_of(map: Option<&async_nats::HeaderMap>) -> Headers {
    let Some(map) = map else {
        return Headers::new();
    };
    let mut headers = headers::from_nats(map);
    for name in REPUBLISH_HEADERS {
        headers.remove(name);
    }
    headers
}

/// One stream declared on this handle.
#[derive(Debug)]
pub(crate) struct Declared {
    config: StreamConfig,
    name: String,
    tag: u32,
    /// The stream's epoch as last read (refreshed by every read of the log).
    epoch: AtomicU64,
    /// The highest sequence the feed delivered in this epoch (the feed sees them in order).
    last_live: AtomicU64,
    /// Whether the feed saw the sequences go back (the stream was deleted and created again)
    /// since the epoch was last read: live positions then carry [`UNKNOWN_EPOCH`].
    stale: AtomicBool,
    /// The re-publish filters in use under this stream, with their patterns: where its feed
    /// hands each message.
    filters: RwLock<Arc<Vec<(String, Pattern)>>>,
    /// Whether the feed (the one NATS subscription to the stream's re-published copies) runs;
    /// locked while it is started or stopped.
    feed: tokio::sync::Mutex<bool>,
}

impl Declared {
    fn new(config: StreamConfig, name: String, epoch: u64) -> Self {
        Declared {
            tag: config.tag(),
            config,
            name,
            epoch: AtomicU64::new(epoch),
            last_live: AtomicU64::new(0),
            stale: AtomicBool::new(false),
            filters: RwLock::new(Arc::new(Vec::new())),
            feed: tokio::sync::Mutex::new(false),
        }
    }

    /// The stream's JetStream name (its feed's key).
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The subject of the feed: the re-published copies of everything under the root.
    pub(crate) fn feed_subject(&self) -> String {
        republish_subject(self.config.root().as_str())
    }

    /// Locks the feed's state (whether it runs) while it is started or stopped.
    pub(crate) async fn feed(&self) -> tokio::sync::MutexGuard<'_, bool> {
        self.feed.lock().await
    }

    /// Adds re-publish filters the feed hands messages to (those there already stay once).
    pub(crate) fn add_filters(&self, filters: &[String]) {
        let mut current = self.filters.write();
        let mut next = Vec::clone(&current);
        for filter in filters {
            if next.iter().any(|(f, _)| f == filter) {
                continue;
            }
            if let Some(pattern) = original_subject(filter).and_then(|p| p.parse().ok()) {
                next.push((filter.clone(), pattern));
            }
        }
        *current = Arc::new(next);
    }

    /// Removes re-publish filters; true when none is left.
    pub(crate) fn remove_filters(&self, filters: &[String]) -> bool {
        let mut current = self.filters.write();
        let next: Vec<_> = current
            .iter()
            .filter(|(f, _)| !filters.contains(f))
            .cloned()
            .collect();
        let empty = next.is_empty();
        *current = Arc::new(next);
        empty
    }

    /// Hands a message of the feed, positioned, to every filter in use whose pattern matches
    /// its topic (in the feed's order: the stream's).
    pub(crate) fn dispatch(
        &self,
        message: async_nats::Message,
        topics: &mut TopicMemo,
        mut deliver: impl FnMut(&String, Message),
    ) {
        let Some(message) = self.live_message(message, topics) else {
            return;
        };
        let filters = self.filters.read().clone();
        for (filter, pattern) in filters.iter() {
            if pattern.matches(message.topic()) {
                deliver(filter, message.clone());
            }
        }
    }

    /// The stream's declaration.
    pub(crate) fn config(&self) -> &StreamConfig {
        &self.config
    }

    /// The stream's epoch as last read.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// The position of sequence `seq`.
    pub(crate) fn position(&self, seq: u64) -> Position {
        Position::new(self.tag, self.epoch.load(Ordering::Acquire), Offset(0, seq))
    }

    /// The position of a live message of sequence `seq`. Sequences only grow in an epoch, so
    /// one at or below the last the feed saw means the stream was created again: until a read
    /// of the log learns its new epoch, live positions carry an epoch no log has, which sends
    /// a follower back to the log (where it gets its reset gap) instead of taking the new
    /// stream's messages for ones it delivered already.
    fn live_position(&self, seq: u64) -> Position {
        let last = self.last_live.fetch_max(seq, Ordering::AcqRel);
        if seq <= last && !self.stale.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                stream = %self.config.root(),
                seq,
                last,
                "the stream's sequences went back: it was created again"
            );
        }
        match self.stale.load(Ordering::Acquire) {
            true => Position::new(self.tag, UNKNOWN_EPOCH, Offset(0, seq)),
            false => self.position(seq),
        }
    }

    /// Records the epoch a read of the log found; a new one ends what the feed saw of the
    /// old.
    fn read_epoch(&self, epoch: u64) {
        if self.epoch.swap(epoch, Ordering::AcqRel) != epoch {
            self.last_live.store(0, Ordering::Release);
            self.stale.store(false, Ordering::Release);
        }
    }

    /// The portable message of a re-published one, with its position; `None` when its subject
    /// is not a re-published portable topic or it carries no sequence.
    fn live_message(
        &self,
        message: async_nats::Message,
        topics: &mut TopicMemo,
    ) -> Option<Message> {
        let topic = topics.topic(original_subject(message.subject.as_str())?)?;
        let map = message.headers.as_ref()?;
        let seq = map.get(SEQUENCE_HEADER)?.as_str().parse::<u64>().ok()?;
        let headers = headers_of(Some(map));
        let message = Message::with_headers(topic, message.payload, headers);
        Some(message.with_position(self.live_position(seq)))
    }
}

/// A stream's re-publish filters among a batch of native filters.
pub(crate) type StreamFilters = (Arc<Declared>, Vec<String>);

type SharedRead = Shared<BoxFuture<'static, Result<LogRead>>>;

/// A read of the log some callers wait for; `started` once its requests went out (later
/// callers then wait for the next one).
struct Flight {
    read: SharedRead,
    started: Arc<AtomicBool>,
}

/// The streams of one handle: declared through JetStream, read in batches.
pub(crate) struct Streams {
    client: Client,
    /// JetStream, once a stream is declared (its context runs a task of its own, which
    /// `close` ends); `Err(())` once closed.
    js: Mutex<std::result::Result<Option<Context>, ()>>,
    table: StreamTable,
    declared: RwLock<Vec<Arc<Declared>>>,
    reads: Mutex<HashMap<(String, String, usize), Flight>>,
    timeout: Duration,
    /// The handle's connection state: a read under way when the connection drops fails at
    /// once (its requests are lost) instead of waiting for its timeout.
    state: tokio::sync::watch::Receiver<ConnectionState>,
}

impl Streams {
    /// The streams of a handle on `client`; every JetStream request is bounded by `timeout`,
    /// and a read by the connection staying up (`state`).
    pub(crate) fn new(
        client: Client,
        timeout: Duration,
        state: tokio::sync::watch::Receiver<ConnectionState>,
    ) -> Self {
        Streams {
            client,
            js: Mutex::new(Ok(None)),
            table: StreamTable::new(),
            declared: RwLock::new(Vec::new()),
            reads: Mutex::new(HashMap::new()),
            timeout,
            state,
        }
    }

    /// The JetStream context, made on first use; `Closed` once the handle closed.
    pub(crate) fn js(&self) -> Result<Context> {
        let mut js = self.js.lock();
        let js = js.as_mut().map_err(|()| Error::closed())?;
        Ok(js
            .get_or_insert_with(|| {
                async_nats::jetstream::ContextBuilder::new()
                    .timeout(self.timeout)
                    .build(self.client.clone())
            })
            .clone())
    }

    /// Lets JetStream go: later declarations and reads fail with `Closed`.
    pub(crate) fn close(&self) {
        *self.js.lock() = Err(());
    }

    /// The native filter of `pattern` when it is under a stream declared on this handle: the
    /// re-published copies, which carry positions.
    pub(crate) fn filter_for(&self, pattern: &Pattern) -> Option<String> {
        let declared = self.declared.read();
        if declared.is_empty() {
            return None;
        }
        declared
            .iter()
            .any(|d| pattern.is_subset_of(d.config.root()))
            .then(|| republish_subject(pattern.as_str()))
    }

    /// The stream a re-publish filter reads.
    fn declared_for_filter(&self, filter: &str) -> Option<Arc<Declared>> {
        let pattern: Pattern = original_subject(filter)?.parse().ok()?;
        let declared = self.declared.read();
        declared
            .iter()
            .find(|d| pattern.is_subset_of(d.config.root()))
            .cloned()
    }

    /// Splits native filters into plain subjects and, by stream, re-publish filters (served by
    /// the stream's feed).
    pub(crate) fn split(&self, filters: &[String]) -> (Vec<String>, Vec<StreamFilters>) {
        let mut plain = Vec::new();
        let mut streamed: Vec<StreamFilters> = Vec::new();
        for filter in filters {
            let declared = is_republished(filter)
                .then(|| self.declared_for_filter(filter))
                .flatten();
            let Some(declared) = declared else {
                plain.push(filter.clone());
                continue;
            };
            match streamed.iter_mut().find(|(d, _)| Arc::ptr_eq(d, &declared)) {
                Some((_, filters)) => filters.push(filter.clone()),
                None => streamed.push((declared, vec![filter.clone()])),
            }
        }
        (plain, streamed)
    }

    /// The stream `stream` declared on this handle (`Invalid` when it is not).
    pub(crate) fn find(&self, stream: &StreamConfig) -> Result<Arc<Declared>> {
        let declared = self.declared.read();
        declared
            .iter()
            .find(|d| d.config.root() == stream.root())
            .cloned()
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Invalid,
                    format!("stream `{}` is not declared on this handle", stream.root()),
                )
            })
    }

    /// Creates `stream` at the server, or finds it there with the same limits.
    pub(crate) async fn declare(&self, stream: &StreamConfig) -> Result<()> {
        if !self.table.check(stream)? {
            return Ok(());
        }
        let name = stream_name(stream);
        let wanted = config_of(stream, &name);
        let found = self
            .js()?
            .get_or_create_stream(wanted.clone())
            .await
            .map_err(|e| create_error(e, stream))?;
        let info = found.cached_info();
        if !same_stream(&info.config, &wanted) {
            return Err(stream_conflict(&found_as(stream, &info.config), stream));
        }
        tracing::debug!(stream = %stream.root(), name, "JetStream stream declared");
        if self.table.insert(stream)? {
            let declared = Declared::new(stream.clone(), name, epoch_of(info.created));
            self.declared.write().push(Arc::new(declared));
        }
        Ok(())
    }

    /// Reads at most `limit` entries of `stream`'s log from `from`. A caller asking what
    /// another asks at the same moment waits for the same read, made after both asked.
    pub(crate) async fn read(
        &self,
        stream: &StreamConfig,
        from: ReadFrom,
        limit: usize,
    ) -> Result<LogRead> {
        let declared = self.find(stream)?;
        let js = self.js()?;
        let key = (declared.name.clone(), format!("{from:?}"), limit);
        let flight = {
            let mut reads = self.reads.lock();
            match reads.get(&key) {
                Some(waiting) if !waiting.started.load(Ordering::Acquire) => waiting.read.clone(),
                running => {
                    // After the read under way (it may have begun before this caller's live
                    // subscription): the next one, which those asking meanwhile share.
                    let before = running.map(|f| f.read.clone());
                    let started = Arc::new(AtomicBool::new(false));
                    let read = {
                        let (timeout, started) = (self.timeout, started.clone());
                        let mut state = self.state.clone();
                        state.borrow_and_update();
                        async move {
                            if let Some(before) = before {
                                // Not for long: a read sent as the connection broke waits for
                                // its whole timeout.
                                let _ = tokio::time::timeout(COALESCE_WAIT, before).await;
                            }
                            started.store(true, Ordering::Release);
                            let read = read_log(&js, &declared, from, limit);
                            tokio::select! {
                                read = tokio::time::timeout(timeout, read) => read.map_err(|_| {
                                    Error::timeout(format!(
                                        "reading stream `{}` took over {timeout:?}",
                                        declared.config.root()
                                    ))
                                })?,
                                () = connection_lost(&mut state) => Err(Error::new(
                                    ErrorKind::Connection,
                                    "the connection was lost while reading the stream",
                                )),
                            }
                        }
                        .boxed()
                        .shared()
                    };
                    // Forget reads every caller gave up on (only this map holds them).
                    reads.retain(|_, f| f.read.strong_count().is_some_and(|n| n > 1));
                    reads.insert(
                        key.clone(),
                        Flight {
                            read: read.clone(),
                            started,
                        },
                    );
                    read
                }
            }
        };
        let result = flight.clone().await;
        let mut reads = self.reads.lock();
        if reads.get(&key).is_some_and(|f| f.read.ptr_eq(&flight)) {
            reads.remove(&key);
        }
        result
    }
}

impl std::fmt::Debug for Streams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streams")
            .field("declared", &self.declared.read().len())
            .finish()
    }
}

/// Resolves when the connection goes down (never, once the handle is gone).
async fn connection_lost(state: &mut tokio::sync::watch::Receiver<ConnectionState>) {
    loop {
        if state.changed().await.is_err() {
            return std::future::pending().await;
        }
        if matches!(*state.borrow_and_update(), ConnectionState::Down { .. }) {
            return;
        }
    }
}

/// Reads the stream's epoch now, creating the stream again if it is gone from the server.
pub(crate) async fn refresh(js: &Context, declared: &Declared) -> Result<()> {
    let info = info_of(js, declared).await?;
    declared.read_epoch(epoch_of(info.created));
    Ok(())
}

/// The stream's info now; a stream declared on this handle but gone from the server is
/// created again (a new epoch).
async fn info_of(js: &Context, declared: &Declared) -> Result<Info> {
    let subject = format!("STREAM.INFO.{}", declared.name);
    let response: Response<Info> = js.request(subject, &()).await.map_err(|e| {
        Error::new(ErrorKind::Connection, "reading a stream's state failed").with_source(e)
    })?;
    match response {
        Response::Ok(info) => Ok(info),
        Response::Err { error } if error.code() == 404 => {
            tracing::warn!(
                stream = %declared.config.root(),
                name = declared.name,
                "the JetStream stream is gone; creating it again (its history is lost)"
            );
            let config = config_of(&declared.config, &declared.name);
            let created = js
                .create_stream(config)
                .await
                .map_err(|e| create_error(e, &declared.config))?;
            Ok(created.cached_info().clone())
        }
        Response::Err { error } => Err(Error::new(
            ErrorKind::Connection,
            format!(
                "reading the state of stream `{}` failed",
                declared.config.root()
            ),
        )
        .with_source(error)),
    }
}

/// One batch of the log: the stream's state, then up to `limit` messages through an
/// ephemeral pull consumer (deleted afterwards).
async fn read_log(
    js: &Context,
    declared: &Declared,
    from: ReadFrom,
    limit: usize,
) -> Result<LogRead> {
    let info = info_of(js, declared).await?;
    let epoch = epoch_of(info.created);
    declared.read_epoch(epoch);
    let (first, last) = (info.state.first_sequence, info.state.last_sequence);
    let mut read = LogRead {
        epoch,
        entries: Vec::new(),
        end: Offset(0, last),
        missed: None,
    };
    let (start, missed) = start_of(from, first, last);
    read.missed = missed;
    let deliver_policy = match start {
        _ if limit == 0 => return Ok(read),
        Start::Nothing => return Ok(read),
        Start::Seq(start_sequence) => DeliverPolicy::ByStartSequence { start_sequence },
        Start::Time(time) => DeliverPolicy::ByStartTime {
            start_time: time::OffsetDateTime::from(time),
        },
    };
    let reader = consumer::pull::Config {
        deliver_policy,
        ack_policy: AckPolicy::None,
        inactive_threshold: READER_IDLE,
        memory_storage: true,
        ..Default::default()
    };
    let stream = js.get_stream_no_info(&declared.name).await.map_err(|e| {
        Error::new(ErrorKind::Invalid, "a stream name JetStream refuses").with_source(e)
    })?;
    let consumer = stream.create_consumer(reader).await.map_err(|e| {
        Error::new(
            ErrorKind::Connection,
            "creating a reader of the stream failed",
        )
        .with_source(e)
    })?;
    let fetched = fetch(&consumer, limit, &mut read.entries).await;
    let name = consumer.cached_info().name.clone();
    tokio::spawn(async move {
        if let Err(error) = stream.delete_consumer(&name).await {
            tracing::debug!(%error, "deleting a stream reader failed (it expires by itself)");
        }
    });
    fetched?;
    if let (ReadFrom::After(Offset(0, after)), Some((Offset(_, seq), _))) =
        (from, read.entries.first())
    {
        // Trimmed between the state and the fetch: what the first message read says.
        read.missed = missed_after(after, *seq);
    }
    if let Some((Offset(_, seq), _)) = read.entries.last() {
        read.end = Offset(0, read.end.1.max(*seq));
    }
    Ok(read)
}

/// Fetches up to `limit` messages of the consumer into `entries` (messages whose subject is
/// not a portable topic are passed over; more are fetched in their place).
async fn fetch(
    consumer: &consumer::Consumer<consumer::pull::Config>,
    limit: usize,
    entries: &mut Vec<(Offset, Message)>,
) -> Result<()> {
    let failed = |e: async_nats::Error| {
        Error::new(ErrorKind::Connection, "fetching from the stream failed").with_source(e)
    };
    let mut topics = TopicMemo::default();
    while entries.len() < limit {
        let want = limit - entries.len();
        let mut batch = consumer
            .fetch()
            .max_messages(want)
            .messages()
            .await
            .map_err(|e| failed(Box::new(e)))?;
        let mut got = 0;
        while let Some(message) = batch.next().await {
            let message = message.map_err(failed)?;
            got += 1;
            let seq = message.info().map_err(failed)?.stream_sequence;
            let message = message.message;
            let Some(topic) = topics.topic(message.subject.as_str()) else {
                continue;
            };
            let headers = headers_of(message.headers.as_ref());
            entries.push((
                Offset(0, seq),
                Message::with_headers(topic, message.payload, headers),
            ));
        }
        if got < want {
            break;
        }
    }
    Ok(())
}

/// A stream JetStream would not create or find.
fn create_error(
    error: async_nats::jetstream::context::CreateStreamError,
    stream: &StreamConfig,
) -> Error {
    use async_nats::jetstream::context::CreateStreamErrorKind as K;
    use async_nats::jetstream::ErrorCode;
    let root = stream.root();
    let (kind, message) = match error.kind() {
        K::JetStreamUnavailable => (
            ErrorKind::Unsupported,
            format!("stream `{root}`: the NATS server has no JetStream (run it with -js)"),
        ),
        K::JetStream(e) if e.code() == 503 => (
            ErrorKind::Unsupported,
            format!("stream `{root}`: JetStream is not enabled for this account"),
        ),
        K::JetStream(e)
            if e.code() == 400
                || [
                    ErrorCode::STREAM_NAME_EXIST,
                    ErrorCode::STREAM_SUBJECT_OVERLAP,
                ]
                .contains(&e.error_code()) =>
        {
            (
                ErrorKind::Invalid,
                format!("stream `{root}` conflicts with a JetStream stream at the server"),
            )
        }
        K::JetStream(e) if e.error_code() == ErrorCode::STREAM_INVALID_CONFIG => (
            ErrorKind::Invalid,
            format!("stream `{root}`: JetStream refuses its configuration"),
        ),
        K::TimedOut => (
            ErrorKind::Timeout,
            format!("stream `{root}`: JetStream did not answer"),
        ),
        _ => (
            ErrorKind::Connection,
            format!("declaring stream `{root}` failed"),
        ),
    };
    Error::new(kind, message).with_source(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(root: &str) -> StreamConfig {
        StreamConfig::new(root.parse().unwrap())
    }

    #[test]
    fn names_are_legal_deterministic_and_distinct() {
        let a = stream_name(&stream("room.>"));
        assert_eq!(a, stream_name(&stream("room.>")));
        assert!(a.starts_with("PUBSUB_"));
        assert!(a.ends_with("_room__"), "{a}");
        assert!(a
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'));
        // Same sanitized text, other roots: the tag tells them apart.
        assert_ne!(a, stream_name(&stream("room.*")));
        let long = stream(&format!("{}.>", "x".repeat(200)));
        assert!(stream_name(&long).len() <= 7 + 9 + NAME_ROOT_LEN);
    }

    #[test]
    fn republish_subjects_map_both_ways() {
        assert_eq!(republish_destination("a.>"), "_pubsub.rp.a.>");
        assert_eq!(
            republish_destination("*.b.*.>"),
            "_pubsub.rp.{{wildcard(1)}}.b.{{wildcard(2)}}.>"
        );
        assert_eq!(republish_destination("lit"), "_pubsub.rp.lit");
        assert_eq!(republish_subject("room.>"), "_pubsub.rp.room.>");
        assert!(is_republished("_pubsub.rp.room.1"));
        assert!(!is_republished("room.1"));
        assert_eq!(original_subject("_pubsub.rp.room.1"), Some("room.1"));
        assert_eq!(original_subject("room.1"), None);
    }

    #[test]
    fn starts_and_misses() {
        // Holding 5..=9.
        let at = |from| start_of(from, 5, 9);
        assert_eq!(at(ReadFrom::Start), (Start::Seq(5), None));
        assert_eq!(at(ReadFrom::After(Offset(0, 6))), (Start::Seq(7), None));
        assert_eq!(at(ReadFrom::After(Offset(0, 4))), (Start::Seq(5), None));
        assert_eq!(
            at(ReadFrom::After(Offset(0, 1))),
            (Start::Seq(5), Some(Some(3)))
        );
        assert_eq!(at(ReadFrom::After(Offset(0, 9))), (Start::Nothing, None));
        assert_eq!(
            at(ReadFrom::After(Offset(0, u64::MAX))),
            (Start::Nothing, None)
        );
        assert_eq!(
            at(ReadFrom::After(Offset(u64::MAX, u64::MAX))),
            (Start::Nothing, None)
        );
        assert_eq!(at(ReadFrom::Last(2)), (Start::Seq(8), None));
        assert_eq!(at(ReadFrom::Last(100)), (Start::Seq(5), None));
        assert_eq!(at(ReadFrom::Last(0)), (Start::Nothing, None));
        assert_eq!(at(ReadFrom::End), (Start::Nothing, None));
        let t = SystemTime::UNIX_EPOCH;
        assert_eq!(at(ReadFrom::Time(t)), (Start::Time(t), None));
    }

    #[test]
    fn empty_streams() {
        // Never written: JetStream says first 0, last 0.
        assert_eq!(start_of(ReadFrom::Start, 0, 0), (Start::Nothing, None));
        assert_eq!(
            start_of(ReadFrom::After(Offset(0, 0)), 0, 0),
            (Start::Nothing, None)
        );
        // Everything expired: first is last + 1.
        assert_eq!(start_of(ReadFrom::Last(3), 8, 7), (Start::Nothing, None));
        assert_eq!(
            start_of(ReadFrom::After(Offset(0, 2)), 8, 7),
            (Start::Nothing, Some(Some(5)))
        );
        assert_eq!(
            start_of(ReadFrom::After(Offset(0, 7)), 8, 7),
            (Start::Nothing, None)
        );
    }

    #[test]
    fn the_config_carries_limits_and_republish() {
        let s = stream("news.*")
            .with_max_len(7)
            .with_max_age(Duration::from_secs(9));
        let c = config_of(&s, "N");
        assert_eq!(c.subjects, ["news.*"]);
        assert_eq!((c.max_messages, c.max_age), (7, Duration::from_secs(9)));
        let r = c.republish.as_ref().unwrap();
        assert_eq!(
            (r.source.as_str(), r.destination.as_str()),
            ("news.*", "_pubsub.rp.news.{{wildcard(1)}}")
        );
        assert!(same_stream(&c, &c.clone()));
        let other = config_of(&s.clone().with_max_len(8), "N");
        assert!(!same_stream(&other, &c));
        assert_eq!(found_as(&s, &other).max_len(), 8);
    }

    #[test]
    fn jetstream_headers_are_stripped() {
        let mut map = async_nats::HeaderMap::new();
        map.append("Nats-Sequence", "12");
        map.append("Nats-Stream", "S");
        map.append("from", "ada");
        let h = headers_of(Some(&map));
        assert_eq!(h.len(), 1);
        assert_eq!(h.get("from"), Some("ada"));
    }

    #[test]
    fn a_server_without_jetstream_is_unsupported() {
        use async_nats::jetstream::context::{CreateStreamError, CreateStreamErrorKind as K};
        let s = stream("a.>");
        let kind = |k| create_error(CreateStreamError::new(k), &s).kind();
        assert_eq!(kind(K::JetStreamUnavailable), ErrorKind::Unsupported);
        assert_eq!(kind(K::TimedOut), ErrorKind::Timeout);
        assert_eq!(kind(K::Response), ErrorKind::Connection);
    }

    #[test]
    fn the_feed_hands_each_message_to_the_matching_filters() {
        let declared = Declared::new(stream("room.>"), "N".into(), 1);
        let filters = [
            "_pubsub.rp.room.1",
            "_pubsub.rp.room.*",
            "_pubsub.rp.room.2",
        ]
        .map(String::from);
        declared.add_filters(&filters);
        declared.add_filters(&filters[..1]);
        let mut map = async_nats::HeaderMap::new();
        map.append("Nats-Sequence", "3");
        let message = async_nats::Message {
            subject: "_pubsub.rp.room.1".into(),
            reply: None,
            payload: "x".into(),
            headers: Some(map),
            status: None,
            description: None,
            length: 0,
        };
        let mut got = Vec::new();
        let mut topics = TopicMemo::default();
        declared.dispatch(message.clone(), &mut topics, |f, m| {
            got.push((f.clone(), m.position().unwrap().offset()))
        });
        assert_eq!(
            got,
            [
                (filters[0].clone(), Offset(0, 3)),
                (filters[1].clone(), Offset(0, 3))
            ]
        );
        assert!(!declared.remove_filters(&filters[..2]));
        assert!(declared.remove_filters(&filters[2..]));
        got.clear();
        declared.dispatch(message, &mut topics, |f, _| {
            got.push((f.clone(), Offset(0, 0)))
        });
        assert!(got.is_empty());
    }

    #[test]
    fn sequences_going_back_hide_the_epoch_until_a_read() {
        let declared = Declared::new(stream("room.>"), "N".into(), 42);
        let epoch = |seq| declared.live_position(seq).epoch();
        assert_eq!((epoch(5), epoch(6)), (42, 42));
        // Created again: sequence 1 once more.
        assert_eq!((epoch(1), epoch(2)), (UNKNOWN_EPOCH, UNKNOWN_EPOCH));
        declared.read_epoch(43);
        assert_eq!(epoch(3), 43);
        // The same epoch read again changes nothing.
        declared.read_epoch(43);
        assert_eq!(epoch(4), 43);
    }

    #[test]
    fn live_messages_get_their_position() {
        let mut declared = Declared::new(stream("room.>"), "N".into(), 42);
        declared.tag = 7;
        let mut map = async_nats::HeaderMap::new();
        map.append("Nats-Sequence", "12");
        let nats = |subject: &str, headers: Option<async_nats::HeaderMap>| async_nats::Message {
            subject: subject.into(),
            reply: None,
            payload: "x".into(),
            headers,
            status: None,
            description: None,
            length: 0,
        };
        let mut topics = TopicMemo::default();
        let m = declared
            .live_message(nats("_pubsub.rp.room.1", Some(map.clone())), &mut topics)
            .unwrap();
        assert_eq!(m.topic().as_str(), "room.1");
        assert_eq!(*m.position().unwrap(), Position::new(7, 42, Offset(0, 12)));
        assert!(m.headers().is_empty());
        assert!(declared
            .live_message(nats("_pubsub.rp.room.1", None), &mut topics)
            .is_none());
        assert!(declared
            .live_message(nats("room.1", Some(map)), &mut topics)
            .is_none());
    }
}
