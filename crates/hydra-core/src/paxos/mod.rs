//! Compare-and-set through single-decree Paxos per key: ballots, an acceptor's state for one
//! key and its transitions, the conditions a client can ask for, and (`coordinator.rs`) one
//! request's coordinator as a pure state machine. The node's driver (sending, timers, the
//! clock, durability) is `node/paxos.rs`; the model checker (`hydra-model`) runs this code.
//!
//! Source: Lamport, "Paxos Made Simple" (2001); Cassandra's lightweight transactions
//! (`Paxos.md` in its tree): one Paxos instance per key at a time, and a commit ends it, so
//! the next ballot starts the next instance. An acceptor remembers the highest ballot it
//! promised, the proposal it accepted last, and the highest ballot committed to it.
//!
//! Invariants:
//! * `promised` never goes down; a proposal is accepted only at a ballot at least the one
//!   promised; so once a majority promised ballot `b`, no proposal of a lower ballot can win
//!   a majority again.
//! * A proposal accepted above the highest commit a quorum reports is in progress: the next
//!   coordinator proposes it again (with its own ballot) and commits it before anything else.
//! * Ballots are unique (the HLC reading of their coordinator, then its node id) and carry no
//!   randomness, so the simulator replays them.

use crate::bugs::planted;
use crate::hlc::Hlc;
use crate::ids::NodeId;
use crate::limits::PAXOS_COMMITS_KEPT;
use crate::message::{PaxosAnswer, PaxosPhase, Promise};
use crate::version::Object;
use serde::{Deserialize, Serialize};
use std::fmt;

pub mod coordinator;
pub use coordinator::{Coordinator, Decided, GiveUp, Next, StampError};

/// A Paxos ballot: its coordinator's HLC reading, then the coordinator (unique per node, as
/// the HLC of one node never repeats a reading). A commit's value is stamped with its ballot,
/// so committed values of one key are ordered as their ballots.
#[derive(Clone, Copy, Debug, PartialEq, Hash, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Ballot {
    pub hlc: Hlc,
    pub node: NodeId,
}

impl Ballot {
    /// Below every ballot a coordinator makes.
    pub const ZERO: Ballot = Ballot {
        hlc: Hlc(0),
        node: NodeId(0),
    };

    /// The ballot `node` takes at its clock reading `hlc`.
    pub fn new(hlc: Hlc, node: NodeId) -> Ballot {
        if planted().paxos_ballots_not_unique {
            return Ballot {
                hlc,
                node: NodeId(0),
            };
        }
        Ballot { hlc, node }
    }
}

impl Default for Ballot {
    fn default() -> Ballot {
        Ballot::ZERO
    }
}

impl fmt::Display for Ballot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.hlc, self.node)
    }
}

/// What a proposal commits: an object merged into the key's replicas, or nothing (a commit
/// that only ends the instance, so an older proposal can never be taken up again).
pub type Proposal = Option<Object>;

/// A proposal an acceptor accepted, and at which ballot.
#[derive(Clone, Debug, PartialEq, Hash, Eq, Serialize, Deserialize)]
pub struct Accepted {
    pub ballot: Ballot,
    pub proposal: Proposal,
    /// The highest commit the prepare of its first proposer found (kept when another
    /// coordinator proposes it again): see [`AcceptorState`].
    pub base: Ballot,
}

/// What tells one proposal's value from every other: the timestamp and writer of its `lww`
/// version (unique: a coordinator's clock never repeats a reading), or of the newest value a
/// commit wrote in its `siblings` object (`Dvv::newest_commit`). `None` for a proposal that
/// carries nothing (or, in a `siblings` bucket, no value of a commit).
pub type ValueId = Option<(crate::hlc::Hlc, NodeId)>;

/// The identity of a proposal's value.
pub fn value_id(proposal: &Proposal) -> ValueId {
    match proposal {
        Some(Object::Lww(l)) => Some((l.sibling.timestamp, l.writer)),
        Some(Object::Siblings(d)) => d.newest_commit().map(|(w, s)| (s.timestamp, w)),
        // A collection's newest update (a proposal's own: stamped after all it read).
        Some(Object::Collection(c)) => c.newest_event().map(|(n, s)| (s, n)),
        None => None,
    }
}

