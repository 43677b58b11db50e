//! Reading a stream's log: a consumer on a channel of its own per read (the one of a full
//! batch kept for the read that goes on from it), the end of the log (known from the live
//! consumer or probed on the reader channel), and reads under way shared by those who ask
//! for the same.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::future::{BoxFuture, Shared};
use futures::{FutureExt, StreamExt};
use lapin::options::{BasicAckOptions, BasicCancelOptions, BasicQosOptions};
use lapin::types::{AMQPValue, ShortString};
use lapin::{Channel, Connection, Consumer};
use pubsub_core::adapter::{LogRead, ReadFrom};
use pubsub_core::{Error, ErrorKind, Message, Offset, Result};

use super::layout::{first_after, missed_between};
use super::{consume, message_of, position_offset, Stream};

/// How long a probe waits for the last chunk (an empty stream gives none).
const PROBE_WAIT: Duration = Duration::from_millis(150);

/// How long a probe waits for more of the last chunk, and a read before it is made again.
const QUIET: Duration = Duration::from_millis(25);

/// Before that end: how long a read waits for the next delivery before it gives up and
/// returns what it has.
const STALL: Duration = Duration::from_secs(1);

/// How long the consumer of a full batch is kept for a read that goes on from it.
const KEPT_IDLE: Duration = Duration::from_secs(2);

/// How many deliveries a read acknowledges at once (`multiple`).
const ACK_EVERY: usize = 128;

/// How many times a read is tried when RabbitMQ starts its consumer past the entries asked
/// for.
const MISPLACED_ATTEMPTS: u32 = 4;

/// How long closing a read's channel may take (a channel of a connection that died under it
/// may never hear back).
const RELEASE_WAIT: Duration = Duration::from_secs(5);

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
        // From the entry read last, not the one after it (the read drops it), so that the
        // consumer starts on an entry the log has, not at its very end, where RabbitMQ 3.10
        // places consumers less reliably (see `read_log`).
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
/// consumer runs, else probed (one probe at a time per stream, given up after `bound`).
pub(crate) async fn end_of(
    stream: &Stream,
    reader: &Channel,
    bound: Duration,
) -> lapin::Result<u64> {
    if let (_, Some(end)) = stream.known() {
        return Ok(end);
    }
    let _one = stream.probing.lock().await;
    let (generation, known) = stream.known();
    if let Some(end) = known {
        return Ok(end);
    }
    // Once the live consumer has seen the log's end, that end will do: all that comes after
    // it is the live consumer's.
    let live = || matches!(stream.known(), (g, Some(_)) if g == generation);
    let end = within(bound, reader, probe(reader, &stream.queue, live)).await?;
    stream.learned(generation, end);
    Ok(stream.known().1.unwrap_or(end))
}

/// The end of `stream`'s log at the broker now (a position offset, 0 when empty), always
/// probed: not what the live consumer saw last, which may lag behind under load. Given up
/// after `bound`.
pub(crate) async fn end_now(
    stream: &Stream,
    reader: &Channel,
    bound: Duration,
) -> lapin::Result<u64> {
    let _one = stream.probing.lock().await;
    within(bound, reader, probe(reader, &stream.queue, || false)).await
}

/// `probe` (on `reader`) given up when `reader` closes or after `bound`: a probe runs under
/// the stream's probing lock, and one that never hears back (lapin may leave a request
/// unanswered when the connection dies under it) would hold every later probe up.
async fn within(
    bound: Duration,
    reader: &Channel,
    probe: impl std::future::Future<Output = lapin::Result<u64>>,
) -> lapin::Result<u64> {
    let probe = tokio::time::timeout(bound, probe);
    tokio::select! {
        probed = probe => match probed {
            Ok(end) => end,
            Err(_) => {
                tracing::warn!(?bound, "probing the end of a stream's log got no answer; given up");
                Err(io_error(std::io::ErrorKind::TimedOut, "probing the end of a stream's log got no answer"))
            }
        },
        () = closed(|| reader.status().connected()) => Err(io_error(
            std::io::ErrorKind::ConnectionAborted,
            "the reader channel closed under a probe of a stream's log",
        )),
    }
}

/// How often a read or a probe checks that its connection still stands.
const LIVENESS_CHECK: Duration = Duration::from_millis(50);

/// Returns once `open` says no more (checked every [`LIVENESS_CHECK`]).
async fn closed(open: impl Fn() -> bool) {
    while open() {
        tokio::time::sleep(LIVENESS_CHECK).await;
    }
}

