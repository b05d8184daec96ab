//! Compare-and-set and serial reads: single-decree Paxos per key among its primaries, the
//! coordinator's rounds and the acceptor side (the data half is `crate::paxos`).
//!
//! Source: Lamport, "Paxos Made Simple" (2001); Cassandra's lightweight transactions
//! (`Paxos.md`: the prepare carries the read, an accepted proposal found in progress is
//! finished before anything else, a commit is synchronous at a quorum).
//!
//! ```text
//! client ─▶ any node (coordinator): Cas { condition, action }
//!   Prepare(ballot) to the N primaries ─▶ a majority promises (its state and its data)
//!   ├ a proposal accepted above the highest commit (in progress): Propose it at our ballot,
//!   │ Commit it, then prepare again (it may be this request's own: then it is applied)
//!   ├ the condition holds: Propose(the new value, stamped after all the data read)
//!   │ ─▶ majority ─▶ Commit ─▶ majority ─▶ `applied`
//!   ├ it does not (or a read) and the promised data agree: answer (one round trip)
//!   └ they differ: Propose/Commit the merged data first, so a later quorum read sees it
//!   refused by a higher ballot: back off (seeded random), prepare again with a higher one
//!   deadline: after this request's own proposal left, `outcome_unknown`; else not applied
//! ```
//!
//! Invariants:
//! * An acceptor answers a phase only after its state change (and a commit's data) is
//!   durable, in every durability mode (the sync is required).
//! * A committed value is stamped after everything the prepare read, so the `lww` order of
//!   committed values is their commit order, and a plain quorum read after an applied
//!   compare-and-set returns it (or something newer).
//! * This request's own proposals, once sent, are in doubt until one is seen committed or in
//!   progress (`applied`), or a commit at a higher ballot ends them all (the prepare before
//!   it found none committed or in progress); a commit above one that the data do not show
//!   is `outcome_unknown` (it may have been applied and replaced), and so is the deadline
//!   while any is in doubt. Never `not applied` while one may still win, never applied
//!   twice (a retry proposes anew only after finding the earlier ones uncommitted, and the
//!   first commit ends the rest).
//! * Ballots are taken only while this node's clock is trusted (`Local::clock_allows`), and
//!   acceptors refuse a ballot beyond the skew bound: no ballot or committed value carries a
//!   jumped clock.
//! * Sloppy quorums never vote: only primaries are asked, and a majority of them must answer.

use crate::bucket::ConflictMode;
use crate::hlc::{Hlc, check_skew};
use crate::ids::{NodeId, PartitionId, RequestId, Timestamp};
use crate::key::ObjectKey;
use crate::limits::{PAXOS_ATTEMPTS_MAX, PAXOS_BACKOFF_MS_MAX};
use crate::message::{
    CasAction, CasRequest, ClientError, ClientResponse, ErrorCode, Message, Outcome, PaxosAnswer,
    PaxosPhase, PaxosReceipt, PaxosRefusal, Promise as PromiseMessage, ReplicaError,
    decode_acceptor_state, encode_acceptor_state,
};
use crate::paxos::{Accepted, AcceptorState, Ballot, Proposal};
use crate::store::{Store, WriteBatch};
use crate::version::{LwwValue, Object, Sibling};
use rand::Rng;
use std::collections::{BTreeMap, VecDeque};

use super::durability::Waiter;
use super::io::{Ctx, ReplyTo};
use super::local::Local;
use super::quorum::{Slot, pending_slot, quorum_error, time_out};
use super::timers::Timer;

/// Where acceptors keep their Paxos state: this partition, then the object's storage key.
pub const PAXOS_PARTITION: PartitionId = PartitionId(0xFFFF_FFFB);

fn state_key(skey: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + skey.len());
    out.extend_from_slice(&PAXOS_PARTITION.0.to_be_bytes());
    out.extend_from_slice(skey);
    out
}

/// What follows a commit.
#[derive(Clone, Debug)]
enum Then {
    /// Another request's proposal was finished: prepare again.
    Restart,
    /// Answer the client: `object` is the key's value after the request, `previous` the
    /// value its condition was judged on.
    Reply {
        applied: bool,
        object: Option<Object>,
        previous: Option<Sibling>,
    },
}

#[derive(Clone, Debug)]
enum Step {
    Prepare,
    Propose { proposal: Proposal, then: Then },
    Commit { proposal: Proposal, then: Then },
    Backoff,
}

