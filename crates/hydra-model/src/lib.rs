//! Exhaustive model checking of compare-and-set: the core's own Paxos code
//! (`hydra_core::paxos::AcceptorState::handle` for acceptors, `hydra_core::paxos::Coordinator`
//! for coordinators, `Object::merge` for the data) driven over every interleaving that
//! stateright finds, with a lossy, duplicating, reordering network and acceptors that crash
//! and restart from what they persisted.
//!
//! What the model adds around the core is what the node's driver (`node/paxos.rs`) does: it
//! sends each phase to every acceptor, drops answers to older steps, takes ballots and stamps
//! from a per-coordinator HLC, backs off and retries, and gives up at a deadline (which may
//! fire at any moment). With `Config::repairs`, a repairer also runs Paxos repair rounds
//! (`node/paxos_repair.rs`) at any moment: a fence kept by the acceptors, a serial read
//! (a `Coordinator`) when a majority's answers listed the key, then the low bound, with the
//! core's `GroupBound` applied before every phase and its `collectable` judging what is
//! dropped. The model's one key stands for a group: no paging, one repairer.
//!
//! One reduction keeps the state space small enough: an acceptor's answer is not a message
//! of its own. When an acceptor handles a request, its answer either reaches the coordinator
//! at once or is lost. An answer that arrives late is the same run as one that arrived at
//! once to a coordinator that then acted late: what the coordinator sends can itself be
//! delayed, and an earlier return to its client only adds real-time constraints to the
//! history, so a violation with late answers is also one with early answers. Clients invoke
//! operations on a CAS register and record them in a linearizability tester. A client whose
//! write ends `unknown` settles it with a serial read (`Config::settle`), as applications
//! do: its own value read means applied, an empty key means the write never takes effect
//! (the workloads write each value once and delete nothing), another value leaves it in
//! flight (it may or may not have taken effect).
//!
//! Properties: every history is linearizable (`always`); a chosen value is kept (`always`:
//! Paxos's own safety, over ghost state of who accepted what); and, so the check is not
//! vacuous, some run finishes every operation with a conditional write applied, and some
//! run leaves an outcome unknown (`sometimes`). Deep runs come from swarm random walks
//! ([`SwarmChooser`]).

use hydra_core::bucket::ConflictMode;
use hydra_core::bugs::PlantedBugs;
use hydra_core::hlc::HlcClock;
use hydra_core::message::{CasAction, PaxosAnswer, PaxosPhase, PaxosRefusal};
use hydra_core::paxos::{
    AcceptorState, Ballot, Condition, Coordinator, GiveUp, GroupBound, Next, ValueId, value_id,
};
use hydra_core::version::{Dvv, LwwValue, Object, Sibling};
use hydra_core::{NodeId, Timestamp};
use stateright::semantics::{ConsistencyTester, LinearizabilityTester, SequentialSpec};
use stateright::{Model, Property};
use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};

mod describe;
mod repair;
pub use repair::RepairRound;
mod swarm;

pub use swarm::{SwarmChooser, SwarmWalk};

/// The model's wall time: it never moves, so HLCs advance by their logical part only.
const NOW: Timestamp = Timestamp(0);
const SKEW_MS: u64 = 500;

/// An operation on the CAS register (values are single bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// A serial read.
    Read,
    /// An unconditional write through Paxos.
    Write(u8),
    /// `SET NX`: write if absent.
    SetIfAbsent(u8),
    /// `SET ... IFEQ`: write `new` if the value is `old`.
    SetIfEq { old: u8, new: u8 },
}

impl Op {
    /// The value the operation writes, if it writes.
    pub fn written(self) -> Option<u8> {
        match self {
            Op::Read => None,
            Op::Write(v) | Op::SetIfAbsent(v) | Op::SetIfEq { new: v, .. } => Some(v),
        }
    }
}

/// What an operation returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ret {
    Value(Option<u8>),
    Applied,
    /// The condition did not hold; the value it was judged on.
    NotApplied(Option<u8>),
    /// Ended without effect (contention, no majority): valid anywhere, changes nothing.
    Failed,
}

