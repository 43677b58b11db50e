//! [`KafkaDriver`]: the Kafka half of a handle (publishing with delivery reports, topic
//! creation, the handle's consumer and its assignment); the kit does the rest.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use pubsub_core::adapter::{Context, Driver, Inbound, Tasks, Watchdog};
use pubsub_core::adapter::{GroupEntry, Settlement};
use pubsub_core::adapter::{LogRead, ReadFrom};
use pubsub_core::{Error, ErrorKind, GroupConfig, Message, Pattern, Result, StreamConfig, Topic};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};

use crate::config::{millis, RECORD_ALLOWANCE};
use crate::health::{beat, Health, LinkContext};
use crate::log_end::log_end;
use crate::name::{decode_topic, encode_topic};
use crate::stream_log::{Client, StreamTopic, Streams};
use crate::topics::Topics;
use crate::{headers, raw, KafkaConfig};

/// A native filter: an exact topic (its Kafka name), or a wildcard pattern served by the
/// handle's own discovery.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KafkaFilter {
    /// The partitions of one topic.
    Topic(Arc<str>),
    /// Every topic whose decoded name the pattern matches, found by discovery.
    Pattern(Pattern),
    /// The topic of a declared stream (its Kafka name): patterns under a stream read it,
    /// since every message published under the stream goes there.
    Stream(Arc<str>),
}

/// The topic the warm-up record goes to: `_` is never in an encoded name, so no pattern
/// ever sees it.
const WARMUP_TOPIC: &str = "__pubsub_warmup";

/// The Kafka [`Driver`].
pub(crate) struct KafkaDriver {
    shared: Arc<Shared>,
}

