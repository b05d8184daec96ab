//! Write coordination: PUT and DELETE of one key, acknowledged at W durable replicas.
//!
//! Source: DeCandia et al., "Dynamo" (SOSP 2007), §4.5 (put execution), §4.6 (sloppy quorum);
//! Riak KV's put FSM (the coordinating vnode writes first); Cassandra's coordinator hints.
//!
//! ```text
//! client ─▶ coordinator (a replica of the key)
//!   read local, update (DVV event or lww), write, wait for the local sync ──┐
//!   │ siblings: after the local sync; lww under a durable clock mark: at once
//!   ├─ReplicateRequest(object)─▶ each other replica ─ReplicateResponse─▶ ack
//!   ├─HintRequest(owner, object)─▶ fallbacks (sloppy: for primaries down, or silent
//!   │                              after `fallback_after_ms` / half the timeout)
//!   └ reply after W durable acks (own included); quorum error once W cannot be reached
//! request ends (nothing pending): a hint per primary that missed it, a reap if a delete
//! reached every primary
//! ```
//!
//! Invariants:
//! * A write is acknowledged only after W replicas report it durable.
//! * Only a replica of the key coordinates a write, and a `siblings` write's new dot leaves
//!   this node only after the coordinator's own write is durable: after a crash its counters
//!   are never behind a dot it issued, so one dot names one value.
//! * An `lww` write leaves before the local sync only when a durable clock mark covers its
//!   timestamp (a crash cannot make the node issue older timestamps than replicas hold).
//! * A sloppy write's fallbacks are tried by half the request's timeout at the latest.
//! * A write that cannot reach W with the replicas believed up fails before writing anything.
//! * Exactly one reply per request.

use crate::bucket::{BucketProps, ConflictMode};
use crate::bugs::planted;
use crate::collection::{Collection, CollectionUpdate};
use crate::hlc::{Hlc, check_skew};
use crate::id_map::IdMap;
use crate::ids::{NodeId, PartitionId, RequestId, Timestamp};
use crate::key::ObjectKey;
use crate::limits::{OBJECT_BYTES_MAX, WRITES_LINGERING_MAX};
use crate::message::{
    ClientError, ClientResponse, ErrorCode, Expiry, Outcome, ReplicaError, Role, VersionOp,
    WriteRequest, encode_object,
};
use crate::store::{Store, StoreError};
use crate::version::{LwwValue, Object, Sibling};
use std::borrow::Cow;
use std::collections::BTreeSet;

use super::durability::Waiter;
use super::io::{Ctx, ReceiptDetail, ReplyTo};
use super::local::Local;
use super::paxos::cas_managed_error;
use super::quorum::{self, Placement, Slot, Slots, quorum_error, write_message};
use super::timers::Timer;

#[derive(Debug)]
struct WriteState {
    reply_to: ReplyTo,
    key: ObjectKey,
    partition: PartitionId,
    needed: u8,
    slots: Slots,
    object: Object,
    started: Timestamp,
    /// Set once the client has its answer: then the order in which writes were answered
    /// (the write lingers for its other replicas' acks, see `Writes::lingering`).
    replied: Option<u64>,
    /// Whether fallbacks may stand in for primaries that are down or slow.
    sloppy: bool,
    /// A delete: once every primary has acked it, its tombstone is reaped after the grace.
    is_delete: bool,
    /// When primaries that have not answered get a fallback too (sloppy writes only), and
    /// when the write times out.
    fallback_at: Timestamp,
    deadline: Timestamp,
    /// Whether the object went out to the other replicas (once).
    sent: bool,
    /// Replicas that refused the object because their merge would pass the sibling or size
    /// limit, with the reasons: the client is told to resolve (in a quorum error: others
    /// may hold the write), and they get no hint (they would refuse it again; the resolving
    /// write covers it).
    over_limit: Vec<(NodeId, String)>,
    /// Replicas that refused the write because compare-and-set manages the key there
    /// (`cas = conditional_only`): the client is told to write with a condition, and they
    /// get no hint (its handoff would bypass the refusal).
    cas_managed: Vec<NodeId>,
}

