//! [`IdMap`]: what a part keeps per request in flight, looked up by the request's id.
//!
//! A hash map with a fixed hasher (rustc-hash's), so a seed replays exactly; it offers no
//! iteration but a count, so no behaviour can come to depend on its order. A `BTreeMap`'s
//! insert and removal were 4% of the coordinator's core thread at pipelined GETs.

use rustc_hash::FxHashMap;
use std::hash::Hash;
use std::ops::Index;

/// Requests in flight by id.
#[derive(Debug)]
pub struct IdMap<K, V>(FxHashMap<K, V>);

impl<K, V> Default for IdMap<K, V> {
    fn default() -> Self {
        IdMap(FxHashMap::default())
    }
}

impl<K: Hash + Eq, V> IdMap<K, V> {
    pub fn get(&self, id: &K) -> Option<&V> {
        self.0.get(id)
    }

    pub fn get_mut(&mut self, id: &K) -> Option<&mut V> {
        self.0.get_mut(id)
    }

    pub fn insert(&mut self, id: K, value: V) -> Option<V> {
        self.0.insert(id, value)
    }

    pub fn remove(&mut self, id: &K) -> Option<V> {
        self.0.remove(id)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many values `f` holds for (the order they are looked at cannot matter).
    pub fn count_where(&self, f: impl Fn(&V) -> bool) -> usize {
        self.0.values().filter(|v| f(v)).count()
    }
}

impl<K: Hash + Eq, V> Index<&K> for IdMap<K, V> {
    type Output = V;
    fn index(&self, id: &K) -> &V {
        &self.0[id]
    }
}
