//! W3C Trace Context (`traceparent`, `tracestate`) carried in message headers, so that a
//! handler's span continues the publisher's trace.
//!
//! The dispatcher sets the handler's own context as the *current* one while the handler runs
//! ([`TraceContext::current`]); the [`Publisher`](crate::Publisher) stamps the current context's
//! child into what it publishes. A chain publish → handler → publish → handler is thus one
//! trace. Outside a handler, [`TraceContext::scope`] sets the current context (for example from
//! an incoming HTTP request's `traceparent`).

use std::fmt;
use std::future::Future;

use pubsub_core::Headers;
use rand::Rng;

/// Header carrying the trace id, the parent span id and the flags.
pub const TRACEPARENT: &str = "traceparent";
/// Header carrying vendor-specific trace state, passed on unchanged.
pub const TRACESTATE: &str = "tracestate";

/// Longest `tracestate` kept (the W3C limit is 512 bytes; longer values are dropped).
const MAX_TRACESTATE: usize = 512;

tokio::task_local! {
    static CURRENT: TraceContext;
}

/// One span's place in a trace: trace id, span id, flags and the vendor trace state.
///
/// ```
/// use pubsub_dispatch::TraceContext;
/// let ctx = TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", None)?;
/// assert_eq!(ctx.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
/// assert!(ctx.sampled());
/// let child = ctx.child();
/// assert_eq!(child.trace_id(), ctx.trace_id());
/// assert_ne!(child.span_id(), ctx.span_id());
/// assert_eq!(ctx.to_traceparent(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
/// # Ok::<(), pubsub_dispatch::TraceParentError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TraceContext {
    trace_id: u128,
    span_id: u64,
    flags: u8,
    state: Option<String>,
}

/// Why a `traceparent` value was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TraceParentError {
    /// Not `version-traceid-spanid-flags` with the right lengths.
    Format,
    /// A field holds something other than lowercase hex.
    NotHex,
    /// Version `ff` is forbidden.
    ForbiddenVersion,
    /// The trace id or the span id is all zeros.
    ZeroId,
}

impl fmt::Display for TraceParentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TraceParentError::Format => "traceparent is not `vv-<32 hex>-<16 hex>-ff`",
            TraceParentError::NotHex => "traceparent holds a character that is not lowercase hex",
            TraceParentError::ForbiddenVersion => "traceparent version ff is forbidden",
            TraceParentError::ZeroId => "traceparent trace id or span id is all zeros",
        })
    }
}

impl std::error::Error for TraceParentError {}

impl TraceContext {
    /// A new trace (random trace id and span id), sampled.
    pub fn new_root() -> Self {
        let mut rng = rand::rng();
        TraceContext {
            trace_id: nonzero_u128(&mut rng),
            span_id: nonzero_u64(&mut rng),
            flags: 1,
            state: None,
        }
    }

    /// A span in the same trace (new span id; same flags and trace state).
    pub fn child(&self) -> Self {
        TraceContext {
            trace_id: self.trace_id,
            span_id: nonzero_u64(&mut rand::rng()),
            flags: self.flags,
            state: self.state.clone(),
        }
    }

