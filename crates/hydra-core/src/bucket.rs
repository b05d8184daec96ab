//! Buckets' properties and consistency levels.

use crate::limits::REPLICATION_FACTOR_MAX;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// How concurrent writes are kept. Fixed when the bucket is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ConflictMode {
    /// Concurrent writes are kept as siblings (dotted version vectors), as in Riak.
    Siblings,
    /// The write with the larger hybrid-logical-clock timestamp wins, as in Cassandra.
    Lww,
}

impl FromStr for ConflictMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "siblings" => Ok(ConflictMode::Siblings),
            "lww" => Ok(ConflictMode::Lww),
            other => Err(format!(
                "unknown conflict mode {other:?}; expected siblings or lww"
            )),
        }
    }
}

impl fmt::Display for ConflictMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConflictMode::Siblings => "siblings",
            ConflictMode::Lww => "lww",
        })
    }
}

/// Whether plain writes may mix with compare-and-set on one key (the bucket property `cas`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CasMode {
    /// No compare-and-set: conditional writes and serial reads are refused.
    Off,
    /// Conditional writes and serial reads go through Paxos, plain writes take the quorum
    /// path, and a replica that holds Paxos state for a key refuses plain writes to it
    /// (`cas_managed_key`). Refusals are best effort: a plain write that reaches a replica
    /// without the key's Paxos state (or a fallback) is taken.
    #[default]
    ConditionalOnly,
    /// Every write goes through Paxos (a plain write is an unconditional one) and reads
    /// default to serial: every operation of the bucket is linearizable.
    AllWrites,
}

impl FromStr for CasMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" => Ok(CasMode::Off),
            "conditional_only" => Ok(CasMode::ConditionalOnly),
            "all_writes" => Ok(CasMode::AllWrites),
            other => Err(format!(
                "unknown cas mode {other:?}; expected off, conditional_only or all_writes"
            )),
        }
    }
}

impl fmt::Display for CasMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CasMode::Off => "off",
            CasMode::ConditionalOnly => "conditional_only",
            CasMode::AllWrites => "all_writes",
        })
    }
}

/// How many replicas a request waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Consistency {
    One,
    Two,
    Three,
    /// floor(N/2) + 1.
    Quorum,
    All,
    Count(u8),
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ConsistencyError {
    #[error("unknown consistency level {0:?}; expected one, two, three, quorum, all or a number")]
    Unknown(String),
    #[error("consistency level {level} needs {needed} replicas but the bucket keeps only n = {n}")]
    MoreThanN { level: String, needed: u8, n: u8 },
    #[error("consistency level 0 waits for no replica; use at least 1")]
    Zero,
}

impl Consistency {
    /// The number of replicas this level needs when the bucket keeps `n`.
    pub fn required(self, n: u8) -> Result<u8, ConsistencyError> {
        let needed = match self {
            Consistency::One => 1,
            Consistency::Two => 2,
            Consistency::Three => 3,
            Consistency::Quorum => n / 2 + 1,
            Consistency::All => n,
            Consistency::Count(0) => return Err(ConsistencyError::Zero),
            Consistency::Count(c) => c,
        };
        if needed > n {
            return Err(ConsistencyError::MoreThanN {
                level: self.to_string(),
                needed,
                n,
            });
        }
        Ok(needed)
    }
}

impl FromStr for Consistency {
    type Err = ConsistencyError;
    fn from_str(s: &str) -> Result<Self, ConsistencyError> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "one" => Consistency::One,
            "two" => Consistency::Two,
            "three" => Consistency::Three,
            "quorum" => Consistency::Quorum,
            "all" => Consistency::All,
            other => match other.parse::<u8>() {
                Ok(0) => return Err(ConsistencyError::Zero),
                Ok(c) => Consistency::Count(c),
                Err(_) => return Err(ConsistencyError::Unknown(s.to_string())),
            },
        })
    }
}

impl fmt::Display for Consistency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Consistency::One => f.write_str("one"),
            Consistency::Two => f.write_str("two"),
            Consistency::Three => f.write_str("three"),
            Consistency::Quorum => f.write_str("quorum"),
            Consistency::All => f.write_str("all"),
            Consistency::Count(c) => write!(f, "{c}"),
        }
    }
}

