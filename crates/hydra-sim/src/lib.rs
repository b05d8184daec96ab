//! Hydra's deterministic simulator: whole clusters of `hydra-core` nodes and their clients in
//! one thread, on simulated time, over a simulated network and simulated disks, with faults,
//! all drawn from one seed. The same seed always gives the same run.
//!
//! Start reading at [`run`]. [`world`] moves messages, timers and syncs; [`workload`] holds the
//! clients (read-modify-write of per-key sets, with contexts) and the history they record;
//! [`check`] holds the checkers of docs/DESIGN.md's guarantees.
//!
//! Faults: message drops, duplicates, delays (and so reordering), network partitions, crashes
//! of one or several nodes at once (losing writes not yet synced) and restarts, pauses (a
//! node frozen for 1 to 8 s with its state, as by SIGSTOP), clock skew between nodes. After the workload the world heals, every key is read at `r = all`, and the
//! checkers run:
//! (a) no acknowledged add is missing from any later quorum read or from the final state;
//! (b) after healing and the final reads (with read repair), every replica of every key holds
//!     the same object;
//! (c) siblings per key never exceed the writers that could have been concurrent;
//! (d) no element of a deleted set comes back in a later read (no resurrection).
//! Each is shown catching a planted bug in `tests/checkers.rs`.
//!
//! Must not: read the clock, use OS randomness, iterate hash maps (determinism), or do I/O.

pub mod aebench;
pub mod check;
pub mod workload;
pub mod world;

pub use world::{SimConfig, SimReport, run};
