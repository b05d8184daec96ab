//! [`Local`]: what every protocol part of a node shares. Its settings, layout and clock, the
//! outbox and timer queue, peers' liveness, the bucket table, durability, and the objects this
//! node stores with their Merkle trees. Protocol state (requests in flight, hint deliveries,
//! exchanges, reaps) lives in the parts, never here.
//!
//! Every object write goes through [`Local::write_object`], which keeps the Merkle tree of the
//! object's (partition, n) equal to the store (one invariant anti-entropy rests on).

use crate::hlc::{Hlc, HlcClock, check_skew};
use crate::ids::{NodeId, PartitionId, Timestamp};
use crate::key::{BucketName, ObjectKey};
use crate::layout::Layout;
use crate::limits::{OBJECT_BYTES_MAX, SIBLINGS_MAX};
use crate::merkle::object_hash;
use crate::message::{ClientError, Digest, ErrorCode, ReplicaError, decode_object, encode_object};
use crate::store::{Store, StoreError, WriteBatch};
use crate::version::Object;
use std::borrow::Cow;

use super::buckets::{Buckets, Changed};
use super::clock::{Clock, Verdict};
use super::config::NodeConfig;
use super::durability::Durability;
use super::io::{Ctx, Outbox};
use super::membership::Membership;
use super::timers::{Timer, Timers};
use super::trees::{Trees, stored_hash};
use super::walk::BucketWalk;

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
    /// kept with every object write, rebuilt from the store at start and when a bucket's n
    /// changes (see `trees.rs`).
    pub(crate) trees: Trees,
    /// Truncated buckets whose older values are being purged (see `truncate.rs`).
    pub(crate) purges: BucketWalk,
    /// No expiry index entry is due before this (ms): the expiry sweep starts here, not at
    /// the index's start, past the entries it removed (an LSM keeps removed keys until
    /// compaction, and a scan walks over them). Lowered by every entry written earlier.
    pub(crate) expiry_floor: u64,
    /// Commits this node's acceptor took of keys it coordinates compare-and-set rounds of.
    pub(crate) commit_log: super::paxos::CommitLog,
    /// Partitions this node may hold Paxos state in (found at start, added to by every
    /// acceptor write; never shrinks): a plain write to a key of any other partition needs
    /// no read of the key's Paxos state to know compare-and-set does not manage it. `None`
    /// until the store was looked at: every write reads.
    pub(crate) paxos_partitions: Option<std::collections::BTreeSet<PartitionId>>,
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
            trees: Trees::default(),
            purges: BucketWalk::default(),
            expiry_floor: 0,
            commit_log: Default::default(),
            paxos_partitions: None,
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

    /// Takes in a change of the bucket table: buckets whose n changed start (or restart)
    /// moving between trees, the first page at the next timer.
    pub(crate) fn note(&mut self, changed: Changed, now: Timestamp) {
        if !changed.truncated.is_empty() {
            for bucket in changed.truncated {
                self.purges.add(bucket);
            }
            if !self.purges.scheduled {
                self.purges.scheduled = true;
                self.timers.set(now, Timer::Purge);
            }
        }
        if !changed.moved.is_empty() {
            // A key must sit in the tree of its bucket's current n: start the trees over.
            self.start_tree_rebuild(now);
        }
    }

    /// Starts the Merkle trees over from the store, the first page at once.
    pub(crate) fn start_tree_rebuild(&mut self, now: Timestamp) {
        self.trees.start_rebuild();
        if !self.trees.scheduled {
            self.trees.scheduled = true;
            self.timers.set(now, Timer::TreeRebuild);
        }
    }

    /// The partition of a key (without building its storage key, as `locate` does).
    pub(crate) fn partition_of(&self, key: &ObjectKey) -> PartitionId {
        self.layout.partition_for(key.bucket.as_str(), key.key())
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
        self.load_noting(store, skey, false, None)
    }

    /// [`Local::load`] for a write that follows at once: the Merkle trees note the stored
    /// bytes' hash, so the write needs no second read of the key (reads skip this).
    pub(crate) fn load_for_write<S: Store>(
        &self,
        store: &mut S,
        skey: &[u8],
    ) -> Result<Option<Object>, ReplicaError> {
        self.load_noting(store, skey, true, None)
    }

    /// Loads and decodes the object under `skey`; `digest`, if given, gets the digest of the
    /// stored bytes (see [`Local::load_digest`]).
    fn load_noting<S: Store>(
        &self,
        store: &mut S,
        skey: &[u8],
        note: bool,
        digest: Option<&mut Option<Digest>>,
    ) -> Result<Option<Object>, ReplicaError> {
        let truncation = self.truncation_of(skey);
        // Decoded from the store's own bytes, not a copy of them.
        let decode = |bytes: Option<&[u8]>| {
            if note {
                self.trees.note_loaded(skey, bytes.map(stored_hash));
            }
            if let (Some(digest), Some(b)) = (digest, bytes) {
                *digest = Some(Digest::of(b, truncation.unwrap_or(Hlc(0))));
            }
            bytes.map(decode_object)
        };
        let loaded = if note {
            store.get_before_write_with(skey, decode)
        } else {
            store.get_with(skey, decode)
        };
        let object = match loaded {
            Ok(None) => return Ok(None),
            Ok(Some(decoded)) => decoded.map_err(|e| ReplicaError::Store(e.to_string()))?,
            Err(e) => return Err(ReplicaError::Store(e.to_string())),
        };
        // A truncated bucket's older values are gone, whether or not the purge reached them.
        match truncation {
            Some(mark) => Ok(object.after_truncation(mark)),
            None => Ok(Some(object)),
        }
    }

    /// The truncation mark of the bucket a storage key belongs to, if it has one (`None` for
    /// every key while no bucket was ever truncated).
    pub(crate) fn truncation_of(&self, skey: &[u8]) -> Option<Hlc> {
        if !self.buckets.any_truncated() {
            return None;
        }
        let (partition, key) = ObjectKey::from_storage_key(skey).ok()?;
        if partition.0 >= self.layout.partition_count() {
            return None;
        }
        Some(self.buckets.truncated_at(&key.bucket)).filter(|m| *m > Hlc(0))
    }

    /// `object` of a key of `bucket` as its truncation leaves it (`None`: nothing left);
    /// a borrowed object is copied only when a truncation applies to its bucket.
    pub(crate) fn after_truncation<'a>(
        &self,
        bucket: &BucketName,
        object: Cow<'a, Object>,
    ) -> Option<Cow<'a, Object>> {
        match self.buckets.truncated_at(bucket) {
            mark if mark > Hlc(0) => object.after_truncation(mark).map(Cow::Owned),
            _ => Some(object),
        }
    }

    /// The digest of the bytes stored under `skey` (`None`: nothing stored) and of the
    /// truncation mark this node reads them under, as a replica answers a digest read: no
    /// decode. The coordinator's own is taken the same way ([`Local::load_with_digest`]):
    /// equal bytes under equal marks are equal answers. (A node that has not heard of a
    /// truncation yet holds an older mark: its digest differs, and the object is asked for.)
    pub(crate) fn load_digest<S: Store>(
        &self,
        store: &mut S,
        skey: &[u8],
    ) -> Result<Option<Digest>, ReplicaError> {
        let mark = self.truncation_of(skey).unwrap_or(Hlc(0));
        store
            .get_with(skey, |bytes| bytes.map(|b| Digest::of(b, mark)))
            .map_err(|e| ReplicaError::Store(e.to_string()))
    }

    /// [`Local::load`], with (if `digest`) the digest of the stored bytes a replica's digest
    /// answer is compared with.
    pub(crate) fn load_with_digest<S: Store>(
        &self,
        store: &mut S,
        skey: &[u8],
        digest: bool,
    ) -> (Result<Option<Object>, ReplicaError>, Option<Digest>) {
        let mut out = None;
        let result = self.load_noting(store, skey, false, digest.then_some(&mut out));
        (result, out)
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
        // What a truncation of the bucket removed never comes back, from any replica.
        let kept;
        let object = match self.buckets.truncated_at(&key.bucket) {
            mark if mark > Hlc(0) => match object.after_truncation(mark) {
                Some(o) => {
                    kept = o;
                    &kept
                }
                None => return Ok(()),
            },
            _ => object,
        };
        let ts = object.max_timestamp();
        if matches!(object, Object::Lww(_)) {
            check_skew(ts, ctx.now, self.config.max_clock_skew_ms)
                .map_err(|e| ReplicaError::ClockSkew(e.to_string()))?;
        }
        // Never let a far-future timestamp drag this node's clock along.
        let _ = self.hlc.observe(ts, ctx.now, self.config.max_clock_skew_ms);
        let (_, skey) = self.locate(key);
        let local = self.load_for_write(ctx.store, &skey)?;
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
        let staged = self
            .trees
            .stage(store, skey, self.n_of_stored(skey, n), Some(hash))?;
        store.write(batch)?;
        self.trees.apply(staged);
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
        let (_, skey) = self.locate(key);
        let Ok(Some(held)) = self.load_for_write(store, &skey) else {
            return false;
        };
        if held != *tombstone {
            return false;
        }
        let n = self.buckets.n_of(&key.bucket);
        let Ok(staged) = self.trees.stage(store, &skey, n, None) else {
            return false;
        };
        let mut batch = WriteBatch::default();
        batch.remove(skey.clone());
        if store.write(batch).is_err() {
            return false;
        }
        self.trees.apply(staged);
        true
    }

    /// The replication factor whose tree holds `skey`: its bucket's current n (`fallback`
    /// if the key does not parse), so a write whose request began before a change of n
    /// still lands in the tree the rebuild puts the key in.
    fn n_of_stored(&self, skey: &[u8], fallback: u8) -> u8 {
        ObjectKey::from_storage_key(skey)
            .map_or(fallback, |(_, key)| self.buckets.n_of(&key.bucket))
    }

    /// Takes the next objects into the Merkle trees being rebuilt, at the slower pace when
    /// the node is `busy` serving, and says when to go on (`None`: the trees are complete).
    pub(crate) fn rebuild_trees_step<S: Store>(
        &mut self,
        store: &mut S,
        busy: bool,
    ) -> Option<u64> {
        let partitions = self.layout.partition_count();
        let buckets = &self.buckets;
        self.trees
            .rebuild_step(store, partitions, |b| buckets.n_of(b), busy)
    }

    /// Whether the Merkle trees are being rebuilt (anti-entropy waits).
    pub(crate) fn trees_rebuilding(&self) -> bool {
        self.trees.rebuilding()
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

    /// The partitions found holding Paxos state at start are the only ones whose plain
    /// writes read the key's state; a partition gains Paxos state only through an acceptor
    /// write, which adds it.
    #[test]
    fn only_partitions_with_paxos_state_make_a_plain_write_read_it() {
        use crate::bucket::{BucketProps, CasMode};
        use crate::store::MemStore;

        let layout = Layout::uniform(3, 16).expect("valid");
        let mut local = Local::new(NodeConfig::new(NodeId(1)), layout);
        let mut store = MemStore::new();
        let bucket = BucketName::new("b").expect("valid");
        let key = ObjectKey::new(bucket, b"k").expect("valid");
        let (partition, skey) = local.locate(&key);
        let mut batch = WriteBatch::default();
        batch.put(super::super::paxos::state_key(&skey), b"state".to_vec());
        store.write(batch).expect("write");
        local.load_paxos_partitions(&store);
        let held = local.paxos_partitions.clone().expect("looked at the store");
        assert_eq!(held.into_iter().collect::<Vec<_>>(), vec![partition]);
        let props = BucketProps {
            cas: CasMode::ConditionalOnly,
            ..BucketProps::default()
        };
        assert!(local.cas_managed(&store, &key, &props, partition));
        // Another key of the same partition: read, and not managed.
        let other = (0..1000)
            .map(|i| ObjectKey::new(key.bucket.clone(), format!("o{i}").as_bytes()).expect("ok"))
            .find(|k| local.locate(k).0 == partition)
            .expect("a key of the partition");
        assert!(!local.cas_managed(&store, &other, &props, partition));
        // A partition without state: not managed, whatever the store would say (nothing).
        let elsewhere = (0..1000)
            .map(|i| ObjectKey::new(key.bucket.clone(), format!("e{i}").as_bytes()).expect("ok"))
            .find(|k| local.locate(k).0 != partition)
            .expect("a key of another partition");
        let (p2, _) = local.locate(&elsewhere);
        assert!(!local.cas_managed(&store, &elsewhere, &props, p2));
    }

    /// A bucket's n changes under a store full of its keys: the trees are rebuilt a bounded
    /// page at a time, writes, overwrites and removals in the middle (behind the rebuild's
    /// walk and ahead of it) are counted once, and at the end the trees are exactly what the
    /// store's objects make.
    #[test]
    fn a_bucket_whose_n_changes_rebuilds_the_trees_a_page_at_a_time() {
        use crate::bucket::BucketProps;
        use crate::limits::{
            TREE_REBUILD_BUSY_MS, TREE_REBUILD_KEYS_BUSY, TREE_REBUILD_KEYS_PER_CALL,
        };
        use crate::message::BucketEntry;
        use crate::store::MemStore;

        let layout = Layout::uniform(3, 16).expect("valid");
        let mut local = Local::new(NodeConfig::new(NodeId(1)), layout.clone());
        let mut store = MemStore::new();
        let moving = BucketName::new("moving").expect("valid");
        let staying = BucketName::new("staying").expect("valid");
        let key_of = |bucket: &BucketName, i: usize| {
            ObjectKey::new(bucket.clone(), format!("k{i}").as_bytes()).expect("valid")
        };
        let put = |local: &mut Local, store: &mut MemStore, key: &ObjectKey, bytes: usize| {
            let (_, skey) = local.locate(key);
            // Every write path loads the key first.
            let _ = local.load_for_write(store, &skey);
            let object = one_value(1, bytes);
            let encoded = encode_object(&object);
            local
                .write_object(store, &skey, 3, &object, None, encoded)
                .expect("written");
        };
        let total = 2_500;
        for i in 0..total {
            put(&mut local, &mut store, &key_of(&moving, i), 8);
        }
        for i in 0..500 {
            put(&mut local, &mut store, &key_of(&staying, i), 8);
        }
        let in_n = |local: &Local, n: u8| -> usize {
            local
                .trees
                .iter()
                .filter(|((_, m), _)| *m == n)
                .map(|(_, t)| t.len())
                .sum()
        };
        assert_eq!((in_n(&local, 3), in_n(&local, 2)), (total + 500, 0));
        let entry = BucketEntry {
            name: moving.clone(),
            props: BucketProps {
                n: 2,
                ..BucketProps::default()
            },
            version: Hlc::new(1, 0),
            created: Hlc::new(1, 0),
            truncated: Hlc::default(),
        };
        let changed = local.buckets.merge(&mut store, false, vec![entry]);
        assert_eq!(changed.moved, vec![moving.clone()]);
        local.note(changed, Timestamp(1));
        assert!(local.trees_rebuilding());
        // One step takes at most its budget.
        assert_eq!(local.rebuild_trees_step(&mut store, false), Some(1));
        let taken = in_n(&local, 2) + in_n(&local, 3);
        assert!(taken > 0 && taken <= TREE_REBUILD_KEYS_PER_CALL, "{taken}");
        // A node serving requests takes a smaller step, and waits longer for the next.
        assert_eq!(
            local.rebuild_trees_step(&mut store, true),
            Some(TREE_REBUILD_BUSY_MS)
        );
        let busy = in_n(&local, 2) + in_n(&local, 3) - taken;
        assert!(busy > 0 && busy <= TREE_REBUILD_KEYS_BUSY, "{busy}");
        // Writes meanwhile, behind the walk and ahead of it: overwrites, new keys, removals.
        for i in (0..total).step_by(97) {
            put(&mut local, &mut store, &key_of(&moving, i), 20);
        }
        for i in total..total + 40 {
            put(&mut local, &mut store, &key_of(&moving, i), 8);
        }
        let mut removed = 0;
        for i in (1..500).step_by(50) {
            let key = key_of(&staying, i);
            let (_, skey) = local.locate(&key);
            let tombstone = Object::Siblings(Dvv::default());
            let encoded = encode_object(&tombstone);
            let _ = local.load_for_write(&mut store, &skey);
            local
                .write_object(&mut store, &skey, 3, &tombstone, None, encoded)
                .expect("written");
            assert!(local.remove_tombstone(&mut store, &key, &tombstone));
            removed += 1;
        }
        let mut steps = 2;
        while local.rebuild_trees_step(&mut store, false).is_some() {
            steps += 1;
            assert!(steps < 100, "the rebuild ends");
        }
        assert!(!local.trees_rebuilding());
        assert!(
            steps >= (total + 500) / TREE_REBUILD_KEYS_PER_CALL,
            "{steps} steps"
        );
        assert_eq!(
            (in_n(&local, 2), in_n(&local, 3)),
            (total + 40, 500 - removed)
        );
        let partitions = local.layout.partition_count();
        let buckets = &local.buckets;
        local
            .trees
            .verify(&store, partitions, |b| buckets.n_of(b))
            .expect("the trees are what the objects make");
        // A write of a key not loaded just before (a stale remembered load) still counts right.
        let (_, skey) = local.locate(&key_of(&moving, 3));
        let _ = local.load_for_write(&mut store, &local.locate(&key_of(&moving, 4)).1);
        let object = one_value(2, 30);
        let encoded = encode_object(&object);
        local
            .write_object(&mut store, &skey, 2, &object, None, encoded)
            .expect("written");
        let buckets = &local.buckets;
        local
            .trees
            .verify(&store, partitions, |b| buckets.n_of(b))
            .expect("still what the objects make");
    }
}
