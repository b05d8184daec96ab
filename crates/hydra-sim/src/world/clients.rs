//! The simulated clients: each reads a key, then writes it (a set: adds an element or deletes
//! the set, with the read's context; a register: writes a unique value, some with a TTL, or
//! deletes it), and records every step in the Jepsen-style history the checkers read.

use super::{Event, World};
use crate::workload::{
    AddOp, Completion, DeleteOp, ReadOp, RegisterOp, RegisterRead, RegisterWrite, decode_register,
    encode_register, encode_set, is_register, is_strict, union_of, writes_with_context,
};
use hydra_core::bucket::Consistency;
use hydra_core::ids::Timestamp;
use hydra_core::message::{
    ClientError, ClientRequest, ClientResponse, Expiry, VersionOp, WriteRequest,
};
use hydra_core::version::VersionVector;
use rand::Rng;
use std::collections::{BTreeMap, BTreeSet};

/// Register writes with a TTL get one of at most this many milliseconds (short, so values
/// expire during the run and refreshes race expiry).
const REGISTER_TTL_MS_MAX: u64 = 3_000;
/// Writes a register key gets before it retires. Fewer than a set's: each key's last writes
/// (often a short-TTL value refreshed by one without a TTL) then sit idle, for a replica
/// that missed the refresh to come back to and sweep its expired copy.
const REGISTER_WRITES_PER_KEY: usize = 8;
/// A client thinks up to this long after half its register writes, so a register key's writes spread
/// over seconds (as a session key's refreshes do) and faults fall between them.
const REGISTER_THINK_MS_MAX: u64 = 1_500;

#[derive(Clone, Debug)]
pub(super) enum ClientState {
    Idle,
    Reading {
        key: u64,
        op: u64,
        invoked: Timestamp,
        is_final: bool,
    },
    Writing {
        add: usize,
        op: u64,
    },
    Deleting {
        delete: usize,
        op: u64,
    },
    WritingRegister {
        write: usize,
        op: u64,
    },
    /// A page of the final listing (`listing.rs`).
    Listing {
        op: u64,
    },
    /// An administrative request after the run (`truncation.rs`).
    Admin {
        op: u64,
    },
    /// A compare-and-set operation (`history.cas_ops[idx]`).
    Cas {
        idx: usize,
        op: u64,
    },
    /// A step of a counter increment (`counter.rs`).
    Counter {
        op: u64,
        stage: super::counter::CounterStage,
    },
    /// A step of a hash or set update (`collections.rs`).
    Collection {
        op: u64,
        stage: super::collections::CollectionStage,
    },
}

pub(super) struct Client {
    pub(super) state: ClientState,
    pub(super) next_op: u64,
    /// The newest `lww` version this client saw (from reads and writes), as a Redis
    /// connection keeps it; sent as the context of its register writes.
    pub(super) seen: Option<VersionVector>,
    /// Per register key: the ids of the values this client read or wrote (acknowledged).
    pub(super) saw: BTreeMap<u64, Vec<u64>>,
    /// Its own field of the counter.
    pub(super) count: super::counter::Count,
}

impl Client {
    pub(super) fn new() -> Client {
        Client {
            state: ClientState::Idle,
            next_op: 0,
            seen: None,
            saw: BTreeMap::new(),
            count: Default::default(),
        }
    }

    /// Keeps the newer of the version seen so far and `context` (an `lww` context names one
    /// version: its writer and timestamp).
    fn note_seen(&mut self, context: &VersionVector) {
        let newest = |c: &VersionVector| c.0.iter().map(|(n, t)| (*t, *n)).max();
        if let Some(new) = newest(context)
            && self
                .seen
                .as_ref()
                .and_then(newest)
                .is_none_or(|old| new > old)
        {
            self.seen = Some(context.clone());
        }
    }
}

impl World {
    pub(super) fn client_start(&mut self, client: usize) {
        if !self.faulty || !matches!(self.clients[client].state, ClientState::Idle) {
            return;
        }
        if self.config.collections && self.rng.random_bool(super::collections::COLLECTION_SHARE) {
            self.start_collection_op(client);
            return;
        }
        if self.rng.random_bool(super::cas::CAS_SHARE) {
            if self.rng.random_bool(super::counter::COUNTER_SHARE) {
                self.start_counter_read(client, false);
                return;
            }
            let key = self.rng.random_range(0..super::cas::CAS_KEYS);
            self.start_cas_read(client, key, false);
            return;
        }
        let key = self.active_keys[self.rng.random_range(0..self.active_keys.len())];
        self.start_read(client, key, None, false);
    }

