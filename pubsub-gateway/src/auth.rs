//! Who a request is ([`Identity`]) and what it may do ([`Grant`]).
//!
//! A client presents a bearer token, in the first of these places that has one:
//!
//! 1. the `Authorization: Bearer TOKEN` header;
//! 2. the `token` query parameter (`/sub/room.>?token=TOKEN`): browsers' `EventSource` and
//!    `WebSocket` cannot set headers;
//! 3. for WebSockets, a subprotocol `bearer.TOKEN` offered beside `pubsub`
//!    (`new WebSocket(url, ["pubsub", "bearer." + token])`); the gateway answers with
//!    `pubsub`, never echoing the token. Only tokens made of subprotocol characters fit there
//!    (JWTs do).
//!
//! A token is either one of the configuration's static tokens, or a JSON Web Token signed with
//! HS256 and the configured secret, whose claims say what it grants:
//!
//! ```json
//! { "sub": "alice", "exp": 1767225600, "publish": ["room.42.msg"], "subscribe": ["room.42.>"] }
//! ```
//!
//! `exp` is required. A publish is allowed when one of the `publish` patterns matches the
//! topic; a subscription when each of its patterns lies within one `subscribe` pattern
//! ([`Pattern::is_subset_of`]): a grant `room.42.>` permits `room.42.*.typing` but not
//! `room.>`.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use axum::http::HeaderMap;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use pubsub::{Pattern, Topic};
use serde::Deserialize;

use crate::config::{AuthConfig, GrantConfig};
use crate::error::{ApiError, GatewayError};

/// The subprotocol a WebSocket client offers (and the gateway selects) beside `bearer.TOKEN`.
pub const SUBPROTOCOL: &str = "pubsub";

/// Publish and subscribe patterns a token grants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grant {
    /// A topic may be published to when one of these matches it.
    pub publish: Vec<Pattern>,
    /// A pattern may be subscribed to when it lies within one of these.
    pub subscribe: Vec<Pattern>,
}

impl Grant {
    /// Everything: `>` for both.
    pub fn everything() -> Grant {
        let all = vec![Pattern::new(">").unwrap_or_else(|_| unreachable!("`>` is a pattern"))];
        Grant {
            publish: all.clone(),
            subscribe: all,
        }
    }

    /// Whether `topic` may be published to.
    pub fn may_publish(&self, topic: &Topic) -> bool {
        self.publish.iter().any(|p| p.matches(topic))
    }

    /// Whether `pattern` may be subscribed to: it asks for nothing outside one granted pattern.
    pub fn may_subscribe(&self, pattern: &Pattern) -> bool {
        self.subscribe.iter().any(|g| pattern.is_subset_of(g))
    }
}

impl From<&GrantConfig> for Grant {
    fn from(config: &GrantConfig) -> Self {
        Grant {
            publish: config.publish.clone(),
            subscribe: config.subscribe.clone(),
        }
    }
}

/// Who made a request, and what they may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The static token's name, the JWT's `sub` (`jwt` when it has none), or `anonymous`.
    pub name: String,
    /// What it may do.
    pub grant: Grant,
}

/// Decides who a bearer token is.
pub struct Authenticator {
    open: bool,
    tokens: HashMap<String, Arc<Identity>>,
    jwt: Option<(DecodingKey, Validation)>,
    anonymous: Option<Arc<Identity>>,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("open", &self.open)
            .field("tokens", &self.tokens.len())
            .field("jwt", &self.jwt.is_some())
            .field("anonymous", &self.anonymous)
            .finish()
    }
}

/// The claims of a gateway JWT (besides `exp`, which the validation checks).
#[derive(Debug, Deserialize)]
struct Claims {
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    publish: Vec<String>,
    #[serde(default)]
    subscribe: Vec<String>,
}

