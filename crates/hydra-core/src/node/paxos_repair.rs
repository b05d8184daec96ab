//! Paxos state collection: repair rounds that settle every key of a group (one bucket's keys
//! in one partition) below a ballot, after which the group's primaries drop the Paxos state
//! wholly below it and keep only that ballot, the group's low bound, forever.
//!
//! Source: Cassandra's Paxos v2 (`Paxos.md` in its tree: "Paxos repair" settles a range's
//! uncommitted proposals and sets a low bound below which state is purged; the low bound is
//! applied whenever state is read).
//!
//! ```text
//! Timer::PaxosRepair ─▶ the next group this node holds Paxos state of and is a primary of
//!   fence = a new ballot ─PaxosFenceRequest(fence, after)─▶ each primary:
//!       promise `fence` for every key of the group (durably), list the keys whose state
//!       changed above its low bound (≤ PAXOS_REPAIR_KEYS_MAX, and where it stopped)
//!   ◀─PaxosFenceResponse(keys, next)── a majority: the keys up to the lowest `next`
//!   each key: a serial read (Paxos at a ballot above the fence: finishes a proposal in
//!       progress, commits the read data to a majority when the replicas differ)
//!   another page from that `next`, until a majority listed everything, then
//!   ─PaxosLowBound(fence)─▶ each primary: low bound = fence; drop the state wholly ≤ it
//! ```
//!
//! Why it is safe (the bounds' part is `paxos::GroupBound`, the rounds' this file):
//! * Once a majority keeps the fence, no proposal below it can win a majority (every majority
//!   meets it), so a value chosen below the fence was accepted by a member of every majority
//!   before that member's fence: in the listing majority that member lists the key (its
//!   state changed above its low bound; an earlier round with a higher low bound already
//!   settled the value), and the key's serial read finishes it (in progress), or commits the
//!   read data to a majority when replicas differ; when they agree, the value is already in
//!   a majority's data. Paging keeps this: a page covers, at each primary of the listing
//!   majority, every key up to the lowest point one of them stopped at.
//! * So every later prepare reads the newest value below the low bound (and stamps after
//!   it), and an acceptor that applies the low bound as a commit never takes up an older
//!   proposal: nothing below the low bound is needed again.
//! * A coordinator still in doubt about an own proposal below the low bound: a member of the
//!   majority that accepted it reports `committed` at least the low bound (its state dropped
//!   or not), so the proposal is not proved unchosen by an empty state; the low bound is
//!   never in the commits a proof uses (`beaten` in `coordinator.rs`), so it stays in doubt
//!   (`unknown`), or is seen committed. Dropped commits only make such proofs rarer.
//! * A state is dropped only when every ballot in it (promised too) is at or below the low
//!   bound: the fence, kept forever, refuses those ballots in its place. (A proposal at
//!   exactly the fence is accepted after it; only the round's own node could have made it,
//!   across a restart, and such a value was never acknowledged, and was committed above
//!   the fence if anyone saw it.)
//! * Concurrent rounds of two primaries need nothing of each other: each relies only on low
//!   bounds of rounds that ended before its listings.
//!
//! Costs: a fence refuses the group's proposals below it (their coordinators retry above
//! it), and a proposal accepted only at a primary outside the listing majority is dropped
//! with its state, so its coordinator, if still in doubt, answers `unknown`; rounds are one
//! per group per interval (a primary skips a group another fenced within half an interval)
//! and each node's first walk starts at a random point of the first interval.
//!
//! Limits: one round at a time per node, [`PAXOS_REPAIRS_IN_FLIGHT`] serial reads at once,
//! [`PAXOS_REPAIR_KEYS_MAX`] keys listed per primary per page (a page settles up to that many
//! per primary of the listing majority), [`PAXOS_COLLECT_MAX`] states looked at per page of a
//! low bound (16 pages). A key whose serial read committed (its replicas differed) changed
//! above the fence: the next round settles it again (with nothing to commit) and the one
//! after drops it. A serial read that fails is tried again (the fence holds); a key that
//! fails 3 times, or a round that does not move on for 4 request timeouts, ends the round
//! without a low bound.