    /// Reads a `traceparent` value (and an optional `tracestate`), as the W3C Trace Context
    /// recommendation says: version `00` is exactly `00-<32 hex>-<16 hex>-<2 hex>`; a later
    /// version may add `-…` fields, which are ignored; ids of all zeros are refused.
    pub fn parse(traceparent: &str, tracestate: Option<&str>) -> Result<Self, TraceParentError> {
        let s = traceparent.trim_matches(|c| c == ' ' || c == '\t');
        let b = s.as_bytes();
        if !s.is_ascii() || b.len() < 55 || b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
            return Err(TraceParentError::Format);
        }
        let version = hex_field(&s[0..2])? as u8;
        if version == 0xff {
            return Err(TraceParentError::ForbiddenVersion);
        }
        if (version == 0 && b.len() != 55) || (b.len() > 55 && b[55] != b'-') {
            return Err(TraceParentError::Format);
        }
        let trace_id = hex_field(&s[3..35])?;
        let span_id = hex_field(&s[36..52])? as u64;
        let flags = hex_field(&s[53..55])? as u8;
        if trace_id == 0 || span_id == 0 {
            return Err(TraceParentError::ZeroId);
        }
        let state = tracestate
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() <= MAX_TRACESTATE)
            .map(str::to_owned);
        Ok(TraceContext {
            trace_id,
            span_id,
            flags,
            state,
        })
    }

    /// Reads `traceparent`/`tracestate` from headers: `None` when absent or malformed (a bad
    /// header starts a new trace rather than failing the message).
    pub fn from_headers(headers: &Headers) -> Option<Self> {
        let parent = headers.get(TRACEPARENT)?;
        TraceContext::parse(parent, headers.get(TRACESTATE)).ok()
    }

    /// Writes `traceparent` (and `tracestate` when there is one) into `headers`.
    pub fn inject(&self, headers: &mut Headers) {
        // Both values are ASCII without CR/LF (the state was a header value already).
        let _ = headers.insert(TRACEPARENT, self.to_traceparent());
        if let Some(state) = &self.state {
            let _ = headers.insert(TRACESTATE, state.clone());
        }
    }

    /// The `traceparent` value, version `00`.
    pub fn to_traceparent(&self) -> String {
        format!(
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id, self.span_id, self.flags
        )
    }

    /// The trace id.
    pub fn trace_id(&self) -> u128 {
        self.trace_id
    }

    /// The trace id as 32 lowercase hex digits.
    pub fn trace_id_hex(&self) -> String {
        format!("{:032x}", self.trace_id)
    }

    /// This span's id.
    pub fn span_id(&self) -> u64 {
        self.span_id
    }

    /// This span's id as 16 lowercase hex digits.
    pub fn span_id_hex(&self) -> String {
        format!("{:016x}", self.span_id)
    }

    /// The trace flags byte.
    pub fn flags(&self) -> u8 {
        self.flags
    }

    /// Whether the `sampled` flag is set.
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }

    /// The vendor trace state, if any.
    pub fn trace_state(&self) -> Option<&str> {
        self.state.as_deref()
    }

    /// The context of the handler (or [`TraceContext::scope`]) running on this task, if any.
    pub fn current() -> Option<TraceContext> {
        CURRENT.try_with(Clone::clone).ok()
    }

    /// Runs `future` with `self` as the current context.
    pub async fn scope<F: Future>(self, future: F) -> F::Output {
        CURRENT.scope(self, future).await
    }
}

impl fmt::Debug for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TraceContext")
            .field("traceparent", &self.to_traceparent())
            .field("tracestate", &self.state)
            .finish()
    }
}

/// A lowercase-hex field as a number (at most 32 digits).
fn hex_field(field: &str) -> Result<u128, TraceParentError> {
    if !field
        .bytes()
        .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(TraceParentError::NotHex);
    }
    u128::from_str_radix(field, 16).map_err(|_| TraceParentError::NotHex)
}

fn nonzero_u128(rng: &mut impl Rng) -> u128 {
    loop {
        let v: u128 = rng.random();
        if v != 0 {
            return v;
        }
    }
}

fn nonzero_u64(rng: &mut impl Rng) -> u64 {
    loop {
        let v: u64 = rng.random();
        if v != 0 {
            return v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_the_spec_example() {
        let c = TraceContext::parse(GOOD, Some("congo=t61rcWkgMzE")).unwrap();
        assert_eq!(c.span_id_hex(), "00f067aa0ba902b7");
        assert_eq!(c.trace_state(), Some("congo=t61rcWkgMzE"));
        let mut h = Headers::new();
        c.inject(&mut h);
        assert_eq!(TraceContext::from_headers(&h), Some(c));
    }

    #[test]
    fn refuses_bad_values() {
        use TraceParentError::*;
        let cases = [
            ("", Format),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
                Format,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
                Format,
            ),
            (
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                NotHex,
            ),
            (
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                ForbiddenVersion,
            ),
            (
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                ZeroId,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                ZeroId,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736+00f067aa0ba902b7-01",
                Format,
            ),
        ];
        for (text, want) in cases {
            assert_eq!(TraceContext::parse(text, None), Err(want), "{text}");
        }
        // A later version may carry more fields.
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra";
        assert!(TraceContext::parse(later, None).is_ok());
    }

    #[tokio::test]
    async fn current_is_scoped() {
        assert_eq!(TraceContext::current(), None);
        let c = TraceContext::new_root();
        let seen = c.clone().scope(async { TraceContext::current() }).await;
        assert_eq!(seen, Some(c));
    }

    proptest! {
        #[test]
        fn prop_round_trip(t in 1u128.., s in 1u64.., f in any::<u8>()) {
            let c = TraceContext { trace_id: t, span_id: s, flags: f, state: None };
            prop_assert_eq!(TraceContext::parse(&c.to_traceparent(), None), Ok(c));
        }

        #[test]
        fn prop_never_panics(text in "\\PC{0,80}") {
            let _ = TraceContext::parse(&text, Some(&text));
        }

        #[test]
        fn prop_near_misses_never_panic(text in "[0-9a-f-]{50,60}") {
            if let Ok(c) = TraceContext::parse(&text, None) {
                prop_assert!(c.trace_id() != 0 && c.span_id() != 0);
            }
        }
    }
}
