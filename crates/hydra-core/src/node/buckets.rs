//! Bucket metadata: a table of bucket properties, gossiped to every peer and joined.
//!
//! ```text
//! client ─SetBucket─▶ any node: validate, stamp with its HLC, save, gossip to every peer
//! every gossip_interval_ms: BucketsGossip(table) ─▶ every peer: join each entry with its own
//! ```
//!
//! Invariants:
//! * The join is per bucket: `n` and the conflict mode come from the earliest creation
//!   (`created`, ties broken on the two values), every other property from the latest change
//!   (`version`, ties broken on the properties). It is commutative, associative and
//!   idempotent, so every node ends with the same definition, whatever order gossip takes.
//! * A client cannot change `n` or the conflict mode (409); two nodes that created one bucket
//!   differently at once converge on the earlier creation, and the node whose creation lost
//!   says so in its status (`bucket_conflicts`).
//! * At most [`BUCKETS_MAX`] buckets.

use crate::bucket::BucketProps;
use crate::hlc::{Hlc, HlcClock};
use crate::ids::{NodeId, Timestamp};
use crate::key::BucketName;
use crate::limits::BUCKETS_MAX;
use crate::message::{
    BucketEntry, ClientError, ClientResponse, ErrorCode, Message, decode_buckets, encode_buckets,
};
use crate::store::{Store, StoreError, WriteBatch};
use std::collections::{BTreeMap, BTreeSet};

use super::io::Outbox;

/// Where the bucket table is stored: a partition number no layout uses, so partition scans
/// never see it.
pub const BUCKETS_STORAGE_KEY: &[u8] = b"\xff\xff\xff\xffbuckets";

/// Creations of this node that lost to an earlier one elsewhere, kept for status.
const BUCKET_CONFLICTS_KEPT: usize = 16;

#[derive(Debug)]
pub(crate) struct Buckets {
    /// Buckets, when their properties last changed, and when they were created. At most
    /// [`BUCKETS_MAX`].
    table: BTreeMap<BucketName, Kept>,
    /// What this node's losing creations were (newest last, at most
    /// [`BUCKET_CONFLICTS_KEPT`]).
    conflicts: Vec<String>,
    /// Whether some bucket has a truncation mark.
    any_truncated: bool,
    /// When this node last answered a peer's gossip with its own table (at most once a
    /// gossip interval per peer, so two tables that never agree do not ping-pong).
    answered: BTreeMap<NodeId, Timestamp>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Kept {
    props: BucketProps,
    version: Hlc,
    created: Hlc,
    /// The truncation mark (`Hlc(0)`: never truncated); joined by max, apart from the rest.
    truncated: Hlc,
}

impl Kept {
    /// The join of two entries of one bucket (see the invariants above).
    fn join(&self, other: &Kept) -> Kept {
        let def = |k: &Kept| (k.created, k.props.n, k.props.conflicts.to_string());
        let first = if def(self) <= def(other) { self } else { other };
        // Ties on the properties the latest change decides, not on n or the mode (those come
        // from the creation): else the join would not be associative.
        let rest = |k: &Kept| (k.version, rest_order(&k.props));
        let latest = if rest(self) >= rest(other) {
            self
        } else {
            other
        };
        Kept {
            props: BucketProps {
                n: first.props.n,
                conflicts: first.props.conflicts,
                ..latest.props.clone()
            },
            version: latest.version,
            created: first.created,
            truncated: self.truncated.max(other.truncated),
        }
    }
}

/// What a change of the table means to the rest of the node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[must_use]
pub(crate) struct Changed {
    /// Buckets whose n changed (a bucket that appeared counts if its n is not the default):
    /// their keys belong to other Merkle trees now.
    pub(crate) moved: Vec<BucketName>,
    /// Buckets whose truncation mark rose: their older values are to be purged.
    pub(crate) truncated: Vec<BucketName>,
    /// Whether any entry of the table changed.
    pub(crate) table: bool,
}

impl Buckets {
    pub(crate) fn new(configured: &BTreeMap<BucketName, BucketProps>) -> Buckets {
        Buckets {
            table: configured
                .iter()
                .map(|(n, p)| {
                    let kept = Kept {
                        props: p.clone(),
                        version: Hlc::default(),
                        created: Hlc::default(),
                        truncated: Hlc::default(),
                    };
                    (n.clone(), kept)
                })
                .collect(),
            conflicts: Vec::new(),
            any_truncated: false,
            answered: BTreeMap::new(),
        }
    }

