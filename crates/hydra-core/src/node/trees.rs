//! The node's Merkle trees, kept in the store: what anti-entropy compares, at a memory cost
//! that does not grow with the number of keys and with nothing to rebuild at a restart.
//!
//! ```text
//! store (same batch as the object write)            memory
//! 0xFFFFFFF8 | partition | n | segment | storage key -> object hash     (entries)
//! 0xFFFFFFF9 | partition | n | segment               -> Leaf { xor, keys } -> MerkleTree leaves
//! ```
//!
//! Source: Riak's active anti-entropy keeps its hash trees in a store of their own beside
//! the data, so they survive restarts; here they share the data's store and its batches.
//!
//! Invariants:
//! * A tree's entries are exactly the objects of its (partition, n) in the store, each with
//!   the hash of its stored bytes, and each leaf is the XOR of its entries (`Leaf`): every
//!   object write or removal stages the entry and leaf changes into the same batch
//!   ([`Trees::stage`]), and memory takes them ([`Trees::apply`]) only once the batch is
//!   written. A key sits in the tree of its bucket's n; while a bucket's n changes, in one
//!   tree of its partition, moved by `Local::move_trees`.
//! * A store without the format mark of the current object format (older versions kept
//!   trees in memory only, and a new object format changes every hash) has its trees built
//!   from its objects once, at start ([`Trees::build_from_objects`]).

use std::collections::BTreeMap;

use crate::ids::PartitionId;
use crate::key::{BucketName, ObjectKey};
use crate::merkle::{Leaf, MerkleTree, SEGMENTS, object_hash, segment_of};
use crate::message::{OBJECT_FORMAT, decode_object, encode_object};
use crate::store::{Entries, SCAN_ENTRIES_MAX, Store, StoreError, WriteBatch};

/// Reserved partition of the trees' entries (storage key -> object hash).
pub(crate) const TREE_ENTRIES_PARTITION: u32 = 0xFFFF_FFF8;
/// Reserved partition of the trees' leaves.
pub(crate) const TREE_LEAVES_PARTITION: u32 = 0xFFFF_FFF9;
/// The mark saying the store's trees are complete, for the object format it holds.
const TREES_MARK_KEY: &[u8] = b"\xff\xff\xff\xfftrees";
/// Pages of a segment's entries read at most for one answer (a segment holds about a
/// thousandth of a partition's keys).
const SEGMENT_PAGES_MAX: usize = 64;

/// The hash of a stored object as the trees keep it: of its current encoding, so a record of
/// an older format hashes as a peer's current copy of the same object does (or anti-entropy
/// would repair it on every pass).
pub(crate) fn stored_hash(v: &[u8]) -> u64 {
    match decode_object(v) {
        Ok(o) if v.first() != Some(&OBJECT_FORMAT) => object_hash(&encode_object(&o)),
        _ => object_hash(v),
    }
}

fn segment_prefix(tag: u32, partition: PartitionId, n: u8, segment: usize) -> Vec<u8> {
    let mut k = Vec::with_capacity(11);
    k.extend_from_slice(&tag.to_be_bytes());
    k.extend_from_slice(&partition.0.to_be_bytes());
    k.push(n);
    k.extend_from_slice(&(segment as u16).to_be_bytes());
    k
}

fn entry_key(partition: PartitionId, n: u8, skey: &[u8]) -> Vec<u8> {
    let mut k = segment_prefix(TREE_ENTRIES_PARTITION, partition, n, segment_of(skey));
    k.extend_from_slice(skey);
    k
}

fn leaf_key(partition: PartitionId, n: u8, segment: usize) -> Vec<u8> {
    segment_prefix(TREE_LEAVES_PARTITION, partition, n, segment)
}

fn hash_of(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}

/// Leaf changes staged into a batch: memory takes them once the batch is written.
#[must_use = "apply the staged leaves once the batch is written"]
#[derive(Debug, Default)]
pub(crate) struct Staged(Vec<((PartitionId, u8), usize, Leaf)>);

#[derive(Debug, Default)]
pub(crate) struct Trees {
    trees: BTreeMap<(PartitionId, u8), MerkleTree>,
    /// What a tree this node does not hold looks like.
    empty: MerkleTree,
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

    /// Objects in every tree (the node's objects).
    pub(crate) fn objects(&self) -> usize {
        self.trees.values().map(MerkleTree::len).sum()
    }

