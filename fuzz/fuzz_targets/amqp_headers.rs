//! The AMQP adapter's headers decoder on a headers table parsed from arbitrary bytes (as the
//! wire carries it: AMQP field-table encoding), foreign or in our own key.
//!
//! Never panics; what it decodes re-encodes (when it fits one frame) to a table that decodes
//! to the same headers, in order.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pubsub_amqp::fuzzing::{headers_from_table, headers_to_table};
use pubsub_amqp::lapin::types::parsing::parse_field_table;
use pubsub_amqp::lapin::types::{AMQPValue, FieldTable};
use pubsub_amqp::HEADERS_KEY;

fuzz_target!(|data: &[u8]| {
    let Ok((_, table)) = parse_field_table(data) else {
        return;
    };
    check(&table);
    // The same values as the elements of our own key's array.
    let array = table.inner().values().cloned().collect::<Vec<_>>();
    let mut ours = FieldTable::default();
    ours.insert(HEADERS_KEY.into(), AMQPValue::FieldArray(array.into()));
    check(&ours);
});

fn check(table: &FieldTable) {
    let headers = headers_from_table(Some(table));
    if let Ok(encoded) = headers_to_table(&headers) {
        let again = headers_from_table(encoded.as_ref());
        assert_eq!(again, headers);
        let names =
            |h: &pubsub_core::Headers| h.iter().map(|(n, _)| n.to_string()).collect::<Vec<_>>();
        assert_eq!(names(&again), names(&headers));
    }
}
