//! Portable [`Headers`] ⇄ NATS headers, exactly.
//!
//! Portable headers are ordered, uniquely named, and their values are any UTF-8 without CR or
//! LF. NATS headers travel as `Name: value` lines; two details of async-nats would change them
//! on the way, so the adapter compensates:
//!
//! - **Order.** async-nats keeps headers in a hash map, so their order is lost on both ends. A
//!   message with two or more headers carries one more header, [`ORDER_HEADER`], whose value is
//!   the names in order, separated by `:` (which no header name can contain). The receiver
//!   restores that order and removes the header; names it does not list follow, sorted.
//! - **Surrounding whitespace.** async-nats trims whitespace around received values. A value
//!   that starts or ends with whitespace (or that starts with `=?`) is sent as an RFC 2047-style
//!   encoded word, `=?UTF-8?Q?…?=` (the kit's [`encoded_word`]), and decoded on receipt. All
//!   other values are sent as they are, so other NATS clients see plain headers.
//!
//! A NATS message from another client may repeat a header name (NATS headers are multi-valued).
//! The portable side keeps one value per name: **the last one**, as if each value had been
//! inserted in turn with [`Headers::insert`].

use std::collections::HashMap;
use std::str::FromStr;

use async_nats::{HeaderMap, HeaderName, HeaderValue};
use pubsub_core::adapter::encoded_word;
use pubsub_core::{Error, ErrorKind, Headers};

/// Name of the header that carries the order of a message's headers (sent only with two or
/// more headers, or when a header of this very name is used).
pub const ORDER_HEADER: &str = "Pubsub-Order";

/// NATS headers for `headers`, or `None` when there are none.
pub(crate) fn to_nats(headers: &Headers) -> Result<Option<HeaderMap>, Error> {
    if headers.is_empty() {
        return Ok(None);
    }
    let mut map = HeaderMap::new();
    let mut order = String::new();
    let mut has_order_name = false;
    for (name, value) in headers.iter() {
        has_order_name |= name == ORDER_HEADER;
        map.append(parse_name(name)?, parse_value(&encode_value(value))?);
        if !order.is_empty() {
            order.push(':');
        }
        order.push_str(name);
    }
    if headers.len() > 1 || has_order_name {
        map.append(parse_name(ORDER_HEADER)?, parse_value(&order)?);
    }
    Ok(Some(map))
}

/// Portable headers for a received NATS header map (see the module documentation).
pub(crate) fn from_nats(map: &HeaderMap) -> Headers {
    let mut order: Option<&str> = None;
    let mut entries: Vec<(&str, &str)> = Vec::with_capacity(map.len());
    for (name, values) in map.iter() {
        let name: &str = name.as_ref();
        let mut values = values.as_slice();
        if name == ORDER_HEADER {
            if let Some((last, rest)) = values.split_last() {
                order = Some(last.as_str());
                values = rest;
            }
        }
        if let Some(value) = values.last() {
            entries.push((name, value.as_str()));
        }
    }
    let positions: HashMap<&str, usize> = order
        .map(|o| {
            let mut positions = HashMap::new();
            for (i, name) in o.split(':').enumerate() {
                positions.entry(name).or_insert(i);
            }
            positions
        })
        .unwrap_or_default();
    entries.sort_by(|(a, _), (b, _)| {
        let pa = positions.get(a).copied().unwrap_or(usize::MAX);
        let pb = positions.get(b).copied().unwrap_or(usize::MAX);
        pa.cmp(&pb).then_with(|| a.cmp(b))
    });
    let mut headers = Headers::new();
    for (name, value) in entries {
        if let Err(error) = headers.insert(name, decode_value(value)) {
            tracing::debug!(%error, "skipping a NATS header that is not a portable header");
        }
    }
    headers
}

/// Bytes the header block takes on the wire (`NATS/1.0\r\n`, one `name: value\r\n` per value,
/// `\r\n`), as the server counts it against `max_payload`.
pub(crate) fn wire_len(map: &HeaderMap) -> usize {
    let mut len = b"NATS/1.0\r\n".len() + b"\r\n".len();
    for (name, values) in map.iter() {
        let name: &str = name.as_ref();
        for value in values {
            len += name.len() + b": ".len() + value.as_str().len() + b"\r\n".len();
        }
    }
    len
}

fn parse_name(name: &str) -> Result<HeaderName, Error> {
    // Portable names (visible ASCII without `:`) are exactly the names NATS accepts.
    HeaderName::from_str(name)
        .map_err(|e| Error::new(ErrorKind::Invalid, "header name").with_source(e))
}

fn parse_value(value: &str) -> Result<HeaderValue, Error> {
    HeaderValue::from_str(value)
        .map_err(|e| Error::new(ErrorKind::Invalid, "header value").with_source(e))
}

/// Whether async-nats would change `value` on receipt (it trims the surrounding whitespace).
fn changed_on_receipt(value: &str) -> bool {
    value.trim() != value
}

/// `value` as sent: unchanged, or as an encoded word when async-nats would change it on receipt
/// or it could be mistaken for an encoded word.
pub(crate) fn encode_value(value: &str) -> std::borrow::Cow<'_, str> {
    encoded_word::encode_when(value, changed_on_receipt)
}

