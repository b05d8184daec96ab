//! Every named bound of the core. A request that exceeds one gets an error that names it.

/// Longest key, in bytes.
pub const KEY_BYTES_MAX: usize = 1024;
/// Longest bucket name, in bytes.
pub const BUCKET_NAME_BYTES_MAX: usize = 64;
/// Default largest value, in bytes (configurable per node up to [`VALUE_BYTES_CEILING`]).
pub const VALUE_BYTES_DEFAULT_MAX: usize = 8 * 1024 * 1024;
/// Hard ceiling for the configurable value limit.
pub const VALUE_BYTES_CEILING: usize = 64 * 1024 * 1024;
/// Longest content type, in bytes.
pub const CONTENT_TYPE_BYTES_MAX: usize = 256;
/// Most siblings one object may hold: a write, and a replica's merge (replication, a hint,
/// a repair, anti-entropy), that would store more is refused; a read may return more (the
/// union of replicas that each hold at most this many) so that one write resolves them.
pub const SIBLINGS_MAX: usize = 100;
/// Most siblings a decoded object may hold: more than [`SIBLINGS_MAX`] only in objects stored
/// before merges respected the limit (each coordinator's entry held at most
/// [`SIBLINGS_MAX`], and only the `n` primaries coordinate), which must stay readable.
pub const SIBLINGS_DECODE_MAX: usize = REPLICATION_FACTOR_MAX as usize * SIBLINGS_MAX;
/// Most entries of a version vector (one per coordinating node; nodes are bounded too).
pub const VECTOR_ENTRIES_MAX: usize = 1024;
/// Longest encoded context token a client may send back, in characters.
pub const CONTEXT_CHARS_MAX: usize = 16 * 1024;
/// Most nodes in a layout.
pub const NODES_MAX: usize = 1024;
/// Largest replication factor a bucket may have.
pub const REPLICATION_FACTOR_MAX: u8 = 7;
/// Fewest and most partitions of a layout (always a power of two).
pub const PARTITIONS_MIN: u32 = 1;
pub const PARTITIONS_MAX: u32 = 65536;
/// Largest capacity weight of one node.
pub const CAPACITY_MAX: u32 = 1000;
/// Largest internode message, in bytes (a full object of the largest value plus its siblings
/// must fit, so this is the value ceiling plus room for metadata).
pub const MESSAGE_BYTES_MAX: usize = VALUE_BYTES_CEILING + 1024 * 1024;
/// Most coordinations (client requests in flight) one node keeps before it answers `Overloaded`.
pub const COORDINATIONS_MAX: usize = 10_000;
/// Answered writes one node keeps waiting for their other replicas' acks at most (the
/// oldest then ends as if its deadline passed: its silent replicas get hints).
pub const WRITES_LINGERING_MAX: usize = COORDINATIONS_MAX;
/// Longest request timeout a client may ask for, in milliseconds.
pub const TIMEOUT_MS_MAX: u64 = 120_000;
/// Most buckets a cluster may have.
pub const BUCKETS_MAX: usize = 1000;
/// Longest TTL a value may carry, in seconds (ten years).
pub const TTL_SECS_MAX: u64 = 10 * 365 * 86_400;
/// Largest stored object (all siblings together): a value at the ceiling and its metadata,
/// and it must fit one internode message with room for the key and the envelope.
pub const OBJECT_BYTES_MAX: usize = VALUE_BYTES_CEILING + 512 * 1024;
/// Largest counter a client context may carry (room left for increments).
pub const CONTEXT_COUNTER_MAX: u64 = 1 << 62;
/// Elements (hash fields, set members) one hash or set holds at most.
pub const COLLECTION_ELEMENTS_MAX: usize = 100_000;
/// Largest hash field or set member name, in bytes.
pub const ELEMENT_BYTES_MAX: usize = 64 * 1024;
/// Elements one update of a hash or set names at most (adds and removes together).
pub const UPDATE_ELEMENTS_MAX: usize = COLLECTION_ELEMENTS_MAX;
/// Dots a hash's or set's causal context keeps beyond its vector at most (removes of adds the
/// copy has not received yet; they fold into the vector once those arrive).
pub const CLOUD_DOTS_MAX: usize = 10_000;
/// Keys one page of a listing (`SCAN`, `KEYS`, the HTTP listing) holds at most, per
/// replica and in the answer.
pub const SCAN_PAGE_KEYS_MAX: usize = 1_000;
/// Entries one page of a partition scan holds at most.
pub const SCAN_ENTRIES_MAX: usize = 10_000;
/// Objects one call of the full sweep (old tombstones, missed expiries) reads at least and
/// in its first cycle; later cycles read what finishes a cycle within a tombstone grace, up
/// to [`SCAN_ENTRIES_MAX`] (`node/gc.rs` `sweep_page_for`).
pub const SWEEP_PAGE_MIN: usize = 500;

