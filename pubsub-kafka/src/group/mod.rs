//! Groups on Kafka: a group is a Kafka consumer group on its stream's topic
//! (`group.id` [`group_id`]), with manual commits. The topic has one partition, so one member
//! at a time reads it; the others stand by and take over on a rebalance
//! (`cooperative-sticky`, so a member joining does not take the partition from the one that
//! reads it).
//!
//! Each member has a consumer of its own ([`Member`]), made on its first read and closed
//! when it leaves (closing sends `LeaveGroup`: another member gets the partition at once).
//! The member keeps what it handed out unsettled ([`Table`]) and commits, asynchronously after
//! each batch of settlements, the lowest unsettled offset. The group's settings and the
//! highest offset delivered so far are in the group's [`ledger`] topic (written before the
//! deliveries are handed out): a member that takes the partition over counts the records at
//! or below that offset as delivered before.

mod ledger;
mod pending;
mod settings;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use pubsub_core::adapter::{GroupEntry, Settlement};
use pubsub_core::{Error, ErrorKind, GroupConfig, Result, StartAt};
use rdkafka::admin::AdminClient;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::producer::FutureProducer;
use rdkafka::TopicPartitionList;

use crate::config::millis;
use crate::driver::{kafka_error, new_consumer};
use crate::health::LinkContext;
use crate::log_end::log_end;
use crate::stream::{self, Bounds};
use crate::stream_log::{decode_record, StreamTopic};
use crate::{raw, KafkaConfig};

/// What the groups of a handle use of it.
pub(crate) struct Clients<'a> {
    /// The handle's configuration.
    pub config: &'a KafkaConfig,
    /// The context of every client of the handle.
    pub link: LinkContext,
    /// The handle's admin client.
    pub admin: &'a AdminClient<LinkContext>,
    /// The handle's producer.
    pub producer: Arc<FutureProducer<LinkContext>>,
}

use pending::Table;

/// The session timeout of a member's consumer: the lowest a Kafka broker takes by default
/// (`group.min.session.timeout.ms`). A member that dies without leaving loses the partition
/// after it; one that leaves (or whose handle is dropped) at once.
const SESSION_TIMEOUT: Duration = Duration::from_secs(6);

/// The consumer group of `group` on the stream with tag `tag`.
pub(crate) fn group_id(tag: u32, group: &GroupConfig) -> String {
    format!("pubsub-{tag:08x}-{}", group.name())
}

/// A member's consumer.
type GroupClient = BaseConsumer<GroupContext>;

/// The context of a member's consumer: the handle's link, and the rebalances seen.
#[derive(Clone)]
struct GroupContext {
    link: LinkContext,
    changes: Arc<Changes>,
}

/// Rebalances of one member's consumer, for its reader to notice.
#[derive(Default)]
struct Changes {
    /// How many rebalances the consumer went through.
    count: AtomicU64,
    /// Whether a partition was revoked since the reader last looked.
    revoked: AtomicBool,
}

impl ClientContext for GroupContext {
    fn error(&self, error: KafkaError, reason: &str) {
        ClientContext::error(&self.link, error, reason);
    }

    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        ClientContext::log(&self.link, level, fac, log_message);
    }
}

impl ConsumerContext for GroupContext {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(_) = rebalance {
            self.changes.revoked.store(true, Ordering::SeqCst);
        }
        self.changes.count.fetch_add(1, Ordering::SeqCst);
    }
}

/// The members of a handle's groups, by member name.
#[derive(Default)]
pub(crate) struct Groups {
    members: Mutex<HashMap<Arc<str>, Arc<Member>>>,
}

/// One member: its consumer and, while it owns the partition, its deliveries.
pub(crate) struct Member {
    consumer: Option<Arc<GroupClient>>,
    /// Set when the member leaves or the handle goes: a read under way ends soon after.
    closing: AtomicBool,
    changes: Arc<Changes>,
    group: GroupConfig,
    stream: Arc<StreamTopic>,
    name: Arc<str>,
    state: Mutex<Owned>,
}