impl Authenticator {
    /// Builds the authenticator of a configuration.
    pub fn new(config: &AuthConfig) -> Result<Authenticator, GatewayError> {
        let tokens = config
            .tokens
            .iter()
            .map(|t| {
                let identity = Identity {
                    name: t.name.clone(),
                    grant: Grant {
                        publish: t.publish.clone(),
                        subscribe: t.subscribe.clone(),
                    },
                };
                (t.token.expose().to_string(), Arc::new(identity))
            })
            .collect();
        let jwt = match &config.jwt_secret {
            Some(secret) => {
                let mut validation = Validation::new(Algorithm::HS256);
                validation.set_required_spec_claims(&["exp"]);
                validation.leeway = 5;
                let key = DecodingKey::from_secret(secret.expose().as_bytes()).map_err(|e| {
                    GatewayError::Config(format!("auth.jwt_secret is not a usable key: {e}"))
                })?;
                Some((key, validation))
            }
            None => None,
        };
        let anonymous = config.anonymous.as_ref().map(|grant| {
            Arc::new(Identity {
                name: "anonymous".into(),
                grant: Grant::from(grant),
            })
        });
        Ok(Authenticator {
            open: config.is_open(),
            tokens,
            jwt,
            anonymous,
        })
    }

    /// Who presents `token` (`None`: no token): 401 for a missing token where one is needed,
    /// or for a token that is not valid.
    pub fn identify(&self, token: Option<&str>) -> Result<Arc<Identity>, ApiError> {
        if self.open {
            return Ok(Arc::new(Identity {
                name: "anonymous".into(),
                grant: Grant::everything(),
            }));
        }
        let Some(token) = token else {
            return self.anonymous.clone().ok_or_else(|| {
                ApiError::unauthorized("a bearer token is required (Authorization header, `token` query parameter or `bearer.TOKEN` subprotocol)")
            });
        };
        if let Some(identity) = self.tokens.get(token) {
            return Ok(identity.clone());
        }
        let Some((key, validation)) = &self.jwt else {
            return Err(ApiError::unauthorized("unknown token"));
        };
        let claims = jsonwebtoken::decode::<Claims>(token, key, validation)
            .map_err(|e| ApiError::unauthorized(format!("invalid token: {e}")))?
            .claims;
        let patterns = |list: &[String]| {
            list.iter()
                .map(|p| {
                    Pattern::new(p).map_err(|e| {
                        ApiError::unauthorized(format!("invalid token: pattern `{p}`: {e}"))
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Arc::new(Identity {
            name: claims.sub.unwrap_or_else(|| "jwt".into()),
            grant: Grant {
                publish: patterns(&claims.publish)?,
                subscribe: patterns(&claims.subscribe)?,
            },
        }))
    }
}

/// Who a refusal names: `the token `NAME`` for a token (its configured name or the JWT's
/// `sub`, never the token itself), `a request without a token (the anonymous grant)` for none.
pub(crate) fn who(identity: &Identity, token_given: bool) -> String {
    if token_given {
        format!("the token `{}`", identity.name)
    } else {
        "a request without a token (the anonymous grant)".to_string()
    }
}

/// The bearer token of a request, from the `Authorization` header, the `token` query parameter
/// or (for WebSockets) a `bearer.TOKEN` subprotocol. A malformed `Authorization` header is 401.
pub fn bearer_token<'a>(
    headers: &'a HeaderMap,
    query_token: Option<&'a str>,
) -> Result<Option<&'a str>, ApiError> {
    if let Some(value) = headers.get(axum::http::header::AUTHORIZATION) {
        let value = value
            .to_str()
            .map_err(|_| ApiError::unauthorized("malformed Authorization header"))?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| {
                ApiError::unauthorized("the Authorization header must be `Bearer TOKEN`")
            })?;
        return Ok(Some(token.trim()));
    }
    if let Some(token) = query_token {
        return Ok(Some(token));
    }
    let offered = headers
        .get_all(axum::http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .find_map(|p| p.strip_prefix("bearer."));
    Ok(offered)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StaticToken;
    use axum::http::StatusCode;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use pubsub::Secret;

    fn p(s: &str) -> Pattern {
        s.parse().unwrap()
    }

    fn config() -> AuthConfig {
        AuthConfig {
            tokens: vec![StaticToken {
                name: "front".into(),
                token: Secret::from("static-1"),
                publish: vec![p("room.*.msg")],
                subscribe: vec![p("room.42.>")],
            }],
            jwt_secret: Some(Secret::from("jwt-key")),
            anonymous: None,
        }
    }

    fn jwt(key: &str, claims: serde_json::Value) -> String {
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(key.as_bytes()).unwrap(),
        )
        .unwrap()
    }

    fn in_an_hour() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 3600
    }

