//! [`Table`]: what one member that owns its stream's partition has handed out and not
//! settled, where it reads next, and what it commits.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pubsub_core::adapter::{GroupEntry, Receipt, Settlement};
use pubsub_core::{Message, Offset};

/// A member's deliveries while it owns the partition.
#[derive(Debug)]
pub(crate) struct Table {
    /// Settles this member's deliveries (its name): carried in every receipt.
    token: Arc<str>,
    /// Deliveries not settled yet, by Kafka offset.
    pending: BTreeMap<i64, Pending>,
    /// The offset of the next record the consumer has not delivered yet.
    next: i64,
    /// The highest offset delivered by the members before this one (from the commit's
    /// metadata): a record at or below it was delivered once already.
    earlier: Option<i64>,
    /// The highest offset delivered so far, by any member.
    delivered: Option<i64>,
    /// The last commit asked for.
    committed: Option<i64>,
    /// The highest delivered offset last written to the ledger.
    marked: Option<i64>,
}

/// A delivery not settled yet.
#[derive(Debug, Clone)]
struct Pending {
    /// When it is due again (the ack deadline, or a nack's delay).
    due: Instant,
    deliveries: u32,
    message: Message,
}

impl Table {
    /// A member that owns the partition from the committed offset `next`, after the
    /// earlier members delivered up to `earlier`.
    pub(crate) fn resume(token: Arc<str>, next: i64, earlier: Option<i64>) -> Table {
        Table {
            token,
            pending: BTreeMap::new(),
            next,
            earlier,
            delivered: earlier,
            committed: Some(next),
            marked: earlier,
        }
    }

    /// At most `limit` deliveries due again by `now` (each counted once more and held for
    /// `deadline` again).
    pub(crate) fn due(
        &mut self,
        limit: usize,
        now: Instant,
        deadline: Duration,
    ) -> Vec<GroupEntry> {
        let mut out = Vec::new();
        for (&offset, pending) in self.pending.iter_mut() {
            if out.len() >= limit {
                break;
            }
            if pending.due > now {
                continue;
            }
            pending.deliveries = pending.deliveries.saturating_add(1);
            pending.due = now + deadline;
            out.push(entry(
                &self.token,
                offset,
                &pending.message,
                pending.deliveries,
            ));
        }
        out
    }

    /// The record at `offset` read from the consumer: its first delivery by this member
    /// (`None` when it was read before: a fetch that overlaps). `message` is `None` for a
    /// record that is not a message of the stream: skipped, and committed past.
    pub(crate) fn take(
        &mut self,
        offset: i64,
        message: Option<Message>,
        now: Instant,
        deadline: Duration,
    ) -> Option<GroupEntry> {
        if offset < self.next {
            return None;
        }
        self.next = offset + 1;
        let message = message?;
        let deliveries = if self.earlier.is_some_and(|e| offset <= e) {
            2
        } else {
            1
        };
        self.delivered = Some(self.delivered.map_or(offset, |d| d.max(offset)));
        let entry = entry(&self.token, offset, &message, deliveries);
        self.pending.insert(
            offset,
            Pending {
                due: now + deadline,
                deliveries,
                message,
            },
        );
        Some(entry)
    }

    /// Carries out one settlement of this member's.
    pub(crate) fn settle(&mut self, settlement: &Settlement, now: Instant) {
        let Ok(offset) = i64::try_from(settlement.receipt().offset.1) else {
            return;
        };
        match settlement {
            Settlement::Ack(_) => {
                self.pending.remove(&offset);
            }
            Settlement::Nack(_, delay) => {
                if let Some(pending) = self.pending.get_mut(&offset) {
                    pending.due = now + *delay;
                }
            }
        }
    }

    /// When the next pending delivery falls due.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.pending.values().map(|p| p.due).min()
    }

    /// What to commit: the lowest unsettled offset (or the next to read when nothing is
    /// unsettled); `None` when that was asked for already.
    pub(crate) fn take_commit(&mut self) -> Option<i64> {
        let offset = self.last_commit();
        if self.committed == Some(offset) {
            return None;
        }
        self.committed = Some(offset);
        Some(offset)
    }

    /// The commit to make on leaving, whether asked for already or not.
    pub(crate) fn last_commit(&self) -> i64 {
        self.pending.keys().next().copied().unwrap_or(self.next)
    }

    /// The highest offset delivered, when it is higher than the one last written to the
    /// ledger (and is taken as written).
    pub(crate) fn take_mark(&mut self) -> Option<i64> {
        if self.delivered == self.marked {
            return None;
        }
        self.marked = self.delivered;
        self.delivered
    }
}

fn entry(token: &Arc<str>, offset: i64, message: &Message, deliveries: u32) -> GroupEntry {
    GroupEntry {
        receipt: Receipt {
            offset: Offset(0, u64::try_from(offset).unwrap_or(0)),
            token: Some(token.clone()),
        },
        message: message.clone(),
        deliveries,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEADLINE: Duration = Duration::from_secs(10);

    fn message(i: u8) -> Option<Message> {
        Some(Message::new("s.a".parse().unwrap(), vec![i]))
    }

    fn offsets(entries: &[GroupEntry]) -> Vec<(u64, u32)> {
        entries
            .iter()
            .map(|e| (e.receipt.offset.1, e.deliveries))
            .collect()
    }

    #[test]
    fn hands_out_once_until_due_and_commits_below_the_unsettled() {
        let now = Instant::now();
        let mut t = Table::resume("m".into(), 5, None);
        assert_eq!(t.take_commit(), None, "the resumed commit is known");
        let a = t.take(5, message(1), now, DEADLINE).unwrap();
        let b = t.take(6, message(2), now, DEADLINE).unwrap();
        assert!(t.take(6, message(2), now, DEADLINE).is_none(), "read twice");
        assert!(t.take(7, None, now, DEADLINE).is_none(), "not a message");
        assert_eq!(t.take_commit(), None, "still at the first unsettled");
        assert_eq!(t.take_mark(), Some(6));
        assert_eq!(t.take_mark(), None);
        assert!(t.due(10, now, DEADLINE).is_empty());
        t.settle(&Settlement::Ack(a.receipt.clone()), now);
        assert_eq!(t.take_commit(), Some(6));
        t.settle(&Settlement::Nack(b.receipt.clone(), Duration::ZERO), now);
        assert_eq!(offsets(&t.due(10, now, DEADLINE)), [(6, 2)]);
        assert_eq!(
            offsets(&t.due(10, now + DEADLINE, DEADLINE)),
            [(6, 3)],
            "held past the deadline"
        );
        t.settle(&Settlement::Ack(b.receipt), now);
        assert_eq!(t.take_commit(), Some(8), "past the skipped record");
        assert_eq!(t.last_commit(), 8);
        assert_eq!(t.next_due(), None);
    }

    #[test]
    fn counts_what_earlier_members_delivered() {
        let now = Instant::now();
        let mut t = Table::resume("m".into(), 0, Some(1));
        let got: Vec<u32> = (0..3)
            .map(|i| t.take(i, message(0), now, DEADLINE).unwrap().deliveries)
            .collect();
        assert_eq!(got, [2, 2, 1]);
        assert_eq!(t.take_commit(), None, "nothing settled");
        assert_eq!(t.take_mark(), Some(2));
    }
}