/// The sequential specification: a register that may be empty.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct CasRegister(Option<u8>);

impl SequentialSpec for CasRegister {
    type Op = Op;
    type Ret = Ret;

    fn invoke(&mut self, op: &Op) -> Ret {
        match *op {
            Op::Read => Ret::Value(self.0),
            Op::Write(v) => {
                self.0 = Some(v);
                Ret::Applied
            }
            Op::SetIfAbsent(v) if self.0.is_none() => {
                self.0 = Some(v);
                Ret::Applied
            }
            Op::SetIfEq { old, new } if self.0 == Some(old) => {
                self.0 = Some(new);
                Ret::Applied
            }
            Op::SetIfAbsent(_) | Op::SetIfEq { .. } => Ret::NotApplied(self.0),
        }
    }

    fn is_valid_step(&mut self, op: &Op, ret: &Ret) -> bool {
        *ret == Ret::Failed || self.invoke(op) == *ret
    }
}

/// What the model explores.
#[derive(Clone, Debug)]
pub struct Config {
    /// Each client's operations, in order.
    pub clients: Vec<Vec<Op>>,
    /// Coordinators (operation `k` of client `i` goes to coordinator `(i + k) % coordinators`,
    /// or `i % coordinators` when `pinned`).
    pub coordinators: usize,
    /// Each client sends every operation through one coordinator.
    pub pinned: bool,
    /// Acceptors (the key's primaries).
    pub acceptors: usize,
    /// Prepare attempts per operation before it gives up.
    pub attempts: u32,
    /// Messages the network may lose, and deliver twice, in one run.
    pub drops: u8,
    pub duplicates: u8,
    /// Acceptor crashes (a restart from what was persisted) in one run.
    pub crashes: u8,
    /// Coordinator deadlines firing in one run (each at any moment an operation runs).
    pub timeouts: u8,
    /// Paxos repair rounds (state collection, `node/paxos_repair.rs`) in one run, each
    /// started at any moment by a repairer of its own.
    pub repairs: u8,
    /// The repairer's node id: below the coordinators' (101, 102, ...) its fence is below
    /// their ballots of the same clock reading, above them it is above (both orders happen
    /// in a cluster).
    pub repairer_id: u64,
    /// The key lives in a `siblings` bucket: a write's value is an event of its
    /// coordinator's Paxos writer in a dotted version vector set, not an `lww` version.
    pub siblings: bool,
    /// A client whose write ends `unknown` settles it with a serial read, as applications
    /// (and the simulator's counter workers) do: its own value read means applied, an empty
    /// key means it never takes effect (the read's commit ends it), another value leaves it
    /// in doubt. Without this an unknown write stays in flight forever and may take effect
    /// at any later moment, so a read that fails to end it goes unnoticed.
    pub settle: bool,
    /// The key holds this value before the clients start, written by a plain write of a node
    /// whose clock runs ahead of the coordinators' (by [`PLAIN_AHEAD_MS`], within the skew
    /// they accept), as in a `conditional_only` bucket before the key's first conditional
    /// write.
    pub initial: Option<u8>,
}

/// How far ahead of the coordinators' clocks the initial value was stamped.
pub const PLAIN_AHEAD_MS: u64 = 100;

/// The node that wrote the initial value.
const PLAIN_WRITER: NodeId = NodeId(50);

/// A register value no write stores: what a read of several siblings returns (a register
/// holds one value; every write through Paxos supersedes what its prepare read).
pub const SEVERAL: u8 = u8::MAX;

impl Default for Config {
    fn default() -> Config {
        Config {
            clients: vec![
                vec![Op::SetIfAbsent(1), Op::Read],
                vec![Op::SetIfEq { old: 1, new: 2 }],
            ],
            coordinators: 2,
            pinned: false,
            acceptors: 3,
            attempts: 2,
            drops: 1,
            duplicates: 1,
            crashes: 1,
            timeouts: 1,
            repairs: 0,
            repairer_id: 100,
            siblings: false,
            settle: true,
            initial: None,
        }
    }
}

