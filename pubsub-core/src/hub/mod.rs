//! [`Hub`]: the handle every backend returns; the shared half of every adapter.

mod group;
pub(crate) mod launch;
mod reconcile;
mod shared_reads;
mod stream;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures::future::BoxFuture;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use smallvec::SmallVec;

use crate::adapter::driver::Driver;
use crate::adapter::stream_log::StreamTable;
use crate::adapter::supervisor::{OutageListener, Supervisor};
use crate::adapter::tasks::Tasks;
use crate::router::{NewRoute, Presence, Queue, Route, Router, Slot, ORIGIN_HEADER};
use crate::subscription::Owner;
use crate::{
    CommonOptions, ConnectionState, Error, ErrorKind, GroupConfig, GroupSubscription, Message,
    Operation, Pattern, PubSub, Result, Stats, StreamConfig, SubscribeOptions, Subscription,
};
use tokio_util::sync::CancellationToken;

/// A pub/sub handle on one backend: what [`connect`](https://docs.rs/pubsub) and every
/// adapter's `connect` return.
///
/// Cloning it is cheap, and all clones share one connection. It implements [`PubSub`]; see
/// there for what each operation promises.
///
/// ```
/// # async fn demo() -> pubsub_core::Result<()> {
/// use pubsub_core::{memory::MemoryBus, PubSub};
/// let handle = MemoryBus::new().connect().await?;
/// let sub = handle.subscribe("a.>".parse()?).await?;
/// assert_eq!(handle.stats().native_filters, 1);
/// drop(sub);
/// handle.close().await?;
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
/// ```
#[derive(Clone)]
pub struct Hub {
    inner: Arc<dyn Core>,
}

/// The object-safe face of [`HubInner`], whatever its driver.
#[async_trait]
trait Core: Send + Sync + 'static {
    fn backend(&self) -> &'static str;
    fn max_payload(&self) -> usize;
    fn publish(&self, message: Message) -> BoxFuture<'_, Result<()>>;
    /// Publishes at once when nothing needs waiting for; gives the message back otherwise.
    fn publish_now(&self, message: Message) -> std::result::Result<Result<()>, Message>;
    async fn subscribe_all(
        self: Arc<Self>,
        patterns: Vec<Pattern>,
        options: SubscribeOptions,
    ) -> Result<Subscription>;
    async fn declare_stream(&self, stream: StreamConfig) -> Result<()>;
    async fn join_group(&self, group: GroupConfig) -> Result<GroupSubscription>;
    async fn close(&self) -> Result<()>;
    fn stats(&self) -> Stats;
    fn supervisor(&self) -> &Supervisor;
    fn debug(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result;
}

pub(crate) struct HubInner<D: Driver> {
    driver: Arc<D>,
    router: Arc<Router<D::Filter>>,
    reconciler: reconcile::Handle,
    supervisor: Supervisor,
    tasks: Tasks,
    options: CommonOptions,
    closed: AtomicBool,
    /// Serialises `close` calls: a second one waits for the first to finish.
    closing: tokio::sync::Mutex<()>,
    /// Publishes under way, which `close` lets finish.
    inflight: AtomicUsize,
    drained: Notify,
    next_id: AtomicU64,
    published: AtomicU64,
    /// The streams declared on this handle.
    streams: StreamTable,
    /// Reads of the streams' logs, shared by the followers that need the same batch at once.
    reads: Arc<shared_reads::SharedReads<D>>,
}

pub(crate) fn start<D: Driver>(
    driver: D,
    router: Arc<Router<D::Filter>>,
    supervisor: Supervisor,
    tasks: Tasks,
    options: CommonOptions,
) -> Hub {
    let driver = Arc::new(driver);
    let reconciler = reconcile::spawn(
        driver.clone(),
        router.clone(),
        supervisor.clone(),
        tasks.clone(),
        options.backoff.clone(),
    );
    // In each outage, a gap in every subscription's stream where the messages published
    // meanwhile may be missing.
    supervisor.on_outage(Box::new(OutageGaps(router.clone())));
    let reads = shared_reads::SharedReads::new(driver.clone(), options.command_timeout);
    Hub {
        inner: Arc::new(HubInner {
            driver,
            router,
            reconciler,
            supervisor,
            tasks,
            options,
            closed: AtomicBool::new(false),
            closing: tokio::sync::Mutex::new(()),
            inflight: AtomicUsize::new(0),
            drained: Notify::new(),
            next_id: AtomicU64::new(1),
            published: AtomicU64::new(0),
            streams: StreamTable::new(),
            reads,
        }),
    }
}

