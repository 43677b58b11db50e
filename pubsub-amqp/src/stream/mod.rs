//! Streams on RabbitMQ: one durable stream queue (`x-queue-type: stream`) per declared
//! stream, bound to the exchange with the root's binding key, so that everything published
//! under the root is appended to it whoever publishes.
//!
//! - The live path of a handle's stream subscriptions is one consumer of that queue per
//!   stream (`x-stream-offset: next`) on a channel of its own ([`follow`]): each message is
//!   delivered with its position, taken from the `x-stream-offset` header of the delivery.
//! - The log is read by short-lived consumers on the session's reader channel ([`read`]):
//!   a consumer starts at an offset, takes up to `limit` deliveries, and is cancelled.
//! - AMQP has no "end of stream" signal: the end of the log is what the live consumer saw
//!   last, or, when it has seen nothing yet, the last chunk a consumer from `last` is given
//!   ([`probe`]); remembered per stream ([`Tail`]) while the live consumer runs, so that a
//!   thousand subscriptions resuming at once pay for one probe.
//!
//! Offsets: a stream's offsets start at 0 and may skip numbers (RabbitMQ stores entries of
//! its own in the log, one at the start of each segment); a position's offset is the stream
//! offset plus one (`Offset(0, s + 1)`), so that `Offset(0, 0)` is "before everything".

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::future::{BoxFuture, Shared};
use futures::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Channel, Consumer};
use parking_lot::{Mutex, RwLock};
use pubsub_core::adapter::{LogRead, ReadFrom};
use pubsub_core::{
    Error, ErrorKind, Message, Offset, Pattern, Position, Result, StreamConfig, Topic,
};

use crate::{binding, headers};

pub(crate) mod epoch;

/// Bytes budgeted per message when a stream's `max_len` is turned into `x-max-length-bytes`
/// (RabbitMQ limits a stream by size, not count).
pub(crate) const BYTES_PER_MESSAGE: u64 = 256;

/// Segments a stream's byte budget is cut into (`x-stream-max-segment-size-bytes`):
/// retention drops whole segments, so smaller segments trim closer to the budget.
const SEGMENTS: u64 = 4;

/// Smallest segment asked for.
const MIN_SEGMENT: u64 = 1024;

/// RabbitMQ's default segment size: the largest asked for.
const MAX_SEGMENT: u64 = 500_000_000;

/// How long a probe waits for the last chunk (an empty stream gives none).
const PROBE_WAIT: Duration = Duration::from_millis(150);

/// After the end known when a read began: how long it waits for more before it stops.
const QUIET: Duration = Duration::from_millis(25);

/// Before that end: how long a read waits for the next delivery before it gives up and
/// returns what it has.
const STALL: Duration = Duration::from_secs(1);

/// How many times a read is tried when RabbitMQ starts its consumer past the entries asked
/// for.
const MISPLACED_ATTEMPTS: u32 = 4;

/// The consumer argument that says where a stream consumer starts, and the header that says
/// where each delivery stands.
const STREAM_OFFSET: &str = "x-stream-offset";

/// A stream declared through this handle.
#[derive(Debug)]
pub(crate) struct Stream {
    pub config: StreamConfig,
    /// The stream queue.
    pub queue: ShortString,
    pub tag: u32,
    pub epoch: u64,
    tail: Mutex<Tail>,
    /// One probe at a time per stream: the others wait for its answer.
    probing: tokio::sync::Mutex<()>,
    /// Reads under way.
    flights: Mutex<Vec<Flight>>,
}

/// What a handle knows of the end of a stream's log.
#[derive(Debug, Default, Clone, Copy)]
struct Tail {
    /// Bumped whenever the live consumer starts or stops.
    generation: u64,
    /// Whether the live consumer runs (it sees everything appended since it started).
    attached: bool,
    /// The end (a position's offset: stream offset + 1), learned since the live consumer
    /// started: from a probe or a live delivery.
    end: Option<u64>,
}

