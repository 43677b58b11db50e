//! Reading and checking a subscribe request before anything opens: patterns, token and grant,
//! format, and where to begin in a stream.

use axum::http::HeaderMap;
use pubsub::Pattern;
use pubsub::StartAt;

use crate::auth::bearer_token;
use crate::error::ApiError;
use crate::start::{parse_from, parse_last_event_id, LAST_EVENT_ID};
use crate::Shared;

/// What a subscriber asked for, checked.
pub(super) struct Checked {
    pub(super) patterns: Vec<Pattern>,
    pub(super) binary: bool,
    pub(super) identity: String,
    /// Where to begin in a stream (`from=`, or after the `Last-Event-ID`), if asked.
    pub(super) start: Option<StartAt>,
}

/// Reads and checks a subscribe request: 400, 401 or 403 before anything opens.
pub(super) fn check(
    gateway: &Shared,
    path_pattern: Option<String>,
    parts: &axum::http::request::Parts,
) -> Result<Checked, ApiError> {
    let mut texts: Vec<String> = path_pattern.into_iter().collect();
    let mut token = None;
    let mut binary = false;
    let mut from = None;
    for (key, value) in form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes()) {
        match &*key {
            "pattern" => texts.push(value.into_owned()),
            "token" if token.is_none() => token = Some(value.into_owned()),
            "format" => {
                binary = match &*value {
                    "json" => false,
                    "binary" => true,
                    _ => {
                        return Err(ApiError::bad_request(
                            "bad_request",
                            "format is `json` or `binary`",
                        ))
                    }
                }
            }
            "from" if from.is_none() => from = Some(value.into_owned()),
            other => {
                let shown: String = other.chars().take(32).collect();
                return Err(ApiError::bad_request(
                    "bad_request",
                    format!("unknown query parameter `{shown}` (pattern, token, format, from)"),
                ));
            }
        }
    }
    let token = bearer_token(&parts.headers, token.as_deref())?;
    let identity = gateway.auth.identify(token)?;
    let who = crate::auth::who(&identity, token.is_some());
    let mut patterns: Vec<Pattern> = Vec::with_capacity(texts.len());
    for text in &texts {
        let pattern = Pattern::new(text)
            .map_err(|e| ApiError::bad_request("bad_pattern", format!("pattern `{text}`: {e}")))?;
        if !patterns.contains(&pattern) {
            patterns.push(pattern);
        }
    }
    if patterns.is_empty() {
        return Err(ApiError::bad_request(
            "bad_pattern",
            "no pattern: use /sub/{pattern} or ?pattern=…",
        ));
    }
    let max = gateway.limits.max_patterns;
    if patterns.len() > max {
        return Err(ApiError::bad_request(
            "too_many_patterns",
            format!("{} patterns; at most {max} per connection", patterns.len()),
        ));
    }
    if let Some(outside) = patterns.iter().find(|p| !identity.grant.may_subscribe(p)) {
        return Err(ApiError::forbidden(format!(
            "{who} may not subscribe to `{outside}`"
        )));
    }
    let start = start(&parts.headers, from.as_deref())?;
    Ok(Checked {
        patterns,
        binary,
        identity: identity.name.clone(),
        start,
    })
}

/// Where the subscription begins: after the `Last-Event-ID` (a reconnecting `EventSource`),
/// else at `from`, else the default (`None`).
fn start(headers: &HeaderMap, from: Option<&str>) -> Result<Option<StartAt>, ApiError> {
    let bad = |what: &str, error: pubsub::Error| {
        ApiError::bad_request("bad_request", format!("{what}: {}", error.message()))
    };
    // An empty id is no id (an `EventSource` sends none then).
    if let Some(value) = headers.get(LAST_EVENT_ID).filter(|v| !v.is_empty()) {
        let text = value.to_str().map_err(|_| {
            ApiError::bad_request("bad_request", "Last-Event-ID: not a stream position")
        })?;
        return parse_last_event_id(text)
            .map(Some)
            .map_err(|e| bad("Last-Event-ID", e));
    }
    from.map(parse_from).transpose().map_err(|e| bad("from", e))
}
