//! The storage boundary: a narrow, synchronous key-value trait, and [`MemStore`], an in-memory
//! store that models the durability boundary (writes not yet synced vanish on a crash).
//!
//! The core stores encoded objects under storage keys (see [`crate::key::ObjectKey::storage_key`]);
//! a store knows nothing of objects. Durability contract: after `write` returns, `get` sees the
//! write; only after a later `sync` returns is it guaranteed to survive a crash. A failed sync
//! poisons the store: every later call fails.

use crate::ids::PartitionId;
use std::collections::BTreeMap;

pub use crate::limits::SCAN_ENTRIES_MAX;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("storage failed: {0}")]
    Io(String),
    #[error(
        "storage is poisoned after a failed sync ({0}); the node refuses writes until restarted"
    )]
    Poisoned(String),
}

/// Key-value pairs, in key order.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// Puts and removes applied together.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteBatch {
    pub ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl WriteBatch {
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.ops.push((key, Some(value)));
    }

    pub fn remove(&mut self, key: Vec<u8>) {
        self.ops.push((key, None));
    }
}

/// What a node needs from its storage engine.
pub trait Store {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Hands `key`'s value (or its absence) to `f`, without copying it out of the store where
    /// the engine can lend it (a read decodes the bytes at once; the copy was a malloc, a
    /// memcpy and a free per read). `f` may run under a lock of the engine's (the row
    /// cache's): it must not call the store.
    fn get_with<R>(&self, key: &[u8], f: impl FnOnce(Option<&[u8]>) -> R) -> Result<R, StoreError> {
        Ok(f(self.get(key)?.as_deref()))
    }
    /// [`Store::get_with`] for a read a write of the key follows (a replica's read before
    /// it merges): an engine with a cache of hot keys leaves the choice of caching the key to
    /// the write, so a key written once (a bulk load) does not enter the cache as read.
    fn get_before_write_with<R>(
        &self,
        key: &[u8],
        f: impl FnOnce(Option<&[u8]>) -> R,
    ) -> Result<R, StoreError> {
        self.get_with(key, f)
    }
    /// Applies the batch atomically (visible at once, durable after the next `sync`).
    fn write(&mut self, batch: WriteBatch) -> Result<(), StoreError>;
    /// Up to `limit` (at most [`SCAN_ENTRIES_MAX`]) entries whose keys start with `prefix`,
    /// in key order, starting after `after` (exclusive) when given.
    fn scan_prefix(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, StoreError>;
    /// Up to `limit` (at most [`SCAN_ENTRIES_MAX`]) entries of one partition, in key order,
    /// starting after `after` (exclusive) when given.
    fn scan_partition(
        &self,
        partition: PartitionId,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, StoreError> {
        self.scan_prefix(&partition.0.to_be_bytes(), after, limit)
    }
    /// Makes every earlier write durable.
    fn sync(&mut self) -> Result<(), StoreError>;
}

/// An in-memory store with a modelled durability boundary, for tests and the simulator.
#[derive(Clone, Debug, Default)]
pub struct MemStore {
    /// What survives a crash.
    durable: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Written but not yet synced; `None` is a pending removal.
    pending: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    poisoned: Option<String>,
    /// Test switch: the next sync fails (as a failing disk's fsync would).
    pub fail_next_sync: bool,
}

impl MemStore {
    pub fn new() -> MemStore {
        MemStore::default()
    }

    /// A crash: unsynced writes are lost, the poison is cleared (a restart).
    pub fn crash(&mut self) {
        self.pending.clear();
        self.poisoned = None;
    }

    /// Entries that are written but not yet durable.
    pub fn unsynced(&self) -> usize {
        self.pending.len()
    }

    /// Every entry as a read would see it.
    pub fn entries(&self) -> BTreeMap<Vec<u8>, Vec<u8>> {
        let mut out = self.durable.clone();
        for (k, v) in &self.pending {
            match v {
                Some(v) => out.insert(k.clone(), v.clone()),
                None => out.remove(k),
            };
        }
        out
    }

    fn check(&self) -> Result<(), StoreError> {
        match &self.poisoned {
            Some(why) => Err(StoreError::Poisoned(why.clone())),
            None => Ok(()),
        }
    }
}

impl Store for MemStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_with(key, |v| v.map(<[u8]>::to_vec))
    }

