//! Streams on Kafka, the broker side: the streams a handle declared ([`Streams`]), each with
//! its topic ([`create_topic`]) and its reader ([`StreamTopic::read`]), and the records of a
//! stream topic decoded back into messages ([`decode_record`]). The pure parts are in
//! [`crate::stream`].

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::RwLock;
use pubsub_core::adapter::{check_declaration, LogRead, ReadFrom};
use pubsub_core::{
    Error, ErrorKind, Headers, Message, Offset, Pattern, Result, StreamConfig, Topic,
};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::TopicPartitionList;

use crate::driver::kafka_error;
use crate::health::LinkContext;
use crate::log_end::log_end;
use crate::stream::{self, Bounds, Plan};
use crate::{headers, raw};

/// A consumer of the handle (no group, assigned by hand).
pub(crate) type Client = BaseConsumer<LinkContext>;

/// One declared stream: its topic, tag and epoch, and its reader.
pub(crate) struct StreamTopic {
    /// The declaration.
    pub config: StreamConfig,
    /// The Kafka topic that holds it.
    pub name: Arc<str>,
    /// [`StreamConfig::tag`].
    pub tag: u32,
    /// The epoch of its log ([`stream::id_epoch`] or [`stream::name_epoch`]).
    pub epoch: u64,
    /// Numbers requests and reads, so that a read started after a request arrived answers it.
    tickets: AtomicU64,
    reader: tokio::sync::Mutex<Reader>,
}

/// A stream's reader: one consumer, and the last read (shared by requests that ask the same
/// while it runs).
#[derive(Default)]
struct Reader {
    consumer: Option<Arc<Client>>,
    last: Option<Cached>,
    end: Option<KnownEnd>,
    /// While the consumer stays assigned after a full batch: where it stands. A read that
    /// starts there goes on without assigning again, so a replay read batch after batch is
    /// one continuous fetch.
    next: Option<Continue>,
}

/// Where a reader left after a full batch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Continue {
    /// The offset the consumer delivers next.
    offset: i64,
    /// The watermarks of that read: a read that goes on reuses them instead of asking the
    /// broker again (entries appended since are in the live buffer, or come with the next
    /// read after a short batch).
    bounds: Bounds,
}

struct Cached {
    from: ReadFrom,
    limit: usize,
    /// The ticket taken when the read started.
    started: u64,
    read: LogRead,
}

impl StreamTopic {
    pub(crate) fn new(config: StreamConfig, epoch: u64) -> StreamTopic {
        let tag = config.tag();
        StreamTopic {
            name: stream::topic_name(config.root(), tag).into(),
            config,
            tag,
            epoch,
            tickets: AtomicU64::new(0),
            reader: tokio::sync::Mutex::new(Reader::default()),
        }
    }

    /// The position of the record at Kafka offset `offset`.
    pub(crate) fn position(&self, offset: i64) -> pubsub_core::Position {
        pubsub_core::Position::new(self.tag, self.epoch, stream::position_offset(offset))
    }

    /// Reads at most `limit` entries from `from` (see [`read_blocking`]) with the stream's own
    /// consumer (made by `make` on first use). Reads run one at a time; requests that arrive
    /// while a read runs and ask the same are answered by the next read, started after they
    /// arrived: a thousand subscriptions resuming at once cost two reads, not a thousand.
    pub(crate) async fn read(
        self: &Arc<Self>,
        make: impl FnOnce() -> Result<Client>,
        from: ReadFrom,
        limit: usize,
        timeout: Duration,
    ) -> Result<LogRead> {
        let ticket = self.tickets.fetch_add(1, Ordering::SeqCst);
        let mut reader = self.reader.lock().await;
        if let Some(last) = &reader.last {
            if last.from == from && last.limit == limit && last.started > ticket {
                return Ok(last.read.clone());
            }
        }
        let started = self.tickets.fetch_add(1, Ordering::SeqCst);
        let consumer = match &reader.consumer {
            Some(consumer) => consumer.clone(),
            None => {
                let made = Arc::new(make()?);
                reader.consumer = Some(made.clone());
                made
            }
        };
        let this = self.clone();
        let (known, next) = (reader.end, reader.next.take());
        let (read, end, next) = tokio::task::spawn_blocking(move || {
            read_blocking(&consumer, &this, from, limit, timeout, known, next)
        })
        .await
        .map_err(|e| Error::new(ErrorKind::Backend, "reading a stream failed").with_source(e))??;
        reader.end = end;
        reader.next = next;
        reader.last = Some(Cached {
            from,
            limit,
            started,
            read: read.clone(),
        });
        Ok(read)
    }
}

