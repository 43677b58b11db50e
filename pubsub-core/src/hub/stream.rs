//! Subscriptions under a stream: replay from a position, then live, without a duplicate or a
//! hole at the switch; resumed from the last position after an outage or a loss.
//!
//! A stream subscription is an ordinary live subscription (its routes in the router) read by
//! one task, the [`Follower`], which feeds the subscription's own queue:
//!
//! 1. The live subscription is made first, so everything published from then on is buffered
//!    in it, each message with its position.
//! 2. *Replay*: the follower reads the log in batches after the last position it delivered
//!    (or from where the subscription begins), until a batch comes back short: the end.
//! 3. *Live*: it takes the buffered and arriving messages, skipping those at or before the last
//!    position (the replay gave them already).
//! 4. Any loss on the live path (a `Gap` in it: an outage, an overflow, a client library's
//!    drop) or the handle going down sends it back to 2, from the last position: what the
//!    stream still holds is given back, and only what it no longer holds is a gap
//!    ([`Gap::History`]).
//!
//! The follower waits for room in the subscription's queue instead of dropping (the history
//! is at the broker), so a slow reader never loses what the stream holds; the live buffer may
//! overflow meanwhile, which only sends the follower back to the log.

use std::sync::Arc;

use futures::future::BoxFuture;
use smallvec::SmallVec;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::adapter::driver::Driver;
use crate::adapter::stream_log::ReadFrom;
use crate::adapter::supervisor::Supervisor;
use crate::hub::shared_reads::SharedReads;
use crate::router::{Queue, Route, ORIGIN_HEADER};
use crate::subscription::Owner;
use crate::{
    Backoff, ConnectionState, Delivery, EndReason, Error, ErrorKind, Gap, Message, Pattern,
    Position, Result, StartAt, StreamConfig, Subscription,
};

/// Entries read from the log per round trip.
pub(crate) const BATCH: usize = 512;

/// Where the follower reads next.
#[derive(Debug, Clone, Copy)]
enum Cursor {
    /// Not positioned yet: the first read starts here.
    From(ReadFrom),
    /// After the last message delivered (or the log's end when the subscription began).
    After(Position),
}

/// What the follower needs of the handle (not the handle itself: the task must not keep it
/// alive).
pub(crate) struct FollowerParts<D> {
    /// The handle's log reads (shared with its other followers).
    pub reads: Arc<SharedReads<D>>,
    pub supervisor: Supervisor,
    pub backoff: Backoff,
    /// This handle's origin, when the subscription skips its own messages.
    pub skip_origin: Option<String>,
}

/// Reads one stream subscription's log and live path into its queue.
pub(crate) struct Follower<D> {
    parts: FollowerParts<D>,
    stream: StreamConfig,
    tag: u32,
    patterns: Vec<Pattern>,
    queue: Arc<Queue>,
    live: Subscription,
    cursor: Cursor,
    cancel: CancellationToken,
}

/// Whether the follower goes on.
enum Next {
    Replay,
    End,
}

impl<D: Driver> Follower<D> {
    pub(crate) fn new(
        parts: FollowerParts<D>,
        stream: StreamConfig,
        start: (StartAt, u64, crate::Offset),
        queue: Arc<Queue>,
        live: Subscription,
        cancel: CancellationToken,
    ) -> Self {
        let tag = stream.tag();
        let (start, epoch, end) = start;
        let cursor = match start {
            StartAt::Start => Cursor::From(ReadFrom::Start),
            StartAt::After(position) => Cursor::After(position),
            StartAt::Last(n) => Cursor::From(ReadFrom::Last(n)),
            StartAt::Time(time) => Cursor::From(ReadFrom::Time(time)),
            // `Now` and anything newer: after the log's end when the subscription began.
            _ => Cursor::After(Position::new(tag, epoch, end)),
        };
        let patterns = live.patterns().cloned().collect();
        Follower {
            parts,
            stream,
            tag,
            patterns,
            queue,
            live,
            cursor,
            cancel,
        }
    }