/// What an acceptor stores: the key's Paxos state, its data, and its group's bounds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Stored {
    state: AcceptorState,
    data: Option<Object>,
    bound: GroupBound,
}

/// One acceptor: what it persisted, and what it holds now (the same unless it answers
/// before syncing).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Acceptor {
    durable: Stored,
    live: Stored,
}

/// One coordinator: its clock, the step counter (answers to older steps are dropped) and the
/// operation it runs.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CoordinatorSlot {
    clock: HlcClock,
    step: u32,
    running: Option<Running>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Running {
    /// The client, or `None`: the repairer's serial read.
    client: Option<usize>,
    /// A read that settles the client's write of this value, which ended `unknown`.
    settles: Option<u8>,
    op: Op,
    coord: Coordinator,
    backing_off: bool,
}

/// A request in flight to an acceptor. (Answers are not messages: see `Action::Deliver`.)
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Msg {
    to: usize,
    from: usize,
    step: u32,
    ballot: Ballot,
    kind: Kind,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Paxos(PaxosPhase),
    /// A repair round's fence (at `ballot`); the answer says whether the key changed above
    /// the acceptor's low bound.
    Fence,
    /// A repair round's low bound (at `ballot`); no answer.
    LowBound,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClientState {
    next: usize,
    waiting: bool,
    /// An operation ended `unknown`: the client stops (it stays in flight in the history).
    stuck: bool,
    /// An operation that wrote this value ended `unknown`; the client's next step is a
    /// serial read that settles it (`Config::settle`).
    settling: Option<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct State {
    pub acceptors: Vec<Acceptor>,
    pub coordinators: Vec<CoordinatorSlot>,
    /// In flight, as a multiset in a canonical order.
    pub network: Vec<Msg>,
    pub clients: Vec<ClientState>,
    pub history: LinearizabilityTester<usize, CasRegister>,
    pub applied_conditional: bool,
    pub unknown: bool,
    drops: u8,
    duplicates: u8,
    crashes: u8,
    timeouts: u8,
    repairs: u8,
    pub repair: Option<RepairRound>,
    /// Ghost state: each proposal accepted anywhere (ballot, value, base) and the acceptors
    /// that accepted it (a bit each), and the proposals a majority accepted (chosen). Not
    /// seen by the code under test.
    pub accepts: Vec<(Ballot, ValueId, Ballot, u8)>,
    pub chosen: Vec<(Ballot, ValueId, Ballot)>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Invoke(usize),
    /// The acceptor handles the `i`th request in flight, and its answer reaches the
    /// coordinator at once.
    Deliver(usize),
    /// The acceptor handles the `i`th request in flight; its answer is lost (or comes after
    /// its coordinator left that step, which is the same).
    DeliverUnanswered(usize),
    Drop(usize),
    Duplicate(usize),
    Retry(usize),
    Timeout(usize),
    Crash(usize),
    Sync(usize),
    /// The repairer starts a round.
    Repair,
}

/// The model: a configuration, and the planted bugs (with the function that switches them on
/// in the checker's worker threads: the switches are per thread).
#[derive(Clone)]
pub struct CasModel {
    pub config: Config,
    bugs: PlantedBugs,
    arm: fn(PlantedBugs),
}

impl fmt::Debug for CasModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CasModel")
            .field("config", &self.config)
            .field("bugs", &self.bugs)
            .finish()
    }
}

fn acceptor_id(i: usize) -> NodeId {
    NodeId(1 + i as u64)
}

fn coordinator_id(c: usize) -> NodeId {
    NodeId(101 + c as u64)
}

impl CasModel {
    pub fn new(config: Config) -> CasModel {
        // The ghost state keeps a bit per acceptor.
        assert!(config.acceptors <= 8, "at most 8 acceptors");
        CasModel {
            config,
            bugs: PlantedBugs::default(),
            arm: |_| {},
        }
    }

