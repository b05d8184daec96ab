//! Checker (h): compare-and-set is linearizable.
//!
//! Every write is "set to a unique `new` if the key holds `expected`", so a linearizable
//! history has one chain of applied writes per key, starting from absent: each value has at
//! most one applied successor (two are a fork: both conditions held on one value), every
//! applied write's `expected` is in the chain, and the chain's order is one real time allows
//! (a write that completed before another was invoked comes earlier). A value returned by a
//! serial read or a failed condition must have been current at some point while that
//! operation ran: its write was invoked before the operation ended, and its successor did not
//! complete before the operation began. A write whose outcome is unknown is in the chain when
//! anything saw its value; a write that certainly failed must never be seen.
//!
//! With unique values the chain is forced, so the check is exact and linear, not a search.

use crate::check::Violation;
use crate::workload::{CasKind, CasOp, CasResult, History};
use std::collections::{BTreeMap, BTreeSet};

/// Checks every compare-and-set key of `history`.
pub fn check_cas(history: &History, violations: &mut Vec<Violation>) {
    let mut by_key: BTreeMap<u64, Vec<&CasOp>> = BTreeMap::new();
    for op in &history.cas_ops {
        by_key.entry(op.key).or_default().push(op);
    }
    for (key, ops) in by_key {
        if let Err(detail) = check_key(&ops) {
            violations.push(Violation::NotLinearizable { key, detail });
        }
    }
}

/// A write and what is known of it.
struct Write<'a> {
    op: &'a CasOp,
    expected: Option<u64>,
    new: u64,
}

