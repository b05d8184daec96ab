//! The simulated world: nodes, disks, network, clients and faults on one event queue. The
//! clients (what they send, how they record the history) are in `clients.rs`.

mod cas;
mod clients;
mod collections;
mod config;
mod counter;
mod faults;
mod flood;
mod listing;
mod report;
mod truncation;

pub use config::{Durability, SimConfig};
pub use report::SimReport;

use config::{BUCKETS, node_config};

use clients::{Client, ClientState};

use crate::check::{self, Violation};
use crate::workload::{History, is_register, is_strict};
use hydra_core::bucket::Consistency;
use hydra_core::ids::{ClientRequestId, NodeId, Timestamp};
use hydra_core::key::{BucketName, ObjectKey};
use hydra_core::layout::Layout;
use hydra_core::message::{
    ClientError, ClientRequest, ClientResponse, ErrorCode, decode_envelope, decode_object,
    encode_envelope,
};
use hydra_core::node::{Ctx, Input, Node, Output, ReceiptDetail};
use hydra_core::store::{MemStore, Store};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

/// Simulated times start here, so that negative clock skews (and jumps of an hour back) stay
/// positive.
const EPOCH_MS: u64 = 10_000_000;
/// How far a clock jump moves a node's wall clock, at most (forward or back).
const CLOCK_JUMP_MS_MAX: u64 = 3_600_000;
/// Most events one run may process (a bound on every loop of the simulator).
const EVENTS_MAX: u64 = 20_000_000;
/// How many times the final read of a key is retried after healing.
const FINAL_READ_TRIES: u32 = 20;
/// The nodes' tombstone grace: longer than a request can take (3 s) plus message delays.
const TOMBSTONE_GRACE_MS: u64 = 10_000;

#[derive(Debug)]
enum Event {
    Deliver {
        from: NodeId,
        to: usize,
        bytes: Vec<u8>,
    },
    /// A client's request reaches a node.
    Request {
        client: usize,
        op: u64,
        node: usize,
        request: ClientRequest,
    },
    /// A node's answer reaches the client (or the client learns the node is down).
    Answer {
        client: usize,
        op: u64,
        result: Result<ClientResponse, ClientError>,
    },
    ClientTimeout {
        client: usize,
        op: u64,
    },
    ClientStart {
        client: usize,
    },
    Tick {
        node: usize,
        incarnation: u64,
    },
    SyncDone {
        node: usize,
        incarnation: u64,
        generation: u64,
        /// An fsync (else an ack the durability mode gives without one).
        real: bool,
    },
    /// `periodic` durability: the background fsync.
    PeriodicSync {
        node: usize,
        incarnation: u64,
    },
    Fault,
    Restart {
        node: usize,
    },
    /// A node's clock is put right after a jump.
    ClockFixed {
        node: usize,
    },
}