/// The streams a handle declared.
#[derive(Default)]
pub(crate) struct Streams {
    list: RwLock<Arc<Vec<Arc<StreamTopic>>>>,
    any: AtomicBool,
}

impl Streams {
    /// Whether `config` is new here (`Ok(false)`: declared already with the same limits;
    /// `Invalid` on a conflict or an overlap).
    pub(crate) fn check(&self, config: &StreamConfig) -> Result<bool> {
        let list = self.list.read();
        let known: Vec<StreamConfig> = list.iter().map(|s| s.config.clone()).collect();
        check_declaration(&known, config)
    }

    /// Adds `stream` unless its root is there already.
    pub(crate) fn insert(&self, stream: Arc<StreamTopic>) -> Result<()> {
        let mut list = self.list.write();
        let known: Vec<StreamConfig> = list.iter().map(|s| s.config.clone()).collect();
        if check_declaration(&known, &stream.config)? {
            let mut next = Vec::clone(&list);
            next.push(stream);
            *list = Arc::new(next);
            self.any.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// Every stream declared.
    pub(crate) fn all(&self) -> Arc<Vec<Arc<StreamTopic>>> {
        self.list.read().clone()
    }

    /// The stream `topic` is under.
    pub(crate) fn find(&self, topic: &Topic) -> Option<Arc<StreamTopic>> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        self.list
            .read()
            .iter()
            .find(|s| s.config.covers(topic))
            .cloned()
    }

    /// The stream every topic `pattern` matches is under.
    pub(crate) fn of_pattern(&self, pattern: &Pattern) -> Option<Arc<StreamTopic>> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        self.list
            .read()
            .iter()
            .find(|s| pattern.is_subset_of(s.config.root()))
            .cloned()
    }

    /// The stream whose root is `root`.
    pub(crate) fn by_root(&self, root: &Pattern) -> Option<Arc<StreamTopic>> {
        self.list
            .read()
            .iter()
            .find(|s| s.config.root() == root)
            .cloned()
    }

    /// The stream held in the Kafka topic `name`.
    pub(crate) fn by_name(&self, name: &[u8]) -> Option<Arc<StreamTopic>> {
        if !name.starts_with(stream::PREFIX.as_bytes()) {
            return None;
        }
        self.list
            .read()
            .iter()
            .find(|s| s.name.as_bytes() == name)
            .cloned()
    }
}

/// Creates the topic of `stream` (one partition, `retention.ms` = its `max_age`); one that
/// exists already is fine (another handle declared the stream).
pub(crate) async fn create_topic(
    admin: &AdminClient<LinkContext>,
    name: &str,
    stream: &StreamConfig,
    replication: i32,
    timeout: Duration,
) -> Result<()> {
    let retention = stream.max_age().as_millis().to_string();
    let topic = NewTopic::new(name, 1, TopicReplication::Fixed(replication))
        .set("retention.ms", &retention)
        .set("cleanup.policy", "delete");
    let options = AdminOptions::new().operation_timeout(Some(timeout));
    let created = tokio::time::timeout(timeout, admin.create_topics([&topic], &options))
        .await
        .map_err(|_| {
            Error::timeout(format!(
                "creating a stream's topic: no answer within {timeout:?}"
            ))
        })?
        .map_err(|e| kafka_error("creating a stream's topic", e))?;
    for result in created {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                let error = kafka_error("creating a stream's topic", KafkaError::AdminOp(code));
                return Err(Error::new(
                    error.kind(),
                    format!("{} ({name}, stream `{}`)", error.message(), stream.root()),
                )
                .with_source(error));
            }
        }
    }
    Ok(())
}

/// The message a record of a stream topic holds: its first header is the portable topic
/// ([`stream::TOPIC_HEADER`]); `None` for a record without it (not one of ours).
pub(crate) fn decode_record(record: &BorrowedMessage<'_>) -> Option<Message> {
    let mut topic = None;
    let mut first = true;
    let mut decoder = headers::Decoder::default();
    raw::for_each_header(record, |key, value| {
        if std::mem::take(&mut first) {
            if key == stream::TOPIC_HEADER.as_bytes() {
                topic = std::str::from_utf8(value.unwrap_or_default())
                    .ok()
                    .and_then(|t| Topic::new(t).ok());
            }
            return;
        }
        decoder.push(key, value);
    });
    let topic = topic?;
    let (headers, skipped): (Headers, usize) = decoder.finish();
    if skipped > 0 {
        tracing::debug!(topic = %topic.as_str(), skipped, "left out record headers that are not valid portable headers");
    }
    let payload =
        bytes::Bytes::copy_from_slice(rdkafka::Message::payload(record).unwrap_or_default());
    Some(Message::with_headers(topic, payload, headers))
}

