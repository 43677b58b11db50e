//! What a driver gives and takes for groups: the deliveries it reads ([`GroupEntry`], each
//! with its [`Receipt`]) and the settlements it carries out ([`Settlement`]).
//!
//! The kit does the rest (`hub/group.rs`): it reads for a member as far as the member's
//! prefetch allows, hands the deliveries out, sends those past the group's maximum deliveries
//! to the dead-letter topic, acknowledges those the group's patterns do not match, and batches
//! the members' settlements.

use std::sync::Arc;
use std::time::Duration;

use crate::{Message, Offset};

/// What a driver needs to settle one delivery later: the entry's offset in the log, and
/// broker data where the offset is not enough (a reply subject, a delivery tag, a partition).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Receipt {
    /// The entry's offset in the stream's log (its id, sequence or offset).
    pub offset: Offset,
    /// Broker data of this delivery, if any.
    pub token: Option<Arc<str>>,
}

impl Receipt {
    /// A receipt that is only the entry's offset.
    pub fn at(offset: Offset) -> Self {
        Receipt {
            offset,
            token: None,
        }
    }
}

/// One delivery read for a member.
#[derive(Debug, Clone)]
pub struct GroupEntry {
    /// How to settle it.
    pub receipt: Receipt,
    /// The message (with its position where the driver knows it).
    pub message: Message,
    /// How many times it has been delivered, this delivery included.
    pub deliveries: u32,
}

/// One settlement for [`Driver::settle_group`](crate::adapter::Driver::settle_group).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// Done: never deliver it again.
    Ack(Receipt),
    /// Deliver it again, to any member, after the delay.
    Nack(Receipt, Duration),
}

impl Settlement {
    /// The delivery settled.
    pub fn receipt(&self) -> &Receipt {
        match self {
            Settlement::Ack(receipt) | Settlement::Nack(receipt, _) => receipt,
        }
    }
}
