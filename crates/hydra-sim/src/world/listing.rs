//! Checker (j): after healing, a listing of each bucket (the core's `List`, a few keys a page,
//! so pages end inside partitions) returns exactly the keys whose objects show a value:
//! each once, none deleted or expired, none missing.
//!
//! What the keys should be is taken from the stores themselves (every node's objects of
//! the bucket, merged per key), at the listing's start and again at its end: a key whose
//! TTL ran out in between may be listed or not.

use super::*;
use hydra_core::message::{ListCursor, ListRequest};
use std::collections::BTreeSet;

/// Keys a listing page asks for (small, so pages end inside partitions).
const PAGE_KEYS: u32 = 5;
/// Pages one listing may take at most.
const PAGES_MAX: usize = 100_000;

impl World {
    /// The keys of `bucket` whose objects, merged over every node that holds them, show a
    /// value at `now_ms`.
    fn live_keys(&self, bucket: &BucketName, now_ms: u64) -> BTreeSet<Vec<u8>> {
        let mut merged: BTreeMap<Vec<u8>, hydra_core::version::Object> = BTreeMap::new();
        for node in &self.nodes {
            for (skey, bytes) in node.store.entries() {
                let Ok((partition, key)) = ObjectKey::from_storage_key(&skey) else {
                    continue;
                };
                if partition.0 >= self.layout.partition_count() || key.bucket != *bucket {
                    continue;
                }
                let Ok(object) = hydra_core::message::decode_object(&bytes) else {
                    continue;
                };
                let entry = merged.entry(key.key().to_vec());
                match entry {
                    std::collections::btree_map::Entry::Vacant(v) => {
                        v.insert(object);
                    }
                    std::collections::btree_map::Entry::Occupied(mut o) => {
                        if let Ok(joined) = o.get().merge(&object) {
                            o.insert(joined);
                        }
                    }
                }
            }
        }
        merged
            .into_iter()
            .filter(|(_, o)| o.is_live_at(now_ms))
            .map(|(k, _)| k)
            .collect()
    }

    /// One listing of `bucket` through client 0, page by page; `None` if a page never got
    /// an answer.
    fn list_bucket(&mut self, bucket: &BucketName) -> Option<Vec<Vec<u8>>> {
        let mut keys = Vec::new();
        let mut cursor = Some(ListCursor::default());
        for _ in 0..PAGES_MAX {
            let Some(at) = cursor.take() else {
                return Some(keys);
            };
            let mut page = None;
            for _ in 0..FINAL_READ_TRIES {
                let op = self.next_op(0);
                self.clients[0].state = ClientState::Listing { op };
                self.listing_page = None;
                let request = ClientRequest::List(ListRequest {
                    bucket: bucket.clone(),
                    cursor: at.clone(),
                    limit: PAGE_KEYS,
                    r: Some(Consistency::All),
                    timeout_ms: None,
                });
                self.submit(0, op, request);
                let deadline = self.now + 10_000;
                while self.now < deadline
                    && matches!(self.clients[0].state, ClientState::Listing { op: o } if o == op)
                {
                    if !self.step(deadline) {
                        break;
                    }
                }
                self.clients[0].state = ClientState::Idle;
                if let Some(answer) = self.listing_page.take() {
                    page = Some(answer);
                    break;
                }
            }
            let (found, next) = page?;
            keys.extend(found);
            cursor = next;
        }
        None
    }

    /// Checker (j) over every bucket of the simulation.
    pub(super) fn check_listings(&mut self) {
        for bucket in self.buckets.clone() {
            let before = self.live_keys(&bucket, self.now);
            let Some(listed) = self.list_bucket(&bucket) else {
                self.report.violations.push(Violation::ListingWrong {
                    bucket: bucket.to_string(),
                    detail: "a page never got an answer with every node up".into(),
                });
                continue;
            };
            let after = self.live_keys(&bucket, self.now);
            let unique: BTreeSet<Vec<u8>> = listed.iter().cloned().collect();
            let shown = |keys: Vec<&Vec<u8>>| {
                keys.into_iter()
                    .take(5)
                    .map(|k| String::from_utf8_lossy(k).into_owned())
                    .collect::<Vec<_>>()
            };
            let detail = if unique.len() != listed.len() {
                Some(format!("{} keys listed twice", listed.len() - unique.len()))
            } else {
                let missing: Vec<&Vec<u8>> = before
                    .intersection(&after)
                    .filter(|k| !unique.contains(*k))
                    .collect();
                let extra: Vec<&Vec<u8>> = unique
                    .iter()
                    .filter(|k| !before.contains(*k) && !after.contains(*k))
                    .collect();
                (!missing.is_empty() || !extra.is_empty()).then(|| {
                    format!(
                        "{} live keys missing (e.g. {:?}), {} listed that show no value (e.g. {:?})",
                        missing.len(),
                        shown(missing.clone()),
                        extra.len(),
                        shown(extra.clone())
                    )
                })
            };
            if let Some(detail) = detail {
                self.report.violations.push(Violation::ListingWrong {
                    bucket: bucket.to_string(),
                    detail,
                });
            }
            self.report.keys_listed += unique.len() as u64;
        }
    }
}