    pub(crate) fn get(&self, name: &BucketName) -> Option<&BucketProps> {
        self.table.get(name).map(|k| &k.props)
    }

    /// The bucket's truncation mark (`Hlc(0)`: never truncated, or unknown).
    pub(crate) fn truncated_at(&self, name: &BucketName) -> Hlc {
        // Asked on every replicated write and read: no lookup while nothing was truncated.
        if !self.any_truncated {
            return Hlc(0);
        }
        self.table.get(name).map_or(Hlc(0), |k| k.truncated)
    }

    /// Whether any bucket was ever truncated (reads skip the mark check otherwise).
    pub(crate) fn any_truncated(&self) -> bool {
        self.any_truncated
    }

    /// Raises a bucket's truncation mark to `mark` (a client's truncation, or a peer's
    /// request) and saves the table; what changed, for the purge.
    pub(crate) fn truncate<S: Store>(
        &mut self,
        store: &mut S,
        name: &BucketName,
        mark: Hlc,
    ) -> Result<Changed, ClientError> {
        let Some(kept) = self.table.get_mut(name) else {
            return Err(ClientError::new(
                ErrorCode::UnknownBucket,
                format!("bucket {:?} does not exist", name.as_str()),
            ));
        };
        let mut changed = Changed::default();
        if kept.truncated < mark {
            kept.truncated = mark;
            changed.truncated.push(name.clone());
            self.any_truncated = true;
            self.save(store)
                .map_err(|e| ClientError::new(ErrorCode::StoreFailed, e.to_string()))?;
        }
        Ok(changed)
    }

    /// The replication factor of a bucket (the default's for an unknown bucket).
    pub(crate) fn n_of(&self, name: &BucketName) -> u8 {
        self.get(name).map_or(BucketProps::default().n, |p| p.n)
    }

    /// Every replication factor in use.
    pub(crate) fn replication_factors(&self) -> BTreeSet<u8> {
        self.table.values().map(|k| k.props.n).collect()
    }

    pub(crate) fn props(&self) -> BTreeMap<BucketName, BucketProps> {
        self.table
            .iter()
            .map(|(n, k)| (n.clone(), k.props.clone()))
            .collect()
    }

