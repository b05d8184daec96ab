//! Key listing: one page of a bucket's keys in one partition, from the partition's replicas
//! (`SCAN`, `KEYS`, `GET /v1/kv/{bucket}`).
//!
//! ```text
//! client ─List(bucket, cursor = (partition, after), limit)─▶ any node (coordinator)
//!   ScanRequest to every primary of the partition believed up (itself: its store, no hop)
//!   each ─▶ its keys of the bucket in the partition after `after`, at most `limit`, with
//!           their objects without values (ScanResponse)
//!   when all asked answered (or at the deadline, with at least R): merge, reply
//!     keys: every key up to the page's end whose merged object shows a value now
//!     next: (partition, page end) if a replica had more, else (partition + 1, start),
//!           else none (the last partition is done)
//! ```
//!
//! Invariants:
//! * A page ends at the smallest last key of the replicas that had more: every key up to it
//!   was seen by every answering replica that holds it, so the next page, which starts
//!   after it, misses nothing. Hence Redis's guarantee: a key present for the whole listing
//!   (written at W, so held by one of any R replicas) is returned at least once.
//! * Deleted and expired keys are left out by the merged object (a tombstone on one replica
//!   hides a stale value on another), never by one replica's copy alone.
//! * A replica sends no values: a page is bounded by `SCAN_PAGE_KEYS_MAX` keys and their
//!   metadata, whatever the values' sizes.

use crate::ids::{NodeId, PartitionId, RequestId, Timestamp};
use crate::key::{BucketName, bucket_prefix};
use crate::limits::{SCAN_PAGE_KEYS_MAX, TIMEOUT_MS_MAX};
use crate::message::{
    ClientError, ClientResponse, ErrorCode, ListCursor, ListRequest, Message, ReplicaError,
    ScanEntry, ScanPage, decode_object,
};
use crate::store::Store;
use crate::version::Object;
use std::borrow::Cow;
use std::collections::BTreeMap;

use super::io::{Ctx, ReplyTo};
use super::local::Local;
use super::timers::Timer;

#[derive(Debug)]
struct ScanState {
    reply_to: ReplyTo,
    partition: u32,
    limit: usize,
    needed: usize,
    asked: usize,
    pages: BTreeMap<NodeId, ScanPage>,
    failed: usize,
    deadline: Timestamp,
}

/// The listings this node coordinates.
#[derive(Debug, Default)]
pub(crate) struct Scans {
    in_flight: BTreeMap<RequestId, ScanState>,
}

fn invalid(code: ErrorCode, message: String) -> ClientError {
    ClientError::new(code, message)
}

impl Scans {
    pub(crate) fn len(&self) -> usize {
        self.in_flight.len()
    }