impl Stream {
    /// `config`'s stream, in `queue`, whose log's epoch is `epoch`.
    pub(crate) fn new(config: StreamConfig, queue: ShortString, epoch: u64) -> Self {
        Stream {
            tag: config.tag(),
            epoch,
            queue,
            config,
            tail: Mutex::new(Tail::default()),
            probing: tokio::sync::Mutex::new(()),
            flights: Mutex::new(Vec::new()),
        }
    }

    /// The live consumer started: what was known of the end no longer holds.
    pub(crate) fn attach(&self) -> u64 {
        let mut tail = self.tail.lock();
        tail.generation += 1;
        tail.attached = true;
        tail.end = None;
        tail.generation
    }

    /// The live consumer of `generation` stopped.
    pub(crate) fn detach(&self, generation: u64) {
        let mut tail = self.tail.lock();
        if tail.generation == generation {
            tail.generation += 1;
            tail.attached = false;
            tail.end = None;
        }
    }

    /// Whether a live consumer runs (then it delivers this stream's topics, with positions).
    pub(crate) fn is_attached(&self) -> bool {
        self.tail.lock().attached
    }

    /// The live consumer of `generation` (or a probe begun under it) saw the log reach `end`.
    fn learned(&self, generation: u64, end: u64) {
        let mut tail = self.tail.lock();
        if tail.generation == generation && tail.attached {
            tail.end = Some(tail.end.map_or(end, |known| known.max(end)));
        }
    }

    /// The end known, and the generation it is known under.
    fn known(&self) -> (u64, Option<u64>) {
        let tail = self.tail.lock();
        (tail.generation, tail.end.filter(|_| tail.attached))
    }

    /// The live message of a delivery of the stream queue, with its position (`None` when the
    /// routing key is not a topic or the offset is missing).
    pub(crate) fn live_message(&self, generation: u64, delivery: &Delivery) -> Option<Message> {
        let end = position_offset(delivery)?;
        self.learned(generation, end);
        let message = message_of(delivery)?;
        Some(message.with_position(Position::new(self.tag, self.epoch, Offset(0, end))))
    }
}

/// The streams declared through this handle.
#[derive(Debug, Default)]
pub(crate) struct Streams {
    all: RwLock<Vec<Arc<Stream>>>,
    any: AtomicBool,
}

impl Streams {
    pub(crate) fn insert(&self, stream: Arc<Stream>) {
        let mut all = self.all.write();
        if all.iter().any(|s| s.config.root() == stream.config.root()) {
            return;
        }
        all.push(stream);
        self.any.store(true, Ordering::Release);
    }

    /// The stream `pattern` is wholly under.
    pub(crate) fn under(&self, pattern: &Pattern) -> Option<Arc<Stream>> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        let all = self.all.read();
        all.iter()
            .find(|s| pattern.is_subset_of(s.config.root()))
            .cloned()
    }

    /// The stream whose queue is `queue`.
    pub(crate) fn by_queue(&self, queue: &ShortString) -> Option<Arc<Stream>> {
        let all = self.all.read();
        all.iter().find(|s| &s.queue == queue).cloned()
    }

    /// The stream whose root is `root`.
    pub(crate) fn by_root(&self, root: &Pattern) -> Option<Arc<Stream>> {
        let all = self.all.read();
        all.iter().find(|s| s.config.root() == root).cloned()
    }

    /// Whether `topic` is under a stream whose live consumer runs: then its messages come,
    /// with their positions, from that consumer, and the copy of the handle's own queue is
    /// not wanted.
    pub(crate) fn delivered_live(&self, topic: &Topic) -> bool {
        if !self.any.load(Ordering::Acquire) {
            return false;
        }
        let all = self.all.read();
        all.iter()
            .any(|s| s.config.covers(topic) && s.is_attached())
    }
}

/// The stream queue of `stream` on `exchange`: `<exchange>.stream.<tag>.<root>`, cut to
/// AMQP's 255 bytes (the tag keeps cut names apart).
pub(crate) fn queue_name(exchange: &str, stream: &StreamConfig) -> ShortString {
    cut_name(format!(
        "{exchange}.stream.{:08x}.{}",
        stream.tag(),
        stream.root()
    ))
}

