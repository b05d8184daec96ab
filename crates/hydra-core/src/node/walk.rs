//! Paced walks over one bucket's keys in every partition, a page at a time: the background
//! work a truncation starts (its purge, `truncate.rs`). Each step reads at most
//! its budget of keys (and counts each scan as one at least, so a step over many empty
//! partitions is bounded too); a store that fails is read again after a while.

use crate::ids::PartitionId;
use crate::key::{BucketName, bucket_prefix};
use crate::store::{Entries, SCAN_ENTRIES_MAX, Store};
use std::collections::BTreeSet;

/// How long a walk waits before it reads again a page the store failed to read, in ms.
pub(crate) const RETRY_MS: u64 = crate::limits::TREE_MOVE_RETRY_MS;

/// Buckets to walk, and where the walk stands.
#[derive(Debug, Default)]
pub(crate) struct BucketWalk {
    /// Buckets still to walk, each from partition 0.
    pending: BTreeSet<BucketName>,
    /// The bucket walked now: the partition, and the last storage key read in it.
    current: Option<(BucketName, u32, Option<Vec<u8>>)>,
    /// Whether the walk's timer is set.
    pub(crate) scheduled: bool,
}

impl BucketWalk {
    /// Walks `bucket` (again from its start, if it was being walked).
    pub(crate) fn add(&mut self, bucket: BucketName) {
        if self.current.as_ref().is_some_and(|(b, ..)| *b == bucket) {
            self.current = None;
        }
        self.pending.insert(bucket);
    }

    /// Reads the next pages, at most `budget` keys, and hands each to `visit` with the
    /// store, the bucket and the partition. Says when to go on: `None` when every walk is
    /// done, else in how many milliseconds.
    pub(crate) fn step<S: Store>(
        &mut self,
        store: &mut S,
        partitions: u32,
        budget: usize,
        mut visit: impl FnMut(&mut S, &BucketName, PartitionId, &Entries),
    ) -> Option<u64> {
        let mut budget = budget;
        while budget > 0 {
            let (bucket, partition, after) = match self.current.take() {
                Some(at) => at,
                None => (self.pending.pop_first()?, 0, None),
            };
            if partition >= partitions {
                continue;
            }
            let pid = PartitionId(partition);
            let prefix = bucket_prefix(pid, &bucket);
            let limit = budget.min(SCAN_ENTRIES_MAX);
            let Ok(page) = store.scan_prefix(&prefix, after.as_deref(), limit) else {
                self.current = Some((bucket, partition, after));
                return Some(RETRY_MS);
            };
            visit(store, &bucket, pid, &page);
            budget = budget.saturating_sub(page.len().max(1));
            self.current = match page.last() {
                // A full page: the bucket may have more keys in this partition.
                Some((last, _)) if page.len() == limit => {
                    Some((bucket, partition, Some(last.clone())))
                }
                _ => Some((bucket, partition + 1, None)),
            };
        }
        Some(1)
    }
}
