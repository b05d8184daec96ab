//! Versions: dotted version vector sets (DVVSet) for `siblings` buckets, and last-write-wins
//! registers for `lww` buckets.
//!
//! Source: Preguiça, Baquero, Almeida, Fonte, Gonçalves, "Dotted Version Vectors: Logical
//! Clocks for Optimistic Replication" (2010/2012), and Almeida et al., "Scalable and Accurate
//! Causality Tracking for Eventually Consistent Stores" (2014), as Riak 2.x's `dvvset`.
//!
//! A [`Dvv`] keeps, per coordinating node, a counter `n` and the values still alive among that
//! node's events: `values[i]` was written by event (dot) `(node, n - i)`. Every dot
//! `(node, 1..=n)` is in the object's causal history; the ones without a value were superseded.
//!
//! ```text
//! client GET ──> context {a:2, b:1}           (join: the counters only)
//! client PUT(ctx, v) at coordinator a:
//!     discard: drop values whose dot the context covers   {a:2 [], b:1 []}
//!     event:   a's counter + 1, v gets dot (a,3)            {a:3 [v], b:1 []}
//! replicas: sync(local, incoming) keeps a value unless the other side's history covers its dot
//!           without keeping it alive
//! ```
//!
//! Invariants: one dot names one value (the coordinator writes locally and durably before any
//! other node sees the dot, so a crash cannot make it reuse a counter); `sync` is commutative,
//! associative and idempotent (proptest below); entries are keyed by node id, so a vector never
//! has more entries than nodes that coordinated writes; a write with a read's context
//! supersedes exactly the values that read returned.
//!
//! `lww` buckets keep one [`LwwValue`]; merging keeps the larger `(timestamp, writer)`.
//! Objects of the two kinds never merge (a bucket's conflict mode is fixed at creation).

use crate::bugs::planted;
use crate::collection::Collection;
use crate::content_type::ContentType;
use crate::hlc::Hlc;
use crate::ids::NodeId;
use crate::limits::{CONTEXT_CHARS_MAX, SIBLINGS_MAX, VECTOR_ENTRIES_MAX};
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One stored value with its metadata. A tombstone is a value too (a causal delete).
#[derive(Clone, Debug, PartialEq, Hash, Eq, Serialize, Deserialize)]
pub struct Sibling {
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    pub content_type: ContentType,
    /// When the coordinator wrote it (HLC; shown as last-modified, orders `lww` writes).
    pub timestamp: Hlc,
    pub tombstone: bool,
    /// Wall-clock milliseconds after which the value reads as absent (a TTL), if any.
    pub expires_at: Option<u64>,
}

impl Sibling {
    pub fn value(value: Vec<u8>, content_type: impl Into<ContentType>, timestamp: Hlc) -> Sibling {
        Sibling {
            value,
            content_type: content_type.into(),
            timestamp,
            tombstone: false,
            expires_at: None,
        }
    }

    pub fn tombstone(timestamp: Hlc) -> Sibling {
        Sibling {
            value: Vec::new(),
            content_type: ContentType::default(),
            timestamp,
            tombstone: true,
            expires_at: None,
        }
    }
}

/// An event of a coordinating node: the `counter`-th write it coordinated for this key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Dot {
    pub node: NodeId,
    pub counter: u64,
}

/// A version vector: per node, how many of its events are known. A read's context is one.
#[derive(Clone, Debug, Default, PartialEq, Hash, Eq, Serialize, Deserialize)]
pub struct VersionVector(pub crate::counters::Counters);

impl VersionVector {
    pub fn get(&self, node: NodeId) -> u64 {
        self.0.get(&node).copied().unwrap_or(0)
    }

    /// Whether this vector has seen every event `other` has seen.
    pub fn descends(&self, other: &VersionVector) -> bool {
        other.0.iter().all(|(n, c)| self.get(*n) >= *c)
    }

    pub fn merge(&mut self, other: &VersionVector) {
        for (n, c) in &other.0 {
            let e = self.0.entry(*n).or_insert(0);
            *e = (*e).max(*c);
        }
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Hash, Eq, Serialize, Deserialize)]
struct DvvEntry {
    counter: u64,
    /// Newest first: `values[i]` has dot `counter - i`. Never longer than `counter`.
    values: Vec<Sibling>,
}

/// A dotted version vector set: the causal history of a key and its live siblings.
#[derive(Clone, Debug, Default, PartialEq, Hash, Eq, Serialize, Deserialize)]
pub struct Dvv {
    entries: BTreeMap<NodeId, DvvEntry>,
}

