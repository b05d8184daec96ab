//! The node state machine: a thin router over the protocol parts of one node.
//!
//! The shell (or the simulator) calls [`Node::handle`] with every [`Input`], drains
//! [`Node::poll_output`], and calls `handle(Tick)` at [`Node::next_deadline`]. `handle` loads
//! what the store remembers on the first call, fires the timers that are due, hands the input
//! to the part it concerns, then lets parts react to each other (a finished write may leave
//! hints and a reap) and asks for a sync if anything waits for one.
//!
//! | part | file | owns |
//! |---|---|---|
//! | client edge | `client.rs` | validation of client requests (once, here) |
//! | peer edge | `peer.rs` | checks of members' messages (once, here) |
//! | write coordination | `write.rs` | writes in flight, W acks, fallbacks |
//! | read coordination | `read.rs` | reads in flight, R answers, read repair |
//! | forwarding | `forward.rs` | writes handed to a replica, duplicate detection |
//! | replica side | `replica.rs` | merging replicated writes and repairs, answering reads |
//! | hinted handoff | `handoff.rs` | the hint index, deliveries in flight |
//! | anti-entropy | `anti_entropy.rs` | Merkle exchanges in flight, their figures |
//! | reaping and expiry | `gc.rs` | tombstones to reap, the expiry sweep |
//! | compare-and-set | `paxos.rs` | Paxos rounds in flight (coordinator), acceptor state (replica) |
//! | key listing | `scan.rs` | listing pages in flight (coordinator), the replica's page |
//! | bucket truncation | `truncate.rs` | truncations in flight (coordinator), the purge of older values |
//! | Paxos state collection | `paxos_repair.rs` | the repair round in flight, group bounds (primary side) |
//! | bucket metadata | `buckets.rs` | the gossiped bucket table |
//! | membership | `membership.rs` | heartbeats, the failure detector |
//! | durability | `durability.rs` | sync generations and their waiters, the clock mark |
//! | shared | `local.rs`, `quorum.rs`, `io.rs`, `timers.rs` | store access and Merkle trees, slots and receipts, outputs, the timer queue |
//!
//! What every part must keep: no I/O, no clock reads, no randomness but `Ctx::rng`; every
//! collection bounded by a named limit; each request answered exactly once.

mod anti_entropy;
mod buckets;
mod client;
mod clock;
mod config;
mod durability;
mod expiry;
mod forward;
mod gc;
mod handoff;
mod io;
mod local;
mod membership;
mod paxos;
mod paxos_repair;
mod peer;
mod quorum;
mod read;
mod replica;
mod scan;
mod status;
mod timers;
mod trees;
mod truncate;
mod walk;
mod write;

pub use buckets::BUCKETS_STORAGE_KEY;
pub use clock::{CLOCK_JUMP_MS, Verdict};
pub use config::NodeConfig;
pub use durability::{HLC_MARK_MARGIN_MS, HLC_STORAGE_KEY};
pub use gc::REAPS_PARTITION;
pub use io::{Ctx, Input, Output, ReceiptDetail};
pub use paxos::PAXOS_PARTITION;
pub use paxos_repair::{PAXOS_BOUNDS_PARTITION, PaxosRepairStatus};
pub use status::{AeStatus, ClockStatus, NodeStatus, PeerStatus};

use crate::bucket::{BucketProps, CasMode, ConflictMode};
use crate::ids::{NodeId, Timestamp};
use crate::key::BucketName;
use crate::layout::Layout;
use crate::limits::{COORDINATIONS_MAX, EXPIRY_DELETES_MAX, EXPIRY_IN_FLIGHT_MAX};
use crate::message::{CasAction, CasRequest, ClientError, ClientRequest, ErrorCode, Message};
use crate::paxos::Condition;
use crate::store::{Store, StoreError};
use std::collections::BTreeMap;

use anti_entropy::AntiEntropy;
use durability::Waiter;
use expiry::Expiries;
use forward::Forwards;
use gc::Gc;
use handoff::{Handoff, hint_read};
use io::ReplyTo;
use local::Local;
use paxos::{AnswerAs, Paxos};
use paxos_repair::Repairs;
use quorum::Placement;
use read::Reads;
use timers::Timer;
use write::Writes;

