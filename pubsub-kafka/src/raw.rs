//! The few reads of librdkafka data that rdkafka's safe API would panic on: it unwraps topic
//! names and header keys as UTF-8, and a foreign producer (or a lenient broker such as Tansu)
//! can put any bytes there. These read the bytes as they are; the callers decide. And one
//! that rdkafka does not wrap: a topic's id ([`topic_id`], a stream's epoch).

use std::ffi::{c_char, c_void, CStr};
use std::time::Duration;

use rdkafka::bindings as rd;
use rdkafka::message::BorrowedMessage;
use rdkafka::types::RDKafkaErrorCode;

/// The topic name of a consumed message, as bytes.
pub(crate) fn topic_name<'a>(message: &'a BorrowedMessage<'_>) -> &'a [u8] {
    // SAFETY: a consumed message always has its topic handle, whose name is a NUL-terminated
    // string that lives as long as the message (librdkafka keeps the topic referenced).
    unsafe {
        let rkt = (*message.ptr()).rkt;
        if rkt.is_null() {
            return &[];
        }
        let name = rd::rd_kafka_topic_name(rkt);
        if name.is_null() {
            return &[];
        }
        CStr::from_ptr(name).to_bytes()
    }
}

/// Calls `each(key, value)` for every record header of `message`, in order, with the raw
/// bytes (`None`: a null value).
pub(crate) fn for_each_header(
    message: &BorrowedMessage<'_>,
    mut each: impl FnMut(&[u8], Option<&[u8]>),
) {
    // SAFETY: the headers belong to the message and live as long as it; every pointer
    // librdkafka returns is checked for null and read within the sizes it gives.
    unsafe {
        let mut headers: *mut rd::rd_kafka_headers_t = std::ptr::null_mut();
        let err = rd::rd_kafka_message_headers(message.ptr(), &mut headers);
        if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || headers.is_null() {
            return;
        }
        let count = rd::rd_kafka_header_cnt(headers);
        for i in 0..count {
            let mut name: *const c_char = std::ptr::null();
            let mut value: *const c_void = std::ptr::null();
            let mut size = 0usize;
            let err = rd::rd_kafka_header_get_all(headers, i, &mut name, &mut value, &mut size);
            if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
                continue;
            }
            let key = CStr::from_ptr(name).to_bytes();
            let value =
                (!value.is_null()).then(|| std::slice::from_raw_parts(value.cast::<u8>(), size));
            each(key, value);
        }
    }
}

/// One topic of the cluster's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TopicInfo {
    /// The name, as bytes.
    pub(crate) name: Vec<u8>,
    /// How many partitions it has.
    pub(crate) partitions: i32,
}

/// The metadata of every topic in the cluster, through the client `rk`. Blocking: call it
/// from `spawn_blocking`. Topics reported with an error are left out.
pub(crate) fn all_topics(
    rk: *mut rd::rd_kafka_t,
    timeout: Duration,
) -> Result<Vec<TopicInfo>, RDKafkaErrorCode> {
    let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: `rk` is a live client (the caller holds it); the metadata is read within the
    // counts librdkafka gives and destroyed exactly once.
    unsafe {
        let mut md: *const rd::rd_kafka_metadata = std::ptr::null();
        let err = rd::rd_kafka_metadata(rk, 1, std::ptr::null_mut(), &mut md, timeout_ms);
        if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || md.is_null() {
            return Err(err.into());
        }
        let count = usize::try_from((*md).topic_cnt).unwrap_or(0);
        let mut out = Vec::with_capacity(count);
        for i in 0..count {
            let t = &*(*md).topics.add(i);
            if t.topic.is_null() || t.err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                continue;
            }
            out.push(TopicInfo {
                name: CStr::from_ptr(t.topic).to_bytes().to_vec(),
                partitions: t.partition_cnt,
            });
        }
        rd::rd_kafka_metadata_destroy(md);
        Ok(out)
    }
}

/// Whether the cluster answers a metadata request (for the topics the client knows only)
/// within `timeout`. Blocking.
pub(crate) fn probe(rk: *mut rd::rd_kafka_t, timeout: Duration) -> bool {
    let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: as in `all_topics`.
    unsafe {
        let mut md: *const rd::rd_kafka_metadata = std::ptr::null();
        let err = rd::rd_kafka_metadata(rk, 0, std::ptr::null_mut(), &mut md, timeout_ms);
        if !md.is_null() {
            rd::rd_kafka_metadata_destroy(md);
        }
        err == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
    }
}

/// The topic id (a UUID: its most and least significant 64 bits) of the topic `name`, through
/// the client `rk` (DescribeTopics); `None` when the broker gives none (an error, no answer
/// within `timeout`, or the nil id of a broker without topic ids). Blocking.
pub(crate) fn topic_id(
    rk: *mut rd::rd_kafka_t,
    name: &str,
    timeout: Duration,
) -> Option<(i64, i64)> {
    let name = std::ffi::CString::new(name).ok()?;
    let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: `rk` is a live client; the collection, the queue and the event are created and
    // destroyed here exactly once; the descriptions belong to the event and are read before it
    // is destroyed, within the count librdkafka gives.
    unsafe {
        let mut names = [name.as_ptr()];
        let collection = rd::rd_kafka_TopicCollection_of_topic_names(names.as_mut_ptr(), 1);
        if collection.is_null() {
            return None;
        }
        let queue = rd::rd_kafka_queue_new(rk);
        if queue.is_null() {
            rd::rd_kafka_TopicCollection_destroy(collection);
            return None;
        }
        rd::rd_kafka_DescribeTopics(rk, collection, std::ptr::null(), queue);
        let event = rd::rd_kafka_queue_poll(queue, timeout_ms);
        let mut id = None;
        if !event.is_null() {
            let result = rd::rd_kafka_event_DescribeTopics_result(event);
            if !result.is_null()
                && rd::rd_kafka_event_error(event)
                    == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
            {
                let mut count = 0usize;
                let topics = rd::rd_kafka_DescribeTopics_result_topics(result, &mut count);
                if !topics.is_null() && count == 1 {
                    let description = *topics;
                    if !description.is_null()
                        && rd::rd_kafka_TopicDescription_error(description).is_null()
                    {
                        let uuid = rd::rd_kafka_TopicDescription_topic_id(description);
                        if !uuid.is_null() {
                            let most = rd::rd_kafka_Uuid_most_significant_bits(uuid);
                            let least = rd::rd_kafka_Uuid_least_significant_bits(uuid);
                            if most != 0 || least != 0 {
                                id = Some((most, least));
                            }
                        }
                    }
                }
            }
            rd::rd_kafka_event_destroy(event);
        }
        rd::rd_kafka_queue_destroy(queue);
        rd::rd_kafka_TopicCollection_destroy(collection);
        id
    }
}
