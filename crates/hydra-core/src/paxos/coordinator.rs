//! One compare-and-set request's coordinator, as a pure state machine: it is told each
//! acceptor's answer and says what to do next (send a phase, stamp a write, back off, answer).
//! The node's driver (`node/paxos.rs`) does the sending, the timers and the clock checks; the
//! model checker (`hydra-model`) drives this same code over every interleaving.
//!
//! ```text
//! prepare(ballot) ─▶ Send(Prepare) ─▶ a majority promises (its state and its data)
//!   ├ a proposal accepted above the highest commit (in progress): Send(Propose it at our
//!   │ ballot), Send(Commit it), then Restart (it may be this request's own: then Done)
//!   ├ the condition holds: Stamp ─▶ stamp(clock) ─▶ Send(Propose the new value)
//!   │ ─▶ majority ─▶ Send(Commit) ─▶ majority ─▶ Done(applied)
//!   ├ it does not (or a read), the promised data agree and no write was promised since
//!   │ the latest commit: Done (one round trip)
//!   └ they differ: Propose/Commit the merged data first, so a later quorum read sees it
//! a majority refused or cannot answer: BackOff, then prepare again with a higher ballot
//! ```
//!
//! Invariants:
//! * A committed value is stamped after everything the prepare read (`stamp` observes the
//!   newest timestamp read), so the `lww` order of committed values is their commit order.
//! * This request's own proposals, once sent, are in doubt until one is seen committed or in
//!   progress (applied), or a commit at a higher ballot ends them all (the prepare before it
//!   found none committed or in progress, or found for each a commit above it of another
//!   value first proposed below it: see `AcceptorState`); any other commit above one that
//!   the data do not show is unknown (it may have been applied and replaced). Never `not applied` while one may still
//!   win, never applied twice (a retry proposes anew only after finding the earlier ones
//!   uncommitted, and the first commit ends the rest).
//! * A phase moves on only with answers from a majority of the key's primaries.

use super::{Accepted, Ballot, CommitSeen, Condition, Proposal};
use crate::bucket::ConflictMode;
use crate::bugs::planted;
use crate::collection::{Collection, CollectionUpdate};
use crate::hlc::{ClockSkewError, HlcClock};
use crate::ids::{NodeId, Timestamp};
use crate::message::{CasAction, Expiry, PaxosAnswer, PaxosPhase, PaxosRefusal, Promise};
use crate::version::{Dvv, LwwValue, Object, Sibling, TooManySiblings, VersionVector};
use std::collections::BTreeSet;

/// What follows a commit.
#[derive(Clone, Debug, PartialEq, Hash, Eq)]
enum Then {
    /// Another request's proposal was finished: prepare again.
    Restart,
    /// Answer the client.
    Reply(Decided),
}

#[derive(Clone, Debug, PartialEq, Hash, Eq)]
enum Step {
    /// Between attempts (backing off), or before the first.
    Idle,
    Prepare,
    /// `base`: the highest commit the prepare before the proposal's first proposing found.
    Propose {
        proposal: Proposal,
        base: Ballot,
        then: Then,
    },
    Commit {
        proposal: Proposal,
        base: Ballot,
        then: Then,
    },
    /// The condition held: the write waits for its timestamp (`stamp`).
    Stamp {
        write: Write,
        previous: Option<Sibling>,
        merged: Option<Object>,
        base: Ballot,
    },
}

/// What a write whose condition held makes, once stamped.
#[derive(Clone, Debug, PartialEq, Hash, Eq)]
enum Write {
    /// A value or a tombstone (its timestamp still to set).
    Value(Sibling),
    /// A hash or set update, applied to what the prepare read.
    Collection(CollectionUpdate),
}

/// A decided request: `object` is the key's value after it, `previous` the value its
/// condition was judged on.
#[derive(Clone, Debug, PartialEq, Hash, Eq)]
pub struct Decided {
    pub applied: bool,
    pub object: Option<Object>,
    pub previous: Option<Sibling>,
}