    pub(super) fn next_op(&mut self, client: usize) -> u64 {
        let c = &mut self.clients[client];
        c.next_op += 1;
        c.next_op
    }

    pub(super) fn submit(&mut self, client: usize, op: u64, request: ClientRequest) {
        let node = self.rng.random_range(0..self.nodes.len());
        let d = self.rng.random_range(0..=2);
        self.schedule(
            d,
            Event::Request {
                client,
                op,
                node,
                request,
            },
        );
        // Longer than the node's own request timeout plus forwarding, so a client only times
        // out when its node crashed or the network lost the answer.
        self.schedule(12_000, Event::ClientTimeout { client, op });
    }

    pub(super) fn start_read(
        &mut self,
        client: usize,
        key: u64,
        r: Option<Consistency>,
        is_final: bool,
    ) -> u64 {
        let op = self.next_op(client);
        let request = ClientRequest::Get {
            key: self.object_key(key),
            r,
            timeout_ms: None,
            sloppy: None,
        };
        self.clients[client].state = ClientState::Reading {
            key,
            op,
            invoked: Timestamp(self.now),
            is_final,
        };
        self.submit(client, op, request);
        op
    }

    pub(super) fn on_answer(
        &mut self,
        client: usize,
        op: u64,
        result: Result<ClientResponse, ClientError>,
    ) {
        match self.clients[client].state.clone() {
            ClientState::Reading {
                key,
                op: o,
                invoked,
                is_final,
            } if o == op => match result {
                Ok(ClientResponse::Read {
                    context, siblings, ..
                }) if is_register(key) => {
                    let value = decode_register(&siblings);
                    self.history.register_reads.push(RegisterRead {
                        client,
                        key,
                        invoked,
                        completed: Timestamp(self.now),
                        value,
                        is_final,
                    });
                    self.report.ops += 1;
                    let c = &mut self.clients[client];
                    c.note_seen(&context);
                    c.saw.entry(key).or_default().extend(value);
                    if is_final {
                        c.state = ClientState::Idle;
                    } else {
                        let read = value.map(|v| (v, context));
                        self.start_register_write(client, key, read);
                    }
                }
                Ok(ClientResponse::Read {
                    context, siblings, ..
                }) => {
                    let elements = union_of(&siblings);
                    self.history.reads.push(ReadOp {
                        client,
                        key,
                        invoked,
                        completed: Timestamp(self.now),
                        quorum: true,
                        elements: elements.clone(),
                        siblings: siblings.len(),
                        is_final,
                    });
                    self.report.max_siblings = self.report.max_siblings.max(siblings.len());
                    self.report.ops += 1;
                    if is_final {
                        self.clients[client].state = ClientState::Idle;
                    } else {
                        if is_strict(key) && !elements.is_empty() && self.rng.random_bool(0.05) {
                            self.start_delete(client, key, elements, context, invoked);
                        } else {
                            self.start_add(client, key, elements, context);
                        }
                    }
                }
                _ => {
                    self.history.failed_reads += 1;
                    self.report.ops += 1;
                    self.finish_op(client);
                }
            },
            ClientState::Writing { add, op: o } if o == op => {
                let completion = match &result {
                    Ok(_) => Completion::Ok,
                    Err(e) => Completion::of_write_error(e),
                };
                self.complete_add(add, completion);
                self.finish_op(client);
            }
            ClientState::Deleting { delete, op: o } if o == op => {
                let completion = match &result {
                    Ok(_) => Completion::Ok,
                    Err(e) => Completion::of_write_error(e),
                };
                self.history.deletes[delete].completed = Some((Timestamp(self.now), completion));
                self.report.ops += 1;
                self.finish_op(client);
            }
            ClientState::WritingRegister { write, op: o } if o == op => {
                let think = if self.rng.random_bool(0.5) {
                    self.rng.random_range(0..=20)
                } else {
                    self.rng.random_range(0..=REGISTER_THINK_MS_MAX)
                };
                let completion = match &result {
                    Ok(ClientResponse::Written { context, .. }) => {
                        let w = &self.history.register_writes[write];
                        let c = &mut self.clients[client];
                        c.note_seen(context);
                        if w.op == RegisterOp::Set {
                            c.saw.entry(w.key).or_default().push(w.id);
                        }
                        Completion::Ok
                    }
                    Ok(_) => Completion::Ok,
                    Err(e) => Completion::of_write_error(e),
                };
                self.complete_register_write(write, completion);
                self.finish_op_after(client, think);
            }
            ClientState::Cas { idx, op: o } if o == op => self.on_cas_answer(client, idx, result),
            ClientState::Admin { op: o } if o == op => {
                self.admin_answer = Some(result);
                self.clients[client].state = ClientState::Idle;
            }
            ClientState::Listing { op: o } if o == op => {
                if let Ok(ClientResponse::Keys { keys, next, .. }) = result {
                    self.listing_page = Some((keys, next));
                }
                self.clients[client].state = ClientState::Idle;
            }
            ClientState::Counter { op: o, stage } if o == op => {
                self.on_counter_answer(client, stage, result)
            }
            ClientState::Collection { op: o, stage } if o == op => {
                self.on_collection_answer(client, stage, result)
            }
            _ => {} // the answer to an operation that already timed out
        }
    }

