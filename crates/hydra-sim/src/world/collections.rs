//! Checker (l): hashes and sets. Clients update a few collection keys (two hashes, two sets,
//! in a sloppy `lww` bucket truncated before the run in half the seeds) through random nodes under the full fault mix, as the Redis
//! front end does: a read, then one update naming the dots the read showed for the element
//! it replaces (`HSET`, `SADD`) or removes (`HDEL`, `SREM`).
//!
//! ```text
//! read ─▶ element e present? ── half the time: remove e (its dots as read)
//!                           └── else: add e (a hash field gets a unique value), replacing
//!                                     the dots the read showed for it
//! ```
//!
//! A quarter of the operations are exact increments (`HINCRBY`, `resp/collections.rs`) of
//! field `n` of `hash:n`: a read, then a compare-and-set on condition that the field still
//! has the dots read, replacing them with the count read plus one. Acknowledged increments
//! must each have written a different count, and the final count must lie between the
//! acknowledged ones and those plus the ones whose outcome is unknown.
//!
//! After healing, each key is read at `all` (retried until answered). An element must be there
//! when some add of it was acknowledged and every remove of it read the key before that add
//! was invoked (no remove can have seen the add's dot: add wins); a hash field's value must
//! be one some add of it wrote. Then the key's primaries must hold equal copies.

use super::World;
use super::clients::ClientState;
use crate::check::Violation;
use crate::workload::Completion;
use hydra_core::collection::{Collection, CollectionKind, CollectionUpdate};
use hydra_core::key::ObjectKey;
use hydra_core::message::{
    CasAction, CasRequest, ClientError, ClientRequest, ClientResponse, ErrorCode, WriteRequest,
};
use hydra_core::paxos::Condition;
use hydra_core::store::Store;
use rand::Rng;

/// Share of the clients' operations that are hash and set updates.
pub(super) const COLLECTION_SHARE: f64 = 0.15;
/// The collection keys and their types.
const KEYS: [(&str, CollectionKind); 4] = [
    ("hash:0", CollectionKind::Hash),
    ("hash:1", CollectionKind::Hash),
    ("set:0", CollectionKind::Set),
    ("set:1", CollectionKind::Set),
];
/// The key the increments work on (past the end of `KEYS`), and its field.
const COUNTER: usize = KEYS.len();
const COUNTER_FIELD: &[u8] = b"n";
/// Share of the collection operations that are increments.
const INCREMENT_SHARE: f64 = 0.25;
/// Elements each key draws from (few, so adds and removes of one element race).
const ELEMENTS: u64 = 6;
/// The `collections` bucket (see `BUCKETS`).
const BUCKET: usize = 4;

/// Where a client's collection operation is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum CollectionStage {
    /// The read before an update (`is_final`: the read after healing).
    Reading { key: usize, is_final: bool },
    /// The update (`World::collection_ops[idx]`).
    Updating { idx: usize },
    /// An increment that writes this count.
    Incrementing { count: u64 },
}

/// The increments of `hash:n`: the counts acknowledged ones wrote, and how many may or may
/// not have applied.
#[derive(Clone, Debug, Default)]
pub(super) struct Increments {
    acked: Vec<u64>,
    unknown: u64,
}

/// One update and what became of it.
#[derive(Clone, Debug)]
pub(super) struct CollectionOp {
    key: usize,
    element: u64,
    /// The value an add wrote (a hash field's), or `None` for a remove.
    added: Option<u64>,
    /// When the read it follows was answered (what a remove can have seen ends there), and
    /// when the update was sent.
    read_done: u64,
    invoked: u64,
    completed: Option<Completion>,
}

fn element_name(e: u64) -> Vec<u8> {
    format!("e{e}").into_bytes()
}

impl World {
    fn collection_key(&self, key: usize) -> ObjectKey {
        let name = KEYS.get(key).map_or("hash:n", |(name, _)| name);
        ObjectKey::new(self.buckets[BUCKET].clone(), name.as_bytes()).expect("valid key")
    }