/// `name` cut to AMQP's 255 bytes.
pub(crate) fn cut_name(mut name: String) -> ShortString {
    if name.len() > 255 {
        let mut cut = 255;
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        name.truncate(cut);
    }
    ShortString::from(name)
}

/// The arguments of the stream queue: its type, `x-max-age` from `max_age` (whole seconds,
/// rounded up), and `x-max-length-bytes` from `max_len` ([`BYTES_PER_MESSAGE`] each) with
/// segments a quarter of that, so that trimming happens.
pub(crate) fn queue_arguments(stream: &StreamConfig) -> FieldTable {
    let (bytes, segment) = byte_limits(stream.max_len());
    let age = stream.max_age();
    let seconds = age.as_secs() + u64::from(age.subsec_nanos() > 0);
    FieldTable::from(BTreeMap::from([
        (
            "x-queue-type".into(),
            AMQPValue::LongString("stream".into()),
        ),
        (
            "x-max-age".into(),
            AMQPValue::LongString(format!("{}s", seconds.max(1)).into()),
        ),
        ("x-max-length-bytes".into(), AMQPValue::LongLongInt(bytes)),
        (
            "x-stream-max-segment-size-bytes".into(),
            AMQPValue::LongLongInt(segment),
        ),
    ]))
}

/// `x-max-length-bytes` and `x-stream-max-segment-size-bytes` for `max_len` messages.
pub(crate) fn byte_limits(max_len: u64) -> (i64, i64) {
    let bytes = max_len
        .saturating_mul(BYTES_PER_MESSAGE)
        .min(i64::MAX as u64);
    let segment = (bytes / SEGMENTS).clamp(MIN_SEGMENT, MAX_SEGMENT);
    (
        i64::try_from(bytes).unwrap_or(i64::MAX),
        i64::try_from(segment).unwrap_or(i64::MAX),
    )
}

/// A position's offset for the stream offset `offset`.
pub(crate) fn to_position(offset: u64) -> u64 {
    offset.saturating_add(1)
}

/// The stream offset of the first entry after the position offset `after`; `None` when no
/// stream offset can be after it (an offset this adapter never gave).
pub(crate) fn first_after(after: Offset) -> Option<i64> {
    match after {
        Offset(0, at) => i64::try_from(at).ok(),
        _ => None,
    }
}

/// How many entries were lost between the position offset `after` and the first entry read
/// after it (`first`), both position offsets.
pub(crate) fn missed_between(after: u64, first: u64) -> Option<u64> {
    (first > after.saturating_add(1)).then(|| first - after - 1)
}

/// The position offset of a delivery of a stream queue (its `x-stream-offset` header).
pub(crate) fn position_offset(delivery: &Delivery) -> Option<u64> {
    let headers = delivery.properties.headers().as_ref()?;
    offset_value(headers.inner().get(STREAM_OFFSET)?).map(to_position)
}

fn offset_value(value: &AMQPValue) -> Option<u64> {
    match value {
        AMQPValue::LongLongInt(v) => u64::try_from(*v).ok(),
        AMQPValue::LongInt(v) => u64::try_from(*v).ok(),
        AMQPValue::LongUInt(v) => Some(u64::from(*v)),
        AMQPValue::Timestamp(v) => Some(*v),
        _ => None,
    }
}

/// The message of a delivery (its topic is the routing key it was published with).
fn message_of(delivery: &Delivery) -> Option<Message> {
    let Ok(topic) = Topic::new(delivery.routing_key.as_str()) else {
        tracing::trace!(key = %delivery.routing_key, "ignoring a routing key that is not a valid topic");
        return None;
    };
    let headers = headers::decode(delivery.properties.headers().as_ref());
    Some(Message::with_headers(topic, delivery.data.clone(), headers))
}

