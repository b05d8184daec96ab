//! Placement: which nodes hold which keys.
//!
//! Dynamo's strategy 3 (DeCandia et al. 2007, §6.2): the key space is cut into a fixed number
//! of equal partitions (a power of two, default 256) and each partition is placed on nodes.
//!
//! ```text
//! (bucket, key) --xxh3--> top bits --> PartitionId --layout--> [n3, n1, n5 | n2, n4]
//!                                                                preference    extended
//!                                                                list (N)      (fallbacks)
//! ```
//!
//! * **Key to partition**: `xxh3_64(len(bucket) as u8 ‖ bucket ‖ key)`, seed 0; the partition
//!   is the top `log2(partitions)` bits of the hash. This is part of the on-disk format: never
//!   change it.
//! * **Partition to nodes**: weighted rendezvous hashing. Each node gets `capacity` tokens; the
//!   node's score for a partition is the largest `xxh3_64(partition ‖ node ‖ token)`. Nodes are
//!   then ordered in rounds: round 1 holds the best-scored node of every zone, round 2 the
//!   second best of every zone, and so on, each round sorted by score. The first N nodes are
//!   the preference list, the rest the extended preference list (sloppy-quorum fallbacks).
//!
//! Invariants (property-tested below): the first `min(N, zones)` nodes of a preference list
//! are in distinct zones; adding a node only moves replicas *to* that node, and removing one
//! only moves its own replicas away, so a change moves no more than needed (about N/n of
//! the replica slots, 1/n of the data); a node's share grows with its capacity.
//!
//! Deliberate deviation from Riak/Garage: the assignment is computed from the node set rather
//! than stored, so the layout is just a versioned node list and every node derives the same
//! table from it. Integer hashing only, so every platform derives the same table.

use crate::ids::{LayoutVersion, NodeId, PartitionId};
use crate::limits::{CAPACITY_MAX, NODES_MAX, PARTITIONS_MAX, PARTITIONS_MIN};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use xxhash_rust::xxh3::xxh3_64;

/// Default number of partitions.
pub const PARTITIONS_DEFAULT: u32 = 256;

/// One node's placement attributes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub id: NodeId,
    pub zone: String,
    pub datacenter: String,
    /// Relative weight, 1..=[`CAPACITY_MAX`]: a node of capacity 2 holds about twice the data
    /// of a node of capacity 1 (as far as the zone spread allows).
    pub capacity: u32,
}

/// What a layout is made of, and what travels between nodes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayoutSpec {
    pub version: LayoutVersion,
    pub partition_count: u32,
    pub nodes: Vec<NodeInfo>,
}

/// A versioned placement of partitions on nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    spec: LayoutSpec,
    /// `partition_count.trailing_zeros()`.
    partition_bits: u32,
    /// For each partition, every node in preference order (derived from `spec`).
    order: Vec<Vec<NodeId>>,
    /// Datacenter and zone of each node, shared: every receipt names a replica's zone.
    zones: BTreeMap<NodeId, (Arc<str>, Arc<str>)>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error(
        "partition count {0} is not a power of two between {PARTITIONS_MIN} and {PARTITIONS_MAX}"
    )]
    PartitionCount(u32),
    #[error("layout has no nodes")]
    NoNodes,
    #[error("layout has {0} nodes, more than the limit of {NODES_MAX}")]
    TooManyNodes(usize),
    #[error("node {0} appears twice in the layout")]
    DuplicateNode(NodeId),
    #[error("node {node} has capacity {capacity}; it must be between 1 and {CAPACITY_MAX}")]
    Capacity { node: NodeId, capacity: u32 },
}

impl Layout {
    pub fn new(spec: LayoutSpec) -> Result<Layout, LayoutError> {
        let pc = spec.partition_count;
        if !pc.is_power_of_two() || !(PARTITIONS_MIN..=PARTITIONS_MAX).contains(&pc) {
            return Err(LayoutError::PartitionCount(pc));
        }
        if spec.nodes.is_empty() {
            return Err(LayoutError::NoNodes);
        }
        if spec.nodes.len() > NODES_MAX {
            return Err(LayoutError::TooManyNodes(spec.nodes.len()));
        }
        let mut zones = BTreeMap::new();
        for n in &spec.nodes {
            if !(1..=CAPACITY_MAX).contains(&n.capacity) {
                return Err(LayoutError::Capacity {
                    node: n.id,
                    capacity: n.capacity,
                });
            }
            if zones
                .insert(
                    n.id,
                    (Arc::from(n.datacenter.as_str()), Arc::from(n.zone.as_str())),
                )
                .is_some()
            {
                return Err(LayoutError::DuplicateNode(n.id));
            }
        }
        let order = (0..pc)
            .map(|p| order_for_partition(PartitionId(p), &spec.nodes))
            .collect();
        Ok(Layout {
            partition_bits: pc.trailing_zeros(),
            spec,
            order,
            zones,
        })
    }