use crate::bucket::{CasMode, ConflictMode};
use crate::hlc::check_skew;
use crate::ids::{NodeId, PartitionId, RequestId, Timestamp};
use crate::key::{BucketName, ObjectKey};
use crate::limits::{
    KEY_BYTES_MAX, PAXOS_COLLECT_MAX, PAXOS_REPAIR_KEYS_MAX, PAXOS_REPAIRS_IN_FLIGHT,
};
use crate::message::{
    CasAction, CasRequest, FenceList, Message, ReplicaError, StorageKey, decode_acceptor_state,
    decode_group_bound, encode_group_bound,
};
use crate::paxos::{Ballot, Condition, GroupBound};
use crate::store::{Store, WriteBatch};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::durability::Waiter;
use super::io::{Ctx, ReplyTo};
use super::local::Local;
use super::paxos::{AnswerAs, PAXOS_PARTITION, Paxos, state_key};
use super::timers::Timer;

/// Where primaries keep each group's Paxos bounds: this partition, then the group's prefix.
pub const PAXOS_BOUNDS_PARTITION: PartitionId = PartitionId(0xFFFF_FFFA);

/// Groups looked at per timer before waiting for the next (those this node may not repair).
const GROUPS_PER_TICK: usize = 64;
/// States looked at per fence request (each primary lists from them).
const FENCE_SCAN_MAX: usize = 4 * PAXOS_REPAIR_KEYS_MAX;
/// Serial reads of one key that may fail (contention, no majority) before its round ends.
const REPAIR_TRIES: u32 = 3;
/// Pages of `PAXOS_COLLECT_MAX` states a primary looks at per low bound.
const COLLECT_PAGES_MAX: usize = 16;

/// How long a round may go without moving on (a page listed, a key settled) before it ends.
fn round_time(local: &Local) -> u64 {
    local.config.request_timeout_ms.max(1).saturating_mul(4)
}

// The storage-key prefix of a group's keys.
use crate::key::bucket_prefix as group_prefix;

fn bound_key(prefix: &[u8]) -> Vec<u8> {
    let mut out = PAXOS_BOUNDS_PARTITION.0.to_be_bytes().to_vec();
    out.extend_from_slice(prefix);
    out
}

/// What this node's repair rounds did, for status pages and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PaxosRepairStatus {
    pub rounds: u64,
    pub rounds_failed: u64,
    pub keys_repaired: u64,
    pub states_collected: u64,
}

#[derive(Debug)]
struct Round {
    /// The current page's fence request.
    req: RequestId,
    bucket: BucketName,
    partition: PartitionId,
    replicas: Vec<NodeId>,
    fence: Ballot,
    /// Where the current page starts (exclusive); once its listings are in, where the next
    /// one does (`None`: the current page is the last).
    after: Option<StorageKey>,
    /// The current page's listings, and who refused or cannot answer.
    lists: BTreeMap<NodeId, FenceList>,
    failed: BTreeSet<NodeId>,
    /// Whether the page's listings are in (its keys are being settled).
    listed: bool,
    /// Keys to settle, each with the serial reads that failed on it so far.
    to_repair: VecDeque<(ObjectKey, u32)>,
    /// Serial reads running (each answers to its own id).
    running: BTreeMap<RequestId, (ObjectKey, u32)>,
    /// When the round last moved on (a page listed, a key settled): it ends when it has not
    /// for `round_time`.
    progress_at: Timestamp,
}

impl Round {
    fn needed(&self) -> usize {
        self.replicas.len() / 2 + 1
    }
}

