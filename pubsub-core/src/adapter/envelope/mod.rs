//! A small versioned binary framing that carries [`Headers`] for brokers without native
//! headers (Redis).
//!
//! # Frame layout
//!
//! ```text
//! MAGIC (4 bytes: F5 'P' 'S' 'E') | VERSION (1 byte) | header count (varint)
//! { name length (varint) | name bytes | value length (varint) | value bytes } × count
//! payload (the rest of the frame)
//! ```
//!
//! Varints are unsigned LEB128 of at most 64 bits. `0xF5` never starts valid UTF-8, so no text
//! payload is ever mistaken for a frame.
//!
//! A message without headers is sent as its bare payload (zero-copy), unless the payload itself
//! starts with [`MAGIC`]; then it is framed, so that it still round-trips. On the way in,
//! [`decode`] treats bytes without the magic prefix as a plain payload from a foreign
//! publisher, and [`decode_lossy`] is what drivers deliver: a malformed frame becomes a plain
//! payload instead of being lost.
//!
//! # Cost
//!
//! Decoding checks every header in place, on the stack for up to 8 headers (16 before
//! repeated names are looked up in a set). [`decode`] then copies the headers into a
//! [`Headers`] in two allocations whatever their number (none without headers); [`Frame`] is
//! the same check with nothing copied, for a caller that needs the payload and perhaps a
//! header. The payload is always a zero-copy slice of the frame.
//!
//! The byte layout (magic, version, varints, length-prefixed fields) is read and written in
//! `frame.rs`; what the fields mean (a count, then names and values held to the header rules)
//! in `headers.rs`.
//!
//! ```
//! use bytes::Bytes;
//! use pubsub_core::{adapter::envelope, Headers};
//!
//! let mut headers = Headers::new();
//! headers.insert("trace", "abc")?;
//! let payload = Bytes::from_static(b"hello");
//!
//! let frame = envelope::encode(&headers, &payload);
//! assert_eq!(frame.len(), envelope::encoded_len(&headers, payload.len()));
//!
//! let decoded = envelope::decode(frame)?;
//! assert_eq!(decoded.headers, headers);
//! assert_eq!(decoded.payload, payload);
//!
//! // Without headers the payload goes out as it is.
//! assert_eq!(envelope::encode(&Headers::new(), &payload), payload);
//! # Ok::<(), pubsub_core::Error>(())
//! ```

mod error;
mod frame;
mod headers;
#[cfg(test)]
mod tests;

use bytes::{Bytes, BytesMut};
use smallvec::SmallVec;

use crate::headers::Headers;
pub use error::{EnvelopeError, FrameField};
use frame::{put_preamble, Reader, PREAMBLE_LEN};
pub use frame::{MAGIC, VERSION};
pub use headers::HeaderIter;

/// Headers [`decode`] holds on the stack while it checks a frame; more spill to the heap.
const FEW_HEADERS: usize = 8;

/// A decoded frame: its headers and its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// The headers carried by the frame (empty for a plain payload).
    pub headers: Headers,
    /// The payload, a zero-copy slice of the frame.
    pub payload: Bytes,
}

/// Frames `headers` and `payload` for the wire.
///
/// Without headers, and when the payload does not start with [`MAGIC`], this is the payload
/// itself (a reference-counted clone, no copy). Otherwise it is a frame of exactly
/// [`encoded_len`] bytes.
///
/// ```
/// use bytes::Bytes;
/// use pubsub_core::{adapter::envelope, Headers};
///
/// let payload = Bytes::from_static(b"\xF5PSE looks like a frame");
/// let frame = envelope::encode(&Headers::new(), &payload);
/// assert!(frame.len() > payload.len()); // framed, so that it round-trips
/// assert_eq!(envelope::decode(frame)?.payload, payload);
/// # Ok::<(), pubsub_core::Error>(())
/// ```
pub fn encode(headers: &Headers, payload: &Bytes) -> Bytes {
    if !needs_frame(headers, payload) {
        return payload.clone();
    }
    let mut buf = BytesMut::with_capacity(frame_len(headers, payload.len()));
    put_preamble(&mut buf);
    headers::put_section(&mut buf, headers);
    buf.extend_from_slice(payload);
    buf.freeze()
}

