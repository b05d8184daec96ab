//! Garbage: reaping tombstones once every primary holds them, and deleting values whose TTL
//! ran out.
//!
//! Source: Cassandra's gc_grace_seconds (tombstones outlive every stale copy that could
//! still arrive); Riak's delete_mode (reap after every primary acked).
//!
//! ```text
//! a delete acked by every primary ──(tombstone_grace_ms)──▶ ReapRequest(tombstone) to each
//!     primary: remove the key if it still holds exactly that tombstone
//! every anti-entropy interval: one partition scanned (round robin, resumable) for objects
//!     whose every value expired, and for tombstones twice the grace old (their reap never
//!     happened, or anti-entropy copied them back); the key's first primary deletes each
//!     with its own identity, which is reaped like any delete once every primary acks it
//! ```
//!
//! Invariants:
//! * A reap removes only the exact tombstone that every primary acked; anything newer stays.
//! * A hint older than the grace is never delivered (see `handoff`), so a reaped delete's
//!   value cannot come back through a hint.
//! * Pending reaps are written to the store (partition [`REAPS_PARTITION`]), so a restart
//!   keeps them; a tombstone whose reap was lost anyway is found by the sweep and deleted
//!   again: garbage is collected in the end, whatever was lost.
//! * Bounded: [`REAPS_MAX`] pending reaps (beyond, tombstones are kept: safe, only larger),
//!   [`EXPIRY_DELETES_MAX`] deletes per sweep, one scan page per sweep.

use crate::bucket::BucketProps;
use crate::bugs::planted;
use crate::ids::{PartitionId, Timestamp};
use crate::key::ObjectKey;
use crate::limits::{EXPIRY_DELETES_MAX, REAPS_MAX, SCAN_ENTRIES_MAX};
use crate::message::{Message, decode_object, encode_object};
use crate::store::{Store, WriteBatch};
use crate::version::Object;
use std::collections::VecDeque;

use super::io::Ctx;
use super::local::Local;
use super::quorum::Placement;
use super::timers::Timer;

/// The partition number under which pending reaps are stored (no layout has that many
/// partitions), keyed by when, then the object's storage key: a restart finds them again, in
/// time order.
pub const REAPS_PARTITION: PartitionId = PartitionId(0xFFFF_FFFD);

/// Where a pending reap is stored.
fn reap_key(at: Timestamp, object_key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + object_key.len());
    out.extend_from_slice(&REAPS_PARTITION.0.to_be_bytes());
    out.extend_from_slice(&at.0.to_be_bytes());
    out.extend_from_slice(object_key);
    out
}

#[derive(Debug, Default)]
pub(crate) struct Gc {
    /// Tombstones to reap, in the order their deletes ended: `(when, key, tombstone)`. At
    /// most [`REAPS_MAX`]. (If the clock stepped back, a later entry may be due earlier; it
    /// waits for the ones before it: late, never early.)
    reaps: VecDeque<(Timestamp, ObjectKey, Object)>,
    /// Partition the expiry sweep looks at next, and where it resumes within it.
    sweep_cursor: u64,
    sweep_after: Option<Vec<u8>>,
    /// Tombstones removed from this node's store since it started.
    pub(crate) tombstones_reaped: u64,
    /// Deletes this node issued for values whose TTL ran out.
    pub(crate) expired_deleted: u64,
    /// Tombstones found unreaped long after their grace and deleted again (to be reaped).
    pub(crate) tombstones_reissued: u64,
}

impl Gc {
    pub(crate) fn reaps_pending(&self) -> usize {
        self.reaps.len()
    }

    /// At start: the reaps that were pending when the node stopped (the ones whose record
    /// was synced; a lost one leaves a tombstone unreaped: garbage, never a resurrection).
    pub(crate) fn load<S: Store>(&mut self, local: &mut Local, store: &mut S) {
        let mut after: Option<Vec<u8>> = None;
        while self.reaps.len() < REAPS_MAX {
            let Ok(page) =
                store.scan_partition(REAPS_PARTITION, after.as_deref(), SCAN_ENTRIES_MAX)
            else {
                return;
            };
            let Some((last, _)) = page.last() else { return };
            after = Some(last.clone());
            for (k, v) in page {
                let parsed = k
                    .get(4..12)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map(|b| Timestamp(u64::from_be_bytes(b)));
                let (Some(at), Ok((_, key)), Ok(tombstone)) = (
                    parsed,
                    ObjectKey::from_storage_key(&k[12.min(k.len())..]),
                    decode_object(&v),
                ) else {
                    // Unreadable: drop the record (its tombstone stays, as garbage).
                    let mut batch = WriteBatch::default();
                    batch.remove(k);
                    let _ = store.write(batch);
                    continue;
                };
                if self.reaps.len() < REAPS_MAX {
                    local.timers.set(at, Timer::Reap);
                    self.reaps.push_back((at, key, tombstone));
                }
            }
        }
    }

