//! Our ordered headers as one AMQP header: a long string of length-prefixed names and values,
//! `<len>:<name><len>:<value>…` (lengths in decimal bytes).
//!
//! One string rather than a field array: RabbitMQ stream queues (3.10) drop header values that
//! are arrays or tables, so a message read from a stream would lose its headers. Arrays
//! `[name, value, …]` (what earlier versions wrote) are still read.

use lapin::types::{AMQPValue, FieldTable};
use pubsub_core::{Error, ErrorKind, Headers, Result};

/// The AMQP header key that carries the portable headers.
pub const HEADERS_KEY: &str = "pubsub-headers";

/// Largest encoded headers: the content header must fit in one frame (RabbitMQ's frame_max is
/// 128 KiB by default), with room for the other properties.
const MAX_HEADERS: usize = 64 * 1024;

/// The AMQP headers table for `headers` (`None` when there are none); headers too large for
/// one frame are refused.
pub(crate) fn encode(headers: &Headers) -> Result<Option<FieldTable>> {
    let size: usize = headers.iter().map(|(n, v)| n.len() + v.len() + 10).sum();
    if size > MAX_HEADERS {
        let why = format!("headers of {size} bytes; the AMQP adapter takes {MAX_HEADERS}");
        return Err(Error::new(ErrorKind::Invalid, why));
    }
    if headers.is_empty() {
        return Ok(None);
    }
    let mut packed = Vec::with_capacity(size);
    for (name, value) in headers.iter() {
        for part in [name, value] {
            packed.extend_from_slice(part.len().to_string().as_bytes());
            packed.push(b':');
            packed.extend_from_slice(part.as_bytes());
        }
    }
    let mut table = FieldTable::default();
    table.insert(HEADERS_KEY.into(), AMQPValue::LongString(packed.into()));
    Ok(Some(table))
}

/// The name and value pairs of a packed headers string, up to the first malformed part.
fn unpack(mut packed: &[u8]) -> Vec<(&str, &str)> {
    let mut parts = Vec::new();
    while !packed.is_empty() {
        let Some(colon) = packed.iter().position(|&b| b == b':') else {
            break;
        };
        let length = std::str::from_utf8(&packed[..colon])
            .ok()
            .filter(|digits| !digits.is_empty() && digits.len() <= 9)
            .and_then(|digits| digits.parse::<usize>().ok());
        let rest = &packed[colon + 1..];
        let Some(part) = length.and_then(|length| rest.get(..length)) else {
            break;
        };
        let Ok(part) = std::str::from_utf8(part) else {
            break;
        };
        parts.push(part);
        packed = &rest[part.len()..];
    }
    parts
        .chunks_exact(2)
        .map(|pair| (pair[0], pair[1]))
        .collect()
}

/// The portable headers in an AMQP headers table, tolerantly.
///
/// A message from this adapter carries them in our key (a packed string, or a field array
/// from an earlier version, in order): pairs that do not form a valid header are skipped, as
/// is an odd last element; a packed string is read up to its first malformed part. A message from another AMQP client has no such key: then every entry of its table
/// whose name is a valid header name and whose value is a string (valid UTF-8), a number or a
/// boolean becomes a header (numbers and booleans as their text: integers in decimal, floats
/// and doubles in Rust's shortest form that reads back to the same value (`1.5`, `NaN`,
/// `inf`), decimals exactly (`12.345`)), in the table's order (AMQP tables are sorted by name);
/// entries of other types (tables, arrays, byte arrays, timestamps…) are left out.
pub(crate) fn decode(table: Option<&FieldTable>) -> Headers {
    let mut headers = Headers::new();
    let Some(table) = table else {
        return headers;
    };
    let Some(ours) = table.inner().get(HEADERS_KEY) else {
        return foreign(table);
    };
    match ours {
        AMQPValue::LongString(packed) => {
            for (name, value) in unpack(packed.as_bytes()) {
                // An invalid name or value is skipped: a foreign publisher's mistake.
                let _ = headers.insert(name, value);
            }
        }
        AMQPValue::FieldArray(array) => {
            for pair in array.as_slice().chunks_exact(2) {
                if let (Some(name), Some(value)) = (text(&pair[0]), text(&pair[1])) {
                    let _ = headers.insert(name, value);
                }
            }
        }
        _ => {}
    }
    headers
}

