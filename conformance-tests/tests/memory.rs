//! The conformance suite on the in-process memory backend.
conformance_tests::suite!(conformance_tests::memory_harness);
