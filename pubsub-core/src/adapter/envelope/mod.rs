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

use std::collections::HashSet;
use std::fmt;
use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};

use crate::headers::{check_name, check_value, HeaderError, Headers};

/// The four bytes every frame starts with. `0xF5` never starts valid UTF-8.
pub const MAGIC: [u8; 4] = [0xF5, b'P', b'S', b'E'];

/// The frame version this build writes and reads.
pub const VERSION: u8 = 1;

/// Bytes before the header count: [`MAGIC`] and the version byte.
const PREAMBLE_LEN: usize = MAGIC.len() + 1;

/// Longest unsigned LEB128 encoding of a `u64`.
const MAX_VARINT_LEN: usize = 10;

/// A decoded frame: its headers and its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// The headers carried by the frame (empty for a plain payload).
    pub headers: Headers,
    /// The payload, a zero-copy slice of the frame.
    pub payload: Bytes,
}

/// The part of a frame being read when decoding failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FrameField {
    /// The version byte after the magic.
    Version,
    /// The header count varint.
    HeaderCount,
    /// The length varint of a header name.
    NameLength,
    /// The bytes of a header name.
    Name,
    /// The length varint of a header value.
    ValueLength,
    /// The bytes of a header value.
    Value,
}

impl fmt::Display for FrameField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FrameField::Version => "version byte",
            FrameField::HeaderCount => "header count",
            FrameField::NameLength => "header name length",
            FrameField::Name => "header name",
            FrameField::ValueLength => "header value length",
            FrameField::Value => "header value",
        })
    }
}

/// Why bytes that start with [`MAGIC`] are not a valid frame.
///
/// Every variant says at which byte offset of the frame the problem was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// The version byte names a version this build cannot read.
    #[error(
        "unsupported envelope version {version} at byte {offset} (this build reads {VERSION})"
    )]
    UnsupportedVersion {
        /// The version found.
        version: u8,
        /// Offset of the version byte.
        offset: usize,
    },
    /// The frame ends in the middle of a field.
    #[error("frame ends at byte {offset} inside the {field}")]
    Truncated {
        /// The field being read.
        field: FrameField,
        /// Offset where more bytes were needed (the frame's length).
        offset: usize,
    },
    /// A varint is longer than a `u64` allows.
    #[error("the {field} varint at byte {offset} does not fit in 64 bits")]
    VarintOverflow {
        /// The field being read.
        field: FrameField,
        /// Offset of the varint's first byte.
        offset: usize,
    },
    /// A length prefix points past the end of the frame.
    #[error("the {field} at byte {offset} claims {len} bytes but only {remaining} remain")]
    LengthPastEnd {
        /// The field whose length is wrong.
        field: FrameField,
        /// The length the frame claims.
        len: u64,
        /// Bytes left in the frame at `offset`.
        remaining: usize,
        /// Offset where the field's bytes would start.
        offset: usize,
    },
    /// A header name or value is not UTF-8.
    #[error("the {field} of header {index} at byte {offset} is not UTF-8")]
    NotUtf8 {
        /// [`FrameField::Name`] or [`FrameField::Value`].
        field: FrameField,
        /// Index of the header in the frame, from 0.
        index: usize,
        /// Offset of the name's or value's first byte.
        offset: usize,
    },
    /// A header name or value breaks the header rules (see [`Headers`]).
    #[error("header {index} at byte {offset} is invalid: {source}")]
    InvalidHeader {
        /// Index of the header in the frame, from 0.
        index: usize,
        /// Offset of the offending name's or value's first byte.
        offset: usize,
        /// The rule that was broken.
        #[source]
        source: HeaderError,
    },
    /// Two headers of the frame have the same name.
    #[error("header {index} at byte {offset} repeats the name {name:?}")]
    DuplicateHeader {
        /// The repeated name.
        name: String,
        /// Index of the second occurrence, from 0.
        index: usize,
        /// Offset of the second occurrence's name.
        offset: usize,
    },
}

crate::error::invalid_from!(EnvelopeError => "invalid envelope frame");

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
    buf.put_slice(&MAGIC);
    buf.put_u8(VERSION);
    put_varint(&mut buf, headers.len() as u64);
    for (name, value) in headers.iter() {
        put_field(&mut buf, name.as_bytes());
        put_field(&mut buf, value.as_bytes());
    }
    buf.put_slice(payload);
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
    let mut reader = Reader {
        buf: &frame,
        pos: MAGIC.len(),
    };
    read_version(&mut reader)?;
    let headers = read_headers(&mut reader)?;
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

