//! The figures and verdict of one simulated run (`SimReport`), filled in by the world as it
//! runs and by the checkers at the end, and its one-line summary.

use super::Durability;
use crate::check::Violation;
use crate::workload::History;

/// The figures and verdict of one run.
#[derive(Clone, Debug, Default)]
pub struct SimReport {
    pub seed: u64,
    pub nodes: usize,
    pub durability: Option<Durability>,
    pub sim_ms: u64,
    pub events: u64,
    pub ops: u64,
    pub acked_writes: u64,
    pub uncertain_writes: u64,
    pub failed_writes: u64,
    pub lost_writes: u64,
    pub keys: u64,
    pub unconverged_keys: u64,
    pub max_siblings: usize,
    pub crashes: u64,
    pub partitions: u64,
    /// Nodes frozen for a while (as by SIGSTOP): state kept, nothing processed.
    pub pauses: u64,
    /// Clock jumps (of 2 s to an hour, forward or back, each put right later).
    pub clock_jumps: u64,
    pub messages: u64,
    pub dropped_messages: u64,
    pub hints_stored: u64,
    pub hints_delivered: u64,
    pub hints_dropped: u64,
    /// Hints still held when the run ended (after healing and settling).
    pub hints_pending: u64,
    /// Expired values the nodes' sweeps deleted.
    pub expired_deleted: u64,
    /// Keys some replica still holds a tombstone of after every other one reaped it (a crash
    /// undid that replica's removal): garbage, read as absent.
    pub tombstones_left: u64,
    /// Blind writes sent to the flood key during splits (see `flood`), and the live values
    /// its final read returned (past `SIBLINGS_MAX` when the sides' floods met).
    pub flood_writes: u64,
    pub max_flood_siblings: usize,
    /// The mixing run: plain writes to compare-and-set keys, how many were refused
    /// (`cas_managed_key`) and how many acknowledged.
    pub plain_cas_writes: u64,
    pub plain_cas_refused: u64,
    pub plain_cas_acked: u64,
    /// The counter invariant: increments acknowledged applied, and increments in doubt that
    /// a later serial read settled.
    pub counter_applied: u64,
    /// Hash and set updates acknowledged (`collections.rs`), and of them the exact
    /// increments (compare-and-set).
    pub collection_acked: u64,
    pub increments_acked: u64,
    pub counter_resolved: u64,
    /// Whether the strict buckets were `cas = all_writes` (see `SimConfig::all_writes`).
    pub all_writes: bool,
    /// Whether the compare-and-set keys lived in a `siblings` bucket.
    pub cas_siblings: bool,
    /// Paxos repair rounds completed, and Paxos states they dropped.
    pub paxos_rounds: u64,
    pub paxos_states_collected: u64,
    /// Objects that read as absent (tombstones, expired values) still stored at the end
    /// (checker (g)).
    pub garbage_left: u64,
    /// Keys the final listings returned (checker (j)).
    pub keys_listed: u64,
    pub violations: Vec<Violation>,
    pub history: History,
}

impl SimReport {
    pub fn summary(&self) -> String {
        format!(
            "seed={} nodes={} durability={:?} all_writes={} cas_siblings={} sim_ms={} events={} ops={} acked_writes={} uncertain_writes={} failed_writes={} lost_writes={} keys={} unconverged_keys={} max_siblings={} crashes={} partitions={} pauses={} clock_jumps={} messages={} dropped={} hints_stored={} hints_delivered={} hints_dropped={} hints_pending={} expired_deleted={} tombstones_left={} flood_writes={} max_flood_siblings={} plain_cas_writes={} plain_cas_refused={} plain_cas_acked={} counter_applied={} counter_resolved={} collection_acked={} increments_acked={} paxos_rounds={} paxos_states_collected={} violations={}",
            self.seed,
            self.nodes,
            self.durability,
            self.all_writes,
            self.cas_siblings,
            self.sim_ms,
            self.events,
            self.ops,
            self.acked_writes,
            self.uncertain_writes,
            self.failed_writes,
            self.lost_writes,
            self.keys,
            self.unconverged_keys,
            self.max_siblings,
            self.crashes,
            self.partitions,
            self.pauses,
            self.clock_jumps,
            self.messages,
            self.dropped_messages,
            self.hints_stored,
            self.hints_delivered,
            self.hints_dropped,
            self.hints_pending,
            self.expired_deleted,
            self.tombstones_left,
            self.flood_writes,
            self.max_flood_siblings,
            self.plain_cas_writes,
            self.plain_cas_refused,
            self.plain_cas_acked,
            self.counter_applied,
            self.counter_resolved,
            self.collection_acked,
            self.increments_acked,
            self.paxos_rounds,
            self.paxos_states_collected,
            self.violations.len()
        )
    }
}