impl WriteState {
    /// The message that carries this write to `slot` (a client's write is plain: a
    /// replica may refuse it where compare-and-set manages the key; an expiry delete is not).
    fn message(&self, slot: &Slot, req: RequestId) -> crate::message::Message {
        let plain =
            self.reply_to != ReplyTo::Internal && !matches!(self.object, Object::Collection(_));
        write_message(slot, req, &self.key, &self.object, plain)
    }
}

/// A write whose every replica answered or timed out: what the other parts do about it.
#[derive(Debug)]
pub(crate) struct WriteDone {
    pub(crate) key: ObjectKey,
    pub(crate) object: Object,
    /// A delete every primary acked: its tombstone can be reaped after the grace.
    pub(crate) reapable: bool,
    /// Primaries that neither acked nor had a fallback ack, when the write is durable here:
    /// the coordinator keeps a hint for each (as Cassandra's coordinators do), so a primary
    /// that was down gets it by handoff even where no fallback node exists (N = nodes).
    pub(crate) missed: Vec<NodeId>,
}

/// The writes this node coordinates.
#[derive(Debug, Default)]
pub(crate) struct Writes {
    /// Boxed, so a resize moves pointers, not the large state.
    in_flight: IdMap<RequestId, Box<WriteState>>,
    /// Writes answered but still waiting for their other replicas' acks, in the order they
    /// were answered. At most [`WRITES_LINGERING_MAX`]: beyond, the oldest ends at once, its
    /// silent replicas counted as timed out (they get hints, as at the deadline), so that a
    /// slow replica cannot fill the node with answered writes and refuse new clients.
    lingering: BTreeSet<(u64, RequestId)>,
    next_reply: u64,
    /// Writes that ended since the router last looked.
    done: Vec<WriteDone>,
}

impl Writes {
    pub(crate) fn len(&self) -> usize {
        self.in_flight.len()
    }

    /// Writes whose client still waits for an answer.
    pub(crate) fn waiting(&self) -> usize {
        self.in_flight.len() - self.lingering.len()
    }

    /// Writes this node started for itself (expiry deletes) still in flight.
    pub(crate) fn internal(&self) -> usize {
        self.in_flight
            .count_where(|w| w.reply_to == ReplyTo::Internal)
    }

    pub(crate) fn take_done(&mut self) -> Vec<WriteDone> {
        std::mem::take(&mut self.done)
    }

    pub(crate) fn start<S: Store>(
        &mut self,
        local: &mut Local,
        ctx: &mut Ctx<'_, S>,
        reply_to: ReplyTo,
        write: WriteRequest,
        props: &BucketProps,
        at: Placement,
    ) {
        // Compare-and-set never manages hashes and sets: their updates merge with anything.
        if write.collection.is_none()
            && local.cas_managed(ctx.store, &write.key, props, at.partition)
        {
            let e = cas_managed_error(&write.key, Some(local.me()));
            return local.out.reply(reply_to, Err(e));
        }
        // In a `siblings` bucket a version delete is a delete with the read's context.
        let on_version = write
            .on_version
            .filter(|_| props.conflicts == ConflictMode::Lww);
        let fixed = match on_version {
            None => None,
            Some(_) if planted().version_ops_as_new_writes => None,
            Some(op) => match version_bound(local, ctx, &write, op, at.partition) {
                Ok(object) => Some(object),
                Err(e) => return local.out.reply(reply_to, Err(e)),
            },
        };
        self.start_with(local, ctx, reply_to, write, props, at, fixed)
    }

    /// Deletes what expired, or a tombstone whose reap never happened (itself again), as the
    /// key's first primary (the expiry sweep's request; its reply is dropped). A `siblings` object gets a delete with its own context (superseding
    /// exactly what expired); an `lww` object gets the tombstone with the expired value's
    /// identity, so a write made after the value (a refresh) always beats it.
    pub(crate) fn start_expiry<S: Store>(
        &mut self,
        local: &mut Local,
        ctx: &mut Ctx<'_, S>,
        key: ObjectKey,
        expired: Object,
        props: &BucketProps,
        at: Placement,
    ) {
        let write = WriteRequest {
            key,
            value: None,
            content_type: Default::default(),
            context: Some(expired.context()),
            w: None,
            timeout_ms: None,
            sloppy: Some(false),
            expiry: None,
            on_version: None,
            collection: None,
        };
        let tombstone = if expired.is_tombstone() {
            // A tombstone deleted again, as itself (nothing new: no dot, no timestamp).
            Some(expired)
        } else if planted().expiry_stamped_now {
            None
        } else {
            expired.expiry_tombstone()
        };
        self.start_with(local, ctx, ReplyTo::Internal, write, props, at, tombstone)
    }

