//! The replica side: what a node does with the writes, reads and repairs other nodes'
//! coordinators send it.
//!
//! Source: DeCandia et al., "Dynamo" (SOSP 2007), §4.5; Riak KV's vnode.
//!
//! ```text
//! coordinator ─ReplicateRequest(object)─▶ replica: merge (DVV sync or lww), write, sync,
//!             ◀─ReplicateResponse──────── answer once durable
//! coordinator ─ReadRequest─▶ replica ─ReadResponse(object)─▶ (after the sync if the key
//!                                                             holds its own unsynced dot)
//! coordinator ─ReadDigestRequest─▶ replica ─ReadDigestResponse(digest of the stored bytes)─▶
//!                                                             (after the same sync)
//! coordinator ─RepairRequest(object)─▶ replica: merge, write (no answer)
//! ```
//!
//! Invariants:
//! * A replica acks a write only once it is durable (see `durability`), and never acks one
//!   it refused (clock skew, mode mismatch, poisoned store).
//! * Merging is a join (commutative, associative, idempotent): duplicates and reordering of
//!   these messages cannot change the outcome.

use crate::ids::{NodeId, RequestId};
use crate::key::ObjectKey;
use crate::message::{Message, PaxosRefusal, ReplicaError};
use crate::store::{Store, StoreError};
use crate::version::Object;

use super::durability::Waiter;
use super::io::Ctx;
use super::local::Local;

impl Local {
    pub(crate) fn on_replicate_request<S: Store>(
        &mut self,
        ctx: &mut Ctx<'_, S>,
        from: NodeId,
        req: RequestId,
        key: ObjectKey,
        object: Object,
        plain: bool,
    ) {
        let result = match self.durability.poisoned() {
            Some(why) => Err(ReplicaError::Store(format!("node refuses writes: {why}"))),
            None if plain && self.refuses_plain(ctx.store, &key) => Err(ReplicaError::CasManaged),
            None => self.merge_into_store(ctx, &key, &object),
        };
        self.ack_when_durable(ctx, from, req, result);
    }

    /// Whether compare-and-set manages `key` here, so a plain write to it is refused.
    fn refuses_plain<S: Store>(&self, store: &S, key: &ObjectKey) -> bool {
        let Some(props) = self.buckets.get(&key.bucket) else {
            return false;
        };
        let partition = self.partition_of(key);
        self.cas_managed(store, key, props, partition)
    }

    pub(crate) fn on_read_request<S: Store>(
        &mut self,
        ctx: &mut Ctx<'_, S>,
        from: NodeId,
        req: RequestId,
        key: ObjectKey,
        digest: bool,
    ) {
        let (_, skey) = self.locate(&key);
        let waiter = Waiter::Read {
            to: from,
            req,
            key,
            digest,
        };
        match self.durability.wait_for_key(&skey, waiter) {
            // Nothing to wait for: read by the storage key already built.
            Some((Waiter::Read { to, req, .. }, Ok(()))) => {
                self.answer_read(ctx, to, req, &skey, digest, Ok(()))
            }
            Some((waiter, synced)) => self.release(ctx, waiter, synced),
            None => {}
        }
    }

    /// A replica's answer to a read once nothing it holds for the key waits for a sync (or
    /// the sync it waited for failed): the object, or only its digest.
    fn answer_read<S: Store>(
        &mut self,
        ctx: &mut Ctx<'_, S>,
        to: NodeId,
        req: RequestId,
        skey: &[u8],
        digest: bool,
        synced: Result<(), StoreError>,
    ) {
        let synced = synced.map_err(|e| ReplicaError::Store(e.to_string()));
        let message = if digest {
            Message::ReadDigestResponse {
                req,
                result: synced.and_then(|()| self.load_digest(ctx.store, skey)),
            }
        } else {
            Message::ReadResponse {
                req,
                result: synced.and_then(|()| self.load(ctx.store, skey)),
            }
        };
        self.out.send(to, message);
    }

    pub(crate) fn on_repair_request<S: Store>(
        &mut self,
        ctx: &mut Ctx<'_, S>,
        key: ObjectKey,
        object: Object,
    ) {
        if self.durability.poisoned().is_none() {
            let _ = self.merge_into_store(ctx, &key, &object);
        }
    }

    /// Answers a replicate or hint request: after the next sync if the write went through,
    /// at once with the error if not.
    pub(crate) fn ack_when_durable<S: Store>(
        &mut self,
        ctx: &mut Ctx<'_, S>,
        to: NodeId,
        req: RequestId,
        result: Result<(), ReplicaError>,
    ) {
        match result {
            Ok(()) => {
                if let Some(w) = self.durability.wait(Waiter::ReplicaAck { to, req }) {
                    self.release(ctx, w, Ok(()));
                }
            }
            Err(e) => self.out.send(
                to,
                Message::ReplicateResponse {
                    req,
                    result: Err(e),
                },
            ),
        }
    }

    /// A sync released a replica-side waiter: answer the node that waits for it.
    pub(crate) fn release<S: Store>(
        &mut self,
        ctx: &mut Ctx<'_, S>,
        waiter: Waiter,
        result: Result<(), StoreError>,
    ) {
        match waiter {
            Waiter::ReplicaAck { to, req } => {
                let result = result.map_err(|e| ReplicaError::Store(e.to_string()));
                self.out
                    .send(to, Message::ReplicateResponse { req, result });
            }
            Waiter::Read {
                to,
                req,
                key,
                digest,
            } => self.answer_read(ctx, to, req, &self.locate(&key).1, digest, result),
            Waiter::ExpireAck { to, req, merged } => {
                // A failed sync holds none of them durably.
                let merged = if result.is_ok() { merged } else { Vec::new() };
                self.out.send(to, Message::ExpireResponse { req, merged });
            }
            Waiter::PaxosAck { to, req, answer } => {
                let result = result
                    .map(|()| answer)
                    .map_err(|e| PaxosRefusal::Replica(ReplicaError::Store(e.to_string())));
                self.out.send(to, Message::PaxosResponse { req, result });
            }
            Waiter::PaxosFenceAck { to, req, list } => {
                let result = result
                    .map(|()| list)
                    .map_err(|e| ReplicaError::Store(e.to_string()));
                self.out
                    .send(to, Message::PaxosFenceResponse { req, result });
            }
            Waiter::LocalWrite(_) | Waiter::LocalRead { .. } | Waiter::ExpireLocal(_) => {
                unreachable!("coordinator waiters are released by their coordinators")
            }
        }
    }
}