/// The end of the log at `queue` (a position offset, 0 when empty): the last offset of the
/// last chunk, which a consumer from `last` is given at once; or what it has seen when `known`
/// says that the end is known otherwise.
async fn probe(
    reader: &Channel,
    queue: &ShortString,
    known: impl Fn() -> bool,
) -> lapin::Result<u64> {
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
        if known() {
            break;
        }
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

/// The consumer of a full batch, still running (with what it was given since), kept so that
/// the read after that batch's last entry goes on from it: a replay read batch after batch is
/// one consumer instead of a consumer, and the broker's reader setup, per batch.
pub(crate) struct Kept {
    /// The position offset of the batch's last entry.
    after: u64,
    /// The consumer's own channel.
    channel: Channel,
    consumer: Consumer,
    /// Tells it from the consumers kept before and after it (for the idle timer).
    serial: u64,
}

impl std::fmt::Debug for Kept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kept").field("after", &self.after).finish()
    }
}

/// The consumer kept on `stream` (and its channel) when a read after the position offset
/// `after` goes on from it; a kept consumer that does not fit is cancelled (the read starts
/// elsewhere).
async fn resume(stream: &Stream, after: Option<u64>) -> Option<(Channel, Consumer)> {
    let kept = stream.kept.lock().take()?;
    if after == Some(kept.after) && kept.channel.status().connected() {
        return Some((kept.channel, kept.consumer));
    }
    release(kept.channel).await;
    None
}

/// Keeps `consumer` (on `channel`), which gave the entry at the position offset `after` last,
/// for the read that goes on from it, until it has been idle for [`KEPT_IDLE`].
async fn keep(stream: &Arc<Stream>, channel: Channel, consumer: Consumer, after: u64) {
    static SERIAL: AtomicU64 = AtomicU64::new(0);
    let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
    let kept = Kept {
        after,
        channel,
        consumer,
        serial,
    };
    let replaced = stream.kept.lock().replace(kept);
    if let Some(replaced) = replaced {
        release(replaced.channel).await;
    }
    let stream = stream.clone();
    tokio::spawn(async move {
        tokio::time::sleep(KEPT_IDLE).await;
        let idle = {
            let mut slot = stream.kept.lock();
            match &*slot {
                Some(kept) if kept.serial == serial => slot.take(),
                _ => None,
            }
        };
        if let Some(idle) = idle {
            release(idle.channel).await;
        }
    });
}

/// Opens a read's channel: its own, so that its deliveries are acknowledged many at once
/// (`multiple` would acknowledge other consumers' deliveries on a shared channel).
async fn open(connection: &Connection) -> lapin::Result<Channel> {
    let channel = connection.create_channel().await?;
    channel
        .basic_qos(crate::driver::READ_PREFETCH, BasicQosOptions::default())
        .await?;
    Ok(channel)
}

/// Closes a read's channel, which cancels its consumer (a failure is only logged: the channel
/// is gone already).
async fn release(channel: Channel) {
    match tokio::time::timeout(RELEASE_WAIT, channel.close(200, "OK".into())).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::debug!(%error, "closing a stream read's channel failed"),
        Err(_) => tracing::debug!("closing a stream read's channel got no answer"),
    }
}

/// Cancels a probe's consumer on the reader channel and acknowledges what it was still given.
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
    io_error(
        std::io::ErrorKind::ConnectionAborted,
        "the stream consumer ended",
    )
}

fn io_error(kind: std::io::ErrorKind, what: &'static str) -> lapin::Error {
    lapin::Error::from(std::io::Error::new(kind, what))
}

