//! Client requests and replies, receipts, internode messages, and their byte encodings.
//!
//! Encodings are explicit and versioned: one format byte, then the value in postcard's
//! documented wire format (varint integers, length-prefixed bytes, enum variants by index).
//! Field and variant order is therefore part of the format: append, never reorder; a change
//! that is not an append bumps the format byte. Golden-byte tests pin each format.
//! Decoders check the size limit first, never panic on malformed input (fuzzed by proptest),
//! refuse trailing bytes and validate limits that the types alone do not enforce.

use crate::bucket::{BucketProps, Consistency};
use crate::collection::CollectionUpdate;
use crate::content_type::ContentType;
use crate::hlc::Hlc;
use crate::ids::{LayoutVersion, NodeId, PartitionId, RequestId};
use crate::key::BucketName;
use crate::key::ObjectKey;
use crate::limits::{BUCKETS_MAX, MESSAGE_BYTES_MAX, SIBLINGS_DECODE_MAX, VECTOR_ENTRIES_MAX};
use crate::paxos::{Accepted, Ballot, Condition, Proposal};
use crate::version::{Object, Sibling, VersionVector};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Format byte of internode messages.
pub const MESSAGE_FORMAT: u8 = 11;
/// Format byte of stored objects.
pub const OBJECT_FORMAT: u8 = 3;
/// Format byte of stored objects before `lww` versions had a TTL-change stamp: still read
/// (as never touched), never written.
const OBJECT_FORMAT_V2: u8 = 2;

/// A client's request, as the shell hands it to the core.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientRequest {
    Get {
        key: ObjectKey,
        r: Option<Consistency>,
        timeout_ms: Option<u64>,
        /// Whether fallbacks may stand in for primaries believed down (default: the bucket's).
        sloppy: Option<bool>,
    },
    /// Boxed, as `Cas`: a request moves by value through queues and calls, and the two
    /// large variants (264 bytes each) made every move of a GET three times as costly.
    Put(Box<WriteRequest>),
    /// Create a bucket or change its properties (its conflict mode never changes).
    SetBucket {
        name: BucketName,
        props: BucketProps,
    },
    /// A compare-and-set or a serial read, through Paxos among the key's primaries.
    Cas(Box<CasRequest>),
    /// One page of a bucket's keys in one partition (`SCAN`, `KEYS`, the HTTP listing).
    List(ListRequest),
    /// Hide every value of the bucket written so far (`FLUSHDB`; see `node/truncate.rs`).
    Truncate {
        bucket: BucketName,
        timeout_ms: Option<u64>,
    },
}

impl ClientRequest {
    /// A write or delete.
    pub fn put(write: WriteRequest) -> ClientRequest {
        ClientRequest::Put(Box::new(write))
    }

    /// A compare-and-set or a serial read.
    pub fn cas(cas: CasRequest) -> ClientRequest {
        ClientRequest::Cas(Box::new(cas))
    }
}

/// A page of a bucket's keys: those of `partition` after `after` (in byte order), at most
/// `limit`, as the partition's replicas hold them (merged; deleted and expired keys left
/// out).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListRequest {
    pub bucket: BucketName,
    pub cursor: ListCursor,
    pub limit: u32,
    /// Replicas that must answer (default: the bucket's `r`).
    pub r: Option<Consistency>,
    pub timeout_ms: Option<u64>,
}

/// Where a listing stands: the partition it is in, and the last key it returned there.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ListCursor {
    pub partition: u32,
    #[serde(with = "serde_bytes")]
    pub after: Option<Vec<u8>>,
}

/// A replica's page of a listing: keys after the cursor with their objects' metadata
/// (values left out), in byte order; `complete` when the partition has no more of the
/// bucket's keys after the last one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanPage {
    pub entries: Vec<ScanEntry>,
    /// The last key the replica looked at when it had more (a key a truncation hides is
    /// looked at but not listed): the next page starts after it.
    #[serde(with = "serde_bytes")]
    pub last: Option<Vec<u8>>,
    pub complete: bool,
}

/// One key of a replica's page and its object without values.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanEntry {
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    pub object: Object,
}

