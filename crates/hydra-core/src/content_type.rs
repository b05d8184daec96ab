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

/// The shared copy of `s`, if it is a common content type.
fn common(s: &str) -> Option<&'static str> {
    COMMON.iter().find(|c| **c == s).copied()
}

impl ContentType {
    /// Shared if common, else copied.
    pub fn new(s: &str) -> ContentType {
        match common(s) {
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
        match common(&s) {
            Some(c) => ContentType(Cow::Borrowed(c)),
            None => ContentType(Cow::Owned(s)),
        }
    }
}

impl From<&ContentType> for ContentType {
    fn from(c: &ContentType) -> ContentType {
        c.clone()
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
            // What `String` accepted too, from formats that give strings as bytes.
            fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<ContentType, E> {
                std::str::from_utf8(v)
                    .map(ContentType::new)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Bytes(v), &self))
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
        // An owned string (formats that cannot lend one) and bytes decode alike.
        use serde::de::value::{BytesDeserializer, Error as E, StringDeserializer};
        let owned = ContentType::deserialize(StringDeserializer::<E>::new("text/plain".into()));
        assert!(matches!(
            owned.expect("decode").0,
            Cow::Borrowed("text/plain")
        ));
        let bytes = ContentType::deserialize(BytesDeserializer::<E>::new(b"image/png"));
        assert_eq!(bytes.expect("decode"), "image/png");
    }

    fn hash_of(h: &impl std::hash::Hash) -> u64 {
        use std::hash::{BuildHasher, BuildHasherDefault};
        BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(h)
    }

    proptest::proptest! {
        /// Shared or owned, a content type compares, equals and hashes as its string does
        /// (as the `String` it replaced did).
        #[test]
        fn orders_and_hashes_as_its_string(
            a in proptest::sample::select(vec!["", "text/plain", "application/json", "a", "text/plainx"]),
            b in "[a-z/]{0,12}",
        ) {
            for (x, y) in [(a, b.as_str()), (b.as_str(), a)] {
                let (cx, cy) = (ContentType::new(x), ContentType::from(y.to_string()));
                proptest::prop_assert_eq!(cx.cmp(&cy), x.cmp(y));
                proptest::prop_assert_eq!(cx == cy, x == y);
                proptest::prop_assert_eq!(hash_of(&cx), hash_of(&x.to_string()));
            }
            proptest::prop_assert_eq!(hash_of(&ContentType::default()), hash_of(&String::new()));
        }
    }
}
