//! Creating a group's queue, or joining the one there: a lock while it is created, the
//! declaration (which compares the group's settings), the bindings, and the backlog copied
//! from the stream for a group that starts at the stream's start or after a position.
//!
//! The backlog is copied before the queue is bound, so that it comes first in the queue:
//!
//! 1. the stream's entries from the start (or after the position) are read batch after batch
//!    and each one the group's patterns match is published to the queue itself (default
//!    exchange, its topic in a header), with publisher confirms, until a batch ends at the
//!    end of the log as it was when that read began;
//! 2. the queue is bound with the group's patterns: from then on, the exchange routes to it
//!    whatever is published under them;
//! 3. after a short pause ([`SETTLE`], for publishes routed before the binding to reach the
//!    stream), the end of the log is probed at the broker (a consumer from `last`), and the
//!    entries up to that end are copied too.
//!
//! RabbitMQ gives no exact switch: a publish is routed to the stream and to the group's
//! queue at once only from the binding on, and publishes of other channels may reach the
//! stream in another order than they were routed. So what is published between the binding
//! and the end probed in step 3 (the pause plus a probe, some 50 to 200 ms) reaches the
//! queue twice, bound and copied (at least once; the copy comes after the bound one), and a
//! publish routed before the binding that reaches the stream only after that probe would be
//! missed.

use std::time::Duration;

use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::protocol::AMQPSoftError;
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection};
use pubsub_core::adapter::{LogRead, ReadFrom};
use pubsub_core::{Error, ErrorKind, GroupConfig, Offset, Result, StreamConfig};
use tokio::time::Instant;

use super::layout::{copy_table, lock_name};
use super::StreamLog;
use crate::binding::binding_key;
use crate::driver::lapin_error;
use crate::queue_probe::{is_soft, probe};

/// How long a creator waits after binding before it notes the end of the log.
pub(crate) const SETTLE: Duration = Duration::from_millis(50);

/// Entries read from the stream at once while copying.
const COPY_BATCH: usize = 2_000;

/// How long a join waits before it tries again to take the lock of a group being created.
const LOCK_RETRY: Duration = Duration::from_millis(50);

/// The lock of a group's creation: an exclusive queue of our connection. Another
/// connection's declaration of it fails (`RESOURCE_LOCKED`) while it exists; it goes away
/// with our connection if we die.
pub(crate) struct Lock {
    channel: Channel,
    name: ShortString,
}

impl Lock {
    /// Takes the lock of `queue`'s creation, waiting until `deadline` while another
    /// connection holds it.
    pub(crate) async fn take(
        connection: &Connection,
        queue: &ShortString,
        group: &GroupConfig,
        deadline: Instant,
    ) -> Result<Lock> {
        let name = lock_name(queue);
        loop {
            let channel = connection
                .create_channel()
                .await
                .map_err(|e| lapin_error("opening a channel", e))?;
            let exclusive = QueueDeclareOptions {
                exclusive: true,
                ..QueueDeclareOptions::default()
            };
            let error = match channel
                .queue_declare(name.clone(), exclusive, FieldTable::default())
                .await
            {
                Ok(_) => return Ok(Lock { channel, name }),
                Err(error) => error,
            };
            if !is_soft(&error, AMQPSoftError::RESOURCELOCKED) {
                return Err(lapin_error("locking the group's creation", error));
            }
            if Instant::now() + LOCK_RETRY >= deadline {
                return Err(Error::timeout(format!(
                    "group `{}` is being created by another connection (its queue `{}` is \
                     still being filled from the stream)",
                    group.name(),
                    queue
                )));
            }
            tokio::time::sleep(LOCK_RETRY).await;
        }
    }

    /// Releases the lock (deletes the queue, closes its channel).
    pub(crate) async fn release(self) {
        if !self.channel.status().connected() {
            return;
        }
        let deleted = self
            .channel
            .queue_delete(self.name.clone(), QueueDeleteOptions::default())
            .await;
        if let Err(error) = deleted {
            tracing::debug!(%error, lock = %self.name, "deleting a group's creation lock failed");
        }
        let _ = self.channel.close(200, "OK".into()).await;
    }
}