/// A conditional write (or a serial read: `action` `Read`), decided by Paxos: linearizable
/// with every other `Cas` request of the key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CasRequest {
    pub key: ObjectKey,
    pub condition: Condition,
    pub action: CasAction,
    pub timeout_ms: Option<u64>,
    /// `siblings` buckets: the context a write supersedes, when not everything the prepare
    /// read (a plain write of a `cas = all_writes` bucket supersedes what its client read,
    /// so a blind write makes a sibling there as anywhere). Ignored in `lww` buckets.
    #[serde(default)]
    pub supersedes: Option<VersionVector>,
}

/// What a `Cas` request does when its condition holds.
#[derive(Clone, Debug, PartialEq, Hash, Eq, Serialize, Deserialize)]
pub enum CasAction {
    /// Nothing: a serial read (the condition is then `Always`).
    Read,
    /// Write a value (expiring as `expiry` says, else by the bucket's default TTL;
    /// `keep_ttl`: the expiry of the value it replaces, as `SET ... KEEPTTL`).
    Write {
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        content_type: ContentType,
        expiry: Option<Expiry>,
        keep_ttl: bool,
    },
    Delete,
    /// Apply a hash or set update (`lww` buckets), its removes naming dots the condition
    /// (`Elements`) shows the key holds: a read-then-write command made exact
    /// (`HINCRBY`, `SPOP`...). The update's dot is this node's compare-and-set writer's.
    Collection(CollectionUpdate),
}

/// When a written value expires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Expiry {
    /// This many milliseconds after the coordinator stamps the write (Redis `EX`/`PX`,
    /// `EXPIRE`; HTTP `ttl`).
    AfterMs(u64),
    /// At this wall-clock time, in milliseconds since the Unix epoch (Redis `EXAT`/`PXAT`,
    /// `EXPIREAT`, the time `KEEPTTL` keeps): exactly that time, not a TTL counted again
    /// from the coordinator's clock a moment later. A time already past is allowed (the
    /// value is written expired, as Redis deletes it).
    AtMs(u64),
}

impl Expiry {
    /// The wall-clock time (ms since the epoch) a value written at `now_ms` expires at.
    pub fn deadline(self, now_ms: u64) -> u64 {
        match self {
            Expiry::AfterMs(ms) => now_ms.saturating_add(ms),
            Expiry::AtMs(at) => at,
        }
    }
}

/// A PUT (a value) or a DELETE (a tombstone), with the context of the read it follows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteRequest {
    pub key: ObjectKey,
    /// `None` deletes.
    #[serde(with = "serde_bytes")]
    pub value: Option<Vec<u8>>,
    pub content_type: ContentType,
    pub context: Option<VersionVector>,
    pub w: Option<Consistency>,
    pub timeout_ms: Option<u64>,
    /// Whether fallbacks may stand in for unreachable primaries (default: the bucket's).
    pub sloppy: Option<bool>,
    /// When the value expires (default: the bucket's `ttl_secs` after the write, if any).
    pub expiry: Option<Expiry>,
    /// `lww` buckets: act on exactly the version the context names instead of writing a new
    /// one, so a write made after that version (by anyone) is never undone. In a `siblings`
    /// bucket a `Delete` is a plain delete with the context (it supersedes exactly what the
    /// read saw) and a `Touch` is refused.
    pub on_version: Option<VersionOp>,
    /// A hash or set update (`lww` buckets): applied to the stored collection instead of
    /// writing `value` (which is then `None`).
    pub collection: Option<CollectionUpdate>,
}

impl WriteRequest {
    /// The compare-and-set that makes this plain write through Paxos (every write of a
    /// `cas = all_writes` bucket; a Redis command on a key compare-and-set manages): a write
    /// or delete without a condition, or, bound to the version a read returned (`EXPIRE`,
    /// `GETDEL`), one on condition that this version is still the key's. A TTL change to no
    /// TTL (`PERSIST`) takes the bucket's default TTL there, if it has one.
    pub fn into_cas(self) -> CasRequest {
        let (condition, supersedes) = match (self.on_version, self.context) {
            (Some(_), Some(context)) => (Condition::VersionIs(context), None),
            (_, context) => (Condition::Always, Some(context.unwrap_or_default())),
        };
        let action = match self.value {
            Some(value) => CasAction::Write {
                value,
                content_type: self.content_type,
                expiry: self.expiry,
                keep_ttl: false,
            },
            None => CasAction::Delete,
        };
        CasRequest {
            key: self.key,
            condition,
            action,
            timeout_ms: self.timeout_ms,
            supersedes,
        }
    }
}

