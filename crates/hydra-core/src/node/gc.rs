//! Garbage: reaping tombstones once every primary holds them, and deleting values whose TTL
//! ran out.
//!
//! Source: Cassandra's gc_grace_seconds (tombstones outlive every stale copy that could
//! still arrive); Riak's delete_mode (reap after every primary acked).
//!
//! ```text
//! a delete acked by every primary ──(tombstone_grace_ms)──▶ ReapRequest(tombstone) to each
//!     primary: remove the key if it still holds exactly that tombstone
//! every EXPIRY_INTERVAL_MS (sooner while busy): the expiry index's due entries (objects whose
//!     TTL ran out, in time order); the key's first primary deletes each with its own
//!     identity, a bounded number in flight
//! every anti-entropy interval (not while anti-entropy is paused): one page of one partition
//!     scanned (round robin, resumable) for objects whose every value expired, and for
//!     tombstones twice the grace old (their reap never happened, or anti-entropy copied them
//!     back); the key's first primary deletes each with its own identity, which is reaped
//!     like any delete once every primary acks it. Paced: a page holds what finishes a cycle
//!     over the store within a grace (`sweep_page_for`), not a fixed share of the node
//! ```
//!
//! Invariants:
//! * A reap removes only the exact tombstone that every primary acked; anything newer stays.
//! * A hint older than the grace is never delivered (see `handoff`), so a reaped delete's
//!   value cannot come back through a hint.
//! * Pending reaps are written to the store (partition [`REAPS_PARTITION`]), so a restart
//!   keeps them; a tombstone whose reap was lost anyway is found by the sweep and deleted
//!   again: garbage is collected in the end, whatever was lost.
//! * Bounded: [`REAPS_MAX`] pending reaps in memory (the rest wait in the store, one record
//!   per tombstone, and are taken in as those in memory are done), [`EXPIRY_DELETES_MAX`]
//!   deletes per sweep, one scan page per sweep.

use crate::bucket::BucketProps;
use crate::bugs::planted;
use crate::ids::{PartitionId, Timestamp};
use crate::key::ObjectKey;
use crate::limits::{
    EXPIRY_DELETES_MAX, EXPIRY_INDEX_PAGE, REAPS_MAX, REAPS_PER_CALL_MAX, SCAN_ENTRIES_MAX,
    SWEEP_PAGE_MIN,
};
use crate::message::{Message, decode_object, encode_object};
use crate::store::{Store, WriteBatch};
use crate::version::Object;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::io::Ctx;
use super::local::{EXPIRY_PARTITION, Local, expiry_key};
use super::quorum::Placement;
use super::timers::Timer;

/// What a look at the expiry index found to delete (see `Gc::sweep_expiry_index`).
#[derive(Default)]
pub(crate) struct ExpirySweep {
    pub(crate) lww: Vec<(ObjectKey, Object, BucketProps, Placement)>,
    pub(crate) siblings: Vec<(ObjectKey, Object, BucketProps, Placement)>,
    /// More entries may be due now.
    pub(crate) more: bool,
}

/// The partition number under which pending reaps are stored (no layout has that many
/// partitions), keyed by when, then the object's storage key: a restart finds them again, in
/// time order.
pub const REAPS_PARTITION: PartitionId = PartitionId(0xFFFF_FFFD);

/// Objects per call that finish a sweep cycle over `scanned` objects within a tombstone
/// grace, one call every `interval_ms`: at least [`SWEEP_PAGE_MIN`], at most
/// [`SCAN_ENTRIES_MAX`]. A tombstone is old twice the grace after its delete, so a cycle per
/// grace finds it within three; a store of 10 million objects with the default hour of grace
/// and a call a second reads about 2,800 per call, not a fixed 10,000 whatever its size.
pub(crate) fn sweep_page_for(scanned: u64, interval_ms: u64, grace_ms: u64) -> usize {
    let calls = (grace_ms / interval_ms.max(1)).max(1);
    let page = scanned.div_ceil(calls);
    (page.min(SCAN_ENTRIES_MAX as u64) as usize).max(SWEEP_PAGE_MIN)
}

