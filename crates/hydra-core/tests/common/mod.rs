//! The tiny synchronous cluster the node tests drive: messages are delivered in order at
//! once, syncs complete at once, time moves only to the next deadline when nothing else is
//! left to do; and the helpers the tests share.
#![allow(dead_code)]

use hydra_core::bucket::{BucketProps, CasMode, Consistency};
use hydra_core::ids::{ClientRequestId, NodeId, Timestamp};
use hydra_core::key::{BucketName, ObjectKey};
use hydra_core::layout::Layout;
use hydra_core::message::{ClientError, ClientRequest, ClientResponse, Expiry, WriteRequest};
use hydra_core::node::{Ctx, Input, Node, NodeConfig, Output, ReceiptDetail};
use hydra_core::store::MemStore;
use hydra_core::version::{Sibling, VersionVector};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeSet, VecDeque};

pub struct Cluster {
    pub nodes: Vec<Node>,
    pub stores: Vec<MemStore>,
    /// Acks without fsync (`periodic`/`none` durability): only required syncs reach the store.
    pub acks_without_fsync: bool,
    /// Wall-clock offset of each node, for skew tests.
    pub skew_ms: Vec<u64>,
    pub down: BTreeSet<usize>,
    /// A partition: a message between nodes of different groups is lost (all in group 0 at
    /// first).
    pub group: Vec<u8>,
    pub now: u64,
    pub rng: ChaCha8Rng,
    pub next_id: u64,
    pub layout: Layout,
    /// Changes to every node's configuration (kept for restarts).
    pub tweak: fn(&mut NodeConfig),
    /// What receipts client requests ask for (full unless a test says otherwise).
    pub receipts: ReceiptDetail,
}

pub type Reply = Result<ClientResponse, ClientError>;

/// How far the harness's monotonic clock is behind its wall clock (the harness starts at
/// 1,000,000 ms of wall time).
pub const MONO_BEHIND_WALL_MS: u64 = 990_000;

impl Cluster {
    pub fn new(count: u64) -> Cluster {
        Cluster::with(count, |_| {})
    }

    /// A cluster whose nodes' configuration `tweak` changes.
    pub fn with(count: u64, tweak: fn(&mut NodeConfig)) -> Cluster {
        let layout = Layout::uniform(count, 16).expect("valid");
        let nodes = (1..=count)
            .map(|i| {
                let mut config = config(i);
                tweak(&mut config);
                Node::new(config, layout.clone())
            })
            .collect();
        let mut c = Cluster {
            nodes,
            stores: (0..count).map(|_| MemStore::new()).collect(),
            skew_ms: vec![0; count as usize],
            acks_without_fsync: false,
            down: BTreeSet::new(),
            group: vec![0; count as usize],
            now: 1_000_000,
            rng: ChaCha8Rng::seed_from_u64(1),
            next_id: 0,
            layout,
            tweak,
            receipts: ReceiptDetail::Full,
        };
        // A node coordinates nothing until a heartbeat round trip has verified its clock.
        c.idle(1_000);
        c
    }

    pub fn kill(&mut self, i: usize) {
        self.down.insert(i);
        self.stores[i].crash();
    }

    pub fn restart(&mut self, i: usize) {
        self.down.remove(&i);
        let mut config = config(i as u64 + 1);
        (self.tweak)(&mut config);
        self.nodes[i] = Node::new(config, self.layout.clone());
    }

