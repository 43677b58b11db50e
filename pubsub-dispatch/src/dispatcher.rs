//! [`Dispatcher`]: the routes running over one [`PubSub`] handle, and its builder.

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pubsub_core::{Error, GroupConfig, Pattern, PubSub, SubscribeOptions};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::util::BoxCloneSyncService;
use tower_layer::Layer;
use tower_service::Service;

use crate::error::HandlerError;
use crate::handler::Handler;
use crate::hooks::{DeadLetterFailure, GapEvent, Hooks};
use crate::instruments::{Counters, Instruments, RouteMetrics, RouteStats};
use crate::meta::Incoming;
use crate::route::{DeadLetter, Retry, Route, RouteService};
use crate::shutdown::ShutdownReport;
use crate::worker::Source;
use crate::worker::{self, InFlight, RouteRuntime};

type Wrap = Box<dyn Fn(RouteService) -> RouteService + Send + Sync>;

/// Collects routes, defaults and hooks; [`DispatcherBuilder::start`] subscribes and runs them.
pub struct DispatcherBuilder {
    ps: Arc<dyn PubSub>,
    routes: Vec<Route>,
    retry: Retry,
    dead_letter: DeadLetter,
    layers: Vec<Wrap>,
    hooks: Hooks,
}

impl DispatcherBuilder {
    /// Adds a route.
    pub fn route(mut self, route: Route) -> Self {
        self.routes.push(route);
        self
    }

    /// Adds a route with the defaults: `Route::new(pattern, handler)`.
    pub fn handle<H, Args>(self, pattern: impl Into<String>, handler: H) -> Self
    where
        H: Handler<Args>,
        Args: 'static,
    {
        self.route(Route::new(pattern, handler))
    }

    /// The retry policy of routes that set none (default: [`Retry::default`]).
    pub fn retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    /// The dead-letter policy of routes that set none (default: `dlq.<topic>`).
    pub fn dead_letter(mut self, dead_letter: DeadLetter) -> Self {
        self.dead_letter = dead_letter;
        self
    }

    /// Wraps every route's handler (outside the route's own layers).
    pub fn layer<L>(mut self, layer: L) -> Self
    where
        L: Layer<RouteService> + Send + Sync + 'static,
        L::Service:
            Service<Incoming, Response = (), Error = HandlerError> + Clone + Send + Sync + 'static,
        <L::Service as Service<Incoming>>::Future: Send + 'static,
    {
        self.layers.push(Box::new(move |service| {
            BoxCloneSyncService::new(layer.layer(service))
        }));
        self
    }

    /// Called for every gap a route's subscription reports (messages dropped because the
    /// buffer overflowed, or a connection outage). Gaps are also logged and counted. Keep it
    /// quick: it runs on the route's reader.
    pub fn on_gap(mut self, hook: impl Fn(&GapEvent) + Send + Sync + 'static) -> Self {
        self.hooks.on_gap = Some(Box::new(hook));
        self
    }

    /// Called when a dead-letter copy could not be published after its retries: the message
    /// would otherwise be lost. Also logged at `error` and counted.
    pub fn on_dead_letter_failure(
        mut self,
        hook: impl Fn(DeadLetterFailure) + Send + Sync + 'static,
    ) -> Self {
        self.hooks.on_dead_letter_failure = Some(Box::new(hook));
        self
    }

    /// Checks every route, subscribes them all (resolving once every subscription is live) and
    /// starts handling. A bad pattern or a duplicate route name is an
    /// [`ErrorKind::Invalid`](pubsub_core::ErrorKind::Invalid) error; a failed subscribe is
    /// returned as it is (and the routes subscribed so far are dropped).
    pub async fn start(self) -> Result<Dispatcher, Error> {
        let mut names = HashSet::new();
        let mut checked = Vec::with_capacity(self.routes.len());
        for route in self.routes {
            let pattern = Pattern::new(&route.pattern).map_err(|e| {
                Error::invalid_config(format!("route {:?}: {e}", route.route_name()))
            })?;
            if !names.insert(route.route_name().to_owned()) {
                return Err(Error::invalid_config(format!(
                    "two routes are named {:?}; name them apart with Route::name",
                    route.route_name()
                )));
            }
            checked.push((pattern, route));
        }
        let mut subscribed = Vec::with_capacity(checked.len());
        for (pattern, mut route) in checked {
            let source = match route.group.take() {
                Some(spec) => {
                    let retry = route.retry.clone().unwrap_or_else(|| self.retry.clone());
                    let config = GroupConfig::new(&spec.name, vec![pattern])?
                        .with_max_deliveries(retry.attempts);
                    let config = (spec.configure)(config);
                    if route.dead_letter.is_none() {
                        route.dead_letter = Some(DeadLetter::topic(config.dead_letter().clone()));
                    }
                    Source::Group(self.ps.join_group(config).await?)
                }
                None => {
                    let mut options = SubscribeOptions::default();
                    if let Some(capacity) = route.buffer {
                        options = options.with_capacity(capacity);
                    }
                    Source::Broadcast(self.ps.subscribe_with(pattern, options).await?)
                }
            };
            subscribed.push((route, source));
        }

        let stop = CancellationToken::new();
        let stopping = Arc::new(AtomicBool::new(false));
        let hard = CancellationToken::new();
        let tracker = TaskTracker::new();
        let in_flight = Arc::new(InFlight::default());
        let not_started = Arc::new(AtomicU64::new(0));
        let hooks = Arc::new(self.hooks);
        let system = worker::messaging_system(self.ps.backend());
        let mut routes = Vec::with_capacity(subscribed.len());
        for (route, source) in subscribed {
            let name: Arc<str> = route.route_name().into();
            let mut service = route.service;
            for wrap in &self.layers {
                service = wrap(service);
            }
            let counters = Arc::new(Counters::default());
            let runtime = Arc::new(RouteRuntime {
                name: name.clone(),
                service,
                retry: route.retry.unwrap_or_else(|| self.retry.clone()),
                dead_letter: route
                    .dead_letter
                    .unwrap_or_else(|| self.dead_letter.clone()),
                ps: self.ps.clone(),
                system,
                inst: Instruments {
                    metrics: RouteMetrics::new(&name),
                    counters: counters.clone(),
                },
                hooks: hooks.clone(),
                in_flight: in_flight.clone(),
                stop: stop.clone(),
                stopping: stopping.clone(),
                hard: hard.clone(),
                tracker: tracker.clone(),
                not_started: not_started.clone(),
            });
            let reader: futures::future::BoxFuture<'static, ()> = match source {
                Source::Broadcast(subscription) => {
                    Box::pin(worker::read(runtime, route.mode, subscription.deliveries()))
                }
                Source::Group(member) => Box::pin(worker::read_group(runtime, route.mode, member)),
            };
            tracker.spawn(worker::until_hard_stop(hard.clone(), reader));
            tracing::debug!(route = %name, "route started");
            routes.push((name, counters));
        }
        Ok(Dispatcher {
            routes,
            stop,
            stopping,
            hard,
            tracker,
            in_flight,
            not_started,
        })
    }
}