/// Puts each outage's gap in every subscription, next to where messages may be missing.
struct OutageGaps<F>(Arc<Router<F>>);

impl<F: Eq + std::hash::Hash + Clone + Send + Sync> OutageListener for OutageGaps<F> {
    fn began(&self, since: SystemTime) {
        self.0.outage_began(since);
    }

    fn link_back(&self) {
        self.0.outage_link_back();
    }

    fn ended(&self, _since: SystemTime, until: SystemTime) {
        self.0.outage_ended(until);
    }
}

/// Every publish, whatever its outcome, spends one unit of the task's tokio budget
/// (`tokio::task::coop`), and yields once the budget is spent. A driver whose publish never
/// waits (the memory backend, a client with room in its buffer) would otherwise let a task
/// publishing in a loop keep its thread: the readers it woke (on a multi-thread runtime, in the
/// worker's slot no other worker takes) would not run until it stops, and their bounded queues
/// would overflow. Outside a tokio runtime this never yields.
async fn cooperate() {
    tokio::task::coop::consume_budget().await;
}

/// Counts a publish as under way while it lives.
struct Inflight<'a, D: Driver>(&'a HubInner<D>);

impl<'a, D: Driver> Inflight<'a, D> {
    fn enter(hub: &'a HubInner<D>) -> Self {
        hub.inflight.fetch_add(1, Ordering::SeqCst);
        Inflight(hub)
    }
}

impl<D: Driver> Drop for Inflight<'_, D> {
    fn drop(&mut self) {
        if self.0.inflight.fetch_sub(1, Ordering::SeqCst) == 1
            && self.0.closed.load(Ordering::SeqCst)
        {
            self.0.drained.notify_waiters();
        }
    }
}

