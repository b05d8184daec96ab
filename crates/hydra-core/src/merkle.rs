//! Merkle trees for anti-entropy: one per (partition, replication factor) a node holds.
//!
//! Source: DeCandia et al., "Dynamo" (SOSP 2007), §4.7 (replica synchronization with Merkle
//! trees); Riak's active anti-entropy (hash trees kept up to date on every write).
//!
//! ```text
//! level 0: root                      = H(level-1 hashes)
//! level 1: FANOUT inner nodes        = H(their FANOUT leaves)
//! level 2: SEGMENTS leaves           = XOR of H(key ‖ object hash) over the segment's keys
//! ```
//!
//! A key's segment is fixed by the hash of its storage key. Leaves are XOR accumulators, so a
//! write updates its leaf in O(1) (XOR out the old entry, XOR in the new); inner levels are
//! derived when asked for. Two replicas compare roots, then only the children of differing
//! nodes, then the key lists of differing segments: the cost grows with the number of keys
//! that differ, not with the number of keys. Invariant (property-tested): the keys found by
//! descending the trees are exactly the keys whose entries differ.

use std::collections::BTreeMap;
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

/// Leaves per tree.
pub const SEGMENTS: usize = 1024;
/// Children per inner node.
pub const FANOUT: usize = 32;
/// Levels: root, inner, leaves.
pub const LEVELS: usize = 3;
/// Seed of the segment hash (distinct from the partition hash, so segments split a partition).
const SEGMENT_SEED: u64 = 0x5e65_6d65_6e74;

/// The hash stored for an object: of its encoded bytes.
pub fn object_hash(encoded: &[u8]) -> u64 {
    xxh3_64(encoded)
}

/// The segment of a storage key.
pub fn segment_of(storage_key: &[u8]) -> usize {
    (xxh3_64_with_seed(storage_key, SEGMENT_SEED) >> (64 - SEGMENTS.trailing_zeros())) as usize
}

fn entry_hash(storage_key: &[u8], hash: u64) -> u64 {
    let mut buf = Vec::with_capacity(storage_key.len() + 8);
    buf.extend_from_slice(storage_key);
    buf.extend_from_slice(&hash.to_le_bytes());
    xxh3_64(&buf)
}

/// One leaf: the XOR of its keys' entry hashes, and how many keys it covers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Leaf {
    pub xor: u64,
    pub keys: u32,
}

impl Leaf {
    /// The leaf after `storage_key`'s entry changed from `old` to `new` (object hashes;
    /// `None`: no entry).
    pub fn after(self, storage_key: &[u8], old: Option<u64>, new: Option<u64>) -> Leaf {
        let mut leaf = self;
        if let Some(o) = old {
            leaf.xor ^= entry_hash(storage_key, o);
            leaf.keys = leaf.keys.saturating_sub(1);
        }
        if let Some(n) = new {
            leaf.xor ^= entry_hash(storage_key, n);
            leaf.keys = leaf.keys.saturating_add(1);
        }
        leaf
    }

    /// Its stored form: 8 bytes of XOR, 4 of count, little-endian.
    pub fn encode(self) -> Vec<u8> {
        let mut out = self.xor.to_le_bytes().to_vec();
        out.extend_from_slice(&self.keys.to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<Leaf> {
        let xor = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
        let keys = u32::from_le_bytes(bytes.get(8..12)?.try_into().ok()?);
        (bytes.len() == 12).then_some(Leaf { xor, keys })
    }
}

/// The hash tree of one (partition, replication factor): its leaves only. The entries
/// (storage key -> object hash) behind them live in the store (`node/trees.rs`), so a tree
/// takes the same memory whatever the number of keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MerkleTree {
    leaves: Vec<Leaf>,
    keys: usize,
}

impl Default for MerkleTree {
    fn default() -> Self {
        MerkleTree {
            leaves: vec![Leaf::default(); SEGMENTS],
            keys: 0,
        }
    }
}

impl MerkleTree {
    /// Records that `storage_key`'s entry changed from `old` to `new` (object hashes).
    pub fn update(&mut self, storage_key: &[u8], old: Option<u64>, new: Option<u64>) {
        let seg = segment_of(storage_key);
        self.set_leaf(seg, self.leaves[seg].after(storage_key, old, new));
    }

