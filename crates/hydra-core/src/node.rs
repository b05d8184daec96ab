//! The node state machine: coordinator and replica sides of GET, PUT and DELETE.
//!
//! Source: DeCandia et al., "Dynamo" (SOSP 2007), §4.5 (put/get execution, quorums),
//! §4.7 (read repair); Riak KV's put and get FSMs (a coordinating vnode writes first).
//!
//! ```text
//! PUT/DELETE (W of N)                          GET (R of N)
//! client ─> any node ─ForwardRequest─> replica client ─> any node (coordinator)
//!   (if not a replica itself)          │           │ ReadRequest to the N replicas
//!   coordinator: read local, update the DVV,       │ after R answers: merge, reply,
//!   write, wait for sync (its own durable ack)     │ RepairRequest to the stale ones
//!   │ ReplicateRequest(object) to the N-1 others   │ (again once all N answered or
//!   │ each replica: merge, write, sync, answer     │  the deadline passed)
//!   └ reply after W durable acks (own included)
//! ```
//!
//! Invariants:
//! * A write is acknowledged only after W replicas report it durable (synced).
//! * Only a replica of the key coordinates a write, and it makes the write durable locally
//!   before any other node sees the new dot: after a crash a coordinator's counters are never
//!   behind a dot it issued, so one dot always names one value. (This costs one fsync of
//!   latency before replication; it is what keeps dotted version vectors sound.)
//! * Every request has a deadline supplied by the caller's clock; nothing waits forever.
//! * No I/O, no clock reads, no randomness: the shell or simulator passes `now` and the store.
//!
//! Also here: failure detection (heartbeats), sloppy quorum and hinted handoff, Merkle
//! anti-entropy, tombstone reaping and TTL (see ARCHITECTURE.md). Not yet: Paxos.

use crate::bucket::{BucketProps, ConflictMode, Consistency, TTL_SECS_MAX};
use crate::bugs::planted;
use crate::failure::FailureDetector;
use crate::hints::{
    HANDOFF_IN_FLIGHT_MAX, HINTS_PARTITION, HintCounters, HintIndex, HintTarget, hint_key,
    parse_hint_key,
};
use crate::hlc::{Hlc, HlcClock, check_skew};
use crate::ids::{ClientRequestId, NodeId, PartitionId, RequestId, Timestamp};
use crate::key::{BucketName, ObjectKey};
use crate::layout::Layout;
use crate::limits::{
    BUCKETS_MAX, CONTENT_TYPE_BYTES_MAX, COORDINATIONS_MAX, TIMEOUT_MS_MAX, VALUE_BYTES_CEILING,
    VALUE_BYTES_DEFAULT_MAX,
};
use crate::merkle::{
    LEVELS, MerkleTree, SEGMENTS, children, differing, differing_keys, object_hash,
};
use crate::message::{AeEntry, StorageKey};
use crate::message::{
    ClientError, ClientRequest, ClientResponse, Envelope, ErrorCode, Message, Outcome, Receipt,
    ReplicaError, ReplicaReport, Role, WriteRequest, decode_buckets, decode_object, encode_buckets,
    encode_object,
};
use crate::store::{SCAN_ENTRIES_MAX, Store, StoreError, WriteBatch};
use crate::version::{LwwValue, Object, Sibling, VersionVector};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// A node's settings that the core needs.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub id: NodeId,
    pub buckets: BTreeMap<BucketName, BucketProps>,
    /// Deadline of a client request that names none.
    pub request_timeout_ms: u64,
    /// How often this node sends a heartbeat to every peer.
    pub heartbeat_interval_ms: u64,
    /// Phi above which a peer is believed down (Cassandra's `phi_convict_threshold`).
    pub phi_threshold: f64,
    /// A sloppy write gives a fallback to each primary that has not acked after this long,
    /// or after half the request's time, if that is sooner.
    pub fallback_after_ms: u64,
    /// Bytes of hints this node holds for one owner at most; beyond, hints are dropped and
    /// the partition is left to anti-entropy.
    pub hints_bytes_max: u64,
    /// How often hints are offered to owners that are up again (0: never).
    pub handoff_interval_ms: u64,
    /// How often an anti-entropy exchange starts (one at a time); 0 turns anti-entropy off.
    pub ae_interval_ms: u64,
    /// How long after every primary acked a delete its tombstone is removed. Must exceed how
    /// long a stale copy can still arrive (hints held for a down node, queued repairs).
    pub tombstone_grace_ms: u64,
    /// `lww` writes stamped further ahead of this node's clock are refused.
    pub max_clock_skew_ms: u64,
    /// Largest value accepted (at most [`VALUE_BYTES_CEILING`]).
    pub value_bytes_max: usize,
    /// How often the bucket table is pushed to every peer.
    pub gossip_interval_ms: u64,
    /// A read asks only R replicas (this node first), and the others too when one of those
    /// fails or has not answered after this long (Cassandra's speculative retry). 0: every
    /// read asks all N at once (as Riak does).
    pub read_retry_after_ms: u64,
}

impl NodeConfig {
    /// Defaults, with the two buckets that always exist: `default` (siblings), `redis` (lww).
    pub fn new(id: NodeId) -> NodeConfig {
        let mut buckets = BTreeMap::new();
        buckets.insert(
            BucketName::new("default").expect("valid name"),
            BucketProps::default(),
        );
        buckets.insert(
            BucketName::new("redis").expect("valid name"),
            BucketProps::lww(),
        );
        NodeConfig {
            id,
            buckets,
            request_timeout_ms: 5_000,
            heartbeat_interval_ms: 250,
            phi_threshold: 8.0,
            fallback_after_ms: 1_000,
            hints_bytes_max: 64 * 1024 * 1024,
            handoff_interval_ms: 200,
            ae_interval_ms: 1_000,
            tombstone_grace_ms: 3_600_000,
            max_clock_skew_ms: 5_000,
            value_bytes_max: VALUE_BYTES_DEFAULT_MAX.min(VALUE_BYTES_CEILING),
            gossip_interval_ms: 5_000,
            read_retry_after_ms: 20,
        }
    }
}

/// What the shell feeds the node.
#[derive(Clone, Debug)]
pub enum Input {
    Client {
        id: ClientRequestId,
        request: ClientRequest,
    },
    Message {
        from: NodeId,
        envelope: Envelope,
    },
    /// A [`Output::Sync`] finished: every write made before it started is durable (or not).
    Synced {
        generation: u64,
        result: Result<(), StoreError>,
    },
    /// Time passed; deadlines up to `now` are due.
    Tick,
}

/// What the node asks the shell to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    Send {
        to: NodeId,
        envelope: Envelope,
    },
    Reply {
        id: ClientRequestId,
        result: Result<ClientResponse, ClientError>,
    },
    /// Sync the store, then report [`Input::Synced`] with this generation. Several may be
    /// outstanding; one sync that starts after a request was emitted satisfies it, so the
    /// shell may coalesce them (group commit).
    Sync {
        generation: u64,
    },
    /// A hint for `owner` was refused because its byte budget is full: the key's partition is
    /// left to anti-entropy. For the operator's log.
    HintBudgetFull {
        owner: NodeId,
        partition: PartitionId,
    },
}

/// What a call into the node may use: the time, the store, a seeded random source.
pub struct Ctx<'a, S: Store> {
    pub now: Timestamp,
    pub store: &'a mut S,
    pub rng: &'a mut dyn rand::RngCore,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReplyTo {
    /// The node's own request (a delete of expired values): the reply is dropped.
    Internal,
    Client(ClientRequestId),
    Node {
        node: NodeId,
        req: RequestId,
    },
}

#[derive(Clone, Debug)]
enum Waiter {
    /// The coordinator's own write of request `RequestId`.
    LocalWrite(RequestId),
    /// A replica's answer to a ReplicateRequest.
    ReplicaAck { to: NodeId, req: RequestId },
    /// A read of a key whose coordinator write is not durable yet: its new dot must not leave
    /// this node before the sync (see the module invariants).
    Read {
        to: NodeId,
        req: RequestId,
        key: ObjectKey,
    },
    /// The coordinator's own read of such a key, for request `RequestId`.
    LocalRead { req: RequestId, key: ObjectKey },
}

#[derive(Clone, Debug)]
struct Slot {
    node: NodeId,
    outcome: Outcome,
    role: Role,
    /// For a fallback: the primary it stands in for.
    hint_for: Option<NodeId>,
}

#[derive(Debug)]
struct WriteState {
    reply_to: ReplyTo,
    key: ObjectKey,
    partition: PartitionId,
    needed: u8,
    slots: Vec<Slot>,
    object: Object,
    started: Timestamp,
    deadline: Timestamp,
    replied: bool,
    /// Whether fallbacks may stand in for primaries that are down or slow.
    sloppy: bool,
    /// A delete: once every primary has acked it, its tombstone is reaped after the grace.
    is_delete: bool,
    /// When primaries that have not answered get a fallback too (sloppy writes only).
    fallback_at: Timestamp,
    /// Whether the object went out to the other replicas: after the coordinator's own write
    /// is durable (a `siblings` write's new dot must never leave before that), or at once for
    /// `lww` writes, whose identity is a timestamp that survives a crash of the coordinator.
    sent: bool,
}

#[derive(Debug)]
struct ReadState {
    reply_to: ReplyTo,
    key: ObjectKey,
    partition: PartitionId,
    needed: u8,
    slots: Vec<Slot>,
    responses: BTreeMap<NodeId, Option<Object>>,
    /// Object last sent to each replica as read repair.
    repaired: BTreeMap<NodeId, Object>,
    started: Timestamp,
    deadline: Timestamp,
    replied: bool,
    /// Replicas not asked yet (beyond R); asked when one asked fails or at `retry_at`, and
    /// dropped from the receipt once R have answered.
    unasked: Vec<(NodeId, Option<NodeId>)>,
    retry_at: Timestamp,
}

#[derive(Debug)]
struct ForwardState {
    client: ClientRequestId,
    request: WriteRequest,
    to: NodeId,
    started: Timestamp,
    deadline: Timestamp,
}

/// An anti-entropy exchange this node drives with one peer over one tree.
#[derive(Debug)]
struct Exchange {
    peer: NodeId,
    partition: PartitionId,
    n: u8,
    /// The level whose hashes were asked for (`LEVELS - 1` = leaves; `LEVELS` = segments).
    level: usize,
    indices: Vec<u32>,
    /// Keys pushed to the peer so far.
    pushed: u64,
    deadline: Timestamp,
}

/// Anti-entropy figures, for status pages and the simulator.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct AeStatus {
    pub exchanges_completed: u64,
    pub exchanges_failed: u64,
    pub keys_repaired: u64,
    /// Per partition: when its last exchange completed and the keys it repaired in all.
    pub partitions: BTreeMap<u32, (Timestamp, u64)>,
}

/// A hint on its way to its owner.
#[derive(Debug)]
struct Handoff {
    owner: NodeId,
    /// The object's storage key.
    object_key: Vec<u8>,
    /// What was sent: the hint is deleted only if it still holds exactly this.
    sent: Object,
    deadline: Timestamp,
}

#[derive(Debug)]
enum Coordination {
    Write(WriteState),
    Read(ReadState),
    Forward(ForwardState),
}

