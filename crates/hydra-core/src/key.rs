//! Buckets, keys and the byte layout of storage keys.

use crate::ids::PartitionId;
use crate::limits::{BUCKET_NAME_BYTES_MAX, KEY_BYTES_MAX};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// A bucket name: 1 to [`BUCKET_NAME_BYTES_MAX`] bytes of `[a-z0-9_.-]`. Shared, not
/// copied: every key names its bucket, and keys are cloned into each message and state a
/// request makes (encoded as the string itself).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct BucketName(Arc<str>);

impl Serialize for BucketName {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl BucketName {
    pub fn new(name: &str) -> Result<BucketName, KeyError> {
        if name.is_empty() {
            return Err(KeyError::EmptyBucket);
        }
        if name.len() > BUCKET_NAME_BYTES_MAX {
            return Err(KeyError::BucketTooLong {
                len: name.len(),
                max: BUCKET_NAME_BYTES_MAX,
            });
        }
        if let Some(c) = name.chars().find(|c| {
            !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '.'))
        }) {
            return Err(KeyError::BucketCharacter {
                name: name.to_string(),
                character: c,
            });
        }
        Ok(BucketName(Arc::from(name)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for BucketName {
    type Error = KeyError;
    fn try_from(s: String) -> Result<Self, KeyError> {
        BucketName::new(&s)
    }
}

impl From<BucketName> for String {
    fn from(b: BucketName) -> String {
        b.0.to_string()
    }
}

impl fmt::Display for BucketName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A key inside a bucket: 1 to [`KEY_BYTES_MAX`] arbitrary bytes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ObjectKey {
    pub bucket: BucketName,
    #[serde(with = "serde_bytes")]
    key: Vec<u8>,
}

impl ObjectKey {
    pub fn new(bucket: BucketName, key: &[u8]) -> Result<ObjectKey, KeyError> {
        check_key(key)?;
        Ok(ObjectKey {
            bucket,
            key: key.to_vec(),
        })
    }

    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// Checks a decoded key against the limits (serde bypasses [`ObjectKey::new`]).
    pub fn validate(&self) -> Result<(), KeyError> {
        check_key(&self.key)
    }

    /// The storage key: partition (4 bytes, big endian), bucket length (1 byte), bucket, key.
    /// Big-endian partition first makes "scan one partition" a prefix scan.
    pub fn storage_key(&self, partition: PartitionId) -> Vec<u8> {
        let mut out = bucket_prefix(partition, &self.bucket);
        out.extend_from_slice(&self.key);
        out
    }

    /// Inverse of [`ObjectKey::storage_key`].
    pub fn from_storage_key(bytes: &[u8]) -> Result<(PartitionId, ObjectKey), KeyError> {
        let bad = || KeyError::StorageKey { len: bytes.len() };
        let partition = bytes.get(..4).ok_or_else(bad)?;
        let partition = PartitionId(u32::from_be_bytes(partition.try_into().map_err(|_| bad())?));
        let blen = *bytes.get(4).ok_or_else(bad)? as usize;
        let bucket = bytes.get(5..5 + blen).ok_or_else(bad)?;
        let bucket = std::str::from_utf8(bucket).map_err(|_| bad())?;
        let key = &bytes[5 + blen..];
        Ok((partition, ObjectKey::new(BucketName::new(bucket)?, key)?))
    }
}

/// The storage-key prefix of every key of `bucket` in `partition` (see
/// [`ObjectKey::storage_key`]): partition, bucket length, bucket.
pub fn bucket_prefix(partition: PartitionId, bucket: &BucketName) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + bucket.0.len() + 16);
    out.extend_from_slice(&partition.0.to_be_bytes());
    out.push(bucket.0.len() as u8);
    out.extend_from_slice(bucket.0.as_bytes());
    out
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.bucket, String::from_utf8_lossy(&self.key))
    }
}

fn check_key(key: &[u8]) -> Result<(), KeyError> {
    if key.is_empty() {
        return Err(KeyError::EmptyKey);
    }
    if key.len() > KEY_BYTES_MAX {
        return Err(KeyError::KeyTooLong {
            len: key.len(),
            max: KEY_BYTES_MAX,
        });
    }
    Ok(())
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum KeyError {
    #[error("key is empty")]
    EmptyKey,
    #[error("key is {len} bytes, more than the limit of {max}")]
    KeyTooLong { len: usize, max: usize },
    #[error("bucket name is empty")]
    EmptyBucket,
    #[error("bucket name is {len} bytes, more than the limit of {max}")]
    BucketTooLong { len: usize, max: usize },
    #[error(
        "bucket name {name:?} has character {character:?}; allowed are a-z, 0-9, '_', '-', '.'"
    )]
    BucketCharacter { name: String, character: char },
    #[error("malformed storage key of {len} bytes")]
    StorageKey { len: usize },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_key_round_trips_and_sorts_by_partition() {
        let k = ObjectKey::new(BucketName::new("default").expect("valid"), b"k1").expect("valid");
        let sk = k.storage_key(PartitionId(7));
        assert_eq!(&sk[..5], &[0, 0, 0, 7, 7]);
        assert_eq!(
            ObjectKey::from_storage_key(&sk).expect("round trip"),
            (PartitionId(7), k.clone())
        );
        assert!(k.storage_key(PartitionId(7)) < k.storage_key(PartitionId(8)));
    }

    #[test]
    fn limits_are_named_in_errors() {
        let b = BucketName::new("b").expect("valid");
        let e = ObjectKey::new(b.clone(), &vec![0u8; KEY_BYTES_MAX + 1]).expect_err("too long");
        assert_eq!(
            e.to_string(),
            "key is 1025 bytes, more than the limit of 1024"
        );
        assert!(ObjectKey::new(b, b"").is_err());
        assert!(BucketName::new("Bad").is_err());
        assert!(BucketName::new(&"a".repeat(65)).is_err());
        assert!(ObjectKey::from_storage_key(&[0, 0, 0, 1, 9, b'a']).is_err());
    }
}
