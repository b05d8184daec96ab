//! Checkers of the guarantees, run over a finished simulation's history and final state.

use crate::workload::{Completion, History, RegisterOp, RegisterRead, RegisterWrite, is_strict};
use crate::world::SimReport;
use hydra_core::ids::NodeId;
use hydra_core::limits::SIBLINGS_MAX;
use hydra_core::message::decode_object;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// For every key, each replica's stored object (encoded), or `None` where it has none.
pub type ReplicaObjects = BTreeMap<u64, Vec<(NodeId, Option<Vec<u8>>)>>;

/// One broken guarantee, with what is needed to find it in the history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    /// (a) An acknowledged add is missing from a later quorum read.
    LostInRead {
        key: u64,
        element: u64,
        acked_at: u64,
        read_invoked_at: u64,
    },
    /// (a) An acknowledged add is missing from the final state.
    LostInFinalState { key: u64, element: u64 },
    /// (b) Replicas of a key hold different objects after healing and the final read.
    Unconverged { key: u64, detail: String },
    /// (c) A read saw more siblings than writers that could have been concurrent.
    TooManySiblings {
        key: u64,
        siblings: usize,
        bound: usize,
    },
    /// The final read of a key did not succeed even with every node up.
    FinalReadFailed { key: u64 },
    /// (d) An element a delete removed came back, though no write that could carry it was
    /// concurrent with the delete.
    Resurrected {
        key: u64,
        element: u64,
        deleted_at: u64,
        read_invoked_at: u64,
    },
    /// (e) A register read returned `returned` (or nothing), though a write it does not beat
    /// had replaced it (or the register had a value), and that write was acknowledged before
    /// the read began and cannot have expired.
    StaleRegister {
        key: u64,
        read_invoked_at: u64,
        returned: Option<u64>,
        lost: u64,
        acked_at: u64,
    },
    /// (f) A replica stores an object with more siblings than a write may make (a merge
    /// ignored the limit).
    OverLimit {
        key: u64,
        node: u64,
        siblings: usize,
    },
    /// (g) Garbage (a tombstone, or a value whose TTL ran out) still stored long after every
    /// fault healed: three tombstone graces and a sweep cycle.
    GarbageLeft {
        key: u64,
        node: u64,
        what: &'static str,
    },
    /// (g) Paxos state still stored as long after every fault healed (repair rounds run
    /// every 100 ms, so every group's state must have been settled and dropped).
    PaxosStateLeft { node: u64, states: usize },
    /// (f) A key cannot be read, or one write with a read's context does not resolve it.
    KeyBricked { key: u64, detail: String },
    /// (h) Compare-and-set operations of a key that no serial order explains (see
    /// `check_cas`).
    NotLinearizable { key: u64, detail: String },
    /// (h) A client's field of the counter is not the increments it saw applied (one more
    /// allowed while one is in doubt).
    CounterWrong {
        client: usize,
        confirmed: u32,
        in_doubt: bool,
        found: u32,
        read_at: u64,
    },
    /// (k) A truncation with a node down answered wrong, or left older values stored or
    /// listed once the node was back.
    TruncationWrong { bucket: String, detail: String },
    /// (j) After healing, a listing of a bucket did not return exactly the keys that show a
    /// value (each once).
    ListingWrong { bucket: String, detail: String },
    /// (l) A hash or set lost an acknowledged add no remove could have seen, holds a value no
    /// add wrote, or its primaries disagree after healing.
    CollectionWrong { key: String, detail: String },
    /// (i) A node refused a member's message at its peer edge: the simulated nodes follow
    /// the protocol, so every refusal there is a check too strict for what members send.
    PeerRefused { node: u64, count: u64, why: String },
    /// (m) A node's Merkle trees (in memory, or as its store holds them) do not agree with
    /// the objects its store holds.
    TreesWrong { node: u64, detail: String },
    /// (n) A successful read or write that asked for its receipt in full got none of its
    /// replicas listed (a brief receipt where someone would see it).
    ReceiptWrong { node: u64, detail: String },
    /// (e) A register read returned a value whose TTL had certainly run out, or one whose
    /// write certainly failed.
    BadRegisterValue {
        key: u64,
        read_invoked_at: u64,
        value: u64,
        why: &'static str,
    },
}