    pub(super) fn start_collection_read(
        &mut self,
        client: usize,
        key: usize,
        is_final: bool,
    ) -> u64 {
        let request = ClientRequest::Get {
            key: self.collection_key(key),
            r: is_final.then_some(hydra_core::bucket::Consistency::All),
            timeout_ms: None,
            sloppy: None,
        };
        let op = self.next_op(client);
        self.clients[client].state = ClientState::Collection {
            op,
            stage: CollectionStage::Reading { key, is_final },
        };
        self.submit(client, op, request);
        op
    }

    /// Truncates the collections bucket before the run (all nodes up): a node that merges
    /// an update against the mark must keep its removes (an empty collection is a delete).
    pub(super) fn truncate_collections_first(&mut self) {
        // Nodes coordinate nothing until heartbeats have checked their clocks.
        let mut answer = None;
        for _ in 0..10 {
            let settle = self.now + 1_000;
            self.run_until(settle);
            let request = ClientRequest::Truncate {
                bucket: self.buckets[BUCKET].clone(),
                timeout_ms: None,
            };
            answer = self.ask(0, request);
            if matches!(answer, Some(Ok(_))) {
                break;
            }
        }
        if !matches!(answer, Some(Ok(_))) {
            self.report.violations.push(Violation::TruncationWrong {
                bucket: self.buckets[BUCKET].to_string(),
                detail: "a truncation with every node up was not confirmed".into(),
            });
        }
    }

    /// A client's next operation: a read of a random collection key, or of the counter.
    pub(super) fn start_collection_op(&mut self, client: usize) {
        let key = if self.rng.random_bool(INCREMENT_SHARE) {
            COUNTER
        } else {
            self.rng.random_range(0..KEYS.len())
        };
        self.start_collection_read(client, key, false);
    }

    pub(super) fn on_collection_answer(
        &mut self,
        client: usize,
        stage: CollectionStage,
        result: Result<ClientResponse, ClientError>,
    ) {
        match stage {
            CollectionStage::Reading { key, is_final } => {
                let Ok(ClientResponse::Read { collection, .. }) = result else {
                    if is_final {
                        self.clients[client].state = ClientState::Idle;
                    } else {
                        self.finish_op(client);
                    }
                    return;
                };
                let collection = collection.map(|c| *c);
                if is_final {
                    self.collection_final = Some(collection);
                    self.clients[client].state = ClientState::Idle;
                    return;
                }
                if key == COUNTER {
                    return self.send_increment(client, collection);
                }
                self.send_update(client, key, collection);
            }
            CollectionStage::Incrementing { count } => {
                match result {
                    Ok(ClientResponse::Cas { applied: true, .. }) => {
                        self.collection_increments.acked.push(count);
                        self.report.collection_acked += 1;
                        self.report.increments_acked += 1;
                    }
                    Ok(ClientResponse::Cas { applied: false, .. }) => {}
                    Err(e)
                        if !matches!(
                            e.code,
                            ErrorCode::OutcomeUnknown
                                | ErrorCode::StoreFailed
                                | ErrorCode::Internal
                        ) => {}
                    _ => self.collection_increments.unknown += 1,
                }
                self.finish_op(client);
            }
            CollectionStage::Updating { idx } => {
                let completion = match &result {
                    Ok(_) => Completion::Ok,
                    Err(e) => Completion::of_write_error(e),
                };
                self.collection_ops[idx].completed = Some(completion);
                if completion == Completion::Ok {
                    self.report.collection_acked += 1;
                }
                self.finish_op(client);
            }
        }
    }

    pub(super) fn on_collection_timeout(&mut self, client: usize, stage: CollectionStage) {
        match stage {
            CollectionStage::Reading { is_final: true, .. } => {
                self.clients[client].state = ClientState::Idle;
            }
            CollectionStage::Reading { .. } => self.finish_op(client),
            CollectionStage::Updating { idx } => {
                self.collection_ops[idx].completed = Some(Completion::Info);
                self.finish_op(client);
            }
            CollectionStage::Incrementing { .. } => {
                self.collection_increments.unknown += 1;
                self.finish_op(client);
            }
        }
    }