/// What the driver does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Nothing until more answers come.
    Wait,
    /// Send this phase, at the current ballot, to every primary.
    Send(PaxosPhase),
    /// The condition holds: the write needs a timestamp from this node's clock (`stamp`).
    Stamp,
    /// Another request's proposal was finished: prepare again at once.
    Restart,
    /// Beaten by a higher ballot, or a majority cannot answer: wait, then prepare again.
    BackOff,
    /// The request is decided.
    Done(Decided),
    /// One of this request's proposals may have been applied and replaced since: its
    /// outcome cannot be learned (`outcome_unknown`; a serial read tells the value now).
    Unknown,
}

/// Why a request ends undecided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GiveUp {
    /// One of this request's proposals may have been chosen: a serial read tells.
    Unknown,
    /// Higher ballots kept winning; nothing of this request was proposed.
    Contended,
    /// A majority did not answer; nothing of this request was proposed.
    Unavailable,
}

/// Why a write could not be stamped; nothing of the attempt was proposed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StampError {
    #[error(transparent)]
    Clock(#[from] ClockSkewError),
    #[error(transparent)]
    TooManySiblings(#[from] TooManySiblings),
    /// A hash or set update would take the key beyond its limits.
    #[error("{0}")]
    TooLarge(String),
}

/// One compare-and-set request, coordinated.
#[derive(Clone, Debug, PartialEq, Hash, Eq)]
pub struct Coordinator {
    pub condition: Condition,
    pub action: CasAction,
    /// The bucket's conflict mode: the kind of object a write makes.
    conflicts: ConflictMode,
    /// `siblings` buckets: what a write supersedes (the context of the client's read, for a
    /// plain write of a `cas = all_writes` bucket); `None`, everything the prepare read.
    supersedes: Option<VersionVector>,
    /// The bucket's default TTL, for writes that name none.
    ttl_default_ms: Option<u64>,
    replicas: Vec<NodeId>,
    needed: usize,
    pub ballot: Ballot,
    step: Step,
    /// Who answered the current step, and who refused it or failed.
    answered: BTreeSet<NodeId>,
    failed: BTreeSet<NodeId>,
    /// The promises of the current prepare, in the order they came.
    promises: Vec<(NodeId, Promise)>,
    /// The highest ballot a refusal named.
    pub beaten_by: Option<Ballot>,
    pub attempts: u32,
    pub round_trips: u32,
    pub reproposed: u32,
    /// This request's own proposals (ballot, value, the value its condition was judged on),
    /// each from when it is sent until it is known committed (applied) or dead (a commit at
    /// a higher ballot without it). At most one per attempt.
    owns: Vec<(Ballot, Object, Option<Sibling>)>,
    /// The next commit of this attempt ends every own proposal (its prepare found none of
    /// them committed or in progress).
    seals_own: bool,
    /// Commits the coordinating node's own acceptor took of this key while the request ran
    /// (`note_commits_here`): more than a promise carries, as sound (each was sent after a
    /// majority accepted).
    commits_here: Vec<CommitSeen>,
}

impl Coordinator {
    pub fn new(
        condition: Condition,
        action: CasAction,
        ttl_default_ms: Option<u64>,
        replicas: Vec<NodeId>,
    ) -> Coordinator {
        let mut needed = replicas.len() / 2 + 1;
        if planted().paxos_quorum_off_by_one {
            needed -= 1;
        }
        Coordinator {
            condition,
            action,
            conflicts: ConflictMode::Lww,
            supersedes: None,
            ttl_default_ms,
            replicas,
            needed,
            ballot: Ballot::ZERO,
            step: Step::Idle,
            answered: BTreeSet::new(),
            failed: BTreeSet::new(),
            promises: Vec::new(),
            beaten_by: None,
            attempts: 0,
            round_trips: 0,
            reproposed: 0,
            owns: Vec::new(),
            seals_own: false,
            commits_here: Vec::new(),
        }
    }

    /// The commits the coordinating node's own acceptor took of this key so far (the
    /// driver's log), used with those the promises carry to learn what became of this
    /// request's own proposals.
    pub fn note_commits_here(&mut self, commits: Vec<CommitSeen>) {
        self.commits_here = commits;
    }

    /// A request in a bucket of this conflict mode (the default is `lww`); `supersedes`, for
    /// `siblings` buckets: the context the write supersedes, if not everything read.
    pub fn in_mode(mut self, conflicts: ConflictMode, supersedes: Option<VersionVector>) -> Self {
        self.conflicts = conflicts;
        self.supersedes = supersedes;
        self
    }

    /// Answers a majority must give for a phase to move on.
    pub fn needed(&self) -> usize {
        self.needed
    }

    /// Whether one of this request's proposals may have been chosen (so giving up now is
    /// `outcome_unknown`).
    pub fn in_doubt(&self) -> bool {
        !self.owns.is_empty()
    }

    /// The ballot of this request's last proposal in doubt, else the current one.
    pub fn last_own_ballot(&self) -> Ballot {
        self.owns.last().map_or(self.ballot, |(b, ..)| *b)
    }

    /// Whether the request waits between attempts (a `BackOff` not yet followed by
    /// `prepare`).
    pub fn backing_off(&self) -> bool {
        self.step == Step::Idle
    }

    /// Why the request ends if it must end now (its deadline, or its attempts spent).
    pub fn give_up(&self) -> GiveUp {
        if self.in_doubt() {
            GiveUp::Unknown
        } else if self.beaten_by.is_some_and(|b| b > self.ballot) {
            GiveUp::Contended
        } else {
            GiveUp::Unavailable
        }
    }

    /// The ballot a refusal named, which the next ballot must exceed (the driver's clock
    /// observes it before taking the next ballot).
    pub fn to_beat(&self) -> Option<Ballot> {
        self.beaten_by
    }

    /// A new attempt at `ballot` (above every ballot seen): send `Prepare`.
    pub fn prepare(&mut self, ballot: Ballot) -> Next {
        self.attempts += 1;
        self.seals_own = false;
        self.ballot = ballot;
        self.promises.clear();
        self.start(Step::Prepare)
    }

    fn start(&mut self, step: Step) -> Next {
        let phase = match &step {
            Step::Prepare => PaxosPhase::Prepare {
                write: self.action != CasAction::Read,
            },
            Step::Propose { proposal, base, .. } => PaxosPhase::Propose(proposal.clone(), *base),
            Step::Commit { proposal, base, .. } => PaxosPhase::Commit(proposal.clone(), *base),
            Step::Idle | Step::Stamp { .. } => unreachable!("only phases are sent"),
        };
        self.step = step;
        self.round_trips += 1;
        self.answered.clear();
        self.failed.clear();
        Next::Send(phase)
    }

    /// A primary cannot be asked (believed down): it counts as a failure of this step.
    pub fn unreachable(&mut self, from: NodeId, now: Timestamp) -> Next {
        if !self.replicas.contains(&from)
            || self.answered.contains(&from)
            || self.failed.contains(&from)
            || matches!(self.step, Step::Idle | Step::Stamp { .. })
        {
            return Next::Wait;
        }
        self.failed.insert(from);
        self.settle(now)
    }

    /// An acceptor's answer to the current step (the driver drops answers to older steps).
    /// `now` judges TTLs.
    pub fn on_answer(
        &mut self,
        from: NodeId,
        result: Result<PaxosAnswer, PaxosRefusal>,
        now: Timestamp,
    ) -> Next {
        if !self.replicas.contains(&from)
            || self.answered.contains(&from)
            || self.failed.contains(&from)
        {
            return Next::Wait;
        }
        match (result, &self.step) {
            (Ok(PaxosAnswer::Promise(promise)), Step::Prepare) => {
                self.promises.push((from, *promise));
                self.answered.insert(from);
            }
            (Ok(PaxosAnswer::Accepted), Step::Propose { .. })
            | (Ok(PaxosAnswer::Committed), Step::Commit { .. }) => {
                self.answered.insert(from);
            }
            (Ok(_), Step::Idle | Step::Stamp { .. }) => return Next::Wait,
            (Ok(_), _) => {
                self.failed.insert(from);
            }
            (Err(refusal), _) => {
                if let PaxosRefusal::Ballot(b) = refusal {
                    self.beaten_by = self.beaten_by.max(Some(b));
                }
                if matches!(self.step, Step::Idle | Step::Stamp { .. }) {
                    return Next::Wait;
                }
                self.failed.insert(from);
            }
        }
        self.settle(now)
    }

    /// Moves on when the current step has a majority, or cannot get one.
    fn settle(&mut self, now: Timestamp) -> Next {
        if self.answered.len() >= self.needed {
            match self.step.clone() {
                Step::Prepare => self.on_promised(now),
                Step::Propose {
                    proposal,
                    base,
                    then,
                } => self.start(Step::Commit {
                    proposal,
                    base,
                    then,
                }),
                Step::Commit { then, .. } => self.on_committed(then),
                Step::Idle | Step::Stamp { .. } => Next::Wait,
            }
        } else if self.failed.len() > self.replicas.len() - self.needed {
            // Beaten by a higher ballot, or replicas down or failing: try again (they may
            // come back). This request's own proposals stay in doubt (a refusal does not
            // prove an acceptor never took one: a duplicate's refusal can overtake the
            // acceptance); the next prepare finds out what became of them.
            self.step = Step::Idle;
            Next::BackOff
        } else {
            Next::Wait
        }
    }

    /// A majority promised: finish what is in progress, or judge the condition.
    fn on_promised(&mut self, now: Timestamp) -> Next {
        let latest = self
            .promises
            .iter()
            .map(|(_, p)| p.committed)
            .max()
            .unwrap_or(Ballot::ZERO);
        let accepted = self
            .promises
            .iter()
            .filter_map(|(_, p)| p.accepted.as_ref())
            .filter(|a| a.ballot > latest);
        let in_progress: Option<Accepted> = if planted().paxos_ignores_in_progress {
            None
        } else if planted().paxos_in_progress_by_arrival {
            accepted.clone().next().cloned()
        } else {
            accepted.max_by_key(|a| a.ballot).cloned()
        };
        let mut merged: Option<Object> = None;
        for object in self.promises.iter().filter_map(|(_, p)| p.object.as_ref()) {
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
            let mut objects = self.promises.iter().map(|(_, p)| &p.object);
            let first = objects.next();
            objects.all(|o| Some(o) == first)
        };
        // This request's own proposals (values of earlier attempts that may have been
        // accepted): applied if one is in progress (Paxos carries a chosen value into every
        // later proposal) or is what the data hold. The answer is then that own version (its
        // context is the one a later `If-Match` names), not whatever replaced it since.
        let own_of = |o: &Object| {
            self.owns
                .iter()
                .find(|(_, v, _)| same_version(o, v))
                .map(|(_, v, previous)| (v.clone(), previous.clone()))
        };
        let own_in_progress = in_progress
            .as_ref()
            .and_then(|a| a.proposal.as_ref())
            .and_then(own_of);
        // A commit at an own ballot is that own proposal committed (only this request
        // proposes at its ballots), and a commit of an own value (its identity is unique:
        // another coordinator that took it up, or a read that found it in the data and
        // proposed what it read) shows the value was chosen: applied, even if the data no
        // longer show it (a later write, a plain write, an expiry). Under contention this is
        // how a request learns its value was committed and replaced at once.
        let own_committed = merged.as_ref().and_then(own_of).or_else(|| {
            self.owns
                .iter()
                .find(|(b, own, _)| {
                    let id = super::value_id(&Some(own.clone()));
                    let any_above = planted().paxos_own_commit_any_above;
                    let matches = |c: &CommitSeen| {
                        c.ballot == *b || c.id == id || (any_above && c.ballot > *b)
                    };
                    self.promises
                        .iter()
                        .any(|(_, p)| p.committed == *b || p.commits.iter().any(matches))
                        || self.commits_here.iter().any(matches)
                })
                .map(|(_, v, previous)| (v.clone(), previous.clone()))
        });
        let lowest_own = self.owns.iter().map(|(b, ..)| *b).min();
        // An own proposal at `b` cannot have been chosen (yet) when no promise shows an
        // acceptance at or above `b` and either no promise shows a commit at or above `b`
        // (a chosen one was accepted by a majority, which this majority meets, and an
        // acceptor's accepted ballot only grows until a commit at or above it), or one shows
        // a commit above `b` of another value first proposed below every commit at or above
        // `b` (its base): see `AcceptorState`. Until this attempt's own commit reaches a
        // majority (`seals_own`) one could still be taken up, so they stay in doubt till then.
        let beaten = |b: Ballot, own: &Object| {
            let id = super::value_id(&Some(own.clone()));
            let here = self.commits_here.iter();
            self.promises
                .iter()
                .flat_map(|(_, p)| &p.commits)
                .chain(here)
                .any(|c| {
                    c.ballot > b
                        && c.id != id
                        && (c.base < b || planted().paxos_beaten_ignores_base)
                })
        };
        let owns_unchosen = !self.owns.is_empty()
            && self.owns.iter().all(|(b, own, _)| {
                (latest < *b || beaten(*b, own))
                    && in_progress.as_ref().is_none_or(|a| a.ballot < *b)
            });
        let read_fast = planted().paxos_read_skips_in_progress && self.action == CasAction::Read;
        if let Some(acc) = in_progress.filter(|_| !read_fast) {
            let then = if let Some((own, previous)) = own_in_progress.or(own_committed) {
                Then::Reply(Decided {
                    applied: true,
                    object: Some(own),
                    previous,
                })
            } else {
                self.reproposed += 1;
                Then::Restart
            };
            // If none was chosen, this commit, at a higher ballot, ends them all. (An
            // in-progress proposal above an own one may belong to a later instance, built on
            // an own value committed at a minority: then they stay in doubt.)
            self.seals_own = owns_unchosen;
            let (proposal, base) = (acc.proposal, acc.base);
            return self.start(Step::Propose {
                proposal,
                base,
                then,
            });
        }
        if let Some((own, previous)) = own_committed {
            let then = Then::Reply(Decided {
                applied: true,
                object: Some(own),
                previous,
            });
            if agree {
                return self.on_committed(then);
            }
            let proposal = merged;
            return self.start(Step::Propose {
                proposal,
                base: latest,
                then,
            });
        }
        if lowest_own.is_some() {
            if !owns_unchosen {
                // A commit above an own proposal, which the data do not show: it may have
                // been committed and replaced since, or never chosen. No telling which.
                self.step = Step::Idle;
                return Next::Unknown;
            }
            // None chosen: they are dead once anything commits at this ballot.
            self.seals_own = true;
        }
        let now_ms = now.0;
        let visible = merged.as_ref().map_or(0, |m| m.visible_at(now_ms).len());
        let current = merged
            .as_ref()
            .and_then(|m| m.visible_at(now_ms).into_iter().next().cloned());
        let version = merged.as_ref().map(Object::context).unwrap_or_default();
        // A `siblings` key holding several values holds none of them alone. A key holding a
        // hash or set exists, with no value to compare (a read of it is refused as the wrong
        // type where the answer is made).
        let holds_collection = merged
            .as_ref()
            .and_then(Object::collection)
            .is_some_and(|c| c.is_live(now_ms));
        let holds = if holds_collection {
            match &self.condition {
                Condition::Always | Condition::Present => true,
                Condition::VersionIs(c) => *c == version,
                Condition::Elements(elements) => {
                    planted().paxos_elements_condition_ignored
                        || merged
                            .as_ref()
                            .and_then(Object::collection)
                            .is_some_and(|c| c.has_exactly(elements, now_ms))
                }
                Condition::Absent | Condition::ValueIs(_) => false,
            }
        } else {
            self.condition
                .holds(current.as_ref().map(|s| s.value.as_slice()), &version)
                && (visible <= 1 || !matches!(self.condition, Condition::ValueIs(_)))
        };
        // A hash or set update applies to a key holding nothing live or its own kind.
        let kind_fits = |kind| {
            current.is_none()
                && merged
                    .as_ref()
                    .and_then(Object::collection)
                    .is_none_or(|c| c.kind == kind || !c.is_live(now_ms))
        };
        let write = match (&self.action, holds) {
            (CasAction::Read, _) | (_, false) => None,
            (CasAction::Collection(update), true) => {
                kind_fits(update.kind).then(|| Write::Collection(update.clone()))
            }
            (
                CasAction::Write {
                    value,
                    content_type,
                    expiry,
                    keep_ttl,
                },
                true,
            ) => {
                let mut s = Sibling::value(value.clone(), content_type, Default::default());
                s.expires_at = match (keep_ttl, &current) {
                    (true, Some(c)) => c.expires_at,
                    _ => expiry
                        .or(self.ttl_default_ms.map(Expiry::AfterMs))
                        .map(|e| e.deadline(now_ms)),
                };
                Some(Write::Value(s))
            }
            (CasAction::Delete, true) => Some(Write::Value(Sibling::tombstone(Default::default()))),
        };
        if let Some(write) = write {
            self.step = Step::Stamp {
                write,
                previous: current,
                merged,
                base: latest,
            };
            return Next::Stamp;
        }
        let then = Then::Reply(Decided {
            applied: false,
            object: merged.clone(),
            previous: current,
        });
        // A write promised since the latest commit may still have its proposal accepted
        // outside this majority and finished later: this read would not settle it.
        let writes_since = self
            .promises
            .iter()
            .map(|(_, p)| p.promised_write)
            .max()
            .is_some_and(|w| w > latest)
            && !planted().paxos_read_ignores_write_promises;
        // The latest commit hides older proposals (and older write promises) from every later
        // majority only if it was chosen (a commit an acceptor saw: a majority accepted it) or
        // this whole majority holds it. A Paxos low bound stands in for a commit and may have
        // reached a minority only: a later majority without it would take up a proposal below
        // it after this read. Then proposing makes this read's view a majority's.
        let latest_settled = self.promises.iter().all(|(_, p)| p.committed == latest)
            || self
                .promises
                .iter()
                .any(|(_, p)| p.commits.iter().any(|c| c.ballot == latest))
            || planted().paxos_read_trusts_minority_commits;
        if agree && !self.seals_own && !writes_since && latest_settled {
            // Nothing in flight, nothing to repair: one round trip.
            return self.on_committed(then);
        }
        // Make what was read the state of a majority, so no later read sees less (and end
        // this request's earlier proposals, and those of writes promised since the latest
        // commit: none can be accepted below this commit from then on).
        let proposal = merged;
        self.start(Step::Propose {
            proposal,
            base: latest,
            then,
        })
    }

    /// After `Next::Stamp`: stamps the write by `clock` (after everything the prepare read,
    /// so it is the newest version, with an identity no other proposal has) and proposes it.
    /// Refused when the data read are stamped beyond what the clock may take in (a value
    /// stamped by it would lose to them), or when the write would leave too many siblings;
    /// then nothing was proposed.
    ///
    /// In a `siblings` bucket the value is an event of this node's Paxos writer
    /// ([`NodeId::paxos_writer`]) with the writer's counter for the key one above what the
    /// prepare read (above the stamp if the key holds none, as plain writes start). That
    /// names one value: of the proposals that share the dot only one is chosen, and each
    /// chosen one was proposed after a prepare that read the commit before (a majority holds
    /// it, or it was in progress and finished first), so the writer's chosen events count
    /// up. The value's stamp and writer identify the proposal, as an `lww` value's do.
    pub fn stamp(
        &mut self,
        clock: &mut HlcClock,
        now: Timestamp,
        max_skew_ms: u64,
    ) -> Result<Next, StampError> {
        let Step::Stamp {
            write,
            previous,
            merged,
            base,
        } = std::mem::replace(&mut self.step, Step::Idle)
        else {
            return Ok(Next::Wait);
        };
        if let Some(m) = &merged
            && !planted().paxos_stamp_ignores_read
        {
            clock.observe(m.max_timestamp(), now, max_skew_ms)?;
        }
        let stamp = clock.now(now);
        let mut write = match write {
            Write::Value(write) => write,
            Write::Collection(update) => {
                let object = collection_write(merged, &update, self.ballot.node, stamp, now)?;
                return Ok(self.propose_own(object, previous, base));
            }
        };
        write.timestamp = stamp;
        let object = match self.conflicts {
            ConflictMode::Lww => Object::Lww(LwwValue::new(self.ballot.node, write)),
            ConflictMode::Siblings => {
                let base = match &merged {
                    Some(Object::Siblings(d)) => d.clone(),
                    _ => Dvv::default(),
                };
                let context = self.supersedes.clone().unwrap_or_else(|| base.context());
                let writer = self.ballot.node.paxos_writer();
                let floor = write.timestamp.0;
                let (dvv, _) = base.update_from(&context, write, writer, floor)?;
                Object::Siblings(dvv)
            }
        };
        Ok(self.propose_own(object, previous, base))
    }

    /// Proposes this request's own stamped value (in doubt from now on).
    fn propose_own(&mut self, object: Object, previous: Option<Sibling>, base: Ballot) -> Next {
        self.owns
            .push((self.ballot, object.clone(), previous.clone()));
        let then = Then::Reply(Decided {
            applied: true,
            object: Some(object.clone()),
            previous,
        });
        self.start(Step::Propose {
            proposal: Some(object),
            base,
            then,
        })
    }

    fn on_committed(&mut self, then: Then) -> Next {
        if self.seals_own && matches!(self.step, Step::Commit { .. }) {
            self.owns.clear();
        }
        self.step = Step::Idle;
        match then {
            Then::Restart => Next::Restart,
            Then::Reply(decided) => Next::Done(decided),
        }
    }
}

/// Whether `a` holds exactly the version `b` is: an `lww` value's identity (timestamp and
/// writer, unique per proposal: its coordinator's clock never repeats) and its value (a TTL
/// change since keeps both). For `siblings` objects: whether `a` keeps alive the value `b`'s
/// commit wrote (its writer and stamp; values enter the data only through commits of
/// proposals that held them, so a later proposal keeping it alive also shows it chosen).
/// A hash or set update proposed by `node`: applied at `stamp` as an event of the node's
/// compare-and-set writer to the collection the prepare read (or a new one, when the key
/// holds nothing live of its kind), merged with what was read so a type it replaces stays
/// replaced.
///
/// The writer is not the node's own actor: the node's plain updates count on its durable
/// copy, these on the chain of a key's commits (each built on a read of the one before), so
/// a proposal that is never chosen leaves no gap under a vector entry of either.
fn collection_write(
    merged: Option<Object>,
    update: &CollectionUpdate,
    node: NodeId,
    stamp: crate::hlc::Hlc,
    now: Timestamp,
) -> Result<Object, StampError> {
    let mut base = match &merged {
        Some(Object::Collection(c)) if c.kind == update.kind => (**c).clone(),
        _ => Collection::new(update.kind),
    };
    base.apply(update, node.paxos_writer(), stamp, now.0);
    let new = Object::Collection(Box::new(base));
    let object = match merged {
        Some(m) => m.merge(&new).unwrap_or(new),
        None => new,
    };
    match object.collection().and_then(Collection::over_limits) {
        Some(why) => Err(StampError::TooLarge(why)),
        None => Ok(object),
    }
}

fn same_version(a: &Object, b: &Object) -> bool {
    match (a, b) {
        // An own update is held when the writer's latest event in the data is it.
        (Object::Collection(a), Object::Collection(b)) => b
            .newest_event()
            .is_some_and(|(node, stamp)| a.has_latest_event(node, stamp)),
        (Object::Siblings(a), Object::Siblings(b)) => {
            let Some((writer, own)) = b.newest_commit() else {
                return false;
            };
            a.siblings().any(|(d, s)| {
                d.node == writer
                    && s.timestamp == own.timestamp
                    && s.value == own.value
                    && s.tombstone == own.tombstone
            })
        }
        (Object::Lww(a), Object::Lww(b)) => {
            a.sibling.timestamp == b.sibling.timestamp
                && a.writer == b.writer
                && a.sibling.value == b.sibling.value
                && a.sibling.tombstone == b.sibling.tombstone
        }
        _ => false,
    }
}