/// A foreign publisher's headers table, as portable headers (see [`decode`]).
fn foreign(table: &FieldTable) -> Headers {
    let mut headers = Headers::new();
    for (name, value) in table.inner() {
        let value = match value {
            AMQPValue::LongString(_) | AMQPValue::ShortString(_) => text(value).map(str::to_string),
            AMQPValue::Boolean(b) => Some(b.to_string()),
            AMQPValue::ShortShortInt(n) => Some(n.to_string()),
            AMQPValue::ShortShortUInt(n) => Some(n.to_string()),
            AMQPValue::ShortInt(n) => Some(n.to_string()),
            AMQPValue::ShortUInt(n) => Some(n.to_string()),
            AMQPValue::LongInt(n) => Some(n.to_string()),
            AMQPValue::LongUInt(n) => Some(n.to_string()),
            AMQPValue::LongLongInt(n) => Some(n.to_string()),
            AMQPValue::Float(x) => Some(x.to_string()),
            AMQPValue::Double(x) => Some(x.to_string()),
            AMQPValue::DecimalValue(d) => Some(decimal_text(d.scale, d.value)),
            _ => None,
        };
        if let Some(value) = value {
            let _ = headers.insert(name.as_str(), value);
        }
    }
    headers
}

/// A decimal header value as exact text: `value × 10^-scale`, the value read as a signed 32-bit
/// integer (as RabbitMQ's errata and its Java client have it; lapin hands over the raw bits),
/// so `(3, 12345)` is `12.345`, `(2, 5)` is `0.05` and `(0, 7)` is `7`.
fn decimal_text(scale: u8, raw: u32) -> String {
    let value = i64::from(raw as i32);
    let digits = value.unsigned_abs().to_string();
    let scale = usize::from(scale);
    let sign = if value < 0 { "-" } else { "" };
    if scale == 0 {
        return format!("{sign}{digits}");
    }
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (whole, fraction) = padded.split_at(padded.len() - scale);
    format!("{sign}{whole}.{fraction}")
}

