//! A pub/sub adapter written outside this repository's workspace, as a third party would: a
//! "broker" made of one `tokio::sync::broadcast` channel per [`Exchange`], which every handle
//! reads with a task of its own, the way a client library reads a socket. Like a broker, the
//! exchange gives a filter only what is sent after the filter was added (each message is
//! numbered, and each filter knows the first number it takes).
//!
//! It is only translation: the adapter kit of `pubsub-core` gives it routing, bounded queues,
//! filter bookkeeping, reconnect restoration, publish gating and `close`. Its test target runs
//! the whole conformance suite with one `conformance_tests::suite!` call.
#![deny(missing_docs)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use pubsub_core::adapter::{launch, Driver, Inbound, LinkReporter};
use pubsub_core::{CommonOptions, Error, Hub, Message, Pattern, Result};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::Notify;

/// The in-process "broker": every handle of one exchange receives every message.
#[derive(Clone, Debug)]
pub struct Exchange {
    tx: broadcast::Sender<Message>,
    /// Messages sent so far (a message's number is the count after it); held while sending,
    /// so that a filter added under it takes exactly the messages sent after.
    sent: Arc<Mutex<u64>>,
}

impl Exchange {
    /// An exchange whose readers may lag `capacity` messages before they lose some.
    pub fn new(capacity: usize) -> Self {
        Exchange {
            tx: broadcast::Sender::new(capacity.max(1)),
            sent: Arc::default(),
        }
    }

    /// Sends `message` and counts it, as one step.
    fn put(&self, message: Message) {
        let mut sent = self.sent();
        *sent += 1;
        // No receiver is not an error for a broadcast broker.
        let _ = self.tx.send(message);
    }

    /// How many messages were sent so far, held: nothing is sent until it is released.
    fn sent(&self) -> MutexGuard<'_, u64> {
        self.sent.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new reader of the exchange, and how many messages were sent before it (it sees
    /// every later one).
    fn reader(&self) -> (broadcast::Receiver<Message>, u64) {
        let sent = self.sent();
        (self.tx.subscribe(), *sent)
    }

    /// Sends a message into the exchange as another client would (every handle gets it).
    pub fn send(&self, message: Message) {
        self.put(message);
    }

    /// Connects a handle, and returns the [`Wire`] a test can cut.
    pub async fn connect(&self, options: CommonOptions) -> Result<(Hub, Wire)> {
        let wire = Wire::default();
        let exchange = self.clone();
        let line = wire.clone();
        let hub = launch(options, |cx| async move {
            let link = cx.supervisor.link();
            link.up();
            *line.0.reporter.lock().await = Some(link);
            let (rx, before) = exchange.reader();
            let interest = Arc::new(Interest::default());
            cx.tasks
                .spawn(read(rx, before, cx.inbound, line.clone(), interest.clone()));
            if !cx.options.heartbeat.is_zero() {
                cx.tasks
                    .spawn(notice_silence(line.clone(), cx.options.heartbeat * 3));
            }
            Ok(ExchangeDriver {
                exchange,
                interest,
                wire: line,
                publish_timeout: cx.options.publish_timeout,
                command_timeout: cx.options.command_timeout,
            })
        })
        .await?;
        Ok((hub, wire))
    }
}

/// The wire between a handle and its exchange: a test cuts it (noticed, like a reset) or
/// freezes it (silent, like a black hole).
#[derive(Clone, Debug, Default)]
pub struct Wire(Arc<WireState>);

#[derive(Debug, Default)]
struct WireState {
    /// 0 = up, 1 = cut, 2 = frozen.
    mode: AtomicU8,
    changed: Notify,
    reporter: tokio::sync::Mutex<Option<LinkReporter>>,
}

impl Wire {
    /// Sets the mode, and tells the handle about a cut or a mend (as a client library
    /// notices a reset), never about a freeze.
    async fn set(&self, mode: u8) {
        let before = self.0.mode.swap(mode, Ordering::SeqCst);
        self.0.changed.notify_waiters();
        if let Some(link) = &*self.0.reporter.lock().await {
            match (before, mode) {
                (_, 1) => link.down(),
                (1, 0) => link.reconnected(),
                _ => {}
            }
        }
    }

    /// Breaks the wire; the handle notices.
    pub async fn cut(&self) {
        self.set(1).await;
    }

    /// Stops all traffic; nobody notices.
    pub async fn freeze(&self) {
        self.set(2).await;
    }

    /// Mends the wire.
    pub async fn mend(&self) {
        self.set(0).await;
    }