/// The echo of a peer's heartbeat, by which that peer measures the round trip and its clock
/// offset (see `node/clock.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Echo {
    /// The monotonic and wall readings the peer's heartbeat carried.
    pub mono_ms: u64,
    pub sent_wall_ms: u64,
    /// How long the echoing node held it before this heartbeat left.
    pub held_ms: u64,
    /// The echoing node's wall clock when the peer's heartbeat came.
    pub wall_ms: u64,
}

/// What a write bound to one `lww` version does to it (Redis's read-then-write commands).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum VersionOp {
    /// Sets the version's expiry to the write's `expiry` (`None`: no expiry) and keeps its value and
    /// identity (`EXPIRE`, `PEXPIRE`, `PERSIST`). `value` and `content_type` carry the value
    /// the client read, used only by a coordinator that does not hold the version yet.
    Touch,
    /// Deletes the version: a tombstone with its identity, which loses to every later write
    /// (`GETDEL`, `DEL`).
    Delete,
}

impl ClientRequest {
    /// The key of a read or write (`None` for bucket administration).
    pub fn key(&self) -> Option<&ObjectKey> {
        match self {
            ClientRequest::Get { key, .. } => Some(key),
            ClientRequest::Put(w) => Some(&w.key),
            ClientRequest::SetBucket { .. } => None,
            ClientRequest::Cas(c) => Some(&c.key),
            ClientRequest::List(_) | ClientRequest::Truncate { .. } => None,
        }
    }
}

/// A successful reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientResponse {
    /// `siblings` is empty when the key is absent or deleted, or holds a hash or set: then
    /// `collection` is the merged collection as of the read (elements its TTL hid left out).
    Read {
        context: VersionVector,
        siblings: Vec<Sibling>,
        receipt: Receipt,
        /// Boxed, as in `Cas`: a reply moves several times on its way to the client, and a
        /// collection inline made every reply 2.2x as large.
        collection: Option<Box<crate::collection::Collection>>,
    },
    Written {
        context: VersionVector,
        receipt: Receipt,
    },
    Bucket {
        name: BucketName,
        props: BucketProps,
    },
    /// A `Cas` request's outcome: `applied` (the write was made), else the condition did not
    /// hold (or it was a read). `siblings` and `context` are the key's value after it: the
    /// new one when applied, else the current one the condition was judged on; `previous`
    /// is the value the condition was judged on (what `SET ... GET` returns).
    Cas {
        applied: bool,
        context: VersionVector,
        siblings: Vec<Sibling>,
        previous: Vec<Sibling>,
        receipt: Receipt,
        paxos: PaxosReceipt,
        /// The hash or set the key holds after it (as a read would show it), if any.
        collection: Option<Box<crate::collection::Collection>>,
    },
    /// A page of a listing: its keys, and where the next page starts (`None`: the listing
    /// is done). A page may be empty and still have a next one.
    /// A truncation every node confirmed: values stamped at or before `mark` are gone.
    Truncated { mark: crate::hlc::Hlc },
    Keys {
        keys: Vec<Vec<u8>>,
        /// Per key, its type when it holds a hash or set (`None`: a plain value).
        kinds: Vec<Option<crate::collection::CollectionKind>>,
        next: Option<ListCursor>,
        /// Of `keys`, those whose value has a TTL, and the sum of their remaining TTLs in
        /// milliseconds (for `INFO keyspace`'s `expires` and `avg_ttl`).
        expiring: u64,
        ttl_sum_ms: u64,
    },
}

/// What Paxos did for a `Cas` request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaxosReceipt {
    /// The last ballot this request used.
    pub ballot: Ballot,
    /// Prepare rounds started (more than one after contention).
    pub attempts: u32,
    /// Round trips to the replicas, all phases of all attempts.
    pub round_trips: u32,
    /// Proposals of other requests, found in progress, that this one finished first.
    pub reproposed: u32,
}

impl ClientResponse {
    /// The receipt of a read or write (`None` for bucket administration).
    pub fn receipt(&self) -> Option<&Receipt> {
        match self {
            ClientResponse::Read { receipt, .. }
            | ClientResponse::Written { receipt, .. }
            | ClientResponse::Cas { receipt, .. } => Some(receipt),
            ClientResponse::Bucket { .. }
            | ClientResponse::Keys { .. }
            | ClientResponse::Truncated { .. } => None,
        }
    }
}