    /// Coordinates `write`; with `fixed`, the object written is `fixed` merged into what is
    /// stored instead of a new version.
    #[allow(clippy::too_many_arguments)]
    fn start_with<S: Store>(
        &mut self,
        local: &mut Local,
        ctx: &mut Ctx<'_, S>,
        reply_to: ReplyTo,
        mut write: WriteRequest,
        props: &BucketProps,
        at: Placement,
        fixed: Option<Object>,
    ) {
        let me = local.me();
        debug_assert!(
            at.replicas.contains(&me),
            "only a replica coordinates a write"
        );
        if let Some(why) = local.durability.poisoned() {
            let e = ClientError::new(
                ErrorCode::StoreFailed,
                format!("node {me} refuses writes: {why}"),
            );
            return local.out.reply(reply_to, Err(e));
        }
        // Replicas believed down may make W unreachable: fail before writing anything, so a
        // write that cannot succeed leaves no sibling behind.
        let sloppy = write.sloppy.unwrap_or(props.sloppy);
        let slots = local.slots_for(at.partition, &at.replicas, ctx.now, sloppy);
        if quorum::count(&slots, &Outcome::Pending) < at.needed as usize {
            let receipt = local.receipt(
                ReceiptDetail::Full,
                at.partition,
                at.needed,
                &slots,
                vec![],
                ctx.now,
                ctx.now,
            );
            return local
                .out
                .reply(reply_to, Err(quorum_error("write", receipt)));
        }
        let skey = write.key.storage_key(at.partition);
        let is_collection = write.collection.is_some();
        let mut is_delete = write.value.is_none();
        let keeps_identity = fixed.is_some();
        let made = match fixed {
            None => new_object(local, ctx, &skey, &mut write, props),
            Some(fixed) => merge_stored(local, ctx, &skey, fixed),
        };
        let (object, timestamp, previous_expiry) = match made {
            Ok(x) => x,
            Err(e) => return local.out.reply(reply_to, Err(e)),
        };
        if is_collection {
            // A hash or set left without elements is reaped like a tombstone.
            is_delete = object.is_tombstone();
        }
        let encoded = encode_object(&object);
        let size = encoded.len();
        if size > OBJECT_BYTES_MAX {
            let e = ClientError::new(
                ErrorCode::TooManySiblings,
                format!(
                    "the key's siblings would take {size} bytes, more than the limit of {OBJECT_BYTES_MAX}; resolve them with a context"
                ),
            );
            return local.out.reply(reply_to, Err(e));
        }
        local.durability.cover_timestamp(ctx.store, timestamp);
        let written =
            local.write_object(ctx.store, &skey, props.n, &object, previous_expiry, encoded);
        if let Err(e) = written {
            let e = ClientError::new(ErrorCode::StoreFailed, e.to_string());
            return local.out.reply(reply_to, Err(e));
        }
        let req = local.out.new_request(ctx.rng);
        // Fallbacks must get their chance before the request's deadline, whatever it is.
        let fallback_ms = local
            .config
            .fallback_after_ms
            .min(at.deadline.0.saturating_sub(ctx.now.0) / 2);
        self.in_flight.insert(
            req,
            Box::new(WriteState {
                reply_to,
                key: write.key,
                partition: at.partition,
                needed: at.needed,
                slots,
                object,
                started: ctx.now,
                replied: None,
                over_limit: Vec::new(),
                cas_managed: Vec::new(),
                sloppy,
                is_delete,
                fallback_at: ctx.now.plus_ms(fallback_ms),
                deadline: at.deadline,
                sent: false,
            }),
        );
        local.timers.set(at.deadline, Timer::WriteDeadline(req));
        if sloppy {
            local
                .timers
                .set(ctx.now.plus_ms(fallback_ms), Timer::WriteFallback(req));
        }
        if !keeps_identity {
            // A new version (a new dot) must not leave before it is durable here.
            local.durability.mark_unsynced(skey);
        }
        let lww = matches!(self.in_flight[&req].object, Object::Lww(_));
        if lww && local.durability.mark_covers(timestamp) {
            // The replicas' fsyncs run alongside ours: W acks cost one fsync, not two. Only
            // when a durable clock mark covers the timestamp: a crash before our fsync must
            // not let this node issue older timestamps than one the replicas already hold.
            self.send(local, req);
        }
        if let Some(Waiter::LocalWrite(req)) = local.durability.wait(Waiter::LocalWrite(req)) {
            self.on_local_write(local, ctx.now, req, Ok(()));
        }
    }

