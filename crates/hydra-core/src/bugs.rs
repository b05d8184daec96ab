//! Planted bugs: test-only switches that break the core on purpose, so the simulator's checkers
//! can be shown to catch each kind of bug (a checker that never fails proves nothing).
//!
//! Without the `planted-bugs` feature (and outside this crate's tests) every switch reads as
//! off and the code behind it compiles to nothing. The switches are per thread, because the
//! simulator runs a whole cluster in one thread and tests run in parallel threads.

/// Which bugs are switched on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlantedBugs {
    /// Replicas and coordinators acknowledge a write before the store has synced it.
    pub ack_before_sync: bool,
    /// Merging two objects keeps only the newest sibling of each writer.
    pub merge_drops_sibling: bool,
    /// Coordinators never send read repair.
    pub skip_read_repair: bool,
    /// A read's coordinator takes a replica's digest that differs from its own as agreement
    /// (it answers from its own copy without asking for the replica's).
    pub digest_mismatch_ignored: bool,
    /// Writes ignore the client's context (every write is blind).
    pub ignore_context: bool,
    /// Handoff deletes hints instead of delivering them.
    pub discard_hints: bool,
    /// Tombstones are reaped at once, even when a primary never acked the delete.
    pub reap_early: bool,
    /// An expired `lww` value is deleted by a tombstone stamped now (a new write), not one
    /// with the value's own identity.
    pub expiry_stamped_now: bool,
    /// `lww` writes ignore the context (the version the client saw) when stamped.
    pub lww_ignores_context: bool,
    /// A node uses its clock whatever its peers' heartbeats say of it (no `ClockSkew`).
    pub ignore_clock_verdict: bool,
    /// Syncs covering a new dot are not marked required: in `periodic`/`none` durability a
    /// dot leaves before it is on disk.
    pub dots_leave_unsynced: bool,
    /// Writes bound to the version read (`EXPIRE`, `GETDEL`) are made as new writes: the
    /// value read is written back, stamped now.
    pub version_ops_as_new_writes: bool,
    /// Replicas' merges ignore the sibling and size limits (the union of every side of a
    /// split is stored).
    pub merge_ignores_limits: bool,
    /// A node learning a truncation mark never purges the older values it stores.
    pub truncation_not_purged: bool,
    /// A listing keeps keys whose merged object shows no value (deleted or expired).
    pub scan_shows_deleted: bool,
    /// A hash or set merge drops an element's adds that only one side holds, even when the
    /// other side never saw them (concurrent adds are lost: remove wins).
    pub collection_merge_drops_adds: bool,
    /// The peer edge bounds version vector counters at 16, below what members reach.
    pub peer_counter_limit_low: bool,
    /// The sweep never deletes old tombstones again (a tombstone whose reap never happened
    /// stays for good).
    pub sweep_skips_old_tombstones: bool,
    /// Paxos acceptors forget what they promised: every prepare and proposal is accepted,
    /// whatever ballot was promised before.
    pub paxos_forgets_promises: bool,
    /// Acceptors accept a proposal below the ballot they promised.
    pub paxos_accepts_below_promise: bool,
    /// Accepting a proposal does not raise the acceptor's promise to its ballot.
    pub paxos_accept_keeps_promise: bool,
    /// Coordinators ignore a proposal a promise reports accepted and not committed.
    pub paxos_ignores_in_progress: bool,
    /// Coordinators take up the in-progress proposal of the first promise that came, not
    /// the one at the highest ballot.
    pub paxos_in_progress_by_arrival: bool,
    /// A Paxos phase moves on with one answer fewer than a majority.
    pub paxos_quorum_off_by_one: bool,
    /// Acceptors answer before their state change is durable.
    pub paxos_answers_before_sync: bool,
    /// Ballots leave out their coordinator (two nodes' ballots can be equal).
    pub paxos_ballots_not_unique: bool,
    /// A serial read answers from the promised data without finishing a proposal in
    /// progress.
    pub paxos_read_skips_in_progress: bool,
    /// A compare-and-set on a hash's or set's elements (`HINCRBY`, `SPOP`...) applies
    /// whatever the elements hold now, not only the dots its read showed.
    pub paxos_elements_condition_ignored: bool,
    /// A serial read (or a failed condition) skips its proposal even when a write was
    /// promised since the latest commit (its proposal may still be accepted, and later
    /// finished, after the read).
    pub paxos_read_ignores_write_promises: bool,
    /// A serial read (or a failed condition) skips its proposal even when the latest commit
    /// its majority reported is neither a commit an acceptor saw nor held by the whole
    /// majority (a Paxos low bound that reached a minority only): a later majority without it
    /// may take up a proposal below it again.
    pub paxos_read_trusts_minority_commits: bool,
    /// A request takes any commit above one of its own proposals for its own (applied),
    /// not only a commit at its ballot or of its value.
    pub paxos_own_commit_any_above: bool,
    /// A compare-and-set's value is stamped without taking in the timestamps its prepare
    /// read (it may be older than the value it replaces).
    pub paxos_stamp_ignores_read: bool,
    /// Replicas never refuse a plain write to a key compare-and-set manages
    /// (`cas = conditional_only` acts as if plain and conditional writes could mix).
    pub plain_writes_not_refused: bool,
    /// A coordinator takes any commit above its own proposal of another value as proof
    /// that its proposal was never chosen, whatever that commit's base.
    pub paxos_beaten_ignores_base: bool,
    /// Paxos state collection drops a group's settled state without keeping the round's
    /// bounds (the fence and the low bound are not stored).
    pub paxos_collection_forgets_watermark: bool,
    /// A key's Paxos state is loaded without its group's bounds applied.
    pub paxos_low_bound_not_applied_on_load: bool,
    /// Paxos state collection drops every state of a group when a round ends, whatever its
    /// ballots (as if state were forgotten after a while).
    pub paxos_state_forgotten_by_wall_time: bool,
    /// A removed object (a reaped tombstone, a purged value) stays in its Merkle leaf.
    pub tree_misses_removals: bool,
    /// An owner takes a hint however old it is by the time it arrives (a delivery that
    /// waited past the grace can bring back what a reaped delete removed).
    pub hints_taken_after_grace: bool,
    /// A compare-and-set read answers by this node's clock even when it jumped while the
    /// round was in flight (expired-looking values vanish from the answer).
    pub serial_reads_ignore_clock: bool,
    /// A Paxos repair round's serial read of a key holding a hash or set fails as a client's
    /// read of its value does (`WRONGTYPE`), so the round never ends and the group's Paxos
    /// state is never collected.
    pub repair_fails_on_collections: bool,
}