    #[test]
    fn static_tokens_and_grants() {
        let auth = Authenticator::new(&config()).unwrap();
        let who = auth.identify(Some("static-1")).unwrap();
        assert_eq!(who.name, "front");
        assert!(who.grant.may_publish(&"room.1.msg".parse().unwrap()));
        assert!(!who.grant.may_publish(&"room.1.other".parse().unwrap()));
        assert!(who.grant.may_subscribe(&p("room.42.>")));
        assert!(who.grant.may_subscribe(&p("room.42.*.typing")));
        assert!(!who.grant.may_subscribe(&p("room.>")));
        assert!(!who.grant.may_subscribe(&p("room.*.msg")));
        let status = |r: Result<Arc<Identity>, ApiError>| r.unwrap_err().status();
        assert_eq!(status(auth.identify(None)), StatusCode::UNAUTHORIZED);
        assert_eq!(
            status(auth.identify(Some("nope"))),
            StatusCode::UNAUTHORIZED
        );
    }

    #[test]
    fn jwt_claims_grant_patterns() {
        let auth = Authenticator::new(&config()).unwrap();
        let token = jwt(
            "jwt-key",
            serde_json::json!({"sub": "alice", "exp": in_an_hour(), "publish": ["a.b"], "subscribe": ["a.>"]}),
        );
        let who = auth.identify(Some(&token)).unwrap();
        assert_eq!(who.name, "alice");
        assert!(who.grant.may_subscribe(&p("a.*")));
        assert!(!who.grant.may_subscribe(&p(">")));
        assert!(who.grant.may_publish(&"a.b".parse().unwrap()));

        let refused = [
            // Wrong key.
            jwt("other", serde_json::json!({"exp": in_an_hour()})),
            // Expired.
            jwt("jwt-key", serde_json::json!({"exp": 1000})),
            // No expiry.
            jwt("jwt-key", serde_json::json!({"sub": "x"})),
            // A claim that is not a pattern.
            jwt(
                "jwt-key",
                serde_json::json!({"exp": in_an_hour(), "subscribe": ["a.>.b"]}),
            ),
            "not.a.jwt".to_string(),
        ];
        for token in refused {
            let err = auth.identify(Some(&token)).unwrap_err();
            assert_eq!(err.status(), StatusCode::UNAUTHORIZED, "{token}");
        }
    }

    #[test]
    fn open_and_anonymous() {
        let open = Authenticator::new(&AuthConfig::default()).unwrap();
        assert!(open
            .identify(None)
            .unwrap()
            .grant
            .may_subscribe(&p("anything.>")));
        let mut config = config();
        config.anonymous = Some(GrantConfig {
            publish: vec![],
            subscribe: vec![p("public.>")],
        });
        let auth = Authenticator::new(&config).unwrap();
        let anonymous = auth.identify(None).unwrap();
        assert!(anonymous.grant.may_subscribe(&p("public.news")));
        assert!(!anonymous.grant.may_publish(&"public.news".parse().unwrap()));
        // A bad token is refused even when anonymous access exists.
        assert!(auth.identify(Some("bad")).is_err());
    }

    #[test]
    fn token_places() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer_token(&headers, None).unwrap(), None);
        assert_eq!(bearer_token(&headers, Some("q")).unwrap(), Some("q"));
        headers.insert(
            "sec-websocket-protocol",
            "pubsub, bearer.abc.def".parse().unwrap(),
        );
        assert_eq!(bearer_token(&headers, None).unwrap(), Some("abc.def"));
        headers.insert("authorization", "Bearer h".parse().unwrap());
        assert_eq!(bearer_token(&headers, Some("q")).unwrap(), Some("h"));
        headers.insert("authorization", "Basic xyz".parse().unwrap());
        assert!(bearer_token(&headers, None).is_err());
    }
}
