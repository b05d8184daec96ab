//! Peer messages at the edge of the core: each is checked once, here, before any part sees
//! it, as strictly as client input is in `client.rs`.
//!
//! ```text
//! shell (authenticated member) ─Message─▶ check_peer_message ─ok─▶ the part it concerns
//!                                                            └bad─▶ dropped, counted
//! ```
//!
//! The shell has already refused every node that is not a member (the internode handshake),
//! and the decoder every message that breaks a size limit. What is left to check needs the
//! node's state: what a member sends must not carry a version no node of this cluster could
//! have made. Invariants:
//! * No counter of a `siblings` object above [`CONTEXT_COUNTER_MAX`]: one near the top of
//!   `u64` would make every later write of the key by that node overflow its dot, and one
//!   version vector entry would then hide every write made since (the "huge counter" wipe).
//! * Every value within what a client may write: its size, its content type, its expiry
//!   (at most twice the longest TTL ahead: a sender's clock may have jumped).
//! * Nothing stricter than what members following the protocol send: the simulator's
//!   checker (i) fails a seed on any refusal here. (A check of `lww` TTL-change stamps
//!   against the skew bound was tried and refused legitimate copies stamped while a
//!   clock had jumped ahead; version deletes carry the largest stamp on purpose.)
//! * No hint held for, or asked of, a node that is not a member: a member cannot fill
//!   another's disk with hints for invented owners.
//! * `lww` timestamps and Paxos ballots beyond the clock skew bound are refused where they
//!   are used (`Local::merge_into_store`, the acceptor), bucket entries where gossip is
//!   joined (`buckets::stamped_within`); a forwarded write is a client request and is
//!   validated as one (`client.rs`).
//!
//! A refused message is dropped, not answered: a member that follows the protocol never
//! sends one, and the request it belonged to ends at its deadline like one lost in transit.

use crate::ids::{NodeId, Timestamp};
use crate::limits::{
    CONTENT_TYPE_BYTES_MAX, CONTEXT_COUNTER_MAX, TTL_SECS_MAX, VALUE_BYTES_CEILING,
};
use crate::message::{Message, PaxosAnswer, PaxosPhase};
use crate::paxos::Accepted;
use crate::version::Object;

use super::local::Local;

impl Local {
    /// Why `message` from a member must not be applied, if it must not.
    pub(crate) fn check_peer_message(
        &self,
        message: &Message,
        now: Timestamp,
    ) -> Result<(), String> {
        let check_object = |o: &Object| self.check_peer_object(o, now);
        let owner_ok = |owner: &NodeId| {
            if self.layout.contains(*owner) {
                Ok(())
            } else {
                Err(format!("a hint for node {owner}, which is not a member"))
            }
        };
        match message {
            Message::ReplicateRequest { object, .. }
            | Message::ReplicatePlainRequest { object, .. }
            | Message::HintDeliveryRequest { object, .. }
            | Message::RepairRequest { object, .. }
            | Message::ReapRequest { object, .. }
            | Message::ReadResponse {
                result: Ok(Some(object)),
                ..
            } => check_object(object),
            Message::HintRequest { object, owner, .. } => {
                owner_ok(owner)?;
                check_object(object)
            }
            Message::HintReadRequest { owner, .. } => owner_ok(owner),
            // A mark ahead of this node's clock would hide every write until it.
            Message::TruncateRequest { mark, .. } => {
                crate::hlc::check_skew(*mark, now, self.config.max_clock_skew_ms)
                    .map_err(|e| format!("a truncation mark {e}"))
            }
            Message::AeFetchResponse { objects, .. } => {
                objects.iter().try_for_each(|(_, o)| check_object(o))
            }
            Message::ScanResponse {
                result: Ok(page), ..
            } => page
                .entries
                .iter()
                .try_for_each(|e| check_object(&e.object)),
            Message::ExpireRequest { entries, .. } => {
                entries.iter().try_for_each(|(_, o)| check_object(o))
            }
            Message::PaxosRequest {
                phase: PaxosPhase::Propose(Some(o), _) | PaxosPhase::Commit(Some(o), _),
                ..
            } => check_object(o),
            Message::PaxosResponse {
                result: Ok(PaxosAnswer::Promise(promise)),
                ..
            } => {
                if let Some(Accepted {
                    proposal: Some(o), ..
                }) = &promise.accepted
                {
                    check_object(o)?;
                }
                promise.object.as_ref().map_or(Ok(()), check_object)
            }
            _ => Ok(()),
        }
    }
}

