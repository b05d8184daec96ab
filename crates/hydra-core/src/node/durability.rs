//! Durability: group-commit sync generations, what waits for them, the store's poisoning,
//! and the persisted clock high-water mark.
//!
//! ```text
//! part writes to the store ──wait(Waiter)──▶ waiters[generation = requested + 1]
//! end of the call: a waiter beyond `requested` ──▶ Output::Sync { generation }
//! shell fsyncs ──Input::Synced { generation, Ok }──▶ every waiter <= generation released
//!                              { generation, Err }──▶ every waiter fails, writes refused
//! ```
//!
//! Invariants:
//! * Nothing is acknowledged as durable before a sync that started after its write has
//!   finished (`on_synced` releases only waiters of generations up to the one reported).
//! * Once a sync fails the store is poisoned: every waiter fails and writes are refused until
//!   the node restarts (a failed fsync may have lost any unsynced write).
//! * A key whose coordinator write carries a dot not yet durable is `unsynced`: reads and
//!   anti-entropy do not ship it before the sync (one dot names one value).
//! * The clock never goes back across restarts: a high-water mark ahead of every issued
//!   timestamp is written before the timestamp is used, and `mark_durable` covers only what
//!   a finished sync made durable.
//! * A sync covering a Paxos acceptor's state change is real in every durability mode.

use crate::bugs::planted;
use crate::hlc::{Hlc, HlcClock};
use crate::ids::{NodeId, RequestId, Timestamp};
use crate::key::ObjectKey;
use crate::message::PaxosAnswer;
use crate::store::{Store, StoreError, WriteBatch};
use std::collections::BTreeMap;
use std::ops::Not;

use super::io::{Outbox, Output};

/// Where the clock high-water mark is stored (the reserved partition, like buckets).
pub const HLC_STORAGE_KEY: &[u8] = b"\xff\xff\xff\xffhlc";
/// How far ahead of the clock the persisted mark is set: one small write per second of issued
/// time, and after a restart the clock starts at most this far ahead of the wall clock (well
/// within the lww skew limit).
pub const HLC_MARK_MARGIN_MS: u64 = 1_000;

/// Something that waits for a sync, and where its outcome goes.
#[derive(Clone, Debug)]
pub(crate) enum Waiter {
    /// The coordinator's own write of request `RequestId`.
    LocalWrite(RequestId),
    /// A replica's answer to a ReplicateRequest or HintRequest.
    ReplicaAck { to: NodeId, req: RequestId },
    /// A read of a key whose coordinator write is not durable yet: its new dot must not leave
    /// this node before the sync.
    Read {
        to: NodeId,
        req: RequestId,
        key: ObjectKey,
        /// Answer with the digest of what is stored (a `ReadDigestRequest`), not the object.
        digest: bool,
    },
    /// A first primary's own merges of expiry batch `RequestId`.
    ExpireLocal(RequestId),
    /// A replica's answer to an ExpireRequest: the positions it merged.
    ExpireAck {
        to: NodeId,
        req: RequestId,
        merged: Vec<u32>,
    },
    /// The coordinator's own read of such a key, for request `RequestId`.
    LocalRead { req: RequestId, key: ObjectKey },
    /// An acceptor's answer to a Paxos phase, sent once its state change is durable.
    PaxosAck {
        to: NodeId,
        req: RequestId,
        answer: PaxosAnswer,
    },
    /// A primary's answer to a Paxos repair round's fence, sent once the fence is durable.
    PaxosFenceAck {
        to: NodeId,
        req: RequestId,
        list: crate::message::FenceList,
    },
}

#[derive(Debug, Default)]
pub(crate) struct Durability {
    /// Waiters and the sync generation each needs. Bounded by the requests in flight.
    waiters: Vec<(u64, Waiter)>,
    /// Highest generation asked of the shell, and highest reported done.
    requested: u64,
    completed: u64,
    /// Set when a sync failed: the node refuses writes until restarted.
    poisoned: Option<StoreError>,
    /// Keys whose coordinator write (with a new dot) is not durable yet -> the sync generation
    /// that makes it durable. Bounded by the coordinations in flight.
    unsynced: BTreeMap<Vec<u8>, u64>,
    /// The clock high-water mark last persisted (raw HLC).
    mark: u64,
    /// The highest clock mark known durable (loaded at start, or synced since), and a newer
    /// one written but not yet synced, with the sync generation that will cover it.
    mark_durable: u64,
    mark_pending: Option<(u64, u64)>,
    /// The latest sync generation that must be real in every durability mode because it
    /// covers a Paxos acceptor's state change.
    paxos_required: u64,
}

impl Durability {
    /// Why writes are refused, if the store is poisoned.
    pub(crate) fn poisoned(&self) -> Option<&StoreError> {
        self.poisoned.as_ref()
    }

    /// The generation of the next sync: the one that covers a write made now.
    pub(crate) fn next_generation(&self) -> u64 {
        self.requested + 1
    }

    /// `waiter` is released after the next sync. Returns it back when it must be released at
    /// once (only with a planted bug).
    pub(crate) fn wait(&mut self, waiter: Waiter) -> Option<Waiter> {
        if planted().ack_before_sync {
            return Some(waiter);
        }
        self.waiters.push((self.next_generation(), waiter));
        None
    }