    fn get_with<R>(&self, key: &[u8], f: impl FnOnce(Option<&[u8]>) -> R) -> Result<R, StoreError> {
        self.check()?;
        Ok(match self.pending.get(key) {
            Some(v) => f(v.as_deref()),
            None => f(self.durable.get(key).map(Vec::as_slice)),
        })
    }

    fn write(&mut self, batch: WriteBatch) -> Result<(), StoreError> {
        self.check()?;
        for (k, v) in batch.ops {
            self.pending.insert(k, v);
        }
        Ok(())
    }

    fn scan_prefix(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, StoreError> {
        self.check()?;
        let start = match after {
            Some(a) if a >= prefix => std::ops::Bound::Excluded(a.to_vec()),
            _ => std::ops::Bound::Included(prefix.to_vec()),
        };
        let limit = limit.min(SCAN_ENTRIES_MAX);
        let range = (start, std::ops::Bound::Unbounded);
        // Durable entries overlaid with pending ones, one partition only: pending removals may
        // hide durable entries, so take up to `limit` more than needed from each side.
        let mut merged: BTreeMap<&[u8], Option<&Vec<u8>>> = BTreeMap::new();
        let pending: Vec<(&Vec<u8>, &Option<Vec<u8>>)> = self
            .pending
            .range(range.clone())
            .take_while(|(k, _)| k.starts_with(prefix))
            .collect();
        let removed = pending.iter().filter(|(_, v)| v.is_none()).count();
        for (k, v) in self
            .durable
            .range(range)
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit + removed)
        {
            merged.insert(k, Some(v));
        }
        for (k, v) in pending {
            merged.insert(k, v.as_ref());
        }
        Ok(merged
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k.to_vec(), v.clone())))
            .take(limit)
            .collect())
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        self.check()?;
        if self.fail_next_sync {
            self.fail_next_sync = false;
            let why = "injected fsync failure".to_string();
            self.poisoned = Some(why.clone());
            return Err(StoreError::Poisoned(why));
        }
        for (k, v) in std::mem::take(&mut self.pending) {
            match v {
                Some(v) => self.durable.insert(k, v),
                None => self.durable.remove(&k),
            };
        }
        Ok(())
    }
}

/// The conformance suite every [`Store`] implementation must pass. `reopen` simulates a
/// clean restart of the same store (it must keep what was synced).
pub mod conformance {
    use super::*;

    fn key(partition: u32, k: &str) -> Vec<u8> {
        let mut out = partition.to_be_bytes().to_vec();
        out.extend_from_slice(k.as_bytes());
        out
    }

    /// A read through [`Store::get_before_write_with`] (which never admits a key to a
    /// cache), [`Store::get`] and twice through [`Store::get_with`], which must agree. A row
    /// cache that admits a key at its second miss answers the first reads from the engine
    /// (the second miss admitting it) and the last itself, so every path of both is checked
    /// whether or not a write cached the key.
    fn read<S: Store>(store: &S, key: &[u8]) -> Option<Vec<u8>> {
        let before_write = store
            .get_before_write_with(key, |v| v.map(<[u8]>::to_vec))
            .expect("get_before_write_with");
        let got = store.get(key).expect("get");
        assert_eq!(got, before_write, "get and get_before_write_with agree");
        for _ in 0..2 {
            let lent = store
                .get_with(key, |v| v.map(<[u8]>::to_vec))
                .expect("get_with");
            assert_eq!(got, lent, "get and get_with agree");
        }
        got
    }

