//! One member of a group: a reader task that reads deliveries as far as the member's prefetch
//! allows, and a settler task that carries the member's acks and nacks to the broker in
//! batches.
//!
//! The reader also does what every backend's group needs and no broker does the same way:
//!
//! - a delivery past the group's maximum deliveries is published to the dead-letter topic,
//!   with the reason, the count, the original topic and the group in headers, then
//!   acknowledged;
//! - an entry of the stream that the group's patterns do not match is acknowledged unseen;
//! - when the member leaves, what it read but did not hand out goes back to the group at once
//!   (a nack without delay).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::adapter::driver::Driver;
use crate::adapter::group_log::{GroupEntry, Settlement};
use crate::adapter::supervisor::Supervisor;
use crate::adapter::tasks::Tasks;
use crate::group::{
    MemberState, Settle, SettleRequest, DEAD_LETTER_REASON_HEADER, DELIVERIES_HEADER, GROUP_HEADER,
    ORIGINAL_TOPIC_HEADER,
};
use crate::{
    Backoff, EndReason, Error, GroupConfig, GroupMessage, GroupSubscription, Message, Result,
    StreamConfig,
};

/// The longest one read waits at the broker for something to arrive.
const READ_WAIT: Duration = Duration::from_secs(1);
/// The most settlements sent to the broker in one batch.
const SETTLE_BATCH: usize = 1024;

/// What a member's tasks need of the handle (not the handle itself: they must not keep it
/// alive).
pub(crate) struct MemberParts<D> {
    pub driver: Arc<D>,
    pub supervisor: Supervisor,
    pub tasks: Tasks,
    pub backoff: Backoff,
    pub command_timeout: Duration,
    pub stream: StreamConfig,
    pub group: GroupConfig,
    pub member: String,
}

/// Starts a member's reader and settler; the subscription is the member.
pub(crate) fn start<D: Driver>(parts: MemberParts<D>) -> GroupSubscription {
    let (messages, received) = mpsc::channel(parts.group.prefetch());
    let (settler, requests) = mpsc::unbounded_channel();
    let stop_reading = CancellationToken::new();
    let state = Arc::new(MemberState::default());
    let member = parts.member.clone();
    let parts = Arc::new(parts);
    let reader = Reader {
        parts: parts.clone(),
        messages,
        settler: settler.clone(),
        stop: stop_reading.clone(),
        state: state.clone(),
    };
    parts.tasks.spawn(reader.run());
    parts.tasks.spawn(settle(parts.clone(), requests));
    GroupSubscription::new(received, settler, stop_reading, state, member)
}

/// Reads deliveries for one member into its channel.
struct Reader<D> {
    parts: Arc<MemberParts<D>>,
    messages: mpsc::Sender<GroupMessage>,
    settler: mpsc::UnboundedSender<SettleRequest>,
    stop: CancellationToken,
    state: Arc<MemberState>,
}

impl<D: Driver> Reader<D> {
    async fn run(self) {
        let _ends = EndOnDrop(self.state.clone());
        let parts = &self.parts;
        let mut attempt = 0u32;
        loop {
            // Room for at least one more: read as many as there is room for.
            let permit = tokio::select! {
                _ = self.stop.cancelled() => break,
                permit = self.messages.reserve() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
            };
            let limit = self.messages.capacity() + 1;
            if !self.wait_up().await {
                break;
            }
            // Not cancelled by the member leaving: what is read is then given back at once.
            let wait = READ_WAIT.min(parts.group.ack_deadline() / 2);
            let read =
                parts
                    .driver
                    .read_group(&parts.stream, &parts.group, &parts.member, limit, wait);
            let read = match tokio::time::timeout(parts.command_timeout + wait, read).await {
                Ok(read) => read,
                Err(_) => Err(Error::timeout(format!(
                    "reading group `{}` took longer than {:?}",
                    parts.group.name(),
                    parts.command_timeout + wait
                ))),
            };
            let entries = match read {
                Ok(entries) => entries,
                Err(error) => {
                    drop(permit);
                    tracing::warn!(
                        backend = D::BACKEND,
                        group = parts.group.name(),
                        attempt,
                        %error,
                        "reading the group failed; retrying"
                    );
                    let delay = parts.backoff.delay(attempt);
                    attempt = attempt.saturating_add(1);
                    tokio::select! {
                        _ = self.stop.cancelled() => break,
                        _ = tokio::time::sleep(delay) => continue,
                    }
                }
            };
            attempt = 0;
            let mut permit = Some(permit);
            let mut settle_now = Vec::new();
            let mut given_back = false;
            for entry in entries {
                if self.stop.is_cancelled() || self.messages.is_closed() {
                    settle_now.push(Settlement::Nack(entry.receipt, Duration::ZERO));
                    given_back = true;
                    continue;
                }
                if entry.deliveries > parts.group.max_deliveries() {
                    match self.dead_letter(&entry).await {
                        Ok(()) => settle_now.push(Settlement::Ack(entry.receipt)),
                        // Left to its deadline: dead-lettered on a later delivery.
                        Err(error) => tracing::warn!(
                            backend = D::BACKEND,
                            group = parts.group.name(),
                            %error,
                            "publishing a dead letter failed; it is delivered again later"
                        ),
                    }
                    continue;
                }
                if !parts.group.matches(entry.message.topic()) {
                    settle_now.push(Settlement::Ack(entry.receipt));
                    continue;
                }
                let message = GroupMessage::new(
                    entry.message,
                    entry.deliveries,
                    entry.receipt,
                    self.settler.clone(),
                );
                match permit.take() {
                    Some(permit) => permit.send(message),
                    // The member is the only sender and read no more than there was room
                    // for, so this does not wait.
                    None => {
                        if let Err(unsent) = self.messages.send(message).await {
                            drop(unsent.0.nack(Duration::ZERO));
                            given_back = true;
                        }
                    }
                }
            }
            if !settle_now.is_empty() {
                let settled = parts
                    .driver
                    .settle_group(&parts.stream, &parts.group, &settle_now);
                if let Err(error) = with_deadline(parts.command_timeout, settled).await {
                    tracing::debug!(
                        backend = D::BACKEND,
                        group = parts.group.name(),
                        %error,
                        "settling skipped or dead-lettered deliveries failed; they come back \
                         after the ack deadline"
                    );
                }
            }
            if given_back {
                break;
            }
        }
        let leave = parts
            .driver
            .leave_group(&parts.stream, &parts.group, &parts.member);
        let _ = tokio::time::timeout(parts.command_timeout, leave).await;
    }