    pub(super) fn on_client_timeout(&mut self, client: usize, op: u64) {
        match self.clients[client].state.clone() {
            ClientState::Reading {
                op: o, is_final, ..
            } if o == op => {
                self.history.failed_reads += 1;
                if is_final {
                    self.clients[client].state = ClientState::Idle;
                } else {
                    self.finish_op(client);
                }
            }
            ClientState::Writing { add, op: o } if o == op => {
                self.complete_add(add, Completion::Info);
                self.finish_op(client);
            }
            ClientState::Deleting { delete, op: o } if o == op => {
                self.history.deletes[delete].completed =
                    Some((Timestamp(self.now), Completion::Info));
                self.finish_op(client);
            }
            ClientState::WritingRegister { write, op: o } if o == op => {
                self.complete_register_write(write, Completion::Info);
                self.finish_op(client);
            }
            ClientState::Cas { idx, op: o } if o == op => self.on_cas_timeout(client, idx),
            ClientState::Counter { op: o, stage } if o == op => {
                self.on_counter_timeout(client, stage)
            }
            ClientState::Collection { op: o, stage } if o == op => {
                self.on_collection_timeout(client, stage)
            }
            _ => {}
        }
    }

    /// Deletes the set the client just read (a tombstone with the read's context).
    pub(super) fn start_delete(
        &mut self,
        client: usize,
        key: u64,
        seen: BTreeSet<u64>,
        context: VersionVector,
        read_invoked: Timestamp,
    ) {
        let op = self.next_op(client);
        let request = ClientRequest::put(WriteRequest {
            key: self.object_key(key),
            value: None,
            content_type: Default::default(),
            context: Some(context),
            w: None,
            timeout_ms: None,
            sloppy: None,
            expiry: None,
            on_version: None,
            collection: None,
        });
        self.history.deletes.push(DeleteOp {
            client,
            key,
            read_invoked,
            seen,
            invoked: Timestamp(self.now),
            completed: None,
        });
        let delete = self.history.deletes.len() - 1;
        self.clients[client].state = ClientState::Deleting { delete, op };
        self.submit(client, op, request);
    }

    pub(super) fn start_add(
        &mut self,
        client: usize,
        key: u64,
        mut set: BTreeSet<u64>,
        context: VersionVector,
    ) {
        let element = self.next_element;
        self.next_element += 1;
        set.insert(element);
        let op = self.next_op(client);
        // A fifth of the adds to sloppy keys are blind (no context): they make siblings, and
        // they are what could reuse a dot a crashed coordinator lost (a context names it).
        let blind = !is_strict(key) && self.rng.random_bool(0.2);
        let request = ClientRequest::put(WriteRequest {
            key: self.object_key(key),
            value: Some(encode_set(&set)),
            content_type: "application/octet-stream".into(),
            context: (!blind).then_some(context),
            w: None,
            timeout_ms: None,
            sloppy: None,
            expiry: None,
            on_version: None,
            collection: None,
        });
        self.history.adds.push(AddOp {
            client,
            key,
            element,
            set: set.iter().copied().collect(),
            invoked: Timestamp(self.now),
            completed: None,
        });
        let add = self.history.adds.len() - 1;
        self.clients[client].state = ClientState::Writing { add, op };
        self.count_write(key);
        self.submit(client, op, request);
    }

