//! Groups on Redis: a consumer group of the stream's Redis Stream per group, and a consumer
//! per member (see the crate documentation).
//!
//! | key | what |
//! |---|---|
//! | `pubsub:{<root>}:log` | the stream's log; each group is a consumer group of it, each member a consumer |
//! | `pubsub:{<root>}:groups` | hash: group name → its settings (`wire::settings`), checked when a member joins |
//!
//! - join: the `JOIN` script (settings check, `XGROUP CREATE … MKSTREAM`).
//! - read: the `CLAIM` script (`XAUTOCLAIM` of deliveries idle past the ack deadline, with
//!   their counts from `XPENDING`), at most every [`CLAIM_EVERY`] unless a nack of the
//!   member fell due, then `XREADGROUP … >` for new entries on the member's own connection
//!   (it blocks there, never on the handle's shared connection).
//! - settle: `XACK`; a nack sets the entry's idle time so that a claim takes it once its
//!   delay passed (the `SETTLE` script: `XCLAIM … IDLE … JUSTID`, which does not count a
//!   delivery). A delay longer than the ack deadline is cut to the deadline.
//! - leave: the member's connection is closed; its consumer deleted when it holds nothing.

mod scripts;
mod wire;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use fred::clients::{Client, WithOptions};
use fred::interfaces::{ClientInterface, ClientLike};
use fred::types::config::Options;
use fred::types::scripts::Script;
use fred::types::{ClientUnblockFlag, ClusterHash, ConnectHandle, CustomCommand, Value};
use fred::util::redis_keyslot;
use parking_lot::Mutex;
use pubsub_core::adapter::{GroupEntry, Receipt, Settlement, TopicMemo};
use pubsub_core::{Error, ErrorKind, GroupConfig, Position, Result, StartAt, StreamConfig};
use tokio::sync::OnceCell;
use tokio::time::Instant;

use super::{parse_entry, Keys, Streams};
use crate::driver::fred_error;

/// How often a busy member looks for deliveries due again (its own nacks that fell due are
/// claimed at once). An idle member looks each time its blocking read ends.
const CLAIM_EVERY: Duration = Duration::from_millis(200);

/// A consumer that holds nothing and was idle this long is deleted when a member joins.
const STALE_CONSUMER: Duration = Duration::from_secs(3600);

/// How much later than a nack's delay its claim runs, so that Redis's clock has passed it too.
const DUE_MARGIN: Duration = Duration::from_millis(5);

/// The groups side of a handle's streams: the scripts, and the members reading through it.
pub(super) struct Groups {
    join: Script,
    claim: Script,
    settle: Script,
    leave: Script,
    members: Mutex<HashMap<Arc<str>, Arc<Member>>>,
    /// The epoch of each stream's log as last seen by a join or a claim (for the positions of
    /// deliveries), by root.
    epochs: Mutex<HashMap<String, u64>>,
}

impl Groups {
    pub(super) fn new() -> Self {
        Groups {
            join: Script::from_lua(scripts::JOIN),
            claim: Script::from_lua(scripts::CLAIM),
            settle: Script::from_lua(scripts::SETTLE),
            leave: Script::from_lua(scripts::LEAVE),
            members: Mutex::new(HashMap::new()),
            epochs: Mutex::new(HashMap::new()),
        }
    }

    fn member(&self, name: &str) -> Arc<Member> {
        let mut members = self.members.lock();
        if let Some(member) = members.get(name) {
            return member.clone();
        }
        let member = Arc::new(Member::new(name));
        members.insert(member.name.clone(), member.clone());
        member
    }
}

/// One member reading through this handle: its own connection (opened on its first read)
/// and when it next looks for deliveries due again.
pub(crate) struct Member {
    name: Arc<str>,
    connection: OnceCell<MemberConnection>,
    claims: Mutex<Claims>,
}

/// A member's own fred client and its connection task.
pub(crate) struct MemberConnection {
    /// The client its blocking reads go through.
    pub client: Client,
    /// Its connection task.
    pub handle: Mutex<Option<ConnectHandle>>,
}

impl Drop for MemberConnection {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.get_mut().take() {
            handle.abort();
        }
    }
}

/// When a member claims deliveries due again.
struct Claims {
    /// The next periodic claim.
    next: Instant,
    /// Where the next claim goes on in the group's pending list.
    cursor: String,
    /// When the member's own nacks fall due.
    nacks_due: Vec<Instant>,
    /// When the member's blocking read in progress ends, if one is.
    blocked_until: Option<Instant>,
}