/// One promise: the acceptor's accepted proposal in progress, its highest commit, its data.
type Promise = (Option<Accepted>, Ballot, Option<Object>);

#[derive(Debug)]
struct Round {
    reply_to: ReplyTo,
    request: CasRequest,
    /// The bucket's default TTL, for writes that name none.
    ttl_default_ms: Option<u64>,
    partition: PartitionId,
    replicas: Vec<NodeId>,
    needed: usize,
    /// The current step's request id (answers to older steps are ignored), its slots and
    /// the promises of a prepare.
    step_req: RequestId,
    step: Step,
    slots: Vec<Slot>,
    promises: BTreeMap<NodeId, Promise>,
    ballot: Ballot,
    /// The highest ballot a refusal named.
    beaten_by: Option<Ballot>,
    started: Timestamp,
    deadline: Timestamp,
    attempts: u32,
    round_trips: u32,
    reproposed: u32,
    /// This request's own proposals (ballot and value), each from when it is sent until it
    /// is known committed (applied) or dead (a commit at a higher ballot without it): while
    /// any is in doubt, the deadline answers `outcome_unknown`. At most one per attempt.
    owns: Vec<(Ballot, Object, Option<Sibling>)>,
    /// The next commit of this round ends every own proposal (the prepare found none of
    /// them committed or in progress).
    seals_own: bool,
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
        request: CasRequest,
        ttl_default_ms: Option<u64>,
        partition: PartitionId,
        replicas: Vec<NodeId>,
        deadline: Timestamp,
    ) {
        let id = local.out.new_request(ctx.rng);
        let needed = replicas.len() / 2 + 1;
        self.rounds.insert(
            id,
            Round {
                reply_to,
                request,
                ttl_default_ms,
                partition,
                replicas,
                needed,
                step_req: id,
                step: Step::Backoff,
                slots: Vec::new(),
                promises: BTreeMap::new(),
                ballot: Ballot::ZERO,
                beaten_by: None,
                started: ctx.now,
                deadline,
                attempts: 0,
                round_trips: 0,
                reproposed: 0,
                owns: Vec::new(),
                seals_own: false,
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
        if round.attempts >= PAXOS_ATTEMPTS_MAX {
            if !round.owns.is_empty() {
                return self.fail_unknown(local, ctx.now, id);
            }
            return self.fail_contended(local, ctx.now, id);
        }
        // A ballot is stamped by this node's clock, which may have jumped since the request
        // came: a ballot (and this node's clock) from a clock its peers disown would
        // poison the key.
        if let Err(e) = local.clock_allows("compare-and-set") {
            if !round.owns.is_empty() {
                return self.fail_unknown(local, ctx.now, id);
            }
            let round = self.remove(local, id).expect("the round is there");
            return local.out.reply(round.reply_to, Err(e));
        }
        round.attempts += 1;
        if let Some(b) = round.beaten_by {
            let _ = local
                .hlc
                .observe(b.hlc, ctx.now, local.config.max_clock_skew_ms);
        }
        round.seals_own = false;
        round.ballot = Ballot {
            hlc: local.hlc.now(ctx.now),
            node: local.me(),
        };
        round.promises.clear();
        self.send_step(local, ctx, id, Step::Prepare);
    }

    /// Sends the round's current phase to every primary (its own acceptor directly).
    fn send_step<S: Store>(
        &mut self,
        local: &mut Local,
        ctx: &mut Ctx<'_, S>,
        id: RequestId,
        step: Step,
    ) {
        let Some(round) = self.rounds.get_mut(&id) else {
            return;
        };
        let phase = match &step {
            Step::Prepare => PaxosPhase::Prepare,
            Step::Propose { proposal, .. } => PaxosPhase::Propose(proposal.clone()),
            Step::Commit { proposal, .. } => PaxosPhase::Commit(proposal.clone()),
            Step::Backoff => unreachable!("a backoff sends nothing"),
        };
        self.steps.remove(&round.step_req);
        let req = local.out.new_request(ctx.rng);
        self.steps.insert(req, id);
        round.step_req = req;
        round.step = step;
        round.round_trips += 1;
        round.slots = local.slots_for(round.partition, &round.replicas, ctx.now, false);
        let me = local.me();
        let asked: Vec<NodeId> = round
            .slots
            .iter()
            .filter(|s| s.outcome == Outcome::Pending)
            .map(|s| s.node)
            .collect();
        let (key, ballot) = (round.request.key.clone(), round.ballot);
        for node in asked {
            if node == me {
                if let Some(answer) =
                    local.on_paxos_request(ctx, me, req, &key, ballot, phase.clone())
                {
                    self.own_answers.push_back((req, answer));
                }
            } else {
                local.out.send(
                    node,
                    Message::PaxosRequest {
                        req,
                        key: key.clone(),
                        ballot,
                        phase: phase.clone(),
                    },
                );
            }
        }
        // Primaries believed down may already make a majority unreachable.
        self.settle(local, ctx, id);
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
        match result {
            Ok(PaxosAnswer::Promise(promise)) if matches!(round.step, Step::Prepare) => {
                let PromiseMessage {
                    accepted,
                    committed,
                    object,
                } = *promise;
                slot.outcome = Outcome::Read {
                    version: object.as_ref().map(Object::context),
                    siblings: object.as_ref().map_or(0, |o| o.sibling_count() as u32),
                };
                round.promises.insert(from, (accepted, committed, object));
            }
            Ok(PaxosAnswer::Accepted) if matches!(round.step, Step::Propose { .. }) => {
                slot.outcome = Outcome::Acked;
            }
            Ok(PaxosAnswer::Committed) if matches!(round.step, Step::Commit { .. }) => {
                slot.outcome = Outcome::Acked;
            }
            Ok(other) => {
                slot.outcome = Outcome::Failed {
                    reason: format!("answered {other:?} out of step"),
                };
            }
            Err(refusal) => {
                if let PaxosRefusal::Ballot(b) = &refusal {
                    round.beaten_by = round.beaten_by.max(Some(*b));
                }
                slot.outcome = Outcome::Failed {
                    reason: refusal.to_string(),
                };
            }
        }
        self.settle(local, ctx, id);
    }

    /// Moves the round on when its step has a majority, or cannot get one.
    fn settle<S: Store>(&mut self, local: &mut Local, ctx: &mut Ctx<'_, S>, id: RequestId) {
        let Some(round) = self.rounds.get_mut(&id) else {
            return;
        };
        let answered = round
            .slots
            .iter()
            .filter(|s| matches!(s.outcome, Outcome::Acked | Outcome::Read { .. }))
            .count();
        let failed = round
            .slots
            .iter()
            .filter(|s| matches!(s.outcome, Outcome::Failed { .. }))
            .count();
        if answered >= round.needed {
            match round.step.clone() {
                Step::Prepare => self.on_promised(local, ctx, id),
                Step::Propose { proposal, then } => {
                    self.send_step(local, ctx, id, Step::Commit { proposal, then })
                }
                Step::Commit { then, .. } => self.on_committed(local, ctx, id, then),
                Step::Backoff => {}
            }
        } else if failed > round.replicas.len() - round.needed {
            // Beaten by a higher ballot, or replicas down or failing: try again until the
            // deadline (they may come back); the deadline's error says which. This request's
            // own proposals stay in `owns` (a refusal does not prove an acceptor never took
            // one: a duplicate's refusal can overtake the acceptance); the next prepare finds
            // out what became of them.
            self.back_off(local, ctx, id);
        }
    }

    /// Waits a random time (growing with the attempts), then prepares again.
    fn back_off<S: Store>(&mut self, local: &mut Local, ctx: &mut Ctx<'_, S>, id: RequestId) {
        let Some(round) = self.rounds.get_mut(&id) else {
            return;
        };
        round.step = Step::Backoff;
        self.steps.remove(&round.step_req);
        let cap = (2u64 << round.attempts.min(16)).min(PAXOS_BACKOFF_MS_MAX);
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
        if self
            .rounds
            .get(&id)
            .is_some_and(|r| matches!(r.step, Step::Backoff))
        {
            self.prepare(local, ctx, id);
        }
    }

    /// A majority promised: finish what is in progress, or judge the condition.
    fn on_promised<S: Store>(&mut self, local: &mut Local, ctx: &mut Ctx<'_, S>, id: RequestId) {
        let Some(round) = self.rounds.get_mut(&id) else {
            return;
        };
        let latest = round
            .promises
            .values()
            .map(|p| p.1)
            .max()
            .unwrap_or(Ballot::ZERO);
        let in_progress = round
            .promises
            .values()
            .filter_map(|p| p.0.as_ref())
            .filter(|a| a.ballot > latest)
            .max_by_key(|a| a.ballot)
            .cloned();
        let mut merged: Option<Object> = None;
        for object in round.promises.values().filter_map(|p| p.2.as_ref()) {
            merged = match merged {
                None => Some(object.clone()),
                Some(m) => match m.merge(object) {
                    Ok(m) => Some(m),
                    // A bucket's conflict mode never changes: keep what the first held.
                    Err(_) => Some(m),
                },
            };
        }
        let agree = {
            let mut objects = round.promises.values().map(|p| &p.2);
            let first = objects.next();
            objects.all(|o| Some(o) == first)
        };
        // This request's own proposals (values of earlier attempts that may have been
        // accepted): applied if one is in progress (Paxos carries a chosen value into every
        // later proposal) or is what the data hold.
        let own_of = |o: &Object| {
            round
                .owns
                .iter()
                .find(|(_, v, _)| same_version(o, v))
                .map(|(_, _, previous)| previous.clone())
        };
        let own_in_progress = in_progress
            .as_ref()
            .and_then(|a| a.proposal.as_ref())
            .and_then(own_of);
        // A commit at an own ballot is that own proposal committed (only this request
        // proposes at its ballots), even if the data no longer show it (a later plain write,
        // an expiry).
        let own_committed = merged.as_ref().and_then(own_of).or_else(|| {
            round
                .owns
                .iter()
                .find(|(b, ..)| round.promises.values().any(|p| p.1 == *b))
                .map(|(_, _, previous)| previous.clone())
        });
        let lowest_own = round.owns.iter().map(|(b, ..)| *b).min();
        // No own proposal can have been chosen when no promise shows a commit or an
        // acceptance at or above the lowest own ballot (a chosen one was accepted by a
        // majority, which this majority meets, and an acceptor's accepted ballot only grows
        // until a commit at or above it).
        let owns_unchosen = lowest_own
            .is_some_and(|b| latest < b && in_progress.as_ref().is_none_or(|a| a.ballot < b));
        if let Some(acc) = in_progress {
            let then = if let Some(previous) = own_in_progress.or(own_committed) {
                let object = match (&merged, &acc.proposal) {
                    (Some(m), Some(p)) => m.merge(p).ok(),
                    (m, p) => p.clone().or(m.clone()),
                };
                Then::Reply {
                    applied: true,
                    object,
                    previous,
                }
            } else {
                round.reproposed += 1;
                Then::Restart
            };
            // If none was chosen, this commit, at a higher ballot, ends them all. (An
            // in-progress proposal above an own one may belong to a later instance, built on
            // an own value committed at a minority: then they stay in doubt.)
            round.seals_own = owns_unchosen;
            let proposal = acc.proposal;
            return self.send_step(local, ctx, id, Step::Propose { proposal, then });
        }
        if let Some(previous) = own_committed {
            let then = Then::Reply {
                applied: true,
                object: merged.clone(),
                previous,
            };
            if agree {
                return self.on_committed(local, ctx, id, then);
            }
            let proposal = merged;
            return self.send_step(local, ctx, id, Step::Propose { proposal, then });
        }
        if lowest_own.is_some() {
            if !owns_unchosen {
                // A commit above an own proposal, which the data do not show: it may have
                // been committed and replaced since, or never chosen. No telling which.
                return self.fail_unknown(local, ctx.now, id);
            }
            // None chosen: they are dead once anything commits at this ballot.
            round.seals_own = true;
        }
        let now_ms = ctx.now.0;
        let current = merged
            .as_ref()
            .and_then(|m| m.visible_at(now_ms).into_iter().next().cloned());
        let version = merged.as_ref().map(Object::context).unwrap_or_default();
        let holds = round
            .request
            .condition
            .holds(current.as_ref().map(|s| s.value.as_slice()), &version);
        let write = match (&round.request.action, holds) {
            (CasAction::Read, _) | (_, false) => None,
            (
                CasAction::Write {
                    value,
                    content_type,
                    ttl_ms,
                    keep_ttl,
                },
                true,
            ) => {
                let mut s = Sibling::value(value.clone(), content_type, Hlc::default());
                s.expires_at = match (keep_ttl, &current) {
                    (true, Some(c)) => c.expires_at,
                    _ => ttl_ms
                        .or(round.ttl_default_ms)
                        .map(|t| now_ms.saturating_add(t)),
                };
                Some(s)
            }
            (CasAction::Delete, true) => Some(Sibling::tombstone(Hlc::default())),
        };
        if let Some(mut sibling) = write {
            // Stamped by this node's clock after the ballot and everything read: the newest
            // version, and an identity no other proposal has (the clock never repeats).
            // The clock may have jumped since the ballot was taken: a stamp from a clock its
            // peers disown would poison the key (and this node's later writes).
            if local.clock_allows("compare-and-set").is_err() {
                return self.fail_clock(local, ctx.now, id);
            }
            if let Some(m) = &merged
                && local
                    .hlc
                    .observe(m.max_timestamp(), ctx.now, local.config.max_clock_skew_ms)
                    .is_err()
            {
                // The data are stamped beyond what this clock may take in: a value stamped
                // by it would lose to them.
                return self.fail_clock(local, ctx.now, id);
            }
            sibling.timestamp = local.hlc.now(ctx.now);
            let object = Object::Lww(LwwValue::new(local.me(), sibling));
            round
                .owns
                .push((round.ballot, object.clone(), current.clone()));
            let then = Then::Reply {
                applied: true,
                object: Some(object.clone()),
                previous: current,
            };
            let proposal = Some(object);
            return self.send_step(local, ctx, id, Step::Propose { proposal, then });
        }
        let then = Then::Reply {
            applied: false,
            object: merged.clone(),
            previous: current,
        };
        if agree && !round.seals_own {
            // Nothing in flight, nothing to repair: one round trip.
            return self.on_committed(local, ctx, id, then);
        }
        // Make what was read the state of a majority, so no later read sees less (and end
        // this request's earlier proposals).
        let proposal = merged;
        self.send_step(local, ctx, id, Step::Propose { proposal, then })
    }

    fn on_committed<S: Store>(
        &mut self,
        local: &mut Local,
        ctx: &mut Ctx<'_, S>,
        id: RequestId,
        then: Then,
    ) {
        if let Some(round) = self.rounds.get_mut(&id)
            && round.seals_own
            && matches!(round.step, Step::Commit { .. })
        {
            round.owns.clear();
        }
        match then {
            Then::Restart => self.prepare(local, ctx, id),
            Then::Reply {
                applied,
                object,
                previous,
            } => {
                let Some(round) = self.remove(local, id) else {
                    return;
                };
                let now = ctx.now;
                let siblings = object
                    .as_ref()
                    .map(|o| o.visible_at(now.0).into_iter().cloned().collect())
                    .unwrap_or_default();
                let response = ClientResponse::Cas {
                    applied,
                    context: object.as_ref().map(Object::context).unwrap_or_default(),
                    siblings,
                    previous: previous.into_iter().collect(),
                    receipt: local.receipt(
                        round.partition,
                        round.needed as u8,
                        &round.slots,
                        vec![],
                        round.started,
                        now,
                    ),
                    paxos: receipt_of(&round),
                };
                local.out.reply(round.reply_to, Ok(response));
            }
        }
    }

    pub(crate) fn on_deadline(&mut self, local: &mut Local, now: Timestamp, id: RequestId) {
        let Some(round) = self.rounds.get(&id) else {
            return;
        };
        if !round.owns.is_empty() {
            return self.fail_unknown(local, now, id);
        }
        if round.beaten_by.is_some_and(|b| b > round.ballot) {
            return self.fail_contended(local, now, id);
        }
        let Some(mut round) = self.remove(local, id) else {
            return;
        };
        time_out(&mut round.slots, round.started, now);
        let receipt = local.receipt(
            round.partition,
            round.needed as u8,
            &round.slots,
            vec![],
            round.started,
            now,
        );
        local
            .out
            .reply(round.reply_to, Err(quorum_error("paxos", receipt)));
    }

    fn fail_unknown(&mut self, local: &mut Local, now: Timestamp, id: RequestId) {
        let Some(round) = self.remove(local, id) else {
            return;
        };
        let ballot = round.owns.last().map_or(round.ballot, |(b, ..)| *b);
        let e = ClientError::new(
            ErrorCode::OutcomeUnknown,
            format!(
                "compare-and-set of {} proposed at ballot {ballot} and could not learn within {} ms whether it was applied; a serial read tells",
                round.request.key,
                now.ms_since(round.started)
            ),
        );
        local.out.reply(round.reply_to, Err(e));
    }

    /// This node's clock cannot stamp the value (it jumped, or the read held timestamps
    /// beyond the skew bound): nothing of this attempt was proposed.
    fn fail_clock(&mut self, local: &mut Local, now: Timestamp, id: RequestId) {
        if self.rounds.get(&id).is_some_and(|r| !r.owns.is_empty()) {
            return self.fail_unknown(local, now, id);
        }
        let Some(round) = self.remove(local, id) else {
            return;
        };
        let e = ClientError::new(
            ErrorCode::ClockSkew,
            format!(
                "compare-and-set of {}: node {}'s clock is not trusted (its peers disown it, or it read a version stamped beyond the skew bound ahead of it); not applied",
                round.request.key,
                local.me()
            ),
        );
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
                round.request.key,
                now.ms_since(round.started),
                round.attempts,
                round.beaten_by.unwrap_or(Ballot::ZERO)
            ),
        );
        local.out.reply(round.reply_to, Err(e));
    }

    fn remove(&mut self, local: &mut Local, id: RequestId) -> Option<Round> {
        let round = self.rounds.remove(&id)?;
        self.steps.remove(&round.step_req);
        local
            .timers
            .cancel(round.deadline, Timer::PaxosDeadline(id));
        Some(round)
    }
}

