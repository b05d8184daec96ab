//! Every timer of the node in one queue. A fired timer says what it is; the router hands it
//! to the part that set it.
//!
//! A request that ends cancels its timers, so the queue is bounded by what is in flight: at
//! most two per coordination ([`COORDINATIONS_MAX`]), one per hint delivery and exchange, one
//! per pending reap ([`REAPS_MAX`]) and one per periodic task. A part ignores a timer whose
//! request it no longer holds.
//!
//! [`COORDINATIONS_MAX`]: crate::limits::COORDINATIONS_MAX
//! [`REAPS_MAX`]: crate::limits::REAPS_MAX

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
    /// An anti-entropy exchange got no answer.
    ExchangeDeadline(RequestId),
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
}

/// The queue: `(when, timer)` in time order.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    queue: BTreeSet<(Timestamp, Timer)>,
}

impl Timers {
    pub(crate) fn set(&mut self, at: Timestamp, timer: Timer) {
        self.queue.insert((at, timer));
    }

    /// Removes a timer that is no longer needed (no-op if it already fired).
    pub(crate) fn cancel(&mut self, at: Timestamp, timer: Timer) {
        self.queue.remove(&(at, timer));
    }

    /// The earliest timer due at or before `now`, removed from the queue.
    pub(crate) fn pop_due(&mut self, now: Timestamp) -> Option<Timer> {
        let (at, _) = self.queue.first()?;
        if *at > now {
            return None;
        }
        self.queue.pop_first().map(|(_, t)| t)
    }

    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    pub(crate) fn next(&self) -> Option<Timestamp> {
        self.queue.first().map(|(at, _)| *at)
    }
}