    /// Runs the core with `bugs` switched on; `arm` is `hydra_core::bugs::set_planted`
    /// (present only in builds with the `planted-bugs` feature).
    pub fn with_bugs(mut self, bugs: PlantedBugs, arm: fn(PlantedBugs)) -> CasModel {
        self.bugs = bugs;
        self.arm = arm;
        self
    }

    fn coordinator_of(&self, client: usize, k: usize) -> usize {
        let k = if self.config.pinned { 0 } else { k };
        (client + k) % self.config.coordinators
    }

    fn request(op: Op) -> (Condition, CasAction) {
        let write = |v: u8| CasAction::Write {
            value: vec![v],
            content_type: Default::default(),
            expiry: None,
            keep_ttl: false,
        };
        match op {
            Op::Read => (Condition::Always, CasAction::Read),
            Op::Write(v) => (Condition::Always, write(v)),
            Op::SetIfAbsent(v) => (Condition::Absent, write(v)),
            Op::SetIfEq { old, new } => (Condition::ValueIs(vec![old]), write(new)),
        }
    }

    /// The conflict mode of the key's bucket.
    fn conflicts(&self) -> ConflictMode {
        if self.config.siblings {
            ConflictMode::Siblings
        } else {
            ConflictMode::Lww
        }
    }

    fn send(state: &mut State, msg: Msg) {
        state.network.push(msg);
    }

    /// A new attempt: a ballot from the coordinator's clock above every ballot seen.
    fn prepare(&self, state: &mut State, c: usize) {
        let slot = &mut state.coordinators[c];
        let Some(run) = slot.running.as_mut() else {
            return;
        };
        if run.coord.attempts >= self.config.attempts {
            let give_up = if run.coord.in_doubt() {
                GiveUp::Unknown
            } else {
                GiveUp::Contended
            };
            return self.end(state, c, give_up);
        }
        if let Some(b) = run.coord.to_beat() {
            let _ = slot.clock.observe(b.hlc, NOW, SKEW_MS);
        }
        run.backing_off = false;
        let ballot = Ballot::new(slot.clock.now(NOW), self.node_of(c));
        let next = run.coord.prepare(ballot);
        self.follow(state, c, next);
    }

    /// What the node's driver does with the coordinator's `Next`.
    fn follow(&self, state: &mut State, c: usize, mut next: Next) {
        loop {
            let slot = &mut state.coordinators[c];
            let Some(run) = slot.running.as_mut() else {
                return;
            };
            next = match next {
                Next::Wait => return,
                Next::Send(phase) => {
                    slot.step += 1;
                    let (step, ballot) = (slot.step, run.coord.ballot);
                    for a in 0..self.config.acceptors {
                        Self::send(
                            state,
                            Msg {
                                to: a,
                                from: c,
                                step,
                                ballot,
                                kind: Kind::Paxos(phase.clone()),
                            },
                        );
                    }
                    return;
                }
                Next::Stamp => match run.coord.stamp(&mut slot.clock, NOW, SKEW_MS) {
                    Ok(next) => next,
                    // As the driver's `fail_clock`: unknown while an own proposal is in doubt.
                    Err(_) => {
                        let why = if run.coord.in_doubt() {
                            GiveUp::Unknown
                        } else {
                            GiveUp::Unavailable
                        };
                        return self.end(state, c, why);
                    }
                },
                Next::Restart => return self.prepare(state, c),
                Next::BackOff => {
                    run.backing_off = true;
                    return;
                }
                Next::Done(decided) => {
                    let several = decided
                        .object
                        .as_ref()
                        .is_some_and(|o| o.visible_at(NOW.0).len() > 1);
                    let current = decided
                        .previous
                        .as_ref()
                        .filter(|s| !s.tombstone)
                        .and_then(|s| s.value.first().copied())
                        .map(|v| if several { SEVERAL } else { v });
                    let ret = match (run.op, decided.applied) {
                        (Op::Read, _) => Ret::Value(current),
                        (_, true) => Ret::Applied,
                        (_, false) => Ret::NotApplied(current),
                    };
                    if decided.applied && run.op != Op::Read && !matches!(run.op, Op::Write(_)) {
                        state.applied_conditional = true;
                    }
                    let (client, settles) = (run.client, run.settles);
                    slot.running = None;
                    let Some(client) = client else {
                        // The repairer's serial read settled the key: the fence is the low
                        // bound.
                        return self.send_low_bound(state);
                    };
                    let Some(value) = settles else {
                        let _ = state.history.on_return(client, ret);
                        let cs = &mut state.clients[client];
                        cs.waiting = false;
                        cs.next += 1;
                        return;
                    };
                    // The settling read, then what it says of the write in doubt.
                    let _ = state.history.on_return(self.settler(client), ret);
                    let cs = &mut state.clients[client];
                    cs.waiting = false;
                    cs.settling = None;
                    let settled = match current {
                        Some(v) if v == value => Ret::Applied,
                        None => Ret::Failed,
                        Some(_) => {
                            cs.stuck = true;
                            return;
                        }
                    };
                    cs.next += 1;
                    let _ = state.history.on_return(client, settled);
                    return;
                }
                Next::Unknown => return self.end(state, c, GiveUp::Unknown),
            };
        }
    }