    /// Sends the write to every other replica still pending (once).
    fn send(&mut self, local: &mut Local, req: RequestId) {
        let me = local.me();
        let Some(state) = self.in_flight.get_mut(&req) else {
            return;
        };
        if state.sent {
            return;
        }
        // One dot names one value: a new dot leaves only once the coordinator's own write is
        // durable (an lww write may leave earlier: its identity is a timestamp a durable
        // clock mark covers, checked by the caller).
        assert!(
            matches!(state.object, Object::Lww(_))
                || state
                    .slots
                    .iter()
                    .any(|s| s.node == me && s.outcome == Outcome::Acked),
            "a siblings write of {} left before its coordinator's write was durable",
            state.key
        );
        state.sent = true;
        for s in state
            .slots
            .iter()
            .filter(|s| s.node != me && s.outcome == Outcome::Pending)
        {
            local.out.send(s.node, state.message(s, req));
        }
    }

    /// The coordinator's own write is durable (or failed): replicate it.
    pub(crate) fn on_local_write(
        &mut self,
        local: &mut Local,
        now: Timestamp,
        req: RequestId,
        result: Result<(), StoreError>,
    ) {
        let me = local.me();
        let Some(state) = self.in_flight.get_mut(&req) else {
            return;
        };
        let slot = state
            .slots
            .iter_mut()
            .find(|s| s.node == me)
            .expect("the coordinator is one of the replicas");
        match result {
            Ok(()) => {
                slot.outcome = Outcome::Acked;
                let late = now >= state.fallback_at;
                self.send(local, req);
                if late {
                    // The fallback time passed while the local sync ran.
                    self.fallbacks(local, now, req);
                }
            }
            Err(reason) => {
                // Nothing left this node; fail the request at once.
                slot.outcome = Outcome::Failed {
                    reason: format!("local write failed: {reason}"),
                };
                let sent = state.sent;
                for s in state
                    .slots
                    .iter_mut()
                    .filter(|s| s.outcome == Outcome::Pending && !sent)
                {
                    s.outcome = Outcome::Failed {
                        reason: "not sent: the coordinator's write failed".into(),
                    };
                }
            }
        }
        self.settle(local, now, req);
    }

    /// Primaries that have not answered by the fallback time get a fallback each (Dynamo: "if
    /// a node is down or slow, the write goes to the next healthy node with a hint").
    pub(crate) fn fallbacks(&mut self, local: &mut Local, now: Timestamp, req: RequestId) {
        let me = local.me();
        let Some(state) = self.in_flight.get_mut(&req) else {
            return;
        };
        // Only once the write went out (for `siblings` writes: once the coordinator's own
        // write, and so its dot, is durable) may it go to fallbacks.
        if !state.sent || !state.sloppy || state.replied.is_some() {
            return;
        }
        let slow: Vec<NodeId> = state
            .slots
            .iter()
            .filter(|s| s.role == Role::Primary && s.node != me && s.outcome == Outcome::Pending)
            .filter(|s| !state.slots.iter().any(|f| f.hint_for == Some(s.node)))
            .map(|s| s.node)
            .collect();
        let before = state.slots.len();
        for owner in slow {
            local.add_fallback(state.partition, &mut state.slots, owner, now);
        }
        for s in &state.slots[before..] {
            local.out.send(s.node, state.message(s, req));
        }
    }

    pub(crate) fn on_replicate_response(
        &mut self,
        local: &mut Local,
        now: Timestamp,
        from: NodeId,
        req: RequestId,
        result: Result<(), ReplicaError>,
    ) {
        let Some(state) = self.in_flight.get_mut(&req) else {
            return;
        };
        let Some(slot) = quorum::pending_slot(&mut state.slots, from) else {
            return; // not asked, or a duplicate
        };
        match &result {
            Err(ReplicaError::ObjectLimit(why)) => state.over_limit.push((from, why.clone())),
            Err(ReplicaError::CasManaged) => state.cas_managed.push(from),
            _ => {}
        }
        slot.outcome = match result {
            Ok(()) => Outcome::Acked,
            Err(e) => Outcome::Failed {
                reason: e.to_string(),
            },
        };
        self.settle(local, now, req);
    }