    /// Publishes a delivery that had its last chance to the group's dead-letter topic.
    async fn dead_letter(&self, entry: &GroupEntry) -> Result<()> {
        let group = &self.parts.group;
        let original = &entry.message;
        let mut builder =
            Message::builder(group.dead_letter().clone()).payload(original.payload().clone());
        for (name, value) in original.headers().iter() {
            builder = builder.header(name, value);
        }
        let message = builder
            .header(DEAD_LETTER_REASON_HEADER, "max-deliveries")
            .header(DELIVERIES_HEADER, (entry.deliveries - 1).to_string())
            .header(ORIGINAL_TOPIC_HEADER, original.topic().as_str())
            .header(GROUP_HEADER, group.name())
            .build()?;
        with_deadline(
            self.parts.command_timeout,
            self.parts.driver.publish(message),
        )
        .await
    }

    /// Waits until the handle is up; false when the member stopped.
    async fn wait_up(&self) -> bool {
        self.parts.supervisor.up_unless(&self.stop).await
    }
}

/// Carries the member's settlements to the broker in batches, in the order made, until every
/// sender is gone or the handle stops.
async fn settle<D: Driver>(
    parts: Arc<MemberParts<D>>,
    mut requests: mpsc::UnboundedReceiver<SettleRequest>,
) {
    let mut batch = Vec::new();
    while requests.recv_many(&mut batch, SETTLE_BATCH).await > 0 {
        let mut settlements = Vec::with_capacity(batch.len());
        let mut waiting = Vec::with_capacity(batch.len());
        let mut flushes = Vec::new();
        for request in batch.drain(..) {
            match request {
                SettleRequest::One {
                    receipt,
                    settle,
                    done,
                } => {
                    settlements.push(match settle {
                        Settle::Ack => Settlement::Ack(receipt),
                        Settle::Nack(delay) => Settlement::Nack(receipt, delay),
                    });
                    waiting.push(done);
                }
                SettleRequest::Flush(done) => flushes.push(done),
            }
        }
        if !settlements.is_empty() {
            let result = settle_batch(&parts, &settlements).await;
            for done in waiting {
                let _ = done.send(result.clone());
            }
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

/// One batch of settlements: waits (up to the command timeout) for the handle to be up, then
/// asks the driver once.
async fn settle_batch<D: Driver>(parts: &MemberParts<D>, settlements: &[Settlement]) -> Result<()> {
    let attempt = async {
        if !parts.supervisor.is_up() {
            parts.supervisor.ready(parts.command_timeout).await?;
        }
        parts
            .driver
            .settle_group(&parts.stream, &parts.group, settlements)
            .await
    };
    with_deadline(parts.command_timeout * 2, attempt)
        .await
        .map_err(|e| {
            e.with_backend(D::BACKEND)
                .with_operation(crate::Operation::Settle)
        })
}

/// `future`'s result, or a timeout error after `deadline`.
async fn with_deadline<T>(
    deadline: Duration,
    future: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    match tokio::time::timeout(deadline, future).await {
        Ok(result) => result,
        Err(_) => Err(Error::timeout(format!(
            "the broker did not answer within {deadline:?}"
        ))),
    }
}

/// Marks the member's stream as ended when its reader stops, however it stops.
struct EndOnDrop(Arc<MemberState>);

impl Drop for EndOnDrop {
    fn drop(&mut self) {
        self.0.end.lock().get_or_insert(EndReason::Closed);
    }
}