    /// The operation ends undecided: `unknown` stays in flight; otherwise it had no effect.
    fn end(&self, state: &mut State, c: usize, why: GiveUp) {
        let Some(run) = state.coordinators[c].running.take() else {
            return;
        };
        let Some(client) = run.client else {
            // The repairer's serial read failed: the round ends without a low bound.
            state.repair = None;
            return;
        };
        let cs = &mut state.clients[client];
        cs.waiting = false;
        if run.settles.is_some() {
            // The settling read failed (it had no effect): the write stays in doubt.
            let _ = state.history.on_return(self.settler(client), Ret::Failed);
            cs.settling = None;
            cs.stuck = true;
            return;
        }
        if why == GiveUp::Unknown {
            state.unknown = true;
            match run.op.written() {
                Some(v) if self.config.settle => cs.settling = Some(v),
                _ => cs.stuck = true,
            }
        } else {
            let _ = state.history.on_return(client, Ret::Failed);
            cs.next += 1;
        }
    }

    /// The history's thread of client `i`'s settling reads.
    fn settler(&self, i: usize) -> usize {
        self.config.clients.len() + i
    }

    /// The object a plain write of `value` left, stamped [`PLAIN_AHEAD_MS`] ahead of the
    /// coordinators' clocks.
    fn plain_value(&self, value: u8) -> Object {
        let stamp = hydra_core::hlc::Hlc::new(NOW.0 + PLAIN_AHEAD_MS, 0);
        let sibling = Sibling::value(vec![value], "", stamp);
        match self.conflicts() {
            ConflictMode::Lww => Object::Lww(LwwValue::new(PLAIN_WRITER, sibling)),
            ConflictMode::Siblings => {
                let (dvv, _) = Dvv::default()
                    .update(&Default::default(), sibling, PLAIN_WRITER)
                    .expect("one sibling");
                Object::Siblings(dvv)
            }
        }
    }

    /// The repairer's slot among the coordinators (after the clients' ones).
    fn repairer(&self) -> usize {
        self.config.coordinators
    }

    /// The node id of coordinator slot `c`.
    fn node_of(&self, c: usize) -> NodeId {
        if c == self.repairer() {
            NodeId(self.config.repairer_id)
        } else {
            coordinator_id(c)
        }
    }