    /// Waits for the sync that makes this node's own write of `skey` durable.
    /// Returns the waiter, with the outcome to release it with, when it need not wait: the
    /// key has no unsynced write (`Ok`), or the sync that was to cover it failed (the store's
    /// error: that write may be lost, and no later sync will come).
    pub(crate) fn wait_for_key(
        &mut self,
        skey: &[u8],
        waiter: Waiter,
    ) -> Option<(Waiter, Result<(), StoreError>)> {
        match (self.unsynced.get(skey), &self.poisoned) {
            (None, _) => Some((waiter, Ok(()))),
            (Some(_), Some(e)) => Some((waiter, Err(e.clone()))),
            (Some(g), None) => {
                self.waiters.push((*g, waiter));
                None
            }
        }
    }

    /// The next sync covers a Paxos acceptor's state change: it must be real in every
    /// durability mode (a promise forgotten in a crash breaks Paxos).
    pub(crate) fn require_next_sync(&mut self) {
        self.paxos_required = self.next_generation();
    }

    /// A coordinator write of `skey` carries a dot that is not durable until the next sync.
    pub(crate) fn mark_unsynced(&mut self, skey: Vec<u8>) {
        self.unsynced.insert(skey, self.next_generation());
    }

    pub(crate) fn is_unsynced(&self, skey: &[u8]) -> bool {
        self.unsynced.contains_key(skey)
    }

    /// At the end of each call: asks the shell for a sync when a waiter needs one, saying
    /// whether it covers a new dot or a clock mark (then it must be real in every mode).
    pub(crate) fn request_sync(&mut self, out: &mut Outbox) {
        if self.waiters.iter().any(|(g, _)| *g > self.requested) {
            self.requested += 1;
            let g = self.requested;
            let required = planted().dots_leave_unsynced.not()
                && (self.unsynced.values().any(|u| *u == g)
                    || self.mark_pending.is_some_and(|(m, _)| m == g)
                    || self.paxos_required == g);
            out.push(Output::Sync {
                generation: g,
                required,
            });
        }
    }

    /// A sync finished: the waiters it releases, and the outcome each gets.
    pub(crate) fn on_synced(
        &mut self,
        generation: u64,
        result: Result<(), StoreError>,
    ) -> (Vec<Waiter>, Result<(), StoreError>) {
        match result {
            Ok(()) => {
                assert!(
                    generation <= self.requested,
                    "sync generation {generation} reported, only {} requested",
                    self.requested
                );
                self.completed = self.completed.max(generation);
                let done = self.completed;
                if let Some((g, mark)) = self.mark_pending
                    && g <= done
                {
                    self.mark_durable = self.mark_durable.max(mark);
                    self.mark_pending = None;
                }
                let (ready, waiting) = std::mem::take(&mut self.waiters)
                    .into_iter()
                    .partition(|(g, _)| *g <= done);
                self.waiters = waiting;
                self.unsynced.retain(|_, g| *g > done);
                (ready.into_iter().map(|(_, w)| w).collect(), Ok(()))
            }
            Err(e) => {
                // A failed sync may have lost any unsynced write: fail every waiter, refuse
                // writes from now on.
                self.poisoned = Some(e.clone());
                let all = std::mem::take(&mut self.waiters);
                (all.into_iter().map(|(_, w)| w).collect(), Err(e))
            }
        }
    }

    /// At start: the persisted clock mark moves the clock past every timestamp issued before.
    /// A mark further ahead of the wall clock than `max_skew_ms` (plus the mark's margin)
    /// means the clock was wrong before the restart or is now: it is not taken in (a wrong
    /// clock must not cross a restart); the error says why, and the node then waits for its
    /// peers to verify its clock before it stamps anything.
    pub(crate) fn load_clock_mark<S: Store>(
        &mut self,
        store: &mut S,
        hlc: &mut HlcClock,
        now: Timestamp,
        max_skew_ms: u64,
    ) -> Result<(), String> {
        if let Ok(Some(bytes)) = store.get(HLC_STORAGE_KEY)
            && let Ok(raw) = <[u8; 8]>::try_from(bytes.as_slice())
        {
            let mark = Hlc(u64::from_be_bytes(raw));
            if hlc
                .observe(mark, now, max_skew_ms.saturating_add(HLC_MARK_MARGIN_MS))
                .is_err()
            {
                return Err(format!(
                    "its clock mark from before the restart is {} ms ahead of its clock",
                    mark.physical_ms().saturating_sub(now.0)
                ));
            }
            self.mark = mark.0;
            self.mark_durable = self.mark;
        }
        Ok(())
    }

    /// Before `timestamp` is used: persists a clock high-water mark ahead of it when the last
    /// one does not cover it, so after a restart the clock (and so the counter floor of fresh
    /// entries) never goes back.
    pub(crate) fn cover_timestamp<S: Store>(&mut self, store: &mut S, timestamp: Hlc) {
        if timestamp.0 <= self.mark {
            return;
        }
        let mark = Hlc::new(
            timestamp.physical_ms().saturating_add(HLC_MARK_MARGIN_MS),
            0,
        )
        .0;
        let mut batch = WriteBatch::default();
        batch.put(HLC_STORAGE_KEY.to_vec(), mark.to_be_bytes().to_vec());
        if store.write(batch).is_ok() {
            self.mark = mark;
            self.mark_pending = Some((self.next_generation(), mark));
        }
    }

    /// Whether a durable clock mark covers `timestamp`: a crash now cannot make this node
    /// issue a timestamp older than it.
    pub(crate) fn mark_covers(&self, timestamp: Hlc) -> bool {
        timestamp.0 <= self.mark_durable
    }
}
