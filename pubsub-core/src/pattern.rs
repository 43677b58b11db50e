//! [`Pattern`]: what a subscription listens to, and the one exact matcher every backend uses.

use std::sync::Arc;

use crate::token::{self, Token, TokenFault, MAX_LEN};
use crate::Topic;

/// A validated subscription pattern.
///
/// Like a [`Topic`], except that a whole token may be `*` (exactly one token) and the last token
/// may be `>` (one or more tokens). A pattern without wildcards matches exactly one topic.
///
/// ```
/// use pubsub_core::{Pattern, Topic};
/// let p: Pattern = "room.*.msg".parse()?;
/// assert!(p.matches(&"room.42.msg".parse::<Topic>()?));
/// assert!(!p.matches(&"room.42.x.msg".parse::<Topic>()?));
/// let all: Pattern = "room.42.>".parse()?;
/// assert!(all.matches(&"room.42.a.b".parse::<Topic>()?));
/// assert!(!all.matches(&"room.42".parse::<Topic>()?));
/// # Ok::<(), pubsub_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pattern {
    text: Arc<str>,
    wildcard: bool,
}

/// One token of a [`Pattern`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Segment<'a> {
    /// A literal token that must equal the topic's token.
    Literal(&'a str),
    /// `*`: exactly one token.
    One,
    /// `>`: one or more trailing tokens (always the last segment).
    Rest,
}

/// One part of a pattern to build with [`Pattern::from_parts`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// A literal token.
    Literal(Token),
    /// `*`: exactly one token.
    One,
    /// `>`: one or more trailing tokens (last only).
    Rest,
}

/// Why a string is not a valid [`Pattern`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PatternError {
    /// The pattern is the empty string.
    #[error("pattern is empty")]
    Empty,
    /// Longer than 255 bytes.
    #[error("pattern is {len} bytes long; the limit is {MAX_LEN}")]
    TooLong {
        /// Actual length in bytes.
        len: usize,
    },
    /// A token is empty.
    #[error("token {index} is empty (at byte {offset})")]
    EmptyToken {
        /// Token index, from 0.
        index: usize,
        /// Byte offset of the empty token.
        offset: usize,
    },
    /// `*` or `>` inside a token, such as `ro*m`.
    #[error("wildcard {ch:?} must be a whole token (token {index}, byte {offset})")]
    PartialWildcard {
        /// `*` or `>`.
        ch: char,
        /// Token index, from 0.
        index: usize,
        /// Byte offset of the wildcard character.
        offset: usize,
    },
    /// `>` somewhere other than the last token.
    #[error("`>` must be the last token (found at token {index}, byte {offset})")]
    RestNotLast {
        /// Token index, from 0.
        index: usize,
        /// Byte offset of the `>`.
        offset: usize,
    },
    /// A character that patterns do not allow.
    #[error("character {ch:?} is not allowed in a pattern (token {index}, byte {offset})")]
    BadChar {
        /// The character.
        ch: char,
        /// Token index, from 0.
        index: usize,
        /// Byte offset of the character.
        offset: usize,
    },
}

crate::error::invalid_from!(PatternError => "invalid pattern");

impl Pattern {
    /// Parses and validates a pattern.
    pub fn new(s: &str) -> Result<Self, PatternError> {
        let wildcard = validate(s)?;
        Ok(Pattern {
            text: Arc::from(s),
            wildcard,
        })
    }

    /// Builds a pattern from segments: literal [`Token`]s (checked or escaped), `*` and `>`.
    ///
    /// ```
    /// use pubsub_core::pattern::Part;
    /// use pubsub_core::{Pattern, Token};
    /// let room = Token::escape("a b");
    /// let p = Pattern::from_parts([Part::Literal(room), Part::One, Part::Rest])?;
    /// assert_eq!(p.as_str(), "a%20b.*.>");
    /// # Ok::<(), pubsub_core::Error>(())
    /// ```
    ///
    /// Fails with the crate's [`Error`](crate::Error) (kind
    /// [`Invalid`](crate::ErrorKind::Invalid), the [`PatternError`] as its source), as parsing a
    /// pattern does.
    pub fn from_parts(parts: impl IntoIterator<Item = Part>) -> crate::Result<Self> {
        let text: Vec<String> = parts
            .into_iter()
            .map(|part| match part {
                Part::Literal(token) => token.as_str().to_string(),
                Part::One => "*".to_string(),
                Part::Rest => ">".to_string(),
            })
            .collect();
        Ok(Pattern::new(&text.join("."))?)
    }

