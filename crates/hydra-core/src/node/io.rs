//! What crosses the core's boundary: [`Input`]s from the shell, [`Output`]s to it, the [`Ctx`]
//! of one call, and the [`Outbox`] every part writes its outputs to.

use crate::ids::{ClientRequestId, LayoutVersion, NodeId, PartitionId, RequestId, Timestamp};
use crate::message::{ClientError, ClientRequest, ClientResponse, Envelope, Message};
use crate::store::{Store, StoreError};
use std::collections::VecDeque;

/// What the shell feeds the node.
#[derive(Clone, Debug)]
pub enum Input {
    Client {
        id: ClientRequestId,
        request: ClientRequest,
        /// How much of its receipt the reply carries.
        receipt: ReceiptDetail,
    },
    Message {
        from: NodeId,
        envelope: Envelope,
    },
    /// A [`Output::Sync`] finished: every write made before it started is durable (or not).
    Synced {
        generation: u64,
        result: Result<(), StoreError>,
    },
    /// Time passed; timers up to `now` are due.
    Tick,
    /// The bucket table of another shard of this node (the shell's `node.shards`, whose
    /// first shard alone takes bucket changes): joined as a peer's gossip is, each entry with
    /// its stamps, so every shard's cluster resolves concurrent changes alike; without the
    /// entries' truncation marks (a shard truncates through its own cluster's quorum, and a
    /// mark no peer of this shard has observed could hide writes they acknowledge after it).
    /// What it changes is gossiped to the peers at once.
    AdoptBuckets(Vec<crate::message::BucketEntry>),
}

/// How much of its receipt a client request's reply carries. A receipt's list of replicas
/// (each with its zone, role and outcome) is an allocation built on the core thread and
/// freed by the front end's: 5-6% of the coordinator's core thread on pipelined reads, for a
/// list that RESP shows for a pipeline's last request only (`HYDRA.RECEIPT`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReceiptDetail {
    /// Every replica the request involved.
    #[default]
    Full,
    /// The rest without the list of replicas: coordinator, partition, replicas needed, read
    /// repairs (which the metrics count), hints stored, time taken. An error's receipt, which
    /// its message is made from, is always full, and so is a compare-and-set's.
    Brief,
}

/// What the node asks the shell to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    Send {
        to: NodeId,
        envelope: Envelope,
    },
    Reply {
        id: ClientRequestId,
        result: Result<ClientResponse, ClientError>,
    },
    /// Sync the store, then report [`Input::Synced`] with this generation. Several may be
    /// outstanding; one sync that starts after a request was emitted satisfies it, so the
    /// shell may coalesce them (group commit). A shell whose durability mode acks without
    /// fsync (`periodic`, `none`) may report an unrequired generation at once, but never
    /// before an earlier required one it is still syncing.
    Sync {
        generation: u64,
        /// The generation covers a new dot of this node or a clock mark: it must be made
        /// durable whatever the durability mode (else a crash could make the node issue the
        /// same dot, or an older timestamp, for another value).
        required: bool,
    },
    /// A hint for `owner` was refused because its byte budget is full: the key's partition is
    /// left to anti-entropy. For the operator's log.
    HintBudgetFull {
        owner: NodeId,
        partition: PartitionId,
    },
}

/// What a call into the node may use: the time, the store, a seeded random source.
pub struct Ctx<'a, S: Store> {
    /// The wall clock (milliseconds since the Unix epoch): stamps writes, TTLs, reap times.
    pub now: Timestamp,
    /// A clock that never jumps (milliseconds from any origin fixed for the process): timers
    /// and the failure detector run on it, and a step of `now` against it is a clock jump.
    pub mono: Timestamp,
    pub store: &'a mut S,
    pub rng: &'a mut dyn rand::RngCore,
}

/// Who gets the answer of a request this node coordinates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReplyTo {
    /// The node's own request (a delete of expired values): the reply is dropped.
    Internal,
    Client(ClientRequestId, ReceiptDetail),
    /// The node that forwarded the write here.
    Node {
        node: NodeId,
        req: RequestId,
    },
    /// A serial read of a Paxos repair round (`paxos_repair.rs`), by its own id: whether it
    /// succeeded is queued for the round ([`Outbox::take_repaired`]).
    Repair(RequestId),
}

impl ReplyTo {
    /// How much of a receipt the reply carries: the client's choice; in full to a node that
    /// forwarded the write (its client's reply); brief where nobody sees it.
    pub(crate) fn receipt_detail(self) -> ReceiptDetail {
        match self {
            ReplyTo::Client(_, detail) => detail,
            ReplyTo::Node { .. } => ReceiptDetail::Full,
            ReplyTo::Internal | ReplyTo::Repair(_) => ReceiptDetail::Brief,
        }
    }
}

/// The node's queue of outputs, drained by the shell after each call, and the source of
/// internode request ids. Bounded by what one call can emit: every part emits a bounded
/// number of outputs per input (see each part's limits).
#[derive(Debug)]
pub(crate) struct Outbox {
    me: NodeId,
    layout_version: LayoutVersion,
    outputs: VecDeque<Output>,
    next_request: u64,
    /// Ends of Paxos repair rounds' serial reads (the read's id, whether it succeeded), for
    /// the repair part. Bounded by `PAXOS_REPAIRS_IN_FLIGHT`.
    repaired: Vec<(RequestId, bool)>,
}

impl Outbox {
    pub(crate) fn new(me: NodeId, layout_version: LayoutVersion) -> Outbox {
        Outbox {
            me,
            layout_version,
            outputs: VecDeque::new(),
            next_request: 0,
            repaired: Vec::new(),
        }
    }

    pub(crate) fn me(&self) -> NodeId {
        self.me
    }

    pub(crate) fn pop(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    pub(crate) fn push(&mut self, output: Output) {
        self.outputs.push_back(output);
    }

    /// A fresh internode request id. Ids must not repeat across restarts (receivers
    /// deduplicate forwarded writes by them), so each incarnation starts at a random point of
    /// a 2^63 space.
    pub(crate) fn new_request(&mut self, rng: &mut dyn rand::RngCore) -> RequestId {
        if self.next_request == 0 {
            self.next_request = rng.next_u64() >> 1 | 1;
        }
        self.next_request += 1;
        RequestId(self.next_request)
    }

    pub(crate) fn send(&mut self, to: NodeId, message: Message) {
        debug_assert_ne!(to, self.me, "a node never sends itself a message");
        let envelope = Envelope {
            layout_version: self.layout_version,
            message,
        };
        self.outputs.push_back(Output::Send { to, envelope });
    }

    pub(crate) fn reply(&mut self, to: ReplyTo, result: Result<ClientResponse, ClientError>) {
        match to {
            ReplyTo::Internal => {}
            ReplyTo::Client(id, _) => self.outputs.push_back(Output::Reply { id, result }),
            ReplyTo::Node { node, req } => self.send(
                node,
                Message::ForwardResponse {
                    req,
                    result: Box::new(result),
                },
            ),
            ReplyTo::Repair(read) => self.repaired.push((read, result.is_ok())),
        }
    }

    /// The repair rounds' serial reads that ended since the last call.
    pub(crate) fn take_repaired(&mut self) -> Vec<(RequestId, bool)> {
        std::mem::take(&mut self.repaired)
    }
}
