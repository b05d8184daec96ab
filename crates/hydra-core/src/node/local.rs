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
use crate::limits::{OBJECT_BYTES_MAX, SIBLINGS_MAX, TREE_MOVE_KEYS_PER_CALL};
use crate::merkle::object_hash;
use crate::message::{ClientError, ErrorCode, ReplicaError, decode_object, encode_object};
use crate::store::{Store, StoreError, WriteBatch};
use crate::version::Object;

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
    /// kept in the store with every object write (see `trees.rs`).
    pub(crate) trees: Trees,
    /// Buckets whose n changed (or that appeared with another n than the default): their
    /// keys move to the trees of their new n, a page at a time (see [`Local::move_trees`]).
    pub(crate) tree_moves: BucketWalk,
    /// Truncated buckets whose older values are being purged (see `truncate.rs`).
    pub(crate) purges: BucketWalk,
    /// No expiry index entry is due before this (ms): the expiry sweep starts here, not at
    /// the index's start, past the entries it removed (an LSM keeps removed keys until
    /// compaction, and a scan walks over them). Lowered by every entry written earlier.
    pub(crate) expiry_floor: u64,
    /// Commits this node's acceptor took of keys it coordinates compare-and-set rounds of.
    pub(crate) commit_log: super::paxos::CommitLog,
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
            tree_moves: BucketWalk::default(),
            purges: BucketWalk::default(),
            expiry_floor: 0,
            commit_log: Default::default(),
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
        if changed.moved.is_empty() {
            return;
        }
        for bucket in changed.moved {
            self.tree_moves.add(bucket);
        }
        if !self.tree_moves.scheduled {
            self.tree_moves.scheduled = true;
            self.timers.set(now, Timer::TreeMoves);
        }
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
        let object = match store.get(skey) {
            Ok(None) => return Ok(None),
            Ok(Some(bytes)) => {
                decode_object(&bytes).map_err(|e| ReplicaError::Store(e.to_string()))?
            }
            Err(e) => return Err(ReplicaError::Store(e.to_string())),
        };
        // A truncated bucket's older values are gone, whether or not the purge reached them.
        match self.truncation_of(skey) {
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

    /// `object` of a key of `bucket` as its truncation leaves it (`None`: nothing left).
    pub(crate) fn after_truncation(&self, bucket: &BucketName, object: Object) -> Option<Object> {
        match self.buckets.truncated_at(bucket) {
            mark if mark > Hlc(0) => object.after_truncation(mark),
            _ => Some(object),
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
        let staged = self
            .trees
            .stage(store, &mut batch, skey, Some(n), Some(hash))?;
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
        let Ok(Some(held)) = self.load(store, &skey) else {
            return false;
        };
        if held != *tombstone {
            return false;
        }
        let mut batch = WriteBatch::default();
        batch.remove(skey.clone());
        // Every tree of the partition: a key whose bucket is moving may sit in the old one.
        self.trees.record(store, batch, &skey, None, None).is_ok()
    }

    /// Loads the Merkle trees from the store at start; a store without complete trees (an
    /// older version's, or another object format's) has them built from its objects once.
    pub(crate) fn load_trees<S: Store>(&mut self, store: &mut S) -> Result<(), StoreError> {
        self.tree_moves = BucketWalk::default();
        if self.trees.load(store)? {
            return Ok(());
        }
        let buckets = &self.buckets;
        let partitions = self.layout.partition_count();
        self.trees
            .build_from_objects(store, partitions, |b| buckets.n_of(b))
    }

    /// Moves the next page (at most [`TREE_MOVE_KEYS_PER_CALL`] keys) of the buckets whose n
    /// changed into the trees of their current n, and says when to go on: `None` when every
    /// move is done. Each key goes to the tree of its bucket's n at the time it is moved and
    /// leaves every other tree of its partition, so a bucket whose n changes again mid-move
    /// starts over and ends right. Writes meanwhile update the new tree at once, and
    /// anti-entropy waits until the trees agree with the store again.
    pub(crate) fn move_trees<S: Store>(&mut self, store: &mut S) -> Option<u64> {
        let mut walk = std::mem::take(&mut self.tree_moves);
        let partitions = self.layout.partition_count();
        let next = walk.step(
            store,
            partitions,
            TREE_MOVE_KEYS_PER_CALL,
            |store, bucket, _, page| {
                let n = self.buckets.n_of(bucket);
                for (k, v) in page {
                    let batch = WriteBatch::default();
                    // A key the store fails to move stays where it was; anti-entropy of the
                    // new tree then finds it missing and repairs it from a peer.
                    let _ = self
                        .trees
                        .record(store, batch, k, Some(n), Some(stored_hash(v)));
                }
            },
        );
        self.tree_moves = walk;
        next
    }

    /// Whether buckets' keys are still moving between trees.
    pub(crate) fn trees_moving(&self) -> bool {
        self.tree_moves.busy()
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

    /// A bucket's n changes under a store full of its keys: the keys move between trees a
    /// bounded page at a time, a write in the middle lands in the new tree, and at the end
    /// the trees are exactly what a full rebuild makes.
    #[test]
    fn a_bucket_whose_n_changes_moves_its_keys_between_trees_a_page_at_a_time() {
        use crate::bucket::BucketProps;
        use crate::message::BucketEntry;
        use crate::store::MemStore;

        let layout = Layout::uniform(3, 16).expect("valid");
        let mut local = Local::new(NodeConfig::new(NodeId(1)), layout.clone());
        let mut store = MemStore::new();
        // A node's start: an empty store gets complete (empty) trees.
        local.load_trees(&mut store).expect("loaded");
        let moving = BucketName::new("moving").expect("valid");
        let staying = BucketName::new("staying").expect("valid");
        let put =
            |local: &mut Local, store: &mut MemStore, bucket: &BucketName, i: usize, n: u8| {
                let key =
                    ObjectKey::new(bucket.clone(), format!("k{i}").as_bytes()).expect("valid");
                let (_, skey) = local.locate(&key);
                let object = one_value(1, 8);
                let bytes = encode_object(&object);
                local
                    .write_object(store, &skey, n, &object, None, bytes)
                    .expect("written");
            };
        let total = 2_500;
        for i in 0..total {
            put(&mut local, &mut store, &moving, i, 3);
        }
        for i in 0..500 {
            put(&mut local, &mut store, &staying, i, 3);
        }
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
        let in_n = |local: &Local, n: u8| -> usize {
            local
                .trees
                .iter()
                .filter(|((_, m), _)| *m == n)
                .map(|(_, t)| t.len())
                .sum()
        };
        // One step moves at most its budget.
        assert_eq!(local.move_trees(&mut store), Some(1));
        let moved = in_n(&local, 2);
        assert!(moved > 0 && moved <= TREE_MOVE_KEYS_PER_CALL, "{moved}");
        assert!(local.trees_moving());
        // A write meanwhile goes to the tree of the new n (whether its key moved yet or not).
        put(&mut local, &mut store, &moving, total - 1, 2);
        let mut steps = 1;
        while local.move_trees(&mut store).is_some() {
            steps += 1;
            assert!(steps < 100, "the move ends");
        }
        assert!(!local.trees_moving());
        assert!(steps >= total / TREE_MOVE_KEYS_PER_CALL, "{steps} steps");
        assert_eq!((in_n(&local, 2), in_n(&local, 3)), (total, 500));
        let mut rebuilt = Local::new(NodeConfig::new(NodeId(1)), layout);
        let _ = rebuilt.buckets.merge(
            &mut store,
            false,
            local.buckets.entries().into_iter().collect(),
        );
        let mut reloaded = Trees::default();
        assert!(
            reloaded.load(&store).expect("loaded"),
            "the trees are complete"
        );
        assert!(
            reloaded == local.trees,
            "the store holds the trees memory holds"
        );
        let partitions = rebuilt.layout.partition_count();
        let buckets = &rebuilt.buckets;
        let mut built = Trees::default();
        built
            .build_from_objects(&mut store, partitions, |b| buckets.n_of(b))
            .expect("built");
        assert!(built == local.trees, "as a full rebuild makes");
    }
}
