//! [`Topic`]: the name a message is published to.

use std::sync::Arc;

use crate::token::{self, Token, TokenFault, MAX_LEN};

/// A validated topic: a non-empty sequence of `.`-separated tokens, at most 255 bytes.
///
/// A token is one or more bytes of UTF-8 with no `.`, `*`, `>`, whitespace or control
/// character. Cloning is cheap (a reference count).
///
/// ```
/// use pubsub_core::Topic;
/// let t: Topic = "room.42.msg".parse()?;
/// assert_eq!(t.tokens().collect::<Vec<_>>(), ["room", "42", "msg"]);
/// assert!("room..msg".parse::<Topic>().is_err());
/// # Ok::<(), pubsub_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Topic(Arc<str>);

/// Why a string is not a valid [`Topic`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TopicError {
    /// The topic is the empty string.
    #[error("topic is empty")]
    Empty,
    /// Longer than 255 bytes.
    #[error("topic is {len} bytes long; the limit is {MAX_LEN}")]
    TooLong {
        /// Actual length in bytes.
        len: usize,
    },
    /// A token is empty (two dots in a row, or a leading or trailing dot).
    #[error("token {index} is empty (at byte {offset})")]
    EmptyToken {
        /// Token index, from 0.
        index: usize,
        /// Byte offset where the empty token starts.
        offset: usize,
    },
    /// A character that topics do not allow.
    #[error("character {ch:?} is not allowed in a topic (token {index}, byte {offset})")]
    BadChar {
        /// The character.
        ch: char,
        /// Token index, from 0.
        index: usize,
        /// Byte offset of the character.
        offset: usize,
    },
}

crate::error::invalid_from!(TopicError => "invalid topic");

impl Topic {
    /// Parses and validates a topic.
    pub fn new(s: &str) -> Result<Self, TopicError> {
        validate(s)?;
        Ok(Topic(Arc::from(s)))
    }

    /// Joins tokens into a topic. Fails only when there are none or the topic would be longer
    /// than 255 bytes: every token is valid already. With [`Token::escape`] this builds topics
    /// from user input safely.
    ///
    /// Fails with the crate's [`Error`](crate::Error) (kind
    /// [`Invalid`](crate::ErrorKind::Invalid), the [`TopicError`] as its source), as parsing a
    /// topic does.
    ///
    /// ```
    /// use pubsub_core::{Token, Topic};
    /// let t = Topic::from_tokens([Token::new("room")?, Token::escape("a.b")])?;
    /// assert_eq!(t.as_str(), "room.a%2Eb");
    /// assert_eq!(t.depth(), 2);
    /// # Ok::<(), pubsub_core::Error>(())
    /// ```
    pub fn from_tokens<T: AsRef<Token>>(
        tokens: impl IntoIterator<Item = T>,
    ) -> crate::Result<Self> {
        let mut text = String::new();
        for token in tokens {
            if !text.is_empty() {
                text.push('.');
            }
            text.push_str(token.as_ref().as_str());
        }
        if text.is_empty() {
            return Err(TopicError::Empty.into());
        }
        if text.len() > MAX_LEN {
            return Err(TopicError::TooLong { len: text.len() }.into());
        }
        Ok(Topic(Arc::from(text)))
    }

    /// This topic followed by one more token. Fails (as [`Topic::from_tokens`] does) when the
    /// topic would be longer than 255 bytes.
    pub fn child(&self, token: &Token) -> crate::Result<Self> {
        let len = self.0.len() + 1 + token.as_str().len();
        if len > MAX_LEN {
            return Err(TopicError::TooLong { len }.into());
        }
        Ok(Topic(Arc::from(format!("{}.{}", self.0, token))))
    }

    /// The topic as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The tokens, in order.
    pub fn tokens(&self) -> std::str::Split<'_, char> {
        self.0.split('.')
    }

    /// Number of tokens.
    pub fn depth(&self) -> usize {
        self.0.bytes().filter(|&b| b == b'.').count() + 1
    }
}

