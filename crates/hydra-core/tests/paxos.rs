//! Compare-and-set and serial reads through Paxos, driven by the tiny synchronous cluster of
//! `common`: conditions, majorities, a proposal its coordinator left half done, contention,
//! and acceptor state that survives a crash without fsync.

mod common;

use common::*;
use hydra_core::bucket::Consistency;
use hydra_core::message::{ClientRequest, ClientResponse, ErrorCode};
use hydra_core::node::PAXOS_PARTITION;
use hydra_core::paxos::Condition;

#[test]
fn conditional_writes_apply_only_when_their_condition_holds() {
    let mut c = Cluster::new(3);
    let k = key("redis", "lock");
    let r = c.request(0, cas(&k, Condition::Absent, Some("a")));
    assert_eq!(cas_outcome(&r), (true, Some("a".into())));
    // Absent no more: not applied, and the answer carries the current value.
    let r = c.request(1, cas(&k, Condition::Absent, Some("b")));
    assert_eq!(cas_outcome(&r), (false, Some("a".into())));
    // A plain quorum read sees the applied value.
    assert_eq!(values(&c.request(2, get(&k, None))), ["a"]);
    let r = c.request(2, cas(&k, Condition::ValueIs(b"x".to_vec()), Some("c")));
    assert_eq!(cas_outcome(&r), (false, Some("a".into())));
    let r = c.request(2, cas(&k, Condition::ValueIs(b"a".to_vec()), Some("c")));
    assert_eq!(cas_outcome(&r), (true, Some("c".into())));
    // A version condition: the context of a read.
    let ctx = context(&c.request(0, get(&k, Some(Consistency::All))));
    let r = c.request(1, cas(&k, Condition::VersionIs(ctx.clone()), Some("d")));
    assert_eq!(cas_outcome(&r), (true, Some("d".into())));
    let r = c.request(1, cas(&k, Condition::VersionIs(ctx), Some("e")));
    assert_eq!(cas_outcome(&r), (false, Some("d".into())));
    // Delete if present, then absent again.
    let r = c.request(0, cas(&k, Condition::Present, None));
    assert_eq!(cas_outcome(&r), (true, None));
    let r = c.request(0, cas(&k, Condition::Present, None));
    assert_eq!(cas_outcome(&r), (false, None));
    assert_eq!(cas_outcome(&c.request(1, serial_get(&k))), (false, None));
    // The plain path sees the delete too.
    assert!(values(&c.request(2, get(&k, None))).is_empty());
    // The receipt says what Paxos did: one attempt, no contention.
    let Ok(ClientResponse::Cas { paxos, .. }) = c.request(0, cas(&k, Condition::Absent, Some("f")))
    else {
        panic!("not a cas answer");
    };
    assert_eq!(
        (paxos.attempts, paxos.round_trips, paxos.reproposed),
        (1, 3, 0)
    );
}

#[test]
fn a_failed_condition_or_a_serial_read_costs_one_round_trip_when_replicas_agree() {
    let mut c = Cluster::new(3);
    let k = key("redis", "k");
    c.request(0, cas(&k, Condition::Absent, Some("a")))
        .expect("applied");
    // The commit reached every primary in this cluster, so they agree.
    for request in [serial_get(&k), cas(&k, Condition::Absent, Some("b"))] {
        let Ok(ClientResponse::Cas { paxos, applied, .. }) = c.request(1, request) else {
            panic!("not a cas answer");
        };
        assert!(!applied);
        assert_eq!(paxos.round_trips, 1);
    }
}

#[test]
fn a_cas_needs_a_majority_of_the_primaries_and_names_who_answered() {
    let mut c = Cluster::new(3);
    let k = key("redis", "k");
    c.kill(2);
    c.idle(6_000);
    let r = c.request(0, cas(&k, Condition::Absent, Some("a")));
    assert_eq!(cas_outcome(&r), (true, Some("a".into())));
    c.kill(1);
    c.idle(6_000);
    let e = error(c.request(0, cas(&k, Condition::Absent, Some("b"))));
    assert_eq!(e.code, ErrorCode::QuorumNotReached, "{e:?}");
    assert!(e.message.contains("needed 2 of 3"), "{}", e.message);
    assert!(e.message.contains("n2: believed down"), "{}", e.message);
}

#[test]
fn a_proposal_its_coordinator_left_uncommitted_is_finished_by_the_next_one() {
    for bucket in ["redis", "default"] {
        left_uncommitted_then_finished(bucket);
    }
}