/// Reads at most `limit` entries of `stream`'s log from `from` on the reader channel.
///
/// Reads of the same start and limit under way at once share one consumer (a thousand
/// subscriptions resuming after an outage from the same position cost one read): a read
/// that joins raises the end the shared one reads to.
///
/// A read is given up after `bound` (a request whose connection died under it may never be
/// answered): it then leaves the reads under way, so that the next one starts afresh instead
/// of joining it.
pub(crate) async fn read(
    stream: &Arc<Stream>,
    reader: &Channel,
    connection: &Arc<Connection>,
    from: ReadFrom,
    limit: usize,
    bound: Duration,
) -> Result<LogRead> {
    let end = end_of(stream, reader, bound)
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
                let read = bounded_read(
                    bound,
                    connection.clone(),
                    read_log(
                        stream.clone(),
                        reader.clone(),
                        connection.clone(),
                        plan,
                        limit,
                        target.clone(),
                    ),
                );
                let (landed, target_of) = (stream.clone(), target.clone());
                let task = tokio::spawn(async move {
                    let read = read.await;
                    // However the read ended (given up before it began, too), it is no longer
                    // under way: the next read starts afresh instead of getting this answer.
                    landed
                        .flights
                        .lock()
                        .retain(|f| !Arc::ptr_eq(&f.target, &target_of));
                    read
                });
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

/// `read` (on `connection`) given up when `connection` closes or after `bound` (dropping it
/// takes it out of the reads under way): lapin may leave a request unanswered when the
/// connection dies under it.
async fn bounded_read(
    bound: Duration,
    connection: Arc<Connection>,
    read: impl std::future::Future<Output = Result<LogRead>>,
) -> Result<LogRead> {
    let read = tokio::time::timeout(bound, read);
    tokio::select! {
        read = read => match read {
            Ok(read) => read,
            Err(_) => {
                tracing::warn!(?bound, "a read of a stream's log got no answer; given up");
                Err(Error::new(
                    ErrorKind::Timeout,
                    format!("a read of a stream's log got no answer within {bound:?}"),
                ))
            }
        },
        () = closed(|| connection.status().connected()) => Err(Error::new(
            ErrorKind::Connection,
            "the connection closed under a read of a stream's log",
        )),
    }
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
    stream: &'a Arc<Stream>,
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
    connection: Arc<Connection>,
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
        let batch = read_once(
            &landing,
            &connection,
            offset.clone(),
            expected,
            after,
            limit,
        )
        .await
        .map_err(fail)?;
        attempts += 1;
        // Entries were there up to `known` when the read began, yet the consumer began
        // after them: RabbitMQ placed it at the log's end (3.10 does, now and then, on a
        // stream being written to). Read again. (A consumer that went on is where it was.)
        let misplaced =
            !batch.resumed && expected && batch.first.is_none_or(|first| first > known + 1);
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
        // A consumer that went on gives the log's entries in order: what it skips is
        // RabbitMQ's own entries, not a loss.
        let (Some(after), Some(first), false) = (after, batch.first, batch.resumed) else {
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
    /// Whether the consumer was the one kept from the batch before.
    resumed: bool,
}

/// One consumer's part of a read: the consumer kept from the batch before when the read goes
/// on from it, else a new one at `offset` on a channel of its own; kept after a full batch,
/// its channel closed otherwise.
async fn read_once(
    landing: &Landing<'_>,
    connection: &Connection,
    offset: AMQPValue,
    expected: bool,
    after: Option<u64>,
    limit: usize,
) -> lapin::Result<Batch> {
    let stream = landing.stream;
    let (channel, mut consumer, resumed) = match resume(stream, after).await {
        Some((channel, consumer)) => (channel, consumer, true),
        None => {
            let channel = open(connection).await?;
            match consume(&channel, &stream.queue, offset).await {
                Ok(consumer) => (channel, consumer, false),
                Err(error) => {
                    release(channel).await;
                    return Err(error);
                }
            }
        }
    };
    let taken = take(landing, &mut consumer, expected, after, limit, resumed).await;
    match &taken {
        // A full batch: the next read most likely goes on after its last entry.
        Ok(batch) if batch.entries.len() >= limit => {
            if let Some((Offset(_, last), _)) = batch.entries.last() {
                keep(stream, channel, consumer, *last).await;
            }
        }
        _ => release(channel).await,
    }
    taken
}

/// Takes up to `limit` entries from `consumer`, acknowledging as it goes.
async fn take(
    landing: &Landing<'_>,
    consumer: &mut Consumer,
    expected: bool,
    after: Option<u64>,
    limit: usize,
    resumed: bool,
) -> lapin::Result<Batch> {
    let (stream, target) = (landing.stream, landing.target);
    let mut wait = if expected { STALL } else { PROBE_WAIT };
    let mut batch = Batch {
        entries: Vec::new(),
        first: None,
        last: 0,
        resumed,
    };
    let mut unacked = None;
    let mut pending = 0;
    while batch.entries.len() < limit {
        let delivery = match tokio::time::timeout(wait, consumer.next()).await {
            Err(_) => break,
            Ok(None) => return Err(ended()),
            Ok(Some(delivery)) => delivery?,
        };
        // Acknowledged a few at a time, so that the broker keeps sending while the read
        // goes on.
        pending += 1;
        if pending >= ACK_EVERY {
            delivery
                .acker
                .ack(BasicAckOptions { multiple: true })
                .await?;
            (unacked, pending) = (None, 0);
        } else {
            unacked = Some(delivery.acker.clone());
        }
        let Some(at) = position_offset(&delivery) else {
            continue;
        };
        if after.is_some_and(|after| at <= after) {
            continue;
        }
        batch.first.get_or_insert(at);
        batch.last = batch.last.max(at);
        wait = STALL;
        if let Some(message) = message_of(&delivery) {
            batch.entries.push((Offset(0, at), message));
        }
        // The end reached: done, not waiting for more (on a stream written to without
        // pause that wait never ends, and the subscription would get everything a batch
        // late instead of live: what comes after the end is the live consumer's), unless
        // one who joined meanwhile wants more (checked as the read leaves, so that nobody
        // joins it after).
        if at >= target.load(Ordering::Acquire) {
            let mut flights = stream.flights.lock();
            if batch.last >= target.load(Ordering::Acquire) {
                landing.land(&mut flights);
                break;
            }
        }
    }
    landing.land(&mut stream.flights.lock());
    if let Some(acker) = unacked {
        acker.ack(BasicAckOptions { multiple: true }).await?;
    }
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