/// Declares `stream`'s queue (durable, with its limits) on `channel` and binds it to
/// `exchange` with the root's binding key. A queue of that name with other arguments is
/// `Invalid` (the broker closes `channel`: use a channel of its own).
pub(crate) async fn declare(
    channel: &Channel,
    exchange: &ShortString,
    queue: &ShortString,
    stream: &StreamConfig,
) -> Result<()> {
    let options = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    let declared = channel
        .queue_declare(queue.clone(), options, queue_arguments(stream))
        .await;
    if let Err(error) = declared {
        if is_precondition_failed(&error) {
            return Err(Error::new(
                ErrorKind::Invalid,
                format!(
                    "stream `{}`: its queue `{}` exists with other arguments (another max_len or \
                     max_age, or not a stream queue)",
                    stream.root(),
                    queue
                ),
            )
            .with_source(error));
        }
        return Err(crate::driver::lapin_error(
            "declaring the stream queue",
            error,
        ));
    }
    channel
        .queue_bind(
            queue.clone(),
            exchange.clone(),
            binding::binding_key(stream.root()),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| crate::driver::lapin_error("binding the stream queue", e))
}

fn is_precondition_failed(error: &lapin::Error) -> bool {
    matches!(
        error.kind(),
        lapin::ErrorKind::ProtocolError(e)
            if e.kind() == &AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED)
    )
}

/// Starts a consumer of `queue` on `channel` at `offset`.
pub(crate) async fn consume(
    channel: &Channel,
    queue: &ShortString,
    offset: AMQPValue,
) -> lapin::Result<Consumer> {
    let arguments = FieldTable::from(BTreeMap::from([(STREAM_OFFSET.into(), offset)]));
    channel
        .basic_consume(
            queue.clone(),
            "".into(),
            BasicConsumeOptions::default(),
            arguments,
        )
        .await
}

/// Where a read starts, and what it expects.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Plan {
    /// Nothing to read: the answer is the end alone.
    Nothing,
    /// Consume from `offset` until the end known (`until`, a position offset) or `limit`.
    Consume {
        offset: AMQPValue,
        /// Whether something is known to be there (then the first delivery is waited for
        /// longer).
        expected: bool,
        /// For `After`: the position offset read after, to count what was trimmed.
        after: Option<u64>,
    },
}

/// The read of `from` on a log whose end is the position offset `end`.
pub(crate) fn plan(from: ReadFrom, end: u64, limit: usize) -> Plan {
    if limit == 0 {
        return Plan::Nothing;
    }
    match from {
        ReadFrom::End => Plan::Nothing,
        ReadFrom::Start if end == 0 => Plan::Nothing,
        ReadFrom::Start => Plan::Consume {
            offset: AMQPValue::LongString("first".into()),
            expected: true,
            after: None,
        },
        // From the entry read last, not the one after it: RabbitMQ 3.10 can skip the chunk
        // an offset at the very end of the log falls in (a consumer starting at the offset
        // after its last entry starts with the chunk after the next). The entry itself is
        // dropped by the read.
        ReadFrom::After(after) => match first_after(after) {
            Some(first) if (first as u64) < end => Plan::Consume {
                offset: AMQPValue::LongLongInt(first.saturating_sub(1)),
                expected: true,
                after: Some(after.1),
            },
            _ => Plan::Nothing,
        },
        ReadFrom::Last(0) => Plan::Nothing,
        ReadFrom::Last(_) if end == 0 => Plan::Nothing,
        ReadFrom::Last(n) => {
            // The n-th last entry, were offsets dense (they skip RabbitMQ's own entries, so
            // this may give fewer than n).
            let first = end.saturating_sub(n);
            Plan::Consume {
                offset: AMQPValue::LongLongInt(i64::try_from(first).unwrap_or(i64::MAX)),
                expected: true,
                after: None,
            }
        }
        ReadFrom::Time(time) => {
            let seconds = time
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            Plan::Consume {
                offset: AMQPValue::Timestamp(seconds),
                expected: false,
                after: None,
            }
        }
    }
}