    /// Hands `input` to node `i`; queues what it sends and syncs, returns its replies.
    pub fn feed(
        &mut self,
        i: usize,
        input: Input,
        queue: &mut VecDeque<(usize, Input)>,
    ) -> Vec<(ClientRequestId, Reply)> {
        let mut replies = vec![];
        if self.down.contains(&i) {
            return replies;
        }
        let mut ctx = Ctx {
            now: Timestamp(self.now + self.skew_ms[i]),
            // A monotonic clock with its own origin, far from the wall clock's (as a
            // process's is): nothing may mix the two.
            mono: Timestamp(self.now - MONO_BEHIND_WALL_MS),
            store: &mut self.stores[i],
            rng: &mut self.rng,
        };
        self.nodes[i].handle(&mut ctx, input);
        while let Some(out) = self.nodes[i].poll_output() {
            match out {
                Output::Send { to, envelope } => {
                    let from = self.nodes[i].id();
                    let to = (to.0 - 1) as usize;
                    if self.group[i] == self.group[to] {
                        queue.push_back((to, Input::Message { from, envelope }));
                    }
                }
                Output::Reply { id, result } => replies.push((id, result)),
                Output::HintBudgetFull { .. } => {}
                Output::Sync {
                    generation,
                    required,
                } => {
                    let result = if self.acks_without_fsync && !required {
                        Ok(())
                    } else {
                        hydra_core::store::Store::sync(&mut self.stores[i])
                    };
                    queue.push_back((i, Input::Synced { generation, result }));
                }
            }
        }
        replies
    }

    /// The earliest deadline of a live node, in cluster time.
    pub fn next_deadline(&self) -> (u64, usize) {
        (0..self.nodes.len())
            .filter(|i| !self.down.contains(i))
            .filter_map(|i| {
                self.nodes[i]
                    .next_deadline()
                    .map(|t| (t.0.saturating_sub(self.skew_ms[i]), i))
            })
            .min()
            .expect("live nodes always have a heartbeat deadline")
    }

    /// Lets `ms` of time pass: timers fire, messages are delivered.
    pub fn idle(&mut self, ms: u64) {
        let until = self.now + ms;
        let mut queue = VecDeque::new();
        for _ in 0..1_000_000 {
            if let Some((i, input)) = queue.pop_front() {
                self.feed(i, input, &mut queue);
                continue;
            }
            let (t, i) = self.next_deadline();
            if t > until {
                self.now = until;
                return;
            }
            self.now = self.now.max(t);
            queue.push_back((i, Input::Tick));
        }
        panic!("idle never ended");
    }

    /// Runs `requests` (node, request) together until each is answered, dropping every
    /// message `drop(from, to, input)` says to drop; the replies in the order given.
    pub fn requests_together(
        &mut self,
        requests: Vec<(usize, ClientRequest)>,
        mut drop: impl FnMut(usize, usize, &Input) -> bool,
    ) -> Vec<Reply> {
        let mut queue: VecDeque<(usize, Input)> = VecDeque::new();
        let mut ids = Vec::new();
        for (at, request) in requests {
            let (id, input) = self.client_input(request);
            ids.push(id);
            queue.push_back((at, input));
        }
        let mut answers: Vec<Option<Reply>> = vec![None; ids.len()];
        let mut inputs: VecDeque<(usize, usize, Input)> =
            queue.into_iter().map(|(i, input)| (i, i, input)).collect();
        for _ in 0..1_000_000 {
            let Some((from, i, input)) = inputs.pop_front() else {
                if answers.iter().all(Option::is_some) {
                    return answers.into_iter().map(Option::unwrap).collect();
                }
                let (t, i) = self.next_deadline();
                self.now = self.now.max(t);
                inputs.push_back((i, i, Input::Tick));
                continue;
            };
            if drop(from, i, &input) {
                continue;
            }
            let mut out = VecDeque::new();
            for (got, result) in self.feed(i, input, &mut out) {
                let slot = ids
                    .iter()
                    .position(|id| *id == got)
                    .expect("a known request");
                answers[slot] = Some(result);
            }
            inputs.extend(out.into_iter().map(|(to, input)| (i, to, input)));
        }
        panic!("requests never answered");
    }

    /// A client request as the node's input, under a new id.
    fn client_input(&mut self, request: ClientRequest) -> (ClientRequestId, Input) {
        self.next_id += 1;
        let id = ClientRequestId(self.next_id);
        let input = Input::Client {
            id,
            request,
            receipt: self.receipts,
        };
        (id, input)
    }