    pub fn leaf(&self, segment: usize) -> Leaf {
        self.leaves[segment.min(SEGMENTS - 1)]
    }

    pub fn set_leaf(&mut self, segment: usize, leaf: Leaf) {
        let seg = segment.min(SEGMENTS - 1);
        self.keys = self.keys - self.leaves[seg].keys as usize + leaf.keys as usize;
        self.leaves[seg] = leaf;
    }

    pub fn len(&self) -> usize {
        self.keys
    }

    pub fn is_empty(&self) -> bool {
        self.keys == 0
    }

    /// The hashes of `indices` at `level` (0 = root, 1 = inner, 2 = leaves); out-of-range
    /// indices hash as 0.
    pub fn hashes(&self, level: usize, indices: &[u32]) -> Vec<u64> {
        indices
            .iter()
            .map(|i| self.node(level, *i as usize))
            .collect()
    }

    fn node(&self, level: usize, index: usize) -> u64 {
        match level {
            0 if index == 0 => self.hash_children(0, 0),
            1 if index < FANOUT => self.hash_children(1, index),
            2 if index < SEGMENTS => self.leaves[index].xor,
            _ => 0,
        }
    }

    fn hash_children(&self, level: usize, index: usize) -> u64 {
        let children = children(level, index as u32);
        let bytes: Vec<u8> = children
            .iter()
            .flat_map(|c| self.node(level + 1, *c as usize).to_le_bytes())
            .collect();
        xxh3_64(&bytes)
    }
}

/// The children of node `index` at `level`.
pub fn children(level: usize, index: u32) -> Vec<u32> {
    match level {
        0 => (0..FANOUT as u32).collect(),
        1 => (index * FANOUT as u32..(index + 1) * FANOUT as u32).collect(),
        _ => vec![],
    }
}

/// Of `indices` at some level, those whose hashes differ.
pub fn differing(indices: &[u32], ours: &[u64], theirs: &[u64]) -> Vec<u32> {
    indices
        .iter()
        .zip(ours.iter().zip(theirs))
        .filter(|(_, (a, b))| a != b)
        .map(|(i, _)| *i)
        .collect()
}

/// Keys of a segment whose entries differ between `ours` and `theirs` (present on one side
/// only, or with different hashes), in key order.
pub fn differing_keys(ours: &[(Vec<u8>, u64)], theirs: &[(Vec<u8>, u64)]) -> Vec<Vec<u8>> {
    let ours: BTreeMap<&[u8], u64> = ours.iter().map(|(k, h)| (k.as_slice(), *h)).collect();
    let theirs: BTreeMap<&[u8], u64> = theirs.iter().map(|(k, h)| (k.as_slice(), *h)).collect();
    let mut out: Vec<Vec<u8>> = ours
        .iter()
        .filter(|(k, h)| theirs.get(*k) != Some(h))
        .map(|(k, _)| k.to_vec())
        .collect();
    out.extend(
        theirs
            .keys()
            .filter(|k| !ours.contains_key(*k))
            .map(|k| k.to_vec()),
    );
    out.sort();
    out
}

/// The whole descent, locally: the segments an exchange between the two trees would ask
/// for.
pub fn differing_segments(a: &MerkleTree, b: &MerkleTree) -> Vec<u32> {
    let mut indices = vec![0u32];
    for level in 0..LEVELS - 1 {
        let differ = differing(
            &indices,
            &a.hashes(level, &indices),
            &b.hashes(level, &indices),
        );
        indices = differ.iter().flat_map(|i| children(level, *i)).collect();
    }
    differing(
        &indices,
        &a.hashes(LEVELS - 1, &indices),
        &b.hashes(LEVELS - 1, &indices),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    /// A tree and the entries behind it, as the store would hold them.
    #[derive(Default)]
    struct Model {
        tree: MerkleTree,
        entries: BTreeMap<Vec<u8>, u64>,
    }

    impl Model {
        fn put(&mut self, key: &[u8], hash: Option<u64>) {
            let old = match hash {
                Some(h) => self.entries.insert(key.to_vec(), h),
                None => self.entries.remove(key),
            };
            self.tree.update(key, old, hash);
        }

        fn segment(&self, seg: u32) -> Vec<(Vec<u8>, u64)> {
            self.entries
                .iter()
                .filter(|(k, _)| segment_of(k) == seg as usize)
                .map(|(k, h)| (k.clone(), *h))
                .collect()
        }

        /// What an exchange finds: the differing segments, then their differing keys.
        fn diff(&self, other: &Model) -> Vec<Vec<u8>> {
            let mut out: Vec<Vec<u8>> = differing_segments(&self.tree, &other.tree)
                .into_iter()
                .flat_map(|s| differing_keys(&self.segment(s), &other.segment(s)))
                .collect();
            out.sort();
            out
        }
    }

    #[test]
    fn updates_are_incremental_and_order_free() {
        let mut a = Model::default();
        let mut b = Model::default();
        a.put(b"k1", Some(1));
        a.put(b"k2", Some(2));
        a.put(b"k1", Some(3));
        b.put(b"k2", Some(2));
        b.put(b"k1", Some(3));
        assert_eq!(a.tree, b.tree);
        assert_eq!(a.tree.len(), 2);
        a.put(b"k2", None);
        assert_eq!(a.tree.len(), 1);
        assert_ne!(a.tree.hashes(0, &[0]), b.tree.hashes(0, &[0]));
        assert_eq!(a.diff(&b), vec![b"k2".to_vec()]);
        b.put(b"k1", None);
        b.put(b"k2", None);
        assert_eq!(b.tree, MerkleTree::default());
        assert!(b.tree.is_empty());
    }

    #[test]
    fn leaves_round_trip_their_stored_form() {
        let leaf = Leaf::default().after(b"k", None, Some(7));
        assert_eq!(Leaf::decode(&leaf.encode()), Some(leaf));
        assert_eq!(Leaf::decode(&[1, 2, 3]), None);
        assert_eq!(leaf.after(b"k", Some(7), None), Leaf::default());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Descending the trees, then comparing the entries of the segments found, finds
        /// exactly the keys a brute-force comparison finds.
        #[test]
        fn diff_equals_brute_force(
            common in proptest::collection::btree_map("[a-z]{1,6}", 0u64..4, 0..300),
            only_a in proptest::collection::btree_map("[a-z]{1,6}", 0u64..4, 0..20),
            only_b in proptest::collection::btree_map("[a-z]{1,6}", 0u64..4, 0..20),
            changed in proptest::collection::btree_set("[a-z]{1,6}", 0..20),
        ) {
            let mut ma: BTreeMap<Vec<u8>, u64> = common.iter().map(|(k, h)| (k.as_bytes().to_vec(), *h)).collect();
            let mut mb = ma.clone();
            for (k, h) in &only_a { ma.insert(k.as_bytes().to_vec(), *h); }
            for (k, h) in &only_b { mb.insert(k.as_bytes().to_vec(), *h); }
            for k in &changed {
                if let Some(h) = mb.get_mut(k.as_bytes()) { *h += 10; }
            }
            let (mut a, mut b) = (Model::default(), Model::default());
            for (k, h) in &ma { a.put(k, Some(*h)); }
            for (k, h) in &mb { b.put(k, Some(*h)); }
            let keys: BTreeSet<&Vec<u8>> = ma.keys().chain(mb.keys()).collect();
            let brute: Vec<Vec<u8>> = keys.into_iter().filter(|k| ma.get(*k) != mb.get(*k)).cloned().collect();
            prop_assert_eq!(a.diff(&b), brute);
        }
    }
}
