//! Every timer of the node in one queue. A fired timer says what it is; the router hands it
//! to the part that set it.
//!
//! A request that ends cancels its timers (each set once per time: a cancel takes out one
//! setting), so the queue is bounded by what is in flight: at
//! most two per coordination ([`COORDINATIONS_MAX`]) and per answered write still waiting for
//! acks ([`WRITES_LINGERING_MAX`]), one per hint delivery, exchange and expiry batch, one per
//! pending reap ([`REAPS_MAX`]) and one per periodic task. A part ignores a timer whose
//! request it no longer holds.
//!
//! [`COORDINATIONS_MAX`]: crate::limits::COORDINATIONS_MAX
//! [`REAPS_MAX`]: crate::limits::REAPS_MAX
//! [`WRITES_LINGERING_MAX`]: crate::limits::WRITES_LINGERING_MAX

use crate::ids::{RequestId, Timestamp};
use smallvec::SmallVec;
use std::collections::BTreeMap;

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

impl Timer {
    /// Periodic work, not one request's. Every variant named (no `_`): a new timer must
    /// say which it is, since only periodic ones are looked for when set.
    fn is_periodic(self) -> bool {
        match self {
            Timer::WriteDeadline(_)
            | Timer::WriteFallback(_)
            | Timer::ReadRetry(_)
            | Timer::ReadDeadline(_)
            | Timer::ForwardDeadline(_)
            | Timer::HandoffDeadline(_)
            | Timer::ExpireDeadline(_)
            | Timer::ExchangeDeadline(_)
            | Timer::PaxosDeadline(_)
            | Timer::ScanDeadline(_)
            | Timer::TruncateDeadline(_)
            | Timer::PaxosRetry(_) => false,
            Timer::Heartbeat
            | Timer::Gossip
            | Timer::Handoff
            | Timer::AntiEntropy
            | Timer::Reap
            | Timer::Expiry
            | Timer::PaxosRepair
            | Timer::TreeRebuild
            | Timer::Purge => true,
        }
    }
}

/// The timers due at one millisecond. A pipeline's requests start at one clock reading, so
/// their timers share a millisecond: one B-tree entry for them all, not one each (setting
/// and cancelling timers in a `BTreeSet` of the pairs was 5-6% of the core thread on
/// pipelined reads).
#[derive(Debug, Default)]
struct Due {
    /// In the order set until the millisecond comes due, then in descending order, so the
    /// smallest pops off the end. A cancelled timer's slot is emptied, not removed, until
    /// most slots are empty ([`Timers::COMPACT_SLOTS_MIN`]).
    slots: SmallVec<[Option<Timer>; 4]>,
    /// Slots before this one are all empty. Requests end mostly in the order they started,
    /// so a cancel finds its timer at or just after it: a millisecond of a busy node holds
    /// hundreds of timers, and a cancel that scanned them all was 9% of the core thread at
    /// 250k pipelined GETs a second.
    first: usize,
    /// Timers in the slots.
    live: usize,
    /// Set when the millisecond comes due (a timer set from then on goes to a later one);
    /// cleared by a timer added.
    sorted: bool,
}

/// The queue: timers by when they are due, fired in the order of `(when, timer)`. Callers
/// give times on the wall clock; the queue keeps them on the monotonic clock (converted with
/// the two readings of the current call), so a jump of the wall clock neither fires every
/// timer at once nor stalls them.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    queue: BTreeMap<Timestamp, Due>,
    /// Timers in the queue.
    len: usize,
    /// The current call's monotonic reading, and wall minus monotonic.
    mono: Timestamp,
    wall_ahead_ms: i64,
    clock_set: bool,
}

/// How far wall minus monotonic may drift before timers take the new offset (timers then fire
/// up to this late or early by the wall clock).
const OFFSET_SLACK_MS: i64 = 20;

