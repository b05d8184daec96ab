//! The counter invariant: every client increments its own field of one shared counter (key
//! `counter`, in the strict `lww` bucket) with compare-and-set, and must find its field equal
//! to the increments it saw applied.
//!
//! ```text
//! serial read ─▶ value: one u32 per client (little endian; absent reads as all zero)
//!   my field in doubt (the last increment's outcome was unknown): it must read as before
//!     (not applied) or one more (applied); anything else is a violation
//!   my field settled: it must read as the increments confirmed; else a violation
//! ─▶ SET ... IFEQ <the bytes read> with my field + 1
//!   applied: confirmed + 1; not applied: another client's increment came first;
//!   unknown (or no answer): in doubt until the next serial read
//! ```
//!
//! After healing, a final serial read judges every client's field the same way. A serial
//! read settles an increment in doubt: by then its coordinator gave up or died (clients time
//! out long after a node's deadline), and the read's prepare, at a majority, finished any
//! proposal in progress and promised above every earlier ballot.

use super::World;
use super::clients::ClientState;
use crate::check::Violation;
use hydra_core::key::ObjectKey;
use hydra_core::message::{
    CasAction, CasRequest, ClientError, ClientRequest, ClientResponse, ErrorCode,
};
use hydra_core::paxos::Condition;

/// Share of the compare-and-set clients' operations that are counter increments.
pub(super) const COUNTER_SHARE: f64 = 0.3;

/// Where a client's counter operation is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum CounterStage {
    /// The serial read before an increment (`is_final`: the read after healing).
    Reading { is_final: bool },
    /// The increment, conditional on the bytes read.
    Incrementing,
}

/// A client's own count: increments it saw applied, and whether one more is in doubt.
#[derive(Clone, Debug, Default)]
pub(super) struct Count {
    pub(super) confirmed: u32,
    pub(super) in_doubt: bool,
}

fn encode(fields: &[u32]) -> Vec<u8> {
    fields.iter().flat_map(|f| f.to_le_bytes()).collect()
}

fn decode(bytes: &[u8], clients: usize) -> Vec<u32> {
    let mut fields: Vec<u32> = bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect();
    fields.resize(clients.max(fields.len()), 0);
    fields
}

impl World {
    fn counter_key(&self) -> ObjectKey {
        ObjectKey::new(
            self.buckets[super::cas_bucket(&self.config)].clone(),
            b"counter",
        )
        .expect("valid key")
    }

    /// A serial read of the counter.
    pub(super) fn start_counter_read(&mut self, client: usize, is_final: bool) -> u64 {
        let request = ClientRequest::cas(CasRequest {
            key: self.counter_key(),
            condition: Condition::Always,
            action: CasAction::Read,
            timeout_ms: None,
            supersedes: None,
        });
        let op = self.next_op(client);
        self.clients[client].state = ClientState::Counter {
            op,
            stage: CounterStage::Reading { is_final },
        };
        self.submit(client, op, request);
        op
    }

    pub(super) fn on_counter_answer(
        &mut self,
        client: usize,
        stage: CounterStage,
        result: Result<ClientResponse, ClientError>,
    ) {
        match stage {
            CounterStage::Reading { is_final } => {
                let Ok(ClientResponse::Cas { siblings, .. }) = result else {
                    // No read: try again later (the final read is retried by its caller).
                    if is_final {
                        self.clients[client].state = ClientState::Idle;
                    } else {
                        self.finish_op(client);
                    }
                    return;
                };
                let bytes = siblings
                    .iter()
                    .find(|s| !s.tombstone)
                    .map(|s| s.value.clone())
                    .unwrap_or_default();
                let fields = decode(&bytes, self.clients.len());
                if is_final {
                    self.counter_final = Some(fields);
                    self.clients[client].state = ClientState::Idle;
                    return;
                }
                if !self.judge_field(client, fields[client]) {
                    return self.finish_op(client);
                }
                let mut next = fields.clone();
                next[client] += 1;
                let request = ClientRequest::cas(CasRequest {
                    key: self.counter_key(),
                    condition: if bytes.is_empty() {
                        Condition::Absent
                    } else {
                        Condition::ValueIs(bytes)
                    },
                    action: CasAction::Write {
                        value: encode(&next),
                        content_type: "application/octet-stream".into(),
                        expiry: None,
                        keep_ttl: false,
                    },
                    timeout_ms: None,
                    supersedes: None,
                });
                let op = self.next_op(client);
                self.clients[client].state = ClientState::Counter {
                    op,
                    stage: CounterStage::Incrementing,
                };
                self.submit(client, op, request);
            }
            CounterStage::Incrementing => {
                let count = &mut self.clients[client].count;
                match result {
                    Ok(ClientResponse::Cas { applied: true, .. }) => {
                        count.confirmed += 1;
                        self.report.counter_applied += 1;
                    }
                    Ok(ClientResponse::Cas { .. }) => {}
                    Err(e)
                        if matches!(
                            e.code,
                            ErrorCode::OutcomeUnknown
                                | ErrorCode::StoreFailed
                                | ErrorCode::Internal
                        ) =>
                    {
                        count.in_doubt = true
                    }
                    // Proposed nothing (contention, no majority, a refusal).
                    Err(_) => {}
                    Ok(_) => count.in_doubt = true,
                }
                self.finish_op(client);
            }
        }
    }

    pub(super) fn on_counter_timeout(&mut self, client: usize, stage: CounterStage) {
        match stage {
            CounterStage::Reading { is_final: true } => {
                self.clients[client].state = ClientState::Idle;
            }
            CounterStage::Reading { is_final: false } => self.finish_op(client),
            CounterStage::Incrementing => {
                self.clients[client].count.in_doubt = true;
                self.finish_op(client);
            }
        }
    }

    /// Judges client `client`'s field as a serial read found it, settling an increment in
    /// doubt. Whether the client's count is settled (a violation leaves it as it was).
    fn judge_field(&mut self, client: usize, found: u32) -> bool {
        let count = &mut self.clients[client].count;
        let ok = if count.in_doubt {
            found == count.confirmed || found == count.confirmed + 1
        } else {
            found == count.confirmed
        };
        if !ok {
            self.report.violations.push(Violation::CounterWrong {
                client,
                confirmed: count.confirmed,
                in_doubt: count.in_doubt,
                found,
                read_at: self.now,
            });
            return false;
        }
        if count.in_doubt {
            self.report.counter_resolved += 1;
        }
        count.confirmed = found;
        count.in_doubt = false;
        true
    }

    /// After healing: a serial read of the counter (retried until answered), and every
    /// client's field judged.
    pub(super) fn read_counter(&mut self, tries: u32) {
        if self
            .clients
            .iter()
            .all(|c| c.count.confirmed == 0 && !c.count.in_doubt)
        {
            return;
        }
        self.counter_final = None;
        for _ in 0..tries {
            let op = self.start_counter_read(0, true);
            let deadline = self.now + 10_000;
            while self.now < deadline
                && matches!(self.clients[0].state, ClientState::Counter { op: o, .. } if o == op)
            {
                if !self.step(deadline) {
                    break;
                }
            }
            self.clients[0].state = ClientState::Idle;
            if self.counter_final.is_some() {
                break;
            }
        }
        let Some(fields) = self.counter_final.take() else {
            self.report.violations.push(Violation::NotLinearizable {
                key: u64::MAX,
                detail: "the final serial read of the counter never succeeded".into(),
            });
            return;
        };
        for (client, found) in fields.into_iter().enumerate().take(self.clients.len()) {
            self.judge_field(client, found);
        }
    }
}
