//! [`Publisher`]: publishes CloudEvents (binary mode) with trace context.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use pubsub_core::{Error, ErrorKind, Headers, Message, PubSub, Topic};
use serde::Serialize;
use tracing::{field, Instrument};

use crate::cloudevents::{
    self, CE_ID, CE_SOURCE, CE_SPECVERSION, CE_SUBJECT, CE_TIME, CE_TYPE, CONTENT_TYPE,
    SPEC_VERSION,
};
use crate::trace::TraceContext;
use crate::worker::messaging_system;

/// Publishes events as CloudEvents 1.0 in binary content mode: the data is the payload, and
/// every message gets `ce-id` (a random UUID), `ce-type`, `ce-source` (the publisher's),
/// `ce-time` (RFC 3339, now), `ce-specversion: 1.0`, `content-type`, and `traceparent` /
/// `tracestate`: a child of the current context ([`TraceContext::current`], set while a
/// handler runs) or a new trace.
///
/// ```
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use pubsub_core::{memory::MemoryBus, PubSub};
/// use pubsub_dispatch::Publisher;
///
/// let ps: Arc<dyn PubSub> = Arc::new(MemoryBus::new().connect().await?);
/// let mut sub = ps.subscribe("orders.>".parse()?).await?;
/// let publisher = Publisher::new(ps, "/orders-service");
/// let sent = publisher
///     .publish("orders.eu.created".parse()?, "order.created", &serde_json::json!({"id": 7}))
///     .await?;
/// let got = sub.recv().await.unwrap();
/// assert_eq!(got.headers().get("ce-id"), Some(sent.id.as_str()));
/// assert_eq!(got.headers().get("ce-source"), Some("/orders-service"));
/// assert_eq!(got.headers().get("content-type"), Some("application/json"));
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
/// ```
#[derive(Clone)]
pub struct Publisher {
    ps: Arc<dyn PubSub>,
    source: Arc<str>,
}

/// What [`Publisher`] stamped on a message it published.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Published {
    /// The `ce-id`.
    pub id: String,
    /// The context written as `traceparent` (the publish span's).
    pub trace: TraceContext,
}

/// One event to publish with [`Publisher::send`], for attributes beyond the common ones.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct OutgoingEvent {
    /// The topic.
    pub topic: Topic,
    /// `ce-type`.
    pub event_type: String,
    /// `ce-subject`, if any.
    pub subject: Option<String>,
    /// `content-type`.
    pub content_type: String,
    /// The data.
    pub payload: Bytes,
    /// More headers (CloudEvents extensions as `ce-<name>`, or anything else).
    pub headers: Headers,
}

impl OutgoingEvent {
    /// An event with JSON data.
    pub fn json<T: Serialize + ?Sized>(
        topic: Topic,
        event_type: impl Into<String>,
        data: &T,
    ) -> Result<Self, Error> {
        let payload = serde_json::to_vec(data).map_err(|e| {
            Error::new(
                ErrorKind::Invalid,
                "the event data cannot be encoded as JSON",
            )
            .with_source(e)
        })?;
        Ok(Self::raw(topic, event_type, cloudevents::JSON, payload))
    }

    /// An event with data of any content type.
    pub fn raw(
        topic: Topic,
        event_type: impl Into<String>,
        content_type: impl Into<String>,
        payload: impl Into<Bytes>,
    ) -> Self {
        OutgoingEvent {
            topic,
            event_type: event_type.into(),
            subject: None,
            content_type: content_type.into(),
            payload: payload.into(),
            headers: Headers::new(),
        }
    }

    /// Sets `ce-subject`.
    pub fn with_subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// Adds a header (an invalid one is reported by [`Publisher::send`]).
    pub fn with_header(
        mut self,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<Self, Error> {
        self.headers.insert(name, value)?;
        Ok(self)
    }
}

impl Publisher {
    /// A publisher on `ps` whose events carry `ce-source: source`.
    pub fn new(ps: Arc<dyn PubSub>, source: impl Into<String>) -> Self {
        Publisher {
            ps,
            source: source.into().into(),
        }
    }