    /// Runs every check; panics (as a test failure) on the first violation.
    pub fn run<S: Store>(mut store: S, reopen: impl Fn(S) -> S) {
        let mut b = WriteBatch::default();
        b.put(key(1, "a"), b"1".to_vec());
        b.put(key(1, "b"), b"2".to_vec());
        b.put(key(2, "a"), b"3".to_vec());
        b.put(key(0, "z"), b"4".to_vec());
        store.write(b).expect("write");
        assert_eq!(
            read(&store, &key(1, "a")),
            Some(b"1".to_vec()),
            "a write is visible at once"
        );
        store.sync().expect("sync");
        let mut store = reopen(store);
        assert_eq!(
            read(&store, &key(2, "a")),
            Some(b"3".to_vec()),
            "synced writes survive"
        );
        let scan = store
            .scan_partition(PartitionId(1), None, 100)
            .expect("scan");
        assert_eq!(
            scan,
            vec![(key(1, "a"), b"1".to_vec()), (key(1, "b"), b"2".to_vec())],
            "scan is one partition, in order"
        );
        let page = store
            .scan_partition(PartitionId(1), Some(&key(1, "a")), 100)
            .expect("scan");
        assert_eq!(
            page,
            vec![(key(1, "b"), b"2".to_vec())],
            "scan resumes after the given key"
        );
        assert_eq!(
            store
                .scan_partition(PartitionId(1), None, 1)
                .expect("scan")
                .len(),
            1,
            "scan honours the limit"
        );
        assert_eq!(
            store.scan_prefix(&key(1, "b"), None, 100).expect("scan"),
            vec![(key(1, "b"), b"2".to_vec())],
            "a prefix scan ends where the prefix does"
        );
        assert_eq!(
            store
                .scan_prefix(&key(1, "b"), Some(&key(0, "z")), 100)
                .expect("scan")
                .len(),
            1,
            "a prefix scan never starts before its prefix"
        );
        let mut b = WriteBatch::default();
        b.remove(key(1, "a"));
        b.put(key(1, "b"), b"5".to_vec());
        store.write(b).expect("write");
        assert_eq!(
            read(&store, &key(1, "a")),
            None,
            "a removal is visible at once"
        );
        assert_eq!(
            read(&store, &key(1, "b")),
            Some(b"5".to_vec()),
            "an overwrite is visible at once"
        );
        store.sync().expect("sync");
        let store = reopen(store);
        assert_eq!(
            read(&store, &key(1, "a")),
            None,
            "a synced removal survives"
        );
        assert_eq!(
            store
                .scan_partition(PartitionId(3), None, 10)
                .expect("scan"),
            vec![],
            "an empty partition scans empty"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memstore_passes_conformance() {
        conformance::run(MemStore::new(), |mut s| {
            s.crash();
            s
        });
    }

    #[test]
    fn crash_loses_only_unsynced_writes() {
        let mut s = MemStore::new();
        let mut b = WriteBatch::default();
        b.put(b"k1".to_vec(), b"v1".to_vec());
        s.write(b).expect("write");
        s.sync().expect("sync");
        let mut b = WriteBatch::default();
        b.put(b"k2".to_vec(), b"v2".to_vec());
        b.remove(b"k1".to_vec());
        s.write(b).expect("write");
        assert_eq!(s.unsynced(), 2);
        s.crash();
        assert_eq!(s.get(b"k1").expect("get"), Some(b"v1".to_vec()));
        assert_eq!(s.get(b"k2").expect("get"), None);
    }

    #[test]
    fn failed_sync_poisons() {
        let mut s = MemStore::new();
        s.fail_next_sync = true;
        assert!(s.sync().is_err());
        assert!(matches!(
            s.write(WriteBatch::default()),
            Err(StoreError::Poisoned(_))
        ));
        assert!(matches!(s.get(b"k"), Err(StoreError::Poisoned(_))));
    }
}