/// A write that would leave more siblings than [`SIBLINGS_MAX`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the write would leave {count} siblings, more than the limit of {max}; read the key and write with its context to resolve them"
)]
pub struct TooManySiblings {
    pub count: usize,
    pub max: usize,
}

impl Dvv {
    /// The context a read returns: the counters, without values.
    pub fn context(&self) -> VersionVector {
        VersionVector(self.entries.iter().map(|(n, e)| (*n, e.counter)).collect())
    }

    /// Live siblings with their dots, in a deterministic order (by node, newest first).
    pub fn siblings(&self) -> impl Iterator<Item = (Dot, &Sibling)> {
        self.entries.iter().flat_map(|(node, e)| {
            e.values.iter().enumerate().map(move |(i, s)| {
                (
                    Dot {
                        node: *node,
                        counter: e.counter - i as u64,
                    },
                    s,
                )
            })
        })
    }

    pub fn sibling_count(&self) -> usize {
        self.entries.values().map(|e| e.values.len()).sum()
    }

    /// No entry holds more values than its counter (so every value has a dot).
    pub fn is_well_formed(&self) -> bool {
        self.entries
            .values()
            .all(|e| e.values.len() as u64 <= e.counter)
    }

    /// Coordinator side of a write: drop what `context` saw, then add `value` as a new event of
    /// `node`. Returns the new object and the new value's dot.
    pub fn update(
        &self,
        context: &VersionVector,
        value: Sibling,
        node: NodeId,
    ) -> Result<(Dvv, Dot), TooManySiblings> {
        self.update_from(context, value, node, 0)
    }

    /// [`Dvv::update`] where `node`'s counter starts above `floor` when neither the object nor
    /// the context has an entry for `node`. A coordinator passes a clock reading: after a
    /// key's tombstone was reaped, its own earlier dots for the key are forgotten here but may
    /// survive in a tombstone some replica kept; starting above every counter it could have
    /// issued keeps "one dot names one value" true. (Only a fresh entry may jump: jumping an
    /// existing one would cover concurrent siblings the context did not see.)
    pub fn update_from(
        &self,
        context: &VersionVector,
        value: Sibling,
        node: NodeId,
        floor: u64,
    ) -> Result<(Dvv, Dot), TooManySiblings> {
        let mut entries = self.discard(context);
        // The floor applies whenever this object has no entry of `node`, even if the context
        // names it: an entry known only from a context has no values, so raising its counter
        // renumbers nothing, and the context may predate a reaped tombstone.
        let fresh = !self.entries.contains_key(&node);
        let own = entries.entry(node).or_default();
        if fresh {
            own.counter = own.counter.max(floor);
        }
        own.counter = own.counter.saturating_add(1);
        own.values.insert(0, value);
        let dot = Dot {
            node,
            counter: own.counter,
        };
        Ok((Dvv { entries }.within_limit()?, dot))
    }

    fn within_limit(self) -> Result<Dvv, TooManySiblings> {
        let count = self.sibling_count();
        if count > SIBLINGS_MAX {
            return Err(TooManySiblings {
                count,
                max: SIBLINGS_MAX,
            });
        }
        Ok(self)
    }

    /// The newest live value a compare-and-set commit wrote (an event of a Paxos writer,
    /// [`NodeId::paxos_writer`]), by its stamp, with its writer: the value of the key's
    /// last commit, if it is still there. Its stamp and writer identify the proposal (the
    /// writer's node never stamps twice alike).
    pub fn newest_commit(&self) -> Option<(NodeId, &Sibling)> {
        self.siblings()
            .filter(|(d, _)| d.node.is_paxos_writer())
            .map(|(d, s)| (d.node, s))
            .max_by_key(|(n, s)| (s.timestamp, *n))
    }

    /// What is left of this object after a write with `context`: the values it did not see,
    /// and every counter at least the context's.
    fn discard(&self, context: &VersionVector) -> BTreeMap<NodeId, DvvEntry> {
        let ignore = planted().ignore_context;
        let empty = VersionVector::default();
        let context = if ignore { &empty } else { context };
        let mut entries = BTreeMap::new();
        for (id, e) in &self.entries {
            let seen = context.get(*id);
            let keep = (e.counter.saturating_sub(seen) as usize).min(e.values.len());
            entries.insert(
                *id,
                DvvEntry {
                    counter: e.counter.max(seen),
                    values: e.values[..keep].to_vec(),
                },
            );
        }
        for (id, c) in &context.0 {
            entries.entry(*id).or_insert_with(|| DvvEntry {
                counter: *c,
                values: Vec::new(),
            });
        }
        entries
    }