    pub(crate) fn on_deadline(&mut self, local: &mut Local, now: Timestamp, req: RequestId) {
        if let Some(state) = self.in_flight.get_mut(&req) {
            quorum::time_out(&mut state.slots, state.started, now);
            self.settle(local, now, req);
        }
    }

    /// Replies once the outcome is known (W acked, or W out of reach), and ends the request
    /// once no replica is pending.
    fn settle(&mut self, local: &mut Local, now: Timestamp, req: RequestId) {
        let Some(state) = self.in_flight.get_mut(&req) else {
            return;
        };
        let acked = quorum::count(&state.slots, &Outcome::Acked);
        let pending = quorum::count(&state.slots, &Outcome::Pending);
        let needed = state.needed as usize;
        if state.replied.is_none() && (acked >= needed || acked + pending < needed) {
            // Brief only for a success: an error's message is made from its receipt.
            let detail = if acked >= needed {
                state.reply_to.receipt_detail()
            } else {
                ReceiptDetail::Full
            };
            let receipt = local.receipt(
                detail,
                state.partition,
                state.needed,
                &state.slots,
                vec![],
                state.started,
                now,
            );
            let result = if acked >= needed {
                Ok(ClientResponse::Written {
                    context: state.object.context(),
                    receipt,
                })
            } else if let Some(node) = state.cas_managed.first() {
                // Indeterminate too: replicas without the key's Paxos state may hold it.
                let mut e = cas_managed_error(&state.key, Some(*node));
                e.receipt = Some(receipt);
                Err(e)
            } else if let Some((node, why)) = state.over_limit.first() {
                // Indeterminate like any quorum failure (this node and others may hold the
                // write), with the reason and the way out.
                let mut e = quorum_error("write", receipt);
                e.message = format!("{}; replica {node} refused it: {why}", e.message);
                Err(e)
            } else {
                Err(quorum_error("write", receipt))
            };
            local.out.reply(state.reply_to, result);
            self.next_reply += 1;
            state.replied = Some(self.next_reply);
            if pending > 0 {
                self.lingering.insert((self.next_reply, req));
                if self.lingering.len() > WRITES_LINGERING_MAX
                    && let Some((_, oldest)) = self.lingering.first().copied()
                {
                    self.on_deadline(local, now, oldest);
                }
                return;
            }
        }
        if pending > 0 {
            return;
        }
        let Some(state) = self.in_flight.remove(&req) else {
            return;
        };
        let replied = state.replied.expect("a write ends only after its reply");
        self.lingering.remove(&(replied, req));
        local
            .timers
            .cancel(state.deadline, Timer::WriteDeadline(req));
        if state.sloppy {
            local
                .timers
                .cancel(state.fallback_at, Timer::WriteFallback(req));
        }
        let me = local.me();
        let all_primaries = state
            .slots
            .iter()
            .all(|s| s.role == Role::Primary && s.outcome == Outcome::Acked);
        let durable_here = state
            .slots
            .iter()
            .any(|s| s.node == me && s.outcome == Outcome::Acked);
        let missed = state
            .slots
            .iter()
            .filter(|s| {
                s.role == Role::Primary
                    && s.node != me
                    && matches!(s.outcome, Outcome::Failed { .. })
                    && !state.over_limit.iter().any(|(n, _)| *n == s.node)
                    && !state.cas_managed.contains(&s.node)
                    && !state
                        .slots
                        .iter()
                        .any(|f| f.hint_for == Some(s.node) && f.outcome == Outcome::Acked)
            })
            .map(|s| s.node)
            // A write compare-and-set's replicas refused gets no hint at all: its handoff
            // would bypass the refusal.
            .filter(|_| durable_here && state.cas_managed.is_empty())
            .collect();
        self.done.push(WriteDone {
            reapable: state.is_delete && (all_primaries || planted().reap_early),
            key: state.key,
            object: state.object,
            missed,
        });
    }
}