/// Stable error codes; the HTTP and Redis front ends map them in one place each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    InvalidKey,
    UnknownBucket,
    InvalidConsistency,
    ValueTooLarge,
    InvalidContentType,
    InvalidTimeout,
    TooManySiblings,
    QuorumNotReached,
    CoordinatorUnreachable,
    Overloaded,
    StoreFailed,
    NotReplica,
    InvalidBucket,
    InvalidTtl,
    InvalidContext,
    // Codes of the front ends' own checks (appended: the wire encodes variants by index).
    /// A query parameter the request does not take, or one that does not parse.
    InvalidQuery,
    /// A read of a key that does not exist (or was deleted).
    NotFound,
    /// An HTTP path no route serves.
    NoSuchRoute,
    /// A reply of the core that the front end did not expect (a bug).
    Internal,
    /// A conditional write (`If-Match`, `If-None-Match`): compare-and-set is not built yet.
    CasNotSupported,
    /// A change of a bucket property that cannot change: the conflict mode, or `n` (no data
    /// would move to the new replicas).
    BucketPropertyFixed,
    /// The node's clock is off its peers' (or unverified after a jump or a start): it
    /// coordinates no write and no `lww` read until it is right.
    ClockSkew,
    /// A compare-and-set's deadline passed after its proposal was sent: it may or may not
    /// have been applied (a serial read tells).
    OutcomeUnknown,
    /// A compare-and-set kept losing to other ballots until its deadline; nothing of it was
    /// proposed, so it was not applied.
    CasContention,
    /// A conditional write's condition did not hold (HTTP 412); nothing was written.
    PreconditionFailed,
    /// A plain write to a key that compare-and-set manages (a replica holds its Paxos state)
    /// in a `cas = conditional_only` bucket: write it with a condition instead.
    CasManagedKey,
    /// An operation of one type on a key holding another (a hash command on a plain value,
    /// a set command on a hash), or a hash or set update in a `siblings` bucket.
    WrongType,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidKey => "invalid_key",
            ErrorCode::UnknownBucket => "unknown_bucket",
            ErrorCode::InvalidConsistency => "invalid_consistency",
            ErrorCode::ValueTooLarge => "value_too_large",
            ErrorCode::InvalidContentType => "invalid_content_type",
            ErrorCode::InvalidTimeout => "invalid_timeout",
            ErrorCode::TooManySiblings => "too_many_siblings",
            ErrorCode::QuorumNotReached => "quorum_not_reached",
            ErrorCode::CoordinatorUnreachable => "coordinator_unreachable",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::StoreFailed => "store_failed",
            ErrorCode::NotReplica => "not_replica",
            ErrorCode::InvalidBucket => "invalid_bucket",
            ErrorCode::InvalidTtl => "invalid_ttl",
            ErrorCode::InvalidContext => "invalid_context",
            ErrorCode::InvalidQuery => "invalid_query",
            ErrorCode::NotFound => "not_found",
            ErrorCode::NoSuchRoute => "no_such_route",
            ErrorCode::Internal => "internal",
            ErrorCode::CasNotSupported => "cas_not_supported",
            ErrorCode::BucketPropertyFixed => "bucket_property_fixed",
            ErrorCode::ClockSkew => "clock_skew",
            ErrorCode::OutcomeUnknown => "outcome_unknown",
            ErrorCode::CasContention => "cas_contention",
            ErrorCode::PreconditionFailed => "precondition_failed",
            ErrorCode::CasManagedKey => "cas_managed_key",
            ErrorCode::WrongType => "wrong_type",
        }
    }
}

/// A failed request: a stable code, a message naming what is wrong, and what the coordinator
/// saw (for quorum failures: needed, acked and why each other replica failed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ClientError {
    pub code: ErrorCode,
    pub message: String,
    pub receipt: Option<Receipt>,
}

impl ClientError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ClientError {
        ClientError {
            code,
            message: message.into(),
            receipt: None,
        }
    }

    /// A value over the node's limit; `len` is `None` when the front end stopped reading
    /// the value at the limit. Both front ends and the core say it in these words.
    pub fn value_too_large(len: Option<usize>, limit: usize) -> ClientError {
        let message = match len {
            Some(len) => format!("value is {len} bytes, more than the limit of {limit}"),
            None => format!("value is more than the limit of {limit} bytes"),
        };
        ClientError::new(ErrorCode::ValueTooLarge, message)
    }

    /// Needed and acked of a quorum failure (from its receipt).
    pub fn quorum(&self) -> Option<(u8, u8)> {
        self.receipt.as_ref().map(|r| (r.needed, r.acked()))
    }
}