    /// Writes a register key: a unique value (half of them with a short TTL) or, now and then,
    /// a delete; or, on the version the client just read (`read`: its value and the read's
    /// context), a TTL change (`EXPIRE` with a long TTL, `PERSIST`) or a delete (`GETDEL`), as
    /// the Redis front end sends them. A Redis-style client sends the newest version it saw as
    /// the context of its other writes.
    pub(super) fn start_register_write(
        &mut self,
        client: usize,
        key: u64,
        read: Option<(u64, VersionVector)>,
    ) {
        let id = self.next_element;
        self.next_element += 1;
        let roll = self.rng.random_range(0..100);
        let (op, bound) = match &read {
            Some((of, context)) if roll < 10 => (RegisterOp::Touch { of: *of }, Some(context)),
            Some((of, context)) if roll < 15 => {
                (RegisterOp::DeleteVersion { of: *of }, Some(context))
            }
            _ if roll >= 92 => (RegisterOp::Delete, None),
            _ => (RegisterOp::Set, None),
        };
        let ttl_ms = match op {
            RegisterOp::Set if self.rng.random_bool(0.5) => {
                Some(self.rng.random_range(200..=REGISTER_TTL_MS_MAX))
            }
            // Long enough to outlast the run: a TTL change never shortens one here.
            RegisterOp::Touch { .. } if self.rng.random_bool(0.5) => Some(600_000),
            _ => None,
        };
        let c = &self.clients[client];
        let (context, saw) = match (op, bound) {
            // Bound to the version read: its context, and that version only.
            (RegisterOp::Touch { of } | RegisterOp::DeleteVersion { of }, Some(context)) => {
                (Some(context.clone()), Some(vec![of]))
            }
            _ if writes_with_context(client) => (
                c.seen.clone(),
                Some(c.saw.get(&key).cloned().unwrap_or_default()),
            ),
            _ => (None, None),
        };
        let value = match op {
            RegisterOp::Set => Some(encode_register(id)),
            RegisterOp::Touch { of } => Some(encode_register(of)),
            RegisterOp::Delete | RegisterOp::DeleteVersion { .. } => None,
        };
        let on_version = match op {
            RegisterOp::Touch { .. } => Some(VersionOp::Touch),
            RegisterOp::DeleteVersion { .. } => Some(VersionOp::Delete),
            _ => None,
        };
        let op_id = self.next_op(client);
        let request = ClientRequest::put(WriteRequest {
            key: self.object_key(key),
            content_type: if value.is_some() {
                "application/octet-stream".into()
            } else {
                Default::default()
            },
            value,
            context,
            w: None,
            timeout_ms: None,
            sloppy: None,
            // Half the TTLs as the absolute time they end at (Redis `PXAT`), read off the true
            // clock at invocation: the same deadline for the checker, but exact on any
            // coordinator's clock instead of counted from its stamp.
            expiry: ttl_ms.map(|ms| {
                if id.is_multiple_of(2) {
                    Expiry::AtMs(self.now + ms)
                } else {
                    Expiry::AfterMs(ms)
                }
            }),
            on_version,
            collection: None,
        });
        let op_kind = op;
        let op = op_id;
        self.history.register_writes.push(RegisterWrite {
            client,
            key,
            id,
            op: op_kind,
            ttl_ms,
            saw,
            invoked: Timestamp(self.now),
            completed: None,
        });
        let write = self.history.register_writes.len() - 1;
        self.clients[client].state = ClientState::WritingRegister { write, op };
        self.count_write(key);
        self.submit(client, op, request);
    }

    fn complete_register_write(&mut self, write: usize, completion: Completion) {
        self.history.register_writes[write].completed = Some((Timestamp(self.now), completion));
        self.report.ops += 1;
        match completion {
            Completion::Ok => self.report.acked_writes += 1,
            Completion::Info => self.report.uncertain_writes += 1,
            Completion::Fail => self.report.failed_writes += 1,
        }
    }

    /// Retires a key that has had its share of writes; a fresh key takes its place.
    fn count_write(&mut self, key: u64) {
        let count = self.adds_invoked.entry(key).or_insert(0);
        *count += 1;
        let per_key = if is_register(key) {
            REGISTER_WRITES_PER_KEY
        } else {
            self.config.adds_per_key
        };
        if *count >= per_key
            && let Some(slot) = self.active_keys.iter().position(|k| *k == key)
        {
            self.active_keys[slot] = self.next_key;
            self.next_key += 1;
        }
    }

    pub(super) fn complete_add(&mut self, add: usize, completion: Completion) {
        self.history.adds[add].completed = Some((Timestamp(self.now), completion));
        self.report.ops += 1;
        match completion {
            Completion::Ok => self.report.acked_writes += 1,
            Completion::Info => self.report.uncertain_writes += 1,
            Completion::Fail => self.report.failed_writes += 1,
        }
    }

    pub(super) fn finish_op(&mut self, client: usize) {
        let think = self.rng.random_range(0..=20);
        self.finish_op_after(client, think);
    }

    fn finish_op_after(&mut self, client: usize, think_ms: u64) {
        self.clients[client].state = ClientState::Idle;
        self.schedule(think_ms, Event::ClientStart { client });
    }
}
