//! Checks a set-workload history against the final state read after every fault healed.
//!
//! - **lost**: adds that returned `ok` but are missing from the final read (must be 0 in
//!   `siblings` mode; in `lww` mode it is the figure the run reports).
//! - **failed but observed**: adds that returned `fail` yet appear in some read or the final
//!   state (a `fail` must mean "did not happen").
//! - **unexpected**: elements in reads that no client ever tried to add.
//! - **stale reads**: `ok` reads missing an element whose add had returned `ok` before the
//!   read was invoked (counted, not a failure: sloppy quorums and partitions allow them).

use crate::history::{F, Fault, Kind, Op};
use crate::workload::Set;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Verdict {
    pub adds_ok: u64,
    pub adds_fail: u64,
    pub adds_info: u64,
    pub reads_ok: u64,
    pub reads_fail: u64,
    pub lost: u64,
    /// The first few lost elements, as `key:element`.
    pub lost_examples: Vec<String>,
    pub failed_but_observed: u64,
    pub failed_but_observed_examples: Vec<String>,
    pub unexpected: u64,
    pub stale_reads: u64,
    /// Adds with `info` whose element is in the final state (they took effect).
    pub info_applied: u64,
}

const EXAMPLES_MAX: usize = 10;

fn element(op: &Op) -> Option<u64> {
    op.value.as_u64()
}

fn elements(op: &Op) -> Set {
    op.value
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_u64()).collect())
        .unwrap_or_default()
}

/// Checks `ops` (invocations and completions in time order) against `final_sets`.
pub fn check(ops: &[Op], final_sets: &BTreeMap<String, Set>) -> Verdict {
    let mut v = Verdict::default();
    // Pair completions with their invocations by process (one op in flight per process).
    let mut invoked: BTreeMap<u64, &Op> = BTreeMap::new();
    let mut attempted: BTreeSet<(String, u64)> = BTreeSet::new();
    let mut acked: Vec<(String, u64, u64)> = Vec::new(); // key, element, completion time
    let mut failed: BTreeSet<(String, u64)> = BTreeSet::new();
    let mut info: BTreeSet<(String, u64)> = BTreeSet::new();
    let mut reads: Vec<(String, u64, Set)> = Vec::new(); // key, invoke time, seen
    for op in ops {
        if op.kind == Kind::Invoke {
            if op.f == F::Add
                && let Some(e) = element(op)
            {
                attempted.insert((op.key.clone(), e));
            }
            invoked.insert(op.process, op);
            continue;
        }
        let start = invoked.remove(&op.process);
        match (op.f, op.kind) {
            (F::Add, kind) => {
                let Some(e) = element(op) else { continue };
                let k = (op.key.clone(), e);
                match kind {
                    Kind::Ok => {
                        v.adds_ok += 1;
                        acked.push((op.key.clone(), e, op.time));
                    }
                    Kind::Fail => {
                        v.adds_fail += 1;
                        failed.insert(k);
                    }
                    _ => {
                        v.adds_info += 1;
                        info.insert(k);
                    }
                }
            }
            (F::Read, Kind::Ok) => {
                v.reads_ok += 1;
                let at = start.map_or(op.time, |s| s.time);
                reads.push((op.key.clone(), at, elements(op)));
            }
            (F::Read, _) => v.reads_fail += 1,
            // The register workload's, judged by `check_register`.
            (F::Set | F::Get | F::Getdel | F::Touch | F::CasRead | F::Cas | F::Incr, _) => {}
        }
    }
    let empty = Set::new();
    for (key, e, _) in &acked {
        if !final_sets.get(key).unwrap_or(&empty).contains(e) {
            v.lost += 1;
            if v.lost_examples.len() < EXAMPLES_MAX {
                v.lost_examples.push(format!("{key}:{e}"));
            }
        }
    }
    let mut observed: BTreeSet<(String, u64)> = BTreeSet::new();
    for (key, _, seen) in &reads {
        observed.extend(seen.iter().map(|e| (key.clone(), *e)));
    }
    for (key, set) in final_sets {
        observed.extend(set.iter().map(|e| (key.clone(), *e)));
    }
    for k in &failed {
        if observed.contains(k) {
            v.failed_but_observed += 1;
            if v.failed_but_observed_examples.len() < EXAMPLES_MAX {
                v.failed_but_observed_examples
                    .push(format!("{}:{}", k.0, k.1));
            }
        }
    }
    v.unexpected = observed.iter().filter(|k| !attempted.contains(k)).count() as u64;
    v.info_applied = info
        .iter()
        .filter(|(key, e)| final_sets.get(key).is_some_and(|s| s.contains(e)))
        .count() as u64;
    // Stale reads: acked adds sorted by completion time per key.
    let mut by_key: BTreeMap<&str, Vec<(u64, u64)>> = BTreeMap::new();
    for (key, e, t) in &acked {
        by_key.entry(key.as_str()).or_default().push((*t, *e));
    }
    for list in by_key.values_mut() {
        list.sort_unstable();
    }
    for (key, at, seen) in &reads {
        let done = by_key.get(key.as_str()).map_or(&[][..], |l| {
            let n = l.partition_point(|(t, _)| *t < *at);
            &l[..n]
        });
        if done.iter().any(|(_, e)| !seen.contains(e)) {
            v.stale_reads += 1;
        }
    }
    v
}