impl Violation {
    /// Which checker found it.
    pub fn checker(&self) -> char {
        match self {
            Violation::LostInRead { .. } | Violation::LostInFinalState { .. } => 'a',
            Violation::Unconverged { .. } | Violation::FinalReadFailed { .. } => 'b',
            Violation::TooManySiblings { .. } => 'c',
            Violation::Resurrected { .. } => 'd',
            Violation::StaleRegister { .. } | Violation::BadRegisterValue { .. } => 'e',
            Violation::OverLimit { .. } | Violation::KeyBricked { .. } => 'f',
            Violation::GarbageLeft { .. } | Violation::PaxosStateLeft { .. } => 'g',
            Violation::NotLinearizable { .. } | Violation::CounterWrong { .. } => 'h',
            Violation::PeerRefused { .. } => 'i',
            Violation::ListingWrong { .. } => 'j',
            Violation::TruncationWrong { .. } => 'k',
            Violation::CollectionWrong { .. } => 'l',
            Violation::TreesWrong { .. } => 'm',
            Violation::ReceiptWrong { .. } => 'n',
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::LostInRead {
                key,
                element,
                acked_at,
                read_invoked_at,
            } => write!(
                f,
                "(a) lost write: element {element} of key k{key}, acknowledged at {acked_at} ms, missing from a quorum read invoked at {read_invoked_at} ms"
            ),
            Violation::LostInFinalState { key, element } => {
                write!(
                    f,
                    "(a) lost write: element {element} of key k{key} is missing from the final state"
                )
            }
            Violation::Unconverged { key, detail } => {
                write!(f, "(b) key k{key} did not converge: {detail}")
            }
            Violation::TooManySiblings {
                key,
                siblings,
                bound,
            } => {
                write!(
                    f,
                    "(c) key k{key} had {siblings} siblings, more than the {bound} writers that could be concurrent"
                )
            }
            Violation::FinalReadFailed { key } => {
                write!(f, "(b) the final r=all read of key k{key} never succeeded")
            }
            Violation::Resurrected {
                key,
                element,
                deleted_at,
                read_invoked_at,
            } => write!(
                f,
                "(d) element {element} of key k{key}, deleted at {deleted_at} ms, came back in a read invoked at {read_invoked_at} ms"
            ),
            Violation::StaleRegister {
                key,
                read_invoked_at,
                returned,
                lost,
                acked_at,
            } => write!(
                f,
                "(e) lost register write: a read of k{key} invoked at {read_invoked_at} ms returned {}, but write {lost}, acknowledged at {acked_at} ms and not expired, had replaced that",
                returned.map_or("nothing".to_string(), |v| format!("value {v}"))
            ),
            Violation::OverLimit {
                key,
                node,
                siblings,
            } => write!(
                f,
                "(f) node {node} stores key k{key} with {siblings} siblings, more than the limit of {SIBLINGS_MAX}"
            ),
            Violation::GarbageLeft { key, node, what } => write!(
                f,
                "(g) node {node} still stores {what} of key k{key} three graces after every fault healed"
            ),
            Violation::PaxosStateLeft { node, states } => write!(
                f,
                "(g) node {node} still stores the Paxos state of {states} keys three graces after every fault healed (never collected)"
            ),
            Violation::KeyBricked { key, detail } => {
                write!(f, "(f) key k{key} is bricked: {detail}")
            }
            Violation::TruncationWrong { bucket, detail } => {
                write!(
                    f,
                    "(k) the truncation of bucket {bucket} went wrong: {detail}"
                )
            }
            Violation::CollectionWrong { key, detail } => {
                write!(f, "(l) the collection {key} is wrong: {detail}")
            }
            Violation::ReceiptWrong { node, detail } => {
                write!(f, "(n) node {node} replied with a wrong receipt: {detail}")
            }
            Violation::TreesWrong { node, detail } => {
                write!(
                    f,
                    "(m) the Merkle trees of node {node} disagree with its store: {detail}"
                )
            }
            Violation::ListingWrong { bucket, detail } => {
                write!(f, "(j) the listing of bucket {bucket} is wrong: {detail}")
            }
            Violation::PeerRefused { node, count, why } => write!(
                f,
                "(i) node {node} refused {count} messages of members, the last {why}"
            ),
            Violation::CounterWrong {
                client,
                confirmed,
                in_doubt,
                found,
                read_at,
            } => write!(
                f,
                "(h) counter: client {client}'s field read {found} at {read_at} ms, but {confirmed} of its increments were applied{}",
                if *in_doubt {
                    " (and one more in doubt)"
                } else {
                    ""
                }
            ),
            Violation::NotLinearizable { key, detail } => {
                write!(
                    f,
                    "(h) compare-and-set key cas{key} is not linearizable: {detail}"
                )
            }
            Violation::BadRegisterValue {
                key,
                read_invoked_at,
                value,
                why,
            } => write!(
                f,
                "(e) a read of k{key} invoked at {read_invoked_at} ms returned value {value}: {why}"
            ),
        }
    }
}