/// A commit an acceptor saw: its ballot, its value and its base.
#[derive(Clone, Copy, Debug, PartialEq, Hash, Eq, Serialize, Deserialize)]
pub struct CommitSeen {
    pub ballot: Ballot,
    pub id: ValueId,
    pub base: Ballot,
}

/// One acceptor's state for one key (stored durably before any answer that depends on it).
///
/// The last commits' values and bases let a coordinator prove that one of its own proposals,
/// at ballot `b`, was never chosen: if a value `v` is ever chosen at a ballot `>= b`, every
/// proposal of another value committed at a ballot above that was first made after a
/// prepare that found a commit at or above `b` (its base), since that prepare met an
/// acceptor of `v`'s majority. So a commit above `b` of another value whose base is below
/// `b` proves `v` was not chosen before it; the coordinator's own later commit at a majority
/// then ends `v` for good (see `coordinator.rs`).
#[derive(Clone, Debug, Default, PartialEq, Hash, Eq, Serialize, Deserialize)]
pub struct AcceptorState {
    pub promised: Ballot,
    pub accepted: Option<Accepted>,
    pub committed: Ballot,
    /// The highest commits seen, by ballot (at most [`PAXOS_COMMITS_KEPT`]).
    pub commits: Vec<CommitSeen>,
    /// The highest ballot promised to a request that may write (not a serial read), or
    /// accepted. A read may answer without a proposal of its own only if no promise showed
    /// one above the latest commit: else a write prepared before it may still have its
    /// proposal accepted, and finished by a later coordinator, after the read (Cassandra's
    /// `promisedWrite`, Paxos v2).
    pub promised_write: Ballot,
}

impl AcceptorState {
    /// Phase 1: promise `ballot` if it is above every ballot promised so far; else the ballot
    /// that wins over it.
    pub fn prepare(&mut self, ballot: Ballot) -> Result<(), Ballot> {
        if ballot > self.promised || planted().paxos_forgets_promises {
            self.promised = ballot;
            Ok(())
        } else {
            Err(self.promised)
        }
    }

    /// Phase 2: accept `proposal` (first made with `base`) at `ballot` unless a higher ballot
    /// was promised (or committed: that instance is over).
    pub fn propose(
        &mut self,
        ballot: Ballot,
        proposal: Proposal,
        base: Ballot,
    ) -> Result<(), Ballot> {
        let bugs = planted();
        let promise_kept = ballot >= self.promised
            || bugs.paxos_forgets_promises
            || bugs.paxos_accepts_below_promise;
        if promise_kept && ballot > self.committed {
            if !bugs.paxos_accept_keeps_promise {
                self.promised = ballot;
            }
            self.promised_write = self.promised_write.max(ballot);
            self.accepted = Some(Accepted {
                ballot,
                proposal,
                base,
            });
            Ok(())
        } else {
            Err(self.promised.max(self.committed))
        }
    }

    /// The commit of `ballot` reached this acceptor (its proposal is merged into the data by
    /// the caller): an accepted proposal at or below it is done.
    pub fn commit(&mut self, ballot: Ballot, id: ValueId, base: Ballot) {
        self.committed = self.committed.max(ballot);
        if let Err(at) = self.commits.binary_search_by_key(&ballot, |c| c.ballot) {
            self.commits.insert(at, CommitSeen { ballot, id, base });
            if self.commits.len() > PAXOS_COMMITS_KEPT {
                self.commits.remove(0);
            }
        }
        if self
            .accepted
            .as_ref()
            .is_some_and(|a| a.ballot <= self.committed)
        {
            self.accepted = None;
        }
    }

