//! Hinted handoff: writes held by a fallback node for a primary that was down.
//!
//! Source: DeCandia et al., "Dynamo" (SOSP 2007), §4.6 (sloppy quorum and hinted handoff).
//!
//! ```text
//! coordinator ──HintRequest(owner, object)──▶ fallback: merge into its hint for (owner, key),
//!                                              sync, ack (counts toward W)
//! fallback, every handoff interval, for each owner believed up:
//!     ──ReplicateRequest(object)──▶ owner: merge, sync, ack
//!     ◀──ReplicateResponse ok──── delete the hint if it did not change meanwhile
//! ```
//!
//! Hints live in the node's store under partition number `0xFFFFFFFE` (no layout has that
//! many partitions), keyed by owner then the object's storage key, so one owner's hints are a
//! contiguous range and a restart finds them again. Two hints for the same owner and key
//! merge into one (objects form a join semilattice). Each owner has a byte budget: a hint that
//! would exceed it is refused, counted as dropped, and the key's partition is marked for
//! anti-entropy. Invariant: a hint is deleted only after the owner's durable ack of exactly
//! what the hint held.

use crate::ids::{NodeId, PartitionId};
use crate::limits::DIRTY_PARTITIONS_MAX;
use std::collections::{BTreeMap, BTreeSet};

/// The partition number under which hints are stored.
pub const HINTS_PARTITION: PartitionId = PartitionId(0xFFFF_FFFE);

/// The storage key of a hint: hints partition, owner, then the object's storage key.
pub fn hint_key(owner: NodeId, object_key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + object_key.len());
    out.extend_from_slice(&HINTS_PARTITION.0.to_be_bytes());
    out.extend_from_slice(&owner.0.to_be_bytes());
    out.extend_from_slice(object_key);
    out
}

/// Inverse of [`hint_key`]: the owner and the object's storage key.
pub fn parse_hint_key(key: &[u8]) -> Option<(NodeId, &[u8])> {
    if key.len() < 12 || key[..4] != HINTS_PARTITION.0.to_be_bytes() {
        return None;
    }
    let owner = NodeId(u64::from_be_bytes(key[4..12].try_into().ok()?));
    Some((owner, &key[12..]))
}

/// Counters of hinted handoff since the node started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct HintCounters {
    pub stored: u64,
    pub delivered: u64,
    pub dropped: u64,
}

/// What a node holds for one owner.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct HintTarget {
    pub owner: NodeId,
    pub count: usize,
    pub bytes: u64,
}

/// In-memory index of the hints in the store (rebuilt from the store at start).
#[derive(Clone, Debug, Default)]
pub struct HintIndex {
    /// owner -> object storage key -> encoded size.
    entries: BTreeMap<NodeId, BTreeMap<Vec<u8>, u64>>,
    bytes: BTreeMap<NodeId, u64>,
    pub counters: HintCounters,
    /// Partitions for which a hint was dropped: anti-entropy must cover them.
    pub dirty: BTreeSet<PartitionId>,
}

impl HintIndex {
    pub fn bytes_for(&self, owner: NodeId) -> u64 {
        self.bytes.get(&owner).copied().unwrap_or(0)
    }

    pub fn size_of(&self, owner: NodeId, object_key: &[u8]) -> Option<u64> {
        self.entries
            .get(&owner)
            .and_then(|e| e.get(object_key))
            .copied()
    }

    /// Records that the hint for `(owner, object_key)` now has `size` bytes.
    pub fn set(&mut self, owner: NodeId, object_key: &[u8], size: u64) {
        let old = self
            .entries
            .entry(owner)
            .or_default()
            .insert(object_key.to_vec(), size)
            .unwrap_or(0);
        let b = self.bytes.entry(owner).or_default();
        *b = *b - old + size;
    }

    pub fn remove(&mut self, owner: NodeId, object_key: &[u8]) {
        if let Some(entries) = self.entries.get_mut(&owner)
            && let Some(size) = entries.remove(object_key)
        {
            if let Some(b) = self.bytes.get_mut(&owner) {
                *b -= size;
            }
            if entries.is_empty() {
                self.entries.remove(&owner);
                self.bytes.remove(&owner);
            }
        }
    }

    pub fn owners(&self) -> Vec<NodeId> {
        self.entries.keys().copied().collect()
    }

    /// Up to `limit` object keys held for `owner`, skipping those in `busy`, in key order.
    pub fn next_for(&self, owner: NodeId, busy: &BTreeSet<Vec<u8>>, limit: usize) -> Vec<Vec<u8>> {
        self.entries
            .get(&owner)
            .into_iter()
            .flat_map(|e| e.keys())
            .filter(|k| !busy.contains(*k))
            .take(limit)
            .cloned()
            .collect()
    }

    pub fn targets(&self) -> Vec<HintTarget> {
        self.entries
            .iter()
            .map(|(owner, e)| HintTarget {
                owner: *owner,
                count: e.len(),
                bytes: self.bytes_for(*owner),
            })
            .collect()
    }

    pub fn mark_dirty(&mut self, partition: PartitionId) {
        if self.dirty.len() < DIRTY_PARTITIONS_MAX {
            self.dirty.insert(partition);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_group_by_owner() {
        let k = hint_key(NodeId(3), b"\0\0\0\x07\x01bk");
        assert_eq!(
            parse_hint_key(&k),
            Some((NodeId(3), &b"\0\0\0\x07\x01bk"[..]))
        );
        assert!(hint_key(NodeId(3), b"zzz") < hint_key(NodeId(4), b"aaa"));
        assert_eq!(parse_hint_key(b"\0\0\0\x01short"), None);
    }

    #[test]
    fn index_tracks_bytes_per_owner() {
        let mut ix = HintIndex::default();
        ix.set(NodeId(2), b"a", 10);
        ix.set(NodeId(2), b"b", 5);
        ix.set(NodeId(2), b"a", 7);
        assert_eq!(ix.bytes_for(NodeId(2)), 12);
        assert_eq!(
            ix.next_for(NodeId(2), &[b"a".to_vec()].into_iter().collect(), 10),
            vec![b"b".to_vec()]
        );
        ix.remove(NodeId(2), b"a");
        ix.remove(NodeId(2), b"b");
        assert_eq!(ix.bytes_for(NodeId(2)), 0);
        assert!(ix.owners().is_empty());
    }
}