struct Shared {
    config: KafkaConfig,
    /// The record key of every message the handle publishes: one partition per publisher.
    key: [u8; 8],
    producer: RwLock<Arc<FutureProducer<LinkContext>>>,
    consumer: Arc<Client>,
    /// The consumer that checks where a partition's log ends ([`log_end`]), made on first use.
    probe: Mutex<Option<Arc<Client>>>,
    admin: AdminClient<LinkContext>,
    assignment: tokio::sync::Mutex<Assignment>,
    /// The last read of the cluster's topic list, shared by the wildcard subscribes that
    /// follow it within [`TOPIC_LIST_REUSE`].
    listed: Mutex<Listing>,
    /// Topics known to exist and the creations under way, so that each is created once.
    topics: Topics,
    /// The streams declared on the handle, each with its topic and reader.
    streams: Arc<Streams>,
    /// The members of the groups joined through the handle.
    groups: crate::group::Groups,
    watchdog: Arc<Watchdog>,
    health: Arc<Health>,
    stop: Arc<AtomicBool>,
    poller: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// How long a read of the cluster's topic list serves the wildcard subscribes that follow it
/// (at most the discovery interval): many wildcard subscribes in a row read the list once
/// every so often instead of once each. A topic created meanwhile is not missed: this handle
/// forgets the list when it creates a topic, and discovery's next pass (which always reads)
/// finds one made by another client, and assigns it from its beginning.
const TOPIC_LIST_REUSE: Duration = Duration::from_millis(250);

/// The last read of the cluster's topic list (when it began, and what it found), and when
/// this handle last created topics.
#[derive(Default)]
struct Listing {
    last: Option<(tokio::time::Instant, Arc<Vec<raw::TopicInfo>>)>,
    created: Option<tokio::time::Instant>,
}

impl Listing {
    /// The last read's topics if it began less than `reuse` ago and after this handle's last
    /// creation of topics ended (a read under way meanwhile may not have seen them).
    fn recent(&self, reuse: Duration) -> Option<Arc<Vec<raw::TopicInfo>>> {
        let (at, topics) = self.last.as_ref()?;
        let fresh = at.elapsed() < reuse && self.created.is_none_or(|created| *at > created);
        fresh.then(|| topics.clone())
    }
}

/// What the handle's consumer is assigned, and why.
#[derive(Debug, Default)]
struct Assignment {
    /// The Kafka names of the exact filters.
    exact: HashSet<Arc<str>>,
    /// The wildcard filters.
    patterns: Vec<Pattern>,
    /// Assigned topics (Kafka name → decoded topic, or `None` for a stream's topic;
    /// partitions).
    assigned: HashMap<Arc<str>, (Option<Topic>, i32)>,
    /// Every topic name seen by the last metadata pass (a name missing from it is new).
    known: HashSet<Vec<u8>>,
    /// The roots of the streams whose topics are assigned (Kafka name → root): a wildcard
    /// pattern that overlaps a root wants the stream's topic too.
    stream_roots: HashMap<Arc<str>, Pattern>,
}

impl Assignment {
    fn wanted(&self, name: &Arc<str>, topic: Option<&Topic>) -> bool {
        self.exact.contains(name)
            || topic.is_some_and(|topic| self.patterns.iter().any(|p| p.matches(topic)))
            || self
                .stream_roots
                .get(name)
                .is_some_and(|root| self.patterns.iter().any(|p| p.overlaps(root)))
    }
}

impl KafkaDriver {
    pub(crate) async fn open(config: KafkaConfig, cx: Context<KafkaFilter>) -> Result<KafkaDriver> {
        reachable(&config.servers, cx.options.connect_timeout).await?;
        let health = Health::new(cx.supervisor.link());
        let context = LinkContext::new(health.clone());
        let base = config.base();
        let consumer = new_consumer(&config, &context)?;
        let admin = config
            .finish(base.clone())
            .create_with_context(context.clone())
            .map_err(|e| kafka_error("creating the admin client", e))?;
        let producer = Arc::new(new_producer(&config, &context)?);
        let shared = Arc::new(Shared {
            key: pubsub_core::adapter::random_u64().to_be_bytes(),
            producer: RwLock::new(producer.clone()),
            consumer: Arc::new(consumer),
            probe: Mutex::new(None),
            admin,
            assignment: tokio::sync::Mutex::new(Assignment::default()),
            listed: Mutex::new(Listing::default()),
            topics: Topics::default(),
            streams: Arc::default(),
            groups: crate::group::Groups::default(),
            watchdog: Watchdog::start(cx.options.publish_timeout, &cx.tasks),
            health: health.clone(),
            stop: Arc::new(AtomicBool::new(false)),
            poller: Mutex::new(None),
            config: KafkaConfig {
                options: cx.options,
                ..config
            },
        });
        // The broker must answer before the handle exists.
        let consumer = shared.consumer.clone();
        let timeout = shared.config.options.connect_timeout;
        blocking(move || {
            consumer
                .fetch_metadata(None, timeout)
                .map(drop)
                .map_err(|e| kafka_error("connecting", e))
        })
        .await?;
        // Warm the producer in the background: connecting stays fast, and a first publish
        // soon after only waits for what is left of it.
        cx.tasks.spawn({
            let shared = shared.clone();
            async move { shared.warm(&producer).await }
        });
        let poller = {
            let (consumer, inbound, stop, streams) = (
                shared.consumer.clone(),
                cx.inbound.clone(),
                shared.stop.clone(),
                shared.streams.clone(),
            );
            std::thread::Builder::new()
                .name("pubsub-kafka-poll".into())
                .spawn(move || poll(&consumer, &inbound, &stop, &streams))
                .map_err(|e| {
                    Error::new(ErrorKind::Backend, "starting the poll thread").with_source(e)
                })?
        };
        *shared.poller.lock() = Some(poller);
        health.up();
        cx.tasks.spawn(health.clone().watch(
            shared.consumer.clone(),
            shared.config.options.backoff.clone(),
            shared.config.options.command_timeout,
        ));
        let heartbeat = shared.config.options.heartbeat;
        if !heartbeat.is_zero() {
            cx.tasks
                .spawn(beat(health.clone(), shared.consumer.clone(), heartbeat));
        }
        cx.tasks.spawn(shared.clone().discover(cx.tasks.clone()));
        Ok(KafkaDriver { shared })
    }
}

/// A consumer with a group id of its own that never commits, assigned by hand.
pub(crate) fn new_consumer(config: &KafkaConfig, context: &LinkContext) -> Result<Client> {
    let mut c = config.base();
    c.set(
        "group.id",
        format!("pubsub-{:016x}", pubsub_core::adapter::random_u64()),
    )
    .set("enable.auto.commit", "false")
    .set("enable.auto.offset.store", "false")
    .set("enable.partition.eof", "false")
    .set("auto.offset.reset", "earliest")
    .set("fetch.wait.max.ms", millis(config.fetch_wait).to_string())
    .set("fetch.error.backoff.ms", "10")
    .set("allow.auto.create.topics", "false");
    config
        .finish(c)
        .create_with_context(context.clone())
        .map_err(|e| kafka_error("creating the consumer", e))
}

fn new_producer(
    config: &KafkaConfig,
    context: &LinkContext,
) -> Result<FutureProducer<LinkContext>> {
    let mut c = config.base();
    let timeout = millis(config.options.publish_timeout).max(1);
    c.set("linger.ms", millis(config.linger).to_string())
        .set("enable.idempotence", config.idempotence.to_string())
        .set("acks", "all")
        .set("message.timeout.ms", timeout.to_string())
        .set("request.timeout.ms", timeout.min(30_000).to_string())
        .set(
            "message.max.bytes",
            (config.max_payload() + RECORD_ALLOWANCE).to_string(),
        );
    config
        .finish(c)
        .create_with_context(context.clone())
        .map_err(|e| kafka_error("creating the producer", e))
}

/// Runs a blocking librdkafka call off the runtime.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        Error::new(ErrorKind::Backend, "a blocking Kafka call failed").with_source(e)
    })?
}

