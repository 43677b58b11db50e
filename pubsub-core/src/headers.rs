//! [`Headers`]: ordered, uniquely named message metadata.

use std::fmt;

/// Longest header name, in bytes.
pub const MAX_HEADER_NAME: usize = 255;

/// Why a header name or value is not allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// The name is empty.
    #[error("header name is empty")]
    EmptyName,
    /// The name is longer than 255 bytes.
    #[error("header name is {len} bytes long; the limit is {MAX_HEADER_NAME}")]
    NameTooLong {
        /// Actual length.
        len: usize,
    },
    /// The name holds a byte that is not visible ASCII, or a `:`.
    #[error("header name {name:?} has a forbidden byte 0x{byte:02x} at {offset}")]
    BadNameByte {
        /// The offending name (as lossy text).
        name: String,
        /// The byte.
        byte: u8,
        /// Its offset in the name.
        offset: usize,
    },
    /// The value holds CR or LF.
    #[error("value of header {name:?} holds CR or LF at byte {offset}")]
    BadValue {
        /// The header's name.
        name: String,
        /// Offset of the CR or LF in the value.
        offset: usize,
    },
}

crate::error::invalid_from!(HeaderError => "invalid header");

/// Ordered message headers with unique names.
///
/// A name is 1–255 bytes of visible ASCII (`!`..=`~`) without `:`; a value is UTF-8 without CR
/// or LF. Names are case-sensitive. Inserting an existing name replaces its value in place.
///
/// ```
/// use pubsub_core::Headers;
/// let mut h = Headers::new();
/// h.insert("content-type", "text/plain")?;
/// h.insert("trace", "abc")?;
/// assert_eq!(h.get("trace"), Some("abc"));
/// assert!(h.insert("bad:name", "x").is_err());
/// # Ok::<(), pubsub_core::Error>(())
/// ```
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Headers {
    /// Every name and value, one after the other, in order: two allocations for any number of
    /// headers (this and `ends`), and what equality and hashing compare.
    text: String,
    /// For each header, where its name and its value end in `text` (its name starts where the
    /// header before ends, or at 0).
    ends: Vec<(usize, usize)>,
}

impl Headers {
    /// No headers.
    pub const fn new() -> Self {
        Headers {
            text: String::new(),
            ends: Vec::new(),
        }
    }

    /// Sets `name` to `value`, replacing an earlier value of the same name in its place.
    pub fn insert(
        &mut self,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<(), HeaderError> {
        let name = name.into();
        let value = value.into();
        check_name(&name)?;
        check_value(&name, &value)?;
        match self.position(&name) {
            Some(index) => self.replace_value(index, &value),
            None => self.push_checked(&name, &value),
        }
        Ok(())
    }

    /// Room for `headers` more headers holding `text` bytes of names and values in all (the
    /// envelope decoder, which knows both before it copies a frame's headers).
    pub(crate) fn with_capacity(headers: usize, text: usize) -> Self {
        Headers {
            text: String::with_capacity(text),
            ends: Vec::with_capacity(headers),
        }
    }

    /// Appends a header whose name and value the caller has already checked with
    /// [`check_name`] and [`check_value`] and whose name is not present yet (the envelope
    /// decoder, which tracks names in a set, so that decoding stays linear in the header count).
    pub(crate) fn push_checked(&mut self, name: &str, value: &str) {
        debug_assert!(check_name(name).is_ok() && check_value(name, value).is_ok());
        debug_assert!(self.get(name).is_none());
        self.text.push_str(name);
        let name_end = self.text.len();
        self.text.push_str(value);
        self.ends.push((name_end, self.text.len()));
    }

    /// The value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// Removes `name`, returning its value.
    pub fn remove(&mut self, name: &str) -> Option<String> {
        let index = self.position(name)?;
        let (start, (name_end, value_end)) = (self.start(index), self.ends[index]);
        let value = self.text[name_end..value_end].to_owned();
        self.text.replace_range(start..value_end, "");
        self.ends.remove(index);
        for end in &mut self.ends[index..] {
            end.0 -= value_end - start;
            end.1 -= value_end - start;
        }
        Some(value)
    }

    /// `(name, value)` pairs in insertion order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> {
        Iter {
            text: &self.text,
            ends: self.ends.iter(),
            start: 0,
        }
    }

    /// Number of headers.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True when there are no headers.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Where header `index` starts in `text`.
    fn start(&self, index: usize) -> usize {
        index
            .checked_sub(1)
            .and_then(|before| self.ends.get(before))
            .map_or(0, |&(_, value_end)| value_end)
    }

    /// The index of the header named `name`.
    fn position(&self, name: &str) -> Option<usize> {
        self.iter().position(|(n, _)| n == name)
    }

    /// Sets the value of header `index` (< `len`) to `value`, moving the headers after it.
    fn replace_value(&mut self, index: usize, value: &str) {
        let (name_end, value_end) = self.ends[index];
        self.text.replace_range(name_end..value_end, value);
        let new_end = name_end + value.len();
        self.ends[index].1 = new_end;
        for end in &mut self.ends[index + 1..] {
            // Every end after header `index` was after `value_end`.
            end.0 = end.0 - value_end + new_end;
            end.1 = end.1 - value_end + new_end;
        }
    }
}