/// The end of `stream`'s log (a position offset, 0 when empty): known while the live
/// consumer runs, else probed (one probe at a time per stream).
pub(crate) async fn end_of(stream: &Stream, reader: &Channel) -> lapin::Result<u64> {
    if let (_, Some(end)) = stream.known() {
        return Ok(end);
    }
    let _one = stream.probing.lock().await;
    let (generation, known) = stream.known();
    if let Some(end) = known {
        return Ok(end);
    }
    let end = probe(reader, &stream.queue).await?;
    stream.learned(generation, end);
    Ok(stream.known().1.unwrap_or(end))
}

/// The end of the log at `queue` (a position offset, 0 when empty): the last offset of the
/// last chunk, which a consumer from `last` is given at once.
async fn probe(reader: &Channel, queue: &ShortString) -> lapin::Result<u64> {
    let mut consumer = consume(reader, queue, AMQPValue::LongString("last".into())).await?;
    let mut end = 0;
    let mut wait = PROBE_WAIT;
    // A consumer from `last` goes on with what is appended after: on a busy stream it
    // never falls quiet, so the probe ends at the latest this long after its first delivery.
    let mut deadline = None;
    loop {
        let now = match deadline {
            Some(deadline) => wait.min(deadline - tokio::time::Instant::now().min(deadline)),
            None => wait,
        };
        let Ok(next) = tokio::time::timeout(now, consumer.next()).await else {
            break;
        };
        let delivery = match next {
            Some(delivery) => delivery?,
            None => return Err(ended()),
        };
        if let Some(offset) = position_offset(&delivery) {
            end = end.max(offset);
        }
        delivery.acker.ack(BasicAckOptions::default()).await?;
        deadline.get_or_insert_with(|| tokio::time::Instant::now() + PROBE_WAIT);
        wait = QUIET;
    }
    cancel(reader, consumer).await?;
    Ok(end)
}

/// The first offset the log holds (a position offset), or `None` when nothing came.
async fn first_held(reader: &Channel, queue: &ShortString) -> lapin::Result<Option<u64>> {
    let mut consumer = consume(reader, queue, AMQPValue::LongString("first".into())).await?;
    let first = match tokio::time::timeout(STALL, consumer.next()).await {
        Ok(Some(delivery)) => {
            let delivery = delivery?;
            delivery.acker.ack(BasicAckOptions::default()).await?;
            position_offset(&delivery)
        }
        Ok(None) => return Err(ended()),
        Err(_) => None,
    };
    cancel(reader, consumer).await?;
    Ok(first)
}

/// Cancels a read's consumer and acknowledges what it was still given.
async fn cancel(reader: &Channel, mut consumer: Consumer) -> lapin::Result<()> {
    reader
        .basic_cancel(consumer.tag(), BasicCancelOptions::default())
        .await?;
    while let Some(Some(Ok(delivery))) = consumer.next().now_or_never() {
        delivery.acker.ack(BasicAckOptions::default()).await?;
    }
    Ok(())
}

fn ended() -> lapin::Error {
    lapin::Error::from(std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        "the stream consumer ended",
    ))
}

/// Reads at most `limit` entries of `stream`'s log from `from` on the reader channel.
///
/// Reads of the same start and limit under way at once share one consumer (a thousand
/// subscriptions resuming after an outage from the same position cost one read): a read
/// that joins raises the end the shared one reads to.
pub(crate) async fn read(
    stream: &Arc<Stream>,
    reader: &Channel,
    from: ReadFrom,
    limit: usize,
) -> Result<LogRead> {
    let end = end_of(stream, reader)
        .await
        .map_err(|e| crate::driver::lapin_error("finding the end of a stream's log", e))?;
    let plan = plan(from, end, limit);
    if plan == Plan::Nothing {
        return Ok(LogRead {
            epoch: stream.epoch,
            entries: Vec::new(),
            end: Offset(0, end),
            missed: None,
        });
    }
    let shared = {
        let mut flights = stream.flights.lock();
        match flights.iter().find(|f| f.from == from && f.limit == limit) {
            Some(flight) => {
                flight.target.fetch_max(end, Ordering::AcqRel);
                flight.result.clone()
            }
            None => {
                let target = Arc::new(AtomicU64::new(end));
                let task = tokio::spawn(read_log(
                    stream.clone(),
                    reader.clone(),
                    plan,
                    limit,
                    target.clone(),
                ));
                let result = async move {
                    task.await.unwrap_or_else(|_| {
                        Err(Error::new(ErrorKind::Backend, "a stream read was stopped"))
                    })
                }
                .boxed()
                .shared();
                flights.push(Flight {
                    from,
                    limit,
                    target,
                    result: result.clone(),
                });
                result
            }
        }
    };
    shared.await
}

