//! [`Route`]: a pattern, a handler, and how to run it (concurrency, order, retries, dead
//! letters, middleware).

use std::fmt;

use pubsub_core::{Backoff, GroupConfig, Topic};
use tower::util::BoxCloneSyncService;
use tower_layer::Layer;
use tower_service::Service;

use crate::error::HandlerError;
use crate::handler::{Handler, HandlerService};
use crate::meta::Incoming;

/// The boxed middleware stack of a route.
pub(crate) type RouteService = BoxCloneSyncService<Incoming, (), HandlerError>;

/// How a route runs its handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mode {
    /// One message at a time, in arrival order (the default). Retries of a message finish
    /// before the next message starts.
    Sequential,
    /// Up to `lanes` messages at once, but at most one per topic: messages of one topic are
    /// handled in arrival order, retries included (a topic always maps to the same lane).
    Ordered {
        /// How many messages may run at once.
        lanes: usize,
    },
    /// Up to `limit` messages at once, in any order. A message waiting for its retry holds its
    /// place.
    Unordered {
        /// How many messages may run at once.
        limit: usize,
    },
}

/// How often to try a message, and how long to wait between tries.
///
/// The waits come from the shared [`Backoff`] (retry `n` waits `backoff.delay(n - 1)`).
///
/// ```
/// use std::time::Duration;
/// use pubsub_dispatch::{Backoff, Retry};
/// let retry = Retry::attempts(5).with_backoff(Backoff::default().with_initial(Duration::from_millis(50)));
/// assert_eq!(retry.attempts, 5);
/// assert_eq!(Retry::none().attempts, 1);
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Retry {
    /// Attempts in all, the first included (at least 1).
    pub attempts: u32,
    /// The waits between attempts.
    pub backoff: Backoff,
}

impl Retry {
    /// `attempts` attempts in all (at least 1) with the default backoff.
    pub fn attempts(attempts: u32) -> Self {
        Retry {
            attempts: attempts.max(1),
            backoff: Backoff::default(),
        }
    }

    /// One attempt: a failure is dead-lettered at once.
    pub fn none() -> Self {
        Retry::attempts(1)
    }

    /// Sets the waits between attempts.
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }
}

impl Default for Retry {
    /// 3 attempts, 100 ms then 200 ms apart (the default [`Backoff`]).
    fn default() -> Self {
        Retry::attempts(3)
    }
}

/// Where a message goes after its last failed attempt, and how hard to try getting it there.
///
/// The dead-letter message keeps the payload and every header, and adds the `dlq-*` headers
/// of [`dead_letter`](crate::dead_letter). Publishing it is retried (`publish_attempts`, with
/// `backoff`); if that fails too the loss is reported: an `error` log, the
/// `pubsub_dispatch_dead_letter_failures_total` metric, the route's counter, and the
/// [`on_dead_letter_failure`](crate::DispatcherBuilder::on_dead_letter_failure) hook, which
/// receives the message to keep it elsewhere.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct DeadLetter {
    /// The dead-letter topic.
    pub target: DeadLetterTarget,
    /// Publish attempts for the dead-letter message (at least 1).
    pub publish_attempts: u32,
    /// Waits between those attempts.
    pub backoff: Backoff,
}

/// The dead-letter topic of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeadLetterTarget {
    /// `<prefix>.<original topic>` (the default, with prefix `dlq`).
    Prefix(String),
    /// One topic for every message of the route.
    Topic(Topic),
}

impl DeadLetter {
    /// `<prefix>.<original topic>`.
    pub fn prefix(prefix: impl Into<String>) -> Self {
        DeadLetter {
            target: DeadLetterTarget::Prefix(prefix.into()),
            ..DeadLetter::default()
        }
    }

    /// Always `topic`.
    pub fn topic(topic: Topic) -> Self {
        DeadLetter {
            target: DeadLetterTarget::Topic(topic),
            ..DeadLetter::default()
        }
    }

    /// Sets how often publishing the dead-letter message is tried (at least 1).
    pub fn with_publish_attempts(mut self, attempts: u32) -> Self {
        self.publish_attempts = attempts.max(1);
        self
    }

    /// Sets the waits between those attempts.
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The dead-letter topic for a message first published to `original`.
    pub fn topic_for(&self, original: &Topic) -> Result<Topic, pubsub_core::Error> {
        match &self.target {
            DeadLetterTarget::Topic(t) => Ok(t.clone()),
            DeadLetterTarget::Prefix(p) => Ok(Topic::new(&format!("{p}.{original}"))?),
        }
    }
}

impl Default for DeadLetter {
    /// `dlq.<topic>`, 5 publish attempts with the default backoff.
    fn default() -> Self {
        DeadLetter {
            target: DeadLetterTarget::Prefix("dlq".to_owned()),
            publish_attempts: 5,
            backoff: Backoff::default(),
        }
    }
}

/// A pattern and its handler, and how to run them.
///
/// ```
/// use std::time::Duration;
/// use pubsub_dispatch::{Event, HandlerError, Retry, Route, TimeoutLayer};
/// #[derive(serde::Deserialize)]
/// struct Shipped { order: u64 }
/// async fn shipped(e: Event<Shipped>) -> Result<(), HandlerError> { Ok(()) }
///
/// let route = Route::new("orders.*.shipped", shipped)
///     .name("shipped")
///     .ordered(8)                       // 8 topics at once, each in order
///     .retry(Retry::attempts(5))
///     .layer(TimeoutLayer::new(Duration::from_secs(10)));
/// ```
pub struct Route {
    pub(crate) pattern: String,
    pub(crate) name: Option<String>,
    pub(crate) service: RouteService,
    pub(crate) mode: Mode,
    pub(crate) retry: Option<Retry>,
    pub(crate) dead_letter: Option<DeadLetter>,
    pub(crate) buffer: Option<usize>,
    pub(crate) group: Option<GroupSpec>,
}

