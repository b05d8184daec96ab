//! [`Local`]: what every protocol part of a node shares. Its settings, layout and clock, the
//! outbox and timer queue, peers' liveness, the bucket table, durability, and the objects this
//! node stores with their Merkle trees. Protocol state (requests in flight, hint deliveries,
//! exchanges, reaps) lives in the parts, never here.
//!
//! Every object write goes through [`Local::write_object`], which keeps the Merkle tree of the
//! object's (partition, n) equal to the store (one invariant anti-entropy rests on).

use crate::hlc::{HlcClock, check_skew};
use crate::ids::{NodeId, PartitionId, Timestamp};
use crate::key::ObjectKey;
use crate::layout::Layout;
use crate::limits::{OBJECT_BYTES_MAX, SIBLINGS_MAX};
use crate::merkle::{MerkleTree, object_hash};
use crate::message::{
    ClientError, ErrorCode, OBJECT_FORMAT, ReplicaError, decode_object, encode_object,
};
use crate::store::{SCAN_ENTRIES_MAX, Store, StoreError, WriteBatch};
use crate::version::Object;
use std::collections::BTreeMap;

use super::buckets::{Buckets, Changed};
use super::clock::{Clock, Verdict};
use super::config::NodeConfig;
use super::durability::Durability;
use super::io::{Ctx, Outbox};
use super::membership::Membership;
use super::timers::Timers;

pub(crate) struct Local {
    pub(crate) config: NodeConfig,
    pub(crate) layout: Layout,
    pub(crate) hlc: HlcClock,
    pub(crate) out: Outbox,
    pub(crate) timers: Timers,
    pub(crate) clock: Clock,
    pub(crate) membership: Membership,
    pub(crate) buckets: Buckets,
    pub(crate) durability: Durability,
    /// Merkle trees of the (partition, replication factor) pairs this node holds objects for,
    /// updated on every object write.
    pub(crate) trees: BTreeMap<(PartitionId, u8), MerkleTree>,
    /// A bucket's n changed or a bucket appeared: keys may belong to other trees now, so the
    /// trees are rebuilt from the store at the next input.
    pub(crate) trees_stale: bool,
    /// What a tree this node does not hold looks like (built once: a tree is 1,024 segments).
    pub(crate) empty_tree: MerkleTree,
    /// No expiry index entry is due before this (ms): the expiry sweep starts here, not at
    /// the index's start, past the entries it removed (an LSM keeps removed keys until
    /// compaction, and a scan walks over them). Lowered by every entry written earlier.
    pub(crate) expiry_floor: u64,
}

impl Local {
    pub(crate) fn new(config: NodeConfig, layout: Layout) -> Local {
        Local {
            out: Outbox::new(config.id, layout.version()),
            membership: Membership::new(
                config.id,
                &layout,
                config.phi_convict_threshold,
                config.heartbeat_interval_ms,
            ),
            buckets: Buckets::new(&config.buckets),
            config,
            layout,
            hlc: HlcClock::default(),
            timers: Timers::default(),
            clock: Clock::new(),
            durability: Durability::default(),
            trees: BTreeMap::new(),
            trees_stale: false,
            empty_tree: MerkleTree::default(),
            expiry_floor: 0,
        }
    }

    pub(crate) fn me(&self) -> NodeId {
        self.config.id
    }

    /// Whether this node may use its wall clock (see `clock.rs`): its offset from its peers
    /// is within half the skew bound, and no jump or start waits for verification.
    pub(crate) fn clock_verdict(&self) -> Verdict {
        self.clock.verdict(
            self.timers.mono(),
            self.membership.peers().len(),
            self.config.max_clock_skew_ms / 2,
            self.config.heartbeat_interval_ms,
        )
    }

    /// `Ok` when the clock may be used, else the `ClockSkew` error that refuses `what`.
    pub(crate) fn clock_allows(&self, what: &str) -> Result<(), ClientError> {
        if crate::bugs::planted().ignore_clock_verdict {
            return Ok(());
        }
        let why = match self.clock_verdict() {
            Verdict::Ok => return Ok(()),
            Verdict::Skewed { offset_ms } => format!(
                "its clock is {offset_ms} ms off its peers' (more than {} ms)",
                self.config.max_clock_skew_ms / 2
            ),
            Verdict::Unverified { why } => {
                format!("{why}, and no heartbeat round trip has verified it since")
            }
        };
        Err(ClientError::new(
            ErrorCode::ClockSkew,
            format!(
                "node {} refuses {what}: {why}; it resumes by itself once its clock agrees with its peers'; use another node meanwhile",
                self.me()
            ),
        ))
    }

    pub(crate) fn note(&mut self, changed: Changed) {
        self.trees_stale |= changed.trees_stale;
    }

    /// The partition of a key and where it is stored.
    pub(crate) fn locate(&self, key: &ObjectKey) -> (PartitionId, Vec<u8>) {
        let partition = self.layout.partition_for(key.bucket.as_str(), key.key());
        (partition, key.storage_key(partition))
    }

