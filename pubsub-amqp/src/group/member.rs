//! One member of a group on this handle: a channel of its own with the member's prefetch
//! (`basic.qos`), a consumer of the group's queue with manual acknowledgements, the deliveries
//! handed out and not settled yet, and when each falls due.
//!
//! RabbitMQ redelivers an unacknowledged message only when its channel or consumer goes away,
//! and has no delayed requeue; so the member itself gives deliveries back
//! (`basic.nack` with `requeue`) when they fall due: at the ack deadline after they were
//! handed out, or after a nack's delay (a timer task per member). A delivery held for a
//! nack's delay still counts against the member's prefetch until it is given back.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{Channel, Connection, Consumer};
use parking_lot::Mutex;
use pubsub_core::adapter::{GroupEntry, Receipt, Tasks};
use pubsub_core::{Error, ErrorKind, GroupConfig, Offset, Result};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::layout::{deliveries_of, message_of};
use crate::driver::lapin_error;

/// How long the timer sleeps when nothing is due.
const IDLE_TICK: Duration = Duration::from_secs(1);

/// How a settlement reaches a member: `Ack(tag)`, or `Nack(tag, delay)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settle {
    /// Acknowledge the delivery of this tag.
    Ack(u64),
    /// Give the delivery of this tag back after the delay.
    Nack(u64, Duration),
}

/// One member's channel, consumer and unsettled deliveries.
pub(crate) struct Member {
    /// The member's name (the receipts' token, and the consumer tag).
    pub name: Arc<str>,
    /// Tells this member's channel from an earlier one of the same member (after a
    /// reconnect): a receipt of another incarnation is moot (its channel closed, so the
    /// broker gave its delivery back).
    pub incarnation: u64,
    queue: ShortString,
    channel: Channel,
    consumer: tokio::sync::Mutex<Consumer>,
    /// Deliveries handed out and not settled, by delivery tag: when each is given back.
    held: Mutex<BTreeMap<u64, Instant>>,
    /// One batch of acks and nacks on the channel at a time: a `multiple` ack must not cover
    /// a delivery given back at the same moment.
    sending: tokio::sync::Mutex<()>,
    /// Wakes the timer when something falls due sooner, or the member closes.
    wake: Arc<Notify>,
    ack_deadline: Duration,
}

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Member")
            .field("name", &self.name)
            .field("incarnation", &self.incarnation)
            .field("queue", &self.queue)
            .field("held", &self.held.lock().len())
            .finish()
    }
}