/// What a member knows of its ownership of the partition.
#[derive(Default)]
struct Owned {
    /// The rebalances seen when it last looked.
    seen: u64,
    /// Its deliveries, while it owns the partition.
    table: Option<Table>,
}

impl Drop for Member {
    fn drop(&mut self) {
        // Closing a consumer waits for the broker: not on the runtime.
        if let Some(consumer) = self.consumer.take() {
            let _ = std::thread::Builder::new()
                .name("pubsub-kafka-close".into())
                .spawn(move || drop(consumer));
        }
    }
}

/// A consumer of `group_id` (no subscription yet), committing by hand.
fn consumer_of<C: ConsumerContext>(
    config: &KafkaConfig,
    context: C,
    group: &GroupConfig,
    group_id: &str,
) -> Result<BaseConsumer<C>> {
    let mut c = config.base();
    let session = millis(SESSION_TIMEOUT);
    c.set("group.id", group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("session.timeout.ms", session.to_string())
        // A member that reads nothing for longer (its prefetch full of deliveries held past
        // the ack deadline) leaves the consumer group: another takes over.
        .set(
            "max.poll.interval.ms",
            millis(group.ack_deadline() + SESSION_TIMEOUT).to_string(),
        )
        .set("heartbeat.interval.ms", (session / 6).to_string())
        .set("fetch.wait.max.ms", millis(config.fetch_wait).to_string())
        .set("fetch.error.backoff.ms", "10")
        .set("allow.auto.create.topics", "false");
    config
        .finish(c)
        .create_with_context(context)
        .map_err(|e| kafka_error("creating a group member's consumer", e))
}

/// The committed offset of partition 0 of `topic` for `consumer`'s group. Blocking.
fn committed<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    timeout: Duration,
) -> Result<Option<i64>> {
    let mut list = TopicPartitionList::new();
    list.add_partition(topic, 0);
    let found = consumer
        .committed_offsets(list, timeout)
        .map_err(|e| kafka_error("reading a group's committed offset", e))?;
    let offset = found.find_partition(topic, 0).map(|p| p.offset());
    match offset {
        Some(rdkafka::Offset::Offset(offset)) => Ok(Some(offset)),
        _ => Ok(None),
    }
}

/// Commits `offset` of partition 0 of `topic`.
fn commit<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    offset: i64,
    mode: CommitMode,
) -> Result<()> {
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(topic, 0, rdkafka::Offset::Offset(offset))
        .map_err(|e| kafka_error("committing a group's offset", e))?;
    consumer
        .commit(&list, mode)
        .map_err(|e| kafka_error("committing a group's offset", e))
}

/// Checks the settings of `group` against those its ledger `ledger` holds (`None` when it
/// holds none: it was just created), then creates the consumer group unless it has a
/// committed offset already: its first commit is where it starts. Blocking.
fn join_blocking(
    config: &KafkaConfig,
    link: LinkContext,
    stream: &StreamTopic,
    group: &GroupConfig,
    ledger: Option<&str>,
    timeout: Duration,
) -> Result<()> {
    let id = group_id(stream.tag, group);
    let consumer = consumer_of(config, link, group, &id)?;
    if let Some(ledger) = ledger {
        let text = ledger::settings(&consumer, ledger, timeout / 2)?;
        match text.as_deref().map(|t| settings::decode(group.name(), t)) {
            Some(Some(known)) if !known.same_group(group) => return Err(known.conflict(group)),
            Some(Some(_)) => {}
            Some(None) => {
                tracing::debug!(group = %id, "a group ledger without our settings; joining it")
            }
            None => tracing::debug!(group = %id, "a group ledger without settings; joining it"),
        }
    }
    let name = &*stream.name;
    if committed(&consumer, name, timeout)?.is_some() {
        return Ok(());
    }
    let (low, high) = consumer
        .fetch_watermarks(name, 0, timeout)
        .map_err(|e| kafka_error("reading a stream's watermarks", e))?;
    let bounds = Bounds { low, high };
    let held = bounds.held_from(stream.config.max_len());
    let start = match group.start() {
        StartAt::Start => held,
        StartAt::After(position) if position.epoch() == stream.epoch => {
            match stream::next_offset(position.offset()) {
                Some(next) => next.max(held),
                None => log_end(&consumer, name, 0, timeout, timeout)?,
            }
        }
        StartAt::After(_) => held,
        _ => log_end(&consumer, name, 0, timeout, timeout)?,
    };
    tracing::debug!(group = %id, start, "creating a group");
    commit(&consumer, name, start, CommitMode::Sync)
}