/// Whether a replica of a request is a primary (in the preference list) or a fallback.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    Primary,
    Fallback,
}

/// What one replica did for a request, as far as the coordinator knew when it replied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Asked, no answer yet.
    Pending,
    /// A write is durable there.
    Acked,
    /// A read answered; `version` is the replica's context (None: not found).
    Read {
        version: Option<VersionVector>,
        siblings: u32,
    },
    Failed {
        reason: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaReport {
    pub node: NodeId,
    pub role: Role,
    /// Shared with the layout: naming it costs a reference count, not a copy.
    pub zone: Arc<str>,
    pub outcome: Outcome,
}

/// What happened to a request: carried on every reply (the `X-Hydra-Receipt` header).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub coordinator: NodeId,
    pub partition: u32,
    /// Replicas needed (R or W).
    pub needed: u8,
    /// Empty in a brief receipt (a pipeline's replies but its last: see
    /// `node::ReceiptDetail`); such a receipt never crosses the wire or reaches a client.
    pub replicas: Vec<ReplicaReport>,
    /// Replicas sent read repair before the reply.
    pub read_repairs: Vec<NodeId>,
    pub hints_stored: u32,
    pub elapsed_ms: u64,
}

impl Receipt {
    /// Replicas that acked a write or answered a read (0 in a brief receipt, which lists none).
    pub fn acked(&self) -> u8 {
        self.replicas
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Acked | Outcome::Read { .. }))
            .count() as u8
    }
}

/// Why a replica could not serve an internode request.
#[derive(Clone, Debug, PartialEq, Hash, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ReplicaError {
    #[error("store failed: {0}")]
    Store(String),
    #[error("{0}")]
    ClockSkew(String),
    #[error("object conflict mode differs from the stored one")]
    ModeMismatch,
    #[error("node is not a replica of the key")]
    NotReplica,
    #[error("hints for {owner} already take {bytes} bytes, the budget is {max}")]
    HintBudgetFull { owner: NodeId, bytes: u64, max: u64 },
    /// The merge would store an object beyond [`crate::limits::SIBLINGS_MAX`] or
    /// [`crate::limits::OBJECT_BYTES_MAX`].
    #[error("{0}")]
    ObjectLimit(String),
    /// A plain write to a key whose Paxos state this replica holds, in a
    /// `cas = conditional_only` bucket.
    #[error("the key is managed by compare-and-set on this replica")]
    CasManaged,
    /// A hint delivered after the tombstone grace (it may hold what a reaped delete
    /// removed): not taken; anti-entropy brings the owner what it still needs.
    #[error("the hint is older than the tombstone grace")]
    HintOutlivedGrace,
}

