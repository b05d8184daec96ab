//! Hinted handoff, the protocol: fallbacks hold writes for primaries that were down, and
//! deliver them once the owner is believed up again. (The hint index and the hints' storage
//! keys are in [`crate::hints`].)
//!
//! Source: DeCandia et al., "Dynamo" (SOSP 2007), §4.6; Cassandra's coordinator hints.
//!
//! ```text
//! coordinator ─HintRequest(owner, object)─▶ fallback: merge into its hint for (owner, key),
//!                                            sync, ack (counts toward W)
//! coordinator, at the end of a write: its own hint for every primary that missed it
//! every handoff_interval_ms, for each owner believed up (at most HANDOFF_IN_FLIGHT_MAX):
//!     ─HintDeliveryRequest(object)─▶ owner: merge, sync, ack (refused if it arrived past
//!                                     the grace)
//!     ◀─ReplicateResponse ok──── delete the hint if it still holds what was sent
//! ```
//!
//! Invariants:
//! * A hint is deleted only after the owner's durable ack of exactly what the hint held.
//! * Each owner's hints stay within `hints_bytes_max`; a hint refused for it is counted as
//!   dropped and its partition marked for anti-entropy (which covers what hints do not).
//! * A hint older than the tombstone grace is never delivered, nor taken by its owner if it
//!   arrives older than that (less the clock skew bound): it may hold what a reaped delete
//!   removed (anti-entropy brings the owner the rest).

use crate::bugs::planted;
use crate::hints::{HINTS_PARTITION, HintIndex, hint_key, parse_hint_key};
use crate::ids::{NodeId, RequestId, Timestamp};
use crate::key::ObjectKey;
use crate::limits::{COORDINATOR_HINTS_MAX, HANDOFF_IN_FLIGHT_MAX, SCAN_ENTRIES_MAX};
use crate::message::{Message, ReplicaError, encode_object};
use crate::store::{Store, WriteBatch};
use crate::version::Object;
use std::collections::{BTreeMap, BTreeSet};

use super::io::{Ctx, Output};
use super::local::Local;
use super::timers::Timer;
use super::write::WriteDone;

/// A hint on its way to its owner.
#[derive(Debug)]
struct Delivery {
    owner: NodeId,
    /// The object's storage key.
    object_key: Vec<u8>,
    /// What was sent: the hint is deleted only if it still holds exactly this.
    sent: Object,
    deadline: Timestamp,
}

#[derive(Debug, Default)]
pub(crate) struct Handoff {
    /// Hints this node holds for other nodes (the hints themselves are in the store).
    pub(crate) index: HintIndex,
    /// Deliveries in flight (at most [`HANDOFF_IN_FLIGHT_MAX`] per owner).
    deliveries: BTreeMap<RequestId, Delivery>,
    /// Hints their owner refused because the merge would pass the sibling or size limit,
    /// and when to offer them again: until a client resolves the key the owner refuses them
    /// again, and offering them first every interval would keep the owner's other hints
    /// waiting. At most one entry per hint held.
    deferred: BTreeMap<(NodeId, Vec<u8>), Timestamp>,
    /// An operator paused delivery (as Cassandra's `nodetool disablehandoff`): hints are
    /// still kept, and delivered once it is resumed.
    pub(crate) paused: bool,
}

/// How long a hint its owner refused for the sibling or size limit waits before it is
/// offered again.
const DEFER_AFTER_LIMIT_MS: u64 = 30_000;

/// The hint this node holds for `owner` of `key`, if any. A hint older than the tombstone
/// grace is not served (as if absent): it may hold what a reaped delete removed, and a read
/// would repair it back into the primaries.
pub(crate) fn hint_read<S: Store>(
    local: &Local,
    store: &mut S,
    now: Timestamp,
    owner: NodeId,
    key: &ObjectKey,
) -> Result<Option<Object>, ReplicaError> {
    let hint = local.load(store, &hint_key(owner, &local.locate(key).1))?;
    Ok(hint.filter(|h| !outlived_grace(h, now, local.config.tombstone_grace_ms)))
}