/// How long one poll of a member's read waits at most: a read ends this soon after its
/// member is told to close.
const POLL_SLICE: Duration = Duration::from_millis(100);

impl Drop for Groups {
    fn drop(&mut self) {
        // The handle is gone (dropped without `close`): every member's consumer closes (and
        // leaves its consumer group) once its read under way ends.
        for member in self.members.lock().values() {
            member.closing.store(true, Ordering::SeqCst);
        }
    }
}

impl Groups {
    /// [`Driver::join_group`](pubsub_core::adapter::Driver::join_group): the group's ledger
    /// (created with the group's settings, or checked against them), then the consumer group.
    pub(crate) async fn join(
        clients: Clients<'_>,
        stream: Arc<StreamTopic>,
        group: &GroupConfig,
    ) -> Result<()> {
        let timeout = clients.config.options.command_timeout;
        let ledger = ledger::topic_name(stream.tag, group);
        let new =
            ledger::create(clients.admin, &ledger, clients.config.replication, timeout).await?;
        if new {
            let text = settings::encode(group);
            ledger::append(
                &clients.producer,
                &ledger,
                ledger::SETTINGS_KEY,
                text.as_bytes(),
                timeout,
            )
            .await?;
        }
        let (config, link, group) = (clients.config.clone(), clients.link, group.clone());
        tokio::task::spawn_blocking(move || {
            let check = (!new).then_some(ledger.as_str());
            join_blocking(&config, link, &stream, &group, check, timeout)
        })
        .await
        .map_err(|e| Error::new(ErrorKind::Backend, "joining a group failed").with_source(e))?
    }

    /// The member `name` of `group`, made (with its consumer, subscribed) on first use.
    fn member(
        &self,
        config: &KafkaConfig,
        link: &LinkContext,
        stream: &Arc<StreamTopic>,
        group: &GroupConfig,
        name: &str,
    ) -> Result<Arc<Member>> {
        let mut members = self.members.lock();
        if let Some(member) = members.get(name) {
            return Ok(member.clone());
        }
        let changes = Arc::new(Changes::default());
        let context = GroupContext {
            link: link.clone(),
            changes: changes.clone(),
        };
        let consumer = consumer_of(config, context, group, &group_id(stream.tag, group))?;
        consumer
            .subscribe(&[&stream.name])
            .map_err(|e| kafka_error("subscribing a group member", e))?;
        let name: Arc<str> = name.into();
        let member = Arc::new(Member {
            consumer: Some(Arc::new(consumer)),
            closing: AtomicBool::new(false),
            changes,
            group: group.clone(),
            stream: stream.clone(),
            name: name.clone(),
            state: Mutex::new(Owned::default()),
        });
        members.insert(name, member.clone());
        Ok(member)
    }

