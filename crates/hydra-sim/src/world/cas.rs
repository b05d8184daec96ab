//! Compare-and-set clients: on a few keys of their own (`cas0`, `cas1`, in the strict `lww`
//! bucket, so they contend), a client reads serially, then writes a unique value if the key
//! still holds what it read (`SET ... IFEQ`, or `SET NX` when it read nothing). Checker (h)
//! judges the history: the applied writes must form one chain from absent, in an order real
//! time allows, and every value read must have been current during its read.
//!
//! The mixing run (`SimConfig::plain_cas_writes`) sends some of those writes as plain ones
//! (a blind write of the new value after the serial read): the bucket is
//! `cas = conditional_only`, so replicas holding the key's Paxos state refuse them, and
//! checker (h) counts what gets through anyway as violations (refusals are best effort).

use super::World;
use super::clients::ClientState;
use crate::workload::{CasKind, CasOp, CasResult, decode_register, encode_register};
use hydra_core::ids::Timestamp;
use hydra_core::key::ObjectKey;
use hydra_core::message::{
    CasAction, CasRequest, ClientError, ClientRequest, ClientResponse, ErrorCode, WriteRequest,
};
use hydra_core::paxos::Condition;
use rand::Rng;

/// Keys the compare-and-set clients share (few, so their requests contend).
pub(super) const CAS_KEYS: u64 = 2;
/// Share of client operations that are compare-and-set ones.
pub(super) const CAS_SHARE: f64 = 0.1;

impl World {
    pub(super) fn cas_key(&self, key: u64) -> ObjectKey {
        ObjectKey::new(
            self.buckets[super::cas_bucket(&self.config)].clone(),
            format!("cas{key}").as_bytes(),
        )
        .expect("valid key")
    }

    /// A serial read of `key` (`is_final`: the read after healing).
    pub(super) fn start_cas_read(&mut self, client: usize, key: u64, is_final: bool) -> u64 {
        let request = ClientRequest::cas(CasRequest {
            key: self.cas_key(key),
            condition: Condition::Always,
            action: CasAction::Read,
            timeout_ms: None,
            supersedes: None,
        });
        self.start_cas(client, key, CasKind::Read, request, is_final)
    }

    /// Writes a new unique value to `key` if it still holds `expected`.
    fn start_cas_write(&mut self, client: usize, key: u64, expected: Option<u64>) {
        let new = self.next_element;
        self.next_element += 1;
        let condition = match expected {
            Some(v) => Condition::ValueIs(encode_register(v)),
            None => Condition::Absent,
        };
        if self.config.plain_cas_writes > 0.0 && self.rng.random_bool(self.config.plain_cas_writes)
        {
            self.report.plain_cas_writes += 1;
            let request = ClientRequest::put(WriteRequest {
                key: self.cas_key(key),
                value: Some(encode_register(new)),
                content_type: "application/octet-stream".into(),
                context: None,
                w: None,
                timeout_ms: None,
                sloppy: None,
                expiry: None,
                on_version: None,
                collection: None,
            });
            let kind = CasKind::Write { expected, new };
            self.start_cas(client, key, kind, request, false);
            if let Some(op) = self.history.cas_ops.last_mut() {
                op.plain = true;
            }
            return;
        }
        let request = ClientRequest::cas(CasRequest {
            key: self.cas_key(key),
            condition,
            action: CasAction::Write {
                value: encode_register(new),
                content_type: "application/octet-stream".into(),
                expiry: None,
                keep_ttl: false,
            },
            timeout_ms: None,
            supersedes: None,
        });
        self.start_cas(
            client,
            key,
            CasKind::Write { expected, new },
            request,
            false,
        );
    }

    fn start_cas(
        &mut self,
        client: usize,
        key: u64,
        kind: CasKind,
        request: ClientRequest,
        is_final: bool,
    ) -> u64 {
        let op = self.next_op(client);
        self.history.cas_ops.push(CasOp {
            client,
            key,
            kind,
            invoked: Timestamp(self.now),
            completed: None,
            is_final,
            plain: false,
        });
        let idx = self.history.cas_ops.len() - 1;
        self.clients[client].state = ClientState::Cas { idx, op };
        self.submit(client, op, request);
        op
    }