fn text(value: &AMQPValue) -> Option<&str> {
    match value {
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok(),
        AMQPValue::ShortString(s) => Some(s.as_str()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::types::DecimalValue;
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = AMQPValue> {
        let leaf = prop_oneof![
            "[ -~]{0,8}".prop_map(|s| AMQPValue::LongString(s.into())),
            prop::collection::vec(any::<u8>(), 0..8).prop_map(|b| AMQPValue::LongString(b.into())),
            "[a-z:]{0,8}".prop_map(|s| AMQPValue::ShortString(s.as_str().into())),
            any::<i64>().prop_map(AMQPValue::LongLongInt),
            any::<f32>().prop_map(AMQPValue::Float),
            any::<f64>().prop_map(AMQPValue::Double),
            (any::<u8>(), any::<u32>())
                .prop_map(|(scale, value)| AMQPValue::DecimalValue(DecimalValue { scale, value })),
            any::<bool>().prop_map(AMQPValue::Boolean),
            Just(AMQPValue::Void),
        ];
        leaf.prop_recursive(2, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5)
                    .prop_map(|v| AMQPValue::FieldArray(v.into())),
                inner.prop_map(|v| {
                    let mut t = FieldTable::default();
                    t.insert(HEADERS_KEY.into(), v);
                    AMQPValue::FieldTable(t)
                }),
            ]
        })
    }

    proptest! {
        #[test]
        fn round_trips_in_order(pairs in prop::collection::vec(("[!-9;-~]{1,12}", "[^\r\n]{0,12}"), 0..8)) {
            let mut headers = Headers::new();
            for (name, value) in &pairs {
                headers.insert(name.as_str(), value.as_str()).unwrap();
            }
            let table = encode(&headers).unwrap();
            prop_assert_eq!(table.is_none(), headers.is_empty());
            prop_assert_eq!(decode(table.as_ref()), headers);
        }

        #[test]
        fn foreign_tables_never_panic(ours in value(), other in value()) {
            let mut table = FieldTable::default();
            table.insert(HEADERS_KEY.into(), ours);
            table.insert("x-other".into(), other);
            let headers = decode(Some(&table));
            prop_assert!(headers.len() <= 8);
        }
    }

    proptest! {
        #[test]
        fn foreign_floats_read_back_exactly(f in any::<f32>(), d in any::<f64>()) {
            let mut theirs = FieldTable::default();
            theirs.insert("f".into(), AMQPValue::Float(f));
            theirs.insert("d".into(), AMQPValue::Double(d));
            let got = decode(Some(&theirs));
            let f_back: f32 = got.get("f").unwrap().parse().unwrap();
            let d_back: f64 = got.get("d").unwrap().parse().unwrap();
            prop_assert!(f_back.to_bits() == f.to_bits() || (f.is_nan() && f_back.is_nan()));
            prop_assert!(d_back.to_bits() == d.to_bits() || (d.is_nan() && d_back.is_nan()));
        }

        #[test]
        fn foreign_decimals_are_exact(scale in any::<u8>(), value in any::<i32>()) {
            let text = decimal_text(scale, value as u32);
            // The digits are the value's, the point `scale` digits from the end.
            let digits: String = text.chars().filter(char::is_ascii_digit).collect();
            let digits = digits.trim_start_matches('0');
            let magnitude = value.unsigned_abs().to_string();
            prop_assert_eq!(digits, magnitude.trim_start_matches('0'));
            prop_assert_eq!(text.starts_with('-'), value < 0);
            match text.split_once('.') {
                Some((_, fraction)) => prop_assert_eq!(fraction.len(), usize::from(scale)),
                None => prop_assert_eq!(scale, 0),
            }
        }
    }

    #[test]
    fn foreign_float_double_and_decimal_values_arrive_as_text() {
        let mut theirs = FieldTable::default();
        theirs.insert("f".into(), AMQPValue::Float(1.5));
        theirs.insert("g".into(), AMQPValue::Float(0.1));
        theirs.insert("d".into(), AMQPValue::Double(-2.25e-3));
        theirs.insert("e".into(), AMQPValue::Double(f64::INFINITY));
        let decimal = |scale, value: i32| {
            AMQPValue::DecimalValue(DecimalValue {
                scale,
                value: value as u32,
            })
        };
        theirs.insert("m1".into(), decimal(3, 12_345));
        theirs.insert("m2".into(), decimal(2, 5));
        theirs.insert("m3".into(), decimal(0, 7));
        theirs.insert("m4".into(), decimal(4, -12_345));
        theirs.insert("m5".into(), decimal(3, 0));
        let got = decode(Some(&theirs));
        assert_eq!(
            got.iter().collect::<Vec<_>>(),
            [
                ("d", "-0.00225"),
                ("e", "inf"),
                ("f", "1.5"),
                ("g", "0.1"),
                ("m1", "12.345"),
                ("m2", "0.05"),
                ("m3", "7"),
                ("m4", "-1.2345"),
                ("m5", "0.000"),
            ]
        );
    }

    #[test]
    fn tolerant_decoding() {
        let s = |x: &str| AMQPValue::LongString(x.into());
        let table = |v: AMQPValue| {
            let mut t = FieldTable::default();
            t.insert(HEADERS_KEY.into(), v);
            t
        };
        let odd = table(AMQPValue::FieldArray(vec![s("a"), s("1"), s("b")].into()));
        assert_eq!(decode(Some(&odd)).get("a"), Some("1"));
        // Packed: read up to the first malformed part.
        let packed = table(s("1:a1:12:bb"));
        assert_eq!(
            decode(Some(&packed)).iter().collect::<Vec<_>>(),
            [("a", "1")]
        );
        for junk in ["", ":", "x:a", "99:a", "1:a1", "-1:a", "1234567890:a"] {
            assert!(decode(Some(&table(s(junk)))).is_empty(), "{junk:?}");
        }
        let empty_value = table(s("1:a0:"));
        assert_eq!(decode(Some(&empty_value)).get("a"), Some(""));
        let mixed = vec![
            AMQPValue::LongInt(1),
            s("x"),
            s("bad:name"),
            s("y"),
            s("ok"),
            s("z"),
        ];
        let mixed = decode(Some(&table(AMQPValue::FieldArray(mixed.into()))));
        assert_eq!(mixed.iter().collect::<Vec<_>>(), [("ok", "z")]);
        assert!(decode(Some(&table(s("not an array")))).is_empty());
        assert!(decode(Some(&FieldTable::default())).is_empty());
        assert!(decode(None).is_empty());

        // Another client's table: strings, numbers and booleans, in the table's order.
        let mut theirs = FieldTable::default();
        theirs.insert("x-count".into(), AMQPValue::LongInt(-3));
        theirs.insert("b-flag".into(), AMQPValue::Boolean(true));
        theirs.insert("a-name".into(), AMQPValue::LongString("caf\u{e9}".into()));
        theirs.insert(
            "c-bytes".into(),
            AMQPValue::LongString(vec![0xff, 0].into()),
        );
        theirs.insert(
            "d-table".into(),
            AMQPValue::FieldTable(FieldTable::default()),
        );
        theirs.insert("bad name".into(), s("v"));
        let got = decode(Some(&theirs));
        assert_eq!(
            got.iter().collect::<Vec<_>>(),
            [
                ("a-name", "caf\u{e9}"),
                ("b-flag", "true"),
                ("x-count", "-3")
            ]
        );
        let mut big = Headers::new();
        big.insert("big", "x".repeat(MAX_HEADERS)).unwrap();
        assert_eq!(encode(&big).unwrap_err().kind(), ErrorKind::Invalid);
    }
}
