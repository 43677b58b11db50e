//! CloudEvents 1.0 binary content mode: the event's attributes travel as `ce-*` headers and
//! its data as the payload, described by `content-type`.
//!
//! [`Publisher`](crate::Publisher) stamps these headers; [`Meta`](crate::Meta) reads them.

use std::time::SystemTime;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Event id, unique per source (the publisher helper uses a random UUID).
pub const CE_ID: &str = "ce-id";
/// Event type, such as `com.example.order.created`.
pub const CE_TYPE: &str = "ce-type";
/// Where the event comes from (a URI reference), such as `/orders-service`.
pub const CE_SOURCE: &str = "ce-source";
/// When the event happened, RFC 3339.
pub const CE_TIME: &str = "ce-time";
/// The CloudEvents version: `1.0`.
pub const CE_SPECVERSION: &str = "ce-specversion";
/// Optional subject of the event within the source.
pub const CE_SUBJECT: &str = "ce-subject";
/// Media type of the payload (`application/json` by default).
pub const CONTENT_TYPE: &str = "content-type";

/// The CloudEvents version this crate writes.
pub const SPEC_VERSION: &str = "1.0";
/// The content type of JSON data.
pub const JSON: &str = "application/json";

/// A new event id: a random (version 4) UUID.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// `time` as RFC 3339 in UTC with nanoseconds, such as `2026-11-30T19:19:07.123456789Z`.
pub fn format_time(time: SystemTime) -> String {
    OffsetDateTime::from(time)
        .format(&Rfc3339)
        // Only years outside 0..=9999 fail; SystemTime::now() is never there.
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

/// Reads an RFC 3339 time; `None` when it is not one.
pub fn parse_time(text: &str) -> Option<SystemTime> {
    OffsetDateTime::parse(text.trim(), &Rfc3339)
        .ok()
        .map(SystemTime::from)
}

/// Whether a `content-type` (absent counts as JSON) names JSON: `application/json`,
/// `text/json`, or any `+json` type such as `application/cloudevents+json`; parameters such as
/// `; charset=utf-8` are ignored.
pub fn is_json(content_type: Option<&str>) -> bool {
    let Some(ct) = content_type else {
        return true;
    };
    let essence = ct.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case(JSON)
        || essence.eq_ignore_ascii_case("text/json")
        || essence
            .rsplit_once('+')
            .is_some_and(|(_, suffix)| suffix.eq_ignore_ascii_case("json"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn time_round_trips() {
        let t = SystemTime::UNIX_EPOCH + Duration::new(1_790_000_000, 123_456_789);
        let text = format_time(t);
        assert!(text.ends_with('Z'), "{text}");
        assert_eq!(parse_time(&text), Some(t));
        assert_eq!(
            parse_time("2026-11-30T20:00:00+01:00"),
            parse_time("2026-11-30T19:00:00Z")
        );
        assert_eq!(parse_time("yesterday"), None);
    }

    #[test]
    fn ids_are_unique() {
        let ids: std::collections::HashSet<String> = (0..10_000).map(|_| new_id()).collect();
        assert_eq!(ids.len(), 10_000);
    }

    #[test]
    fn json_content_types() {
        assert!(is_json(None));
        assert!(is_json(Some("application/json; charset=utf-8")));
        assert!(is_json(Some("application/cloudevents+JSON")));
        assert!(!is_json(Some("application/octet-stream")));
        assert!(!is_json(Some("")));
    }
}
