//! Compare-and-set and serial reads: single-decree Paxos per key among its primaries. This
//! part is the driver: it sends each phase the coordinator (`crate::paxos::Coordinator`, a
//! pure state machine) asks for, feeds it the answers, takes ballots and stamps from this
//! node's clock, keeps the timers, and answers the client. It is also the acceptor side,
//! around `crate::paxos::AcceptorState`.
//!
//! Source: Lamport, "Paxos Made Simple" (2001); Cassandra's lightweight transactions
//! (`Paxos.md`: the prepare carries the read, an accepted proposal found in progress is
//! finished before anything else, a commit is synchronous at a quorum).
//!
//! Invariants:
//! * An acceptor answers a phase only after its state change (and a commit's data) is
//!   durable, in every durability mode (the sync is required).
//! * Ballots are taken only while this node's clock is trusted (`Local::clock_allows`), and
//!   acceptors refuse a ballot beyond the skew bound: no ballot or committed value carries a
//!   jumped clock.
//! * Sloppy quorums never vote: only primaries are asked, and a majority of them must answer.
//! * While one of a request's proposals may have been chosen, it ends only as applied or
//!   `outcome_unknown` (`Coordinator::give_up`), never as not applied.

use crate::bucket::{BucketProps, CasMode, ConflictMode};
use crate::hlc::check_skew;
use crate::ids::{NodeId, PartitionId, RequestId, Timestamp};
use crate::key::ObjectKey;
use crate::limits::{PAXOS_ATTEMPTS_MAX, PAXOS_BACKOFF_MS_MAX, PAXOS_COMMIT_LOG_MAX};
use crate::message::{
    CasAction, CasRequest, ClientError, ClientResponse, ErrorCode, Message, Outcome, PaxosAnswer,
    PaxosPhase, PaxosReceipt, PaxosRefusal, ReplicaError, decode_acceptor_state,
    encode_acceptor_state,
};
use crate::paxos::{
    AcceptorState, Ballot, CommitSeen, Coordinator, Decided, GiveUp, Next, StampError, value_id,
};
use crate::store::{Store, WriteBatch};
use crate::version::Object;
use rand::Rng;
use std::collections::{BTreeMap, VecDeque};

use super::durability::Waiter;
use super::io::{Ctx, ReceiptDetail, ReplyTo};
use super::local::Local;
use super::quorum::{Slots, pending_slot, quorum_error, time_out};
use super::timers::Timer;

/// Where acceptors keep their Paxos state: this partition, then the object's storage key.
pub const PAXOS_PARTITION: PartitionId = PartitionId(0xFFFF_FFFB);

pub(crate) fn state_key(skey: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + skey.len());
    out.extend_from_slice(&PAXOS_PARTITION.0.to_be_bytes());
    out.extend_from_slice(skey);
    out
}

/// How a round's outcome is told to its client: as a compare-and-set, or (in a
/// `cas = all_writes` bucket, where every write and default read goes through Paxos) as the
/// plain write or read the client sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AnswerAs {
    Cas,
    Written,
    Read,
}

#[derive(Debug)]
struct Round {
    reply_to: ReplyTo,
    answer_as: AnswerAs,
    key: ObjectKey,
    coord: Coordinator,
    partition: PartitionId,
    replicas: Vec<NodeId>,
    /// The current step's request id (answers to older steps are ignored) and its slots
    /// (for the receipt).
    step_req: RequestId,
    slots: Slots,
    started: Timestamp,
    deadline: Timestamp,
}

impl Round {
    /// Who answered the current step, for the client's receipt.
    fn receipt(&self, local: &Local, now: Timestamp) -> crate::message::Receipt {
        local.receipt(
            ReceiptDetail::Full,
            self.partition,
            self.coord.needed() as u8,
            &self.slots,
            vec![],
            self.started,
            now,
        )
    }
}

