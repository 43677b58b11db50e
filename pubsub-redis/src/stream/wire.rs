//! How a stream message's position travels: entry ids (`<n>-<ms>`) as [`Offset`]s
//! (`Offset(0, n)`), and the `pubsub-position` header the append script splices into the
//! published envelope.

use bytes::{BufMut, Bytes, BytesMut};
use pubsub_core::adapter::{envelope, POSITION_HEADER};
use pubsub_core::{Offset, Position};

/// The offset of an entry id (`<n>-<ms>`); `None` for an id this adapter did not write.
pub(super) fn parse_id(id: &str) -> Option<Offset> {
    let (n, ms) = id.split_once('-')?;
    ms.parse::<u64>().ok()?;
    Some(Offset(0, n.parse().ok()?))
}

/// What the append script puts before the position header's value when it publishes `frame`
/// (the stored envelope, or a bare payload), and how many bytes of `frame` that replaces.
///
/// The published frame is `head | len(value) | value | frame[cut..]`: the envelope with one
/// more header, written first. A bare payload (no headers, no magic) becomes a frame of one
/// header; a frame keeps its headers after the new one, its count raised by one.
pub(super) fn splice_head(frame: &Bytes) -> (Bytes, usize) {
    let (count, cut) = if frame.starts_with(&envelope::MAGIC) {
        read_count(frame).unwrap_or((0, 0))
    } else {
        (0, 0)
    };
    let mut head = BytesMut::with_capacity(8 + POSITION_HEADER.len());
    head.put_slice(&envelope::MAGIC);
    head.put_u8(envelope::VERSION);
    put_varint(&mut head, count + 1);
    put_varint(&mut head, POSITION_HEADER.len() as u64);
    head.put_slice(POSITION_HEADER.as_bytes());
    (head.freeze(), cut)
}

/// The header count of an envelope frame, and where the headers begin; `None` when the frame
/// is malformed there (it is then published as a bare payload behind the new header).
fn read_count(frame: &[u8]) -> Option<(u64, usize)> {
    let start = envelope::MAGIC.len() + 1;
    let mut value = 0u64;
    for (i, byte) in frame.get(start..)?.iter().take(10).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, start + i + 1));
        }
    }
    None
}

fn put_varint(buf: &mut BytesMut, mut value: u64) {
    while value >= 0x80 {
        buf.put_u8((value as u8) | 0x80);
        value >>= 7;
    }
    buf.put_u8(value as u8);
}

/// The position in a `pubsub-position` header value (`<tag hex>-<epoch>-<n>`).
pub(super) fn parse_header(value: &str) -> Option<Position> {
    let mut parts = value.split('-');
    let tag = u32::from_str_radix(parts.next()?, 16).ok()?;
    let epoch = parts.next()?.parse().ok()?;
    let n = parts.next()?.parse().ok()?;
    if parts.next().is_some() {
        return None;
    }
    Some(Position::new(tag, epoch, Offset(0, n)))
}

/// The `tag` argument of the append script.
pub(super) fn tag_text(tag: u32) -> String {
    format!("{tag:x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use pubsub_core::Headers;

    /// What the append script does with `head` and `cut`.
    fn splice(frame: &Bytes, value: &str) -> Bytes {
        let (head, cut) = splice_head(frame);
        let mut out = BytesMut::new();
        out.put_slice(&head);
        out.put_u8(u8::try_from(value.len()).unwrap());
        out.put_slice(value.as_bytes());
        out.put_slice(&frame[cut..]);
        out.freeze()
    }

    #[test]
    fn the_spliced_header_decodes_beside_the_others() {
        let value = "1f2e-77-3";
        let payload = Bytes::from_static(b"hello");
        let mut headers = Headers::new();
        for (frame_headers, want) in [
            (Headers::new(), 1),
            (
                {
                    headers.insert("a", "1").unwrap();
                    headers.insert("b", "2").unwrap();
                    headers.clone()
                },
                3,
            ),
        ] {
            let frame = envelope::encode(&frame_headers, &payload);
            let decoded = envelope::decode(splice(&frame, value)).unwrap();
            assert_eq!(decoded.payload, payload);
            assert_eq!(decoded.headers.len(), want);
            assert_eq!(decoded.headers.get(POSITION_HEADER), Some(value));
            assert_eq!(decoded.headers.get("b"), frame_headers.get("b"));
        }
        // A payload that starts with the magic is framed with zero headers by the encoder.
        let odd = Bytes::from_static(b"\xF5PSE\x01 payload");
        let frame = envelope::encode(&Headers::new(), &odd);
        let decoded = envelope::decode(splice(&frame, value)).unwrap();
        assert_eq!((decoded.payload, decoded.headers.len()), (odd, 1));
    }

    #[test]
    fn header_values_and_ids_parse_back() {
        let position = parse_header("1f2e-77-3").unwrap();
        assert_eq!(position.stream_tag(), 0x1f2e);
        assert_eq!(position.epoch(), 77);
        assert_eq!(position.offset(), Offset(0, 3));
        for bad in ["", "x", "1f-2", "zz-1-2", "1-x-2", "1-2-3-4", "1-2-y"] {
            assert!(parse_header(bad).is_none(), "{bad}");
        }
        assert_eq!(parse_id("9-1700000000000"), Some(Offset(0, 9)));
        assert_eq!(parse_id("9"), None);
        assert_eq!(parse_id("9-x"), None);
    }

    proptest::proptest! {
        /// Any header value or entry id: parsed or refused, never a panic.
        #[test]
        fn any_text_parses_or_is_refused(text in "\\PC{0,40}", digits in "[0-9a-f-]{0,40}") {
            let _ = parse_header(&text);
            let _ = parse_header(&digits);
            let _ = parse_id(&text);
            let _ = parse_id(&digits);
        }

        #[test]
        fn any_frame_splices_into_a_decodable_one(
            payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
            names in proptest::collection::btree_set("[a-z]{1,8}", 0..5),
        ) {
            let mut headers = Headers::new();
            for name in &names {
                headers.insert(name.as_str(), "v").unwrap();
            }
            let payload = Bytes::from(payload);
            let frame = envelope::encode(&headers, &payload);
            let decoded = envelope::decode(splice(&frame, "1-2-3")).unwrap();
            proptest::prop_assert_eq!(decoded.payload, payload);
            proptest::prop_assert_eq!(decoded.headers.len(), names.len() + 1);
        }
    }
}
