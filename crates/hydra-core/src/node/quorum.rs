//! What write and read coordination share: the slots of a request (one per replica asked,
//! primaries then fallbacks), choosing fallbacks (sloppy quorum), receipts and quorum errors.
//!
//! Source: DeCandia et al., "Dynamo" (SOSP 2007), §4.6: the preference list, and "the first
//! N healthy nodes" of the extended one when primaries are down.

use crate::ids::{NodeId, PartitionId, RequestId, Timestamp};
use crate::key::ObjectKey;
use crate::message::{ClientError, ErrorCode, Message, Outcome, Receipt, ReplicaReport, Role};
use crate::version::Object;
use smallvec::SmallVec;

use super::io::ReceiptDetail;
use super::local::Local;

/// Where a request goes: the key's partition, its replicas (the preference list), how many
/// must answer, and when it times out.
pub(crate) struct Placement {
    pub(crate) partition: PartitionId,
    pub(crate) replicas: Vec<NodeId>,
    pub(crate) needed: u8,
    pub(crate) deadline: Timestamp,
}

/// A request's slots, inline up to four (N is 3 by default; a fallback may join): one
/// allocation fewer per request.
pub(crate) type Slots = SmallVec<[Slot; 4]>;

/// One replica a request was (or will be) sent to, and what came of it.
#[derive(Clone, Debug)]
pub(crate) struct Slot {
    pub(crate) node: NodeId,
    pub(crate) outcome: Outcome,
    pub(crate) role: Role,
    /// For a fallback: the primary it stands in for.
    pub(crate) hint_for: Option<NodeId>,
}

/// The slot of `from` if it still waits for an answer; `None` for an answer from a node not
/// asked, or a duplicate.
pub(crate) fn pending_slot(slots: &mut [Slot], from: NodeId) -> Option<&mut Slot> {
    slots
        .iter_mut()
        .find(|s| s.node == from)
        .filter(|s| s.outcome == Outcome::Pending)
}

pub(crate) fn count(slots: &[Slot], outcome: &Outcome) -> usize {
    slots.iter().filter(|s| s.outcome == *outcome).count()
}

impl Local {
    /// The slots of a request: one per replica, already failed for the ones believed down
    /// (the coordinator does not wait out their timeouts), and in a sloppy request a
    /// fallback for each of those.
    pub(crate) fn slots_for(
        &self,
        partition: PartitionId,
        replicas: &[NodeId],
        now: Timestamp,
        sloppy: bool,
    ) -> Slots {
        let mut slots: Slots = replicas
            .iter()
            .map(|n| {
                let outcome = if !self.is_alive(*n, now) {
                    let phi = self.membership.phi(*n, self.timers.mono()).unwrap_or(0.0);
                    Outcome::Failed {
                        reason: format!("believed down (phi {phi:.1})"),
                    }
                } else {
                    Outcome::Pending
                };
                Slot {
                    node: *n,
                    outcome,
                    role: Role::Primary,
                    hint_for: None,
                }
            })
            .collect();
        if sloppy {
            let down: Vec<NodeId> = slots
                .iter()
                .filter(|s| s.outcome != Outcome::Pending)
                .map(|s| s.node)
                .collect();
            for owner in down {
                self.add_fallback(partition, &mut slots, owner, now);
            }
        }
        slots
    }

    /// Adds a fallback slot standing in for `owner`: the first node of the extended preference
    /// list after the primaries that is believed up and not already asked. False if none is.
    pub(crate) fn add_fallback(
        &self,
        partition: PartitionId,
        slots: &mut Slots,
        owner: NodeId,
        now: Timestamp,
    ) -> bool {
        let primaries = slots.iter().filter(|s| s.role == Role::Primary).count();
        let order = self.layout.extended_preference_list(partition);
        let fallback = order[primaries.min(order.len())..]
            .iter()
            .copied()
            .find(|n| self.is_alive(*n, now) && !slots.iter().any(|s| s.node == *n));
        match fallback {
            Some(node) => {
                slots.push(Slot {
                    node,
                    outcome: Outcome::Pending,
                    role: Role::Fallback,
                    hint_for: Some(owner),
                });
                true
            }
            None => false,
        }
    }

    /// A request's receipt, with the list of replicas when `detail` asks for it.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn receipt(
        &self,
        detail: ReceiptDetail,
        partition: PartitionId,
        needed: u8,
        slots: &[Slot],
        repairs: Vec<NodeId>,
        started: Timestamp,
        now: Timestamp,
    ) -> Receipt {
        let replicas = match detail {
            ReceiptDetail::Brief => Vec::new(),
            ReceiptDetail::Full => slots
                .iter()
                .map(|s| ReplicaReport {
                    node: s.node,
                    role: s.role,
                    zone: self
                        .layout
                        .zone_of(s.node)
                        .map(|(_, z)| z.clone())
                        .unwrap_or_default(),
                    outcome: s.outcome.clone(),
                })
                .collect(),
        };
        Receipt {
            coordinator: self.me(),
            partition: partition.0,
            needed,
            replicas,
            read_repairs: repairs,
            hints_stored: slots
                .iter()
                .filter(|s| s.role == Role::Fallback && s.outcome == Outcome::Acked)
                .count() as u32,
            elapsed_ms: now.ms_since(started),
        }
    }
}

/// `QuorumNotReached`, naming every replica that failed or did not answer.
pub(crate) fn quorum_error(what: &str, receipt: Receipt) -> ClientError {
    let failures: Vec<String> = receipt
        .replicas
        .iter()
        .filter_map(|r| match &r.outcome {
            Outcome::Failed { reason } => Some(format!("{}: {reason}", r.node)),
            Outcome::Pending => Some(format!("{}: no answer", r.node)),
            _ => None,
        })
        .collect();
    let message = format!(
        "{what} quorum not reached: needed {} of {} replicas, {} answered; {}",
        receipt.needed,
        receipt.replicas.len(),
        receipt.acked(),
        failures.join(", ")
    );
    ClientError {
        code: ErrorCode::QuorumNotReached,
        message,
        receipt: Some(receipt),
    }
}

/// Every slot still pending fails with "timed out".
pub(crate) fn time_out(slots: &mut [Slot], started: Timestamp, now: Timestamp) {
    for s in slots.iter_mut().filter(|s| s.outcome == Outcome::Pending) {
        s.outcome = Outcome::Failed {
            reason: format!("timed out after {} ms", now.ms_since(started)),
        };
    }
}

/// The message that carries a write to a slot: a replica merges it, a fallback holds it.
/// `plain`: a client's write without a condition (a replica may refuse it if compare-and-set
/// manages the key).
pub(crate) fn write_message(
    slot: &Slot,
    req: RequestId,
    key: &ObjectKey,
    object: &Object,
    plain: bool,
) -> Message {
    match slot.hint_for {
        None if plain => Message::ReplicatePlainRequest {
            req,
            key: key.clone(),
            object: object.clone(),
        },
        None => Message::ReplicateRequest {
            req,
            key: key.clone(),
            object: object.clone(),
        },
        Some(owner) => Message::HintRequest {
            req,
            key: key.clone(),
            object: object.clone(),
            owner,
        },
    }
}
