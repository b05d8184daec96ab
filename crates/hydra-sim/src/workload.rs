//! The clients and what they record. Keys come in two kinds:
//! - sets (`siblings` buckets): a client reads a key, adds a unique element to the set it holds
//!   (the union of all siblings) and writes it back with the read's context, or deletes it;
//! - registers (`lww` buckets): a client reads a key, then writes a unique value (some with a
//!   short TTL, as `SET k v PX ms`), or deletes it. Even-numbered clients write as a Redis
//!   connection does (every write carries the newest version the client saw); odd-numbered
//!   ones write blind, as an HTTP client without a context.
//!
//! Every operation is recorded in a Jepsen-style history (`invoke` then `ok`, `fail` or
//! `info`; a timeout or an outcome that may have been applied is `info`, never `fail`).

use hydra_core::ids::Timestamp;
use hydra_core::message::{ClientError, ErrorCode};
use hydra_core::version::Sibling;
use std::collections::BTreeSet;

/// Even keys live in a strict bucket (`sloppy = false`), odd keys in a sloppy one. Only strict
/// quorums promise that every later quorum read sees an acknowledged write; sloppy ones
/// promise it for the final state (after hinted handoff).
pub fn is_strict(key: u64) -> bool {
    key.is_multiple_of(2)
}

/// Keys 2, 3, 6, 7, 10, 11... are registers in `lww` buckets; the others are sets in
/// `siblings` buckets. (Strictness is by parity, so both kinds come strict and sloppy.)
pub fn is_register(key: u64) -> bool {
    (key / 2) % 2 == 1
}

/// Whether a client writes registers as a Redis connection does, with the newest version it
/// saw as the context (otherwise blind).
pub fn writes_with_context(client: usize) -> bool {
    client.is_multiple_of(2)
}

/// Encodes a set of elements as a value (sorted, 8 bytes each, little endian).
pub fn encode_set(set: &BTreeSet<u64>) -> Vec<u8> {
    set.iter().flat_map(|e| e.to_le_bytes()).collect()
}

/// The union of the sets held by the siblings.
pub fn union_of(siblings: &[Sibling]) -> BTreeSet<u64> {
    let mut out = BTreeSet::new();
    for s in siblings {
        for chunk in s.value.chunks_exact(8) {
            out.insert(u64::from_le_bytes(
                chunk.try_into().expect("chunks_exact gives 8 bytes"),
            ));
        }
    }
    out
}

/// How an operation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Completion {
    Ok,
    /// Definitely not applied.
    Fail,
    /// May or may not have been applied.
    Info,
}

impl Completion {
    /// Jepsen's name of the completion.
    pub fn as_str(self) -> &'static str {
        match self {
            Completion::Ok => "ok",
            Completion::Fail => "fail",
            Completion::Info => "info",
        }
    }

    pub fn of_write_error(e: &ClientError) -> Completion {
        match e.code {
            ErrorCode::InvalidKey
            | ErrorCode::UnknownBucket
            | ErrorCode::InvalidConsistency
            | ErrorCode::ValueTooLarge
            | ErrorCode::InvalidContentType
            | ErrorCode::InvalidTimeout
            | ErrorCode::TooManySiblings
            | ErrorCode::Overloaded
            | ErrorCode::NotReplica
            | ErrorCode::InvalidBucket
            | ErrorCode::InvalidTtl
            | ErrorCode::InvalidContext
            | ErrorCode::InvalidQuery
            | ErrorCode::NotFound
            | ErrorCode::NoSuchRoute
            | ErrorCode::CasNotSupported
            | ErrorCode::BucketPropertyFixed
            | ErrorCode::CasContention
            | ErrorCode::PreconditionFailed
            | ErrorCode::ClockSkew
            | ErrorCode::WrongType => Completion::Fail,
            // Some replicas (or the coordinator) may hold the write: a cas-managed refusal
            // comes from the replicas that hold Paxos state, after others may have taken it.
            ErrorCode::CasManagedKey
            | ErrorCode::QuorumNotReached
            | ErrorCode::CoordinatorUnreachable
            | ErrorCode::StoreFailed
            | ErrorCode::OutcomeUnknown
            | ErrorCode::Internal => Completion::Info,
        }
    }
}

