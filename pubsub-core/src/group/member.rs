//! One member's share of a group: [`GroupSubscription`], a stream of [`GroupMessage`]s, each
//! settled once (acknowledged, negatively acknowledged, or left to its ack deadline).

use std::fmt;
use std::future::IntoFuture;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::Stream;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::adapter::group_log::Receipt;
use crate::{EndReason, Error, Message, Result};

/// How a delivery is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settle {
    /// Done: never delivered again.
    Ack,
    /// Deliver again, to any member, after this delay.
    Nack(Duration),
}

/// What a member's settler task is asked to do.
pub(crate) enum SettleRequest {
    /// Settle one delivery; `done` is told once the broker took it.
    One {
        receipt: Receipt,
        settle: Settle,
        done: oneshot::Sender<Result<()>>,
    },
    /// Tell `done` once every request sent before this one was carried out.
    Flush(oneshot::Sender<()>),
}

/// One delivery of a group: the message (read it through `Deref` or [`GroupMessage::message`]),
/// how many times it was delivered, and the way to settle it.
///
/// Settle it with [`GroupMessage::ack`] (done) or [`GroupMessage::nack`] (deliver again later).
/// Dropped unsettled, it is left to its ack deadline: delivered again, to any member, once the
/// deadline passed.
pub struct GroupMessage {
    message: Message,
    deliveries: u32,
    receipt: Option<Receipt>,
    settler: mpsc::UnboundedSender<SettleRequest>,
}

impl GroupMessage {
    pub(crate) fn new(
        message: Message,
        deliveries: u32,
        receipt: Receipt,
        settler: mpsc::UnboundedSender<SettleRequest>,
    ) -> Self {
        GroupMessage {
            message,
            deliveries,
            receipt: Some(receipt),
            settler,
        }
    }

    /// The message.
    pub fn message(&self) -> &Message {
        &self.message
    }

    /// How many times it has been delivered, this delivery included (1 the first time).
    pub fn deliveries(&self) -> u32 {
        self.deliveries
    }

    /// Acknowledges it: the group never delivers it again. The acknowledgement is sent at once
    /// (in a batch with others); await the returned [`Settled`] to know the broker took it,
    /// or drop it.
    pub fn ack(mut self) -> Settled {
        self.settle(Settle::Ack)
    }

    /// Negatively acknowledges it: the group delivers it again, to any member, after `delay`
    /// (or sends it to the dead-letter topic once it had its maximum deliveries).
    pub fn nack(mut self, delay: Duration) -> Settled {
        self.settle(Settle::Nack(delay))
    }

    fn settle(&mut self, settle: Settle) -> Settled {
        let Some(receipt) = self.receipt.take() else {
            return Settled::ready(Ok(()));
        };
        let (done, wait) = oneshot::channel();
        let request = SettleRequest::One {
            receipt,
            settle,
            done,
        };
        match self.settler.send(request) {
            Ok(()) => Settled {
                wait: Some(wait),
                ready: None,
            },
            Err(_) => Settled::ready(Err(Error::closed())),
        }
    }

    /// Splits off the message, leaving the delivery unsettled (it is delivered again after
    /// the ack deadline).
    pub fn into_message(self) -> Message {
        self.message
    }
}

impl Deref for GroupMessage {
    type Target = Message;

    fn deref(&self) -> &Message {
        &self.message
    }
}

impl fmt::Debug for GroupMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupMessage")
            .field("message", &self.message)
            .field("deliveries", &self.deliveries)
            .field("settled", &self.receipt.is_none())
            .finish()
    }
}

/// The outcome of an [`ack`](GroupMessage::ack) or [`nack`](GroupMessage::nack). The
/// settlement is sent when it is made; `.await` this to learn whether the broker took it (an
/// error means the message is delivered again after its ack deadline), or drop it.
#[derive(Debug)]
pub struct Settled {
    wait: Option<oneshot::Receiver<Result<()>>>,
    ready: Option<Result<()>>,
}

impl Settled {
    fn ready(result: Result<()>) -> Self {
        Settled {
            wait: None,
            ready: Some(result),
        }
    }
}

impl IntoFuture for Settled {
    type Output = Result<()>;
    type IntoFuture = BoxFuture<'static, Result<()>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            if let Some(result) = self.ready {
                return result;
            }
            match self.wait {
                Some(wait) => wait.await.unwrap_or_else(|_| Err(Error::closed())),
                None => Ok(()),
            }
        })
    }
}

/// What the member's tasks share with its [`GroupSubscription`].
#[derive(Debug, Default)]
pub(crate) struct MemberState {
    pub end: Mutex<Option<EndReason>>,
}

/// One member of a group: the messages given to it, as a [`Stream`] of [`GroupMessage`]s.
///
/// It holds at most the group's prefetch unsettled (read no more until some are settled).
/// Dropping it leaves the group at once, as a crashed member would: what it held unsettled is
/// delivered again after the ack deadline. [`GroupSubscription::leave`] leaves gracefully: what
/// it read but did not hand out yet goes back to the group at once, and every settlement made
/// so far reaches the broker first. The stream ends (`None`) when the handle is closed.
pub struct GroupSubscription {
    messages: mpsc::Receiver<GroupMessage>,
    settler: mpsc::UnboundedSender<SettleRequest>,
    stop_reading: CancellationToken,
    state: Arc<MemberState>,
    name: String,
}

impl GroupSubscription {
    pub(crate) fn new(
        messages: mpsc::Receiver<GroupMessage>,
        settler: mpsc::UnboundedSender<SettleRequest>,
        stop_reading: CancellationToken,
        state: Arc<MemberState>,
        name: String,
    ) -> Self {
        GroupSubscription {
            messages,
            settler,
            stop_reading,
            state,
            name,
        }
    }

    /// The next message; `None` once the member's stream ended.
    pub async fn recv(&mut self) -> Option<GroupMessage> {
        futures::StreamExt::next(self).await
    }

    /// This member's name in the group (unique per member).
    pub fn member(&self) -> &str {
        &self.name
    }

    /// Why the stream ended, once it has.
    pub fn end_reason(&self) -> Option<EndReason> {
        *self.state.end.lock()
    }

    /// Leaves the group gracefully: reads nothing more, gives back (negatively acknowledges
    /// without delay) what was read but not yet handed out, and waits until every settlement
    /// made so far through this member reached the broker. Messages handed out before can
    /// still be settled afterwards.
    pub async fn leave(mut self) -> Result<()> {
        self.stop_reading.cancel();
        self.messages.close();
        let mut waits = Vec::new();
        while let Some(message) = self.messages.recv().await {
            waits.push(message.nack(Duration::ZERO));
        }
        // The settler takes requests in order: the flush is answered after every one before.
        let (done, flushed) = oneshot::channel();
        if self.settler.send(SettleRequest::Flush(done)).is_ok() {
            let _ = flushed.await;
        }
        let mut result = Ok(());
        for wait in waits {
            if let Err(error) = wait.await {
                result = Err(error);
            }
        }
        result
    }
}

impl Stream for GroupSubscription {
    type Item = GroupMessage;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<GroupMessage>> {
        self.messages.poll_recv(cx)
    }
}

impl Drop for GroupSubscription {
    fn drop(&mut self) {
        self.stop_reading.cancel();
    }
}

impl fmt::Debug for GroupSubscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupSubscription")
            .field("member", &self.name)
            .field("buffered", &self.messages.len())
            .field("end", &self.end_reason())
            .finish()
    }
}
