//! The node state machine on `lww` buckets, TTLs, clocks and durability modes, driven by the
//! tiny synchronous cluster of `common`.

mod common;

use common::*;
use hydra_core::bucket::Consistency;
use hydra_core::ids::Timestamp;
use hydra_core::message::{ClientRequest, ErrorCode, Expiry, WriteRequest};
use hydra_core::node::Node;

#[test]
fn lww_keeps_the_last_write_and_a_node_whose_clock_runs_ahead_stamps_nothing() {
    let mut c = Cluster::new(3);
    // Node 1's clock runs 10 s ahead (skew limit 1 s): its peers' heartbeats show it.
    c.skew_ms[0] = 10_000;
    c.idle(1_000);
    let k = key("redis", "k");
    c.request(1, put(&k, "first", None, None)).expect("ok");
    c.request(2, put(&k, "second", None, None)).expect("ok");
    assert_eq!(
        values(&c.request(2, get(&k, Some(Consistency::All)))),
        ["second"]
    );
    // Node 1 refuses to stamp a write (or judge an lww read) with its clock, naming its
    // offset; the others would refuse its timestamps anyway (too far ahead).
    let e = error(c.request(0, put(&k, "future", None, Some(Consistency::All))));
    assert_eq!(e.code, ErrorCode::ClockSkew);
    assert!(
        e.message.contains("its clock is 10000 ms off"),
        "{}",
        e.message
    );
    let e = error(c.request(0, get(&k, None)));
    assert_eq!(e.code, ErrorCode::ClockSkew);
    let status = c.nodes[0].status(Timestamp(c.now)).clock;
    assert_eq!((status.state, status.offset_ms), ("skewed", Some(10_000)));
    // Its clock put right, it verifies it with its peers and coordinates again.
    c.skew_ms[0] = 0;
    c.idle(1_000);
    c.request(0, put(&k, "third", None, Some(Consistency::All)))
        .expect("ok once the clock is right");
    assert_eq!(
        values(&c.request(2, get(&k, Some(Consistency::All)))),
        ["third"]
    );
}

#[test]
fn values_expire_then_are_reaped_like_tombstones() {
    let mut c = Cluster::new(3);
    let k = key("default", "session");
    let write = ClientRequest::put(WriteRequest {
        key: k.clone(),
        value: Some(b"token".to_vec()),
        content_type: "text/plain".into(),
        context: None,
        w: Some(Consistency::All),
        timeout_ms: None,
        sloppy: None,
        expiry: Some(Expiry::AfterMs(2000)),
        on_version: None,
        collection: None,
    });
    c.request(0, write).expect("write with a ttl");
    assert_eq!(
        values(&c.request(1, get(&k, Some(Consistency::One)))),
        ["token"]
    );
    c.idle(2_500);
    // Expired: absent on every read path, though still stored.
    assert!(values(&c.request(1, get(&k, Some(Consistency::One)))).is_empty());
    assert!(values(&c.request(2, get(&k, Some(Consistency::All)))).is_empty());
    // The first primary's sweep deletes it; the tombstone is reaped after the grace.
    c.idle(8_000);
    assert!(
        (0..3).all(|i| !stored(&c, i, &k)),
        "the expired value was never reaped"
    );
    // A bad ttl is refused with a named error.
    let bad = ClientRequest::put(WriteRequest {
        key: k.clone(),
        value: Some(b"x".to_vec()),
        content_type: "text/plain".into(),
        context: None,
        w: None,
        timeout_ms: None,
        sloppy: None,
        expiry: Some(Expiry::AfterMs(0)),
        on_version: None,
        collection: None,
    });
    let e = error(c.request(0, bad));
    assert_eq!(e.code, ErrorCode::InvalidTtl);
}

#[test]
fn a_restarted_coordinator_keeps_its_clock_ahead_of_what_it_issued_but_near_the_wall_clock() {
    let mut c = Cluster::new(3);
    let k = key("redis", "k");
    c.request(0, put(&k, "before", None, Some(Consistency::All)))
        .expect("ok");
    hydra_core::store::Store::sync(&mut c.stores[0]).expect("sync");
    c.kill(0);
    c.restart(0);
    c.idle(1_000);
    // lww writes stamped more than the skew limit ahead are refused: the persisted clock mark
    // must not push a restarted node that far ahead.
    c.request(0, put(&k, "after", None, Some(Consistency::All)))
        .expect("a restarted node can write");
    assert_eq!(
        values(&c.request(1, get(&k, Some(Consistency::All)))),
        ["after"]
    );
}