    /// A layout of `count` nodes with ids 1..=count, one zone each, capacity 1.
    pub fn uniform(count: u64, partition_count: u32) -> Result<Layout, LayoutError> {
        let nodes = (1..=count)
            .map(|i| NodeInfo {
                id: NodeId(i),
                zone: format!("z{i}"),
                datacenter: "dc1".into(),
                capacity: 1,
            })
            .collect();
        Layout::new(LayoutSpec {
            version: LayoutVersion(1),
            partition_count,
            nodes,
        })
    }

    pub fn spec(&self) -> &LayoutSpec {
        &self.spec
    }

    pub fn version(&self) -> LayoutVersion {
        self.spec.version
    }

    pub fn partition_count(&self) -> u32 {
        self.spec.partition_count
    }

    pub fn nodes(&self) -> &[NodeInfo] {
        &self.spec.nodes
    }

    pub fn contains(&self, node: NodeId) -> bool {
        self.zones.contains_key(&node)
    }

    /// `(datacenter, zone)` of a node of the layout.
    pub fn zone_of(&self, node: NodeId) -> Option<&(Arc<str>, Arc<str>)> {
        self.zones.get(&node)
    }

    /// The partition of a key (see the module documentation for the hash).
    pub fn partition_for(&self, bucket: &str, key: &[u8]) -> PartitionId {
        partition_for(self.partition_bits, bucket, key)
    }

    /// The first `n` nodes of the partition's order (fewer if the layout is smaller).
    pub fn preference_list(&self, partition: PartitionId, n: usize) -> &[NodeId] {
        let order = &self.order[partition.0 as usize];
        &order[..n.min(order.len())]
    }

    /// Every node of the layout, in the partition's preference order: the preference list
    /// followed by the fallbacks for sloppy quorum.
    pub fn extended_preference_list(&self, partition: PartitionId) -> &[NodeId] {
        &self.order[partition.0 as usize]
    }

    /// The partitions for which `node` is among the first `n` of the preference list.
    pub fn partitions_of(&self, node: NodeId, n: usize) -> Vec<PartitionId> {
        (0..self.partition_count())
            .map(PartitionId)
            .filter(|p| self.preference_list(*p, n).contains(&node))
            .collect()
    }
}

/// Stable key-to-partition hash; `bits` = log2(partition count).
pub fn partition_for(bits: u32, bucket: &str, key: &[u8]) -> PartitionId {
    // Hashed from the stack when the input fits (every key of a few hundred bytes: this
    // runs several times per request), else from the heap; the same bytes either way.
    const ON_STACK: usize = 512;
    let len = 1 + bucket.len() + key.len();
    let mut stack = [0u8; ON_STACK];
    let mut heap = Vec::new();
    let buf: &mut [u8] = if len <= ON_STACK {
        &mut stack[..len]
    } else {
        heap.resize(len, 0);
        &mut heap
    };
    buf[0] = bucket.len() as u8;
    buf[1..1 + bucket.len()].copy_from_slice(bucket.as_bytes());
    buf[1 + bucket.len()..].copy_from_slice(key);
    let h = xxh3_64(buf);
    if bits == 0 {
        PartitionId(0)
    } else {
        PartitionId((h >> (64 - bits)) as u32)
    }
}

fn node_score(partition: PartitionId, node: &NodeInfo) -> u64 {
    let mut buf = [0u8; 16];
    buf[..4].copy_from_slice(&partition.0.to_le_bytes());
    buf[4..12].copy_from_slice(&node.id.0.to_le_bytes());
    (0..node.capacity)
        .map(|token| {
            buf[12..].copy_from_slice(&token.to_le_bytes());
            xxh3_64(&buf)
        })
        .max()
        .unwrap_or(0)
}