    /// One phase at this acceptor: its state change and its answer, or the ballot that wins
    /// over `ballot`. A promise carries no data (the caller adds the key's object); a
    /// commit's proposal is merged into the data by the caller.
    pub fn handle(&mut self, ballot: Ballot, phase: &PaxosPhase) -> Result<PaxosAnswer, Ballot> {
        match phase {
            PaxosPhase::Prepare { write } => {
                let promised_write = self.promised_write;
                self.prepare(ballot)?;
                if *write {
                    self.promised_write = self.promised_write.max(ballot);
                }
                Ok(PaxosAnswer::Promise(Box::new(Promise {
                    accepted: self.in_progress().cloned(),
                    committed: self.committed,
                    promised_write,
                    object: None,
                    commits: self.commits.clone(),
                })))
            }
            PaxosPhase::Propose(proposal, base) => {
                self.propose(ballot, proposal.clone(), *base)?;
                Ok(PaxosAnswer::Accepted)
            }
            PaxosPhase::Commit(proposal, base) => {
                self.commit(ballot, value_id(proposal), *base);
                Ok(PaxosAnswer::Committed)
            }
        }
    }

    /// The accepted proposal not known committed here.
    pub fn in_progress(&self) -> Option<&Accepted> {
        self.accepted.as_ref().filter(|a| a.ballot > self.committed)
    }
}

/// The Paxos bounds of one group of keys (one bucket's keys in one partition), kept forever
/// by each of the group's primaries and applied to every key's state as it is loaded
/// ([`GroupBound::apply`]).
///
/// `fence`: a repair round promised it for every key of the group (no proposal below it can
/// win a majority from then on). `low`: every value that may have been chosen below it is in
/// a majority's data (the round's serial reads finished or committed it, or found it there
/// already), so state wholly at or below it can be dropped (`collectable`) and an accepted
/// proposal below it is never taken up again. `low <= fence`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Hash, Eq, Serialize, Deserialize)]
pub struct GroupBound {
    pub fence: Ballot,
    pub low: Ballot,
}

impl GroupBound {
    /// A repair round's fence reached this primary: no ballot below it is promised for any
    /// key of the group from now on.
    pub fn raise_fence(&mut self, fence: Ballot) {
        if !planted().paxos_collection_forgets_watermark {
            self.fence = self.fence.max(fence);
        }
    }

    /// A repair round settled every key of the group below `low`: the low bound (and the
    /// fence with it) rises. Returns the low bound state is collected below.
    pub fn raise_low(&mut self, low: Ballot) -> Ballot {
        let low = self.low.max(low);
        if !planted().paxos_collection_forgets_watermark {
            self.low = low;
            self.fence = self.fence.max(low);
        }
        low
    }

    /// A key's state as the bounds make it: nothing promised below the fence, nothing
    /// accepted at or below the low bound in progress, and the low bound reported as
    /// committed (so a coordinator's base accounts for everything collected below it).
    pub fn apply(&self, state: &mut AcceptorState) {
        if planted().paxos_low_bound_not_applied_on_load {
            return;
        }
        state.promised = state.promised.max(self.fence);
        state.committed = state.committed.max(self.low);
        if state
            .accepted
            .as_ref()
            .is_some_and(|a| a.ballot <= state.committed)
        {
            state.accepted = None;
        }
    }
}

impl AcceptorState {
    /// Whether a repair round must settle this key: a proposal was accepted or committed here
    /// above the low bound.
    pub fn touched_above(&self, low: Ballot) -> bool {
        self.committed > low || self.accepted.as_ref().is_some_and(|a| a.ballot > low)
    }

    /// Whether this state may be dropped once `low` applies: every ballot in it is at or
    /// below `low` (the fence refuses them in its place). Its commits go with it, so a
    /// coordinator may prove less from them (more `unknown`, never a wrong proof).
    pub fn collectable(&self, low: Ballot) -> bool {
        if planted().paxos_state_forgotten_by_wall_time {
            // The mutation: state dropped when a round passes, whatever its ballots.
            return true;
        }
        self.promised <= low && !self.touched_above(low)
    }
}

