//! Hydra's replication core: everything that decides, and nothing that does I/O.
//!
//! This crate owns placement ([`layout`]), versions ([`version`]: dotted version vector sets
//! and last-write-wins registers, [`hlc`] timestamps), the node state machine that coordinates
//! and serves reads and writes ([`node`]), failure detection ([`failure`]), hinted handoff
//! ([`hints`]), Merkle trees for anti-entropy ([`merkle`]), the storage boundary ([`store`]: the
//! [`store::Store`] trait and the in-memory [`store::MemStore`]), and the versioned byte
//! encodings of messages and stored objects ([`message`]).
//!
//! Start reading at [`node::Node`]: the shell (or the simulator) calls
//! [`node::Node::handle`] with an [`node::Input`] and a [`node::Ctx`] (the time, the store, a
//! seeded random source), drains [`node::Node::poll_output`], and calls again at
//! [`node::Node::next_deadline`]. `Node` is a router: each protocol (write and read
//! coordination, forwarding, the replica side, hinted handoff, anti-entropy, reaping and
//! expiry, compare-and-set through Paxos ([`paxos`]), buckets, membership, durability) is a part in `src/node/` with its own state,
//! messages and invariants; the table in `node/mod.rs` says which file holds which. Every
//! bound is in [`limits`].
//!
//! What this crate must not do: no async, no sockets, no files, no threads, no clock reads, no
//! OS randomness, no hash-map iteration order leaking into decisions. The simulator depends on
//! every run from a seed being identical. `tests/purity.rs` checks the dependency list, and
//! clippy's `disallowed-methods` forbids clock and randomness sources.

pub mod bucket;
pub mod bugs;
pub mod collection;
pub mod content_type;
pub mod counters;
pub mod failure;
pub mod hints;
pub mod hlc;
pub mod id_map;
pub mod ids;
pub mod key;
pub mod layout;
pub mod limits;
pub mod merkle;
pub mod message;
pub mod node;
pub mod paxos;
pub mod store;
pub mod version;

pub use ids::{ClientRequestId, LayoutVersion, NodeId, PartitionId, RequestId, Timestamp};
