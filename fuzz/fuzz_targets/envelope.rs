//! The envelope decoder on arbitrary bytes, as they are and behind a valid preamble.
//!
//! Whatever decodes must re-encode to a frame that decodes to the same headers and payload;
//! whatever does not must come back whole from `decode_lossy`. The in-place view (`Frame`)
//! must agree with `decode`: the same headers and payload, or the same error.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use pubsub_core::adapter::envelope::{self, Frame, MAGIC, VERSION};

fuzz_target!(|data: &[u8]| {
    check(Bytes::copy_from_slice(data));
    let mut framed = MAGIC.to_vec();
    framed.push(VERSION);
    framed.extend_from_slice(data);
    check(Bytes::from(framed));
});

fn check(frame: Bytes) {
    let lossy = envelope::decode_lossy(frame.clone());
    let view = Frame::parse(&frame);
    match (&view, envelope::decode(frame.clone())) {
        (Ok(view), Ok(decoded)) => {
            assert_eq!(view.to_headers(), decoded.headers);
            assert!(view.headers().eq(decoded.headers.iter()));
            assert_eq!(view.payload(), decoded.payload);
        }
        (Err(view), Err(error)) => assert_eq!(view, &error),
        _ => panic!("Frame::parse and decode disagree on {frame:?}"),
    }
    match envelope::decode(frame.clone()) {
        Ok(decoded) => {
            assert_eq!(lossy, decoded);
            let again = envelope::encode(&decoded.headers, &decoded.payload);
            if !decoded.payload.starts_with(&MAGIC) {
                let len = envelope::encoded_len(&decoded.headers, decoded.payload.len());
                assert_eq!(again.len(), len);
            }
            let redecoded = envelope::decode(again);
            assert_eq!(redecoded.as_ref(), Ok(&decoded));
        }
        Err(_) => {
            assert!(lossy.headers.is_empty());
            assert_eq!(lossy.payload, frame);
        }
    }
}
