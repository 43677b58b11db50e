//! The bounded, drop-oldest buffer behind each subscription.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};

use parking_lot::Mutex;

use crate::Message;

/// A bounded queue with one consumer. A full queue drops its oldest message and counts it, so a
/// stalled consumer never blocks the producer.
#[derive(Debug)]
pub(crate) struct Queue {
    state: Mutex<State>,
    capacity: usize,
    dropped: AtomicU64,
}

#[derive(Debug)]
struct State {
    buf: VecDeque<Message>,
    waker: Option<Waker>,
    closed: bool,
}

impl Queue {
    pub(crate) fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Queue {
            state: Mutex::new(State {
                // Grows as messages arrive: an idle subscription costs no buffer.
                buf: VecDeque::new(),
                waker: None,
                closed: false,
            }),
            capacity,
            dropped: AtomicU64::new(0),
        }
    }

    /// Appends a message; returns true when the oldest one had to be dropped for it.
    pub(crate) fn push(&self, message: Message) -> bool {
        let (dropped, waker) = {
            let mut st = self.state.lock();
            if st.closed {
                return false;
            }
            let dropped = if st.buf.len() >= self.capacity {
                st.buf.pop_front();
                true
            } else {
                false
            };
            st.buf.push_back(message);
            (dropped, st.waker.take())
        };
        if dropped {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(w) = waker {
            w.wake();
        }
        dropped
    }

    /// Next message; `Ready(None)` once closed and drained.
    pub(crate) fn poll_pop(&self, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        let mut st = self.state.lock();
        if let Some(m) = st.buf.pop_front() {
            return Poll::Ready(Some(m));
        }
        if st.closed {
            return Poll::Ready(None);
        }
        match &st.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => st.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Ends the queue: what is buffered can still be read, then the consumer sees the end.
    pub(crate) fn close(&self) {
        let waker = {
            let mut st = self.state.lock();
            st.closed = true;
            st.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub(crate) fn len(&self) -> usize {
        self.state.lock().buf.len()
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

    #[test]
    fn drops_oldest_and_counts() {
        let q = Queue::new(2);
        assert!(!q.push(msg(1)));
        assert!(!q.push(msg(2)));
        assert!(q.push(msg(3)));
        assert_eq!(q.dropped(), 1);
        let w = noop_waker();
        let mut cx = Context::from_waker(&w);
        let got: Vec<u8> = (0..2)
            .map(|_| match q.poll_pop(&mut cx) {
                Poll::Ready(Some(m)) => m.payload()[0],
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(got, [2, 3]);
        assert!(q.poll_pop(&mut cx).is_pending());
        q.close();
        assert_eq!(q.poll_pop(&mut cx), Poll::Ready(None));
        assert!(!q.push(msg(4)));
    }
}
