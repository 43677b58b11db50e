//! The envelope's unit tests and properties.

use proptest::prelude::*;

use super::*;
use crate::headers::HeaderError;

fn headers(pairs: &[(&str, &str)]) -> Headers {
    let mut h = Headers::new();
    for (n, v) in pairs {
        h.insert(*n, *v).unwrap();
    }
    h
}

fn frame(rest: &[u8]) -> Bytes {
    let mut v = MAGIC.to_vec();
    v.extend_from_slice(rest);
    Bytes::from(v)
}

#[test]
fn plain_payload_passes_through_without_copy() {
    let payload = Bytes::from_static(b"hello");
    let out = encode(&Headers::new(), &payload);
    assert_eq!(out, payload);
    assert_eq!(out.as_ptr(), payload.as_ptr());
    assert_eq!(encoded_len(&Headers::new(), payload.len()), out.len());
}

#[test]
fn empty_payload_without_headers_is_empty() {
    let out = encode(&Headers::new(), &Bytes::new());
    assert!(out.is_empty());
    let d = decode(out).unwrap();
    assert!(d.headers.is_empty());
    assert!(d.payload.is_empty());
}

#[test]
fn frame_layout_is_as_documented() {
    let h = headers(&[("a", "xy"), ("bc", "")]);
    let out = encode(&h, &Bytes::from_static(b"pl"));
    assert_eq!(
        &out[..],
        b"\xF5PSE\x01\x02\x01a\x02xy\x02bc\x00pl".as_slice()
    );
    assert_eq!(out.len(), encoded_len(&h, 2));
}

#[test]
fn round_trip_keeps_order_and_slices_payload() {
    let h = headers(&[("z", "1"), ("a", "café ☃"), ("m", "")]);
    let payload = Bytes::from_static(b"\x00\xFFbinary");
    let out = encode(&h, &payload);
    let d = decode(out.clone()).unwrap();
    assert_eq!(
        d.headers.iter().collect::<Vec<_>>(),
        h.iter().collect::<Vec<_>>()
    );
    assert_eq!(d.payload, payload);
    // Zero-copy: the payload points into the frame.
    let start = out.len() - payload.len();
    assert_eq!(d.payload.as_ptr(), out[start..].as_ptr());
}

#[test]
fn magic_prefixed_payload_without_headers_is_framed() {
    let payload = frame(b"\x01\x00");
    let out = encode(&Headers::new(), &payload);
    assert_eq!(out.len(), payload.len() + PREAMBLE_LEN + 1);
    let d = decode(out).unwrap();
    assert!(d.headers.is_empty());
    assert_eq!(d.payload, payload);
}

#[test]
fn short_prefix_of_magic_is_plain() {
    for n in 0..MAGIC.len() {
        let payload = Bytes::copy_from_slice(&MAGIC[..n]);
        assert_eq!(encode(&Headers::new(), &payload), payload);
        assert_eq!(decode(payload.clone()).unwrap().payload, payload);
    }
}

#[test]
fn long_values_use_multi_byte_varints() {
    let value = "v".repeat(300);
    let h = headers(&[("k", &value)]);
    let out = encode(&h, &Bytes::new());
    assert_eq!(out.len(), encoded_len(&h, 0));
    assert_eq!(out[PREAMBLE_LEN + 3..PREAMBLE_LEN + 5], [0xAC, 0x02]);
    assert_eq!(decode(out).unwrap().headers.get("k"), Some(value.as_str()));
}

#[test]
fn unknown_version() {
    assert_eq!(
        decode(frame(b"\x02\x00")),
        Err(EnvelopeError::UnsupportedVersion {
            version: 2,
            offset: 4
        })
    );
}

#[test]
fn truncated_fields() {
    let cases: [(&[u8], FrameField); 5] = [
        (b"", FrameField::Version),
        (b"\x01", FrameField::HeaderCount),
        (b"\x01\x80", FrameField::HeaderCount),
        (b"\x01\x01", FrameField::NameLength),
        (b"\x01\x01\x01a", FrameField::ValueLength),
    ];
    for (rest, field) in cases {
        let f = frame(rest);
        let offset = f.len();
        assert_eq!(
            decode(f),
            Err(EnvelopeError::Truncated { field, offset }),
            "{rest:?}"
        );
    }
}

#[test]
fn length_past_end() {
    assert_eq!(
        decode(frame(b"\x01\x01\x01a\x03xy")),
        Err(EnvelopeError::LengthPastEnd {
            field: FrameField::Value,
            len: 3,
            remaining: 2,
            offset: 9
        })
    );
    // A length that does not fit in usize on any platform still fails cleanly.
    let mut rest = b"\x01\x01".to_vec();
    rest.extend_from_slice(&[0xFF; 9]);
    rest.push(0x01);
    assert!(matches!(
        decode(frame(&rest)),
        Err(EnvelopeError::LengthPastEnd {
            field: FrameField::Name,
            len: u64::MAX,
            ..
        })
    ));
}

