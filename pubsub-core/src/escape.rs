//! Hex escapes, written once for every reversible name encoding: [`Token::escape`]
//! (`%HH`), and the adapters' own (Kafka topic names `-HH`, MQTT topic levels `~HH`, NATS
//! encoded words `=HH`).
//!
//! [`Token::escape`]: crate::Token::escape

/// Appends `marker` and the two upper-case hex digits of `byte` (`%2E` for `.` with `%`).
pub fn push_hex_escape(out: &mut String, marker: char, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push(marker);
    out.push(char::from(HEX[usize::from(byte >> 4)]));
    out.push(char::from(HEX[usize::from(byte & 15)]));
}

/// The value of an upper-case hex digit (`0`–`9`, `A`–`F`); `None` for anything else, so that
/// a decoder that takes only what [`push_hex_escape`] writes can refuse other spellings.
pub fn upper_hex_digit(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// `text` with every character `keep` refuses (and `marker` itself) written as `marker` and two
/// upper-case hex digits per UTF-8 byte: the reversible name encodings of the adapters (Kafka
/// topic names, MQTT topic levels), read back with [`hex_unescape`].
///
/// ```
/// use pubsub_core::adapter::{hex_escape, hex_unescape};
/// let name = hex_escape("a/b~é", '~', |c| c != '/');
/// assert_eq!(name, "a~2Fb~7Eé");
/// assert_eq!(hex_unescape(name.as_bytes(), b'~').as_deref(), Some("a/b~é"));
/// ```
pub fn hex_escape(text: &str, marker: char, keep: impl Fn(char) -> bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c != marker && keep(c) {
            out.push(c);
        } else {
            for &b in c.encode_utf8(&mut [0u8; 4]).as_bytes() {
                push_hex_escape(&mut out, marker, b);
            }
        }
    }
    out
}

/// The text [`hex_escape`] was given (whatever its `keep`), or `None` when `name` has a `marker`
/// not followed by two upper-case hex digits, or is not UTF-8 once decoded. A needless escape
/// decodes too: a decoder that takes only canonical names encodes the text again and compares.
pub fn hex_unescape(name: &[u8], marker: u8) -> Option<String> {
    let mut bytes = Vec::with_capacity(name.len());
    let mut i = 0;
    while i < name.len() {
        if name[i] == marker {
            let hi = upper_hex_digit(*name.get(i + 1)?)?;
            let lo = upper_hex_digit(*name.get(i + 2)?)?;
            bytes.push(hi << 4 | lo);
            i += 3;
        } else {
            bytes.push(name[i]);
            i += 1;
        }
    }
    String::from_utf8(bytes).ok()
}

/// Texts that are not topic tokens as they are (wildcards, separators, whitespace, control
/// characters, `%`, the empty text, non-ASCII): the cases every test of an escaping scheme
/// (the core's [`Token::escape`], an adapter's name encoding, the conformance suite's
/// escaped topics) runs through.
///
/// [`Token::escape`]: crate::Token::escape
pub const HOSTILE_TEXTS: &[&str] = &[
    "*",
    ">",
    ".",
    "a.b",
    "x y",
    "",
    "%41",
    "\u{0}\u{7}\n",
    "ünï ☕",
    "#",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_read_back() {
        for byte in 0..=u8::MAX {
            let mut out = String::new();
            push_hex_escape(&mut out, '%', byte);
            let digits = out.as_bytes();
            assert_eq!((out.len(), digits[0]), (3, b'%'));
            let hi = upper_hex_digit(digits[1]).unwrap();
            let lo = upper_hex_digit(digits[2]).unwrap();
            assert_eq!(hi << 4 | lo, byte);
            assert_eq!(u8::from_str_radix(&out[1..], 16), Ok(byte));
        }
        assert_eq!(upper_hex_digit(b'a'), None);
        assert_eq!(upper_hex_digit(b'G'), None);
    }

    #[test]
    fn hex_escape_round_trips() {
        let keep = |c: char| c.is_ascii_alphanumeric();
        for &text in HOSTILE_TEXTS.iter().chain(&["-", "a-2D", "\u{10FFFF}"]) {
            let name = hex_escape(text, '-', keep);
            assert!(name.bytes().all(|b| b == b'-' || b.is_ascii_alphanumeric()));
            assert_eq!(hex_unescape(name.as_bytes(), b'-').as_deref(), Some(text));
        }
        for bad in [&b"a-"[..], b"a-4", b"a-4g", b"a-2d", b"-FF", b"-C3"] {
            assert_eq!(hex_unescape(bad, b'-'), None, "{bad:?}");
        }
    }
}
