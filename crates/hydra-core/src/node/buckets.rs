//! Bucket metadata: a last-writer-wins table of bucket properties, gossiped to every peer.
//!
//! ```text
//! client ─SetBucket─▶ any node: validate, stamp with its HLC, save, gossip to every peer
//! every gossip_interval_ms: BucketsGossip(table) ─▶ every peer: keep the newer of each entry
//! ```
//!
//! Invariants:
//! * A bucket's conflict mode never changes: changes and gossip naming another mode are
//!   refused, so every object of a bucket has one mode.
//! * Ties (two nodes changing a bucket at the same timestamp) break on the properties
//!   themselves, so every node keeps the same one.
//! * At most [`BUCKETS_MAX`] buckets.

use crate::bucket::BucketProps;
use crate::hlc::{Hlc, HlcClock};
use crate::ids::{NodeId, Timestamp};
use crate::key::BucketName;
use crate::limits::BUCKETS_MAX;
use crate::message::{
    ClientError, ClientResponse, ErrorCode, Message, decode_buckets, encode_buckets,
};
use crate::store::{Store, StoreError, WriteBatch};
use std::collections::{BTreeMap, BTreeSet};

use super::io::Outbox;

/// Where the bucket table is stored: a partition number no layout uses, so partition scans
/// never see it.
pub const BUCKETS_STORAGE_KEY: &[u8] = b"\xff\xff\xff\xffbuckets";

#[derive(Debug)]
pub(crate) struct Buckets {
    /// Buckets and the HLC timestamp of their last change. At most [`BUCKETS_MAX`].
    table: BTreeMap<BucketName, (BucketProps, Hlc)>,
}

/// What a change of the table means to the rest of the node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[must_use]
pub(crate) struct Changed {
    /// A bucket's n changed or a bucket appeared: keys may belong to other Merkle trees.
    pub(crate) trees_stale: bool,
}

impl Buckets {
    pub(crate) fn new(configured: &BTreeMap<BucketName, BucketProps>) -> Buckets {
        Buckets {
            table: configured
                .iter()
                .map(|(n, p)| (n.clone(), (p.clone(), Hlc::default())))
                .collect(),
        }
    }

    pub(crate) fn get(&self, name: &BucketName) -> Option<&BucketProps> {
        self.table.get(name).map(|(p, _)| p)
    }

    /// The replication factor of a bucket (the default's for an unknown bucket).
    pub(crate) fn n_of(&self, name: &BucketName) -> u8 {
        self.get(name).map_or(BucketProps::default().n, |p| p.n)
    }

    /// Every replication factor in use.
    pub(crate) fn replication_factors(&self) -> BTreeSet<u8> {
        self.table.values().map(|(p, _)| p.n).collect()
    }

    pub(crate) fn props(&self) -> BTreeMap<BucketName, BucketProps> {
        self.table
            .iter()
            .map(|(n, (p, _))| (n.clone(), p.clone()))
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
            Some((old, _)) if old.conflicts != props.conflicts => {
                let e = fixed(format!(
                    "bucket {name} has conflict mode {}; a bucket's conflict mode cannot change",
                    old.conflicts
                ));
                return (Err(e), Changed::default());
            }
            Some((old, _)) if old.n != props.n => {
                let e = fixed(format!(
                    "bucket {name} has n = {}; n cannot change yet: no data would move to the new replicas (shrinking would hide acknowledged writes, growing would bring reaped ones back); create a new bucket instead",
                    old.n
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
            trees_stale: self
                .table
                .get(&name)
                .is_none_or(|(old, _)| old.n != props.n),
        };
        self.table.insert(name.clone(), (props.clone(), version));
        if let Err(e) = self.save(store) {
            let e = ClientError::new(ErrorCode::StoreFailed, e.to_string());
            return (Err(e), changed);
        }
        self.gossip(out, peers);
        (Ok(ClientResponse::Bucket { name, props }), changed)
    }

    pub(crate) fn gossip(&self, out: &mut Outbox, peers: &[NodeId]) {
        let buckets: Vec<_> = self
            .table
            .iter()
            .map(|(n, (p, v))| (n.clone(), p.clone(), *v))
            .collect();
        for to in peers {
            out.send(
                *to,
                Message::BucketsGossip {
                    buckets: buckets.clone(),
                },
            );
        }
    }

    /// A peer's table: keep the newer of each entry.
    pub(crate) fn merge<S: Store>(
        &mut self,
        store: &mut S,
        poisoned: bool,
        theirs: Vec<(BucketName, BucketProps, Hlc)>,
    ) -> Changed {
        let mut changed = false;
        let mut trees_stale = false;
        for (name, props, version) in theirs {
            if props.validate().is_err() {
                continue;
            }
            match self.table.get(&name) {
                Some((ours, _)) if ours.conflicts != props.conflicts => {}
                Some((ours, v)) if (*v, props_order(ours)) >= (version, props_order(&props)) => {}
                None if self.table.len() >= BUCKETS_MAX => {}
                _ => {
                    trees_stale |= self
                        .table
                        .get(&name)
                        .is_none_or(|(old, _)| old.n != props.n);
                    self.table.insert(name, (props, version));
                    changed = true;
                }
            }
        }
        if changed && !poisoned {
            // Best effort: gossip repeats, so a failed save is retried by the next round.
            let _ = self.save(store);
        }
        Changed { trees_stale }
    }

    fn save<S: Store>(&self, store: &mut S) -> Result<(), StoreError> {
        let table: Vec<_> = self
            .table
            .iter()
            .map(|(n, (p, v))| (n.clone(), p.clone(), *v))
            .collect();
        let mut batch = WriteBatch::default();
        batch.put(BUCKETS_STORAGE_KEY.to_vec(), encode_buckets(&table));
        store.write(batch)
    }

    /// At start: what the store remembers, where newer than the configured buckets.
    pub(crate) fn load<S: Store>(&mut self, store: &mut S) {
        if let Ok(Some(bytes)) = store.get(BUCKETS_STORAGE_KEY)
            && let Ok(table) = decode_buckets(&bytes)
        {
            for (name, props, version) in table {
                let newer = self.table.get(&name).is_none_or(|(_, v)| *v < version);
                if newer {
                    self.table.insert(name, (props, version));
                }
            }
        }
    }
}

/// A total order on bucket properties, to break ties between changes with equal timestamps.
/// Every property takes part: two changes at one timestamp that differ anywhere still order.
fn props_order(p: &BucketProps) -> (u8, String, String, bool, Option<u64>, String) {
    (
        p.n,
        p.r.to_string(),
        p.w.to_string(),
        p.sloppy,
        p.ttl_secs,
        p.conflicts.to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemStore;

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
        let _ = one.merge(
            &mut MemStore::new(),
            false,
            vec![(name.clone(), a.clone(), at)],
        );
        let _ = two.merge(
            &mut MemStore::new(),
            false,
            vec![(name.clone(), b.clone(), at)],
        );
        // Each hears the other's change.
        let _ = one.merge(&mut MemStore::new(), false, vec![(name.clone(), b, at)]);
        let _ = two.merge(&mut MemStore::new(), false, vec![(name.clone(), a, at)]);
        assert_eq!(one.get(&name), two.get(&name));
    }
}