    /// Runs `request` at node `at` until it is answered.
    pub fn request(&mut self, at: usize, request: ClientRequest) -> Reply {
        let (id, input) = self.client_input(request);
        let mut queue: VecDeque<(usize, Input)> = VecDeque::new();
        queue.push_back((at, input));
        let mut answer = None;
        for _ in 0..100_000 {
            let Some((i, input)) = queue.pop_front() else {
                if let Some(answer) = answer {
                    return answer;
                }
                // Nothing left to deliver: jump to the earliest deadline.
                let (t, i) = self.next_deadline();
                self.now = self.now.max(t);
                queue.push_back((i, Input::Tick));
                continue;
            };
            for (got, result) in self.feed(i, input, &mut queue) {
                assert_eq!(got, id);
                answer = Some(result);
            }
        }
        panic!("request never answered");
    }
}

pub fn config(id: u64) -> NodeConfig {
    let mut c = NodeConfig::new(NodeId(id));
    c.request_timeout_ms = 1_000;
    c.max_clock_skew_ms = 1_000;
    c.tombstone_grace_ms = 2_000;
    c.anti_entropy_interval_ms = 100;
    // Paxos state collection only where a test asks for it (`paxos_collection.rs`).
    c.paxos_repair_interval_ms = 0;
    c.buckets.insert(
        BucketName::new("small").expect("valid"),
        BucketProps {
            n: 2,
            ..BucketProps::default()
        },
    );
    c.buckets.insert(
        BucketName::new("serial-sets").expect("valid"),
        BucketProps {
            cas: CasMode::AllWrites,
            ..BucketProps::default()
        },
    );
    for (name, cas) in [("serial", CasMode::AllWrites), ("nocas", CasMode::Off)] {
        c.buckets.insert(
            BucketName::new(name).expect("valid"),
            BucketProps {
                cas,
                ..BucketProps::lww()
            },
        );
    }
    c
}

pub fn key(bucket: &str, k: &str) -> ObjectKey {
    ObjectKey::new(BucketName::new(bucket).expect("valid"), k.as_bytes()).expect("valid")
}

pub fn put(
    k: &ObjectKey,
    value: &str,
    context: Option<VersionVector>,
    w: Option<Consistency>,
) -> ClientRequest {
    ClientRequest::put(WriteRequest {
        key: k.clone(),
        value: Some(value.as_bytes().to_vec()),
        content_type: "text/plain".into(),
        context,
        w,
        timeout_ms: None,
        sloppy: None,
        expiry: None,
        on_version: None,
        collection: None,
    })
}

pub fn get(k: &ObjectKey, r: Option<Consistency>) -> ClientRequest {
    ClientRequest::Get {
        key: k.clone(),
        r,
        timeout_ms: None,
        sloppy: None,
    }
}

pub fn values(reply: &Reply) -> Vec<String> {
    match reply {
        Ok(ClientResponse::Read { siblings, .. }) => {
            let mut v: Vec<String> = siblings
                .iter()
                .map(|s: &Sibling| String::from_utf8_lossy(&s.value).into())
                .collect();
            v.sort();
            v
        }
        other => panic!("not a read: {other:?}"),
    }
}

pub fn context(reply: &Reply) -> VersionVector {
    match reply {
        Ok(ClientResponse::Read { context, .. }) | Ok(ClientResponse::Written { context, .. }) => {
            context.clone()
        }
        other => panic!("no context: {other:?}"),
    }
}

pub fn receipt_of(reply: &Reply) -> hydra_core::message::Receipt {
    reply
        .as_ref()
        .expect("a successful reply")
        .receipt()
        .expect("a read or write has a receipt")
        .clone()
}

/// A replica in `receipt` other than `me`.
pub fn other_replica(receipt: &hydra_core::message::Receipt, me: NodeId) -> NodeId {
    receipt
        .replicas
        .iter()
        .map(|r| r.node)
        .find(|n| *n != me)
        .expect("another replica")
}

pub fn error(reply: Reply) -> ClientError {
    reply.expect_err("expected an error")
}

