//! Bucket truncation (`FLUSHDB`, `FLUSHALL`, `DELETE /v1/kv/{bucket}`), as Cassandra's
//! `TRUNCATE`: one mark in the bucket table hides every older value of the bucket at once,
//! on every node, with no tombstone per key; a paced purge then removes what it hides.
//!
//! ```text
//! client ─Truncate(bucket)─▶ any node: mark = its HLC now; raise the bucket's mark, save
//!   ─TruncateRequest(bucket, mark)─▶ every other node: raise its mark, save, answer
//!   every node answered: reply; else at the deadline an error naming who did not (the mark
//!   reaches them by gossip: the table's join takes the larger mark)
//! each node, once its mark rose: purge the bucket's keys a page a millisecond
//! ```
//!
//! Invariants:
//! * A value stamped at or before its bucket's mark is never shown or stored again: every
//!   load from the store, every merge into it (replication, hints, repair, anti-entropy), a
//!   read's merge of replicas' answers and a listing's pages leave it out
//!   (`Object::after_truncation`), so a replica that was down during the truncation cannot
//!   bring one back; its own copies go when it learns the mark.
//! * Marks only rise, are stamped by a clock its peers verify, and a peer's mark beyond the
//!   skew bound is refused (it would hide every write until then).
//! * The purge only removes what loads already hide: it changes no answer, only the disk.

use crate::hlc::Hlc;
use crate::ids::{NodeId, RequestId, Timestamp};
use crate::key::BucketName;
use crate::limits::{PURGE_KEYS_PER_CALL, TIMEOUT_MS_MAX};
use crate::message::{
    ClientError, ClientResponse, ErrorCode, Message, ReplicaError, decode_object, encode_object,
};
use crate::store::{Store, WriteBatch};
use std::collections::{BTreeMap, BTreeSet};

use super::io::{Ctx, ReplyTo};
use super::local::{Local, expiry_key};
use super::timers::Timer;
use super::trees::stored_hash;
use super::walk::BucketWalk;

#[derive(Debug)]
struct Truncation {
    reply_to: ReplyTo,
    bucket: BucketName,
    mark: Hlc,
    /// Nodes that have not confirmed the mark yet.
    waiting: BTreeSet<NodeId>,
    deadline: Timestamp,
}

/// The truncations this node coordinates.
#[derive(Debug, Default)]
pub(crate) struct Truncations {
    in_flight: BTreeMap<RequestId, Truncation>,
}

impl Truncations {
    pub(crate) fn len(&self) -> usize {
        self.in_flight.len()
    }

    pub(crate) fn start<S: Store>(
        &mut self,
        local: &mut Local,
        ctx: &mut Ctx<'_, S>,
        reply_to: ReplyTo,
        bucket: BucketName,
        timeout_ms: Option<u64>,
    ) {
        let timeout_ms = timeout_ms.unwrap_or(local.config.request_timeout_ms);
        if !(1..=TIMEOUT_MS_MAX).contains(&timeout_ms) {
            let e = ClientError::new(
                ErrorCode::InvalidTimeout,
                format!("timeout of {timeout_ms} ms is out of range 1..={TIMEOUT_MS_MAX}"),
            );
            return local.out.reply(reply_to, Err(e));
        }
        // The mark is a time: only from a clock the peers agree with.
        if let Err(e) = local.clock_allows("truncations") {
            return local.out.reply(reply_to, Err(e));
        }
        if let Some(why) = local.durability.poisoned() {
            let e = ClientError::new(
                ErrorCode::StoreFailed,
                format!("node {} refuses writes: {why}", local.me()),
            );
            return local.out.reply(reply_to, Err(e));
        }
        let mark = local.hlc.now(ctx.now);
        match local.buckets.truncate(ctx.store, &bucket, mark) {
            Ok(changed) => local.note(changed, ctx.now),
            Err(e) => return local.out.reply(reply_to, Err(e)),
        }
        let me = local.me();
        let waiting: BTreeSet<NodeId> = local
            .layout
            .nodes()
            .iter()
            .map(|n| n.id)
            .filter(|n| *n != me)
            .collect();
        if waiting.is_empty() {
            return local
                .out
                .reply(reply_to, Ok(ClientResponse::Truncated { mark }));
        }
        let req = local.out.new_request(ctx.rng);
        for to in &waiting {
            local.out.send(
                *to,
                Message::TruncateRequest {
                    req,
                    bucket: bucket.clone(),
                    mark,
                },
            );
        }
        let deadline = ctx.now.plus_ms(timeout_ms);
        local.timers.set(deadline, Timer::TruncateDeadline(req));
        self.in_flight.insert(
            req,
            Truncation {
                reply_to,
                bucket,
                mark,
                waiting,
                deadline,
            },
        );
    }

