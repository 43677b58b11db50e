//! Groups on NATS: one durable pull consumer per group on its stream's JetStream stream
//! ([`Groups`]).
//!
//! - **Joining** finds the group's consumer (named after the group) or creates it
//!   ([`consumer::config_of`]): explicit acks, `ack_wait` = the ack deadline, no delivery
//!   limit, the single pattern as its filter subject, and the settings JetStream cannot show in
//!   its description. A consumer there with other settings is a conflict (`Invalid`).
//! - **Reading** asks the consumer for what it has now (a `no_wait` pull of up to the limit);
//!   when that is nothing, waits up to the read's wait for one message (a pull with
//!   `expires`). Every member pulls from the same consumer: JetStream hands each message to
//!   one pull at a time, and again after a nak's delay or the `ack_wait`.
//! - **Settling** publishes `+ACK` or `-NAK {"delay":…}` to each delivery's reply subject,
//!   then flushes once (the server has them all when the flush returns).
//! - **Leaving** releases nothing: a member keeps no pull open between reads.

mod consumer;
mod delivery;

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, Consumer, Info};
use async_nats::jetstream::response::Response;
use async_nats::jetstream::Context;
use async_nats::{Client, Subject};
use futures::{Stream, StreamExt};
use parking_lot::Mutex;

use pubsub_core::adapter::{GroupEntry, Settlement, TopicMemo};
use pubsub_core::{Error, ErrorKind, GroupConfig, Result};

use crate::error;
use crate::stream::{self, Declared};
use delivery::{ack, delivery_of, entry_of, reply_of};

/// The shortest wait a pull that waits is given (the server wants a whole millisecond).
const MIN_PULL_WAIT: Duration = Duration::from_millis(10);

/// How long after its expiry a pull is given up on: a pull pending on a consumer deleted
/// under it may never be answered (NATS 2.9 does not always end it), and a read that waited
/// on would keep the member from finding the consumer gone.
const PULL_GRACE: Duration = Duration::from_secs(2);

/// A group's consumer as joined on this handle.
#[derive(Clone)]
struct Joined {
    group: GroupConfig,
    consumer: Consumer<pull::Config>,
}

/// The consumers of the groups joined on one handle.
pub(crate) struct Groups {
    client: Client,
    /// The consumers joined, with their group's settings, by stream and group name.
    consumers: Mutex<HashMap<(String, String), Joined>>,
}

impl Groups {
    /// The groups of a handle on `client`.
    pub(crate) fn new(client: Client) -> Self {
        Groups {
            client,
            consumers: Mutex::new(HashMap::new()),
        }
    }

    /// Creates `group`'s consumer on `declared`'s stream, or checks the one there.
    pub(crate) async fn join(
        &self,
        js: &Context,
        declared: &Declared,
        group: &GroupConfig,
    ) -> Result<()> {
        self.consumer_of(js, declared, group).await.map(drop)
    }

    /// At most `limit` deliveries of `group`: what its consumer has now, or, when nothing,
    /// the first to come within `wait`.
    pub(crate) async fn read(
        &self,
        js: &Context,
        declared: &Declared,
        group: &GroupConfig,
        limit: usize,
        wait: Duration,
    ) -> Result<Vec<GroupEntry>> {
        let consumer = self.consumer_of(js, declared, group).await?;
        let mut read = Read::new(declared);
        let wait = wait.max(MIN_PULL_WAIT);
        let pulls = async {
            if limit == 0 {
                return Ok(());
            }
            let now = consumer.fetch().max_messages(limit).messages().await;
            read.take(now.map_err(pull_failed)?).await?;
            if read.got == 0 {
                let one = consumer.batch().max_messages(1).expires(wait).messages();
                read.take(one.await.map_err(pull_failed)?).await?;
            }
            Ok(())
        };
        let result = match tokio::time::timeout(wait + PULL_GRACE, pulls).await {
            Ok(result) => result,
            Err(_) => Err(Error::timeout(format!(
                "a pull of group `{}` got no answer {PULL_GRACE:?} past its expiry (its consumer may be gone)",
                group.name()
            ))),
        };
        // Whatever was delivered and cannot be handed out is settled for good.
        if !read.unfit.is_empty() {
            for reply in read.unfit.drain(..) {
                if let Err(error) = self.client.publish(reply, ack()).await {
                    tracing::debug!(%error, "acknowledging a delivery that is no topic failed");
                }
            }
        }
        if let Err(error) = result {
            // The consumer may be gone from the server: the next read looks for it again.
            self.forget(declared, group);
            if read.entries.is_empty() {
                return Err(error);
            }
            // What came before the failure is the member's (else it waits for `ack_wait`).
            tracing::debug!(%error, "a pull failed after some deliveries; handing those out");
        }
        Ok(read.entries)
    }

    /// Publishes each settlement to its delivery's reply subject, then flushes once.
    pub(crate) async fn settle(&self, settlements: &[Settlement]) -> Result<()> {
        for settlement in settlements {
            let Some(reply) = settlement.receipt().token.as_deref() else {
                tracing::debug!(
                    receipt = ?settlement.receipt(),
                    "a settlement without a reply subject: not a delivery of this adapter"
                );
                continue;
            };
            let publish = self
                .client
                .publish(Subject::from(reply), reply_of(settlement));
            publish.await.map_err(error::publish)?;
        }
        self.client.flush().await.map_err(error::flush)
    }