    /// Runs until the subscription or the handle ends; the queue is closed whichever way it
    /// ends.
    pub(crate) async fn run(mut self) {
        let queue = self.queue.clone();
        let _closes = CloseOnDrop(queue);
        loop {
            if !self.replay().await {
                return;
            }
            match self.follow_live().await {
                Next::Replay => continue,
                Next::End => return,
            }
        }
    }

    /// Reads the log from the cursor to its end; false when the subscription ended.
    async fn replay(&mut self) -> bool {
        let mut attempt = 0u32;
        loop {
            if !self.wait_up().await {
                return false;
            }
            let from = match self.cursor {
                Cursor::From(from) => from,
                Cursor::After(position) => ReadFrom::After(position.offset()),
            };
            let read = self.parts.reads.read(&self.stream, from, BATCH);
            let read = tokio::select! {
                _ = self.cancel.cancelled() => return false,
                read = read => read,
            };
            let read = match read {
                Ok(read) => read,
                Err(error) => {
                    tracing::warn!(
                        backend = D::BACKEND,
                        stream = %self.stream.root(),
                        attempt,
                        %error,
                        "reading the stream's log failed; retrying"
                    );
                    let delay = self.parts.backoff.delay(attempt);
                    attempt = attempt.saturating_add(1);
                    tokio::select! {
                        _ = self.cancel.cancelled() => return false,
                        _ = tokio::time::sleep(delay) => continue,
                    }
                }
            };
            attempt = 0;
            if let Cursor::After(last) = self.cursor {
                if read.epoch != last.epoch() {
                    // The log was lost and re-created: what the position pointed into is gone.
                    self.queue.push_gap(Gap::History {
                        missed: None,
                        reset: true,
                    });
                    self.cursor = Cursor::From(ReadFrom::Start);
                    continue;
                }
            }
            if let Some(missed) = read.missed {
                self.queue.push_gap(Gap::History {
                    missed,
                    reset: false,
                });
            }
            let at_end = read.entries.len() < BATCH;
            for (offset, message) in &read.entries {
                let position = Position::new(self.tag, read.epoch, *offset);
                self.cursor = Cursor::After(position);
                if self.wanted(message)
                    && !self.deliver(message.clone().with_position(position)).await
                {
                    return false;
                }
            }
            if at_end {
                if let Cursor::From(_) = self.cursor {
                    // Nothing to replay: live from the end of the log as it was read.
                    self.cursor = Cursor::After(Position::new(self.tag, read.epoch, read.end));
                }
                return true;
            }
        }
    }