fn receipt_of(round: &Round) -> PaxosReceipt {
    PaxosReceipt {
        ballot: round.ballot,
        attempts: round.attempts,
        round_trips: round.round_trips,
        reproposed: round.reproposed,
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
        let mut state = match ctx.store.get(&skey_state) {
            Ok(None) => AcceptorState::default(),
            Ok(Some(bytes)) => decode_acceptor_state(&bytes)
                .map_err(|e| refuse(ReplicaError::Store(e.to_string())))?,
            Err(e) => return Err(refuse(ReplicaError::Store(e.to_string()))),
        };
        if crate::bugs::planted().paxos_forgets_promises {
            state.promised = Ballot::ZERO;
        }
        check_skew(ballot.hlc, ctx.now, self.config.max_clock_skew_ms)
            .map_err(|e| refuse(ReplicaError::ClockSkew(e.to_string())))?;
        let answer = match phase {
            PaxosPhase::Prepare => {
                state.prepare(ballot).map_err(PaxosRefusal::Ballot)?;
                let object = self.load(ctx.store, &skey).map_err(refuse)?;
                PaxosAnswer::Promise(Box::new(PromiseMessage {
                    accepted: state.in_progress().cloned(),
                    committed: state.committed,
                    object,
                }))
            }
            PaxosPhase::Propose(proposal) => {
                if let Some(o @ Object::Lww(_)) = &proposal {
                    check_skew(o.max_timestamp(), ctx.now, self.config.max_clock_skew_ms)
                        .map_err(|e| refuse(ReplicaError::ClockSkew(e.to_string())))?;
                }
                state
                    .propose(ballot, proposal)
                    .map_err(PaxosRefusal::Ballot)?;
                PaxosAnswer::Accepted
            }
            PaxosPhase::Commit(proposal) => {
                if let Some(object) = &proposal {
                    self.merge_into_store(ctx, key, object).map_err(refuse)?;
                }
                state.commit(ballot);
                PaxosAnswer::Committed
            }
        };
        let mut batch = WriteBatch::default();
        batch.put(skey_state, encode_acceptor_state(&state));
        ctx.store
            .write(batch)
            .map_err(|e| refuse(ReplicaError::Store(e.to_string())))?;
        Ok(answer)
    }
}

/// Whether compare-and-set works in a bucket of this mode (`siblings` buckets: not yet).
pub(crate) fn supported(mode: ConflictMode) -> bool {
    mode == ConflictMode::Lww
}

/// Whether `a` holds exactly the version `b` is: an `lww` value's identity (timestamp and
/// writer, unique per proposal: its coordinator's clock never repeats) and its value (a TTL
/// change since keeps both).
fn same_version(a: &Object, b: &Object) -> bool {
    match (a, b) {
        (Object::Lww(a), Object::Lww(b)) => {
            a.sibling.timestamp == b.sibling.timestamp
                && a.writer == b.writer
                && a.sibling.value == b.sibling.value
                && a.sibling.tombstone == b.sibling.tombstone
        }
        _ => false,
    }
}