    /// A client's change: validated, stamped, saved and gossiped.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn set<S: Store>(
        &mut self,
        store: &mut S,
        hlc: &mut HlcClock,
        now: Timestamp,
        poisoned: Option<&StoreError>,
        out: &mut Outbox,
        peers: &[NodeId],
        name: BucketName,
        props: BucketProps,
    ) -> (Result<ClientResponse, ClientError>, Changed) {
        let invalid = |m: String| ClientError::new(ErrorCode::InvalidBucket, m);
        if let Err(e) = props.validate() {
            return (
                Err(invalid(format!("bucket {name}: {e}"))),
                Changed::default(),
            );
        }
        let fixed = |m: String| ClientError::new(ErrorCode::BucketPropertyFixed, m);
        match self.table.get(&name) {
            Some(old) if old.props.conflicts != props.conflicts => {
                let e = fixed(format!(
                    "bucket {name} has conflict mode {}; a bucket's conflict mode cannot change",
                    old.props.conflicts
                ));
                return (Err(e), Changed::default());
            }
            Some(old) if old.props.n != props.n => {
                let e = fixed(format!(
                    "bucket {name} has n = {}; n cannot change yet: no data would move to the new replicas (shrinking would hide acknowledged writes, growing would bring reaped ones back); create a new bucket instead",
                    old.props.n
                ));
                return (Err(e), Changed::default());
            }
            None if self.table.len() >= BUCKETS_MAX => {
                let e = invalid(format!("there are {BUCKETS_MAX} buckets, the limit"));
                return (Err(e), Changed::default());
            }
            _ => {}
        }
        if let Some(why) = poisoned {
            let e = ClientError::new(
                ErrorCode::StoreFailed,
                format!("node {} refuses writes: {why}", out.me()),
            );
            return (Err(e), Changed::default());
        }
        let version = hlc.now(now);
        let changed = Changed {
            moved: (self.n_of(&name) != props.n)
                .then(|| name.clone())
                .into_iter()
                .collect(),
            truncated: vec![],
            table: true,
        };
        let created = self.table.get(&name).map_or(version, |old| old.created);
        let truncated = self.table.get(&name).map_or(Hlc(0), |old| old.truncated);
        let kept = Kept {
            props: props.clone(),
            version,
            created,
            truncated,
        };
        self.table.insert(name.clone(), kept);
        if let Err(e) = self.save(store) {
            let e = ClientError::new(ErrorCode::StoreFailed, e.to_string());
            return (Err(e), changed);
        }
        self.gossip(out, peers);
        (Ok(ClientResponse::Bucket { name, props }), changed)
    }

    /// After a peer's table was joined into ours: if it lacked something ours has (a node
    /// back from a crash, say, that missed a creation or a truncation), send ours back at
    /// once instead of at the next round, at most once a gossip interval per peer.
    pub(crate) fn answer_gossip(
        &mut self,
        out: &mut Outbox,
        from: NodeId,
        theirs: &[BucketEntry],
        now: Timestamp,
        interval_ms: u64,
    ) {
        let ours = self.entries();
        if ours.as_slice() == theirs
            || self
                .answered
                .get(&from)
                .is_some_and(|at| now.ms_since(*at) < interval_ms)
        {
            return;
        }
        if self.answered.len() >= crate::limits::NODES_MAX {
            self.answered.clear();
        }
        self.answered.insert(from, now);
        out.send(from, Message::BucketsGossip { buckets: ours });
    }

    pub(crate) fn gossip(&self, out: &mut Outbox, peers: &[NodeId]) {
        let buckets = self.entries();
        for to in peers {
            out.send(
                *to,
                Message::BucketsGossip {
                    buckets: buckets.clone(),
                },
            );
        }
    }

    /// A peer's table: each entry joined with ours. A bucket this node created whose `n` or
    /// conflict mode gives way to an earlier creation is noted for status.
    pub(crate) fn merge<S: Store>(
        &mut self,
        store: &mut S,
        poisoned: bool,
        theirs: Vec<BucketEntry>,
    ) -> Changed {
        let mut changed = false;
        let mut moved = Vec::new();
        let mut truncated = Vec::new();
        for entry in theirs {
            if entry.props.validate().is_err() {
                continue;
            }
            let theirs = Kept {
                props: entry.props,
                version: entry.version,
                created: entry.created,
                truncated: entry.truncated,
            };
            let joined = match self.table.get(&entry.name) {
                None if self.table.len() >= BUCKETS_MAX => continue,
                None => theirs,
                Some(ours) => {
                    let joined = ours.join(&theirs);
                    if joined == *ours {
                        continue;
                    }
                    let (was, now) = (&ours.props, &joined.props);
                    if (was.n, was.conflicts) != (now.n, now.conflicts) {
                        self.note_conflict(format!(
                            "bucket {} was created here with n = {} and conflicts = {}, and elsewhere earlier with n = {} and conflicts = {}: the earlier creation holds; objects written here under the other definition need rewriting",
                            entry.name, was.n, was.conflicts, now.n, now.conflicts
                        ));
                    }
                    joined
                }
            };
            if self.n_of(&entry.name) != joined.props.n {
                moved.push(entry.name.clone());
            }
            if self.truncated_at(&entry.name) < joined.truncated {
                truncated.push(entry.name.clone());
                self.any_truncated = true;
            }
            self.table.insert(entry.name, joined);
            changed = true;
        }
        if changed && !poisoned {
            // Best effort: gossip repeats, so a failed save is retried by the next round.
            let _ = self.save(store);
        }
        Changed {
            moved,
            truncated,
            table: changed,
        }
    }

