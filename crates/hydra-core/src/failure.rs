//! Phi-accrual failure detection.
//!
//! Source: Hayashibara, Défago, Yared, Katayama, "The φ Accrual Failure Detector" (2004), with
//! the exponential approximation Cassandra uses: given the mean interval between a peer's
//! heartbeats, `phi = (time since its last heartbeat / mean) / ln 10`, so phi = 8 means "no
//! heartbeat for about 18 mean intervals".
//!
//! ```text
//! peer ──Heartbeat──▶ arrivals window (last WINDOW intervals) ──▶ phi(now) ──▶ up / down
//! ```
//!
//! Invariants: a peer never heard from counts as up (a new cluster must be able to start; the
//! first request to it will time out if it is not); the mean interval never goes below half
//! the heartbeat interval (bursts of heartbeats must not make the detector jumpy). Failure
//! detection never changes ownership: it only decides whom a coordinator waits for.

use crate::ids::{NodeId, Timestamp};
use std::collections::{BTreeMap, VecDeque};

/// Intervals remembered per peer.
pub const WINDOW: usize = 100;

#[derive(Clone, Debug)]
struct Arrivals {
    last: Timestamp,
    intervals: VecDeque<u64>,
    sum: u64,
}

/// Tracks every peer's heartbeats.
#[derive(Clone, Debug)]
pub struct FailureDetector {
    peers: BTreeMap<NodeId, Arrivals>,
    threshold: f64,
    min_mean_ms: u64,
}

impl FailureDetector {
    pub fn new(threshold: f64, heartbeat_interval_ms: u64) -> FailureDetector {
        FailureDetector {
            peers: BTreeMap::new(),
            threshold,
            min_mean_ms: (heartbeat_interval_ms / 2).max(1),
        }
    }

    /// Records a heartbeat from `node` at `now`.
    pub fn heartbeat(&mut self, node: NodeId, now: Timestamp) {
        match self.peers.get_mut(&node) {
            None => {
                self.peers.insert(
                    node,
                    Arrivals {
                        last: now,
                        intervals: VecDeque::new(),
                        sum: 0,
                    },
                );
            }
            Some(a) => {
                let interval = now.ms_since(a.last);
                a.last = now;
                a.intervals.push_back(interval);
                a.sum += interval;
                if a.intervals.len() > WINDOW
                    && let Some(old) = a.intervals.pop_front()
                {
                    a.sum -= old;
                }
            }
        }
    }

    /// Suspicion of `node` at `now`; `None` if it was never heard from.
    pub fn phi(&self, node: NodeId, now: Timestamp) -> Option<f64> {
        let a = self.peers.get(&node)?;
        let mean = if a.intervals.is_empty() {
            self.min_mean_ms
        } else {
            a.sum / a.intervals.len() as u64
        };
        let mean = mean.max(self.min_mean_ms) as f64;
        Some(now.ms_since(a.last) as f64 / mean / std::f64::consts::LN_10)
    }

    /// Whether `node` is believed up.
    pub fn is_alive(&self, node: NodeId, now: Timestamp) -> bool {
        self.phi(node, now).is_none_or(|phi| phi < self.threshold)
    }

    /// When `node` was last heard from.
    pub fn last_heard(&self, node: NodeId) -> Option<Timestamp> {
        self.peers.get(&node).map(|a| a.last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn convicts_after_silence_and_recovers_on_the_next_heartbeat() {
        let mut fd = FailureDetector::new(8.0, 100);
        let n = NodeId(2);
        assert!(
            fd.is_alive(n, Timestamp(0)),
            "never heard from counts as up"
        );
        for t in 0..50 {
            fd.heartbeat(n, Timestamp(t * 100));
        }
        let last = Timestamp(4900);
        assert!(fd.is_alive(n, last.plus_ms(1000)));
        // phi 8 with a mean of 100 ms: about 1.84 s of silence.
        let phi = fd.phi(n, last.plus_ms(1842)).expect("heard");
        assert!((phi - 8.0).abs() < 0.01, "{phi}");
        assert!(!fd.is_alive(n, last.plus_ms(2000)));
        fd.heartbeat(n, last.plus_ms(5000));
        assert!(fd.is_alive(n, last.plus_ms(5000)));
    }

    #[test]
    fn bursts_do_not_make_it_jumpy() {
        let mut fd = FailureDetector::new(8.0, 100);
        let n = NodeId(2);
        for _ in 0..10 {
            fd.heartbeat(n, Timestamp(1000));
        }
        // The mean is floored at 50 ms: 500 ms of silence is phi ~4.3, not infinity.
        assert!(fd.is_alive(n, Timestamp(1500)));
    }
}
