//! The bounded buffer behind each subscription, with its overflow policy and gap markers.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::SystemTime;

use parking_lot::{Mutex, MutexGuard};

use crate::delivery::{Delivery, EndReason, Gap, Overflow};
use crate::Message;

/// A bounded queue with one consumer. When full, the [`Overflow`] policy decides; a message
/// dropped for it leaves a [`Gap::Dropped`] marker where it was, so a reader of deliveries knows
/// exactly where and how many. Gap markers do not count against the capacity.
#[derive(Debug)]
pub(crate) struct Queue {
    state: Mutex<State>,
    capacity: usize,
    policy: Overflow,
    dropped: AtomicU64,
}

#[derive(Debug)]
struct State {
    buf: VecDeque<Delivery>,
    /// Messages (not gaps) in `buf`.
    messages: usize,
    waker: Option<Waker>,
    /// A producer waiting for room ([`Queue::poll_room`]): a stream subscription's replay.
    room_waker: Option<Waker>,
    ended: Option<EndReason>,
    /// Where this queue stands in an outage of its handle, if one is under way.
    outage: Option<OutageMark>,
}

/// An outage seen from one queue. The [`Gap::Outage`] goes right before the first message that
/// arrives after the cut, and again before the first one after a link is back when messages
/// came in between: those can have left the broker before the cut (still on their way when the
/// link fell) or after it (a client library that resubscribed before it reported the
/// reconnect); either way the hole is next to a gap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutageMark {
    /// The gap goes before the next message.
    Armed { since: SystemTime },
    /// The gap is in the buffer, with at least one message after it.
    Placed { since: SystemTime },
}

impl Queue {
    pub(crate) fn new(capacity: usize, policy: Overflow) -> Self {
        Queue {
            state: Mutex::new(State {
                // Grows as messages arrive: an idle subscription costs no buffer.
                buf: VecDeque::new(),
                messages: 0,
                waker: None,
                room_waker: None,
                ended: None,
                outage: None,
            }),
            capacity: capacity.max(1),
            policy,
            dropped: AtomicU64::new(0),
        }
    }

    /// Appends a message; returns true when a message was dropped (or the queue ended) for it.
    ///
    /// The usual case (room, no outage, not ended) is inlined into the router's delivery loop;
    /// the rest is [`Queue::push_unusual`].
    #[inline]
    pub(crate) fn push(&self, message: Message) -> bool {
        let mut st = self.state.lock();
        if st.ended.is_some() || st.outage.is_some() || st.messages >= self.capacity {
            return self.push_unusual(st, message);
        }
        st.push_message(message);
        let waker = st.waker.take();
        drop(st);
        if let Some(w) = waker {
            w.wake();
        }
        false
    }

