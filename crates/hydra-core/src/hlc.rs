//! Hybrid logical clock (Kulkarni et al., "Logical Physical Clocks", 2014).
//!
//! A timestamp packs milliseconds of wall time (high 48 bits) and a logical counter (low 16
//! bits). Timestamps of one clock strictly increase, stay close to the wall time it is fed, and
//! move past any timestamp it has observed, so a write that follows another causally also has
//! a larger timestamp. `lww` buckets order writes by `(timestamp, writer node)`.
//!
//! The clock never reads the system time itself: the caller passes `now`.

use crate::ids::Timestamp;
use serde::{Deserialize, Serialize};
use std::fmt;

const LOGICAL_BITS: u32 = 16;
const LOGICAL_MASK: u64 = (1 << LOGICAL_BITS) - 1;

/// One hybrid-logical-clock reading.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Hlc(pub u64);

impl Hlc {
    pub fn new(physical_ms: u64, logical: u16) -> Hlc {
        Hlc((physical_ms << LOGICAL_BITS) | logical as u64)
    }

    pub fn physical_ms(self) -> u64 {
        self.0 >> LOGICAL_BITS
    }

    pub fn logical(self) -> u16 {
        (self.0 & LOGICAL_MASK) as u16
    }
}

impl fmt::Display for Hlc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.physical_ms(), self.logical())
    }
}

/// A timestamp was further ahead of this node's clock than the configured skew allows.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "timestamp {timestamp} is {ahead_ms} ms ahead of this node's clock, more than the allowed skew of {max_skew_ms} ms"
)]
pub struct ClockSkewError {
    pub timestamp: Hlc,
    pub ahead_ms: u64,
    pub max_skew_ms: u64,
}

/// The clock of one node.
#[derive(Clone, Debug, Default, PartialEq, Hash, Eq)]
pub struct HlcClock {
    last: Hlc,
}

impl HlcClock {
    /// A new, strictly larger timestamp for a local event at wall time `now`.
    pub fn now(&mut self, now: Timestamp) -> Hlc {
        let wall = Hlc::new(now.0, 0);
        self.last = if wall > self.last {
            wall
        } else {
            Hlc(self.last.0 + 1)
        };
        self.last
    }

    /// Takes in a timestamp seen in a message, so later local timestamps are larger. Refuses
    /// (and ignores) one more than `max_skew_ms` ahead of `now`.
    pub fn observe(
        &mut self,
        seen: Hlc,
        now: Timestamp,
        max_skew_ms: u64,
    ) -> Result<(), ClockSkewError> {
        check_skew(seen, now, max_skew_ms)?;
        if seen > self.last {
            self.last = seen;
        }
        Ok(())
    }

    pub fn last(&self) -> Hlc {
        self.last
    }
}

/// Whether `seen` is at most `max_skew_ms` ahead of `now`.
pub fn check_skew(seen: Hlc, now: Timestamp, max_skew_ms: u64) -> Result<(), ClockSkewError> {
    let ahead_ms = seen.physical_ms().saturating_sub(now.0);
    if ahead_ms > max_skew_ms {
        return Err(ClockSkewError {
            timestamp: seen,
            ahead_ms,
            max_skew_ms,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strictly_increases_and_follows_wall_time() {
        let mut c = HlcClock::default();
        let a = c.now(Timestamp(100));
        let b = c.now(Timestamp(100));
        let d = c.now(Timestamp(99)); // wall clock stepped back
        let e = c.now(Timestamp(200));
        assert!(a < b && b < d && d < e);
        assert_eq!(a, Hlc::new(100, 0));
        assert_eq!(d, Hlc::new(100, 2));
        assert_eq!(e, Hlc::new(200, 0));
    }

    #[test]
    fn observing_moves_past_and_refuses_far_future() {
        let mut c = HlcClock::default();
        c.observe(Hlc::new(150, 3), Timestamp(100), 100)
            .expect("within skew");
        assert_eq!(c.now(Timestamp(100)), Hlc::new(150, 4));
        let e = c
            .observe(Hlc::new(1000, 0), Timestamp(100), 100)
            .expect_err("too far ahead");
        assert_eq!(e.ahead_ms, 900);
        assert_eq!(c.last(), Hlc::new(150, 4));
    }
}