    /// An acceptor handles a request; its answer reaches the coordinator at once if
    /// `answered`.
    fn deliver(&self, state: &mut State, msg: Msg, answered: bool) {
        let Msg {
            to,
            from,
            step,
            ballot,
            kind,
        } = msg;
        let acceptor = &mut state.acceptors[to];
        let live = &mut acceptor.live;
        let phase = match kind {
            Kind::Paxos(phase) => phase,
            Kind::Fence => {
                // As `Local::paxos_fence`: kept (durably) before the answer.
                live.bound.raise_fence(ballot);
                let touched = live.state.touched_above(live.bound.low);
                acceptor.durable = acceptor.live.clone();
                if answered {
                    self.on_fence_answer(state, to, step, touched);
                }
                return;
            }
            Kind::LowBound => {
                // As `Local::on_paxos_low_bound`: the bound and the collection in one write
                // (durable at a later sync).
                let low = live.bound.raise_low(ballot);
                if live.state.collectable(low) {
                    live.state = AcceptorState::default();
                }
                return;
            }
        };
        // As `Local::paxos_phase`: the group's bounds apply to the state as it is loaded.
        let bound = live.bound;
        bound.apply(&mut live.state);
        let result = live.state.handle(ballot, &phase);
        if let (Ok(PaxosAnswer::Accepted), PaxosPhase::Propose(proposal, base)) = (&result, &phase)
        {
            let key = (ballot, value_id(proposal), *base);
            let at = match state.accepts.iter().position(|e| (e.0, e.1, e.2) == key) {
                Some(at) => at,
                None => {
                    state.accepts.push((key.0, key.1, key.2, 0));
                    state.accepts.len() - 1
                }
            };
            let entry = &mut state.accepts[at];
            entry.3 |= 1 << to;
            if entry.3.count_ones() as usize == self.config.acceptors / 2 + 1 {
                state.chosen.push(key);
                state.chosen.sort();
            }
            state.accepts.sort();
        }
        let acceptor = &mut state.acceptors[to];
        let data = &mut acceptor.live.data;
        let result = match result {
            Err(b) => Err(PaxosRefusal::Ballot(b)),
            Ok(mut answer) => {
                match (&mut answer, &phase) {
                    (PaxosAnswer::Promise(p), _) => p.object = data.clone(),
                    (PaxosAnswer::Committed, PaxosPhase::Commit(Some(o), _)) => {
                        *data = Some(match data.as_ref() {
                            None => o.clone(),
                            Some(d) => d.merge(o).unwrap_or_else(|_| d.clone()),
                        });
                    }
                    _ => {}
                }
                // The node answers once the change is durable (unless planted).
                if !hydra_core::bugs::planted().paxos_answers_before_sync {
                    acceptor.durable = acceptor.live.clone();
                }
                Ok(answer)
            }
        };
        if !answered {
            return;
        }
        let slot = &mut state.coordinators[from];
        let Some(run) = slot.running.as_mut() else {
            return;
        };
        if step != slot.step || run.backing_off {
            return;
        }
        let next = run.coord.on_answer(acceptor_id(to), result, NOW);
        self.follow(state, from, next);
    }
}