    /// Takes a frozen wire as broken (the handle's pings went unanswered); false if it was not
    /// frozen any more.
    async fn declare_dead(&self) -> bool {
        let dead = self
            .0
            .mode
            .compare_exchange(2, 1, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok();
        if dead {
            self.0.changed.notify_waiters();
            if let Some(link) = &*self.0.reporter.lock().await {
                link.down();
            }
        }
        dead
    }

    fn is_up(&self) -> bool {
        self.0.mode.load(Ordering::SeqCst) == 0
    }

    /// Waits up to `timeout` until the wire carries traffic.
    async fn carried(&self, timeout: Duration) -> Result<()> {
        let up = async {
            loop {
                let changed = self.0.changed.notified();
                if self.is_up() {
                    return;
                }
                changed.await;
            }
        };
        tokio::time::timeout(timeout, up)
            .await
            .map_err(|_| Error::timeout(format!("the wire carried nothing for {timeout:?}")))
    }
}

/// What a client library's heartbeat does: a wire that stays frozen for `silence` is taken as
/// broken, so the handle notices a half-open connection.
async fn notice_silence(wire: Wire, silence: Duration) {
    loop {
        let changed = wire.0.changed.notified();
        if wire.0.mode.load(Ordering::SeqCst) == 2 {
            if tokio::time::timeout(silence, changed).await.is_err() {
                wire.declare_dead().await;
            }
        } else {
            changed.await;
        }
    }
}

/// A handle's filters at the exchange, each with the number of the first message it takes.
#[derive(Debug, Default)]
struct Interest(Mutex<HashMap<Pattern, u64>>);

impl Interest {
    fn filters(&self) -> MutexGuard<'_, HashMap<Pattern, u64>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Reads the exchange (`before` messages were sent before the reader began): each message goes
/// through every filter of the handle that matches it and was added before it was sent.
async fn read(
    mut rx: broadcast::Receiver<Message>,
    before: u64,
    inbound: Inbound<Pattern>,
    wire: Wire,
    interest: Arc<Interest>,
) {
    let mut number = before;
    loop {
        match rx.recv().await {
            Ok(message) => {
                number += 1;
                if !wire.is_up() {
                    continue;
                }
                let through: Vec<Pattern> = interest
                    .filters()
                    .iter()
                    .filter(|(filter, from)| **from <= number && filter.matches(message.topic()))
                    .map(|(filter, _)| filter.clone())
                    .collect();
                for filter in &through {
                    inbound.deliver_via(filter, message.clone());
                }
            }
            Err(RecvError::Lagged(lost)) => {
                number += lost;
                inbound.record_lost(lost);
            }
            Err(RecvError::Closed) => return,
        }
    }
}

/// The driver: publish into the exchange; filters are the patterns themselves, kept with the
/// handle's reader (the exchange sends everything; the reader lets each filter have what was
/// sent after it was added, and the kit's router picks its subscriptions).
#[derive(Debug)]
pub struct ExchangeDriver {
    exchange: Exchange,
    /// The handle's filters, shared with its reader.
    interest: Arc<Interest>,
    wire: Wire,
    publish_timeout: Duration,
    command_timeout: Duration,
}

#[async_trait]
impl Driver for ExchangeDriver {
    type Filter = Pattern;
    const BACKEND: &'static str = "exchange";

    fn max_payload(&self) -> usize {
        1 << 20
    }

    fn native_filter(&self, pattern: &Pattern) -> Result<Pattern> {
        Ok(pattern.clone())
    }

    async fn publish(&self, message: Message) -> Result<()> {
        self.wire.carried(self.publish_timeout).await?;
        self.exchange.put(message);
        Ok(())
    }

    async fn add_filters(&self, filters: &[Pattern]) -> Result<()> {
        self.wire.carried(self.command_timeout).await?;
        // Under the exchange's count, so that each filter takes exactly what is sent after
        // (added again after a reconnect: from then on).
        let sent = self.exchange.sent();
        let mut interest = self.interest.filters();
        for filter in filters {
            interest.insert(filter.clone(), *sent + 1);
        }
        Ok(())
    }

    async fn remove_filters(&self, filters: &[Pattern]) -> Result<()> {
        self.wire.carried(self.command_timeout).await?;
        let mut interest = self.interest.filters();
        for filter in filters {
            interest.remove(filter);
        }
        Ok(())
    }

    async fn close(&self) -> Result<()> {
        // Nothing is buffered on our side of the wire: publish hands each message over.
        Ok(())
    }
}
