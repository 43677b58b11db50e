//! Messages for a broker without headers: each message travels as one payload, in the
//! [`envelope`] or (raw payloads, for interoperation with other clients of the
//! broker) as its payload alone.

use bytes::Bytes;

use super::envelope;
use crate::{Error, Message, Result, Topic};

/// The bytes to send for `message`.
///
/// With `raw_payloads`, the payload as it is; a message with headers is then refused with an
/// `Unsupported` error, since only the envelope carries them. Otherwise the envelope of headers
/// and payload, refused before any I/O when larger than `max_frame` bytes.
pub fn to_payload(message: &Message, raw_payloads: bool, max_frame: usize) -> Result<Bytes> {
    if raw_payloads {
        if !message.headers().is_empty() {
            return Err(Error::unsupported(
                "headers need the envelope, and this handle sends raw payloads",
            ));
        }
        return Ok(message.payload().clone());
    }
    let size = envelope::encoded_len(message.headers(), message.payload().len());
    if size > max_frame {
        return Err(Error::payload_too_large(size, max_frame));
    }
    Ok(envelope::encode(message.headers(), message.payload()))
}

/// The message `payload`, received on `topic`, carries.
///
/// With `raw_payloads`, the bytes as they are. Otherwise an envelope's headers and payload, or
/// the bytes as they are, without headers, when they do not start with the envelope's magic
/// (a foreign publisher, or a message published raw) or do not decode as a frame.
pub fn from_payload(topic: Topic, payload: Bytes, raw_payloads: bool) -> Message {
    if raw_payloads || !payload.starts_with(&envelope::MAGIC) {
        return Message::new(topic, payload);
    }
    let decoded = envelope::decode_lossy(payload);
    Message::with_headers(topic, decoded.payload, decoded.headers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ErrorKind, Headers};

    fn topic() -> Topic {
        Topic::new("a.b").unwrap()
    }

    #[test]
    fn raw_payloads_go_as_they_are_and_refuse_headers() {
        let plain = Message::new(topic(), "hi");
        assert_eq!(to_payload(&plain, true, 1).unwrap(), Bytes::from("hi"));
        let mut headers = Headers::new();
        headers.insert("h", "v").unwrap();
        let with = Message::with_headers(topic(), "hi", headers.clone());
        let e = to_payload(&with, true, 1 << 20).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        // A frame received raw stays a frame.
        let framed = to_payload(&with, false, 1 << 20).unwrap();
        let got = from_payload(topic(), framed.clone(), true);
        assert_eq!((got.payload(), got.headers().is_empty()), (&framed, true));
        let got = from_payload(topic(), framed, false);
        assert_eq!(got.headers(), &headers);
    }

    #[test]
    fn a_frame_over_the_limit_is_refused() {
        let message = Message::new(topic(), vec![0u8; 100]);
        let size = envelope::encoded_len(message.headers(), 100);
        assert!(to_payload(&message, false, size).is_ok());
        let e = to_payload(&message, false, size - 1).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PayloadTooLarge);
    }

    proptest::proptest! {
        /// Any payload: never panics; bytes without the envelope's magic come back as they
        /// are, and an envelope's headers and payload come back from what `encode` made.
        #[test]
        fn from_payload_never_panics(
            raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
            value in "[^\r\n]{0,8}",
        ) {
            let payload = Bytes::from(raw);
            let got = from_payload(topic(), payload.clone(), false);
            if !payload.starts_with(&envelope::MAGIC) {
                proptest::prop_assert_eq!(got.payload(), &payload);
                proptest::prop_assert!(got.headers().is_empty());
            }
            let mut headers = Headers::new();
            headers.insert("h", value.as_str()).unwrap();
            let framed = envelope::encode(&headers, &payload);
            let got = from_payload(topic(), framed, false);
            proptest::prop_assert_eq!(got.headers(), &headers);
            proptest::prop_assert_eq!(got.payload(), &payload);
        }
    }
}
