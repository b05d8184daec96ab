//! Read coordination: GET of one key, answered at R replicas, with read repair.
//!
//! Source: DeCandia et al., "Dynamo" (SOSP 2007), §4.5 (get execution), §4.7 (read repair);
//! Cassandra's speculative retry.
//!
//! ```text
//! client ─▶ any node (coordinator)
//!   ReadRequest to R replicas: itself first (no hop), then the preference order; the rest
//!   │ when one asked fails, or after `read_retry_after_ms` (0: all N at once)
//!   │ digest reads: when it reads the key itself as a primary (and has its answer now),
//!   │ the other primaries are asked for the digest of what they store and the truncation
//!   │ mark they read it under (ReadDigestRequest); a digest equal to its own counts as its
//!   │ own answer, one that differs is followed by a ReadRequest
//!   │ sloppy: a fallback asked for its hint (HintReadRequest) in place of a replica down
//!   ├ at R answers: merge, reply (visible siblings, context, receipt), RepairRequest(merged)
//!   │ to every answering primary that differs
//!   └ when all asked answered, or at the deadline: repair the late answerers too
//! ```
//!
//! Invariants:
//! * A reply merges at least R answers (or is a quorum error); exactly one reply per request.
//! * Read repair only sends the join of what replicas hold: it never invents a version.
//! * Only primaries are repaired (fallbacks hold hints, not replicas); a replica not asked is
//!   left to hints and anti-entropy.
//! * This node's own answer never ships a dot of its own that is not durable yet.
//! * A digest answer counts only if it equals this node's own (then it stands for that
//!   answer: equal stored bytes under equal truncation marks, equal answers); else the
//!   replica's object is asked for.

use crate::bugs::planted;
use crate::id_map::IdMap;
use crate::ids::{NodeId, PartitionId, RequestId, Timestamp};
use crate::key::ObjectKey;
use crate::limits::{OBJECT_BYTES_MAX, SIBLINGS_MAX};
use crate::message::{ClientResponse, Digest, Message, Outcome, ReplicaError, Role, encode_object};
use crate::store::{Store, StoreError};
use crate::version::{Object, VersionVector};
use smallvec::SmallVec;
use std::borrow::Cow;

use super::durability::Waiter;
use super::handoff::hint_read;
use super::io::{Ctx, ReceiptDetail, ReplyTo};
use super::local::Local;
use super::quorum::{self, Placement, Slot, Slots, quorum_error};
use super::timers::Timer;

#[derive(Debug)]
struct ReadState {
    reply_to: ReplyTo,
    key: ObjectKey,
    partition: PartitionId,
    needed: u8,
    slots: Slots,
    answers: Answers,
    started: Timestamp,
    replied: bool,
    /// How many responses the reply's merge and read repair saw: the end repeats them only
    /// if more came since.
    merged_responses: usize,
    /// Replicas not asked yet (beyond R), with the primary a fallback stands in for; asked
    /// when one asked fails or at the retry timer, and dropped from the receipt once R have
    /// answered.
    unasked: Asks,
    /// When the read times out.
    deadline: Timestamp,
    /// The one timer the read has in the queue: the retry while replicas are unasked and
    /// its time comes before the deadline, then the deadline (one insert and one removal
    /// per read in the common case, where the read ends before its retry time).
    armed: (Timestamp, Timer),
    /// Whether other primaries are asked for digests: this node reads the key itself, as a
    /// primary, and a digest equal to its own stands for its answer (no object sent,
    /// encrypted, decoded and compared).
    digests: bool,
    /// This node's own answer, as far as digests are compared with it.
    own: Own,
    /// Primaries whose digest differed, asked for their object since: a duplicate of their
    /// digest asks nothing more.
    fetched: SmallVec<[NodeId; 2]>,
}

/// This node's own answer to a read that asks for digests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Own {
    /// Not in yet (it waits for a sync: the others are asked for their objects meanwhile, so
    /// R of them answer without it).
    Pending,
    /// In: the digest of the bytes it read (`None`: nothing stored).
    Read(Option<Digest>),
    /// It failed: digests have nothing to be compared with.
    Failed,
}