struct Scheduled {
    at: u64,
    seq: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

struct SimNode {
    id: NodeId,
    core: Option<Node>,
    store: MemStore,
    incarnation: u64,
    sync_in_flight: bool,
    /// Highest sync generation asked for while another sync was running.
    sync_waiting: Option<u64>,
    next_tick: Option<u64>,
    clock_skew_ms: i64,
    /// The skew drawn at the start; `clock_skew_ms` differs from it while the clock has
    /// jumped (across restarts too: the clock is the machine's).
    base_skew_ms: i64,
    /// Frozen until then (a pause): every event for the node waits.
    paused_until: Option<u64>,
    /// Client request ids of this incarnation -> (client, op).
    requests: BTreeMap<ClientRequestId, (usize, u64)>,
    next_request: u64,
}

struct World {
    /// Hash and set updates (`collections.rs`), the values their adds wrote so far, and the
    /// final read of the key being judged, once answered.
    collection_ops: Vec<collections::CollectionOp>,
    collection_values: u64,
    collection_final: Option<Option<hydra_core::collection::Collection>>,
    /// The exact increments of a hash field (`collections.rs`).
    collection_increments: collections::Increments,
    /// The final serial read of the counter (`counter.rs`), once answered.
    counter_final: Option<Vec<u32>>,
    /// The answer to the listing page in progress (`listing.rs`): its keys and next cursor.
    listing_page: Option<(Vec<Vec<u8>>, Option<hydra_core::message::ListCursor>)>,
    /// The answer to the administrative request in progress (`truncation.rs`).
    admin_answer: Option<Result<ClientResponse, ClientError>>,
    config: SimConfig,
    rng: ChaCha8Rng,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<Scheduled>>,
    nodes: Vec<SimNode>,
    layout: Layout,
    clients: Vec<Client>,
    /// Partition group of each node; nodes in different groups cannot talk.
    groups: Vec<u8>,
    /// Faults are injected while true.
    faulty: bool,
    history: History,
    active_keys: Vec<u64>,
    adds_invoked: BTreeMap<u64, usize>,
    next_key: u64,
    next_element: u64,
    /// The buckets of sets (`siblings`) and registers (`lww`), sloppy (odd keys) and strict
    /// (even keys): see [`bucket_of`].
    buckets: [BucketName; 5],
    /// Every replica's objects after healing, before the final reads (anti-entropy runs only).
    before_final_reads: Option<check::ReplicaObjects>,
    /// Sibling floods (see `flood`): their own random stream, the last request id, and the
    /// answers of the final check's requests.
    flood_rng: ChaCha8Rng,
    flood_op: u64,
    flood_waiting: Option<u64>,
    flood_answers: BTreeMap<u64, Result<ClientResponse, ClientError>>,
    report: SimReport,
}

/// Runs one simulation to the end and checks it.
pub fn run(config: SimConfig) -> SimReport {
    let mut world = World::new(config);
    world.run_workload();
    world.heal_and_read_everything();
    world.check_collections(FINAL_READ_TRIES);
    world.check_listings();
    world.check_truncation();
    world.check_garbage();
    world.finish()
}

impl World {
    fn new(config: SimConfig) -> World {
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let layout = Layout::uniform(config.nodes as u64, config.partitions)
            .expect("simulated layouts are valid");
        let nodes = (0..config.nodes)
            .map(|i| {
                let id = NodeId(i as u64 + 1);
                let skew = config.clock_skew_ms_max as i64;
                let drawn = if skew == 0 {
                    0
                } else {
                    rng.random_range(-skew..=skew)
                };
                SimNode {
                    id,
                    core: Some(Node::new(node_config(id, &config), layout.clone())),
                    store: MemStore::new(),
                    incarnation: 0,
                    sync_in_flight: false,
                    sync_waiting: None,
                    next_tick: None,
                    clock_skew_ms: drawn,
                    base_skew_ms: drawn,
                    paused_until: None,
                    requests: BTreeMap::new(),
                    next_request: 0,
                }
            })
            .collect();
        let clients = (0..config.clients).map(|_| Client::new()).collect();
        let active_keys: Vec<u64> = (0..config.active_keys as u64).collect();
        let report = SimReport {
            seed: config.seed,
            nodes: config.nodes,
            durability: Some(config.durability),
            all_writes: config.all_writes,
            cas_siblings: config.cas_siblings,
            ..SimReport::default()
        };
        let flood_rng = ChaCha8Rng::seed_from_u64(config.seed ^ 0xF100D);
        World {
            collection_ops: Vec::new(),
            collection_values: 0,
            collection_final: None,
            collection_increments: Default::default(),
            counter_final: None,
            listing_page: None,
            admin_answer: None,
            next_key: active_keys.len() as u64,
            active_keys,
            groups: vec![0; config.nodes],
            config,
            rng,
            now: EPOCH_MS,
            seq: 0,
            queue: BinaryHeap::new(),
            nodes,
            layout,
            clients,
            faulty: true,
            history: History::default(),
            adds_invoked: BTreeMap::new(),
            next_element: 1,
            buckets: BUCKETS.map(|(name, _, _)| BucketName::new(name).expect("valid name")),
            before_final_reads: None,
            flood_rng,
            flood_op: 0,
            flood_waiting: None,
            flood_answers: BTreeMap::new(),
            report,
        }
    }