/// The group a route's handler runs in: its name and how to adjust its settings.
pub(crate) struct GroupSpec {
    pub name: String,
    pub configure: Box<dyn FnOnce(GroupConfig) -> GroupConfig + Send + Sync>,
}

impl Route {
    /// A route from `pattern` (checked when the dispatcher starts) to `handler`.
    pub fn new<H, Args>(pattern: impl Into<String>, handler: H) -> Self
    where
        H: Handler<Args>,
        Args: 'static,
    {
        Route {
            pattern: pattern.into(),
            name: None,
            service: BoxCloneSyncService::new(HandlerService::new(handler)),
            mode: Mode::Sequential,
            retry: None,
            dead_letter: None,
            buffer: None,
            group: None,
        }
    }

    /// Names the route (metrics label `route`, logs, `dlq-route`); the pattern by default.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Runs up to `limit` messages at once, in any order ([`Mode::Unordered`]); 1 is
    /// [`Mode::Sequential`].
    pub fn concurrency(mut self, limit: usize) -> Self {
        self.mode = match limit {
            0 | 1 => Mode::Sequential,
            limit => Mode::Unordered { limit },
        };
        self
    }

    /// Runs up to `lanes` messages at once, at most one per topic, each topic in order
    /// ([`Mode::Ordered`]); 1 is [`Mode::Sequential`].
    pub fn ordered(mut self, lanes: usize) -> Self {
        self.mode = match lanes {
            0 | 1 => Mode::Sequential,
            lanes => Mode::Ordered { lanes },
        };
        self
    }

    /// Sets the retry policy (the dispatcher's default otherwise).
    pub fn retry(mut self, retry: Retry) -> Self {
        self.retry = Some(retry);
        self
    }

    /// Sets the dead-letter policy (the dispatcher's default otherwise).
    pub fn dead_letter(mut self, dead_letter: DeadLetter) -> Self {
        self.dead_letter = Some(dead_letter);
        self
    }

    /// Sets the subscription's buffer (the handle's default otherwise). When it overflows,
    /// the loss is reported as a gap.
    pub fn buffer(mut self, capacity: usize) -> Self {
        self.buffer = Some(capacity.max(1));
        self
    }

    /// Runs the route as a member of the consumer group `name` on the route's pattern, instead
    /// of broadcast: the messages are shared with the group's other members (other
    /// dispatchers, other processes), and survive a crash. The pattern must be under a stream
    /// declared on the dispatcher's handle
    /// ([`PubSub::declare_stream`](pubsub_core::PubSub::declare_stream)).
    ///
    /// In a group, each delivery is one attempt ([`Meta::attempt`](crate::Meta::attempt) is
    /// the delivery count, across members and restarts): `Ok` acknowledges it; a retryable
    /// failure (an error or a panic) before the route's last attempt negatively acknowledges
    /// it with the retry backoff, so that the group delivers it again, to any member; the last
    /// failure, or a permanent one, publishes it to the dead-letter topic (by default the
    /// group's, `dead-letter.<name>`) and acknowledges it. A delivery whose member crashed
    /// comes back after the group's ack deadline. This is at least once: a handler may see a
    /// message again after a crash or a lost acknowledgement, so it deduplicates by the
    /// CloudEvents `id` ([`Meta::id`](crate::Meta::id)) where a repeat matters.
    /// [`Dispatcher::shutdown`](crate::Dispatcher::shutdown) finishes and settles the
    /// deliveries in flight, gives back those not started, and then leaves the group.
    pub fn group(self, name: impl Into<String>) -> Self {
        self.group_with(name, |config| config)
    }

    /// [`Route::group`], with the group's settings adjusted by `configure` (ack deadline,
    /// prefetch, where a new group starts). The maximum deliveries are the route's retry
    /// attempts.
    pub fn group_with(
        mut self,
        name: impl Into<String>,
        configure: impl FnOnce(GroupConfig) -> GroupConfig + Send + Sync + 'static,
    ) -> Self {
        self.group = Some(GroupSpec {
            name: name.into(),
            configure: Box::new(configure),
        });
        self
    }

    /// Wraps the handler in a middleware layer. Layers added later wrap those added before.
    pub fn layer<L>(mut self, layer: L) -> Self
    where
        L: Layer<RouteService>,
        L::Service:
            Service<Incoming, Response = (), Error = HandlerError> + Clone + Send + Sync + 'static,
        <L::Service as Service<Incoming>>::Future: Send + 'static,
    {
        self.service = BoxCloneSyncService::new(layer.layer(self.service));
        self
    }

    /// The route's name: the one given, else the pattern.
    pub fn route_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.pattern)
    }
}

impl fmt::Debug for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Route")
            .field("pattern", &self.pattern)
            .field("name", &self.name)
            .field("mode", &self.mode)
            .field("retry", &self.retry)
            .field("dead_letter", &self.dead_letter)
            .field("group", &self.group.as_ref().map(|g| &g.name))
            .finish_non_exhaustive()
    }
}