/// A read's answers so far, and what read repair sent.
#[derive(Debug, Default)]
struct Answers {
    /// In node order, at most one per node (inline: a read asks R or N replicas, and a map
    /// allocated a node of eleven objects per read).
    responses: SmallVec<[(NodeId, Option<Object>); 3]>,
    /// Primaries whose digest equalled this node's own answer: each stands for that answer
    /// (in `responses`) without a copy of it.
    echoes: SmallVec<[NodeId; 2]>,
    /// Object last sent to each replica as read repair (empty unless replicas differed).
    repaired: Vec<(NodeId, Object)>,
}

impl Answers {
    /// How many replicas have answered, echoes included.
    fn count(&self) -> usize {
        self.responses.len() + self.echoes.len()
    }

    /// The join of the answers as the bucket's truncation leaves it (a replica that has not
    /// heard of a truncation yet answers its older values), after sending it as read repair
    /// to every primary that answered something else; with the primaries repaired.
    fn merge_and_repair<'a, S: Store>(
        &'a mut self,
        local: &mut Local,
        ctx: &mut Ctx<'_, S>,
        key: &ObjectKey,
        slots: &[Slot],
    ) -> (Option<Cow<'a, Object>>, Vec<NodeId>) {
        let merged =
            merge_all(&self.responses).and_then(|m| local.after_truncation(&key.bucket, m));
        let repairs = read_repair(
            local,
            ctx,
            key,
            slots,
            &self.responses,
            &self.echoes,
            &mut self.repaired,
            merged.as_deref(),
        );
        (merged, repairs)
    }
}

/// Replicas to ask, each with the primary it stands in for if it is a fallback.
type Asks = SmallVec<[(NodeId, Option<NodeId>); 4]>;

/// The reads this node coordinates.
#[derive(Debug, Default)]
pub(crate) struct Reads {
    /// Boxed, so a resize moves pointers, not the large state.
    in_flight: IdMap<RequestId, Box<ReadState>>,
}

impl Reads {
    pub(crate) fn len(&self) -> usize {
        self.in_flight.len()
    }

    pub(crate) fn start<S: Store>(
        &mut self,
        local: &mut Local,
        ctx: &mut Ctx<'_, S>,
        reply_to: ReplyTo,
        key: ObjectKey,
        at: Placement,
        sloppy: bool,
    ) {
        let Placement {
            partition,
            replicas,
            needed,
            deadline,
        } = at;
        let req = local.out.new_request(ctx.rng);
        let slots = local.slots_for(partition, &replicas, ctx.now, sloppy);
        let me = local.me();
        // This node first (no network hop), then the preference order.
        let mut asked: Asks = slots
            .iter()
            .filter(|s| s.outcome == Outcome::Pending)
            .map(|s| (s.node, s.hint_for))
            .collect();
        asked.sort_by_key(|(n, _)| *n != me);
        let digests = local.config.digest_reads && asked.first() == Some(&(me, None));
        let retry_after = local.config.read_retry_after_ms;
        let unasked = if retry_after > 0 && asked.len() > needed as usize {
            asked.drain(needed as usize..).collect()
        } else {
            Asks::new()
        };
        let retry_at = ctx.now.plus_ms(retry_after);
        let armed = if !unasked.is_empty() && retry_at < deadline {
            (retry_at, Timer::ReadRetry(req))
        } else {
            (deadline, Timer::ReadDeadline(req))
        };
        local.timers.set(armed.0, armed.1);
        self.in_flight.insert(
            req,
            Box::new(ReadState {
                reply_to,
                key,
                partition,
                needed,
                slots,
                answers: Answers::default(),
                started: ctx.now,
                replied: false,
                merged_responses: 0,
                unasked,
                deadline,
                armed,
                digests,
                own: Own::Pending,
                fetched: SmallVec::new(),
            }),
        );
        if asked.is_empty() {
            // Replicas believed down may already make R unreachable.
            return self.settle(local, ctx, req);
        }
        self.ask(local, ctx, req, asked);
    }

