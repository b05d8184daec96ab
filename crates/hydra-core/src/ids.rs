//! Small identifier and time newtypes shared by every module.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A node of the cluster. Version vectors are keyed by it, so it must be stable for the life of
/// the node's data (it is configured, never generated at start).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub u64);

/// The top bit of a [`NodeId`] names not a node but a node's Paxos writer: the actor of the
/// compare-and-set commits it coordinates in `siblings` buckets (see `paxos/coordinator.rs`).
/// Configured node ids stay below it.
pub const PAXOS_WRITER_BIT: u64 = 1 << 63;

impl NodeId {
    /// The version-vector actor of this node's compare-and-set commits in `siblings` buckets,
    /// apart from the node's plain writes: those count their dots by a durable local write,
    /// these by the chain of a key's commits (each built on a read of the one before).
    pub fn paxos_writer(self) -> NodeId {
        NodeId(self.0 | PAXOS_WRITER_BIT)
    }

    pub fn is_paxos_writer(self) -> bool {
        self.0 & PAXOS_WRITER_BIT != 0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_paxos_writer() {
            write!(f, "n{}/paxos", self.0 & !PAXOS_WRITER_BIT)
        } else {
            write!(f, "n{}", self.0)
        }
    }
}

/// Identifies one internode request of the node that sent it; replies echo it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RequestId(pub u64);

/// Identifies one client request handed to a node by its shell; the reply echoes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ClientRequestId(pub u64);

/// One of the fixed number of partitions of the key space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PartitionId(pub u32);

/// Version of the cluster layout; every internode message carries the sender's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LayoutVersion(pub u64);

/// Wall-clock time in milliseconds, as the caller supplies it. The core never reads a clock:
/// the node shell passes the system time, the simulator its simulated time.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Timestamp(pub u64);

impl Timestamp {
    pub fn plus_ms(self, ms: u64) -> Timestamp {
        Timestamp(self.0.saturating_add(ms))
    }

    pub fn ms_since(self, earlier: Timestamp) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}
