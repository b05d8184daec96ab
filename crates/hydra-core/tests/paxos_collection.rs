//! Paxos state collection, driven by the tiny synchronous cluster of `common`: repair rounds
//! settle a group's keys, then its primaries drop the state below the round's low bound, the
//! key takes plain writes again, and compare-and-set on it still sees every value.

mod common;

use common::*;
use hydra_core::bucket::Consistency;
use hydra_core::message::{ErrorCode, Message, PaxosPhase};
use hydra_core::node::{Input, NodeConfig};
use hydra_core::paxos::Condition;

const INTERVAL_MS: u64 = 1_000;

fn repairing(c: &mut NodeConfig) {
    c.paxos_repair_interval_ms = INTERVAL_MS;
}

#[test]
fn settled_paxos_state_is_collected_and_the_key_takes_plain_writes_again() {
    let mut c = Cluster::with(3, repairing);
    let k = key("redis", "lock");
    let r = c.request(0, cas(&k, Condition::Absent, Some("a")));
    assert_eq!(cas_outcome(&r), (true, Some("a".into())));
    assert_eq!((0..3).map(|i| paxos_states(&c, i)).sum::<usize>(), 3);
    let e = error(c.request(1, put(&k, "plain", None, None)));
    assert_eq!(e.code, ErrorCode::CasManagedKey, "{e:?}");
    // Two walks: the first settles the key (a serial read above its fence), the second
    // finds nothing changed above the first's low bound and drops every state.
    c.idle(4 * INTERVAL_MS);
    assert_eq!(
        (0..3).map(|i| paxos_states(&c, i)).collect::<Vec<_>>(),
        [0, 0, 0]
    );
    // The value is still there, and compare-and-set still judges by it.
    assert_eq!(
        values(&c.request(2, get(&k, Some(Consistency::All)))),
        ["a"]
    );
    let r = c.request(2, cas(&k, Condition::Absent, Some("b")));
    assert_eq!(cas_outcome(&r), (false, Some("a".into())));
    // Collected again: plain writes go through, and a conditional write sees them.
    c.idle(4 * INTERVAL_MS);
    c.request(1, put(&k, "plain", None, None))
        .expect("a plain write to a key whose Paxos state was collected");
    let r = c.request(0, cas(&k, Condition::ValueIs(b"plain".to_vec()), Some("c")));
    assert_eq!(cas_outcome(&r), (true, Some("c".into())));
    assert_eq!(
        cas_outcome(&c.request(1, serial_get(&k))),
        (false, Some("c".into()))
    );
}

#[test]
fn a_chosen_proposal_left_uncommitted_is_committed_before_its_state_is_dropped() {
    let mut c = Cluster::with(3, repairing);
    let k = key("redis", "k");
    // Node 1's commits never reach the others: "a" is chosen (nodes 2 and 3 accepted it)
    // but only node 1's data hold it.
    let r = c.requests_together(
        vec![(0, cas(&k, Condition::Absent, Some("a")))],
        is_commit_from_node_1,
    );
    assert_eq!(
        error(r.into_iter().next().expect("one reply")).code,
        ErrorCode::OutcomeUnknown
    );
    // With node 1 down, nodes 2 and 3 repair the group: "a" is committed to their data
    // before their state is dropped.
    c.kill(0);
    c.idle(6 * INTERVAL_MS);
    assert_eq!([paxos_states(&c, 1), paxos_states(&c, 2)], [0, 0]);
    assert_eq!(values(&c.request(1, get(&k, None))), ["a"]);
    // A compare-and-set after the collection sees it.
    let r = c.request(2, cas(&k, Condition::Absent, Some("b")));
    assert_eq!(cas_outcome(&r), (false, Some("a".into())));
}