/// Internode messages. Requests and responses come in pairs and share a [`RequestId`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Coordinator to replica: merge this object into yours, durably, then answer.
    ReplicateRequest {
        req: RequestId,
        key: ObjectKey,
        object: Object,
    },
    ReplicateResponse {
        req: RequestId,
        result: Result<(), ReplicaError>,
    },
    ReadRequest {
        req: RequestId,
        key: ObjectKey,
    },
    ReadResponse {
        req: RequestId,
        result: Result<Option<Object>, ReplicaError>,
    },
    /// Coordinator to stale replica after a read: merge this object; no answer.
    RepairRequest {
        key: ObjectKey,
        object: Object,
    },
    /// Node that is no replica of the key to a replica: coordinate this write.
    ForwardRequest {
        req: RequestId,
        request: Box<WriteRequest>,
    },
    /// Boxed, as the request's write is: messages move through queues and batches, and
    /// these two variants made every message twice the size of a replication request.
    ForwardResponse {
        req: RequestId,
        result: Box<Result<ClientResponse, ClientError>>,
    },
    /// The sender's bucket table, pushed periodically; the receiver joins it with its own
    /// (see `node/buckets.rs`).
    BucketsGossip {
        buckets: Vec<BucketEntry>,
    },
    /// Sent to every peer every heartbeat interval; feeds the failure detector and the clock
    /// offset estimate (the sender's wall and monotonic readings, and an echo of the
    /// receiver's last heartbeat).
    Heartbeat {
        wall_ms: u64,
        mono_ms: u64,
        echo: Option<Echo>,
    },
    /// Coordinator to fallback: hold this object for `owner` (durably), then answer with a
    /// `ReplicateResponse`.
    HintRequest {
        req: RequestId,
        key: ObjectKey,
        object: Object,
        owner: NodeId,
    },
    /// Coordinator to fallback: what do you hold for `owner` under this key? Answered with a
    /// `ReadResponse`.
    HintReadRequest {
        req: RequestId,
        key: ObjectKey,
        owner: NodeId,
    },
    /// Anti-entropy: your tree hashes of (partition, n) at `level` for `indices`.
    AeTreeRequest {
        req: RequestId,
        partition: u32,
        n: u8,
        level: u8,
        indices: Vec<u32>,
    },
    AeTreeResponse {
        req: RequestId,
        hashes: Vec<u64>,
    },
    /// Anti-entropy: your (storage key, object hash) entries of these segments.
    AeSegmentRequest {
        req: RequestId,
        partition: u32,
        n: u8,
        segments: Vec<u32>,
    },
    AeSegmentResponse {
        req: RequestId,
        entries: Vec<(u32, Vec<AeEntry>)>,
    },
    /// Anti-entropy: your objects under these storage keys.
    AeFetchRequest {
        req: RequestId,
        keys: Vec<StorageKey>,
    },
    AeFetchResponse {
        req: RequestId,
        objects: Vec<(StorageKey, Object)>,
    },
    /// Every primary acked this delete and the grace passed: remove the key if you still hold
    /// exactly this tombstone. No answer.
    ReapRequest {
        key: ObjectKey,
        object: Object,
    },
    /// A key's first primary to its other primaries: merge these expiry tombstones (each
    /// the tombstone of a value whose TTL ran out, with that value's identity), durably, then
    /// answer with an `ExpireResponse`. At most `EXPIRY_DELETES_MAX` entries are taken.
    ExpireRequest {
        req: RequestId,
        entries: Vec<(ObjectKey, Object)>,
    },
    /// The positions (in the request) of the tombstones the replica now holds.
    ExpireResponse {
        req: RequestId,
        merged: Vec<u32>,
    },
    /// A `Cas` coordinator to a key's primary (its acceptor): one Paxos phase at `ballot`.
    /// Answered with a `PaxosResponse` once the acceptor's state change is durable.
    PaxosRequest {
        req: RequestId,
        key: ObjectKey,
        ballot: Ballot,
        phase: PaxosPhase,
    },
    PaxosResponse {
        req: RequestId,
        result: Result<PaxosAnswer, PaxosRefusal>,
    },
    /// The coordinator of a client's plain write to a replica: as `ReplicateRequest`, but a
    /// replica that holds the key's Paxos state refuses it (`ReplicaError::CasManaged`) when
    /// the bucket is `cas = conditional_only`. Handoff, repair and expiry deletes use
    /// `ReplicateRequest`, which nothing refuses for that reason.
    ReplicatePlainRequest {
        req: RequestId,
        key: ObjectKey,
        object: Object,
    },
    /// A Paxos repair round's coordinator to the primaries of one group (`bucket`'s keys in
    /// `partition`): promise `fence` for every key of the group, durably, then answer with a
    /// `PaxosFenceResponse` listing the group's keys after `after` (storage keys) whose state
    /// changed above your low bound.
    PaxosFenceRequest {
        req: RequestId,
        bucket: BucketName,
        partition: PartitionId,
        fence: Ballot,
        after: Option<StorageKey>,
    },
    PaxosFenceResponse {
        req: RequestId,
        result: Result<FenceList, ReplicaError>,
    },
    /// The round settled every key listed: state at or below `bound` may be dropped, and
    /// `bound` is applied to the group's keys from now on. No answer.
    PaxosLowBound {
        bucket: BucketName,
        partition: PartitionId,
        bound: Ballot,
    },
    /// A listing's coordinator to a replica of `partition`: your keys of `bucket` there
    /// after `after` (a key), at most `limit` (within `SCAN_PAGE_KEYS_MAX`), with their
    /// objects' metadata. Answered with a `ScanResponse`.
    ScanRequest {
        req: RequestId,
        bucket: BucketName,
        partition: PartitionId,
        #[serde(with = "serde_bytes")]
        after: Option<Vec<u8>>,
        limit: u32,
    },
    ScanResponse {
        req: RequestId,
        result: Result<ScanPage, ReplicaError>,
    },
    /// A truncation's coordinator to every other node: raise `bucket`'s mark to `mark`,
    /// then answer with a `TruncateResponse`.
    TruncateRequest {
        req: RequestId,
        bucket: BucketName,
        mark: crate::hlc::Hlc,
    },
    TruncateResponse {
        req: RequestId,
        result: Result<(), ReplicaError>,
    },
    /// A fallback to the owner of a hint it holds: merge this object as a
    /// `ReplicateRequest` would, unless it is older than the tombstone grace by the owner's
    /// clock when it arrives; answered with a `ReplicateResponse`.
    HintDeliveryRequest {
        req: RequestId,
        key: ObjectKey,
        object: Object,
    },
    /// A read's coordinator, which reads the key itself, to another primary: the digest of
    /// what you hold for `key`, not the object (Cassandra's digest read). Answered with a
    /// `ReadDigestResponse`, after the sync a `ReadRequest` would wait for; a digest that
    /// differs from the coordinator's own is followed by a `ReadRequest`.
    ReadDigestRequest {
        req: RequestId,
        key: ObjectKey,
    },
    ReadDigestResponse {
        req: RequestId,
        result: Result<Option<Digest>, ReplicaError>,
    },
}

