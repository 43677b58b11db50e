//! Handler arguments read from the message: [`Event`], [`Json`], [`Raw`], [`Meta`] and
//! [`Message`], in any combination (up to four), like axum's extractors.

use std::ops::{Deref, DerefMut};

use bytes::Bytes;
use pubsub_core::Message;
use serde::de::DeserializeOwned;

use crate::cloudevents;
use crate::error::HandlerError;
use crate::meta::{Incoming, Meta};

/// Something a handler can take as an argument. A failure is a [`HandlerError`] (for the data
/// extractors a [`FailureKind::Decode`](crate::FailureKind::Decode), which dead-letters the
/// message at once, without calling the handler).
///
/// Implement it for your own extractors (say, a tenant read from a header).
pub trait FromIncoming: Sized {
    /// Reads the argument from one attempt at one message.
    fn from_incoming(incoming: &Incoming) -> Result<Self, HandlerError>;
}

/// The decoded event data together with its [`Meta`]. Dereferences to the data.
///
/// The payload is decoded by its `content-type`: JSON (`serde_json`) when it is absent,
/// `application/json`, `text/json` or any `…+json`; any other content type is a decode error
/// (take [`Raw`] for those).
#[derive(Debug, Clone)]
pub struct Event<T> {
    /// The decoded data.
    pub data: T,
    /// The message's metadata.
    pub meta: Meta,
}

impl<T> Deref for Event<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.data
    }
}

impl<T> DerefMut for Event<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.data
    }
}

impl<T: DeserializeOwned> FromIncoming for Event<T> {
    fn from_incoming(incoming: &Incoming) -> Result<Self, HandlerError> {
        let Json(data) = Json::from_incoming(incoming)?;
        Ok(Event {
            data,
            meta: incoming.meta().clone(),
        })
    }
}

/// Only the decoded data (same decoding as [`Event`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Json<T>(pub T);

impl<T: DeserializeOwned> FromIncoming for Json<T> {
    fn from_incoming(incoming: &Incoming) -> Result<Self, HandlerError> {
        let meta = incoming.meta();
        let content_type = meta.content_type();
        if !cloudevents::is_json(content_type) {
            return Err(HandlerError::decode(format!(
                "content-type {:?} is not JSON; take `Raw` to handle other payloads",
                content_type.unwrap_or_default()
            )));
        }
        serde_json::from_slice(incoming.message().payload())
            .map(Json)
            .map_err(HandlerError::decode)
    }
}

/// The payload bytes as they are, whatever the content type.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Raw(pub Bytes);

impl FromIncoming for Raw {
    fn from_incoming(incoming: &Incoming) -> Result<Self, HandlerError> {
        Ok(Raw(incoming.message().payload().clone()))
    }
}

impl FromIncoming for Meta {
    fn from_incoming(incoming: &Incoming) -> Result<Self, HandlerError> {
        Ok(incoming.meta().clone())
    }
}

impl FromIncoming for Message {
    fn from_incoming(incoming: &Incoming) -> Result<Self, HandlerError> {
        Ok(incoming.message().clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FailureKind;
    use pubsub_core::{Headers, Topic};

    fn incoming(payload: &str, content_type: Option<&str>) -> Incoming {
        let mut h = Headers::new();
        if let Some(ct) = content_type {
            h.insert("content-type", ct).unwrap();
        }
        let m = Message::with_headers(Topic::new("t").unwrap(), payload.to_owned(), h);
        Incoming::new(Meta::new(m, "r".into(), 1))
    }

    #[test]
    fn decodes_json_by_content_type() {
        let Json(v): Json<Vec<u8>> = Json::from_incoming(&incoming("[1,2]", None)).unwrap();
        assert_eq!(v, [1, 2]);
        let e: Event<Vec<u8>> =
            Event::from_incoming(&incoming("[3]", Some("application/json"))).unwrap();
        assert_eq!(*e, [3]);
        let err = Json::<Vec<u8>>::from_incoming(&incoming("[3]", Some("text/plain"))).unwrap_err();
        assert_eq!(err.kind(), FailureKind::Decode);
        let err = Json::<Vec<u8>>::from_incoming(&incoming("{", None)).unwrap_err();
        assert_eq!(err.kind(), FailureKind::Decode);
        let Raw(b) = Raw::from_incoming(&incoming("x", Some("text/plain"))).unwrap();
        assert_eq!(b.as_ref(), b"x");
    }
}