fn left_uncommitted_then_finished(bucket: &str) {
    let mut c = Cluster::new(3);
    let k = key(bucket, "k");
    // Node 1's commits never reach the others: its client learns nothing for sure.
    let r = c.requests_together(
        vec![(0, cas(&k, Condition::Absent, Some("a")))],
        is_commit_from_node_1,
    );
    let e = error(r.into_iter().next().expect("one reply"));
    assert_eq!(e.code, ErrorCode::OutcomeUnknown, "{e:?}");
    // Nodes 2 and 3 accepted "a" (a majority): it was chosen. With node 1 (which committed
    // it) down, the next compare-and-set finds it in progress, finishes it first, then finds
    // the key present.
    c.kill(0);
    c.idle(6_000);
    let Ok(ClientResponse::Cas {
        applied,
        siblings,
        paxos,
        ..
    }) = c.request(1, cas(&k, Condition::Absent, Some("b")))
    else {
        panic!("not a cas answer");
    };
    assert!(!applied);
    assert_eq!(siblings[0].value, b"a");
    assert_eq!((paxos.reproposed, paxos.attempts), (1, 2), "{paxos:?}");
    // And the primaries up hold it: plain quorum reads see it.
    assert_eq!(values(&c.request(2, get(&k, None))), ["a"]);
}

#[test]
fn concurrent_set_if_absent_through_every_node_applies_at_most_once() {
    for bucket in ["redis", "default"] {
        set_if_absent_races(bucket);
    }
}

fn set_if_absent_races(bucket: &str) {
    let mut c = Cluster::new(3);
    let (mut applied_total, mut unknown_total) = (0, 0);
    for round in 0..20 {
        let k = key(bucket, &format!("k{round}"));
        let replies = c.requests_together(
            (0..3)
                .map(|i| (i, cas(&k, Condition::Absent, Some(&format!("v{i}")))))
                .collect(),
            |_, _, _| false,
        );
        let (mut applied, mut unknown, mut current) = (vec![], vec![], vec![]);
        for (i, r) in replies.iter().enumerate() {
            match r {
                Ok(ClientResponse::Cas {
                    applied: true,
                    siblings,
                    ..
                }) => applied.push(String::from_utf8_lossy(&siblings[0].value).into_owned()),
                Ok(ClientResponse::Cas { siblings, .. }) => {
                    current.push(String::from_utf8_lossy(&siblings[0].value).into_owned())
                }
                Err(e) if e.code == ErrorCode::OutcomeUnknown => unknown.push(format!("v{i}")),
                Err(e) => assert_eq!(e.code, ErrorCode::CasContention, "{e:?}"),
                Ok(other) => panic!("not a cas answer: {other:?}"),
            }
        }
        assert!(applied.len() <= 1, "round {round}: {replies:?}");
        // The key holds the applied value, else one whose outcome was unknown; every
        // request not applied saw that value.
        let now = c.request(0, serial_get(&k));
        let (_, value) = cas_outcome(&now);
        let value = value.expect("one of them applied");
        assert!(
            applied.contains(&value) || (applied.is_empty() && unknown.contains(&value)),
            "round {round}: holds {value}, applied {applied:?}, unknown {unknown:?}"
        );
        assert!(
            current.iter().all(|v| *v == value),
            "round {round}: {replies:?}"
        );
        assert_eq!(
            values(&c.request(0, get(&k, Some(Consistency::All)))),
            [value]
        );
        applied_total += applied.len();
        unknown_total += unknown.len();
    }
    // Contention costs some certainty, never much.
    assert!(
        applied_total >= 10,
        "{applied_total} applied, {unknown_total} unknown"
    );
}

#[test]
fn acceptor_state_survives_a_crash_without_fsync() {
    let mut c = Cluster::new(3);
    c.acks_without_fsync = true;
    let k = key("redis", "k");
    c.request(0, cas(&k, Condition::Absent, Some("a")))
        .expect("applied");
    for i in 0..3 {
        c.kill(i);
        let state =
            hydra_core::store::Store::scan_partition(&c.stores[i], PAXOS_PARTITION, None, 10)
                .expect("scan");
        assert_eq!(state.len(), 1, "node {i} lost its Paxos state in the crash");
        c.restart(i);
    }
    c.idle(2_000);
    let r = c.request(2, cas(&k, Condition::Absent, Some("b")));
    assert_eq!(cas_outcome(&r), (false, Some("a".into())));
}