/// The consumer's poll loop, on a thread of its own: hands every record to the router until
/// the handle stops.
fn poll(consumer: &Client, inbound: &Inbound<KafkaFilter>, stop: &AtomicBool, streams: &Streams) {
    let mut topics: HashMap<Vec<u8>, Option<Topic>> = HashMap::new();
    let mut stream_topics: HashMap<Vec<u8>, Arc<StreamTopic>> = HashMap::new();
    while !stop.load(Ordering::Relaxed) && !inbound.is_closed() {
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(record)) => {
                let name = raw::topic_name(&record);
                if name.starts_with(crate::stream::PREFIX.as_bytes()) {
                    let stream = match stream_topics.get(name) {
                        Some(stream) => Some(stream.clone()),
                        None => streams.by_name(name).inspect(|s| {
                            stream_topics.insert(name.to_vec(), s.clone());
                        }),
                    };
                    let message = stream.and_then(|s| {
                        let position = s.position(rdkafka::Message::offset(&record));
                        crate::stream_log::decode_record(&record).map(|m| m.with_position(position))
                    });
                    match message {
                        Some(message) => inbound.deliver(message),
                        None => inbound.record_lost(1),
                    }
                    continue;
                }
                let topic = match topics.get(name) {
                    Some(topic) => topic.clone(),
                    None => {
                        let topic = decode_topic(name);
                        topics.insert(name.to_vec(), topic.clone());
                        topic
                    }
                };
                let Some(topic) = topic else {
                    inbound.record_lost(1);
                    continue;
                };
                let mut decoder = headers::Decoder::default();
                raw::for_each_header(&record, |k, v| decoder.push(k, v));
                let (headers, skipped) = decoder.finish();
                if skipped > 0 {
                    tracing::debug!(topic = %topic.as_str(), skipped, "left out record headers that are not valid portable headers");
                }
                let payload =
                    Bytes::copy_from_slice(rdkafka::Message::payload(&record).unwrap_or_default());
                inbound.deliver(Message::with_headers(topic, payload, headers));
            }
            Some(Err(error)) => tracing::debug!(%error, "Kafka consumer error"),
        }
    }
}

impl Shared {
    /// Sends one record and waits for its report, so that the producer has its id (with
    /// idempotence the first report takes up to a second) before the first `publish`.
    async fn warm(&self, producer: &FutureProducer<LinkContext>) {
        let record = FutureRecord::<[u8], [u8]>::to(WARMUP_TOPIC).payload(&[]);
        let limit = self.config.options.connect_timeout;
        match tokio::time::timeout(limit, producer.send(record, limit)).await {
            Ok(Ok(_)) => {}
            Ok(Err((error, _))) => tracing::debug!(%error, "the producer's warm-up record failed"),
            Err(_) => tracing::debug!("the producer's warm-up record had no report in time"),
        }
    }