/// What a conditional write requires of the key's current value (the newest visible one).
#[derive(Clone, Debug, PartialEq, Hash, Eq, Serialize, Deserialize)]
pub enum Condition {
    /// Nothing: a serial read, or an unconditional write through Paxos.
    Always,
    /// The key has no visible value (`SET NX`, `If-None-Match: *`).
    Absent,
    /// The key has a visible value (`SET XX`).
    Present,
    /// The visible value is exactly these bytes (`SET ... IFEQ`, `DELIFEQ`).
    ValueIs(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The key's version is the one a read returned (`If-Match: <context>`): the context of
    /// the current object equals it.
    VersionIs(crate::version::VersionVector),
    /// The key holds a hash or set (or nothing) whose named elements have exactly these live
    /// dots (none: absent), as a read showed them (`HINCRBY`, `HSETNX`, `SPOP`, `SMOVE`).
    Elements(Vec<(Vec<u8>, Vec<crate::version::Dot>)>),
}

impl Condition {
    /// Whether `current` (the visible value, if any, and the object's context) satisfies it.
    pub fn holds(&self, current: Option<&[u8]>, version: &crate::version::VersionVector) -> bool {
        match self {
            Condition::Always => true,
            Condition::Absent => current.is_none(),
            Condition::Present => current.is_some(),
            Condition::ValueIs(v) => current == Some(v.as_slice()),
            Condition::VersionIs(c) => current.is_some() && c == version,
            // A plain value is the wrong type; nothing at all has no element.
            Condition::Elements(elements) => {
                current.is_none() && elements.iter().all(|(_, dots)| dots.is_empty())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(ms: u64, node: u64) -> Ballot {
        Ballot {
            hlc: Hlc::new(ms, 0),
            node: NodeId(node),
        }
    }

    #[test]
    fn promises_only_go_up_and_proposals_below_a_promise_are_refused() {
        let mut s = AcceptorState::default();
        assert_eq!(s.prepare(b(10, 1)), Ok(()));
        assert_eq!(
            s.prepare(b(10, 1)),
            Err(b(10, 1)),
            "a ballot is promised once"
        );
        assert_eq!(s.prepare(b(9, 2)), Err(b(10, 1)));
        assert_eq!(s.propose(b(9, 2), None, Ballot::ZERO), Err(b(10, 1)));
        assert_eq!(s.propose(b(10, 1), None, Ballot::ZERO), Ok(()));
        assert_eq!(s.in_progress().map(|a| a.ballot), Some(b(10, 1)));
        // A higher promise keeps the accepted proposal (a later coordinator takes it up).
        assert_eq!(s.prepare(b(11, 2)), Ok(()));
        assert_eq!(s.in_progress().map(|a| a.ballot), Some(b(10, 1)));
        assert_eq!(s.propose(b(10, 1), None, Ballot::ZERO), Err(b(11, 2)));
    }

    #[test]
    fn a_commit_ends_the_instance() {
        let mut s = AcceptorState::default();
        s.prepare(b(10, 1)).expect("promised");
        s.propose(b(10, 1), None, Ballot::ZERO).expect("accepted");
        s.commit(b(10, 1), None, Ballot::ZERO);
        assert_eq!(s.in_progress(), None);
        assert_eq!(s.committed, b(10, 1));
        // A stale commit never lowers it; a proposal at a committed ballot is refused.
        s.commit(b(5, 3), None, Ballot::ZERO);
        assert_eq!(s.committed, b(10, 1));
        assert!(s.propose(b(10, 1), None, Ballot::ZERO).is_err());
        // A later proposal accepted, then an older commit arrives: still in progress.
        s.prepare(b(12, 2)).expect("promised");
        s.propose(b(12, 2), None, Ballot::ZERO).expect("accepted");
        s.commit(b(11, 3), None, Ballot::ZERO);
        assert_eq!(s.in_progress().map(|a| a.ballot), Some(b(12, 2)));
    }

    #[test]
    fn conditions() {
        let v = crate::version::VersionVector::default();
        assert!(Condition::Absent.holds(None, &v));
        assert!(!Condition::Absent.holds(Some(b"x"), &v));
        assert!(Condition::Present.holds(Some(b"x"), &v));
        assert!(Condition::ValueIs(b"x".to_vec()).holds(Some(b"x"), &v));
        assert!(!Condition::ValueIs(b"x".to_vec()).holds(Some(b"y"), &v));
        assert!(!Condition::ValueIs(b"x".to_vec()).holds(None, &v));
        assert!(Condition::VersionIs(v.clone()).holds(Some(b"x"), &v));
        assert!(!Condition::VersionIs(v.clone()).holds(None, &v));
    }
}
