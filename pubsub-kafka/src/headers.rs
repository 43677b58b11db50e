//! Our ordered headers as Kafka record headers (ordered too): one record header per header,
//! the value as UTF-8 bytes.

use pubsub_core::{Headers, Topic};
use rdkafka::message::{Header, OwnedHeaders};

/// The record headers for `headers` (`None` when there are none).
pub(crate) fn encode(headers: &Headers) -> Option<OwnedHeaders> {
    if headers.is_empty() {
        return None;
    }
    let mut out = OwnedHeaders::new_with_capacity(headers.len());
    for (name, value) in headers.iter() {
        out = out.insert(Header {
            key: name,
            value: Some(value.as_bytes()),
        });
    }
    Some(out)
}

/// The record headers of a message under a stream: its portable topic first
/// ([`crate::stream::TOPIC_HEADER`]), then its own headers.
pub(crate) fn encode_under_stream(topic: &Topic, headers: &Headers) -> OwnedHeaders {
    let mut out = OwnedHeaders::new_with_capacity(headers.len() + 1).insert(Header {
        key: crate::stream::TOPIC_HEADER,
        value: Some(topic.as_str().as_bytes()),
    });
    for (name, value) in headers.iter() {
        out = out.insert(Header {
            key: name,
            value: Some(value.as_bytes()),
        });
    }
    out
}

/// Builds our headers from raw record headers, tolerantly: a header whose key or value is not
/// UTF-8, or is not a valid portable header, is left out (a foreign producer's record is still
/// delivered, with the headers that are valid); returns how many were left out.
#[derive(Debug, Default)]
pub(crate) struct Decoder {
    headers: Headers,
    skipped: usize,
}

impl Decoder {
    /// Takes one raw header (`None`: a null value, read as empty).
    pub(crate) fn push(&mut self, key: &[u8], value: Option<&[u8]>) {
        let (Ok(key), Ok(value)) = (
            std::str::from_utf8(key),
            std::str::from_utf8(value.unwrap_or_default()),
        ) else {
            self.skipped += 1;
            return;
        };
        if self.headers.insert(key, value).is_err() {
            self.skipped += 1;
        }
    }

    /// The headers, and how many raw ones were left out.
    pub(crate) fn finish(self) -> (Headers, usize) {
        (self.headers, self.skipped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rdkafka::message::Headers as _;

    fn decode(raw: &OwnedHeaders) -> (Headers, usize) {
        let mut d = Decoder::default();
        for i in 0..raw.count() {
            let h = raw.get(i);
            d.push(h.key.as_bytes(), h.value);
        }
        d.finish()
    }

    proptest! {
        #[test]
        fn round_trips_in_order(pairs in prop::collection::vec(("[!-9;-~]{1,12}", "[^\r\n]{0,12}"), 1..8)) {
            let mut headers = Headers::new();
            for (name, value) in &pairs {
                headers.insert(name.as_str(), value.as_str()).unwrap();
            }
            let raw = encode(&headers).unwrap();
            prop_assert_eq!(decode(&raw), (headers, 0));
        }

        #[test]
        fn foreign_bytes_never_panic(raw in prop::collection::vec((prop::collection::vec(any::<u8>(), 0..8), prop::option::of(prop::collection::vec(any::<u8>(), 0..8))), 0..8)) {
            let mut d = Decoder::default();
            for (k, v) in &raw {
                d.push(k, v.as_deref());
            }
            let (headers, skipped) = d.finish();
            prop_assert!(headers.len() + skipped <= raw.len());
        }
    }

    #[test]
    fn bad_headers_are_skipped_and_counted() {
        let mut d = Decoder::default();
        d.push(b"\xff\xfe", Some(b"v"));
        d.push(b"ok", Some(b"\xc3"));
        d.push(b"bad:name", Some(b"x"));
        d.push(b"null", None);
        d.push(b"fine", Some(b"yes"));
        let (headers, skipped) = d.finish();
        assert_eq!(skipped, 3);
        assert_eq!(
            headers.iter().collect::<Vec<_>>(),
            [("null", ""), ("fine", "yes")]
        );
        assert!(encode(&Headers::new()).is_none());
    }
}