    pub(crate) fn start<S: Store>(
        &mut self,
        local: &mut Local,
        ctx: &mut Ctx<'_, S>,
        reply_to: ReplyTo,
        request: ListRequest,
    ) {
        let ListRequest {
            bucket,
            cursor,
            limit,
            r,
            timeout_ms,
        } = request;
        let Some(props) = local.buckets.get(&bucket).cloned() else {
            let e = invalid(
                ErrorCode::UnknownBucket,
                format!("bucket {:?} does not exist", bucket.as_str()),
            );
            return local.out.reply(reply_to, Err(e));
        };
        let partitions = local.layout.partition_count();
        if cursor.partition >= partitions {
            let e = invalid(
                ErrorCode::InvalidQuery,
                format!(
                    "the listing cursor names partition {}, and the layout has {partitions}",
                    cursor.partition
                ),
            );
            return local.out.reply(reply_to, Err(e));
        }
        let limit = limit as usize;
        if !(1..=SCAN_PAGE_KEYS_MAX).contains(&limit) {
            let e = invalid(
                ErrorCode::InvalidQuery,
                format!("a listing page holds 1 to {SCAN_PAGE_KEYS_MAX} keys, not {limit}"),
            );
            return local.out.reply(reply_to, Err(e));
        }
        let timeout_ms = timeout_ms.unwrap_or(local.config.request_timeout_ms);
        if !(1..=TIMEOUT_MS_MAX).contains(&timeout_ms) {
            let e = invalid(
                ErrorCode::InvalidTimeout,
                format!("timeout of {timeout_ms} ms is out of range 1..={TIMEOUT_MS_MAX}"),
            );
            return local.out.reply(reply_to, Err(e));
        }
        let partition = PartitionId(cursor.partition);
        let replicas = local
            .layout
            .preference_list(partition, props.n as usize)
            .to_vec();
        let needed = match r.unwrap_or(props.r).required(replicas.len() as u8) {
            Ok(n) => n as usize,
            Err(e) => {
                let e = invalid(ErrorCode::InvalidConsistency, e.to_string());
                return local.out.reply(reply_to, Err(e));
            }
        };
        let me = local.me();
        let up: Vec<NodeId> = replicas
            .iter()
            .copied()
            .filter(|n| local.is_alive(*n, ctx.now))
            .collect();
        if up.len() < needed {
            let e = invalid(
                ErrorCode::QuorumNotReached,
                format!(
                    "a listing of partition {} needs {needed} replicas and {} are believed up",
                    cursor.partition,
                    up.len()
                ),
            );
            return local.out.reply(reply_to, Err(e));
        }
        let req = local.out.new_request(ctx.rng);
        let deadline = ctx.now.plus_ms(timeout_ms);
        let mut state = ScanState {
            reply_to,
            partition: cursor.partition,
            limit,
            needed,
            asked: up.len(),
            pages: BTreeMap::new(),
            failed: 0,
            deadline,
        };
        for node in up {
            if node == me {
                match local.scan_page(
                    ctx.store,
                    &bucket,
                    partition,
                    cursor.after.as_deref(),
                    limit,
                ) {
                    Ok(page) => {
                        state.pages.insert(me, page);
                    }
                    Err(_) => state.failed += 1,
                }
            } else {
                local.out.send(
                    node,
                    Message::ScanRequest {
                        req,
                        bucket: bucket.clone(),
                        partition,
                        after: cursor.after.clone(),
                        limit: limit as u32,
                    },
                );
            }
        }
        local.timers.set(deadline, Timer::ScanDeadline(req));
        self.in_flight.insert(req, state);
        self.maybe_finish(local, ctx.now, req);
    }

    /// A replica's page.
    pub(crate) fn on_response(
        &mut self,
        local: &mut Local,
        now: Timestamp,
        from: NodeId,
        req: RequestId,
        result: Result<ScanPage, ReplicaError>,
    ) {
        let Some(state) = self.in_flight.get_mut(&req) else {
            return;
        };
        if state.pages.contains_key(&from) {
            return;
        }
        match result {
            // A page longer than asked for is a replica's error: refused.
            Ok(page) if page.entries.len() <= state.limit => {
                state.pages.insert(from, page);
            }
            _ => state.failed += 1,
        }
        self.maybe_finish(local, now, req);
    }

    pub(crate) fn on_deadline(&mut self, local: &mut Local, now: Timestamp, req: RequestId) {
        if let Some(state) = self.in_flight.remove(&req) {
            answer(local, now, state);
        }
    }

    /// Replies once every replica asked answered (or failed).
    fn maybe_finish(&mut self, local: &mut Local, now: Timestamp, req: RequestId) {
        let done = self
            .in_flight
            .get(&req)
            .is_some_and(|s| s.pages.len() + s.failed >= s.asked);
        if let Some(state) = done.then(|| self.in_flight.remove(&req)).flatten() {
            local
                .timers
                .cancel(state.deadline, Timer::ScanDeadline(req));
            answer(local, now, state);
        }
    }
}

/// The reply to a listing whose replicas answered (or whose time ran out): the merged page
/// if at least R answered, else a quorum error.
fn answer(local: &mut Local, now: Timestamp, state: ScanState) {
    let result = if state.pages.len() >= state.needed {
        Ok(merge(&state, now, local.layout.partition_count()))
    } else {
        Err(invalid(
            ErrorCode::QuorumNotReached,
            format!(
                "a listing of partition {} needed {} replicas and {} answered",
                state.partition,
                state.needed,
                state.pages.len()
            ),
        ))
    };
    local.out.reply(state.reply_to, result);
}