    /// Sends read requests to `replicas`, this node's own read first (answered at once, or
    /// after the sync that makes its own write of the key durable). Other primaries are asked
    /// for digests only while this node has an answer of its own to compare them with: while
    /// it waits for a sync, or after its read failed, they are asked for their objects, so R
    /// of them still answer without it.
    fn ask<S: Store>(
        &mut self,
        local: &mut Local,
        ctx: &mut Ctx<'_, S>,
        req: RequestId,
        replicas: Asks,
    ) {
        let me = local.me();
        let Some(state) = self.in_flight.get(&req) else {
            return;
        };
        let (key, partition) = (state.key.clone(), state.partition);
        let (digests, own) = (state.digests, state.own);
        // This node's own answer, read now and taken in once the others are asked.
        let mut own_read = None;
        let mut own_hint = None;
        match replicas.iter().find(|(n, _)| *n == me) {
            Some((_, None)) => {
                // The partition the read started with: not hashed again.
                let skey = key.storage_key(partition);
                let waiter = Waiter::LocalRead {
                    req,
                    key: key.clone(),
                };
                match local.durability.wait_for_key(&skey, waiter) {
                    // Nothing to wait for: read by the storage key already built.
                    Some((_, Ok(()))) => {
                        own_read = Some(local.load_with_digest(ctx.store, &skey, digests));
                    }
                    Some((_, Err(e))) => {
                        own_read = Some((Err(ReplicaError::Store(e.to_string())), None))
                    }
                    None => {} // after the sync: `on_local_synced`
                }
            }
            Some((_, Some(owner))) => {
                own_hint = Some(hint_read(local, ctx.store, ctx.now, *owner, &key));
            }
            None => {}
        }
        let digests = digests
            && match own {
                Own::Read(_) => true,
                Own::Failed => false,
                Own::Pending => matches!(own_read, Some((Ok(_), _))),
            };
        for (to, hint_for) in replicas.iter().copied().filter(|(n, _)| *n != me) {
            let message = match hint_for {
                None if digests => Message::ReadDigestRequest {
                    req,
                    key: key.clone(),
                },
                None => Message::ReadRequest {
                    req,
                    key: key.clone(),
                },
                Some(owner) => Message::HintReadRequest {
                    req,
                    key: key.clone(),
                    owner,
                },
            };
            local.out.send(to, message);
        }
        if let Some((result, digest)) = own_read {
            self.on_own_answer(local, ctx, req, result, digest);
        }
        if let Some(result) = own_hint {
            self.on_response(local, ctx, me, req, result);
        }
    }

    /// This node's own answer, once the sync it waited for finished.
    pub(crate) fn on_local_synced<S: Store>(
        &mut self,
        local: &mut Local,
        ctx: &mut Ctx<'_, S>,
        req: RequestId,
        key: &ObjectKey,
        synced: Result<(), StoreError>,
    ) {
        let digests = self.in_flight.get(&req).is_some_and(|s| s.digests);
        let (result, digest) = match synced {
            Ok(()) => local.load_with_digest(ctx.store, &local.locate(key).1, digests),
            Err(e) => (Err(ReplicaError::Store(e.to_string())), None),
        };
        self.on_own_answer(local, ctx, req, result, digest);
    }

    /// This node's own answer as a primary, with the digest of the bytes it read.
    fn on_own_answer<S: Store>(
        &mut self,
        local: &mut Local,
        ctx: &mut Ctx<'_, S>,
        req: RequestId,
        result: Result<Option<Object>, ReplicaError>,
        digest: Option<Digest>,
    ) {
        let Some(state) = self.in_flight.get_mut(&req) else {
            return;
        };
        state.own = match result {
            Ok(_) => Own::Read(digest),
            Err(_) => Own::Failed,
        };
        let me = local.me();
        self.on_response(local, ctx, me, req, result);
    }