/// What the walk over this node's Paxos state found next.
enum Walk {
    Group(BucketName, PartitionId),
    /// The walk is over.
    End,
    /// An entry that is not a key's state was stepped over: go on at the next call.
    Later,
    /// The store failed: try again after the interval, from the same place.
    Failed,
}

/// This node's Paxos repair rounds (one at a time).
#[derive(Debug, Default)]
pub(crate) struct Repairs {
    /// Whether the first walk was given its random start.
    begun: bool,
    /// The state key after which the walk over this node's Paxos state goes on.
    cursor: Option<Vec<u8>>,
    round: Option<Round>,
    /// This node's own answers to its own fences, handled at the end of the call.
    own: VecDeque<(RequestId, Result<FenceList, ReplicaError>)>,
    pub(crate) status: PaxosRepairStatus,
}

impl Repairs {
    /// The timer: start the next group's round, or wait for the running one's deadline.
    pub(crate) fn on_timer<S: Store>(
        &mut self,
        local: &mut Local,
        ctx: &mut Ctx<'_, S>,
        paxos: &mut Paxos,
    ) {
        let interval = local.config.paxos_repair_interval_ms;
        if let Some(round) = &self.round {
            let due = round.progress_at.plus_ms(round_time(local));
            if ctx.now < due {
                // Moving on: look again when it would have stalled. (Set again at every
                // fire, so a clock that stepped back never leaves a round without a timer.)
                return local.timers.set(due, Timer::PaxosRepair);
            }
            return self.end(local, ctx.now, false);
        }
        if !self.begun {
            // Nodes started together would walk in step: each begins at a random point of
            // the first interval.
            self.begun = true;
            let wait = rand::Rng::random_range(&mut *ctx.rng, 0..=interval);
            return local.timers.set(ctx.now.plus_ms(wait), Timer::PaxosRepair);
        }
        // Ballots come only from a trusted clock.
        if local.clock_allows("paxos repair").is_err() {
            return local
                .timers
                .set(ctx.now.plus_ms(interval), Timer::PaxosRepair);
        }
        for _ in 0..GROUPS_PER_TICK {
            match self.next_group(ctx.store) {
                Walk::End => {
                    // The walk is over: the next starts after the interval.
                    self.cursor = None;
                    return local
                        .timers
                        .set(ctx.now.plus_ms(interval), Timer::PaxosRepair);
                }
                Walk::Later => break,
                Walk::Failed => {
                    return local
                        .timers
                        .set(ctx.now.plus_ms(interval), Timer::PaxosRepair);
                }
                Walk::Group(bucket, partition) => {
                    if let Some(replicas) = local.repairable(&bucket, partition)
                        && !local.repaired_lately(ctx, &bucket, partition)
                    {
                        return self.start(local, ctx, paxos, bucket, partition, replicas);
                    }
                }
            }
        }
        local.timers.set(ctx.now.plus_ms(1), Timer::PaxosRepair);
    }

    /// The group of the next Paxos state this node holds after the cursor; the cursor moves
    /// past the group.
    fn next_group<S: Store>(&mut self, store: &S) -> Walk {
        let Ok(entries) = store.scan_partition(PAXOS_PARTITION, self.cursor.as_deref(), 1) else {
            return Walk::Failed;
        };
        let Some((key, _)) = entries.into_iter().next() else {
            return Walk::End;
        };
        let Ok((partition, object)) = ObjectKey::from_storage_key(&key[4..]) else {
            // Not a key's state (it cannot be repaired): step over it.
            self.cursor = Some(key);
            return Walk::Later;
        };
        // Past every key of the group: its prefix, then more 0xFF bytes than any key has.
        let mut cursor = state_key(&group_prefix(partition, &object.bucket));
        cursor.extend(std::iter::repeat_n(0xFF, KEY_BYTES_MAX + 1));
        self.cursor = Some(cursor);
        Walk::Group(object.bucket, partition)
    }

