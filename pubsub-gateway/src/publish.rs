//! `POST /pub/{topic}`: the body is the payload; each request header named
//! [`HEADER_PREFIX`]`NAME` becomes the message header `NAME` (lower case, as HTTP header names
//! are case-insensitive). Answers 202 `{"topic":"…"}` once the backend accepted the message.

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use pubsub::{Headers, Message, Topic};
use serde_json::json;

use crate::auth::bearer_token;
use crate::error::ApiError;
use crate::{metrics, Shared};

/// Request headers with this prefix become message headers, without it.
pub const HEADER_PREFIX: &str = "x-pubsub-";

pub(crate) async fn publish(
    State(gateway): State<std::sync::Arc<Shared>>,
    Path(topic): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match accept(&gateway, &topic, query.as_deref(), &headers, body).await {
        Ok(topic) => {
            metrics::published();
            (
                StatusCode::ACCEPTED,
                Json(json!({ "topic": topic.as_str() })),
            )
                .into_response()
        }
        Err(error) => {
            metrics::publish_error(error.code());
            tracing::debug!(%topic, %error, "publish refused");
            error.into_response()
        }
    }
}

async fn accept(
    gateway: &Shared,
    topic: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Topic, ApiError> {
    let query_token = query_param(query, "token")?;
    let token = bearer_token(headers, query_token.as_deref())?;
    let identity = gateway.auth.identify(token)?;
    let who = crate::auth::who(&identity, token.is_some());
    let topic = Topic::new(topic)
        .map_err(|e| ApiError::bad_request("bad_topic", format!("topic `{topic}`: {e}")))?;
    if !identity.grant.may_publish(&topic) {
        return Err(ApiError::forbidden(format!(
            "{who} may not publish to `{topic}`"
        )));
    }
    let max = gateway.limits.max_payload;
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(size) = declared.filter(|&size| size > max) {
        return Err(ApiError::too_large(Some(size), max));
    }
    let payload = axum::body::to_bytes(body, max).await.map_err(|e| {
        // `to_bytes` fails for a body over the limit, or a connection that broke off.
        if e.into_inner().is::<http_body_util::LengthLimitError>() {
            ApiError::too_large(None, max)
        } else {
            ApiError::bad_request("bad_request", "the request body could not be read")
        }
    })?;
    let message = Message::with_headers(topic.clone(), payload, message_headers(headers)?);
    gateway.pubsub.publish(message).await.map_err(|e| {
        tracing::warn!(%topic, error = %e, "publish failed");
        ApiError::from_pubsub(&e)
    })?;
    Ok(topic)
}

/// The message headers of a request: each `x-pubsub-NAME: value`, in order.
pub fn message_headers(headers: &HeaderMap) -> Result<Headers, ApiError> {
    let mut out = Headers::default();
    for (name, value) in headers {
        let Some(name) = name.as_str().strip_prefix(HEADER_PREFIX) else {
            continue;
        };
        let value = value.to_str().map_err(|_| {
            ApiError::bad_request(
                "bad_header",
                format!("header `{HEADER_PREFIX}{name}` is not visible ASCII"),
            )
        })?;
        out.insert(name, value)
            .map_err(|e| ApiError::bad_request("bad_header", e.to_string()))?;
    }
    Ok(out)
}

/// The single value of query parameter `name` (400 when repeated).
pub(crate) fn query_param(query: Option<&str>, name: &str) -> Result<Option<String>, ApiError> {
    let mut found = None;
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        if key == name {
            if found.is_some() {
                return Err(ApiError::bad_request(
                    "bad_request",
                    format!("query parameter `{name}` is given twice"),
                ));
            }
            found = Some(value.into_owned());
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixed_headers_become_message_headers() {
        let mut headers = HeaderMap::new();
        headers.insert("x-pubsub-trace-id", "abc".parse().unwrap());
        headers.insert("content-type", "text/plain".parse().unwrap());
        headers.insert("x-pubsub-k", "v w".parse().unwrap());
        let out = message_headers(&headers).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out.get("trace-id"), Some("abc"));
        assert_eq!(out.get("k"), Some("v w"));
        let mut bad = HeaderMap::new();
        bad.insert(
            "x-pubsub-k",
            axum::http::HeaderValue::from_bytes(b"\xff").unwrap(),
        );
        assert_eq!(message_headers(&bad).unwrap_err().code(), "bad_header");
    }

    #[test]
    fn query_params() {
        assert_eq!(
            query_param(Some("token=a%20b&x=1"), "token")
                .unwrap()
                .as_deref(),
            Some("a b")
        );
        assert_eq!(query_param(None, "token").unwrap(), None);
        assert!(query_param(Some("token=a&token=b"), "token").is_err());
    }
}
