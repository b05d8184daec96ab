//! Hydra's deterministic simulator: whole clusters of `hydra-core` nodes and their clients in
//! one thread, on simulated time, over a simulated network and simulated disks, with faults,
//! all drawn from one seed. The same seed always gives the same run.
//!
//! Start reading at [`run`]. [`world`] moves messages, timers and syncs; [`workload`] holds the
//! clients (read-modify-write of per-key sets, with contexts) and the history they record;
//! [`check`] holds the checkers of docs/DESIGN.md's guarantees. Keys are sets in `siblings`
//! buckets (read-modify-write with contexts, some blind) and registers in `lww` buckets
//! (unique values, some with short TTLs, written with or without the newest version the
//! client saw; TTL changes and deletes bound to the version read, as `EXPIRE`, `PERSIST` and
//! `GETDEL` send them), each kind in a strict and a sloppy bucket. Each seed runs one
//! durability mode: `fsync`, `periodic` or `none`.
//!
//! Faults: message drops, duplicates, delays (and so reordering), network partitions, crashes
//! of one or several nodes at once (losing writes not yet synced) and restarts, pauses (a
//! node frozen for 1 to 8 s with its state, as by SIGSTOP), clock skew between nodes, and
//! clock jumps (2 s to an hour, forward or back, across restarts, put right later). After the
//! workload the world heals, every key is read at `r = all`, and the checkers run (without
//! fsync, where a replica's ack may be lost by design, (a) checks the final state only and
//! (c), (d) and the loss half of (e) are off):
//! (a) no acknowledged add is missing from any later quorum read or from the final state;
//! (b) after healing and the final reads (with read repair), every replica of every key holds
//!     the same object;
//! (c) siblings per key never exceed the writers that could have been concurrent;
//! (d) no element of a deleted set comes back in a later read (no resurrection);
//! (e) `lww` order and expiry: a register read never returns a value that an acknowledged,
//!     unexpired write had replaced before the read began (replaced: the writer had seen it,
//!     or it was acknowledged more than the clock skew bound earlier), nor a value whose TTL
//!     had certainly run out;
//! (f) no replica stores more siblings than a write may make, and a flooded key stays
//!     readable and resolvable; (g) no garbage is left after healing;
//! (h) compare-and-set (Paxos) is linearizable: the applied writes of a key form one chain
//!     from absent in an order real time allows, and every value a serial read or a failed
//!     condition returned was current at some point during that operation (in every
//!     durability mode);
//! (i) no node refuses a member's message at its peer edge (the checks there are never
//!     stricter than what the protocol sends);
//! (j) after healing, a listing of each bucket (pages of a few keys) returns exactly the
//!     keys whose objects show a value, each once;
//! (k) a bucket truncated while a node is down answers that the node did not confirm, and
//!     once the node is back no store holds an object of the bucket and no listing shows one;
//! (l) hashes and sets (with `--collections`) keep every acknowledged add and exact
//!     increment;
//! (m) at the end, every node's Merkle trees (in memory, and the leaves and entries its
//!     store holds, which a restart loads) agree with the objects its store holds.
//! Each is shown catching a planted bug in `tests/checkers.rs` ((e) four: an expiry stamped
//! now, writes ignoring the client's context, a node using a clock its peers disown, and
//! read-then-write operations writing the old value back).
//!
//! Must not: read the clock, use OS randomness, iterate hash maps (determinism), or do I/O.

pub mod aebench;
pub mod check;
pub mod check_cas;
pub mod workload;
pub mod world;

pub use world::{Durability, SimConfig, SimReport, run};