impl Member {
    fn new(name: &str) -> Self {
        Member {
            name: Arc::from(name),
            connection: OnceCell::new(),
            claims: Mutex::new(Claims {
                next: Instant::now(),
                cursor: "0-0".into(),
                nacks_due: Vec::new(),
                blocked_until: None,
            }),
        }
    }

    /// Ends the member's blocking read now (as if it timed out), so that its next read claims
    /// a nack that falls due before the read would have ended. A read that is not blocked
    /// yet is left alone: it blocks no longer than until the nack is due.
    async fn wake(&self) {
        let Some(connection) = self.connection.get() else {
            return;
        };
        if let Err(error) = connection
            .client
            .unblock_self(Some(ClientUnblockFlag::Timeout))
            .await
        {
            tracing::trace!(member = %self.name, %error, "did not interrupt a member's read");
        }
    }

    /// The member's connection, once opened.
    pub(crate) fn connection(&self) -> Option<&MemberConnection> {
        self.connection.get()
    }
}

impl Streams {
    /// Creates `group` on `stream`'s log, or checks the settings of the one there.
    pub(crate) async fn join_group(
        &self,
        client: &WithOptions<Client>,
        stream: &StreamConfig,
        group: &GroupConfig,
    ) -> Result<()> {
        let keys = Keys::of(stream);
        let (start, epoch, after) = match group.start() {
            StartAt::Start => ("start", String::new(), String::new()),
            StartAt::After(position) => (
                "after",
                position.epoch().to_string(),
                wire::id_after(position.offset().1),
            ),
            _ => ("now", String::new(), String::new()),
        };
        let settings = wire::settings(group);
        let args: Vec<Value> = vec![
            group.name().into(),
            settings.as_str().into(),
            start.into(),
            epoch.into(),
            after.into(),
            self.candidate().into(),
            STALE_CONSUMER.as_millis().to_string().into(),
        ];
        let reply: Value = self
            .eval(
                client,
                &self.groups.join,
                vec![keys.log, keys.meta, keys.groups],
                args,
                "joining a group",
            )
            .await?;
        let mut reply = match reply {
            Value::Array(parts) => parts.into_iter().map(Value::into_string),
            _ => return Err(malformed("the join script", "no array")),
        };
        match (reply.next().flatten().as_deref(), reply.next().flatten()) {
            (Some("ok"), Some(epoch)) => {
                let epoch = epoch
                    .parse()
                    .map_err(|_| malformed("the join script", "a bad epoch"))?;
                self.groups
                    .epochs
                    .lock()
                    .insert(stream.root().as_str().to_string(), epoch);
                Ok(())
            }
            (Some("conflict"), Some(there)) => {
                Err(match wire::parse_settings(group.name(), &there) {
                    Some(there) => there.conflict(group),
                    None => Error::new(
                        ErrorKind::Invalid,
                        format!(
                            "group `{}` exists already with settings this adapter cannot \
                             read ({there:?})",
                            group.name()
                        ),
                    ),
                })
            }
            _ => Err(malformed("the join script", "an unknown answer")),
        }
    }

