//! Active anti-entropy: replicas compare Merkle trees and repair the keys that differ.
//!
//! Source: DeCandia et al., "Dynamo" (SOSP 2007), §4.7 (Merkle trees per key range); Riak's
//! active anti-entropy. The trees themselves are in [`crate::merkle`].
//!
//! ```text
//! every anti_entropy_interval_ms, one tree (partition, n) this node shares with a peer up:
//!   ─AeTreeRequest(level 0)─▶ peer ─AeTreeResponse(hashes)─▶ descend into differing nodes
//!   ─AeSegmentRequest(segments)─▶ ─AeSegmentResponse(keys, hashes)─▶
//!       keys only here: RepairRequest(object) to the peer
//!       keys that differ: ─AeFetchRequest(keys)─▶ ─AeFetchResponse(objects)─▶ merge here,
//!       RepairRequest(merged) back where the peer's copy differs
//! ```
//!
//! Invariants:
//! * Exchanges only send joins of what replicas hold (repairs merge; nothing is deleted).
//! * A key holding this node's own not-yet-durable dot is never shipped (`unsynced`).
//! * Bounded work: [`AE_EXCHANGES_MAX`] exchanges at a time, [`AE_SEGMENTS_PER_ROUND`]
//!   segments and [`AE_KEYS_PER_ROUND`] keys per round, fetch answers within
//!   [`AE_FETCH_BYTES_MAX`].
//! * Partitions that lost a hint to a full budget go first.

use crate::ids::{NodeId, PartitionId, RequestId, Timestamp};
use crate::key::ObjectKey;
use crate::limits::{
    AE_EXCHANGES_MAX, AE_FETCH_BYTES_MAX, AE_KEYS_PER_ROUND, AE_SEGMENTS_PER_ROUND,
};
use crate::merkle::{LEVELS, SEGMENTS, children, differing, differing_keys};
use crate::message::{AeEntry, Message, StorageKey, encode_object};
use crate::store::Store;
use crate::version::Object;
use std::collections::{BTreeMap, BTreeSet};

use super::io::Ctx;
use super::local::Local;
use super::status::AeStatus;
use super::timers::Timer;

/// An exchange this node drives with one peer over one tree.
#[derive(Debug)]
struct Exchange {
    peer: NodeId,
    partition: PartitionId,
    n: u8,
    /// The level whose hashes were asked for (`LEVELS - 1` = leaves; `LEVELS` = segments).
    level: usize,
    indices: Vec<u32>,
    /// Keys pushed to the peer so far.
    pushed: u64,
    deadline: Timestamp,
}

#[derive(Debug, Default)]
pub(crate) struct AntiEntropy {
    /// Exchanges this node started (at most [`AE_EXCHANGES_MAX`]).
    exchanges: BTreeMap<RequestId, Exchange>,
    /// Round-robin position over the trees, and over peers.
    cursor: u64,
    pub(crate) status: AeStatus,
    /// Paused by an operator (`Node::set_anti_entropy`): no exchange starts.
    pub(crate) paused: bool,
}

impl AntiEntropy {
    /// Starts an exchange over the next tree this node shares with a peer believed up. Trees
    /// of partitions in `dirty` (they lost hints) go first.
    pub(crate) fn start<S: Store>(
        &mut self,
        local: &mut Local,
        ctx: &mut Ctx<'_, S>,
        dirty: &BTreeSet<PartitionId>,
    ) {
        if self.exchanges.len() >= AE_EXCHANGES_MAX {
            return;
        }
        let me = local.me();
        let mut candidates: Vec<(PartitionId, u8)> = Vec::new();
        let ns = local.buckets.replication_factors();
        for p in 0..local.layout.partition_count() {
            for n in &ns {
                // A tree empty here is left to peers that hold data to start from.
                let holds = local.trees.holds(PartitionId(p), *n);
                if holds
                    && local
                        .layout
                        .preference_list(PartitionId(p), *n as usize)
                        .contains(&me)
                {
                    candidates.push((PartitionId(p), *n));
                }
            }
        }
        if candidates.is_empty() {
            return;
        }
        if let Some(pos) = dirty
            .iter()
            .find_map(|d| candidates.iter().position(|(p, _)| p == d))
        {
            candidates.rotate_left(pos);
        } else {
            let at = (self.cursor as usize) % candidates.len();
            candidates.rotate_left(at);
        }
        self.cursor += 1;
        let (partition, n) = candidates[0];
        let peers: Vec<NodeId> = local
            .layout
            .preference_list(partition, n as usize)
            .iter()
            .copied()
            .filter(|p| *p != me && local.membership.is_alive(*p, ctx.mono))
            .collect();
        if peers.is_empty() {
            return;
        }
        let peer = peers[(self.cursor as usize / candidates.len().max(1)) % peers.len()];
        let req = local.out.new_request(ctx.rng);
        let deadline = ctx.now.plus_ms(local.config.request_timeout_ms);
        self.exchanges.insert(
            req,
            Exchange {
                peer,
                partition,
                n,
                level: 0,
                indices: vec![0],
                pushed: 0,
                deadline,
            },
        );
        local.timers.set(deadline, Timer::ExchangeDeadline(req));
        local.out.send(
            peer,
            Message::AeTreeRequest {
                req,
                partition: partition.0,
                n,
                level: 0,
                indices: vec![0],
            },
        );
    }

