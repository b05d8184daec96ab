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
//! * No hint held for, or asked of, a node that is not a member: a member cannot fill
//!   another's disk with hints for invented owners.
//! * `lww` timestamps and Paxos ballots beyond the clock skew bound are refused where they
//!   are used (`Local::merge_into_store`, the acceptor), bucket entries where gossip is
//!   joined (`buckets::stamped_within`); a forwarded write is a client request and is
//!   validated as one (`client.rs`).
//!
//! A refused message is dropped, not answered: a member that follows the protocol never
//! sends one, and the request it belonged to ends at its deadline like one lost in transit.

use crate::ids::NodeId;
use crate::limits::CONTEXT_COUNTER_MAX;
use crate::message::{Message, PaxosAnswer, PaxosPhase};
use crate::paxos::Accepted;
use crate::version::Object;

use super::local::Local;

impl Local {
    /// Why `message` from a member must not be applied, if it must not.
    pub(crate) fn check_peer_message(&self, message: &Message) -> Result<(), String> {
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
            Message::AeFetchResponse { objects, .. } => {
                objects.iter().try_for_each(|(_, o)| check_object(o))
            }
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

/// A `siblings` object's counters leave room to count (an `lww` object's identity is its
/// timestamp, checked against the clock where it is merged).
fn check_object(object: &Object) -> Result<(), String> {
    let Object::Siblings(dvv) = object else {
        return Ok(());
    };
    match dvv
        .context()
        .0
        .into_iter()
        .find(|(_, c)| *c > CONTEXT_COUNTER_MAX)
    {
        Some((node, counter)) => Err(format!(
            "an object whose version names node {node} with counter {counter}, above the limit of {CONTEXT_COUNTER_MAX}"
        )),
        None => Ok(()),
    }
}