/// One add of an element to a key's set.
#[derive(Clone, Debug)]
pub struct AddOp {
    pub client: usize,
    pub key: u64,
    pub element: u64,
    /// The whole set written (what the client read, plus `element`).
    pub set: Vec<u64>,
    pub invoked: Timestamp,
    pub completed: Option<(Timestamp, Completion)>,
}

/// One delete of a key's set, with what the read before it saw.
#[derive(Clone, Debug)]
pub struct DeleteOp {
    pub client: usize,
    pub key: u64,
    pub read_invoked: Timestamp,
    pub seen: BTreeSet<u64>,
    pub invoked: Timestamp,
    pub completed: Option<(Timestamp, Completion)>,
}

/// One read of a key.
#[derive(Clone, Debug)]
pub struct ReadOp {
    pub client: usize,
    pub key: u64,
    pub invoked: Timestamp,
    pub completed: Timestamp,
    pub quorum: bool,
    pub elements: BTreeSet<u64>,
    pub siblings: usize,
    /// The final read after healing.
    pub is_final: bool,
}

/// What a register write does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegisterOp {
    /// A new value (`SET`).
    Set,
    /// A delete of whatever the key holds (a blind `DEL`).
    Delete,
    /// A TTL change of exactly the version holding value `of`, which the client just read
    /// (`EXPIRE` with a long TTL, or `PERSIST`): never a new value.
    Touch { of: u64 },
    /// A delete of exactly the version holding value `of`, which the client just read
    /// (`GETDEL`).
    DeleteVersion { of: u64 },
}

/// One write of a register: a unique value (its id, also the value's bytes), a delete, or an
/// operation bound to the version the client read.
#[derive(Clone, Debug)]
pub struct RegisterWrite {
    pub client: usize,
    pub key: u64,
    /// Unique over the run; what a read of this value returns (for `Set`).
    pub id: u64,
    pub op: RegisterOp,
    pub ttl_ms: Option<u64>,
    /// The writes of this key the client had seen (read, or written and acknowledged) when it
    /// invoked this one, if it sent the newest version it saw as the context.
    pub saw: Option<Vec<u64>>,
    pub invoked: Timestamp,
    pub completed: Option<(Timestamp, Completion)>,
}

/// One successful read of a register.
#[derive(Clone, Debug)]
pub struct RegisterRead {
    pub client: usize,
    pub key: u64,
    pub invoked: Timestamp,
    pub completed: Timestamp,
    /// The id of the value read; `None` when the key read as absent.
    pub value: Option<u64>,
    pub is_final: bool,
}

/// Encodes a register value (its id, 8 bytes little endian).
pub fn encode_register(id: u64) -> Vec<u8> {
    id.to_le_bytes().to_vec()
}

/// The id a register value holds (`None` for bytes no client wrote).
pub fn decode_register(siblings: &[Sibling]) -> Option<u64> {
    // A register holds one value; two (a compare-and-set key of a `siblings` bucket that
    // kept concurrent values) read as a value nobody wrote, which the checkers flag.
    if siblings.len() > 1 {
        return Some(u64::MAX);
    }
    let s = siblings.first()?;
    Some(u64::from_le_bytes(s.value.as_slice().try_into().ok()?))
}

/// What a compare-and-set client did: a serial read, or a write of a unique value `new` if
/// the key still holds `expected` (what its serial read returned; `None`: absent).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CasKind {
    Read,
    Write { expected: Option<u64>, new: u64 },
}

/// How a compare-and-set ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CasResult {
    /// Applied (a write).
    Applied,
    /// Answered without applying: the condition did not hold (a write), or a read; with the
    /// value the key held.
    Current(Option<u64>),
    /// Certainly not applied (refused, or beaten until its deadline before proposing).
    Fail,
    /// Maybe applied (`outcome_unknown`, or no answer).
    Unknown,
}

/// One compare-and-set operation (keys of their own, `cas0`, `cas1`...).
#[derive(Clone, Debug)]
pub struct CasOp {
    pub client: usize,
    pub key: u64,
    pub kind: CasKind,
    pub invoked: Timestamp,
    pub completed: Option<(Timestamp, CasResult)>,
    /// The serial read after healing.
    pub is_final: bool,
    /// A plain (quorum-path) write of the mixing run.
    pub plain: bool,
}