    /// The peer's hashes at one level: descend into the children of those that differ.
    pub(crate) fn on_tree_response(
        &mut self,
        local: &mut Local,
        now: Timestamp,
        req: RequestId,
        theirs: Vec<u64>,
        dirty: &mut BTreeSet<PartitionId>,
    ) {
        let Some(x) = self.exchanges.get_mut(&req) else {
            return;
        };
        let ours = local
            .trees
            .get(x.partition, x.n)
            .hashes(x.level, &x.indices);
        if theirs.len() != ours.len() {
            return;
        }
        let differ = differing(&x.indices, &ours, &theirs);
        if differ.is_empty() {
            return self.finish(local, now, req, 0, dirty);
        }
        let message = if x.level + 1 < LEVELS {
            let indices: Vec<u32> = differ.iter().flat_map(|i| children(x.level, *i)).collect();
            x.level += 1;
            x.indices = indices.clone();
            Message::AeTreeRequest {
                req,
                partition: x.partition.0,
                n: x.n,
                level: x.level as u8,
                indices,
            }
        } else {
            let segments: Vec<u32> = differ.into_iter().take(AE_SEGMENTS_PER_ROUND).collect();
            x.level = LEVELS;
            x.indices = segments.clone();
            Message::AeSegmentRequest {
                req,
                partition: x.partition.0,
                n: x.n,
                segments,
            }
        };
        local.out.send(x.peer, message);
    }

    /// The peer's entries of the differing segments: push what only this node has, fetch
    /// what the peer has that differs.
    pub(crate) fn on_segment_response<S: Store>(
        &mut self,
        local: &mut Local,
        ctx: &mut Ctx<'_, S>,
        req: RequestId,
        entries: Vec<(u32, Vec<AeEntry>)>,
        dirty: &mut BTreeSet<PartitionId>,
    ) {
        let Some(x) = self.exchanges.get_mut(&req) else {
            return;
        };
        let mut fetch = Vec::new();
        let mut push = Vec::new();
        let segments: Vec<u32> = entries.iter().map(|(seg, _)| *seg).collect();
        let buckets = &local.buckets;
        let Ok(mut ours) =
            local
                .trees
                .segment_entries(ctx.store, x.partition, x.n, &segments, |b| buckets.n_of(b))
        else {
            return;
        };
        for (seg, list) in entries {
            let theirs: Vec<(Vec<u8>, u64)> = list.into_iter().map(|e| (e.key, e.hash)).collect();
            let ours = ours.remove(&seg).unwrap_or_default();
            for key in differing_keys(&ours, &theirs) {
                if theirs.iter().any(|(k, _)| *k == key) {
                    fetch.push(StorageKey(key));
                } else {
                    push.push(key);
                }
            }
        }
        fetch.truncate(AE_KEYS_PER_ROUND);
        push.truncate(AE_KEYS_PER_ROUND);
        let pushed = push.len() as u64;
        for key in push {
            if local.durability.is_unsynced(&key) {
                continue;
            }
            if let (Ok(Some(object)), Ok((_, okey))) = (
                local.load(ctx.store, &key),
                ObjectKey::from_storage_key(&key),
            ) {
                local
                    .out
                    .send(x.peer, Message::RepairRequest { key: okey, object });
            }
        }
        if fetch.is_empty() {
            return self.finish(local, ctx.now, req, pushed, dirty);
        }
        x.pushed = pushed;
        local
            .out
            .send(x.peer, Message::AeFetchRequest { req, keys: fetch });
    }