/// Whether `encode` must build a frame rather than pass the payload through.
fn needs_frame(headers: &Headers, payload: &[u8]) -> bool {
    !headers.is_empty() || payload.starts_with(&MAGIC)
}

/// Exact size of a frame (not a pass-through) for these headers and payload length.
fn frame_len(headers: &Headers, payload_len: usize) -> usize {
    let header_bytes: usize = headers
        .iter()
        .map(|(name, value)| field_len(name.len()) + field_len(value.len()))
        .sum();
    PREAMBLE_LEN + varint_len(headers.len() as u64) + header_bytes + payload_len
}

/// Size of a length-prefixed field of `len` bytes.
fn field_len(len: usize) -> usize {
    varint_len(len as u64) + len
}

/// Number of bytes of the LEB128 encoding of `value`.
fn varint_len(value: u64) -> usize {
    let bits = (u64::BITS - value.leading_zeros()).max(1);
    bits.div_ceil(7) as usize
}

/// Appends `value` as unsigned LEB128.
fn put_varint(buf: &mut BytesMut, mut value: u64) {
    while value >= 0x80 {
        buf.put_u8((value as u8) | 0x80);
        value >>= 7;
    }
    buf.put_u8(value as u8);
}

/// Appends a length-prefixed field.
fn put_field(buf: &mut BytesMut, bytes: &[u8]) {
    put_varint(buf, bytes.len() as u64);
    buf.put_slice(bytes);
}

/// Reads and checks the version byte.
fn read_version(reader: &mut Reader<'_>) -> Result<(), EnvelopeError> {
    let offset = reader.pos;
    let version = reader.byte(FrameField::Version)?;
    if version == VERSION {
        Ok(())
    } else {
        Err(EnvelopeError::UnsupportedVersion { version, offset })
    }
}

/// Reads the header count and the headers.
///
/// Nothing is allocated from the count itself: each header takes at least one byte, so a
/// hostile count ends in [`EnvelopeError::Truncated`] once the frame runs out.
fn read_headers(reader: &mut Reader<'_>) -> Result<Headers, EnvelopeError> {
    let count = reader.varint(FrameField::HeaderCount)?;
    let mut headers = Headers::new();
    let mut seen = HashSet::new();
    let mut index = 0usize;
    while (index as u64) < count {
        let header = read_header(reader, index)?;
        if !seen.insert(header.name) {
            return Err(EnvelopeError::DuplicateHeader {
                name: header.name.to_owned(),
                index,
                offset: header.name_offset,
            });
        }
        // `read_header` checked the name and value and `seen` the uniqueness: append in O(1).
        headers.push_checked(header.name, header.value);
        index += 1;
    }
    Ok(headers)
}

/// One header read from a frame and checked against the header rules.
struct RawHeader<'a> {
    name: &'a str,
    value: &'a str,
    name_offset: usize,
}

/// Reads header number `index` and checks its name and value.
fn read_header<'a>(reader: &mut Reader<'a>, index: usize) -> Result<RawHeader<'a>, EnvelopeError> {
    let (name_offset, name) = reader.text(FrameField::NameLength, FrameField::Name, index)?;
    let (value_offset, value) = reader.text(FrameField::ValueLength, FrameField::Value, index)?;
    let invalid = |offset| {
        move |source| EnvelopeError::InvalidHeader {
            index,
            offset,
            source,
        }
    };
    check_name(name).map_err(invalid(name_offset))?;
    check_value(name, value).map_err(invalid(value_offset))?;
    Ok(RawHeader {
        name,
        value,
        name_offset,
    })
}