/// The digest of a stored object's bytes and the truncation mark its node reads it under
/// (`node::read`): equal digests mean, but for a 128-bit hash collision, equal bytes read
/// under equal marks, and so equal answers. Bytes, not a `u128`, whose alignment would grow
/// every message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Digest(pub [u8; 16]);

impl Digest {
    /// The digest of an object's stored encoding, read under truncation mark `mark` (0:
    /// none): XXH3-128 seeded with the mark.
    pub fn of(stored: &[u8], mark: crate::hlc::Hlc) -> Digest {
        Digest(xxhash_rust::xxh3::xxh3_128_with_seed(stored, mark.0).to_le_bytes())
    }
}

/// A primary's answer to a `PaxosFenceRequest`: the keys to settle (at most
/// `PAXOS_REPAIR_KEYS_MAX`, in storage key order), and where its listing stopped when it did
/// not reach the group's end (keys after it were not looked at).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FenceList {
    pub keys: Vec<StorageKey>,
    pub next: Option<StorageKey>,
}

/// One phase of a Paxos round.
#[derive(Clone, Debug, PartialEq, Hash, Eq, Serialize, Deserialize)]
pub enum PaxosPhase {
    /// Promise no lower ballot; answer with what was accepted and committed, and the data.
    /// `write`: for a request that may propose a value of its own (not a serial read).
    Prepare { write: bool },
    /// Accept this proposal (first made after a prepare that found this highest commit).
    Propose(Proposal, Ballot),
    /// The proposal (with its base) was accepted by a majority: merge it into the data.
    Commit(Proposal, Ballot),
}

/// An acceptor's answer to a phase.
#[derive(Clone, Debug, PartialEq, Hash, Eq, Serialize, Deserialize)]
pub enum PaxosAnswer {
    Promise(Box<Promise>),
    Accepted,
    Committed,
}

/// An acceptor's promise: what the next coordinator must know.
#[derive(Clone, Debug, PartialEq, Hash, Eq, Serialize, Deserialize)]
pub struct Promise {
    /// The accepted proposal not known committed here, if any.
    pub accepted: Option<Accepted>,
    pub committed: Ballot,
    /// The highest ballot promised to a write (or accepted) before this prepare.
    pub promised_write: Ballot,
    /// The key's object in this replica's store.
    pub object: Option<Object>,
    /// The last commits this acceptor saw (see `AcceptorState`).
    pub commits: Vec<crate::paxos::CommitSeen>,
}

/// Why an acceptor did not do a phase.
#[derive(Clone, Debug, PartialEq, Hash, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum PaxosRefusal {
    #[error("promised ballot {0}, a higher one")]
    Ballot(Ballot),
    #[error("{0}")]
    Replica(ReplicaError),
}

/// A storage key on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageKey(#[serde(with = "serde_bytes")] pub Vec<u8>);

/// One key of a Merkle segment: storage key and object hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AeEntry {
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    pub hash: u64,
}

/// What goes on the wire: every message carries the sender's layout version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub layout_version: LayoutVersion,
    pub message: Message,
}

mod codec;
pub use codec::*;
