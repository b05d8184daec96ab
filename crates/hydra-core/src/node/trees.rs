//! The node's Merkle trees: what anti-entropy compares, at a memory cost that does not grow
//! with the number of keys, and at no extra store write per object write.
//!
//! ```text
//! memory:  (partition, n) -> MerkleTree (1,024 leaves, about 16 KB)
//! store:   the objects themselves; a segment's entries (storage key, object hash) are read
//!          from its partition's objects when an exchange asks for them
//! rebuild: at start, and when a bucket's n changes, a paced walk over every object in key
//!          order (`rebuild_step`: `TREE_REBUILD_KEYS_PER_CALL` keys a millisecond while the
//!          node is otherwise idle, `TREE_REBUILD_KEYS_BUSY` every `TREE_REBUILD_BUSY_MS`
//!          while it serves)
//! ```
//!
//! Source: Dynamo §4.7 and Riak's active anti-entropy (trees rebuilt from the data in the
//! background, exchanges wait until they are built); Cassandra builds its repair trees by
//! scanning the data too.
//!
//! Invariants:
//! * Once no rebuild runs, each leaf is the XOR of the entry hashes of exactly the objects of
//!   its (partition, n, segment) in the store, each hashed as stored (checker (m)).
//! * While a rebuild runs, the trees cover exactly the objects up to its cursor: a write to
//!   a key behind it changes the leaf (old entry out, new in), a write to a key ahead of it
//!   changes nothing (the walk takes the key as it then is). Anti-entropy starts no exchange
//!   meanwhile.
//! * A key is in the tree of its bucket's current n: a change of any bucket's n starts the
//!   rebuild over.
//! * Every object write or removal goes through [`Trees::stage`] (before the batch, which it
//!   does not touch) and [`Trees::apply`] (after it was written).

use std::cell::RefCell;
use std::collections::BTreeMap;

use crate::ids::PartitionId;
use crate::key::{BucketName, ObjectKey};
use crate::limits::{
    AE_SCAN_KEYS_MAX, TREE_REBUILD_BUSY_MS, TREE_REBUILD_KEYS_BUSY, TREE_REBUILD_KEYS_PER_CALL,
};
use crate::merkle::{Leaf, MerkleTree, SEGMENTS, object_hash, segment_of};
use crate::message::{OBJECT_FORMAT, decode_object, encode_object};
use crate::store::{SCAN_ENTRIES_MAX, Store, StoreError};

/// The hash of a stored object as the trees keep it: of its current encoding, so a record of
/// an older format hashes as a peer's current copy of the same object does (or anti-entropy
/// would repair it on every pass).
pub(crate) fn stored_hash(v: &[u8]) -> u64 {
    if v.first() == Some(&OBJECT_FORMAT) {
        return object_hash(v);
    }
    match decode_object(v) {
        Ok(o) => object_hash(&encode_object(&o)),
        Err(_) => object_hash(v),
    }
}

/// Per segment, its entries: (storage key, object hash), in key order.
pub(crate) type SegmentEntries = BTreeMap<u32, Vec<(Vec<u8>, u64)>>;

/// Where a rebuild stands: the partition it reads, and the last key it took there.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Cursor {
    partition: u32,
    after: Option<Vec<u8>>,
}

/// A leaf change to make once the batch it belongs with is written.
#[must_use = "apply the staged change once the batch is written"]
#[derive(Debug, Default)]
pub(crate) struct Staged {
    leaf: Option<((PartitionId, u8), usize, Leaf)>,
    /// The key and the hash of what it holds once the batch is written.
    key: Option<(Vec<u8>, Option<u64>)>,
}

#[derive(Debug, Default)]
pub(crate) struct Trees {
    trees: BTreeMap<(PartitionId, u8), MerkleTree>,
    /// What a tree this node does not hold looks like.
    empty: MerkleTree,
    /// The rebuild in progress (`None`: the trees are complete).
    rebuild: Option<Cursor>,
    /// Whether the rebuild's timer is set.
    pub(crate) scheduled: bool,
    /// The storage key last loaded for a write (`Local::load_for_write`) or written, and the
    /// hash of what the store holds there (`None`: nothing), so a write right after its load
    /// needs no second read. Every object write goes through `stage` and `apply`, which
    /// keep it true.
    last: RefCell<(Vec<u8>, Option<Option<u64>>)>,
}

