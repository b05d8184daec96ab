//! Checks a register-workload history (`set`/`get` over RESP in an `lww` bucket) and the
//! final values read after every fault healed. The order it holds the server to is the
//! one Hydra promises for `lww` (ARCHITECTURE.md, "lww order"):
//!
//! - a write is **ordered after** another when it began more than the clock skew bound after
//!   the other ended, or when its connection had seen the other (wrote it, or read it)
//!   before it began;
//! - **stale**: a `get` returns a value although a write ordered after that value's write
//!   was acknowledged before the `get` began (an expired later write still hides it: its
//!   expiry is a tombstone with its identity);
//! - **lost**: a `get` returns nil although an acknowledged write, still within its TTL, ended
//!   before the `get` began, and no write that may be ordered after it may have expired by
//!   the time the `get` ended (the refresh that an expiry undid, in the words);
//! - **expired returned**: a `get` returns a value past its TTL by more than the skew bound
//!   (unless a `PEXPIRE` or `PERSIST` that may have touched it lengthened its life);
//! - **deleted returned** (counted as stale): a `get` returns a value a `GETDEL` returned
//!   (and so deleted) before the `get` began;
//! - **failed but observed** and **unexpected**, as in the set checker.
//!
//! `GETDEL` and `PEXPIRE`/`PERSIST` act on the version the server read, which the client
//! never learns for a touch: a `GETDEL` is a read, and a nil is excused by a `GETDEL` that
//! returned a value not ordered before the lost write, or an indeterminate one; a nil is
//! excused by a short `PEXPIRE` that may have run out by then unless it ended (by more than
//! the skew bound) before the lost write began. A `PEXPIRE` answering 0 read nil, and counts
//! as a nil read.
//!
//! `info` writes (indeterminate) never make a read wrong by being absent, and they excuse a nil
//! when they carry a TTL; one the server answered (a quorum failure) is bounded by its answer
//! like any write (its stamp was taken before), one without an answer may be ordered anywhere
//! after it began. Final values count as reads that
//! began and ended when the run stopped.

use crate::history::{F, Kind, Op};
use crate::register::REPLIED;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RegisterVerdict {
    pub sets_ok: u64,
    pub sets_fail: u64,
    pub sets_info: u64,
    pub gets_ok: u64,
    pub gets_nil: u64,
    pub gets_fail: u64,
    /// `GETDEL`s answered (a value or nil), and those indeterminate.
    pub getdels_ok: u64,
    pub getdels_info: u64,
    /// `PEXPIRE`/`PERSIST`s answered, and those indeterminate.
    pub touches_ok: u64,
    pub touches_info: u64,
    pub stale: u64,
    pub lost: u64,
    /// Of `stale` and `lost`, those in the final values (read at `r=all` after every fault
    /// healed and the replicas agreed): wrong in every bucket, sloppy or strict. A sloppy
    /// read during a partition may be answered by fallbacks that lack a write (Dynamo's
    /// sloppy quorum), so in sloppy buckets only these count as failures.
    pub final_stale: u64,
    pub final_lost: u64,
    pub expired_returned: u64,
    pub failed_but_observed: u64,
    pub unexpected: u64,
    /// `info` writes whose value some read returned (they took effect).
    pub info_observed: u64,
    /// The first few violations of each kind, described.
    pub examples: Vec<String>,
}

impl RegisterVerdict {
    /// Every violation of a strict bucket.
    pub fn violations(&self) -> u64 {
        self.stale + self.lost + self.expired_returned + self.failed_but_observed + self.unexpected
    }

    /// The violations of a sloppy bucket: stale and lost reads count only in the final
    /// values.
    pub fn sloppy_violations(&self) -> u64 {
        self.final_stale
            + self.final_lost
            + self.expired_returned
            + self.failed_but_observed
            + self.unexpected
    }
}

/// The process id of the final reads.
const FINAL: u64 = u64::MAX;

/// Examples kept per kind of violation.
const EXAMPLES_MAX: usize = 3;
/// Nil reads look at this many of the latest acknowledged writes before them (a bound on the
/// checker's time; looking at fewer can only miss a violation, never invent one).
const CANDIDATES_MAX: usize = 64;