    /// Creates the topics that are not known to exist (with the configured partitions);
    /// "already exists" is fine. Concurrent callers needing the same new topic share one
    /// creation request.
    async fn ensure_topics(self: &Arc<Self>, names: &[&str]) -> Result<()> {
        let this = self.clone();
        self.topics
            .ensure(names, move |missing| async move {
                let new: Vec<NewTopic<'_>> = missing
                    .iter()
                    .map(|n| {
                        let replication = TopicReplication::Fixed(this.config.replication);
                        NewTopic::new(n, this.config.partitions, replication)
                    })
                    .collect();
                let timeout = this.config.options.command_timeout;
                let options = AdminOptions::new().operation_timeout(Some(timeout));
                let created =
                    tokio::time::timeout(timeout, this.admin.create_topics(&new, &options))
                        .await
                        .map_err(|_| {
                            Error::timeout(format!("creating topics: no answer within {timeout:?}"))
                        })?
                        .map_err(|e| kafka_error("creating topics", e))?;
                // The next wildcard subscribe reads the list again, so that it sees these.
                this.listed.lock().created = Some(tokio::time::Instant::now());
                Ok(created
                    .into_iter()
                    .map(|result| match result {
                        Ok(name) | Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => {
                            (name, Ok(()))
                        }
                        Err((name, code)) => {
                            let e = kafka_error("creating a topic", KafkaError::AdminOp(code))
                                .with_context_topic(&name);
                            (name, Err(e))
                        }
                    })
                    .collect())
            })
            .await
    }

    /// Assigns `topics` (Kafka name, decoded topic, partitions or `None` to look it up) at
    /// their high watermarks (`from_start`: at their beginning).
    async fn assign(&self, state: &mut Assignment, topics: Vec<Todo>) -> Result<()> {
        if topics.is_empty() {
            return Ok(());
        }
        let consumer = self.consumer.clone();
        let probe = if topics.iter().all(|t| t.from_start) {
            None
        } else {
            Some(self.probe()?)
        };
        let timeout = self.config.options.command_timeout;
        let assigned = blocking(move || {
            let mut list = TopicPartitionList::new();
            let mut done = Vec::with_capacity(topics.len());
            for Todo {
                name,
                topic,
                partitions,
                from_start,
            } in topics
            {
                let partitions = match partitions {
                    Some(n) => n,
                    None => {
                        let md = consumer
                            .fetch_metadata(Some(&name), timeout)
                            .map_err(|e| kafka_error("reading a topic's metadata", e))?;
                        let n = md.topics().first().map_or(0, |t| t.partitions().len());
                        i32::try_from(n).unwrap_or(i32::MAX)
                    }
                };
                for p in 0..partitions {
                    let offset = match &probe {
                        Some(probe) if !from_start => {
                            Offset::Offset(log_end(probe, &name, p, timeout, timeout)?)
                        }
                        _ => Offset::Beginning,
                    };
                    list.add_partition_offset(&name, p, offset)
                        .map_err(|e| kafka_error("assigning", e))?;
                }
                done.push((name, topic, partitions));
            }
            consumer
                .incremental_assign(&list)
                .map_err(|e| kafka_error("assigning partitions", e))?;
            Ok(done)
        })
        .await?;
        for (name, topic, partitions) in assigned {
            state.assigned.insert(name, (topic, partitions));
        }
        Ok(())
    }

