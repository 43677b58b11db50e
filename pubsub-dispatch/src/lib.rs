//! Typed event handlers over any [`PubSub`](pubsub_core::PubSub) backend.
//!
//! A [`Dispatcher`] runs [`Route`]s: a pattern such as `orders.*.created` and an async handler
//! whose arguments are extractors ([`Event<T>`] decodes the payload by its `content-type`,
//! JSON by default; [`Raw`] takes the bytes; [`Meta`] the topic, headers, CloudEvents
//! attributes, attempt and trace context). Around each handler it provides:
//!
//! - **Concurrency** per route: one at a time (default), [`Route::ordered`] (several at once,
//!   one per topic, order kept even across retries) or [`Route::concurrency`] (unordered).
//! - **Retries** with the shared [`Backoff`], then a **dead-letter topic** (`dlq.<topic>` by
//!   default) with the error, attempt count and original topic in the headers of
//!   [`dead_letter`]. A payload that cannot be decoded goes there at once. A panicking handler
//!   is caught, counted, logged once as a structured `error` event (`the handler panicked`,
//!   with `route`, `attempt` and `panic` fields) and treated as a failure; the dispatcher keeps
//!   serving. The dispatcher installs no panic hook: Rust's default hook still prints the
//!   panic to stderr. An application that wants only the structured line sets its own hook
//!   once at start, e.g. `std::panic::set_hook(Box::new(|_| {}))`, or one that logs with
//!   `tracing`.
//! - **CloudEvents 1.0** binary mode: [`Publisher`] stamps `ce-id`, `ce-type`, `ce-source`,
//!   `ce-time`, `ce-specversion` and `content-type`; [`Meta`] reads them.
//! - **Trace context**: `traceparent`/`tracestate` (W3C) written by the [`Publisher`] and
//!   continued by the handler's span, which carries the OpenTelemetry messaging attributes
//!   (`messaging.system`, `messaging.destination.name`, `messaging.operation`).
//! - **Metrics** through the `metrics` crate ([`instruments`] lists them) and per-route
//!   counters ([`Dispatcher::stats`]).
//! - **Gaps** (messages lost to a full buffer or an outage) logged, counted and passed to
//!   [`DispatcherBuilder::on_gap`].
//! - **Middleware**: any tower [`Layer`](tower_layer::Layer) over [`Incoming`]; built in:
//!   [`TimeoutLayer`] and [`DedupLayer`] (by `ce-id`).
//! - **Graceful shutdown**: [`Dispatcher::shutdown`] stops taking messages, waits for the
//!   handlers in flight up to a deadline and reports what it cut off.
//!
//! ```
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use pubsub_core::PubSub;
//! use pubsub_dispatch::{Dispatcher, Event, HandlerError, Meta, Publisher, Raw, Retry, Route};
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct OrderCreated { id: u64, total_cents: u64 }
//!
//! async fn on_created(order: Event<OrderCreated>) -> Result<(), HandlerError> {
//!     if order.total_cents == 0 {
//!         return Err(HandlerError::permanent("empty order"));
//!     }
//!     Ok(())
//! }
//!
//! async fn on_dead_letter(meta: Meta) -> Result<(), HandlerError> {
//!     eprintln!("dead letter from {:?}: {:?}", meta.header("dlq-topic"), meta.header("dlq-error"));
//!     Ok(())
//! }
//!
//! let ps: Arc<dyn PubSub> = Arc::new(pubsub_core::memory::MemoryBus::new().connect().await?);
//! let dispatcher = Dispatcher::builder(ps.clone())
//!     .retry(Retry::attempts(3))
//!     .route(Route::new("orders.*.created", on_created).ordered(4))
//!     .route(Route::new("dlq.orders.>", on_dead_letter).name("dead-letters"))
//!     // A closure works as well; `?` converts any error into a `HandlerError`.
//!     .route(Route::new("orders.*.note", |Raw(bytes): Raw| async move {
//!         let note = std::str::from_utf8(&bytes)?;
//!         println!("note: {note}");
//!         Ok(())
//!     }))
//!     .start()
//!     .await?;
//!
//! let publisher = Publisher::new(ps, "/shop");
//! publisher
//!     .publish("orders.eu.created".parse()?, "order.created", &OrderCreated { id: 1, total_cents: 990 })
//!     .await?;
//! dispatcher.shutdown(Duration::from_secs(5)).await;
//! # Ok(()) }
//! # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
//! ```
//!
//! # Work shared in a group (at least once)
//!
//! A route given a [`Route::group`] runs as a member of a consumer group on a declared stream
//! instead of broadcast: dispatchers on other handles and in other processes share its
//! messages, and a message survives a handler's crash or a deploy. `Ok` acknowledges; a
//! failure or a panic negatively acknowledges with the retry backoff, so that the group
//! delivers it again (to any member); after the route's last attempt it goes to the group's
//! dead-letter topic (`dead-letter.<group>`) with the `dlq-*` headers. Delivery is at least
//! once: a handler deduplicates by the CloudEvents `id` ([`Meta::id`], or [`DedupLayer`] within
//! one process) where doing a message twice matters.
//!
//! ```
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use pubsub_core::{PubSub, StreamConfig};
//! use pubsub_dispatch::{Dispatcher, Event, HandlerError, Meta, Publisher, Retry, Route};
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Charge { order: u64, cents: u64 }
//!
//! async fn charge(c: Event<Charge>, meta: Meta) -> Result<(), HandlerError> {
//!     if c.cents == 0 {
//!         panic!("a charge of nothing"); // caught: a failed attempt, redelivered, then dead-lettered
//!     }
//!     if meta.attempt() == 1 && c.order % 2 == 1 {
//!         return Err(HandlerError::new("the card service timed out")); // delivered again
//!     }
//!     Ok(()) // acknowledged: never delivered again
//! }
//!
//! let ps: Arc<dyn PubSub> = Arc::new(pubsub_core::memory::MemoryBus::new().connect().await?);
//! ps.declare_stream(StreamConfig::new("charges.>".parse()?)).await?;
//! let dispatcher = Dispatcher::builder(ps.clone())
//!     .retry(Retry::attempts(3))
//!     .route(
//!         Route::new("charges.*", charge)
//!             .group_with("billing", |g| g.with_ack_deadline(Duration::from_secs(30)))
//!             .concurrency(8),
//!     )
//!     .start()
//!     .await?;
//! let mut dead = ps.subscribe("dead-letter.billing".parse()?).await?;
//! let publisher = Publisher::new(ps.clone(), "/shop");
//! for (order, cents) in [(1, 990), (2, 0)] {
//!     publisher.publish("charges.eu".parse()?, "charge", &Charge { order, cents }).await?;
//! }
//! let letter = dead.recv().await.expect("the charge of nothing");
//! assert_eq!(letter.headers().get("dlq-reason"), Some("panic"));
//! dispatcher.shutdown(Duration::from_secs(5)).await; // finishes and settles what is in flight
//! # Ok(()) }
//! # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
//! ```
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod cloudevents;
pub mod dead_letter;
mod dispatcher;
mod error;
mod extract;
mod handler;
mod hooks;
pub mod instruments;
mod meta;
pub mod middleware;
mod publisher;
mod route;
mod shutdown;
pub mod trace;
mod worker;

pub use dispatcher::{Dispatcher, DispatcherBuilder};
pub use error::{FailureKind, HandlerError};
pub use extract::{Event, FromIncoming, Json, Raw};
pub use handler::{Handler, HandlerService};
pub use hooks::{DeadLetterFailure, GapEvent};
pub use instruments::RouteStats;
pub use meta::{Incoming, Meta};
pub use middleware::{DedupLayer, TimeoutLayer};
pub use publisher::{OutgoingEvent, Published, Publisher};
pub use pubsub_core::Backoff;
pub use route::{DeadLetter, DeadLetterTarget, Mode, Retry, Route};
pub use shutdown::{CutOff, ShutdownReport};
pub use trace::{TraceContext, TraceParentError};