/// The owner's side of a delivery: whether a hint arriving now is too old to take. Its
/// fallback checked the grace when it sent it, but a delivery can wait past it (the owner
/// paused, the network slow) while the owner reaps the tombstone of a delete made after
/// the hint's write: taking the hint then would bring the deleted value back. Judged
/// against the grace less the clock skew bound (the reap was judged on another clock).
pub(crate) fn arrived_too_old(local: &Local, object: &Object, now: Timestamp) -> bool {
    let grace = local.config.tombstone_grace_ms;
    let margin = local.config.max_clock_skew_ms.min(grace / 2);
    !planted().hints_taken_after_grace && outlived_grace(object, now, grace - margin)
}

/// Whether an object holds a value older than the tombstone grace.
fn outlived_grace(object: &Object, now: Timestamp, grace_ms: u64) -> bool {
    object
        .min_timestamp()
        .physical_ms()
        .saturating_add(grace_ms)
        < now.0
}

impl Handoff {
    /// Whether `req` is a delivery of this part (its answer is a `ReplicateResponse` too).
    pub(crate) fn owns(&self, req: RequestId) -> bool {
        self.deliveries.contains_key(&req)
    }

    /// Rebuilds the hint index from the store (at start).
    pub(crate) fn load<S: Store>(&mut self, store: &mut S) {
        let mut after: Option<Vec<u8>> = None;
        // Bounded: the hints of every owner fit their budgets.
        for _ in 0..1_000_000 {
            let Ok(page) =
                store.scan_partition(HINTS_PARTITION, after.as_deref(), SCAN_ENTRIES_MAX)
            else {
                return;
            };
            let Some((last, _)) = page.last() else { return };
            after = Some(last.clone());
            for (k, v) in &page {
                if let Some((owner, object_key)) = parse_hint_key(k) {
                    self.index.set(owner, object_key, v.len() as u64);
                }
            }
        }
    }

    /// Merges `object` into the hint held for `owner`, within the owner's byte budget.
    pub(crate) fn store<S: Store>(
        &mut self,
        local: &mut Local,
        ctx: &mut Ctx<'_, S>,
        owner: NodeId,
        key: &ObjectKey,
        object: &Object,
    ) -> Result<(), ReplicaError> {
        if let Some(why) = local.durability.poisoned() {
            return Err(ReplicaError::Store(format!("node refuses writes: {why}")));
        }
        if owner == local.me() {
            // The layout says this node is the owner after all: keep it as a replica would.
            return local.merge_into_store(ctx, key, object);
        }
        let (partition, object_key) = local.locate(key);
        let hkey = hint_key(owner, &object_key);
        let held = local.load(ctx.store, &hkey)?;
        let merged = match &held {
            None => object.clone(),
            Some(held) => held.merge(object).map_err(|_| ReplicaError::ModeMismatch)?,
        };
        let bytes = encode_object(&merged);
        super::local::check_merge_limits(held.as_ref(), &merged, bytes.len())?;
        let old = self.index.size_of(owner, &object_key).unwrap_or(0);
        let total = self.index.bytes_for(owner) - old + bytes.len() as u64;
        let max = local.config.hints_bytes_max;
        if total > max {
            self.index.counters.dropped += 1;
            self.index.mark_dirty(partition);
            local.out.push(Output::HintBudgetFull { owner, partition });
            return Err(ReplicaError::HintBudgetFull {
                owner,
                bytes: self.index.bytes_for(owner),
                max,
            });
        }
        let size = bytes.len() as u64;
        let mut batch = WriteBatch::default();
        batch.put(hkey, bytes);
        ctx.store
            .write(batch)
            .map_err(|e| ReplicaError::Store(e.to_string()))?;
        self.index.set(owner, &object_key, size);
        self.index.counters.stored += 1;
        Ok(())
    }