    pub(crate) fn load<S: Store>(
        &self,
        store: &mut S,
        skey: &[u8],
    ) -> Result<Option<Object>, ReplicaError> {
        match store.get(skey) {
            Ok(None) => Ok(None),
            Ok(Some(bytes)) => decode_object(&bytes)
                .map(Some)
                .map_err(|e| ReplicaError::Store(e.to_string())),
            Err(e) => Err(ReplicaError::Store(e.to_string())),
        }
    }

    pub(crate) fn local_read<S: Store>(
        &self,
        store: &mut S,
        key: &ObjectKey,
    ) -> Result<Option<Object>, ReplicaError> {
        self.load(store, &self.locate(key).1)
    }

    /// Merges `object` into the stored one and writes the result if it changed. A merge that
    /// would store more siblings or bytes than a write may is refused (see
    /// [`check_merge_limits`]). An `lww`
    /// object stamped beyond the clock skew bound is refused, whatever brings it
    /// (replication, a hint, a repair, anti-entropy): no path stores a far-future timestamp,
    /// which would hide every later write.
    pub(crate) fn merge_into_store<S: Store>(
        &mut self,
        ctx: &mut Ctx<'_, S>,
        key: &ObjectKey,
        object: &Object,
    ) -> Result<(), ReplicaError> {
        let ts = object.max_timestamp();
        if matches!(object, Object::Lww(_)) {
            check_skew(ts, ctx.now, self.config.max_clock_skew_ms)
                .map_err(|e| ReplicaError::ClockSkew(e.to_string()))?;
        }
        // Never let a far-future timestamp drag this node's clock along.
        let _ = self.hlc.observe(ts, ctx.now, self.config.max_clock_skew_ms);
        let (_, skey) = self.locate(key);
        let local = self.load(ctx.store, &skey)?;
        let merged = match &local {
            None => object.clone(),
            Some(l) => l.merge(object).map_err(|_| ReplicaError::ModeMismatch)?,
        };
        // The merge is a join: what it made absorbs what came in (a planted bug breaks this
        // on purpose, for the simulator's checkers to catch).
        debug_assert!(
            crate::bugs::planted().merge_drops_sibling
                || merged.merge(object).ok().as_ref() == Some(&merged),
            "merging into {key} is not a join"
        );
        if local.as_ref() != Some(&merged) {
            let bytes = encode_object(&merged);
            if !crate::bugs::planted().merge_ignores_limits {
                check_merge_limits(local.as_ref(), &merged, bytes.len())?;
            }
            let n = self.buckets.n_of(&key.bucket);
            let previous = local.as_ref().and_then(Object::expires_at);
            self.write_object(ctx.store, &skey, n, &merged, previous, bytes)
                .map_err(|e| ReplicaError::Store(e.to_string()))?;
        }
        Ok(())
    }

    /// Writes an object and records it in the Merkle tree of its (partition, n) and, if it
    /// expires, in the expiry index (same batch), where the expiry sweep finds it when due;
    /// the entry of what it replaces (`previous`: when that expired) goes, so the index
    /// holds about one entry per object that expires, whatever the rate of refreshes.
    pub(crate) fn write_object<S: Store>(
        &mut self,
        store: &mut S,
        skey: &[u8],
        n: u8,
        object: &Object,
        previous: Option<u64>,
        bytes: Vec<u8>,
    ) -> Result<(), StoreError> {
        let hash = object_hash(&bytes);
        let mut batch = WriteBatch::default();
        let expires = object.expires_at();
        if let Some(at) = previous.filter(|p| Some(*p) != expires) {
            batch.remove(expiry_key(at, skey));
        }
        if let Some(at) = expires {
            batch.put(expiry_key(at, skey), Vec::new());
            self.expiry_floor = self.expiry_floor.min(at);
        }
        batch.put(skey.to_vec(), bytes);
        store.write(batch)?;
        if let Ok((partition, _)) = ObjectKey::from_storage_key(skey) {
            self.trees
                .entry((partition, n))
                .or_default()
                .update(skey, Some(hash));
        }
        Ok(())
    }

    /// Removes the key if it still holds exactly `tombstone` (anything newer stays). Returns
    /// whether it did.
    pub(crate) fn remove_tombstone<S: Store>(
        &mut self,
        store: &mut S,
        key: &ObjectKey,
        tombstone: &Object,
    ) -> bool {
        if !tombstone.is_tombstone() || self.durability.poisoned().is_some() {
            return false;
        }
        let (partition, skey) = self.locate(key);
        let Ok(Some(held)) = self.load(store, &skey) else {
            return false;
        };
        if held != *tombstone {
            return false;
        }
        let mut batch = WriteBatch::default();
        batch.remove(skey.clone());
        if store.write(batch).is_err() {
            return false;
        }
        let n = self.buckets.n_of(&key.bucket);
        if let Some(t) = self.trees.get_mut(&(partition, n)) {
            t.update(&skey, None);
        }
        true
    }

