//! Garbage is always collected: a tombstone whose reap never happened (a primary missed the
//! delete, or anti-entropy copied it back to replicas that had reaped it) is found by the
//! sweep and reaped in the end; nothing deleted comes back.

mod common;

use common::*;
use hydra_core::bucket::Consistency;
use hydra_core::ids::Timestamp;
use hydra_core::key::ObjectKey;

fn reissued(c: &Cluster) -> u64 {
    c.nodes
        .iter()
        .map(|n| n.status(Timestamp(c.now)).tombstones_reissued)
        .sum()
}

/// A key written to all three primaries, then deleted while node 3 was cut off: nodes 1
/// and 2 hold its tombstone, and no reap was scheduled (node 3 never acked).
fn delete_one_primary_missed(c: &mut Cluster, name: &str) -> ObjectKey {
    let k = key("default", name);
    c.request(0, put(&k, "x", None, Some(Consistency::All)))
        .expect("ok");
    c.group = vec![0, 0, 1];
    c.idle(6_000);
    let read = c.request(0, get(&k, None));
    c.request(0, delete(&k, context(&read)))
        .expect("delete at quorum");
    c.idle(5_000);
    k
}

#[test]
fn a_delete_one_primary_missed_is_reaped_once_it_has_it() {
    let mut c = Cluster::new(3);
    let k = delete_one_primary_missed(&mut c, "missed");
    assert!(stored(&c, 0, &k), "reaped without node 3's ack");
    // Node 3 is back: handoff gives it the delete, but nobody scheduled a reap for it.
    c.group = vec![0, 0, 0];
    c.idle(20_000);
    assert!(
        (0..3).all(|i| !stored(&c, i, &k)),
        "the tombstone is still stored"
    );
    assert!(reissued(&c) > 0);
    assert!(values(&c.request(2, get(&k, Some(Consistency::All)))).is_empty());
}

#[test]
fn a_tombstone_anti_entropy_copies_back_after_a_reap_is_reaped_again() {
    let mut c = Cluster::new(3);
    let k = key("default", "copied");
    c.request(0, put(&k, "x", None, Some(Consistency::All)))
        .expect("ok");
    let read = c.request(0, get(&k, Some(Consistency::All)));
    c.request(0, delete(&k, context(&read))).expect("delete");
    c.idle(500);
    // Every primary acked; before the grace passes node 3 is cut off, so its reap is lost.
    c.group = vec![0, 0, 1];
    c.idle(4_000);
    assert!(!stored(&c, 0, &k) && stored(&c, 2, &k), "the reap ran");
    // Node 3 is back: anti-entropy copies its tombstone to the others.
    c.group = vec![0, 0, 0];
    let mut copied_back = false;
    for _ in 0..30 {
        c.idle(500);
        copied_back |= stored(&c, 0, &k) || stored(&c, 1, &k);
    }
    assert!(copied_back, "anti-entropy did not copy the tombstone back");
    c.idle(20_000);
    assert!(
        (0..3).all(|i| !stored(&c, i, &k)),
        "the tombstone is still stored"
    );
    assert!(values(&c.request(1, get(&k, Some(Consistency::All)))).is_empty());
}

#[test]
fn expiry_keeps_up_with_a_ttl_heavy_load_and_leaves_no_garbage() {
    let mut c = Cluster::new(3);
    let keys = 3_000;
    for i in 0..keys {
        let k = key("redis", &format!("session{i}"));
        c.request(i % 3, put_ttl(&k, "v", 1_000, Consistency::Quorum))
            .expect("written");
    }
    let status = |c: &Cluster, f: fn(&hydra_core::node::NodeStatus) -> u64| -> u64 {
        c.nodes.iter().map(|n| f(&n.status(Timestamp(c.now)))).sum()
    };
    // Each expired value is deleted once, by its key's first primary, within a few 100 ms
    // rounds of the expiry index (the full sweep alone takes a partition a round).
    c.idle(1_000 + 700);
    assert_eq!(status(&c, |s| s.expired_deleted), keys as u64);
    // Then every tombstone is reaped after the grace: nothing is left anywhere.
    c.idle(2_000 + 1_000);
    assert_eq!(status(&c, |s| s.objects as u64), 0);
    assert_eq!(status(&c, |s| s.reaps_pending as u64), 0);
}

#[test]
fn an_expiry_a_primary_missed_is_not_reaped_until_it_holds_it_and_the_older_value_never_returns() {
    let mut c = Cluster::new(3);
    let name = "session";
    let k = key("redis", name);
    let partition = c.layout.partition_for("redis", name.as_bytes());
    let order = c.layout.extended_preference_list(partition).to_vec();
    let (first, last) = ((order[0].0 - 1) as usize, (order[2].0 - 1) as usize);
    c.request(first, put(&k, "v0", None, Some(Consistency::All)))
        .expect("written everywhere");
    // The key's last primary is cut off: it keeps v0 and misses v1 (written with a short
    // TTL at quorum); the first primary, which deletes what expires, is not.
    c.group = vec![0, 0, 0];
    c.group[last] = 1;
    c.idle(6_000);
    c.request(first, put_ttl(&k, "v1", 500, Consistency::Quorum))
        .expect("written at quorum");
    // v1 expires and the grace passes; the cut-off primary never answered the expiry
    // batch, so the tombstone is not reaped on the others (else v0 would come back).
    c.idle(500 + 2_000 + 1_000);
    assert!(stored(&c, first, &k), "reaped without every primary's ack");
    c.group = vec![0, 0, 0];
    // Anti-entropy and the sweep of old tombstones bring node 3 the tombstone; then all of
    // it is reaped.
    c.idle(20_000);
    for at in 0..3 {
        assert!(
            values(&c.request(at, get(&k, Some(Consistency::All)))).is_empty(),
            "v0 came back"
        );
    }
    assert!(
        (0..3).all(|i| !stored(&c, i, &k)),
        "the tombstone is still stored"
    );
}

#[test]
fn the_sweep_pauses_with_anti_entropy_and_finds_the_tombstone_once_resumed() {
    let mut c = Cluster::new(3);
    let k = delete_one_primary_missed(&mut c, "paused");
    for n in c.nodes.iter_mut() {
        n.set_anti_entropy(false);
    }
    c.group = vec![0, 0, 0];
    c.idle(20_000);
    assert_eq!(reissued(&c), 0, "the sweep ran while paused");
    assert!(stored(&c, 0, &k), "reaped without the sweep");
    for n in c.nodes.iter_mut() {
        n.set_anti_entropy(true);
    }
    c.idle(20_000);
    assert!(reissued(&c) > 0);
    assert!(
        (0..3).all(|i| !stored(&c, i, &k)),
        "the tombstone is still stored"
    );
}
