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
/// Most siblings one object may hold; a write that would exceed it is refused.
pub const SIBLINGS_MAX: usize = 100;
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
/// Longest request timeout a client may ask for, in milliseconds.
pub const TIMEOUT_MS_MAX: u64 = 120_000;
/// Most buckets a cluster may have.
pub const BUCKETS_MAX: usize = 1000;
