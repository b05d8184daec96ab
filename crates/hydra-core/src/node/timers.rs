//! Every timer of the node in one queue. A fired timer says what it is; the router hands it
//! to the part that set it.
//!
//! A request that ends cancels its timers, so the queue is bounded by what is in flight: at
//! most two per coordination ([`COORDINATIONS_MAX`]) and per answered write still waiting for
//! acks ([`WRITES_LINGERING_MAX`]), one per hint delivery, exchange and expiry batch, one per
//! pending reap ([`REAPS_MAX`]) and one per periodic task. A part ignores a timer whose
//! request it no longer holds.
//!
//! [`COORDINATIONS_MAX`]: crate::limits::COORDINATIONS_MAX
//! [`REAPS_MAX`]: crate::limits::REAPS_MAX
//! [`WRITES_LINGERING_MAX`]: crate::limits::WRITES_LINGERING_MAX

use crate::ids::{RequestId, Timestamp};
use std::collections::BTreeSet;

/// What a timer is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Timer {
    /// A write this node coordinates ran out of time: its silent replicas count as failed.
    WriteDeadline(RequestId),
    /// A sloppy write's primaries that have not acked get fallbacks.
    WriteFallback(RequestId),
    /// A read's replicas beyond R are asked too (speculative retry).
    ReadRetry(RequestId),
    /// A read this node coordinates ran out of time.
    ReadDeadline(RequestId),
    /// A write forwarded to a replica got no answer.
    ForwardDeadline(RequestId),
    /// A hint delivery got no answer; the hint is offered again later.
    HandoffDeadline(RequestId),
    /// A batch of expiry deletes did not get every answer.
    ExpireDeadline(RequestId),
    /// An anti-entropy exchange got no answer.
    ExchangeDeadline(RequestId),
    /// A compare-and-set ran out of time.
    PaxosDeadline(RequestId),
    /// A listing's page ran out of time.
    ScanDeadline(RequestId),
    /// A truncation's confirmations ran out of time.
    TruncateDeadline(RequestId),
    /// A compare-and-set beaten by another ballot prepares again.
    PaxosRetry(RequestId),
    /// Send heartbeats to every peer.
    Heartbeat,
    /// Push the bucket table to every peer.
    Gossip,
    /// Offer held hints to owners believed up.
    Handoff,
    /// Sweep one partition for expired values and start an anti-entropy exchange.
    AntiEntropy,
    /// Tombstones whose grace has passed are reaped.
    Reap,
    /// Due entries of the expiry index are deleted.
    Expiry,
    /// The next Paxos repair round starts (or the running one ran out of time).
    PaxosRepair,
    /// The next page of objects is taken into the Merkle trees being rebuilt (at start, and
    /// when a bucket's n changed).
    TreeRebuild,
    /// The next page of a truncated bucket's older values is purged.
    Purge,
}

/// The queue: `(when, timer)` in time order. Callers give times on the wall clock; the queue
/// keeps them on the monotonic clock (converted with the two readings of the current call),
/// so a jump of the wall clock neither fires every timer at once nor stalls them.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    queue: BTreeSet<(Timestamp, Timer)>,
    /// The current call's monotonic reading, and wall minus monotonic.
    mono: Timestamp,
    wall_ahead_ms: i64,
    clock_set: bool,
}

/// How far wall minus monotonic may drift before timers take the new offset (timers then fire
/// up to this late or early by the wall clock).
const OFFSET_SLACK_MS: i64 = 20;

impl Timers {
    /// At the start of every call: the two clocks' readings. The offset between them moves
    /// only when it changed by more than [`OFFSET_SLACK_MS`]: read separately and rounded,
    /// the two clocks jitter by a millisecond from call to call, and a `cancel` must find
    /// the key its `set` made in an earlier call.
    pub(crate) fn set_clock(&mut self, wall: Timestamp, mono: Timestamp) {
        self.mono = mono;
        let ahead = wall.0 as i64 - mono.0 as i64;
        if !self.clock_set || (ahead - self.wall_ahead_ms).abs() > OFFSET_SLACK_MS {
            self.wall_ahead_ms = ahead;
            self.clock_set = true;
        }
    }

    fn to_mono(&self, at: Timestamp) -> Timestamp {
        Timestamp(at.0.saturating_add_signed(-self.wall_ahead_ms))
    }

    /// Sets `timer` for `at` (wall clock). A time already past fires at the next call, never
    /// in this one: the offset may be up to [`OFFSET_SLACK_MS`] stale, so a timer re-armed
    /// for a moment just ahead of `now` could otherwise be due at once, again and again, and
    /// the call would never end.
    pub(crate) fn set(&mut self, at: Timestamp, timer: Timer) {
        let at = self
            .to_mono(at)
            .max(Timestamp(self.mono.0.saturating_add(1)));
        self.queue.insert((at, timer));
    }

    /// Removes a timer that is no longer needed (no-op if it already fired, or if the wall
    /// clock jumped since it was set: it then fires, as a no-op, at its time).
    pub(crate) fn cancel(&mut self, at: Timestamp, timer: Timer) {
        self.queue.remove(&(self.to_mono(at), timer));
    }

    /// The earliest timer due by the current call's time, removed from the queue.
    pub(crate) fn pop_due(&mut self) -> Option<Timer> {
        let (at, _) = self.queue.first()?;
        if *at > self.mono {
            return None;
        }
        self.queue.pop_first().map(|(_, t)| t)
    }

    /// The current call's monotonic reading (the failure detector's time).
    pub(crate) fn mono(&self) -> Timestamp {
        self.mono
    }

    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    /// When the next timer is due, on the wall clock of the last call.
    pub(crate) fn next(&self) -> Option<Timestamp> {
        self.queue
            .first()
            .map(|(at, _)| Timestamp(at.0.saturating_add_signed(self.wall_ahead_ms)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timer_set_during_a_call_never_fires_in_that_call() {
        let mut t = Timers::default();
        t.set_clock(Timestamp(1_000_000), Timestamp(0));
        // 10 ms later by both clocks, the wall clock 5 ms short (within the slack: the
        // offset stays, 5 ms stale).
        let (wall, mono) = (Timestamp(1_000_005), Timestamp(10));
        t.set_clock(wall, mono);
        // Re-armed for a moment just ahead of the wall clock (as a reap whose time has not
        // come): by the stale offset it is already due.
        t.set(Timestamp(wall.0 + 2), Timer::Reap);
        assert_eq!(t.pop_due(), None, "due in the call that set it");
        t.set_clock(Timestamp(wall.0 + 1), Timestamp(mono.0 + 1));
        assert_eq!(t.pop_due(), Some(Timer::Reap));
    }
}
