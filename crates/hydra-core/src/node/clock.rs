//! Clock discipline: how far this node's wall clock is from its peers', and whether the node
//! may use it to stamp writes, judge expiry and reap.
//!
//! Source: NTP's offset and delay estimate (RFC 5905, section 8), carried on the heartbeats
//! every node already sends, as CockroachDB measures clock offsets on its RPC heartbeats.
//!
//! ```text
//! X ── Heartbeat { wall, mono, echo: Y's last (mono, held here, our wall when it came) } ──▶ Y
//! Y: rtt = now_mono - echo.mono - echo.held;  offset(X - Y) = echo.wall - (Y's wall then + rtt/2)
//! ```
//!
//! Each call also compares the wall clock with the monotonic one: a step of more than
//! [`CLOCK_JUMP_MS`] is a jump, after which the clock is unverified until a round trip that
//! began after the jump puts it within the bound of most peers measured. A node also starts
//! unverified (its clock may have been set wrong while it was down).
//!
//! Invariants:
//! * While the verdict is not [`Verdict::Ok`] the node coordinates no write, no bucket
//!   change and no read of an `lww` bucket (`ClockSkew`), does not sweep expired values and
//!   does not reap: nothing it stamps, expires or reaps depends on a clock it cannot trust.
//! * An estimate counts only if its round trip began after the last jump (or start).

use crate::ids::{NodeId, Timestamp};
use crate::message::{Echo, Message};
use std::collections::BTreeMap;

/// A step of the wall clock against the monotonic clock larger than this is a jump.
pub const CLOCK_JUMP_MS: u64 = 1_000;
/// Estimates older than this many heartbeat intervals no longer count.
const ESTIMATE_FRESH_INTERVALS: u64 = 20;

/// Whether the node may use its wall clock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    /// Most peers measured put this node's clock this far off theirs (positive: ahead).
    Skewed {
        offset_ms: i64,
    },
    /// Started, or the clock jumped, and no round trip since has verified it.
    Unverified {
        why: String,
    },
}

/// One peer's clock against ours.
#[derive(Clone, Copy, Debug)]
struct Estimate {
    /// The peer's clock minus ours.
    offset_ms: i64,
    /// Half the round trip: the true offset is within this of `offset_ms`.
    uncertainty_ms: u64,
    measured: Timestamp,
}

/// A peer's last heartbeat, kept for the echo.
#[derive(Clone, Copy, Debug)]
struct Heard {
    their_mono: u64,
    their_wall: u64,
    got_mono: Timestamp,
    got_wall: Timestamp,
}

/// What a node knows of its clock.
#[derive(Debug)]
pub(crate) struct Clock {
    /// Wall minus monotonic at the last call.
    wall_ahead_ms: Option<i64>,
    /// Since when (monotonic) the clock waits for a verifying round trip, and why.
    unverified: Option<(Timestamp, String)>,
    estimates: BTreeMap<NodeId, Estimate>,
    /// Per peer, its last heartbeat: its monotonic and wall readings, and ours when it came
    /// (echoed back in our next heartbeat to it).
    heard: BTreeMap<NodeId, Heard>,
    jumps: u64,
}

impl Clock {
    pub(crate) fn new() -> Clock {
        Clock {
            wall_ahead_ms: None,
            unverified: Some((Timestamp(0), "the node just started".into())),
            estimates: BTreeMap::new(),
            heard: BTreeMap::new(),
            jumps: 0,
        }
    }

    /// Every call: notes a jump of the wall clock against the monotonic one.
    pub(crate) fn observe(&mut self, wall: Timestamp, mono: Timestamp) {
        let ahead = wall.0 as i64 - mono.0 as i64;
        if let Some(before) = self.wall_ahead_ms
            && (ahead - before).unsigned_abs() > CLOCK_JUMP_MS
        {
            self.jumps += 1;
            self.estimates.clear();
            self.unverified = Some((
                mono,
                format!("its wall clock jumped by {} ms", ahead - before),
            ));
        }
        if self.wall_ahead_ms.is_none()
            && let Some((since, _)) = &mut self.unverified
        {
            // The first call: only round trips begun from now on verify the clock.
            *since = mono;
        }
        self.wall_ahead_ms = Some(ahead);
    }

    /// The persisted clock mark is further ahead of the wall clock than the bound: the clock
    /// was wrong before the restart, or is now.
    pub(crate) fn distrust_at_start(&mut self, why: String) {
        self.unverified = Some((Timestamp(0), why));
    }

