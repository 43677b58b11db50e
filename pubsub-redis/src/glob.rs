//! Translation of portable patterns to Redis channels and `PSUBSCRIBE` globs: [`RedisFilter`].
//!
//! - An exact pattern is a channel: `SUBSCRIBE a.b` (no escaping: `SUBSCRIBE` is literal).
//! - A wildcard pattern whose first `L` tokens are literal maps to the glob of its first
//!   `k = min(L, depth)` literal tokens followed by `.*` (or `*` when `k == 0`), with every Redis
//!   glob metacharacter (`* ? [ ] \`) escaped. `room.*.msg` → `room.*`, `room.42.>` → `room.42.*`
//!   (depth 2), `>` → `*`.
//!
//! Such a glob of class `k` matches a channel exactly when the channel has more than `k` tokens
//! and its first `k` tokens are the glob's literal prefix. So two different globs of the same
//! class never match the same channel, and the one glob of class `k` that can match a channel
//! is computed from the channel alone ([`prefix_of`]). The driver keeps one subscriber connection
//! per class in use, which is how it knows which glob every `pmessage` came through even though
//! fred's `Message` does not carry the pattern (see the crate documentation).

use std::sync::Arc;

use pubsub_core::pattern::Segment;
use pubsub_core::{Pattern, Topic};

/// Characters that have a meaning in a Redis glob (`stringmatchlen`).
const GLOB_SPECIAL: [char; 5] = ['*', '?', '[', ']', '\\'];

/// A native filter of the Redis adapter.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum RedisFilter {
    /// `SUBSCRIBE` to one channel.
    Channel(Topic),
    /// `PSUBSCRIBE` to the glob of a literal prefix of `class` whole tokens (`class` 0: `*`).
    Glob {
        /// The literal prefix, unescaped (empty for class 0).
        prefix: Arc<str>,
        /// Its number of tokens.
        class: usize,
    },
}

impl RedisFilter {
    /// The filter of a wildcard pattern's glob through which `channel` arrived on the
    /// connection of `class`, if any can match it.
    pub(crate) fn glob_of(channel: &str, class: usize) -> Option<RedisFilter> {
        prefix_of(channel, class).map(|prefix| RedisFilter::Glob {
            prefix: prefix.into(),
            class,
        })
    }

    /// The glob class: which subscriber connection carries the filter (`None`: a channel).
    pub(crate) fn class(&self) -> Option<usize> {
        match self {
            RedisFilter::Channel(_) => None,
            RedisFilter::Glob { class, .. } => Some(*class),
        }
    }

    /// The channel name or the escaped glob, as sent to Redis.
    pub(crate) fn native(&self) -> String {
        match self {
            RedisFilter::Channel(topic) => topic.as_str().to_string(),
            RedisFilter::Glob { prefix, .. } => glob_for_prefix(prefix),
        }
    }
}