#[test]
fn compare_and_set_in_a_siblings_bucket_supersedes_exactly_what_it_read() {
    let mut c = Cluster::new(3);
    let k = key("default", "k");
    let r = c.request(0, cas(&k, Condition::Absent, Some("a")));
    assert_eq!(cas_outcome(&r), (true, Some("a".into())));
    let r = c.request(1, cas(&k, Condition::Absent, Some("b")));
    assert_eq!(cas_outcome(&r), (false, Some("a".into())));
    assert_eq!(values(&c.request(2, get(&k, None))), ["a"]);
    // The commit is an event of node 1's Paxos writer, not of node 1.
    let ctx = context(&c.request(0, get(&k, Some(Consistency::All))));
    assert!(
        ctx.0.keys().all(|n| n.is_paxos_writer()) && ctx.0.len() == 1,
        "{ctx:?}"
    );
    let r = c.request(1, cas(&k, Condition::VersionIs(ctx.clone()), Some("c")));
    assert_eq!(cas_outcome(&r), (true, Some("c".into())));
    let r = c.request(2, cas(&k, Condition::VersionIs(ctx), Some("d")));
    assert_eq!(cas_outcome(&r), (false, Some("c".into())));
    assert_eq!(
        values(&c.request(0, get(&k, Some(Consistency::All)))),
        ["c"]
    );
    // Siblings made by plain writes (before any compare-and-set of the key) are resolved by
    // one write with the context of their read, and only then.
    let s = key("default", "s");
    for (at, v) in [(0, "x"), (1, "y")] {
        c.request(at, put(&s, v, None, None)).expect("plain write");
    }
    let read = c.request(2, get(&s, Some(Consistency::All)));
    assert_eq!(values(&read), ["x", "y"]);
    let r = c.request(2, cas(&s, Condition::Absent, Some("z")));
    assert!(!cas_outcome(&r).0);
    let r = c.request(0, cas(&s, Condition::VersionIs(context(&read)), Some("z")));
    assert_eq!(cas_outcome(&r), (true, Some("z".into())));
    for at in 0..3 {
        assert_eq!(
            values(&c.request(at, get(&s, Some(Consistency::All)))),
            ["z"]
        );
    }
    // A conditional delete leaves a tombstone: absent to both paths.
    let r = c.request(1, cas(&s, Condition::Present, None));
    assert_eq!(cas_outcome(&r), (true, None));
    assert_eq!(cas_outcome(&c.request(2, serial_get(&s))), (false, None));
    assert!(values(&c.request(0, get(&s, Some(Consistency::All)))).is_empty());
    let r = c.request(2, cas(&s, Condition::Absent, Some("w")));
    assert_eq!(cas_outcome(&r), (true, Some("w".into())));
}

#[test]
fn an_all_writes_siblings_bucket_keeps_concurrent_values_as_siblings() {
    let mut c = Cluster::new(3);
    let k = key("serial-sets", "k");
    // Blind writes through Paxos supersede nothing: siblings, as on the plain path.
    for (at, v) in [(0, "a"), (1, "b")] {
        let r = c.request(at, put(&k, v, None, None));
        assert!(matches!(r, Ok(ClientResponse::Written { .. })), "{r:?}");
    }
    let read = c.request(2, get(&k, None));
    assert_eq!(values(&read), ["a", "b"]);
    // A write with the read's context supersedes exactly what it read.
    c.request(0, put(&k, "c", Some(context(&read)), None))
        .expect("write");
    let read = c.request(1, get(&k, None));
    assert_eq!(values(&read), ["c"]);
    // A write with an older context leaves the newer value as a sibling.
    c.request(2, put(&k, "d", Some(context(&read)), None))
        .expect("write");
    c.request(1, put(&k, "e", Some(context(&read)), None))
        .expect("write");
    assert_eq!(values(&c.request(0, get(&k, None))), ["d", "e"]);
    assert_eq!(
        values(&c.request(0, get(&k, Some(Consistency::All)))),
        ["d", "e"]
    );
}