    /// Stages into `batch` that `skey` now holds an object of `hash` in the tree of its
    /// partition and `n` (`None`: it holds nothing), and leaves every other tree of its
    /// partition. Reads the entries it replaces from the store.
    pub(crate) fn stage<S: Store>(
        &self,
        store: &S,
        batch: &mut WriteBatch,
        skey: &[u8],
        n: Option<u8>,
        hash: Option<u64>,
    ) -> Result<Staged, StoreError> {
        let Ok((partition, _)) = ObjectKey::from_storage_key(skey) else {
            return Ok(Staged::default());
        };
        let seg = segment_of(skey);
        let mut ns: Vec<u8> = self
            .trees
            .range((partition, 0)..=(partition, u8::MAX))
            .map(|(&(_, m), _)| m)
            .collect();
        if let Some(n) = n
            && !ns.contains(&n)
        {
            ns.push(n);
        }
        let mut staged = Staged::default();
        for m in ns {
            let new = if Some(m) == n { hash } else { None };
            let ekey = entry_key(partition, m, skey);
            let old = store.get(&ekey)?.as_deref().and_then(hash_of);
            if old == new {
                continue;
            }
            match new {
                Some(h) => batch.put(ekey, h.to_le_bytes().to_vec()),
                None => batch.remove(ekey),
            }
            let leaf = self.get(partition, m).leaf(seg).after(skey, old, new);
            if !crate::bugs::planted().tree_leaf_not_stored {
                batch.put(leaf_key(partition, m, seg), leaf.encode());
            }
            staged.0.push(((partition, m), seg, leaf));
        }
        Ok(staged)
    }

    /// Takes leaf changes whose batch was written.
    pub(crate) fn apply(&mut self, staged: Staged) {
        for (tree, seg, leaf) in staged.0 {
            let t = self.trees.entry(tree).or_default();
            t.set_leaf(seg, leaf);
            if t.is_empty() {
                self.trees.remove(&tree);
            }
        }
    }

    /// Stages and writes one key's change on its own (background walks: moves, purges).
    pub(crate) fn record<S: Store>(
        &mut self,
        store: &mut S,
        mut batch: WriteBatch,
        skey: &[u8],
        n: Option<u8>,
        hash: Option<u64>,
    ) -> Result<(), StoreError> {
        let staged = self.stage(store, &mut batch, skey, n, hash)?;
        if !batch.ops.is_empty() {
            store.write(batch)?;
        }
        self.apply(staged);
        Ok(())
    }

    /// The entries (storage key, object hash) of one segment of (partition, n), from the
    /// store, in key order.
    pub(crate) fn segment_entries<S: Store>(
        &self,
        store: &S,
        partition: PartitionId,
        n: u8,
        segment: usize,
    ) -> Result<Vec<(Vec<u8>, u64)>, StoreError> {
        let prefix = segment_prefix(TREE_ENTRIES_PARTITION, partition, n, segment.min(SEGMENTS));
        let mut out = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        for _ in 0..SEGMENT_PAGES_MAX {
            let page = store.scan_prefix(&prefix, after.as_deref(), SCAN_ENTRIES_MAX)?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            let full = page.len() >= SCAN_ENTRIES_MAX;
            out.extend(
                page.into_iter()
                    .filter_map(|(k, v)| Some((k[prefix.len()..].to_vec(), hash_of(&v)?))),
            );
            if !full {
                break;
            }
        }
        Ok(out)
    }

