//! Header values as RFC 2047-style encoded words (`=?UTF-8?Q?…?=`), for a broker or client
//! library that would change a value on the way (async-nats trims the whitespace around
//! received values): the word is printable ASCII without surrounding whitespace, so it
//! arrives as it was sent, and decodes to the value exactly.

use crate::escape::push_hex_escape;

const PREFIX: &str = "=?UTF-8?Q?";
const SUFFIX: &str = "?=";

/// Whether `value` could be taken for an encoded word on receipt (it starts with `=?`), so
/// that a sender must encode it to have it read back as it is.
pub fn looks_encoded(value: &str) -> bool {
    value.starts_with("=?")
}

/// `value` as one encoded word: space as `_`, `=`, `?`, `_` and every byte outside printable
/// ASCII as `=HH`.
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(PREFIX.len() + value.len() * 3 + SUFFIX.len());
    out.push_str(PREFIX);
    for &b in value.as_bytes() {
        match b {
            b' ' => out.push('_'),
            b'=' | b'?' | b'_' => push_hex_escape(&mut out, '=', b),
            0x21..=0x7e => out.push(char::from(b)),
            _ => push_hex_escape(&mut out, '=', b),
        }
    }
    out.push_str(SUFFIX);
    out
}

/// The value `word` encodes, when it is exactly one well-formed encoded word whose content is
/// a portable header value (UTF-8 without CR or LF); `None` otherwise (a foreign value).
pub fn decode(word: &str) -> Option<String> {
    let inner = word.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    let bytes = inner.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'_' => out.push(b' '),
            b'=' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b'?' => return None,
            b @ 0x21..=0x7e => out.push(b),
            _ => return None,
        }
        i += 1;
    }
    let decoded = String::from_utf8(out).ok()?;
    if decoded.contains(['\r', '\n']) {
        return None;
    }
    Some(decoded)
}

/// `value` as sent: unchanged, or as one encoded word when the broker or client would change
/// or refuse it (`changed`) or it could be taken for an encoded word on receipt.
pub fn encode_when(value: &str, changed: impl Fn(&str) -> bool) -> std::borrow::Cow<'_, str> {
    match changed(value) || looks_encoded(value) {
        true => encode(value).into(),
        false => value.into(),
    }
}

/// `value` as received: decoded when it is exactly one well-formed encoded word whose content
/// is a portable value, otherwise unchanged (a foreign value).
pub fn decode_or_keep(value: &str) -> String {
    decode(value).unwrap_or_else(|| value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_words_are_ascii_without_surrounding_whitespace() {
        for v in [" a", "b ", "\t", "=?x", " ☃ ", "\u{2028}", "plain", ""] {
            let e = encode(v);
            assert!(e.is_ascii() && e.trim() == e, "{e}");
            assert_eq!(decode(&e).as_deref(), Some(v));
        }
        assert!(looks_encoded("=?x") && !looks_encoded("x=?"));
        let tab = |v: &str| v.contains('\t');
        assert_eq!(encode_when("plain", tab), "plain");
        for v in ["a\tb", "=?plain"] {
            assert_eq!(decode_or_keep(&encode_when(v, tab)), v);
        }
        assert_eq!(decode_or_keep("=?UTF-8?Q?=ZZ?="), "=?UTF-8?Q?=ZZ?=");
    }

    #[test]
    fn foreign_values_are_not_encoded_words() {
        for v in [
            "=?UTF-8?Q?bad=ZZ?=",
            "=?UTF-8?Q?a?b?=",
            "=?UTF-8?Q?=0D?=",
            "=?UTF-8?Q?=FF?=",
            "=?UTF-8?B?YQ==?=",
            "=?UTF-8?Q?",
            "=?UTF-8?Q?=",
            "=?UTF-8?Q?=4?=",
        ] {
            assert_eq!(decode(v), None, "{v}");
        }
        assert_eq!(
            decode("=?UTF-8?Q?caf=C3=A9_au_lait?=").as_deref(),
            Some("café au lait")
        );
    }

    proptest::proptest! {
        /// Any value round-trips; any text decodes without panicking.
        #[test]
        fn round_trips_and_never_panics(value in "\\PC{0,16}", text in "\\PC{0,24}") {
            proptest::prop_assert_eq!(decode(&encode(&value)), Some(value));
            let _ = decode(&text);
        }
    }
}