    /// A primary's digest: its answer if it equals this node's own; else (or if this node has
    /// no answer to compare it with) the primary is asked for the object, once, and its slot
    /// waits for it.
    pub(crate) fn on_digest<S: Store>(
        &mut self,
        local: &mut Local,
        ctx: &mut Ctx<'_, S>,
        from: NodeId,
        req: RequestId,
        result: Result<Option<Digest>, ReplicaError>,
    ) {
        let me = local.me();
        let Some(state) = self.in_flight.get_mut(&req) else {
            return;
        };
        let asked = state
            .slots
            .iter()
            .any(|s| s.node == from && s.outcome == Outcome::Pending);
        if !state.digests || from == me || !asked || state.fetched.contains(&from) {
            return; // not asked for a digest, or a duplicate
        }
        let digest = match result {
            Ok(digest) => digest,
            Err(e) => return self.on_response(local, ctx, from, req, Err(e)),
        };
        let own = state
            .answers
            .responses
            .iter()
            .find(|(n, _)| *n == me)
            .map(|(_, o)| o);
        match (state.own, own) {
            (Own::Read(mine), Some(own)) if mine == digest || planted().digest_mismatch_ignored => {
                let outcome = read_outcome(own.as_ref());
                let Some(slot) = quorum::pending_slot(&mut state.slots, from) else {
                    return;
                };
                slot.outcome = outcome;
                state.answers.echoes.push(from);
                self.settle(local, ctx, req);
            }
            _ => {
                state.fetched.push(from);
                let key = state.key.clone();
                local.out.send(from, Message::ReadRequest { req, key });
            }
        }
    }

    pub(crate) fn on_response<S: Store>(
        &mut self,
        local: &mut Local,
        ctx: &mut Ctx<'_, S>,
        from: NodeId,
        req: RequestId,
        result: Result<Option<Object>, ReplicaError>,
    ) {
        let Some(state) = self.in_flight.get_mut(&req) else {
            return;
        };
        let Some(slot) = quorum::pending_slot(&mut state.slots, from) else {
            return; // not asked, or a duplicate
        };
        match result {
            Ok(object) => {
                slot.outcome = read_outcome(object.as_ref());
                // `pending_slot` let this node through once: no answer of it is held yet.
                let responses = &mut state.answers.responses;
                let at = responses.partition_point(|(n, _)| *n < from);
                responses.insert(at, (from, object));
            }
            Err(e) => {
                slot.outcome = Outcome::Failed {
                    reason: e.to_string(),
                }
            }
        }
        self.settle(local, ctx, req);
    }

    /// The retry timer: replicas beyond R are asked too, and the deadline is armed.
    pub(crate) fn on_retry<S: Store>(
        &mut self,
        local: &mut Local,
        ctx: &mut Ctx<'_, S>,
        req: RequestId,
    ) {
        let Some(state) = self.in_flight.get_mut(&req) else {
            return;
        };
        state.armed = (state.deadline, Timer::ReadDeadline(req));
        local.timers.set(state.armed.0, state.armed.1);
        if !state.replied && !state.unasked.is_empty() {
            let replicas = std::mem::take(&mut state.unasked);
            self.ask(local, ctx, req, replicas);
        }
    }

    /// Asks more replicas when one asked failed, replies once R answered or R is out of
    /// reach, and ends the request (with a last read repair) once nobody is pending.
    fn settle<S: Store>(&mut self, local: &mut Local, ctx: &mut Ctx<'_, S>, req: RequestId) {
        let now = ctx.now;
        let Some(state) = self.in_flight.get_mut(&req) else {
            return;
        };
        let answered = state.answers.count();
        let unasked = state.unasked.len();
        let pending = quorum::count(&state.slots, &Outcome::Pending);
        let in_flight = pending - unasked;
        let needed = state.needed as usize;
        if !state.replied && answered + in_flight < needed && unasked > 0 {
            // One asked replica failed: ask as many more as R still needs.
            let more = (needed - answered - in_flight).min(unasked);
            let replicas: Asks = state.unasked.drain(..more).collect();
            return self.ask(local, ctx, req, replicas);
        }
        if !state.replied && answered >= needed {
            // R answered: the replicas never asked leave the receipt (and the coordination).
            let unasked = std::mem::take(&mut state.unasked);
            state
                .slots
                .retain(|s| !unasked.iter().any(|(n, _)| *n == s.node));
            let state = &mut **state;
            let (merged, repairs) =
                state
                    .answers
                    .merge_and_repair(local, ctx, &state.key, &state.slots);
            state.merged_responses = answered;
            let receipt = local.receipt(
                state.reply_to.receipt_detail(),
                state.partition,
                state.needed,
                &state.slots,
                repairs,
                state.started,
                now,
            );
            let (context, siblings) = match merged.as_deref() {
                Some(o) => (
                    o.context(),
                    o.visible_at(now.0).into_iter().cloned().collect(),
                ),
                None => (VersionVector::default(), vec![]),
            };
            let collection = merged
                .as_deref()
                .and_then(Object::collection)
                .map(|c| Box::new(c.view(now.0)));
            // What an lww read shows depends on this node's clock (expiry): if the clock
            // jumped while the read was in flight, refuse rather than judge by it.
            let answer = match (
                merged.as_deref(),
                local.clock_allows("reads of lww buckets"),
            ) {
                (Some(Object::Lww(_) | Object::Collection(_)), Err(e)) => Err(e),
                _ => Ok(ClientResponse::Read {
                    context,
                    siblings,
                    receipt,
                    collection,
                }),
            };
            local.out.reply(state.reply_to, answer);
            state.replied = true;
        } else if !state.replied && answered + pending < needed {
            reply_quorum_error(local, state, now);
        }
        if state.slots.iter().all(|s| s.outcome != Outcome::Pending) {
            self.finish(local, ctx, req);
        }
    }