    /// Publishes `data` as JSON with `ce-type: event_type`.
    pub async fn publish<T: Serialize + ?Sized>(
        &self,
        topic: Topic,
        event_type: &str,
        data: &T,
    ) -> Result<Published, Error> {
        self.send(OutgoingEvent::json(topic, event_type, data)?)
            .await
    }

    /// Publishes `payload` as it is, with its content type.
    pub async fn publish_raw(
        &self,
        topic: Topic,
        event_type: &str,
        content_type: &str,
        payload: impl Into<Bytes>,
    ) -> Result<Published, Error> {
        self.send(OutgoingEvent::raw(topic, event_type, content_type, payload))
            .await
    }

    /// Publishes one event.
    pub async fn send(&self, event: OutgoingEvent) -> Result<Published, Error> {
        let (message, published) = self.stamp(event)?;
        let span = tracing::info_span!(
            "publish",
            otel.name = field::Empty,
            otel.kind = "producer",
            messaging.system = messaging_system(self.ps.backend()),
            messaging.destination.name = message.topic().as_str(),
            messaging.operation = "publish",
            messaging.message.id = published.id.as_str(),
            trace_id = field::Empty,
            span_id = field::Empty,
        );
        if !span.is_disabled() {
            span.record("otel.name", format!("{} publish", message.topic()));
            span.record("trace_id", published.trace.trace_id_hex());
            span.record("span_id", published.trace.span_id_hex());
        }
        self.ps.publish(message).instrument(span).await?;
        Ok(published)
    }

    /// The message [`Publisher::send`] would publish, and what it stamped.
    pub fn stamp(&self, event: OutgoingEvent) -> Result<(Message, Published), Error> {
        let id = cloudevents::new_id();
        let trace = TraceContext::current().map_or_else(TraceContext::new_root, |c| c.child());
        let mut headers = event.headers;
        headers.insert(CE_ID, id.clone())?;
        headers.insert(CE_SPECVERSION, SPEC_VERSION)?;
        headers.insert(CE_TYPE, event.event_type)?;
        headers.insert(CE_SOURCE, &*self.source)?;
        headers.insert(CE_TIME, cloudevents::format_time(SystemTime::now()))?;
        if let Some(subject) = event.subject {
            headers.insert(CE_SUBJECT, subject)?;
        }
        headers.insert(CONTENT_TYPE, event.content_type)?;
        trace.inject(&mut headers);
        let message = Message::with_headers(event.topic, event.payload, headers);
        Ok((message, Published { id, trace }))
    }

    /// The handle it publishes on.
    pub fn pubsub(&self) -> &Arc<dyn PubSub> {
        &self.ps
    }
}

impl fmt::Debug for Publisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publisher")
            .field("backend", &self.ps.backend())
            .field("source", &self.source)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pubsub_core::memory::MemoryBus;

    #[tokio::test]
    async fn stamps_and_continues_the_current_trace() {
        let ps: Arc<dyn PubSub> = Arc::new(MemoryBus::new().connect().await.unwrap());
        let p = Publisher::new(ps, "/test");
        let t = Topic::new("a.b").unwrap();
        let (m, sent) = p
            .stamp(
                OutgoingEvent::json(t.clone(), "x", &[1])
                    .unwrap()
                    .with_subject("s"),
            )
            .unwrap();
        let h = m.headers();
        assert_eq!(h.get(CE_ID), Some(sent.id.as_str()));
        assert_eq!(h.get(CE_SPECVERSION), Some("1.0"));
        assert_eq!(h.get(CE_SUBJECT), Some("s"));
        assert!(cloudevents::parse_time(h.get(CE_TIME).unwrap()).is_some());
        assert_eq!(TraceContext::from_headers(h), Some(sent.trace.clone()));

        let outer = TraceContext::new_root();
        let (m2, sent2) = outer
            .clone()
            .scope(async {
                p.stamp(OutgoingEvent::raw(t, "y", "text/plain", "hi"))
                    .unwrap()
            })
            .await;
        assert_eq!(sent2.trace.trace_id(), outer.trace_id());
        assert_ne!(sent2.trace.span_id(), outer.span_id());
        assert_ne!(sent2.id, sent.id);
        assert_eq!(m2.headers().get(CONTENT_TYPE), Some("text/plain"));
    }
}