/// The log's end as a position offset, from the offset after its last record.
fn end_offset(end: i64) -> Offset {
    Offset(0, u64::try_from(end).unwrap_or(0))
}

/// Where a stream's log really ends, as last found: the offset after its last record, and the
/// high watermark reported then. A broker reports another high watermark once a batch is
/// appended (Tansu's, a batch short, is the first offset of the last batch plus one), so while
/// it reports the same, the end found then is the end now, and no fetch is needed to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KnownEnd {
    high: i64,
    end: i64,
}

/// Reads at most `limit` entries of `stream` from `from` with `consumer` (assigned to the
/// stream's partition for the read), knowing the end `known` (see [`KnownEnd`]); returns the
/// end known after it too, and where the consumer stands when it stays assigned. Blocking.
///
/// After a full batch the consumer stays assigned (`next`: the offset it delivers next), so
/// that the next batch of a replay goes on from what it fetched already; after a short one (the
/// end of the log) or an error it is unassigned.
///
/// The read goes on until it has `limit` entries or has seen the record at the reported high
/// watermark's offset minus one and everything that came in the same fetch: on Tansu, which
/// reports the high watermark a batch short (see `log_end`), that is the whole last batch.
fn read_blocking(
    consumer: &Client,
    stream: &StreamTopic,
    from: ReadFrom,
    limit: usize,
    timeout: Duration,
    known: Option<KnownEnd>,
    next: Option<Continue>,
) -> Result<(LogRead, Option<KnownEnd>, Option<Continue>)> {
    let outcome = read_assigned(consumer, stream, from, limit, timeout, known, next);
    if !matches!(outcome, Ok((_, _, Some(_)))) {
        consumer
            .unassign()
            .map_err(|e| kafka_error("unassigning a stream's reader", e))?;
    }
    outcome
}