    /// The peer's versions of the differing keys: merge them here, and send the merged object
    /// back wherever it differs from the peer's.
    pub(crate) fn on_fetch_response<S: Store>(
        &mut self,
        local: &mut Local,
        ctx: &mut Ctx<'_, S>,
        req: RequestId,
        objects: Vec<(StorageKey, Object)>,
        dirty: &mut BTreeSet<PartitionId>,
    ) {
        let Some(x) = self.exchanges.get(&req) else {
            return;
        };
        let (peer, mut repaired) = (x.peer, x.pushed);
        for (skey, theirs) in objects {
            let Ok((_, key)) = ObjectKey::from_storage_key(&skey.0) else {
                continue;
            };
            if local.merge_into_store(ctx, &key, &theirs).is_err() {
                continue;
            }
            repaired += 1;
            if let Ok(Some(merged)) = local.load(ctx.store, &skey.0)
                && merged != theirs
                && !local.durability.is_unsynced(&skey.0)
            {
                local.out.send(
                    peer,
                    Message::RepairRequest {
                        key,
                        object: merged,
                    },
                );
            }
        }
        self.finish(local, ctx.now, req, repaired, dirty);
    }

    fn finish(
        &mut self,
        local: &mut Local,
        now: Timestamp,
        req: RequestId,
        repaired: u64,
        dirty: &mut BTreeSet<PartitionId>,
    ) {
        if let Some(x) = self.exchanges.remove(&req) {
            local
                .timers
                .cancel(x.deadline, Timer::ExchangeDeadline(req));
            self.status.exchanges_completed += 1;
            self.status.keys_repaired += repaired;
            let entry = self
                .status
                .partitions
                .entry(x.partition.0)
                .or_insert((now, 0));
            *entry = (now, entry.1 + repaired);
            if repaired == 0 {
                dirty.remove(&x.partition);
            }
        }
    }

    pub(crate) fn on_deadline(&mut self, req: RequestId) {
        if self.exchanges.remove(&req).is_some() {
            self.status.exchanges_failed += 1;
        }
    }
}

/// The peer side of an exchange: answers about this node's trees and objects.
impl Local {
    pub(crate) fn on_ae_tree_request(
        &mut self,
        from: NodeId,
        req: RequestId,
        partition: u32,
        n: u8,
        level: u8,
        indices: Vec<u32>,
    ) {
        let indices: Vec<u32> = indices.into_iter().take(SEGMENTS).collect();
        let hashes = self
            .trees
            .get(PartitionId(partition), n)
            .hashes(level as usize, &indices);
        self.out.send(from, Message::AeTreeResponse { req, hashes });
    }

    pub(crate) fn on_ae_segment_request<S: Store>(
        &mut self,
        store: &S,
        from: NodeId,
        req: RequestId,
        partition: u32,
        n: u8,
        segments: Vec<u32>,
    ) {
        let segments: Vec<u32> = segments.into_iter().take(AE_SEGMENTS_PER_ROUND).collect();
        let buckets = &self.buckets;
        // A store that fails to read answers nothing: the exchange ends at its deadline and
        // a later one asks again.
        let Ok(found) =
            self.trees
                .segment_entries(store, PartitionId(partition), n, &segments, |b| {
                    buckets.n_of(b)
                })
        else {
            return;
        };
        let entries: Vec<(u32, Vec<AeEntry>)> = found
            .into_iter()
            .map(|(seg, list)| {
                let list = list
                    .into_iter()
                    .map(|(key, hash)| AeEntry { key, hash })
                    .collect();
                (seg, list)
            })
            .collect();
        self.out
            .send(from, Message::AeSegmentResponse { req, entries });
    }

    pub(crate) fn on_ae_fetch_request<S: Store>(
        &mut self,
        ctx: &mut Ctx<'_, S>,
        from: NodeId,
        req: RequestId,
        keys: Vec<StorageKey>,
    ) {
        let objects = keys
            .into_iter()
            .take(AE_KEYS_PER_ROUND)
            .filter(|k| !self.durability.is_unsynced(&k.0))
            .filter_map(|k| match self.load(ctx.store, &k.0) {
                Ok(Some(o)) => Some((k, o)),
                _ => None,
            })
            // Within a byte budget (at least one object), so the answer fits a frame.
            .scan(0usize, |bytes, (k, o)| {
                let first = *bytes == 0;
                *bytes += encode_object(&o).len() + k.0.len();
                (first || *bytes <= AE_FETCH_BYTES_MAX).then_some((k, o))
            })
            .collect();
        self.out
            .send(from, Message::AeFetchResponse { req, objects });
    }
}
