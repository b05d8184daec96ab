//! Limits that must never brick a key: replicas' merges store no more siblings or bytes than
//! a write may, a read still returns everything acknowledged, and one write with the read's
//! context resolves it everywhere.

mod common;

use common::*;
use hydra_core::bucket::Consistency;
use hydra_core::limits::SIBLINGS_MAX;
use hydra_core::message::ErrorCode;

#[test]
fn a_sibling_flood_across_a_partition_stays_readable_and_one_write_resolves_it() {
    let mut c = Cluster::new(3);
    let k = key("default", "flood");
    // Each node alone: each takes writes nobody else sees, within the limit on its own, past
    // it together (and past what used to decode).
    c.group = vec![0, 1, 2];
    c.idle(6_000);
    let per_node = SIBLINGS_MAX * 4 / 5;
    let mut written = vec![];
    for i in 0..3 {
        for j in 0..per_node {
            let value = format!("n{i}-{j:03}");
            let reply = c.request(i, put(&k, &value, None, Some(Consistency::One)));
            assert!(reply.is_ok(), "{reply:?}");
            written.push(value);
        }
    }
    written.sort();
    // Healed: hints and anti-entropy try to merge the three; no replica stores the union.
    c.group = vec![0, 0, 0];
    c.idle(10_000);
    for i in 0..3 {
        let one = c.request(i, get(&k, Some(Consistency::One)));
        assert!(values(&one).len() <= SIBLINGS_MAX, "node {i} stored more");
    }
    // Nothing acknowledged is lost: a read of every replica returns the union.
    let all = c.request(0, get(&k, Some(Consistency::All)));
    assert_eq!(values(&all), written);
    // A blind write adds to it: replicas refuse it, and the error says how to resolve (a
    // quorum error: the coordinator holds the write, so it is indeterminate).
    let e = error(c.request(1, put(&k, "blind", None, Some(Consistency::All))));
    assert_eq!(e.code, ErrorCode::QuorumNotReached, "{e:?}");
    assert!(
        e.message.contains("siblings") && e.message.contains("context"),
        "{}",
        e.message
    );
    // One write with a read's context resolves the key on every replica.
    let all = c.request(2, get(&k, Some(Consistency::All)));
    assert!(values(&all).len() > written.len() - 1);
    let resolved = c.request(
        2,
        put(&k, "resolved", Some(context(&all)), Some(Consistency::All)),
    );
    assert!(resolved.is_ok(), "{resolved:?}");
    c.idle(5_000);
    for i in 0..3 {
        assert_eq!(
            values(&c.request(i, get(&k, Some(Consistency::One)))),
            ["resolved"]
        );
    }
}

#[test]
fn answered_writes_waiting_for_a_silent_replica_never_make_the_node_refuse_clients() {
    // Node 3 hears nothing: every write is answered at W=2 and then waits for node 3's ack
    // until its deadline. Those waiting writes used to count as requests in flight, so past
    // 10,000 of them the node answered OVERLOADED though every client had its answer. Now
    // they are bounded apart; the oldest ends early and node 3 gets its hint.
    let mut c = Cluster::new(3);
    c.idle(1_000);
    // Cut off now: still believed up, so each write waits for it.
    c.group = vec![0, 0, 1];
    let writes = hydra_core::limits::WRITES_LINGERING_MAX + 500;
    let started = c.now;
    for i in 0..writes {
        let k = key("default", &format!("k{i}"));
        c.request(0, put(&k, "v", None, Some(Consistency::Quorum)))
            .unwrap_or_else(|e| panic!("write {i}: {e:?}"));
    }
    assert!(
        c.now < started + 1_000,
        "the writes outlasted their deadline, so none waited: the test shows nothing"
    );
    // The first write ended early, without node 3's ack: node 3 gets it by handoff.
    c.group = vec![0, 0, 0];
    c.idle(30_000);
    assert!(stored(&c, 2, &key("default", "k0")), "node 3 never got k0");
}