#[test]
fn an_lww_expiry_never_beats_a_refresh_its_sweeper_missed() {
    // A session key is written with a short TTL and refreshed while its first primary is
    // down. Back up, that primary's sweep sees its own stale copy expired; the delete it
    // issues must carry the expired value's identity, not a timestamp taken now, or it beats
    // the refresh everywhere (acknowledged write lost).
    let mut c = Cluster::new(3);
    // A key of partition 0: the restarted node sweeps it in its very first call, before
    // handoff or anti-entropy could bring it the refresh.
    let k = (0..10_000)
        .map(|i| key("redis", &format!("session{i}")))
        .find(|k| c.layout.partition_for("redis", k.key()).0 == 0)
        .expect("some key lands in partition 0");
    let order = c
        .layout
        .preference_list(hydra_core::ids::PartitionId(0), 3)
        .to_vec();
    let first = (order[0].0 - 1) as usize;
    let other = (order[1].0 - 1) as usize;
    c.request(first, put_ttl(&k, "v1", 1_000, Consistency::All))
        .expect("first write");
    hydra_core::store::Store::sync(&mut c.stores[first]).expect("sync");
    c.idle(500);
    c.kill(first);
    c.idle(6_000);
    c.request(other, put_ttl(&k, "v2", 600_000, Consistency::Quorum))
        .expect("the refresh is acknowledged by two replicas");
    // Time passes before the primary comes back: a delete stamped "now" would be newer.
    c.idle(1_000);
    c.restart(first);
    c.idle(3_000);
    assert_eq!(
        values(&c.request(other, get(&k, Some(Consistency::All)))),
        ["v2"],
        "the acknowledged refresh was lost to the expiry of the value it replaced"
    );
    // A value nobody refreshed still expires, and its tombstone is reaped everywhere.
    let gone = key("redis", "gone");
    c.request(0, put_ttl(&gone, "x", 1_000, Consistency::All))
        .expect("write");
    c.idle(10_000);
    assert!(values(&c.request(1, get(&gone, Some(Consistency::All)))).is_empty());
    assert!(
        (0..3).all(|i| !stored(&c, i, &gone)),
        "the expired lww value was never reaped"
    );
}

#[test]
fn an_lww_write_carrying_a_reads_context_beats_what_that_read_saw() {
    // A client reads v1 (written by a node whose clock runs ahead, within the skew limit),
    // then writes v2 with the read's context through a replica that has not got v1 yet and
    // whose clock is behind: v2 must still be the newer version.
    let mut c = Cluster::new(3);
    let k = key("redis", "profile");
    let partition = c.layout.partition_for("redis", b"profile");
    let order = c.layout.preference_list(partition, 3).to_vec();
    let (fast, slow) = ((order[0].0 - 1) as usize, (order[2].0 - 1) as usize);
    c.skew_ms[fast] = 400;
    // No handoff or anti-entropy: the slow replica gets v1 from nobody.
    let quiet = |id: u64| {
        let mut cfg = config(id);
        cfg.handoff_interval_ms = 0;
        cfg.anti_entropy_interval_ms = 0;
        cfg
    };
    for n in &mut c.nodes {
        *n = Node::new(quiet(n.id().0), c.layout.clone());
    }
    c.idle(1_000);
    c.kill(slow);
    c.idle(6_000);
    c.request(fast, put(&k, "v1", None, Some(Consistency::Quorum)))
        .expect("v1 at two replicas");
    let read = c.request(fast, get(&k, Some(Consistency::Quorum)));
    assert_eq!(values(&read), ["v1"]);
    c.down.remove(&slow);
    c.nodes[slow] = Node::new(quiet(slow as u64 + 1), c.layout.clone());
    c.idle(1_000); // its clock verified by a heartbeat round trip
    c.request(
        slow,
        put(&k, "v2", Some(context(&read)), Some(Consistency::Quorum)),
    )
    .expect("v2");
    assert_eq!(
        values(&c.request(fast, get(&k, Some(Consistency::All)))),
        ["v2"],
        "the client's own later write lost to the version it had read"
    );
}

/// `periodic`/`none` durability: acks wait for no fsync, but a new dot must be on disk before
/// it leaves. Else node 1 writes v1 (dot n1:2) to every replica, crashes before its own copy
/// is synced, comes back holding n1:1 and names v2 n1:2 too; replicas holding v1 under that
/// dot never take v2. Returns whether the replicas converged.
fn a_coordinator_crashes_after_sending_a_dot_without_fsync() -> bool {
    let mut c = Cluster::new(3);
    c.acks_without_fsync = true;
    // No handoff or anti-entropy: node 1 learns of n1:2 from nobody after its restart.
    let quiet = |id: u64| {
        let mut cfg = config(id);
        cfg.handoff_interval_ms = 0;
        cfg.anti_entropy_interval_ms = 0;
        cfg
    };
    for n in &mut c.nodes {
        *n = Node::new(quiet(n.id().0), c.layout.clone());
    }
    c.idle(1_000);
    let k = key("default", "reused");
    c.request(0, put(&k, "v0", None, Some(Consistency::All)))
        .expect("v0");
    hydra_core::store::Store::sync(&mut c.stores[0]).expect("sync");
    c.request(0, put(&k, "v1", None, Some(Consistency::All)))
        .expect("v1");
    c.kill(0);
    c.down.remove(&0);
    c.nodes[0] = Node::new(quiet(1), c.layout.clone());
    c.idle(1_000);
    c.request(0, put(&k, "v2", None, Some(Consistency::All)))
        .expect("v2");
    let p = c.layout.partition_for(k.bucket.as_str(), k.key());
    let objects: Vec<_> = (0..3)
        .map(|i| hydra_core::store::Store::get(&c.stores[i], &k.storage_key(p)).expect("memstore"))
        .collect();
    objects.iter().all(|o| *o == objects[0])
}