/// A bucket's properties.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketProps {
    /// Replication factor N.
    pub n: u8,
    /// Default read quorum R.
    pub r: Consistency,
    /// Default write quorum W.
    pub w: Consistency,
    pub conflicts: ConflictMode,
    /// Whether fallback nodes may stand in for unreachable primaries (sloppy quorum).
    pub sloppy: bool,
    /// Default time to live of values written to the bucket, in seconds.
    pub ttl_secs: Option<u64>,
    /// Whether plain writes may mix with compare-and-set on one key.
    pub cas: CasMode,
}

impl Default for BucketProps {
    fn default() -> Self {
        BucketProps {
            n: 3,
            r: Consistency::Quorum,
            w: Consistency::Quorum,
            conflicts: ConflictMode::Siblings,
            sloppy: true,
            ttl_secs: None,
            cas: CasMode::ConditionalOnly,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BucketError {
    #[error("replication factor n = {0} is out of range 1..={REPLICATION_FACTOR_MAX}")]
    ReplicationFactor(u8),
    #[error(transparent)]
    Consistency(#[from] ConsistencyError),
    #[error("ttl of {0} s is out of range 1..={TTL_SECS_MAX}")]
    Ttl(u64),
}

pub use crate::limits::TTL_SECS_MAX;

impl BucketProps {
    pub fn lww() -> BucketProps {
        BucketProps {
            conflicts: ConflictMode::Lww,
            ..BucketProps::default()
        }
    }

    pub fn validate(&self) -> Result<(), BucketError> {
        if self.n == 0 || self.n > REPLICATION_FACTOR_MAX {
            return Err(BucketError::ReplicationFactor(self.n));
        }
        self.r.required(self.n)?;
        self.w.required(self.n)?;
        if let Some(t) = self.ttl_secs
            && !(1..=TTL_SECS_MAX).contains(&t)
        {
            return Err(BucketError::Ttl(t));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_resolve_against_n() {
        let table: &[(&str, u8, Result<u8, &str>)] = &[
            ("one", 3, Ok(1)),
            ("quorum", 3, Ok(2)),
            ("QUORUM", 5, Ok(3)),
            ("quorum", 4, Ok(3)),
            ("all", 3, Ok(3)),
            ("2", 3, Ok(2)),
            (
                "three",
                2,
                Err("consistency level three needs 3 replicas but the bucket keeps only n = 2"),
            ),
            (
                "4",
                3,
                Err("consistency level 4 needs 4 replicas but the bucket keeps only n = 3"),
            ),
            (
                "0",
                3,
                Err("consistency level 0 waits for no replica; use at least 1"),
            ),
            (
                "most",
                3,
                Err(
                    "unknown consistency level \"most\"; expected one, two, three, quorum, all or a number",
                ),
            ),
        ];
        for (text, n, want) in table {
            let got = text
                .parse::<Consistency>()
                .and_then(|c| c.required(*n))
                .map_err(|e| e.to_string());
            assert_eq!(got, want.map_err(str::to_string), "{text} with n = {n}");
        }
    }

    #[test]
    fn bucket_validation() {
        assert!(BucketProps::default().validate().is_ok());
        assert!(
            BucketProps {
                n: 0,
                ..BucketProps::default()
            }
            .validate()
            .is_err()
        );
        assert!(
            BucketProps {
                n: 2,
                w: Consistency::Three,
                ..BucketProps::default()
            }
            .validate()
            .is_err()
        );
        let all_writes = |conflicts| BucketProps {
            conflicts,
            cas: CasMode::AllWrites,
            ..BucketProps::default()
        };
        for conflicts in [ConflictMode::Siblings, ConflictMode::Lww] {
            assert!(all_writes(conflicts).validate().is_ok());
        }
        for mode in ["off", "conditional_only", "all_writes"] {
            assert_eq!(
                mode.parse::<CasMode>().map(|m| m.to_string()).as_deref(),
                Ok(mode)
            );
        }
        assert!("sometimes".parse::<CasMode>().is_err());
    }
}
