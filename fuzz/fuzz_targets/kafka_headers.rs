//! The Kafka adapter's record-header decoder on raw headers cut from arbitrary bytes: each
//! header is `key 0 value 0` (a value starting with 0xFF is null).
//!
//! Never panics; every raw header is kept or counted as skipped; what it decodes is sent again
//! and decodes to the same headers, in order, with nothing skipped.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pubsub_kafka::fuzzing::{headers_from_raw, headers_to_raw};

fuzz_target!(|data: &[u8]| {
    let parts: Vec<&[u8]> = data.split(|&b| b == 0).collect();
    let raw: Vec<(&[u8], Option<&[u8]>)> = parts
        .chunks(2)
        .map(|pair| {
            let value = pair.get(1).copied().unwrap_or_default();
            (pair[0], (value.first() != Some(&0xff)).then_some(value))
        })
        .collect();
    let (headers, skipped) = headers_from_raw(raw.iter().copied());
    assert!(headers.len() + skipped <= raw.len());
    let sent = headers_to_raw(&headers);
    let (again, none) = headers_from_raw(sent.iter().map(|(k, v)| (&k[..], Some(&v[..]))));
    assert_eq!(none, 0);
    assert_eq!(again, headers);
    let names = |h: &pubsub_core::Headers| h.iter().map(|(n, _)| n.to_string()).collect::<Vec<_>>();
    assert_eq!(names(&again), names(&headers));
});
