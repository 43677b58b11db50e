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
    entries: Vec<(Box<str>, Box<str>)>,
}

impl Headers {
    /// No headers.
    pub const fn new() -> Self {
        Headers {
            entries: Vec::new(),
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
        match self.entries.iter_mut().find(|(n, _)| **n == *name) {
            Some(entry) => entry.1 = value.into_boxed_str(),
            None => self
                .entries
                .push((name.into_boxed_str(), value.into_boxed_str())),
        }
        Ok(())
    }

    /// Appends a header whose name and value the caller has already checked with
    /// [`check_name`] and [`check_value`] and whose name is not present yet (the envelope
    /// decoder, which tracks names in a set, so that decoding stays linear in the header count).
    pub(crate) fn push_checked(&mut self, name: &str, value: &str) {
        debug_assert!(check_name(name).is_ok() && check_value(name, value).is_ok());
        debug_assert!(self.get(name).is_none());
        self.entries.push((name.into(), value.into()));
    }

    /// The value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(n, _)| **n == *name)
            .map(|(_, v)| &**v)
    }

    /// Removes `name`, returning its value.
    pub fn remove(&mut self, name: &str) -> Option<String> {
        let pos = self.entries.iter().position(|(n, _)| **n == *name)?;
        Some(self.entries.remove(pos).1.into_string())
    }

    /// `(name, value)` pairs in insertion order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> {
        self.entries.iter().map(|(n, v)| (&**n, &**v))
    }

    /// Number of headers.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there are no headers.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Checks a header name against the portable rules.
pub fn check_name(name: &str) -> Result<(), HeaderError> {
    if name.is_empty() {
        return Err(HeaderError::EmptyName);
    }
    if name.len() > MAX_HEADER_NAME {
        return Err(HeaderError::NameTooLong { len: name.len() });
    }
    if let Some((offset, &byte)) = name
        .as_bytes()
        .iter()
        .enumerate()
        .find(|(_, &b)| !(b'!'..=b'~').contains(&b) || b == b':')
    {
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
    match value.bytes().position(|b| b == b'\r' || b == b'\n') {
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