    /// [`Queue::push`] when the queue ended, is in an outage or is full.
    #[cold]
    #[inline(never)]
    fn push_unusual(&self, mut st: MutexGuard<'_, State>, message: Message) -> bool {
        if st.ended.is_some() {
            return false;
        }
        if st.outage.is_some() {
            st.place_outage_gap();
        }
        let mut dropped = false;
        if st.messages >= self.capacity {
            dropped = true;
            match self.policy {
                Overflow::DropOldest => {
                    st.drop_oldest();
                    st.push_message(message);
                }
                Overflow::DropNewest => st.mark_dropped_at_back(),
                Overflow::Close => st.ended = Some(EndReason::Overflow),
            }
        } else {
            st.push_message(message);
        }
        let waker = st.waker.take();
        drop(st);
        if dropped {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(w) = waker {
            w.wake();
        }
        dropped
    }

    /// Counts `count` messages the broker dropped before they reached this queue, with a
    /// [`Gap::Dropped`] marker at the back (merged with one already there).
    pub(crate) fn push_lost(&self, count: u64) {
        let mut st = self.state.lock();
        if st.ended.is_some() {
            return;
        }
        if st.outage.is_some() {
            st.place_outage_gap();
        }
        match st.buf.back_mut() {
            Some(Delivery::Gap(Gap::Dropped { count: n })) => *n += count,
            _ => st.buf.push_back(Delivery::Gap(Gap::Dropped { count })),
        }
        let waker = st.waker.take();
        drop(st);
        self.dropped.fetch_add(count, Ordering::Relaxed);
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// The handle lost its connection at `since`. Keeps an outage already marked.
    pub(crate) fn outage_began(&self, since: SystemTime) {
        let mut st = self.state.lock();
        st.outage.get_or_insert(OutageMark::Armed { since });
    }

    /// A link came back: if messages arrived since the gap was placed, the next one gets a gap
    /// again (what came in between may have been from before the cut).
    pub(crate) fn outage_link_back(&self) {
        let mut st = self.state.lock();
        if let Some(OutageMark::Placed { since }) = st.outage {
            st.outage = Some(OutageMark::Armed { since });
        }
    }

    /// The handle is up again at `until`, every filter restored. The gap goes here unless one
    /// was placed since the link came back; with `again`, it goes here even then: a
    /// subscription with several filters can have lost messages of a filter restored after
    /// the first message of another arrived.
    pub(crate) fn outage_ended(&self, until: SystemTime, again: bool) {
        let mut st = self.state.lock();
        let since = match st.outage.take() {
            Some(OutageMark::Armed { since }) => since,
            Some(OutageMark::Placed { since }) if again => since,
            _ => return,
        };
        if st.ended.is_some() {
            return;
        }
        st.buf
            .push_back(Delivery::Gap(Gap::Outage { since, until }));
        let waker = st.waker.take();
        drop(st);
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Appends a gap marker (a stream's history gap), unless the queue ended.
    pub(crate) fn push_gap(&self, gap: Gap) {
        let mut st = self.state.lock();
        if st.ended.is_some() {
            return;
        }
        st.buf.push_back(Delivery::Gap(gap));
        let waker = st.waker.take();
        drop(st);
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// The next delivery; `Ready(None)` once ended and drained.
    #[inline]
    pub(crate) fn poll_pop(&self, cx: &mut Context<'_>) -> Poll<Option<Delivery>> {
        let mut st = self.state.lock();
        if let Some(d) = st.buf.pop_front() {
            if matches!(d, Delivery::Message(_)) {
                st.messages -= 1;
                if let Some(producer) = st.room_waker.take() {
                    drop(st);
                    producer.wake();
                }
            }
            return Poll::Ready(Some(d));
        }
        if st.ended.is_some() {
            return Poll::Ready(None);
        }
        match &st.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => st.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Ends the queue (unless it ended already): what is buffered can still be read, then the
    /// consumer sees the end.
    pub(crate) fn close(&self, reason: EndReason) {
        let (waker, producer) = {
            let mut st = self.state.lock();
            st.ended.get_or_insert(reason);
            (st.waker.take(), st.room_waker.take())
        };
        for w in [waker, producer].into_iter().flatten() {
            w.wake();
        }
    }

    /// `Ready(true)` once a message can be pushed without the overflow policy, `Ready(false)`
    /// once the queue ended; a producer that must not drop waits here.
    pub(crate) fn poll_room(&self, cx: &mut Context<'_>) -> Poll<bool> {
        let mut st = self.state.lock();
        if st.ended.is_some() {
            return Poll::Ready(false);
        }
        if st.messages < self.capacity {
            return Poll::Ready(true);
        }
        st.room_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// The next delivery if one is waiting, without registering a waker.
    pub(crate) fn try_pop(&self) -> Option<Delivery> {
        let mut st = self.state.lock();
        let d = st.buf.pop_front()?;
        if matches!(d, Delivery::Message(_)) {
            st.messages -= 1;
            if let Some(producer) = st.room_waker.take() {
                drop(st);
                producer.wake();
            }
        }
        Some(d)
    }

    /// Whether a message can be pushed now without the overflow policy.
    pub(crate) fn has_room(&self) -> bool {
        let st = self.state.lock();
        st.ended.is_none() && st.messages < self.capacity
    }

    /// Waits for room ([`Queue::poll_room`]).
    pub(crate) async fn room(&self) -> bool {
        std::future::poll_fn(|cx| self.poll_room(cx)).await
    }

    pub(crate) fn end_reason(&self) -> Option<EndReason> {
        self.state.lock().ended
    }

    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Messages waiting (gap markers not counted).
    pub(crate) fn len(&self) -> usize {
        self.state.lock().messages
    }
}

impl State {
    /// Before a message arrives in an outage: puts the gap first when one is due.
    fn place_outage_gap(&mut self) {
        if let Some(OutageMark::Armed { since }) = self.outage {
            let until = SystemTime::now();
            self.buf
                .push_back(Delivery::Gap(Gap::Outage { since, until }));
            self.outage = Some(OutageMark::Placed { since });
        }
    }

    fn push_message(&mut self, message: Message) {
        self.buf.push_back(Delivery::Message(message));
        self.messages += 1;
    }

    /// Removes the oldest message and counts it in the gap marker that takes its place.
    fn drop_oldest(&mut self) {
        let Some(at) = self
            .buf
            .iter()
            .position(|d| matches!(d, Delivery::Message(_)))
        else {
            return;
        };
        self.buf.remove(at);
        self.messages -= 1;
        match at
            .checked_sub(1)
            .and_then(|before| self.buf.get_mut(before))
        {
            Some(Delivery::Gap(Gap::Dropped { count })) => *count += 1,
            _ => self
                .buf
                .insert(at, Delivery::Gap(Gap::Dropped { count: 1 })),
        }
    }

    /// Counts a message that was not taken in a gap marker at the back.
    fn mark_dropped_at_back(&mut self) {
        match self.buf.back_mut() {
            Some(Delivery::Gap(Gap::Dropped { count })) => *count += 1,
            _ => self.buf.push_back(Delivery::Gap(Gap::Dropped { count: 1 })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Topic;
    use futures::task::noop_waker;

    fn msg(i: u8) -> Message {
        Message::new(Topic::new("t").unwrap(), vec![i])
    }

    fn drain(q: &Queue) -> Vec<String> {
        let w = noop_waker();
        let mut cx = Context::from_waker(&w);
        let mut out = Vec::new();
        while let Poll::Ready(Some(d)) = q.poll_pop(&mut cx) {
            out.push(match d {
                Delivery::Message(m) => m.payload()[0].to_string(),
                Delivery::Gap(Gap::Dropped { count }) => format!("gap {count}"),
                Delivery::Gap(gap) => format!("{gap:?}"),
            });
        }
        out
    }

    #[test]
    fn drop_oldest_leaves_one_counted_gap_where_the_messages_were() {
        let q = Queue::new(2, Overflow::DropOldest);
        for i in 1..=5 {
            assert_eq!(q.push(msg(i)), i > 2);
        }
        assert_eq!((q.dropped(), q.len()), (3, 2));
        assert_eq!(drain(&q), ["gap 3", "4", "5"]);
        q.close(EndReason::Closed);
        assert!(!q.push(msg(6)));
        assert_eq!(q.end_reason(), Some(EndReason::Closed));
    }

    #[test]
    fn drop_newest_keeps_the_first_and_counts_the_rest() {
        let q = Queue::new(2, Overflow::DropNewest);
        for i in 1..=5 {
            q.push(msg(i));
        }
        assert_eq!(drain(&q), ["1", "2", "gap 3"]);
        q.push(msg(6));
        assert_eq!(drain(&q), ["6"]);
    }

    #[test]
    fn close_policy_ends_the_stream_with_its_reason() {
        let q = Queue::new(2, Overflow::Close);
        for i in 1..=3 {
            q.push(msg(i));
        }
        assert_eq!(q.end_reason(), Some(EndReason::Overflow));
        assert_eq!(drain(&q), ["1", "2"]);
        let w = noop_waker();
        assert_eq!(q.poll_pop(&mut Context::from_waker(&w)), Poll::Ready(None));
        // The first reason stays.
        q.close(EndReason::Closed);
        assert_eq!(q.end_reason(), Some(EndReason::Overflow));
    }

    #[test]
    fn gaps_do_not_count_against_the_capacity() {
        let q = Queue::new(1, Overflow::DropOldest);
        q.push(msg(1));
        let now = std::time::SystemTime::now();
        q.push_gap(Gap::Outage {
            since: now,
            until: now,
        });
        assert!(q.push(msg(2)));
        assert_eq!(drain(&q).len(), 3, "gap 1, the outage, 2");
    }

    #[test]
    fn the_outage_gap_goes_before_the_first_message_from_after_the_cut() {
        let q = Queue::new(10, Overflow::DropOldest);
        let since = std::time::SystemTime::now();
        q.push(msg(1));
        q.outage_began(since);
        // Still on its way when the link fell (or already from after the reconnect: the queue
        // cannot tell).
        q.push(msg(2));
        q.outage_link_back();
        q.push(msg(5));
        q.push(msg(6));
        // Placed already: a single-filter subscription gets no gap at the end.
        q.outage_ended(std::time::SystemTime::now(), false);
        q.push(msg(7));
        let got = drain(&q);
        let shape: Vec<&str> = got
            .iter()
            .map(|d| if d.starts_with("Outage") { "gap" } else { d })
            .collect();
        assert_eq!(shape, ["1", "gap", "2", "gap", "5", "6", "7"]);
    }

    #[test]
    fn an_outage_without_messages_puts_its_gap_at_the_end() {
        let q = Queue::new(10, Overflow::DropOldest);
        q.outage_began(std::time::SystemTime::now());
        q.outage_link_back();
        q.outage_ended(std::time::SystemTime::now(), false);
        q.push(msg(9));
        let got = drain(&q);
        assert!(got[0].starts_with("Outage"), "{got:?}");
        assert_eq!(got[1..], ["9"]);
        // Over: the next message is plain.
        q.push(msg(10));
        assert_eq!(drain(&q), ["10"]);
    }

    #[test]
    fn several_filters_get_a_second_gap_when_the_outage_ends() {
        let q = Queue::new(10, Overflow::DropOldest);
        q.outage_began(std::time::SystemTime::now());
        q.outage_link_back();
        q.push(msg(1));
        q.outage_ended(std::time::SystemTime::now(), true);
        q.push(msg(2));
        let got = drain(&q);
        assert_eq!(got.len(), 4, "{got:?}");
        assert!(got[0].starts_with("Outage") && got[2].starts_with("Outage"));
        assert_eq!((got[1].as_str(), got[3].as_str()), ("1", "2"));
    }

    #[test]
    fn a_lost_count_after_the_cut_follows_the_outage_gap() {
        let q = Queue::new(10, Overflow::DropOldest);
        q.outage_began(std::time::SystemTime::now());
        q.outage_link_back();
        q.push_lost(3);
        let got = drain(&q);
        assert!(got[0].starts_with("Outage"), "{got:?}");
        assert_eq!(got[1], "gap 3");
    }
}
