//! The copy of a hash or set that a transaction on it (`MULTI`/`EXEC` on one key, see
//! `transaction.rs`) runs its commands against: each command's request is answered from the
//! copy as the core would answer it, and `EXEC` sends what changed as one update.

use super::collections::remove;
use crate::driver::wall_ms;
use hydra_core::collection::{Collection, CollectionKind, CollectionUpdate};
use hydra_core::message::{
    CasAction, CasRequest, ClientError, ClientRequest, ClientResponse, ErrorCode, Expiry,
};
use hydra_core::paxos::Condition;
use hydra_core::version::VersionVector;

/// The copy of a hash or set a transaction's commands run against (see `transaction.rs`):
/// they read it and update it in memory; `EXEC` then sends what changed as one update.
pub(super) struct CollectionCopy {
    /// What the key held when the transaction read it (`None`: absent).
    original: Option<Collection>,
    copy: Option<Collection>,
    writes: u64,
    now_ms: u64,
}

impl CollectionCopy {
    pub(super) fn new(original: Option<Collection>) -> CollectionCopy {
        CollectionCopy {
            copy: original.clone(),
            original,
            writes: 0,
            now_ms: wall_ms(),
        }
    }

    /// What the core would answer, from the copy.
    pub(super) fn answer(
        &mut self,
        request: ClientRequest,
        receipt: hydra_core::message::Receipt,
    ) -> crate::driver::Reply {
        let now = self.now_ms;
        match request {
            ClientRequest::Get { .. } => Ok(ClientResponse::Read {
                context: VersionVector::default(),
                siblings: Vec::new(),
                receipt,
                collection: self.copy.as_ref().map(|c| Box::new(c.view(now))),
            }),
            ClientRequest::Put(w) if w.collection.is_some() => {
                self.apply(w.collection.expect("checked"))?;
                Ok(ClientResponse::Written {
                    context: VersionVector::default(),
                    receipt,
                })
            }
            // A read-then-write command (`HINCRBY`...): the copy is the key alone, so its
            // condition holds unless the copy changed since the command read it.
            ClientRequest::Cas(cas) => match *cas {
                CasRequest {
                    condition: Condition::Elements(seen),
                    action: CasAction::Collection(update),
                    ..
                } => {
                    let applied = match &self.copy {
                        Some(c) => c.has_exactly(&seen, now),
                        None => seen.iter().all(|(_, dots)| dots.is_empty()),
                    };
                    if applied {
                        self.apply(update)?;
                    }
                    Ok(ClientResponse::Cas {
                        applied,
                        context: VersionVector::default(),
                        siblings: Vec::new(),
                        previous: Vec::new(),
                        receipt,
                        paxos: hydra_core::message::PaxosReceipt {
                            ballot: hydra_core::paxos::Ballot::ZERO,
                            attempts: 0,
                            round_trips: 0,
                            reproposed: 0,
                        },
                        collection: self.copy.as_ref().map(|c| Box::new(c.view(now))),
                    })
                }
                _ => Err(not_in_a_collection_transaction()),
            },
            _ => Err(not_in_a_collection_transaction()),
        }
    }

    /// Applies one update to the copy (WRONGTYPE when it holds the other kind).
    fn apply(&mut self, update: CollectionUpdate) -> Result<(), ClientError> {
        let now = self.now_ms;
        let mut base = match self.copy.take() {
            Some(c) if c.kind == update.kind => c,
            Some(c) if c.is_live(now) => {
                self.copy = Some(c);
                return Err(ClientError::new(
                    ErrorCode::WrongType,
                    "WRONGTYPE Operation against a key holding the wrong kind of value",
                ));
            }
            _ => Collection::new(update.kind),
        };
        self.writes += 1;
        let stamp = hydra_core::hlc::Hlc::new(now, self.writes as u16);
        base.apply(&update, hydra_core::ids::NodeId(0), stamp, now);
        self.copy = Some(base);
        Ok(())
    }

    /// The one update that turns what was read into the copy: the elements it lost or
    /// changed leave (with the dots the read showed), the new or changed ones are added, and
    /// the TTL is set if a command changed it. `None` when no command wrote.
    pub(super) fn delta(&self) -> Option<(CollectionKind, CollectionUpdate)> {
        let copy = self.copy.as_ref().filter(|_| self.writes > 0)?;
        let now = self.now_ms;
        let original = self
            .original
            .as_ref()
            .filter(|o| o.kind == copy.kind && o.is_live(now));
        let mut u = CollectionUpdate {
            kind: copy.kind,
            ..Default::default()
        };
        let value_of = |c: Option<&Collection>, e: &[u8]| {
            c.and_then(|c| c.get(e, now)).map(|(_, v)| v.to_vec())
        };
        for (e, v) in original.map(|o| o.elements(now)).unwrap_or_default() {
            if value_of(Some(copy), e).as_deref() != Some(v) {
                remove(original, e, &mut u);
            }
        }
        for (e, v) in copy.elements(now) {
            if value_of(original, e).as_deref() != Some(v) {
                u.adds.push((e.to_vec(), v.to_vec()));
            }
        }
        let before = original.and_then(|o| o.expires_at(now));
        let after = copy.expires_at(now);
        if before != after {
            // The time the transaction set, exactly.
            u.expiry = Some(after.map(Expiry::AtMs));
        }
        Some((copy.kind, u))
    }
}

/// The refusal of a command a transaction on a hash or set does not run.
fn not_in_a_collection_transaction() -> ClientError {
    ClientError::new(
        ErrorCode::InvalidQuery,
        "a transaction on a hash or set runs hash, set and key commands only",
    )
}
