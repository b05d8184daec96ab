//! Forwarding: a write that reaches a node which is not a replica of its key goes to one
//! replica, which coordinates it.
//!
//! ```text
//! client ─▶ node X (not a replica) ─ForwardRequest─▶ replica R (coordinates the write)
//! client ◀─ reply ─ X ◀─ForwardResponse(result)─────┘
//! ```
//!
//! Invariants:
//! * Exactly one attempt: retrying at another replica after a timeout could apply the write
//!   twice (two siblings for one client write), so a timeout is reported to the client, whose
//!   retry is then its own, visible decision.
//! * A replica takes each forwarded request once: duplicates (the network may duplicate
//!   messages) are recognised by (sender, request id) for longer than any request lives.
//! * A forwarded write is never forwarded again.

use crate::ids::{ClientRequestId, NodeId, RequestId, Timestamp};
use crate::key::ObjectKey;
use crate::limits::{FORWARDS_SEEN_MAX, TIMEOUT_MS_MAX};
use crate::message::{ClientError, ClientResponse, ErrorCode, Message, WriteRequest};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::io::{Ctx, ReceiptDetail, ReplyTo};
use super::local::Local;
use super::timers::Timer;
use crate::store::Store;

#[derive(Debug)]
struct ForwardState {
    client: ClientRequestId,
    key: ObjectKey,
    to: NodeId,
    started: Timestamp,
    deadline: Timestamp,
}

#[derive(Debug, Default)]
pub(crate) struct Forwards {
    /// Writes this node forwarded and waits an answer for.
    in_flight: BTreeMap<RequestId, ForwardState>,
    /// Forwarded writes already taken, so that a duplicated message does not become a
    /// second write: a set for lookup and the same ids in the order they arrived, so that
    /// forgetting the old ones costs O(log n) a write, not a scan of the table. At most
    /// [`FORWARDS_SEEN_MAX`]; entries older than twice the longest request timeout go.
    seen: BTreeSet<(NodeId, RequestId)>,
    seen_order: VecDeque<(Timestamp, (NodeId, RequestId))>,
}

impl Forwards {
    pub(crate) fn len(&self) -> usize {
        self.in_flight.len()
    }

    /// Hands a write to the first replica of the preference list believed up.
    pub(crate) fn start<S: Store>(
        &mut self,
        local: &mut Local,
        ctx: &mut Ctx<'_, S>,
        client: ClientRequestId,
        request: Box<WriteRequest>,
        candidates: &[NodeId],
        deadline: Timestamp,
    ) {
        debug_assert!(
            !candidates.contains(&local.me()),
            "a replica coordinates itself"
        );
        let (now, req) = (ctx.now, local.out.new_request(ctx.rng));
        let to = candidates
            .iter()
            .copied()
            .find(|n| local.is_alive(*n, now))
            .unwrap_or(candidates[0]);
        self.in_flight.insert(
            req,
            ForwardState {
                client,
                key: request.key.clone(),
                to,
                started: now,
                deadline,
            },
        );
        local.out.send(to, Message::ForwardRequest { req, request });
        local.timers.set(deadline, Timer::ForwardDeadline(req));
    }

    pub(crate) fn on_response(
        &mut self,
        local: &mut Local,
        req: RequestId,
        result: Result<ClientResponse, ClientError>,
    ) {
        if let Some(state) = self.in_flight.remove(&req) {
            local
                .timers
                .cancel(state.deadline, Timer::ForwardDeadline(req));
            local
                .out
                .reply(ReplyTo::Client(state.client, ReceiptDetail::Full), result);
        }
    }

    pub(crate) fn on_deadline(&mut self, local: &mut Local, now: Timestamp, req: RequestId) {
        let Some(state) = self.in_flight.remove(&req) else {
            return;
        };
        let message = format!(
            "replica {} did not answer the forwarded write of {} within {} ms; it may or may not have been applied",
            state.to,
            state.key,
            now.ms_since(state.started)
        );
        let e = ClientError::new(ErrorCode::CoordinatorUnreachable, message);
        local
            .out
            .reply(ReplyTo::Client(state.client, ReceiptDetail::Full), Err(e));
    }

    /// Whether this forwarded write is new (not a duplicate of one already taken).
    pub(crate) fn first_time(&mut self, now: Timestamp, from: NodeId, req: RequestId) -> bool {
        let horizon = Timestamp(now.0.saturating_sub(2 * TIMEOUT_MS_MAX));
        // Arrival order is time order unless the clock stepped back; then an entry is kept
        // a little longer than needed, never dropped early.
        while let Some(&(seen, id)) = self.seen_order.front() {
            if seen >= horizon && self.seen_order.len() < FORWARDS_SEEN_MAX {
                break;
            }
            self.seen_order.pop_front();
            self.seen.remove(&id);
        }
        let fresh = self.seen.insert((from, req));
        if fresh {
            self.seen_order.push_back((now, (from, req)));
        }
        fresh
    }

    /// Forwarded-write ids remembered for deduplication.
    #[cfg(test)]
    pub(crate) fn seen_len(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_known_until_the_horizon_and_the_table_stays_bounded() {
        let mut f = Forwards::default();
        let (a, b) = (NodeId(1), NodeId(2));
        let t0 = Timestamp(10_000_000);
        assert!(f.first_time(t0, a, RequestId(7)));
        assert!(!f.first_time(t0.plus_ms(5), a, RequestId(7)), "a duplicate");
        assert!(
            f.first_time(t0.plus_ms(5), b, RequestId(7)),
            "another sender"
        );
        // Still known just inside twice the longest timeout, forgotten past it.
        let inside = t0.plus_ms(2 * TIMEOUT_MS_MAX);
        assert!(!f.first_time(inside, a, RequestId(7)));
        let past = t0.plus_ms(2 * TIMEOUT_MS_MAX + 10);
        assert!(f.first_time(past, a, RequestId(8)));
        assert!(
            f.first_time(past, a, RequestId(7)),
            "forgotten past the horizon"
        );
        // A full table drops its oldest entry, one per new id.
        let mut f = Forwards::default();
        for i in 0..FORWARDS_SEEN_MAX as u64 + 10 {
            assert!(f.first_time(t0, a, RequestId(i)));
        }
        assert_eq!(f.seen_len(), FORWARDS_SEEN_MAX);
        assert!(f.first_time(t0, a, RequestId(0)), "the oldest went first");
        assert!(!f.first_time(t0, a, RequestId(FORWARDS_SEEN_MAX as u64 + 9)));
        // A clock step back keeps entries, never forgets one early.
        let mut f = Forwards::default();
        assert!(f.first_time(t0, a, RequestId(1)));
        assert!(f.first_time(Timestamp(t0.0 - 1_000), a, RequestId(2)));
        assert!(!f.first_time(t0.plus_ms(1), a, RequestId(2)));
    }
}
