//! Hex escapes, written once for every reversible name encoding: [`Token::escape`]
//! (`%HH`), and the adapters' own (Kafka topic names `-HH`, NATS encoded words `=HH`).
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
}