impl Timers {
    /// Slots a millisecond may hold before a cancel that leaves fewer than half of them
    /// with a timer compacts them: each compaction drops at least as many empty slots as it
    /// keeps timers, so a cancel costs O(1) amortized.
    const COMPACT_SLOTS_MIN: usize = 16;

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
        let due = self.queue.entry(at).or_default();
        // The same periodic timer for the same time fires once, as in a set of the pairs:
        // periodic work may be set again for a time it is already set for, and stays one
        // entry. A request's timer is set once per time, so it is not looked for (a
        // millisecond of a busy node holds hundreds); were it set twice, the settings count
        // as two for `len` and `cancel`, and fire once.
        if timer.is_periodic() && due.slots.contains(&Some(timer)) {
            return;
        }
        due.slots.push(Some(timer));
        due.live += 1;
        due.sorted = false;
        self.len += 1;
    }

    /// Removes a timer that is no longer needed: one setting of it (no-op if it already
    /// fired, or if the wall clock jumped since it was set: it then fires, as a no-op, at its
    /// time).
    pub(crate) fn cancel(&mut self, at: Timestamp, timer: Timer) {
        let at = self.to_mono(at);
        let Some(due) = self.queue.get_mut(&at) else {
            return;
        };
        let Some(i) = due
            .slots
            .get(due.first..)
            .and_then(|rest| rest.iter().position(|slot| *slot == Some(timer)))
        else {
            return;
        };
        due.slots[due.first + i] = None;
        due.live -= 1;
        self.len -= 1;
        if due.live == 0 {
            self.queue.remove(&at);
        } else if due.slots.len() >= Self::COMPACT_SLOTS_MIN && due.live * 2 < due.slots.len() {
            // Mostly empty (writes' deadlines, cancelled as their acks arrive, are due
            // seconds later): the order is kept, and the slots do not outgrow what is set.
            due.slots.retain(|slot| slot.is_some());
            due.first = 0;
        } else {
            while due.slots.get(due.first) == Some(&None) {
                due.first += 1;
            }
        }
    }

    /// The earliest timer due by the current call's time, removed from the queue.
    pub(crate) fn pop_due(&mut self) -> Option<Timer> {
        let mut entry = self.queue.first_entry()?;
        if *entry.key() > self.mono {
            return None;
        }
        let due = entry.get_mut();
        if !due.sorted {
            due.slots.retain(|slot| slot.is_some());
            due.slots.sort_unstable_by(|a, b| b.cmp(a));
            due.first = 0;
            due.sorted = true;
        }
        // Slots emptied since the sort are skipped; `live` is not 0, so one holds a timer.
        let mut timer = None;
        while timer.is_none() {
            timer = due.slots.pop().flatten();
        }
        due.live -= 1;
        self.len -= 1;
        // A second setting of a request's timer for this time (next to it, sorted).
        while let Some(last) = due.slots.last() {
            match last {
                None => {}
                Some(t) if Some(*t) == timer => {
                    due.live -= 1;
                    self.len -= 1;
                }
                Some(_) => break,
            }
            due.slots.pop();
        }
        if due.live == 0 {
            entry.remove();
        }
        timer
    }

    /// The current call's monotonic reading (the failure detector's time).
    pub(crate) fn mono(&self) -> Timestamp {
        self.mono
    }

    /// Timers in the queue (a request's timer set twice for one time counts twice until it
    /// fires, once, or is cancelled).
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// When the next timer is due, on the wall clock of the last call.
    pub(crate) fn next(&self) -> Option<Timestamp> {
        self.queue
            .first_key_value()
            .map(|(at, _)| Timestamp(at.0.saturating_add_signed(self.wall_ahead_ms)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[derive(Clone, Debug)]
    enum Op {
        Set(u64, Timer),
        Cancel(u64, Timer),
        /// The clock moves on by this many ms, and every due timer fires.
        Advance(u64),
    }

    fn timer() -> impl Strategy<Value = Timer> {
        prop_oneof![
            (0u64..6).prop_map(|r| Timer::ReadRetry(RequestId(r))),
            (0u64..6).prop_map(|r| Timer::ReadDeadline(RequestId(r))),
            (0u64..6).prop_map(|r| Timer::WriteDeadline(RequestId(r))),
            Just(Timer::Heartbeat),
            Just(Timer::Reap),
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u64..8, timer()).prop_map(|(at, t)| Op::Set(at, t)),
            3 => (0u64..8, timer()).prop_map(|(at, t)| Op::Cancel(at, t)),
            1 => (0u64..4).prop_map(Op::Advance),
        ]
    }

    proptest! {
        /// The queue behaves as the set of `(when, timer)` pairs it replaced: the same
        /// timers fire, in the same order, and the same ones are left; a request's timer
        /// set twice for one time takes two cancels.
        #[test]
        fn fires_as_a_set_of_pairs_would(ops in proptest::collection::vec(op(), 0..200)) {
            let mut timers = Timers::default();
            let mut model: BTreeSet<(u64, Timer)> = BTreeSet::new();
            // Second settings of a request's timer, counted by `len` until it fires.
            let mut again: BTreeMap<(u64, Timer), usize> = BTreeMap::new();
            let mut now = 1_000u64;
            timers.set_clock(Timestamp(now), Timestamp(now));
            for op in ops {
                match op {
                    Op::Set(ahead, t) => {
                        timers.set(Timestamp(now + ahead), t);
                        let at = (now + ahead).max(now + 1);
                        if !model.insert((at, t)) && !t.is_periodic() {
                            *again.entry((at, t)).or_default() += 1;
                        }
                    }
                    Op::Cancel(ahead, t) => {
                        // One setting goes: the last one takes the pair out.
                        timers.cancel(Timestamp(now + ahead), t);
                        match again.get_mut(&(now + ahead, t)) {
                            Some(n) if *n > 1 => *n -= 1,
                            Some(_) => {
                                again.remove(&(now + ahead, t));
                            }
                            None => {
                                model.remove(&(now + ahead, t));
                            }
                        }
                    }
                    Op::Advance(ms) => {
                        now += ms;
                        timers.set_clock(Timestamp(now), Timestamp(now));
                        let mut fired = Vec::new();
                        while let Some(t) = timers.pop_due() {
                            fired.push(t);
                        }
                        let mut expected = Vec::new();
                        while let Some(first) = model.pop_first() {
                            if first.0 > now {
                                model.insert(first);
                                break;
                            }
                            again.remove(&first);
                            expected.push(first.1);
                        }
                        prop_assert_eq!(fired, expected);
                    }
                }
                prop_assert_eq!(timers.len(), model.len() + again.values().sum::<usize>());
                prop_assert_eq!(timers.next(), model.first().map(|(at, _)| Timestamp(*at)));
            }
        }
    }

    #[test]
    fn a_busy_millisecond_stays_compact_as_its_timers_are_cancelled() {
        let mut t = Timers::default();
        t.set_clock(Timestamp(1_000), Timestamp(1_000));
        for id in 0..200 {
            t.set(Timestamp(1_005), Timer::WriteDeadline(RequestId(id)));
        }
        // Cancelled out of order; every seventh stays.
        for i in 0..200u64 {
            let id = i * 37 % 200;
            if id % 7 != 0 {
                t.cancel(Timestamp(1_005), Timer::WriteDeadline(RequestId(id)));
                let due = &t.queue[&Timestamp(1_005)];
                assert!(due.slots.len() <= 2 * due.live + Timers::COMPACT_SLOTS_MIN);
            }
        }
        let left: Vec<_> = (0..200)
            .filter(|id| id % 7 == 0)
            .map(|id| Timer::WriteDeadline(RequestId(id)))
            .collect();
        assert_eq!(t.len(), left.len());
        t.set_clock(Timestamp(1_005), Timestamp(1_005));
        let fired: Vec<_> = std::iter::from_fn(|| t.pop_due()).collect();
        assert_eq!(fired, left);
        assert_eq!(t.len(), 0);
    }

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