    /// The consumer that checks where a partition's log ends, made on first use.
    /// What the groups use of the handle.
    fn clients(&self) -> crate::group::Clients<'_> {
        crate::group::Clients {
            config: &self.config,
            link: LinkContext::new(self.health.clone()),
            admin: &self.admin,
            producer: self.producer.read().clone(),
        }
    }

    /// The declared stream `stream`; `Invalid` when it is not declared on this handle.
    fn stream(&self, stream: &StreamConfig) -> Result<Arc<StreamTopic>> {
        self.streams.by_root(stream.root()).ok_or_else(|| {
            Error::new(
                ErrorKind::Invalid,
                format!("stream `{}` is not declared on this handle", stream.root()),
            )
        })
    }

    fn probe(&self) -> Result<Arc<Client>> {
        let mut probe = self.probe.lock();
        if let Some(probe) = probe.as_ref() {
            return Ok(probe.clone());
        }
        let made = Arc::new(new_consumer(
            &self.config,
            &LinkContext::new(self.health.clone()),
        )?);
        *probe = Some(made.clone());
        Ok(made)
    }

    /// Every topic in the cluster (blocking call off the runtime), remembered as known;
    /// returns the ones that were not known before too.
    async fn metadata(&self, state: &mut Assignment) -> Result<Vec<(raw::TopicInfo, bool)>> {
        TOPIC_LIST_READS.fetch_add(1, Ordering::Relaxed);
        let at = tokio::time::Instant::now();
        let consumer = self.consumer.clone();
        let timeout = self.config.options.command_timeout;
        let topics = blocking(move || {
            raw::all_topics(consumer.client().native_ptr(), timeout).map_err(|code| {
                kafka_error(
                    "reading the cluster's topics",
                    KafkaError::MetadataFetch(code),
                )
            })
        })
        .await?;
        let mut known = HashSet::with_capacity(topics.len());
        let out = topics
            .iter()
            .map(|t| {
                let new = !state.known.contains(&t.name);
                known.insert(t.name.clone());
                (t.clone(), new)
            })
            .collect();
        state.known = known;
        self.listed.lock().last = Some((at, Arc::new(topics)));
        Ok(out)
    }

    /// The cluster's topics for a wildcard subscribe: those of the last read if it began less
    /// than [`TOPIC_LIST_REUSE`] (and the discovery interval) ago and this handle created no
    /// topic since, else a new read ([`Shared::metadata`]).
    async fn recent_metadata(&self, state: &mut Assignment) -> Result<Vec<(raw::TopicInfo, bool)>> {
        let reuse = TOPIC_LIST_REUSE.min(self.config.discovery_interval);
        let recent = self.listed.lock().recent(reuse);
        match recent {
            Some(topics) => Ok(topics
                .iter()
                .map(|t| (t.clone(), !state.known.contains(&t.name)))
                .collect()),
            None => self.metadata(state).await,
        }
    }

    /// Looks for topics created since the last pass that a wildcard filter matches, and
    /// assigns them from their beginning (so their first messages are not lost).
    async fn discover(self: Arc<Self>, tasks: Tasks) {
        let mut tick = tokio::time::interval(self.config.discovery_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = tasks.stopped() => return,
            }
            let mut state = self.assignment.lock().await;
            if state.patterns.is_empty() {
                continue;
            }
            let topics = match self.metadata(&mut state).await {
                Ok(topics) => topics,
                Err(error) => {
                    tracing::debug!(%error, "Kafka topic discovery failed; retrying");
                    continue;
                }
            };
            let found = matching(&state, topics, true);
            if let Err(error) = self.assign(&mut state, found).await {
                // They stay unknown-to-us as assigned: forget them as known to retry.
                tracing::debug!(%error, "assigning discovered topics failed; retrying");
                state.known.clear();
            }
        }
    }

    /// Replaces the producer after a fatal error (an idempotent producer that the broker
    /// fenced after a cut stays unusable), unless another publish already did.
    fn replace_producer(&self, failed: &Arc<FutureProducer<LinkContext>>) {
        let mut current = self.producer.write();
        if !Arc::ptr_eq(&current, failed) {
            return;
        }
        match new_producer(&self.config, &LinkContext::new(self.health.clone())) {
            Ok(producer) => {
                tracing::info!("replaced the Kafka producer after a fatal error");
                *current = Arc::new(producer);
            }
            Err(error) => tracing::warn!(%error, "could not replace the Kafka producer"),
        }
    }
}

/// How many times the handles of this process read the cluster's topic list.
static TOPIC_LIST_READS: AtomicU64 = AtomicU64::new(0);

/// See [`crate::topic_list_reads`].
pub(crate) fn topic_list_reads() -> u64 {
    TOPIC_LIST_READS.load(Ordering::Relaxed)
}

/// A topic to assign.
struct Todo {
    name: Arc<str>,
    topic: Option<Topic>,
    /// Its partition count, or `None` to look it up.
    partitions: Option<i32>,
    /// Start at its beginning (a topic created after the patterns matching it were
    /// subscribed), else at its high watermark.
    from_start: bool,
}

/// The topics of `topics` (new ones only, with `only_new`) that are not assigned and that a
/// pattern of `state` matches, from their beginning.
fn matching(state: &Assignment, topics: Vec<(raw::TopicInfo, bool)>, only_new: bool) -> Vec<Todo> {
    topics
        .into_iter()
        .filter(|(_, new)| *new || !only_new)
        .filter_map(|(info, _)| {
            let topic = decode_topic(&info.name)?;
            let name: Arc<str> = std::str::from_utf8(&info.name).ok()?.into();
            let wanted = !state.assigned.contains_key(&name)
                && state.patterns.iter().any(|p| p.matches(&topic));
            wanted.then_some(Todo {
                name,
                topic: Some(topic),
                partitions: Some(info.partitions),
                from_start: true,
            })
        })
        .collect()
}

