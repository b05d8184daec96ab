//! Checker (k): a truncation with a node down. After the final reads and listings, with the
//! network healed: one node crashes, a bucket is truncated through another (the answer must
//! say the crashed node did not confirm), the node restarts with its older values; after a
//! settle, no store holds an object of the bucket (the purge ran everywhere and nothing came
//! back through repair, hints or anti-entropy), and a listing through every node is empty.

use super::*;
use hydra_core::message::{ListCursor, ListRequest};

impl World {
    /// Sends `request` to `node` for client 0 and runs the world until it is answered (or
    /// 15 s pass).
    pub(super) fn ask(
        &mut self,
        node: usize,
        request: ClientRequest,
    ) -> Option<Result<ClientResponse, ClientError>> {
        let op = self.next_op(0);
        self.clients[0].state = ClientState::Admin { op };
        self.admin_answer = None;
        self.schedule(
            0,
            Event::Request {
                client: 0,
                op,
                node,
                request,
            },
        );
        self.schedule(12_000, Event::ClientTimeout { client: 0, op });
        let deadline = self.now + 15_000;
        while self.now < deadline && self.admin_answer.is_none() {
            if !self.step(deadline) {
                break;
            }
        }
        self.clients[0].state = ClientState::Idle;
        self.admin_answer.take()
    }

    /// The objects of `bucket` the stores hold, as (node, key).
    fn stored_in(&self, bucket: &BucketName) -> Vec<(usize, String)> {
        let mut found = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            for (skey, _) in node.store.entries() {
                if let Ok((partition, key)) = ObjectKey::from_storage_key(&skey)
                    && partition.0 < self.layout.partition_count()
                    && key.bucket == *bucket
                {
                    found.push((i, String::from_utf8_lossy(key.key()).into_owned()));
                }
            }
        }
        found
    }

    pub(super) fn check_truncation(&mut self) {
        // The checkers of the run judge the replicas as they were before this.
        if self.before_final_reads.is_none() {
            self.before_final_reads = Some(self.replica_objects());
        }
        // A `siblings` bucket in even seeds, an `lww` one in odd seeds (both sloppy).
        let index = if self.config.seed.is_multiple_of(2) {
            1
        } else {
            3
        };
        let bucket = self.buckets[index].clone();
        let violation = |w: &mut World, detail: String| {
            w.report.violations.push(Violation::TruncationWrong {
                bucket: bucket.to_string(),
                detail,
            })
        };
        let nodes = self.nodes.len();
        let down = self.rng.random_range(0..nodes);
        let at = (down + 1 + self.rng.random_range(0..nodes - 1)) % nodes;
        self.crash(down);
        let settle = self.now + 5_000;
        self.run_until(settle);
        let request = ClientRequest::Truncate {
            bucket: bucket.clone(),
            timeout_ms: None,
        };
        match self.ask(at, request) {
            Some(Err(e)) if e.code == ErrorCode::QuorumNotReached => {}
            other => violation(
                self,
                format!(
                    "with node {} down the truncation answered {other:?}",
                    down + 1
                ),
            ),
        }
        self.restart(down);
        let settle = self.now + 20_000;
        self.run_until(settle);
        let left = self.stored_in(&bucket);
        if !left.is_empty() {
            violation(
                self,
                format!(
                    "{} objects of the bucket are still stored, e.g. {:?}",
                    left.len(),
                    &left[..left.len().min(3)]
                ),
            );
        }
        for node in 0..nodes {
            let request = ClientRequest::List(ListRequest {
                bucket: bucket.clone(),
                cursor: ListCursor::default(),
                limit: 1_000,
                r: Some(Consistency::All),
                timeout_ms: None,
            });
            // One page per partition would be needed for a full listing; the store check
            // above covers the rest: here, the first partition through every node.
            match self.ask(node, request) {
                Some(Ok(ClientResponse::Keys { keys, .. })) if keys.is_empty() => {}
                other => violation(
                    self,
                    format!("a listing through node {} answered {other:?}", node + 1),
                ),
            }
        }
    }
}