    /// Replica side: the join of two objects. Keeps a value unless the other side's history
    /// covers its dot without keeping it alive.
    pub fn sync(&self, other: &Dvv) -> Dvv {
        let mut entries = self.entries.clone();
        for (id, theirs) in &other.entries {
            match entries.get_mut(id) {
                None => {
                    entries.insert(*id, theirs.clone());
                }
                Some(ours) => *ours = merge_entry(ours, theirs),
            }
        }
        Dvv { entries }
    }
}

fn merge_entry(a: &DvvEntry, b: &DvvEntry) -> DvvEntry {
    let (hi, lo) = if a.counter >= b.counter {
        (a, b)
    } else {
        (b, a)
    };
    // Oldest live dot of each side; `hi` keeps its dots newer than `lo`'s counter, and those
    // that are alive on both sides.
    let hi_oldest = hi.counter - hi.values.len() as u64;
    let lo_oldest = lo.counter - lo.values.len() as u64;
    let keep = if hi_oldest >= lo_oldest {
        hi.values.len()
    } else {
        (hi.counter - lo_oldest) as usize
    };
    let mut values = hi.values[..keep].to_vec();
    if planted().merge_drops_sibling && hi.counter != lo.counter {
        values.truncate(1);
    }
    DvvEntry {
        counter: hi.counter,
        values,
    }
}

/// The single value of an `lww` key and the node that coordinated it.
#[derive(Clone, Debug, PartialEq, Hash, Eq, Serialize, Deserialize)]
pub struct LwwValue {
    pub writer: NodeId,
    pub sibling: Sibling,
    /// When the version's TTL was last changed without a new write (`EXPIRE`, `PERSIST`;
    /// zero if never): of two copies of one version, the later change wins.
    pub touched: Hlc,
}

impl LwwValue {
    /// A new version.
    pub fn new(writer: NodeId, sibling: Sibling) -> LwwValue {
        LwwValue {
            writer,
            sibling,
            touched: Hlc::default(),
        }
    }

    /// The last-writer-wins order: timestamp, then writer (together the version's
    /// identity), then the TTL-change stamp, then a tombstone over a value (so a version's
    /// tombstone beats that version as of its stamp and anything older, never a later write),
    /// then the rest of the sibling, so that the order is total and the merge a join even for
    /// malformed input. An expiry tombstone keeps the stamp of the copy that expired, so a
    /// later TTL change (`EXPIRE`, `PERSIST`) the sweeping node missed still wins; a delete of
    /// the version (`GETDEL`) takes the largest stamp, so no TTL change brings it back.
    fn order(&self) -> (Hlc, NodeId, Hlc, bool, &[u8], &str, Option<u64>) {
        let s = &self.sibling;
        (
            s.timestamp,
            self.writer,
            self.touched,
            s.tombstone,
            &s.value,
            &s.content_type,
            s.expires_at,
        )
    }

    /// The tombstone of this copy of the version, as its expiry: it replaces this copy (and
    /// anything older), and loses to a later TTL change of the version and any later write.
    pub fn tombstone(&self) -> LwwValue {
        LwwValue {
            writer: self.writer,
            sibling: Sibling::tombstone(self.sibling.timestamp),
            touched: self.touched,
        }
    }

    /// The delete of version `(writer, timestamp)` (`GETDEL`): it replaces every copy of that
    /// version, however its TTL changed, and loses to any later write.
    pub fn version_delete(writer: NodeId, timestamp: Hlc) -> LwwValue {
        LwwValue {
            writer,
            sibling: Sibling::tombstone(timestamp),
            touched: Hlc(u64::MAX),
        }
    }
}

/// A stored object: what a replica keeps for one key.
#[derive(Clone, Debug, PartialEq, Hash, Eq, Serialize, Deserialize)]
pub enum Object {
    Siblings(Dvv),
    Lww(LwwValue),
    /// A hash or a set (`lww` buckets only; see [`crate::collection`]).
    Collection(Box<Collection>),
}

/// Two objects of different conflict modes met; the bucket's mode must have been changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cannot merge a siblings object with an lww object")]
pub struct ModeMismatch;

