//! Expiry of `lww` values whose TTL ran out, in batches.
//!
//! Source: Cassandra (an expired cell becomes a tombstone at the cell's own timestamp);
//! Riak's delete_mode (reap only after every primary holds the tombstone).
//!
//! ```text
//! Timer::Expiry ─▶ the expiry index's due entries (`Gc::sweep_expiry_index`) of keys this
//!     node is the first primary of; each object's expiry tombstone (a pure function of what
//!     expired, never a new write) merged here, then
//!   first primary ─ExpireRequest(≤ EXPIRY_DELETES_MAX tombstones)─▶ each other primary:
//!                                                                  merge each, sync
//!                 ◀─ExpireResponse(the positions it merged)────────
//!   a tombstone every primary holds ──(grace)──▶ reaped (`Gc::schedule`)
//! ```
//!
//! One round trip per peer for up to [`EXPIRY_DELETES_MAX`] values, where a delete per value
//! costs a write coordination each: this is what lets expiry keep up with a TTL-heavy load.
//! (`siblings` objects are deleted with their context, a new version each: they go through
//! the write coordinator, `Writes::start_expiry`.)
//!
//! Invariants:
//! * What is merged is the expired value's own tombstone: it replaces that value and what it
//!   replaced, never a value written after it (invariant 2 of ARCHITECTURE.md).
//! * A tombstone is reaped only once every primary holds it durably: each other primary
//!   answered so, and this node's own sync covered it. One that a primary did not take
//!   (down, slow, refused) stays, and the sweep of old tombstones deletes it again later
//!   (`Gc::sweep_expired`). Primaries believed down are not sent a batch (it would hold a
//!   batch slot for a whole timeout): their entries are not reaped.
//! * Bounded: [`EXPIRY_BATCHES_MAX`] batches in flight, [`EXPIRY_DELETES_MAX`] values each; a
//!   replica takes at most [`EXPIRY_DELETES_MAX`] entries of a request.

use crate::bucket::BucketProps;
use crate::ids::{NodeId, RequestId, Timestamp};
use crate::key::ObjectKey;
use crate::limits::{EXPIRY_BATCHES_MAX, EXPIRY_DELETES_MAX};
use crate::message::Message;
use crate::store::Store;
use crate::version::Object;
use std::collections::BTreeMap;

use super::durability::Waiter;
use super::gc::Gc;
use super::io::Ctx;
use super::local::Local;
use super::quorum::Placement;
use super::timers::Timer;

#[derive(Debug, Default)]
pub(crate) struct Expiries {
    in_flight: BTreeMap<RequestId, Batch>,
    /// The last look at the index found every batch slot taken: the next batch to end
    /// looks again (so one `Timer::Expiry` is ever set).
    waiting_for_room: bool,
}

#[derive(Debug)]
struct Batch {
    /// Each tombstone, and how many other primaries have yet to hold it (`None` once one
    /// did not take it: that one is not reaped).
    entries: Vec<(ObjectKey, Object, Option<usize>)>,
    /// Peers yet to answer, with the positions (in `entries`) of what each was sent.
    peers: BTreeMap<NodeId, Vec<usize>>,
    /// Whether this node's own merges are durable (a sync covered them).
    synced: bool,
    deadline: Timestamp,
}

impl Batch {
    /// Schedules the reap of entry `i` if every primary now holds it durably.
    fn reap_if_held<S: Store>(
        &self,
        i: usize,
        local: &mut Local,
        ctx: &mut Ctx<'_, S>,
        gc: &mut Gc,
    ) {
        let (key, tombstone, left) = &self.entries[i];
        if self.synced && *left == Some(0) {
            gc.schedule(local, ctx.store, ctx.now, key.clone(), tombstone.clone());
        }
    }

    fn done(&self) -> bool {
        self.synced && self.peers.is_empty()
    }
}

impl Expiries {
    pub(crate) fn has_room(&self) -> bool {
        self.in_flight.len() < EXPIRY_BATCHES_MAX
    }

    /// The index has due entries but every slot is taken: look again when one ends.
    pub(crate) fn wait_for_room(&mut self) {
        self.waiting_for_room = true;
    }