/// One side of a partition: its nodes, and the requests sent to them while it lasted
/// (ok, all completed).
pub type Side = (Vec<usize>, u64, u64);

/// Availability of the requests sent to each side of each partition while it lasted.
pub fn availability_by_side(ops: &[Op], faults: &[Fault]) -> Vec<(String, Vec<Side>)> {
    faults
        .iter()
        .filter(|f| !f.groups.is_empty())
        .map(|f| {
            let sides = f
                .groups
                .iter()
                .map(|g| {
                    let done: Vec<&Op> = ops
                        .iter()
                        .filter(|o| o.kind != Kind::Invoke && o.time >= f.start && o.time < f.end)
                        .filter(|o| g.contains(&o.node))
                        .collect();
                    let ok = done.iter().filter(|o| o.kind == Kind::Ok).count() as u64;
                    (g.clone(), ok, done.len() as u64)
                })
                .collect();
            (f.description.clone(), sides)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn op(process: u64, kind: Kind, f: F, key: &str, value: serde_json::Value, time: u64) -> Op {
        Op {
            process,
            kind,
            f,
            key: key.into(),
            value,
            time,
            node: 0,
            error: None,
            ttl_ms: None,
        }
    }

    fn add(process: u64, e: u64, kind: Kind, t: u64) -> [Op; 2] {
        [
            op(process, Kind::Invoke, F::Add, "k", json!(e), t),
            op(process, kind, F::Add, "k", json!(e), t + 1),
        ]
    }

    fn finals(elements: &[u64]) -> BTreeMap<String, Set> {
        BTreeMap::from([("k".to_string(), elements.iter().copied().collect())])
    }

    #[test]
    fn a_clean_history_passes() {
        let mut ops = Vec::new();
        ops.extend(add(1, 10, Kind::Ok, 0));
        ops.extend(add(2, 20, Kind::Info, 5));
        ops.push(op(1, Kind::Invoke, F::Read, "k", json!(null), 10));
        ops.push(op(1, Kind::Ok, F::Read, "k", json!([10]), 11));
        let v = check(&ops, &finals(&[10, 20]));
        assert_eq!(
            (v.lost, v.failed_but_observed, v.unexpected, v.stale_reads),
            (0, 0, 0, 0)
        );
        assert_eq!(v.info_applied, 1);
    }

    /// A planted bug: an acknowledged add missing from the final state.
    #[test]
    fn a_lost_acknowledged_add_is_caught() {
        let mut ops = Vec::new();
        ops.extend(add(1, 10, Kind::Ok, 0));
        ops.extend(add(2, 20, Kind::Ok, 5));
        let v = check(&ops, &finals(&[10]));
        assert_eq!(v.lost, 1);
        assert_eq!(v.lost_examples, ["k:20"]);
    }

    /// A planted bug: an add reported as failed that later shows up.
    #[test]
    fn a_failed_add_that_is_observed_is_caught() {
        let mut ops = Vec::new();
        ops.extend(add(1, 10, Kind::Fail, 0));
        ops.push(op(2, Kind::Invoke, F::Read, "k", json!(null), 10));
        ops.push(op(2, Kind::Ok, F::Read, "k", json!([10]), 11));
        let v = check(&ops, &finals(&[]));
        assert_eq!(v.failed_but_observed, 1);
    }

    /// A planted bug: a read that misses an add acknowledged before it began.
    #[test]
    fn a_stale_read_is_counted_and_invented_elements_are_caught() {
        let mut ops = Vec::new();
        ops.extend(add(1, 10, Kind::Ok, 0));
        ops.push(op(2, Kind::Invoke, F::Read, "k", json!(null), 10));
        ops.push(op(2, Kind::Ok, F::Read, "k", json!([99]), 11));
        let v = check(&ops, &finals(&[10]));
        assert_eq!(v.stale_reads, 1);
        assert_eq!(v.unexpected, 1);
        // A read that began before the add completed is not stale.
        let mut ops = Vec::new();
        ops.push(op(2, Kind::Invoke, F::Read, "k", json!(null), 0));
        ops.extend(add(1, 10, Kind::Ok, 1));
        ops.push(op(2, Kind::Ok, F::Read, "k", json!([]), 5));
        assert_eq!(check(&ops, &finals(&[10])).stale_reads, 0);
    }
}