    fn note_conflict(&mut self, what: String) {
        if self.conflicts.len() >= BUCKET_CONFLICTS_KEPT {
            self.conflicts.remove(0);
        }
        self.conflicts.push(what);
    }

    /// This node's creations that lost to an earlier one elsewhere (for status).
    pub(crate) fn conflicts(&self) -> &[String] {
        &self.conflicts
    }

    pub(crate) fn entries(&self) -> Vec<BucketEntry> {
        self.table
            .iter()
            .map(|(n, k)| BucketEntry {
                name: n.clone(),
                props: k.props.clone(),
                version: k.version,
                created: k.created,
                truncated: k.truncated,
            })
            .collect()
    }

    fn save<S: Store>(&self, store: &mut S) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        batch.put(
            BUCKETS_STORAGE_KEY.to_vec(),
            encode_buckets(&self.entries()),
        );
        store.write(batch)
    }

    /// At start: what the store remembers, where newer than the configured buckets.
    pub(crate) fn load<S: Store>(&mut self, store: &mut S) {
        if let Ok(Some(bytes)) = store.get(BUCKETS_STORAGE_KEY)
            && let Ok(table) = decode_buckets(&bytes)
        {
            for e in table {
                let stored = Kept {
                    props: e.props,
                    version: e.version,
                    created: e.created,
                    truncated: e.truncated,
                };
                let kept = match self.table.get(&e.name) {
                    Some(configured) => configured.join(&stored),
                    None => stored,
                };
                self.any_truncated |= kept.truncated > Hlc(0);
                self.table.insert(e.name, kept);
            }
        }
    }
}

/// The entries of a peer's table stamped no further ahead of `now` than `max_skew_ms`. An
/// entry stamped far in the future would win every later change of its bucket for good (a
/// peer with a broken clock, or a hostile one); it is left out until this node's clock
/// reaches it (gossip repeats it).
pub(crate) fn stamped_within(
    entries: Vec<BucketEntry>,
    now: Timestamp,
    max_skew_ms: u64,
) -> Vec<BucketEntry> {
    entries
        .into_iter()
        .filter(|e| {
            crate::hlc::check_skew(e.version, now, max_skew_ms).is_ok()
                && crate::hlc::check_skew(e.created, now, max_skew_ms).is_ok()
                && crate::hlc::check_skew(e.truncated, now, max_skew_ms).is_ok()
        })
        .collect()
}