#[test]
fn a_plain_write_to_a_key_compare_and_set_manages_is_refused_by_name() {
    let mut c = Cluster::new(3);
    let k = key("redis", "lock");
    // Before any compare-and-set the key takes plain writes.
    c.request(0, put(&k, "plain", None, None))
        .expect("plain write");
    c.request(1, cas(&k, Condition::ValueIs(b"plain".to_vec()), Some("a")))
        .expect("applied");
    // Every primary holds the key's Paxos state now: a plain write or delete through any
    // node is refused, naming the key and the way out, and changes nothing.
    for at in 0..3 {
        for request in [
            put(&k, "b", None, None),
            delete(&k, context(&c.request(at, get(&k, None)))),
        ] {
            let e = error(c.request(at, request));
            assert_eq!(e.code, ErrorCode::CasManagedKey, "{e:?}");
            assert!(
                e.message.contains("lock") && e.message.contains("IFEQ"),
                "{}",
                e.message
            );
        }
    }
    assert_eq!(
        values(&c.request(2, get(&k, Some(Consistency::All)))),
        ["a"]
    );
    // Conditional writes still go through.
    let r = c.request(2, cas(&k, Condition::ValueIs(b"a".to_vec()), Some("c")));
    assert_eq!(cas_outcome(&r), (true, Some("c".into())));
    // Other keys are untouched.
    c.request(0, put(&key("redis", "other"), "x", None, None))
        .expect("plain write");
}

#[test]
fn a_bucket_with_cas_off_refuses_conditional_writes_and_serial_reads() {
    let mut c = Cluster::new(3);
    let k = key("nocas", "k");
    for request in [cas(&k, Condition::Absent, Some("a")), serial_get(&k)] {
        let e = error(c.request(0, request));
        assert_eq!(e.code, ErrorCode::CasNotSupported);
        assert!(e.message.contains("cas = off"), "{}", e.message);
    }
    c.request(0, put(&k, "a", None, None)).expect("plain write");
}

#[test]
fn every_write_of_an_all_writes_bucket_goes_through_paxos() {
    let mut c = Cluster::new(3);
    let k = key("serial", "k");
    // A plain write answers as one, and leaves Paxos state on a majority of primaries.
    let written = c.request(0, put(&k, "a", None, None));
    assert!(
        matches!(written, Ok(ClientResponse::Written { .. })),
        "{written:?}"
    );
    let holders = (0..3)
        .filter(|i| {
            !hydra_core::store::Store::scan_partition(&c.stores[*i], PAXOS_PARTITION, None, 10)
                .expect("scan")
                .is_empty()
        })
        .count();
    assert!(holders >= 2, "Paxos state on {holders} nodes");
    // A read without a level is a serial read, answered as a read.
    let read = c.request(1, get(&k, None));
    assert_eq!(values(&read), ["a"]);
    // Deletes too, and the quorum path sees them.
    c.request(2, delete(&k, context(&read))).expect("delete");
    assert!(values(&c.request(1, get(&k, Some(Consistency::Quorum)))).is_empty());
    // Never refused as cas-managed: every write is one Paxos manages.
    c.request(1, put(&k, "b", None, None)).expect("plain write");
    let read_b = c.request(0, get(&k, None));
    assert_eq!(values(&read_b), ["b"]);
    // A delete bound to the version read (`GETDEL`) applies only to that version: after
    // another write it is refused (412), and the newer value stays.
    c.request(1, put(&k, "c", None, None)).expect("plain write");
    let ClientRequest::Put(mut bound) = delete(&k, context(&read_b)) else {
        unreachable!("a delete is a put")
    };
    bound.on_version = Some(hydra_core::message::VersionOp::Delete);
    let e = error(c.request(2, ClientRequest::Put(bound)));
    assert_eq!(e.code, ErrorCode::PreconditionFailed, "{e:?}");
    assert_eq!(values(&c.request(0, get(&k, None))), ["c"]);
}

#[test]
fn a_replica_without_the_paxos_state_coordinates_but_the_others_refuse() {
    let mut c = Cluster::new(3);
    let k = key("redis", "k");
    c.kill(2);
    c.idle(6_000);
    c.request(0, cas(&k, Condition::Absent, Some("a")))
        .expect("applied by a majority");
    c.restart(2);
    c.idle(6_000);
    // Node 2 holds no Paxos state for the key; the two that do refuse its replicas, so the
    // write fails with W out of reach (it may have landed on node 2 alone, as any failed
    // write may).
    let e = error(c.request(2, put(&k, "b", None, None)));
    assert_eq!(e.code, ErrorCode::CasManagedKey, "{e:?}");
    assert_eq!(e.quorum(), Some((2, 1)), "{e:?}");
    // The refusal is best effort: the failed write landed on node 2, and like any failed
    // write it may take effect later. Here the serial read's quorum includes node 2, so it
    // takes effect now (its timestamp is the latest), and every path agrees from then on.
    // (`cas = all_writes` has no such window.)
    assert_eq!(
        cas_outcome(&c.request(2, serial_get(&k))),
        (false, Some("b".into()))
    );
    assert_eq!(
        values(&c.request(0, get(&k, Some(Consistency::All)))),
        ["b"]
    );
}