impl<D: Driver> HubInner<D> {
    fn fail(&self, error: Error, operation: Operation) -> Error {
        error.with_backend(D::BACKEND).with_operation(operation)
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    async fn publish_inner(&self, message: Message) -> Result<()> {
        if self.is_closed() {
            return Err(Error::closed());
        }
        let max = self.options.payload_limit(self.driver.max_payload());
        if message.payload().len() > max {
            return Err(Error::payload_too_large(message.payload().len(), max));
        }
        let _inflight = Inflight::enter(self);
        // Checked again after counting in: `close` either sees this publish or it sees `closed`.
        if self.is_closed() {
            return Err(Error::closed());
        }
        if !self.supervisor.is_up() {
            self.supervisor.ready(self.options.publish_timeout).await?;
        }
        let message = if self.router.stamps() {
            stamp(message, self.router.origin())
        } else {
            message
        };
        self.driver.publish(message).await?;
        self.published.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// The common case of a publish, without an async call: the handle is up, no subscription
    /// asks for its own messages to be skipped, and the driver can send at once. Anything
    /// else gives the message back for [`HubInner::publish_inner`], which handles every case.
    fn publish_now(&self, message: Message) -> std::result::Result<Result<()>, Message> {
        let max = self.options.payload_limit(self.driver.max_payload());
        if self.is_closed()
            || !self.supervisor.is_up()
            || self.router.stamps()
            || message.payload().len() > max
        {
            return Err(message);
        }
        let _inflight = Inflight::enter(self);
        // Checked again after counting in: `close` either sees this publish or it sees `closed`.
        if self.is_closed() {
            return Err(message);
        }
        let result = self.driver.publish_now(message)?;
        if result.is_ok() {
            self.published.fetch_add(1, Ordering::Relaxed);
        }
        Ok(result.map_err(|e| self.fail(e, Operation::Publish)))
    }

    /// Waits until `settled` holds for the filter's slot (or, with `gone_is_settled`, the slot
    /// is gone), a broker change of it that started after `attempts_before` failed, the
    /// command timeout passed, or the handle closed.
    async fn wait_slot(
        &self,
        filter: &D::Filter,
        attempts_before: u64,
        settled: impl Fn(&Slot) -> bool,
        gone_is_settled: bool,
        what: &'static str,
    ) -> Result<()> {
        let deadline = tokio::time::sleep_until(Instant::now() + self.options.command_timeout);
        tokio::pin!(deadline);
        loop {
            let state = self
                .router
                .watch_slot(filter, |slot| match &slot.last_error {
                    _ if settled(slot) => Some(Ok(())),
                    Some(error) if slot.attempts > attempts_before && !slot.busy => {
                        Some(Err(error.clone()))
                    }
                    _ => None,
                });
            // Woken by a change of this slot only (not by every change of the handle's).
            let changed = match state {
                Some((Some(result), _)) => return result,
                None if gone_is_settled => return Ok(()),
                None => return Err(Error::closed()),
                Some((None, changed)) => changed,
            };
            tokio::select! {
                _ = changed => {}
                _ = self.tasks.stopped() => return Err(Error::closed()),
                _ = &mut deadline => return Err(Error::timeout(format!(
                    "{what} within {:?}", self.options.command_timeout
                ))),
            }
        }
    }

    fn attempts_of(&self, filter: &D::Filter) -> u64 {
        self.router.with_slot(filter, |s| s.attempts).unwrap_or(0)
    }

    async fn close_inner(&self) -> Result<()> {
        let _closing = self.closing.lock().await;
        if self.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        // Publishes already under way finish first (each is bounded by the publish timeout).
        let drain = async {
            loop {
                let drained = self.drained.notified();
                if self.inflight.load(Ordering::SeqCst) == 0 {
                    return;
                }
                drained.await;
            }
        };
        if tokio::time::timeout(self.options.publish_timeout, drain)
            .await
            .is_err()
        {
            tracing::warn!(
                backend = D::BACKEND,
                "close: publishes still under way after the publish timeout"
            );
        }
        self.tasks.cancel();
        let result =
            match tokio::time::timeout(self.options.command_timeout, self.driver.close()).await {
                Ok(result) => result,
                Err(_) => Err(Error::timeout(
                    "the broker connection did not close in time",
                )),
            };
        self.router.close();
        self.supervisor.close();
        if !self.tasks.shut_down(SHUTDOWN_WAIT).await {
            tracing::warn!(
                backend = D::BACKEND,
                left = self.tasks.len(),
                "close: background tasks did not stop in time"
            );
        }
        result
    }
}

/// How long `close` waits for background tasks after cancelling them.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(2);

#[async_trait]
impl<D: Driver> Core for HubInner<D> {
    fn backend(&self) -> &'static str {
        D::BACKEND
    }

    fn max_payload(&self) -> usize {
        self.options.payload_limit(self.driver.max_payload())
    }

    fn publish(&self, message: Message) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let result = self
                .publish_inner(message)
                .await
                .map_err(|e| self.fail(e, Operation::Publish));
            cooperate().await;
            result
        })
    }

    fn publish_now(&self, message: Message) -> std::result::Result<Result<()>, Message> {
        HubInner::publish_now(self, message)
    }

    async fn subscribe_all(
        self: Arc<Self>,
        patterns: Vec<Pattern>,
        options: SubscribeOptions,
    ) -> Result<Subscription> {
        let fail = |e| self.fail(e, Operation::Subscribe);
        if self.is_closed() {
            return Err(fail(Error::closed()));
        }
        if patterns.is_empty() {
            return Err(fail(Error::new(
                ErrorKind::Invalid,
                "a subscription needs at least one pattern",
            )));
        }
        if !self.streams.is_empty() || options.from.is_some() {
            match stream::stream_of(&self.streams.all(), &patterns) {
                Some(under) => return self.subscribe_stream(under, patterns, options).await,
                None if options.from.is_some() => {
                    return Err(fail(Error::new(
                        ErrorKind::Invalid,
                        "a subscription that begins in a stream needs every pattern under one \
                         stream declared on the handle (declare_stream)",
                    )))
                }
                None => {}
            }
        }
        self.subscribe_live(patterns, options).await
    }

    async fn declare_stream(&self, config: StreamConfig) -> Result<()> {
        let fail = |e| self.fail(e, Operation::Subscribe);
        if self.is_closed() {
            return Err(fail(Error::closed()));
        }
        config.validate().map_err(fail)?;
        // Checked against the handle's streams before the broker is asked.
        if !self.streams.check(&config).map_err(fail)? {
            return Ok(());
        }
        match tokio::time::timeout(
            self.options.command_timeout,
            self.driver.declare_stream(&config),
        )
        .await
        {
            Ok(result) => result.map_err(fail)?,
            Err(_) => {
                return Err(fail(Error::timeout(format!(
                    "the broker did not confirm the stream within {:?}",
                    self.options.command_timeout
                ))))
            }
        }
        self.streams.insert(&config).map(|_| ()).map_err(fail)
    }

    async fn join_group(&self, group: GroupConfig) -> Result<GroupSubscription> {
        let fail = |e| self.fail(e, Operation::Subscribe);
        if self.is_closed() {
            return Err(fail(Error::closed()));
        }
        group.validate().map_err(fail)?;
        let Some(stream) = stream::stream_of(&self.streams.all(), group.patterns()) else {
            return Err(fail(Error::new(
                ErrorKind::Invalid,
                format!(
                    "group `{}`: a group reads a stream, and needs every pattern under one \
                     stream declared on the handle (declare_stream)",
                    group.name()
                ),
            )));
        };
        if let crate::StartAt::After(position) = group.start() {
            stream::check_start(&stream, &crate::StartAt::After(position)).map_err(fail)?;
        }
        if !self.supervisor.is_up() {
            self.supervisor
                .ready(self.options.command_timeout)
                .await
                .map_err(fail)?;
        }
        match tokio::time::timeout(
            self.options.command_timeout,
            self.driver.join_group(&stream, &group),
        )
        .await
        {
            Ok(result) => result.map_err(fail)?,
            Err(_) => {
                return Err(fail(Error::timeout(format!(
                    "the broker did not confirm group `{}` within {:?}",
                    group.name(),
                    self.options.command_timeout
                ))))
            }
        }
        let member = format!("{}-{:016x}", group.name(), crate::adapter::random_u64());
        Ok(group::start(group::MemberParts {
            driver: self.driver.clone(),
            supervisor: self.supervisor.clone(),
            tasks: self.tasks.clone(),
            backoff: self.options.backoff.clone(),
            command_timeout: self.options.command_timeout,
            stream,
            group,
            member,
        }))
    }

    async fn close(&self) -> Result<()> {
        self.close_inner()
            .await
            .map_err(|e| self.fail(e, Operation::Close))
    }

    fn stats(&self) -> Stats {
        Stats {
            subscriptions: self.router.route_count(),
            native_filters: self.router.active_filters(),
            published: self.published.load(Ordering::Relaxed),
            delivered: self.router.delivered(),
            dropped: self.router.dropped(),
        }
    }

    fn supervisor(&self) -> &Supervisor {
        &self.supervisor
    }

    fn debug(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub")
            .field("driver", &self.driver)
            .field("state", &self.supervisor.state())
            .field("subscriptions", &self.router.route_count())
            .finish()
    }
}