#[cfg(any(test, feature = "planted-bugs"))]
thread_local! {
    static PLANTED: std::cell::Cell<PlantedBugs> = const { std::cell::Cell::new(PlantedBugs {
        ack_before_sync: false,
        merge_drops_sibling: false,
        skip_read_repair: false,
        digest_mismatch_ignored: false,
        ignore_context: false,
        discard_hints: false,
        reap_early: false,
        expiry_stamped_now: false,
        lww_ignores_context: false,
        ignore_clock_verdict: false,
        dots_leave_unsynced: false,
        version_ops_as_new_writes: false,
        merge_ignores_limits: false,
        sweep_skips_old_tombstones: false,
        peer_counter_limit_low: false,
        scan_shows_deleted: false,
        collection_merge_drops_adds: false,
        truncation_not_purged: false,
        paxos_forgets_promises: false,
        paxos_accepts_below_promise: false,
        paxos_accept_keeps_promise: false,
        paxos_ignores_in_progress: false,
        paxos_in_progress_by_arrival: false,
        paxos_quorum_off_by_one: false,
        paxos_answers_before_sync: false,
        paxos_ballots_not_unique: false,
        paxos_read_skips_in_progress: false,
        paxos_elements_condition_ignored: false,
        paxos_read_ignores_write_promises: false,
        paxos_read_trusts_minority_commits: false,
        paxos_own_commit_any_above: false,
        paxos_stamp_ignores_read: false,
        plain_writes_not_refused: false,
        paxos_beaten_ignores_base: false,
        paxos_collection_forgets_watermark: false,
        paxos_low_bound_not_applied_on_load: false,
        paxos_state_forgotten_by_wall_time: false,
        tree_misses_removals: false,
        hints_taken_after_grace: false,
        serial_reads_ignore_clock: false,
        repair_fails_on_collections: false,
    }) };
}

