//! The byte layout of a frame: the magic, the version byte, LEB128 varints and
//! length-prefixed fields. Knows nothing of what the fields mean (see `headers.rs`).

use std::ops::Range;

use bytes::{BufMut, BytesMut};

use super::{EnvelopeError, FrameField};

/// The four bytes every frame starts with. `0xF5` never starts valid UTF-8.
pub const MAGIC: [u8; 4] = [0xF5, b'P', b'S', b'E'];

/// The frame version this build writes and reads.
pub const VERSION: u8 = 1;

/// Bytes before the header count: [`MAGIC`] and the version byte.
pub(super) const PREAMBLE_LEN: usize = MAGIC.len() + 1;

/// Longest unsigned LEB128 encoding of a `u64`.
const MAX_VARINT_LEN: usize = 10;

/// Appends the preamble: [`MAGIC`] and [`VERSION`].
pub(super) fn put_preamble(buf: &mut BytesMut) {
    buf.put_slice(&MAGIC);
    buf.put_u8(VERSION);
}

/// Number of bytes of the LEB128 encoding of `value`.
pub(super) fn varint_len(value: u64) -> usize {
    let bits = (u64::BITS - value.leading_zeros()).max(1);
    bits.div_ceil(7) as usize
}

/// Size of a length-prefixed field of `len` bytes.
pub(super) fn field_len(len: usize) -> usize {
    varint_len(len as u64) + len
}

/// Appends `value` as unsigned LEB128.
pub(super) fn put_varint(buf: &mut BytesMut, mut value: u64) {
    while value >= 0x80 {
        buf.put_u8((value as u8) | 0x80);
        value >>= 7;
    }
    buf.put_u8(value as u8);
}

/// Appends a length-prefixed field.
pub(super) fn put_field(buf: &mut BytesMut, bytes: &[u8]) {
    put_varint(buf, bytes.len() as u64);
    buf.put_slice(bytes);
}

/// A cursor over the bytes of a frame.
#[derive(Debug, Clone)]
pub(super) struct Reader<'a> {
    pub(super) buf: &'a [u8],
    pub(super) pos: usize,
}

impl<'a> Reader<'a> {
    /// A cursor at `pos` of `buf`.
    pub(super) fn new(buf: &'a [u8], pos: usize) -> Self {
        Reader { buf, pos }
    }

    /// Reads and checks the version byte (the cursor just after [`MAGIC`]).
    pub(super) fn version(&mut self) -> Result<(), EnvelopeError> {
        let offset = self.pos;
        let version = self.byte(FrameField::Version)?;
        if version == VERSION {
            Ok(())
        } else {
            Err(EnvelopeError::UnsupportedVersion { version, offset })
        }
    }

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
    pub(super) fn varint(&mut self, field: FrameField) -> Result<u64, EnvelopeError> {
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

    /// Reads a length-prefixed field and returns its offset and bytes.
    pub(super) fn field_bytes(
        &mut self,
        len_field: FrameField,
        field: FrameField,
    ) -> Result<(usize, &'a [u8]), EnvelopeError> {
        let range = self.field(len_field, field)?;
        let offset = range.start;
        let buf: &'a [u8] = self.buf;
        let bytes = buf.get(range).ok_or(EnvelopeError::Truncated {
            field,
            offset: buf.len(),
        })?;
        Ok((offset, bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            let mut r = Reader::new(&buf, 0);
            assert_eq!(r.varint(FrameField::HeaderCount), Ok(v));
        }
    }
}