    /// The deadline: answer with the quorum error if not answered yet, then repair whoever
    /// answered stale, as when every replica has answered.
    pub(crate) fn on_deadline<S: Store>(
        &mut self,
        local: &mut Local,
        ctx: &mut Ctx<'_, S>,
        req: RequestId,
    ) {
        let Some(state) = self.in_flight.get_mut(&req) else {
            return;
        };
        quorum::time_out(&mut state.slots, state.started, ctx.now);
        if !state.replied {
            reply_quorum_error(local, state, ctx.now);
        }
        self.finish(local, ctx, req);
    }

    /// Every replica has answered or the deadline passed: repair whoever is still stale.
    fn finish<S: Store>(&mut self, local: &mut Local, ctx: &mut Ctx<'_, S>, req: RequestId) {
        let Some(mut state) = self.in_flight.remove(&req) else {
            return;
        };
        assert!(state.replied, "a read ends only after its reply");
        local.timers.cancel(state.armed.0, state.armed.1);
        if state.answers.count() == state.merged_responses {
            // Nobody answered since the reply merged and repaired.
            return;
        }
        let state = &mut *state;
        state
            .answers
            .merge_and_repair(local, ctx, &state.key, &state.slots);
    }
}

/// A replica's slot once it answered `object` (or an echo of it).
fn read_outcome(object: Option<&Object>) -> Outcome {
    Outcome::Read {
        version: object.map(Object::context),
        siblings: object.map_or(0, |o| o.sibling_count() as u32),
    }
}

/// Answers that R cannot be reached (or was not by the deadline).
fn reply_quorum_error(local: &mut Local, state: &mut ReadState, now: Timestamp) {
    let receipt = local.receipt(
        ReceiptDetail::Full,
        state.partition,
        state.needed,
        &state.slots,
        vec![],
        state.started,
        now,
    );
    local
        .out
        .reply(state.reply_to, Err(quorum_error("read", receipt)));
    state.replied = true;
}

