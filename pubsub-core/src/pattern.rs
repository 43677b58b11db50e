//! [`Pattern`]: what a subscription listens to, and the one exact matcher every backend uses.

use std::fmt;
use std::str::FromStr;
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
    pub fn from_parts(parts: impl IntoIterator<Item = Part>) -> Result<Self, PatternError> {
        let text: Vec<String> = parts
            .into_iter()
            .map(|part| match part {
                Part::Literal(token) => token.as_str().to_string(),
                Part::One => "*".to_string(),
                Part::Rest => ">".to_string(),
            })
            .collect();
        Pattern::new(&text.join("."))
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
        let mut tokens = topic.split('.');
        for seg in self.segments() {
            match seg {
                Segment::Rest => return tokens.next().is_some(),
                Segment::One => {
                    if tokens.next().is_none() {
                        return false;
                    }
                }
                Segment::Literal(l) => {
                    if tokens.next() != Some(l) {
                        return false;
                    }
                }
            }
        }
        tokens.next().is_none()
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

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({:?})", &*self.text)
    }
}

impl FromStr for Pattern {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Pattern::new(s)?)
    }
}

impl TryFrom<&str> for Pattern {
    type Error = crate::Error;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Ok(Pattern::new(s)?)
    }
}

impl AsRef<str> for Pattern {
    fn as_ref(&self) -> &str {
        &self.text
    }
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
        fn every_topic_is_a_pattern(s in "[a.*> é]{0,12}") {
            if Topic::new(&s).is_ok() {
                prop_assert!(Pattern::new(&s).is_ok());
            }
        }
    }
}
