//! The NATS adapter's header decoding on a header block built from arbitrary bytes, line by
//! line (`Name: value`, as async-nats parses them: invalid lines skipped, values trimmed), and
//! its permission-violation parser on the bytes as server error text.
//!
//! Never panics; what it decodes is sent again (`to_nats`), through the same wire changes,
//! and decodes to the same headers, in order.
#![no_main]

use std::str::FromStr;

use libfuzzer_sys::fuzz_target;
use pubsub_core::Headers;
use pubsub_nats::fuzzing::{
    decode_value, encode_value, headers_from_nats, headers_to_nats, parse_violation, HeaderMap,
    HeaderName, HeaderValue,
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_violation(text);
    let _ = decode_value(text);
    if !text.contains(['\r', '\n']) {
        assert_eq!(decode_value(&encode_value(text)), text);
    }
    let mut map = HeaderMap::new();
    for line in text.split("\r\n") {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_str(name),
            HeaderValue::from_str(value.trim()),
        ) {
            map.append(name, value);
        }
    }
    let headers = headers_from_nats(&map);
    assert_eq!(wire(&headers), headers);
});

/// `headers` sent and received: encoded, order lost, values trimmed, decoded.
fn wire(headers: &Headers) -> Headers {
    let Ok(Some(map)) = headers_to_nats(headers) else {
        return Headers::new();
    };
    let mut received = HeaderMap::new();
    for (name, values) in map.iter() {
        for value in values {
            received.append(name.clone(), value.as_str().trim());
        }
    }
    let back = headers_from_nats(&received);
    let names = |h: &Headers| h.iter().map(|(n, _)| n.to_string()).collect::<Vec<_>>();
    assert_eq!(names(&back), names(headers));
    back
}