/// The size of what [`encode`] produces for `headers` and a payload of `payload_len` bytes, so
/// that a driver can check its limit before any I/O.
///
/// The one case it cannot see from a length alone: with no headers, a payload that starts with
/// [`MAGIC`] is framed too, which adds 6 bytes (magic, version and a zero count) to the
/// `payload_len` returned here.
///
/// ```
/// use pubsub_core::{adapter::envelope, Headers};
/// let mut headers = Headers::new();
/// assert_eq!(envelope::encoded_len(&headers, 10), 10);
/// headers.insert("k", "v")?;
/// assert_eq!(envelope::encoded_len(&headers, 10), 4 + 1 + 1 + (1 + 1) + (1 + 1) + 10);
/// # Ok::<(), pubsub_core::Error>(())
/// ```
pub fn encoded_len(headers: &Headers, payload_len: usize) -> usize {
    if headers.is_empty() {
        payload_len
    } else {
        frame_len(headers, payload_len)
    }
}

/// Splits a received frame into headers and payload.
///
/// Bytes that do not start with [`MAGIC`] are a plain payload (from a foreign publisher) and
/// come back whole with no headers. A valid frame gives its headers and its payload as a
/// zero-copy slice. Bytes that start with [`MAGIC`] but are not a valid frame give an
/// [`EnvelopeError`]; drivers use [`decode_lossy`] instead, which never fails.
///
/// ```
/// use bytes::Bytes;
/// use pubsub_core::adapter::envelope::{self, EnvelopeError, FrameField};
///
/// let plain = envelope::decode(Bytes::from_static(b"hi"))?;
/// assert!(plain.headers.is_empty());
/// assert_eq!(plain.payload, "hi");
///
/// let err = envelope::decode(Bytes::from_static(b"\xF5PSE\x01\x01\x05ab"));
/// assert_eq!(
///     err,
///     Err(EnvelopeError::LengthPastEnd { field: FrameField::Name, len: 5, remaining: 2, offset: 7 })
/// );
/// # Ok::<(), pubsub_core::Error>(())
/// ```
pub fn decode(frame: Bytes) -> Result<Decoded, EnvelopeError> {
    if !frame.starts_with(&MAGIC) {
        return Ok(Decoded {
            headers: Headers::new(),
            payload: frame,
        });
    }
    let mut reader = Reader::new(&frame, MAGIC.len());
    reader.version()?;
    let count = headers::read_count(&mut reader)?;
    // Checked in place first (on the stack for a usual frame), then copied in two allocations.
    let mut found: SmallVec<[(&str, &str); FEW_HEADERS]> = SmallVec::new();
    headers::read_headers(&mut reader, count, |name, value| found.push((name, value)))?;
    let headers = to_headers(&found);
    let payload = frame.slice(reader.pos..);
    Ok(Decoded { headers, payload })
}

/// Like [`decode`], but a malformed frame is delivered whole as a plain payload with no
/// headers (and logged at `debug` level), so that a foreign publisher's bytes are never lost.
///
/// ```
/// use bytes::Bytes;
/// use pubsub_core::adapter::envelope;
///
/// let odd = Bytes::from_static(b"\xF5PSE\x09 not a frame");
/// let decoded = envelope::decode_lossy(odd.clone());
/// assert!(decoded.headers.is_empty());
/// assert_eq!(decoded.payload, odd);
/// ```
pub fn decode_lossy(frame: Bytes) -> Decoded {
    match decode(frame.clone()) {
        Ok(decoded) => decoded,
        Err(error) => {
            tracing::debug!(
                %error,
                len = frame.len(),
                "undecodable envelope frame; delivering it as a plain payload"
            );
            Decoded {
                headers: Headers::new(),
                payload: frame,
            }
        }
    }
}