#[test]
fn varint_overflow() {
    let mut rest = vec![0x01];
    rest.extend_from_slice(&[0xFF; 9]);
    rest.push(0x02);
    assert_eq!(
        decode(frame(&rest)),
        Err(EnvelopeError::VarintOverflow {
            field: FrameField::HeaderCount,
            offset: 5
        })
    );
    let mut rest = vec![0x01];
    rest.extend_from_slice(&[0x80; 11]);
    assert!(matches!(
        decode(frame(&rest)),
        Err(EnvelopeError::VarintOverflow { .. })
    ));
}

#[test]
fn huge_count_fails_without_allocating() {
    let mut rest = vec![0x01];
    rest.extend_from_slice(&[0xFF; 9]);
    rest.push(0x01);
    let f = frame(&rest);
    let offset = f.len();
    assert_eq!(
        decode(f),
        Err(EnvelopeError::Truncated {
            field: FrameField::NameLength,
            offset
        })
    );
}

#[test]
fn invalid_headers() {
    assert!(matches!(
        decode(frame(b"\x01\x01\x00\x00")),
        Err(EnvelopeError::InvalidHeader {
            index: 0,
            offset: 7,
            source: HeaderError::EmptyName
        })
    ));
    assert!(matches!(
        decode(frame(b"\x01\x01\x03a:b\x00")),
        Err(EnvelopeError::InvalidHeader {
            source: HeaderError::BadNameByte { byte: b':', .. },
            ..
        })
    ));
    assert!(matches!(
        decode(frame(b"\x01\x01\x01a\x02x\ny")),
        Err(EnvelopeError::InvalidHeader {
            index: 0,
            offset: 9,
            source: HeaderError::BadValue { offset: 1, .. }
        })
    ));
    assert_eq!(
        decode(frame(b"\x01\x01\x02\xC3\x28\x00")),
        Err(EnvelopeError::NotUtf8 {
            field: FrameField::Name,
            index: 0,
            offset: 7
        })
    );
    assert_eq!(
        decode(frame(b"\x01\x01\x01a\x01\xFF")),
        Err(EnvelopeError::NotUtf8 {
            field: FrameField::Value,
            index: 0,
            offset: 9
        })
    );
}

#[test]
fn overlong_varints_are_read_and_offsets_stay_exact() {
    let d = decode(frame(b"\x01\x01\x81\x00a\x80\x00p")).unwrap();
    assert_eq!(d.headers.get("a"), Some(""));
    assert_eq!(d.payload, "p");
    assert!(matches!(
        decode(frame(b"\x01\x01\x81\x00:\x00")),
        Err(EnvelopeError::InvalidHeader { offset: 8, .. })
    ));
}

#[test]
fn duplicate_header() {
    assert_eq!(
        decode(frame(b"\x01\x02\x01a\x01x\x01a\x01y")),
        Err(EnvelopeError::DuplicateHeader {
            name: "a".into(),
            index: 1,
            offset: 11
        })
    );
}

#[test]
fn many_headers_and_a_late_repeat() {
    let names: Vec<String> = (0..40).map(|i| format!("h{i}")).collect();
    let mut h = Headers::new();
    for name in &names {
        h.insert(name.as_str(), "v").unwrap();
    }
    let out = encode(&h, &Bytes::from_static(b"p"));
    assert_eq!(decode(out.clone()).unwrap().headers, h);
    assert_eq!(Frame::parse(&out).unwrap().to_headers(), h);
    // Header 30 repeats header 3's name: found after the names moved to the hash set.
    let mut rest = vec![VERSION, 31];
    let mut offset = 0;
    for (i, name) in names.iter().take(31).enumerate() {
        let name = if i == 30 { &names[3] } else { name };
        offset = MAGIC.len() + rest.len();
        rest.extend_from_slice(&[name.len() as u8]);
        rest.extend_from_slice(name.as_bytes());
        rest.extend_from_slice(b"\x00");
    }
    let expected = Err(EnvelopeError::DuplicateHeader {
        name: names[3].clone(),
        index: 30,
        offset: offset + 1,
    });
    let f = frame(&rest);
    assert_eq!(decode(f.clone()), expected);
    assert_eq!(
        Frame::parse(&f).map(|f| f.payload()),
        expected.map(|d: Decoded| d.payload)
    );
}

#[test]
fn view_of_a_plain_payload_is_the_whole_bytes() {
    let plain = Bytes::from_static(b"plain");
    let frame = Frame::parse(&plain).unwrap();
    assert_eq!(frame.header_count(), 0);
    assert_eq!(frame.headers().next(), None);
    assert_eq!(frame.header("a"), None);
    assert!(frame.to_headers().is_empty());
    assert_eq!(frame.payload().as_ptr(), plain.as_ptr());
}