    /// Merges the expiry tombstone of each expired `lww` object here and sends each other
    /// primary the ones it holds, in one message. (Each object was loaded in this call: what
    /// is stored is exactly what expired.)
    pub(crate) fn start<S: Store>(
        &mut self,
        local: &mut Local,
        ctx: &mut Ctx<'_, S>,
        gc: &mut Gc,
        expired: Vec<(ObjectKey, Object, BucketProps, Placement)>,
    ) {
        let me = local.me();
        let mut entries = Vec::with_capacity(expired.len());
        let mut peers: BTreeMap<NodeId, Vec<usize>> = BTreeMap::new();
        for (key, object, _, at) in expired {
            let Some(tombstone) = object.expiry_tombstone() else {
                continue;
            };
            if local.merge_into_store(ctx, &key, &tombstone).is_err() {
                continue;
            }
            let others: Vec<NodeId> = at.replicas.iter().copied().filter(|r| *r != me).collect();
            // A primary believed down cannot hold it: not reaped (the sweep deletes it
            // again once the grace has passed twice).
            let down = others.iter().any(|p| !local.is_alive(*p, ctx.now));
            for peer in others.iter().filter(|p| local.is_alive(**p, ctx.now)) {
                peers.entry(*peer).or_default().push(entries.len());
            }
            let left = (!down).then_some(others.len());
            entries.push((key, tombstone, left));
        }
        if entries.is_empty() {
            return;
        }
        let req = local.out.new_request(ctx.rng);
        for (peer, positions) in &peers {
            let sent = positions
                .iter()
                .map(|i| (entries[*i].0.clone(), entries[*i].1.clone()))
                .collect();
            local
                .out
                .send(*peer, Message::ExpireRequest { req, entries: sent });
        }
        let deadline = ctx.now.plus_ms(local.config.request_timeout_ms);
        local.timers.set(deadline, Timer::ExpireDeadline(req));
        self.in_flight.insert(
            req,
            Batch {
                entries,
                peers,
                synced: false,
                deadline,
            },
        );
        // This node's merges must be durable before any reap: else a crash could bring back
        // an older value here after every other primary reaped the tombstone.
        if let Some(Waiter::ExpireLocal(req)) = local.durability.wait(Waiter::ExpireLocal(req)) {
            self.on_local_synced(local, ctx, gc, req, true);
        }
    }

    /// This node's sync of a batch's merges ended (`ok`: it succeeded).
    pub(crate) fn on_local_synced<S: Store>(
        &mut self,
        local: &mut Local,
        ctx: &mut Ctx<'_, S>,
        gc: &mut Gc,
        req: RequestId,
        ok: bool,
    ) {
        let Some(batch) = self.in_flight.get_mut(&req) else {
            return;
        };
        if !ok {
            // Nothing here is known durable: reap none of it.
            for e in &mut batch.entries {
                e.2 = None;
            }
        }
        batch.synced = true;
        for i in 0..batch.entries.len() {
            batch.reap_if_held(i, local, ctx, gc);
        }
        self.end_if_done(local, ctx, req);
    }

    /// A peer's answer: the positions (in what it was sent) of the tombstones it now holds,
    /// durably. A tombstone every primary holds is reaped after the grace.
    pub(crate) fn on_response<S: Store>(
        &mut self,
        local: &mut Local,
        ctx: &mut Ctx<'_, S>,
        gc: &mut Gc,
        from: NodeId,
        req: RequestId,
        merged: Vec<u32>,
    ) {
        let Some(batch) = self.in_flight.get_mut(&req) else {
            return;
        };
        let Some(sent) = batch.peers.remove(&from) else {
            return; // not asked, or a duplicate
        };
        let mut took = vec![false; sent.len()];
        for pos in merged {
            if let Some(t) = took.get_mut(pos as usize) {
                *t = true;
            }
        }
        for (i, took) in sent.into_iter().zip(took) {
            let left = &mut batch.entries[i].2;
            match left {
                Some(n) if took => {
                    *n = n.saturating_sub(1);
                    batch.reap_if_held(i, local, ctx, gc);
                }
                _ => *left = None,
            }
        }
        self.end_if_done(local, ctx, req);
    }

    fn end_if_done<S: Store>(&mut self, local: &mut Local, ctx: &mut Ctx<'_, S>, req: RequestId) {
        if self.in_flight.get(&req).is_some_and(Batch::done) {
            if let Some(batch) = self.in_flight.remove(&req) {
                local
                    .timers
                    .cancel(batch.deadline, Timer::ExpireDeadline(req));
            }
            self.room_freed(local, ctx);
        }
    }

    /// A batch whose peers did not all answer in time: what they did not take is not reaped.
    pub(crate) fn on_deadline<S: Store>(
        &mut self,
        local: &mut Local,
        ctx: &mut Ctx<'_, S>,
        req: RequestId,
    ) {
        if self.in_flight.remove(&req).is_some() {
            self.room_freed(local, ctx);
        }
    }

    fn room_freed<S: Store>(&mut self, local: &mut Local, ctx: &mut Ctx<'_, S>) {
        if std::mem::take(&mut self.waiting_for_room) {
            local.timers.set(ctx.now, Timer::Expiry);
        }
    }
}

impl Local {
    /// A first primary's batch of expiry tombstones: merge each (at most
    /// [`EXPIRY_DELETES_MAX`]), then answer, once durable, with the positions of those merged.
    pub(crate) fn on_expire_request<S: Store>(
        &mut self,
        ctx: &mut Ctx<'_, S>,
        from: NodeId,
        req: RequestId,
        entries: Vec<(ObjectKey, Object)>,
    ) {
        let mut merged = Vec::new();
        if self.durability.poisoned().is_none() {
            for (pos, (key, object)) in entries.iter().take(EXPIRY_DELETES_MAX).enumerate() {
                // Only tombstones: this message deletes, it never writes a value.
                if object.is_tombstone() && self.merge_into_store(ctx, key, object).is_ok() {
                    merged.push(pos as u32);
                }
            }
        }
        if merged.is_empty() {
            return self.out.send(from, Message::ExpireResponse { req, merged });
        }
        let waiter = Waiter::ExpireAck {
            to: from,
            req,
            merged,
        };
        if let Some(w) = self.durability.wait(waiter) {
            self.release(ctx, w, Ok(()));
        }
    }
}
