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

/// The hash tree of one (partition, replication factor).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MerkleTree {
    leaves: Vec<u64>,
    /// Per segment: storage key -> object hash.
    segments: Vec<BTreeMap<Vec<u8>, u64>>,
    keys: usize,
}

impl Default for MerkleTree {
    fn default() -> Self {
        MerkleTree {
            leaves: vec![0; SEGMENTS],
            segments: vec![BTreeMap::new(); SEGMENTS],
            keys: 0,
        }
    }
}

impl MerkleTree {
    /// Records that `storage_key` now holds an object of hash `hash` (`None`: removed).
    pub fn update(&mut self, storage_key: &[u8], hash: Option<u64>) {
        let seg = segment_of(storage_key);
        let old = match hash {
            Some(h) => self.segments[seg].insert(storage_key.to_vec(), h),
            None => self.segments[seg].remove(storage_key),
        };
        if let Some(o) = old {
            self.leaves[seg] ^= entry_hash(storage_key, o);
        } else if hash.is_some() {
            self.keys += 1;
        }
        if let Some(h) = hash {
            self.leaves[seg] ^= entry_hash(storage_key, h);
        } else if old.is_some() {
            self.keys -= 1;
        }
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
            2 if index < SEGMENTS => self.leaves[index],
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

    /// The entries of `segment`.
    pub fn segment(&self, segment: usize) -> &BTreeMap<Vec<u8>, u64> {
        &self.segments[segment.min(SEGMENTS - 1)]
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
pub fn differing_keys(ours: &BTreeMap<Vec<u8>, u64>, theirs: &[(Vec<u8>, u64)]) -> Vec<Vec<u8>> {
    let theirs: BTreeMap<&[u8], u64> = theirs.iter().map(|(k, h)| (k.as_slice(), *h)).collect();
    let mut out: Vec<Vec<u8>> = ours
        .iter()
        .filter(|(k, h)| theirs.get(k.as_slice()) != Some(h))
        .map(|(k, _)| k.clone())
        .collect();
    out.extend(
        theirs
            .keys()
            .filter(|k| !ours.contains_key(**k))
            .map(|k| k.to_vec()),
    );
    out.sort();
    out
}

/// The whole descent, locally: what an exchange between the two trees would find.
pub fn diff(a: &MerkleTree, b: &MerkleTree) -> Vec<Vec<u8>> {
    let mut indices = vec![0u32];
    for level in 0..LEVELS - 1 {
        let differ = differing(
            &indices,
            &a.hashes(level, &indices),
            &b.hashes(level, &indices),
        );
        indices = differ.iter().flat_map(|i| children(level, *i)).collect();
    }
    let segments = differing(
        &indices,
        &a.hashes(LEVELS - 1, &indices),
        &b.hashes(LEVELS - 1, &indices),
    );
    let mut out = Vec::new();
    for s in segments {
        let theirs: Vec<(Vec<u8>, u64)> = b
            .segment(s as usize)
            .iter()
            .map(|(k, h)| (k.clone(), *h))
            .collect();
        out.extend(differing_keys(a.segment(s as usize), &theirs));
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn updates_are_incremental_and_order_free() {
        let mut a = MerkleTree::default();
        let mut b = MerkleTree::default();
        a.update(b"k1", Some(1));
        a.update(b"k2", Some(2));
        a.update(b"k1", Some(3));
        b.update(b"k2", Some(2));
        b.update(b"k1", Some(3));
        assert_eq!(a.hashes(0, &[0]), b.hashes(0, &[0]));
        assert_eq!(a.len(), 2);
        a.update(b"k2", None);
        assert_eq!(a.len(), 1);
        assert_ne!(a.hashes(0, &[0]), b.hashes(0, &[0]));
        assert_eq!(diff(&a, &b), vec![b"k2".to_vec()]);
        let empty = MerkleTree::default();
        b.update(b"k1", None);
        b.update(b"k2", None);
        assert_eq!(b.hashes(0, &[0]), empty.hashes(0, &[0]));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Descending the trees finds exactly the keys a brute-force comparison finds.
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
            let (mut a, mut b) = (MerkleTree::default(), MerkleTree::default());
            for (k, h) in &ma { a.update(k, Some(*h)); }
            for (k, h) in &mb { b.update(k, Some(*h)); }
            let keys: BTreeSet<&Vec<u8>> = ma.keys().chain(mb.keys()).collect();
            let brute: Vec<Vec<u8>> = keys.into_iter().filter(|k| ma.get(*k) != mb.get(*k)).cloned().collect();
            prop_assert_eq!(diff(&a, &b), brute);
        }
    }
}