#[test]
fn lossy_keeps_malformed_bytes() {
    let bad = frame(b"\x01\x05");
    let d = decode_lossy(bad.clone());
    assert!(d.headers.is_empty());
    assert_eq!(d.payload, bad);
    let good = encode(&headers(&[("k", "v")]), &Bytes::from_static(b"p"));
    assert_eq!(decode_lossy(good).headers.get("k"), Some("v"));
}

#[test]
fn errors_convert_and_read_well() {
    let err = decode(frame(b"\x07")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unsupported envelope version 7 at byte 4 (this build reads 1)"
    );
    let err: crate::Error = err.into();
    assert_eq!(err.kind(), crate::ErrorKind::Invalid);
    assert!(
        err.to_string().contains("invalid envelope frame: "),
        "{err}"
    );
}

fn arb_headers() -> impl Strategy<Value = Headers> {
    let name = "[!-9;-~]{1,12}";
    let value = "[^\r\n]{0,16}";
    prop::collection::vec((name, value), 0..6).prop_map(|pairs| {
        let mut h = Headers::new();
        for (n, v) in pairs {
            h.insert(n, v).unwrap();
        }
        h
    })
}

fn arb_payload() -> impl Strategy<Value = Bytes> {
    let bytes = prop::collection::vec(any::<u8>(), 0..64);
    prop_oneof![
        bytes.clone().prop_map(Bytes::from),
        bytes.prop_map(|b| frame(&b)),
    ]
}

proptest! {
    #[test]
    fn prop_round_trip(h in arb_headers(), payload in arb_payload()) {
        let out = encode(&h, &payload);
        if !payload.starts_with(&MAGIC) {
            prop_assert_eq!(out.len(), encoded_len(&h, payload.len()));
        }
        let d = decode(out).unwrap();
        prop_assert_eq!(d.headers, h);
        prop_assert_eq!(d.payload, payload);
    }

    #[test]
    fn prop_view_round_trip(h in arb_headers(), payload in arb_payload()) {
        let out = encode(&h, &payload);
        let frame = Frame::parse(&out).unwrap();
        prop_assert_eq!(frame.header_count(), h.len());
        prop_assert_eq!(frame.headers().len(), h.len());
        prop_assert!(frame.headers().eq(h.iter()));
        for (name, value) in h.iter() {
            prop_assert_eq!(frame.header(name), Some(value));
        }
        prop_assert_eq!(frame.to_headers(), h);
        prop_assert_eq!(frame.payload(), payload);
    }

    #[test]
    fn prop_view_agrees_with_decode(bytes in prop::collection::vec(any::<u8>(), 0..128), framed in any::<bool>()) {
        let f = if framed {
            let mut v = MAGIC.to_vec();
            v.push(VERSION);
            v.extend_from_slice(&bytes);
            Bytes::from(v)
        } else {
            Bytes::from(bytes)
        };
        match (decode(f.clone()), Frame::parse(&f)) {
            (Ok(d), Ok(frame)) => {
                prop_assert_eq!(frame.to_headers(), d.headers);
                prop_assert_eq!(frame.payload(), d.payload);
            }
            (Err(e), Err(view_error)) => prop_assert_eq!(e, view_error),
            (d, v) => prop_assert!(false, "decode {:?} but view {:?}", d, v.map(|f| f.payload())),
        }
    }

    #[test]
    fn prop_decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..128)) {
        let f = Bytes::from(bytes);
        let _ = decode(f.clone());
        let lossy = decode_lossy(f.clone());
        if lossy.headers.is_empty() {
            prop_assert!(f.ends_with(&lossy.payload));
        }
    }

    #[test]
    fn prop_decode_framed_noise_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..128)) {
        let mut v = MAGIC.to_vec();
        v.push(VERSION);
        v.extend_from_slice(&bytes);
        if let Ok(d) = decode(Bytes::from(v)) {
            // Whatever decodes re-encodes to something that decodes the same.
            let again = decode(encode(&d.headers, &d.payload)).unwrap();
            prop_assert_eq!(again, d);
        }
    }

    #[test]
    fn prop_truncation_is_an_error(h in arb_headers(), payload in arb_payload(), cut in any::<prop::sample::Index>()) {
        let out = encode(&h, &payload);
        if out.starts_with(&MAGIC) {
            // Cutting into the headers must fail; cutting into the payload only shortens it.
            let header_end = out.len() - payload.len();
            let at = cut.index(header_end.max(1));
            if at >= MAGIC.len() {
                prop_assert!(decode(out.slice(..at)).is_err());
            } else {
                prop_assert!(decode(out.slice(..at)).is_ok());
            }
        }
    }
}