/// The commits this node's acceptor took of keys with compare-and-set rounds coordinated
/// here, since the first of them started (at most [`PAXOS_COMMIT_LOG_MAX`] a key): more
/// history than an acceptor's state keeps (a few commits), so a round whose own proposal
/// stayed in doubt while many commits passed (under contention, reads whose condition failed
/// commit too) can still prove it committed or never chosen
/// (`Coordinator::note_commits_here`) instead of answering `outcome_unknown`. Each entry is
/// a commit a coordinator sent after a majority accepted, as sound as those of a promise.
#[derive(Debug, Default)]
pub(crate) struct CommitLog {
    /// Key -> rounds coordinated here, and the commits taken since the first started.
    keys: BTreeMap<ObjectKey, (usize, VecDeque<CommitSeen>)>,
}

impl CommitLog {
    fn watch(&mut self, key: &ObjectKey) {
        self.keys.entry(key.clone()).or_default().0 += 1;
    }

    fn unwatch(&mut self, key: &ObjectKey) {
        if let Some((rounds, _)) = self.keys.get_mut(key) {
            *rounds -= 1;
            if *rounds == 0 {
                self.keys.remove(key);
            }
        }
    }

    fn record(&mut self, key: &ObjectKey, seen: CommitSeen) {
        if let Some((_, log)) = self.keys.get_mut(key) {
            if log.len() == PAXOS_COMMIT_LOG_MAX {
                log.pop_front();
            }
            log.push_back(seen);
        }
    }

    fn seen(&self, key: &ObjectKey) -> Vec<CommitSeen> {
        self.keys
            .get(key)
            .map(|(_, log)| log.iter().copied().collect())
            .unwrap_or_default()
    }
}

/// The compare-and-set requests this node coordinates.
#[derive(Debug, Default)]
pub(crate) struct Paxos {
    rounds: BTreeMap<RequestId, Round>,
    /// Step request -> round.
    steps: BTreeMap<RequestId, RequestId>,
    /// This node's own acceptor's answers to its own rounds, handled at the end of the call.
    own_answers: VecDeque<(RequestId, Result<PaxosAnswer, PaxosRefusal>)>,
}

