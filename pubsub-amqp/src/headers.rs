//! Our ordered headers as one AMQP header: a field array `[name, value, name, value, …]`.

use lapin::types::{AMQPValue, FieldArray, FieldTable, LongString};
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
    let mut array = FieldArray::default();
    for (name, value) in headers.iter() {
        array.push(AMQPValue::LongString(LongString::from(name)));
        array.push(AMQPValue::LongString(LongString::from(value)));
    }
    let mut table = FieldTable::default();
    table.insert(HEADERS_KEY.into(), AMQPValue::FieldArray(array));
    Ok(Some(table))
}

/// The portable headers in an AMQP headers table, tolerantly.
///
/// A message from this adapter carries them in our key (a field array, in order): pairs that
/// are not two (long or short) strings forming a valid header are skipped, as is an odd last
/// element. A message from another AMQP client has no such key: then every entry of its table
/// whose name is a valid header name and whose value is a string (valid UTF-8), a number or a
/// boolean becomes a header (numbers and booleans as their text), in the table's order (AMQP
/// tables are sorted by name); entries of other types (tables, arrays, byte arrays,
/// timestamps…) are left out.
pub(crate) fn decode(table: Option<&FieldTable>) -> Headers {
    let mut headers = Headers::new();
    let Some(table) = table else {
        return headers;
    };
    let Some(ours) = table.inner().get(HEADERS_KEY) else {
        return foreign(table);
    };
    let AMQPValue::FieldArray(array) = ours else {
        return headers;
    };
    for pair in array.as_slice().chunks_exact(2) {
        if let (Some(name), Some(value)) = (text(&pair[0]), text(&pair[1])) {
            // An invalid name or value is skipped: a foreign publisher's mistake.
            let _ = headers.insert(name, value);
        }
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
            _ => None,
        };
        if let Some(value) = value {
            let _ = headers.insert(name.as_str(), value);
        }
    }
    headers
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
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = AMQPValue> {
        let leaf = prop_oneof![
            "[ -~]{0,8}".prop_map(|s| AMQPValue::LongString(s.into())),
            prop::collection::vec(any::<u8>(), 0..8).prop_map(|b| AMQPValue::LongString(b.into())),
            "[a-z:]{0,8}".prop_map(|s| AMQPValue::ShortString(s.as_str().into())),
            any::<i64>().prop_map(AMQPValue::LongLongInt),
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