    /// After a read of the counter: the count read plus one, on condition that the field
    /// still has the dots read.
    fn send_increment(&mut self, client: usize, read: Option<Collection>) {
        let seen = read.as_ref().and_then(|c| c.get(COUNTER_FIELD, self.now));
        let (dots, count) = seen.map_or((Vec::new(), 0), |(dots, v)| (dots, decode_count(v)));
        let count = count + 1;
        let update = CollectionUpdate {
            kind: CollectionKind::Hash,
            removes: if dots.is_empty() {
                Vec::new()
            } else {
                vec![(COUNTER_FIELD.to_vec(), dots.clone())]
            },
            adds: vec![(COUNTER_FIELD.to_vec(), count.to_le_bytes().to_vec())],
            expiry: None,
        };
        let request = ClientRequest::cas(CasRequest {
            key: self.collection_key(COUNTER),
            condition: Condition::Elements(vec![(COUNTER_FIELD.to_vec(), dots)]),
            action: CasAction::Collection(update),
            timeout_ms: None,
            supersedes: None,
        });
        let op = self.next_op(client);
        self.clients[client].state = ClientState::Collection {
            op,
            stage: CollectionStage::Incrementing { count },
        };
        self.submit(client, op, request);
    }

    /// The final count against the increments: each acknowledged one wrote its own count,
    /// and the final one covers them all and at most the unknown ones more.
    fn judge_counter(&mut self, found: Option<&Collection>) {
        let fin = found
            .and_then(|c| c.get(COUNTER_FIELD, self.now))
            .map_or(0, |(_, v)| decode_count(v));
        let mut acked = self.collection_increments.acked.clone();
        acked.sort_unstable();
        let unknown = self.collection_increments.unknown;
        let n = acked.len() as u64;
        let detail = if let Some(w) = acked.windows(2).find(|w| w[0] == w[1]) {
            Some(format!(
                "two acknowledged increments both wrote the count {}",
                w[0]
            ))
        } else if fin < n || fin > n + unknown || acked.last().is_some_and(|m| *m > fin) {
            Some(format!(
                "the final count is {fin}: {n} increments acknowledged (the highest wrote {}), {unknown} unknown",
                acked.last().copied().unwrap_or(0)
            ))
        } else {
            None
        };
        if let Some(detail) = detail {
            self.collection_violation(COUNTER, detail);
        }
    }

    /// After a read: removes a present element half the time, else adds one.
    fn send_update(&mut self, client: usize, key: usize, read: Option<Collection>) {
        let kind = KEYS[key].1;
        let element = self.rng.random_range(0..ELEMENTS);
        let name = element_name(element);
        let seen = read.as_ref().and_then(|c| c.get(&name, self.now));
        let mut update = CollectionUpdate {
            kind,
            ..Default::default()
        };
        if let Some((dots, _)) = &seen {
            update.removes.push((name.clone(), dots.clone()));
        }
        let add = seen.is_none() || self.rng.random_bool(0.5);
        let added = add.then(|| {
            self.collection_values += 1;
            self.collection_values
        });
        if let Some(v) = added {
            let value = match kind {
                CollectionKind::Hash => v.to_le_bytes().to_vec(),
                CollectionKind::Set => Vec::new(),
            };
            update.adds.push((name, value));
        }
        let idx = self.collection_ops.len();
        self.collection_ops.push(CollectionOp {
            key,
            element,
            added,
            read_done: self.now,
            invoked: self.now,
            completed: None,
        });
        let request = ClientRequest::put(WriteRequest {
            key: self.collection_key(key),
            value: None,
            content_type: Default::default(),
            context: None,
            w: None,
            timeout_ms: None,
            sloppy: None,
            expiry: None,
            on_version: None,
            collection: Some(update),
        });
        let op = self.next_op(client);
        self.clients[client].state = ClientState::Collection {
            op,
            stage: CollectionStage::Updating { idx },
        };
        self.submit(client, op, request);
    }

