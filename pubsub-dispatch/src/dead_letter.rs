//! The dead-letter message: the original payload and headers plus these headers.
//!
//! | header | value |
//! |---|---|
//! | `dlq-topic` | the topic the message was published to |
//! | `dlq-route` | the route that gave up on it |
//! | `dlq-attempts` | how many attempts were made (decimal) |
//! | `dlq-reason` | `failed`, `permanent`, `decode`, `panic` or `timeout` ([`FailureKind`]) |
//! | `dlq-error` | the last error's text (CR and LF become spaces; at most 1024 bytes) |
//! | `dlq-time` | when it was dead-lettered, RFC 3339 |

use std::time::SystemTime;

use pubsub_core::{Error, Headers, Message};

use crate::cloudevents::format_time;
use crate::error::{FailureKind, HandlerError};
use crate::route::DeadLetter;

/// The original topic.
pub const DLQ_TOPIC: &str = "dlq-topic";
/// The route that gave up.
pub const DLQ_ROUTE: &str = "dlq-route";
/// How many attempts were made.
pub const DLQ_ATTEMPTS: &str = "dlq-attempts";
/// The [`FailureKind`] of the last attempt.
pub const DLQ_REASON: &str = "dlq-reason";
/// The last error's text.
pub const DLQ_ERROR: &str = "dlq-error";
/// When the message was dead-lettered.
pub const DLQ_TIME: &str = "dlq-time";

/// Longest `dlq-error` value, in bytes.
const MAX_ERROR_TEXT: usize = 1024;

/// The dead-letter copy of `original` after `attempts` attempts ending in `error`.
pub(crate) fn dead_letter_message(
    policy: &DeadLetter,
    original: &Message,
    route: &str,
    attempts: u32,
    error: &HandlerError,
) -> Result<Message, Error> {
    let topic = policy.topic_for(original.topic())?;
    let mut headers: Headers = original.headers().clone();
    headers.insert(DLQ_TOPIC, original.topic().as_str())?;
    headers.insert(DLQ_ROUTE, header_text(route))?;
    headers.insert(DLQ_ATTEMPTS, attempts.to_string())?;
    headers.insert(DLQ_REASON, error.kind().as_str())?;
    headers.insert(DLQ_ERROR, header_text(&error.to_string()))?;
    headers.insert(DLQ_TIME, format_time(SystemTime::now()))?;
    Ok(Message::with_headers(
        topic,
        original.payload().clone(),
        headers,
    ))
}

/// Text fit for a header value: CR and LF become spaces, cut to [`MAX_ERROR_TEXT`] bytes on a
/// character boundary.
fn header_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_ERROR_TEXT));
    for c in text.chars() {
        if out.len() + c.len_utf8() > MAX_ERROR_TEXT {
            break;
        }
        out.push(if c == '\r' || c == '\n' { ' ' } else { c });
    }
    out
}

/// Reads the [`FailureKind`] back from a `dlq-reason` value.
pub fn parse_reason(text: &str) -> Option<FailureKind> {
    Some(match text {
        "failed" => FailureKind::Failed,
        "permanent" => FailureKind::Permanent,
        "decode" => FailureKind::Decode,
        "panic" => FailureKind::Panic,
        "timeout" => FailureKind::Timeout,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pubsub_core::Topic;

    #[test]
    fn headers_are_added_and_clean() {
        let mut h = Headers::new();
        h.insert("ce-id", "7").unwrap();
        let m = Message::with_headers(Topic::new("orders.eu.created").unwrap(), "x", h);
        let e = HandlerError::new(format!("line one\r\nline two {}", "é".repeat(2000)));
        let d = dead_letter_message(&DeadLetter::default(), &m, "r", 3, &e).unwrap();
        assert_eq!(d.topic().as_str(), "dlq.orders.eu.created");
        assert_eq!(d.payload().as_ref(), b"x");
        let g = |n| d.headers().get(n).unwrap();
        assert_eq!(g("ce-id"), "7");
        assert_eq!(g(DLQ_TOPIC), "orders.eu.created");
        assert_eq!(g(DLQ_ATTEMPTS), "3");
        assert_eq!(parse_reason(g(DLQ_REASON)), Some(FailureKind::Failed));
        assert!(g(DLQ_ERROR).starts_with("failed: line one  line two"));
        assert!(g(DLQ_ERROR).len() <= MAX_ERROR_TEXT);
        assert!(crate::cloudevents::parse_time(g(DLQ_TIME)).is_some());
    }

    #[test]
    fn too_long_a_topic_is_a_typed_error() {
        let long = "a".repeat(254);
        let m = Message::new(Topic::new(&long).unwrap(), "");
        let e = HandlerError::msg("x");
        let err = dead_letter_message(&DeadLetter::default(), &m, "r", 1, &e).unwrap_err();
        assert_eq!(err.kind(), pubsub_core::ErrorKind::Invalid);
    }
}
