//! A value's content type: a string, shared without an allocation when it is one of the
//! common ones. Every stored value carries one (`application/octet-stream` for everything
//! the Redis protocol writes), and a read decodes, clones and drops several copies of its
//! value's: as a `String` each was an allocation, and on pipelined requests each freed on
//! another thread than made it. Encoded exactly as a string, so stored objects and messages
//! keep their bytes.

use serde::de::{Error, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;
use std::fmt;
use std::ops::Deref;

/// Content types decoded without an allocation.
const COMMON: &[&str] = &[
    "",
    "application/octet-stream",
    "text/plain",
    "application/json",
    "text/plain; charset=utf-8",
];

/// A content type (empty: none given).
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentType(Cow<'static, str>);

impl ContentType {
    /// Shared if common, else copied.
    pub fn new(s: &str) -> ContentType {
        match COMMON.iter().find(|c| **c == s) {
            Some(c) => ContentType(Cow::Borrowed(c)),
            None => ContentType(Cow::Owned(s.to_string())),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Deref for ContentType {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<&str> for ContentType {
    fn from(s: &str) -> ContentType {
        ContentType::new(s)
    }
}

impl From<String> for ContentType {
    fn from(s: String) -> ContentType {
        match COMMON.iter().find(|c| **c == s) {
            Some(c) => ContentType(Cow::Borrowed(c)),
            None => ContentType(Cow::Owned(s)),
        }
    }
}

impl From<ContentType> for String {
    fn from(c: ContentType) -> String {
        c.0.into_owned()
    }
}

impl PartialEq<str> for ContentType {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ContentType {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Debug for ContentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for ContentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ContentType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ContentType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ContentType, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ContentType;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a content type")
            }
            fn visit_str<E: Error>(self, v: &str) -> Result<ContentType, E> {
                Ok(ContentType::new(v))
            }
            fn visit_string<E: Error>(self, v: String) -> Result<ContentType, E> {
                Ok(ContentType::from(v))
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_as_a_string_and_shares_the_common_ones() {
        for s in ["application/octet-stream", "image/png", ""] {
            let c = ContentType::new(s);
            let bytes = postcard::to_allocvec(&c).expect("encode");
            assert_eq!(
                bytes,
                postcard::to_allocvec(&s.to_string()).expect("encode")
            );
            let back: ContentType = postcard::from_bytes(&bytes).expect("decode");
            assert_eq!(back, c);
            assert_eq!(back.as_str(), s);
        }
        assert!(matches!(
            ContentType::new("application/octet-stream").0,
            Cow::Borrowed(_)
        ));
        assert!(matches!(ContentType::new("image/png").0, Cow::Owned(_)));
    }
}
