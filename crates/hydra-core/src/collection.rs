//! Hashes and sets: convergent replicated types (the Redis front end's `HSET` and `SADD`
//! families), kept in `lww` buckets beside plain values.
//!
//! Source: Bieniusa, Zawirski, Preguiça, Shapiro, Baquero, Balegas, Duarte, "An optimized
//! conflict-free replicated set" (2012; ORSWOT, Riak's `riak_dt_orswot`), and Almeida, Shoker,
//! Baquero, "Delta State Replicated Data Types" (2018): the causal context (a version vector
//! and a dot cloud) and the add-wins observed-remove set and map.
//!
//! A [`Collection`] keeps, per element (a hash field or a set member), the dots of the adds
//! still alive, each with the value it wrote, and a causal context: every dot the object has
//! seen. A dot is `(node, hlc)`: the coordinating node and its hybrid-clock stamp of the
//! update, unique because a node's clock never goes back (its high-water mark is durable) and
//! the coordinator's own write is durable before any other node sees the dot.
//!
//! ```text
//! read (quorum) ─▶ the client sees each element with its dots
//! update at the coordinator (its stored object, a new dot d = (me, hlc.now())):
//!     removes: each element's dots the client read leave it, and enter the context
//!     adds:    each element gets d, with its value         (HSET f v = remove f's dots + add f)
//! replicas: join(a, b) keeps a dot of an element when both sides hold it, or when the
//!           other side's context has not seen it (a concurrent add: add wins)
//! ```
//!
//! Invariants:
//! * `join` is commutative, associative and idempotent (proptest below); a dot removed by an
//!   update never comes back through any merge (the context covers it).
//! * The context's vector entry `n: t` means "every update node `n` coordinated on this key up
//!   to stamp `t` is included": true because states are merged whole and a coordinator applies
//!   its own updates to its own durable copy first. Dots seen only through a client's read
//!   (removes of elements this copy has not got yet) go to the cloud, never to the vector.
//! * Everything stamped at or before `floor` is gone: the object replaced a plain value or a
//!   collection of the other kind stamped then (see [`crate::version::Object::merge`]), or a
//!   truncation mark passed over it. The collection's `stamp` is the newest update it holds:
//!   what a plain value must be newer than to replace it.
//! * A TTL is one register for the whole key (the later change wins); once it passes, the
//!   elements stamped before it read as absent, and later adds make a new key without a TTL.

use crate::hlc::Hlc;
use crate::ids::NodeId;
use crate::message::Expiry;
use crate::version::{Dot, VersionVector};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Which Redis type a collection is.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub enum CollectionKind {
    #[default]
    Hash,
    Set,
}

impl CollectionKind {
    /// Redis's name of the type (`TYPE`).
    pub fn name(self) -> &'static str {
        match self {
            CollectionKind::Hash => "hash",
            CollectionKind::Set => "set",
        }
    }
}

/// The key's TTL: wall-clock milliseconds after which its elements read as absent, and when it
/// was set (of two changes, the later wins).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Ttl {
    pub stamp: Hlc,
    pub expires_at: Option<u64>,
}

/// The adds of one element still alive: dot -> value (a set member's is empty).
pub type Dots = BTreeMap<Dot, Vec<u8>>;

/// A hash or a set, with its causal context.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Collection {
    pub kind: CollectionKind,
    clock: VersionVector,
    cloud: BTreeSet<Dot>,
    entries: BTreeMap<Vec<u8>, Dots>,
    floor: Hlc,
    stamp: Hlc,
    ttl: Ttl,
}

/// One update, as a client makes it after a read: removes first, then adds under one new dot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CollectionUpdate {
    /// The type the update needs the key to be (or makes it, when the key is absent).
    pub kind: CollectionKind,
    /// Elements to remove, each with the dots the client's read showed for it (only those
    /// leave: an add the read did not see survives, as add-wins asks).
    pub removes: Vec<(Vec<u8>, Vec<Dot>)>,
    /// Elements to add (a hash field with its value; a set member with an empty one).
    pub adds: Vec<(Vec<u8>, Vec<u8>)>,
    /// A TTL change: `Some(None)` removes the TTL, `Some(Some(e))` expires the key as `e`
    /// says (a TTL counts from the coordinator's wall clock).
    pub expiry: Option<Option<Expiry>>,
}