/// Runs every checker, filling the report's figures and violations. `skew_bound_ms` is how far
/// apart two nodes' clocks may be: `lww` writes further apart than that are ordered by real
/// time. Without `durable_acks` (`periodic`/`none` durability) a replica's ack may be lost in
/// a crash, by design: only what a coordinator must sync (a `siblings` write's new dot) is
/// owed, so (a) checks the final state only; (c) (a read that missed lost acks lets its
/// write make a sibling of them), (d) and the loss half of (e) are off; (b) (replicas never
/// diverge, which reused dots would make them do) holds as ever.
pub fn check_all(
    history: &History,
    replicas: &ReplicaObjects,
    skew_bound_ms: u64,
    durable_acks: bool,
    report: &mut SimReport,
) {
    let mut lost = check_acknowledged_adds(history, durable_acks, &mut report.violations);
    let mut register_violations = Vec::new();
    let lost_registers = check_registers(history, skew_bound_ms, &mut register_violations);
    if durable_acks {
        lost += lost_registers;
    } else {
        register_violations.retain(|v| !matches!(v, Violation::StaleRegister { .. }));
    }
    report.violations.extend(register_violations);
    report.lost_writes = lost;
    report.unconverged_keys = check_convergence(replicas, report);
    check_stored_limits(replicas, &mut report.violations);
    // Paxos syncs its state in every durability mode: (h) always holds.
    crate::check_cas::check_cas(history, &mut report.violations);
    if durable_acks {
        check_siblings(history, &mut report.violations);
        check_deletes(history, &mut report.violations);
    }
}

/// (d) On strict keys, an element that an acknowledged delete's read saw never reappears in a
/// read invoked after the delete completed, unless some write carrying it may have been
/// concurrent with the delete (it did not complete before the delete's read began).
pub fn check_deletes(history: &History, violations: &mut Vec<Violation>) {
    for d in history.deletes.iter().filter(|d| is_strict(d.key)) {
        let Some((deleted_at, Completion::Ok)) = d.completed else {
            continue;
        };
        for e in &d.seen {
            let concurrent_carrier = history.adds.iter().any(|a| {
                a.key == d.key
                    && a.set.contains(e)
                    && !matches!(a.completed, Some((t, Completion::Ok)) if t < d.read_invoked)
            });
            if concurrent_carrier {
                continue;
            }
            if let Some(r) = history
                .reads
                .iter()
                .find(|r| r.key == d.key && r.invoked > deleted_at && r.elements.contains(e))
            {
                violations.push(Violation::Resurrected {
                    key: d.key,
                    element: *e,
                    deleted_at: deleted_at.0,
                    read_invoked_at: r.invoked.0,
                });
            }
        }
    }
}

/// (a) Every acknowledged add is in the final state, and, for strict keys, in every quorum read
/// invoked after the ack. Returns the number of distinct acknowledged adds found missing anywhere.
pub fn check_acknowledged_adds(
    history: &History,
    durable_acks: bool,
    violations: &mut Vec<Violation>,
) -> u64 {
    let mut lost: BTreeSet<u64> = BTreeSet::new();
    let mut reads_by_key: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for (i, r) in history.reads.iter().enumerate() {
        reads_by_key.entry(r.key).or_default().push(i);
    }
    for a in &history.adds {
        let Some((acked_at, Completion::Ok)) = a.completed else {
            continue;
        };
        let mut reported = false;
        for i in reads_by_key.get(&a.key).into_iter().flatten() {
            let r = &history.reads[*i];
            if !r.quorum || r.invoked <= acked_at || r.elements.contains(&a.element) {
                continue;
            }
            if !r.is_final && !durable_acks {
                // Replicas' acks may be lost in a crash: only the coordinator's copy is owed.
                continue;
            }
            // A delete whose read saw the element may have removed it.
            let deleted = history.deletes.iter().any(|d| {
                d.key == a.key
                    && d.seen.contains(&a.element)
                    && d.invoked < r.completed
                    && !matches!(d.completed, Some((_, Completion::Fail)))
            });
            if deleted {
                continue;
            }
            if !r.is_final && !is_strict(a.key) {
                // A sloppy write may sit on a fallback until handoff; only the final state
                // must have it.
                continue;
            }
            lost.insert(a.element);
            if r.is_final {
                violations.push(Violation::LostInFinalState {
                    key: a.key,
                    element: a.element,
                });
            } else if !reported {
                reported = true;
                violations.push(Violation::LostInRead {
                    key: a.key,
                    element: a.element,
                    acked_at: acked_at.0,
                    read_invoked_at: r.invoked.0,
                });
            }
        }
    }
    lost.len() as u64
}

