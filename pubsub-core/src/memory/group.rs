//! [`GroupState`]: one group of a memory stream: where it is in the log and what its members
//! hold unsettled.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use super::ring::Ring;
use crate::adapter::{GroupEntry, Receipt, Settlement};
use crate::{GroupConfig, Offset, StartAt};

/// A group of a memory stream.
#[derive(Debug)]
pub(super) struct GroupState {
    pub config: GroupConfig,
    /// The number of the next entry no member has had yet.
    next: u64,
    /// Deliveries not settled yet, by entry number.
    pending: BTreeMap<u64, Pending>,
}

/// A delivery not settled yet.
#[derive(Debug, Clone, Copy)]
struct Pending {
    /// When it is due again (the ack deadline, or a nack's delay).
    due: Instant,
    deliveries: u32,
}

impl GroupState {
    /// A new group on `ring`, starting where its config says.
    pub fn new(config: GroupConfig, ring: &mut Ring) -> Self {
        let next = match config.start() {
            StartAt::Start => ring.first_seq(),
            StartAt::After(position) if position.epoch() == ring.epoch() => {
                position.offset().1.saturating_add(1)
            }
            // A position of an earlier log: everything this log holds comes after it.
            StartAt::After(_) => ring.first_seq(),
            _ => ring.next_seq(),
        };
        GroupState {
            config,
            next,
            pending: BTreeMap::new(),
        }
    }

    /// At most `limit` deliveries: first those due again, then new entries. Also says when
    /// the next pending delivery falls due.
    pub fn read(
        &mut self,
        ring: &mut Ring,
        limit: usize,
        now: Instant,
    ) -> (Vec<GroupEntry>, Option<Instant>) {
        let deadline = self.config.ack_deadline();
        let mut out = Vec::new();
        let mut trimmed = Vec::new();
        for (&seq, pending) in self.pending.iter_mut() {
            if out.len() >= limit {
                break;
            }
            if pending.due > now {
                continue;
            }
            let Some(message) = ring.get(seq) else {
                // Trimmed by the stream's limits before it was settled.
                trimmed.push(seq);
                continue;
            };
            pending.deliveries = pending.deliveries.saturating_add(1);
            pending.due = now + deadline;
            out.push(entry(seq, message.clone(), pending.deliveries));
        }
        for seq in trimmed {
            self.pending.remove(&seq);
        }
        // What the stream trimmed before any member had it is gone for the group too.
        self.next = self.next.max(ring.first_seq());
        while out.len() < limit && self.next < ring.next_seq() {
            let seq = self.next;
            self.next += 1;
            if let Some(message) = ring.get(seq) {
                self.pending.insert(
                    seq,
                    Pending {
                        due: now + deadline,
                        deliveries: 1,
                    },
                );
                out.push(entry(seq, message.clone(), 1));
            }
        }
        let next_due = self.pending.values().map(|p| p.due).min();
        (out, next_due)
    }

    /// Carries out one settlement; true when it makes a delivery due now.
    pub fn settle(&mut self, settlement: &Settlement, now: Instant) -> bool {
        let seq = settlement.receipt().offset.1;
        match settlement {
            Settlement::Ack(_) => {
                self.pending.remove(&seq);
                false
            }
            Settlement::Nack(_, delay) => match self.pending.get_mut(&seq) {
                Some(pending) => {
                    pending.due = now + *delay;
                    *delay == Duration::ZERO
                }
                None => false,
            },
        }
    }
}

fn entry(seq: u64, message: crate::Message, deliveries: u32) -> GroupEntry {
    GroupEntry {
        receipt: Receipt::at(Offset(0, seq)),
        message,
        deliveries,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Message, StreamConfig};

    fn ring_of(n: u8) -> Ring {
        let mut ring = Ring::new(StreamConfig::new("s.>".parse().unwrap()));
        for i in 1..=n {
            ring.append(Message::new("s.a".parse().unwrap(), vec![i]));
        }
        ring
    }

    fn group(start: StartAt) -> GroupConfig {
        GroupConfig::new("g", vec!["s.>".parse().unwrap()])
            .unwrap()
            .starting_at(start)
            .with_ack_deadline(Duration::from_secs(10))
    }

    #[test]
    fn hands_out_each_entry_once_until_due_again() {
        let mut ring = ring_of(3);
        let mut g = GroupState::new(group(StartAt::Start), &mut ring);
        let now = Instant::now();
        let (first, _) = g.read(&mut ring, 2, now);
        let (second, _) = g.read(&mut ring, 10, now);
        let seqs: Vec<u64> = first
            .iter()
            .chain(&second)
            .map(|e| e.receipt.offset.1)
            .collect();
        assert_eq!(seqs, [1, 2, 3]);
        assert!(g.read(&mut ring, 10, now).0.is_empty());
        // Acked stays settled; nacked comes back; the rest after the deadline.
        g.settle(&Settlement::Ack(first[0].receipt.clone()), now);
        assert!(g.settle(
            &Settlement::Nack(first[1].receipt.clone(), Duration::ZERO),
            now
        ));
        let (again, _) = g.read(&mut ring, 10, now);
        assert_eq!(again.len(), 1);
        assert_eq!((again[0].receipt.offset.1, again[0].deliveries), (2, 2));
        let later = now + Duration::from_secs(11);
        let (late, _) = g.read(&mut ring, 10, later);
        let seqs: Vec<u64> = late.iter().map(|e| e.receipt.offset.1).collect();
        assert_eq!(seqs, [2, 3]);
    }

    #[test]
    fn starts_at_the_end_or_after_a_position() {
        let mut ring = ring_of(3);
        let mut now_group = GroupState::new(group(StartAt::Now), &mut ring);
        assert!(now_group.read(&mut ring, 10, Instant::now()).0.is_empty());
        let position = *ring.get(2).unwrap().position().unwrap();
        let mut after = GroupState::new(group(StartAt::After(position)), &mut ring);
        let (got, _) = after.read(&mut ring, 10, Instant::now());
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].receipt.offset.1, 3);
    }
}