/// Everything the clients did.
#[derive(Clone, Debug, Default)]
pub struct History {
    pub adds: Vec<AddOp>,
    pub reads: Vec<ReadOp>,
    pub deletes: Vec<DeleteOp>,
    pub register_writes: Vec<RegisterWrite>,
    pub register_reads: Vec<RegisterRead>,
    pub cas_ops: Vec<CasOp>,
    pub failed_reads: u64,
}

impl History {
    /// The history as JSON lines (`process, type, f, key, value, time`), Jepsen's meanings.
    pub fn to_json_lines(&self) -> String {
        let mut events: Vec<(u64, String)> = Vec::new();
        for a in &self.adds {
            events.push((
                a.invoked.0,
                format!(
                    r#"{{"process":{},"type":"invoke","f":"add","key":"k{}","value":{},"time":{}}}"#,
                    a.client, a.key, a.element, a.invoked.0
                ),
            ));
            if let Some((t, c)) = a.completed {
                events.push((
                    t.0,
                    format!(
                        r#"{{"process":{},"type":"{}","f":"add","key":"k{}","value":{},"time":{}}}"#,
                        a.client,
                        c.as_str(),
                        a.key,
                        a.element,
                        t.0
                    ),
                ));
            }
        }
        for w in &self.register_writes {
            let (f, value) = match w.op {
                RegisterOp::Set => ("write", w.id.to_string()),
                RegisterOp::Delete => ("delete", "null".to_string()),
                RegisterOp::Touch { of } => ("touch", of.to_string()),
                RegisterOp::DeleteVersion { of } => ("getdel", of.to_string()),
            };
            events.push((
                w.invoked.0,
                format!(
                    r#"{{"process":{},"type":"invoke","f":"{f}","key":"k{}","value":{value},"ttl_ms":{},"time":{}}}"#,
                    w.client,
                    w.key,
                    w.ttl_ms.map_or("null".to_string(), |t| t.to_string()),
                    w.invoked.0
                ),
            ));
            if let Some((t, c)) = w.completed {
                events.push((
                    t.0,
                    format!(
                        r#"{{"process":{},"type":"{}","f":"{f}","key":"k{}","value":{value},"time":{}}}"#,
                        w.client,
                        c.as_str(),
                        w.key,
                        t.0
                    ),
                ));
            }
        }
        for r in &self.register_reads {
            let value = r.value.map_or("null".to_string(), |v| v.to_string());
            events.push((
                r.completed.0,
                format!(
                    r#"{{"process":{},"type":"ok","f":"read","key":"k{}","value":{value},"time":{}}}"#,
                    r.client, r.key, r.completed.0
                ),
            ));
        }
        for c in &self.cas_ops {
            let (f, value) = match c.kind {
                CasKind::Read => ("serial-read", "null".to_string()),
                CasKind::Write { expected, new } => (
                    "cas",
                    format!(
                        "[{},{new}]",
                        expected.map_or("null".to_string(), |e| e.to_string())
                    ),
                ),
            };
            events.push((
                c.invoked.0,
                format!(
                    r#"{{"process":{},"type":"invoke","f":"{f}","key":"cas{}","value":{value},"time":{}}}"#,
                    c.client, c.key, c.invoked.0
                ),
            ));
            if let Some((t, result)) = c.completed {
                let (kind, value) = match result {
                    CasResult::Applied => ("ok", value.clone()),
                    CasResult::Current(v) => (
                        if matches!(c.kind, CasKind::Read) {
                            "ok"
                        } else {
                            "fail"
                        },
                        v.map_or("null".to_string(), |v| v.to_string()),
                    ),
                    CasResult::Fail => ("fail", value.clone()),
                    CasResult::Unknown => ("info", value.clone()),
                };
                events.push((
                    t.0,
                    format!(
                        r#"{{"process":{},"type":"{kind}","f":"{f}","key":"cas{}","value":{value},"time":{}}}"#,
                        c.client, c.key, t.0
                    ),
                ));
            }
        }
        for r in &self.reads {
            let elems: Vec<String> = r.elements.iter().map(|e| e.to_string()).collect();
            events.push((
                r.completed.0,
                format!(
                    r#"{{"process":{},"type":"ok","f":"read","key":"k{}","value":[{}],"time":{}}}"#,
                    r.client,
                    r.key,
                    elems.join(","),
                    r.completed.0
                ),
            ));
        }
        events.sort();
        events.into_iter().map(|(_, l)| l + "\n").collect()
    }
}