    /// A delete every primary acked (at `now`): reap it once the tombstone grace has passed.
    /// The pending reap is written down (synced with the next group), so a restart keeps it.
    pub(crate) fn schedule<S: Store>(
        &mut self,
        local: &mut Local,
        store: &mut S,
        now: Timestamp,
        key: ObjectKey,
        tombstone: Object,
    ) {
        if self.reaps.len() >= REAPS_MAX {
            return;
        }
        let grace_ms = if planted().reap_early {
            0
        } else {
            local.config.tombstone_grace_ms
        };
        let at = now.plus_ms(grace_ms);
        let mut batch = WriteBatch::default();
        batch.put(
            reap_key(at, &local.locate(&key).1),
            encode_object(&tombstone),
        );
        // Best effort: without the record a restart forgets the reap (garbage, not a bug).
        let _ = store.write(batch);
        local.timers.set(at, Timer::Reap);
        self.reaps.push_back((at, key, tombstone));
    }

    /// Reaps every tombstone whose grace has passed: each primary removes the key if it still
    /// holds exactly that tombstone.
    pub(crate) fn on_reap_timer<S: Store>(&mut self, local: &mut Local, ctx: &mut Ctx<'_, S>) {
        if local.clock_allows("reaping").is_err() {
            // Reap times are on the wall clock: not while it cannot be trusted. Look again
            // after a heartbeat round.
            let later = ctx.now.plus_ms(local.config.heartbeat_interval_ms.max(1));
            local.timers.set(later, Timer::Reap);
            return;
        }
        while self.reaps.front().is_some_and(|(t, _, _)| *t <= ctx.now) {
            let Some((at, key, tombstone)) = self.reaps.pop_front() else {
                break;
            };
            let (partition, skey) = local.locate(&key);
            let mut batch = WriteBatch::default();
            batch.remove(reap_key(at, &skey));
            let _ = ctx.store.write(batch);
            let n = local.buckets.n_of(&key.bucket);
            let replicas = local.layout.preference_list(partition, n as usize).to_vec();
            for to in replicas {
                if to == local.me() {
                    self.on_reap_request(local, ctx, &key, &tombstone);
                } else {
                    local.out.send(
                        to,
                        Message::ReapRequest {
                            key: key.clone(),
                            object: tombstone.clone(),
                        },
                    );
                }
            }
        }
        // What is left waits for the first one's time (a timer set for it may have fired
        // early by the wall clock, after a step back).
        if let Some((at, _, _)) = self.reaps.front() {
            local.timers.set(*at, Timer::Reap);
        }
    }

    pub(crate) fn on_reap_request<S: Store>(
        &mut self,
        local: &mut Local,
        ctx: &mut Ctx<'_, S>,
        key: &ObjectKey,
        tombstone: &Object,
    ) {
        if local.remove_tombstone(ctx.store, key, tombstone) {
            self.tombstones_reaped += 1;
        }
    }

    /// Looks through one page of one partition (round robin) for objects whose every value
    /// has expired, or that are tombstones twice the grace old, and returns them (at most
    /// `room`) for the write coordinator to delete with their own identity
    /// (`Writes::start_expiry`): they then go the way of tombstones (reaped once every
    /// primary acks the delete). Only the first primary of a key does this, so replicas do
    /// not all issue the same delete.
    pub(crate) fn sweep_expired<S: Store>(
        &mut self,
        local: &mut Local,
        ctx: &mut Ctx<'_, S>,
        room: usize,
    ) -> Vec<(ObjectKey, Object, BucketProps, Placement)> {
        let partition =
            PartitionId((self.sweep_cursor % local.layout.partition_count() as u64) as u32);
        let Ok(page) =
            ctx.store
                .scan_partition(partition, self.sweep_after.as_deref(), SCAN_ENTRIES_MAX)
        else {
            return vec![];
        };
        // A full page: resume after its last key next time; else move to the next partition.
        if page.len() == SCAN_ENTRIES_MAX {
            self.sweep_after = page.last().map(|(k, _)| k.clone());
        } else {
            self.sweep_after = None;
            self.sweep_cursor += 1;
        }
        let mut deletes = vec![];
        for (skey, bytes) in page {
            if deletes.len() >= EXPIRY_DELETES_MAX.min(room) {
                break;
            }
            let (Ok(object), Ok((_, key))) =
                (decode_object(&bytes), ObjectKey::from_storage_key(&skey))
            else {
                continue;
            };
            // A tombstone still here twice the grace after it was written: its reap never
            // happened (a primary missed the delete, a reap record was lost in a crash, or
            // anti-entropy copied it back to a replica that had reaped it). It is deleted
            // again with its own identity, and reaped if every primary acks.
            let old_tombstone = object.is_tombstone()
                && object
                    .max_timestamp()
                    .physical_ms()
                    .saturating_add(local.config.tombstone_grace_ms.saturating_mul(2))
                    < ctx.now.0;
            if !old_tombstone && !object.expired_before(ctx.now.0) {
                continue;
            }
            let Some(props) = local.buckets.get(&key.bucket).cloned() else {
                continue;
            };
            let replicas = local
                .layout
                .preference_list(partition, props.n as usize)
                .to_vec();
            if replicas.first() != Some(&local.me()) {
                continue;
            }
            let needed = props.w.required(replicas.len() as u8).unwrap_or(1);
            let deadline = ctx.now.plus_ms(local.config.request_timeout_ms);
            let at = Placement {
                partition,
                replicas,
                needed,
                deadline,
            };
            if old_tombstone {
                self.tombstones_reissued += 1;
            } else {
                self.expired_deleted += 1;
            }
            deletes.push((key, object, props, at));
        }
        deletes
    }
}
