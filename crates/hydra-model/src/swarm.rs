//! Swarm random walks: a stateright chooser whose walks each weigh actions their own way.

use crate::{Action, CasModel, State};

/// Swarm random walks (stateright's simulation checker with this chooser): each walk draws
/// its own weights, one per kind of action and one per link from a coordinator to an
/// acceptor (a third of the links are slow: their messages tend to wait while much else
/// happens), then picks each step's action by weight. A uniform walk rarely keeps a few
/// messages waiting through a dozen other steps, which is what the deeper Paxos bugs need;
/// a swarm walk often does. Still no completeness: a violation found is real, none found
/// proves nothing.
#[derive(Clone)]
pub struct SwarmChooser;

/// One swarm walk's random source and weights.
pub struct SwarmWalk {
    rng: u64,
    kinds: [u64; ACTION_KINDS],
    links: Vec<u64>,
}

const ACTION_KINDS: usize = 10;
/// Links per coordinator slot and acceptor the weights cover (more wrap around).
const LINKS: usize = 8;

impl SwarmWalk {
    /// splitmix64: a fixed, reproducible generator.
    fn next(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn link(&self, from: usize, to: usize) -> u64 {
        self.links[(from % LINKS) * LINKS + to % LINKS]
    }

    fn weight(&self, state: &State, action: &Action) -> u64 {
        let (kind, link) = match *action {
            Action::Invoke(_) => (0, None),
            Action::Deliver(i) => (1, Some(i)),
            Action::DeliverUnanswered(i) => (2, Some(i)),
            Action::Drop(i) => (3, Some(i)),
            Action::Duplicate(i) => (4, Some(i)),
            Action::Retry(_) => (5, None),
            Action::Timeout(_) => (6, None),
            Action::Crash(_) => (7, None),
            Action::Sync(_) => (8, None),
            Action::Repair => (9, None),
        };
        let link = link
            .and_then(|i| state.network.get(i))
            .map_or(1, |m| self.link(m.from, m.to));
        self.kinds[kind] * link
    }
}

impl stateright::Chooser<CasModel> for SwarmChooser {
    type State = SwarmWalk;

    fn new_state(&self, seed: u64) -> SwarmWalk {
        let mut walk = SwarmWalk {
            rng: seed,
            kinds: [1; ACTION_KINDS],
            links: vec![1; LINKS * LINKS],
        };
        for k in 0..ACTION_KINDS {
            walk.kinds[k] = [1, 4, 16][walk.below(3) as usize];
        }
        for l in 0..LINKS * LINKS {
            walk.links[l] = if walk.below(3) == 0 { 1 } else { 16 };
        }
        walk
    }

    fn choose_initial_state(&self, _: &mut SwarmWalk, _: &[State]) -> usize {
        0
    }

    fn choose_action(&self, walk: &mut SwarmWalk, state: &State, actions: &[Action]) -> usize {
        let weights: Vec<u64> = actions.iter().map(|a| walk.weight(state, a)).collect();
        let mut pick = walk.below(weights.iter().sum::<u64>().max(1));
        for (i, w) in weights.iter().enumerate() {
            if pick < *w {
                return i;
            }
            pick -= w;
        }
        actions.len() - 1
    }
}