/// A read under way, which others may join.
pub(crate) struct Flight {
    from: ReadFrom,
    limit: usize,
    /// The end (a position offset) the read goes on to, raised by those who join.
    target: Arc<AtomicU64>,
    result: Shared<BoxFuture<'static, Result<LogRead>>>,
}

impl std::fmt::Debug for Flight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flight")
            .field("from", &self.from)
            .field("limit", &self.limit)
            .finish()
    }
}

/// Takes a read out of the streams's reads under way when it ends, however it ends.
struct Landing<'a> {
    stream: &'a Stream,
    target: &'a Arc<AtomicU64>,
}

impl Landing<'_> {
    fn land(&self, flights: &mut Vec<Flight>) {
        flights.retain(|f| !Arc::ptr_eq(&f.target, self.target));
    }
}

impl Drop for Landing<'_> {
    fn drop(&mut self) {
        self.land(&mut self.stream.flights.lock());
    }
}

/// One read of the log: consumes as `plan` says until `limit` entries, or the end
/// (`target`) and a quiet moment, or a stall.
///
/// A read after a position that finds its first entry further on than the next offset asks
/// whether the log was trimmed past the position (a gap), and otherwise reads once more:
/// RabbitMQ 3.10 can start a consumer past the newest chunk or two when they were written
/// an instant before (not yet in the log's index), and a second read a moment later finds
/// them; what is still skipped then is RabbitMQ's own entries (no loss).
async fn read_log(
    stream: Arc<Stream>,
    reader: Channel,
    plan: Plan,
    limit: usize,
    target: Arc<AtomicU64>,
) -> Result<LogRead> {
    let landing = Landing {
        stream: &stream,
        target: &target,
    };
    let fail = |e| crate::driver::lapin_error("reading a stream's log", e);
    let Plan::Consume {
        offset,
        expected,
        after,
    } = plan
    else {
        return Err(Error::new(ErrorKind::Backend, "nothing to read"));
    };
    let mut again = true;
    let known = target.load(Ordering::Acquire);
    let mut attempts = 0;
    loop {
        let batch = read_once(&landing, &reader, offset.clone(), expected, after, limit)
            .await
            .map_err(fail)?;
        attempts += 1;
        // Entries were there up to `known` when the read began, yet the consumer began
        // after them: RabbitMQ placed it at the log's end (3.10 does, now and then, on a
        // stream being written to). Read again.
        let misplaced = expected && batch.first.is_none_or(|first| first > known + 1);
        if misplaced && attempts < MISPLACED_ATTEMPTS {
            tracing::debug!(queue = %stream.queue, known, first = batch.first, "a read began past the log's end; reading again");
            tokio::time::sleep(QUIET * attempts).await;
            continue;
        }
        let mut read = LogRead {
            epoch: stream.epoch,
            end: Offset(0, batch.last.max(target.load(Ordering::Acquire))),
            entries: batch.entries,
            missed: None,
        };
        let (Some(after), Some(first)) = (after, batch.first) else {
            return Ok(read);
        };
        let Some(missed) = missed_between(after, first) else {
            return Ok(read);
        };
        let held = first_held(&reader, &stream.queue)
            .await
            .map_err(fail)?
            .unwrap_or(first);
        if after.saturating_add(1) < held {
            // Trimmed past the position.
            read.missed = Some(Some(missed));
            return Ok(read);
        }
        if !again {
            return Ok(read);
        }
        again = false;
        tracing::debug!(queue = %stream.queue, after, first, "a read skipped entries; reading again");
        tokio::time::sleep(QUIET).await;
    }
}