#[derive(Clone, Debug)]
struct Write {
    process: u64,
    value: u64,
    ttl_ms: Option<u64>,
    invoke: u64,
    /// Completion time, for `ok`, `fail` and `info` the server answered; `None` for `info`
    /// without an answer (it may be coordinated any time).
    complete: Option<u64>,
    kind: Kind,
}

/// A `GETDEL` that may have deleted a value: the one it returned, or (`None`) whatever was
/// current when it is indeterminate.
#[derive(Clone, Debug)]
struct Del {
    invoke: u64,
    complete: Option<u64>,
    value: Option<u64>,
}

/// A `PEXPIRE` (`ttl_ms`) or `PERSIST` (none) that may have changed the TTL of the version
/// current while it ran.
#[derive(Clone, Debug)]
struct Touch {
    invoke: u64,
    complete: Option<u64>,
    ttl_ms: Option<u64>,
}

#[derive(Clone, Debug)]
struct Read {
    process: u64,
    invoke: u64,
    complete: u64,
    value: Option<u64>,
}

const MS: u64 = 1_000_000;

/// Checks `ops` (in time order, times in nanoseconds) and the `finals` read at `final_time`.
pub fn check_registers(
    ops: &[Op],
    finals: &BTreeMap<String, Option<u64>>,
    final_time: u64,
    skew_ms: u64,
) -> RegisterVerdict {
    let skew = skew_ms * MS;
    let mut v = RegisterVerdict::default();
    let mut writes: BTreeMap<&str, Vec<Write>> = BTreeMap::new();
    let mut reads: BTreeMap<&str, Vec<Read>> = BTreeMap::new();
    let mut dels: BTreeMap<&str, Vec<Del>> = BTreeMap::new();
    let mut touches: BTreeMap<&str, Vec<Touch>> = BTreeMap::new();
    let mut open: BTreeMap<u64, &Op> = BTreeMap::new();
    let registers = |o: &&Op| matches!(o.f, F::Set | F::Get | F::Getdel | F::Touch);
    for op in ops.iter().filter(registers) {
        if op.kind == Kind::Invoke {
            open.insert(op.process, op);
            continue;
        }
        let Some(inv) = open.remove(&op.process) else {
            continue;
        };
        match op.f {
            F::Set => {
                let Some(value) = inv.value.as_u64() else {
                    continue;
                };
                match op.kind {
                    Kind::Ok => v.sets_ok += 1,
                    Kind::Fail => v.sets_fail += 1,
                    _ => v.sets_info += 1,
                }
                writes.entry(&op.key).or_default().push(Write {
                    process: op.process,
                    value,
                    ttl_ms: inv.ttl_ms,
                    invoke: inv.time,
                    complete: (op.kind != Kind::Info
                        || op.error.as_deref().is_some_and(|e| e.starts_with(REPLIED)))
                    .then_some(op.time),
                    kind: op.kind,
                });
            }
            F::Getdel => match op.kind {
                Kind::Ok => {
                    v.getdels_ok += 1;
                    let value = op.value.as_u64();
                    reads.entry(&op.key).or_default().push(Read {
                        process: op.process,
                        invoke: inv.time,
                        complete: op.time,
                        value,
                    });
                    if value.is_some() {
                        dels.entry(&op.key).or_default().push(Del {
                            invoke: inv.time,
                            complete: Some(op.time),
                            value,
                        });
                    }
                }
                Kind::Info => {
                    v.getdels_info += 1;
                    dels.entry(&op.key).or_default().push(Del {
                        invoke: inv.time,
                        complete: None,
                        value: None,
                    });
                }
                _ => {}
            },
            F::Touch => match op.kind {
                Kind::Ok => {
                    v.touches_ok += 1;
                    match (op.value.as_i64(), inv.ttl_ms) {
                        // `PEXPIRE` answers 0 only when it read nil.
                        (Some(0), Some(_)) => reads.entry(&op.key).or_default().push(Read {
                            process: op.process,
                            invoke: inv.time,
                            complete: op.time,
                            value: None,
                        }),
                        (Some(0), None) => {}
                        _ => touches.entry(&op.key).or_default().push(Touch {
                            invoke: inv.time,
                            complete: Some(op.time),
                            ttl_ms: inv.ttl_ms,
                        }),
                    }
                }
                Kind::Info => {
                    v.touches_info += 1;
                    touches.entry(&op.key).or_default().push(Touch {
                        invoke: inv.time,
                        complete: None,
                        ttl_ms: inv.ttl_ms,
                    });
                }
                _ => {}
            },
            _ => match op.kind {
                Kind::Ok => {
                    v.gets_ok += 1;
                    let value = op.value.as_u64();
                    if value.is_none() {
                        v.gets_nil += 1;
                    }
                    reads.entry(&op.key).or_default().push(Read {
                        process: op.process,
                        invoke: inv.time,
                        complete: op.time,
                        value,
                    });
                }
                _ => v.gets_fail += 1,
            },
        }
    }
    // Operations still open at the end are indeterminate.
    for inv in open.values() {
        match inv.f {
            F::Getdel => dels.entry(&inv.key).or_default().push(Del {
                invoke: inv.time,
                complete: None,
                value: None,
            }),
            F::Touch => touches.entry(&inv.key).or_default().push(Touch {
                invoke: inv.time,
                complete: None,
                ttl_ms: inv.ttl_ms,
            }),
            _ => {}
        }
    }
    for inv in open.values().filter(|o| o.f == F::Set) {
        if let Some(value) = inv.value.as_u64() {
            v.sets_info += 1;
            writes.entry(&inv.key).or_default().push(Write {
                process: inv.process,
                value,
                ttl_ms: inv.ttl_ms,
                invoke: inv.time,
                complete: None,
                kind: Kind::Info,
            });
        }
    }
    for (key, value) in finals {
        reads.entry(key).or_default().push(Read {
            process: FINAL,
            invoke: final_time,
            complete: final_time,
            value: *value,
        });
    }
    let mut examples = Vec::new();
    let mut info_observed = BTreeSet::new();
    for (key, key_reads) in &reads {
        let none = Vec::new();
        let key_writes = writes.get(key).unwrap_or(&none);
        let key_dels = dels.get(key).map_or(&[][..], Vec::as_slice);
        let key_touches = touches.get(key).map_or(&[][..], Vec::as_slice);
        let by_value: BTreeMap<u64, &Write> = key_writes.iter().map(|w| (w.value, w)).collect();
        // What each connection saw by reading, and when.
        let mut seen: BTreeMap<(u64, u64), u64> = BTreeMap::new();
        for r in key_reads {
            if let Some(value) = r.value {
                let at = seen.entry((r.process, value)).or_insert(r.complete);
                *at = (*at).min(r.complete);
            }
        }
        // `later` is ordered after `earlier`.
        let follows = |later: &Write, earlier: &Write| -> bool {
            let by_time = earlier
                .complete
                .is_some_and(|c| later.invoke > c.saturating_add(skew));
            let same_connection = later.process == earlier.process
                && earlier.complete.is_some_and(|c| c < later.invoke);
            let read_it = seen
                .get(&(later.process, earlier.value))
                .is_some_and(|t| *t < later.invoke);
            by_time || same_connection || read_it
        };
        let mut acked: Vec<&Write> = key_writes.iter().filter(|w| w.kind == Kind::Ok).collect();
        acked.sort_by_key(|w| w.complete);
        for r in key_reads {
            let before: Vec<&Write> = acked
                .iter()
                .copied()
                .filter(|w| w.complete.is_some_and(|c| c < r.invoke))
                .collect();
            let mut flag = |what: &str, counter: &mut u64, detail: String| {
                *counter += 1;
                if *counter <= EXAMPLES_MAX as u64 {
                    examples.push(format!("{what} {key}: {detail}"));
                }
            };
            match r.value {
                Some(value) => {
                    let Some(w) = by_value.get(&value) else {
                        flag("unexpected", &mut v.unexpected, format!("{value}"));
                        continue;
                    };
                    if w.kind == Kind::Fail {
                        flag(
                            "failed but observed",
                            &mut v.failed_but_observed,
                            format!("{value}"),
                        );
                    }
                    if w.kind == Kind::Info {
                        info_observed.insert((*key, value));
                    }
                    // A touch that ran after the write began may have lengthened its life.
                    let lengthened = key_touches.iter().any(|t| {
                        t.invoke < r.complete
                            && t.complete.is_none_or(|c| c > w.invoke)
                            && t.ttl_ms.is_none_or(|ttl| {
                                t.complete.is_none_or(|c| r.invoke <= c + ttl * MS + skew)
                            })
                    });
                    if let (Some(ttl), Some(c)) = (w.ttl_ms, w.complete)
                        && r.invoke > c + ttl * MS + skew
                        && !lengthened
                    {
                        flag(
                            "expired returned",
                            &mut v.expired_returned,
                            format!(
                                "{value} (ttl {ttl} ms, written by {} ms, read from {} ms)",
                                c / MS,
                                r.invoke / MS
                            ),
                        );
                    }
                    if let Some(d) = key_dels.iter().find(|d| {
                        d.value == Some(value) && d.complete.is_some_and(|c| c < r.invoke)
                    }) {
                        v.final_stale += u64::from(r.process == FINAL);
                        flag(
                            "stale",
                            &mut v.stale,
                            format!(
                                "read {value} at {}..{} ms, but a GETDEL returned and deleted it at {}..{} ms",
                                r.invoke / MS,
                                r.complete / MS,
                                d.invoke / MS,
                                d.complete.unwrap_or(0) / MS
                            ),
                        );
                    } else if let Some(newer) = before.iter().find(|n| follows(n, w)) {
                        v.final_stale += u64::from(r.process == FINAL);
                        flag(
                            "stale",
                            &mut v.stale,
                            format!(
                                "read {value} at {}..{} ms, but {} (written {}..{} ms) replaced it",
                                r.invoke / MS,
                                r.complete / MS,
                                newer.value,
                                newer.invoke / MS,
                                newer.complete.unwrap_or(0) / MS
                            ),
                        );
                    }
                }
                None => {
                    let alive = |w: &Write| {
                        w.ttl_ms
                            .is_none_or(|t| w.invoke + t * MS > r.complete + skew)
                    };
                    // An indeterminate `GETDEL` may have deleted whatever was current.
                    if key_dels
                        .iter()
                        .any(|d| d.value.is_none() && d.invoke < r.complete)
                    {
                        continue;
                    }
                    // Writes with a TTL that may have run out by the end of the read, and
                    // those a `GETDEL` deleted.
                    let may_expire: Vec<&Write> = key_writes
                        .iter()
                        .filter(|w| w.kind != Kind::Fail && w.invoke < r.complete)
                        .filter(|w| {
                            w.ttl_ms
                                .is_some_and(|t| w.invoke + t * MS < r.complete + skew)
                        })
                        .chain(
                            key_dels
                                .iter()
                                .filter(|d| d.invoke < r.complete)
                                .filter_map(|d| by_value.get(&d.value?).copied()),
                        )
                        .collect();
                    // Short touches that may have run out by then: each may have touched any
                    // version current while it ran.
                    let short_touches: Vec<&Touch> = key_touches
                        .iter()
                        .filter(|t| t.invoke < r.complete)
                        .filter(|t| {
                            t.ttl_ms
                                .is_some_and(|ttl| t.invoke + ttl * MS < r.complete + skew)
                        })
                        .collect();
                    let lost = before
                        .iter()
                        .rev()
                        .filter(|w| alive(w))
                        .take(CANDIDATES_MAX)
                        .find(|w| {
                            may_expire.iter().all(|e| follows(w, e))
                                && short_touches
                                    .iter()
                                    .all(|t| t.complete.is_some_and(|c| c + skew < w.invoke))
                        });
                    if let Some(w) = lost {
                        v.final_lost += u64::from(r.process == FINAL);
                        flag(
                            "lost",
                            &mut v.lost,
                            format!(
                                "nil at {}..{} ms, but {} (ttl {:?} ms, written {}..{} ms) was acknowledged and nothing after it can have expired",
                                r.invoke / MS,
                                r.complete / MS,
                                w.value,
                                w.ttl_ms,
                                w.invoke / MS,
                                w.complete.unwrap_or(0) / MS
                            ),
                        );
                    }
                }
            }
        }
    }
    v.info_observed = info_observed.len() as u64;
    v.examples = examples;
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn op(process: u64, kind: Kind, f: F, value: serde_json::Value, ms: u64) -> Op {
        Op {
            process,
            kind,
            f,
            key: "reg1".into(),
            value,
            time: ms * MS,
            node: 0,
            error: None,
            ttl_ms: None,
        }
    }

    fn set(process: u64, value: u64, from: u64, to: u64, kind: Kind, ttl: Option<u64>) -> [Op; 2] {
        let mut inv = op(process, Kind::Invoke, F::Set, json!(value), from);
        inv.ttl_ms = ttl;
        [inv, op(process, kind, F::Set, json!(value), to)]
    }

    fn get(process: u64, value: Option<u64>, from: u64, to: u64) -> [Op; 2] {
        [
            op(process, Kind::Invoke, F::Get, json!(null), from),
            op(process, Kind::Ok, F::Get, json!(value), to),
        ]
    }

    fn getdel(process: u64, kind: Kind, value: Option<u64>, from: u64, to: u64) -> [Op; 2] {
        [
            op(process, Kind::Invoke, F::Getdel, json!(null), from),
            op(process, kind, F::Getdel, json!(value), to),
        ]
    }

    fn touch(process: u64, ttl: Option<u64>, reply: i64, from: u64, to: u64) -> [Op; 2] {
        let mut inv = op(process, Kind::Invoke, F::Touch, json!(null), from);
        inv.ttl_ms = ttl;
        [inv, op(process, Kind::Ok, F::Touch, json!(reply), to)]
    }

    fn run(mut ops: Vec<Op>, fin: Option<u64>) -> RegisterVerdict {
        ops.sort_by_key(|o| o.time);
        let finals = [("reg1".to_string(), fin)].into();
        check_registers(&ops, &finals, 100_000 * MS, 1_000)
    }

    #[test]
    fn a_serial_history_passes() {
        let ops = [
            set(1, 10, 0, 5, Kind::Ok, None),
            get(2, Some(10), 10, 12),
            set(2, 11, 20, 25, Kind::Ok, None),
            get(1, Some(11), 30, 32),
        ]
        .concat();
        let v = run(ops, Some(11));
        assert_eq!(v.violations(), 0, "{v:?}");
    }

    #[test]
    fn an_old_value_after_a_later_write_of_the_same_connection_is_stale() {
        // Within the skew bound, but the connection wrote 11 after 10: 10 is stale.
        let ops = [
            set(1, 10, 0, 5, Kind::Ok, None),
            set(1, 11, 6, 9, Kind::Ok, None),
            get(2, Some(10), 20, 22),
        ]
        .concat();
        let v = run(ops, Some(11));
        assert_eq!(v.stale, 1, "{v:?}");
        // Two connections within the bound: either order is allowed.
        let ops = [
            set(1, 10, 0, 5, Kind::Ok, None),
            set(2, 11, 6, 9, Kind::Ok, None),
            get(3, Some(10), 20, 22),
        ]
        .concat();
        assert_eq!(run(ops, Some(10)).violations(), 0);
        // Beyond the bound: real time orders them.
        let ops = [
            set(1, 10, 0, 5, Kind::Ok, None),
            set(2, 11, 2_000, 2_005, Kind::Ok, None),
            get(3, Some(10), 3_000, 3_002),
        ]
        .concat();
        assert_eq!(run(ops, Some(11)).stale, 1);
    }

    #[test]
    fn a_nil_after_an_acknowledged_refresh_is_lost_unless_a_later_ttl_may_have_run_out() {
        // A short TTL, then a refresh with a long one: nil afterwards is a lost write.
        let ops = [
            set(1, 10, 0, 5, Kind::Ok, Some(1_500)),
            set(2, 11, 3_000, 3_005, Kind::Ok, Some(600_000)),
            get(3, None, 4_000, 4_002),
        ]
        .concat();
        let v = run(ops, Some(11));
        assert_eq!(v.lost, 1, "{v:?}");
        // The final state counts as a read too.
        let ops = [
            set(1, 10, 0, 5, Kind::Ok, Some(1_500)),
            set(2, 11, 3_000, 3_005, Kind::Ok, Some(600_000)),
        ]
        .concat();
        let v = run(ops, None);
        assert_eq!((v.lost, v.final_lost), (1, 1), "{v:?}");
        // A short-TTL write that may be ordered after the refresh excuses the nil.
        let ops = [
            set(2, 11, 3_000, 3_005, Kind::Ok, Some(600_000)),
            set(1, 12, 3_001, 3_006, Kind::Info, Some(1_500)),
            get(3, None, 6_000, 6_002),
        ]
        .concat();
        assert_eq!(run(ops, Some(11)).violations(), 0);
    }

    #[test]
    fn phantoms_failed_writes_and_expired_values_are_caught() {
        let ops = [
            set(1, 10, 0, 5, Kind::Fail, None),
            get(2, Some(10), 10, 12),
            get(2, Some(99), 20, 22),
            set(1, 11, 30, 35, Kind::Ok, Some(1_500)),
            get(3, Some(11), 5_000, 5_002),
        ]
        .concat();
        let v = run(ops, None);
        assert_eq!(v.failed_but_observed, 1, "{v:?}");
        assert_eq!(v.unexpected, 1, "{v:?}");
        assert_eq!(v.expired_returned, 1, "{v:?}");
    }

    #[test]
    fn a_getdel_excuses_a_nil_only_for_what_it_may_have_deleted() {
        // GETDEL returned 11, the newest: nil afterwards is right.
        let ops = [
            set(1, 10, 0, 5, Kind::Ok, None),
            set(1, 11, 10, 15, Kind::Ok, None),
            getdel(2, Kind::Ok, Some(11), 20, 25),
            get(3, None, 30, 32),
        ]
        .concat();
        assert_eq!(run(ops, None).violations(), 0);
        // GETDEL returned 10, but 11 replaced it (same connection) before the read: nil
        // loses 11, and so does the final state.
        let ops = [
            set(1, 10, 0, 5, Kind::Ok, None),
            getdel(2, Kind::Ok, Some(10), 6, 7),
            set(1, 11, 10, 15, Kind::Ok, None),
            get(3, None, 30, 32),
        ]
        .concat();
        let v = run(ops, None);
        assert_eq!((v.lost, v.final_lost), (2, 1), "{v:?}");
        // An indeterminate GETDEL may have deleted anything.
        let ops = [
            set(1, 10, 0, 5, Kind::Ok, None),
            getdel(2, Kind::Info, None, 6, 7),
            get(3, None, 30, 32),
        ]
        .concat();
        assert_eq!(run(ops, None).violations(), 0);
    }

    #[test]
    fn a_value_a_getdel_returned_never_comes_back() {
        let ops = [
            set(1, 10, 0, 5, Kind::Ok, None),
            getdel(2, Kind::Ok, Some(10), 10, 15),
            get(3, Some(10), 30, 32),
        ]
        .concat();
        let v = run(ops, Some(10));
        assert_eq!((v.stale, v.final_stale), (2, 1), "{v:?}");
    }

    #[test]
    fn touches_excuse_expiries_they_may_have_caused_or_delayed() {
        // A short PEXPIRE after the write: the nil is excused.
        let ops = [
            set(1, 10, 0, 5, Kind::Ok, Some(600_000)),
            touch(2, Some(500), 1, 10, 15),
            get(3, None, 3_000, 3_002),
        ]
        .concat();
        assert_eq!(run(ops, None).violations(), 0);
        // One that ended long before the write began touched an older version.
        let ops = [
            touch(2, Some(500), 1, 10, 15),
            set(1, 10, 2_000, 2_005, Kind::Ok, Some(600_000)),
            get(3, None, 3_000, 3_002),
        ]
        .concat();
        assert_eq!(run(ops, None).lost, 2);
        // PEXPIRE answering 0 read nil: a lost write like a GET's nil.
        let ops = [
            set(1, 10, 0, 5, Kind::Ok, Some(600_000)),
            touch(2, Some(500), 0, 10, 15),
        ]
        .concat();
        assert_eq!(run(ops, Some(10)).lost, 1);
        // A PERSIST after a short write lengthens its life: not an expired value returned.
        let ops = [
            set(1, 10, 0, 5, Kind::Ok, Some(500)),
            touch(2, None, 1, 100, 105),
            get(3, Some(10), 5_000, 5_002),
        ]
        .concat();
        assert_eq!(run(ops, Some(10)).violations(), 0);
        // Without it, the value had expired.
        let ops = [
            set(1, 10, 0, 5, Kind::Ok, Some(500)),
            get(3, Some(10), 5_000, 5_002),
        ]
        .concat();
        assert_eq!(run(ops, None).expired_returned, 1);
    }
}
