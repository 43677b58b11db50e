//! Streams on RabbitMQ: one durable stream queue (`x-queue-type: stream`) per declared
//! stream, bound to the exchange with the root's binding key, so that everything published
//! under the root is appended to it whoever publishes.
//!
//! - [`layout`]: the queue's name and arguments, and positions' offsets.
//! - [`epoch`]: the identity of a stream's log, in a registry stream per exchange.
//! - [`live`]: the live path of a handle's stream subscriptions, one consumer of the queue
//!   per stream (`x-stream-offset: next`) on a channel of its own; each message is delivered
//!   with its position, from the `x-stream-offset` header of the delivery.
//! - [`read`]: the log read by a consumer per read on a channel of its own (one kept from a
//!   full batch to the next, so that a replay is one consumer). AMQP has no "end of stream"
//!   signal: the end of the log is what the live consumer saw last or, when it has seen
//!   nothing yet, the last chunk a consumer from `last` is given; remembered per stream
//!   ([`Tail`]) while the live consumer runs, so that a thousand subscriptions resuming at
//!   once pay for one probe.
//!
//! Offsets: a stream's offsets start at 0 and may skip numbers (RabbitMQ stores entries of
//! its own in the log, one at the start of each segment); a position's offset is the stream
//! offset plus one (`Offset(0, s + 1)`), so that `Offset(0, 0)` is "before everything".

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use lapin::message::Delivery;
use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Channel, Consumer};
use parking_lot::{Mutex, RwLock};
use pubsub_core::{
    Error, ErrorKind, Message, Offset, Pattern, Position, Result, StreamConfig, Topic,
};

use crate::queue_probe::is_soft;
use crate::{binding, headers};

pub(crate) mod epoch;
mod layout;
mod live;
mod read;

pub(crate) use layout::{cut_name, queue_name};
use layout::{queue_arguments, to_position};
pub(crate) use live::follow;
pub(crate) use read::{end_now, read};
use read::{Flight, Kept};

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
    /// The consumer of the last full read, kept for the read that goes on from it.
    kept: Mutex<Option<Kept>>,
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
            kept: Mutex::new(None),
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
    // The broker adds the entry's offset to the table: not a header of the message.
    let headers = match delivery.properties.headers() {
        Some(table) if table.inner().contains_key(STREAM_OFFSET) => {
            let mut own = table.inner().clone();
            own.remove(STREAM_OFFSET);
            headers::decode(Some(&own.into()))
        }
        table => headers::decode(table.as_ref()),
    };
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
        if is_soft(&error, lapin::protocol::AMQPSoftError::PRECONDITIONFAILED) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn config(root: &str) -> StreamConfig {
        StreamConfig::new(root.parse().unwrap())
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
