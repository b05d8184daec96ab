//! Membership and failure detection: heartbeats to every peer of the (static) layout, and a
//! phi-accrual detector fed by theirs.
//!
//! Source: Hayashibara et al., "The phi accrual failure detector" (2004); Cassandra's
//! `FailureDetector`. Every `heartbeat_interval_ms` each node sends `Heartbeat` to every
//! peer; a peer whose silence makes phi exceed `phi_convict_threshold` is believed down.
//! Invariant: "believed down" is advice, never a fact: coordinators skip such replicas (and
//! give fallbacks their place), but nothing is deleted or fenced because of it.

use crate::failure::FailureDetector;
use crate::ids::{NodeId, Timestamp};
use crate::layout::Layout;

use super::clock::Clock;
use super::io::Outbox;
use super::status::PeerStatus;

#[derive(Debug)]
pub(crate) struct Membership {
    detector: FailureDetector,
    /// Every other node of the layout, in id order.
    peers: Vec<NodeId>,
}

impl Membership {
    pub(crate) fn new(
        me: NodeId,
        layout: &Layout,
        phi_convict_threshold: f64,
        heartbeat_interval_ms: u64,
    ) -> Membership {
        Membership {
            detector: FailureDetector::new(phi_convict_threshold, heartbeat_interval_ms),
            peers: layout
                .nodes()
                .iter()
                .map(|n| n.id)
                .filter(|n| *n != me)
                .collect(),
        }
    }

    pub(crate) fn peers(&self) -> &[NodeId] {
        &self.peers
    }

    pub(crate) fn is_alive(&self, node: NodeId, now: Timestamp) -> bool {
        self.detector.is_alive(node, now)
    }

    pub(crate) fn phi(&self, node: NodeId, now: Timestamp) -> Option<f64> {
        self.detector.phi(node, now)
    }

    /// A heartbeat to every peer, carrying this node's clock readings for its estimate.
    pub(crate) fn send_heartbeats(
        &self,
        out: &mut Outbox,
        clock: &Clock,
        wall: Timestamp,
        mono: Timestamp,
    ) {
        for to in &self.peers {
            out.send(*to, clock.heartbeat(*to, wall, mono));
        }
    }

    pub(crate) fn on_heartbeat(&mut self, from: NodeId, now: Timestamp) {
        self.detector.heartbeat(from, now);
    }

    pub(crate) fn status(&self, layout: &Layout, now: Timestamp) -> Vec<PeerStatus> {
        layout
            .nodes()
            .iter()
            .filter(|n| self.peers.contains(&n.id))
            .map(|n| PeerStatus {
                id: n.id,
                zone: n.zone.clone(),
                datacenter: n.datacenter.clone(),
                last_heard_ms_ago: self.detector.last_heard(n.id).map(|t| now.ms_since(t)),
                phi: self.detector.phi(n.id, now),
                alive: self.detector.is_alive(n.id, now),
            })
            .collect()
    }
}