impl<D: Driver> HubInner<D> {
    /// A subscription under `stream`: a live subscription read by a [`stream::Follower`]
    /// into the subscription's own queue.
    async fn subscribe_stream(
        self: Arc<Self>,
        under: StreamConfig,
        patterns: Vec<Pattern>,
        options: SubscribeOptions,
    ) -> Result<Subscription> {
        let fail = |e| self.fail(e, Operation::Subscribe);
        let start = options.from.unwrap_or_default();
        stream::check_start(&under, &start).map_err(fail)?;
        // The log's end before the live subscription: what comes between is replayed.
        let end = self
            .reads
            .read(&under, crate::adapter::ReadFrom::End, 0)
            .await
            .map_err(fail)?;
        let live_options = SubscribeOptions {
            capacity: Some(options.capacity.unwrap_or(self.options.buffer)),
            overflow: Some(crate::Overflow::DropOldest),
            skip_own: options.skip_own,
            from: None,
        };
        let live = self.clone().subscribe_live(patterns, live_options).await?;
        let queue = Arc::new(Queue::new(
            options.capacity.unwrap_or(self.options.buffer),
            options.overflow.unwrap_or(self.options.overflow),
        ));
        let routes = stream::routes_of(&live);
        let cancel = CancellationToken::new();
        let parts = stream::FollowerParts {
            reads: self.reads.clone(),
            supervisor: self.supervisor.clone(),
            backoff: self.options.backoff.clone(),
            skip_origin: options.skip_own.then(|| self.router.origin().to_string()),
        };
        let follower = stream::Follower::new(
            parts,
            under,
            (start, end.epoch, end.end),
            queue.clone(),
            live,
            cancel.clone(),
        );
        self.tasks.spawn(follower.run());
        let owner: Arc<dyn Owner> = Arc::new(stream::FollowerOwner {
            cancel,
            hub: self.clone(),
        });
        Ok(Subscription::new(queue, routes, owner))
    }