    /// A heartbeat to `peer`, echoing its last one to us.
    pub(crate) fn heartbeat(&self, peer: NodeId, wall: Timestamp, mono: Timestamp) -> Message {
        Message::Heartbeat {
            wall_ms: wall.0,
            mono_ms: mono.0,
            echo: self.heard.get(&peer).map(|h| Echo {
                mono_ms: h.their_mono,
                sent_wall_ms: h.their_wall,
                held_ms: mono.0.saturating_sub(h.got_mono.0),
                wall_ms: h.got_wall.0,
            }),
        }
    }

    /// A peer's heartbeat: remembered for the echo, and an estimate if it echoes ours.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_heartbeat(
        &mut self,
        from: NodeId,
        their_mono: u64,
        their_wall: u64,
        echo: Option<Echo>,
        wall: Timestamp,
        mono: Timestamp,
        limit_ms: u64,
    ) {
        self.heard.insert(
            from,
            Heard {
                their_mono,
                their_wall,
                got_mono: mono,
                got_wall: wall,
            },
        );
        let Some(echo) = echo else { return };
        let since = self.unverified.as_ref().map_or(0, |(t, _)| t.0);
        if echo.mono_ms > mono.0 || echo.mono_ms < since {
            return; // not ours, or sent before the last jump
        }
        // Our two clocks must have moved alike since we sent it: else the wall clock jumped
        // in between, or the echo is of a heartbeat from before a restart.
        let mono_passed = mono.0 - echo.mono_ms;
        let wall_passed = wall.0 as i64 - echo.sent_wall_ms as i64;
        if (wall_passed - mono_passed as i64).unsigned_abs() > CLOCK_JUMP_MS {
            return;
        }
        let rtt = mono_passed.saturating_sub(echo.held_ms);
        if rtt / 2 > limit_ms {
            return; // too slow a round trip to tell anything
        }
        // Our wall clock when we sent the echoed heartbeat, plus half the round trip.
        let ours_then = wall.0 as i64 - (mono.0 - echo.mono_ms) as i64 + (rtt / 2) as i64;
        self.estimates.insert(
            from,
            Estimate {
                offset_ms: echo.wall_ms as i64 - ours_then,
                uncertainty_ms: rtt / 2,
                measured: mono,
            },
        );
        if self.unverified.is_some() {
            let fresh: Vec<&Estimate> = self.estimates.values().collect();
            let within = fresh
                .iter()
                .filter(|e| e.offset_ms.unsigned_abs() <= limit_ms + e.uncertainty_ms)
                .count();
            if within * 2 > fresh.len() {
                self.unverified = None;
            }
        }
    }

    fn fresh(&self, mono: Timestamp, fresh_ms: u64) -> impl Iterator<Item = &Estimate> {
        self.estimates
            .values()
            .filter(move |e| e.measured.0.saturating_add(fresh_ms) >= mono.0)
    }

    /// This node's clock minus the median of its peers' (from fresh estimates), if any.
    fn offset(&self, mono: Timestamp, fresh_ms: u64) -> Option<i64> {
        let mut offsets: Vec<i64> = self.fresh(mono, fresh_ms).map(|e| -e.offset_ms).collect();
        offsets.sort_unstable();
        offsets.get(offsets.len() / 2).copied()
    }

    /// Whether the node may use its clock. `peers` is how many other nodes there are (none:
    /// nobody to compare with, so the clock is taken as right).
    pub(crate) fn verdict(
        &self,
        mono: Timestamp,
        peers: usize,
        limit_ms: u64,
        heartbeat_interval_ms: u64,
    ) -> Verdict {
        if peers == 0 {
            return Verdict::Ok;
        }
        let fresh_ms = heartbeat_interval_ms.saturating_mul(ESTIMATE_FRESH_INTERVALS);
        // Called for every client request: counts without allocating.
        let (mut fresh, mut beyond) = (0, 0);
        for e in self.fresh(mono, fresh_ms) {
            fresh += 1;
            if e.offset_ms.unsigned_abs() > limit_ms + e.uncertainty_ms {
                beyond += 1;
            }
        }
        if fresh > 0 && beyond * 2 > fresh {
            return Verdict::Skewed {
                offset_ms: self.offset(mono, fresh_ms).unwrap_or_default(),
            };
        }
        match &self.unverified {
            Some((_, why)) => Verdict::Unverified { why: why.clone() },
            None => Verdict::Ok,
        }
    }

    /// For status: the offset from the peers (if measured), how many peers are measured, and
    /// how many jumps were seen.
    pub(crate) fn figures(
        &self,
        mono: Timestamp,
        heartbeat_interval_ms: u64,
    ) -> (Option<i64>, usize, u64) {
        let fresh_ms = heartbeat_interval_ms.saturating_mul(ESTIMATE_FRESH_INTERVALS);
        (
            self.offset(mono, fresh_ms),
            self.fresh(mono, fresh_ms).count(),
            self.jumps,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two clocks `ahead_ms` apart exchange heartbeats over a link of `one_way_ms`; returns
    /// A's verdict.
    fn exchange(ahead_ms: i64, one_way_ms: u64) -> (Verdict, Option<i64>) {
        let (mut a, mut b) = (Clock::new(), Clock::new());
        let (a_id, b_id) = (NodeId(1), NodeId(2));
        let wall_a = |mono: u64| Timestamp((10_000_000 + mono as i64 + ahead_ms) as u64);
        let wall_b = |mono: u64| Timestamp(10_000_000 + mono);
        let mut t = 100;
        for _ in 0..3 {
            let Message::Heartbeat {
                mono_ms,
                wall_ms,
                echo,
            } = a.heartbeat(b_id, wall_a(t), Timestamp(t))
            else {
                unreachable!()
            };
            t += one_way_ms;
            b.on_heartbeat(a_id, mono_ms, wall_ms, echo, wall_b(t), Timestamp(t), 2_500);
            t += 10;
            let Message::Heartbeat {
                mono_ms,
                wall_ms,
                echo,
            } = b.heartbeat(a_id, wall_b(t), Timestamp(t))
            else {
                unreachable!()
            };
            t += one_way_ms;
            a.on_heartbeat(b_id, mono_ms, wall_ms, echo, wall_a(t), Timestamp(t), 2_500);
        }
        let v = a.verdict(Timestamp(t), 1, 2_500, 100);
        (v, a.figures(Timestamp(t), 100).0)
    }

    #[test]
    fn estimates_the_offset_from_heartbeat_round_trips() {
        let (v, offset) = exchange(40, 7);
        assert_eq!(v, Verdict::Ok);
        assert_eq!(offset, Some(40));
        let (v, offset) = exchange(3_600_000, 7);
        assert_eq!(
            v,
            Verdict::Skewed {
                offset_ms: 3_600_000
            }
        );
        assert_eq!(offset, Some(3_600_000));
        let (v, _) = exchange(-3_600_000, 20);
        assert_eq!(
            v,
            Verdict::Skewed {
                offset_ms: -3_600_000
            }
        );
    }

    #[test]
    fn a_jump_makes_the_clock_unverified_until_a_round_trip_after_it() {
        let mut c = Clock::new();
        c.unverified = None;
        c.observe(Timestamp(5_000), Timestamp(100));
        c.observe(Timestamp(5_100), Timestamp(200));
        assert_eq!(c.verdict(Timestamp(200), 1, 2_500, 100), Verdict::Ok);
        c.observe(Timestamp(3_605_300), Timestamp(300));
        assert!(matches!(
            c.verdict(Timestamp(300), 1, 2_500, 100),
            Verdict::Unverified { .. }
        ));
        // An echo of a heartbeat sent before the jump does not verify it.
        let before = Echo {
            mono_ms: 250,
            sent_wall_ms: 5_250,
            held_ms: 5,
            wall_ms: 3_605_300,
        };
        c.on_heartbeat(
            NodeId(2),
            0,
            0,
            Some(before),
            Timestamp(3_605_400),
            Timestamp(400),
            2_500,
        );
        assert!(matches!(
            c.verdict(Timestamp(400), 1, 2_500, 100),
            Verdict::Unverified { .. }
        ));
        // One sent after it, showing the peer agrees with the new time, does.
        let after = Echo {
            mono_ms: 350,
            sent_wall_ms: 3_605_350,
            held_ms: 10,
            wall_ms: 3_605_400,
        };
        c.on_heartbeat(
            NodeId(2),
            0,
            0,
            Some(after),
            Timestamp(3_605_410),
            Timestamp(410),
            2_500,
        );
        assert_eq!(c.verdict(Timestamp(410), 1, 2_500, 100), Verdict::Ok);
    }
}