/// Declares the group's `queue` (durable) with `arguments`; returns a channel of its own
/// (in confirm mode, for the copies) and whether the queue existed. A queue there with other
/// arguments (the group's other settings) is `Invalid`.
pub(crate) async fn declare(
    connection: &Connection,
    queue: &ShortString,
    arguments: FieldTable,
    group: &GroupConfig,
) -> Result<(Channel, bool)> {
    let (channel, existed) = probe(connection, queue, "looking for the group's queue").await?;
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    if let Err(error) = channel
        .queue_declare(queue.clone(), durable, arguments)
        .await
    {
        if is_soft(&error, AMQPSoftError::PRECONDITIONFAILED) {
            return Err(Error::new(
                ErrorKind::Invalid,
                format!(
                    "group `{}` exists already with other settings (or another stream's \
                     limits): its queue `{queue}` was declared with other arguments",
                    group.name()
                ),
            )
            .with_source(error));
        }
        return Err(lapin_error("declaring the group's queue", error));
    }
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|e| lapin_error("declaring the group's queue", e))?;
    Ok((channel, existed))
}

/// Binds `queue` to `exchange` with the binding key of each of the group's patterns (again:
/// harmless).
pub(crate) async fn bind(
    channel: &Channel,
    exchange: &ShortString,
    queue: &ShortString,
    group: &GroupConfig,
) -> Result<()> {
    for pattern in group.patterns() {
        channel
            .queue_bind(
                queue.clone(),
                exchange.clone(),
                binding_key(pattern),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| lapin_error("binding the group's queue", e))?;
    }
    Ok(())
}

/// Fills a new group's `queue` from the stream (from `from`), binds it with the group's
/// patterns, and copies what reached the stream meanwhile (see the module's documentation).
pub(crate) async fn backfill(
    log: &dyn StreamLog,
    stream: &StreamConfig,
    channel: &Channel,
    exchange: &ShortString,
    queue: &ShortString,
    group: &GroupConfig,
    mut from: ReadFrom,
) -> Result<()> {
    let read = |from, limit| log.read(stream, from, limit);
    let mut copied = 0usize;
    // 1. Up to the end of the log, unbound.
    loop {
        let batch = read(from, COPY_BATCH).await?;
        let full = batch.entries.len() >= COPY_BATCH;
        if let Some(next) = after_last(&batch) {
            from = next;
        }
        copied += copy(channel, queue, group, &batch, u64::MAX).await?;
        if !full {
            break;
        }
    }
    // 2. Bound.
    bind(channel, exchange, queue, group).await?;
    tokio::time::sleep(SETTLE).await;
    // 3. Up to the end noted now.
    let until = log.end(stream).await?;
    loop {
        let batch = read(from, COPY_BATCH).await?;
        let last = batch.entries.last().map(|(offset, _)| offset.1);
        if let Some(next) = after_last(&batch) {
            from = next;
        }
        copied += copy(channel, queue, group, &batch, until).await?;
        if last.is_none_or(|last| last >= until) {
            break;
        }
    }
    tracing::debug!(queue = %queue, copied, "filled a new group's queue from its stream");
    Ok(())
}

/// The read that goes on after a batch's last entry.
fn after_last(batch: &LogRead) -> Option<ReadFrom> {
    let (Offset(_, last), _) = batch.entries.last()?;
    Some(ReadFrom::After(Offset(0, *last)))
}

/// Publishes to `queue` (with confirms) a copy of each entry of `batch` up to the position
/// offset `until` that the group's patterns match; the number copied.
async fn copy(
    channel: &Channel,
    queue: &ShortString,
    group: &GroupConfig,
    batch: &LogRead,
    until: u64,
) -> Result<usize> {
    let fail = |e| lapin_error("copying the stream into the group's queue", e);
    let mut confirms = Vec::new();
    for (Offset(_, at), message) in &batch.entries {
        if *at > until || !group.matches(message.topic()) {
            continue;
        }
        let properties = BasicProperties::default()
            .with_headers(copy_table(message)?)
            .with_delivery_mode(2);
        let confirm = channel
            .basic_publish(
                "".into(),
                queue.clone(),
                BasicPublishOptions::default(),
                message.payload(),
                properties,
            )
            .await
            .map_err(fail)?;
        confirms.push(confirm);
    }
    let copied = confirms.len();
    for confirm in confirms {
        match confirm.await.map_err(fail)? {
            Confirmation::Ack(None) | Confirmation::NotRequested => {}
            _ => {
                return Err(Error::new(
                    ErrorKind::Backend,
                    "the broker refused a copy of the stream into the group's queue",
                ))
            }
        }
    }
    Ok(copied)
}