    /// At most `limit` deliveries for `member`: those due again, then new entries (waiting
    /// up to `wait` on the member's own connection, opened by `open` on its first read).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn read_group<F, Fut>(
        &self,
        client: &WithOptions<Client>,
        open: F,
        command_timeout: Duration,
        stream: &StreamConfig,
        group: &GroupConfig,
        member: &str,
        limit: usize,
        wait: Duration,
    ) -> Result<Vec<GroupEntry>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<MemberConnection>>,
    {
        let member = self.groups.member(member);
        let connection = member.connection.get_or_try_init(open).await?;
        let read = || {
            self.read_once(
                client,
                &connection.client,
                command_timeout,
                stream,
                group,
                &member,
                limit,
                wait,
            )
        };
        match read().await {
            Err(error) if is_no_group(&error) => {
                // The log was deleted or started a new life (its groups went with it): the
                // group starts again from what the log holds.
                tracing::warn!(
                    group = group.name(),
                    stream = %stream.root(),
                    "the group is gone from Redis (its log was deleted or reset); creating \
                     it again at the start of the log"
                );
                let again = group.clone().starting_at(StartAt::Start);
                self.join_group(client, stream, &again).await?;
                member.claims.lock().cursor = "0-0".into();
                read().await
            }
            read => read,
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn read_once(
        &self,
        client: &WithOptions<Client>,
        own: &Client,
        command_timeout: Duration,
        stream: &StreamConfig,
        group: &GroupConfig,
        member: &Member,
        limit: usize,
        wait: Duration,
    ) -> Result<Vec<GroupEntry>> {
        let keys = Keys::of(stream);
        let limit = limit.max(1);
        let now = Instant::now();
        let claim = {
            let mut claims = member.claims.lock();
            let nack_due = claims.nacks_due.iter().any(|due| *due <= now);
            claims.nacks_due.retain(|due| *due > now);
            (nack_due || claims.next <= now).then(|| claims.cursor.clone())
        };
        let mut position = self.position_of(stream);
        let mut out = Vec::new();
        let mut unreadable = Vec::new();
        let mut topics = TopicMemo::default();
        if let Some(cursor) = claim {
            let args: Vec<Value> = vec![
                group.name().into(),
                member.name.as_ref().into(),
                group.ack_deadline().as_millis().to_string().into(),
                cursor.into(),
                limit.to_string().into(),
            ];
            let reply: Value = self
                .eval(
                    client,
                    &self.groups.claim,
                    vec![keys.log.clone(), keys.meta.clone()],
                    args,
                    "claiming a group's deliveries due again",
                )
                .await?;
            let claimed = wire::parse_claimed(reply)
                .ok_or_else(|| malformed("the claim script", "an unreadable answer"))?;
            if let Some(epoch) = claimed.epoch {
                self.groups
                    .epochs
                    .lock()
                    .insert(stream.root().as_str().to_string(), epoch);
                position = Some((stream.tag(), epoch));
            }
            let full = claimed.entries.len() >= limit;
            {
                let mut claims = member.claims.lock();
                claims.next = if full || claimed.cursor != "0-0" {
                    now
                } else {
                    now + CLAIM_EVERY
                };
                claims.cursor = claimed.cursor;
            }
            for (entry, deliveries) in claimed.entries {
                let entry = delivery(entry, deliveries, &member.name, position, &mut topics);
                match entry {
                    Ok(entry) => out.push(entry),
                    Err(Some(id)) => unreadable.push(id),
                    Err(None) => {}
                }
            }
        }
        if out.len() < limit {
            let mut args: Vec<Value> = vec![
                "GROUP".into(),
                group.name().into(),
                member.name.as_ref().into(),
                "COUNT".into(),
                (limit - out.len()).to_string().into(),
            ];
            let mut timeout = command_timeout;
            if out.is_empty() {
                let due = member.claims.lock().nacks_due.iter().min().copied();
                let block = match due {
                    Some(due) => wait.min(due.saturating_duration_since(now)),
                    None => wait,
                };
                member.claims.lock().blocked_until = Some(now + block);
                let block_ms = block.as_millis().max(1);
                args.push("BLOCK".into());
                args.push(block_ms.to_string().into());
                timeout += block;
            }
            args.extend(["STREAMS".into(), keys.log.as_str().into(), ">".into()]);
            let slot = redis_keyslot(keys.log.as_bytes());
            let command = CustomCommand::new_static("XREADGROUP", ClusterHash::Custom(slot), true);
            let options = Options {
                timeout: Some(timeout),
                max_attempts: Some(1),
                ..Options::default()
            };
            let reply = own.with_options(&options).custom(command, args).await;
            member.claims.lock().blocked_until = None;
            let reply: Value = reply.map_err(|e| fred_error("reading a group's new entries", e))?;
            for entry in wire::read_group_entries(reply) {
                match delivery(entry, 1, &member.name, position, &mut topics) {
                    Ok(entry) => out.push(entry),
                    Err(Some(id)) => unreadable.push(id),
                    Err(None) => {}
                }
            }
        }
        if !unreadable.is_empty() {
            // Entries this adapter did not write can never be delivered: they are settled.
            tracing::debug!(
                group = group.name(),
                count = unreadable.len(),
                "acknowledging stream entries that are not messages"
            );
            self.ack(client, &keys, group, unreadable).await?;
        }
        Ok(out)
    }

    /// The stream's tag and its log's epoch as last seen, for the positions of deliveries.
    fn position_of(&self, stream: &StreamConfig) -> Option<(u32, u64)> {
        let epochs = self.groups.epochs.lock();
        epochs
            .get(stream.root().as_str())
            .map(|epoch| (stream.tag(), *epoch))
    }

    /// Carries out `settlements` of `group`'s deliveries in one command.
    pub(crate) async fn settle_group(
        &self,
        client: &WithOptions<Client>,
        stream: &StreamConfig,
        group: &GroupConfig,
        settlements: &[Settlement],
    ) -> Result<()> {
        let keys = Keys::of(stream);
        let deadline = group.ack_deadline();
        let mut acks = Vec::new();
        let mut nacks: Vec<Value> = Vec::new();
        let mut wake = Vec::new();
        let now = Instant::now();
        for settlement in settlements {
            let Some((id, member)) = settlement
                .receipt()
                .token
                .as_deref()
                .and_then(wire::parse_token)
            else {
                tracing::debug!(?settlement, "ignoring a settlement without a Redis receipt");
                continue;
            };
            match settlement {
                Settlement::Ack(_) => acks.push(id.to_string()),
                Settlement::Nack(_, delay) => {
                    let delay = (*delay).min(deadline);
                    let idle = deadline - delay;
                    nacks.extend([
                        member.into(),
                        id.into(),
                        idle.as_millis().to_string().into(),
                    ]);
                    let known = self.groups.members.lock().get(member).cloned();
                    if let Some(known) = known {
                        let due = now + delay + DUE_MARGIN;
                        let mut claims = known.claims.lock();
                        claims.nacks_due.push(due);
                        if claims.blocked_until.is_some_and(|until| until > due) {
                            drop(claims);
                            wake.push(known);
                        }
                    }
                }
            }
        }
        if nacks.is_empty() {
            return self.ack(client, &keys, group, acks).await;
        }
        let mut args: Vec<Value> = Vec::with_capacity(2 + acks.len() + nacks.len());
        args.push(group.name().into());
        args.push(acks.len().to_string().into());
        args.extend(acks.into_iter().map(Value::from));
        args.extend(nacks);
        self.eval::<Value>(
            client,
            &self.groups.settle,
            vec![keys.log],
            args,
            "settling a group's deliveries",
        )
        .await?;
        for member in wake {
            member.wake().await;
        }
        Ok(())
    }

    /// `XACK` of `ids`.
    async fn ack(
        &self,
        client: &WithOptions<Client>,
        keys: &Keys,
        group: &GroupConfig,
        ids: Vec<String>,
    ) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut args: Vec<Value> = Vec::with_capacity(2 + ids.len());
        args.push(keys.log.as_str().into());
        args.push(group.name().into());
        args.extend(ids.into_iter().map(Value::from));
        let command = CustomCommand::new_static("XACK", ClusterHash::FirstKey, false);
        client
            .custom::<Value, _>(command, args)
            .await
            .map(drop)
            .map_err(|e| fred_error("acknowledging a group's deliveries", e))
    }

    /// Forgets `member`: deletes its consumer when it holds nothing, and gives back its
    /// connection (if it opened one) for the caller to close.
    pub(crate) async fn leave_group(
        &self,
        client: &WithOptions<Client>,
        stream: &StreamConfig,
        group: &GroupConfig,
        member: &str,
    ) -> Option<Arc<Member>> {
        let left = self.groups.members.lock().remove(member);
        let keys = Keys::of(stream);
        let args: Vec<Value> = vec![group.name().into(), member.into()];
        if let Err(error) = self
            .eval::<Value>(
                client,
                &self.groups.leave,
                vec![keys.log],
                args,
                "deleting a member's consumer",
            )
            .await
        {
            tracing::debug!(group = group.name(), member, %error, "could not delete a member's consumer");
        }
        left
    }

    /// Every member reading through this handle, forgotten (for `close`).
    pub(crate) fn take_members(&self) -> Vec<Arc<Member>> {
        self.groups.members.lock().drain().map(|(_, m)| m).collect()
    }
}

/// One entry (`[id, fields]`) as a delivery to `member`; `Err(Some(id))` for an entry this
/// adapter did not write (to be acknowledged), `Err(None)` for one without an id.
fn delivery(
    entry: Value,
    deliveries: u32,
    member: &str,
    position: Option<(u32, u64)>,
    topics: &mut TopicMemo,
) -> std::result::Result<GroupEntry, Option<String>> {
    let id = wire::entry_id(&entry).ok_or(None)?;
    let Some((offset, message)) = parse_entry(entry, topics) else {
        return Err(Some(id));
    };
    let message = match position {
        Some((tag, epoch)) => message.with_position(Position::new(tag, epoch, offset)),
        None => message,
    };
    Ok(GroupEntry {
        receipt: Receipt {
            offset,
            token: Some(wire::token(&id, member)),
        },
        message,
        deliveries,
    })
}

/// Whether `error` is Redis's `NOGROUP` (the log or its consumer group is gone).
fn is_no_group(error: &Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if e.to_string().contains("NOGROUP") {
            return true;
        }
        source = e.source();
    }
    false
}

fn malformed(script: &str, what: &str) -> Error {
    Error::new(ErrorKind::Backend, format!("{script} replied with {what}"))
}