impl Paxos {
    pub(crate) fn len(&self) -> usize {
        self.rounds.len()
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start<S: Store>(
        &mut self,
        local: &mut Local,
        ctx: &mut Ctx<'_, S>,
        reply_to: ReplyTo,
        answer_as: AnswerAs,
        request: CasRequest,
        (conflicts, ttl_default_ms): (ConflictMode, Option<u64>),
        partition: PartitionId,
        replicas: Vec<NodeId>,
        deadline: Timestamp,
    ) {
        let id = local.out.new_request(ctx.rng);
        local.commit_log.watch(&request.key);
        let coord = Coordinator::new(
            request.condition,
            request.action,
            ttl_default_ms,
            replicas.clone(),
        )
        .in_mode(conflicts, request.supersedes);
        self.rounds.insert(
            id,
            Round {
                reply_to,
                answer_as,
                key: request.key,
                coord,
                partition,
                replicas,
                step_req: id,
                slots: Slots::new(),
                started: ctx.now,
                deadline,
            },
        );
        local.timers.set(deadline, Timer::PaxosDeadline(id));
        self.prepare(local, ctx, id);
    }

    /// A new attempt: a ballot above every one seen, `Prepare` to every primary.
    fn prepare<S: Store>(&mut self, local: &mut Local, ctx: &mut Ctx<'_, S>, id: RequestId) {
        let Some(round) = self.rounds.get_mut(&id) else {
            return;
        };
        if round.coord.attempts >= PAXOS_ATTEMPTS_MAX {
            if round.coord.in_doubt() {
                return self.fail_unknown(local, ctx.now, id);
            }
            return self.fail_contended(local, ctx.now, id);
        }
        // A ballot is stamped by this node's clock, which may have jumped since the request
        // came: a ballot (and this node's clock) from a clock its peers disown would
        // poison the key.
        if let Err(e) = local.clock_allows("compare-and-set") {
            if round.coord.in_doubt() {
                return self.fail_unknown(local, ctx.now, id);
            }
            let round = self.remove(local, id).expect("the round is there");
            return local.out.reply(round.reply_to, Err(e));
        }
        if let Some(b) = round.coord.to_beat() {
            let _ = local
                .hlc
                .observe(b.hlc, ctx.now, local.config.max_clock_skew_ms);
        }
        let ballot = Ballot::new(local.hlc.now(ctx.now), local.me());
        let next = round.coord.prepare(ballot);
        self.follow(local, ctx, id, next);
    }

    /// Does what the coordinator asks, until it waits for answers.
    fn follow<S: Store>(
        &mut self,
        local: &mut Local,
        ctx: &mut Ctx<'_, S>,
        id: RequestId,
        mut next: Next,
    ) {
        loop {
            next = match next {
                Next::Wait => return,
                Next::Send(phase) => self.send_step(local, ctx, id, phase),
                Next::Stamp => {
                    let Some(round) = self.rounds.get_mut(&id) else {
                        return;
                    };
                    // The clock may have jumped since the ballot was taken: a stamp from a
                    // clock its peers disown would poison the key (and this node's later
                    // writes).
                    if local.clock_allows("compare-and-set").is_err() {
                        return self.fail_clock(local, ctx.now, id);
                    }
                    match round
                        .coord
                        .stamp(&mut local.hlc, ctx.now, local.config.max_clock_skew_ms)
                    {
                        Ok(next) => next,
                        Err(StampError::Clock(_)) => return self.fail_clock(local, ctx.now, id),
                        // A write of a `cas = all_writes` bucket superseding less than the
                        // key holds would leave too many siblings.
                        Err(StampError::TooManySiblings(e)) => {
                            let e = ClientError::new(ErrorCode::TooManySiblings, e.to_string());
                            return self.fail_unproposed(local, ctx.now, id, e);
                        }
                        Err(StampError::TooLarge(why)) => {
                            let e = ClientError::new(ErrorCode::ValueTooLarge, why);
                            return self.fail_unproposed(local, ctx.now, id, e);
                        }
                    }
                }
                Next::Restart => return self.prepare(local, ctx, id),
                Next::BackOff => return self.back_off(local, ctx, id),
                Next::Done(decided) => return self.reply(local, ctx.now, id, decided),
                Next::Unknown => return self.fail_unknown(local, ctx.now, id),
            };
        }
    }

    /// Sends the round's current phase to every primary (its own acceptor directly).
    fn send_step<S: Store>(
        &mut self,
        local: &mut Local,
        ctx: &mut Ctx<'_, S>,
        id: RequestId,
        phase: PaxosPhase,
    ) -> Next {
        let Some(round) = self.rounds.get_mut(&id) else {
            return Next::Wait;
        };
        self.steps.remove(&round.step_req);
        let req = local.out.new_request(ctx.rng);
        self.steps.insert(req, id);
        round.step_req = req;
        round.slots = local.slots_for(round.partition, &round.replicas, ctx.now, false);
        let me = local.me();
        let (key, ballot) = (round.key.clone(), round.coord.ballot);
        let mut next = Next::Wait;
        for slot in &round.slots {
            if slot.outcome != Outcome::Pending {
                // Primaries believed down may already make a majority unreachable.
                if next == Next::Wait {
                    next = round.coord.unreachable(slot.node, ctx.now);
                }
            } else if slot.node == me {
                if let Some(answer) =
                    local.on_paxos_request(ctx, me, req, &key, ballot, phase.clone())
                {
                    self.own_answers.push_back((req, answer));
                }
            } else {
                local.out.send(
                    slot.node,
                    Message::PaxosRequest {
                        req,
                        key: key.clone(),
                        ballot,
                        phase: phase.clone(),
                    },
                );
            }
        }
        next
    }

    /// Handles this node's own acceptor's answers (at the end of each call).
    pub(crate) fn pump<S: Store>(&mut self, local: &mut Local, ctx: &mut Ctx<'_, S>) {
        while let Some((req, result)) = self.own_answers.pop_front() {
            let me = local.me();
            self.on_response(local, ctx, me, req, result);
        }
    }

    /// An answer released by this node's own sync, for its own round.
    pub(crate) fn own_answer(&mut self, req: RequestId, result: Result<PaxosAnswer, PaxosRefusal>) {
        self.own_answers.push_back((req, result));
    }

    pub(crate) fn on_response<S: Store>(
        &mut self,
        local: &mut Local,
        ctx: &mut Ctx<'_, S>,
        from: NodeId,
        req: RequestId,
        result: Result<PaxosAnswer, PaxosRefusal>,
    ) {
        let Some(id) = self.steps.get(&req).copied() else {
            return;
        };
        let Some(round) = self.rounds.get_mut(&id) else {
            return;
        };
        let Some(slot) = pending_slot(&mut round.slots, from) else {
            return;
        };
        slot.outcome = match &result {
            Ok(PaxosAnswer::Promise(promise)) => Outcome::Read {
                version: promise.object.as_ref().map(crate::version::Object::context),
                siblings: promise
                    .object
                    .as_ref()
                    .map_or(0, |o| o.sibling_count() as u32),
            },
            Ok(_) => Outcome::Acked,
            Err(refusal) => Outcome::Failed {
                reason: refusal.to_string(),
            },
        };
        if matches!(result, Ok(PaxosAnswer::Promise(_))) {
            round
                .coord
                .note_commits_here(local.commit_log.seen(&round.key));
        }
        let next = round.coord.on_answer(from, result, ctx.now);
        self.follow(local, ctx, id, next);
    }

    /// Waits a random time (growing with the attempts), then prepares again.
    fn back_off<S: Store>(&mut self, local: &mut Local, ctx: &mut Ctx<'_, S>, id: RequestId) {
        let Some(round) = self.rounds.get_mut(&id) else {
            return;
        };
        self.steps.remove(&round.step_req);
        let cap = (2u64 << round.coord.attempts.min(16)).min(PAXOS_BACKOFF_MS_MAX);
        let wait = ctx.rng.random_range(1..=cap);
        let at = ctx.now.plus_ms(wait);
        if at >= round.deadline {
            return;
        }
        local.timers.set(at, Timer::PaxosRetry(id));
    }

    pub(crate) fn on_retry<S: Store>(
        &mut self,
        local: &mut Local,
        ctx: &mut Ctx<'_, S>,
        id: RequestId,
    ) {
        if self.rounds.get(&id).is_some_and(|r| r.coord.backing_off()) {
            self.prepare(local, ctx, id);
        }
    }

    fn reply(&mut self, local: &mut Local, now: Timestamp, id: RequestId, decided: Decided) {
        let Some(round) = self.remove(local, id) else {
            return;
        };
        let Decided {
            applied,
            object,
            previous,
        } = decided;
        // A read of a key holding a hash or set, or a condition on its value, is Redis's
        // WRONGTYPE (`INCR`, `GETSET`... on a hash); `SET ... NX` just does not apply.
        let reads_value = round.coord.action == CasAction::Read
            || matches!(round.coord.condition, crate::paxos::Condition::ValueIs(_));
        let live_collection = object
            .as_ref()
            .and_then(Object::collection)
            .filter(|c| c.is_live(now.0));
        // A hash or set update on a key holding a live value or the other kind likewise.
        let wrong_kind = match &round.coord.action {
            CasAction::Collection(u) => {
                live_collection.is_some_and(|c| c.kind != u.kind)
                    || object.as_ref().is_some_and(|o| {
                        o.collection().is_none() && !o.visible_at(now.0).is_empty()
                    })
            }
            _ => false,
        };
        // What a read shows of an `lww` value or a collection depends on this node's clock
        // (expiry): if the clock jumped while the round was in flight, refuse rather than
        // judge by it (as a plain read does, `read.rs`).
        if round.coord.action == CasAction::Read
            && !crate::bugs::planted().serial_reads_ignore_clock
            && matches!(object, Some(Object::Lww(_) | Object::Collection(_)))
            && let Err(mut e) = local.clock_allows("reads of lww buckets")
        {
            e.receipt = Some(round.receipt(local, now));
            return local.out.reply(round.reply_to, Err(e));
        }
        // A repair round's serial read has done its work once the round decided (the key is
        // settled): what a client would be told of a hash or set is no failure of it, or
        // a group holding a hash counter's Paxos state would never be collected.
        let repair = matches!(round.reply_to, ReplyTo::Repair(_))
            && !crate::bugs::planted().repair_fails_on_collections;
        if !applied && !repair && ((reads_value && live_collection.is_some()) || wrong_kind) {
            let mut e = super::write::wrong_type();
            e.receipt = Some(round.receipt(local, now));
            return local.out.reply(round.reply_to, Err(e));
        }
        let siblings = object
            .as_ref()
            .map(|o| o.visible_at(now.0).into_iter().cloned().collect())
            .unwrap_or_default();
        let context = object
            .as_ref()
            .map(crate::version::Object::context)
            .unwrap_or_default();
        let receipt = round.receipt(local, now);
        // A write bound to a version another write replaced did nothing (`all_writes`): the
        // client is told, so it can act on the new version (Redis's commands run again).
        if round.answer_as == AnswerAs::Written && !applied {
            let mut e = ClientError::new(
                ErrorCode::PreconditionFailed,
                "the version read was replaced before the write; nothing was written",
            );
            e.receipt = Some(receipt);
            return local.out.reply(round.reply_to, Err(e));
        }
        let response = match round.answer_as {
            AnswerAs::Cas => ClientResponse::Cas {
                applied,
                context,
                siblings,
                previous: previous.into_iter().collect(),
                receipt,
                paxos: receipt_of(&round.coord),
                collection: object
                    .as_ref()
                    .and_then(Object::collection)
                    .map(|c| Box::new(c.view(now.0))),
            },
            AnswerAs::Written => ClientResponse::Written { context, receipt },
            AnswerAs::Read => ClientResponse::Read {
                context,
                siblings,
                receipt,
                // Hashes and sets never go through Paxos (refused in `cas = all_writes`).
                collection: None,
            },
        };
        local.out.reply(round.reply_to, Ok(response));
    }

    pub(crate) fn on_deadline(&mut self, local: &mut Local, now: Timestamp, id: RequestId) {
        let Some(round) = self.rounds.get(&id) else {
            return;
        };
        match round.coord.give_up() {
            GiveUp::Unknown => return self.fail_unknown(local, now, id),
            GiveUp::Contended => return self.fail_contended(local, now, id),
            GiveUp::Unavailable => {}
        }
        let Some(mut round) = self.remove(local, id) else {
            return;
        };
        time_out(&mut round.slots, round.started, now);
        let receipt = round.receipt(local, now);
        local
            .out
            .reply(round.reply_to, Err(quorum_error("paxos", receipt)));
    }

    fn fail_unknown(&mut self, local: &mut Local, now: Timestamp, id: RequestId) {
        let Some(round) = self.remove(local, id) else {
            return;
        };
        let e = ClientError::new(
            ErrorCode::OutcomeUnknown,
            format!(
                "compare-and-set of {} proposed at ballot {} and could not learn within {} ms whether it was applied; a serial read tells",
                round.key,
                round.coord.last_own_ballot(),
                now.ms_since(round.started)
            ),
        );
        local.out.reply(round.reply_to, Err(e));
    }

    /// This node's clock cannot stamp the value (it jumped, or the read held timestamps
    /// beyond the skew bound): nothing of this attempt was proposed.
    fn fail_clock(&mut self, local: &mut Local, now: Timestamp, id: RequestId) {
        let Some(key) = self.rounds.get(&id).map(|r| r.key.clone()) else {
            return;
        };
        let e = ClientError::new(
            ErrorCode::ClockSkew,
            format!(
                "compare-and-set of {key}: node {}'s clock is not trusted (its peers disown it, or it read a version stamped beyond the skew bound ahead of it); not applied",
                local.me()
            ),
        );
        self.fail_unproposed(local, now, id, e);
    }

    /// The attempt could not propose (its write could not be stamped): the request fails
    /// with `e`, or is `outcome_unknown` if an earlier attempt's proposal is in doubt.
    fn fail_unproposed(
        &mut self,
        local: &mut Local,
        now: Timestamp,
        id: RequestId,
        e: ClientError,
    ) {
        if self.rounds.get(&id).is_some_and(|r| r.coord.in_doubt()) {
            return self.fail_unknown(local, now, id);
        }
        let Some(round) = self.remove(local, id) else {
            return;
        };
        local.out.reply(round.reply_to, Err(e));
    }

    fn fail_contended(&mut self, local: &mut Local, now: Timestamp, id: RequestId) {
        let Some(round) = self.remove(local, id) else {
            return;
        };
        let e = ClientError::new(
            ErrorCode::CasContention,
            format!(
                "compare-and-set of {} lost to other ballots for {} ms ({} attempts, last beaten by {}); not applied",
                round.key,
                now.ms_since(round.started),
                round.coord.attempts,
                round.coord.to_beat().unwrap_or(Ballot::ZERO)
            ),
        );
        local.out.reply(round.reply_to, Err(e));
    }

    fn remove(&mut self, local: &mut Local, id: RequestId) -> Option<Round> {
        let round = self.rounds.remove(&id)?;
        local.commit_log.unwatch(&round.key);
        self.steps.remove(&round.step_req);
        local
            .timers
            .cancel(round.deadline, Timer::PaxosDeadline(id));
        Some(round)
    }
}

fn receipt_of(coord: &Coordinator) -> PaxosReceipt {
    PaxosReceipt {
        ballot: coord.ballot,
        attempts: coord.attempts,
        round_trips: coord.round_trips,
        reproposed: coord.reproposed,
    }
}

impl Local {
    /// The acceptor side of one phase. Returns the answer when it is immediate (a refusal),
    /// else waits for the sync that makes the state change durable (`Waiter::PaxosAck`).
    pub(crate) fn on_paxos_request<S: Store>(
        &mut self,
        ctx: &mut Ctx<'_, S>,
        from: NodeId,
        req: RequestId,
        key: &ObjectKey,
        ballot: Ballot,
        phase: PaxosPhase,
    ) -> Option<Result<PaxosAnswer, PaxosRefusal>> {
        let answer = self.paxos_phase(ctx, key, ballot, phase);
        match answer {
            Err(e) => Some(Err(e)),
            Ok(answer) if crate::bugs::planted().paxos_answers_before_sync => Some(Ok(answer)),
            Ok(answer) => {
                self.durability.require_next_sync();
                self.durability
                    .wait(Waiter::PaxosAck {
                        to: from,
                        req,
                        answer,
                    })
                    .map(|w| match w {
                        Waiter::PaxosAck { answer, .. } => Ok(answer),
                        _ => unreachable!("the waiter given back is the one given"),
                    })
            }
        }
    }

