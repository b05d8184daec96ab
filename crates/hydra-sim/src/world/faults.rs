//! Faults the simulated world injects: network splits, crashes (single and correlated) and
//! restarts, pauses and clock jumps, and the bookkeeping a crash needs (hints counted before
//! the node's memory goes).

use super::*;

impl World {
    pub(super) fn inject_fault(&mut self) {
        if !self.faulty {
            return;
        }
        let n = self.nodes.len();
        match self.rng.random_range(0..11) {
            0..=2 => {
                // Partition: a random split into two sides.
                self.report.partitions += 1;
                self.groups = (0..n).map(|_| self.rng.random_range(0..2)).collect();
                self.maybe_flood();
            }
            3..=4 => self.groups = vec![0; n],
            5..=7 => {
                // Crash one node, or (rarely) several at once, as a power failure would.
                let count = if self.rng.random_bool(0.25) {
                    self.rng.random_range(2..=n)
                } else {
                    1
                };
                for _ in 0..count {
                    // Half the time the first primary of a register key being written: the
                    // replica whose expiry sweep deletes that key's expired values, coming
                    // back with a stale copy after missing a refresh.
                    let victim = if self.rng.random_bool(0.5) {
                        self.first_primary_of_a_register().unwrap_or(0)
                    } else {
                        self.rng.random_range(0..n)
                    };
                    if self.nodes[victim].core.is_some() {
                        self.crash(victim);
                        let d = self.rng.random_range(200..=4000);
                        self.schedule(d, Event::Restart { node: victim });
                    }
                }
            }
            10 => {
                // One node's clock jumps (forward or back, by up to an hour) and is put right
                // a while later, running or not.
                let victim = self.rng.random_range(0..n);
                let node = &mut self.nodes[victim];
                if node.clock_skew_ms == node.base_skew_ms {
                    self.report.clock_jumps += 1;
                    let by = self.rng.random_range(2_000..=CLOCK_JUMP_MS_MAX) as i64;
                    let by = if self.rng.random_bool(0.5) { by } else { -by };
                    self.nodes[victim].clock_skew_ms += by;
                    if self.config.trace.is_some() {
                        eprintln!("t={} clock of n{} jumps {by:+} ms", self.now, victim + 1);
                    }
                    let d = self.rng.random_range(500..=10_000);
                    self.schedule(d, Event::ClockFixed { node: victim });
                }
            }
            8 => {
                // Pause one node longer than every timeout (as SIGSTOP, then SIGCONT).
                let victim = self.rng.random_range(0..n);
                if self.nodes[victim].core.is_some() && self.nodes[victim].paused_until.is_none() {
                    self.report.pauses += 1;
                    let d = self.rng.random_range(1_000..=8_000);
                    self.nodes[victim].paused_until = Some(self.now + d);
                }
            }
            _ => {} // a quiet period
        }
        let d = self.rng.random_range(1..=2 * self.config.fault_interval_ms);
        self.schedule(d, Event::Fault);
    }

    /// The index of the first primary of an active register key, if one is active.
    pub(super) fn first_primary_of_a_register(&mut self) -> Option<usize> {
        let registers: Vec<u64> = self
            .active_keys
            .iter()
            .copied()
            .filter(|k| is_register(*k))
            .collect();
        if registers.is_empty() {
            return None;
        }
        let pick = self.rng.random_range(0..registers.len());
        let key = self.object_key(registers[pick]);
        let partition = self.layout.partition_for(key.bucket.as_str(), key.key());
        let first = self.layout.preference_list(partition, 1).first().copied()?;
        Some((first.0 - 1) as usize)
    }

    /// Adds a node's hint and expiry counters (which restart from zero with the node) to the
    /// report.
    pub(super) fn count_hints(&mut self, i: usize) {
        if let Some(core) = &self.nodes[i].core {
            let status = core.status(Timestamp(self.now));
            self.report.expired_deleted += status.expired_deleted;
            self.report.paxos_rounds += status.paxos_repair.rounds;
            self.report.paxos_states_collected += status.paxos_repair.states_collected;
            if status.peer_messages_refused > 0 {
                self.report.violations.push(Violation::PeerRefused {
                    node: status.id.0,
                    count: status.peer_messages_refused,
                    why: status.peer_refusal.clone().unwrap_or_default(),
                });
            }
            let c = status.hint_counters;
            self.report.hints_stored += c.stored;
            self.report.hints_delivered += c.delivered;
            self.report.hints_dropped += c.dropped;
        }
    }

    pub(super) fn crash(&mut self, i: usize) {
        if self.config.trace.is_some() {
            eprintln!("t={} crash n{}", self.now, i + 1);
        }
        self.report.crashes += 1;
        self.count_hints(i);
        let n = &mut self.nodes[i];
        n.core = None;
        n.paused_until = None;
        n.store.crash();
        n.incarnation += 1;
        n.sync_in_flight = false;
        n.sync_waiting = None;
        n.next_tick = None;
        n.requests.clear();
    }

    pub(super) fn restart(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        n.core = Some(Node::new(
            node_config(n.id, &self.config),
            self.layout.clone(),
        ));
        // A shell hands a node a first Tick as it starts (timers, heartbeats, loading).
        let incarnation = n.incarnation;
        n.next_tick = Some(self.now);
        self.schedule(
            0,
            Event::Tick {
                node: i,
                incarnation,
            },
        );
        self.start_periodic_sync(i);
    }
}