    /// A live subscription: routes in the router, filters at the broker.
    async fn subscribe_live(
        self: Arc<Self>,
        patterns: Vec<Pattern>,
        options: SubscribeOptions,
    ) -> Result<Subscription> {
        let fail = |e| self.fail(e, Operation::Subscribe);
        let filters = self
            .router
            .plan(|in_use| {
                patterns
                    .iter()
                    .map(|p| self.driver.plan_filter(p, in_use))
                    .collect::<Result<Vec<_>>>()
            })
            .map_err(fail)?;
        let queue = Arc::new(Queue::new(
            options.capacity.unwrap_or(self.options.buffer),
            options.overflow.unwrap_or(self.options.overflow),
        ));
        let shared = patterns.len() > 1;
        let mut routes: SmallVec<[Arc<Route>; 1]> = SmallVec::new();
        let mut waits = Vec::new();
        for (pattern, filter) in patterns.into_iter().zip(filters) {
            let attempts = self.attempts_of(&filter);
            // Registered before the broker is asked, so nothing it sends after confirming can
            // miss the route.
            let (route, live) = self.router.insert(NewRoute {
                id: self.next_id.fetch_add(1, Ordering::Relaxed),
                pattern,
                wildcard: self.driver.is_wildcard(&filter),
                filter: filter.clone(),
                queue: queue.clone(),
                shared,
                skip_own: options.skip_own,
            });
            routes.push(route);
            if !live {
                waits.push((filter, attempts));
            }
        }
        if !waits.is_empty() {
            self.reconciler.kick.notify_one();
            let waited = futures::future::try_join_all(waits.iter().map(|(filter, attempts)| {
                self.wait_slot(
                    filter,
                    *attempts,
                    Slot::is_live,
                    false,
                    "the broker did not confirm the subscription",
                )
            }));
            if let Err(error) = waited.await {
                self.detach(&routes);
                return Err(fail(error));
            }
        }
        let owner: Arc<dyn Owner> = self.clone();
        Ok(Subscription::new(queue, routes, owner))
    }
}

impl<D: Driver> Owner for HubInner<D> {
    fn detach(&self, routes: &[Arc<Route>]) {
        let mut released = false;
        for route in routes {
            released |= self.router.remove(route).is_some();
        }
        if released && !self.is_closed() {
            self.reconciler.kick.notify_one();
        }
    }

    fn unsubscribe<'a>(&'a self, routes: &'a [Arc<Route>]) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let released: Vec<D::Filter> = routes
                .iter()
                .filter_map(|route| self.router.remove(route))
                .collect();
            if released.is_empty() || self.is_closed() {
                return Ok(());
            }
            let attempts: Vec<u64> = released.iter().map(|f| self.attempts_of(f)).collect();
            self.reconciler.kick.notify_one();
            let gone =
                |slot: &Slot| slot.refs > 0 || (slot.presence == Presence::Absent && !slot.busy);
            let waits = released.iter().zip(attempts).map(|(filter, attempts)| {
                self.wait_slot(
                    filter,
                    attempts,
                    gone,
                    true,
                    "the broker did not confirm the unsubscribe",
                )
            });
            futures::future::try_join_all(waits)
                .await
                .map(|_| ())
                .map_err(|e| self.fail(e, Operation::Unsubscribe))
        })
    }
}