/// One node's core. The shell calls [`Node::handle`] with every input, then drains
/// [`Node::poll_output`], and calls `handle(Tick)` at [`Node::next_deadline`].
pub struct Node {
    config: NodeConfig,
    layout: Layout,
    hlc: HlcClock,
    next_request: u64,
    coordinations: BTreeMap<RequestId, Coordination>,
    /// `(when, request)`; an entry may be stale (its coordination finished or moved on).
    deadlines: BTreeSet<(Timestamp, RequestId)>,
    /// Acks waiting for the sync of their generation.
    waiters: Vec<(u64, Waiter)>,
    sync_requested: u64,
    sync_completed: u64,
    outputs: VecDeque<Output>,
    /// Set when a sync failed: the node refuses writes until restarted.
    poisoned: Option<String>,
    /// Keys whose coordinator write (with a new dot) is not durable yet -> the sync generation
    /// that makes it durable. Reads and anti-entropy do not ship them before then. Bounded by
    /// the coordinations in flight.
    unsynced: BTreeMap<Vec<u8>, u64>,
    /// The clock high-water mark last persisted (raw HLC).
    hlc_mark: u64,
    /// The highest clock mark known durable (loaded at start, or synced since), and a newer
    /// one written but not yet synced, with the sync generation that will cover it.
    hlc_mark_durable: u64,
    hlc_mark_pending: Option<(u64, u64)>,
    /// A bucket's n changed or a bucket appeared: keys may belong to other trees now, so the
    /// trees are rebuilt from the store at the next input.
    trees_stale: bool,
    /// Where the expiry sweep resumes within its current partition.
    sweep_after: Option<Vec<u8>>,
    /// Forwarded writes already taken, `(sender, request) -> when`, so that a duplicated
    /// message does not become a second write (a second sibling). Bounded by
    /// [`FORWARDS_SEEN_MAX`]; entries older than the longest request timeout are dropped.
    forwards_seen: BTreeMap<(NodeId, RequestId), Timestamp>,
    /// Which peers are believed up (fed by heartbeats).
    detector: FailureDetector,
    /// When heartbeats are next sent.
    next_heartbeat: Timestamp,
    /// Hints this node holds for other nodes (the hints themselves are in the store).
    hints: HintIndex,
    /// Hint deliveries in flight (at most [`HANDOFF_IN_FLIGHT_MAX`] per owner).
    handoffs: BTreeMap<RequestId, Handoff>,
    /// When hints are next offered to their owners.
    next_handoff: Timestamp,
    /// Hints this node decided to keep as a coordinator, stored at the end of `handle` (where
    /// the store is at hand). At most [`COORDINATOR_HINTS_MAX`].
    coordinator_hints: Vec<(NodeId, ObjectKey, Object)>,
    /// Tombstones to reap, in time order: `(when, key, tombstone)`. At most [`REAPS_MAX`].
    reaps: VecDeque<(Timestamp, ObjectKey, Object)>,
    /// Merkle trees of the (partition, replication factor) pairs this node holds objects for,
    /// updated on every object write.
    trees: BTreeMap<(PartitionId, u8), MerkleTree>,
    /// Anti-entropy exchanges this node started (at most [`AE_EXCHANGES_MAX`]).
    exchanges: BTreeMap<RequestId, Exchange>,
    /// Round-robin position over the trees, and over peers.
    ae_cursor: u64,
    next_ae: Timestamp,
    ae: AeStatus,
    /// Tombstones removed from this node's store since it started.
    tombstones_reaped: u64,
    /// Partition the expiry sweep looks at next, and the deletes it issued.
    sweep_cursor: u64,
    expired_deleted: u64,
    /// Buckets and the HLC timestamp of their last change (last writer wins), gossiped to
    /// every peer and kept in the store. At most [`BUCKETS_MAX`].
    buckets: BTreeMap<BucketName, (BucketProps, Hlc)>,
    /// When buckets are next gossiped; `None` before the first input (nothing loaded yet).
    next_gossip: Option<Timestamp>,
}

/// Where the bucket table is stored: a partition number no layout uses, so partition scans
/// never see it.
pub const BUCKETS_STORAGE_KEY: &[u8] = b"\xff\xff\xff\xffbuckets";

/// Where the clock high-water mark is stored (the reserved partition, like buckets).
pub const HLC_STORAGE_KEY: &[u8] = b"\xff\xff\xff\xffhlc";
/// How far ahead of the clock the persisted mark is set: one small write per second of issued
/// time, and after a restart the clock starts at most this far ahead of the wall clock (well
/// within the lww skew limit).
pub const HLC_MARK_MARGIN_MS: u64 = 1_000;

/// A node's view of itself, for `/v1/status`.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct NodeStatus {
    pub id: NodeId,
    pub layout_version: crate::ids::LayoutVersion,
    pub partitions: u32,
    pub peers: Vec<PeerStatus>,
    pub in_flight: usize,
    pub store_poisoned: Option<String>,
    /// Hints held for other nodes, by owner.
    pub hints: Vec<HintTarget>,
    pub hint_counters: HintCounters,
    /// Partitions that lost a hint to a full budget and need anti-entropy.
    pub dirty_partitions: usize,
    pub anti_entropy: AeStatus,
    /// Objects in the Merkle trees (the node's objects).
    pub objects: usize,
    pub tombstones_reaped: u64,
    /// Deletes this node issued for values whose TTL ran out.
    pub expired_deleted: u64,
    /// Tombstones waiting for their grace to pass.
    pub reaps_pending: usize,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct PeerStatus {
    pub id: NodeId,
    pub zone: String,
    pub datacenter: String,
    /// Since the last heartbeat; `None`: never heard from since this node started.
    pub last_heard_ms_ago: Option<u64>,
    /// Suspicion level (phi accrual); `None`: never heard from.
    pub phi: Option<f64>,
    /// Believed up (phi below the threshold, or never heard from).
    pub alive: bool,
}

/// Largest counter a client context may carry (room left for increments).
pub const CONTEXT_COUNTER_MAX: u64 = 1 << 62;

/// Deletes of expired values one sweep issues at most.
pub const EXPIRY_DELETES_MAX: usize = 100;

/// Tombstones one node waits to reap at most (beyond, they are kept: safe, only larger).
pub const REAPS_MAX: usize = 100_000;

/// Anti-entropy exchanges one node drives at a time.
pub const AE_EXCHANGES_MAX: usize = 1;
/// Segments compared per exchange round (the rest wait for the next round).
pub const AE_SEGMENTS_PER_ROUND: usize = 64;
/// Keys repaired per exchange round.
pub const AE_KEYS_PER_ROUND: usize = 1_000;
/// Bytes of objects one anti-entropy fetch answer carries at most (beyond its first object).
pub const AE_FETCH_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Largest stored object (all siblings together): it must fit one internode message.
pub const OBJECT_BYTES_MAX: usize = crate::limits::MESSAGE_BYTES_MAX - 1024 * 1024;

/// Most hints a coordinator queues within one call of `handle`.
pub const COORDINATOR_HINTS_MAX: usize = 10_000;

/// Most forwarded-write ids a node remembers for deduplication.
pub const FORWARDS_SEEN_MAX: usize = 100_000;

impl Node {
    pub fn new(config: NodeConfig, layout: Layout) -> Node {
        let detector = FailureDetector::new(config.phi_threshold, config.heartbeat_interval_ms);
        Node {
            buckets: config
                .buckets
                .iter()
                .map(|(n, p)| (n.clone(), (p.clone(), Hlc::default())))
                .collect(),
            config,
            layout,
            hlc: HlcClock::default(),
            next_request: 0,
            coordinations: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            waiters: Vec::new(),
            sync_requested: 0,
            sync_completed: 0,
            outputs: VecDeque::new(),
            poisoned: None,
            unsynced: BTreeMap::new(),
            hlc_mark: 0,
            hlc_mark_durable: 0,
            hlc_mark_pending: None,
            trees_stale: false,
            sweep_after: None,
            forwards_seen: BTreeMap::new(),
            detector,
            next_heartbeat: Timestamp(0),
            hints: HintIndex::default(),
            handoffs: BTreeMap::new(),
            next_handoff: Timestamp(0),
            coordinator_hints: Vec::new(),
            reaps: VecDeque::new(),
            trees: BTreeMap::new(),
            exchanges: BTreeMap::new(),
            ae_cursor: 0,
            next_ae: Timestamp(0),
            ae: AeStatus::default(),
            tombstones_reaped: 0,
            sweep_cursor: 0,
            expired_deleted: 0,
            next_gossip: None,
        }
    }