/// (b) Every replica of every key holds the same object. Returns the number of keys that
/// differ.
/// A replica holding only a tombstone where another holds nothing converged too (both read as
/// absent): a reap whose removal a crash undid leaves that tombstone behind, as garbage, not
/// as a difference; those keys are counted in `SimReport::tombstones_left`.
pub fn check_convergence(replicas: &ReplicaObjects, report: &mut SimReport) -> u64 {
    let mut unconverged = 0;
    for (key, objects) in replicas {
        let decoded: Vec<_> = objects
            .iter()
            .map(|(n, b)| (*n, b.as_ref().map(|b| decode_object(b))))
            .collect();
        let tombstone = |o: &Option<Result<_, _>>| matches!(o, Some(Ok(o)) if hydra_core::version::Object::is_tombstone(o));
        let decoded: Vec<_> = if decoded.iter().any(|(_, o)| o.is_none())
            && decoded.iter().all(|(_, o)| o.is_none() || tombstone(o))
        {
            if decoded.iter().any(|(_, o)| tombstone(o)) {
                report.tombstones_left += 1;
            }
            decoded.into_iter().map(|(n, _)| (n, None)).collect()
        } else {
            decoded
        };
        let violations = &mut report.violations;
        let first = &decoded[0].1;
        if let Some((node, _)) = decoded.iter().find(|(_, o)| o != first) {
            unconverged += 1;
            violations.push(Violation::Unconverged {
                key: *key,
                detail: format!("{} and {} hold different objects", decoded[0].0, node),
            });
        }
    }
    unconverged
}

/// (f) No replica stores an object with more siblings than a write may make: merges
/// (replication, hints, repair, anti-entropy) respect the limit, so every stored object stays
/// readable and resolvable.
pub fn check_stored_limits(replicas: &ReplicaObjects, violations: &mut Vec<Violation>) {
    for (key, objects) in replicas {
        for (node, bytes) in objects {
            if let Some(Ok(object)) = bytes.as_ref().map(|b| decode_object(b))
                && object.all_siblings().len() > SIBLINGS_MAX
            {
                violations.push(Violation::OverLimit {
                    key: *key,
                    node: node.0,
                    siblings: object.all_siblings().len(),
                });
            }
        }
    }
}

/// (c) A read of a strict key never shows more siblings than the clients that wrote the key
/// plus the writes whose outcome was uncertain (those may linger beside the writer's next
/// write).
pub fn check_siblings(history: &History, violations: &mut Vec<Violation>) {
    // Strict keys only: with sloppy quorum a client's read may miss its own acknowledged write
    // (held by a fallback), and its next write then makes a real sibling of it.
    for r in history.reads.iter().filter(|r| is_strict(r.key)) {
        let mut writers = BTreeSet::new();
        let mut uncertain = 0;
        for a in history
            .adds
            .iter()
            .filter(|a| a.key == r.key && a.invoked <= r.completed)
        {
            writers.insert(a.client);
            if !matches!(a.completed, Some((t, Completion::Ok | Completion::Fail)) if t < r.completed)
            {
                uncertain += 1;
            }
        }
        let bound = writers.len() + uncertain;
        if r.siblings > bound {
            violations.push(Violation::TooManySiblings {
                key: r.key,
                siblings: r.siblings,
                bound,
            });
        }
    }
}