/// What one consumer of a read was given.
struct Batch {
    entries: Vec<(Offset, Message)>,
    /// The first entry's position offset.
    first: Option<u64>,
    /// The last entry's.
    last: u64,
}

async fn read_once(
    landing: &Landing<'_>,
    reader: &Channel,
    offset: AMQPValue,
    expected: bool,
    after: Option<u64>,
    limit: usize,
) -> lapin::Result<Batch> {
    let (stream, target) = (landing.stream, landing.target);
    let mut consumer = consume(reader, &stream.queue, offset).await?;
    let mut wait = if expected { STALL } else { PROBE_WAIT };
    let mut batch = Batch {
        entries: Vec::new(),
        first: None,
        last: 0,
    };
    let mut ackers = Vec::with_capacity(limit.min(1024));
    while batch.entries.len() < limit {
        let delivery = match tokio::time::timeout(wait, consumer.next()).await {
            Err(_) if wait == QUIET => {
                // The end reached and nothing more: done, unless one who joined meanwhile
                // wants more (checked as the read leaves, so that nobody joins it after).
                let mut flights = stream.flights.lock();
                if batch.last < target.load(Ordering::Acquire) {
                    wait = STALL;
                    continue;
                }
                landing.land(&mut flights);
                break;
            }
            Err(_) => break,
            Ok(None) => return Err(ended()),
            Ok(Some(delivery)) => delivery?,
        };
        // Acknowledged together at the end (the reader's prefetch exceeds a read's limit).
        ackers.push(delivery.acker.clone());
        let Some(at) = position_offset(&delivery) else {
            continue;
        };
        if after.is_some_and(|after| at <= after) {
            continue;
        }
        batch.first.get_or_insert(at);
        batch.last = batch.last.max(at);
        wait = if at >= target.load(Ordering::Acquire) {
            QUIET
        } else {
            STALL
        };
        if let Some(message) = message_of(&delivery) {
            batch.entries.push((Offset(0, at), message));
        }
    }
    landing.land(&mut stream.flights.lock());
    let acks = ackers.iter().map(|a| a.ack(BasicAckOptions::default()));
    futures::future::try_join_all(acks).await?;
    cancel(reader, consumer).await?;
    Ok(batch)
}