#[test]
fn a_ballot_below_a_collected_groups_low_bound_is_refused() {
    let mut c = Cluster::with(3, repairing);
    let k = key("redis", "k");
    let before = c.now;
    c.request(0, cas(&k, Condition::Absent, Some("a")))
        .expect("applied");
    c.idle(4 * INTERVAL_MS);
    assert_eq!(paxos_states(&c, 1), 0);
    // A coordinator whose clock is behind every round's fence (here: a prepare at a ballot
    // from before the compare-and-set, below the rounds' fences) is refused by the group's
    // bound, as if the state were still there.
    let stale = hydra_core::paxos::Ballot::new(
        hydra_core::hlc::Hlc::new(before, 0),
        hydra_core::ids::NodeId(1),
    );
    let mut queue = std::collections::VecDeque::new();
    let envelope = hydra_core::message::Envelope {
        layout_version: c.layout.version(),
        message: Message::PaxosRequest {
            req: hydra_core::ids::RequestId(7),
            key: k.clone(),
            ballot: stale,
            phase: PaxosPhase::Prepare { write: true },
        },
    };
    c.feed(
        1,
        Input::Message {
            from: hydra_core::ids::NodeId(1),
            envelope,
        },
        &mut queue,
    );
    let answer = queue.into_iter().find_map(|(_, input)| match input {
        Input::Message { envelope, .. } => match envelope.message {
            Message::PaxosResponse { result, .. } => Some(result),
            _ => None,
        },
        _ => None,
    });
    assert!(
        matches!(answer, Some(Err(hydra_core::message::PaxosRefusal::Ballot(b))) if b > stale),
        "{answer:?}"
    );
}

/// Bytes (keys and values) node `i` stores under `partition`, and how many entries.
fn stored_under(c: &Cluster, i: usize, partition: hydra_core::ids::PartitionId) -> (usize, usize) {
    let prefix = partition.0.to_be_bytes();
    c.stores[i]
        .entries()
        .iter()
        .filter(|(k, _)| k.starts_with(&prefix))
        .fold((0, 0), |(n, bytes), (k, v)| {
            (n + 1, bytes + k.len() + v.len())
        })
}

#[test]
fn paxos_bytes_per_key_before_and_after_collection() {
    use hydra_core::node::{PAXOS_BOUNDS_PARTITION, PAXOS_PARTITION};
    let mut c = Cluster::with(3, repairing);
    const KEYS: usize = 200;
    for i in 0..KEYS {
        let k = key("redis", &format!("counter:{i:04}"));
        c.request(i % 3, cas(&k, Condition::Absent, Some("1")))
            .expect("applied");
        c.request(
            (i + 1) % 3,
            cas(&k, Condition::ValueIs(b"1".to_vec()), Some("2")),
        )
        .expect("applied");
    }
    let (states, before) = stored_under(&c, 0, PAXOS_PARTITION);
    assert_eq!(states, KEYS, "every key has Paxos state at every primary");
    c.idle(4 * INTERVAL_MS);
    let (left, _) = stored_under(&c, 0, PAXOS_PARTITION);
    let (groups, bounds) = stored_under(&c, 0, PAXOS_BOUNDS_PARTITION);
    assert_eq!(left, 0, "states left after collection");
    // One bound per group (the bucket's keys in one of the 16 partitions), not per key.
    assert!(groups <= 16, "{groups} bounds");
    println!(
        "Paxos bytes per key at one node: {:.1} before collection, {:.1} after ({groups} group bounds of {} bytes in all)",
        before as f64 / KEYS as f64,
        bounds as f64 / KEYS as f64,
        bounds
    );
}

#[test]
fn a_group_of_more_keys_than_one_page_is_settled_page_by_page() {
    let mut c = Cluster::with(3, repairing);
    // About 300 keys per group (16 partitions): more than a primary lists per fence
    // (`PAXOS_REPAIR_KEYS_MAX`).
    const KEYS: usize = 16 * 300;
    for i in 0..KEYS {
        let k = key("redis", &format!("k{i}"));
        c.request(i % 3, cas(&k, Condition::Absent, Some("v")))
            .expect("applied");
    }
    assert_eq!(paxos_states(&c, 0), KEYS);
    c.idle(6 * INTERVAL_MS);
    assert_eq!(
        (0..3).map(|i| paxos_states(&c, i)).collect::<Vec<_>>(),
        [0, 0, 0]
    );
    // Rounds of any primary (each skips a group another fenced lately).
    let repaired: u64 = c
        .nodes
        .iter()
        .map(|n| {
            n.status(hydra_core::ids::Timestamp(c.now))
                .paxos_repair
                .keys_repaired
        })
        .sum();
    assert!(repaired >= KEYS as u64, "{repaired} keys settled");
}
