//! [`Message`]: a topic, an opaque payload and headers.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use crate::{Error, Headers, Position, Topic};

/// A message: topic, binary payload (may be empty) and headers.
///
/// Cloning is one reference-count increment, so fan-out to many subscriptions copies nothing.
///
/// ```
/// use pubsub_core::Message;
/// let m = Message::builder("room.42.msg".parse()?)
///     .payload("hello")
///     .header("sender", "ada")
///     .build()?;
/// assert_eq!(m.payload().as_ref(), b"hello");
/// assert_eq!(m.headers().get("sender"), Some("ada"));
/// # Ok::<(), pubsub_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Message(Arc<Parts>);

#[derive(Clone)]
struct Parts {
    topic: Topic,
    payload: Bytes,
    headers: Headers,
    position: Option<Position>,
}

/// Messages are equal when their topic, payload and headers are: the position is where a
/// copy was delivered from, not part of the message.
impl PartialEq for Parts {
    fn eq(&self, other: &Self) -> bool {
        self.topic == other.topic && self.payload == other.payload && self.headers == other.headers
    }
}

impl Eq for Parts {}

impl Message {
    /// A message without headers.
    pub fn new(topic: Topic, payload: impl Into<Bytes>) -> Self {
        Self::with_headers(topic, payload, Headers::new())
    }

    /// A message with headers.
    pub fn with_headers(topic: Topic, payload: impl Into<Bytes>, headers: Headers) -> Self {
        Message(Arc::new(Parts {
            topic,
            payload: payload.into(),
            headers,
            position: None,
        }))
    }

    /// Starts a [`MessageBuilder`].
    pub fn builder(topic: Topic) -> MessageBuilder {
        MessageBuilder {
            topic,
            payload: Bytes::new(),
            headers: Headers::new(),
            error: None,
        }
    }

    /// The topic.
    pub fn topic(&self) -> &Topic {
        &self.0.topic
    }

    /// The payload bytes.
    pub fn payload(&self) -> &Bytes {
        &self.0.payload
    }

    /// The payload as text, when it is UTF-8.
    pub fn payload_str(&self) -> Option<&str> {
        std::str::from_utf8(self.payload()).ok()
    }

    /// The headers.
    pub fn headers(&self) -> &Headers {
        &self.0.headers
    }

    /// Where the message stands in its stream, when it was delivered from a topic under a
    /// declared [stream](crate::StreamConfig): pass it back as
    /// [`StartAt::After`](crate::StartAt::After) to resume after it. `None` for a message
    /// outside any stream (and for one being published).
    pub fn position(&self) -> Option<&Position> {
        self.0.position.as_ref()
    }

    /// The message with its stream position set (drivers and the kit set it on delivery; a
    /// position on a message being published is ignored).
    pub fn with_position(mut self, position: Position) -> Self {
        Arc::make_mut(&mut self.0).position = Some(position);
        self
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("topic", &self.0.topic.as_str())
            .field("payload_len", &self.0.payload.len())
            .field("headers", &self.0.headers)
            .field("position", &self.0.position)
            .finish()
    }
}

/// Builds a [`Message`]; the first invalid header is reported by [`MessageBuilder::build`].
#[derive(Debug)]
#[must_use]
pub struct MessageBuilder {
    topic: Topic,
    payload: Bytes,
    headers: Headers,
    error: Option<Error>,
}

impl MessageBuilder {
    /// Sets the payload.
    pub fn payload(mut self, payload: impl Into<Bytes>) -> Self {
        self.payload = payload.into();
        self
    }

    /// Adds (or replaces) a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        if self.error.is_none() {
            if let Err(e) = self.headers.insert(name, value) {
                self.error = Some(e.into());
            }
        }
        self
    }

    /// Finishes the message, or returns the first header error.
    pub fn build(self) -> Result<Message, Error> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(Message::with_headers(
                self.topic,
                self.payload,
                self.headers,
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn builder_reports_first_bad_header() {
        let t = Topic::new("a").unwrap();
        let err = Message::builder(t.clone())
            .header("ok", "1")
            .header("bad name", "2")
            .header("", "3")
            .build()
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid);
        assert!(err.to_string().contains("bad name"), "{err}");
        let m = Message::builder(t).payload(vec![0u8, 255]).build().unwrap();
        assert_eq!(m.payload().as_ref(), &[0, 255]);
        assert!(m.headers().is_empty());
    }
}