impl Object {
    /// The join of two replicas' objects (commutative, associative, idempotent).
    pub fn merge(&self, other: &Object) -> Result<Object, ModeMismatch> {
        match (self, other) {
            (Object::Siblings(a), Object::Siblings(b)) => Ok(Object::Siblings(a.sync(b))),
            (Object::Lww(a), Object::Lww(b)) => Ok(Object::Lww(if a.order() >= b.order() {
                a.clone()
            } else {
                b.clone()
            })),
            (Object::Collection(a), Object::Collection(b)) if a.kind == b.kind => {
                Ok(Object::Collection(Box::new(a.join(b))))
            }
            // A key whose type changed (a plain value over a hash, a set over a plain value):
            // the newer type wins whole, and a winning collection keeps a floor at the
            // loser's stamp, so an older copy of what it replaced never comes back through it.
            (Object::Collection(c), other @ (Object::Lww(_) | Object::Collection(_)))
            | (other @ Object::Lww(_), Object::Collection(c)) => {
                let (other_stamp, other_rank) = match other {
                    Object::Collection(o) => (o.stamp(), o.kind as u8 + 1),
                    _ => (other.max_timestamp(), 0),
                };
                if (c.stamp(), c.kind as u8 + 1) > (other_stamp, other_rank) {
                    Ok(Object::Collection(Box::new(c.raise_floor(other_stamp))))
                } else {
                    match other {
                        Object::Collection(o) => {
                            Ok(Object::Collection(Box::new(o.raise_floor(c.stamp()))))
                        }
                        _ => Ok(other.clone()),
                    }
                }
            }
            _ => Err(ModeMismatch),
        }
    }

    /// The collection, if the object is a hash or a set.
    pub fn collection(&self) -> Option<&Collection> {
        match self {
            Object::Collection(c) => Some(c),
            _ => None,
        }
    }

    /// What a truncation at `mark` leaves of the object: the values (and tombstones) stamped
    /// after it, with the object's causal history kept; `None` when nothing is left.
    ///
    /// In a `siblings` object each coordinator's values are newest first and stamped by its
    /// clock, which only goes up: the ones at or before the mark are the oldest, dropped as a
    /// causal delete drops them (the counter still covers their dots, so a replica's older
    /// copy of them loses every merge). One out of that order is made a tombstone in place.
    pub fn after_truncation(&self, mark: Hlc) -> Option<Object> {
        match self {
            Object::Siblings(d) => {
                let mut d = d.clone();
                for e in d.entries.values_mut() {
                    while e.values.last().is_some_and(|v| v.timestamp <= mark) {
                        e.values.pop();
                    }
                    for v in &mut e.values {
                        if v.timestamp <= mark && !v.tombstone {
                            *v = Sibling::tombstone(v.timestamp);
                        }
                    }
                }
                (d.sibling_count() > 0).then_some(Object::Siblings(d))
            }
            Object::Lww(v) => (v.sibling.timestamp > mark).then(|| self.clone()),
            // Removes made after the mark stay (an empty collection is a delete): only one
            // with nothing newer than the mark is gone.
            Object::Collection(c) => {
                let c = c.raise_floor(mark);
                (!c.is_blank()).then(|| Object::Collection(Box::new(c)))
            }
        }
    }

    /// The same object with every value and content type emptied: its versions, tombstones
    /// and expiries (what a listing needs to tell a live key from a deleted or expired one,
    /// merged like the object itself).
    pub fn without_values(&self) -> Object {
        let strip = |s: &mut Sibling| {
            s.value = Vec::new();
            s.content_type = ContentType::default();
        };
        match self {
            Object::Siblings(d) => {
                let mut d = d.clone();
                for e in d.entries.values_mut() {
                    e.values.iter_mut().for_each(strip);
                }
                Object::Siblings(d)
            }
            Object::Lww(v) => {
                let mut v = v.clone();
                strip(&mut v.sibling);
                Object::Lww(v)
            }
            Object::Collection(c) => Object::Collection(Box::new(c.without_values())),
        }
    }

    /// Every sibling, tombstones included, in a deterministic order (none for a collection:
    /// it holds elements, not values).
    pub fn all_siblings(&self) -> Vec<&Sibling> {
        match self {
            Object::Siblings(d) => d.siblings().map(|(_, s)| s).collect(),
            Object::Lww(v) => vec![&v.sibling],
            Object::Collection(_) => Vec::new(),
        }
    }

    /// Whether a read at wall time `now_ms` finds the key (a value, or a collection with an
    /// element).
    pub fn is_live_at(&self, now_ms: u64) -> bool {
        match self {
            Object::Collection(c) => c.is_live(now_ms),
            _ => !self.visible_at(now_ms).is_empty(),
        }
    }