    /// The pattern as a string.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True when the pattern has no wildcard and so matches exactly one topic.
    pub fn is_exact(&self) -> bool {
        !self.wildcard
    }

    /// The topic this pattern matches, when it has no wildcard.
    pub fn as_topic(&self) -> Option<Topic> {
        if self.wildcard {
            None
        } else {
            Topic::new(&self.text).ok()
        }
    }

    /// The segments, in order.
    pub fn segments(&self) -> impl Iterator<Item = Segment<'_>> + Clone {
        self.text.split('.').map(|t| match t {
            "*" => Segment::One,
            ">" => Segment::Rest,
            lit => Segment::Literal(lit),
        })
    }

    /// Whether `topic` matches. This is the one matcher every backend's delivery is decided by.
    pub fn matches(&self, topic: &Topic) -> bool {
        self.matches_str(topic.as_str())
    }

    /// Like [`Pattern::matches`], for a topic string that is already known to be valid.
    pub fn matches_str(&self, topic: &str) -> bool {
        if !self.wildcard {
            return *self.text == *topic;
        }
        // Byte by byte, as `split('.')` would cut them, but without its searcher: tokens are
        // short, and this runs once per delivered copy.
        let (pattern, topic) = (self.text.as_bytes(), topic.as_bytes());
        let (mut p, mut t) = (0, 0);
        while let Some(seg) = next_token(pattern, &mut p) {
            match seg {
                b">" => return next_token(topic, &mut t).is_some(),
                b"*" => {
                    if next_token(topic, &mut t).is_none() {
                        return false;
                    }
                }
                literal => {
                    if next_token(topic, &mut t) != Some(literal) {
                        return false;
                    }
                }
            }
        }
        next_token(topic, &mut t).is_none()
    }

    /// Whether every topic this pattern matches is also matched by `other`: `self` asks for no
    /// more than `other` grants. An access check uses it to decide whether a subscription to
    /// `self` stays inside a grant `other`.
    ///
    /// ```
    /// use pubsub_core::Pattern;
    /// let grant: Pattern = "room.42.>".parse()?;
    /// assert!(Pattern::new("room.42.msg")?.is_subset_of(&grant));
    /// assert!(Pattern::new("room.42.*.typing")?.is_subset_of(&grant));
    /// assert!(!Pattern::new("room.>")?.is_subset_of(&grant)); // also room.41.x
    /// assert!(!Pattern::new("room.42")?.is_subset_of(&grant)); // `>` needs one more token
    /// assert!(Pattern::new("a.*")?.is_subset_of(&Pattern::new("*.*")?));
    /// # Ok::<(), pubsub_core::Error>(())
    /// ```
    pub fn is_subset_of(&self, other: &Pattern) -> bool {
        let mut mine = self.segments();
        let mut theirs = other.segments();
        loop {
            match (mine.next(), theirs.next()) {
                (None, None) => return true,
                // `>` grants one or more tokens: whatever is left of `self` (at least one).
                (Some(_), Some(Segment::Rest)) => return true,
                (None, Some(_)) | (Some(_), None) => return false,
                // `self`'s `>` matches any number of tokens; only a `>` grants that.
                (Some(Segment::Rest), Some(_)) => return false,
                (Some(Segment::One), Some(Segment::One)) => {}
                (Some(Segment::One), Some(Segment::Literal(_))) => return false,
                (Some(Segment::Literal(_)), Some(Segment::One)) => {}
                (Some(Segment::Literal(a)), Some(Segment::Literal(b))) => {
                    if a != b {
                        return false;
                    }
                }
            }
        }
    }
}