impl fmt::Debug for DispatcherBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DispatcherBuilder")
            .field("backend", &self.ps.backend())
            .field("routes", &self.routes)
            .field("retry", &self.retry)
            .field("dead_letter", &self.dead_letter)
            .finish_non_exhaustive()
    }
}

/// Routes running over one [`PubSub`] handle: each route's subscription is read, its messages
/// decoded and handed to its handler with retries, dead letters, metrics and trace context.
///
/// ```
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use std::time::Duration;
/// use pubsub_core::{memory::MemoryBus, PubSub};
/// use pubsub_dispatch::{Dispatcher, Event, HandlerError, Publisher};
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Created { id: u64 }
///
/// async fn created(e: Event<Created>) -> Result<(), HandlerError> {
///     println!("order {} created", e.id);
///     Ok(())
/// }
///
/// let ps: Arc<dyn PubSub> = Arc::new(MemoryBus::new().connect().await?);
/// let dispatcher = Dispatcher::builder(ps.clone())
///     .handle("orders.*.created", created)
///     .start()
///     .await?;
/// Publisher::new(ps, "/docs")
///     .publish("orders.eu.created".parse()?, "order.created", &Created { id: 1 })
///     .await?;
/// let report = dispatcher.shutdown(Duration::from_secs(5)).await;
/// assert!(report.drained);
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
/// ```
pub struct Dispatcher {
    routes: Vec<(Arc<str>, Arc<Counters>)>,
    stop: CancellationToken,
    stopping: Arc<AtomicBool>,
    hard: CancellationToken,
    tracker: TaskTracker,
    in_flight: Arc<InFlight>,
    not_started: Arc<AtomicU64>,
}

impl Dispatcher {
    /// A builder over `ps` (the handle the routes subscribe with and dead letters are
    /// published on).
    pub fn builder(ps: Arc<dyn PubSub>) -> DispatcherBuilder {
        DispatcherBuilder {
            ps,
            routes: Vec::new(),
            retry: Retry::default(),
            dead_letter: DeadLetter::default(),
            layers: Vec::new(),
            hooks: Hooks::default(),
        }
    }

    /// The counters of the route named `route`.
    pub fn stats(&self, route: &str) -> Option<RouteStats> {
        self.routes
            .iter()
            .find(|(name, _)| &**name == route)
            .map(|(_, c)| c.snapshot())
    }

    /// The route names, in the order they were added.
    pub fn routes(&self) -> impl Iterator<Item = &str> {
        self.routes.iter().map(|(n, _)| &**n)
    }

    /// Messages being handled now, over all routes.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Stops taking new messages (every route unsubscribes), waits up to `deadline` for the
    /// handlers in flight (retries included), then drops those still running and says which.
    /// Messages received but not started are dropped and counted; in a group route they go
    /// back to the group at once, the deliveries in flight are settled as they finish, and the
    /// route then leaves the group (see [`Route::group`](crate::Route::group)).
    ///
    /// A handler that blocks its thread (no `.await`) cannot be cut off; keep blocking work in
    /// `spawn_blocking`.
    pub async fn shutdown(self, deadline: Duration) -> ShutdownReport {
        self.stopping.store(true, Ordering::Release);
        self.stop.cancel();
        self.tracker.close();
        let drained = tokio::time::timeout(deadline, self.tracker.wait())
            .await
            .is_ok();
        let cut_off = if drained {
            Vec::new()
        } else {
            let cut = self.in_flight.snapshot();
            self.hard.cancel();
            self.tracker.wait().await;
            for c in &cut {
                tracing::warn!(route = %c.route, topic = %c.topic, ce_id = c.id.as_deref().unwrap_or(""),
                    "shutdown deadline reached: handler cut off");
            }
            cut
        };
        ShutdownReport {
            drained,
            cut_off,
            not_started: self.not_started.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Dispatcher {
    /// Dropped without [`Dispatcher::shutdown`]: every route stops at once (handlers are
    /// dropped at their next `.await`).
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::Release);
        self.stop.cancel();
        self.hard.cancel();
    }
}

impl fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dispatcher")
            .field("routes", &self.routes().collect::<Vec<_>>())
            .field("in_flight", &self.in_flight())
            .finish()
    }
}
