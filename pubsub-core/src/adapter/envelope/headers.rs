//! The header section of a frame: a count, then each header's name and value as
//! length-prefixed UTF-8, held to the header rules (see [`Headers`]).
//!
//! Reading checks every header in place and allocates nothing for up to [`FEW_NAMES`]
//! headers; only [`decode`](super::decode) copies them into a [`Headers`].

use std::collections::HashSet;

use bytes::BytesMut;
use smallvec::SmallVec;

use super::frame::{field_len, put_field, put_varint, varint_len, Reader};
use super::{EnvelopeError, FrameField};
use crate::headers::{check_name, check_value, Headers};

/// Up to this many headers, repeated names are found by comparing with the names before, on
/// the stack; a frame with more (a hostile one, usually) uses a hash set, so that reading stays
/// linear in the header count.
const FEW_NAMES: usize = 16;

/// Size of the header section of `headers`: the count and every name and value.
pub(super) fn section_len(headers: &Headers) -> usize {
    let fields: usize = headers
        .iter()
        .map(|(name, value)| field_len(name.len()) + field_len(value.len()))
        .sum();
    varint_len(headers.len() as u64) + fields
}

/// Appends the header section of `headers`.
pub(super) fn put_section(buf: &mut BytesMut, headers: &Headers) {
    put_varint(buf, headers.len() as u64);
    for (name, value) in headers.iter() {
        put_field(buf, name.as_bytes());
        put_field(buf, value.as_bytes());
    }
}

/// Reads the header count.
pub(super) fn read_count(reader: &mut Reader<'_>) -> Result<u64, EnvelopeError> {
    reader.varint(FrameField::HeaderCount)
}

/// Reads the `count` headers after the count, checks them, and hands each to `on_header` in
/// frame order; returns how many there were (the cursor is then at the payload).
///
/// Nothing is allocated from the count itself: each header takes at least two bytes, so a
/// hostile count ends in [`EnvelopeError::Truncated`] once the frame runs out.
pub(super) fn read_headers<'a>(
    reader: &mut Reader<'a>,
    count: u64,
    mut on_header: impl FnMut(&'a str, &'a str),
) -> Result<usize, EnvelopeError> {
    let mut seen = SeenNames::default();
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
        on_header(header.name, header.value);
        index += 1;
    }
    Ok(index)
}

/// The headers of a frame read in place, in frame order: see
/// [`Frame::headers`](super::Frame::headers).
///
/// Yields `(name, value)` borrowed from the frame; nothing is allocated. The frame was checked
/// when it was parsed, so every header it yields follows the header rules.
#[derive(Debug, Clone)]
pub struct HeaderIter<'a> {
    reader: Reader<'a>,
    left: usize,
}

impl<'a> HeaderIter<'a> {
    /// The `count` headers that start at `pos` of `frame` (after the count), already checked.
    pub(super) fn new(frame: &'a [u8], pos: usize, count: usize) -> Self {
        HeaderIter {
            reader: Reader::new(frame, pos),
            left: count,
        }
    }

    /// The next length-prefixed text; `None` only if the frame was not checked (never).
    fn text(&mut self, len_field: FrameField, field: FrameField) -> Option<&'a str> {
        let (_, bytes) = self.reader.field_bytes(len_field, field).ok()?;
        std::str::from_utf8(bytes).ok()
    }
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        let name = self.text(FrameField::NameLength, FrameField::Name);
        let value = self.text(FrameField::ValueLength, FrameField::Value);
        match (name, value) {
            (Some(name), Some(value)) => {
                self.left -= 1;
                Some((name, value))
            }
            _ => {
                // Unreachable: `Frame::parse` read the same bytes without an error.
                debug_assert!(false, "a checked frame failed to read again");
                self.left = 0;
                None
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for HeaderIter<'_> {}

/// One header read from a frame and checked against the header rules.
struct RawHeader<'a> {
    name: &'a str,
    value: &'a str,
    name_offset: usize,
}

/// Reads header number `index` and checks its name and value.
fn read_header<'a>(reader: &mut Reader<'a>, index: usize) -> Result<RawHeader<'a>, EnvelopeError> {
    let (name_offset, name) = text(reader, FrameField::NameLength, FrameField::Name, index)?;
    let (value_offset, value) = text(reader, FrameField::ValueLength, FrameField::Value, index)?;
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

/// Reads a length-prefixed UTF-8 string of header `index`; returns its offset and text.
fn text<'a>(
    reader: &mut Reader<'a>,
    len_field: FrameField,
    field: FrameField,
    index: usize,
) -> Result<(usize, &'a str), EnvelopeError> {
    let (offset, bytes) = reader.field_bytes(len_field, field)?;
    let text = std::str::from_utf8(bytes).map_err(|_| EnvelopeError::NotUtf8 {
        field,
        index,
        offset,
    })?;
    Ok((offset, text))
}

/// The header names of a frame read so far: on the stack up to [`FEW_NAMES`], then in a set.
#[derive(Default)]
struct SeenNames<'a> {
    few: SmallVec<[&'a str; FEW_NAMES]>,
    many: HashSet<&'a str>,
}

impl<'a> SeenNames<'a> {
    /// Adds `name`; false when it was there already.
    fn insert(&mut self, name: &'a str) -> bool {
        if self.many.is_empty() {
            if self.few.contains(&name) {
                return false;
            }
            if self.few.len() < FEW_NAMES {
                self.few.push(name);
                return true;
            }
            self.many.extend(self.few.drain(..));
        }
        self.many.insert(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_names_find_repeats_before_and_after_the_set_takes_over() {
        let names: Vec<String> = (0..FEW_NAMES * 2).map(|i| format!("n{i}")).collect();
        let mut seen = SeenNames::default();
        for (i, name) in names.iter().enumerate() {
            assert!(seen.insert(name), "{i}");
            assert!(!seen.insert(&names[0]), "{i}");
            assert!(!seen.insert(name), "{i}");
        }
        assert_eq!(seen.many.len(), names.len());
    }
}