impl Member {
    /// Opens `name`'s channel on `connection` with the member's prefetch, consumes `queue`,
    /// and starts the member's timer on `tasks`.
    pub(crate) async fn open(
        connection: &Connection,
        queue: &ShortString,
        group: &GroupConfig,
        name: &str,
        tasks: &Tasks,
    ) -> lapin::Result<Arc<Member>> {
        static INCARNATIONS: AtomicU64 = AtomicU64::new(1);
        let channel = connection.create_channel().await?;
        let prefetch = u16::try_from(group.prefetch()).unwrap_or(u16::MAX);
        let opened = async {
            channel
                .basic_qos(prefetch, BasicQosOptions::default())
                .await?;
            channel
                .basic_consume(
                    queue.clone(),
                    name.into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
        };
        let consumer = match opened.await {
            Ok(consumer) => consumer,
            Err(error) => {
                let _ = channel.close(200, "OK".into()).await;
                return Err(error);
            }
        };
        let member = Arc::new(Member {
            name: name.into(),
            incarnation: INCARNATIONS.fetch_add(1, Ordering::Relaxed),
            queue: queue.clone(),
            channel,
            consumer: tokio::sync::Mutex::new(consumer),
            held: Mutex::new(BTreeMap::new()),
            sending: tokio::sync::Mutex::new(()),
            wake: Arc::new(Notify::new()),
            ack_deadline: group.ack_deadline(),
        });
        tasks.spawn(give_back_when_due(
            Arc::downgrade(&member),
            member.wake.clone(),
        ));
        Ok(member)
    }

    /// Whether the member's channel is open (closed with its connection, or by the broker).
    pub(crate) fn is_open(&self) -> bool {
        self.channel.status().connected()
    }

    /// Up to `limit` deliveries, waiting up to `wait` for the first; each is held until it is
    /// settled or falls due at the ack deadline.
    pub(crate) async fn read(&self, limit: usize, wait: Duration) -> Result<Vec<GroupEntry>> {
        let mut consumer = self.consumer.lock().await;
        let mut entries = Vec::new();
        let mut junk = Vec::new();
        let first = match tokio::time::timeout(wait, consumer.next()).await {
            Err(_) => return Ok(entries),
            Ok(first) => first,
        };
        let mut next = Some(first);
        while let Some(delivery) = next.take() {
            match delivery {
                Some(Ok(delivery)) => match self.entry(delivery) {
                    Ok(entry) => entries.push(entry),
                    Err(tag) => junk.push(tag),
                },
                Some(Err(error)) if entries.is_empty() => {
                    drop(consumer);
                    self.close().await;
                    return Err(lapin_error("reading the group's queue", error));
                }
                None if entries.is_empty() => {
                    // Cancelled by the broker (the queue deleted), or its channel closed:
                    // closed, so that the next read opens the member again.
                    drop(consumer);
                    self.close().await;
                    return Err(Error::new(
                        ErrorKind::Connection,
                        "the group queue's consumer ended",
                    ));
                }
                // What is read is handed out; the failure shows on the next read.
                _ => break,
            }
            if entries.len() < limit {
                next = consumer.next().now_or_never();
            }
        }
        drop(consumer);
        let due = Instant::now() + self.ack_deadline;
        self.held
            .lock()
            .extend(entries.iter().map(|e| (e.receipt.offset.1, due)));
        if !junk.is_empty() {
            // Not a message of ours (its routing key is no topic): acknowledged unseen.
            let _one = self.sending.lock().await;
            for tag in junk {
                self.channel
                    .basic_ack(tag, BasicAckOptions::default())
                    .await
                    .map_err(|e| lapin_error("acknowledging a delivery", e))?;
            }
        }
        Ok(entries)
    }

    /// The entry of a delivery, or its tag when it carries no message.
    fn entry(&self, delivery: Delivery) -> std::result::Result<GroupEntry, u64> {
        let tag = delivery.delivery_tag;
        let Some(message) = message_of(&delivery, &self.queue) else {
            tracing::trace!(key = %delivery.routing_key, "ignoring a group delivery that is not a message");
            return Err(tag);
        };
        Ok(GroupEntry {
            receipt: Receipt {
                offset: Offset(self.incarnation, tag),
                token: Some(self.name.clone()),
            },
            deliveries: deliveries_of(&delivery),
            message,
        })
    }

    /// Carries out settlements of this member's deliveries: acks (one `multiple` ack for as
    /// many as allow), nacks without delay at once; a nack with a delay holds the delivery
    /// until then. A delivery not held (settled already, or given back) is skipped.
    pub(crate) async fn settle(&self, settlements: &[Settle]) -> Result<()> {
        let _one = self.sending.lock().await;
        let now = Instant::now();
        let (mut acks, mut nacks, mut later) = (Vec::new(), Vec::new(), false);
        let plan = {
            let mut held = self.held.lock();
            for settle in settlements {
                match *settle {
                    Settle::Ack(tag) => {
                        if held.remove(&tag).is_some() {
                            acks.push(tag);
                        }
                    }
                    Settle::Nack(tag, delay) if delay.is_zero() => {
                        if held.remove(&tag).is_some() {
                            nacks.push(tag);
                        }
                    }
                    Settle::Nack(tag, delay) => {
                        if let Some(due) = held.get_mut(&tag) {
                            *due = now + delay;
                            later = true;
                        }
                    }
                }
            }
            ack_plan(acks, held.keys().next().copied())
        };
        let fail = |e| lapin_error("settling group deliveries", e);
        // Given back before the acks, so that a `multiple` ack cannot cover them.
        for tag in nacks {
            self.channel
                .basic_nack(tag, requeue())
                .await
                .map_err(fail)?;
        }
        if let Some(tag) = plan.multiple {
            self.channel
                .basic_ack(tag, BasicAckOptions { multiple: true })
                .await
                .map_err(fail)?;
        }
        for tag in plan.single {
            self.channel
                .basic_ack(tag, BasicAckOptions::default())
                .await
                .map_err(fail)?;
        }
        if later {
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Gives back what fell due; says when the next falls due.
    async fn give_back_due(&self) -> lapin::Result<Option<Instant>> {
        let _one = self.sending.lock().await;
        let now = Instant::now();
        let due: Vec<u64> = {
            let mut held = self.held.lock();
            let due: Vec<u64> = held
                .iter()
                .filter(|(_, at)| **at <= now)
                .map(|(tag, _)| *tag)
                .collect();
            for tag in &due {
                held.remove(tag);
            }
            due
        };
        if !due.is_empty() {
            tracing::debug!(member = %self.name, count = due.len(), "giving back group deliveries that fell due");
        }
        for tag in due {
            self.channel.basic_nack(tag, requeue()).await?;
        }
        Ok(self.held.lock().values().min().copied())
    }

    /// Closes the member's channel: the broker gives back at once what it held.
    pub(crate) async fn close(&self) {
        if self.channel.status().connected() {
            if let Err(error) = self.channel.close(200, "OK".into()).await {
                tracing::debug!(%error, member = %self.name, "closing a group member's channel failed");
            }
        }
        self.wake.notify_one();
    }
}

fn requeue() -> BasicNackOptions {
    BasicNackOptions {
        multiple: false,
        requeue: true,
    }
}

/// The member's timer: gives back deliveries as they fall due, until the member is gone.
async fn give_back_when_due(member: Weak<Member>, wake: Arc<Notify>) {
    loop {
        let next = {
            let Some(member) = member.upgrade() else {
                return;
            };
            if !member.is_open() {
                return;
            }
            match member.give_back_due().await {
                Ok(next) => next,
                Err(error) => {
                    tracing::debug!(%error, member = %member.name, "giving back group deliveries failed");
                    return;
                }
            }
        };
        let until = next.unwrap_or_else(|| Instant::now() + IDLE_TICK);
        tokio::select! {
            () = tokio::time::sleep_until(until) => {}
            () = wake.notified() => {}
        }
    }
}

/// How to acknowledge a batch on a channel.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct AckPlan {
    /// One `multiple` ack of this tag.
    pub multiple: Option<u64>,
    /// Then one ack each.
    pub single: Vec<u64>,
}

/// Acknowledges `acked` (tags no longer held) with one `multiple` ack for those below the
/// lowest tag still held (`lowest_held`), one ack each for the rest. Tags below the lowest
/// held and not acked here were settled before (no longer unacknowledged at the broker), and
/// deliveries not handed out yet have higher tags than any handed out: a `multiple` ack below
/// `lowest_held` acknowledges only what is meant.
pub(crate) fn ack_plan(mut acked: Vec<u64>, lowest_held: Option<u64>) -> AckPlan {
    acked.sort_unstable();
    acked.dedup();
    let bound = lowest_held.unwrap_or(u64::MAX);
    let below = acked.partition_point(|tag| *tag < bound);
    let single = acked.split_off(below);
    match acked.len() {
        0 => AckPlan {
            multiple: None,
            single,
        },
        1 => AckPlan {
            multiple: None,
            single: acked.into_iter().chain(single).collect(),
        },
        _ => AckPlan {
            multiple: acked.last().copied(),
            single,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_go_in_one_multiple_where_nothing_held_is_below() {
        assert_eq!(ack_plan(vec![], Some(3)), AckPlan::default());
        assert_eq!(
            ack_plan(vec![3, 1, 2], None),
            AckPlan {
                multiple: Some(3),
                single: vec![]
            }
        );
        // 4 is still held: 1 and 2 in one, 5 and 7 one by one.
        assert_eq!(
            ack_plan(vec![7, 1, 5, 2], Some(4)),
            AckPlan {
                multiple: Some(2),
                single: vec![5, 7]
            }
        );
        // A lone ack below is a plain one.
        assert_eq!(
            ack_plan(vec![1, 9, 1], Some(4)),
            AckPlan {
                multiple: None,
                single: vec![1, 9]
            }
        );
        assert_eq!(
            ack_plan(vec![5, 6], Some(1)),
            AckPlan {
                multiple: None,
                single: vec![5, 6]
            }
        );
    }
}
