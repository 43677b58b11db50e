//! The token rules shared by topics and patterns, and [`Token`]: one checked or escaped token.

/// Display (the text), Debug (`Name("text")`) and `AsRef<str>` for a checked text of the
/// grammar ([`Token`], [`Topic`](crate::Topic), [`Pattern`](crate::Pattern)) through its
/// `as_str`; with `parse`, also `FromStr` and `TryFrom<&str>` through its `new`, whose error
/// becomes a [`crate::Error`].
macro_rules! text_impls {
    ($ty:ident) => {
        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, concat!(stringify!($ty), "({:?})"), self.as_str())
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                self.as_str()
            }
        }
    };
    ($ty:ident, parse) => {
        $crate::token::text_impls!($ty);

        impl std::str::FromStr for $ty {
            type Err = $crate::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Ok($ty::new(s)?)
            }
        }

        impl TryFrom<&str> for $ty {
            type Error = $crate::Error;
            fn try_from(s: &str) -> Result<Self, Self::Error> {
                Ok($ty::new(s)?)
            }
        }
    };
}
pub(crate) use text_impls;

/// Largest topic or pattern, in bytes.
pub const MAX_LEN: usize = 255;

/// Why one token is not allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenFault {
    /// Zero bytes between two dots (or at either end).
    Empty,
    /// A forbidden character at this byte offset of the whole input.
    BadChar(char, usize),
}

/// Checks one token of a topic (or a literal token of a pattern), `offset` being the byte
/// offset of the token in the whole input. Wildcard characters are reported as `BadChar`.
pub(crate) fn check_literal(token: &str, offset: usize) -> Result<(), TokenFault> {
    if token.is_empty() {
        return Err(TokenFault::Empty);
    }
    for (i, c) in token.char_indices() {
        if c == '*' || c == '>' || c == '.' || c.is_whitespace() || c.is_control() {
            return Err(TokenFault::BadChar(c, offset + i));
        }
    }
    Ok(())
}

/// Splits `input` into `(byte offset, token)` pairs on `.`.
pub(crate) fn split(input: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut offset = 0;
    input.split('.').map(move |t| {
        let start = offset;
        offset += t.len() + 1;
        (start, t)
    })
}

/// One token of a topic: the text between two dots.
///
/// Build it from text you trust with [`Token::new`] (checked), or from any string, such as a
/// room name a user typed, with [`Token::escape`]: every character a token cannot hold (`.`,
/// `*`, `>`, whitespace, control characters), and `%` itself, becomes `%` and two hex digits
/// per UTF-8 byte; the empty string becomes a lone `%`. [`Token::unescape`] gives the original
/// back, so distinct inputs always give distinct tokens and a user can never inject a wildcard
/// or a level. Join tokens with [`Topic::from_tokens`](crate::Topic::from_tokens).
///
/// ```
/// use pubsub_core::{Token, Topic};
/// let room = Token::escape("lobby.* 1");
/// assert_eq!(room.as_str(), "lobby%2E%2A%201");
/// assert_eq!(room.unescape(), "lobby.* 1");
/// let topic = Topic::from_tokens([Token::new("room")?, room, Token::new("msg")?])?;
/// assert_eq!(topic.as_str(), "room.lobby%2E%2A%201.msg");
/// # Ok::<(), pubsub_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Token(Box<str>);

/// Why a string is not a valid [`Token`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The empty string.
    #[error("a token cannot be empty")]
    Empty,
    /// A character tokens do not hold.
    #[error("character {ch:?} is not allowed in a token (byte {offset}); use Token::escape")]
    BadChar {
        /// The character.
        ch: char,
        /// Its byte offset.
        offset: usize,
    },
    /// Longer than a whole topic may be.
    #[error("a token of {len} bytes cannot fit in a topic of at most {MAX_LEN} bytes")]
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
}

crate::error::invalid_from!(TokenError => "invalid token");

impl Token {
    /// Checks `text` as a token.
    pub fn new(text: &str) -> Result<Token, TokenError> {
        if text.len() > MAX_LEN {
            return Err(TokenError::TooLong { len: text.len() });
        }
        match check_literal(text, 0) {
            Ok(()) => Ok(Token(text.into())),
            Err(TokenFault::Empty) => Err(TokenError::Empty),
            Err(TokenFault::BadChar(ch, offset)) => Err(TokenError::BadChar { ch, offset }),
        }
    }

    /// A token for any string (reversible with [`Token::unescape`]). It may be longer than a
    /// topic allows; [`Topic::from_tokens`](crate::Topic::from_tokens) then says so.
    pub fn escape(text: &str) -> Token {
        if text.is_empty() {
            return Token("%".into());
        }
        let mut out = String::with_capacity(text.len());
        for c in text.chars() {
            if c == '%' || c == '*' || c == '>' || c == '.' || c.is_whitespace() || c.is_control() {
                let mut bytes = [0u8; 4];
                for b in c.encode_utf8(&mut bytes).bytes() {
                    crate::escape::push_hex_escape(&mut out, '%', b);
                }
            } else {
                out.push(c);
            }
        }
        Token(out.into())
    }

    /// The string [`Token::escape`] was given. On a token that was not escaped, a `%` not
    /// followed by two hex digits stays as it is.
    pub fn unescape(&self) -> String {
        if &*self.0 == "%" {
            return String::new();
        }
        let bytes = self.0.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let hex = (bytes[i] == b'%')
                .then(|| bytes.get(i + 1..i + 3))
                .flatten()
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match hex {
                Some(b) => {
                    out.push(b);
                    i += 3;
                }
                None => {
                    out.push(bytes[i]);
                    i += 1;
                }
            }
        }
        String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into())
    }

    /// The token's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

text_impls!(Token);

impl AsRef<Token> for Token {
    fn as_ref(&self) -> &Token {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hostile_strings_become_tokens() {
        let more = ["%", "\u{0}\n", "café ☕"];
        for &s in crate::escape::HOSTILE_TEXTS.iter().chain(&more) {
            let t = Token::escape(s);
            assert!(Token::new(t.as_str()).is_ok(), "{s:?} -> {t:?}");
            assert_eq!(t.unescape(), s);
        }
        assert_eq!(Token::escape("").as_str(), "%");
        assert_eq!(Token::escape("%").as_str(), "%25");
        assert_eq!(
            Token::new("a.b"),
            Err(TokenError::BadChar { ch: '.', offset: 1 })
        );
        assert_eq!(Token::new(""), Err(TokenError::Empty));
        assert!(matches!(
            Token::new(&"x".repeat(300)),
            Err(TokenError::TooLong { len: 300 })
        ));
    }

    proptest! {
        #[test]
        fn escape_is_a_valid_token_and_reversible(s in any::<String>()) {
            let t = Token::escape(&s);
            prop_assert!(Token::new(t.as_str()).is_ok() || t.as_str().len() > MAX_LEN);
            prop_assert_eq!(t.unescape(), s);
        }

        #[test]
        fn distinct_inputs_give_distinct_tokens(a in any::<String>(), b in any::<String>()) {
            prop_assume!(a != b);
            prop_assert_ne!(Token::escape(&a), Token::escape(&b));
        }
    }
}
