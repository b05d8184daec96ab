//! Hydra's storage engine: the core's [`Store`] trait over fjall, a pure-Rust LSM tree.
//! This is the only crate that names fjall.
//!
//! Key types: [`FjallStore`] (what the node's core thread reads, writes and syncs: one fsync
//! on the core thread for many writes, group commit) and [`Syncer`] (a handle that only syncs,
//! for the `periodic` durability thread). Durability is the caller's choice of when to call
//! `sync`; see [`Durability`].
//!
//! A failed fsync poisons the store: every later call fails with [`StoreError::Poisoned`]
//! until the process restarts and fjall recovers from its journal.

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use hydra_core::store::{Entries, SCAN_ENTRIES_MAX, Store, StoreError, WriteBatch};
use std::ops::Bound;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// When a write counts as durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Acknowledge only after fsync (group commit: concurrent writes share one fsync).
    Fsync,
    /// Acknowledge at once; fsync every `interval_ms`. A crash loses up to that window.
    Periodic { interval_ms: u64 },
    /// Never fsync. For tests and benchmarks only: a crash loses acknowledged writes.
    None,
}

impl FromStr for Durability {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "fsync" => Ok(Durability::Fsync),
            "none" => Ok(Durability::None),
            "periodic" => Ok(Durability::Periodic { interval_ms: 100 }),
            other => match other
                .strip_prefix("periodic:")
                .and_then(|ms| ms.parse().ok())
            {
                Some(interval_ms) if interval_ms > 0 => Ok(Durability::Periodic { interval_ms }),
                _ => Err(format!(
                    "unknown durability mode {other:?}; expected fsync, periodic, periodic:<ms> or none"
                )),
            },
        }
    }
}

/// How much memory the store may use: what bounds a node's resident memory, whatever the
/// number of keys (the Merkle trees take a fixed few MB besides; see `node/trees.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreOptions {
    /// Block cache (data, index and filter blocks read from disk), shared by the keyspace.
    pub cache_bytes: u64,
    /// Size at which the keyspace's memtable is sealed and flushed to disk.
    pub memtable_bytes: u64,
}

impl StoreOptions {
    /// Least block cache accepted.
    pub const CACHE_BYTES_MIN: u64 = 1 << 20;
    /// Memtable sizes accepted.
    pub const MEMTABLE_BYTES_MIN: u64 = 1 << 20;
    pub const MEMTABLE_BYTES_MAX: u64 = 1 << 30;
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            cache_bytes: 64 << 20,
            memtable_bytes: 32 << 20,
        }
    }
}

/// The node's store: one fjall database with one keyspace of objects.
#[derive(Clone)]
pub struct FjallStore {
    db: Database,
    data: Keyspace,
    poisoned: Arc<AtomicBool>,
}

/// A handle that only syncs: the `periodic` durability thread holds one.
#[derive(Clone)]
pub struct Syncer {
    db: Database,
    poisoned: Arc<AtomicBool>,
}

fn io(e: fjall::Error) -> StoreError {
    StoreError::Io(e.to_string())
}

impl FjallStore {
    /// Opens (or creates) the store in `dir` with the default options, recovering from the
    /// journal after a crash.
    pub fn open(dir: &Path) -> Result<FjallStore, StoreError> {
        FjallStore::open_with(dir, StoreOptions::default())
    }

    /// Opens (or creates) the store in `dir`, recovering from the journal after a crash.
    pub fn open_with(dir: &Path, options: StoreOptions) -> Result<FjallStore, StoreError> {
        let db = Database::builder(dir)
            .cache_size(options.cache_bytes.max(StoreOptions::CACHE_BYTES_MIN))
            .open()
            .map_err(|e| StoreError::Io(format!("opening {}: {e}", dir.display())))?;
        let memtable = options.memtable_bytes.clamp(
            StoreOptions::MEMTABLE_BYTES_MIN,
            StoreOptions::MEMTABLE_BYTES_MAX,
        );
        let data = db
            .keyspace("objects", || {
                KeyspaceCreateOptions::default().max_memtable_size(memtable)
            })
            .map_err(io)?;
        Ok(FjallStore {
            db,
            data,
            poisoned: Arc::new(AtomicBool::new(false)),
        })
    }

    pub fn syncer(&self) -> Syncer {
        Syncer {
            db: self.db.clone(),
            poisoned: self.poisoned.clone(),
        }
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(StoreError::Poisoned("an earlier fsync failed".into()));
        }
        Ok(())
    }

    /// Number of stored objects (walks the keyspace; for status pages and tests).
    pub fn approximate_len(&self) -> usize {
        self.data.approximate_len()
    }
}

impl Syncer {
    pub fn sync(&self) -> Result<(), StoreError> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(StoreError::Poisoned("an earlier fsync failed".into()));
        }
        self.db.persist(PersistMode::SyncAll).map_err(|e| {
            self.poisoned.store(true, Ordering::Release);
            StoreError::Poisoned(format!("fsync failed: {e}"))
        })
    }
}

impl Store for FjallStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.check()?;
        Ok(self.data.get(key).map_err(io)?.map(|v| v.to_vec()))
    }

    fn write(&mut self, batch: WriteBatch) -> Result<(), StoreError> {
        self.check()?;
        let mut b = self.db.batch();
        for (k, v) in batch.ops {
            match v {
                Some(v) => b.insert(&self.data, k, v),
                None => b.remove(&self.data, k),
            }
        }
        b.commit().map_err(io)
    }

    fn scan_prefix(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, StoreError> {
        self.check()?;
        let start = match after {
            Some(a) if a >= prefix => Bound::Excluded(a.to_vec()),
            _ => Bound::Included(prefix.to_vec()),
        };
        let mut out = Vec::new();
        for guard in self.data.range::<Vec<u8>, _>((start, Bound::Unbounded)) {
            let (k, v) = guard.into_inner().map_err(io)?;
            if !k.starts_with(prefix) || out.len() >= limit.min(SCAN_ENTRIES_MAX) {
                break;
            }
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        self.syncer().sync()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fjall_store_passes_conformance() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().to_path_buf();
        let store = FjallStore::open(&path).expect("open");
        hydra_core::store::conformance::run(store, |s| {
            drop(s);
            FjallStore::open(&path).expect("reopen")
        });
    }

    #[test]
    fn durability_modes_parse() {
        assert_eq!("fsync".parse(), Ok(Durability::Fsync));
        assert_eq!(
            "periodic:250".parse(),
            Ok(Durability::Periodic { interval_ms: 250 })
        );
        assert_eq!("none".parse(), Ok(Durability::None));
        assert!(
            "sometimes"
                .parse::<Durability>()
                .expect_err("not a mode")
                .contains("expected fsync")
        );
    }
}
