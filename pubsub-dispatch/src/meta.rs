//! [`Meta`]: what a handler knows about the message besides its data, and [`Incoming`]: what
//! flows through the middleware stack.

use std::sync::Arc;
use std::time::SystemTime;

use pubsub_core::{Headers, Message, Topic};

use crate::cloudevents::{self, CE_ID, CE_SOURCE, CE_SPECVERSION, CE_SUBJECT, CE_TIME, CE_TYPE};
use crate::trace::TraceContext;

/// The metadata of one message as one handler attempt sees it: topic, headers, CloudEvents
/// attributes, the route, the attempt number and the trace context.
///
/// Cheap to clone (one reference count). Take it as a handler argument.
#[derive(Clone, Debug)]
pub struct Meta {
    shared: Arc<Shared>,
    attempt: u32,
    trace: TraceContext,
}

#[derive(Debug)]
struct Shared {
    message: Message,
    route: Arc<str>,
    parent: Option<TraceContext>,
}

impl Meta {
    /// Metadata for attempt `attempt` (from 1) of `message` on `route`; the handler's trace
    /// context is a child of the message's `traceparent`, or a new trace without one.
    pub fn new(message: Message, route: Arc<str>, attempt: u32) -> Self {
        let parent = TraceContext::from_headers(message.headers());
        let trace = parent
            .as_ref()
            .map_or_else(TraceContext::new_root, TraceContext::child);
        Meta {
            shared: Arc::new(Shared {
                message,
                route,
                parent,
            }),
            attempt,
            trace,
        }
    }

    /// The same message for the next attempt (a new span in the same trace).
    pub(crate) fn next_attempt(&self) -> Self {
        Meta {
            shared: self.shared.clone(),
            attempt: self.attempt + 1,
            trace: self
                .shared
                .parent
                .as_ref()
                .map_or_else(|| self.trace.child(), TraceContext::child),
        }
    }

    /// The whole message.
    pub fn message(&self) -> &Message {
        &self.shared.message
    }

    /// The topic it was published to.
    pub fn topic(&self) -> &Topic {
        self.shared.message.topic()
    }

    /// All headers.
    pub fn headers(&self) -> &Headers {
        self.shared.message.headers()
    }

    /// One header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers().get(name)
    }

    /// The route handling it (its name; the pattern unless named).
    pub fn route(&self) -> &str {
        &self.shared.route
    }

    /// Which attempt this is: 1 for the first, 2 for the first retry, …
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// CloudEvents `ce-id`.
    pub fn id(&self) -> Option<&str> {
        self.header(CE_ID)
    }

    /// CloudEvents `ce-type`.
    pub fn event_type(&self) -> Option<&str> {
        self.header(CE_TYPE)
    }

    /// CloudEvents `ce-source`.
    pub fn source(&self) -> Option<&str> {
        self.header(CE_SOURCE)
    }

    /// CloudEvents `ce-specversion`.
    pub fn spec_version(&self) -> Option<&str> {
        self.header(CE_SPECVERSION)
    }

    /// CloudEvents `ce-subject`.
    pub fn subject(&self) -> Option<&str> {
        self.header(CE_SUBJECT)
    }

    /// CloudEvents `ce-time`, when present and valid RFC 3339.
    pub fn time(&self) -> Option<SystemTime> {
        self.header(CE_TIME).and_then(cloudevents::parse_time)
    }

    /// The payload's `content-type`.
    pub fn content_type(&self) -> Option<&str> {
        self.header(cloudevents::CONTENT_TYPE)
    }

    /// This attempt's own trace context: the publisher's trace id, a new span id. It is the
    /// current context ([`TraceContext::current`]) while the handler runs, so what the handler
    /// publishes with a [`Publisher`](crate::Publisher) continues the trace.
    pub fn trace(&self) -> &TraceContext {
        &self.trace
    }

    /// The publisher's context from the `traceparent` header, if it had a valid one.
    pub fn parent_trace(&self) -> Option<&TraceContext> {
        self.shared.parent.as_ref()
    }
}

/// One attempt at one message: the request type of the handler [`Service`](tower_service::Service)
/// and of every middleware [`Layer`](tower_layer::Layer).
#[derive(Clone, Debug)]
pub struct Incoming {
    meta: Meta,
}

impl Incoming {
    /// Wraps metadata (which holds the message).
    pub fn new(meta: Meta) -> Self {
        Incoming { meta }
    }

    /// The metadata.
    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// The message.
    pub fn message(&self) -> &Message {
        self.meta.message()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cloudevents_and_trace() {
        let parent = TraceContext::new_root();
        let mut h = Headers::new();
        h.insert(CE_ID, "1").unwrap();
        h.insert(CE_TYPE, "order.created").unwrap();
        h.insert(CE_SOURCE, "/orders").unwrap();
        h.insert(CE_SPECVERSION, "1.0").unwrap();
        h.insert(CE_TIME, "2026-11-30T19:00:00Z").unwrap();
        parent.inject(&mut h);
        let m = Message::with_headers(Topic::new("orders.created").unwrap(), "{}", h);
        let meta = Meta::new(m, "r".into(), 1);
        assert_eq!(meta.id(), Some("1"));
        assert_eq!(meta.event_type(), Some("order.created"));
        assert_eq!(meta.source(), Some("/orders"));
        assert_eq!(meta.spec_version(), Some("1.0"));
        assert!(meta.time().is_some());
        assert_eq!(meta.trace().trace_id(), parent.trace_id());
        assert_ne!(meta.trace().span_id(), parent.span_id());
        let next = meta.next_attempt();
        assert_eq!(next.attempt(), 2);
        assert_eq!(next.trace().trace_id(), parent.trace_id());
        assert_ne!(next.trace().span_id(), meta.trace().span_id());
    }

    #[test]
    fn without_traceparent_a_new_trace_starts() {
        let m = Message::new(Topic::new("a").unwrap(), "");
        let meta = Meta::new(m, "r".into(), 1);
        assert!(meta.parent_trace().is_none());
        assert_ne!(meta.trace().trace_id(), 0);
        assert_eq!(
            meta.next_attempt().trace().trace_id(),
            meta.trace().trace_id()
        );
    }
}