/// A cursor over the bytes of a frame.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Bytes left after the cursor.
    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// Reads one byte.
    fn byte(&mut self, field: FrameField) -> Result<u8, EnvelopeError> {
        let byte = *self.buf.get(self.pos).ok_or(EnvelopeError::Truncated {
            field,
            offset: self.buf.len(),
        })?;
        self.pos += 1;
        Ok(byte)
    }

    /// Reads an unsigned LEB128 varint of at most 64 bits.
    fn varint(&mut self, field: FrameField) -> Result<u64, EnvelopeError> {
        let start = self.pos;
        let mut value = 0u64;
        for i in 0..MAX_VARINT_LEN {
            let byte = self.byte(field)?;
            let low = u64::from(byte & 0x7F);
            // The tenth byte holds only bit 63.
            if i == MAX_VARINT_LEN - 1 && low > 1 {
                break;
            }
            value |= low << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(EnvelopeError::VarintOverflow {
            field,
            offset: start,
        })
    }

    /// Reads a length prefix, then that many bytes; returns their range in the frame.
    fn field(
        &mut self,
        len_field: FrameField,
        field: FrameField,
    ) -> Result<Range<usize>, EnvelopeError> {
        let len = self.varint(len_field)?;
        let remaining = self.remaining();
        let Some(len_in_frame) = usize::try_from(len).ok().filter(|&n| n <= remaining) else {
            return Err(EnvelopeError::LengthPastEnd {
                field,
                len,
                remaining,
                offset: self.pos,
            });
        };
        let range = self.pos..self.pos + len_in_frame;
        self.pos = range.end;
        Ok(range)
    }

    /// Reads a length-prefixed UTF-8 string of header `index`; returns its offset and text.
    fn text(
        &mut self,
        len_field: FrameField,
        field: FrameField,
        index: usize,
    ) -> Result<(usize, &'a str), EnvelopeError> {
        let range = self.field(len_field, field)?;
        let offset = range.start;
        let buf: &'a [u8] = self.buf;
        let bytes = buf.get(range).ok_or(EnvelopeError::Truncated {
            field,
            offset: buf.len(),
        })?;
        let text = std::str::from_utf8(bytes).map_err(|_| EnvelopeError::NotUtf8 {
            field,
            index,
            offset,
        })?;
        Ok((offset, text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        let mut h = Headers::new();
        for (n, v) in pairs {
            h.insert(*n, *v).unwrap();
        }
        h
    }

    fn frame(rest: &[u8]) -> Bytes {
        let mut v = MAGIC.to_vec();
        v.extend_from_slice(rest);
        Bytes::from(v)
    }

    #[test]
    fn plain_payload_passes_through_without_copy() {
        let payload = Bytes::from_static(b"hello");
        let out = encode(&Headers::new(), &payload);
        assert_eq!(out, payload);
        assert_eq!(out.as_ptr(), payload.as_ptr());
        assert_eq!(encoded_len(&Headers::new(), payload.len()), out.len());
    }

    #[test]
    fn empty_payload_without_headers_is_empty() {
        let out = encode(&Headers::new(), &Bytes::new());
        assert!(out.is_empty());
        let d = decode(out).unwrap();
        assert!(d.headers.is_empty());
        assert!(d.payload.is_empty());
    }

    #[test]
    fn frame_layout_is_as_documented() {
        let h = headers(&[("a", "xy"), ("bc", "")]);
        let out = encode(&h, &Bytes::from_static(b"pl"));
        assert_eq!(
            &out[..],
            b"\xF5PSE\x01\x02\x01a\x02xy\x02bc\x00pl".as_slice()
        );
        assert_eq!(out.len(), encoded_len(&h, 2));
    }

    #[test]
    fn round_trip_keeps_order_and_slices_payload() {
        let h = headers(&[("z", "1"), ("a", "café ☃"), ("m", "")]);
        let payload = Bytes::from_static(b"\x00\xFFbinary");
        let out = encode(&h, &payload);
        let d = decode(out.clone()).unwrap();
        assert_eq!(
            d.headers.iter().collect::<Vec<_>>(),
            h.iter().collect::<Vec<_>>()
        );
        assert_eq!(d.payload, payload);
        // Zero-copy: the payload points into the frame.
        let start = out.len() - payload.len();
        assert_eq!(d.payload.as_ptr(), out[start..].as_ptr());
    }

    #[test]
    fn magic_prefixed_payload_without_headers_is_framed() {
        let payload = frame(b"\x01\x00");
        let out = encode(&Headers::new(), &payload);
        assert_eq!(out.len(), payload.len() + PREAMBLE_LEN + 1);
        let d = decode(out).unwrap();
        assert!(d.headers.is_empty());
        assert_eq!(d.payload, payload);
    }

    #[test]
    fn short_prefix_of_magic_is_plain() {
        for n in 0..MAGIC.len() {
            let payload = Bytes::copy_from_slice(&MAGIC[..n]);
            assert_eq!(encode(&Headers::new(), &payload), payload);
            assert_eq!(decode(payload.clone()).unwrap().payload, payload);
        }
    }

    #[test]
    fn long_values_use_multi_byte_varints() {
        let value = "v".repeat(300);
        let h = headers(&[("k", &value)]);
        let out = encode(&h, &Bytes::new());
        assert_eq!(out.len(), encoded_len(&h, 0));
        assert_eq!(out[PREAMBLE_LEN + 3..PREAMBLE_LEN + 5], [0xAC, 0x02]);
        assert_eq!(decode(out).unwrap().headers.get("k"), Some(value.as_str()));
    }

    #[test]
    fn varint_lengths() {
        for (v, n) in [
            (0, 1),
            (127, 1),
            (128, 2),
            (16_383, 2),
            (16_384, 3),
            (u64::MAX, 10),
        ] {
            assert_eq!(varint_len(v), n, "{v}");
            let mut buf = BytesMut::new();
            put_varint(&mut buf, v);
            assert_eq!(buf.len(), n);
            let mut r = Reader { buf: &buf, pos: 0 };
            assert_eq!(r.varint(FrameField::HeaderCount), Ok(v));
        }
    }

    #[test]
    fn unknown_version() {
        assert_eq!(
            decode(frame(b"\x02\x00")),
            Err(EnvelopeError::UnsupportedVersion {
                version: 2,
                offset: 4
            })
        );
    }

    #[test]
    fn truncated_fields() {
        let cases: [(&[u8], FrameField); 5] = [
            (b"", FrameField::Version),
            (b"\x01", FrameField::HeaderCount),
            (b"\x01\x80", FrameField::HeaderCount),
            (b"\x01\x01", FrameField::NameLength),
            (b"\x01\x01\x01a", FrameField::ValueLength),
        ];
        for (rest, field) in cases {
            let f = frame(rest);
            let offset = f.len();
            assert_eq!(
                decode(f),
                Err(EnvelopeError::Truncated { field, offset }),
                "{rest:?}"
            );
        }
    }

    #[test]
    fn length_past_end() {
        assert_eq!(
            decode(frame(b"\x01\x01\x01a\x03xy")),
            Err(EnvelopeError::LengthPastEnd {
                field: FrameField::Value,
                len: 3,
                remaining: 2,
                offset: 9
            })
        );
        // A length that does not fit in usize on any platform still fails cleanly.
        let mut rest = b"\x01\x01".to_vec();
        rest.extend_from_slice(&[0xFF; 9]);
        rest.push(0x01);
        assert!(matches!(
            decode(frame(&rest)),
            Err(EnvelopeError::LengthPastEnd {
                field: FrameField::Name,
                len: u64::MAX,
                ..
            })
        ));
    }

    #[test]
    fn varint_overflow() {
        let mut rest = vec![0x01];
        rest.extend_from_slice(&[0xFF; 9]);
        rest.push(0x02);
        assert_eq!(
            decode(frame(&rest)),
            Err(EnvelopeError::VarintOverflow {
                field: FrameField::HeaderCount,
                offset: 5
            })
        );
        let mut rest = vec![0x01];
        rest.extend_from_slice(&[0x80; 11]);
        assert!(matches!(
            decode(frame(&rest)),
            Err(EnvelopeError::VarintOverflow { .. })
        ));
    }

    #[test]
    fn huge_count_fails_without_allocating() {
        let mut rest = vec![0x01];
        rest.extend_from_slice(&[0xFF; 9]);
        rest.push(0x01);
        let f = frame(&rest);
        let offset = f.len();
        assert_eq!(
            decode(f),
            Err(EnvelopeError::Truncated {
                field: FrameField::NameLength,
                offset
            })
        );
    }

    #[test]
    fn invalid_headers() {
        assert!(matches!(
            decode(frame(b"\x01\x01\x00\x00")),
            Err(EnvelopeError::InvalidHeader {
                index: 0,
                offset: 7,
                source: HeaderError::EmptyName
            })
        ));
        assert!(matches!(
            decode(frame(b"\x01\x01\x03a:b\x00")),
            Err(EnvelopeError::InvalidHeader {
                source: HeaderError::BadNameByte { byte: b':', .. },
                ..
            })
        ));
        assert!(matches!(
            decode(frame(b"\x01\x01\x01a\x02x\ny")),
            Err(EnvelopeError::InvalidHeader {
                index: 0,
                offset: 9,
                source: HeaderError::BadValue { offset: 1, .. }
            })
        ));
        assert_eq!(
            decode(frame(b"\x01\x01\x02\xC3\x28\x00")),
            Err(EnvelopeError::NotUtf8 {
                field: FrameField::Name,
                index: 0,
                offset: 7
            })
        );
        assert_eq!(
            decode(frame(b"\x01\x01\x01a\x01\xFF")),
            Err(EnvelopeError::NotUtf8 {
                field: FrameField::Value,
                index: 0,
                offset: 9
            })
        );
    }

    #[test]
    fn overlong_varints_are_read_and_offsets_stay_exact() {
        let d = decode(frame(b"\x01\x01\x81\x00a\x80\x00p")).unwrap();
        assert_eq!(d.headers.get("a"), Some(""));
        assert_eq!(d.payload, "p");
        assert!(matches!(
            decode(frame(b"\x01\x01\x81\x00:\x00")),
            Err(EnvelopeError::InvalidHeader { offset: 8, .. })
        ));
    }

    #[test]
    fn duplicate_header() {
        assert_eq!(
            decode(frame(b"\x01\x02\x01a\x01x\x01a\x01y")),
            Err(EnvelopeError::DuplicateHeader {
                name: "a".into(),
                index: 1,
                offset: 11
            })
        );
    }

    #[test]
    fn lossy_keeps_malformed_bytes() {
        let bad = frame(b"\x01\x05");
        let d = decode_lossy(bad.clone());
        assert!(d.headers.is_empty());
        assert_eq!(d.payload, bad);
        let good = encode(&headers(&[("k", "v")]), &Bytes::from_static(b"p"));
        assert_eq!(decode_lossy(good).headers.get("k"), Some("v"));
    }

    #[test]
    fn errors_convert_and_read_well() {
        let err = decode(frame(b"\x07")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unsupported envelope version 7 at byte 4 (this build reads 1)"
        );
        let err: crate::Error = err.into();
        assert_eq!(err.kind(), crate::ErrorKind::Invalid);
        assert!(
            err.to_string().contains("invalid envelope frame: "),
            "{err}"
        );
    }

    fn arb_headers() -> impl Strategy<Value = Headers> {
        let name = "[!-9;-~]{1,12}";
        let value = "[^\r\n]{0,16}";
        prop::collection::vec((name, value), 0..6).prop_map(|pairs| {
            let mut h = Headers::new();
            for (n, v) in pairs {
                h.insert(n, v).unwrap();
            }
            h
        })
    }

    fn arb_payload() -> impl Strategy<Value = Bytes> {
        let bytes = prop::collection::vec(any::<u8>(), 0..64);
        prop_oneof![
            bytes.clone().prop_map(Bytes::from),
            bytes.prop_map(|b| frame(&b)),
        ]
    }

    proptest! {
        #[test]
        fn prop_round_trip(h in arb_headers(), payload in arb_payload()) {
            let out = encode(&h, &payload);
            if !payload.starts_with(&MAGIC) {
                prop_assert_eq!(out.len(), encoded_len(&h, payload.len()));
            }
            let d = decode(out).unwrap();
            prop_assert_eq!(d.headers, h);
            prop_assert_eq!(d.payload, payload);
        }

        #[test]
        fn prop_decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..128)) {
            let f = Bytes::from(bytes);
            let _ = decode(f.clone());
            let lossy = decode_lossy(f.clone());
            if lossy.headers.is_empty() {
                prop_assert!(f.ends_with(&lossy.payload));
            }
        }

        #[test]
        fn prop_decode_framed_noise_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..128)) {
            let mut v = MAGIC.to_vec();
            v.push(VERSION);
            v.extend_from_slice(&bytes);
            if let Ok(d) = decode(Bytes::from(v)) {
                // Whatever decodes re-encodes to something that decodes the same.
                let again = decode(encode(&d.headers, &d.payload)).unwrap();
                prop_assert_eq!(again, d);
            }
        }

        #[test]
        fn prop_truncation_is_an_error(h in arb_headers(), payload in arb_payload(), cut in any::<prop::sample::Index>()) {
            let out = encode(&h, &payload);
            if out.starts_with(&MAGIC) {
                // Cutting into the headers must fail; cutting into the payload only shortens it.
                let header_end = out.len() - payload.len();
                let at = cut.index(header_end.max(1));
                if at >= MAGIC.len() {
                    prop_assert!(decode(out.slice(..at)).is_err());
                } else {
                    prop_assert!(decode(out.slice(..at)).is_ok());
                }
            }
        }
    }
}