    /// After healing: each key read at `all` and judged, then its primaries' copies compared.
    pub(super) fn check_collections(&mut self, tries: u32) {
        let increments = &self.collection_increments;
        if self.collection_ops.is_empty() && increments.acked.is_empty() && increments.unknown == 0
        {
            return;
        }
        for key in 0..=COUNTER {
            self.collection_final = None;
            for _ in 0..tries {
                let op = self.start_collection_read(0, key, true);
                let deadline = self.now + 10_000;
                while self.now < deadline
                    && matches!(self.clients[0].state, ClientState::Collection { op: o, .. } if o == op)
                {
                    if !self.step(deadline) {
                        break;
                    }
                }
                self.clients[0].state = ClientState::Idle;
                if self.collection_final.is_some() {
                    break;
                }
            }
            let Some(found) = self.collection_final.take() else {
                self.collection_violation(key, "the final read never succeeded".into());
                continue;
            };
            if key == COUNTER {
                self.judge_counter(found.as_ref());
            } else {
                self.judge_collection(key, found.as_ref());
            }
        }
        let settle = self.now + 2_000;
        self.run_until(settle);
        for key in 0..=COUNTER {
            self.check_collection_copies(key);
        }
    }

    fn judge_collection(&mut self, key: usize, found: Option<&Collection>) {
        for element in 0..ELEMENTS {
            let ops: Vec<&CollectionOp> = self
                .collection_ops
                .iter()
                .filter(|o| o.key == key && o.element == element)
                .collect();
            let last_remove_read = ops
                .iter()
                .filter(|o| o.added.is_none())
                .map(|o| o.read_done)
                .max();
            // An acknowledged add no remove can have seen.
            let must = ops.iter().find(|o| {
                o.added.is_some()
                    && o.completed == Some(Completion::Ok)
                    && last_remove_read.is_none_or(|r| r < o.invoked)
            });
            let got = found.and_then(|c| c.get(&element_name(element), self.now));
            let detail = match (&got, must) {
                (None, Some(add)) => Some(format!(
                    "element e{element} is missing: its add invoked at {} ms was acknowledged, and every remove of it read before",
                    add.invoked
                )),
                (Some((_, value)), _) if KEYS[key].1 == CollectionKind::Hash => {
                    let written = ops
                        .iter()
                        .filter_map(|o| o.added)
                        .any(|v| v.to_le_bytes().as_slice() == *value);
                    (!written).then(|| format!("field e{element} holds a value no add wrote"))
                }
                _ => None,
            };
            if let Some(detail) = detail {
                self.collection_violation(key, detail);
            }
        }
    }

    /// The key's primaries hold equal copies (a copy without elements counts as none).
    fn check_collection_copies(&mut self, key: usize) {
        let ok = self.collection_key(key);
        let partition = self.layout.partition_for(ok.bucket.as_str(), ok.key());
        let skey = ok.storage_key(partition);
        let holders = self.layout.preference_list(partition, 3).to_vec();
        let copies: Vec<Option<hydra_core::version::Object>> = holders
            .iter()
            .map(|id| {
                let node = &self.nodes[(id.0 - 1) as usize];
                node.store
                    .get(&skey)
                    .ok()
                    .flatten()
                    .and_then(|b| hydra_core::message::decode_object(&b).ok())
                    .filter(|o| !o.is_tombstone())
            })
            .collect();
        if let Some(i) = copies.iter().position(|c| *c != copies[0]) {
            let detail = format!(
                "primaries {} and {} hold different copies after healing: {:?} and {:?}",
                holders[0], holders[i], copies[0], copies[i]
            );
            self.collection_violation(key, detail);
        }
    }

    fn collection_violation(&mut self, key: usize, detail: String) {
        let key = self.collection_key(key);
        self.report.violations.push(Violation::CollectionWrong {
            key: String::from_utf8_lossy(key.key()).into_owned(),
            detail,
        });
    }
}

fn decode_count(v: &[u8]) -> u64 {
    v.try_into().map_or(0, u64::from_le_bytes)
}
