//! Counterexamples one line per step (`CasModel::describe`).

use crate::{Action, CasModel, Kind, NOW, State};
use hydra_core::message::PaxosPhase;
use hydra_core::paxos::Ballot;
use hydra_core::version::Object;

/// A short form of a ballot: clock reading (physical ms and logical part) and node.
fn short(b: Ballot) -> String {
    if b == Ballot::ZERO {
        return "0".into();
    }
    format!("{}.{}@{}", b.hlc.physical_ms(), b.hlc.0 & 0xFFFF, b.node.0)
}

/// A short form of an object: its visible values.
fn values(o: &Option<Object>) -> String {
    match o {
        None => "-".into(),
        Some(o) => {
            let v: Vec<String> = o
                .visible_at(NOW.0)
                .iter()
                .map(|s| format!("{:?}", s.value))
                .collect();
            format!("[{}]", v.join(","))
        }
    }
}

impl CasModel {
    /// One line per step of a run: the action, then what it left (for counterexamples).
    pub fn describe(&self, before: &State, action: &Action, after: &State) -> String {
        let acceptor = |a: usize| {
            let st = &after.acceptors[a].live;
            format!(
                "A{a}{{promised {} write {} accepted {} committed {} low {} data {}}}",
                short(st.state.promised),
                short(st.state.promised_write),
                st.state.accepted.as_ref().map_or("-".into(), |x| format!(
                    "{}:{}",
                    short(x.ballot),
                    values(&x.proposal)
                )),
                short(st.state.committed),
                short(st.bound.low),
                values(&st.data),
            )
        };
        let phase = |k: &Kind| match k {
            Kind::Paxos(PaxosPhase::Prepare { write }) => format!("prepare(write {write})"),
            Kind::Paxos(PaxosPhase::Propose(p, base)) => {
                format!("propose {} base {}", values(p), short(*base))
            }
            Kind::Paxos(PaxosPhase::Commit(p, _)) => format!("commit {}", values(p)),
            Kind::Fence => "fence".into(),
            Kind::LowBound => "low bound".into(),
        };
        let what = match action {
            Action::Deliver(i) | Action::DeliverUnanswered(i) => {
                let m = &before.network[*i];
                let lost = if matches!(action, Action::DeliverUnanswered(_)) {
                    " (answer lost)"
                } else {
                    ""
                };
                format!(
                    "C{} -> A{}: {} at {}{lost}; {}",
                    m.from,
                    m.to,
                    phase(&m.kind),
                    short(m.ballot),
                    acceptor(m.to)
                )
            }
            Action::Drop(i) | Action::Duplicate(i) => {
                let m = &before.network[*i];
                format!(
                    "{action:?}: C{} -> A{} {} at {}",
                    m.from,
                    m.to,
                    phase(&m.kind),
                    short(m.ballot)
                )
            }
            Action::Crash(a) => format!("crash A{a}: {}", acceptor(*a)),
            other => format!("{other:?}"),
        };
        let mut line = what;
        let ended = |s: &State| -> Vec<usize> {
            s.clients
                .iter()
                .enumerate()
                .filter(|(_, c)| c.waiting)
                .map(|(i, _)| i)
                .collect()
        };
        if before.history != after.history || ended(before) != ended(after) {
            line.push_str(&format!("\n    history: {:?}", after.history));
        }
        line
    }
}