    /// What a read shows: the siblings that are not tombstones.
    pub fn visible(&self) -> Vec<&Sibling> {
        self.all_siblings()
            .into_iter()
            .filter(|s| !s.tombstone)
            .collect()
    }

    /// What a read at wall time `now_ms` shows: neither tombstones nor expired values.
    pub fn visible_at(&self, now_ms: u64) -> Vec<&Sibling> {
        self.visible()
            .into_iter()
            .filter(|s| s.expires_at.is_none_or(|t| t > now_ms))
            .collect()
    }

    /// Whether every sibling is a value that expired before `before_ms` (nothing left to show,
    /// and no delete to remember: the object can be dropped).
    /// When the whole object expires: the latest TTL of its values, if every one is a value
    /// with a TTL (else it never expires as a whole). What the expiry index records.
    pub fn expires_at(&self) -> Option<u64> {
        if let Object::Collection(c) = self {
            return c.ttl().expires_at.filter(|_| !c.is_empty());
        }
        let siblings = self.all_siblings();
        if siblings.is_empty() || siblings.iter().any(|s| s.tombstone) {
            return None;
        }
        siblings
            .iter()
            .map(|s| s.expires_at)
            .try_fold(0, |latest, e| e.map(|e| latest.max(e)))
    }

    pub fn expired_before(&self, before_ms: u64) -> bool {
        if let Object::Collection(c) = self {
            // Elements added after the TTL passed make a new key; the sweep leaves it.
            return c.ttl().expires_at.is_some_and(|t| t < before_ms) && !c.is_live(before_ms);
        }
        self.all_siblings()
            .iter()
            .all(|s| !s.tombstone && s.expires_at.is_some_and(|t| t < before_ms))
    }

    /// What an lww object whose value expired turns into: a tombstone with the value's own
    /// identity (its timestamp and writer), as Cassandra turns an expired cell into a
    /// tombstone at the cell's timestamp. It replaces that value and anything older, and loses
    /// to any write made after it. `None` for `siblings` objects (their expiry is a delete
    /// with the object's context, which supersedes exactly what it saw).
    pub fn expiry_tombstone(&self) -> Option<Object> {
        match self {
            Object::Lww(v) => Some(Object::Lww(v.tombstone())),
            // A hash or set whose TTL passed: a floor at its expiry (everything stamped
            // before is gone, a later add makes a new key).
            Object::Collection(c) => c
                .ttl()
                .expires_at
                .map(|t| Object::Collection(Box::new(c.raise_floor(Hlc::new(t, u16::MAX))))),
            Object::Siblings(_) => None,
        }
    }

    /// The context a read returns. For an `lww` object it names the version's writer and
    /// timestamp: a write that carries it back is stamped after that version.
    pub fn context(&self) -> VersionVector {
        match self {
            Object::Siblings(d) => d.context(),
            Object::Lww(v) => VersionVector([(v.writer, v.sibling.timestamp.0)].into()),
            Object::Collection(c) => c.context(),
        }
    }

    /// Whether every sibling is a tombstone (the key reads as deleted; a collection: it holds
    /// no element).
    pub fn is_tombstone(&self) -> bool {
        match self {
            Object::Collection(c) => c.is_empty(),
            _ => self.all_siblings().iter().all(|s| s.tombstone),
        }
    }

    /// The oldest timestamp among the siblings.
    pub fn min_timestamp(&self) -> Hlc {
        if let Object::Collection(c) = self {
            return c.stamp();
        }
        self.all_siblings()
            .iter()
            .map(|s| s.timestamp)
            .min()
            .unwrap_or_default()
    }

    /// The newest timestamp among the siblings (an HLC must move past it before writing).
    pub fn max_timestamp(&self) -> Hlc {
        if let Object::Collection(c) = self {
            return c.stamp();
        }
        self.all_siblings()
            .iter()
            .map(|s| s.timestamp)
            .max()
            .unwrap_or_default()
    }

    pub fn sibling_count(&self) -> usize {
        match self {
            Object::Siblings(d) => d.sibling_count(),
            Object::Lww(_) | Object::Collection(_) => 1,
        }
    }
}

/// An opaque context token, as clients see it: base64url (no padding) of a format byte and
/// the version vector.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Context(pub VersionVector);