    fn start<S: Store>(
        &mut self,
        local: &mut Local,
        ctx: &mut Ctx<'_, S>,
        paxos: &mut Paxos,
        bucket: BucketName,
        partition: PartitionId,
        replicas: Vec<NodeId>,
    ) {
        let fence = Ballot::new(local.hlc.now(ctx.now), local.me());
        let id = local.out.new_request(ctx.rng);
        self.round = Some(Round {
            req: id,
            bucket,
            partition,
            replicas,
            fence,
            after: None,
            lists: BTreeMap::new(),
            failed: BTreeSet::new(),
            listed: false,
            to_repair: VecDeque::new(),
            running: BTreeMap::new(),
            progress_at: ctx.now,
        });
        local
            .timers
            .set(ctx.now.plus_ms(round_time(local)), Timer::PaxosRepair);
        self.ask(local, ctx, paxos);
    }

    /// Sends the current page's fence to every primary (this node's own answer is queued).
    fn ask<S: Store>(&mut self, local: &mut Local, ctx: &mut Ctx<'_, S>, paxos: &mut Paxos) {
        let Some(round) = self.round.as_mut() else {
            return;
        };
        let req = local.out.new_request(ctx.rng);
        round.progress_at = ctx.now;
        round.req = req;
        round.lists.clear();
        round.failed.clear();
        round.listed = false;
        let me = local.me();
        for node in round.replicas.clone() {
            if node == me {
                let answer = local.on_paxos_fence(
                    ctx,
                    me,
                    req,
                    &round.bucket,
                    round.partition,
                    round.fence,
                    round.after.clone(),
                );
                if let Some(answer) = answer {
                    self.own.push_back((req, answer));
                }
            } else if local.is_alive(node, ctx.now) {
                local.out.send(
                    node,
                    Message::PaxosFenceRequest {
                        req,
                        bucket: round.bucket.clone(),
                        partition: round.partition,
                        fence: round.fence,
                        after: round.after.clone(),
                    },
                );
            } else {
                round.failed.insert(node);
            }
        }
        self.settle(local, ctx, paxos);
    }

    /// This node's own answer to its own fence, released by a sync.
    pub(crate) fn own_answer(&mut self, req: RequestId, result: Result<FenceList, ReplicaError>) {
        self.own.push_back((req, result));
    }

    /// Handles this node's own answers and its rounds' finished serial reads (at the end of
    /// each call). Returns whether anything was handled.
    pub(crate) fn pump<S: Store>(
        &mut self,
        local: &mut Local,
        ctx: &mut Ctx<'_, S>,
        paxos: &mut Paxos,
    ) -> bool {
        let mut any = false;
        while let Some((req, result)) = self.own.pop_front() {
            any = true;
            let me = local.me();
            self.on_fence_response(local, ctx, paxos, me, req, result);
        }
        for (id, ok) in local.out.take_repaired() {
            any = true;
            self.on_repaired(local, ctx, paxos, id, ok);
        }
        any
    }

    pub(crate) fn on_fence_response<S: Store>(
        &mut self,
        local: &mut Local,
        ctx: &mut Ctx<'_, S>,
        paxos: &mut Paxos,
        from: NodeId,
        req: RequestId,
        result: Result<FenceList, ReplicaError>,
    ) {
        let Some(round) = self.round.as_mut() else {
            return;
        };
        if round.req != req
            || round.listed
            || !round.replicas.contains(&from)
            || round.lists.contains_key(&from)
            || round.failed.contains(&from)
        {
            return;
        }
        match result {
            Ok(list) => {
                round.lists.insert(from, list);
            }
            Err(_) => {
                round.failed.insert(from);
            }
        }
        self.settle(local, ctx, paxos);
    }