    /// Loads the leaves from the store. `false` when the store's trees are not complete for
    /// the current object format: build them with [`Trees::build_from_objects`].
    pub(crate) fn load<S: Store>(&mut self, store: &S) -> Result<bool, StoreError> {
        self.trees.clear();
        if store.get(TREES_MARK_KEY)?.as_deref() != Some(&[OBJECT_FORMAT][..]) {
            return Ok(false);
        }
        let prefix = TREE_LEAVES_PARTITION.to_be_bytes();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = store.scan_prefix(&prefix, after.as_deref(), SCAN_ENTRIES_MAX)?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            for (k, v) in &page {
                let (Some(p), Some(&n), Some(seg), Some(leaf)) = (
                    k.get(4..8).and_then(|b| b.try_into().ok()),
                    k.get(8),
                    k.get(9..11).and_then(|b| b.try_into().ok()),
                    Leaf::decode(v),
                ) else {
                    continue;
                };
                let seg = u16::from_be_bytes(seg) as usize;
                if seg < SEGMENTS && leaf.keys > 0 {
                    let tree = (PartitionId(u32::from_be_bytes(p)), n);
                    self.trees.entry(tree).or_default().set_leaf(seg, leaf);
                }
            }
        }
        Ok(true)
    }

    /// What the trees and their entries (by entry key) are for the objects in the store.
    fn computed<S: Store>(
        store: &S,
        partitions: u32,
        n_of: impl Fn(&BucketName) -> u8,
    ) -> Result<(Trees, BTreeMap<Vec<u8>, u64>), StoreError> {
        let mut trees = Trees::default();
        let mut entries = BTreeMap::new();
        for p in 0..partitions {
            let mut after: Option<Vec<u8>> = None;
            loop {
                let page =
                    store.scan_partition(PartitionId(p), after.as_deref(), SCAN_ENTRIES_MAX)?;
                let Some((last, _)) = page.last() else { break };
                after = Some(last.clone());
                for (k, v) in &page {
                    if let Ok((partition, key)) = ObjectKey::from_storage_key(k) {
                        let n = n_of(&key.bucket);
                        let hash = stored_hash(v);
                        entries.insert(entry_key(partition, n, k), hash);
                        trees
                            .trees
                            .entry((partition, n))
                            .or_default()
                            .update(k, None, Some(hash));
                    }
                }
            }
        }
        Ok((trees, entries))
    }

    /// Every record of the store under `tag`'s reserved partition.
    fn stored<S: Store>(store: &S, tag: u32) -> Result<Entries, StoreError> {
        let mut out = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = store.scan_prefix(&tag.to_be_bytes(), after.as_deref(), SCAN_ENTRIES_MAX)?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            out.extend(page);
        }
        Ok(out)
    }

    /// Builds the trees from every object in the store (a store of an older version or
    /// object format), writes them, and marks them complete. What trees the store held
    /// before goes first; objects are not written.
    pub(crate) fn build_from_objects<S: Store>(
        &mut self,
        store: &mut S,
        partitions: u32,
        n_of: impl Fn(&BucketName) -> u8,
    ) -> Result<(), StoreError> {
        self.trees.clear();
        let old = [TREE_ENTRIES_PARTITION, TREE_LEAVES_PARTITION]
            .into_iter()
            .map(|tag| Trees::stored(store, tag))
            .collect::<Result<Vec<_>, _>>()?;
        for chunk in old.concat().chunks(SCAN_ENTRIES_MAX) {
            let mut batch = WriteBatch::default();
            for (k, _) in chunk {
                batch.remove(k.clone());
            }
            store.write(batch)?;
        }
        let (built, entries) = Trees::computed(store, partitions, n_of)?;
        let entries: Vec<(Vec<u8>, u64)> = entries.into_iter().collect();
        for chunk in entries.chunks(SCAN_ENTRIES_MAX) {
            let mut batch = WriteBatch::default();
            for (k, h) in chunk {
                batch.put(k.clone(), h.to_le_bytes().to_vec());
            }
            store.write(batch)?;
        }
        let mut batch = WriteBatch::default();
        for (&(p, n), tree) in &built.trees {
            for seg in 0..SEGMENTS {
                let leaf = tree.leaf(seg);
                if leaf.keys > 0 {
                    batch.put(leaf_key(p, n, seg), leaf.encode());
                }
            }
        }
        batch.put(TREES_MARK_KEY.to_vec(), vec![OBJECT_FORMAT]);
        store.write(batch)?;
        self.trees = built.trees;
        Ok(())
    }

    /// Test support (the simulator's checker): whether the trees in memory, the leaves and
    /// entries in the store and the store's objects all agree; `Err` says where they do not.
    pub(crate) fn verify<S: Store>(
        &self,
        store: &S,
        partitions: u32,
        n_of: impl Fn(&BucketName) -> u8,
    ) -> Result<(), String> {
        let (want, entries) = Trees::computed(store, partitions, &n_of)
            .map_err(|e| format!("reading the objects: {e}"))?;
        let differ = |what: &str, have: &Trees| -> Result<(), String> {
            for tree in want.trees.keys().chain(have.trees.keys()) {
                let (a, b) = (have.get(tree.0, tree.1), want.get(tree.0, tree.1));
                if a != b {
                    return Err(format!(
                        "{what}: the tree of partition {} n={} covers {} keys, its objects {} (or their hashes differ)",
                        tree.0.0,
                        tree.1,
                        a.len(),
                        b.len()
                    ));
                }
            }
            Ok(())
        };
        differ("in memory", self)?;
        let mut loaded = Trees::default();
        match loaded.load(store) {
            Ok(true) => differ("as stored", &loaded)?,
            Ok(false) => return Err("the store's trees are not marked complete".into()),
            Err(e) => return Err(format!("loading the trees: {e}")),
        }
        let stored = Trees::stored(store, TREE_ENTRIES_PARTITION)
            .map_err(|e| format!("reading the entries: {e}"))?;
        let stored: BTreeMap<Vec<u8>, u64> = stored
            .into_iter()
            .filter_map(|(k, v)| Some((k, hash_of(&v)?)))
            .collect();
        if stored != entries {
            let wrong = stored
                .iter()
                .find(|(k, h)| entries.get(*k) != Some(h))
                .or_else(|| entries.iter().find(|(k, h)| stored.get(*k) != Some(h)));
            return Err(format!(
                "{} entries stored, {} objects; first differing entry key {:?}",
                stored.len(),
                entries.len(),
                wrong.map(|(k, _)| String::from_utf8_lossy(k).into_owned())
            ));
        }
        Ok(())
    }
}
