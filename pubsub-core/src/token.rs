//! The token rules shared by topics and patterns (DESIGN.md section 3).

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