impl Pattern {
    /// Whether some topic matches both patterns (two streams' roots may not overlap).
    ///
    /// ```
    /// use pubsub_core::Pattern;
    /// let p = |s: &str| s.parse::<Pattern>().unwrap();
    /// assert!(p("room.>").overlaps(&p("*.42")));
    /// assert!(!p("room.>").overlaps(&p("room")));
    /// assert!(!p("a.*").overlaps(&p("b.*")));
    /// ```
    pub fn overlaps(&self, other: &Pattern) -> bool {
        let mut mine = self.segments();
        let mut theirs = other.segments();
        loop {
            match (mine.next(), theirs.next()) {
                (None, None) => return true,
                (None, Some(_)) | (Some(_), None) => return false,
                // `>` takes one or more tokens: whatever the other still needs.
                (Some(Segment::Rest), Some(_)) | (Some(_), Some(Segment::Rest)) => return true,
                (Some(Segment::Literal(a)), Some(Segment::Literal(b))) if a != b => return false,
                _ => {}
            }
        }
    }
}

/// Validates and reports whether the pattern holds a wildcard.
fn validate(s: &str) -> Result<bool, PatternError> {
    if s.is_empty() {
        return Err(PatternError::Empty);
    }
    if s.len() > MAX_LEN {
        return Err(PatternError::TooLong { len: s.len() });
    }
    let count = s.split('.').count();
    let mut wildcard = false;
    for (index, (offset, tok)) in token::split(s).enumerate() {
        match tok {
            "*" => wildcard = true,
            ">" if index + 1 == count => wildcard = true,
            ">" => return Err(PatternError::RestNotLast { index, offset }),
            _ => match token::check_literal(tok, offset) {
                Ok(()) => {}
                Err(TokenFault::Empty) => return Err(PatternError::EmptyToken { index, offset }),
                Err(TokenFault::BadChar(ch @ ('*' | '>'), offset)) => {
                    return Err(PatternError::PartialWildcard { ch, index, offset })
                }
                Err(TokenFault::BadChar(ch, offset)) => {
                    return Err(PatternError::BadChar { ch, index, offset })
                }
            },
        }
    }
    Ok(wildcard)
}

impl From<Topic> for Pattern {
    fn from(t: Topic) -> Self {
        Pattern {
            text: Arc::from(t.as_str()),
            wildcard: false,
        }
    }
}

crate::token::text_impls!(Pattern, parse);

/// The token of `s` starting at `*at` (up to the next `.`), moving `*at` past it; `None` once
/// the last token was taken. Cuts as `str::split('.')` does.
fn next_token<'a>(s: &'a [u8], at: &mut usize) -> Option<&'a [u8]> {
    let start = *at;
    if start > s.len() {
        return None;
    }
    let rest = &s[start..];
    let len = rest.iter().position(|&b| b == b'.').unwrap_or(rest.len());
    *at = start + len + 1;
    Some(&rest[..len])
}