    fn paxos_phase<S: Store>(
        &mut self,
        ctx: &mut Ctx<'_, S>,
        key: &ObjectKey,
        ballot: Ballot,
        phase: PaxosPhase,
    ) -> Result<PaxosAnswer, PaxosRefusal> {
        let refuse = |e: ReplicaError| PaxosRefusal::Replica(e);
        if let Some(e) = self.durability.poisoned() {
            return Err(refuse(ReplicaError::Store(e.to_string())));
        }
        let (partition, skey) = self.locate(key);
        let n = self.buckets.n_of(&key.bucket);
        if !self
            .layout
            .preference_list(partition, n as usize)
            .contains(&self.me())
        {
            return Err(refuse(ReplicaError::NotReplica));
        }
        let skey_state = state_key(&skey);
        let mut state = match ctx
            .store
            .get_with(&skey_state, |v| v.map(decode_acceptor_state))
        {
            Ok(None) => AcceptorState::default(),
            Ok(Some(decoded)) => decoded.map_err(|e| refuse(ReplicaError::Store(e.to_string())))?,
            Err(e) => return Err(refuse(ReplicaError::Store(e.to_string()))),
        };
        // The group's bounds hold for every key, whether its state was dropped or not.
        self.group_bound_of(ctx.store, partition, key)
            .map_err(refuse)?
            .apply(&mut state);
        check_skew(ballot.hlc, ctx.now, self.config.max_clock_skew_ms)
            .map_err(|e| refuse(ReplicaError::ClockSkew(e.to_string())))?;
        if let PaxosPhase::Propose(Some(o), _) = &phase {
            check_skew(o.max_timestamp(), ctx.now, self.config.max_clock_skew_ms)
                .map_err(|e| refuse(ReplicaError::ClockSkew(e.to_string())))?;
        }
        let mut answer = state.handle(ballot, &phase).map_err(PaxosRefusal::Ballot)?;
        if let PaxosPhase::Commit(proposal, base) = &phase {
            let seen = CommitSeen {
                ballot,
                id: value_id(proposal),
                base: *base,
            };
            self.commit_log.record(key, seen);
        }
        match (&mut answer, &phase) {
            (PaxosAnswer::Promise(promise), _) => {
                promise.object = self.load(ctx.store, &skey).map_err(refuse)?;
            }
            (PaxosAnswer::Committed, PaxosPhase::Commit(Some(object), _)) => {
                self.merge_into_store(ctx, key, object).map_err(refuse)?;
            }
            _ => {}
        }
        if let Some(held) = &mut self.paxos_partitions {
            held.insert(partition);
        }
        let mut batch = WriteBatch::default();
        batch.put(skey_state, encode_acceptor_state(&state));
        ctx.store
            .write(batch)
            .map_err(|e| refuse(ReplicaError::Store(e.to_string())))?;
        Ok(answer)
    }
}

impl Local {
    /// Whether this replica refuses a plain (unconditional, quorum-path) write to `key`: its
    /// bucket is `cas = conditional_only` and this replica holds the key's Paxos state. A
    /// store that cannot be read refuses nothing here (the write fails on its own).
    pub(crate) fn cas_managed<S: Store>(
        &self,
        store: &S,
        key: &ObjectKey,
        props: &BucketProps,
        partition: PartitionId,
    ) -> bool {
        if props.cas != CasMode::ConditionalOnly || crate::bugs::planted().plain_writes_not_refused
        {
            return false;
        }
        if self
            .paxos_partitions
            .as_ref()
            .is_some_and(|held| !held.contains(&partition))
        {
            return false;
        }
        let skey = key.storage_key(partition);
        matches!(store.get_with(&state_key(&skey), |v| v.is_some()), Ok(true))
    }

