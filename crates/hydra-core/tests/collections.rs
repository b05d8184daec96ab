//! Hashes and sets in the node state machine, driven by the tiny synchronous cluster of
//! `common`: updates through different coordinators merge, a key of another type is refused
//! as Redis refuses it, and a hash whose TTL passed is swept and reaped like a tombstone.

mod common;

use common::*;
use hydra_core::bucket::Consistency;
use hydra_core::collection::{Collection, CollectionKind, CollectionUpdate};
use hydra_core::key::ObjectKey;
use hydra_core::message::{
    CasAction, CasRequest, ClientRequest, ClientResponse, ErrorCode, Expiry, WriteRequest,
};
use hydra_core::paxos::Condition;
use hydra_core::version::Dot;

fn update(k: &ObjectKey, u: CollectionUpdate) -> ClientRequest {
    ClientRequest::put(WriteRequest {
        key: k.clone(),
        value: None,
        content_type: Default::default(),
        context: None,
        w: Some(Consistency::All),
        timeout_ms: None,
        sloppy: None,
        expiry: None,
        on_version: None,
        collection: Some(u),
    })
}

fn hset(field: &str, value: &str) -> CollectionUpdate {
    CollectionUpdate {
        kind: CollectionKind::Hash,
        adds: vec![(field.as_bytes().to_vec(), value.as_bytes().to_vec())],
        ..Default::default()
    }
}

fn read(c: &mut Cluster, at: usize, k: &ObjectKey) -> Option<Collection> {
    match c.request(at, get(k, Some(Consistency::All))) {
        Ok(ClientResponse::Read { collection, .. }) => {
            collection.map(|c| *c).filter(|c| !c.is_empty())
        }
        other => panic!("{other:?}"),
    }
}