impl Model for CasModel {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        let empty = Stored {
            data: self.config.initial.map(|v| self.plain_value(v)),
            ..Stored::default()
        };
        vec![State {
            acceptors: vec![
                Acceptor {
                    durable: empty.clone(),
                    live: empty,
                };
                self.config.acceptors
            ],
            coordinators: vec![
                CoordinatorSlot {
                    clock: HlcClock::default(),
                    step: 0,
                    running: None,
                };
                self.config.coordinators + usize::from(self.config.repairs > 0)
            ],
            network: Vec::new(),
            clients: vec![
                ClientState {
                    next: 0,
                    waiting: false,
                    stuck: false,
                    settling: None,
                };
                self.config.clients.len()
            ],
            history: LinearizabilityTester::new(CasRegister(self.config.initial)),
            applied_conditional: false,
            unknown: false,
            drops: 0,
            duplicates: 0,
            crashes: 0,
            timeouts: 0,
            repairs: 0,
            repair: None,
            accepts: Vec::new(),
            chosen: Vec::new(),
        }]
    }

    fn actions(&self, state: &State, actions: &mut Vec<Action>) {
        for (i, cs) in state.clients.iter().enumerate() {
            if !cs.waiting
                && !cs.stuck
                && (cs.settling.is_some() || cs.next < self.config.clients[i].len())
                && state.coordinators[self.coordinator_of(i, cs.next)]
                    .running
                    .is_none()
            {
                actions.push(Action::Invoke(i));
            }
        }
        for i in 0..state.network.len() {
            if i > 0 && state.network[i] == state.network[i - 1] {
                continue;
            }
            actions.push(Action::Deliver(i));
            // An answer to a step its coordinator left is dropped anyway.
            let m = &state.network[i];
            let slot = &state.coordinators[m.from];
            if slot.step == m.step && slot.running.as_ref().is_some_and(|r| !r.backing_off) {
                actions.push(Action::DeliverUnanswered(i));
            }
            if state.drops < self.config.drops {
                actions.push(Action::Drop(i));
            }
            if state.duplicates < self.config.duplicates {
                actions.push(Action::Duplicate(i));
            }
        }
        if state.repair.is_none() && state.repairs < self.config.repairs {
            actions.push(Action::Repair);
        }
        for (c, slot) in state.coordinators.iter().enumerate() {
            if let Some(run) = &slot.running {
                if run.backing_off {
                    actions.push(Action::Retry(c));
                }
                if state.timeouts < self.config.timeouts {
                    actions.push(Action::Timeout(c));
                }
            }
        }
        for (a, acceptor) in state.acceptors.iter().enumerate() {
            if acceptor.live != acceptor.durable {
                actions.push(Action::Sync(a));
                if state.crashes < self.config.crashes {
                    actions.push(Action::Crash(a));
                }
            }
        }
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        (self.arm)(self.bugs);
        let mut state = last.clone();
        match action {
            Action::Invoke(i) => {
                let k = state.clients[i].next;
                let settles = state.clients[i].settling;
                let op = match settles {
                    Some(_) => Op::Read,
                    None => self.config.clients[i][k],
                };
                let c = self.coordinator_of(i, k);
                let (condition, action) = Self::request(op);
                let replicas = (0..self.config.acceptors).map(acceptor_id).collect();
                state.coordinators[c].running = Some(Running {
                    client: Some(i),
                    settles,
                    op,
                    coord: Coordinator::new(condition, action, None, replicas)
                        .in_mode(self.conflicts(), None),
                    backing_off: false,
                });
                state.clients[i].waiting = true;
                let thread = if settles.is_some() {
                    self.settler(i)
                } else {
                    i
                };
                let _ = state.history.on_invoke(thread, op);
                self.prepare(&mut state, c);
            }
            Action::Deliver(i) => {
                let msg = state.network.remove(i);
                self.deliver(&mut state, msg, true);
            }
            Action::DeliverUnanswered(i) => {
                let msg = state.network.remove(i);
                self.deliver(&mut state, msg, false);
            }
            Action::Drop(i) => {
                state.network.remove(i);
                state.drops += 1;
            }
            Action::Duplicate(i) => {
                let msg = state.network[i].clone();
                state.network.push(msg);
                state.duplicates += 1;
            }
            Action::Retry(c) => self.prepare(&mut state, c),
            Action::Timeout(c) => {
                let why = state.coordinators[c]
                    .running
                    .as_ref()
                    .map(|r| r.coord.give_up())?;
                self.end(&mut state, c, why);
                state.timeouts += 1;
            }
            Action::Crash(a) => {
                let acceptor = &mut state.acceptors[a];
                acceptor.live = acceptor.durable.clone();
                state.crashes += 1;
            }
            Action::Sync(a) => {
                let acceptor = &mut state.acceptors[a];
                acceptor.durable = acceptor.live.clone();
            }
            Action::Repair => self.start_repair(&mut state),
        }
        // The network is a multiset: one canonical order, so equal states are one state.
        state.network.sort_by_cached_key(|m| {
            let mut h = DefaultHasher::new();
            m.hash(&mut h);
            h.finish()
        });
        Some(state)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("linearizable", |_, state: &State| {
                state.history.serialized_history().is_some()
            }),
            // Paxos's own safety, per instance: once a proposal is chosen at `b`, every
            // proposal chosen at a higher ballot carries its value or was first made after a
            // prepare that found a commit at or above `b` (its base). Stronger than the
            // history: it fails even when nobody has read the value that was lost.
            Property::always("a chosen value is kept", |_, state: &State| {
                state.chosen.iter().all(|&(b1, id1, _)| {
                    state
                        .chosen
                        .iter()
                        .all(|&(b2, id2, base2)| b2 <= b1 || id2 == id1 || base2 >= b1)
                })
            }),
            Property::sometimes(
                "every operation done, a conditional write applied",
                |m: &CasModel, state: &State| {
                    state.applied_conditional
                        && state
                            .clients
                            .iter()
                            .enumerate()
                            .all(|(i, c)| c.next == m.config.clients[i].len())
                },
            ),
            Property::sometimes("an outcome unknown", |_, state: &State| state.unknown),
        ]
    }
}

