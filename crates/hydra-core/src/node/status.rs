//! What a node reports about itself, for `/v1/status`, `/metrics` and the simulator.

use crate::hints::{HintCounters, HintTarget};
use crate::ids::{LayoutVersion, NodeId, Timestamp};
use std::collections::BTreeMap;

/// A node's view of itself.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct NodeStatus {
    pub id: NodeId,
    pub layout_version: LayoutVersion,
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
    /// Tombstones found unreaped twice the grace after their delete, deleted again to be
    /// reaped.
    pub tombstones_reissued: u64,
    /// Tombstones waiting for their grace to pass.
    pub reaps_pending: usize,
    pub clock: ClockStatus,
    /// Buckets this node created that gave way to an earlier creation elsewhere with another
    /// `n` or conflict mode (newest last, a few at most).
    pub bucket_conflicts: Vec<String>,
    /// Paxos state collection: repair rounds done and failed, keys they settled, states
    /// dropped here.
    pub paxos_repair: super::PaxosRepairStatus,
    /// Whether this node delivers the hints it holds (an operator may pause it).
    pub handoff_enabled: bool,
    /// Whether this node starts anti-entropy exchanges (an operator can pause them).
    pub anti_entropy_enabled: bool,
    /// Members' messages dropped at the peer edge (a version no node could have made, a
    /// hint for a non-member), and why the last one was.
    pub peer_messages_refused: u64,
    pub peer_refusal: Option<String>,
}

/// This node's clock against its peers' (see `node/clock.rs`).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ClockStatus {
    /// `ok`, `skewed` (coordinates no write and no lww read) or `unverified` (after a start,
    /// a jump, or a clock mark ahead of the clock, until a heartbeat round trip verifies it).
    pub state: &'static str,
    /// This node's clock minus the median of its peers' (from recent heartbeats), if measured.
    pub offset_ms: Option<i64>,
    /// Peers whose offset was measured recently.
    pub peers_measured: usize,
    /// Jumps of the wall clock seen since start.
    pub jumps: u64,
    /// Why the clock is not used, if it is not.
    pub detail: Option<String>,
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

/// Anti-entropy figures.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct AeStatus {
    pub exchanges_completed: u64,
    pub exchanges_failed: u64,
    pub keys_repaired: u64,
    /// Per partition: when its last exchange completed and the keys it repaired in all.
    pub partitions: BTreeMap<u32, (Timestamp, u64)>,
}