impl PlantedBugs {
    /// Switches on the bug named as its field; false for an unknown name.
    pub fn switch_on(&mut self, name: &str) -> bool {
        match name {
            "ack_before_sync" => self.ack_before_sync = true,
            "merge_drops_sibling" => self.merge_drops_sibling = true,
            "skip_read_repair" => self.skip_read_repair = true,
            "digest_mismatch_ignored" => self.digest_mismatch_ignored = true,
            "ignore_context" => self.ignore_context = true,
            "discard_hints" => self.discard_hints = true,
            "reap_early" => self.reap_early = true,
            "expiry_stamped_now" => self.expiry_stamped_now = true,
            "lww_ignores_context" => self.lww_ignores_context = true,
            "ignore_clock_verdict" => self.ignore_clock_verdict = true,
            "dots_leave_unsynced" => self.dots_leave_unsynced = true,
            "version_ops_as_new_writes" => self.version_ops_as_new_writes = true,
            "merge_ignores_limits" => self.merge_ignores_limits = true,
            "sweep_skips_old_tombstones" => self.sweep_skips_old_tombstones = true,
            "peer_counter_limit_low" => self.peer_counter_limit_low = true,
            "scan_shows_deleted" => self.scan_shows_deleted = true,
            "collection_merge_drops_adds" => self.collection_merge_drops_adds = true,
            "truncation_not_purged" => self.truncation_not_purged = true,
            "paxos_forgets_promises" => self.paxos_forgets_promises = true,
            "paxos_accepts_below_promise" => self.paxos_accepts_below_promise = true,
            "paxos_accept_keeps_promise" => self.paxos_accept_keeps_promise = true,
            "paxos_ignores_in_progress" => self.paxos_ignores_in_progress = true,
            "paxos_in_progress_by_arrival" => self.paxos_in_progress_by_arrival = true,
            "paxos_quorum_off_by_one" => self.paxos_quorum_off_by_one = true,
            "paxos_answers_before_sync" => self.paxos_answers_before_sync = true,
            "paxos_ballots_not_unique" => self.paxos_ballots_not_unique = true,
            "paxos_read_skips_in_progress" => self.paxos_read_skips_in_progress = true,
            "paxos_elements_condition_ignored" => self.paxos_elements_condition_ignored = true,
            "paxos_read_ignores_write_promises" => self.paxos_read_ignores_write_promises = true,
            "paxos_read_trusts_minority_commits" => self.paxos_read_trusts_minority_commits = true,
            "paxos_own_commit_any_above" => self.paxos_own_commit_any_above = true,
            "paxos_stamp_ignores_read" => self.paxos_stamp_ignores_read = true,
            "plain_writes_not_refused" => self.plain_writes_not_refused = true,
            "paxos_beaten_ignores_base" => self.paxos_beaten_ignores_base = true,
            "paxos_collection_forgets_watermark" => self.paxos_collection_forgets_watermark = true,
            "paxos_low_bound_not_applied_on_load" => {
                self.paxos_low_bound_not_applied_on_load = true
            }
            "paxos_state_forgotten_by_wall_time" => self.paxos_state_forgotten_by_wall_time = true,
            "tree_misses_removals" => self.tree_misses_removals = true,
            "hints_taken_after_grace" => self.hints_taken_after_grace = true,
            "serial_reads_ignore_clock" => self.serial_reads_ignore_clock = true,
            "repair_fails_on_collections" => self.repair_fails_on_collections = true,
            _ => return false,
        }
        true
    }
}

/// The bugs switched on for this thread.
#[inline]
pub fn planted() -> PlantedBugs {
    #[cfg(any(test, feature = "planted-bugs"))]
    {
        PLANTED.with(|p| p.get())
    }
    #[cfg(not(any(test, feature = "planted-bugs")))]
    {
        PlantedBugs::default()
    }
}

/// Switches bugs on or off for this thread.
#[cfg(any(test, feature = "planted-bugs"))]
pub fn set_planted(bugs: PlantedBugs) {
    PLANTED.with(|p| p.set(bugs));
}