    fn schedule(&mut self, delay_ms: u64, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled {
            at: self.now + delay_ms,
            seq: self.seq,
            event,
        }));
    }

    fn object_key(&self, key: u64) -> ObjectKey {
        ObjectKey::new(
            self.buckets[bucket_of(key)].clone(),
            format!("k{key}").as_bytes(),
        )
        .expect("valid key")
    }

    fn run_workload(&mut self) {
        for i in 0..self.nodes.len() {
            self.nodes[i].next_tick = Some(self.now);
            self.schedule(
                0,
                Event::Tick {
                    node: i,
                    incarnation: 0,
                },
            );
            self.start_periodic_sync(i);
        }
        if self.config.collections && self.rng.random_bool(0.5) {
            // Every later update of a hash or set is merged against the mark.
            self.truncate_collections_first();
        }
        for c in 0..self.clients.len() {
            let d = self.rng.random_range(0..10);
            self.schedule(d, Event::ClientStart { client: c });
        }
        if self.config.fault_interval_ms > 0 {
            let d = self.rng.random_range(0..self.config.fault_interval_ms);
            self.schedule(d, Event::Fault);
        }
        let end = EPOCH_MS + self.config.duration_ms;
        self.run_until(end);
    }

    /// Heals everything, restarts every node, lets clients finish, then reads every key at
    /// `r = all` (with read repair) and lets the repairs land.
    fn heal_and_read_everything(&mut self) {
        self.faulty = false;
        self.groups = vec![0; self.nodes.len()];
        for n in &mut self.nodes {
            n.clock_skew_ms = n.base_skew_ms;
        }
        for i in 0..self.nodes.len() {
            if self.nodes[i].core.is_none() {
                self.restart(i);
            }
        }
        // Let in-flight client operations finish (or time out), hints be handed off and
        // anti-entropy exchange every tree.
        let settle = self.now + 20_000;
        self.run_until(settle);
        if self.config.anti_entropy {
            self.before_final_reads = Some(self.replica_objects());
        }
        let keys: Vec<u64> = (0..self.next_key).collect();
        for key in keys {
            let mut done = false;
            for _ in 0..FINAL_READ_TRIES {
                let op = self.start_read(0, key, Some(Consistency::All), true);
                let deadline = self.now + 10_000;
                while self.now < deadline
                    && matches!(self.clients[0].state, ClientState::Reading { op: o, .. } if o == op)
                {
                    if !self.step(deadline) {
                        break;
                    }
                }
                let read = if is_register(key) {
                    self.history
                        .register_reads
                        .last()
                        .is_some_and(|r| r.is_final && r.key == key)
                } else {
                    self.history
                        .reads
                        .last()
                        .is_some_and(|r| r.is_final && r.key == key)
                };
                if read {
                    done = true;
                    break;
                }
                self.clients[0].state = ClientState::Idle;
            }
            if !done {
                self.report
                    .violations
                    .push(Violation::FinalReadFailed { key });
            }
            self.clients[0].state = ClientState::Idle;
        }
        self.read_cas_keys(FINAL_READ_TRIES);
        self.read_counter(FINAL_READ_TRIES);
        self.check_flood();
        let settle = self.now + 5_000;
        self.run_until(settle);
    }

    fn finish(mut self) -> SimReport {
        for i in 0..self.nodes.len() {
            self.count_hints(i);
            // (m) Every node's trees agree with its store (they were loaded from it at each
            // restart and kept with every write since).
            if let Some(core) = &self.nodes[i].core
                && let Err(detail) = core.check_trees(&self.nodes[i].store)
            {
                self.report.violations.push(Violation::TreesWrong {
                    node: self.nodes[i].id.0,
                    detail,
                });
            }
            if let Some(core) = &self.nodes[i].core {
                let pending: usize = core
                    .status(Timestamp(self.now))
                    .hints
                    .iter()
                    .map(|h| h.count)
                    .sum();
                self.report.hints_pending += pending as u64;
            }
        }
        let replicas = self
            .before_final_reads
            .take()
            .unwrap_or_else(|| self.replica_objects());
        let mut report = std::mem::take(&mut self.report);
        report.sim_ms = self.now - EPOCH_MS;
        report.keys = self.next_key;
        // Two nodes' clocks are at most twice the largest skew apart (plus a millisecond, as
        // timestamps of one millisecond tie).
        let skew_bound_ms = 2 * self.config.clock_skew_ms_max + 1;
        let durable_acks = self.config.durability == Durability::Fsync;
        check::check_all(
            &self.history,
            &replicas,
            skew_bound_ms,
            durable_acks,
            &mut report,
        );
        report.history = std::mem::take(&mut self.history);
        report
    }

    /// (g) After healing and the final reads, three tombstone graces and a sweep cycle of
    /// quiet (no faults, no clients): by then every delete reached every primary (hints,
    /// read repair, anti-entropy, the sweep's second delete of an old tombstone) and was
    /// reaped, and every expired value was deleted and reaped. Nothing that reads as absent
    /// may be left stored.
    fn check_garbage(&mut self) {
        let quiet = 3 * TOMBSTONE_GRACE_MS + 10_000;
        let until = self.now + quiet;
        self.run_until(until);
        // Well past any node's clock skew.
        let expired_by = self.now - 1_000;
        let flood = (self.report.flood_writes > 0).then_some(flood::FLOOD_KEY);
        for key in (0..self.next_key).chain(flood) {
            for (node, bytes) in self.stored_objects(key) {
                let Some(Ok(object)) = bytes.map(|b| decode_object(&b)) else {
                    continue;
                };
                let what = if object.is_tombstone() {
                    "a tombstone"
                } else if object.expired_before(expired_by) {
                    "an expired value"
                } else {
                    continue;
                };
                self.report.garbage_left += 1;
                self.report.violations.push(Violation::GarbageLeft {
                    key,
                    node: node.0,
                    what,
                });
            }
        }
        // Paxos state: repair rounds settle every group and drop its state (the low bound
        // stays, under its own partition). Judged in runs without clock jumps only: after a
        // jump a group's last state may wait the jump out (seed 19, two jumps, drops it an
        // hour of simulated time later; a ballot or fence its jumped clock stamped, likely).
        if self.config.paxos_repair_interval_ms > 0 && self.report.clock_jumps == 0 {
            let prefix = hydra_core::node::PAXOS_PARTITION.0.to_be_bytes();
            for n in &self.nodes {
                let states = n
                    .store
                    .entries()
                    .keys()
                    .filter(|k| k.starts_with(&prefix))
                    .count();
                if states > 0 {
                    self.report.violations.push(Violation::PaxosStateLeft {
                        node: n.id.0,
                        states,
                    });
                }
            }
        }
    }

    /// For every key: each replica's stored object (encoded), or None.
    fn replica_objects(&self) -> check::ReplicaObjects {
        (0..self.next_key)
            .map(|key| (key, self.stored_objects(key)))
            .collect()
    }

    /// Each replica's stored object of `key` (encoded), or None.
    fn stored_objects(&self, key: u64) -> Vec<(NodeId, Option<Vec<u8>>)> {
        let ok = self.object_key(key);
        let partition = self.layout.partition_for(ok.bucket.as_str(), ok.key());
        let skey = ok.storage_key(partition);
        let holders = self.layout.preference_list(partition, 3).to_vec();
        holders
            .iter()
            .map(|id| {
                let node = &self.nodes[(id.0 - 1) as usize];
                (
                    *id,
                    node.store
                        .get(&skey)
                        .expect("memstore reads do not fail after restart"),
                )
            })
            .collect()
    }

    fn run_until(&mut self, until: u64) {
        while self.step(until) {}
        self.now = self.now.max(until);
    }

    /// Processes the next event if it is due by `until`. Returns false when none is.
    fn step(&mut self, until: u64) -> bool {
        if self.report.events >= EVENTS_MAX {
            return false;
        }
        let Some(Reverse(next)) = self.queue.peek() else {
            return false;
        };
        if next.at > until {
            return false;
        }
        let Some(Reverse(Scheduled { at, event, .. })) = self.queue.pop() else {
            return false;
        };
        self.now = at;
        self.report.events += 1;
        self.dispatch(event);
        true
    }

    fn dispatch(&mut self, event: Event) {
        // A paused node processes nothing: what reaches it waits (in order) until it resumes.
        let target = match &event {
            Event::Deliver { to, .. } => Some(*to),
            Event::Request { node, .. }
            | Event::Tick { node, .. }
            | Event::SyncDone { node, .. }
            | Event::PeriodicSync { node, .. } => Some(*node),
            _ => None,
        };
        if let Some(i) = target
            && let Some(until) = self.nodes[i].paused_until
        {
            if until > self.now {
                self.schedule(until - self.now, event);
                return;
            }
            self.nodes[i].paused_until = None;
        }
        match event {
            Event::Deliver { from, to, bytes } => {
                if self.nodes[to].core.is_none() {
                    return;
                }
                let envelope =
                    decode_envelope(&bytes).expect("the simulator only sends what a node encoded");
                if let Some(text) = &self.config.trace {
                    let shown = format!("{envelope:?}");
                    if shown.contains(text.as_str()) {
                        eprintln!("t={} {from} -> n{}: {shown}", self.now, to + 1);
                    }
                }
                self.feed(to, Input::Message { from, envelope });
            }
            Event::Request {
                client,
                op,
                node,
                request,
            } => {
                if self.nodes[node].core.is_none() {
                    let e =
                        ClientError::new(ErrorCode::Overloaded, "connection refused: node is down");
                    let d = self.rng.random_range(1..=3);
                    self.schedule(
                        d,
                        Event::Answer {
                            client,
                            op,
                            result: Err(e),
                        },
                    );
                    return;
                }
                let n = &mut self.nodes[node];
                n.next_request += 1;
                let id = ClientRequestId(n.next_request);
                n.requests.insert(id, (client, op));
                let receipt = receipt_detail(id);
                self.feed(
                    node,
                    Input::Client {
                        id,
                        request,
                        receipt,
                    },
                );
            }
            Event::Answer { client, op, result } if client == flood::FLOOD_CLIENT => {
                // Only the answer the final check waits for (flood writes' go unread).
                if self.flood_waiting == Some(op) {
                    self.flood_answers.insert(op, result);
                }
            }
            Event::Answer { client, op, result } => self.on_answer(client, op, result),
            Event::ClientTimeout { client, op } => self.on_client_timeout(client, op),
            Event::ClientStart { client } => self.client_start(client),
            Event::Tick { node, incarnation } => {
                let n = &mut self.nodes[node];
                if n.incarnation != incarnation || n.core.is_none() {
                    return;
                }
                if n.next_tick == Some(self.now) {
                    n.next_tick = None;
                }
                self.feed(node, Input::Tick);
            }
            Event::SyncDone {
                node,
                incarnation,
                generation,
                real,
            } => {
                let n = &mut self.nodes[node];
                if n.incarnation != incarnation || n.core.is_none() {
                    return;
                }
                if !real {
                    self.feed(
                        node,
                        Input::Synced {
                            generation,
                            result: Ok(()),
                        },
                    );
                    return;
                }
                let result = n.store.sync();
                n.sync_in_flight = false;
                self.feed(node, Input::Synced { generation, result });
                if let Some(g) = self.nodes[node].sync_waiting.take() {
                    self.start_sync(node, g);
                }
            }
            Event::PeriodicSync { node, incarnation } => {
                let n = &mut self.nodes[node];
                if n.incarnation != incarnation || n.core.is_none() {
                    return;
                }
                let _ = n.store.sync();
                if let Durability::Periodic { interval_ms } = self.config.durability {
                    self.schedule(interval_ms, Event::PeriodicSync { node, incarnation });
                }
            }
            Event::Fault => self.inject_fault(),
            Event::Restart { node } => {
                if self.nodes[node].core.is_none() {
                    if self.config.trace.is_some() {
                        eprintln!("t={} restart n{}", self.now, node + 1);
                    }
                    self.restart(node);
                }
            }
            Event::ClockFixed { node } => {
                let n = &mut self.nodes[node];
                n.clock_skew_ms = n.base_skew_ms;
            }
        }
    }

    /// Hands an input to a node and carries out what it asks for.
    fn feed(&mut self, i: usize, input: Input) {
        let wall = (self.now as i64 + self.nodes[i].clock_skew_ms) as u64;
        let World { nodes, rng, .. } = self;
        let n = &mut nodes[i];
        let Some(core) = n.core.as_mut() else { return };
        let mut ctx = Ctx {
            now: Timestamp(wall),
            // The monotonic clock has its own origin (simulated time from the start), as a
            // process's has: nothing may mix it with the wall clock.
            mono: Timestamp(self.now - EPOCH_MS),
            store: &mut n.store,
            rng,
        };
        core.handle(&mut ctx, input);
        let mut outputs = Vec::new();
        while let Some(o) = core.poll_output() {
            outputs.push(o);
        }
        let deadline = core.next_deadline();
        for o in outputs {
            match o {
                Output::Send { to, envelope } => {
                    let bytes = encode_envelope(&envelope);
                    self.send(i, to, bytes);
                }
                Output::HintBudgetFull { .. } => {}
                Output::Reply { id, result } => {
                    let listed = match &result {
                        Ok(
                            reply @ (ClientResponse::Read { .. } | ClientResponse::Written { .. }),
                        ) => reply.receipt().map(|r| r.replicas.len()),
                        _ => None,
                    };
                    if receipt_detail(id) == ReceiptDetail::Full && listed == Some(0) {
                        self.report.violations.push(Violation::ReceiptWrong {
                            node: i as u64 + 1,
                            detail: format!("request {} asked for a full receipt", id.0),
                        });
                    }
                    if let Some((client, op)) = self.nodes[i].requests.remove(&id) {
                        let d = self.rng.random_range(0..=2);
                        self.schedule(d, Event::Answer { client, op, result });
                    }
                }
                Output::Sync {
                    generation,
                    required,
                } => {
                    let fsync = self.config.durability == Durability::Fsync;
                    if !fsync && !required && !self.nodes[i].sync_in_flight {
                        // Acked at once, as the shell does in `periodic` and `none` modes.
                        let incarnation = self.nodes[i].incarnation;
                        self.schedule(
                            0,
                            Event::SyncDone {
                                node: i,
                                incarnation,
                                generation,
                                real: false,
                            },
                        );
                    } else if self.nodes[i].sync_in_flight {
                        let w = &mut self.nodes[i].sync_waiting;
                        *w = Some(w.unwrap_or(0).max(generation));
                    } else {
                        self.start_sync(i, generation);
                    }
                }
            }
        }
        if let Some(Timestamp(t)) = deadline {
            // Node deadlines are in its own skewed clock; convert back to simulated time.
            let at = (t as i64 - self.nodes[i].clock_skew_ms).max(self.now as i64) as u64;
            let n = &mut self.nodes[i];
            if n.next_tick.is_none_or(|cur| at < cur || cur < self.now) {
                n.next_tick = Some(at);
                let incarnation = n.incarnation;
                self.schedule(
                    at - self.now,
                    Event::Tick {
                        node: i,
                        incarnation,
                    },
                );
            }
        }
    }

    fn start_sync(&mut self, i: usize, generation: u64) {
        let n = &mut self.nodes[i];
        n.sync_in_flight = true;
        let incarnation = n.incarnation;
        let d = self.rng.random_range(0..=self.config.fsync_ms_max);
        self.schedule(
            d,
            Event::SyncDone {
                node: i,
                incarnation,
                generation,
                real: true,
            },
        );
    }

    fn send(&mut self, from: usize, to: NodeId, bytes: Vec<u8>) {
        self.report.messages += 1;
        let to_index = (to.0 - 1) as usize;
        if self.groups[from] != self.groups[to_index] {
            self.report.dropped_messages += 1;
            return;
        }
        if self.faulty && self.rng.random_bool(self.config.drop_probability) {
            self.report.dropped_messages += 1;
            return;
        }
        let copies = if self.faulty && self.rng.random_bool(self.config.duplicate_probability) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            // Mostly short delays, sometimes a long one: messages overtake each other.
            let d = if self.faulty && self.rng.random_bool(0.02) {
                self.rng.random_range(50..=500)
            } else {
                self.rng.random_range(0..=self.config.delay_ms_max)
            };
            let from_id = self.nodes[from].id;
            self.schedule(
                d,
                Event::Deliver {
                    from: from_id,
                    to: to_index,
                    bytes: bytes.clone(),
                },
            );
        }
    }

    /// `periodic` durability: the node's background fsync, every interval from now on.
    fn start_periodic_sync(&mut self, i: usize) {
        if let Durability::Periodic { interval_ms } = self.config.durability {
            let incarnation = self.nodes[i].incarnation;
            self.schedule(
                interval_ms,
                Event::PeriodicSync {
                    node: i,
                    incarnation,
                },
            );
        }
    }
}

/// Which of [`BUCKETS`] holds the compare-and-set keys and the counter: a strict one.
fn cas_bucket(sim: &SimConfig) -> usize {
    if sim.cas_siblings { 0 } else { 2 }
}

/// Which of [`BUCKETS`] holds `key`.
fn bucket_of(key: u64) -> usize {
    usize::from(is_register(key)) * 2 + usize::from(!is_strict(key))
}

/// Half the requests ask for brief receipts (as a pipeline's but its last do), by the id's
/// parity: no draw from the seed's random source, so seeds replay as before.
fn receipt_detail(id: ClientRequestId) -> ReceiptDetail {
    match id.0 % 2 {
        0 => ReceiptDetail::Brief,
        _ => ReceiptDetail::Full,
    }
}