/// Acknowledgements of the live consumer: one `multiple` ack every so many deliveries or
/// when nothing more is ready.
pub(crate) async fn follow(
    stream: Arc<Stream>,
    generation: u64,
    channel: Channel,
    mut consumer: Consumer,
    prefetch: u16,
    deliver: impl Fn(Message),
) {
    let ack_every = u64::from(prefetch / 2).max(1);
    let (mut last, mut unacked) = (0, 0);
    loop {
        let next = match consumer.next().now_or_never() {
            Some(next) if unacked < ack_every => next,
            ready => {
                if unacked > 0
                    && channel
                        .basic_ack(last, BasicAckOptions { multiple: true })
                        .await
                        .is_err()
                {
                    return;
                }
                unacked = 0;
                match ready {
                    Some(next) => next,
                    None => consumer.next().await,
                }
            }
        };
        match next {
            Some(Ok(delivery)) => {
                last = delivery.delivery_tag;
                unacked += 1;
                if let Some(message) = stream.live_message(generation, &delivery) {
                    deliver(message);
                }
            }
            Some(Err(error)) => {
                tracing::debug!(%error, queue = %stream.queue, "the stream consumer failed");
                return;
            }
            None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(root: &str) -> StreamConfig {
        StreamConfig::new(root.parse().unwrap())
    }

    #[test]
    fn queue_names_carry_exchange_tag_and_root_and_fit() {
        let stream = config("room.>");
        let name = queue_name("pubsub", &stream);
        assert_eq!(
            name.as_str(),
            format!("pubsub.stream.{:08x}.room.>", stream.tag())
        );
        let long = config(&format!("{}.>", vec!["abcdefgh"; 27].join(".")));
        let name = queue_name("pubsub", &long);
        assert_eq!(name.as_str().len(), 255);
        assert!(name
            .as_str()
            .starts_with(&format!("pubsub.stream.{:08x}.", long.tag())));
        assert_ne!(queue_name("other", &stream), queue_name("pubsub", &stream));
    }

    #[test]
    fn limits_are_sized_from_max_len_and_max_age() {
        assert_eq!(byte_limits(20), (5_120, 1_280));
        assert_eq!(byte_limits(1), (256, 1_024));
        assert_eq!(byte_limits(u64::MAX), (i64::MAX, 500_000_000));
        let args = queue_arguments(
            &config("s.>")
                .with_max_len(100)
                .with_max_age(Duration::from_millis(1_500)),
        );
        let get = |k: &str| args.inner().get(k).cloned();
        assert_eq!(get("x-max-age"), Some(AMQPValue::LongString("2s".into())));
        assert_eq!(
            get("x-max-length-bytes"),
            Some(AMQPValue::LongLongInt(25_600))
        );
        assert_eq!(
            get("x-queue-type"),
            Some(AMQPValue::LongString("stream".into()))
        );
    }

    #[test]
    fn offsets_map_to_positions_and_back() {
        assert_eq!(to_position(0), 1);
        // After the entry at stream offset 4 (position offset 5): from stream offset 5.
        assert_eq!(first_after(Offset(0, to_position(4))), Some(5));
        assert_eq!(first_after(Offset(0, 0)), Some(0));
        assert_eq!(first_after(Offset(1, 0)), None);
        assert_eq!(first_after(Offset(0, u64::MAX)), None);
        assert_eq!(missed_between(3, 4), None);
        assert_eq!(missed_between(3, 10), Some(6));
        assert_eq!(missed_between(0, 1), None);
    }

    #[test]
    fn plans_reads() {
        assert_eq!(plan(ReadFrom::End, 10, 5), Plan::Nothing);
        assert_eq!(plan(ReadFrom::Start, 0, 5), Plan::Nothing);
        assert_eq!(plan(ReadFrom::Start, 3, 0), Plan::Nothing);
        assert!(matches!(plan(ReadFrom::Start, 3, 5), Plan::Consume { .. }));
        // After the end, or beyond any offset: nothing to read, no consumer.
        assert_eq!(plan(ReadFrom::After(Offset(0, 10)), 10, 5), Plan::Nothing);
        assert_eq!(plan(ReadFrom::After(Offset(0, 99)), 10, 5), Plan::Nothing);
        assert_eq!(
            plan(ReadFrom::After(Offset(u64::MAX, u64::MAX)), 10, 5),
            Plan::Nothing
        );
        assert_eq!(
            plan(ReadFrom::After(Offset(0, 4)), 10, 5),
            Plan::Consume {
                offset: AMQPValue::LongLongInt(3),
                expected: true,
                after: Some(4),
            }
        );
        match plan(ReadFrom::Last(3), 10, 5) {
            Plan::Consume { offset, .. } => assert_eq!(offset, AMQPValue::LongLongInt(7)),
            other => panic!("{other:?}"),
        }
        assert_eq!(plan(ReadFrom::Last(3), 0, 5), Plan::Nothing);
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(42);
        match plan(ReadFrom::Time(time), 10, 5) {
            Plan::Consume { offset, .. } => assert_eq!(offset, AMQPValue::Timestamp(42)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_end_is_known_only_while_attached() {
        let stream = Stream::new(config("s.>"), "q".into(), 7);
        assert_eq!(stream.known().1, None);
        stream.learned(0, 5);
        assert_eq!(stream.known().1, None, "not attached");
        let generation = stream.attach();
        stream.learned(generation, 5);
        stream.learned(generation, 3);
        assert_eq!(stream.known().1, Some(5));
        stream.learned(generation - 1, 9);
        assert_eq!(stream.known().1, Some(5), "an old generation");
        stream.detach(generation);
        assert_eq!(stream.known().1, None);
        assert!(!stream.is_attached());
    }
}
