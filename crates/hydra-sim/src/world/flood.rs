//! Sibling floods past the limits (invariant 6, checker (f)): while the cluster is split, each
//! side takes a burst of blind writes to one key of a `siblings` bucket, more than
//! `SIBLINGS_MAX` together. When the sides meet, replicas' merges must stay within the
//! limits (the union is never stored), the key must stay readable (a read returns the union
//! of what it asked) and one write with that read's context must resolve it everywhere.

use super::{FINAL_READ_TRIES, World};
use crate::check::Violation;
use hydra_core::bucket::Consistency;
use hydra_core::limits::SIBLINGS_MAX;
use hydra_core::message::{ClientRequest, ClientResponse, WriteRequest, decode_object};
use rand::Rng;

/// The flooded key: `k1099511627777`, in the sloppy `siblings` bucket (so each side of a
/// split takes its writes). Outside the workload's key range.
pub const FLOOD_KEY: u64 = (1 << 40) | 1;
/// The client id of flood writes and of the final check's requests: their answers go to
/// [`World::flood_answers`], not to a workload client.
pub const FLOOD_CLIENT: usize = usize::MAX;
/// Blind writes one side of a split sends in one flood, at most.
const FLOOD_WRITES_MAX: u64 = 110;

impl World {
    /// At a split: half the time, each side's node takes a burst of blind writes of the
    /// flood key (answers ignored: past the limit the coordinator refuses them).
    pub(super) fn maybe_flood(&mut self) {
        if !self.flood_rng.random_bool(0.5) {
            return;
        }
        let n = self.nodes.len();
        for side in 0..2u8 {
            let members: Vec<usize> = (0..n).filter(|i| self.groups[*i] == side).collect();
            if members.is_empty() {
                continue;
            }
            let node = members[self.flood_rng.random_range(0..members.len())];
            let count = self.flood_rng.random_range(40..=FLOOD_WRITES_MAX);
            for i in 0..count {
                self.flood_op += 1;
                let request = ClientRequest::put(WriteRequest {
                    key: self.object_key(FLOOD_KEY),
                    value: Some(format!("f{}", self.flood_op).into_bytes()),
                    content_type: "text/plain".into(),
                    context: None,
                    w: None,
                    timeout_ms: None,
                    sloppy: None,
                    expiry: None,
                    on_version: None,
                    collection: None,
                });
                let op = self.flood_op;
                self.schedule(
                    i,
                    super::Event::Request {
                        client: FLOOD_CLIENT,
                        op,
                        node,
                        request,
                    },
                );
            }
            self.report.flood_writes += count;
        }
    }

    /// Sends `request` to node 0 and runs the world until it is answered (every node is up
    /// and healed by now), at most 10 s.
    fn flood_request(&mut self, request: ClientRequest) -> Option<Result<ClientResponse, String>> {
        self.flood_op += 1;
        let op = self.flood_op;
        self.flood_waiting = Some(op);
        self.schedule(
            0,
            super::Event::Request {
                client: FLOOD_CLIENT,
                op,
                node: 0,
                request,
            },
        );
        let deadline = self.now + 10_000;
        while self.now < deadline && !self.flood_answers.contains_key(&op) {
            if !self.step(deadline) {
                break;
            }
        }
        self.flood_waiting = None;
        self.flood_answers
            .remove(&op)
            .map(|r| r.map_err(|e| format!("{:?}: {}", e.code, e.message)))
    }

    fn flood_read(
        &mut self,
    ) -> Result<(usize, Option<hydra_core::version::VersionVector>), String> {
        let mut last = String::from("no answer");
        for _ in 0..FINAL_READ_TRIES {
            let request = ClientRequest::Get {
                key: self.object_key(FLOOD_KEY),
                r: Some(Consistency::All),
                timeout_ms: None,
                sloppy: None,
            };
            match self.flood_request(request) {
                Some(Ok(ClientResponse::Read {
                    siblings, context, ..
                })) => {
                    let live = siblings.iter().filter(|s| !s.tombstone).count();
                    return Ok((live, Some(context)));
                }
                Some(Ok(other)) => last = format!("unexpected answer {other:?}"),
                Some(Err(e)) => last = e,
                None => last = "no answer in 10 s".into(),
            }
        }
        Err(last)
    }

    /// After healing: every replica's stored flood object is within the limits, a read at
    /// `r = all` succeeds, and one write with its context leaves exactly one value.
    pub(super) fn check_flood(&mut self) {
        if self.report.flood_writes == 0 {
            return;
        }
        for (node, bytes) in self.stored_objects(FLOOD_KEY) {
            let Some(bytes) = bytes else { continue };
            match decode_object(&bytes) {
                Ok(object) if object.all_siblings().len() > SIBLINGS_MAX => {
                    self.report.violations.push(Violation::OverLimit {
                        key: FLOOD_KEY,
                        node: node.0,
                        siblings: object.all_siblings().len(),
                    })
                }
                Ok(_) => {}
                Err(e) => self.report.violations.push(Violation::KeyBricked {
                    key: FLOOD_KEY,
                    detail: format!("node {node} stores an object that does not decode: {e}"),
                }),
            }
        }
        let context = match self.flood_read() {
            Ok((live, context)) => {
                self.report.max_flood_siblings = live;
                context
            }
            Err(e) => {
                return self.report.violations.push(Violation::KeyBricked {
                    key: FLOOD_KEY,
                    detail: format!("the final r=all read failed: {e}"),
                });
            }
        };
        // Retried as the final reads are (a node may still be verifying its clock), each time
        // with a fresh read's context (a failed write may have left its value behind).
        let mut context = context;
        let mut written = Err("no answer".to_string());
        for _ in 0..FINAL_READ_TRIES {
            let resolve = ClientRequest::put(WriteRequest {
                key: self.object_key(FLOOD_KEY),
                value: Some(b"resolved".to_vec()),
                content_type: "text/plain".into(),
                context: context.clone(),
                w: Some(Consistency::All),
                timeout_ms: None,
                sloppy: None,
                expiry: None,
                on_version: None,
                collection: None,
            });
            written = match self.flood_request(resolve) {
                Some(Ok(_)) => Ok(()),
                Some(Err(e)) => Err(e),
                None => Err("no answer in 10 s".into()),
            };
            if written.is_ok() {
                break;
            }
            match self.flood_read() {
                Ok((_, fresh)) => context = fresh,
                Err(e) => written = Err(format!("{e} (reading again after a failed write)")),
            }
        }
        let detail = match written {
            Ok(()) => match self.flood_read() {
                Ok((1, _)) => return,
                Ok((live, _)) => format!("{live} values after a write with the read's context"),
                Err(e) => format!("the read after the resolving write failed: {e}"),
            },
            Err(e) => format!("the write with the read's context failed: {e}"),
        };
        self.report.violations.push(Violation::KeyBricked {
            key: FLOOD_KEY,
            detail,
        });
    }
}