impl PartialEq for Trees {
    fn eq(&self, other: &Trees) -> bool {
        self.trees == other.trees
    }
}

impl Trees {
    /// The tree of (partition, n); an empty one when this node holds nothing there.
    pub(crate) fn get(&self, partition: PartitionId, n: u8) -> &MerkleTree {
        self.trees.get(&(partition, n)).unwrap_or(&self.empty)
    }

    /// Whether this node holds keys in the tree of (partition, n).
    pub(crate) fn holds(&self, partition: PartitionId, n: u8) -> bool {
        !self.get(partition, n).is_empty()
    }

    /// Every tree this node holds keys in.
    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&(PartitionId, u8), &MerkleTree)> {
        self.trees.iter()
    }

    /// Objects in every tree (the node's objects, once no rebuild runs).
    pub(crate) fn objects(&self) -> usize {
        self.trees.values().map(MerkleTree::len).sum()
    }

    /// Whether a rebuild runs (anti-entropy waits for it).
    pub(crate) fn rebuilding(&self) -> bool {
        self.rebuild.is_some()
    }

    /// Starts the trees over from nothing: a walk over every object takes them in.
    pub(crate) fn start_rebuild(&mut self) {
        self.trees.clear();
        self.rebuild = Some(Cursor::default());
    }

    /// Whether the trees hold `skey` as the store does (no rebuild, or the rebuild's walk
    /// passed it).
    fn covers(&self, partition: PartitionId, skey: &[u8]) -> bool {
        match &self.rebuild {
            None => true,
            Some(at) => {
                partition.0 < at.partition
                    || (partition.0 == at.partition
                        && at.after.as_deref().is_some_and(|a| skey <= a))
            }
        }
    }

    /// Notes what the store holds at `skey` (the stored bytes' hash; `None`: nothing), as
    /// just read from it.
    pub(crate) fn note_loaded(&self, skey: &[u8], hash: Option<u64>) {
        let mut last = self.last.borrow_mut();
        last.0.clear();
        last.0.extend_from_slice(skey);
        last.1 = Some(hash);
    }

    /// Stages the change of `skey`, an object key of a bucket of replication factor `n`,
    /// to holding an object of `hash` (`None`: nothing). Call it before the batch that
    /// makes the change is written (it reads what the store holds now, unless the key was
    /// just loaded), and [`Trees::apply`] after.
    pub(crate) fn stage<S: Store>(
        &self,
        store: &S,
        skey: &[u8],
        n: u8,
        hash: Option<u64>,
    ) -> Result<Staged, StoreError> {
        let Ok((partition, _)) = ObjectKey::from_storage_key(skey) else {
            return Ok(Staged::default());
        };
        let mut staged = Staged {
            leaf: None,
            key: Some((skey.to_vec(), hash)),
        };
        if !self.covers(partition, skey) {
            return Ok(staged);
        }
        let known = {
            let last = self.last.borrow();
            last.1.filter(|_| last.0 == skey)
        };
        let old = match known {
            Some(old) => old,
            None => store.get_with(skey, |v| v.map(stored_hash))?,
        };
        if old != hash {
            let seg = segment_of(skey);
            let leaf = self.get(partition, n).leaf(seg);
            if hash.is_none() && crate::bugs::planted().tree_misses_removals {
                return Ok(staged);
            }
            staged.leaf = Some(((partition, n), seg, leaf.after(skey, old, hash)));
        }
        Ok(staged)
    }

    /// Takes a change whose batch was written.
    pub(crate) fn apply(&mut self, staged: Staged) {
        if let Some((skey, hash)) = staged.key {
            *self.last.get_mut() = (skey, Some(hash));
        }
        if let Some((tree, seg, leaf)) = staged.leaf {
            let t = self.trees.entry(tree).or_default();
            t.set_leaf(seg, leaf);
            if t.is_empty() {
                self.trees.remove(&tree);
            }
        }
    }

    /// Takes the next objects into the trees (at most [`TREE_REBUILD_KEYS_PER_CALL`], or
    /// [`TREE_REBUILD_KEYS_BUSY`] when the node is `busy` serving), and says when to go on:
    /// `None` when the rebuild is done, else in how many milliseconds.
    pub(crate) fn rebuild_step<S: Store>(
        &mut self,
        store: &S,
        partitions: u32,
        n_of: impl Fn(&BucketName) -> u8,
        busy: bool,
    ) -> Option<u64> {
        let mut budget = if busy {
            TREE_REBUILD_KEYS_BUSY
        } else {
            TREE_REBUILD_KEYS_PER_CALL
        };
        while budget > 0 {
            let at = self.rebuild.take()?;
            if at.partition >= partitions {
                return None;
            }
            let limit = budget.min(SCAN_ENTRIES_MAX);
            let pid = PartitionId(at.partition);
            let Ok(page) = store.scan_partition(pid, at.after.as_deref(), limit) else {
                self.rebuild = Some(at);
                return Some(super::walk::RETRY_MS);
            };
            for (k, v) in &page {
                if let Ok((partition, key)) = ObjectKey::from_storage_key(k) {
                    self.trees
                        .entry((partition, n_of(&key.bucket)))
                        .or_default()
                        .update(k, None, Some(stored_hash(v)));
                }
            }
            budget = budget.saturating_sub(page.len().max(1));
            self.rebuild = Some(match page.last() {
                Some((last, _)) if page.len() == limit => Cursor {
                    partition: at.partition,
                    after: Some(last.clone()),
                },
                _ => Cursor {
                    partition: at.partition + 1,
                    after: None,
                },
            });
        }
        Some(if busy { TREE_REBUILD_BUSY_MS } else { 1 })
    }

    /// The entries (storage key, object hash) of `segments` of the tree of (partition, n),
    /// read from the partition's objects, each segment's in key order. At most
    /// [`AE_SCAN_KEYS_MAX`] objects are read; a partition larger than that answers for the
    /// objects read (the next exchange finds what is left).
    pub(crate) fn segment_entries<S: Store>(
        &self,
        store: &S,
        partition: PartitionId,
        n: u8,
        segments: &[u32],
        n_of: impl Fn(&BucketName) -> u8,
    ) -> Result<SegmentEntries, StoreError> {
        let mut out: SegmentEntries = segments.iter().map(|s| (*s, Vec::new())).collect();
        let mut after: Option<Vec<u8>> = None;
        let mut read = 0;
        while read < AE_SCAN_KEYS_MAX {
            let page = store.scan_partition(partition, after.as_deref(), SCAN_ENTRIES_MAX)?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            read += page.len();
            let full = page.len() == SCAN_ENTRIES_MAX;
            for (k, v) in page {
                let seg = segment_of(&k) as u32;
                let Some(list) = out.get_mut(&seg) else {
                    continue;
                };
                if ObjectKey::from_storage_key(&k).is_ok_and(|(_, key)| n_of(&key.bucket) == n) {
                    let hash = stored_hash(&v);
                    list.push((k, hash));
                }
            }
            if !full {
                break;
            }
        }
        Ok(out)
    }

    /// Test support (the simulator's checker (m)): whether the trees agree with the
    /// store's objects; `Err` says where they do not. `Ok` while a rebuild runs.
    pub(crate) fn verify<S: Store>(
        &self,
        store: &S,
        partitions: u32,
        n_of: impl Fn(&BucketName) -> u8,
    ) -> Result<(), String> {
        if self.rebuilding() {
            return Ok(());
        }
        let mut want = Trees::default();
        want.start_rebuild();
        for _ in 0..1_000_000 {
            if want.rebuild_step(store, partitions, &n_of, false).is_none() {
                break;
            }
        }
        if want.rebuilding() {
            return Err("the objects could not be read".into());
        }
        for tree in want.trees.keys().chain(self.trees.keys()) {
            let (have, should) = (self.get(tree.0, tree.1), want.get(tree.0, tree.1));
            if have != should {
                let seg = (0..SEGMENTS)
                    .find(|s| have.leaf(*s) != should.leaf(*s))
                    .unwrap_or(0);
                return Err(format!(
                    "the tree of partition {} n={} covers {} keys, its objects are {}; segment {seg} differs first ({} keys against {})",
                    tree.0.0,
                    tree.1,
                    have.len(),
                    should.len(),
                    have.leaf(seg).keys,
                    should.leaf(seg).keys,
                ));
            }
        }
        Ok(())
    }
}