    /// [`Driver::read_group`](pubsub_core::adapter::Driver::read_group): the member's
    /// deliveries, after the highest offset among them is in the group's ledger.
    pub(crate) async fn read(
        &self,
        clients: Clients<'_>,
        stream: &Arc<StreamTopic>,
        group: &GroupConfig,
        name: &str,
        limit: usize,
        wait: Duration,
    ) -> Result<Vec<GroupEntry>> {
        let member = self.member(clients.config, &clients.link, stream, group, name)?;
        let timeout = clients.config.options.command_timeout;
        let (config, link) = (clients.config.clone(), clients.link.clone());
        let reader = member.clone();
        let (entries, mark) = tokio::task::spawn_blocking(move || {
            reader.read_blocking(&config, &link, limit, wait, timeout)
        })
        .await
        .map_err(|e| Error::new(ErrorKind::Backend, "reading a group failed").with_source(e))??;
        if let Some(offset) = mark {
            let ledger = ledger::topic_name(stream.tag, group);
            let value = ledger::encode_delivered(offset);
            let marked = ledger::append(
                &clients.producer,
                &ledger,
                ledger::DELIVERED_KEY,
                value.as_bytes(),
                timeout,
            )
            .await;
            if let Err(error) = marked {
                tracing::warn!(%error, group = group.name(), "writing the highest delivery to the group's ledger failed; a member taking over may count fewer deliveries");
            }
        }
        Ok(entries)
    }

    /// [`Driver::settle_group`](pubsub_core::adapter::Driver::settle_group): each settlement
    /// goes to the member named in its receipt; those of members gone are dropped (their
    /// deliveries come back to the next owner).
    pub(crate) fn settle(&self, settlements: &[Settlement]) {
        let mut by_member: HashMap<Arc<str>, Vec<&Settlement>> = HashMap::new();
        for settlement in settlements {
            if let Some(token) = &settlement.receipt().token {
                by_member.entry(token.clone()).or_default().push(settlement);
            }
        }
        let now = Instant::now();
        for (name, settlements) in by_member {
            let Some(member) = self.members.lock().get(&name).cloned() else {
                continue;
            };
            let mut state = member.state.lock();
            let Some(table) = state.table.as_mut() else {
                continue;
            };
            for settlement in settlements {
                table.settle(settlement, now);
            }
            member.commit_async(table);
        }
    }

    /// [`Driver::leave_group`](pubsub_core::adapter::Driver::leave_group): a last commit,
    /// then the member's consumer is closed (it leaves the consumer group).
    pub(crate) async fn leave(&self, name: &str) {
        let Some(member) = self.members.lock().remove(name) else {
            return;
        };
        member.closing.store(true, Ordering::SeqCst);
        let _ = tokio::task::spawn_blocking(move || {
            member.commit_last();
            drop(member);
        })
        .await;
    }

    /// Leaves every group (the handle closes).
    pub(crate) async fn close(&self) {
        let members: Vec<Arc<Member>> = self.members.lock().drain().map(|(_, m)| m).collect();
        for member in &members {
            member.closing.store(true, Ordering::SeqCst);
        }
        let _ = tokio::task::spawn_blocking(move || {
            for member in members {
                member.commit_last();
            }
        })
        .await;
    }
}

impl Member {
    fn consumer(&self) -> Result<&GroupClient> {
        self.consumer
            .as_deref()
            .ok_or_else(|| Error::new(ErrorKind::Closed, "the group member left"))
    }

    /// Deliveries due again first, then new records, up to `limit`, waiting up to `wait`
    /// for the first; and the highest offset delivered when it is new (for the ledger).
    /// Blocking.
    fn read_blocking(
        &self,
        config: &KafkaConfig,
        link: &LinkContext,
        limit: usize,
        wait: Duration,
        timeout: Duration,
    ) -> Result<(Vec<GroupEntry>, Option<i64>)> {
        let consumer = self.consumer()?;
        let deadline = self.group.ack_deadline();
        let until = Instant::now() + wait;
        let follow = || self.follow_rebalances(config, link, consumer, timeout);
        follow()?;
        let mut out = self.due(limit);
        while out.len() < limit && !self.closing.load(Ordering::SeqCst) {
            let now = Instant::now();
            let poll_for = if out.is_empty() {
                let next_due = self.state.lock().table.as_ref().and_then(Table::next_due);
                let until = next_due.map_or(until, |due| due.min(until));
                until.saturating_duration_since(now).min(POLL_SLICE)
            } else {
                Duration::ZERO
            };
            let polled = consumer.poll(poll_for);
            follow()?;
            match polled {
                Some(Ok(record)) => {
                    if raw::topic_name(&record) != self.stream.name.as_bytes() {
                        continue;
                    }
                    let offset = rdkafka::Message::offset(&record);
                    let message = decode_record(&record)
                        .map(|m| m.with_position(self.stream.position(offset)));
                    if message.is_none() {
                        tracing::debug!(
                            group = self.group.name(),
                            offset,
                            "a record without its topic header in a stream's topic; skipped"
                        );
                    }
                    let mut state = self.state.lock();
                    if let Some(table) = state.table.as_mut() {
                        out.extend(table.take(offset, message, Instant::now(), deadline));
                    }
                }
                Some(Err(error)) => {
                    tracing::debug!(%error, group = self.group.name(), "reading a group");
                    if out.is_empty() && Instant::now() >= until {
                        break;
                    }
                }
                None => {
                    if !out.is_empty() {
                        break;
                    }
                    out = self.due(limit);
                    if !out.is_empty() || Instant::now() >= until {
                        break;
                    }
                }
            }
        }
        let mut state = self.state.lock();
        let mark = state.table.as_mut().and_then(Table::take_mark);
        Ok((out, mark))
    }