/// One node's core.
pub struct Node {
    local: Local,
    writes: Writes,
    reads: Reads,
    forwards: Forwards,
    handoff: Handoff,
    ae: AntiEntropy,
    gc: Gc,
    expiries: Expiries,
    paxos: Paxos,
    repairs: Repairs,
    scans: scan::Scans,
    truncations: truncate::Truncations,
    /// Whether the first call loaded what the store remembers.
    loaded: bool,
    /// Whether a client request or a message arrived since the last step of a Merkle tree
    /// rebuild (the next step then goes at the slower pace: `Trees::rebuild_step`).
    served_since_rebuild_step: bool,
    /// Members' messages refused at the peer edge (`peer.rs`), and why the last one was.
    peer_refused: (u64, Option<String>),
}

impl Node {
    pub fn new(config: NodeConfig, layout: Layout) -> Node {
        let mut local = Local::new(config, layout);
        // Periodic work starts at the first call (after loading).
        let start = Timestamp(0);
        local.timers.set(start, Timer::Heartbeat);
        local.timers.set(start, Timer::Gossip);
        if local.config.handoff_interval_ms > 0 {
            local.timers.set(start, Timer::Handoff);
        }
        if local.config.anti_entropy_interval_ms > 0 {
            local.timers.set(start, Timer::AntiEntropy);
        }
        local.timers.set(start, Timer::Expiry);
        if local.config.paxos_repair_interval_ms > 0 {
            local.timers.set(start, Timer::PaxosRepair);
        }
        Node {
            local,
            writes: Writes::default(),
            reads: Reads::default(),
            forwards: Forwards::default(),
            handoff: Handoff::default(),
            ae: AntiEntropy::default(),
            gc: Gc::default(),
            expiries: Expiries::default(),
            paxos: Paxos::default(),
            repairs: Repairs::default(),
            scans: scan::Scans::default(),
            truncations: truncate::Truncations::default(),
            loaded: false,
            served_since_rebuild_step: false,
            peer_refused: (0, None),
        }
    }

    pub fn id(&self) -> NodeId {
        self.local.me()
    }

    pub fn layout(&self) -> &Layout {
        &self.local.layout
    }

    pub fn config(&self) -> &NodeConfig {
        &self.local.config
    }

    /// Client requests and internode requests this node is coordinating.
    pub fn in_flight(&self) -> usize {
        self.writes.len()
            + self.reads.len()
            + self.forwards.len()
            + self.paxos.len()
            + self.scans.len()
            + self.truncations.len()
    }

    /// Requests whose clients wait for an answer (answered writes waiting for their last
    /// replicas are bounded apart, `WRITES_LINGERING_MAX`).
    fn waiting(&self) -> usize {
        self.writes.waiting()
            + self.reads.len()
            + self.forwards.len()
            + self.paxos.len()
            + self.scans.len()
            + self.truncations.len()
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.local.out.pop()
    }