/// Whether a publish error leaves the (idempotent) producer unusable.
fn is_fatal(error: &KafkaError) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        error.rdkafka_error_code(),
        Some(
            C::Fatal
                | C::OutOfOrderSequenceNumber
                | C::InvalidProducerEpoch
                | C::UnknownProducerId
                | C::ProducerFenced
                | C::InvalidProducerIdMapping
                | C::DuplicateSequenceNumber
        )
    )
}

/// A librdkafka error raised while doing `context`, classified.
/// Ok once one of `servers` accepts a TCP connection within `limit`; else, at once, a
/// connection error whose source says why (refused, DNS, unreachable). librdkafka alone
/// would retry until the connect timeout and then only say that all brokers are down.
async fn reachable(servers: &[String], limit: std::time::Duration) -> Result<()> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut why = None;
    for server in servers {
        let connect = tokio::net::TcpStream::connect(server.as_str());
        match tokio::time::timeout_at(deadline, connect).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(error)) => why = Some(error),
            Err(_) => {
                why = Some(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer within {limit:?}"),
                ));
                break;
            }
        }
    }
    let why = why.unwrap_or_else(|| std::io::Error::other("no bootstrap server configured"));
    Err(Error::connection(
        "no bootstrap server accepts a connection",
        why,
    ))
}

pub(crate) fn kafka_error(context: &'static str, source: KafkaError) -> Error {
    use RDKafkaErrorCode as C;
    let kind = match &source {
        KafkaError::ClientConfig(..) => ErrorKind::Invalid,
        KafkaError::ClientCreation(_) => ErrorKind::Invalid,
        error => match error.rdkafka_error_code() {
            Some(
                C::MessageTimedOut
                | C::RequestTimedOut
                | C::OperationTimedOut
                | C::PurgeQueue
                | C::PurgeInflight,
            ) => ErrorKind::Timeout,
            Some(C::MessageSizeTooLarge | C::InvalidTopic) => ErrorKind::Invalid,
            Some(
                C::TopicAuthorizationFailed
                | C::ClusterAuthorizationFailed
                | C::SaslAuthenticationFailed
                | C::PolicyViolation
                | C::InvalidConfig,
            ) => ErrorKind::Backend,
            _ => ErrorKind::Connection,
        },
    };
    Error::new(kind, context).with_source(source)
}

trait WithTopic {
    fn with_context_topic(self, name: &str) -> Self;
}

impl WithTopic for Error {
    fn with_context_topic(self, name: &str) -> Self {
        let kind = self.kind();
        let message = format!("{} ({name})", self.message());
        match std::error::Error::source(&self) {
            Some(_) => Error::new(kind, message).with_source(self),
            None => Error::new(kind, message),
        }
    }
}