/// A member with valid credentials sends what no node of the cluster could have made: a
/// tombstone whose counter is near the top of `u64` (it would hide the key's value, and
/// every later write of the sender's would overflow its dot), hints for a node that does
/// not exist, a content type and an expiry no client may give. Each is dropped at the peer
/// edge, counted, and the value stays readable.
#[test]
fn members_messages_carrying_impossible_versions_are_refused() {
    use hydra_core::hlc::Hlc;
    use hydra_core::ids::{NodeId, RequestId};
    use hydra_core::message::{Envelope, Message};
    use hydra_core::node::Input;
    use hydra_core::version::{Dvv, Object, Sibling};

    let mut c = Cluster::new(3);
    let k = key("default", "kept");
    let written = c.request(0, put(&k, "v1", None, Some(Consistency::All)));
    let seen = context(&written);
    let huge = Dvv::default()
        .update_from(
            &seen,
            Sibling::tombstone(Hlc::new(1, 0)),
            NodeId(2),
            u64::MAX - 1,
        )
        .expect("one sibling")
        .0;
    let wipe = Object::Siblings(huge);
    let mut queue = std::collections::VecDeque::new();
    let messages = [
        Message::ReplicateRequest {
            req: RequestId(9_001),
            key: k.clone(),
            object: wipe.clone(),
        },
        Message::RepairRequest {
            key: k.clone(),
            object: wipe.clone(),
        },
        Message::HintRequest {
            req: RequestId(9_002),
            key: key("default", "invented"),
            object: c_object("x"),
            owner: NodeId(77),
        },
        Message::ReplicateRequest {
            req: RequestId(9_003),
            key: key("default", "typed"),
            object: c_object_with("x", |s| s.content_type = "t".repeat(10_000).into()),
        },
        Message::ReplicateRequest {
            req: RequestId(9_004),
            key: key("default", "forever"),
            object: c_object_with("x", |s| s.expires_at = Some(u64::MAX)),
        },
    ];
    for message in messages {
        let envelope = Envelope {
            layout_version: c.layout.version(),
            message,
        };
        let from = NodeId(2);
        c.feed(0, Input::Message { from, envelope }, &mut queue);
    }
    assert!(
        queue
            .iter()
            .all(|(_, i)| !matches!(i, Input::Message { .. })),
        "a refused message is not answered: {queue:?}"
    );
    let status = c.nodes[0].status(hydra_core::ids::Timestamp(c.now));
    assert_eq!(status.peer_messages_refused, 5, "{:?}", status.peer_refusal);
    assert!(status.hints.is_empty(), "{:?}", status.hints);
    let read = c.request(0, get(&k, Some(Consistency::One)));
    assert_eq!(values(&read), vec!["v1".to_string()]);
    // The sender itself still writes the key.
    let again = c.request(
        1,
        put(&k, "v2", Some(context(&read)), Some(Consistency::All)),
    );
    assert!(again.is_ok(), "{again:?}");
    let read = c.request(0, get(&k, Some(Consistency::All)));
    assert_eq!(values(&read), vec!["v2".to_string()]);
}

fn c_object(value: &str) -> hydra_core::version::Object {
    c_object_with(value, |_| {})
}

fn c_object_with(
    value: &str,
    change: impl FnOnce(&mut hydra_core::version::Sibling),
) -> hydra_core::version::Object {
    let mut sibling = hydra_core::version::Sibling::value(
        value.as_bytes().to_vec(),
        "text/plain",
        hydra_core::hlc::Hlc::new(1, 0),
    );
    change(&mut sibling);
    let (dvv, _) = hydra_core::version::Dvv::default()
        .update(&Default::default(), sibling, hydra_core::ids::NodeId(2))
        .expect("one sibling");
    hydra_core::version::Object::Siblings(dvv)
}