/// The object a write bound to the version its context names makes (validated: an `lww`
/// bucket, a one-entry context): that version's tombstone, or that version with a new TTL
/// and a new TTL-change stamp (its value taken from the store when this node holds the
/// version, else from the client, which read it). Merged into any replica, it changes that
/// version only: a newer one stays.
fn version_bound<S: Store>(
    local: &mut Local,
    ctx: &mut Ctx<'_, S>,
    write: &WriteRequest,
    op: VersionOp,
    partition: PartitionId,
) -> Result<Object, ClientError> {
    let (writer, ts) = write
        .context
        .as_ref()
        .and_then(|c| c.0.iter().next())
        .map(|(n, t)| (*n, Hlc(*t)))
        .ok_or_else(|| ClientError::new(ErrorCode::InvalidContext, "no version named"))?;
    // A context is client input: a version stamped beyond the skew bound cannot exist here
    // (no path stores one), and a tombstone or TTL change at that time would outlive every
    // later write.
    check_skew(ts, ctx.now, local.config.max_clock_skew_ms).map_err(|e| {
        ClientError::new(
            ErrorCode::InvalidContext,
            format!("the context names a version this cluster cannot hold: {e}"),
        )
    })?;
    let version = match op {
        VersionOp::Delete => LwwValue::version_delete(writer, ts),
        VersionOp::Touch => {
            let stored = local
                .load(ctx.store, &write.key.storage_key(partition))
                .map_err(|e| ClientError::new(ErrorCode::StoreFailed, e.to_string()))?;
            let mut sibling = match stored {
                Some(Object::Lww(v))
                    if v.writer == writer && v.sibling.timestamp == ts && !v.sibling.tombstone =>
                {
                    // A later change of this version's TTL is stamped after the last one.
                    let _ = local
                        .hlc
                        .observe(v.touched, ctx.now, local.config.max_clock_skew_ms);
                    v.sibling
                }
                _ => Sibling::value(
                    write.value.clone().unwrap_or_default(),
                    &write.content_type,
                    ts,
                ),
            };
            sibling.expires_at = write.expiry.map(|e| e.deadline(ctx.now.0));
            LwwValue {
                writer,
                sibling,
                touched: local.hlc.now(ctx.now),
            }
        }
    };
    Ok(Object::Lww(version))
}

/// `fixed` merged into the stored object, and `fixed`'s newest timestamp.
fn merge_stored<S: Store>(
    local: &mut Local,
    ctx: &mut Ctx<'_, S>,
    skey: &[u8],
    fixed: Object,
) -> Result<(Object, Hlc, Option<u64>), ClientError> {
    let failed = |e: String| ClientError::new(ErrorCode::StoreFailed, e);
    let timestamp = fixed.max_timestamp();
    let stored = local
        .load_for_write(ctx.store, skey)
        .map_err(|e| failed(e.to_string()))?;
    let previous = stored.as_ref().and_then(Object::expires_at);
    let object = match stored {
        None => fixed,
        Some(stored) => stored.merge(&fixed).map_err(|e| failed(e.to_string()))?,
    };
    Ok((object, timestamp, previous))
}