pub(crate) fn validate(s: &str) -> Result<(), TopicError> {
    if s.is_empty() {
        return Err(TopicError::Empty);
    }
    if s.len() > MAX_LEN {
        return Err(TopicError::TooLong { len: s.len() });
    }
    for (index, (offset, tok)) in token::split(s).enumerate() {
        match token::check_literal(tok, offset) {
            Ok(()) => {}
            Err(TokenFault::Empty) => return Err(TopicError::EmptyToken { index, offset }),
            Err(TokenFault::BadChar(ch, offset)) => {
                return Err(TopicError::BadChar { ch, index, offset })
            }
        }
    }
    Ok(())
}

crate::token::text_impls!(Topic, parse);

impl TryFrom<String> for Topic {
    type Error = crate::Error;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        validate(&s)?;
        Ok(Topic(Arc::from(s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Error, ErrorKind};

    /// Building a topic fails with the same error type as parsing one (and a pattern's
    /// `from_parts` as parsing a pattern), so that both go in one `Result`.
    #[test]
    fn building_fails_as_parsing_does() {
        let none: Vec<Token> = Vec::new();
        let long = Token::escape(&"x".repeat(300));
        let results: [crate::Result<Topic>; 4] = [
            Topic::from_tokens(none),
            Topic::from_tokens([long.clone()]),
            Topic::new("a")
                .map_err(Error::from)
                .and_then(|t| t.child(&long)),
            "".parse(),
        ];
        for result in results {
            let error = result.unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Invalid);
            let source = std::error::Error::source(&error).expect("the topic error");
            assert!(source.downcast_ref::<TopicError>().is_some(), "{error}");
        }
        let pattern: [crate::Result<crate::Pattern>; 2] = [
            crate::Pattern::from_parts([crate::pattern::Part::Rest, crate::pattern::Part::One]),
            "a.>.b".parse(),
        ];
        for result in pattern {
            assert_eq!(result.unwrap_err().kind(), ErrorKind::Invalid);
        }
    }

    #[test]
    fn accepts_valid_topics() {
        for t in [
            "a",
            "room.42.msg",
            "orders.eu-west.created",
            "chat.café",
            "a[1].b?",
            "x#.y",
        ] {
            assert_eq!(Topic::new(t).unwrap().as_str(), t);
        }
    }

    #[test]
    fn rejects_with_position() {
        assert_eq!(Topic::new(""), Err(TopicError::Empty));
        assert_eq!(
            Topic::new("a..b"),
            Err(TopicError::EmptyToken {
                index: 1,
                offset: 2
            })
        );
        assert_eq!(
            Topic::new(".a"),
            Err(TopicError::EmptyToken {
                index: 0,
                offset: 0
            })
        );
        assert_eq!(
            Topic::new("a."),
            Err(TopicError::EmptyToken {
                index: 1,
                offset: 2
            })
        );
        assert_eq!(
            Topic::new("ab.c*d"),
            Err(TopicError::BadChar {
                ch: '*',
                index: 1,
                offset: 4
            })
        );
        assert_eq!(
            Topic::new("a.>"),
            Err(TopicError::BadChar {
                ch: '>',
                index: 1,
                offset: 2
            })
        );
        assert_eq!(
            Topic::new("a b"),
            Err(TopicError::BadChar {
                ch: ' ',
                index: 0,
                offset: 1
            })
        );
        assert_eq!(
            Topic::new("a\u{7}"),
            Err(TopicError::BadChar {
                ch: '\u{7}',
                index: 0,
                offset: 1
            })
        );
        let long = "a".repeat(256);
        assert_eq!(Topic::new(&long), Err(TopicError::TooLong { len: 256 }));
        assert!(Topic::new(&"a".repeat(255)).is_ok());
    }

    #[test]
    fn depth_counts_tokens() {
        assert_eq!(Topic::new("a").unwrap().depth(), 1);
        assert_eq!(Topic::new("a.b.c").unwrap().depth(), 3);
    }
}