impl CollectionUpdate {
    /// Every dot the update names (what the edges check).
    pub fn observed(&self) -> impl Iterator<Item = &Dot> {
        self.removes.iter().flat_map(|(_, dots)| dots.iter())
    }

    /// Bytes of elements and values the update carries.
    pub fn payload_bytes(&self) -> usize {
        self.removes
            .iter()
            .map(|(e, d)| e.len() + 16 * d.len())
            .sum::<usize>()
            + self
                .adds
                .iter()
                .map(|(e, v)| e.len() + v.len())
                .sum::<usize>()
    }
}

impl Collection {
    pub fn new(kind: CollectionKind) -> Collection {
        Collection {
            kind,
            clock: VersionVector::default(),
            cloud: BTreeSet::new(),
            entries: BTreeMap::new(),
            floor: Hlc::default(),
            stamp: Hlc::default(),
            ttl: Ttl::default(),
        }
    }

    /// Whether the context has seen `dot` (everything at or before the floor counts as seen:
    /// it was replaced).
    pub fn covers(&self, dot: &Dot) -> bool {
        dot.counter <= self.floor.0
            || self.clock.get(dot.node) >= dot.counter
            || self.cloud.contains(dot)
    }

    /// The newest update this object holds.
    pub fn stamp(&self) -> Hlc {
        self.stamp
    }

    pub fn floor(&self) -> Hlc {
        self.floor
    }

    pub fn ttl(&self) -> Ttl {
        self.ttl
    }

    /// The context a read returns (its vector; every update adds a dot, so it names the
    /// state).
    pub fn context(&self) -> VersionVector {
        self.clock.clone()
    }

    /// The update whose stamp is the object's `stamp`, as `(node, stamp)`, when the vector
    /// names it (what identifies a compare-and-set proposal of a collection: its own update
    /// is stamped after everything it read).
    pub fn newest_event(&self) -> Option<(NodeId, Hlc)> {
        self.clock
            .0
            .iter()
            .find(|(_, c)| **c == self.stamp.0)
            .map(|(n, _)| (*n, self.stamp))
    }

    /// Whether the vector's entry for `node` is exactly `stamp`: that update is held and no
    /// later one of `node` is (a precise test for a compare-and-set writer's own update).
    pub fn has_latest_event(&self, node: NodeId, stamp: Hlc) -> bool {
        stamp > self.floor && self.clock.0.get(&node) == Some(&stamp.0)
    }

    /// Whether each named element has, at `now_ms`, exactly the live dots given (none: the
    /// element is absent), as a compare-and-set condition judges a hash or set.
    pub fn has_exactly(&self, expected: &[(Vec<u8>, Vec<Dot>)], now_ms: u64) -> bool {
        expected.iter().all(|(element, dots)| {
            let mut want = dots.clone();
            want.sort_unstable();
            want.dedup();
            let have = self
                .get(element, now_ms)
                .map(|(d, _)| d)
                .unwrap_or_default();
            have == want
        })
    }

    /// Why this collection is beyond what one key may hold, if it is (an update that would
    /// make it so is refused).
    pub fn over_limits(&self) -> Option<String> {
        use crate::limits::{CLOUD_DOTS_MAX, COLLECTION_ELEMENTS_MAX};
        if self.len() > COLLECTION_ELEMENTS_MAX {
            return Some(format!(
                "the {} would hold {} elements, more than the limit of {COLLECTION_ELEMENTS_MAX}",
                self.kind.name(),
                self.len()
            ));
        }
        if self.cloud_len() > CLOUD_DOTS_MAX {
            return Some(format!(
                "the {} would remember {} removes of adds not yet received, more than the limit of {CLOUD_DOTS_MAX}; retry once replicas caught up",
                self.kind.name(),
                self.cloud_len()
            ));
        }
        None
    }