    /// A node confirmed the mark (or could not take it).
    pub(crate) fn on_response(
        &mut self,
        local: &mut Local,
        from: NodeId,
        req: RequestId,
        result: Result<(), ReplicaError>,
    ) {
        let Some(t) = self.in_flight.get_mut(&req) else {
            return;
        };
        if let Err(e) = result {
            let Some(t) = self.in_flight.remove(&req) else {
                return;
            };
            local
                .timers
                .cancel(t.deadline, Timer::TruncateDeadline(req));
            let e = ClientError::new(
                ErrorCode::StoreFailed,
                format!(
                    "node {from} could not take the truncation of bucket {}: {e}; the mark reaches it by gossip once it can",
                    t.bucket
                ),
            );
            return local.out.reply(t.reply_to, Err(e));
        }
        t.waiting.remove(&from);
        if t.waiting.is_empty()
            && let Some(t) = self.in_flight.remove(&req)
        {
            local
                .timers
                .cancel(t.deadline, Timer::TruncateDeadline(req));
            local
                .out
                .reply(t.reply_to, Ok(ClientResponse::Truncated { mark: t.mark }));
        }
    }

    pub(crate) fn on_deadline(&mut self, local: &mut Local, req: RequestId) {
        let Some(t) = self.in_flight.remove(&req) else {
            return;
        };
        let missing: Vec<String> = t.waiting.iter().map(ToString::to_string).collect();
        let e = ClientError::new(
            ErrorCode::QuorumNotReached,
            format!(
                "bucket {} is truncated, but nodes {} did not confirm in time: the mark reaches them by gossip, and reads they coordinate may show older values until then",
                t.bucket,
                missing.join(", ")
            ),
        );
        local.out.reply(t.reply_to, Err(e));
    }
}

impl Local {
    /// A peer's truncation: raise the mark, save it, start the purge.
    pub(crate) fn on_truncate_request<S: Store>(
        &mut self,
        ctx: &mut Ctx<'_, S>,
        bucket: &BucketName,
        mark: Hlc,
    ) -> Result<(), ReplicaError> {
        if let Some(why) = self.durability.poisoned() {
            return Err(ReplicaError::Store(format!("node refuses writes: {why}")));
        }
        let changed = self
            .buckets
            .truncate(ctx.store, bucket, mark)
            .map_err(|e| ReplicaError::Store(e.message))?;
        // This node's later writes are stamped after the mark: once every node confirmed,
        // no write that starts after the truncation is hidden by it.
        let _ = self
            .hlc
            .observe(mark, ctx.now, self.config.max_clock_skew_ms);
        self.note(changed, ctx.now);
        Ok(())
    }

    /// Purges the next page (at most [`PURGE_KEYS_PER_CALL`] keys) of the truncated buckets
    /// from the store, and says when to go on (`None`: every purge is done). A key whose
    /// values all precede the mark is removed (with its expiry index entry and its place in
    /// the Merkle trees); one with later values too is rewritten without the older ones.
    pub(crate) fn purge_step<S: Store>(&mut self, store: &mut S) -> Option<u64> {
        if crate::bugs::planted().truncation_not_purged {
            self.purges = BucketWalk::default();
            return None;
        }
        let mut walk = std::mem::take(&mut self.purges);
        let partitions = self.layout.partition_count();
        let next = walk.step(
            store,
            partitions,
            PURGE_KEYS_PER_CALL,
            |store, bucket, _, rows| {
                let mark = self.buckets.truncated_at(bucket);
                if mark == Hlc(0) {
                    return;
                }
                let n = self.buckets.n_of(bucket);
                for (k, v) in rows {
                    let Ok(object) = decode_object(v) else {
                        continue;
                    };
                    let previous = object.expires_at();
                    match object.after_truncation(mark) {
                        None => {
                            let mut batch = WriteBatch::default();
                            batch.remove(k.clone());
                            if let Some(at) = previous {
                                batch.remove(expiry_key(at, k));
                            }
                            self.trees.note_loaded(k, Some(stored_hash(v)));
                            if let Ok(staged) = self.trees.stage(store, k, n, None)
                                && store.write(batch).is_ok()
                            {
                                self.trees.apply(staged);
                            }
                        }
                        Some(kept) if kept != object => {
                            self.trees.note_loaded(k, Some(stored_hash(v)));
                            let bytes = encode_object(&kept);
                            let _ = self.write_object(store, k, n, &kept, previous, bytes);
                        }
                        Some(_) => {}
                    }
                }
            },
        );
        self.purges = walk;
        next
    }
}