#[test]
fn without_fsync_a_crashed_coordinator_never_reuses_a_dot() {
    assert!(
        a_coordinator_crashes_after_sending_a_dot_without_fsync(),
        "replicas diverged: a dot was reused"
    );
}

/// The scenario above catches a sync of a new dot that is not made real.
#[cfg(feature = "planted-bugs")]
#[test]
fn a_dot_sent_before_it_is_on_disk_makes_replicas_diverge() {
    use hydra_core::bugs::{PlantedBugs, set_planted};
    set_planted(PlantedBugs {
        dots_leave_unsynced: true,
        ..PlantedBugs::default()
    });
    let converged = a_coordinator_crashes_after_sending_a_dot_without_fsync();
    set_planted(PlantedBugs::default());
    assert!(!converged, "the reused dot went unnoticed");
}

#[test]
fn a_version_delete_naming_a_version_beyond_the_skew_bound_is_refused() {
    // A context is client input (an HTTP header): a forged one naming a version thousands of
    // years ahead would leave a tombstone on the coordinator that beats every later write.
    let mut c = Cluster::new(3);
    c.idle(1_000);
    let k = key("redis", "k");
    c.request(0, put(&k, "v", None, None)).expect("ok");
    let mut forged = hydra_core::version::VersionVector::default();
    forged
        .0
        .insert(hydra_core::ids::NodeId(1), (1u64 << 62) - 1);
    let reply = c.request(
        0,
        ClientRequest::put(WriteRequest {
            key: k.clone(),
            value: None,
            content_type: Default::default(),
            context: Some(forged),
            w: None,
            timeout_ms: None,
            sloppy: None,
            expiry: None,
            on_version: Some(hydra_core::message::VersionOp::Delete),
            collection: None,
        }),
    );
    assert_eq!(error(reply).code, ErrorCode::InvalidContext);
    c.request(0, put(&k, "later", None, None)).expect("ok");
    assert_eq!(
        values(&c.request(0, get(&k, Some(Consistency::All)))),
        ["later"]
    );
}

/// The expiry a write stores: an absolute time exactly as the client gave it (Redis `PXAT`),
/// whatever the coordinator's clock reads; a TTL counted from that clock; an absolute time
/// too far ahead refused with a named error. Plain writes and compare-and-set alike.
#[test]
fn an_absolute_expiry_is_stored_exactly_and_a_ttl_from_the_coordinators_clock() {
    let mut c = Cluster::new(3);
    // The coordinator's clock runs 300 ms ahead of the others.
    c.skew_ms[0] = 300;
    let expires_at = |reply: &Reply| match reply {
        Ok(hydra_core::message::ClientResponse::Read { siblings, .. }) => {
            assert_eq!(siblings.len(), 1, "{siblings:?}");
            siblings[0].expires_at
        }
        other => panic!("not a read: {other:?}"),
    };
    let write = |k: &hydra_core::key::ObjectKey, expiry| {
        ClientRequest::put(WriteRequest {
            key: k.clone(),
            value: Some(b"v".to_vec()),
            content_type: "text/plain".into(),
            context: None,
            w: Some(Consistency::All),
            timeout_ms: None,
            sloppy: None,
            expiry: Some(expiry),
            on_version: None,
            collection: None,
        })
    };
    let at = c.now + 60_123;
    let k = key("default", "at");
    c.request(0, write(&k, Expiry::AtMs(at)))
        .expect("an absolute expiry");
    assert_eq!(expires_at(&c.request(1, get(&k, None))), Some(at));
    let k = key("default", "after");
    let coordinator_now = c.now + 300;
    c.request(0, write(&k, Expiry::AfterMs(60_000)))
        .expect("a ttl");
    assert_eq!(
        expires_at(&c.request(1, get(&k, None))),
        Some(coordinator_now + 60_000)
    );
    // Through compare-and-set too.
    let k = key("default", "cas");
    let mut request = cas(&k, hydra_core::paxos::Condition::Absent, Some("v"));
    if let ClientRequest::Cas(r) = &mut request
        && let hydra_core::message::CasAction::Write { expiry, .. } = &mut r.action
    {
        *expiry = Some(Expiry::AtMs(at + 1));
    }
    assert!(
        cas_outcome(&c.request(0, request)).0,
        "the compare-and-set applied"
    );
    assert_eq!(expires_at(&c.request(2, get(&k, None))), Some(at + 1));
    // More than the longest TTL ahead of the coordinator's clock: refused, named.
    let far = c.now + 300 + hydra_core::limits::TTL_SECS_MAX * 1000 + 1;
    let e = error(c.request(0, write(&key("default", "far"), Expiry::AtMs(far))));
    assert_eq!(e.code, ErrorCode::InvalidTtl);
    assert!(e.message.contains("expiry time"), "{}", e.message);
}