/// Deletes of expired values one expiry sweep issues at most (also within
/// [`EXPIRY_IN_FLIGHT_MAX`]).
pub const EXPIRY_DELETES_MAX: usize = 500;
/// Batches of expiry deletes (each up to [`EXPIRY_DELETES_MAX`] values, one message per
/// other primary) one node has in flight at most.
pub const EXPIRY_BATCHES_MAX: usize = 4;
/// Expiry deletes of `siblings` values (and deletes of old tombstones), each a write
/// coordination, one node has in flight at most.
pub const EXPIRY_IN_FLIGHT_MAX: usize = 64;
/// Entries of the expiry index one sweep reads at most.
pub const EXPIRY_INDEX_PAGE: usize = 4 * EXPIRY_DELETES_MAX;
/// Reaps one call of the node carries out at most (the rest wait for the next call, so a
/// burst of due reaps cannot hold the node for seconds and delay its heartbeats).
pub const REAPS_PER_CALL_MAX: usize = 500;
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

/// Objects one step of the Merkle trees' rebuild (at start, and when a bucket's n changed)
/// takes in while the node has nothing else to do; such a step runs every millisecond until
/// the rebuild is done, between the node's other calls.
pub const TREE_REBUILD_KEYS_PER_CALL: usize = 1_000;
/// Objects one rebuild step takes in when requests or messages arrived since the last one,
/// and how long it then waits: about a fifth of the core thread, not all of it (a rebuild
/// of 10 million objects at full pace took the whole core for 15-20 s after a restart, and
/// clients got 1% of their throughput), in steps short enough to add little latency.
pub const TREE_REBUILD_KEYS_BUSY: usize = 250;
/// Milliseconds between rebuild steps while the node serves (see [`TREE_REBUILD_KEYS_BUSY`]).
pub const TREE_REBUILD_BUSY_MS: u64 = 2;
/// Objects of one partition read at most to answer for a Merkle exchange's differing
/// segments (the trees keep no per-key entries; see `node/trees.rs`).
pub const AE_SCAN_KEYS_MAX: usize = 4_000_000;
/// Keys one step of a truncated bucket's purge looks at; a step runs every millisecond
/// until the purge is done, between the node's other calls.
pub const PURGE_KEYS_PER_CALL: usize = 1_000;
/// How long a paced walk (the trees' rebuild, a bucket's purge) waits before it retries a
/// page the store failed to read, in ms.
pub const TREE_MOVE_RETRY_MS: u64 = 1_000;

/// Hint deliveries in flight per owner.
pub const HANDOFF_IN_FLIGHT_MAX: usize = 16;
/// Partitions remembered as needing anti-entropy because a hint was dropped.
pub const DIRTY_PARTITIONS_MAX: usize = 65_536;
/// Most hints a coordinator queues within one call of the node.
pub const COORDINATOR_HINTS_MAX: usize = 10_000;
/// Most forwarded-write ids a node remembers for deduplication.
pub const FORWARDS_SEEN_MAX: usize = 100_000;
/// Commits an acceptor remembers per key (ballot, value, base): the last few, so a
/// coordinator beaten by several other commits can still prove its own proposal was never
/// chosen (see `paxos::AcceptorState`).
pub const PAXOS_COMMITS_KEPT: usize = 4;
/// Commits of one key a node's acceptor logs for the compare-and-set rounds it coordinates
/// on that key (see `node/paxos.rs` `CommitLog`): far more than the acceptor state keeps, so
/// a round in doubt while many commits passed can still learn what became of its proposal.
pub const PAXOS_COMMIT_LOG_MAX: usize = 512;
/// Prepare rounds one compare-and-set starts at most before it gives up (`cas_contention`).
pub const PAXOS_ATTEMPTS_MAX: u32 = 64;
/// Longest random wait, in milliseconds, before a beaten compare-and-set prepares again.
pub const PAXOS_BACKOFF_MS_MAX: u64 = 100;
/// Keys one primary lists for a Paxos repair round per `PaxosFenceRequest` (the round asks
/// again after the last one listed).
pub const PAXOS_REPAIR_KEYS_MAX: usize = 256;
/// Serial reads one Paxos repair round runs at once.
pub const PAXOS_REPAIRS_IN_FLIGHT: usize = 4;
/// Paxos states one primary looks at per page when a `PaxosLowBound` comes (16 pages at
/// most; the rest wait for the next round).
pub const PAXOS_COLLECT_MAX: usize = 1_000;

// Related bounds, checked when the crate compiles.
const _: () = assert!(VALUE_BYTES_DEFAULT_MAX <= VALUE_BYTES_CEILING);
const _: () = assert!(
    VALUE_BYTES_CEILING < OBJECT_BYTES_MAX,
    "one value fits an object"
);
const _: () = assert!(
    OBJECT_BYTES_MAX < MESSAGE_BYTES_MAX,
    "one object fits a message"
);
// A fetch answer holds its first object whatever its size, then more within the budget.
const _: () = assert!(AE_FETCH_BYTES_MAX <= OBJECT_BYTES_MAX);
const _: () = assert!(
    MESSAGE_BYTES_MAX - OBJECT_BYTES_MAX >= 256 * 1024,
    "key + envelope"
);
const _: () = assert!(REPLICATION_FACTOR_MAX as usize <= NODES_MAX);
const _: () = assert!(PARTITIONS_MIN.is_power_of_two() && PARTITIONS_MAX.is_power_of_two());
const _: () = assert!(
    TTL_SECS_MAX.checked_mul(1000).is_some(),
    "a TTL in ms fits u64"
);