    /// Writes that ended: the coordinator keeps a hint for each primary that missed one (at
    /// most [`COORDINATOR_HINTS_MAX`] per call). Best effort: a refused hint (budget) leaves
    /// the key to anti-entropy.
    pub(crate) fn keep_for_missed<S: Store>(
        &mut self,
        local: &mut Local,
        ctx: &mut Ctx<'_, S>,
        done: &[WriteDone],
    ) {
        let missed = done
            .iter()
            .flat_map(|d| d.missed.iter().map(move |owner| (*owner, d)))
            .take(COORDINATOR_HINTS_MAX);
        for (owner, d) in missed {
            let _ = self.store(local, ctx, owner, &d.key, &d.object);
        }
    }

    /// Offers hints to every owner believed up, at most [`HANDOFF_IN_FLIGHT_MAX`] at a time
    /// per owner, so handoff never floods a node that just came back.
    pub(crate) fn offer<S: Store>(&mut self, local: &mut Local, ctx: &mut Ctx<'_, S>) {
        self.deferred.retain(|_, until| *until > ctx.now);
        if self.paused {
            return;
        }
        for owner in self.index.owners() {
            if !local.membership.is_alive(owner, ctx.mono) || !local.layout.contains(owner) {
                continue;
            }
            let mut busy: BTreeSet<Vec<u8>> = self
                .deliveries
                .values()
                .filter(|h| h.owner == owner)
                .map(|h| h.object_key.clone())
                .collect();
            let room = HANDOFF_IN_FLIGHT_MAX.saturating_sub(busy.len());
            busy.extend(
                self.deferred
                    .keys()
                    .filter(|(o, _)| *o == owner)
                    .map(|(_, k)| k.clone()),
            );
            for object_key in self.index.next_for(owner, &busy, room) {
                let hkey = hint_key(owner, &object_key);
                let (Ok(Some(object)), Ok((partition, key))) = (
                    local.load(ctx.store, &hkey),
                    ObjectKey::from_storage_key(&object_key),
                ) else {
                    self.index.remove(owner, &object_key);
                    continue;
                };
                let too_old = outlived_grace(&object, ctx.now, local.config.tombstone_grace_ms);
                if too_old || planted().discard_hints {
                    let mut batch = WriteBatch::default();
                    batch.remove(hkey);
                    let _ = ctx.store.write(batch);
                    self.index.remove(owner, &object_key);
                    if too_old {
                        self.index.counters.dropped += 1;
                        self.index.mark_dirty(partition);
                    }
                    continue;
                }
                let req = local.out.new_request(ctx.rng);
                let deadline = ctx.now.plus_ms(local.config.request_timeout_ms);
                local.out.send(
                    owner,
                    Message::HintDeliveryRequest {
                        req,
                        key,
                        object: object.clone(),
                    },
                );
                self.deliveries.insert(
                    req,
                    Delivery {
                        owner,
                        object_key,
                        sent: object,
                        deadline,
                    },
                );
                local.timers.set(deadline, Timer::HandoffDeadline(req));
            }
        }
    }

    /// The owner answered a delivery: delete the hint if it still holds what was sent.
    pub(crate) fn on_response<S: Store>(
        &mut self,
        local: &mut Local,
        ctx: &mut Ctx<'_, S>,
        req: RequestId,
        result: Result<(), ReplicaError>,
    ) {
        let Some(h) = self.deliveries.remove(&req) else {
            return;
        };
        local.timers.cancel(h.deadline, Timer::HandoffDeadline(req));
        if let Err(ReplicaError::ObjectLimit(_)) = result {
            let until = ctx.now.plus_ms(DEFER_AFTER_LIMIT_MS);
            self.deferred.insert((h.owner, h.object_key), until);
            return;
        }
        if result.is_err() {
            return; // offered again at the next interval
        }
        let hkey = hint_key(h.owner, &h.object_key);
        if let Ok(Some(held)) = local.load(ctx.store, &hkey)
            && held == h.sent
        {
            let mut batch = WriteBatch::default();
            batch.remove(hkey);
            if ctx.store.write(batch).is_ok() {
                self.index.remove(h.owner, &h.object_key);
                self.index.counters.delivered += 1;
            }
        }
    }

    /// A delivery got no answer: it is offered again at the next interval.
    pub(crate) fn on_deadline(&mut self, req: RequestId) {
        self.deliveries.remove(&req);
    }
}