/// The clients' programs by name.
pub const WORKLOADS: &[&str] = &[
    "race",
    "race3",
    "race-read",
    "read",
    "read-race",
    "replace",
    "swap",
    "small",
    "wide",
];

/// The clients' programs named `name` (one of [`WORKLOADS`]).
pub fn workload(name: &str) -> Option<Vec<Vec<Op>>> {
    Some(match name {
        "race" => vec![vec![Op::SetIfAbsent(1)], vec![Op::SetIfAbsent(2)]],
        "race3" => vec![
            vec![Op::SetIfAbsent(1)],
            vec![Op::SetIfAbsent(2)],
            vec![Op::SetIfAbsent(3)],
        ],
        "read" => vec![vec![Op::SetIfAbsent(1)], vec![Op::Read, Op::Read]],
        "swap" => vec![
            vec![Op::SetIfAbsent(1)],
            vec![Op::SetIfEq { old: 1, new: 2 }],
        ],
        "race-read" => vec![
            vec![Op::SetIfAbsent(1), Op::Read],
            vec![Op::SetIfAbsent(2), Op::Read],
        ],
        "read-race" => vec![vec![Op::SetIfAbsent(1)], vec![Op::Read, Op::SetIfAbsent(2)]],
        "replace" => vec![
            vec![Op::SetIfEq { old: 0, new: 1 }, Op::Read],
            vec![Op::SetIfEq { old: 0, new: 2 }],
        ],
        "small" => vec![
            vec![Op::SetIfAbsent(1), Op::Read],
            vec![Op::SetIfEq { old: 1, new: 2 }],
        ],
        "wide" => vec![
            vec![Op::SetIfAbsent(1), Op::Read],
            vec![Op::Write(2), Op::SetIfEq { old: 1, new: 3 }],
        ],
        _ => return None,
    })
}

/// The planted Paxos bugs the model can switch on, by name (its tests show which it catches).
pub const BUGS: &[&str] = &[
    "paxos_forgets_promises",
    "paxos_accepts_below_promise",
    "paxos_accept_keeps_promise",
    "paxos_ignores_in_progress",
    "paxos_in_progress_by_arrival",
    "paxos_quorum_off_by_one",
    "paxos_answers_before_sync",
    "paxos_ballots_not_unique",
    "paxos_read_skips_in_progress",
    "paxos_stamp_ignores_read",
    "paxos_beaten_ignores_base",
    "paxos_read_ignores_write_promises",
    "paxos_read_trusts_minority_commits",
    "paxos_own_commit_any_above",
    "paxos_collection_forgets_watermark",
    "paxos_low_bound_not_applied_on_load",
    "paxos_state_forgotten_by_wall_time",
];

/// The planted bugs switched on by `name` (one of [`BUGS`]).
pub fn bug_named(name: &str) -> Option<PlantedBugs> {
    let mut bugs = PlantedBugs::default();
    (BUGS.contains(&name) && bugs.switch_on(name)).then_some(bugs)
}