    pub fn id(&self) -> NodeId {
        self.config.id
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// Client requests and internode requests this node is coordinating.
    pub fn in_flight(&self) -> usize {
        self.coordinations.len()
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When the node next needs a `Tick`.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        let first = self.deadlines.first().map(|(t, _)| *t);
        let handoff = (self.config.handoff_interval_ms > 0 && !self.hints.owners().is_empty())
            .then_some(self.next_handoff);
        let ae = (self.config.ae_interval_ms > 0).then_some(self.next_ae);
        let reap = self.reaps.front().map(|(t, _, _)| *t);
        [
            first,
            self.next_gossip,
            Some(self.next_heartbeat),
            handoff,
            ae,
            reap,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    pub fn handle<S: Store>(&mut self, ctx: &mut Ctx<'_, S>, input: Input) {
        if self.next_gossip.is_none() {
            // First call since start: load what the store remembers, schedule gossip.
            self.load_buckets(ctx.store);
            self.load_hints(ctx.store);
            self.load_trees(ctx.store);
            if let Ok(Some(bytes)) = ctx.store.get(HLC_STORAGE_KEY)
                && let Ok(raw) = <[u8; 8]>::try_from(bytes.as_slice())
            {
                self.hlc_mark = u64::from_be_bytes(raw);
                self.hlc_mark_durable = self.hlc_mark;
                let _ = self.hlc.observe(Hlc(self.hlc_mark), ctx.now, u64::MAX);
            }
            self.next_gossip = Some(ctx.now);
        }
        if self.trees_stale {
            self.trees_stale = false;
            self.trees.clear();
            self.load_trees(ctx.store);
        }
        self.expire(ctx);
        if self.next_gossip.is_some_and(|t| t <= ctx.now) {
            self.gossip_buckets();
            self.next_gossip = Some(ctx.now.plus_ms(self.config.gossip_interval_ms));
        }
        if self.next_heartbeat <= ctx.now {
            for to in self.peers() {
                self.send(to, Message::Heartbeat);
            }
            self.next_heartbeat = ctx.now.plus_ms(self.config.heartbeat_interval_ms);
        }
        if self.config.handoff_interval_ms > 0 && self.next_handoff <= ctx.now {
            self.offer_hints(ctx);
            self.next_handoff = ctx.now.plus_ms(self.config.handoff_interval_ms);
        }
        while self.reaps.front().is_some_and(|(t, _, _)| *t <= ctx.now) {
            if let Some((_, key, tombstone)) = self.reaps.pop_front() {
                self.reap(ctx, key, tombstone);
            }
        }
        if self.config.ae_interval_ms > 0 && self.next_ae <= ctx.now {
            self.sweep_expired(ctx);
            self.start_exchange(ctx);
            self.next_ae = ctx.now.plus_ms(self.config.ae_interval_ms);
        }
        match input {
            Input::Client {
                id,
                request: ClientRequest::SetBucket { name, props },
            } => {
                let result = self.set_bucket(ctx, name, props);
                self.outputs.push_back(Output::Reply { id, result });
            }
            Input::Client { id, request } => self.on_client(ctx, ReplyTo::Client(id), request),
            Input::Message { from, envelope } => {
                if !self.layout.contains(from) {
                    return; // not a member: the shell authenticates peers, this is a bug
                }
                self.on_message(ctx, from, envelope.message)
            }
            Input::Synced { generation, result } => self.on_synced(ctx, generation, result),
            Input::Tick => {}
        }
        for (owner, key, object) in std::mem::take(&mut self.coordinator_hints) {
            // Best effort: a refused hint (budget) leaves the key to anti-entropy.
            let _ = self.store_hint(ctx, owner, &key, &object);
        }
        if self.waiters.iter().any(|(g, _)| *g > self.sync_requested) {
            self.sync_requested += 1;
            self.outputs.push_back(Output::Sync {
                generation: self.sync_requested,
            });
        }
    }

    // ----- client requests -------------------------------------------------------------

    fn on_client<S: Store>(
        &mut self,
        ctx: &mut Ctx<'_, S>,
        reply_to: ReplyTo,
        request: ClientRequest,
    ) {
        if self.coordinations.len() >= COORDINATIONS_MAX {
            let e = ClientError::new(
                ErrorCode::Overloaded,
                format!(
                    "node {} has {COORDINATIONS_MAX} requests in flight, its limit",
                    self.id()
                ),
            );
            return self.reply(reply_to, Err(e));
        }
        let (key, props, timeout_ms, level) = match self.check_request(&request) {
            Ok(x) => x,
            Err(e) => return self.reply(reply_to, Err(e)),
        };
        let partition = self.layout.partition_for(key.bucket.as_str(), key.key());
        let replicas = self
            .layout
            .preference_list(partition, props.n as usize)
            .to_vec();
        let needed = match level.required(replicas.len() as u8) {
            Ok(n) => n,
            Err(e) => {
                return self.reply(
                    reply_to,
                    Err(ClientError::new(
                        ErrorCode::InvalidConsistency,
                        e.to_string(),
                    )),
                );
            }
        };
        let deadline = ctx.now.plus_ms(timeout_ms);
        match request {
            // Taken care of by `check_request`.
            ClientRequest::SetBucket { .. } => {}
            ClientRequest::Get { key, sloppy, .. } => {
                let sloppy = sloppy.unwrap_or(props.sloppy);
                self.start_read(
                    ctx, reply_to, key, partition, replicas, needed, deadline, sloppy,
                )
            }
            ClientRequest::Put(write) => {
                if replicas.contains(&self.id()) {
                    self.start_write(
                        ctx, reply_to, write, &props, partition, replicas, needed, deadline,
                    )
                } else if let ReplyTo::Client(client) = reply_to {
                    self.start_forward(ctx.now, ctx.rng, client, write, replicas, deadline)
                } else {
                    let e = ClientError::new(
                        ErrorCode::NotReplica,
                        format!(
                            "node {} is not a replica of {key}; forwarded writes are not forwarded again",
                            self.id()
                        ),
                    );
                    self.reply(reply_to, Err(e))
                }
            }
        }
    }

    /// Checks a request against the limits and the bucket; returns the bucket's properties,
    /// the deadline and the consistency level.
    fn check_request(
        &self,
        request: &ClientRequest,
    ) -> Result<(ObjectKey, BucketProps, u64, Consistency), ClientError> {
        let key = request.key().ok_or_else(|| {
            ClientError::new(
                ErrorCode::InvalidBucket,
                "bucket changes are made on the node that receives them",
            )
        })?;
        key.validate()
            .map_err(|e| ClientError::new(ErrorCode::InvalidKey, e.to_string()))?;
        let props = self
            .buckets
            .get(&key.bucket)
            .map(|(props, _)| props.clone())
            .ok_or_else(|| {
                ClientError::new(
                    ErrorCode::UnknownBucket,
                    format!("bucket {:?} does not exist", key.bucket.as_str()),
                )
            })?;
        let (level, timeout_ms) = match request {
            ClientRequest::SetBucket { .. } => (props.w, None),
            ClientRequest::Get { r, timeout_ms, .. } => (r.unwrap_or(props.r), *timeout_ms),
            ClientRequest::Put(w) => {
                if let Some(v) = &w.value
                    && v.len() > self.config.value_bytes_max
                {
                    return Err(ClientError::new(
                        ErrorCode::ValueTooLarge,
                        format!(
                            "value is {} bytes, more than the limit of {}",
                            v.len(),
                            self.config.value_bytes_max
                        ),
                    ));
                }
                if w.content_type.len() > CONTENT_TYPE_BYTES_MAX {
                    return Err(ClientError::new(
                        ErrorCode::InvalidContentType,
                        format!(
                            "content type is {} bytes, more than the limit of {CONTENT_TYPE_BYTES_MAX}",
                            w.content_type.len()
                        ),
                    ));
                }
                if let Some(ctx) = &w.context {
                    // Entries must name members and leave room to count: a context is client
                    // input, and it becomes part of the stored version vector.
                    if let Some((n, c)) = ctx
                        .0
                        .iter()
                        .find(|(n, c)| !self.layout.contains(**n) || **c > CONTEXT_COUNTER_MAX)
                    {
                        return Err(ClientError::new(
                            ErrorCode::InvalidContext,
                            format!(
                                "context names node {n} with counter {c}; it is not from this cluster"
                            ),
                        ));
                    }
                }
                if let Some(t) = w.ttl_ms
                    && !(1..=TTL_SECS_MAX * 1000).contains(&t)
                {
                    return Err(ClientError::new(
                        ErrorCode::InvalidTtl,
                        format!(
                            "ttl of {t} ms is out of range 1..={} ms ({TTL_SECS_MAX} s)",
                            TTL_SECS_MAX * 1000
                        ),
                    ));
                }
                (w.w.unwrap_or(props.w), w.timeout_ms)
            }
        };
        level
            .required(props.n)
            .map_err(|e| ClientError::new(ErrorCode::InvalidConsistency, e.to_string()))?;
        let timeout_ms = timeout_ms.unwrap_or(self.config.request_timeout_ms);
        if timeout_ms == 0 || timeout_ms > TIMEOUT_MS_MAX {
            return Err(ClientError::new(
                ErrorCode::InvalidTimeout,
                format!("timeout of {timeout_ms} ms is out of range 1..={TIMEOUT_MS_MAX}"),
            ));
        }
        Ok((key.clone(), props, timeout_ms, level))
    }

    fn new_request(&mut self, rng: &mut dyn rand::RngCore) -> RequestId {
        if self.next_request == 0 {
            // Request ids must not repeat across restarts (receivers deduplicate forwarded
            // writes by them), so each incarnation starts at a random point of a 2^63 space.
            self.next_request = rng.next_u64() >> 1 | 1;
        }
        self.next_request += 1;
        RequestId(self.next_request)
    }

    fn envelope(&self, message: Message) -> Envelope {
        Envelope {
            layout_version: self.layout.version(),
            message,
        }
    }

    fn send(&mut self, to: NodeId, message: Message) {
        let envelope = self.envelope(message);
        self.outputs.push_back(Output::Send { to, envelope });
    }

    fn reply(&mut self, to: ReplyTo, result: Result<ClientResponse, ClientError>) {
        match to {
            ReplyTo::Internal => {}
            ReplyTo::Client(id) => self.outputs.push_back(Output::Reply { id, result }),
            ReplyTo::Node { node, req } => {
                self.send(node, Message::ForwardResponse { req, result })
            }
        }
    }

    fn receipt(
        &self,
        partition: PartitionId,
        needed: u8,
        slots: &[Slot],
        repairs: Vec<NodeId>,
        started: Timestamp,
        now: Timestamp,
    ) -> Receipt {
        Receipt {
            coordinator: self.id(),
            partition: partition.0,
            needed,
            replicas: slots
                .iter()
                .map(|s| ReplicaReport {
                    node: s.node,
                    role: s.role,
                    zone: self
                        .layout
                        .zone_of(s.node)
                        .map(|(_, z)| z.clone())
                        .unwrap_or_default(),
                    outcome: s.outcome.clone(),
                })
                .collect(),
            read_repairs: repairs,
            hints_stored: slots
                .iter()
                .filter(|s| s.role == Role::Fallback && s.outcome == Outcome::Acked)
                .count() as u32,
            elapsed_ms: now.ms_since(started),
        }
    }

    fn quorum_error(&self, what: &str, receipt: Receipt) -> ClientError {
        let failures: Vec<String> = receipt
            .replicas
            .iter()
            .filter_map(|r| match &r.outcome {
                Outcome::Failed { reason } => Some(format!("{}: {reason}", r.node)),
                Outcome::Pending => Some(format!("{}: no answer", r.node)),
                _ => None,
            })
            .collect();
        let message = format!(
            "{what} quorum not reached: needed {} of {} replicas, {} answered; {}",
            receipt.needed,
            receipt.replicas.len(),
            receipt.acked(),
            failures.join(", ")
        );
        ClientError {
            code: ErrorCode::QuorumNotReached,
            message,
            receipt: Some(receipt),
        }
    }

    // ----- writes ----------------------------------------------------------------------

    #[allow(clippy::too_many_arguments)]
    fn start_write<S: Store>(
        &mut self,
        ctx: &mut Ctx<'_, S>,
        reply_to: ReplyTo,
        write: WriteRequest,
        props: &BucketProps,
        partition: PartitionId,
        replicas: Vec<NodeId>,
        needed: u8,
        deadline: Timestamp,
    ) {
        if let Some(why) = &self.poisoned {
            let e = ClientError::new(
                ErrorCode::StoreFailed,
                format!("node {} refuses writes: {why}", self.id()),
            );
            return self.reply(reply_to, Err(e));
        }
        // Replicas believed down may make W unreachable: fail before writing anything, so a
        // write that cannot succeed leaves no sibling behind.
        let sloppy = write.sloppy.unwrap_or(props.sloppy);
        let slots = self.slots_for(partition, &replicas, ctx.now, sloppy);
        if slots
            .iter()
            .filter(|s| s.outcome == Outcome::Pending)
            .count()
            < needed as usize
        {
            let receipt = self.receipt(partition, needed, &slots, vec![], ctx.now, ctx.now);
            let e = self.quorum_error("write", receipt);
            return self.reply(reply_to, Err(e));
        }
        let skey = write.key.storage_key(partition);
        let local = match self.load(ctx.store, &skey) {
            Ok(o) => o,
            Err(e) => {
                return self.reply(
                    reply_to,
                    Err(ClientError::new(ErrorCode::StoreFailed, e.to_string())),
                );
            }
        };
        if let Some(local) = &local {
            // Move this node's clock past what the key already holds, so the new value is newer.
            let _ = self.hlc.observe(
                local.max_timestamp(),
                ctx.now,
                self.config.max_clock_skew_ms,
            );
        }
        let timestamp = self.hlc.now(ctx.now);
        let is_delete = write.value.is_none();
        let ttl_ms = write
            .ttl_ms
            .or(props.ttl_secs.map(|s| s.saturating_mul(1000)));
        let mut sibling = match write.value {
            Some(value) => Sibling::value(value, &write.content_type, timestamp),
            None => Sibling::tombstone(timestamp),
        };
        if !sibling.tombstone {
            sibling.expires_at = ttl_ms.map(|t| ctx.now.0.saturating_add(t));
        }
        let object = match props.conflicts {
            ConflictMode::Siblings => {
                let base = match local {
                    Some(Object::Siblings(d)) => d,
                    None => Default::default(),
                    Some(Object::Lww(_)) => {
                        let e = ClientError::new(
                            ErrorCode::StoreFailed,
                            "stored object is lww in a siblings bucket",
                        );
                        return self.reply(reply_to, Err(e));
                    }
                };
                let context = write.context.unwrap_or_default();
                match base.update_from(&context, sibling, self.id(), timestamp.0) {
                    Ok((d, _dot)) => Object::Siblings(d),
                    Err(e) => {
                        return self.reply(
                            reply_to,
                            Err(ClientError::new(ErrorCode::TooManySiblings, e.to_string())),
                        );
                    }
                }
            }
            ConflictMode::Lww => {
                let new = Object::Lww(LwwValue {
                    writer: self.id(),
                    sibling,
                });
                match local.map(|l| l.merge(&new)) {
                    None => new,
                    Some(Ok(merged)) => merged,
                    Some(Err(e)) => {
                        return self.reply(
                            reply_to,
                            Err(ClientError::new(ErrorCode::StoreFailed, e.to_string())),
                        );
                    }
                }
            }
        };
        let encoded = encode_object(&object);
        let size = encoded.len();
        if size > OBJECT_BYTES_MAX {
            let e = ClientError::new(
                ErrorCode::TooManySiblings,
                format!(
                    "the key's siblings would take {size} bytes, more than the limit of {OBJECT_BYTES_MAX}; resolve them with a context"
                ),
            );
            return self.reply(reply_to, Err(e));
        }
        let skey_for_sync = skey.clone();
        if timestamp.0 > self.hlc_mark {
            // Persist a clock high-water mark ahead of what we issue, so after a restart the
            // clock (and so the counter floor of fresh entries) never goes back.
            let mark = Hlc::new(
                timestamp.physical_ms().saturating_add(HLC_MARK_MARGIN_MS),
                0,
            )
            .0;
            let mut batch = WriteBatch::default();
            batch.put(HLC_STORAGE_KEY.to_vec(), mark.to_be_bytes().to_vec());
            if ctx.store.write(batch).is_ok() {
                self.hlc_mark = mark;
                self.hlc_mark_pending = Some((self.sync_requested + 1, mark));
            }
        }
        if let Err(e) = self.write_object(ctx.store, &skey, props.n, encoded) {
            return self.reply(
                reply_to,
                Err(ClientError::new(ErrorCode::StoreFailed, e.to_string())),
            );
        }
        let req = self.new_request(ctx.rng);
        // Fallbacks must get their chance before the request's deadline, whatever it is.
        let fallback_ms = self
            .config
            .fallback_after_ms
            .min(deadline.0.saturating_sub(ctx.now.0) / 2);
        self.coordinations.insert(
            req,
            Coordination::Write(WriteState {
                reply_to,
                key: write.key,
                partition,
                needed,
                slots,
                object,
                started: ctx.now,
                deadline,
                replied: false,
                sloppy,
                is_delete,
                fallback_at: ctx.now.plus_ms(fallback_ms),
                sent: false,
            }),
        );
        self.deadlines.insert((deadline, req));
        if sloppy {
            self.deadlines.insert((ctx.now.plus_ms(fallback_ms), req));
        }
        self.unsynced.insert(skey_for_sync, self.sync_requested + 1);
        if props.conflicts == ConflictMode::Lww && timestamp.0 <= self.hlc_mark_durable {
            // The replicas' fsyncs run alongside ours: W acks cost one fsync, not two. Only
            // when a durable clock mark covers the timestamp: a crash before our fsync must
            // not let this node issue older timestamps than one the replicas already hold.
            self.send_write(req);
        }
        self.wait_for_sync(ctx, Waiter::LocalWrite(req));
    }

    /// Sends the write to every other replica still pending (once).
    fn send_write(&mut self, req: RequestId) {
        let me = self.id();
        let Some(Coordination::Write(state)) = self.coordinations.get_mut(&req) else {
            return;
        };
        if state.sent {
            return;
        }
        state.sent = true;
        let sends: Vec<(NodeId, Message)> = state
            .slots
            .iter()
            .filter(|s| s.node != me && s.outcome == Outcome::Pending)
            .map(|s| {
                (
                    s.node,
                    Self::write_message(s, req, &state.key, &state.object),
                )
            })
            .collect();
        for (to, message) in sends {
            self.send(to, message);
        }
    }

    /// The coordinator's own write is durable (or failed): replicate it.
    fn on_local_write(&mut self, now: Timestamp, req: RequestId, result: Result<(), String>) {
        let me = self.id();
        let Some(Coordination::Write(state)) = self.coordinations.get_mut(&req) else {
            return;
        };
        let slot = state
            .slots
            .iter_mut()
            .find(|s| s.node == me)
            .expect("the coordinator is one of the replicas");
        match result {
            Ok(()) => {
                slot.outcome = Outcome::Acked;
                self.send_write(req);
                if let Some(Coordination::Write(state)) = self.coordinations.get(&req)
                    && state.sloppy
                    && now >= state.fallback_at
                {
                    // The fallback deadline passed while the local sync ran.
                    self.write_fallbacks(now, req);
                }
                return self.check_write(now, req);
            }
            Err(reason) => {
                // Nothing left this node; fail the request at once.
                slot.outcome = Outcome::Failed {
                    reason: format!("local write failed: {reason}"),
                };
                for s in state
                    .slots
                    .iter_mut()
                    .filter(|s| s.outcome == Outcome::Pending && !state.sent)
                {
                    s.outcome = Outcome::Failed {
                        reason: "not sent: the coordinator's write failed".into(),
                    };
                }
            }
        }
        self.check_write(now, req);
    }

    /// A finished write: the coordinator keeps a hint for every primary that neither acked nor
    /// had a fallback ack for it (as Cassandra's coordinators do), so a primary that was down
    /// gets the write by handoff even where no fallback node exists (N = cluster size).
    fn hint_missed_primaries(&mut self, state: WriteState) {
        let me = self.id();
        if !state
            .slots
            .iter()
            .any(|s| s.node == me && s.outcome == Outcome::Acked)
        {
            return; // nothing durable here to hand off
        }
        for s in &state.slots {
            let covered = state
                .slots
                .iter()
                .any(|f| f.hint_for == Some(s.node) && f.outcome == Outcome::Acked);
            let missed = matches!(s.outcome, Outcome::Failed { .. });
            if s.role == Role::Primary
                && s.node != me
                && missed
                && !covered
                && self.coordinator_hints.len() < COORDINATOR_HINTS_MAX
            {
                self.coordinator_hints
                    .push((s.node, state.key.clone(), state.object.clone()));
            }
        }
    }

    /// Primaries that have not answered by `fallback_at` get a fallback each (Dynamo: "if a
    /// node is down or slow, the write goes to the next healthy node with a hint").
    fn write_fallbacks(&mut self, now: Timestamp, req: RequestId) {
        let me = self.id();
        let Some(Coordination::Write(state)) = self.coordinations.get_mut(&req) else {
            return;
        };
        // Only once the write went out (for `siblings` writes: once the coordinator's own
        // write, and so its dot, is durable) may it go to fallbacks.
        if !state.sent {
            return;
        }
        let partition = state.partition;
        let mut slots = std::mem::take(&mut state.slots);
        let slow: Vec<NodeId> = slots
            .iter()
            .filter(|s| s.role == Role::Primary && s.node != me && s.outcome == Outcome::Pending)
            .filter(|s| !slots.iter().any(|f| f.hint_for == Some(s.node)))
            .map(|s| s.node)
            .collect();
        let before = slots.len();
        for owner in slow {
            self.add_fallback(partition, &mut slots, owner, now);
        }
        let Some(Coordination::Write(state)) = self.coordinations.get_mut(&req) else {
            return;
        };
        let sends: Vec<(NodeId, Message)> = slots[before..]
            .iter()
            .map(|s| {
                (
                    s.node,
                    Self::write_message(s, req, &state.key, &state.object),
                )
            })
            .collect();
        state.slots = slots;
        for (to, message) in sends {
            self.send(to, message);
        }
    }

    fn on_replicate_response(
        &mut self,
        now: Timestamp,
        from: NodeId,
        req: RequestId,
        result: Result<(), ReplicaError>,
    ) {
        let Some(Coordination::Write(state)) = self.coordinations.get_mut(&req) else {
            return;
        };
        let Some(slot) = state.slots.iter_mut().find(|s| s.node == from) else {
            return;
        };
        if slot.outcome != Outcome::Pending {
            return; // a duplicate
        }
        slot.outcome = match result {
            Ok(()) => Outcome::Acked,
            Err(e) => Outcome::Failed {
                reason: e.to_string(),
            },
        };
        self.check_write(now, req);
    }

    fn check_write(&mut self, now: Timestamp, req: RequestId) {
        let Some(Coordination::Write(state)) = self.coordinations.get(&req) else {
            return;
        };
        let acked = state
            .slots
            .iter()
            .filter(|s| s.outcome == Outcome::Acked)
            .count();
        let pending = state
            .slots
            .iter()
            .filter(|s| s.outcome == Outcome::Pending)
            .count();
        let needed = state.needed as usize;
        if !state.replied && (acked >= needed || acked + pending < needed) {
            let receipt = self.receipt(
                state.partition,
                state.needed,
                &state.slots,
                vec![],
                state.started,
                now,
            );
            let result = if acked >= needed {
                Ok(ClientResponse::Written {
                    context: state.object.context(),
                    receipt,
                })
            } else {
                Err(self.quorum_error("write", receipt))
            };
            let reply_to = state.reply_to;
            self.reply(reply_to, result);
            if let Some(Coordination::Write(state)) = self.coordinations.get_mut(&req) {
                state.replied = true;
            }
        }
        if pending == 0
            && let Some(Coordination::Write(state)) = self.coordinations.remove(&req)
        {
            let all_primaries = state
                .slots
                .iter()
                .all(|s| s.role == Role::Primary && s.outcome == Outcome::Acked);
            if state.is_delete
                && (all_primaries || planted().reap_early)
                && self.reaps.len() < REAPS_MAX
            {
                let grace = if planted().reap_early {
                    0
                } else {
                    self.config.tombstone_grace_ms
                };
                self.reaps
                    .push_back((now.plus_ms(grace), state.key.clone(), state.object.clone()));
            }
            self.hint_missed_primaries(state);
        }
    }

    // ----- forwarding ------------------------------------------------------------------

    /// Hands a write to one replica of the key, which coordinates it. There is exactly one
    /// attempt: retrying at another replica after a timeout could apply the write twice (two
    /// siblings for one client write), so a timeout is reported to the client, whose retry
    /// is then its own, visible decision. The replica chosen is the first of the preference
    /// list this node has heard from recently.
    fn start_forward(
        &mut self,
        now: Timestamp,
        rng: &mut dyn rand::RngCore,
        client: ClientRequestId,
        request: WriteRequest,
        candidates: Vec<NodeId>,
        deadline: Timestamp,
    ) {
        let req = self.new_request(rng);
        let to = candidates
            .iter()
            .copied()
            .find(|n| self.detector.is_alive(*n, now))
            .unwrap_or(candidates[0]);
        self.send(
            to,
            Message::ForwardRequest {
                req,
                request: request.clone(),
            },
        );
        self.coordinations.insert(
            req,
            Coordination::Forward(ForwardState {
                client,
                request,
                to,
                started: now,
                deadline,
            }),
        );
        self.deadlines.insert((deadline, req));
    }

    fn on_forward_response(&mut self, req: RequestId, result: Result<ClientResponse, ClientError>) {
        if let Some(Coordination::Forward(state)) = self.coordinations.remove(&req) {
            self.reply(ReplyTo::Client(state.client), result);
        }
    }

    fn forward_timed_out(&mut self, now: Timestamp, req: RequestId) {
        let Some(Coordination::Forward(state)) = self.coordinations.remove(&req) else {
            return;
        };
        let message = format!(
            "replica {} did not answer the forwarded write of {} within {} ms; it may or may not have been applied",
            state.to,
            state.request.key,
            now.ms_since(state.started)
        );
        let e = ClientError::new(ErrorCode::CoordinatorUnreachable, message);
        self.reply(ReplyTo::Client(state.client), Err(e));
    }

    // ----- reads -----------------------------------------------------------------------

    #[allow(clippy::too_many_arguments)]
    fn start_read<S: Store>(
        &mut self,
        ctx: &mut Ctx<'_, S>,
        reply_to: ReplyTo,
        key: ObjectKey,
        partition: PartitionId,
        replicas: Vec<NodeId>,
        needed: u8,
        deadline: Timestamp,
        sloppy: bool,
    ) {
        let req = self.new_request(ctx.rng);
        let slots = self.slots_for(partition, &replicas, ctx.now, sloppy);
        let me = self.id();
        // This node first (no network hop), then the preference order.
        let mut asked: Vec<(NodeId, Option<NodeId>)> = slots
            .iter()
            .filter(|s| s.outcome == Outcome::Pending)
            .map(|s| (s.node, s.hint_for))
            .collect();
        asked.sort_by_key(|(n, _)| *n != me);
        let retry_after = self.config.read_retry_after_ms;
        let unasked = if retry_after > 0 && asked.len() > needed as usize {
            asked.split_off(needed as usize)
        } else {
            vec![]
        };
        let retry_at = ctx.now.plus_ms(retry_after);
        if !unasked.is_empty() && retry_at < deadline {
            self.deadlines.insert((retry_at, req));
        }
        self.coordinations.insert(
            req,
            Coordination::Read(ReadState {
                reply_to,
                key: key.clone(),
                partition,
                needed,
                slots,
                responses: BTreeMap::new(),
                repaired: BTreeMap::new(),
                started: ctx.now,
                deadline,
                replied: false,
                unasked,
                retry_at,
            }),
        );
        self.deadlines.insert((deadline, req));
        if asked.is_empty() {
            // Replicas believed down may already make R unreachable.
            return self.check_read(ctx, req);
        }
        self.ask(ctx, req, asked);
    }

    /// Sends read requests to `replicas` (answering this node's own at once).
    fn ask<S: Store>(
        &mut self,
        ctx: &mut Ctx<'_, S>,
        req: RequestId,
        replicas: Vec<(NodeId, Option<NodeId>)>,
    ) {
        let me = self.id();
        let Some(Coordination::Read(state)) = self.coordinations.get(&req) else {
            return;
        };
        let key = state.key.clone();
        for (to, hint_for) in replicas.iter().copied().filter(|(n, _)| *n != me) {
            let message = match hint_for {
                None => Message::ReadRequest {
                    req,
                    key: key.clone(),
                },
                Some(owner) => Message::HintReadRequest {
                    req,
                    key: key.clone(),
                    owner,
                },
            };
            self.send(to, message);
        }
        match replicas.iter().find(|(n, _)| *n == me) {
            Some((_, None)) => match self.unsynced_generation(&key) {
                Some(g) => self.waiters.push((g, Waiter::LocalRead { req, key })),
                None => {
                    let result = self.local_read(ctx.store, &key);
                    self.on_read_response(ctx, me, req, result);
                }
            },
            Some((_, Some(owner))) => {
                let result = self.hint_read(ctx.store, *owner, &key);
                self.on_read_response(ctx, me, req, result);
            }
            None => {}
        }
    }

    fn on_read_response<S: Store>(
        &mut self,
        ctx: &mut Ctx<'_, S>,
        from: NodeId,
        req: RequestId,
        result: Result<Option<Object>, ReplicaError>,
    ) {
        let Some(Coordination::Read(state)) = self.coordinations.get_mut(&req) else {
            return;
        };
        let Some(slot) = state.slots.iter_mut().find(|s| s.node == from) else {
            return;
        };
        if slot.outcome != Outcome::Pending {
            return; // a duplicate
        }
        match result {
            Ok(object) => {
                slot.outcome = Outcome::Read {
                    version: object.as_ref().map(Object::context),
                    siblings: object.as_ref().map_or(0, |o| o.sibling_count() as u32),
                };
                state.responses.insert(from, object);
            }
            Err(e) => {
                slot.outcome = Outcome::Failed {
                    reason: e.to_string(),
                }
            }
        }
        self.check_read(ctx, req);
    }

    fn check_read<S: Store>(&mut self, ctx: &mut Ctx<'_, S>, req: RequestId) {
        let now = ctx.now;
        let Some(Coordination::Read(state)) = self.coordinations.get(&req) else {
            return;
        };
        let answered = state.responses.len();
        let unasked = state.unasked.len();
        let pending = state
            .slots
            .iter()
            .filter(|s| s.outcome == Outcome::Pending)
            .count();
        let in_flight = pending - unasked;
        let needed = state.needed as usize;
        if !state.replied && answered + in_flight < needed && unasked > 0 {
            // One asked replica failed: ask as many more as R still needs.
            let more = (needed - answered - in_flight).min(unasked);
            let Some(Coordination::Read(state)) = self.coordinations.get_mut(&req) else {
                return;
            };
            let replicas: Vec<_> = state.unasked.drain(..more).collect();
            return self.ask(ctx, req, replicas);
        }
        if !state.replied && answered >= needed {
            // R answered: the replicas never asked leave the receipt (and the coordination).
            if let Some(Coordination::Read(state)) = self.coordinations.get_mut(&req)
                && !state.unasked.is_empty()
            {
                let unasked = std::mem::take(&mut state.unasked);
                state
                    .slots
                    .retain(|s| !unasked.iter().any(|(n, _)| *n == s.node));
            }
            let Some(Coordination::Read(state)) = self.coordinations.get(&req) else {
                return;
            };
            let merged = merge_all(state.responses.values());
            let repairs = self.read_repair(ctx, req, merged.as_ref());
            let Some(Coordination::Read(state)) = self.coordinations.get(&req) else {
                return;
            };
            let receipt = self.receipt(
                state.partition,
                state.needed,
                &state.slots,
                repairs,
                state.started,
                now,
            );
            let (context, siblings) = match &merged {
                Some(o) => (
                    o.context(),
                    o.visible_at(now.0).into_iter().cloned().collect(),
                ),
                None => (VersionVector::default(), vec![]),
            };
            let reply_to = state.reply_to;
            self.reply(
                reply_to,
                Ok(ClientResponse::Read {
                    context,
                    siblings,
                    receipt,
                }),
            );
            self.mark_read_replied(req);
        } else if !state.replied && answered + pending < needed {
            let receipt = self.receipt(
                state.partition,
                state.needed,
                &state.slots,
                vec![],
                state.started,
                now,
            );
            let e = self.quorum_error("read", receipt);
            let reply_to = state.reply_to;
            self.reply(reply_to, Err(e));
            self.mark_read_replied(req);
        }
        let Some(Coordination::Read(state)) = self.coordinations.get(&req) else {
            return;
        };
        if state.slots.iter().all(|s| s.outcome != Outcome::Pending) {
            self.finish_read(ctx, req);
        }
    }

    fn mark_read_replied(&mut self, req: RequestId) {
        if let Some(Coordination::Read(state)) = self.coordinations.get_mut(&req) {
            state.replied = true;
        }
    }

    /// Every replica has answered or the deadline passed: repair whoever is still stale.
    fn finish_read<S: Store>(&mut self, ctx: &mut Ctx<'_, S>, req: RequestId) {
        let Some(Coordination::Read(state)) = self.coordinations.get(&req) else {
            return;
        };
        let merged = merge_all(state.responses.values());
        self.read_repair(ctx, req, merged.as_ref());
        self.coordinations.remove(&req);
    }

    /// Sends `merged` to every replica that answered with something else and was not already
    /// sent it. Returns the replicas repaired.
    fn read_repair<S: Store>(
        &mut self,
        ctx: &mut Ctx<'_, S>,
        req: RequestId,
        merged: Option<&Object>,
    ) -> Vec<NodeId> {
        let Some(merged) = merged else { return vec![] };
        if planted().skip_read_repair {
            return vec![];
        }
        let Some(Coordination::Read(state)) = self.coordinations.get_mut(&req) else {
            return vec![];
        };
        let stale: Vec<NodeId> = state
            .responses
            .iter()
            // Fallbacks hold hints, not replicas: only primaries are repaired.
            .filter(|(n, _)| {
                state
                    .slots
                    .iter()
                    .any(|s| s.node == **n && s.role == Role::Primary)
            })
            .filter(|(n, o)| o.as_ref() != Some(merged) && state.repaired.get(n) != Some(merged))
            .map(|(n, _)| *n)
            .collect();
        for n in &stale {
            state.repaired.insert(*n, merged.clone());
        }
        let key = state.key.clone();
        for n in &stale {
            if *n == self.id() {
                // Repairing ourselves: a plain write, synced with the next group.
                let _ = self.merge_into_store(ctx, &key, merged, false);
            } else {
                self.send(
                    *n,
                    Message::RepairRequest {
                        key: key.clone(),
                        object: merged.clone(),
                    },
                );
            }
        }
        stale
    }

    // ----- replica side ----------------------------------------------------------------

    fn on_message<S: Store>(&mut self, ctx: &mut Ctx<'_, S>, from: NodeId, message: Message) {
        match message {
            Message::ReplicateRequest { req, key, object } => {
                if let Some(why) = &self.poisoned {
                    let e = ReplicaError::Store(format!("node refuses writes: {why}"));
                    return self.send(
                        from,
                        Message::ReplicateResponse {
                            req,
                            result: Err(e),
                        },
                    );
                }
                let result = self.merge_into_store(ctx, &key, &object, true);
                self.ack_when_durable(ctx, from, req, result);
            }
            Message::ReplicateResponse { req, result } => {
                if self.handoffs.contains_key(&req) {
                    self.on_handoff_response(ctx, req, result)
                } else {
                    self.on_replicate_response(ctx.now, from, req, result)
                }
            }
            Message::ReadRequest { req, key } => match self.unsynced_generation(&key) {
                Some(g) => self.waiters.push((g, Waiter::Read { to: from, req, key })),
                None => {
                    let result = self.local_read(ctx.store, &key);
                    self.send(from, Message::ReadResponse { req, result });
                }
            },
            Message::ReadResponse { req, result } => self.on_read_response(ctx, from, req, result),
            Message::RepairRequest { key, object } => {
                if self.poisoned.is_none() {
                    let _ = self.merge_into_store(ctx, &key, &object, false);
                }
            }
            Message::ForwardRequest { req, request } => {
                if self.first_forward(ctx.now, from, req) {
                    self.on_client(
                        ctx,
                        ReplyTo::Node { node: from, req },
                        ClientRequest::Put(request),
                    )
                }
            }
            Message::ForwardResponse { req, result } => self.on_forward_response(req, result),
            Message::BucketsGossip { buckets } => self.merge_buckets(ctx.store, buckets),
            Message::Heartbeat => self.detector.heartbeat(from, ctx.now),
            Message::HintRequest {
                req,
                key,
                object,
                owner,
            } => {
                let result = self.store_hint(ctx, owner, &key, &object);
                self.ack_when_durable(ctx, from, req, result);
            }
            Message::AeTreeRequest {
                req,
                partition,
                n,
                level,
                indices,
            } => {
                let indices: Vec<u32> = indices.into_iter().take(SEGMENTS).collect();
                let hashes = match self.trees.get(&(PartitionId(partition), n)) {
                    Some(t) => t.hashes(level as usize, &indices),
                    None => MerkleTree::default().hashes(level as usize, &indices),
                };
                self.send(from, Message::AeTreeResponse { req, hashes });
            }
            Message::AeSegmentRequest {
                req,
                partition,
                n,
                segments,
            } => {
                let empty = MerkleTree::default();
                let tree = self
                    .trees
                    .get(&(PartitionId(partition), n))
                    .unwrap_or(&empty);
                let entries = segments
                    .into_iter()
                    .take(AE_SEGMENTS_PER_ROUND)
                    .map(|seg| {
                        let list = tree
                            .segment(seg as usize)
                            .iter()
                            .map(|(k, h)| AeEntry {
                                key: k.clone(),
                                hash: *h,
                            })
                            .collect();
                        (seg, list)
                    })
                    .collect();
                self.send(from, Message::AeSegmentResponse { req, entries });
            }
            Message::AeFetchRequest { req, keys } => {
                let objects = keys
                    .into_iter()
                    .take(AE_KEYS_PER_ROUND)
                    .filter(|k| !self.unsynced.contains_key(&k.0))
                    .filter_map(|k| match self.load(ctx.store, &k.0) {
                        Ok(Some(o)) => Some((k, o)),
                        _ => None,
                    })
                    // Within a byte budget (at least one object), so the answer fits a frame.
                    .scan(0usize, |bytes, (k, o)| {
                        let first = *bytes == 0;
                        *bytes += encode_object(&o).len() + k.0.len();
                        (first || *bytes <= AE_FETCH_BYTES_MAX).then_some((k, o))
                    })
                    .collect();
                self.send(from, Message::AeFetchResponse { req, objects });
            }
            Message::AeTreeResponse { req, hashes } => self.on_tree_response(ctx, req, hashes),
            Message::ReapRequest { key, object } => {
                let n = self
                    .buckets
                    .get(&key.bucket)
                    .map_or(BucketProps::default().n, |(p, _)| p.n);
                self.remove_tombstone(ctx.store, &key, &object, n);
            }
            Message::AeSegmentResponse { req, entries } => {
                self.on_segment_response(ctx, req, entries)
            }
            Message::AeFetchResponse { req, objects } => self.on_fetch_response(ctx, req, objects),
            Message::HintReadRequest { req, key, owner } => {
                let result = self.hint_read(ctx.store, owner, &key);
                self.send(from, Message::ReadResponse { req, result });
            }
        }
    }

    /// Whether this forwarded write is new (not a duplicate of one already taken).
    fn first_forward(&mut self, now: Timestamp, from: NodeId, req: RequestId) -> bool {
        let horizon = Timestamp(now.0.saturating_sub(2 * TIMEOUT_MS_MAX));
        self.forwards_seen.retain(|_, seen| *seen >= horizon);
        if self.forwards_seen.len() >= FORWARDS_SEEN_MAX
            && let Some(oldest) = self
                .forwards_seen
                .iter()
                .min_by_key(|(_, t)| **t)
                .map(|(k, _)| *k)
        {
            self.forwards_seen.remove(&oldest);
        }
        self.forwards_seen.insert((from, req), now).is_none()
    }

    fn load<S: Store>(&self, store: &mut S, skey: &[u8]) -> Result<Option<Object>, ReplicaError> {
        match store.get(skey) {
            Ok(None) => Ok(None),
            Ok(Some(bytes)) => decode_object(&bytes)
                .map(Some)
                .map_err(|e| ReplicaError::Store(e.to_string())),
            Err(e) => Err(ReplicaError::Store(e.to_string())),
        }
    }

    fn local_read<S: Store>(
        &self,
        store: &mut S,
        key: &ObjectKey,
    ) -> Result<Option<Object>, ReplicaError> {
        let partition = self.layout.partition_for(key.bucket.as_str(), key.key());
        self.load(store, &key.storage_key(partition))
    }

    /// Merges `object` into the stored one and writes the result if it changed.
    fn merge_into_store<S: Store>(
        &mut self,
        ctx: &mut Ctx<'_, S>,
        key: &ObjectKey,
        object: &Object,
        new_write: bool,
    ) -> Result<(), ReplicaError> {
        let ts = object.max_timestamp();
        if new_write && matches!(object, Object::Lww(_)) {
            check_skew(ts, ctx.now, self.config.max_clock_skew_ms)
                .map_err(|e| ReplicaError::ClockSkew(e.to_string()))?;
        }
        // Never let a far-future timestamp drag this node's clock along.
        let _ = self.hlc.observe(ts, ctx.now, self.config.max_clock_skew_ms);
        let partition = self.layout.partition_for(key.bucket.as_str(), key.key());
        let skey = key.storage_key(partition);
        let local = self.load(ctx.store, &skey)?;
        let merged = match &local {
            None => object.clone(),
            Some(l) => l.merge(object).map_err(|_| ReplicaError::ModeMismatch)?,
        };
        if local.as_ref() != Some(&merged) {
            let n = self
                .buckets
                .get(&key.bucket)
                .map_or(BucketProps::default().n, |(p, _)| p.n);
            self.write_object(ctx.store, &skey, n, encode_object(&merged))
                .map_err(|e| ReplicaError::Store(e.to_string()))?;
        }
        Ok(())
    }

    /// Writes an object and records it in the Merkle tree of its (partition, n).
    fn write_object<S: Store>(
        &mut self,
        store: &mut S,
        skey: &[u8],
        n: u8,
        bytes: Vec<u8>,
    ) -> Result<(), StoreError> {
        let hash = object_hash(&bytes);
        let mut batch = WriteBatch::default();
        batch.put(skey.to_vec(), bytes);
        store.write(batch)?;
        if let Ok((partition, _)) = ObjectKey::from_storage_key(skey) {
            self.trees
                .entry((partition, n))
                .or_default()
                .update(skey, Some(hash));
        }
        Ok(())
    }

    // ----- buckets ---------------------------------------------------------------------

    /// The buckets this node knows, with their properties.
    pub fn buckets(&self) -> BTreeMap<BucketName, BucketProps> {
        self.buckets
            .iter()
            .map(|(n, (p, _))| (n.clone(), p.clone()))
            .collect()
    }

    /// What the node knows of itself and its peers, for status pages.
    pub fn status(&self, now: Timestamp) -> NodeStatus {
        NodeStatus {
            id: self.id(),
            layout_version: self.layout.version(),
            partitions: self.layout.partition_count(),
            peers: self
                .layout
                .nodes()
                .iter()
                .filter(|n| n.id != self.id())
                .map(|n| PeerStatus {
                    id: n.id,
                    zone: n.zone.clone(),
                    datacenter: n.datacenter.clone(),
                    last_heard_ms_ago: self.detector.last_heard(n.id).map(|t| now.ms_since(t)),
                    phi: self.detector.phi(n.id, now),
                    alive: self.detector.is_alive(n.id, now),
                })
                .collect(),
            in_flight: self.coordinations.len(),
            store_poisoned: self.poisoned.clone(),
            hints: self.hints.targets(),
            hint_counters: self.hints.counters,
            dirty_partitions: self.hints.dirty.len(),
            anti_entropy: self.ae.clone(),
            objects: self.trees.values().map(MerkleTree::len).sum(),
            tombstones_reaped: self.tombstones_reaped,
            expired_deleted: self.expired_deleted,
            reaps_pending: self.reaps.len(),
        }
    }

    fn set_bucket<S: Store>(
        &mut self,
        ctx: &mut Ctx<'_, S>,
        name: BucketName,
        props: BucketProps,
    ) -> Result<ClientResponse, ClientError> {
        let invalid = |m: String| ClientError::new(ErrorCode::InvalidBucket, m);
        props
            .validate()
            .map_err(|e| invalid(format!("bucket {name}: {e}")))?;
        match self.buckets.get(&name) {
            Some((old, _)) if old.conflicts != props.conflicts => {
                return Err(invalid(format!(
                    "bucket {name} has conflict mode {}; a bucket's conflict mode cannot change",
                    old.conflicts
                )));
            }
            None if self.buckets.len() >= BUCKETS_MAX => {
                return Err(invalid(format!(
                    "there are {BUCKETS_MAX} buckets, the limit"
                )));
            }
            _ => {}
        }
        if let Some(why) = &self.poisoned {
            return Err(ClientError::new(
                ErrorCode::StoreFailed,
                format!("node {} refuses writes: {why}", self.id()),
            ));
        }
        let version = self.hlc.now(ctx.now);
        self.trees_stale |= self
            .buckets
            .get(&name)
            .is_none_or(|(old, _)| old.n != props.n);
        self.buckets.insert(name.clone(), (props.clone(), version));
        self.save_buckets(ctx.store)
            .map_err(|e| ClientError::new(ErrorCode::StoreFailed, e.to_string()))?;
        self.gossip_buckets();
        Ok(ClientResponse::Bucket { name, props })
    }

    /// Every other node of the layout.
    fn peers(&self) -> Vec<NodeId> {
        self.layout
            .nodes()
            .iter()
            .map(|n| n.id)
            .filter(|n| *n != self.id())
            .collect()
    }

    /// The slots of a request: one per replica, already failed for the ones believed down
    /// (the coordinator does not wait out their timeouts).
    fn slots_for(
        &self,
        partition: PartitionId,
        replicas: &[NodeId],
        now: Timestamp,
        sloppy: bool,
    ) -> Vec<Slot> {
        let mut slots: Vec<Slot> = replicas
            .iter()
            .map(|n| {
                let outcome = if *n != self.id() && !self.detector.is_alive(*n, now) {
                    let phi = self.detector.phi(*n, now).unwrap_or(0.0);
                    Outcome::Failed {
                        reason: format!("believed down (phi {phi:.1})"),
                    }
                } else {
                    Outcome::Pending
                };
                Slot {
                    node: *n,
                    outcome,
                    role: Role::Primary,
                    hint_for: None,
                }
            })
            .collect();
        if sloppy {
            let down: Vec<NodeId> = slots
                .iter()
                .filter(|s| s.outcome != Outcome::Pending)
                .map(|s| s.node)
                .collect();
            for owner in down {
                self.add_fallback(partition, &mut slots, owner, now);
            }
        }
        slots
    }

    /// Adds a fallback slot standing in for `owner`: the first node of the extended preference
    /// list after the primaries that is believed up and not already asked. False if none is.
    fn add_fallback(
        &self,
        partition: PartitionId,
        slots: &mut Vec<Slot>,
        owner: NodeId,
        now: Timestamp,
    ) -> bool {
        let primaries = slots.iter().filter(|s| s.role == Role::Primary).count();
        let order = self.layout.extended_preference_list(partition);
        let fallback = order[primaries.min(order.len())..]
            .iter()
            .copied()
            .find(|n| {
                (*n == self.id() || self.detector.is_alive(*n, now))
                    && !slots.iter().any(|s| s.node == *n)
            });
        match fallback {
            Some(node) => {
                slots.push(Slot {
                    node,
                    outcome: Outcome::Pending,
                    role: Role::Fallback,
                    hint_for: Some(owner),
                });
                true
            }
            None => false,
        }
    }

    /// The message that carries a write to a slot: a replica merges it, a fallback holds it.
    fn write_message(slot: &Slot, req: RequestId, key: &ObjectKey, object: &Object) -> Message {
        match slot.hint_for {
            None => Message::ReplicateRequest {
                req,
                key: key.clone(),
                object: object.clone(),
            },
            Some(owner) => Message::HintRequest {
                req,
                key: key.clone(),
                object: object.clone(),
                owner,
            },
        }
    }

    fn gossip_buckets(&mut self) {
        let buckets: Vec<_> = self
            .buckets
            .iter()
            .map(|(n, (p, v))| (n.clone(), p.clone(), *v))
            .collect();
        let peers = self.peers();
        for to in peers {
            self.send(
                to,
                Message::BucketsGossip {
                    buckets: buckets.clone(),
                },
            );
        }
    }

    fn merge_buckets<S: Store>(
        &mut self,
        store: &mut S,
        theirs: Vec<(BucketName, BucketProps, Hlc)>,
    ) {
        let mut changed = false;
        for (name, props, version) in theirs {
            if props.validate().is_err() {
                continue;
            }
            match self.buckets.get(&name) {
                Some((ours, _)) if ours.conflicts != props.conflicts => {}
                // Ties (two nodes changing a bucket at the same timestamp) break on the
                // properties themselves, so every node keeps the same one.
                Some((ours, v)) if (*v, props_order(ours)) >= (version, props_order(&props)) => {}
                None if self.buckets.len() >= BUCKETS_MAX => {}
                _ => {
                    let n_changed = self
                        .buckets
                        .get(&name)
                        .is_none_or(|(old, _)| old.n != props.n);
                    self.trees_stale |= n_changed;
                    self.buckets.insert(name, (props, version));
                    changed = true;
                }
            }
        }
        if changed && self.poisoned.is_none() {
            // Best effort: gossip repeats, so a failed save is retried by the next round.
            let _ = self.save_buckets(store);
        }
    }

    fn save_buckets<S: Store>(&self, store: &mut S) -> Result<(), StoreError> {
        let table: Vec<_> = self
            .buckets
            .iter()
            .map(|(n, (p, v))| (n.clone(), p.clone(), *v))
            .collect();
        let mut batch = WriteBatch::default();
        batch.put(BUCKETS_STORAGE_KEY.to_vec(), encode_buckets(&table));
        store.write(batch)
    }

    fn load_buckets<S: Store>(&mut self, store: &mut S) {
        if let Ok(Some(bytes)) = store.get(BUCKETS_STORAGE_KEY)
            && let Ok(table) = decode_buckets(&bytes)
        {
            for (name, props, version) in table {
                let newer = self.buckets.get(&name).is_none_or(|(_, v)| *v < version);
                if newer {
                    self.buckets.insert(name, (props, version));
                }
            }
        }
    }

    // ----- tombstones --------------------------------------------------------------------

    /// Every primary acked the delete and the grace passed: each primary removes the key if it
    /// still holds exactly this tombstone (anything newer stays).
    fn reap<S: Store>(&mut self, ctx: &mut Ctx<'_, S>, key: ObjectKey, tombstone: Object) {
        let n = self
            .buckets
            .get(&key.bucket)
            .map_or(BucketProps::default().n, |(p, _)| p.n);
        let partition = self.layout.partition_for(key.bucket.as_str(), key.key());
        let replicas = self.layout.preference_list(partition, n as usize).to_vec();
        for to in replicas {
            if to == self.id() {
                self.remove_tombstone(ctx.store, &key, &tombstone, n);
            } else {
                self.send(
                    to,
                    Message::ReapRequest {
                        key: key.clone(),
                        object: tombstone.clone(),
                    },
                );
            }
        }
    }

    fn remove_tombstone<S: Store>(
        &mut self,
        store: &mut S,
        key: &ObjectKey,
        tombstone: &Object,
        n: u8,
    ) {
        if !tombstone.is_tombstone() || self.poisoned.is_some() {
            return;
        }
        let partition = self.layout.partition_for(key.bucket.as_str(), key.key());
        let skey = key.storage_key(partition);
        if let Ok(Some(held)) = self.load(store, &skey)
            && held == *tombstone
        {
            let mut batch = WriteBatch::default();
            batch.remove(skey.clone());
            if store.write(batch).is_ok() {
                self.tombstones_reaped += 1;
                if let Some(t) = self.trees.get_mut(&(partition, n)) {
                    t.update(&skey, None);
                }
            }
        }
    }

    /// Looks through one partition (round robin, one per anti-entropy interval) for objects
    /// whose every value has expired, and deletes them with their own context: expired values
    /// then go the way of tombstones (reaped once every primary holds the delete). Only the
    /// first primary of a key does this, so replicas do not all issue the same delete.
    fn sweep_expired<S: Store>(&mut self, ctx: &mut Ctx<'_, S>) {
        let partition =
            PartitionId((self.sweep_cursor % self.layout.partition_count() as u64) as u32);
        let Ok(page) =
            ctx.store
                .scan_partition(partition, self.sweep_after.as_deref(), SCAN_ENTRIES_MAX)
        else {
            return;
        };
        // A full page: resume after its last key next time; else move to the next partition.
        if page.len() == SCAN_ENTRIES_MAX {
            self.sweep_after = page.last().map(|(k, _)| k.clone());
        } else {
            self.sweep_after = None;
            self.sweep_cursor += 1;
        }
        let mut deletes = 0;
        for (skey, bytes) in page {
            if deletes >= EXPIRY_DELETES_MAX || self.coordinations.len() >= COORDINATIONS_MAX {
                break;
            }
            let (Ok(object), Ok((_, key))) =
                (decode_object(&bytes), ObjectKey::from_storage_key(&skey))
            else {
                continue;
            };
            if !object.expired_before(ctx.now.0) {
                continue;
            }
            let Some((props, _)) = self.buckets.get(&key.bucket).cloned() else {
                continue;
            };
            let replicas = self
                .layout
                .preference_list(partition, props.n as usize)
                .to_vec();
            if replicas.first() != Some(&self.id()) {
                continue;
            }
            let needed = props.w.required(replicas.len() as u8).unwrap_or(1);
            let write = WriteRequest {
                key,
                value: None,
                content_type: String::new(),
                context: Some(object.context()),
                w: None,
                timeout_ms: None,
                sloppy: Some(false),
                ttl_ms: None,
            };
            let deadline = ctx.now.plus_ms(self.config.request_timeout_ms);
            self.start_write(
                ctx,
                ReplyTo::Internal,
                write,
                &props,
                partition,
                replicas,
                needed,
                deadline,
            );
            self.expired_deleted += 1;
            deletes += 1;
        }
    }

    // ----- anti-entropy ------------------------------------------------------------------

    /// Rebuilds every Merkle tree from the store (at start: trees live in memory only).
    fn load_trees<S: Store>(&mut self, store: &mut S) {
        for p in 0..self.layout.partition_count() {
            let mut after: Option<Vec<u8>> = None;
            // Bounded by the partition's size, one page at a time.
            for _ in 0..1_000_000 {
                let Ok(page) =
                    store.scan_partition(PartitionId(p), after.as_deref(), SCAN_ENTRIES_MAX)
                else {
                    break;
                };
                let Some((last, _)) = page.last() else { break };
                after = Some(last.clone());
                for (k, v) in &page {
                    if let Ok((partition, key)) = ObjectKey::from_storage_key(k) {
                        let n = self
                            .buckets
                            .get(&key.bucket)
                            .map_or(BucketProps::default().n, |(b, _)| b.n);
                        self.trees
                            .entry((partition, n))
                            .or_default()
                            .update(k, Some(object_hash(v)));
                    }
                }
            }
        }
    }

    /// Starts an exchange over the next tree this node shares with a peer believed up. Trees
    /// of partitions that lost hints to a full budget go first.
    fn start_exchange<S: Store>(&mut self, ctx: &mut Ctx<'_, S>) {
        if self.exchanges.len() >= AE_EXCHANGES_MAX {
            return;
        }
        let me = self.id();
        let mut candidates: Vec<(PartitionId, u8)> = Vec::new();
        let ns: BTreeSet<u8> = self.buckets.values().map(|(p, _)| p.n).collect();
        for p in 0..self.layout.partition_count() {
            for n in &ns {
                // A tree empty here is left to peers that hold data to start from.
                let holds = self
                    .trees
                    .get(&(PartitionId(p), *n))
                    .is_some_and(|t| !t.is_empty());
                if holds
                    && self
                        .layout
                        .preference_list(PartitionId(p), *n as usize)
                        .contains(&me)
                {
                    candidates.push((PartitionId(p), *n));
                }
            }
        }
        if candidates.is_empty() {
            return;
        }
        if let Some(dirty) = self
            .hints
            .dirty
            .iter()
            .copied()
            .find(|d| candidates.iter().any(|(p, _)| p == d))
            && let Some(pos) = candidates.iter().position(|(p, _)| *p == dirty)
        {
            candidates.rotate_left(pos);
        } else {
            let at = (self.ae_cursor as usize) % candidates.len();
            candidates.rotate_left(at);
        }
        self.ae_cursor += 1;
        let (partition, n) = candidates[0];
        let peers: Vec<NodeId> = self
            .layout
            .preference_list(partition, n as usize)
            .iter()
            .copied()
            .filter(|p| *p != me && self.detector.is_alive(*p, ctx.now))
            .collect();
        if peers.is_empty() {
            return;
        }
        let peer = peers[(self.ae_cursor as usize / candidates.len().max(1)) % peers.len()];
        let req = self.new_request(ctx.rng);
        let deadline = ctx.now.plus_ms(self.config.request_timeout_ms);
        self.exchanges.insert(
            req,
            Exchange {
                peer,
                partition,
                n,
                level: 0,
                indices: vec![0],
                pushed: 0,
                deadline,
            },
        );
        self.deadlines.insert((deadline, req));
        self.send(
            peer,
            Message::AeTreeRequest {
                req,
                partition: partition.0,
                n,
                level: 0,
                indices: vec![0],
            },
        );
    }

    fn tree_hashes(
        &self,
        partition: PartitionId,
        n: u8,
        level: usize,
        indices: &[u32],
    ) -> Vec<u64> {
        match self.trees.get(&(partition, n)) {
            Some(t) => t.hashes(level, indices),
            None => MerkleTree::default().hashes(level, indices),
        }
    }

    /// The peer's hashes at one level: descend into the children of those that differ.
    fn on_tree_response<S: Store>(
        &mut self,
        ctx: &mut Ctx<'_, S>,
        req: RequestId,
        theirs: Vec<u64>,
    ) {
        let Some(x) = self.exchanges.get(&req) else {
            return;
        };
        let ours = self.tree_hashes(x.partition, x.n, x.level, &x.indices);
        if theirs.len() != ours.len() {
            return;
        }
        let differ = differing(&x.indices, &ours, &theirs);
        if differ.is_empty() {
            return self.finish_exchange(ctx.now, req, 0);
        }
        let (peer, partition, n, level) = (x.peer, x.partition, x.n, x.level);
        if level + 1 < LEVELS {
            let indices: Vec<u32> = differ.iter().flat_map(|i| children(level, *i)).collect();
            if let Some(x) = self.exchanges.get_mut(&req) {
                x.level = level + 1;
                x.indices = indices.clone();
            }
            self.send(
                peer,
                Message::AeTreeRequest {
                    req,
                    partition: partition.0,
                    n,
                    level: (level + 1) as u8,
                    indices,
                },
            );
        } else {
            let segments: Vec<u32> = differ.into_iter().take(AE_SEGMENTS_PER_ROUND).collect();
            if let Some(x) = self.exchanges.get_mut(&req) {
                x.level = LEVELS;
                x.indices = segments.clone();
            }
            self.send(
                peer,
                Message::AeSegmentRequest {
                    req,
                    partition: partition.0,
                    n,
                    segments,
                },
            );
        }
    }

    /// The peer's entries of the differing segments: push what only this node has, fetch
    /// what the peer has that differs.
    fn on_segment_response<S: Store>(
        &mut self,
        ctx: &mut Ctx<'_, S>,
        req: RequestId,
        entries: Vec<(u32, Vec<AeEntry>)>,
    ) {
        let Some(x) = self.exchanges.get(&req) else {
            return;
        };
        let (peer, partition, n) = (x.peer, x.partition, x.n);
        let empty = MerkleTree::default();
        let tree = self.trees.get(&(partition, n)).unwrap_or(&empty);
        let mut fetch = Vec::new();
        let mut push = Vec::new();
        for (seg, list) in entries {
            let theirs: Vec<(Vec<u8>, u64)> = list.into_iter().map(|e| (e.key, e.hash)).collect();
            for key in differing_keys(tree.segment(seg as usize), &theirs) {
                if theirs.iter().any(|(k, _)| *k == key) {
                    fetch.push(StorageKey(key));
                } else {
                    push.push(key);
                }
            }
        }
        fetch.truncate(AE_KEYS_PER_ROUND);
        push.truncate(AE_KEYS_PER_ROUND);
        let pushed = push.len() as u64;
        let push: Vec<Vec<u8>> = push
            .into_iter()
            .filter(|k| !self.unsynced.contains_key(k))
            .collect();
        for key in push {
            if let (Ok(Some(object)), Ok((_, okey))) = (
                self.load(ctx.store, &key),
                ObjectKey::from_storage_key(&key),
            ) {
                self.send(peer, Message::RepairRequest { key: okey, object });
            }
        }
        if fetch.is_empty() {
            return self.finish_exchange(ctx.now, req, pushed);
        }
        if let Some(x) = self.exchanges.get_mut(&req) {
            x.pushed = pushed;
        }
        self.send(peer, Message::AeFetchRequest { req, keys: fetch });
    }

    /// The peer's versions of the differing keys: merge them here, and send the merged object
    /// back wherever it differs from the peer's.
    fn on_fetch_response<S: Store>(
        &mut self,
        ctx: &mut Ctx<'_, S>,
        req: RequestId,
        objects: Vec<(StorageKey, Object)>,
    ) {
        let Some(x) = self.exchanges.get(&req) else {
            return;
        };
        let (peer, pushed) = (x.peer, x.pushed);
        let mut repaired = pushed;
        for (skey, theirs) in objects {
            let Ok((_, key)) = ObjectKey::from_storage_key(&skey.0) else {
                continue;
            };
            if self.merge_into_store(ctx, &key, &theirs, false).is_err() {
                continue;
            }
            repaired += 1;
            if let Ok(Some(merged)) = self.load(ctx.store, &skey.0)
                && merged != theirs
                && !self.unsynced.contains_key(&skey.0)
            {
                self.send(
                    peer,
                    Message::RepairRequest {
                        key,
                        object: merged,
                    },
                );
            }
        }
        self.finish_exchange(ctx.now, req, repaired);
    }

    fn finish_exchange(&mut self, now: Timestamp, req: RequestId, repaired: u64) {
        if let Some(x) = self.exchanges.remove(&req) {
            self.ae.exchanges_completed += 1;
            self.ae.keys_repaired += repaired;
            let entry = self.ae.partitions.entry(x.partition.0).or_insert((now, 0));
            *entry = (now, entry.1 + repaired);
            if repaired == 0 {
                self.hints.dirty.remove(&x.partition);
            }
        }
    }

    // ----- hinted handoff ----------------------------------------------------------------

    /// Rebuilds the hint index from the store (at start).
    fn load_hints<S: Store>(&mut self, store: &mut S) {
        let mut after: Option<Vec<u8>> = None;
        // Bounded: the hints of every owner fit their budgets.
        for _ in 0..1_000_000 {
            let page =
                match store.scan_partition(HINTS_PARTITION, after.as_deref(), SCAN_ENTRIES_MAX) {
                    Ok(p) => p,
                    Err(_) => return,
                };
            let Some((last, _)) = page.last() else { return };
            after = Some(last.clone());
            for (k, v) in &page {
                if let Some((owner, object_key)) = parse_hint_key(k) {
                    self.hints.set(owner, object_key, v.len() as u64);
                }
            }
        }
    }

    fn hint_read<S: Store>(
        &self,
        store: &mut S,
        owner: NodeId,
        key: &ObjectKey,
    ) -> Result<Option<Object>, ReplicaError> {
        let partition = self.layout.partition_for(key.bucket.as_str(), key.key());
        self.load(store, &hint_key(owner, &key.storage_key(partition)))
    }

    /// Merges `object` into the hint held for `owner`, within the owner's byte budget.
    fn store_hint<S: Store>(
        &mut self,
        ctx: &mut Ctx<'_, S>,
        owner: NodeId,
        key: &ObjectKey,
        object: &Object,
    ) -> Result<(), ReplicaError> {
        if owner == self.id() {
            // The layout says this node is the owner after all: keep it as a replica would.
            return self.merge_into_store(ctx, key, object, true);
        }
        if let Some(why) = &self.poisoned {
            return Err(ReplicaError::Store(format!("node refuses writes: {why}")));
        }
        let partition = self.layout.partition_for(key.bucket.as_str(), key.key());
        let object_key = key.storage_key(partition);
        let hkey = hint_key(owner, &object_key);
        let merged = match self.load(ctx.store, &hkey)? {
            None => object.clone(),
            Some(held) => held.merge(object).map_err(|_| ReplicaError::ModeMismatch)?,
        };
        let bytes = encode_object(&merged);
        let old = self.hints.size_of(owner, &object_key).unwrap_or(0);
        let total = self.hints.bytes_for(owner) - old + bytes.len() as u64;
        if total > self.config.hints_bytes_max {
            self.hints.counters.dropped += 1;
            self.hints.mark_dirty(partition);
            self.outputs
                .push_back(Output::HintBudgetFull { owner, partition });
            return Err(ReplicaError::HintBudgetFull {
                owner,
                bytes: self.hints.bytes_for(owner),
                max: self.config.hints_bytes_max,
            });
        }
        let size = bytes.len() as u64;
        let mut batch = WriteBatch::default();
        batch.put(hkey, bytes);
        ctx.store
            .write(batch)
            .map_err(|e| ReplicaError::Store(e.to_string()))?;
        self.hints.set(owner, &object_key, size);
        self.hints.counters.stored += 1;
        Ok(())
    }

    /// Offers hints to every owner believed up, at most [`HANDOFF_IN_FLIGHT_MAX`] at a time
    /// per owner, so handoff never floods a node that just came back.
    fn offer_hints<S: Store>(&mut self, ctx: &mut Ctx<'_, S>) {
        for owner in self.hints.owners() {
            if !self.detector.is_alive(owner, ctx.now) || !self.layout.contains(owner) {
                continue;
            }
            let busy: BTreeSet<Vec<u8>> = self
                .handoffs
                .values()
                .filter(|h| h.owner == owner)
                .map(|h| h.object_key.clone())
                .collect();
            let room = HANDOFF_IN_FLIGHT_MAX.saturating_sub(busy.len());
            for object_key in self.hints.next_for(owner, &busy, room) {
                let Ok(Some(object)) = self.load(ctx.store, &hint_key(owner, &object_key)) else {
                    self.hints.remove(owner, &object_key);
                    continue;
                };
                let Ok((partition, key)) = ObjectKey::from_storage_key(&object_key) else {
                    self.hints.remove(owner, &object_key);
                    continue;
                };
                // A hint holding a value older than the tombstone grace may hold what a reaped delete
                // removed: delivering it could bring a deleted value back. Drop it; the primaries
                // that acked the write have it, and anti-entropy brings it to the owner.
                if object
                    .min_timestamp()
                    .physical_ms()
                    .saturating_add(self.config.tombstone_grace_ms)
                    < ctx.now.0
                {
                    let mut batch = WriteBatch::default();
                    batch.remove(hint_key(owner, &object_key));
                    let _ = ctx.store.write(batch);
                    self.hints.remove(owner, &object_key);
                    self.hints.counters.dropped += 1;
                    self.hints.mark_dirty(partition);
                    continue;
                }
                if planted().discard_hints {
                    let mut batch = WriteBatch::default();
                    batch.remove(hint_key(owner, &object_key));
                    let _ = ctx.store.write(batch);
                    self.hints.remove(owner, &object_key);
                    continue;
                }
                let req = self.new_request(ctx.rng);
                let deadline = ctx.now.plus_ms(self.config.request_timeout_ms);
                self.send(
                    owner,
                    Message::ReplicateRequest {
                        req,
                        key,
                        object: object.clone(),
                    },
                );
                self.handoffs.insert(
                    req,
                    Handoff {
                        owner,
                        object_key,
                        sent: object,
                        deadline,
                    },
                );
                self.deadlines.insert((deadline, req));
            }
        }
    }

    /// The owner answered a hint delivery: delete the hint if it still holds what was sent.
    fn on_handoff_response<S: Store>(
        &mut self,
        ctx: &mut Ctx<'_, S>,
        req: RequestId,
        result: Result<(), ReplicaError>,
    ) {
        let Some(h) = self.handoffs.remove(&req) else {
            return;
        };
        if result.is_err() {
            return; // offered again at the next interval
        }
        let hkey = hint_key(h.owner, &h.object_key);
        if let Ok(Some(held)) = self.load(ctx.store, &hkey)
            && held == h.sent
        {
            let mut batch = WriteBatch::default();
            batch.remove(hkey);
            if ctx.store.write(batch).is_ok() {
                self.hints.remove(h.owner, &h.object_key);
                self.hints.counters.delivered += 1;
            }
        }
    }

    // ----- durability ------------------------------------------------------------------

    fn wait_for_sync<S: Store>(&mut self, ctx: &mut Ctx<'_, S>, waiter: Waiter) {
        if planted().ack_before_sync {
            return self.release(ctx, waiter, Ok(()));
        }
        self.waiters.push((self.sync_requested + 1, waiter));
    }

    fn on_synced<S: Store>(
        &mut self,
        ctx: &mut Ctx<'_, S>,
        generation: u64,
        result: Result<(), StoreError>,
    ) {
        let released: Vec<Waiter>;
        let outcome = match result {
            Ok(()) => {
                self.sync_completed = self.sync_completed.max(generation);
                let done = self.sync_completed;
                if let Some((g, mark)) = self.hlc_mark_pending
                    && g <= done
                {
                    self.hlc_mark_durable = self.hlc_mark_durable.max(mark);
                    self.hlc_mark_pending = None;
                }
                let (ready, waiting) = std::mem::take(&mut self.waiters)
                    .into_iter()
                    .partition(|(g, _)| *g <= done);
                self.waiters = waiting;
                released = ready.into_iter().map(|(_, w)| w).collect();
                self.unsynced.retain(|_, g| *g > done);
                Ok(())
            }
            Err(e) => {
                // A failed sync may have lost any unsynced write: fail every waiter, refuse
                // writes from now on.
                self.poisoned = Some(e.to_string());
                released = std::mem::take(&mut self.waiters)
                    .into_iter()
                    .map(|(_, w)| w)
                    .collect();
                Err(e.to_string())
            }
        };
        for w in released {
            self.release(ctx, w, outcome.clone());
        }
    }

    fn release<S: Store>(
        &mut self,
        ctx: &mut Ctx<'_, S>,
        waiter: Waiter,
        result: Result<(), String>,
    ) {
        match waiter {
            Waiter::LocalWrite(req) => self.on_local_write(ctx.now, req, result),
            Waiter::ReplicaAck { to, req } => {
                let result = result.map_err(ReplicaError::Store);
                self.send(to, Message::ReplicateResponse { req, result });
            }
            Waiter::Read { to, req, key } => {
                let result = match result {
                    Ok(()) => self.local_read(ctx.store, &key),
                    Err(e) => Err(ReplicaError::Store(e)),
                };
                self.send(to, Message::ReadResponse { req, result });
            }
            Waiter::LocalRead { req, key } => {
                let result = match result {
                    Ok(()) => self.local_read(ctx.store, &key),
                    Err(e) => Err(ReplicaError::Store(e)),
                };
                let me = self.id();
                self.on_read_response(ctx, me, req, result);
            }
        }
    }

    /// Answers a replicate or hint request: after the next sync if the write went through,
    /// at once with the error if not.
    fn ack_when_durable<S: Store>(
        &mut self,
        ctx: &mut Ctx<'_, S>,
        to: NodeId,
        req: RequestId,
        result: Result<(), ReplicaError>,
    ) {
        match result {
            Ok(()) => self.wait_for_sync(ctx, Waiter::ReplicaAck { to, req }),
            Err(e) => self.send(
                to,
                Message::ReplicateResponse {
                    req,
                    result: Err(e),
                },
            ),
        }
    }

    /// Whether this node's own write of `key` is not durable yet; if so, the generation of the
    /// sync that makes it durable.
    fn unsynced_generation(&self, key: &ObjectKey) -> Option<u64> {
        let partition = self.layout.partition_for(key.bucket.as_str(), key.key());
        self.unsynced.get(&key.storage_key(partition)).copied()
    }

    // ----- deadlines -------------------------------------------------------------------

    fn expire<S: Store>(&mut self, ctx: &mut Ctx<'_, S>) {
        let now = ctx.now;
        while let Some((when, req)) = self.deadlines.first().copied() {
            if when > now {
                break;
            }
            self.deadlines.pop_first();
            match self.coordinations.get_mut(&req) {
                Some(Coordination::Write(state)) if state.deadline == when => {
                    for s in state
                        .slots
                        .iter_mut()
                        .filter(|s| s.outcome == Outcome::Pending)
                    {
                        s.outcome = Outcome::Failed {
                            reason: format!("timed out after {} ms", now.ms_since(state.started)),
                        };
                    }
                    self.check_write(now, req);
                }
                Some(Coordination::Write(state))
                    if state.fallback_at == when && state.sloppy && !state.replied =>
                {
                    self.write_fallbacks(now, req);
                }
                Some(Coordination::Read(state))
                    if state.retry_at == when && state.deadline != when =>
                {
                    if !state.replied && !state.unasked.is_empty() {
                        let replicas = std::mem::take(&mut state.unasked);
                        self.ask(ctx, req, replicas);
                    }
                }
                Some(Coordination::Read(state)) if state.deadline == when => {
                    for s in state
                        .slots
                        .iter_mut()
                        .filter(|s| s.outcome == Outcome::Pending)
                    {
                        s.outcome = Outcome::Failed {
                            reason: format!("timed out after {} ms", now.ms_since(state.started)),
                        };
                    }
                    self.expire_read(ctx, req);
                }
                Some(Coordination::Forward(state)) if state.deadline == when => {
                    self.forward_timed_out(now, req)
                }
                _ => {
                    if let Some(h) = self.handoffs.get(&req)
                        && h.deadline == when
                    {
                        self.handoffs.remove(&req);
                    }
                    if let Some(x) = self.exchanges.get(&req)
                        && x.deadline == when
                    {
                        self.exchanges.remove(&req);
                        self.ae.exchanges_failed += 1;
                    }
                }
            }
        }
    }

    /// A read's deadline: answer with the quorum error if it has not been answered, then repair
    /// whoever answered stale, as when every replica has answered.
    fn expire_read<S: Store>(&mut self, ctx: &mut Ctx<'_, S>, req: RequestId) {
        let Some(Coordination::Read(state)) = self.coordinations.get(&req) else {
            return;
        };
        if !state.replied {
            let receipt = self.receipt(
                state.partition,
                state.needed,
                &state.slots,
                vec![],
                state.started,
                ctx.now,
            );
            let e = self.quorum_error("read", receipt);
            let reply_to = state.reply_to;
            self.reply(reply_to, Err(e));
            self.mark_read_replied(req);
        }
        self.finish_read(ctx, req);
    }
}

/// A total order on bucket properties, to break ties between changes with equal timestamps.
fn props_order(p: &BucketProps) -> (u8, String, String, bool) {
    (p.n, p.r.to_string(), p.w.to_string(), p.sloppy)
}

/// The join of every object (objects of another conflict mode than the first are skipped:
/// a bucket's mode never changes, so this only happens with corrupt data).
fn merge_all<'a>(objects: impl Iterator<Item = &'a Option<Object>>) -> Option<Object> {
    let mut out: Option<Object> = None;
    for o in objects.flatten() {
        out = Some(match out {
            None => o.clone(),
            Some(acc) => acc.merge(o).unwrap_or(acc),
        });
    }
    out
}