    /// Moves on when a majority listed the page, or ends the round when one cannot.
    fn settle<S: Store>(&mut self, local: &mut Local, ctx: &mut Ctx<'_, S>, paxos: &mut Paxos) {
        let Some(round) = self.round.as_mut() else {
            return;
        };
        if round.listed {
            return;
        }
        if round.lists.len() >= round.needed() {
            // Every key up to the lowest point a listing stopped at was looked at by a
            // majority; the next page starts there.
            let stop = round
                .lists
                .values()
                .filter_map(|l| l.next.clone())
                .min_by(|a, b| a.0.cmp(&b.0));
            let mut keys: BTreeSet<Vec<u8>> = BTreeSet::new();
            for list in round.lists.values() {
                for key in &list.keys {
                    if stop.as_ref().is_none_or(|s| key.0 <= s.0) {
                        keys.insert(key.0.clone());
                    }
                }
            }
            round.after = stop;
            round.listed = true;
            round.progress_at = ctx.now;
            round.to_repair = keys
                .iter()
                .filter_map(|k| ObjectKey::from_storage_key(k).ok())
                .filter(|(p, k)| *p == round.partition && k.bucket == round.bucket)
                .map(|(_, k)| (k, 0))
                .collect();
            self.repair_more(local, ctx, paxos);
        } else if round.failed.len() > round.replicas.len() - round.needed() {
            self.end(local, ctx.now, false);
        }
    }

    /// Starts serial reads of the page's keys (a bounded number at once); when all are done,
    /// the next page, or the low bound.
    fn repair_more<S: Store>(
        &mut self,
        local: &mut Local,
        ctx: &mut Ctx<'_, S>,
        paxos: &mut Paxos,
    ) {
        let Some(round) = self.round.as_mut() else {
            return;
        };
        while round.running.len() < PAXOS_REPAIRS_IN_FLIGHT
            && let Some((key, failures)) = round.to_repair.pop_front()
        {
            let read = local.out.new_request(ctx.rng);
            round.running.insert(read, (key.clone(), failures));
            let request = CasRequest {
                key,
                condition: Condition::Always,
                action: CasAction::Read,
                timeout_ms: None,
                supersedes: None,
            };
            let deadline = ctx.now.plus_ms(local.config.request_timeout_ms);
            let (partition, replicas) = (round.partition, round.replicas.clone());
            paxos.start(
                local,
                ctx,
                ReplyTo::Repair(read),
                AnswerAs::Cas,
                request,
                // A serial read writes nothing of its own: the mode makes no difference.
                (ConflictMode::Lww, None),
                partition,
                replicas,
                deadline,
            );
        }
        let Some(round) = self.round.as_mut() else {
            return;
        };
        if !round.running.is_empty() || !round.to_repair.is_empty() {
            return;
        }
        if round.after.is_some() {
            return self.ask(local, ctx, paxos);
        }
        // Every key listed is settled: the fence is the group's low bound.
        let (bucket, partition, bound) = (round.bucket.clone(), round.partition, round.fence);
        let me = local.me();
        for node in round.replicas.clone() {
            if node == me {
                self.status.states_collected +=
                    local.on_paxos_low_bound(ctx, &bucket, partition, bound) as u64;
            } else {
                local.out.send(
                    node,
                    Message::PaxosLowBound {
                        bucket: bucket.clone(),
                        partition,
                        bound,
                    },
                );
            }
        }
        self.end(local, ctx.now, true);
    }

    fn on_repaired<S: Store>(
        &mut self,
        local: &mut Local,
        ctx: &mut Ctx<'_, S>,
        paxos: &mut Paxos,
        id: RequestId,
        ok: bool,
    ) {
        let Some(round) = self.round.as_mut() else {
            return;
        };
        let Some((key, failures)) = round.running.remove(&id) else {
            return;
        };
        if !ok {
            // Contention, or no majority for now: the fence still holds, so the key is
            // tried again; a key that keeps failing ends the round without a low bound.
            if failures + 1 >= REPAIR_TRIES {
                return self.end(local, ctx.now, false);
            }
            round.to_repair.push_back((key, failures + 1));
        } else {
            round.progress_at = ctx.now;
            self.status.keys_repaired += 1;
        }
        self.repair_more(local, ctx, paxos);
    }