/// Escapes `literal` so that, as a Redis glob, it matches exactly `literal`.
pub(crate) fn escape_into(out: &mut String, literal: &str) {
    for c in literal.chars() {
        if GLOB_SPECIAL.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
}

/// `literal` escaped as a Redis glob that matches exactly `literal`.
#[cfg(test)]
pub(crate) fn escape(literal: &str) -> String {
    let mut out = String::with_capacity(literal.len() + 4);
    escape_into(&mut out, literal);
    out
}

/// The glob of class `prefix`'s token count: the escaped prefix followed by `.*`, or `*` for
/// the empty prefix.
pub(crate) fn glob_for_prefix(prefix: &str) -> String {
    if prefix.is_empty() {
        return "*".to_string();
    }
    let mut out = String::with_capacity(prefix.len() + 6);
    escape_into(&mut out, prefix);
    out.push_str(".*");
    out
}

/// The native filter serving `pattern`, with wildcard globs using at most `depth` literal tokens.
pub(crate) fn native_filter(pattern: &Pattern, depth: usize) -> RedisFilter {
    if let Some(topic) = pattern.as_topic() {
        return RedisFilter::Channel(topic);
    }
    let mut prefix = String::new();
    let mut class = 0;
    for segment in pattern.segments() {
        match segment {
            Segment::Literal(token) if class < depth => {
                if class > 0 {
                    prefix.push('.');
                }
                prefix.push_str(token);
                class += 1;
            }
            _ => break,
        }
    }
    RedisFilter::Glob {
        prefix: prefix.into(),
        class,
    }
}

/// The first `class` tokens of `channel`, when it has more than `class` tokens: the literal
/// prefix of the only glob of that class that can match `channel`.
pub(crate) fn prefix_of(channel: &str, class: usize) -> Option<&str> {
    if class == 0 {
        return Some("");
    }
    let mut seen = 0;
    for (i, b) in channel.bytes().enumerate() {
        if b == b'.' {
            seen += 1;
            if seen == class {
                return (i + 1 < channel.len()).then(|| &channel[..i]);
            }
        }
    }
    None
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A port of Redis's `stringmatchlen` (util.c, case-sensitive), the matcher behind
    /// `PSUBSCRIBE`, `KEYS` and `SCAN MATCH`, used as the reference in the property tests.
    pub(crate) fn redis_glob_match(pattern: &[u8], string: &[u8]) -> bool {
        fn rec(p: &[u8], s: &[u8]) -> bool {
            let (mut p, mut s) = (p, s);
            while !p.is_empty() && !s.is_empty() {
                match p[0] {
                    b'*' => {
                        while p.len() > 1 && p[1] == b'*' {
                            p = &p[1..];
                        }
                        if p.len() == 1 {
                            return true;
                        }
                        for i in 0..s.len() {
                            if rec(&p[1..], &s[i..]) {
                                return true;
                            }
                        }
                        return false;
                    }
                    b'?' => s = &s[1..],
                    b'[' => {
                        p = &p[1..];
                        let not = p.first() == Some(&b'^');
                        if not {
                            p = &p[1..];
                        }
                        let mut matched = false;
                        loop {
                            if p.is_empty() {
                                break;
                            }
                            if p[0] == b'\\' && p.len() >= 2 {
                                p = &p[1..];
                                if p[0] == s[0] {
                                    matched = true;
                                }
                            } else if p[0] == b']' {
                                break;
                            } else if p.len() >= 3 && p[1] == b'-' {
                                let (mut start, mut end) = (p[0], p[2]);
                                if start > end {
                                    std::mem::swap(&mut start, &mut end);
                                }
                                p = &p[2..];
                                if s[0] >= start && s[0] <= end {
                                    matched = true;
                                }
                            } else if p[0] == s[0] {
                                matched = true;
                            }
                            p = &p[1..];
                        }
                        if p.is_empty() {
                            // Unterminated class: Redis treats the end of the pattern as `]`.
                            let matched = if not { !matched } else { matched };
                            if !matched {
                                return false;
                            }
                            s = &s[1..];
                            break;
                        }
                        let matched = if not { !matched } else { matched };
                        if !matched {
                            return false;
                        }
                        s = &s[1..];
                    }
                    b'\\' if p.len() >= 2 => {
                        p = &p[1..];
                        if p[0] != s[0] {
                            return false;
                        }
                        s = &s[1..];
                    }
                    c => {
                        if c != s[0] {
                            return false;
                        }
                        s = &s[1..];
                    }
                }
                p = &p[1..];
            }
            if s.is_empty() {
                while p.first() == Some(&b'*') {
                    p = &p[1..];
                }
            }
            p.is_empty() && s.is_empty()
        }
        rec(pattern, string)
    }

    fn pat(s: &str) -> Pattern {
        s.parse().unwrap()
    }

    #[test]
    fn reference_matcher_sanity() {
        assert!(redis_glob_match(b"h?llo", b"hello"));
        assert!(redis_glob_match(b"h*llo", b"heeeello"));
        assert!(redis_glob_match(b"h[ae]llo", b"hallo"));
        assert!(!redis_glob_match(b"h[ae]llo", b"hillo"));
        assert!(redis_glob_match(b"a.*", b"a.b.c"));
        assert!(!redis_glob_match(b"a.*", b"a"));
        assert!(redis_glob_match(b"a\\[1\\]", b"a[1]"));
        assert!(!redis_glob_match(b"a[1]", b"a[1]"));
    }

    #[test]
    fn translation_table() {
        let cases = [
            ("a.b", false, "a.b"),
            ("a[1].b?", false, "a[1].b?"),
            ("room.*.msg", true, "room.*"),
            ("room.42.>", true, "room.42.*"),
            ("room.42.x.>", true, "room.42.*"),
            ("room.>", true, "room.*"),
            (">", true, "*"),
            ("*", true, "*"),
            ("*.a.b", true, "*"),
            ("a[1].*", true, "a\\[1\\].*"),
            ("x\\y?.z].>", true, "x\\\\y\\?.z\\].*"),
        ];
        for (pattern, wildcard, native) in cases {
            let f = native_filter(&pat(pattern), 2);
            assert_eq!(f.class().is_some(), wildcard, "{pattern}");
            assert_eq!(f.native(), native, "{pattern}");
        }
        assert_eq!(native_filter(&pat("room.42.>"), 0).native(), "*");
        assert_eq!(native_filter(&pat("room.42.>"), 1).native(), "room.*");
        assert_eq!(
            native_filter(&pat("room.42.x.>"), 5).native(),
            "room.42.x.*"
        );
        let f = native_filter(&pat("room.42.x.>"), 2);
        assert_eq!(RedisFilter::glob_of("room.42.x.y", 2), Some(f));
    }

    #[test]
    fn exact_literal_glob_characters_never_match_other_topics() {
        // `a[1].b?` is SUBSCRIBEd literally; as a glob (escaped) it must not match `a1.bx` either.
        let glob = escape("a[1].b?");
        assert!(redis_glob_match(glob.as_bytes(), b"a[1].b?"));
        assert!(!redis_glob_match(glob.as_bytes(), b"a1.bx"));
        assert!(
            !redis_glob_match(b"a[1].b?", b"a[1].b?"),
            "unescaped would be wrong"
        );
        let f = native_filter(&pat("a[1].*"), 2).native();
        assert!(!redis_glob_match(f.as_bytes(), b"a1.x"));
        assert!(redis_glob_match(f.as_bytes(), b"a[1].x"));
    }

    #[test]
    fn prefix_of_channels() {
        assert_eq!(prefix_of("a.b.c", 0), Some(""));
        assert_eq!(prefix_of("a.b.c", 1), Some("a"));
        assert_eq!(prefix_of("a.b.c", 2), Some("a.b"));
        assert_eq!(prefix_of("a.b.c", 3), None);
        assert_eq!(prefix_of("a.b.", 2), None);
        assert_eq!(prefix_of("a", 1), None);
    }

    /// Token text including every glob metacharacter and some non-ASCII.
    fn token() -> impl Strategy<Value = String> {
        proptest::string::string_regex("[a-c\\[\\]?\\\\\\^\\-!é1]{1,5}").unwrap()
    }

    fn topic_text() -> impl Strategy<Value = String> {
        proptest::collection::vec(token(), 1..5).prop_map(|t| t.join("."))
    }

    proptest! {
        /// An escaped literal glob matches exactly that string.
        #[test]
        fn escaped_literal_matches_only_itself(s in topic_text(), t in topic_text()) {
            let glob = escape(&s);
            prop_assert!(redis_glob_match(glob.as_bytes(), s.as_bytes()));
            prop_assert_eq!(redis_glob_match(glob.as_bytes(), t.as_bytes()), s == t);
        }

        /// A prefix glob matches exactly the channels that extend the prefix by whole tokens,
        /// and the channel alone names the one glob of a class that can match it.
        #[test]
        fn prefix_glob_matches_exactly_its_extensions(
            prefix in proptest::collection::vec(token(), 0..3),
            channel in topic_text(),
        ) {
            let prefix = prefix.join(".");
            let class = if prefix.is_empty() { 0 } else { prefix.split('.').count() };
            let glob = glob_for_prefix(&prefix);
            let expected = prefix_of(&channel, class) == Some(prefix.as_str());
            prop_assert_eq!(redis_glob_match(glob.as_bytes(), channel.as_bytes()), expected);
        }

        /// The native filter of a pattern selects a superset of the pattern's topics.
        #[test]
        fn native_filter_is_a_superset(
            channel in topic_text(),
            shape in proptest::collection::vec(0u8..3, 1..5),
            depth in 0usize..4,
        ) {
            let tokens: Vec<&str> = channel.split('.').collect();
            // Build a pattern from the channel's tokens: 0 = literal, 1 = `*`, 2 = `>` (last).
            let mut parts = Vec::new();
            for (i, kind) in shape.iter().enumerate() {
                let literal = tokens.get(i).copied().unwrap_or("z");
                match kind {
                    0 => parts.push(literal.to_string()),
                    1 => parts.push("*".to_string()),
                    _ => { parts.push(">".to_string()); break; }
                }
            }
            let pattern = pat(&parts.join("."));
            let topic: pubsub_core::Topic = channel.parse().unwrap();
            let filter = native_filter(&pattern, depth);
            if pattern.matches(&topic) {
                if filter.class().is_some() {
                    prop_assert!(redis_glob_match(filter.native().as_bytes(), channel.as_bytes()));
                } else {
                    prop_assert_eq!(filter.native(), channel.clone());
                }
            }
        }
    }
}