/// The `(name, value)` pairs of [`Headers`], in order.
struct Iter<'a> {
    text: &'a str,
    ends: std::slice::Iter<'a, (usize, usize)>,
    /// Where the next header starts in `text`.
    start: usize,
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        let &(name_end, value_end) = self.ends.next()?;
        let name = self.text.get(self.start..name_end).unwrap_or_default();
        let value = self.text.get(name_end..value_end).unwrap_or_default();
        self.start = value_end;
        Some((name, value))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.ends.size_hint()
    }
}

impl ExactSizeIterator for Iter<'_> {}

/// Checks a header name against the portable rules.
pub fn check_name(name: &str) -> Result<(), HeaderError> {
    if name.is_empty() {
        return Err(HeaderError::EmptyName);
    }
    if name.len() > MAX_HEADER_NAME {
        return Err(HeaderError::NameTooLong { len: name.len() });
    }
    let bad = |b: u8| !(b'!'..=b'~').contains(&b) || b == b':';
    // One pass without an early exit (the compiler vectorizes it); where only on a bad name.
    if !name.bytes().fold(false, |seen, b| seen | bad(b)) {
        return Ok(());
    }
    if let Some((offset, &byte)) = name.as_bytes().iter().enumerate().find(|(_, &b)| bad(b)) {
        return Err(HeaderError::BadNameByte {
            name: name.to_string(),
            byte,
            offset,
        });
    }
    Ok(())
}

/// Checks a header value against the portable rules.
pub fn check_value(name: &str, value: &str) -> Result<(), HeaderError> {
    let bad = |b: u8| b == b'\r' || b == b'\n';
    // One pass without an early exit (the compiler vectorizes it); where only on a bad value.
    if !value.bytes().fold(false, |seen, b| seen | bad(b)) {
        return Ok(());
    }
    match value.bytes().position(bad) {
        Some(offset) => Err(HeaderError::BadValue {
            name: name.to_string(),
            offset,
        }),
        None => Ok(()),
    }
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<'a> IntoIterator for &'a Headers {
    type Item = (&'a str, &'a str);
    type IntoIter = Box<dyn ExactSizeIterator<Item = (&'a str, &'a str)> + 'a>;
    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_replaces_in_place() {
        let mut h = Headers::new();
        h.insert("a", "1").unwrap();
        h.insert("b", "2").unwrap();
        h.insert("a", "3").unwrap();
        assert_eq!(h.iter().collect::<Vec<_>>(), [("a", "3"), ("b", "2")]);
        assert_eq!(h.remove("a").as_deref(), Some("3"));
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn replace_and_remove_in_the_middle_keep_the_others() {
        let mut h = Headers::new();
        for (n, v) in [("a", "1"), ("bb", "22"), ("c", ""), ("d", "4")] {
            h.insert(n, v).unwrap();
        }
        h.insert("bb", "longer value").unwrap();
        h.insert("c", "3").unwrap();
        assert_eq!(
            h.iter().collect::<Vec<_>>(),
            [("a", "1"), ("bb", "longer value"), ("c", "3"), ("d", "4")]
        );
        h.insert("bb", "").unwrap();
        assert_eq!(h.get("d"), Some("4"));
        assert_eq!(h.remove("bb").as_deref(), Some(""));
        assert_eq!(h.remove("a").as_deref(), Some("1"));
        assert_eq!(h.iter().collect::<Vec<_>>(), [("c", "3"), ("d", "4")]);
        assert_eq!(h.remove("zz"), None);
        // Equal headers are equal however they were built.
        let mut fresh = Headers::new();
        fresh.insert("c", "3").unwrap();
        fresh.insert("d", "4").unwrap();
        assert_eq!(h, fresh);
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn rejects_bad_names_and_values() {
        let mut h = Headers::new();
        assert_eq!(h.insert("", "x"), Err(HeaderError::EmptyName));
        assert!(matches!(
            h.insert("a:b", "x"),
            Err(HeaderError::BadNameByte {
                byte: b':',
                offset: 1,
                ..
            })
        ));
        assert!(matches!(
            h.insert("a b", "x"),
            Err(HeaderError::BadNameByte { byte: b' ', .. })
        ));
        assert!(matches!(
            h.insert("é", "x"),
            Err(HeaderError::BadNameByte { offset: 0, .. })
        ));
        assert_eq!(
            h.insert("n".repeat(256), "x"),
            Err(HeaderError::NameTooLong { len: 256 })
        );
        assert!(matches!(
            h.insert("a", "x\ny"),
            Err(HeaderError::BadValue { offset: 1, .. })
        ));
        assert!(matches!(
            h.insert("a", "\r"),
            Err(HeaderError::BadValue { offset: 0, .. })
        ));
        assert!(h.is_empty());
        h.insert("ok", "café: ☃ tab\tok").unwrap();
    }
}