/// In a cluster of 5: a key of bucket `default` whose third primary is killed and believed
/// down; returns the key, its first primary (the coordinator), the node down (index) and the
/// fallback that stands in for it.
pub fn one_primary_down(c: &mut Cluster, name: &str) -> (ObjectKey, usize, usize, NodeId) {
    let k = key("default", name);
    let partition = c.layout.partition_for("default", name.as_bytes());
    let order = c.layout.extended_preference_list(partition).to_vec();
    let (coordinator, down, fallback) = (
        (order[0].0 - 1) as usize,
        (order[2].0 - 1) as usize,
        order[3],
    );
    c.idle(1_000);
    c.kill(down);
    c.idle(6_000);
    (k, coordinator, down, fallback)
}

pub fn delete(k: &ObjectKey, context: VersionVector) -> ClientRequest {
    ClientRequest::put(WriteRequest {
        key: k.clone(),
        value: None,
        content_type: Default::default(),
        context: Some(context),
        w: None,
        timeout_ms: None,
        sloppy: None,
        expiry: None,
        on_version: None,
        collection: None,
    })
}

pub fn stored(c: &Cluster, node: usize, k: &ObjectKey) -> bool {
    let p = c.layout.partition_for(k.bucket.as_str(), k.key());
    hydra_core::store::Store::get(&c.stores[node], &k.storage_key(p))
        .expect("memstore")
        .is_some()
}

pub fn put_ttl(k: &ObjectKey, value: &str, ttl_ms: u64, w: Consistency) -> ClientRequest {
    ClientRequest::put(WriteRequest {
        key: k.clone(),
        value: Some(value.as_bytes().to_vec()),
        content_type: "text/plain".into(),
        context: None,
        w: Some(w),
        timeout_ms: None,
        sloppy: Some(false),
        expiry: Some(Expiry::AfterMs(ttl_ms)),
        on_version: None,
        collection: None,
    })
}

/// A compare-and-set of `k`: write `value` (or delete: `None`) if `condition` holds.
pub fn cas(
    k: &ObjectKey,
    condition: hydra_core::paxos::Condition,
    value: Option<&str>,
) -> ClientRequest {
    let action = match value {
        Some(v) => hydra_core::message::CasAction::Write {
            value: v.as_bytes().to_vec(),
            content_type: "text/plain".into(),
            expiry: None,
            keep_ttl: false,
        },
        None => hydra_core::message::CasAction::Delete,
    };
    ClientRequest::cas(hydra_core::message::CasRequest {
        key: k.clone(),
        condition,
        action,
        timeout_ms: None,
        supersedes: None,
    })
}

/// A serial read of `k`.
pub fn serial_get(k: &ObjectKey) -> ClientRequest {
    ClientRequest::cas(hydra_core::message::CasRequest {
        key: k.clone(),
        condition: hydra_core::paxos::Condition::Always,
        action: hydra_core::message::CasAction::Read,
        timeout_ms: None,
        supersedes: None,
    })
}

/// A compare-and-set's outcome: whether it applied, and the value after it.
pub fn cas_outcome(reply: &Reply) -> (bool, Option<String>) {
    match reply {
        Ok(ClientResponse::Cas {
            applied, siblings, ..
        }) => (
            *applied,
            siblings
                .first()
                .map(|s| String::from_utf8_lossy(&s.value).into()),
        ),
        other => panic!("not a compare-and-set answer: {other:?}"),
    }
}

/// How many keys node `i` holds Paxos state of.
pub fn paxos_states(c: &Cluster, i: usize) -> usize {
    let prefix = hydra_core::node::PAXOS_PARTITION.0.to_be_bytes();
    c.stores[i]
        .entries()
        .keys()
        .filter(|k| k.starts_with(&prefix))
        .count()
}

/// Whether `input`, sent from node index `from` to `to`, is a Paxos commit node 1 sends
/// another node (dropping them leaves node 1's proposals uncommitted elsewhere).
pub fn is_commit_from_node_1(from: usize, to: usize, input: &Input) -> bool {
    from == 0
        && to != 0
        && matches!(input, Input::Message { envelope, .. }
        if matches!(&envelope.message, hydra_core::message::Message::PaxosRequest {
            phase: hydra_core::message::PaxosPhase::Commit(..),
            ..
        }))
}
