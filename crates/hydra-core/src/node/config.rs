//! The settings of one node that the core needs, and their defaults (written here once: the
//! node shell's configuration file starts from [`NodeConfig::new`]).

use crate::bucket::BucketProps;
use crate::ids::NodeId;
use crate::key::BucketName;
use crate::limits::{VALUE_BYTES_CEILING, VALUE_BYTES_DEFAULT_MAX};
use std::collections::BTreeMap;

/// A node's settings that the core needs. Field names are the configuration file's keys.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub id: NodeId,
    pub buckets: BTreeMap<BucketName, BucketProps>,
    /// Deadline of a client request that names none.
    pub request_timeout_ms: u64,
    /// How often this node sends a heartbeat to every peer.
    pub heartbeat_interval_ms: u64,
    /// Phi above which a peer is believed down (Cassandra's `phi_convict_threshold`).
    pub phi_convict_threshold: f64,
    /// A sloppy write gives a fallback to each primary that has not acked after this long,
    /// or after half the request's time, if that is sooner.
    pub fallback_after_ms: u64,
    /// Bytes of hints this node holds for one owner at most; beyond, hints are dropped and
    /// the partition is left to anti-entropy.
    pub hints_bytes_max: u64,
    /// How often hints are offered to owners that are up again (0: never).
    pub handoff_interval_ms: u64,
    /// How often an anti-entropy exchange starts (one at a time); 0 turns anti-entropy off.
    pub anti_entropy_interval_ms: u64,
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
    /// How long a walk over this node's Paxos state waits after the last (each walk runs a
    /// repair round per group it holds state of, one at a time); 0 turns Paxos state
    /// collection off.
    pub paxos_repair_interval_ms: u64,
    /// A read whose coordinator reads the key itself asks the other primaries for digests of
    /// what they store, and for objects only where they differ (`node/read.rs`); off, every
    /// replica asked sends its object (the reads of builds before digest reads: the
    /// simulator's seeds that found bugs then replay as they ran).
    pub digest_reads: bool,
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
            phi_convict_threshold: 8.0,
            fallback_after_ms: 1_000,
            hints_bytes_max: 64 * 1024 * 1024,
            handoff_interval_ms: 200,
            anti_entropy_interval_ms: 1_000,
            tombstone_grace_ms: 3_600_000,
            max_clock_skew_ms: 5_000,
            value_bytes_max: VALUE_BYTES_DEFAULT_MAX.min(VALUE_BYTES_CEILING),
            gossip_interval_ms: 5_000,
            read_retry_after_ms: 20,
            paxos_repair_interval_ms: 60_000,
            digest_reads: true,
        }
    }
}