    /// When the node next needs a `Tick`.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.local.timers.next()
    }

    /// Timers waiting to fire (requests' deadlines, periodic work, reaps), for tests and
    /// status: it stays bounded by the work in flight.
    pub fn timers_pending(&self) -> usize {
        self.local.timers.len()
    }

    /// Pauses or resumes the delivery of hints this node holds (an operator's switch, as
    /// Cassandra's `nodetool disablehandoff`/`enablehandoff`): paused, hints are still kept
    /// and counted, and go out at the first handoff round after it is resumed. Not kept
    /// across restarts.
    pub fn set_handoff(&mut self, enabled: bool) {
        self.handoff.paused = !enabled;
    }

    /// Pauses or resumes the anti-entropy exchanges this node starts (it still answers its
    /// peers' exchanges) and its full sweep of old tombstones and missed expiries (the expiry
    /// index keeps deleting what expires). Not kept across restarts
    /// (`cluster.anti_entropy_interval_ms = 0` starts a node without either).
    pub fn set_anti_entropy(&mut self, enabled: bool) {
        self.ae.paused = !enabled;
    }

    /// The buckets this node knows, with their properties.
    pub fn buckets(&self) -> BTreeMap<BucketName, BucketProps> {
        self.local.buckets.props()
    }

    /// The bucket table as peers exchange it (each entry with its stamps), for the node's
    /// other shards to adopt ([`Input::AdoptBuckets`]).
    pub fn bucket_entries(&self) -> Vec<crate::message::BucketEntry> {
        self.local.buckets.entries()
    }

    /// What the node knows of itself and its peers, for status pages.
    /// Test support (the simulator's checker (m)): whether this node's Merkle trees, in
    /// memory, agree with the objects `store` holds. `Ok` while the trees are being rebuilt
    /// (they agree once the rebuild is done).
    pub fn check_trees<S: Store>(&self, store: &S) -> Result<(), String> {
        let local = &self.local;
        if !self.loaded || local.trees_rebuilding() {
            return Ok(());
        }
        local
            .trees
            .verify(store, local.layout.partition_count(), |b| {
                local.buckets.n_of(b)
            })
    }

    pub fn status(&self, _now: Timestamp) -> NodeStatus {
        let local = &self.local;
        NodeStatus {
            id: self.id(),
            layout_version: local.layout.version(),
            partitions: local.layout.partition_count(),
            peers: local.membership.status(&local.layout, local.timers.mono()),
            in_flight: self.in_flight(),
            store_poisoned: local.durability.poisoned().map(ToString::to_string),
            hints: self.handoff.index.targets(),
            hint_counters: self.handoff.index.counters,
            dirty_partitions: self.handoff.index.dirty.len(),
            anti_entropy: self.ae.status.clone(),
            objects: local.trees.objects(),
            tombstones_reaped: self.gc.tombstones_reaped,
            expired_deleted: self.gc.expired_deleted,
            tombstones_reissued: self.gc.tombstones_reissued,
            reaps_pending: self.gc.reaps_pending(),
            clock: self.clock_status(),
            bucket_conflicts: local.buckets.conflicts().to_vec(),
            paxos_repair: self.repairs.status,
            handoff_enabled: !self.handoff.paused,
            anti_entropy_enabled: !self.ae.paused,
            peer_messages_refused: self.peer_refused.0,
            peer_refusal: self.peer_refused.1.clone(),
        }
    }

    fn clock_status(&self) -> ClockStatus {
        let local = &self.local;
        let (offset_ms, peers_measured, jumps) = local
            .clock
            .figures(local.timers.mono(), local.config.heartbeat_interval_ms);
        let (state, detail) = match local.clock_verdict() {
            Verdict::Ok => ("ok", None),
            Verdict::Skewed { .. } => ("skewed", local.clock_allows("writes").err()),
            Verdict::Unverified { .. } => ("unverified", local.clock_allows("writes").err()),
        };
        ClockStatus {
            state,
            offset_ms,
            peers_measured,
            jumps,
            detail: detail.map(|e| e.message),
        }
    }

    pub fn handle<S: Store>(&mut self, ctx: &mut Ctx<'_, S>, input: Input) {
        // First: timers set from here on (reaps loaded below too) convert wall to monotonic.
        self.local.timers.set_clock(ctx.now, ctx.mono);
        if !self.loaded {
            // First call since start: load what the store remembers.
            self.loaded = true;
            self.local.buckets.load(ctx.store);
            self.handoff.load(ctx.store);
            self.gc.load(&mut self.local, ctx.store, ctx.now);
            self.local.load_paxos_partitions(ctx.store);
            // The Merkle trees are built from the store in the background (anti-entropy
            // waits); requests are served meanwhile.
            self.local.start_tree_rebuild(ctx.now);
            let local = &mut self.local;
            let max_skew_ms = local.config.max_clock_skew_ms;
            if let Err(why) =
                local
                    .durability
                    .load_clock_mark(ctx.store, &mut local.hlc, ctx.now, max_skew_ms)
            {
                local.clock.distrust_at_start(why);
            }
        }
        self.local.clock.observe(ctx.now, ctx.mono);
        if matches!(input, Input::Client { .. } | Input::Message { .. }) {
            self.served_since_rebuild_step = true;
        }
        while let Some(timer) = self.local.timers.pop_due() {
            self.on_timer(ctx, timer);
        }
        match input {
            Input::Client {
                id,
                request: ClientRequest::SetBucket { name, props },
                ..
            } => {
                let local = &mut self.local;
                if let Err(e) = local.clock_allows("bucket changes") {
                    local.out.push(Output::Reply { id, result: Err(e) });
                    return self.finish_call(ctx);
                }
                let nodes = local.layout.nodes().len();
                if usize::from(props.n) > nodes {
                    let e = ClientError::new(
                        ErrorCode::InvalidBucket,
                        format!(
                            "n = {} is more than the {nodes} nodes of the layout: every key would lack replicas and writes at w = all would fail; use n <= {nodes} (add nodes first to keep more copies)",
                            props.n
                        ),
                    );
                    local.out.push(Output::Reply { id, result: Err(e) });
                    return self.finish_call(ctx);
                }
                let (result, changed) = local.buckets.set(
                    ctx.store,
                    &mut local.hlc,
                    ctx.now,
                    local.durability.poisoned(),
                    &mut local.out,
                    local.membership.peers(),
                    name,
                    props,
                );
                local.note(changed, ctx.now);
                local.out.push(Output::Reply { id, result });
            }
            Input::Client {
                id,
                request,
                receipt,
            } => self.on_client(ctx, ReplyTo::Client(id, receipt), request),
            Input::Message { from, envelope } => {
                assert!(
                    self.local.layout.contains(from),
                    "message from {from}, not a member: the shell authenticates peers"
                );
                match self.local.check_peer_message(&envelope.message, ctx.now) {
                    Ok(()) => self.on_message(ctx, from, envelope.message),
                    Err(why) => {
                        self.peer_refused.0 += 1;
                        self.peer_refused.1 = Some(format!("from node {from}: {why}"));
                    }
                }
            }
            Input::Synced { generation, result } => self.on_synced(ctx, generation, result),
            Input::Tick => {}
            Input::AdoptBuckets(mut entries) => {
                let local = &mut self.local;
                for entry in &mut entries {
                    entry.truncated = crate::hlc::Hlc(0);
                }
                let entries =
                    buckets::stamped_within(entries, ctx.now, local.config.max_clock_skew_ms);
                let poisoned = local.durability.poisoned().is_some();
                let changed = local.buckets.merge(ctx.store, poisoned, entries);
                // Told to this shard's peers at once, as a change made here is.
                if changed.table {
                    local
                        .buckets
                        .gossip(&mut local.out, local.membership.peers());
                }
                local.note(changed, ctx.now);
            }
        }
        self.finish_call(ctx);
    }

    /// The end of every call: what finished writes leave to the other parts, and the sync.
    fn finish_call<S: Store>(&mut self, ctx: &mut Ctx<'_, S>) {
        // Own answers may start more rounds (repairs' serial reads) and those more answers:
        // bounded by the repair rounds' serial reads in flight.
        loop {
            self.paxos.pump(&mut self.local, ctx);
            if !self.repairs.pump(&mut self.local, ctx, &mut self.paxos) {
                break;
            }
        }
        let done = self.writes.take_done();
        self.handoff.keep_for_missed(&mut self.local, ctx, &done);
        for d in done.into_iter().filter(|d| d.reapable) {
            self.gc
                .schedule(&mut self.local, ctx.store, ctx.now, d.key, d.object);
        }
        self.local.durability.request_sync(&mut self.local.out);
    }

    fn on_timer<S: Store>(&mut self, ctx: &mut Ctx<'_, S>, timer: Timer) {
        let local = &mut self.local;
        let now = ctx.now;
        match timer {
            Timer::WriteDeadline(req) => self.writes.on_deadline(local, now, req),
            Timer::WriteFallback(req) => self.writes.fallbacks(local, now, req),
            Timer::ReadRetry(req) => self.reads.on_retry(local, ctx, req),
            Timer::ReadDeadline(req) => self.reads.on_deadline(local, ctx, req),
            Timer::ForwardDeadline(req) => self.forwards.on_deadline(local, now, req),
            Timer::HandoffDeadline(req) => self.handoff.on_deadline(req),
            Timer::ExchangeDeadline(req) => self.ae.on_deadline(req),
            Timer::ExpireDeadline(req) => self.expiries.on_deadline(local, ctx, req),
            Timer::PaxosDeadline(req) => self.paxos.on_deadline(local, now, req),
            Timer::ScanDeadline(req) => self.scans.on_deadline(local, now, req),
            Timer::TruncateDeadline(req) => self.truncations.on_deadline(local, req),
            Timer::Purge => match local.purge_step(ctx.store) {
                Some(after_ms) => local.timers.set(now.plus_ms(after_ms), Timer::Purge),
                None => local.purges.scheduled = false,
            },
            Timer::PaxosRetry(req) => self.paxos.on_retry(local, ctx, req),
            Timer::Heartbeat => {
                local
                    .membership
                    .send_heartbeats(&mut local.out, &local.clock, now, ctx.mono);
                // At least 1 ms: a timer due at once would fire again in this same call.
                let next = now.plus_ms(local.config.heartbeat_interval_ms.max(1));
                local.timers.set(next, Timer::Heartbeat);
            }
            Timer::Gossip => {
                local
                    .buckets
                    .gossip(&mut local.out, local.membership.peers());
                let next = now.plus_ms(local.config.gossip_interval_ms.max(1));
                local.timers.set(next, Timer::Gossip);
            }
            Timer::Handoff => {
                self.handoff.offer(local, ctx);
                let next = now.plus_ms(local.config.handoff_interval_ms);
                local.timers.set(next, Timer::Handoff);
            }
            Timer::AntiEntropy => {
                let room = COORDINATIONS_MAX
                    .saturating_sub(self.waiting())
                    .min(EXPIRY_IN_FLIGHT_MAX.saturating_sub(self.writes.internal()));
                let local = &mut self.local;
                // Expiry is judged by this node's clock: not while it cannot be trusted. The
                // sweep pauses with anti-entropy (the operator's switch of background repair).
                let room = if local.clock_allows("expiry").is_ok() {
                    room
                } else {
                    0
                };
                if !self.ae.paused {
                    for (key, expired, props, at) in self.gc.sweep_expired(local, ctx, room) {
                        self.writes
                            .start_expiry(local, ctx, key, expired, &props, at);
                    }
                }
                // Trees that disagree with the store (keys moving) would repair for nothing.
                if !local.trees_rebuilding() && !self.ae.paused {
                    self.ae.start(local, ctx, &self.handoff.index.dirty);
                }
                let next = now.plus_ms(local.config.anti_entropy_interval_ms);
                local.timers.set(next, Timer::AntiEntropy);
            }
            Timer::Reap => self.gc.on_reap_timer(local, ctx),
            Timer::PaxosRepair => self.repairs.on_timer(local, ctx, &mut self.paxos),
            Timer::TreeRebuild => match local.rebuild_trees_step(
                ctx.store,
                std::mem::take(&mut self.served_since_rebuild_step),
            ) {
                Some(after_ms) => local.timers.set(now.plus_ms(after_ms), Timer::TreeRebuild),
                None => local.trees.scheduled = false,
            },
            Timer::Expiry => {
                // Expiry goes as fast as its batches complete, a bounded number in flight
                // (and `siblings` deletes, each a write, a bounded number): it shares the
                // node with client writes and must not swamp it.
                if !self.expiries.has_room() {
                    // The batch that ends next looks again.
                    return self.expiries.wait_for_room();
                }
                let siblings_room = COORDINATIONS_MAX
                    .saturating_sub(self.waiting())
                    .min(EXPIRY_IN_FLIGHT_MAX.saturating_sub(self.writes.internal()));
                let local = &mut self.local;
                let mut more = false;
                if local.clock_allows("expiry").is_ok() {
                    let sweep =
                        self.gc
                            .sweep_expiry_index(local, ctx, EXPIRY_DELETES_MAX, siblings_room);
                    more = sweep.more;
                    let (mut by_write, mut lww) = (sweep.siblings, sweep.lww);
                    if crate::bugs::planted().expiry_stamped_now {
                        by_write.append(&mut lww);
                    }
                    for (key, expired, props, at) in by_write {
                        self.writes
                            .start_expiry(local, ctx, key, expired, &props, at);
                    }
                    self.expiries.start(local, ctx, &mut self.gc, lww);
                }
                // More may be due: look again at the next call, or when a batch ends; else
                // after the interval.
                if more && !self.expiries.has_room() {
                    self.expiries.wait_for_room();
                } else {
                    let next = if more {
                        now
                    } else {
                        now.plus_ms(gc::EXPIRY_INTERVAL_MS)
                    };
                    local.timers.set(next, Timer::Expiry);
                }
            }
        }
    }

    fn on_client<S: Store>(
        &mut self,
        ctx: &mut Ctx<'_, S>,
        reply_to: ReplyTo,
        request: ClientRequest,
    ) {
        let full = self.waiting() >= COORDINATIONS_MAX;
        let local = &mut self.local;
        if full {
            let e = ClientError::new(
                ErrorCode::Overloaded,
                format!(
                    "node {} has {COORDINATIONS_MAX} requests in flight, its limit",
                    local.me()
                ),
            );
            return local.out.reply(reply_to, Err(e));
        }
        if let ClientRequest::List(list) = request {
            return self.scans.start(local, ctx, reply_to, list);
        }
        if let ClientRequest::Truncate { bucket, timeout_ms } = request {
            return self
                .truncations
                .start(local, ctx, reply_to, bucket, timeout_ms);
        }
        let valid = match local.validate(&request, ctx.now) {
            Ok(v) => v,
            Err(e) => return local.out.reply(reply_to, Err(e)),
        };
        // Writes are stamped, and lww reads judged (order, expiry), by this node's clock.
        let clocked = match &request {
            ClientRequest::Get { .. } => {
                (valid.props.conflicts == ConflictMode::Lww).then_some("reads of lww buckets")
            }
            _ => Some("writes"),
        };
        if let Some(what) = clocked
            && let Err(e) = local.clock_allows(what)
        {
            return local.out.reply(reply_to, Err(e));
        }
        // In a `cas = all_writes` bucket every write, and every read without a level of its
        // own, goes through Paxos: linearizable with each other by construction.
        let (request, answer_as) = match request {
            ClientRequest::Put(mut w) if valid.props.cas == CasMode::AllWrites => {
                // In a `siblings` bucket a version delete is a delete with the read's context.
                if valid.props.conflicts == ConflictMode::Siblings {
                    w.on_version = None;
                }
                (ClientRequest::cas(w.into_cas()), AnswerAs::Written)
            }
            ClientRequest::Get {
                key,
                r: None,
                timeout_ms,
                ..
            } if valid.props.cas == CasMode::AllWrites => {
                let cas = CasRequest {
                    key,
                    condition: Condition::Always,
                    action: CasAction::Read,
                    timeout_ms,
                    supersedes: None,
                };
                (ClientRequest::cas(cas), AnswerAs::Read)
            }
            other => (other, AnswerAs::Cas),
        };
        let partition = local.partition_of(&valid.key);
        let replicas = local
            .layout
            .preference_list(partition, valid.props.n as usize)
            .to_vec();
        let needed = match valid.level.required(replicas.len() as u8) {
            Ok(n) => n,
            Err(e) => {
                let e = ClientError::new(ErrorCode::InvalidConsistency, e.to_string());
                return local.out.reply(reply_to, Err(e));
            }
        };
        let deadline = ctx.now.plus_ms(valid.timeout_ms);
        match request {
            // Answered in `handle`; `validate` refuses it.
            ClientRequest::SetBucket { .. }
            | ClientRequest::List(_)
            | ClientRequest::Truncate { .. } => {}
            ClientRequest::Cas(cas) => {
                let ttl_default_ms = valid.props.ttl_secs.map(|s| s.saturating_mul(1000));
                self.paxos.start(
                    local,
                    ctx,
                    reply_to,
                    answer_as,
                    *cas,
                    (valid.props.conflicts, ttl_default_ms),
                    partition,
                    replicas,
                    deadline,
                )
            }
            ClientRequest::Get { key, sloppy, .. } => {
                let sloppy = sloppy.unwrap_or(valid.props.sloppy);
                let at = Placement {
                    partition,
                    replicas,
                    needed,
                    deadline,
                };
                self.reads.start(local, ctx, reply_to, key, at, sloppy)
            }
            ClientRequest::Put(write) => {
                if replicas.contains(&local.me()) {
                    let at = Placement {
                        partition,
                        replicas,
                        needed,
                        deadline,
                    };
                    self.writes
                        .start(local, ctx, reply_to, *write, &valid.props, at)
                } else if let ReplyTo::Client(client, _) = reply_to {
                    self.forwards
                        .start(local, ctx, client, write, &replicas, deadline)
                } else {
                    let e = ClientError::new(
                        ErrorCode::NotReplica,
                        format!(
                            "node {} is not a replica of {}; forwarded writes are not forwarded again",
                            local.me(),
                            valid.key
                        ),
                    );
                    local.out.reply(reply_to, Err(e))
                }
            }
        }
    }

    fn on_message<S: Store>(&mut self, ctx: &mut Ctx<'_, S>, from: NodeId, message: Message) {
        let local = &mut self.local;
        let dirty = &mut self.handoff.index.dirty;
        match message {
            Message::ReplicateRequest { req, key, object } => {
                local.on_replicate_request(ctx, from, req, key, object, false)
            }
            Message::ReplicatePlainRequest { req, key, object } => {
                local.on_replicate_request(ctx, from, req, key, object, true)
            }
            Message::HintDeliveryRequest { req, key, object } => {
                if handoff::arrived_too_old(local, &object, ctx.now) {
                    let result = Err(crate::message::ReplicaError::HintOutlivedGrace);
                    local
                        .out
                        .send(from, Message::ReplicateResponse { req, result });
                } else {
                    local.on_replicate_request(ctx, from, req, key, object, false)
                }
            }
            Message::ReplicateResponse { req, result } => {
                if self.handoff.owns(req) {
                    self.handoff.on_response(local, ctx, req, result)
                } else {
                    self.writes
                        .on_replicate_response(local, ctx.now, from, req, result)
                }
            }
            Message::ReadRequest { req, key } => local.on_read_request(ctx, from, req, key, false),
            Message::ReadDigestRequest { req, key } => {
                local.on_read_request(ctx, from, req, key, true)
            }
            Message::ReadResponse { req, result } => {
                self.reads.on_response(local, ctx, from, req, result)
            }
            Message::ReadDigestResponse { req, result } => {
                self.reads.on_digest(local, ctx, from, req, result)
            }
            Message::RepairRequest { key, object } => local.on_repair_request(ctx, key, object),
            Message::ForwardRequest { req, request } => {
                if self.forwards.first_time(ctx.now, from, req) {
                    let reply_to = ReplyTo::Node { node: from, req };
                    self.on_client(ctx, reply_to, ClientRequest::Put(request))
                }
            }
            Message::ForwardResponse { req, result } => {
                self.forwards.on_response(local, req, *result)
            }
            Message::BucketsGossip { buckets } => {
                let buckets =
                    buckets::stamped_within(buckets, ctx.now, local.config.max_clock_skew_ms);
                let poisoned = local.durability.poisoned().is_some();
                let changed = local.buckets.merge(ctx.store, poisoned, buckets.clone());
                local.buckets.answer_gossip(
                    &mut local.out,
                    from,
                    &buckets,
                    ctx.mono,
                    local.config.gossip_interval_ms,
                );
                // Writes this node stamps from now on come after a mark it just learned.
                for bucket in &changed.truncated {
                    let mark = local.buckets.truncated_at(bucket);
                    let _ = local
                        .hlc
                        .observe(mark, ctx.now, local.config.max_clock_skew_ms);
                }
                local.note(changed, ctx.now);
            }
            Message::Heartbeat {
                mono_ms,
                wall_ms,
                echo,
            } => {
                local.membership.on_heartbeat(from, ctx.mono);
                let limit = local.config.max_clock_skew_ms / 2;
                local
                    .clock
                    .on_heartbeat(from, mono_ms, wall_ms, echo, ctx.now, ctx.mono, limit);
            }
            Message::HintRequest {
                req,
                key,
                object,
                owner,
            } => {
                let result = self.handoff.store(local, ctx, owner, &key, &object);
                local.ack_when_durable(ctx, from, req, result);
            }
            Message::HintReadRequest { req, key, owner } => {
                let result = hint_read(local, ctx.store, ctx.now, owner, &key);
                local.out.send(from, Message::ReadResponse { req, result });
            }
            Message::AeTreeRequest {
                req,
                partition,
                n,
                level,
                indices,
            } => local.on_ae_tree_request(from, req, partition, n, level, indices),
            Message::AeSegmentRequest {
                req,
                partition,
                n,
                segments,
            } => local.on_ae_segment_request(ctx.store, from, req, partition, n, segments),
            Message::AeFetchRequest { req, keys } => {
                local.on_ae_fetch_request(ctx, from, req, keys)
            }
            Message::AeTreeResponse { req, hashes } => {
                self.ae.on_tree_response(local, ctx.now, req, hashes, dirty)
            }
            Message::AeSegmentResponse { req, entries } => {
                self.ae.on_segment_response(local, ctx, req, entries, dirty)
            }
            Message::AeFetchResponse { req, objects } => {
                self.ae.on_fetch_response(local, ctx, req, objects, dirty)
            }
            Message::ReapRequest { key, object } => {
                self.gc.on_reap_request(local, ctx, &key, &object)
            }
            Message::ExpireRequest { req, entries } => {
                local.on_expire_request(ctx, from, req, entries)
            }
            Message::PaxosRequest {
                req,
                key,
                ballot,
                phase,
            } => {
                if let Some(result) = local.on_paxos_request(ctx, from, req, &key, ballot, phase) {
                    local.out.send(from, Message::PaxosResponse { req, result });
                }
            }
            Message::PaxosResponse { req, result } => {
                self.paxos.on_response(local, ctx, from, req, result)
            }
            Message::PaxosFenceRequest {
                req,
                bucket,
                partition,
                fence,
                after,
            } => {
                let answer = local.on_paxos_fence(ctx, from, req, &bucket, partition, fence, after);
                if let Some(result) = answer {
                    local
                        .out
                        .send(from, Message::PaxosFenceResponse { req, result });
                }
            }
            Message::PaxosFenceResponse { req, result } => {
                self.repairs
                    .on_fence_response(local, ctx, &mut self.paxos, from, req, result)
            }
            Message::PaxosLowBound {
                bucket,
                partition,
                bound,
            } => {
                self.repairs.status.states_collected +=
                    local.on_paxos_low_bound(ctx, &bucket, partition, bound) as u64;
            }
            Message::ScanRequest {
                req,
                bucket,
                partition,
                after,
                limit,
            } => {
                let result =
                    local.on_scan_request(ctx.store, &bucket, partition, after.as_deref(), limit);
                local.out.send(from, Message::ScanResponse { req, result });
            }
            Message::TruncateRequest { req, bucket, mark } => {
                let result = local.on_truncate_request(ctx, &bucket, mark);
                local
                    .out
                    .send(from, Message::TruncateResponse { req, result });
            }
            Message::TruncateResponse { req, result } => {
                self.truncations.on_response(local, from, req, result)
            }
            Message::ScanResponse { req, result } => {
                self.scans.on_response(local, ctx.now, from, req, result)
            }
            Message::ExpireResponse { req, merged } => {
                self.expiries
                    .on_response(local, ctx, &mut self.gc, from, req, merged)
            }
        }
    }

    fn on_synced<S: Store>(
        &mut self,
        ctx: &mut Ctx<'_, S>,
        generation: u64,
        result: Result<(), StoreError>,
    ) {
        let (released, outcome) = self.local.durability.on_synced(generation, result);
        let local = &mut self.local;
        for waiter in released {
            match waiter {
                Waiter::LocalWrite(req) => {
                    self.writes
                        .on_local_write(local, ctx.now, req, outcome.clone())
                }
                Waiter::LocalRead { req, key } => {
                    self.reads
                        .on_local_synced(local, ctx, req, &key, outcome.clone())
                }
                Waiter::ExpireLocal(req) => {
                    self.expiries
                        .on_local_synced(local, ctx, &mut self.gc, req, outcome.is_ok())
                }
                Waiter::PaxosAck { to, req, answer } if to == local.me() => {
                    let result = outcome.clone().map(|()| answer).map_err(|e| {
                        crate::message::PaxosRefusal::Replica(crate::message::ReplicaError::Store(
                            e.to_string(),
                        ))
                    });
                    self.paxos.own_answer(req, result)
                }
                Waiter::PaxosFenceAck { to, req, list } if to == local.me() => {
                    let result = outcome
                        .clone()
                        .map(|()| list)
                        .map_err(|e| crate::message::ReplicaError::Store(e.to_string()));
                    self.repairs.own_answer(req, result)
                }
                other => local.release(ctx, other, outcome.clone()),
            }
        }
    }
}
