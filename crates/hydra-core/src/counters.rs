//! A version vector's entries: per node, a counter, kept as a vector sorted by node and
//! stored inline up to [`INLINE`] entries (a `lww` context has one, a `siblings` one about
//! N), so making, cloning and dropping one does not allocate. A read makes about five
//! contexts (each replica's answer, the merge, the receipt); as `BTreeMap`s they were
//! one allocation each.
//!
//! It keeps the `BTreeMap` interface the code uses (sorted iteration, `entry`, `retain`)
//! and its encoding: serialized as a map, so stored objects and messages keep their bytes.

use crate::ids::NodeId;
use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use smallvec::SmallVec;

/// Entries kept without a heap allocation.
pub const INLINE: usize = 3;

/// Counters by node, sorted by node, each node at most once.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Counters(SmallVec<[(NodeId, u64); INLINE]>);

impl Counters {
    pub fn new() -> Counters {
        Counters::default()
    }

    fn find(&self, node: &NodeId) -> Result<usize, usize> {
        self.0.binary_search_by(|(n, _)| n.cmp(node))
    }

    pub fn get(&self, node: &NodeId) -> Option<&u64> {
        self.find(node).ok().map(|i| &self.0[i].1)
    }

    pub fn contains_key(&self, node: &NodeId) -> bool {
        self.find(node).is_ok()
    }

    /// Sets `node`'s counter; the one it replaces, if any.
    pub fn insert(&mut self, node: NodeId, counter: u64) -> Option<u64> {
        match self.find(&node) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, counter)),
            Err(i) => {
                self.0.insert(i, (node, counter));
                None
            }
        }
    }

    pub fn remove(&mut self, node: &NodeId) -> Option<u64> {
        self.find(node).ok().map(|i| self.0.remove(i).1)
    }

    /// `node`'s entry, to read or set in place.
    pub fn entry(&mut self, node: NodeId) -> Entry<'_> {
        Entry { map: self, node }
    }

    /// Keeps the entries `keep` says to keep.
    pub fn retain(&mut self, mut keep: impl FnMut(&NodeId, &mut u64) -> bool) {
        self.0.retain(|(n, c)| keep(n, c));
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The entries in node order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&NodeId, &u64)> + ExactSizeIterator {
        self.0.iter().map(|(n, c)| (n, c))
    }

    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &NodeId> + ExactSizeIterator {
        self.0.iter().map(|(n, _)| n)
    }

    pub fn values(&self) -> impl DoubleEndedIterator<Item = &u64> + ExactSizeIterator {
        self.0.iter().map(|(_, c)| c)
    }
}

/// One node's place in [`Counters`] (see [`Counters::entry`]).
pub struct Entry<'a> {
    map: &'a mut Counters,
    node: NodeId,
}

impl<'a> Entry<'a> {
    /// The counter, set to `default` first if the node had none.
    pub fn or_insert(self, default: u64) -> &'a mut u64 {
        let i = match self.map.find(&self.node) {
            Ok(i) => i,
            Err(i) => {
                self.map.0.insert(i, (self.node, default));
                i
            }
        };
        &mut self.map.0[i].1
    }
}

impl FromIterator<(NodeId, u64)> for Counters {
    /// As a `BTreeMap` collects: sorted, and a node given twice keeps its last counter.
    fn from_iter<I: IntoIterator<Item = (NodeId, u64)>>(iter: I) -> Counters {
        let mut out = Counters::new();
        for (n, c) in iter {
            out.insert(n, c);
        }
        out
    }
}

impl<const K: usize> From<[(NodeId, u64); K]> for Counters {
    fn from(entries: [(NodeId, u64); K]) -> Counters {
        entries.into_iter().collect()
    }
}

impl IntoIterator for Counters {
    type Item = (NodeId, u64);
    type IntoIter = smallvec::IntoIter<[(NodeId, u64); INLINE]>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a Counters {
    type Item = (&'a NodeId, &'a u64);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (NodeId, u64)>,
        fn(&'a (NodeId, u64)) -> (&'a NodeId, &'a u64),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(n, c)| (n, c))
    }
}

impl std::fmt::Debug for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Serialize for Counters {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (n, c) in &self.0 {
            map.serialize_entry(n, c)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Counters {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Counters, D::Error> {
        struct Entries;
        impl<'de> Visitor<'de> for Entries {
            type Value = Counters;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map of node ids to counters")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Counters, A::Error> {
                let mut out = Counters::new();
                while let Some((n, c)) = access.next_entry::<NodeId, u64>()? {
                    out.insert(n, c);
                }
                Ok(out)
            }
        }
        deserializer.deserialize_map(Entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    proptest! {
        /// Every operation agrees with a `BTreeMap`, and so does the encoding.
        #[test]
        fn counters_behave_and_encode_as_a_btree_map(
            ops in proptest::collection::vec((0u8..5, 0u64..8, any::<u64>()), 0..40),
        ) {
            let mut ours = Counters::new();
            let mut model: BTreeMap<NodeId, u64> = BTreeMap::new();
            for (op, node, counter) in ops {
                let node = NodeId(node);
                match op {
                    0 => prop_assert_eq!(ours.insert(node, counter), model.insert(node, counter)),
                    1 => prop_assert_eq!(ours.remove(&node), model.remove(&node)),
                    2 => {
                        *ours.entry(node).or_insert(counter) += 1;
                        *model.entry(node).or_insert(counter) += 1;
                    }
                    3 => {
                        ours.retain(|_, c| *c % 3 != counter % 3);
                        model.retain(|_, c| *c % 3 != counter % 3);
                    }
                    _ => prop_assert_eq!(ours.get(&node), model.get(&node)),
                }
                prop_assert!(ours.iter().eq(model.iter()));
                prop_assert_eq!(ours.len(), model.len());
            }
            let bytes = postcard::to_allocvec(&ours).expect("encode");
            prop_assert_eq!(&bytes, &postcard::to_allocvec(&model).expect("encode"));
            let back: Counters = postcard::from_bytes(&bytes).expect("decode");
            prop_assert_eq!(&back, &ours);
            prop_assert_eq!(format!("{ours:?}"), format!("{model:?}"));
            let collected: Counters = model.clone().into_iter().collect();
            prop_assert_eq!(collected, ours);
        }
    }
}