impl fmt::Debug for KafkaDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaDriver")
            .field("servers", &self.shared.config.servers)
            .field("client_id", &self.shared.config.client_id)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Driver for KafkaDriver {
    type Filter = KafkaFilter;

    const BACKEND: &'static str = "kafka";

    fn max_payload(&self) -> usize {
        self.shared.config.max_payload()
    }

    fn native_filter(&self, pattern: &Pattern) -> Result<KafkaFilter> {
        if let Some(stream) = self.shared.streams.of_pattern(pattern) {
            return Ok(KafkaFilter::Stream(stream.name.clone()));
        }
        match pattern.as_topic() {
            Some(topic) => Ok(KafkaFilter::Topic(encode_topic(&topic)?.into())),
            None => Ok(KafkaFilter::Pattern(pattern.clone())),
        }
    }

    async fn publish(&self, message: Message) -> Result<()> {
        let s = &self.shared;
        let stream = s.streams.find(message.topic());
        let name: Arc<str> = match &stream {
            // Its topic was created when the stream was declared.
            Some(stream) => stream.name.clone(),
            None => {
                let name = encode_topic(message.topic())?;
                s.ensure_topics(&[&name]).await?;
                name.into()
            }
        };
        let producer = s.producer.read().clone();
        let mut record = FutureRecord::to(&name)
            .payload(message.payload().as_ref())
            .key(&s.key[..]);
        if stream.is_some() {
            record = record.partition(0).headers(headers::encode_under_stream(
                message.topic(),
                message.headers(),
            ));
        } else if let Some(headers) = headers::encode(message.headers()) {
            record = record.headers(headers);
        }
        let queue = Timeout::After(s.config.options.publish_timeout);
        match s.watchdog.bound(producer.send(record, queue)).await? {
            Ok(_) => Ok(()),
            Err((error, _)) => {
                if is_fatal(&error) {
                    s.replace_producer(&producer);
                    return Err(Error::new(
                        ErrorKind::Connection,
                        "publishing: the producer was fenced and is replaced; retry",
                    )
                    .with_source(error));
                }
                Err(kafka_error("publishing", error))
            }
        }
    }

    async fn add_filters(&self, filters: &[KafkaFilter]) -> Result<()> {
        let s = &self.shared;
        let mut state = s.assignment.lock().await;
        let mut exact = Vec::new();
        let mut patterns = Vec::new();
        let mut streams = Vec::new();
        for filter in filters {
            match filter {
                KafkaFilter::Topic(name) => exact.push(name.clone()),
                KafkaFilter::Pattern(p) => patterns.push(p.clone()),
                KafkaFilter::Stream(name) => streams.push(name.clone()),
            }
        }
        let names: Vec<&str> = exact.iter().map(|n| &**n).collect();
        s.ensure_topics(&names).await?;
        // A wildcard that overlaps a stream's root without being under it (`>` beside
        // `room.>`) reads the stream's topic too: what is published there is in no other.
        for stream in s.streams.all().iter() {
            if patterns.iter().any(|p| p.overlaps(stream.config.root()))
                && !streams.contains(&stream.name)
            {
                streams.push(stream.name.clone());
            }
        }
        let mut todo: Vec<Todo> = Vec::new();
        for name in &streams {
            // At the end of its log: the stream's reader replays what came before.
            if !state.assigned.contains_key(name) {
                todo.push(Todo {
                    name: name.clone(),
                    topic: None,
                    partitions: Some(1),
                    from_start: false,
                });
            }
        }
        for name in &exact {
            if state.assigned.contains_key(name) {
                continue;
            }
            let Some(topic) = decode_topic(name.as_bytes()) else {
                return Err(Error::new(ErrorKind::Invalid, "not an encoded topic name"));
            };
            // A topic new since the last discovery pass that a present pattern matches is
            // one discovery would start at its beginning: so does this.
            let from_start = !state.known.contains(name.as_bytes())
                && state.patterns.iter().any(|p| p.matches(&topic));
            todo.push(Todo {
                name: name.clone(),
                topic: Some(topic),
                partitions: None,
                from_start,
            });
        }
        if !patterns.is_empty() {
            // Every topic that exists now and matches is assigned before subscribe resolves:
            // at its high watermark, unless it is new and a present pattern matches it too.
            let topics = s.recent_metadata(&mut state).await?;
            let present = matching(&state, topics.clone(), true);
            let probe = Assignment {
                patterns: patterns.clone(),
                assigned: state.assigned.clone(),
                ..Assignment::default()
            };
            for mut found in matching(&probe, topics, false) {
                found.from_start = present.iter().any(|p| p.name == found.name);
                match todo.iter_mut().find(|t| t.name == found.name) {
                    Some(t) => t.from_start |= found.from_start,
                    None => todo.push(found),
                }
            }
            for found in present {
                if !todo.iter().any(|t| t.name == found.name) {
                    todo.push(found);
                }
            }
        }
        s.assign(&mut state, todo).await?;
        for name in &streams {
            if let Some(stream) = s.streams.by_name(name.as_bytes()) {
                state
                    .stream_roots
                    .insert(name.clone(), stream.config.root().clone());
            }
        }
        state.exact.extend(exact);
        state.exact.extend(filters.iter().filter_map(|f| match f {
            KafkaFilter::Stream(name) => Some(name.clone()),
            _ => None,
        }));
        for p in patterns {
            if !state.patterns.contains(&p) {
                state.patterns.push(p);
            }
        }
        Ok(())
    }

    async fn remove_filters(&self, filters: &[KafkaFilter]) -> Result<()> {
        let s = &self.shared;
        let mut state = s.assignment.lock().await;
        for filter in filters {
            match filter {
                KafkaFilter::Topic(name) | KafkaFilter::Stream(name) => {
                    state.exact.remove(name);
                }
                KafkaFilter::Pattern(p) => state.patterns.retain(|q| q != p),
            }
        }
        let unwanted: Vec<Arc<str>> = state
            .assigned
            .iter()
            .filter(|(name, (topic, _))| !state.wanted(name, topic.as_ref()))
            .map(|(name, _)| name.clone())
            .collect();
        if unwanted.is_empty() {
            return Ok(());
        }
        let mut list = TopicPartitionList::new();
        for name in &unwanted {
            let partitions = state.assigned.get(name).map_or(0, |(_, n)| *n);
            for p in 0..partitions {
                list.add_partition(name, p);
            }
        }
        s.consumer
            .incremental_unassign(&list)
            .map_err(|e| kafka_error("unassigning partitions", e))?;
        for name in unwanted {
            state.stream_roots.remove(&name);
            state.assigned.remove(&name);
        }
        Ok(())
    }

    async fn declare_stream(&self, stream: &StreamConfig) -> Result<()> {
        let s = &self.shared;
        if !s.streams.check(stream)? {
            return Ok(());
        }
        let name = crate::stream::topic_name(stream.root(), stream.tag());
        let timeout = s.config.options.command_timeout;
        crate::stream_log::create_topic(&s.admin, &name, stream, s.config.replication, timeout)
            .await?;
        // The topic id (DescribeTopics): a topic deleted and created again has another, so
        // positions of its earlier life are told apart. A broker without ids: the name's.
        let client = s.consumer.clone();
        let id = blocking({
            let name = name.clone();
            move || Ok(raw::topic_id(client.client().native_ptr(), &name, timeout))
        })
        .await?;
        let epoch = match id {
            Some((most, least)) => crate::stream::id_epoch(most, least),
            None => crate::stream::name_epoch(&name),
        };
        tracing::debug!(stream = %stream.root(), topic = %name, topic_id = ?id, epoch, "declared a stream");
        s.streams
            .insert(Arc::new(StreamTopic::new(stream.clone(), epoch)))
    }

    async fn read_stream(
        &self,
        stream: &StreamConfig,
        from: ReadFrom,
        limit: usize,
    ) -> Result<LogRead> {
        let s = &self.shared;
        let topic = s.stream(stream)?;
        let make = || new_consumer(&s.config, &LinkContext::new(s.health.clone()));
        topic
            .read(make, from, limit, s.config.options.command_timeout)
            .await
    }

    async fn join_group(&self, stream: &StreamConfig, group: &GroupConfig) -> Result<()> {
        let s = &self.shared;
        let topic = s.stream(stream)?;
        crate::group::Groups::join(s.clients(), topic, group).await
    }

    async fn read_group(
        &self,
        stream: &StreamConfig,
        group: &GroupConfig,
        member: &str,
        limit: usize,
        wait: Duration,
    ) -> Result<Vec<GroupEntry>> {
        let s = &self.shared;
        let topic = s.stream(stream)?;
        s.groups
            .read(s.clients(), &topic, group, member, limit, wait)
            .await
    }

    async fn settle_group(
        &self,
        _stream: &StreamConfig,
        _group: &GroupConfig,
        settlements: &[Settlement],
    ) -> Result<()> {
        self.shared.groups.settle(settlements);
        Ok(())
    }

    async fn leave_group(&self, _stream: &StreamConfig, _group: &GroupConfig, member: &str) {
        self.shared.groups.leave(member).await;
    }

    async fn close(&self) -> Result<()> {
        let s = &self.shared;
        s.stop.store(true, Ordering::Relaxed);
        s.groups.close().await;
        let producer = s.producer.read().clone();
        let timeout = s.config.options.command_timeout;
        let poller = s.poller.lock().take();
        let flushed = blocking(move || {
            let flushed = producer
                .flush(timeout)
                .map_err(|e| kafka_error("flushing", e));
            if let Some(poller) = poller {
                let _ = poller.join();
            }
            flushed
        })
        .await;
        flushed
    }
}