/// [`read_blocking`], leaving the consumer assigned; the caller unassigns it unless a
/// position to go on from is returned.
fn read_assigned(
    consumer: &Client,
    stream: &StreamTopic,
    from: ReadFrom,
    limit: usize,
    timeout: Duration,
    known: Option<KnownEnd>,
    next: Option<Continue>,
) -> Result<(LogRead, Option<KnownEnd>, Option<Continue>)> {
    let name = &*stream.name;
    let goes_on = next.filter(|c| from == ReadFrom::After(stream::position_offset(c.offset - 1)));
    let (low, high) = match goes_on {
        Some(c) => (c.bounds.low, c.bounds.high),
        None => consumer
            .fetch_watermarks(name, 0, timeout)
            .map_err(|e| kafka_error("reading a stream's watermarks", e))?,
    };
    let bounds = Bounds { low, high };
    let mut known = known.filter(|k| k.high == high);
    let probed = std::cell::Cell::new(false);
    let real_end = |known: &mut Option<KnownEnd>| -> Result<i64> {
        if let Some(k) = known {
            return Ok(k.end);
        }
        // The probe assigns the consumer elsewhere: where it stood is lost.
        probed.set(true);
        let end = log_end(consumer, name, 0, timeout, timeout)?;
        *known = Some(KnownEnd { high, end });
        Ok(end)
    };
    let max_len = stream.config.max_len();
    let read = |end: i64, missed, entries| LogRead {
        epoch: stream.epoch,
        entries,
        end: end_offset(end),
        missed,
    };
    let (start, missed) = match stream::plan(&stream.config, from, bounds) {
        Plan::Nothing if from == ReadFrom::End => {
            let end = real_end(&mut known)?;
            return Ok((read(end, None, Vec::new()), known, None));
        }
        Plan::Nothing => return Ok((read(high, None, Vec::new()), known, None)),
        Plan::From { offset, missed } => (offset, missed),
        Plan::Last(n) => {
            let end = real_end(&mut known)?;
            (stream::last_start(n, end, bounds, max_len), None)
        }
        Plan::Time(time) => (
            time_offset(consumer, name, time, high, timeout)?.max(bounds.held_from(max_len)),
            None,
        ),
    };
    if let Some(k) = known {
        if start >= k.end {
            if matches!(from, ReadFrom::After(_)) && start > k.end {
                return Ok((recreated(stream, k.end), known, None));
            }
            // At the end already: nothing to fetch.
            return Ok((read(k.end, missed, Vec::new()), known, None));
        }
    }
    if limit == 0 || high <= low {
        if matches!(from, ReadFrom::After(_)) && start > high {
            return Ok((recreated(stream, high), known, None));
        }
        return Ok((read(high, missed, Vec::new()), known, None));
    }
    // The last batch's first record (the last record where the watermark is right).
    let target = high - 1;
    let first = start.min(target);
    if goes_on.map(|c| c.offset) != Some(first) || probed.get() {
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(name, 0, rdkafka::Offset::Offset(first))
            .map_err(|e| kafka_error("assigning a stream's reader", e))?;
        consumer
            .assign(&list)
            .map_err(|e| kafka_error("assigning a stream's reader", e))?;
    }
    let mut last = None;
    let mut entries = Vec::new();
    let mut end = high;
    let mut reached = false;
    let mut drained = false;
    let deadline = Instant::now() + timeout / 2;
    loop {
        let wait = if reached {
            Duration::ZERO
        } else {
            match deadline.checked_duration_since(Instant::now()) {
                Some(left) => left,
                None => break,
            }
        };
        match consumer.poll(wait) {
            Some(Ok(record)) if raw::topic_name(&record) == name.as_bytes() => {
                let offset = rdkafka::Message::offset(&record);
                end = end.max(offset + 1);
                reached |= offset >= target;
                last = Some(offset);
                if offset < start {
                    continue;
                }
                match decode_record(&record) {
                    Some(message) => entries.push((stream::position_offset(offset), message)),
                    None => tracing::debug!(
                        stream = %stream.config.root(),
                        offset,
                        "a record without its topic header in a stream's topic; skipped"
                    ),
                }
                if entries.len() >= limit {
                    break;
                }
            }
            Some(Ok(_)) => {}
            Some(Err(error)) => {
                tracing::debug!(%error, stream = %stream.config.root(), "reading a stream")
            }
            None if reached => {
                drained = true;
                break;
            }
            None => {}
        }
    }
    if !reached && entries.is_empty() {
        return Err(Error::timeout(format!(
            "reading stream `{}`: no record within {:?}",
            stream.config.root(),
            timeout / 2
        )));
    }
    if drained {
        // The whole last batch was read: where the log ends is known.
        known = Some(KnownEnd { high, end });
        if matches!(from, ReadFrom::After(_)) && start > end {
            return Ok((recreated(stream, end), known, None));
        }
    }
    // A full batch short of the end: the next read most likely starts right after it.
    let keep = (entries.len() >= limit && !drained)
        .then(|| {
            last.map(|offset| Continue {
                offset: offset + 1,
                bounds,
            })
        })
        .flatten();
    Ok((read(end, missed, entries), known, keep))
}

/// The answer to a read after a position beyond the log's real end: the log was deleted and
/// created again since the position was given (its offsets started over), so the read
/// reports another epoch than the position's, and the follower starts the new log over.
fn recreated(stream: &StreamTopic, end: i64) -> LogRead {
    tracing::debug!(stream = %stream.config.root(), end, "a position beyond the log's end: the log was created again");
    LogRead {
        epoch: stream::recreated(stream.epoch),
        entries: Vec::new(),
        end: end_offset(end),
        missed: None,
    }
}

/// The offset of the first record at or after `time` (`high` when there is none).
fn time_offset(
    consumer: &Client,
    name: &str,
    time: SystemTime,
    high: i64,
    timeout: Duration,
) -> Result<i64> {
    let millis = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(name, 0, rdkafka::Offset::Offset(millis))
        .map_err(|e| kafka_error("looking a time up in a stream", e))?;
    let found = consumer
        .offsets_for_times(list, timeout)
        .map_err(|e| kafka_error("looking a time up in a stream", e))?;
    let offset = found
        .find_partition(name, 0)
        .map(|p| p.offset())
        .and_then(|o| match o {
            rdkafka::Offset::Offset(o) => Some(o),
            _ => None,
        });
    Ok(offset.unwrap_or(high))
}