/// (e) `lww` order and expiry: a quorum read of a strict register key (and the final read of
/// every register key) returns a value no acknowledged write had replaced before the read
/// began. Value `b` is replaced by write `a` (`b` is *before* `a`) when the client of `a` had
/// seen `b` and sent the newest version it saw as the context, or when `b` was acknowledged
/// more than the clock skew bound before `a` began; a delete bound to the version of value
/// `v` replaces `v` and what `v` replaced, nothing else; a TTL change replaces nothing. A value
/// whose TTL may have run out by the end of the read is not owed to anyone (its expiry reads
/// as absent); one whose TTL certainly ran out (and was never changed) must not be read.
/// Returns how many distinct acknowledged writes were lost.
pub fn check_registers(
    history: &History,
    skew_bound_ms: u64,
    violations: &mut Vec<Violation>,
) -> u64 {
    let mut writes_by_key: BTreeMap<u64, Vec<&RegisterWrite>> = BTreeMap::new();
    for w in &history.register_writes {
        writes_by_key.entry(w.key).or_default().push(w);
    }
    let values: BTreeMap<u64, &RegisterWrite> = history
        .register_writes
        .iter()
        .filter(|w| w.op == RegisterOp::Set)
        .map(|w| (w.id, w))
        .collect();
    // `b` before `a`, for `a` a value or a blind delete.
    let plain_before = |b: &RegisterWrite, a: &RegisterWrite| {
        b.id != a.id
            && (a.saw.as_ref().is_some_and(|saw| saw.contains(&b.id))
                || matches!(b.completed, Some((t, Completion::Ok)) if t.0 + skew_bound_ms < a.invoked.0))
    };
    let before = |b: &RegisterWrite, a: &RegisterWrite| match a.op {
        RegisterOp::Set | RegisterOp::Delete => plain_before(b, a),
        RegisterOp::Touch { .. } => false,
        RegisterOp::DeleteVersion { of } => {
            b.id == of || values.get(&of).is_some_and(|v| plain_before(b, v))
        }
    };
    // Expiry is judged on a node's clock against the coordinator's: up to the bound early.
    let may_have_expired = |w: &RegisterWrite, at: u64| {
        w.op == RegisterOp::Set
            && w.ttl_ms
                .is_some_and(|ttl| at + skew_bound_ms >= w.invoked.0 + ttl)
    };
    let failed = |w: &RegisterWrite| matches!(w.completed, Some((_, Completion::Fail)));
    let mut lost = BTreeSet::new();
    for r in history
        .register_reads
        .iter()
        .filter(|r| r.is_final || is_strict(r.key))
    {
        let writes = writes_by_key.get(&r.key).map(Vec::as_slice).unwrap_or(&[]);
        let returned = match r.value {
            Some(v) => match values.get(&v).filter(|w| w.key == r.key) {
                Some(w) => Some(*w),
                None => {
                    violations.push(bad_value(r, v, "no client wrote it to this key"));
                    continue;
                }
            },
            None => None,
        };
        if let Some(w) = returned {
            if failed(w) {
                violations.push(bad_value(r, w.id, "its write failed"));
                continue;
            }
            let ttl_changed = writes
                .iter()
                .any(|t| t.op == RegisterOp::Touch { of: w.id } && t.invoked < r.completed);
            if let (Some(ttl), Some((t, Completion::Ok)), false) =
                (w.ttl_ms, w.completed, ttl_changed)
                && r.invoked.0 > t.0 + ttl + skew_bound_ms
            {
                violations.push(bad_value(r, w.id, "its TTL had run out before the read"));
                continue;
            }
        }
        for a in writes.iter() {
            let Some((acked_at, Completion::Ok)) = a.completed else {
                continue;
            };
            if matches!(a.op, RegisterOp::Touch { .. })
                || acked_at >= r.invoked
                || may_have_expired(a, r.completed.0)
            {
                continue;
            }
            let fine = match returned {
                Some(b) => !before(b, a),
                // Absent: `a` is a delete, or some delete (or expired value) that `a` does
                // not replace may have won.
                None => writes.iter().any(|d| {
                    d.invoked < r.completed
                        && !failed(d)
                        && match d.op {
                            RegisterOp::Set => may_have_expired(d, r.completed.0) && !before(d, a),
                            RegisterOp::Delete => d.id == a.id || !before(d, a),
                            // Deletes only its version (and anything older): it may win over
                            // `a` unless that version is known to be older than `a`.
                            RegisterOp::DeleteVersion { of } => {
                                d.id == a.id || values.get(&of).is_none_or(|v| !before(v, a))
                            }
                            RegisterOp::Touch { .. } => false,
                        }
                }),
            };
            if !fine {
                lost.insert(a.id);
                violations.push(Violation::StaleRegister {
                    key: r.key,
                    read_invoked_at: r.invoked.0,
                    returned: r.value,
                    lost: a.id,
                    acked_at: acked_at.0,
                });
                break;
            }
        }
    }
    lost.len() as u64
}

fn bad_value(r: &RegisterRead, value: u64, why: &'static str) -> Violation {
    Violation::BadRegisterValue {
        key: r.key,
        read_invoked_at: r.invoked.0,
        value,
        why,
    }
}