/// The shared table of (pattern, topic, expected) rows that the core matcher and every backend
/// must agree on. The conformance suite runs it against real brokers.
pub const MATCH_TABLE: &[(&str, &str, bool)] = &[
    ("a.b", "a.b", true),
    ("a.b", "a.bc", false),
    ("a.b", "ab", false),
    ("a.b", "a.b.c", false),
    ("a.*", "a.b", true),
    ("a.*", "a.b.c", false),
    ("a.*", "a", false),
    ("*.b", "a.b", true),
    ("*.b", "a.c", false),
    ("a.*.c", "a.b.c", true),
    ("a.*.c", "a.b.d", false),
    ("a.*.c", "a.b.x.c", false),
    ("a.>", "a.b", true),
    ("a.>", "a.b.c.d", true),
    ("a.>", "a", false),
    ("a.>", "b.c", false),
    ("*.*", "a.b", true),
    ("*.*", "a.b.c", false),
    ("a.*.>", "a.b.c", true),
    ("a.*.>", "a.b", false),
    (">", "a", true),
    (">", "a.b.c", true),
    ("a[1].b?", "a[1].b?", true),
    ("a[1].b?", "a1.bx", false),
    ("a.#", "a.#", true),
    ("a.#", "a.b", false),
    ("chat.café", "chat.café", true),
    ("chat.*", "chat.café", true),
];

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pat(s: &str) -> Pattern {
        Pattern::new(s).unwrap()
    }

    #[test]
    fn table_agrees_with_matcher() {
        for &(p, t, want) in MATCH_TABLE {
            assert_eq!(pat(p).matches(&Topic::new(t).unwrap()), want, "{p} vs {t}");
        }
    }

    #[test]
    fn rejects_with_position() {
        assert_eq!(Pattern::new(""), Err(PatternError::Empty));
        assert_eq!(
            Pattern::new("ro*m"),
            Err(PatternError::PartialWildcard {
                ch: '*',
                index: 0,
                offset: 2
            })
        );
        assert_eq!(
            Pattern::new("a.b>"),
            Err(PatternError::PartialWildcard {
                ch: '>',
                index: 1,
                offset: 3
            })
        );
        assert_eq!(
            Pattern::new("a.>.b"),
            Err(PatternError::RestNotLast {
                index: 1,
                offset: 2
            })
        );
        assert_eq!(
            Pattern::new("a..*"),
            Err(PatternError::EmptyToken {
                index: 1,
                offset: 2
            })
        );
        assert_eq!(
            Pattern::new("a.\tb"),
            Err(PatternError::BadChar {
                ch: '\t',
                index: 1,
                offset: 2
            })
        );
        assert_eq!(
            Pattern::new(&"a".repeat(256)),
            Err(PatternError::TooLong { len: 256 })
        );
    }

    #[test]
    fn exactness() {
        assert!(pat("a.b").is_exact());
        assert!(!pat("a.*").is_exact());
        assert!(!pat(">").is_exact());
        assert_eq!(pat("a.b").as_topic().unwrap().as_str(), "a.b");
    }

    /// Reference matcher: a direct recursive reading of the grammar.
    fn reference(p: &[&str], t: &[&str]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some(&">"), Some(_)) => true,
            (Some(&"*"), Some(_)) => reference(&p[1..], &t[1..]),
            (Some(l), Some(tok)) => l == tok && reference(&p[1..], &t[1..]),
            _ => false,
        }
    }

    /// Reference for [`Pattern::is_subset_of`]: whether every topic `p` matches, `q` matches,
    /// by trying the topics of `p`. At a wildcard position of `p` only two tokens can make a
    /// difference to `q`: `q`'s literal at that index, or any other (`fresh`); lengths past
    /// `q`'s make no difference either.
    fn subset_by_enumeration(p: &Pattern, q: &Pattern) -> bool {
        const FRESH: &str = "fresh";
        let q_literal = |i: usize| match q.segments().nth(i) {
            Some(Segment::Literal(l)) => Some(l.to_string()),
            _ => None,
        };
        let mut topics: Vec<Vec<String>> = vec![vec![]];
        let choices = |i: usize| {
            let mut c = vec![FRESH.to_string()];
            c.extend(q_literal(i));
            c
        };
        let q_len = q.segments().count();
        for (i, seg) in p.segments().enumerate() {
            let mut next = Vec::new();
            for prefix in &topics {
                match seg {
                    Segment::Literal(l) => {
                        let mut t = prefix.clone();
                        t.push(l.to_string());
                        next.push(t);
                    }
                    Segment::One => {
                        for c in choices(i) {
                            let mut t = prefix.clone();
                            t.push(c);
                            next.push(t);
                        }
                    }
                    Segment::Rest => {
                        // One or more tokens: up to one past q's length.
                        let mut tails: Vec<Vec<String>> = vec![vec![]];
                        for j in i..=q_len.max(i) {
                            tails = tails
                                .iter()
                                .flat_map(|tail| {
                                    choices(j).into_iter().map(move |c| {
                                        let mut t = tail.clone();
                                        t.push(c);
                                        t
                                    })
                                })
                                .collect();
                            for tail in &tails {
                                let mut t = prefix.clone();
                                t.extend(tail.iter().cloned());
                                next.push(t);
                            }
                        }
                    }
                }
            }
            topics = next;
        }
        topics.iter().all(|t| q.matches_str(&t.join(".")))
    }

    #[test]
    fn subset_examples() {
        let yes = [
            ("room.42.msg", "room.42.>"),
            ("room.42.>", "room.42.>"),
            ("room.42.*.x", "room.42.>"),
            ("room.*", "*.*"),
            ("a.>", ">"),
            ("a.*.>", "a.>"),
        ];
        let no = [
            ("room.>", "room.42.>"),
            ("room.42", "room.42.>"),
            ("room.*.msg", "room.42.>"),
            ("a.>", "a.*"),
            ("a.>", "a.*.>"),
            ("*.*", "a.*"),
            ("a.b", "a.b.c"),
        ];
        for (p, q) in yes {
            assert!(pat(p).is_subset_of(&pat(q)), "{p} <= {q}");
        }
        for (p, q) in no {
            assert!(!pat(p).is_subset_of(&pat(q)), "{p} not <= {q}");
        }
    }

    fn token() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("a".to_string()),
            Just("b".to_string()),
            "[a-c]{1,2}",
            "[é☃x]{1,2}"
        ]
    }

    fn topic_tokens() -> impl Strategy<Value = Vec<String>> {
        prop::collection::vec(token(), 1..6)
    }

    fn pattern_tokens() -> impl Strategy<Value = Vec<String>> {
        (
            prop::collection::vec(prop_oneof![token(), Just("*".to_string())], 1..5),
            any::<bool>(),
        )
            .prop_map(|(mut v, rest)| {
                if rest {
                    v.push(">".into());
                }
                v
            })
    }

    proptest! {
        #[test]
        fn matcher_agrees_with_reference(p in pattern_tokens(), t in topic_tokens()) {
            let ps = p.join(".");
            let ts = t.join(".");
            let pr: Vec<&str> = p.iter().map(String::as_str).collect();
            let tr: Vec<&str> = t.iter().map(String::as_str).collect();
            let got = Pattern::new(&ps).unwrap().matches(&Topic::new(&ts).unwrap());
            prop_assert_eq!(got, reference(&pr, &tr));
        }

        #[test]
        fn valid_topics_roundtrip_and_are_exact_patterns(t in topic_tokens()) {
            let s = t.join(".");
            let topic = Topic::new(&s).unwrap();
            prop_assert_eq!(topic.to_string(), s.clone());
            let p = Pattern::new(&s).unwrap();
            prop_assert!(p.is_exact());
            prop_assert!(p.matches(&topic));
        }

        #[test]
        fn parsing_never_panics(s in "\\PC{0,40}|[a.*> ]{0,12}") {
            let _ = Topic::new(&s);
            let _ = Pattern::new(&s);
        }

        #[test]
        fn subset_agrees_with_every_topic(p in pattern_tokens(), q in pattern_tokens()) {
            let p = Pattern::new(&p.join(".")).unwrap();
            let q = Pattern::new(&q.join(".")).unwrap();
            prop_assert_eq!(p.is_subset_of(&q), subset_by_enumeration(&p, &q), "{} <= {}", p, q);
        }

        #[test]
        fn overlap_is_symmetric_and_found_by_any_common_topic(
            p in pattern_tokens(),
            q in pattern_tokens(),
            t in topic_tokens(),
        ) {
            let p = Pattern::new(&p.join(".")).unwrap();
            let q = Pattern::new(&q.join(".")).unwrap();
            let t = Topic::new(&t.join(".")).unwrap();
            prop_assert_eq!(p.overlaps(&q), q.overlaps(&p));
            if p.matches(&t) && q.matches(&t) {
                prop_assert!(p.overlaps(&q), "{} and {} both match {}", p, q, t);
            }
            if p.is_subset_of(&q) {
                prop_assert!(p.overlaps(&q));
            }
        }

        #[test]
        fn every_pattern_is_a_subset_of_itself_and_of_rest(p in pattern_tokens()) {
            let p = Pattern::new(&p.join(".")).unwrap();
            prop_assert!(p.is_subset_of(&p));
            prop_assert!(p.is_subset_of(&Pattern::new(">").unwrap()));
        }

        #[test]
        fn every_topic_is_a_pattern(s in "[a.*> é]{0,12}") {
            if Topic::new(&s).is_ok() {
                prop_assert!(Pattern::new(&s).is_ok());
            }
        }
    }
}