/// The order of the properties a change decides (all but `n` and the conflict mode).
fn rest_order(p: &BucketProps) -> (String, String, bool, Option<u64>) {
    (p.r.to_string(), p.w.to_string(), p.sloppy, p.ttl_secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bucket::Consistency;
    use crate::store::MemStore;

    #[test]
    fn entries_stamped_far_ahead_are_left_out() {
        let entry = |ms: u64| BucketEntry {
            name: BucketName::new("b").expect("valid"),
            props: BucketProps::default(),
            version: Hlc::new(ms, 0),
            created: Hlc::new(1_000, 0),
            truncated: Hlc::default(),
        };
        let now = Timestamp(10_000);
        let kept = stamped_within(vec![entry(9_000), entry(14_000), entry(16_000)], now, 5_000);
        let versions: Vec<u64> = kept.iter().map(|e| e.version.physical_ms()).collect();
        assert_eq!(versions, vec![9_000, 14_000]);
    }

    #[test]
    fn changes_at_one_timestamp_converge_whatever_they_differ_in() {
        let name = BucketName::new("sessions").expect("valid");
        let at = Hlc::new(1_000, 0);
        let a = BucketProps {
            ttl_secs: Some(60),
            ..BucketProps::default()
        };
        let b = BucketProps {
            ttl_secs: Some(600),
            ..BucketProps::default()
        };
        let mut one = Buckets::new(&BTreeMap::new());
        let mut two = Buckets::new(&BTreeMap::new());
        let entry = |props: &BucketProps| BucketEntry {
            name: name.clone(),
            props: props.clone(),
            version: at,
            created: at,
            truncated: Hlc::default(),
        };
        let _ = one.merge(&mut MemStore::new(), false, vec![entry(&a)]);
        let _ = two.merge(&mut MemStore::new(), false, vec![entry(&b)]);
        // Each hears the other's change.
        let _ = one.merge(&mut MemStore::new(), false, vec![entry(&b)]);
        let _ = two.merge(&mut MemStore::new(), false, vec![entry(&a)]);
        assert_eq!(one.get(&name), two.get(&name));
    }

    #[test]
    fn the_join_is_associative_when_versions_tie() {
        // Creations 1, 2, 3 with n = 4, 2, 3; the last two changed at one version with
        // different r: any grouping gives the same entry.
        let kept = |created: u64, n: u8, version: u64, r: Consistency| Kept {
            props: BucketProps {
                n,
                r,
                ..BucketProps::default()
            },
            version: Hlc(version),
            created: Hlc(created),
            truncated: Hlc(0),
        };
        let a = kept(1, 4, 1, Consistency::Quorum);
        let b = kept(2, 2, 5, Consistency::One);
        let c = kept(3, 3, 5, Consistency::All);
        assert_eq!(a.join(&b).join(&c), a.join(&b.join(&c)));
        assert_eq!(a.join(&c).join(&b), b.join(&a).join(&c));
    }

    #[test]
    fn creations_racing_with_other_modes_converge_on_the_earlier_and_the_loser_is_told() {
        let name = BucketName::new("carts").expect("valid");
        let lww = BucketProps::lww();
        let siblings = BucketProps {
            n: 2,
            ..BucketProps::default()
        };
        // Node one created it (lww) at 1,000; node two, not having heard, as siblings with
        // n = 2 at 1,005; then node two changed its TTL at 2,000.
        let early = BucketEntry {
            name: name.clone(),
            props: lww.clone(),
            version: Hlc::new(1_000, 0),
            created: Hlc::new(1_000, 0),
            truncated: Hlc::default(),
        };
        let late = BucketEntry {
            name: name.clone(),
            props: BucketProps {
                ttl_secs: Some(60),
                ..siblings
            },
            version: Hlc::new(2_000, 0),
            created: Hlc::new(1_005, 0),
            truncated: Hlc::default(),
        };
        let mut one = Buckets::new(&BTreeMap::new());
        let mut two = Buckets::new(&BTreeMap::new());
        let _ = one.merge(&mut MemStore::new(), false, vec![early.clone()]);
        let _ = two.merge(&mut MemStore::new(), false, vec![late.clone()]);
        assert!(one.conflicts().is_empty() && two.conflicts().is_empty());
        let _ = one.merge(&mut MemStore::new(), false, vec![late]);
        let changed = two.merge(&mut MemStore::new(), false, vec![early]);
        assert_eq!(one.entries(), two.entries(), "both hold one definition");
        let kept = one.get(&name).expect("bucket");
        assert_eq!(
            (kept.conflicts, kept.n),
            (lww.conflicts, lww.n),
            "the earlier creation's"
        );
        assert_eq!(kept.ttl_secs, Some(60), "the latest change's");
        assert_eq!(changed.moved, vec![name.clone()], "n changed on node two");
        assert!(one.conflicts().is_empty());
        assert!(
            two.conflicts()[0].contains("the earlier creation holds"),
            "{:?}",
            two.conflicts()
        );
        // Gossiped again, nothing moves.
        let again = one.entries();
        let _ = two.merge(&mut MemStore::new(), false, again);
        assert_eq!(two.conflicts().len(), 1);
    }
}