/// Sends `merged` to every primary that answered with something else and was not already
/// sent it (an echo answered what this node did). Returns the replicas repaired, in node
/// order.
#[allow(clippy::too_many_arguments)]
fn read_repair<S: Store>(
    local: &mut Local,
    ctx: &mut Ctx<'_, S>,
    key: &ObjectKey,
    slots: &[Slot],
    responses: &[(NodeId, Option<Object>)],
    echoes: &[NodeId],
    repaired: &mut Vec<(NodeId, Object)>,
    merged: Option<&Object>,
) -> Vec<NodeId> {
    let Some(merged) = merged else { return vec![] };
    if planted().skip_read_repair {
        return vec![];
    }
    let sent = |n: NodeId, repaired: &[(NodeId, Object)]| {
        repaired.iter().find(|(r, _)| *r == n).map(|(_, o)| o) == Some(merged)
    };
    let me = local.me();
    let own = responses.iter().find(|(n, _)| *n == me).map(|(_, o)| o);
    let mut stale: Vec<NodeId> = responses
        .iter()
        .map(|(n, o)| (*n, o))
        .chain(echoes.iter().filter_map(|n| Some((*n, own?))))
        // Fallbacks hold hints, not replicas: only primaries are repaired.
        .filter(|(n, _)| {
            slots
                .iter()
                .any(|s| s.node == *n && s.role == Role::Primary)
        })
        .filter(|(n, o)| o.as_ref() != Some(merged) && !sent(*n, repaired))
        .map(|(n, _)| n)
        .collect();
    stale.sort_unstable();
    // A union past the limits is returned to the client (whose write with its context
    // resolves it) but stored nowhere: every replica would refuse it.
    if stale.is_empty()
        || merged.sibling_count() > SIBLINGS_MAX
        || encode_object(merged).len() > OBJECT_BYTES_MAX
    {
        return vec![];
    }
    for n in &stale {
        match repaired.iter_mut().find(|(r, _)| r == n) {
            Some((_, o)) => *o = merged.clone(),
            None => repaired.push((*n, merged.clone())),
        }
        if *n == local.me() {
            // Repairing ourselves: a plain write, synced with the next group.
            let _ = local.merge_into_store(ctx, key, merged);
        } else {
            local.out.send(
                *n,
                Message::RepairRequest {
                    key: key.clone(),
                    object: merged.clone(),
                },
            );
        }
    }
    stale
}

/// The join of every answer (objects of another conflict mode than the first are skipped:
/// a bucket's mode never changes, so this only happens with corrupt data). Borrowed while
/// the answers agree (the join is idempotent), as they do in the common case: no copy.
fn merge_all(answers: &[(NodeId, Option<Object>)]) -> Option<Cow<'_, Object>> {
    let mut out: Option<Cow<'_, Object>> = None;
    for (_, o) in answers {
        let Some(o) = o else { continue };
        out = Some(match out {
            None => Cow::Borrowed(o),
            Some(acc) if *acc == *o => acc,
            Some(acc) => match acc.merge(o) {
                Ok(m) => Cow::Owned(m),
                Err(_) => acc,
            },
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hlc::Hlc;
    use crate::version::{Dvv, LwwValue, Sibling};

    fn siblings(values: &[&str], node: NodeId) -> Object {
        let mut dvv = Dvv::default();
        for v in values {
            let sibling = Sibling::value(v.as_bytes().to_vec(), "text/plain", Hlc(1));
            dvv = dvv
                .update(&VersionVector::default(), sibling, node)
                .expect("ok")
                .0;
        }
        Object::Siblings(dvv)
    }

    #[test]
    fn answers_that_agree_merge_without_a_copy() {
        let x = siblings(&["x"], NodeId(1));
        let answers = [
            (NodeId(1), Some(x.clone())),
            (NodeId(2), None),
            (NodeId(3), Some(x.clone())),
        ];
        let merged = merge_all(&answers).expect("two answers hold the key");
        assert!(matches!(merged, Cow::Borrowed(_)), "equal answers: no copy");
        assert_eq!(*merged, x);
        assert_eq!(merge_all(&[(NodeId(1), None), (NodeId(2), None)]), None);
    }

    #[test]
    fn answers_that_differ_merge_to_their_join_in_any_order() {
        let a = siblings(&["a"], NodeId(1));
        let b = siblings(&["b"], NodeId(2));
        let join = a.merge(&b).expect("same mode");
        assert_eq!(join.sibling_count(), 2, "concurrent writes: both kept");
        let ab = [(NodeId(1), Some(a.clone())), (NodeId(2), Some(b.clone()))];
        let ba = [(NodeId(1), Some(b)), (NodeId(2), Some(a.clone()))];
        assert_eq!(merge_all(&ab).map(Cow::into_owned), Some(join.clone()));
        assert_eq!(merge_all(&ba).map(Cow::into_owned), Some(join));
        // Another conflict mode than the first answer's (only corrupt data) is skipped.
        let lww = Object::Lww(LwwValue::new(
            NodeId(3),
            Sibling::value(b"c".to_vec(), "text/plain", Hlc(2)),
        ));
        let mixed = [(NodeId(1), Some(a.clone())), (NodeId(3), Some(lww))];
        assert_eq!(merge_all(&mixed).map(Cow::into_owned), Some(a));
    }
}