    /// The round is over: the next group's starts at the next call.
    fn end(&mut self, local: &mut Local, now: Timestamp, done: bool) {
        let Some(round) = self.round.take() else {
            return;
        };
        if done {
            self.status.rounds += 1;
        } else {
            self.status.rounds_failed += 1;
        }
        let due = round.progress_at.plus_ms(round_time(local));
        local.timers.cancel(due, Timer::PaxosRepair);
        local.timers.set(now.plus_ms(1), Timer::PaxosRepair);
    }
}

impl Local {
    /// The primaries of a group, if this node is one and the group's bucket takes
    /// compare-and-set.
    fn repairable(&self, bucket: &BucketName, partition: PartitionId) -> Option<Vec<NodeId>> {
        let props = self.buckets.get(bucket)?;
        if props.cas == CasMode::Off {
            return None;
        }
        let replicas = self
            .layout
            .preference_list(partition, props.n as usize)
            .to_vec();
        replicas.contains(&self.me()).then_some(replicas)
    }

    /// Whether a round (of any primary) fenced the group within the last half interval: its
    /// primaries walk the same groups, and one round per interval is enough.
    fn repaired_lately<S: Store>(
        &self,
        ctx: &Ctx<'_, S>,
        bucket: &BucketName,
        partition: PartitionId,
    ) -> bool {
        let Ok(bound) = group_bound(ctx.store, &group_prefix(partition, bucket)) else {
            return false;
        };
        let half = self.config.paxos_repair_interval_ms / 2;
        bound.fence != Ballot::ZERO
            && bound.fence.hlc.physical_ms().saturating_add(half) > ctx.now.0
    }

    /// The bounds of the group of `key` (as stored: the default when none are).
    pub(crate) fn group_bound_of<S: Store>(
        &self,
        store: &S,
        partition: PartitionId,
        key: &ObjectKey,
    ) -> Result<GroupBound, ReplicaError> {
        group_bound(store, &group_prefix(partition, &key.bucket))
    }