    /// Delivers what the live subscription brings after the cursor, until a loss (back to the
    /// log) or the end.
    async fn follow_live(&mut self) -> Next {
        let mut state: watch::Receiver<ConnectionState> = self.parts.supervisor.watch();
        loop {
            let delivery = tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return Next::End,
                changed = state.changed() => {
                    if changed.is_err() {
                        return Next::End;
                    }
                    let now = *state.borrow_and_update();
                    match now {
                        ConnectionState::Down { .. } => return Next::Replay,
                        _ => continue,
                    }
                }
                delivery = self.live.recv_delivery() => delivery,
            };
            if let Some(next) = self.take_live(delivery).await {
                return next;
            }
            // Whatever else is waiting, without a wake-up each.
            while let Some(delivery) = self.live.try_delivery() {
                if let Some(next) = self.take_live(Some(delivery)).await {
                    return next;
                }
            }
        }
    }

    /// Handles one delivery of the live subscription; `Some` when following live stops.
    async fn take_live(&mut self, delivery: Option<Delivery>) -> Option<Next> {
        let message = match delivery {
            None => {
                let reason = self.live.end_reason().unwrap_or(EndReason::Closed);
                self.queue.close(reason);
                return Some(Next::End);
            }
            // The live path lost something: the log has it.
            Some(Delivery::Gap(_)) => return Some(Next::Replay),
            Some(Delivery::Message(message)) => message,
        };
        let Some(&position) = message.position() else {
            // Published by a handle that did not append it (one that has not declared the
            // stream): not in the log, delivered as it came.
            if self.wanted(&message) && !self.deliver(message).await {
                return Some(Next::End);
            }
            return None;
        };
        let Cursor::After(last) = self.cursor else {
            return Some(Next::Replay);
        };
        if position.is_after(&last) {
            self.cursor = Cursor::After(position);
            if self.wanted(&message) && !self.deliver(message).await {
                return Some(Next::End);
            }
        } else if position.stream_tag() == self.tag && position.epoch() != last.epoch() {
            // A new log: the replay says so and starts it from its beginning.
            return Some(Next::Replay);
        }
        // Otherwise at or before the cursor: the replay delivered it already.
        None
    }

    /// Whether the subscription wants `message` (the replay reads every topic of the stream).
    fn wanted(&self, message: &Message) -> bool {
        if let Some(origin) = &self.parts.skip_origin {
            if message.headers().get(ORIGIN_HEADER) == Some(origin.as_str()) {
                return false;
            }
        }
        self.patterns.iter().any(|p| p.matches(message.topic()))
    }

    /// Waits for room in the queue, then pushes; false when the subscription ended.
    async fn deliver(&self, message: Message) -> bool {
        if self.queue.has_room() {
            self.queue.push(message);
            return true;
        }
        let room = tokio::select! {
            _ = self.cancel.cancelled() => false,
            room = self.queue.room() => room,
        };
        if room {
            self.queue.push(message);
        }
        room
    }

    /// Waits until the handle is up; false when the subscription ended.
    async fn wait_up(&self) -> bool {
        self.parts.supervisor.up_unless(&self.cancel).await
    }
}

/// Closes the subscription's queue when the follower stops, however it stops (the handle's
/// tasks cancelled, the subscription dropped): its reader sees the end, never a hang.
struct CloseOnDrop(Arc<Queue>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close(EndReason::Closed);
    }
}

/// The [`Owner`] of a stream subscription: leaving stops its follower, which drops the live
/// subscription (and with it the routes).
pub(crate) struct FollowerOwner {
    pub cancel: CancellationToken,
    pub hub: Arc<dyn Owner>,
}

impl Owner for FollowerOwner {
    fn detach(&self, _routes: &[Arc<Route>]) {
        self.cancel.cancel();
    }

    fn unsubscribe<'a>(&'a self, routes: &'a [Arc<Route>]) -> BoxFuture<'a, Result<()>> {
        self.cancel.cancel();
        self.hub.unsubscribe(routes)
    }
}

/// The one stream every pattern is under, if they all are under the same one.
pub(crate) fn stream_of(streams: &[StreamConfig], patterns: &[Pattern]) -> Option<StreamConfig> {
    let first = patterns.first()?;
    let stream = streams.iter().find(|s| first.is_subset_of(s.root()))?;
    patterns
        .iter()
        .all(|p| p.is_subset_of(stream.root()))
        .then(|| stream.clone())
}

/// Checks that `start` can begin in `stream`.
pub(crate) fn check_start(stream: &StreamConfig, start: &StartAt) -> Result<()> {
    if let StartAt::After(position) = start {
        if position.stream_tag() != stream.tag() {
            return Err(Error::new(
                ErrorKind::Invalid,
                format!(
                    "position {position} belongs to another stream than `{}`",
                    stream.root()
                ),
            ));
        }
    }
    Ok(())
}

/// The routes of a live subscription, shared with the stream subscription built on it (for
/// its patterns and its unsubscribe).
pub(crate) fn routes_of(live: &Subscription) -> SmallVec<[Arc<Route>; 1]> {
    live.routes().iter().cloned().collect()
}
