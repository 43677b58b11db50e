//! A join: one at a time per group on this handle, under the broker's lock of the group's
//! creation; the queue declared (its settings compared), then bound, or first filled from the
//! stream in a task of its own (see [`super::create`]).

use std::sync::Arc;
use std::time::Duration;

use lapin::types::ShortString;
use lapin::Connection;
use pubsub_core::adapter::{ReadFrom, Tasks};
use pubsub_core::{Error, ErrorKind, GroupConfig, Result, StartAt, StreamConfig};
use tokio::time::Instant;

use super::{create, layout, Groups, StreamLog};
use crate::driver::lapin_error;

/// What a join needs of the handle.
pub(crate) struct Join {
    /// The handle's connection now.
    pub connection: Arc<Connection>,
    /// The handle's exchange.
    pub exchange: ShortString,
    /// The stream the group reads, and the epoch of its log.
    pub stream: StreamConfig,
    pub epoch: u64,
    /// The stream's log, for the copy.
    pub log: Arc<dyn StreamLog>,
    /// Where the copy runs.
    pub tasks: Tasks,
    /// How long the join waits, at most, for a join of the same group on this handle, for the
    /// broker's lock and for the copy (which then goes on in the background).
    pub budget: Duration,
}

impl Join {
    /// Creates `group`'s queue, or joins the one there.
    pub(crate) async fn run(self, groups: &Groups, group: &GroupConfig) -> Result<()> {
        let deadline = Instant::now() + self.budget;
        let queue = layout::queue_name(self.exchange.as_str(), &self.stream, group);
        let joins = groups.join_lock(&queue);
        let joining = tokio::time::timeout_at(deadline, joins.lock_owned())
            .await
            .map_err(|_| {
                Error::timeout(format!(
                    "group `{}`: another join of it on this handle is still under way",
                    group.name()
                ))
            })?;
        let connection = &self.connection;
        let lock = create::Lock::take(connection, &queue, group, deadline).await?;
        let arguments = layout::queue_arguments(&self.stream, group);
        let (channel, existed) = match create::declare(connection, &queue, arguments, group).await {
            Ok(declared) => declared,
            Err(error) => {
                lock.release().await;
                return Err(error);
            }
        };
        let from = match group.start() {
            _ if existed => None,
            StartAt::Start => Some(ReadFrom::Start),
            StartAt::After(position) if position.epoch() == self.epoch => {
                Some(ReadFrom::After(position.offset()))
            }
            // A position of an earlier log: everything this log holds comes after it.
            StartAt::After(_) => Some(ReadFrom::Start),
            _ => None,
        };
        let Some(from) = from else {
            // Bound again when it existed: harmless, and it completes a creation that died
            // before binding.
            let bound = create::bind(&channel, &self.exchange, &queue, group).await;
            let _ = channel.close(200, "OK".into()).await;
            lock.release().await;
            return bound;
        };
        let (done, filled) = tokio::sync::oneshot::channel();
        let name = group.name().to_string();
        let group = group.clone();
        let tasks = self.tasks.clone();
        tasks.spawn(async move {
            let (log, stream, exchange) = (&*self.log, &self.stream, &self.exchange);
            let filling = create::backfill(log, stream, &channel, exchange, &queue, &group, from);
            let mut result = filling.await;
            if let Err(error) = &result {
                tracing::warn!(%error, queue = %queue, "filling a new group from its stream failed");
                // Bound anyway, so that the group gets what is published from now on.
                if let Err(error) = create::bind(&channel, exchange, &queue, &group).await {
                    result = Err(error);
                }
            }
            let _ = channel.close(200, "OK".into()).await;
            lock.release().await;
            drop(joining);
            let _ = done.send(result);
        });
        match tokio::time::timeout_at(deadline, filled).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(Error::new(
                ErrorKind::Backend,
                "filling the new group from its stream was stopped",
            )),
            Err(_) => {
                tracing::info!(
                    group = %name,
                    "a new group is still being filled from its stream; it goes on in the background"
                );
                Ok(())
            }
        }
    }
}

/// Binds `group`'s queue on `stream` again (a member whose channel was lost: the broker may
/// have restarted and lost the bindings of a transient exchange).
pub(crate) async fn rebind(
    connection: &Connection,
    exchange: &ShortString,
    stream: &StreamConfig,
    group: &GroupConfig,
) -> Result<()> {
    let queue = layout::queue_name(exchange.as_str(), stream, group);
    let channel = connection
        .create_channel()
        .await
        .map_err(|e| lapin_error("opening a channel", e))?;
    let bound = create::bind(&channel, exchange, &queue, group).await;
    let _ = channel.close(200, "OK".into()).await;
    bound
}
