//! Hashes and sets in the node state machine, driven by the tiny synchronous cluster of
//! `common`: updates through different coordinators merge, a key of another type is refused
//! as Redis refuses it, and a hash whose TTL passed is swept and reaped like a tombstone.

mod common;

use common::*;
use hydra_core::bucket::Consistency;
use hydra_core::collection::{Collection, CollectionKind, CollectionUpdate};
use hydra_core::key::ObjectKey;
use hydra_core::message::{ClientRequest, ClientResponse, ErrorCode, WriteRequest};

fn update(k: &ObjectKey, u: CollectionUpdate) -> ClientRequest {
    ClientRequest::Put(WriteRequest {
        key: k.clone(),
        value: None,
        content_type: String::new(),
        context: None,
        w: Some(Consistency::All),
        timeout_ms: None,
        sloppy: None,
        ttl_ms: None,
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
        Ok(ClientResponse::Read { collection, .. }) => collection.filter(|c| !c.is_empty()),
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
    u.ttl_ms = Some(Some(2_000));
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