/// `message` with this handle's origin header (for subscriptions that skip their own).
fn stamp(message: Message, origin: &str) -> Message {
    let mut headers = message.headers().clone();
    if headers.insert(ORIGIN_HEADER, origin).is_err() {
        return message;
    }
    Message::with_headers(message.topic().clone(), message.payload().clone(), headers)
}

impl<D: Driver> Drop for HubInner<D> {
    fn drop(&mut self) {
        // Dropped without `close`: stop every task; the driver goes with the last of them.
        self.tasks.cancel();
        self.router.close();
        self.supervisor.close();
    }
}

/// The [`PubSub`] operations, callable without importing the trait.
impl Hub {
    /// See [`PubSub::backend`].
    pub fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    /// See [`PubSub::max_payload`].
    pub fn max_payload(&self) -> usize {
        self.inner.max_payload()
    }

    /// See [`PubSub::publish`].
    pub async fn publish(&self, message: Message) -> Result<()> {
        match self.inner.publish_now(message) {
            Ok(result) => {
                cooperate().await;
                result
            }
            Err(message) => self.inner.publish(message).await,
        }
    }

    /// See [`PubSub::subscribe`].
    pub async fn subscribe(&self, pattern: Pattern) -> Result<Subscription> {
        self.subscribe_with(pattern, SubscribeOptions::default())
            .await
    }

    /// See [`PubSub::subscribe_with`].
    pub async fn subscribe_with(
        &self,
        pattern: Pattern,
        options: SubscribeOptions,
    ) -> Result<Subscription> {
        self.inner
            .clone()
            .subscribe_all(vec![pattern], options)
            .await
    }

    /// See [`PubSub::subscribe_all`].
    pub async fn subscribe_all(
        &self,
        patterns: Vec<Pattern>,
        options: SubscribeOptions,
    ) -> Result<Subscription> {
        self.inner.clone().subscribe_all(patterns, options).await
    }

    /// See [`PubSub::declare_stream`].
    pub async fn declare_stream(&self, stream: StreamConfig) -> Result<()> {
        self.inner.declare_stream(stream).await
    }

    /// See [`PubSub::join_group`].
    pub async fn join_group(&self, group: GroupConfig) -> Result<GroupSubscription> {
        self.inner.join_group(group).await
    }

    /// See [`PubSub::close`].
    pub async fn close(&self) -> Result<()> {
        self.inner.close().await
    }

    /// See [`PubSub::stats`].
    pub fn stats(&self) -> Stats {
        self.inner.stats()
    }

    /// See [`PubSub::connection_state`].
    pub fn connection_state(&self) -> ConnectionState {
        self.inner.supervisor().state()
    }

    /// See [`PubSub::watch_connection`].
    pub fn watch_connection(&self) -> watch::Receiver<ConnectionState> {
        self.inner.supervisor().watch()
    }
}

impl PubSub for Hub {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    fn max_payload(&self) -> usize {
        self.inner.max_payload()
    }

    fn publish(&self, message: Message) -> BoxFuture<'_, Result<()>> {
        match self.inner.publish_now(message) {
            Ok(result) => Box::pin(async move {
                cooperate().await;
                result
            }),
            Err(message) => self.inner.publish(message),
        }
    }

    fn subscribe_all(
        &self,
        patterns: Vec<Pattern>,
        options: SubscribeOptions,
    ) -> BoxFuture<'_, Result<Subscription>> {
        self.inner.clone().subscribe_all(patterns, options)
    }

    fn declare_stream(&self, stream: StreamConfig) -> BoxFuture<'_, Result<()>> {
        self.inner.declare_stream(stream)
    }

    fn join_group(&self, group: GroupConfig) -> BoxFuture<'_, Result<GroupSubscription>> {
        self.inner.join_group(group)
    }

    fn close(&self) -> BoxFuture<'_, Result<()>> {
        self.inner.close()
    }

    fn stats(&self) -> Stats {
        self.inner.stats()
    }

    fn connection_state(&self) -> ConnectionState {
        self.inner.supervisor().state()
    }

    fn watch_connection(&self) -> watch::Receiver<ConnectionState> {
        self.inner.supervisor().watch()
    }
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.debug(f)
    }
}