    /// Rebuilds every Merkle tree from the store (at start, and when buckets' n changed: trees
    /// live in memory only).
    pub(crate) fn rebuild_trees<S: Store>(&mut self, store: &mut S) {
        self.trees.clear();
        for p in 0..self.layout.partition_count() {
            let mut after: Option<Vec<u8>> = None;
            // Bounded by the partition's size, one page at a time.
            for _ in 0..1_000_000 {
                let Ok(page) =
                    store.scan_partition(PartitionId(p), after.as_deref(), SCAN_ENTRIES_MAX)
                else {
                    break;
                };
                let Some((last, _)) = page.last() else { break };
                after = Some(last.clone());
                for (k, v) in &page {
                    if let Ok((partition, key)) = ObjectKey::from_storage_key(k) {
                        let n = self.buckets.n_of(&key.bucket);
                        // Hash the current encoding: a record of an older format must hash
                        // as a peer's current copy of the same object does, or anti-entropy
                        // would repair it on every pass.
                        let hash = match decode_object(v) {
                            Ok(o) if v.first() != Some(&OBJECT_FORMAT) => {
                                object_hash(&encode_object(&o))
                            }
                            _ => object_hash(v),
                        };
                        self.trees
                            .entry((partition, n))
                            .or_default()
                            .update(k, Some(hash));
                    }
                }
            }
        }
    }

    /// Whether `node` is believed up (this node always is). The failure detector runs on the
    /// monotonic clock, whatever `_now` says.
    pub(crate) fn is_alive(&self, node: NodeId, _now: Timestamp) -> bool {
        node == self.me() || self.membership.is_alive(node, self.timers.mono())
    }
}

/// The partition number under which the expiry index lives (no layout has that many
/// partitions): an empty record per object that expires, keyed by when, then the object's
/// storage key. Entries are removed once due (a refreshed object has its own, later entry).
pub const EXPIRY_PARTITION: PartitionId = PartitionId(0xFFFF_FFFC);

/// Where the expiry index records that the object at `skey` expires at `at_ms`.
pub(crate) fn expiry_key(at_ms: u64, skey: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + skey.len());
    out.extend_from_slice(&EXPIRY_PARTITION.0.to_be_bytes());
    out.extend_from_slice(&at_ms.to_be_bytes());
    out.extend_from_slice(skey);
    out
}

/// A replica's merge stores at most what a coordinator's write may: [`SIBLINGS_MAX`] siblings
/// and [`OBJECT_BYTES_MAX`] bytes, unless it shrinks what is held (an object stored before the
/// limit held may only get smaller). Refusing loses nothing: each replica keeps what it
/// acknowledged, a read returns the union of the replicas it asks (more than the limit, if
/// need be), and a write carrying that read's context replaces them all with one value, which
/// every replica takes (it covers what they hold). Without this, unions of replicas grow past
/// what decodes or fits an internode message, and the key can no longer be read or resolved.
pub(crate) fn check_merge_limits(
    held: Option<&Object>,
    merged: &Object,
    bytes: usize,
) -> Result<(), ReplicaError> {
    let siblings = merged.sibling_count();
    let held_siblings = held.map_or(0, Object::sibling_count);
    if siblings > SIBLINGS_MAX && siblings > held_siblings {
        return Err(ReplicaError::ObjectLimit(format!(
            "the merged key would hold {siblings} siblings, more than the limit of {SIBLINGS_MAX}; read it and write with the read's context to resolve them"
        )));
    }
    let held_bytes = held.map_or(0, |h| encode_object(h).len());
    if bytes > OBJECT_BYTES_MAX && bytes > held_bytes {
        return Err(ReplicaError::ObjectLimit(format!(
            "the merged key's siblings would take {bytes} bytes, more than the limit of {OBJECT_BYTES_MAX}; read it and write with the read's context to resolve them"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hlc::Hlc;
    use crate::version::{Dvv, Sibling, VersionVector};

    fn one_value(node: u64, bytes: usize) -> Object {
        let value = Sibling::value(vec![b'x'; bytes], "text/plain", Hlc::new(1, 0));
        let (d, _) = Dvv::default()
            .update(&VersionVector::default(), value, NodeId(node))
            .expect("one sibling");
        Object::Siblings(d)
    }

    #[test]
    fn merges_past_the_byte_limit_are_refused_unless_they_shrink_what_is_held() {
        let a = one_value(1, OBJECT_BYTES_MAX / 2 + 1);
        let b = one_value(2, OBJECT_BYTES_MAX / 2 + 1);
        let merged = a.merge(&b).expect("same mode");
        let size = encode_object(&merged).len();
        let e = check_merge_limits(Some(&a), &merged, size).expect_err("past the limit");
        assert!(e.to_string().contains("bytes, more than the limit"), "{e}");
        assert!(check_merge_limits(None, &merged, size).is_err());
        // Held already (stored before the limit held): taking something smaller is fine.
        let smaller = one_value(3, 10);
        assert!(check_merge_limits(Some(&merged), &smaller, 100).is_ok());
        assert!(check_merge_limits(Some(&a), &a, size / 2).is_ok());
    }
}
