//! What a subscription yields when read as deliveries: messages, and [`Gap`]s where messages
//! were lost, so that loss is never silent.

use std::time::SystemTime;

use crate::Message;

/// One item of [`Subscription::deliveries`](crate::Subscription::deliveries).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Delivery {
    /// A message.
    Message(Message),
    /// Messages were lost here. A realtime server tells its client to resync.
    Gap(Gap),
}

/// Where messages were lost, and how many.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum Gap {
    /// Messages were dropped here: exactly `count` by the overflow policy when the buffer was
    /// full, or by the broker for this subscription's topics where it says so. When a client
    /// library fell behind before its messages were routed (their topics unknown), every
    /// subscription of the handle gets one with the handle's loss: at most `count` were its
    /// own.
    Dropped {
        /// How many.
        count: u64,
    },
    /// The connection to the broker was down from `since` to `until`: what was published in
    /// between may be lost (how much is unknown).
    ///
    /// It stands right before the first message that arrived after the loss. When messages
    /// arrived before the client reported the reconnect (they may have left the broker before
    /// the cut), another one stands before the first message after the reconnect; a
    /// subscription to several patterns gets one more when the handle is up again, since its
    /// filters come back one by one. So every hole has a gap since the message before it.
    Outage {
        /// When the connection was lost.
        since: SystemTime,
        /// When messages flowed again (or when the handle was up again, if none came first).
        until: SystemTime,
    },
    /// A subscription under a [stream](crate::StreamConfig) asked for messages its stream no
    /// longer holds: they were trimmed (past `max_len`) or expired (past `max_age`), or the
    /// stream's log was lost and re-created (`reset`). The oldest message still held follows.
    History {
        /// How many messages are missing, when the broker can tell.
        missed: Option<u64>,
        /// The log was lost and re-created (a flushed Redis, a deleted JetStream stream, a new
        /// memory bus): the position resumed from belongs to the old log, and the
        /// subscription continues from the start of the new one.
        reset: bool,
    },
}

/// What a subscription does when its buffer is full and another message arrives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum Overflow {
    /// Drop the oldest buffered message (the default): a reader sees the newest messages.
    #[default]
    DropOldest,
    /// Drop the arriving message: a reader sees the first messages.
    DropNewest,
    /// End the subscription ([`EndReason::Overflow`]): what was buffered can still be read.
    Close,
}

impl Overflow {
    /// Reads `drop_oldest`, `drop_newest` or `close` (URL query values).
    pub fn parse(text: &str) -> Option<Overflow> {
        match text {
            "drop_oldest" => Some(Overflow::DropOldest),
            "drop_newest" => Some(Overflow::DropNewest),
            "close" => Some(Overflow::Close),
            _ => None,
        }
    }
}

/// Why a subscription's stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum EndReason {
    /// The handle was closed (or dropped).
    Closed,
    /// The subscription was unsubscribed.
    Unsubscribed,
    /// The buffer overflowed under [`Overflow::Close`]: the reader was too slow.
    Overflow,
    /// The broker refused one of the subscription's filters after the subscribe resolved, or
    /// withdrew it: a permission revoked while it was live (a NATS configuration reload), or
    /// refused when it was restored after a reconnect. Nothing more would arrive; what was
    /// buffered can still be read, and the handle logs the broker's words. Subscribing again
    /// fails with [`ErrorKind::Auth`](crate::ErrorKind::Auth) while the refusal stands.
    Refused,
}