/// Checks one key's operations (the final serial read among them, if any): why no serial
/// order explains them, if none does.
pub fn check_key(ops: &[&CasOp]) -> Result<(), String> {
    let mut writes: BTreeMap<u64, Write> = BTreeMap::new();
    // Values some operation returned (reads and failed conditions), or expected and saw
    // applied.
    let mut seen: BTreeSet<u64> = BTreeSet::new();
    for op in ops {
        match (op.kind, op.completed) {
            (CasKind::Write { expected, new }, _) => {
                writes.insert(new, Write { op, expected, new });
            }
            (CasKind::Read, _) => {}
        }
        if let Some((_, CasResult::Current(Some(v)))) = op.completed {
            seen.insert(v);
        }
        if let (CasKind::Write { expected, .. }, Some((_, CasResult::Applied))) =
            (op.kind, op.completed)
        {
            seen.extend(expected);
        }
    }
    let applied = |w: &Write| -> bool {
        match w.op.completed {
            Some((_, CasResult::Applied)) => true,
            Some((_, CasResult::Unknown)) | None => seen.contains(&w.new),
            _ => false,
        }
    };
    // Nothing certainly not applied is ever seen.
    for w in writes.values() {
        let failed = matches!(
            w.op.completed,
            Some((_, CasResult::Fail | CasResult::Current(_)))
        );
        if failed && seen.contains(&w.new) {
            return Err(format!(
                "value {} was seen, but its write (invoked at {}) was answered as not applied",
                w.new, w.op.invoked.0
            ));
        }
    }
    // One applied successor per value.
    let mut successor: BTreeMap<Option<u64>, &Write> = BTreeMap::new();
    for w in writes.values().filter(|w| applied(w)) {
        if let Some(other) = successor.insert(w.expected, w) {
            return Err(format!(
                "two writes applied on {}: {} (invoked at {}) and {} (invoked at {})",
                w.expected
                    .map_or("absent".to_string(), |v| format!("value {v}")),
                other.new,
                other.op.invoked.0,
                w.new,
                w.op.invoked.0
            ));
        }
    }
    // The chain from absent, and each value's position in it.
    let mut chain: Vec<&Write> = Vec::new();
    let mut position: BTreeMap<Option<u64>, usize> = BTreeMap::new();
    position.insert(None, 0);
    let mut at = None;
    while let Some(w) = successor.get(&at) {
        if position.contains_key(&Some(w.new)) {
            return Err(format!(
                "the chain of applied writes loops at value {}",
                w.new
            ));
        }
        chain.push(w);
        position.insert(Some(w.new), chain.len());
        at = Some(w.new);
    }
    if chain.len() != successor.len() {
        let orphan = successor
            .values()
            .find(|w| !position.contains_key(&Some(w.new)))
            .expect("one is off the chain");
        return Err(format!(
            "write {} applied on {}, which was never current",
            orphan.new,
            orphan
                .expected
                .map_or("absent".to_string(), |v| format!("value {v}"))
        ));
    }
    // Real time: no write later in the chain completed before an earlier one was invoked.
    let mut earliest_end_after = u64::MAX;
    for w in chain.iter().rev() {
        if earliest_end_after < w.op.invoked.0 {
            return Err(format!(
                "write {} (invoked at {}) comes before a write that completed at {} in the only order of the applied writes",
                w.new, w.op.invoked.0, earliest_end_after
            ));
        }
        if let Some((t, CasResult::Applied)) = w.op.completed {
            earliest_end_after = earliest_end_after.min(t.0);
        }
    }
    // When each position of the chain was first known to be past: the earliest end of an
    // operation that saw a later position (a read or failed condition returning it, a write
    // applied at it), and the latest invocation of a write up to each position.
    let seen_at = |op: &CasOp| -> Option<(usize, u64)> {
        match op.completed? {
            (end, CasResult::Current(v)) => Some((*position.get(&v)?, end.0)),
            (end, CasResult::Applied) => match op.kind {
                CasKind::Write { new, .. } => Some((*position.get(&Some(new))?, end.0)),
                CasKind::Read => None,
            },
            _ => None,
        }
    };
    let mut first_seen = vec![u64::MAX; chain.len() + 1];
    for op in ops {
        if let Some((p, end)) = seen_at(op) {
            first_seen[p] = first_seen[p].min(end);
        }
    }
    // `past[p]`: the earliest time a position after `p` was seen.
    let mut past = vec![u64::MAX; chain.len() + 1];
    for p in (0..chain.len()).rev() {
        past[p] = past[p + 1].min(first_seen[p + 1]);
    }
    // `invoked_by[p]`: the latest invocation among the writes that made positions 1..=p.
    let mut invoked_by = vec![0u64; chain.len() + 1];
    for p in 1..=chain.len() {
        invoked_by[p] = invoked_by[p - 1].max(chain[p - 1].op.invoked.0);
    }
    // Every value returned was current during its operation.
    for op in ops {
        let Some((end, CasResult::Current(value))) = op.completed else {
            continue;
        };
        let shown = value.map_or("absent".to_string(), |v| format!("value {v}"));
        if let CasKind::Write { expected, .. } = op.kind
            && expected == value
        {
            return Err(format!(
                "a write expecting {shown} was not applied, though the key held exactly that"
            ));
        }
        let Some(&p) = position.get(&value) else {
            return Err(format!(
                "an operation at {}..{} returned {shown}, which no applied write made",
                op.invoked.0, end.0
            ));
        };
        if invoked_by[p] >= end.0 {
            return Err(format!(
                "an operation at {}..{} returned {shown}, but a write before it in the only order of the applied writes began only at {}",
                op.invoked.0, end.0, invoked_by[p]
            ));
        }
        if past[p] < op.invoked.0 {
            return Err(format!(
                "an operation at {}..{} returned {shown}, but a later value had been seen by {}",
                op.invoked.0, end.0, past[p]
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hydra_core::ids::Timestamp;

    fn write(expected: Option<u64>, new: u64, from: u64, to: u64, r: CasResult) -> CasOp {
        CasOp {
            client: 0,
            key: 0,
            kind: CasKind::Write { expected, new },
            invoked: Timestamp(from),
            completed: Some((Timestamp(to), r)),
            is_final: false,
            plain: false,
        }
    }

    fn read(value: Option<u64>, from: u64, to: u64) -> CasOp {
        CasOp {
            client: 1,
            key: 0,
            kind: CasKind::Read,
            invoked: Timestamp(from),
            completed: Some((Timestamp(to), CasResult::Current(value))),
            is_final: false,
            plain: false,
        }
    }

    fn check(ops: &[CasOp]) -> Result<(), String> {
        check_key(&ops.iter().collect::<Vec<_>>())
    }

    #[test]
    fn a_serial_history_passes() {
        let ops = [
            read(None, 0, 1),
            write(None, 1, 2, 3, CasResult::Applied),
            write(None, 9, 2, 4, CasResult::Current(Some(1))),
            read(Some(1), 5, 6),
            write(Some(1), 2, 7, 8, CasResult::Applied),
            read(Some(2), 9, 10),
        ];
        assert_eq!(check(&ops), Ok(()));
    }

    #[test]
    fn a_read_older_than_one_already_seen_is_caught_even_past_unknown_writes() {
        // 1 applied; 2 written with an unknown outcome; a read sees 2, a later read sees 1.
        let ops = [
            write(None, 1, 0, 1, CasResult::Applied),
            write(Some(1), 2, 2, 3, CasResult::Unknown),
            read(Some(2), 4, 5),
            read(Some(1), 6, 7),
        ];
        assert!(
            check(&ops)
                .expect_err("stale")
                .contains("later value had been seen")
        );
        // Overlapping reads may see either.
        let ops = [
            write(None, 1, 0, 1, CasResult::Applied),
            write(Some(1), 2, 2, 3, CasResult::Unknown),
            read(Some(2), 4, 8),
            read(Some(1), 5, 7),
        ];
        assert_eq!(check(&ops), Ok(()));
    }

    #[test]
    fn forks_stale_reads_and_real_time_inversions_are_caught() {
        // Two applied on absent.
        let ops = [
            write(None, 1, 0, 3, CasResult::Applied),
            write(None, 2, 1, 4, CasResult::Applied),
        ];
        assert!(
            check(&ops)
                .expect_err("fork")
                .contains("two writes applied")
        );
        // A read of a value replaced before it began.
        let ops = [
            write(None, 1, 0, 1, CasResult::Applied),
            write(Some(1), 2, 2, 3, CasResult::Applied),
            read(Some(1), 5, 6),
        ];
        assert!(
            check(&ops)
                .expect_err("stale")
                .contains("later value had been seen")
        );
        // A value read before its write began.
        let ops = [
            read(Some(1), 0, 1),
            write(None, 1, 2, 3, CasResult::Applied),
        ];
        assert!(check(&ops).expect_err("early").contains("began only at"));
        // A failed write seen; a not-applied answer equal to what it expected.
        let ops = [write(None, 1, 0, 1, CasResult::Fail), read(Some(1), 5, 6)];
        assert!(check(&ops).is_err());
        let ops = [write(None, 1, 0, 1, CasResult::Current(None))];
        assert!(check(&ops).expect_err("condition").contains("held exactly"));
    }

    #[test]
    fn unknown_writes_count_once_seen() {
        // An unknown write nobody saw is absent from the chain: fine.
        let ops = [
            write(None, 1, 0, 10, CasResult::Unknown),
            read(None, 11, 12),
        ];
        assert_eq!(check(&ops), Ok(()));
        // Seen later: it applied, and the read before it is still fine (it was in flight).
        let ops = [
            write(None, 1, 0, 10, CasResult::Unknown),
            read(None, 1, 2),
            read(Some(1), 11, 12),
        ];
        assert_eq!(check(&ops), Ok(()));
    }
}