/// Where this node's delete of `key` goes, if this node is the key's first primary (only
/// the first primary deletes what expired, so replicas do not all issue the same delete).
fn first_primary_delete(
    local: &Local,
    now: Timestamp,
    partition: PartitionId,
    key: &ObjectKey,
) -> Option<(BucketProps, Placement)> {
    let props = local.buckets.get(&key.bucket).cloned()?;
    let replicas = local
        .layout
        .preference_list(partition, props.n as usize)
        .to_vec();
    if replicas.first() != Some(&local.me()) {
        return None;
    }
    let needed = props.w.required(replicas.len() as u8).unwrap_or(1);
    let at = Placement {
        partition,
        replicas,
        needed,
        deadline: now.plus_ms(local.config.request_timeout_ms),
    };
    Some((props, at))
}

/// How often the expiry index is looked at when the last look found room to spare (each
/// look starts deletes up to the room [`crate::limits::EXPIRY_IN_FLIGHT_MAX`] leaves; with
/// none to spare it looks again at the next call, as deletes complete).
pub const EXPIRY_INTERVAL_MS: u64 = 100;

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
    /// Each entry is `(at, due, key, tombstone)`: `at` names its store record, `due` is when
    /// it is reaped (`at`, or sooner when a clock running ahead set it: see `arm`).
    reaps: VecDeque<(Timestamp, Timestamp, ObjectKey, Object)>,
    /// The store holds pending reaps beyond those in memory (memory holds at most
    /// [`REAPS_MAX`]; the store holds every one, a record per tombstone).
    spilled: bool,
    /// Every record in the store that is not in memory comes after this key (`None`: look
    /// from the start): a refill starts here, not over the records already removed (an LSM
    /// keeps removed keys until compaction, and a scan walks over them).
    spill_after: Option<Vec<u8>>,
    /// The store records (`reap_key`) of the reaps in memory, so a refill takes only others.
    in_memory: BTreeSet<Vec<u8>>,
    /// Objects (storage keys) with a reap in memory: the sweep does not delete those again.
    pending: BTreeMap<Vec<u8>, u32>,
    /// Tombstones this node deleted again, and when: not again within twice the grace (an
    /// old tombstone whose primary is down cannot be reaped; deleting it every sweep would
    /// only add load). At most [`REAPS_MAX`] (the oldest are forgotten first).
    reissued: BTreeMap<Vec<u8>, Timestamp>,
    /// Partition the expiry sweep looks at next, and where it resumes within it.
    sweep_cursor: u64,
    sweep_after: Option<Vec<u8>>,
    /// Objects the sweep reads per call in this cycle (0: the first cycle, [`SWEEP_PAGE_MIN`]),
    /// and how many it read so far in this cycle.
    sweep_page: usize,
    sweep_scanned: u64,
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
    /// was synced; a lost one leaves a tombstone that the sweep deletes again later).
    pub(crate) fn load<S: Store>(&mut self, local: &mut Local, store: &mut S, now: Timestamp) {
        self.spilled = true;
        self.refill(local, store);
        // Within a grace at most: the times were set by the clock before the restart, and
        // this clock may be off (a timer set by it for a far time would stay late after the
        // clock is put right). The timer's call looks again with a verified clock.
        if let Some((_, due, _, _)) = self.reaps.front() {
            let soon = now.plus_ms(local.config.tombstone_grace_ms);
            local.timers.set((*due).min(soon), Timer::Reap);
        }
    }

    fn remember(&mut self, local: &Local, at: Timestamp, key: ObjectKey, tombstone: Object) {
        let skey = local.locate(&key).1;
        self.in_memory.insert(reap_key(at, &skey));
        *self.pending.entry(skey).or_default() += 1;
        self.reaps.push_back((at, at, key, tombstone));
    }

    fn forget(&mut self, at: Timestamp, skey: &[u8]) {
        self.in_memory.remove(&reap_key(at, skey));
        if let Some(n) = self.pending.get_mut(skey) {
            *n -= 1;
            if *n == 0 {
                self.pending.remove(skey);
            }
        }
    }

    /// Takes pending reaps from the store into memory, up to [`REAPS_MAX`], skipping those
    /// already there; clears `spilled` once the store has no more. (It scans from the start:
    /// records are keyed by time, and memory is not always a prefix of the store, since
    /// deletes that end at once share a time and a clock may step back.)
    fn refill<S: Store>(&mut self, local: &mut Local, store: &mut S) {
        let mut after: Option<Vec<u8>> = self.spill_after.clone();
        // Bounded: the store holds what memory does plus the spilled ones.
        for _ in 0..2 * (REAPS_MAX / SCAN_ENTRIES_MAX) + 2 {
            if self.reaps.len() >= REAPS_MAX {
                return;
            }
            let room = SCAN_ENTRIES_MAX;
            let Ok(page) = store.scan_partition(REAPS_PARTITION, after.as_deref(), room) else {
                return;
            };
            let Some((last, _)) = page.last() else {
                self.spilled = false;
                self.spill_after = None;
                return;
            };
            after = Some(last.clone());
            let full = page.len() == room;
            for (k, v) in page {
                if self.in_memory.contains(&k) {
                    continue;
                }
                if self.reaps.len() >= REAPS_MAX {
                    // Memory is full: what is left comes after what was taken.
                    return;
                }
                self.spill_after = Some(k.clone());
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
                self.remember(local, at, key, tombstone);
            }
            if !full {
                self.spilled = false;
                self.spill_after = None;
                return;
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
        // Best effort: without the record a restart forgets the reap (garbage, not a bug;
        // the sweep deletes the tombstone again later).
        let _ = store.write(batch);
        if self.spilled || self.reaps.len() >= REAPS_MAX {
            // Memory holds the earliest; this one waits in the store for a refill (which
            // starts before it: just before its time).
            let before = reap_key(at, &[]);
            if !self.spilled || self.spill_after.as_ref().is_some_and(|a| *a > before) {
                self.spill_after = Some(before);
            }
            self.spilled = true;
            return;
        }
        local.timers.set(at, Timer::Reap);
        self.remember(local, at, key, tombstone);
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
        let mut done = 0;
        // A reap whose time a clock running ahead set (further off than the grace) is due a
        // grace from now: late by the wall clock it had, never early by real time.
        let latest = ctx.now.plus_ms(local.config.tombstone_grace_ms);
        while done < REAPS_PER_CALL_MAX {
            let Some((_, due, _, _)) = self.reaps.front_mut() else {
                break;
            };
            *due = (*due).min(latest);
            if *due > ctx.now {
                break;
            }
            done += 1;
            let Some((at, _, key, tombstone)) = self.reaps.pop_front() else {
                break;
            };
            let (partition, skey) = local.locate(&key);
            self.forget(at, &skey);
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
        if self.spilled && self.reaps.len() < REAPS_MAX / 2 {
            self.refill(local, ctx.store);
        }
        // What is left waits for the first one's time (a timer set for it may have fired
        // early by the wall clock, after a step back).
        if let Some((_, due, _, _)) = self.reaps.front_mut() {
            *due = (*due).min(latest);
            local.timers.set(*due, Timer::Reap);
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

    /// Takes the expiry index's due entries (oldest first, one page at most) and returns the
    /// objects that did expire where this node is the key's first primary, for it to delete
    /// with their own identity: `lww` ones (at most `lww_room`, for `Expiries`) and
    /// `siblings` ones (at most `siblings_room`, for the write coordinator). Every due entry
    /// it takes is removed: an object refreshed since has a later entry of its own, and one
    /// whose delete fails is found again by the full sweep (`sweep_expired`). This is what
    /// keeps expiry up with a TTL-heavy load: it touches only what is due, and it starts at
    /// `Local::expiry_floor`, past the entries already removed.
    pub(crate) fn sweep_expiry_index<S: Store>(
        &mut self,
        local: &mut Local,
        ctx: &mut Ctx<'_, S>,
        lww_room: usize,
        siblings_room: usize,
    ) -> ExpirySweep {
        let mut out = ExpirySweep::default();
        if local.expiry_floor >= ctx.now.0 {
            // Nothing in the index is due yet.
            return out;
        }
        let lww_room = lww_room.min(EXPIRY_DELETES_MAX);
        let siblings_room = siblings_room.min(EXPIRY_DELETES_MAX);
        let mut done = WriteBatch::default();
        // The due time of the entry that stopped the look (left in place), if one did; of the
        // first `siblings` one left in place for want of room (the look goes on past it).
        let mut stopped_at = None;
        let mut first_left: Option<u64> = None;
        let mut last_taken = None;
        let mut room_ran_out = false;
        let mut after = expiry_key(local.expiry_floor, &[]);
        // Pages that start small and grow: a look that finds little due reads little.
        let mut page_len = 32;
        let mut read = 0;
        let mut full = true;
        'pages: while full && read < EXPIRY_INDEX_PAGE {
            let Ok(page) = ctx
                .store
                .scan_partition(EXPIRY_PARTITION, Some(&after), page_len)
            else {
                return out;
            };
            full = page.len() == page_len;
            read += page.len();
            page_len = (page_len * 4).min(EXPIRY_INDEX_PAGE.saturating_sub(read).max(1));
            for (entry, _) in page {
                let due = entry
                    .get(4..12)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map(u64::from_be_bytes)
                    .unwrap_or(0);
                if due >= ctx.now.0 {
                    stopped_at = Some(due);
                    break 'pages;
                }
                let skey = entry.get(12..).unwrap_or_default();
                let found = ObjectKey::from_storage_key(skey).ok().and_then(|(p, key)| {
                    let object = local.load(ctx.store, skey).ok().flatten()?;
                    object.expired_before(ctx.now.0).then_some((p, key, object))
                });
                let delete = found.and_then(|(partition, key, object)| {
                    let (props, at) = first_primary_delete(local, ctx.now, partition, &key)?;
                    Some((key, object, props, at))
                });
                if let Some(d) = delete {
                    match d.1 {
                        Object::Lww(_) if out.lww.len() >= lww_room => {
                            // A full batch: this one stays for the next look.
                            room_ran_out = true;
                            stopped_at = Some(due);
                            break 'pages;
                        }
                        Object::Siblings(_) | Object::Collection(_)
                            if out.siblings.len() >= siblings_room =>
                        {
                            // No room for another write: it stays (the floor with it), and
                            // the look goes on for `lww` values.
                            first_left.get_or_insert(due);
                            after.clone_from(&entry);
                            continue;
                        }
                        Object::Lww(_) => out.lww.push(d),
                        // A hash or set is deleted with a floor at its expiry, as a
                        // `siblings` object is with its context: one write each.
                        Object::Siblings(_) | Object::Collection(_) => out.siblings.push(d),
                    }
                    self.expired_deleted += 1;
                }
                last_taken = Some(due);
                after.clone_from(&entry);
                done.remove(entry);
            }
        }
        // Best effort: an entry left behind is looked at again (and found stale) next time,
        // since the floor stays at or below it (a restart starts at the index's start).
        if ctx.store.write(done).is_err() {
            // Nothing was removed: look again after the interval, not at once.
            out.more = false;
            return out;
        }
        if let Some(due) = first_left.or(stopped_at).or(last_taken) {
            local.expiry_floor = local.expiry_floor.max(due);
        }
        // More may be due now: the lww room ran out (a batch is full), or the page did.
        out.more = room_ran_out || (full && stopped_at.is_none());
        out
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
        let partitions = local.layout.partition_count() as u64;
        let partition = PartitionId((self.sweep_cursor % partitions) as u32);
        let size = self.sweep_page.max(SWEEP_PAGE_MIN);
        let Ok(page) = ctx
            .store
            .scan_partition(partition, self.sweep_after.as_deref(), size)
        else {
            return vec![];
        };
        self.sweep_scanned += page.len() as u64;
        // A full page: resume after its last key next time; else move to the next partition.
        if page.len() == size {
            self.sweep_after = page.last().map(|(k, _)| k.clone());
        } else {
            self.sweep_after = None;
            self.sweep_cursor += 1;
            if self.sweep_cursor.is_multiple_of(partitions) {
                // A cycle ended: the next one reads at the pace its size asks for.
                self.sweep_page = sweep_page_for(
                    self.sweep_scanned,
                    local.config.anti_entropy_interval_ms,
                    local.config.tombstone_grace_ms,
                );
                self.sweep_scanned = 0;
            }
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
            let old_tombstone = !planted().sweep_skips_old_tombstones
                && object.is_tombstone()
                && object
                    .max_timestamp()
                    .physical_ms()
                    .saturating_add(local.config.tombstone_grace_ms.saturating_mul(2))
                    < ctx.now.0;
            if !old_tombstone && !object.expired_before(ctx.now.0) {
                continue;
            }
            let twice_grace = local.config.tombstone_grace_ms.saturating_mul(2);
            if old_tombstone
                && (self.pending.contains_key(&skey)
                    || self
                        .reissued
                        .get(&skey)
                        .is_some_and(|t| t.plus_ms(twice_grace) > ctx.now))
            {
                // Its reap is on its way, or it was deleted again lately.
                continue;
            }
            let Some((props, at)) = first_primary_delete(local, ctx.now, partition, &key) else {
                continue;
            };
            if old_tombstone {
                self.tombstones_reissued += 1;
                if self.reissued.len() >= REAPS_MAX {
                    let horizon = Timestamp(ctx.now.0.saturating_sub(twice_grace));
                    self.reissued.retain(|_, t| *t > horizon);
                    if self.reissued.len() >= REAPS_MAX {
                        self.reissued.clear();
                    }
                }
                self.reissued.insert(skey.clone(), ctx.now);
            } else {
                self.expired_deleted += 1;
            }
            deletes.push((key, object, props, at));
        }
        deletes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hlc::Hlc;
    use crate::ids::NodeId;
    use crate::key::BucketName;
    use crate::layout::Layout;
    use crate::node::config::NodeConfig;
    use crate::store::MemStore;
    use crate::version::{LwwValue, Sibling};
    use rand::SeedableRng;

    #[test]
    fn the_sweep_reads_what_finishes_a_cycle_within_a_grace() {
        // The defaults: an hour of grace, a call a second.
        assert_eq!(sweep_page_for(10_000_000, 1_000, 3_600_000), 2_778);
        assert_eq!(sweep_page_for(1_000, 1_000, 3_600_000), SWEEP_PAGE_MIN);
        assert_eq!(sweep_page_for(u64::MAX, 1_000, 3_600_000), SCAN_ENTRIES_MAX);
        // A grace shorter than the interval: every object in one call, within the ceiling.
        assert_eq!(sweep_page_for(5_000, 1_000, 10), 5_000);
        assert_eq!(sweep_page_for(5_000, 0, 0), 5_000);
    }

    #[test]
    fn pending_reaps_beyond_memory_wait_in_the_store_and_every_one_is_done() {
        // One node (its clock needs no peer to be trusted), its own only replica.
        let mut local = Local::new(
            NodeConfig::new(NodeId(1)),
            Layout::uniform(1, 16).expect("layout"),
        );
        let mut store = MemStore::new();
        let mut gc = Gc::default();
        let extra = 1_000;
        let bucket = BucketName::new("redis").expect("valid");
        let mut keys = vec![];
        for i in 0..REAPS_MAX + extra {
            let key = ObjectKey::new(bucket.clone(), format!("k{i}").as_bytes()).expect("key");
            let sibling = Sibling::tombstone(Hlc::new(1_000, 0));
            let tombstone = Object::Lww(LwwValue::new(NodeId(1), sibling));
            let (_, skey) = local.locate(&key);
            local
                .write_object(
                    &mut store,
                    &skey,
                    1,
                    &tombstone,
                    None,
                    encode_object(&tombstone),
                )
                .expect("stored");
            gc.schedule(
                &mut local,
                &mut store,
                Timestamp(2_000 + i as u64),
                key.clone(),
                tombstone,
            );
            keys.push(skey);
        }
        assert_eq!(gc.reaps_pending(), REAPS_MAX);
        assert!(gc.spilled, "the rest wait in the store");
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        // At most REAPS_PER_CALL_MAX a call.
        for _ in 0..(REAPS_MAX + extra) / REAPS_PER_CALL_MAX + 3 {
            let mut ctx = Ctx {
                now: Timestamp(100_000_000),
                mono: Timestamp(0),
                store: &mut store,
                rng: &mut rng,
            };
            gc.on_reap_timer(&mut local, &mut ctx);
        }
        assert_eq!(gc.reaps_pending(), 0);
        assert!(!gc.spilled);
        assert_eq!(gc.tombstones_reaped, (REAPS_MAX + extra) as u64);
        assert!(
            keys.iter()
                .all(|k| store.get(k).expect("memstore").is_none())
        );
        let records = store
            .scan_partition(REAPS_PARTITION, None, 10)
            .expect("scan");
        assert!(records.is_empty(), "reap records left: {}", records.len());
    }
}