fn fields(c: &Option<Collection>, now: u64) -> Vec<(String, String)> {
    c.as_ref()
        .map(|c| {
            c.elements(now)
                .into_iter()
                .map(|(f, v)| {
                    (
                        String::from_utf8_lossy(f).into_owned(),
                        String::from_utf8_lossy(v).into_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn updates_through_different_coordinators_merge_and_a_remove_takes_what_it_read() {
    let mut c = Cluster::new(3);
    let k = key("redis", "doc");
    c.request(0, update(&k, hset("a", "1"))).expect("hset a");
    c.request(1, update(&k, hset("b", "2"))).expect("hset b");
    c.request(2, update(&k, hset("c", "3"))).expect("hset c");
    let now = c.now;
    let got = read(&mut c, 0, &k);
    assert_eq!(
        fields(&got, now),
        [("a", "1"), ("b", "2"), ("c", "3")].map(|(f, v)| (f.to_string(), v.to_string()))
    );
    // HDEL b, naming the dots the read showed.
    let dots = got.as_ref().and_then(|c| c.get(b"b", now)).expect("b").0;
    let del = CollectionUpdate {
        kind: CollectionKind::Hash,
        removes: vec![(b"b".to_vec(), dots)],
        ..Default::default()
    };
    c.request(2, update(&k, del)).expect("hdel b");
    let got = read(&mut c, 1, &k);
    assert_eq!(fields(&got, c.now).len(), 2);
    assert!(got.expect("a hash").get(b"b", c.now).is_none());
    // A plain value and a set are other types: refused as Redis refuses them.
    let s = key("redis", "str");
    c.request(0, put(&s, "v", None, Some(Consistency::All)))
        .expect("set");
    let e = error(c.request(1, update(&s, hset("f", "v"))));
    assert_eq!(e.code, ErrorCode::WrongType);
    let sadd = CollectionUpdate {
        kind: CollectionKind::Set,
        adds: vec![(b"m".to_vec(), vec![])],
        ..Default::default()
    };
    let e = error(c.request(2, update(&k, sadd)));
    assert_eq!(e.code, ErrorCode::WrongType);
    // Hashes and sets need an lww bucket.
    let e = error(c.request(0, update(&key("default", "h"), hset("f", "v"))));
    assert_eq!(e.code, ErrorCode::WrongType);
    assert!(e.message.contains("lww"), "{}", e.message);
}

#[test]
fn a_hash_whose_ttl_passed_reads_as_absent_then_is_swept_and_reaped() {
    let mut c = Cluster::new(3);
    let k = key("redis", "session");
    let mut u = hset("user", "ada");
    u.expiry = Some(Some(Expiry::AfterMs(2_000)));
    c.request(0, update(&k, u)).expect("hset with a ttl");
    let now = c.now;
    let got = read(&mut c, 1, &k);
    assert_eq!(fields(&got, now).len(), 1);
    assert_eq!(
        got.expect("a hash").expires_at(now),
        Some(now + 2_000),
        "the TTL is the key's"
    );
    c.idle(2_500);
    assert!(read(&mut c, 2, &k).is_none(), "expired: absent");
    // The first primary's sweep writes a floor at the expiry; it is reaped after the grace.
    c.idle(8_000);
    assert!(
        (0..3).all(|i| !stored(&c, i, &k)),
        "the expired hash was never reaped"
    );
    // The key is new afterwards: no TTL, only what was added since.
    c.request(1, update(&k, hset("user", "bob")))
        .expect("hset again");
    let now = c.now;
    let got = read(&mut c, 0, &k).expect("a hash");
    assert_eq!(got.expires_at(now), None);
    assert_eq!(fields(&Some(got), now), [("user".into(), "bob".into())]);
}

/// A hash or set update through compare-and-set, on condition that `element` has exactly
/// the dots `seen` (`HINCRBY`, `HSETNX`, `SPOP`, `SMOVE`).
fn cas_update(k: &ObjectKey, seen: Vec<(Vec<u8>, Vec<Dot>)>, u: CollectionUpdate) -> ClientRequest {
    ClientRequest::cas(CasRequest {
        key: k.clone(),
        condition: Condition::Elements(seen),
        action: CasAction::Collection(u),
        timeout_ms: None,
        supersedes: None,
    })
}

fn cas_collection(reply: &Reply) -> (bool, Option<Collection>) {
    match reply {
        Ok(ClientResponse::Cas {
            applied,
            collection,
            ..
        }) => (*applied, collection.as_deref().cloned()),
        other => panic!("not a compare-and-set answer: {other:?}"),
    }
}

/// `HINCRBY k n 1` as the Redis front end makes it: the field's dots and value as read, the
/// new value replacing exactly those dots.
fn incr(k: &ObjectKey, read: Option<&Collection>, now: u64) -> (ClientRequest, u64) {
    let seen = read.and_then(|c| c.get(b"n", now));
    let dots = seen.as_ref().map(|(d, _)| d.clone()).unwrap_or_default();
    let n: u64 = seen.map_or(0, |(_, v)| {
        String::from_utf8_lossy(v).parse().expect("a number")
    });
    let u = CollectionUpdate {
        kind: CollectionKind::Hash,
        removes: vec![(b"n".to_vec(), dots.clone())],
        adds: vec![(b"n".to_vec(), (n + 1).to_string().into_bytes())],
        ..Default::default()
    };
    (cas_update(k, vec![(b"n".to_vec(), dots)], u), n + 1)
}

#[test]
fn read_then_write_updates_through_compare_and_set_are_exact() {
    let mut c = Cluster::new(3);
    let k = key("redis", "counter");
    c.request(0, update(&k, hset("other", "x")))
        .expect("hset other");
    // Two increments read the same state through different nodes: one applies, the other is
    // told what the field holds now, and its retry makes 2 (never two writes of 1).
    let now = c.now;
    let read0 = read(&mut c, 0, &k);
    let (a, _) = incr(&k, read0.as_ref(), now);
    let (b, _) = incr(&k, read0.as_ref(), now);
    let replies = c.requests_together(vec![(0, a), (1, b)], |_, _, _| false);
    let outcomes: Vec<(bool, Option<Collection>)> = replies.iter().map(cas_collection).collect();
    assert_eq!(
        outcomes.iter().filter(|(applied, _)| *applied).count(),
        1,
        "{outcomes:?}"
    );
    let (_, now_held) = outcomes.iter().find(|(a, _)| !a).expect("one lost").clone();
    let now = c.now;
    let (retry, want) = incr(&k, now_held.as_ref(), now);
    assert_eq!(want, 2);
    assert!(cas_collection(&c.request(2, retry)).0, "the retry applies");
    let got = read(&mut c, 1, &k);
    assert_eq!(
        fields(&got, c.now),
        [("n", "2"), ("other", "x")].map(|(f, v)| (f.to_string(), v.to_string()))
    );
    // A plain HSET of another field meanwhile merges with them; its dot is the node's own,
    // the compare-and-set updates' are its Paxos writer's.
    c.request(2, update(&k, hset("late", "y")))
        .expect("hset late");
    let got = read(&mut c, 0, &k).expect("a hash");
    let (dots, _) = got.get(b"n", c.now).expect("n");
    assert!(dots.iter().all(|d| d.node.is_paxos_writer()), "{dots:?}");
    assert_eq!(got.len(), 3);

    // SPOP of one member by two clients at once: exactly one takes it.
    let s = key("redis", "tags");
    let sadd = CollectionUpdate {
        kind: CollectionKind::Set,
        adds: vec![(b"m".to_vec(), vec![])],
        ..Default::default()
    };
    c.request(0, update(&s, sadd)).expect("sadd");
    let seen = read(&mut c, 1, &s).expect("a set");
    let dots = seen.get(b"m", c.now).expect("m").0;
    let pop = || {
        let u = CollectionUpdate {
            kind: CollectionKind::Set,
            removes: vec![(b"m".to_vec(), dots.clone())],
            ..Default::default()
        };
        cas_update(&s, vec![(b"m".to_vec(), dots.clone())], u)
    };
    let replies = c.requests_together(vec![(1, pop()), (2, pop())], |_, _, _| false);
    let applied: Vec<bool> = replies.iter().map(|r| cas_collection(r).0).collect();
    assert_eq!(applied.iter().filter(|a| **a).count(), 1, "{applied:?}");
    assert!(read(&mut c, 0, &s).is_none(), "the set is empty");

    // HSETNX on an absent field applies once; on a plain value or a set it is WRONGTYPE.
    let setnx = |k: &ObjectKey, kind| {
        let u = CollectionUpdate {
            kind,
            adds: vec![(b"f".to_vec(), b"v".to_vec())],
            ..Default::default()
        };
        cas_update(k, vec![(b"f".to_vec(), vec![])], u)
    };
    let h = key("redis", "fresh");
    assert!(cas_collection(&c.request(0, setnx(&h, CollectionKind::Hash))).0);
    assert!(!cas_collection(&c.request(1, setnx(&h, CollectionKind::Hash))).0);
    let plain = key("redis", "plain");
    c.request(0, put(&plain, "v", None, Some(Consistency::All)))
        .expect("set");
    let e = error(c.request(1, setnx(&plain, CollectionKind::Hash)));
    assert_eq!(e.code, ErrorCode::WrongType);
    let e = error(c.request(2, setnx(&h, CollectionKind::Set)));
    assert_eq!(e.code, ErrorCode::WrongType);
    // A condition on elements goes only with an update of them.
    let bad = ClientRequest::cas(CasRequest {
        key: h.clone(),
        condition: Condition::Elements(vec![]),
        action: CasAction::Delete,
        timeout_ms: None,
        supersedes: None,
    });
    assert_eq!(error(c.request(0, bad)).code, ErrorCode::InvalidQuery);
}

/// The Paxos state of a hash counter (`HINCRBY` through compare-and-set) is collected like a
/// register's: a repair round's serial read of a key holding a hash settles it (Redis would
/// answer a read of its value WRONGTYPE, which is the client's answer, not the round's
/// outcome), so the round ends with a low bound and the state is dropped, and the next
/// increment is still exact.
#[test]
fn a_hash_counters_paxos_state_is_collected() {
    const INTERVAL_MS: u64 = 1_000;
    let mut c = Cluster::with(3, |n| n.paxos_repair_interval_ms = INTERVAL_MS);
    let k = key("redis", "hits");
    let now = c.now;
    let (first, _) = incr(&k, None, now);
    assert!(
        cas_collection(&c.request(0, first)).0,
        "the first increment applies"
    );
    assert_eq!((0..3).map(|i| paxos_states(&c, i)).sum::<usize>(), 3);
    c.idle(4 * INTERVAL_MS);
    assert_eq!(
        (0..3).map(|i| paxos_states(&c, i)).collect::<Vec<_>>(),
        [0, 0, 0],
        "the counter's Paxos state was never collected"
    );
    let now = c.now;
    let held = read(&mut c, 1, &k);
    let (second, want) = incr(&k, held.as_ref(), now);
    assert_eq!(want, 2);
    assert!(
        cas_collection(&c.request(2, second)).0,
        "the second increment applies"
    );
    assert_eq!(
        fields(&read(&mut c, 0, &k), c.now),
        [("n".to_string(), "2".to_string())]
    );
}