    /// The deliveries due again now, at most `limit`.
    fn due(&self, limit: usize) -> Vec<GroupEntry> {
        let mut state = self.state.lock();
        match state.table.as_mut() {
            Some(table) => table.due(limit, Instant::now(), self.group.ack_deadline()),
            None => Vec::new(),
        }
    }

    /// After a rebalance: drops the deliveries of a partition revoked, and resumes from the
    /// committed offset on a partition assigned (with the highest delivery the ledger
    /// holds). Blocking.
    fn follow_rebalances(
        &self,
        config: &KafkaConfig,
        link: &LinkContext,
        consumer: &GroupClient,
        timeout: Duration,
    ) -> Result<()> {
        let count = self.changes.count.load(Ordering::SeqCst);
        if self.state.lock().seen == count {
            return Ok(());
        }
        let revoked = self.changes.revoked.swap(false, Ordering::SeqCst);
        let name = &*self.stream.name;
        let owns = consumer
            .assignment()
            .map_err(|e| kafka_error("reading a group member's assignment", e))?
            .find_partition(name, 0)
            .is_some();
        {
            let mut state = self.state.lock();
            if (revoked || !owns) && state.table.take().is_some() {
                tracing::debug!(group = self.group.name(), member = %self.name, "the partition went to another member");
            }
            if !owns || state.table.is_some() {
                state.seen = count;
                return Ok(());
            }
        }
        let next = committed(consumer, name, timeout)?.unwrap_or(0);
        let reader = new_consumer(config, link)?;
        let ledger = ledger::topic_name(self.stream.tag, &self.group);
        let earlier = ledger::delivered(&reader, &ledger, timeout)?;
        // Closing it waits for the broker; the caller is a blocking thread already.
        drop(reader);
        tracing::debug!(group = self.group.name(), member = %self.name, next, ?earlier, "the member owns the partition");
        let mut state = self.state.lock();
        state.seen = count;
        state.table = Some(Table::resume(self.name.clone(), next, earlier));
        Ok(())
    }

    /// Commits where `table` stands, unless asked for already; asynchronously.
    fn commit_async(&self, table: &mut Table) {
        let Some(offset) = table.take_commit() else {
            return;
        };
        let Some(consumer) = self.consumer.as_deref() else {
            return;
        };
        if let Err(error) = commit(consumer, &self.stream.name, offset, CommitMode::Async) {
            tracing::debug!(%error, group = self.group.name(), "committing a group's offset");
        }
    }

    /// Commits where the member stands, waiting for the answer. Blocking.
    fn commit_last(&self) {
        let last = self.state.lock().table.as_ref().map(Table::last_commit);
        let (Some(offset), Some(consumer)) = (last, self.consumer.as_deref()) else {
            return;
        };
        if let Err(error) = commit(consumer, &self.stream.name, offset, CommitMode::Sync) {
            tracing::debug!(%error, group = self.group.name(), "the last commit of a member");
        }
    }
}