    /// The consumer of `group`: the one this handle joined, or the one at the server (checked
    /// against the group's settings), or a new one.
    async fn consumer_of(
        &self,
        js: &Context,
        declared: &Declared,
        group: &GroupConfig,
    ) -> Result<Consumer<pull::Config>> {
        let key = (declared.name().to_string(), consumer::durable_name(group));
        if let Some(known) = self.consumers.lock().get(&key) {
            if !known.group.same_group(group) {
                return Err(known.group.conflict(group));
            }
            return Ok(known.consumer.clone());
        }
        let info = match consumer_info(js, &key.0, &key.1).await? {
            Some(info) => info,
            None => {
                // The stream's epoch now (a position of another is not its), and the stream
                // itself if it was deleted (its consumers went with it).
                stream::refresh(js, declared).await?;
                let config = consumer::config_of(group, declared.epoch());
                create(js, declared, group, config).await?
            }
        };
        let wanted = consumer::config_of(group, declared.epoch());
        if !consumer::same_consumer(&info.config, &wanted) {
            return Err(consumer::conflict(group, &info.config, &key.0));
        }
        tracing::debug!(
            stream = %declared.config().root(),
            group = group.name(),
            "JetStream consumer of the group ready"
        );
        let consumer = Consumer::new(wanted, info, js.clone());
        let joined = Joined {
            group: group.clone(),
            consumer: consumer.clone(),
        };
        self.consumers.lock().insert(key, joined);
        Ok(consumer)
    }

    /// Forgets the consumer of `group` (looked for at the server on the next read).
    fn forget(&self, declared: &Declared, group: &GroupConfig) {
        let key = (declared.name().to_string(), consumer::durable_name(group));
        self.consumers.lock().remove(&key);
    }
}

impl std::fmt::Debug for Groups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Groups")
            .field("consumers", &self.consumers.lock().len())
            .finish()
    }
}

/// The deliveries of one read, as they come.
struct Read<'a> {
    declared: &'a Declared,
    topics: TopicMemo,
    entries: Vec<GroupEntry>,
    /// The reply subjects of deliveries that are no portable topic.
    unfit: Vec<Subject>,
    /// How many messages the pulls returned.
    got: usize,
}

impl<'a> Read<'a> {
    fn new(declared: &'a Declared) -> Self {
        Read {
            declared,
            topics: TopicMemo::default(),
            entries: Vec::new(),
            unfit: Vec::new(),
            got: 0,
        }
    }

    /// Takes every message of one pull.
    async fn take(
        &mut self,
        mut pull: impl Stream<Item = std::result::Result<async_nats::jetstream::Message, async_nats::Error>>
            + Unpin,
    ) -> Result<()> {
        while let Some(message) = pull.next().await {
            let message = message.map_err(pull_failed)?;
            self.got += 1;
            let Some(delivery) = delivery_of(&message) else {
                continue;
            };
            let message = message.message;
            let reply = message.reply.clone();
            let declared = self.declared;
            match entry_of(message, delivery, &mut self.topics, |seq| {
                declared.position(seq)
            }) {
                Some(entry) => self.entries.push(entry),
                None => self.unfit.extend(reply),
            }
        }
        Ok(())
    }
}

/// A pull that failed.
fn pull_failed(error: impl Into<async_nats::Error>) -> Error {
    Error::new(
        ErrorKind::Connection,
        "pulling from the group's consumer failed",
    )
    .with_source(error.into())
}

/// The consumer `name` of stream `stream`, or `None` when there is none.
async fn consumer_info(js: &Context, stream: &str, name: &str) -> Result<Option<Info>> {
    let subject = format!("CONSUMER.INFO.{stream}.{name}");
    // An empty JSON object: the server refuses `null` here.
    let empty: HashMap<(), ()> = HashMap::new();
    let response: Response<Info> = js.request(subject, &empty).await.map_err(|e| {
        Error::new(ErrorKind::Connection, "reading a group's consumer failed").with_source(e)
    })?;
    match response {
        Response::Ok(info) => Ok(Some(info)),
        Response::Err { error } if error.code() == 404 => Ok(None),
        Response::Err { error } => Err(Error::new(
            ErrorKind::Connection,
            format!("reading consumer `{name}` of JetStream stream {stream} failed"),
        )
        .with_source(error)),
    }
}

/// Creates the consumer of `group`; when another member created it meanwhile, the one there.
async fn create(
    js: &Context,
    declared: &Declared,
    group: &GroupConfig,
    config: pull::Config,
) -> Result<Info> {
    let name = consumer::durable_name(group);
    let error = match js.create_consumer_on_stream(config, declared.name()).await {
        Ok(created) => return Ok(created.cached_info().clone()),
        Err(error) => error,
    };
    if let Ok(Some(info)) = consumer_info(js, declared.name(), &name).await {
        return Ok(info);
    }
    use async_nats::jetstream::stream::ConsumerErrorKind as K;
    let kind = match error.kind() {
        K::TimedOut => ErrorKind::Timeout,
        K::JetStream(_) | K::InvalidName | K::InvalidConsumerType => ErrorKind::Invalid,
        _ => ErrorKind::Connection,
    };
    let message = format!(
        "creating the JetStream consumer of group `{}` on stream {} failed",
        group.name(),
        declared.name()
    );
    Err(Error::new(kind, message).with_source(error))
}