impl Local {
    /// What a client could have written: counters with room to count, values, content types
    /// and expiries within the limits (an `lww` version's own timestamp is checked against
    /// the skew bound where it is merged).
    fn check_peer_object(&self, object: &Object, now: Timestamp) -> Result<(), String> {
        let counter_max = if crate::bugs::planted().peer_counter_limit_low {
            16
        } else {
            CONTEXT_COUNTER_MAX
        };
        let siblings = match object {
            Object::Siblings(dvv) => {
                if let Some((node, counter)) =
                    dvv.context().0.into_iter().find(|(_, c)| *c > counter_max)
                {
                    return Err(format!(
                        "an object whose version names node {node} with counter {counter}, above the limit of {counter_max}"
                    ));
                }
                object.all_siblings()
            }
            Object::Lww(v) => vec![&v.sibling],
            Object::Collection(c) => return check_collection(c, counter_max),
        };
        // Twice the longest TTL past this node's clock: a sender's clock may be far ahead
        // (a jump not yet noticed), and a far expiry harms nothing but the disk.
        let expiry_max = now.0.saturating_add(2 * TTL_SECS_MAX * 1000);
        for s in siblings {
            if s.value.len() > VALUE_BYTES_CEILING {
                return Err(format!(
                    "a value of {} bytes, more than the ceiling of {VALUE_BYTES_CEILING}",
                    s.value.len()
                ));
            }
            if s.content_type.len() > CONTENT_TYPE_BYTES_MAX {
                return Err(format!(
                    "a content type of {} bytes, more than the limit of {CONTENT_TYPE_BYTES_MAX}",
                    s.content_type.len()
                ));
            }
            if let Some(at) = s.expires_at.filter(|at| *at > expiry_max) {
                return Err(format!(
                    "a value expiring at {at} ms, later than the longest TTL ({TTL_SECS_MAX} s) allows"
                ));
            }
        }
        Ok(())
    }
}

/// A member's hash or set: dots with room to count, and within the size limits.
fn check_collection(c: &crate::collection::Collection, counter_max: u64) -> Result<(), String> {
    use crate::limits::{CLOUD_DOTS_MAX, COLLECTION_ELEMENTS_MAX, ELEMENT_BYTES_MAX};
    if let Some(d) = c.all_dots().find(|d| d.counter > counter_max) {
        return Err(format!(
            "a collection whose context names node {} with stamp {}, above the limit of {counter_max}",
            d.node, d.counter
        ));
    }
    if c.len() > COLLECTION_ELEMENTS_MAX || c.cloud_len() > CLOUD_DOTS_MAX {
        return Err(format!(
            "a collection of {} elements and {} cloud dots, more than the limits of {COLLECTION_ELEMENTS_MAX} and {CLOUD_DOTS_MAX}",
            c.len(),
            c.cloud_len()
        ));
    }
    for (element, dots) in c.raw_entries() {
        if element.len() > ELEMENT_BYTES_MAX {
            return Err(format!(
                "an element of {} bytes, more than the limit of {ELEMENT_BYTES_MAX}",
                element.len()
            ));
        }
        if let Some(v) = dots.values().find(|v| v.len() > VALUE_BYTES_CEILING) {
            return Err(format!(
                "a value of {} bytes, more than the ceiling of {VALUE_BYTES_CEILING}",
                v.len()
            ));
        }
    }
    Ok(())
}