    /// A repair round's fence at this primary: kept, then the group's keys to settle listed.
    /// Returns the answer when it is immediate (a refusal), else waits for the sync that
    /// makes the fence durable (`Waiter::PaxosFenceAck`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_paxos_fence<S: Store>(
        &mut self,
        ctx: &mut Ctx<'_, S>,
        from: NodeId,
        req: RequestId,
        bucket: &BucketName,
        partition: PartitionId,
        fence: Ballot,
        after: Option<StorageKey>,
    ) -> Option<Result<FenceList, ReplicaError>> {
        let list = match self.paxos_fence(ctx, bucket, partition, fence, after) {
            Ok(list) => list,
            Err(e) => return Some(Err(e)),
        };
        self.durability.require_next_sync();
        self.durability
            .wait(Waiter::PaxosFenceAck {
                to: from,
                req,
                list,
            })
            .map(|w| match w {
                Waiter::PaxosFenceAck { list, .. } => Ok(list),
                _ => unreachable!("the waiter given back is the one given"),
            })
    }

    fn paxos_fence<S: Store>(
        &mut self,
        ctx: &mut Ctx<'_, S>,
        bucket: &BucketName,
        partition: PartitionId,
        fence: Ballot,
        after: Option<StorageKey>,
    ) -> Result<FenceList, ReplicaError> {
        if let Some(e) = self.durability.poisoned() {
            return Err(ReplicaError::Store(e.to_string()));
        }
        if self.repairable(bucket, partition).is_none() {
            return Err(ReplicaError::NotReplica);
        }
        check_skew(fence.hlc, ctx.now, self.config.max_clock_skew_ms)
            .map_err(|e| ReplicaError::ClockSkew(e.to_string()))?;
        let store_err = |e: crate::store::StoreError| ReplicaError::Store(e.to_string());
        let prefix = group_prefix(partition, bucket);
        let mut bound = group_bound(ctx.store, &prefix)?;
        bound.raise_fence(fence);
        let mut batch = WriteBatch::default();
        batch.put(bound_key(&prefix), encode_group_bound(&bound));
        ctx.store.write(batch).map_err(store_err)?;
        let states = state_key(&prefix);
        let start = after.map_or_else(|| states.clone(), |a| state_key(&a.0));
        let entries = ctx
            .store
            .scan_partition(PAXOS_PARTITION, Some(&start), FENCE_SCAN_MAX)
            .map_err(store_err)?;
        let scanned = entries.len();
        let mut keys = Vec::new();
        let mut next = None;
        for (i, (k, v)) in entries.into_iter().enumerate() {
            if !k.starts_with(&states) {
                break;
            }
            let state =
                decode_acceptor_state(&v).map_err(|e| ReplicaError::Store(e.to_string()))?;
            if state.touched_above(bound.low) {
                keys.push(StorageKey(k[4..].to_vec()));
            }
            // Stop at a full page, or at the end of what was scanned (more may follow).
            if keys.len() == PAXOS_REPAIR_KEYS_MAX
                || (i + 1 == scanned && scanned == FENCE_SCAN_MAX)
            {
                next = Some(StorageKey(k[4..].to_vec()));
                break;
            }
        }
        Ok(FenceList { keys, next })
    }

    /// A repair round's low bound at this primary: kept (with the fence at least as high),
    /// and the group's state wholly at or below it dropped. Returns how many states were.
    pub(crate) fn on_paxos_low_bound<S: Store>(
        &mut self,
        ctx: &mut Ctx<'_, S>,
        bucket: &BucketName,
        partition: PartitionId,
        low: Ballot,
    ) -> usize {
        if self.durability.poisoned().is_some()
            || self.repairable(bucket, partition).is_none()
            || check_skew(low.hlc, ctx.now, self.config.max_clock_skew_ms).is_err()
        {
            return 0;
        }
        let prefix = group_prefix(partition, bucket);
        let Ok(mut bound) = group_bound(ctx.store, &prefix) else {
            return 0;
        };
        let low = bound.raise_low(low);
        let mut batch = WriteBatch::default();
        batch.put(bound_key(&prefix), encode_group_bound(&bound));
        let states = state_key(&prefix);
        let mut collected = 0;
        let mut after = states.clone();
        for _ in 0..COLLECT_PAGES_MAX {
            let Ok(entries) =
                ctx.store
                    .scan_partition(PAXOS_PARTITION, Some(&after), PAXOS_COLLECT_MAX)
            else {
                return 0;
            };
            let full = entries.len() == PAXOS_COLLECT_MAX;
            let mut last = None;
            for (k, v) in entries
                .into_iter()
                .take_while(|(k, _)| k.starts_with(&states))
            {
                if decode_acceptor_state(&v).is_ok_and(|s| s.collectable(low)) {
                    batch.remove(k.clone());
                    collected += 1;
                }
                last = Some(k);
            }
            match last {
                Some(k) if full => after = k,
                _ => break,
            }
        }
        // The bound and the removals in one batch: a crash keeps both or neither.
        match ctx.store.write(batch) {
            Ok(()) => collected,
            Err(_) => 0,
        }
    }
}

fn group_bound<S: Store>(store: &S, prefix: &[u8]) -> Result<GroupBound, ReplicaError> {
    match store.get(&bound_key(prefix)) {
        Ok(None) => Ok(GroupBound::default()),
        Ok(Some(bytes)) => {
            decode_group_bound(&bytes).map_err(|e| ReplicaError::Store(e.to_string()))
        }
        Err(e) => Err(ReplicaError::Store(e.to_string())),
    }
}