    pub fn cloud_len(&self) -> usize {
        self.cloud.len()
    }

    /// The vector entries, cloud and element dots (what the edges bound).
    pub fn all_dots(&self) -> impl Iterator<Item = Dot> + '_ {
        self.clock
            .0
            .iter()
            .map(|(n, c)| Dot {
                node: *n,
                counter: *c,
            })
            .chain(self.cloud.iter().copied())
            .chain(self.entries.values().flat_map(|d| d.keys().copied()))
    }

    /// Every element held, expired ones included, with its live dots.
    pub fn raw_entries(&self) -> impl Iterator<Item = (&[u8], &Dots)> {
        self.entries.iter().map(|(e, d)| (e.as_slice(), d))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether the object says nothing at all: no element, no event in its context, no TTL
    /// (what a floor leaves of a collection older than it).
    pub fn is_blank(&self) -> bool {
        self.entries.is_empty()
            && self.clock.is_empty()
            && self.cloud.is_empty()
            && self.ttl == Ttl::default()
    }

    /// The stamp at or before which elements read as absent at wall time `now_ms`: the floor,
    /// or the TTL once it passed.
    fn hidden_up_to(&self, now_ms: u64) -> Hlc {
        match self.ttl.expires_at {
            Some(t) if t <= now_ms => self.floor.max(Hlc::new(t, u16::MAX)),
            _ => self.floor,
        }
    }

    /// What a read at wall time `now_ms` shows: the object without the elements its TTL hid
    /// (and without a TTL that passed).
    pub fn view(&self, now_ms: u64) -> Collection {
        let hidden = self.hidden_up_to(now_ms);
        if hidden == self.floor {
            return self.clone();
        }
        let mut c = self.clone();
        c.floor = hidden;
        c.drop_below_floor();
        c.ttl.expires_at = None;
        c
    }

    /// Each live element at `now_ms` with the value its newest add wrote.
    pub fn elements(&self, now_ms: u64) -> Vec<(&[u8], &[u8])> {
        let hidden = self.hidden_up_to(now_ms);
        self.entries
            .iter()
            .filter_map(|(e, dots)| {
                let (_, v) = dots
                    .iter()
                    .filter(|(d, _)| d.counter > hidden.0)
                    .max_by_key(|(d, v)| (d.counter, d.node, v.as_slice()))?;
                Some((e.as_slice(), v.as_slice()))
            })
            .collect()
    }

    /// Whether the key has an element at `now_ms`.
    pub fn is_live(&self, now_ms: u64) -> bool {
        let hidden = self.hidden_up_to(now_ms);
        self.entries
            .values()
            .any(|dots| dots.keys().any(|d| d.counter > hidden.0))
    }

    /// One element's live dots (what a remove of it names) and its value, at `now_ms`.
    pub fn get(&self, element: &[u8], now_ms: u64) -> Option<(Vec<Dot>, &[u8])> {
        let hidden = self.hidden_up_to(now_ms);
        let dots = self.entries.get(element)?;
        let live: Vec<Dot> = dots
            .keys()
            .filter(|d| d.counter > hidden.0)
            .copied()
            .collect();
        let best = live.iter().max_by_key(|d| (d.counter, d.node))?;
        Some((live.clone(), dots[best].as_slice()))
    }

    /// The TTL at `now_ms`, if the key is live and has one.
    pub fn expires_at(&self, now_ms: u64) -> Option<u64> {
        self.ttl.expires_at.filter(|t| *t > now_ms)
    }

    fn insert_dot(&mut self, dot: Dot) {
        if !self.covers(&dot) {
            self.cloud.insert(dot);
        }
    }

    fn compact(&mut self) {
        let clock = &self.clock;
        self.cloud.retain(|d| clock.get(d.node) < d.counter);
    }

    /// Drops what the floor replaced: elements' dots, vector entries and cloud dots at or
    /// before it (the floor covers them), and a TTL set before it (it was the replaced key's),
    /// so that equal contents have one form.
    fn drop_below_floor(&mut self) {
        let floor = self.floor.0;
        for dots in self.entries.values_mut() {
            dots.retain(|d, _| d.counter > floor);
        }
        self.entries.retain(|_, dots| !dots.is_empty());
        self.clock.0.retain(|_, c| *c > floor);
        self.cloud.retain(|d| d.counter > floor);
        if self.ttl.stamp.0 <= floor {
            self.ttl = Ttl::default();
        }
    }

    /// Applies `update` as coordinator `me` at stamp `stamp` (a fresh HLC reading, after this
    /// node's clock observed [`Collection::stamp`]) and wall time `now_ms`.
    pub fn apply(&mut self, update: &CollectionUpdate, me: NodeId, stamp: Hlc, now_ms: u64) {
        // A TTL that passed ends the key it covered: what it hid stays gone once a later
        // update (a new TTL among them) is made.
        let hidden = self.hidden_up_to(now_ms);
        if hidden > self.floor {
            self.floor = hidden;
            self.drop_below_floor();
        }
        for (element, dots) in &update.removes {
            for dot in dots {
                self.insert_dot(*dot);
            }
            if let Some(held) = self.entries.get_mut(element) {
                for dot in dots {
                    held.remove(dot);
                }
                if held.is_empty() {
                    self.entries.remove(element);
                }
            }
        }
        let dot = Dot {
            node: me,
            counter: stamp.0,
        };
        for (element, value) in &update.adds {
            self.entries
                .entry(element.clone())
                .or_default()
                .insert(dot, value.clone());
        }
        // Every update is an event of its own, so the context names the state.
        let e = self.clock.0.entry(me).or_insert(0);
        *e = (*e).max(stamp.0);
        self.compact();
        if let Some(expiry) = update.expiry {
            self.ttl = Ttl {
                stamp,
                expires_at: expiry.map(|e| e.deadline(now_ms)),
            };
        }
        self.stamp = self.stamp.max(stamp);
    }

    /// The join of two replicas' copies of one kind.
    pub fn join(&self, other: &Collection) -> Collection {
        debug_assert_eq!(self.kind, other.kind, "join of two kinds");
        let mut entries: BTreeMap<Vec<u8>, Dots> = BTreeMap::new();
        let keys: BTreeSet<&Vec<u8>> = self.entries.keys().chain(other.entries.keys()).collect();
        let empty = Dots::new();
        let drops_adds = crate::bugs::planted().collection_merge_drops_adds;
        for key in keys {
            let a = self.entries.get(key).unwrap_or(&empty);
            let b = other.entries.get(key).unwrap_or(&empty);
            let mut dots = Dots::new();
            for (d, v) in a {
                match b.get(d) {
                    Some(w) => {
                        dots.insert(*d, v.max(w).clone());
                    }
                    None if !other.covers(d) && !drops_adds => {
                        dots.insert(*d, v.clone());
                    }
                    None => {}
                }
            }
            for (d, w) in b {
                if !a.contains_key(d) && !self.covers(d) && !drops_adds {
                    dots.insert(*d, w.clone());
                }
            }
            if !dots.is_empty() {
                entries.insert(key.clone(), dots);
            }
        }
        let mut clock = self.clock.clone();
        clock.merge(&other.clock);
        let mut joined = Collection {
            kind: self.kind,
            clock,
            cloud: self.cloud.union(&other.cloud).copied().collect(),
            entries,
            floor: self.floor.max(other.floor),
            stamp: self.stamp.max(other.stamp),
            ttl: self.ttl.max(other.ttl),
        };
        joined.compact();
        joined.drop_below_floor();
        joined
    }

    /// This collection after something stamped at `mark` replaced everything up to it (a plain
    /// value or the other kind it beat, a truncation mark).
    pub fn raise_floor(&self, mark: Hlc) -> Collection {
        let mut c = self.clone();
        if mark > c.floor {
            c.floor = mark;
            c.drop_below_floor();
        }
        c.stamp = c.stamp.max(mark);
        c
    }

    /// The same collection with every value emptied (what a listing carries).
    pub fn without_values(&self) -> Collection {
        let mut c = self.clone();
        for dots in c.entries.values_mut() {
            for v in dots.values_mut() {
                v.clear();
            }
        }
        c
    }

    /// Bytes of values and elements held (what `OBJECT`-style sizes and limits look at).
    pub fn value_bytes(&self) -> usize {
        self.entries
            .iter()
            .map(|(e, d)| e.len() + d.values().map(|v| v.len()).sum::<usize>())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn b(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    fn add(e: &str, v: &str) -> CollectionUpdate {
        CollectionUpdate {
            adds: vec![(b(e), b(v))],
            ..Default::default()
        }
    }

    fn remove(c: &Collection, e: &str) -> CollectionUpdate {
        let dots = c.get(e.as_bytes(), 0).map(|(d, _)| d).unwrap_or_default();
        CollectionUpdate {
            removes: vec![(b(e), dots)],
            ..Default::default()
        }
    }

    fn names(c: &Collection) -> Vec<String> {
        c.elements(0)
            .iter()
            .map(|(e, _)| String::from_utf8_lossy(e).into_owned())
            .collect()
    }

    #[test]
    fn concurrent_adds_of_different_elements_both_survive() {
        let mut a = Collection::new(CollectionKind::Set);
        let mut b2 = a.clone();
        a.apply(&add("x", ""), NodeId(1), Hlc(10), 0);
        b2.apply(&add("y", ""), NodeId(2), Hlc(11), 0);
        assert_eq!(names(&a.join(&b2)), ["x", "y"]);
        assert_eq!(a.join(&b2), b2.join(&a));
    }

    #[test]
    fn a_remove_wins_over_what_it_saw_and_loses_to_a_concurrent_add() {
        let mut a = Collection::new(CollectionKind::Set);
        a.apply(&add("x", ""), NodeId(1), Hlc(10), 0);
        let mut b2 = a.clone();
        // b removes x as it read it; a adds x again concurrently.
        let r = remove(&b2, "x");
        b2.apply(&r, NodeId(2), Hlc(12), 0);
        assert!(
            names(&a.join(&b2)).is_empty(),
            "the remove wins over what it saw"
        );
        assert!(names(&b2.join(&a)).is_empty());
        let mut a2 = a.clone();
        a2.apply(&add("x", ""), NodeId(1), Hlc(13), 0);
        assert_eq!(names(&a2.join(&b2)), ["x"], "a concurrent add wins");
        assert_eq!(names(&b2.join(&a2)), ["x"]);
    }

    #[test]
    fn a_removed_element_never_comes_back_from_an_old_copy() {
        let mut a = Collection::new(CollectionKind::Hash);
        a.apply(&add("f", "1"), NodeId(1), Hlc(10), 0);
        let old = a.clone();
        let r = remove(&a, "f");
        a.apply(&r, NodeId(2), Hlc(11), 0);
        assert!(names(&a.join(&old)).is_empty());
        assert!(names(&old.join(&a)).is_empty());
    }

    #[test]
    fn a_remove_of_an_add_this_copy_has_not_got_yet_holds_once_it_arrives() {
        let mut holder = Collection::new(CollectionKind::Set);
        holder.apply(&add("x", ""), NodeId(1), Hlc(10), 0);
        // The reader saw x at node 1; the coordinator (node 3) has nothing yet.
        let seen = holder.get(b"x", 0).expect("x").0;
        let mut coordinator = Collection::new(CollectionKind::Set);
        let r = CollectionUpdate {
            removes: vec![(b("x"), seen)],
            ..Default::default()
        };
        coordinator.apply(&r, NodeId(3), Hlc(12), 0);
        assert!(names(&coordinator.join(&holder)).is_empty());
        assert!(names(&holder.join(&coordinator)).is_empty());
    }

    #[test]
    fn a_hash_field_shows_its_newest_value_and_a_later_set_replaces_what_it_read() {
        let mut a = Collection::new(CollectionKind::Hash);
        a.apply(&add("f", "old"), NodeId(1), Hlc(10), 0);
        let mut b2 = a.clone();
        b2.apply(&add("f", "b"), NodeId(2), Hlc(20), 0);
        a.apply(&add("f", "a"), NodeId(1), Hlc(15), 0);
        let j = a.join(&b2);
        assert_eq!(j.get(b"f", 0).expect("f").1, b"b");
        let mut rewrite = remove(&j, "f");
        rewrite.adds = vec![(b("f"), b("c"))];
        let mut k = j.clone();
        k.apply(&rewrite, NodeId(3), Hlc(30), 0);
        assert_eq!(k.get(b"f", 0).expect("f").0.len(), 1);
    }

    #[test]
    fn a_truncation_keeps_removes_made_after_it() {
        use crate::version::Object;
        let mut a = Collection::new(CollectionKind::Set);
        a.apply(&add("x", ""), NodeId(1), Hlc(10), 0);
        let old = Object::Collection(Box::new(a.clone()));
        assert_eq!(old.after_truncation(Hlc(20)), None, "wholly older: gone");
        a.apply(&add("y", ""), NodeId(1), Hlc(30), 0);
        let r = remove(&a, "y");
        a.apply(&r, NodeId(1), Hlc(40), 0);
        let kept = Object::Collection(Box::new(a)).after_truncation(Hlc(20));
        let kept = kept.expect("a remove after the mark stays");
        let y = Object::Collection(Box::new({
            let mut c = Collection::new(CollectionKind::Set);
            c.apply(&add("y", ""), NodeId(1), Hlc(30), 0);
            c
        }));
        let merged = kept.merge(&y).expect("one mode");
        assert!(merged.collection().expect("a set").elements(0).is_empty());
    }

    #[test]
    fn a_ttl_hides_what_it_covered_and_later_adds_make_a_new_key() {
        let mut a = Collection::new(CollectionKind::Set);
        a.apply(&add("x", ""), NodeId(1), Hlc::new(1_000, 0), 1_000);
        let ttl = CollectionUpdate {
            expiry: Some(Some(Expiry::AfterMs(500))),
            ..Default::default()
        };
        a.apply(&ttl, NodeId(1), Hlc::new(1_001, 0), 1_001);
        assert_eq!(a.expires_at(1_100), Some(1_501));
        assert!(a.is_live(1_500));
        assert!(!a.is_live(1_501));
        a.apply(&add("y", ""), NodeId(1), Hlc::new(2_000, 0), 2_000);
        assert_eq!(
            a.elements(2_000)
                .iter()
                .map(|(e, _)| *e)
                .collect::<Vec<_>>(),
            [b"y"]
        );
        assert_eq!(a.expires_at(2_000), None);
    }

    fn arb_update() -> impl Strategy<Value = (u8, bool, u8, u8)> {
        // (element, add or remove, node, stamp step)
        (0u8..4, any::<bool>(), 1u8..4, 1u8..5)
    }

    /// Replicas built by random updates at random nodes, with random merges between them
    /// (removes name what the updating replica holds, as a read there would show).
    fn arb_replicas() -> impl Strategy<Value = Vec<Collection>> {
        proptest::collection::vec((arb_update(), 0usize..3, 0usize..3, any::<bool>()), 0..30)
            .prop_map(|steps| {
                let mut replicas = vec![Collection::new(CollectionKind::Hash); 3];
                // Each replica is one node's copy: a node coordinates on its own copy.
                let mut clock = 100u64;
                for ((element, is_add, _, step), at, from, sync) in steps {
                    let node = at as u8 + 1;
                    clock += step as u64;
                    if sync {
                        replicas[at] = replicas[at].join(&replicas[from]);
                        continue;
                    }
                    let name = format!("e{element}");
                    let mut update = if is_add {
                        add(&name, &format!("v{clock}"))
                    } else {
                        CollectionUpdate::default()
                    };
                    update.removes = remove(&replicas[at], &name).removes;
                    if !is_add && clock.is_multiple_of(7) {
                        update.expiry = Some(Some(Expiry::AfterMs(clock)));
                    }
                    // Each node has its own clock: stamps of one node only go up.
                    let stamp = Hlc(clock * 4 + node as u64);
                    replicas[at].apply(&update, NodeId(node as u64), stamp, clock);
                }
                replicas
            })
    }

    /// Objects of every type one key can hold: hashes and sets built as above, plain values.
    fn arb_objects() -> impl Strategy<Value = Vec<crate::version::Object>> {
        use crate::version::{LwwValue, Object, Sibling};
        (
            arb_replicas(),
            arb_replicas(),
            proptest::collection::vec((0u64..300, any::<bool>()), 3),
        )
            .prop_map(|(hashes, sets, plain)| {
                let sets = sets.into_iter().map(|mut c| {
                    c.kind = CollectionKind::Set;
                    c
                });
                let plain = plain.into_iter().map(|(t, tomb)| {
                    let ts = Hlc(400 + t * 4 + 3);
                    let s = if tomb {
                        Sibling::tombstone(ts)
                    } else {
                        Sibling::value(b"v".to_vec(), "", ts)
                    };
                    Object::Lww(LwwValue::new(NodeId(9), s))
                });
                hashes
                    .into_iter()
                    .map(|c| Object::Collection(Box::new(c)))
                    .chain(sets.map(|c| Object::Collection(Box::new(c))))
                    .chain(plain)
                    .collect()
            })
    }

    proptest! {
        /// The merge of a key's objects whatever their types is a join too.
        #[test]
        fn merging_objects_of_any_types_is_a_join(objects in arb_objects(), pick in proptest::collection::vec(0usize..9, 3)) {
            let (a, b, c) = (&objects[pick[0]], &objects[pick[1]], &objects[pick[2]]);
            let m = |x: &crate::version::Object, y: &crate::version::Object| x.merge(y).expect("same bucket mode");
            prop_assert_eq!(m(a, b), m(b, a));
            prop_assert_eq!(m(a, &m(b, c)), m(&m(a, b), c));
            prop_assert_eq!(m(a, a), a.clone());
        }

        #[test]
        fn join_is_commutative_associative_and_idempotent(r in arb_replicas()) {
            let (a, b, c) = (&r[0], &r[1], &r[2]);
            prop_assert_eq!(a.join(b), b.join(a));
            prop_assert_eq!(a.join(&b.join(c)), a.join(b).join(c));
            prop_assert_eq!(a.join(a), a.clone());
        }

        #[test]
        fn a_floor_commutes_with_the_join(r in arb_replicas(), mark in 100u64..300) {
            let (a, b) = (&r[0], &r[1]);
            let m = Hlc(mark * 4);
            prop_assert_eq!(a.raise_floor(m).join(b), a.join(b).raise_floor(m));
        }

        /// No resurrection: once a copy removed an element's dots, no merge with any copy
        /// (older or concurrent) brings those dots back.
        #[test]
        fn removed_dots_never_come_back(r in arb_replicas()) {
            for x in &r {
                for y in &r {
                    let j = x.join(y);
                    for (element, dots) in x.raw_entries().chain(y.raw_entries()) {
                        for d in dots.keys() {
                            let removed_in = |c: &Collection| {
                                c.covers(d)
                                    && !c.raw_entries().any(|(e, ds)| e == element && ds.contains_key(d))
                            };
                            let kept = j.raw_entries().any(|(e, ds)| e == element && ds.contains_key(d));
                            prop_assert!(!(kept && (removed_in(x) || removed_in(y))));
                        }
                    }
                }
            }
        }
    }
}