    /// At start: the partitions the store holds any Paxos state in (one short scan each).
    /// A partition whose scan fails counts as holding some.
    pub(crate) fn load_paxos_partitions<S: Store>(&mut self, store: &S) {
        let mut held = std::collections::BTreeSet::new();
        for p in 0..self.layout.partition_count() {
            let prefix = state_key(&PartitionId(p).0.to_be_bytes());
            if !matches!(store.scan_prefix(&prefix, None, 1), Ok(e) if e.is_empty()) {
                held.insert(PartitionId(p));
            }
        }
        self.paxos_partitions = Some(held);
    }
}

/// The error of a plain write refused because compare-and-set manages the key (`by`: the
/// replica that said so).
pub(crate) fn cas_managed_error(key: &ObjectKey, by: Option<NodeId>) -> ClientError {
    let by = by.map_or(String::new(), |n| {
        format!(" (replica {n} holds its Paxos state)")
    });
    ClientError::new(
        ErrorCode::CasManagedKey,
        format!(
            "{key} is managed by compare-and-set{by}; in a cas = conditional_only bucket it takes only conditional writes (If-Match / If-None-Match, SET ... NX|XX|IFEQ, DELIFEQ); set the bucket's cas to all_writes to make every write go through Paxos"
        ),
    )
}