const CONTEXT_FORMAT: u8 = 1;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ContextError {
    #[error("context is {len} characters, more than the limit of {max}")]
    TooLong { len: usize, max: usize },
    #[error("context is not valid base64url")]
    Base64,
    #[error("context has format version {0}, this node reads version {CONTEXT_FORMAT}")]
    Format(u8),
    #[error("context is malformed")]
    Malformed,
    #[error("context has {len} entries, more than the limit of {max}")]
    TooManyEntries { len: usize, max: usize },
}

impl Context {
    pub fn encode(&self) -> String {
        let entries: Vec<(u64, u64)> = self.0.0.iter().map(|(n, c)| (n.0, *c)).collect();
        let mut bytes = vec![CONTEXT_FORMAT];
        bytes.extend(
            postcard::to_allocvec(&entries).expect("encoding a vector into memory cannot fail"),
        );
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    pub fn decode(token: &str) -> Result<Context, ContextError> {
        if token.len() > CONTEXT_CHARS_MAX {
            return Err(ContextError::TooLong {
                len: token.len(),
                max: CONTEXT_CHARS_MAX,
            });
        }
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| ContextError::Base64)?;
        let (format, rest) = bytes.split_first().ok_or(ContextError::Malformed)?;
        if *format != CONTEXT_FORMAT {
            return Err(ContextError::Format(*format));
        }
        let (entries, tail): (Vec<(u64, u64)>, &[u8]) =
            postcard::take_from_bytes(rest).map_err(|_| ContextError::Malformed)?;
        if !tail.is_empty() {
            return Err(ContextError::Malformed);
        }
        if entries.len() > VECTOR_ENTRIES_MAX {
            return Err(ContextError::TooManyEntries {
                len: entries.len(),
                max: VECTOR_ENTRIES_MAX,
            });
        }
        Ok(Context(VersionVector(
            entries.into_iter().map(|(n, c)| (NodeId(n), c)).collect(),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v(s: &str) -> Sibling {
        Sibling::value(s.as_bytes().to_vec(), "text/plain", Hlc(0))
    }

    fn values(d: &Dvv) -> Vec<String> {
        let mut out: Vec<String> = d
            .siblings()
            .map(|(_, s)| String::from_utf8_lossy(&s.value).into_owned())
            .collect();
        out.sort();
        out
    }

    const A: NodeId = NodeId(1);
    const B: NodeId = NodeId(2);

    #[test]
    fn write_with_context_supersedes_what_the_read_saw() {
        let empty = Dvv::default();
        let (x, _) = empty
            .update(&VersionVector::default(), v("x"), A)
            .expect("ok");
        let ctx = x.context();
        let (y, dot) = x.update(&ctx, v("y"), A).expect("ok");
        assert_eq!(values(&y), ["y"]);
        assert_eq!(
            dot,
            Dot {
                node: A,
                counter: 2
            }
        );
    }

    #[test]
    fn blind_concurrent_writes_are_both_kept_and_resolved_by_context() {
        let (x, _) = Dvv::default()
            .update(&VersionVector::default(), v("x"), A)
            .expect("ok");
        // Two clients write blind at different coordinators.
        let (at_a, _) = x.update(&VersionVector::default(), v("p"), A).expect("ok");
        let (at_b, _) = x.update(&VersionVector::default(), v("q"), B).expect("ok");
        let merged = at_a.sync(&at_b);
        assert_eq!(values(&merged), ["p", "q", "x"]);
        // A write with the merged context resolves all three.
        let (resolved, _) = merged.update(&merged.context(), v("r"), B).expect("ok");
        assert_eq!(values(&resolved), ["r"]);
        // And syncing the resolution with the stale replicas keeps only it.
        assert_eq!(values(&resolved.sync(&at_a).sync(&at_b)), ["r"]);
    }

    #[test]
    fn a_write_supersedes_exactly_what_its_read_saw() {
        let (x, _) = Dvv::default()
            .update(&VersionVector::default(), v("x"), A)
            .expect("ok");
        let ctx_x = x.context();
        // Someone writes y concurrently (blind) at B after our read.
        let (y, _) = x.update(&VersionVector::default(), v("y"), B).expect("ok");
        // Our write with ctx_x supersedes x but not y.
        let (z, _) = y.update(&ctx_x, v("z"), A).expect("ok");
        assert_eq!(values(&z), ["y", "z"]);
    }

    #[test]
    fn two_writers_read_modify_write_without_false_siblings() {
        // 2 writers, 1,000 rounds each, alternating coordinators; every write carries the
        // context of the writer's own read. Interleavings: sequential (read sees the previous
        // write) and racing (both read, then both write).
        let mut replicas = [Dvv::default(), Dvv::default()];
        for round in 0..1000u64 {
            let racing = round % 7 == 3;
            if racing {
                let ctx0 = replicas[0].sync(&replicas[1]).context();
                let ctx1 = ctx0.clone();
                let (a, _) = replicas[0]
                    .update(&ctx0, v(&format!("a{round}")), A)
                    .expect("ok");
                let (b, _) = replicas[1]
                    .update(&ctx1, v(&format!("b{round}")), B)
                    .expect("ok");
                replicas = [a.sync(&b), b.sync(&a)];
                assert_eq!(replicas[0].sibling_count(), 2, "a real race keeps both");
            } else {
                let writer = (round % 2) as usize;
                let read = replicas[0].sync(&replicas[1]);
                let node = if writer == 0 { A } else { B };
                let (w, _) = read
                    .update(&read.context(), v(&format!("w{round}")), node)
                    .expect("ok");
                replicas = [w.sync(&replicas[0]), w.sync(&replicas[1])];
                assert_eq!(
                    replicas[0].sibling_count(),
                    1,
                    "round {round}: false sibling"
                );
            }
            assert!(
                replicas[0].context().len() <= 2,
                "vector grew past the coordinating nodes"
            );
        }
    }

    #[test]
    fn a_fresh_entry_starts_above_the_floor_so_reaped_dots_are_never_reused() {
        // Node A wrote dots 1..=3, then the key was deleted and its tombstone reaped at A, but
        // replica B kept the tombstone (A:3, no values).
        let (mut kept, _) = Dvv::default()
            .update(&VersionVector::default(), v("x"), A)
            .expect("ok");
        for i in 0..2 {
            kept = kept
                .update(&kept.context(), v(&i.to_string()), A)
                .expect("ok")
                .0;
        }
        let (kept, _) = kept
            .update(&kept.context(), Sibling::tombstone(Hlc(9)), B)
            .expect("ok");
        // A writes the key anew with no context: without a floor it would reuse dot (A, 1),
        // which B's tombstone covers, and the write would vanish on merge.
        let (reused, _) = Dvv::default()
            .update(&VersionVector::default(), v("new"), A)
            .expect("ok");
        assert!(
            kept.sync(&reused)
                .siblings()
                .all(|(_, s)| s.value != b"new"),
            "the hazard is real"
        );
        let (fresh, dot) = Dvv::default()
            .update_from(&VersionVector::default(), v("new"), A, 1_000)
            .expect("ok");
        assert_eq!(dot.counter, 1_001);
        assert_eq!(values(&kept.sync(&fresh)), ["", "new"]);
    }

    #[test]
    fn too_many_siblings_is_refused() {
        let mut d = Dvv::default();
        for i in 0..SIBLINGS_MAX {
            d = d
                .update(&VersionVector::default(), v(&i.to_string()), A)
                .expect("within limit")
                .0;
        }
        let e = d
            .update(&VersionVector::default(), v("one more"), A)
            .expect_err("over the limit");
        assert_eq!(e.count, SIBLINGS_MAX + 1);
    }

    #[test]
    fn a_ttl_change_or_version_delete_acts_on_its_version_only() {
        let v = |ts: u64, s: &str| {
            LwwValue::new(
                NodeId(1),
                Sibling::value(s.as_bytes().to_vec(), "t", Hlc(ts)),
            )
        };
        let old = v(10, "old");
        let mut touched = old.clone();
        touched.sibling.expires_at = Some(5_000);
        touched.touched = Hlc(20);
        let mut persisted = old.clone();
        persisted.touched = Hlc(30);
        let newer = v(15, "new");
        let merge = |a: &LwwValue, b: &LwwValue| {
            let m = Object::Lww(a.clone())
                .merge(&Object::Lww(b.clone()))
                .expect("same mode");
            assert_eq!(
                m,
                Object::Lww(b.clone())
                    .merge(&Object::Lww(a.clone()))
                    .expect("same mode"),
                "the merge commutes"
            );
            m
        };
        // The later TTL change of one version wins, whatever its expiry.
        assert_eq!(merge(&old, &touched), Object::Lww(touched.clone()));
        assert_eq!(merge(&touched, &persisted), Object::Lww(persisted.clone()));
        // A write made after the version beats any change of it, and its delete.
        assert_eq!(merge(&touched, &newer), Object::Lww(newer.clone()));
        assert_eq!(merge(&old.tombstone(), &newer), Object::Lww(newer.clone()));
        // The version's delete beats the version, touched or not (before or after it).
        let deleted = LwwValue::version_delete(NodeId(1), Hlc(10));
        assert_eq!(merge(&persisted, &deleted), Object::Lww(deleted.clone()));
        let mut later = persisted.clone();
        later.touched = Hlc(40);
        assert_eq!(merge(&later, &deleted), Object::Lww(deleted.clone()));
        assert_eq!(merge(&deleted, &newer), Object::Lww(newer.clone()));
        // The expiry of the copy a node held beats that copy, not a later TTL change of it.
        assert_eq!(merge(&old, &old.tombstone()), Object::Lww(old.tombstone()));
        assert_eq!(
            merge(&persisted, &old.tombstone()),
            Object::Lww(persisted.clone())
        );
    }

    #[test]
    fn lww_keeps_the_larger_timestamp_then_writer() {
        let w = |node: u64, ts: u64, s: &str| {
            Object::Lww(LwwValue::new(
                NodeId(node),
                Sibling::value(s.as_bytes().to_vec(), "t", Hlc(ts)),
            ))
        };
        let a = w(1, 10, "a");
        let b = w(2, 10, "b");
        let c = w(1, 11, "c");
        assert_eq!(a.merge(&b).expect("same mode"), b);
        assert_eq!(b.merge(&a).expect("same mode"), b);
        assert_eq!(a.merge(&c).expect("same mode"), c);
        assert!(a.merge(&Object::Siblings(Dvv::default())).is_err());
    }

    #[test]
    fn context_token_round_trips_and_rejects_garbage() {
        let ctx = Context(VersionVector([(A, 3), (B, 7)].into_iter().collect()));
        let token = ctx.encode();
        assert_eq!(token, "AQIBAwIH");
        assert_eq!(Context::decode(&token).expect("valid"), ctx);
        assert_eq!(
            Context::decode("!!").expect_err("bad"),
            ContextError::Base64
        );
        assert_eq!(
            Context::decode("Ag").expect_err("bad"),
            ContextError::Format(2)
        );
        assert_eq!(
            Context::decode("AQ").expect_err("bad"),
            ContextError::Malformed
        );
        assert!(matches!(
            Context::decode(&"A".repeat(20000)),
            Err(ContextError::TooLong { .. })
        ));
    }

    /// Replica histories built from random operations, so every dot names one value.
    fn arb_replicas() -> impl Strategy<Value = Vec<Dvv>> {
        // (replica index 0..3, op: 0 = blind write, 1 = write with own context, 2 = sync from)
        proptest::collection::vec((0usize..3, 0u8..3, 0usize..3), 0..40).prop_map(|ops| {
            let mut reps = vec![Dvv::default(); 3];
            for (i, (r, op, other)) in ops.into_iter().enumerate() {
                let node = NodeId(r as u64 + 1);
                let val = v(&format!("v{i}"));
                reps[r] = match op {
                    0 => reps[r]
                        .update(&VersionVector::default(), val, node)
                        .map(|x| x.0)
                        .unwrap_or_else(|_| reps[r].clone()),
                    1 => reps[r]
                        .update(&reps[r].context(), val, node)
                        .map(|x| x.0)
                        .unwrap_or_else(|_| reps[r].clone()),
                    _ => reps[r].sync(&reps[other]),
                };
            }
            reps
        })
    }

    proptest! {
        #[test]
        fn sync_is_commutative_associative_idempotent(reps in arb_replicas()) {
            let (a, b, c) = (&reps[0], &reps[1], &reps[2]);
            prop_assert_eq!(a.sync(b), b.sync(a));
            prop_assert_eq!(a.sync(&b.sync(c)), a.sync(b).sync(c));
            prop_assert_eq!(a.sync(a), a.clone());
            // The join descends from both sides.
            let j = a.sync(b);
            prop_assert!(j.context().descends(&a.context()) && j.context().descends(&b.context()));
        }

        #[test]
        fn context_round_trips(entries in proptest::collection::btree_map(0u64..1000, 0u64..u64::MAX, 0..20)) {
            let ctx = Context(VersionVector(entries.into_iter().map(|(n, c)| (NodeId(n), c)).collect()));
            prop_assert_eq!(Context::decode(&ctx.encode()).expect("round trip"), ctx);
        }

        #[test]
        fn context_decode_never_panics(s in "\\PC{0,64}") {
            let _ = Context::decode(&s);
        }
    }
}
