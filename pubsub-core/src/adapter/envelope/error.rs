//! [`EnvelopeError`]: why bytes that start with the magic are not a frame, and where.

use std::fmt;

use super::VERSION;
use crate::headers::HeaderError;

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

/// Why bytes that start with [`MAGIC`](super::MAGIC) are not a valid frame.
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
    /// A header name or value breaks the header rules (see [`Headers`](crate::Headers)).
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