fn order_for_partition(partition: PartitionId, nodes: &[NodeInfo]) -> Vec<NodeId> {
    let mut scored: Vec<(u64, &NodeInfo)> = nodes
        .iter()
        .map(|n| (node_score(partition, n), n))
        .collect();
    // Highest score first; ties (astronomically rare) by node id.
    scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.id.cmp(&b.1.id)));
    let mut out = Vec::with_capacity(nodes.len());
    let mut taken = vec![false; scored.len()];
    while out.len() < scored.len() {
        let mut used: BTreeSet<(&str, &str)> = BTreeSet::new();
        for (i, (_, n)) in scored.iter().enumerate() {
            if !taken[i] && used.insert((n.datacenter.as_str(), n.zone.as_str())) {
                taken[i] = true;
                out.push(n.id);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The partition is the top bits of xxh3 over (bucket length, bucket, key), whether
        /// the input is hashed from the stack or, past its size, from the heap: stored keys
        /// must not move.
        #[test]
        fn a_keys_partition_is_its_hash_at_every_length(
            bucket in "[a-z_]{1,64}",
            key in proptest::collection::vec(any::<u8>(), 0..1100),
        ) {
            let mut whole = vec![bucket.len() as u8];
            whole.extend_from_slice(bucket.as_bytes());
            whole.extend_from_slice(&key);
            let want = PartitionId((xxh3_64(&whole) >> (64 - 10)) as u32);
            prop_assert_eq!(partition_for(10, &bucket, &key), want);
        }
    }

    fn spec_of(nodes: &[(u64, &str, u32)], partitions: u32) -> LayoutSpec {
        LayoutSpec {
            version: LayoutVersion(1),
            partition_count: partitions,
            nodes: nodes
                .iter()
                .map(|(id, zone, cap)| NodeInfo {
                    id: NodeId(*id),
                    zone: zone.to_string(),
                    datacenter: "dc1".into(),
                    capacity: *cap,
                })
                .collect(),
        }
    }

    fn slots(layout: &Layout, n: usize) -> BTreeMap<NodeId, usize> {
        let mut out = BTreeMap::new();
        for p in 0..layout.partition_count() {
            for id in layout.preference_list(PartitionId(p), n) {
                *out.entry(*id).or_default() += 1;
            }
        }
        out
    }

    /// Replica slots present in `after` but not in `before`, by gaining node.
    fn gained(before: &Layout, after: &Layout, n: usize) -> BTreeMap<NodeId, usize> {
        let mut out = BTreeMap::new();
        for p in 0..before.partition_count() {
            let old: BTreeSet<_> = before.preference_list(PartitionId(p), n).iter().collect();
            for id in after.preference_list(PartitionId(p), n) {
                if !old.contains(id) {
                    *out.entry(*id).or_default() += 1;
                }
            }
        }
        out
    }

    /// Pins the key hash and the placement: changing either silently moves every key.
    #[test]
    fn golden_partitions_and_preference_lists() {
        let layout = Layout::uniform(5, 256).expect("valid");
        let table: &[(&str, &[u8], u32)] = &[
            ("default", b"k", 219),
            ("default", b"user:42", 154),
            ("redis", b"k", 51),
            ("b", b"", 148),
        ];
        for (bucket, key, want) in table {
            assert_eq!(
                layout.partition_for(bucket, key),
                PartitionId(*want),
                "{bucket}/{key:?}"
            );
        }
        let lists: Vec<Vec<u64>> = (0..4)
            .map(|p| {
                layout
                    .extended_preference_list(PartitionId(p))
                    .iter()
                    .map(|n| n.0)
                    .collect()
            })
            .collect();
        assert_eq!(
            lists,
            vec![
                vec![2, 3, 1, 4, 5],
                vec![1, 5, 3, 4, 2],
                vec![3, 1, 4, 5, 2],
                vec![2, 4, 1, 5, 3]
            ]
        );
    }

    #[test]
    fn rejects_bad_specs() {
        assert_eq!(
            Layout::uniform(3, 100).expect_err("not pow2"),
            LayoutError::PartitionCount(100)
        );
        assert!(Layout::new(spec_of(&[], 8)).is_err());
        assert!(Layout::new(spec_of(&[(1, "a", 1), (1, "b", 1)], 8)).is_err());
        assert!(Layout::new(spec_of(&[(1, "a", 0)], 8)).is_err());
    }

    #[test]
    fn balanced_with_equal_capacity() {
        let layout = Layout::uniform(5, 1024).expect("valid");
        let fair = 3.0 * 1024.0 / 5.0;
        for (node, count) in slots(&layout, 3) {
            let ratio = count as f64 / fair;
            assert!(
                (0.85..1.15).contains(&ratio),
                "{node} holds {count} slots, fair share {fair}"
            );
        }
    }

    #[test]
    fn capacity_weights_the_share() {
        let layout = Layout::new(spec_of(
            &[
                (1, "a", 1),
                (2, "b", 1),
                (3, "c", 1),
                (4, "d", 1),
                (5, "e", 1),
                (6, "f", 3),
            ],
            1024,
        ))
        .expect("valid");
        let s = slots(&layout, 1);
        let big = s[&NodeId(6)] as f64;
        let small = s[&NodeId(1)] as f64;
        assert!(
            big / small > 2.2 && big / small < 4.0,
            "capacity 3 node holds {big}, capacity 1 holds {small}"
        );
    }

    #[test]
    fn replicas_span_zones() {
        // 6 nodes in 3 zones: every preference list of 3 must hit all 3 zones.
        let layout = Layout::new(spec_of(
            &[
                (1, "a", 1),
                (2, "a", 1),
                (3, "b", 1),
                (4, "b", 1),
                (5, "c", 1),
                (6, "c", 5),
            ],
            256,
        ))
        .expect("valid");
        for p in 0..256 {
            let zones: BTreeSet<_> = layout
                .preference_list(PartitionId(p), 3)
                .iter()
                .map(|n| layout.zone_of(*n))
                .collect();
            assert_eq!(zones.len(), 3, "partition {p}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Adding one node moves replicas only to it, about its fair share; removing it again
        /// moves back exactly those replicas.
        #[test]
        fn adding_a_node_moves_only_what_it_needs(
            zones in proptest::collection::vec(0u8..3, 3..9),
            new_zone in 0u8..4,
            n in 1usize..4,
        ) {
            let names = ["a", "b", "c", "d"];
            let mut nodes: Vec<(u64, &str, u32)> =
                zones.iter().enumerate().map(|(i, z)| (i as u64 + 1, names[*z as usize], 1)).collect();
            let before = Layout::new(spec_of(&nodes, 256)).expect("valid");
            let new_id = nodes.len() as u64 + 1;
            nodes.push((new_id, names[new_zone as usize], 1));
            let after = Layout::new(spec_of(&nodes, 256)).expect("valid");
            let g = gained(&before, &after, n);
            prop_assert!(g.keys().all(|id| *id == NodeId(new_id)), "replicas moved to old nodes: {:?}", g);
            let moved = g.values().sum::<usize>();
            prop_assert_eq!(moved, slots(&after, n).get(&NodeId(new_id)).copied().unwrap_or(0));
            // Removing it again: only its own replicas move, to the others.
            let back = gained(&after, &before, n);
            prop_assert_eq!(back.values().sum::<usize>(), moved);
            // With one zone per node the share is close to the fair one.
            let distinct: BTreeSet<_> = nodes.iter().map(|x| x.1).collect();
            if distinct.len() == nodes.len() || distinct.len() == 1 {
                let fair = (n.min(nodes.len()) * 256) as f64 / nodes.len() as f64;
                prop_assert!((moved as f64) < fair * 1.6 && (moved as f64) > fair * 0.5,
                    "moved {} slots, fair share {}", moved, fair);
            }
        }
    }

    #[test]
    fn moved_fraction_is_about_one_over_n() {
        // Measured figure, printed for the record: 5 -> 6 nodes, N = 3, 256 partitions.
        let before = Layout::uniform(5, 256).expect("valid");
        let after = Layout::uniform(6, 256).expect("valid");
        let moved = gained(&before, &after, 3).values().sum::<usize>() as f64;
        let fraction = moved / (3.0 * 256.0);
        println!("moved fraction of replica slots: {fraction:.3} (ideal 1/6 = 0.167)");
        assert!((0.12..0.22).contains(&fraction), "{fraction}");
    }
}
