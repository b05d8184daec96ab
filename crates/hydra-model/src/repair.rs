//! The repairer's Paxos repair round in the model (what `node/paxos_repair.rs` does for one
//! group): a fence from the repairer's clock to every acceptor; at a majority of answers, a
//! serial read (a core `Coordinator`) if one listed the key; then the fence as every
//! acceptor's low bound.

use crate::{CasModel, Coordinator, Kind, Msg, NOW, Op, Running, State, acceptor_id};
use hydra_core::paxos::Ballot;

/// The repairer's round: its fence, who answered it, whether one listed the key, and whether
/// its serial read runs.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RepairRound {
    pub(crate) fence: Ballot,
    pub(crate) step: u32,
    pub(crate) answered: Vec<usize>,
    pub(crate) touched: bool,
    pub(crate) reading: bool,
}

impl CasModel {
    /// The repairer starts a round: a fence from its clock, to every acceptor.
    pub(crate) fn start_repair(&self, state: &mut State) {
        let r = self.repairer();
        let slot = &mut state.coordinators[r];
        slot.step += 1;
        let fence = Ballot::new(slot.clock.now(NOW), self.node_of(r));
        let step = slot.step;
        state.repairs += 1;
        state.repair = Some(RepairRound {
            fence,
            step,
            answered: Vec::new(),
            touched: false,
            reading: false,
        });
        for a in 0..self.config.acceptors {
            Self::send(
                state,
                Msg {
                    to: a,
                    from: r,
                    step,
                    ballot: fence,
                    kind: Kind::Fence,
                },
            );
        }
    }

    /// An acceptor's answer to the round's fence: at a majority, settle the key with a serial
    /// read if one listed it, else end with the low bound at once.
    pub(crate) fn on_fence_answer(&self, state: &mut State, from: usize, step: u32, touched: bool) {
        let Some(round) = state.repair.as_mut() else {
            return;
        };
        if round.step != step || round.reading || round.answered.contains(&from) {
            return;
        }
        round.answered.push(from);
        round.answered.sort_unstable();
        round.touched |= touched;
        if round.answered.len() < self.config.acceptors / 2 + 1 {
            return;
        }
        if !round.touched {
            return self.send_low_bound(state);
        }
        round.reading = true;
        let r = self.repairer();
        let (condition, action) = Self::request(Op::Read);
        let replicas = (0..self.config.acceptors).map(acceptor_id).collect();
        state.coordinators[r].running = Some(Running {
            client: None,
            settles: None,
            op: Op::Read,
            coord: Coordinator::new(condition, action, None, replicas)
                .in_mode(self.conflicts(), None),
            backing_off: false,
        });
        self.prepare(state, r);
    }

    /// The round is over: its fence is the low bound at every acceptor.
    pub(crate) fn send_low_bound(&self, state: &mut State) {
        let Some(round) = state.repair.take() else {
            return;
        };
        let r = self.repairer();
        for a in 0..self.config.acceptors {
            Self::send(
                state,
                Msg {
                    to: a,
                    from: r,
                    step: 0,
                    ballot: round.fence,
                    kind: Kind::LowBound,
                },
            );
        }
    }
}