/// `value` as received: decoded when it is exactly one well-formed encoded word whose content
/// is a portable value, otherwise unchanged.
pub(crate) fn decode_value(value: &str) -> String {
    encoded_word::decode_or_keep(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What async-nats does to a value on receipt.
    fn received(value: &str) -> String {
        value.trim().to_string()
    }

    /// Sends `headers` through the same transformations as the wire: encode, lose the order,
    /// trim the values, decode.
    fn round_trip(headers: &Headers) -> Headers {
        let Some(map) = to_nats(headers).unwrap() else {
            return Headers::new();
        };
        // Rebuild from the wire lines (in hash-map order, as the receiver does).
        let mut received_map = HeaderMap::new();
        for (name, values) in map.iter() {
            for v in values {
                received_map.append(name.clone(), received(v.as_str()).as_str());
            }
        }
        from_nats(&received_map)
    }

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        let mut h = Headers::new();
        for (n, v) in pairs {
            h.insert(*n, *v).unwrap();
        }
        h
    }

    #[test]
    fn plain_values_are_sent_unchanged() {
        let h = headers(&[("content-type", "text/plain")]);
        let map = to_nats(&h).unwrap().unwrap();
        assert_eq!(map.len(), 1, "one header needs no order header");
        assert_eq!(map.get("content-type").unwrap().as_str(), "text/plain");
        assert!(to_nats(&Headers::new()).unwrap().is_none());
    }

    #[test]
    fn order_and_awkward_values_round_trip() {
        let cases: Vec<Headers> = vec![
            headers(&[("z", "1"), ("a", "2"), ("M", "3"), ("b-b", "4")]),
            headers(&[
                ("x", " leading"),
                ("y", "trailing\t"),
                ("e", ""),
                ("w", "   "),
            ]),
            headers(&[
                ("q", "=?UTF-8?Q?looks_encoded?="),
                ("r", "=?"),
                ("s", "a=b?c_d"),
            ]),
            headers(&[("u", "\u{a0}café ☃\u{3000}"), ("ctl", "\u{1}\u{7f}\0")]),
            headers(&[(ORDER_HEADER, "mine"), ("other", "x")]),
            headers(&[(ORDER_HEADER, "only mine")]),
            headers(&[("Nats-Msg-Id", "42"), ("nats-msg-id", "lower")]),
            headers(&[("a", "in:side: colons"), ("b", "tab\tinside")]),
        ];
        for h in cases {
            assert_eq!(round_trip(&h), h);
            let got: Vec<_> = round_trip(&h).iter().map(|(n, _)| n.to_string()).collect();
            let want: Vec<_> = h.iter().map(|(n, _)| n.to_string()).collect();
            assert_eq!(got, want, "order");
        }
    }

    #[test]
    fn only_values_async_nats_would_change_are_encoded() {
        assert_eq!(encode_value("plain value"), "plain value");
        for v in [" a", "b ", "=?x"] {
            assert_eq!(decode_value(&encode_value(v)), v);
        }
        assert_eq!(decode_value("=?UTF-8?Q?bad=ZZ?="), "=?UTF-8?Q?bad=ZZ?=");
    }

    #[test]
    fn repeated_foreign_headers_keep_the_last_value() {
        let mut map = HeaderMap::new();
        map.append("trace", "first");
        map.append("trace", "second");
        map.append("b", "x");
        let h = from_nats(&map);
        assert_eq!(h.get("trace"), Some("second"));
        // Without an order header, names are sorted.
        let names: Vec<_> = h.iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["b", "trace"]);
    }

    #[test]
    fn foreign_order_header_with_unknown_names_is_harmless() {
        let mut map = HeaderMap::new();
        map.append("b", "1");
        map.append("a", "2");
        map.append("c", "3");
        map.append(ORDER_HEADER, "c:nope::b");
        let h = from_nats(&map);
        let names: Vec<_> = h.iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["c", "b", "a"]);
    }

    proptest::proptest! {
        /// Any portable headers come back exactly, in order, through the wire's changes.
        #[test]
        fn any_headers_round_trip(
            pairs in proptest::collection::vec(("[!-9;-~]{1,12}", "[^\r\n]{0,12}"), 0..8),
        ) {
            let mut h = Headers::new();
            for (name, value) in &pairs {
                h.insert(name.as_str(), value.as_str()).unwrap();
            }
            let back = round_trip(&h);
            proptest::prop_assert_eq!(&back, &h);
            let names = |h: &Headers| h.iter().map(|(n, _)| n.to_string()).collect::<Vec<_>>();
            proptest::prop_assert_eq!(names(&back), names(&h));
        }

        /// A foreign header map (any names and values NATS carries, any order header) never
        /// panics, and gives at most one header per name.
        #[test]
        fn foreign_maps_never_panic(
            entries in proptest::collection::vec(("[!-~]{1,8}", "\\PC{0,16}"), 0..8),
            order in proptest::option::of("[!-~]{0,24}"),
        ) {
            let mut map = HeaderMap::new();
            for (name, value) in &entries {
                if let (Ok(n), Ok(v)) = (HeaderName::from_str(name), HeaderValue::from_str(value)) {
                    map.append(n, v);
                }
            }
            if let Some(order) = order {
                map.append(ORDER_HEADER, order.as_str());
            }
            let h = from_nats(&map);
            proptest::prop_assert!(h.len() <= entries.len());
        }
    }

    #[test]
    fn wire_len_matches_the_layout() {
        let mut map = HeaderMap::new();
        map.append("ab", "xyz");
        map.append("ab", "");
        // "NATS/1.0\r\n" + "ab: xyz\r\n" + "ab: \r\n" + "\r\n"
        assert_eq!(wire_len(&map), 10 + 9 + 6 + 2);
    }
}