/// The object a write makes: the stored one updated with the new value or tombstone (a DVV
/// event on the client's context, or a newer lww register), and its timestamp.
fn new_object<S: Store>(
    local: &mut Local,
    ctx: &mut Ctx<'_, S>,
    skey: &[u8],
    write: &mut WriteRequest,
    props: &BucketProps,
) -> Result<(Object, Hlc, Option<u64>), ClientError> {
    let stored = local
        .load_for_write(ctx.store, skey)
        .map_err(|e| ClientError::new(ErrorCode::StoreFailed, e.to_string()))?;
    let previous = stored.as_ref().and_then(Object::expires_at);
    if let Some(stored) = &stored {
        // Move this node's clock past what the key already holds, so the new value is newer.
        let _ = local.hlc.observe(
            stored.max_timestamp(),
            ctx.now,
            local.config.max_clock_skew_ms,
        );
    }
    if props.conflicts == ConflictMode::Lww
        && !planted().lww_ignores_context
        && let Some(seen) = write.context.as_ref().and_then(|c| c.0.values().max())
    {
        // An lww context names the version a read saw (its timestamp): a write carrying it
        // is stamped after it, even when this replica has not got that version yet. (Within
        // the skew bound: a context from the far future does not drag the clock along.)
        let _ = local
            .hlc
            .observe(Hlc(*seen), ctx.now, local.config.max_clock_skew_ms);
    }
    if let Some(update) = write.collection.take() {
        let (object, timestamp) = updated_collection(local, ctx, stored, &update)?;
        // In the form every replica stores it (the bucket's truncation mark applied), so that
        // copies of equal content are equal bytes (one Merkle hash).
        let truncated = match local.after_truncation(&write.key.bucket, Cow::Borrowed(&object)) {
            Some(Cow::Owned(o)) => Some(o),
            _ => None,
        };
        let object = truncated.unwrap_or(object);
        return Ok((object, timestamp, previous));
    }
    let timestamp = local.hlc.now(ctx.now);
    let expiry = write.expiry.or(props
        .ttl_secs
        .map(|s| Expiry::AfterMs(s.saturating_mul(1000))));
    let mut sibling = match write.value.take() {
        Some(value) => Sibling::value(value, &write.content_type, timestamp),
        None => Sibling::tombstone(timestamp),
    };
    if !sibling.tombstone {
        sibling.expires_at = expiry.map(|e| e.deadline(ctx.now.0));
    }
    let object = match props.conflicts {
        ConflictMode::Siblings => {
            let base = match stored {
                Some(Object::Siblings(d)) => d,
                None => Default::default(),
                Some(Object::Lww(_) | Object::Collection(_)) => {
                    return Err(ClientError::new(
                        ErrorCode::StoreFailed,
                        "stored object is lww in a siblings bucket",
                    ));
                }
            };
            // A delete without a context removes what this coordinator holds (Riak's
            // way), never nothing: a tombstone that covers no value would be a silent no-op.
            let context = match write.context.take() {
                Some(c) => c,
                None if sibling.tombstone => base.context(),
                None => Default::default(),
            };
            let (d, _dot) = base
                .update_from(&context, sibling, local.me(), timestamp.0)
                .map_err(|e| ClientError::new(ErrorCode::TooManySiblings, e.to_string()))?;
            Object::Siblings(d)
        }
        ConflictMode::Lww => {
            let new = Object::Lww(LwwValue::new(local.me(), sibling));
            match stored.map(|l| l.merge(&new)) {
                None => new,
                Some(Ok(merged)) => merged,
                Some(Err(e)) => {
                    return Err(ClientError::new(ErrorCode::StoreFailed, e.to_string()));
                }
            }
        }
    };
    Ok((object, timestamp, previous))
}

/// The object a hash or set update makes of the stored one: the update applied to the
/// stored collection of its kind under a new dot (or to a new collection, when the key is
/// absent, deleted, expired or of another type without elements), merged with what is
/// stored (so a type it replaces stays replaced); `WrongType` when the key holds a live
/// value or a collection of the other kind.
fn updated_collection<S: Store>(
    local: &mut Local,
    ctx: &mut Ctx<'_, S>,
    stored: Option<Object>,
    update: &CollectionUpdate,
) -> Result<(Object, Hlc), ClientError> {
    let now_ms = ctx.now.0;
    let base = match &stored {
        Some(Object::Collection(c)) if c.kind == update.kind => (**c).clone(),
        Some(o) if o.is_live_at(now_ms) => return Err(wrong_type()),
        _ => Collection::new(update.kind),
    };
    let stamp = local.hlc.now(ctx.now);
    let mut updated = base;
    updated.apply(update, local.me(), stamp, now_ms);
    let new = Object::Collection(Box::new(updated));
    let object = match stored {
        Some(stored) => stored
            .merge(&new)
            .map_err(|e| ClientError::new(ErrorCode::StoreFailed, e.to_string()))?,
        None => new,
    };
    if let Some(why) = object.collection().and_then(Collection::over_limits) {
        return Err(ClientError::new(ErrorCode::ValueTooLarge, why));
    }
    Ok((object, stamp))
}

/// Redis's refusal of an operation on a key of another type, word for word.
pub(crate) fn wrong_type() -> ClientError {
    ClientError::new(
        ErrorCode::WrongType,
        "WRONGTYPE Operation against a key holding the wrong kind of value",
    )
}