/// The answer from the replicas' pages (see the module's invariants).
fn merge(state: &ScanState, now: Timestamp, partitions: u32) -> ClientResponse {
    let end: Option<&Vec<u8>> = state
        .pages
        .values()
        .filter(|p| !p.complete)
        .filter_map(|p| p.last.as_ref())
        .min();
    let mut merged: BTreeMap<&[u8], Object> = BTreeMap::new();
    for page in state.pages.values() {
        for e in &page.entries {
            if end.is_some_and(|end| e.key > *end) {
                continue;
            }
            match merged.get(e.key.as_slice()) {
                None => {
                    merged.insert(&e.key, e.object.clone());
                }
                Some(held) => {
                    // Objects of two modes cannot meet in one bucket; keep the first.
                    if let Ok(joined) = held.merge(&e.object) {
                        merged.insert(&e.key, joined);
                    }
                }
            }
        }
    }
    let (mut keys, mut kinds, mut expiring, mut ttl_sum_ms) = (Vec::new(), Vec::new(), 0u64, 0u64);
    for (k, o) in merged {
        if !o.is_live_at(now.0) && !crate::bugs::planted().scan_shows_deleted {
            continue;
        }
        // A key expires when its last value does (a value without a TTL never does); a hash
        // or set has one TTL.
        let expires = match &o {
            Object::Collection(c) => c.expires_at(now.0),
            _ => {
                let visible = o.visible_at(now.0);
                visible
                    .iter()
                    .map(|s| s.expires_at)
                    .try_fold(0u64, |latest, at| at.map(|at| latest.max(at)))
                    .filter(|_| !visible.is_empty())
            }
        };
        if let Some(at) = expires {
            expiring += 1;
            ttl_sum_ms = ttl_sum_ms.saturating_add(at.saturating_sub(now.0));
        }
        kinds.push(o.collection().map(|c| c.kind));
        keys.push(k.to_vec());
    }
    let next = match end {
        Some(end) => Some(ListCursor {
            partition: state.partition,
            after: Some(end.clone()),
        }),
        None if state.partition + 1 < partitions => Some(ListCursor {
            partition: state.partition + 1,
            after: None,
        }),
        None => None,
    };
    ClientResponse::Keys {
        keys,
        kinds,
        next,
        expiring,
        ttl_sum_ms,
    }
}

impl Local {
    /// This replica's keys of `bucket` in `partition` after `after`, at most `limit`, with
    /// their objects without values.
    pub(crate) fn scan_page<S: Store>(
        &self,
        store: &mut S,
        bucket: &BucketName,
        partition: PartitionId,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<ScanPage, ReplicaError> {
        let limit = limit.clamp(1, SCAN_PAGE_KEYS_MAX);
        let prefix = bucket_prefix(partition, bucket);
        let from = after.map(|a| {
            let mut k = prefix.clone();
            k.extend_from_slice(a);
            k
        });
        let rows = store
            .scan_prefix(&prefix, from.as_deref(), limit)
            .map_err(|e| ReplicaError::Store(e.to_string()))?;
        let complete = rows.len() < limit;
        let last = (!complete)
            .then(|| rows.last().map(|(k, _)| k[prefix.len()..].to_vec()))
            .flatten();
        let mut entries = Vec::with_capacity(rows.len());
        for (k, v) in rows {
            let object = decode_object(&v).map_err(|e| ReplicaError::Store(e.to_string()))?;
            let Some(object) = self.after_truncation(bucket, Cow::Owned(object)) else {
                continue;
            };
            entries.push(ScanEntry {
                key: k[prefix.len()..].to_vec(),
                object: object.without_values(),
            });
        }
        Ok(ScanPage {
            entries,
            last,
            complete,
        })
    }

    /// A replica's side of a listing: its page, for a `ScanResponse`.
    pub(crate) fn on_scan_request<S: Store>(
        &self,
        store: &mut S,
        bucket: &BucketName,
        partition: PartitionId,
        after: Option<&[u8]>,
        limit: u32,
    ) -> Result<ScanPage, ReplicaError> {
        if partition.0 >= self.layout.partition_count() {
            return Err(ReplicaError::Store(format!(
                "no partition {} in this layout",
                partition.0
            )));
        }
        self.scan_page(store, bucket, partition, after, limit as usize)
    }
}