/// A frame read in place: its headers borrowed from it, its payload a zero-copy slice.
///
/// For a caller that needs the payload (and perhaps a header or two) without building a
/// [`Headers`]: [`Frame::parse`] checks the whole frame, as [`decode`] does, with the same
/// errors, and allocates nothing (up to 16 headers; more take one hash set to find repeated
/// names).
///
/// ```
/// use bytes::Bytes;
/// use pubsub_core::{adapter::envelope::{self, Frame}, Headers};
///
/// let mut headers = Headers::new();
/// headers.insert("trace", "abc")?;
/// let bytes = envelope::encode(&headers, &Bytes::from_static(b"hello"));
///
/// let frame = Frame::parse(&bytes)?;
/// assert_eq!(frame.payload(), "hello");
/// assert_eq!(frame.headers().collect::<Vec<_>>(), [("trace", "abc")]);
/// assert_eq!(frame.to_headers(), headers);
///
/// // Bytes without the magic are a plain payload, whole.
/// let plain = Bytes::from_static(b"hi");
/// assert_eq!(Frame::parse(&plain)?.payload(), plain);
/// # Ok::<(), pubsub_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Frame<'a> {
    bytes: &'a Bytes,
    /// Offset of the first header, after the count (0 for a plain payload).
    headers_at: usize,
    header_count: usize,
    payload_at: usize,
}

impl<'a> Frame<'a> {
    /// Reads and checks `bytes`: a frame when they start with [`MAGIC`], otherwise a plain
    /// payload with no headers (from a foreign publisher). Fails as [`decode`] does.
    pub fn parse(bytes: &'a Bytes) -> Result<Self, EnvelopeError> {
        if !bytes.starts_with(&MAGIC) {
            return Ok(Frame {
                bytes,
                headers_at: 0,
                header_count: 0,
                payload_at: 0,
            });
        }
        let mut reader = Reader::new(bytes, MAGIC.len());
        reader.version()?;
        let count = headers::read_count(&mut reader)?;
        let headers_at = reader.pos;
        let header_count = headers::read_headers(&mut reader, count, |_, _| {})?;
        Ok(Frame {
            bytes,
            headers_at,
            header_count,
            payload_at: reader.pos,
        })
    }

    /// The number of headers.
    pub fn header_count(&self) -> usize {
        self.header_count
    }

    /// The headers, in frame order, borrowed from the frame.
    pub fn headers(&self) -> HeaderIter<'a> {
        HeaderIter::new(self.bytes, self.headers_at, self.header_count)
    }

    /// The value of header `name`, if the frame has it.
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// The payload: a zero-copy slice of the frame (all of it for a plain payload).
    pub fn payload(&self) -> Bytes {
        self.bytes.slice(self.payload_at..)
    }

    /// The headers copied into a [`Headers`] (two allocations, none when there are none).
    pub fn to_headers(&self) -> Headers {
        let found: SmallVec<[(&str, &str); FEW_HEADERS]> = self.headers().collect();
        to_headers(&found)
    }
}

/// Copies headers checked by `headers::read_headers` into a [`Headers`] of the exact size.
fn to_headers(found: &[(&str, &str)]) -> Headers {
    if found.is_empty() {
        return Headers::new();
    }
    let text = found
        .iter()
        .map(|(name, value)| name.len() + value.len())
        .sum();
    let mut headers = Headers::with_capacity(found.len(), text);
    for (name, value) in found {
        // Checked and unique: append in O(1).
        headers.push_checked(name, value);
    }
    headers
}

/// Whether `encode` must build a frame rather than pass the payload through.
fn needs_frame(headers: &Headers, payload: &[u8]) -> bool {
    !headers.is_empty() || payload.starts_with(&MAGIC)
}

/// Exact size of a frame (not a pass-through) for these headers and payload length.
fn frame_len(headers: &Headers, payload_len: usize) -> usize {
    PREAMBLE_LEN + headers::section_len(headers) + payload_len
}