    pub(super) fn on_cas_answer(
        &mut self,
        client: usize,
        idx: usize,
        result: Result<ClientResponse, ClientError>,
    ) {
        let result = match result {
            Ok(ClientResponse::Cas { applied: true, .. }) => CasResult::Applied,
            Ok(ClientResponse::Cas { siblings, .. }) => {
                CasResult::Current(decode_register(&siblings))
            }
            // A plain write of the mixing run.
            Ok(ClientResponse::Written { .. }) => {
                self.report.plain_cas_acked += 1;
                CasResult::Applied
            }
            Ok(_) => CasResult::Unknown,
            Err(e) if self.history.cas_ops[idx].plain => {
                if e.code == ErrorCode::CasManagedKey {
                    self.report.plain_cas_refused += 1;
                }
                match crate::workload::Completion::of_write_error(&e) {
                    crate::workload::Completion::Fail => CasResult::Fail,
                    _ => CasResult::Unknown,
                }
            }
            Err(e) => of_error(&e),
        };
        self.complete_cas(idx, result);
        let op = &self.history.cas_ops[idx];
        if op.is_final {
            self.clients[client].state = ClientState::Idle;
            return;
        }
        match (op.kind, result) {
            (CasKind::Read, CasResult::Current(v)) => {
                let key = op.key;
                self.start_cas_write(client, key, v)
            }
            _ => self.finish_op(client),
        }
    }

    pub(super) fn on_cas_timeout(&mut self, client: usize, idx: usize) {
        self.complete_cas(idx, CasResult::Unknown);
        if self.history.cas_ops[idx].is_final {
            self.clients[client].state = ClientState::Idle;
        } else {
            self.finish_op(client);
        }
    }

    fn complete_cas(&mut self, idx: usize, result: CasResult) {
        self.history.cas_ops[idx].completed = Some((Timestamp(self.now), result));
        self.report.ops += 1;
        if let CasKind::Write { .. } = self.history.cas_ops[idx].kind {
            match result {
                CasResult::Applied => self.report.acked_writes += 1,
                CasResult::Unknown => self.report.uncertain_writes += 1,
                CasResult::Fail | CasResult::Current(_) => self.report.failed_writes += 1,
            }
        }
    }

    /// After healing: a serial read of every compare-and-set key, retried until answered.
    pub(super) fn read_cas_keys(&mut self, tries: u32) {
        for key in 0..CAS_KEYS {
            let mut done = false;
            for _ in 0..tries {
                let op = self.start_cas_read(0, key, true);
                let deadline = self.now + 10_000;
                while self.now < deadline
                    && matches!(self.clients[0].state, ClientState::Cas { op: o, .. } if o == op)
                {
                    if !self.step(deadline) {
                        break;
                    }
                }
                self.clients[0].state = ClientState::Idle;
                let last = self.history.cas_ops.last().expect("just pushed");
                if matches!(last.completed, Some((_, CasResult::Current(_)))) {
                    done = true;
                    break;
                }
                // An unanswered final read is no operation of the history.
                self.history.cas_ops.pop();
            }
            if !done {
                self.report
                    .violations
                    .push(crate::check::Violation::NotLinearizable {
                        key,
                        detail: "the final serial read never succeeded".into(),
                    });
            }
        }
    }
}

/// How a compare-and-set error counts: only what certainly proposed nothing is `Fail`.
fn of_error(e: &ClientError) -> CasResult {
    match e.code {
        ErrorCode::OutcomeUnknown | ErrorCode::StoreFailed | ErrorCode::Internal => {
            CasResult::Unknown
        }
        // A deadline with nothing of this request proposed, contention, or a refusal.
        _ => CasResult::Fail,
    }
}
