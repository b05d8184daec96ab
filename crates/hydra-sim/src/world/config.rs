//! What a simulated run is: its configuration, drawn from the seed, and the node
//! configuration and buckets every simulated node runs with.

use super::TOMBSTONE_GRACE_MS;
use hydra_core::bucket::{BucketProps, CasMode, ConflictMode};
use hydra_core::ids::NodeId;
use hydra_core::key::BucketName;
use hydra_core::node::NodeConfig;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The durability mode of every node, as `[node] durability` sets it: acks wait for an
/// fsync, or for none (`periodic`: the store is synced every interval in the background;
/// `none`: never). Either way a sync covering a new dot or a clock mark is real.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    Fsync,
    Periodic { interval_ms: u64 },
    None,
}

/// What to simulate. [`SimConfig::from_seed`] draws a configuration from the seed.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub seed: u64,
    pub nodes: usize,
    pub clients: usize,
    /// Keys written at once; a key retires after `adds_per_key` adds and a new one replaces it.
    pub active_keys: usize,
    pub adds_per_key: usize,
    /// Length of the faulty workload phase.
    pub duration_ms: u64,
    pub drop_probability: f64,
    pub duplicate_probability: f64,
    pub delay_ms_max: u64,
    /// Mean time between fault events (partitions, heals, crashes, restarts); 0 disables them.
    pub fault_interval_ms: u64,
    pub fsync_ms_max: u64,
    pub clock_skew_ms_max: u64,
    /// Merkle anti-entropy on. With it, convergence (b) is checked before the final reads:
    /// every replica of every key, read or not.
    pub anti_entropy: bool,
    /// Bytes of hints a node keeps per owner; small in some seeds, so a node stays down longer
    /// than its budget lasts and anti-entropy must make up for the dropped hints.
    pub hints_bytes_max: u64,
    /// When the nodes' acks wait for fsync (see [`Durability`]).
    pub durability: Durability,
    /// Partitions of the ring (a power of two). Each anti-entropy tick sweeps one partition
    /// for expired values, so with fewer partitions a returning replica's sweep reaches its
    /// stale keys sooner (before anti-entropy has brought them up to date).
    pub partitions: u32,
    /// The mixing run: the share of compare-and-set clients' writes sent as plain writes
    /// (the bucket is `cas = conditional_only`, so replicas holding the key's Paxos state
    /// refuse them). 0 in the sweep; `--mix-plain` sets it.
    pub plain_cas_writes: f64,
    /// Milliseconds between a node's walks of Paxos repair rounds (0: no Paxos state
    /// collection). Short, so collection runs many times through the faults.
    pub paxos_repair_interval_ms: u64,
    /// The strict buckets (the `lww` one's registers, the `siblings` one's sets, the
    /// compare-and-set keys and the counter) are `cas = all_writes`: every write and default
    /// read there goes through Paxos.
    pub all_writes: bool,
    /// The compare-and-set keys and the counter live in the strict `siblings` bucket (their
    /// commits are events of the coordinators' Paxos writers), not the strict `lww` one.
    pub cas_siblings: bool,
    /// Clients update hashes and sets too (`collections.rs`, checker (l)). Off in
    /// `from_seed`, so the other workloads' seeds replay as before (`--collections` and the
    /// collection tests turn it on).
    pub collections: bool,
    /// Reads ask for digests (`NodeConfig::digest_reads`). On in `from_seed`; off, a seed runs
    /// as it did before digest reads (seeds that found bugs then are pinned that way).
    pub digest_reads: bool,
    /// Print to stderr every message delivered whose debug form contains this text (say a
    /// key's bytes, `key: [107, 51] }` for `k3`), and every crash, restart and clock jump:
    /// the trail of one seed's failure (`hydra-sim --seed N --trace TEXT`).
    pub trace: Option<String>,
}

impl SimConfig {
    pub fn from_seed(seed: u64) -> SimConfig {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_c0f1_9000_0000);
        SimConfig {
            seed,
            nodes: rng.random_range(3..=7),
            clients: rng.random_range(2..=6),
            active_keys: rng.random_range(1..=6),
            adds_per_key: 30,
            duration_ms: 20_000,
            drop_probability: rng.random_range(0.0..0.05),
            duplicate_probability: rng.random_range(0.0..0.03),
            delay_ms_max: rng.random_range(2..=30),
            fault_interval_ms: rng.random_range(300..=3000),
            fsync_ms_max: rng.random_range(1..=20),
            clock_skew_ms_max: rng.random_range(0..=200),
            anti_entropy: true,
            hints_bytes_max: if rng.random_bool(0.5) {
                256
            } else {
                64 * 1024 * 1024
            },
            partitions: 1 << rng.random_range(3..=6),
            durability: match rng.random_range(0..10) {
                0..=5 => Durability::Fsync,
                6..=7 => Durability::Periodic {
                    interval_ms: rng.random_range(20..=500),
                },
                _ => Durability::None,
            },
            plain_cas_writes: 0.0,
            paxos_repair_interval_ms: 100,
            all_writes: rng.random_bool(0.25),
            cas_siblings: rng.random_bool(0.3),
            collections: false,
            digest_reads: true,
            trace: None,
        }
    }
}

pub(super) fn node_config(id: NodeId, sim: &SimConfig) -> NodeConfig {
    let mut c = NodeConfig::new(id);
    c.anti_entropy_interval_ms = if sim.anti_entropy { 100 } else { 0 };
    c.paxos_repair_interval_ms = sim.paxos_repair_interval_ms;
    c.digest_reads = sim.digest_reads;
    c.hints_bytes_max = sim.hints_bytes_max;
    c.request_timeout_ms = 3_000;
    // Skews are at most 200 ms each (400 ms apart); a node more than 500 ms off its peers
    // stops coordinating, so every jump (2 s or more) takes a node out until it is put right,
    // and the checkers' skew bound holds for every node that coordinates.
    c.max_clock_skew_ms = 1_000;
    c.heartbeat_interval_ms = 100;
    c.fallback_after_ms = 500;
    c.handoff_interval_ms = 100;
    // Longer than a request can take (3 s) plus message delays; older hints are dropped.
    c.tombstone_grace_ms = TOMBSTONE_GRACE_MS;
    // Even keys live in strict buckets: no fallbacks, so strict quorums (Riak's PR/PW) hold.
    for (name, conflicts, sloppy) in BUCKETS {
        let all_writes = sim.all_writes && !sloppy;
        c.buckets.insert(
            BucketName::new(name).expect("valid name"),
            BucketProps {
                sloppy,
                conflicts,
                cas: if all_writes {
                    CasMode::AllWrites
                } else {
                    CasMode::ConditionalOnly
                },
                ..BucketProps::default()
            },
        );
    }
    c
}

/// The simulated buckets: name, conflict mode, sloppy.
pub(super) const BUCKETS: [(&str, ConflictMode, bool); 5] = [
    ("sets-strict", ConflictMode::Siblings, false),
    ("sets", ConflictMode::Siblings, true),
    ("registers-strict", ConflictMode::Lww, false),
    ("registers", ConflictMode::Lww, true),
    // Hashes and sets (`collections.rs`), truncated before the run in half the seeds.
    ("collections", ConflictMode::Lww, true),
];
