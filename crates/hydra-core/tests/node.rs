//! The node state machine, driven by a tiny synchronous cluster: messages are delivered in
//! order at once, syncs complete at once, time moves only to the next deadline when nothing
//! else is left to do. (The simulator covers faults and interleavings; these tests pin the
//! behaviour and the receipts of the basic cases.)

mod common;

use common::*;
use hydra_core::bucket::{BucketProps, Consistency};
use hydra_core::ids::{NodeId, Timestamp};
use hydra_core::key::{BucketName, ObjectKey};
use hydra_core::layout::Layout;
use hydra_core::message::{ClientRequest, ClientResponse, ErrorCode, Outcome, WriteRequest};
use hydra_core::node::{Ctx, Input, Node, Output, ReceiptDetail};
use hydra_core::store::MemStore;
use rand::SeedableRng;

#[test]
fn the_seed_example_write_with_one_node_down_then_read_repair() {
    let mut c = Cluster::new(3);
    let k = key("default", "cart");
    assert!(c.request(0, put(&k, "v1", None, None)).is_ok());
    c.kill(2);
    let read = c.request(0, get(&k, None));
    let w = c.request(
        0,
        put(&k, "v2", Some(context(&read)), Some(Consistency::Quorum)),
    );
    let receipt = w
        .as_ref()
        .expect("a quorum write succeeds with one node down")
        .receipt()
        .expect("a write has a receipt")
        .clone();
    assert_eq!(receipt.needed, 2);
    assert_eq!(receipt.acked(), 2, "{receipt:?}");
    // The reply goes out at W; node 3 has not answered by then.
    assert!(
        receipt
            .replicas
            .iter()
            .any(|r| r.node == NodeId(3) && r.outcome == Outcome::Pending)
    );
    // A quorum read returns the newest value.
    assert_eq!(
        values(&c.request(1, get(&k, Some(Consistency::Quorum)))),
        ["v2"]
    );
    // Node 3 comes back with v1; a read at r=all sees it stale and repairs it.
    c.restart(2);
    let all = c.request(0, get(&k, Some(Consistency::All)));
    assert_eq!(values(&all), ["v2"]);
    assert_eq!(
        all.as_ref()
            .expect("ok")
            .receipt()
            .expect("receipt")
            .read_repairs,
        vec![NodeId(3)]
    );
    // Now node 3 alone has the new value: r=one at node 3 answers from its own store first.
    assert_eq!(
        values(&c.request(2, get(&k, Some(Consistency::One)))),
        ["v2"]
    );
}

#[test]
fn blind_concurrent_writes_become_siblings_and_a_context_resolves_them() {
    let mut c = Cluster::new(3);
    let k = key("default", "k");
    c.request(0, put(&k, "a", None, None)).expect("ok");
    c.request(1, put(&k, "b", None, None)).expect("ok");
    let read = c.request(2, get(&k, None));
    assert_eq!(values(&read), ["a", "b"]);
    c.request(2, put(&k, "c", Some(context(&read)), None))
        .expect("ok");
    assert_eq!(
        values(&c.request(0, get(&k, Some(Consistency::All)))),
        ["c"]
    );
}

#[test]
fn delete_hides_the_value_and_keeps_a_context() {
    let mut c = Cluster::new(3);
    let k = key("default", "gone");
    c.request(0, put(&k, "x", None, None)).expect("ok");
    let read = c.request(1, get(&k, None));
    let del = ClientRequest::put(WriteRequest {
        key: k.clone(),
        value: None,
        content_type: Default::default(),
        context: Some(context(&read)),
        w: None,
        timeout_ms: None,
        sloppy: None,
        expiry: None,
        on_version: None,
        collection: None,
    });
    c.request(1, del).expect("ok");
    let after = c.request(2, get(&k, Some(Consistency::All)));
    assert!(values(&after).is_empty());
    assert!(
        !context(&after).is_empty(),
        "a deleted key still returns its context"
    );
}

/// A delete without a context in a `siblings` bucket removes what its coordinator holds
/// (Riak's way): never a silent no-op that answers success and deletes nothing.
#[test]
fn a_delete_without_a_context_removes_what_the_coordinator_holds() {
    let mut c = Cluster::new(3);
    let k = key("default", "blind-delete");
    c.request(0, put(&k, "a", None, Some(Consistency::All)))
        .expect("ok");
    c.request(1, put(&k, "b", None, Some(Consistency::All)))
        .expect("ok");
    assert_eq!(
        values(&c.request(2, get(&k, None))).len(),
        2,
        "two siblings"
    );
    let mut blind = delete(&k, Default::default());
    if let ClientRequest::Put(w) = &mut blind {
        w.context = None;
        w.w = Some(Consistency::All);
    }
    c.request(2, blind).expect("ok");
    let after = c.request(0, get(&k, Some(Consistency::All)));
    assert!(values(&after).is_empty(), "{:?}", values(&after));
}

#[test]
fn quorum_failure_names_needed_acked_and_why() {
    let mut c = Cluster::new(3);
    c.kill(1);
    let k = key("default", "k");
    let e = error(c.request(0, put(&k, "x", None, Some(Consistency::All))));
    assert_eq!(e.code, ErrorCode::QuorumNotReached);
    assert_eq!(e.quorum(), Some((3, 2)));
    assert!(
        e.message
            .contains("needed 3 of 3 replicas, 2 answered; n2: timed out after 1000 ms"),
        "{}",
        e.message
    );
}

#[test]
fn bad_requests_get_named_errors() {
    let mut c = Cluster::new(3);
    let table: Vec<(ClientRequest, ErrorCode, &str)> = vec![
        (
            get(&key("nope", "k"), None),
            ErrorCode::UnknownBucket,
            "bucket \"nope\" does not exist",
        ),
        (
            get(&key("small", "k"), Some(Consistency::Three)),
            ErrorCode::InvalidConsistency,
            "consistency level three needs 3 replicas but the bucket keeps only n = 2",
        ),
        (
            put(
                &key("default", "k"),
                &"x".repeat(8 * 1024 * 1024 + 1),
                None,
                None,
            ),
            ErrorCode::ValueTooLarge,
            "value is 8388609 bytes, more than the limit of 8388608",
        ),
        (
            ClientRequest::Get {
                key: key("default", "k"),
                r: None,
                timeout_ms: Some(0),
                sloppy: None,
            },
            ErrorCode::InvalidTimeout,
            "timeout of 0 ms is out of range 1..=120000",
        ),
    ];
    for (request, code, message) in table {
        let e = error(c.request(0, request));
        assert_eq!((e.code, e.message.as_str()), (code, message));
    }
}

#[test]
fn a_node_that_is_no_replica_forwards_writes_to_one() {
    let mut c = Cluster::new(5);
    let k = key("small", "fwd");
    let partition = c.layout.partition_for("small", b"fwd");
    let replicas = c.layout.preference_list(partition, 2).to_vec();
    let outsider = (0..5)
        .find(|i| !replicas.contains(&NodeId(*i as u64 + 1)))
        .expect("5 nodes, 2 replicas");
    let w = c
        .request(outsider, put(&k, "x", None, Some(Consistency::All)))
        .expect("ok");
    assert!(
        replicas.contains(&w.receipt().expect("receipt").coordinator),
        "coordinated by {}",
        w.receipt().expect("receipt").coordinator
    );
    assert_eq!(
        values(&c.request(outsider, get(&k, Some(Consistency::All)))),
        ["x"]
    );
}

#[test]
fn a_failed_sync_fails_the_write_and_poisons_the_node() {
    let mut c = Cluster::new(3);
    let k = key("default", "k");
    c.stores[0].fail_next_sync = true;
    let e = error(c.request(0, put(&k, "x", None, None)));
    assert_eq!(e.code, ErrorCode::QuorumNotReached);
    assert!(e.message.contains("local write failed"), "{}", e.message);
    let e = error(c.request(0, put(&k, "y", None, None)));
    assert_eq!(e.code, ErrorCode::StoreFailed);
    // A read of that key does not wait for a sync that will never come: the poisoned node
    // answers with its store's error at once.
    let e = error(c.request(1, get(&k, Some(Consistency::All))));
    assert_eq!(e.code, ErrorCode::QuorumNotReached);
    assert!(
        e.message.contains("n1: ") && !e.message.contains("n1: timed out"),
        "{}",
        e.message
    );
}

#[test]
fn buckets_are_created_gossiped_and_keep_their_conflict_mode() {
    let mut c = Cluster::new(3);
    let name = BucketName::new("carts").expect("valid");
    let props = BucketProps {
        n: 2,
        ..BucketProps::default()
    };
    let set = ClientRequest::SetBucket {
        name: name.clone(),
        props: props.clone(),
    };
    assert!(matches!(
        c.request(0, set),
        Ok(ClientResponse::Bucket { .. })
    ));
    // The change reached the other nodes by gossip while the request ran; node 3 serves it.
    assert_eq!(c.nodes[2].buckets().get(&name), Some(&props));
    // More replicas than nodes: refused, by name.
    let too_many = ClientRequest::SetBucket {
        name: BucketName::new("wide").expect("valid"),
        props: BucketProps {
            n: 5,
            ..BucketProps::default()
        },
    };
    let e = error(c.request(0, too_many));
    assert_eq!(e.code, ErrorCode::InvalidBucket);
    assert!(
        e.message.contains("n = 5 is more than the 3 nodes"),
        "{e:?}"
    );
    c.request(
        2,
        put(&key("carts", "k"), "x", None, Some(Consistency::All)),
    )
    .expect("n = 2, w = all");
    // The conflict mode is fixed.
    let change = ClientRequest::SetBucket {
        name,
        props: BucketProps {
            conflicts: hydra_core::bucket::ConflictMode::Lww,
            ..props
        },
    };
    let e = error(c.request(1, change));
    assert_eq!(e.code, ErrorCode::BucketPropertyFixed);
    assert!(e.message.contains("cannot change"), "{}", e.message);
    // So is n, until layout changes can move data: a write acked at n = 2 must not be hidden
    // by n = 1, nor replicas added that never had it.
    let change = ClientRequest::SetBucket {
        name: BucketName::new("carts").expect("valid"),
        props: BucketProps { n: 3, ..props },
    };
    let e = error(c.request(0, change));
    assert_eq!(e.code, ErrorCode::BucketPropertyFixed);
    assert!(e.message.contains("n cannot change"), "{}", e.message);
    // A restarted node remembers buckets from its store.
    hydra_core::store::Store::sync(&mut c.stores[1]).expect("sync");
    c.kill(1);
    c.restart(1);
    c.request(1, get(&key("carts", "k"), None))
        .expect("bucket known after restart");
}

#[test]
fn replicas_believed_down_are_not_waited_for() {
    let mut c = Cluster::new(3);
    let k = key("default", "k");
    c.idle(2_000);
    c.kill(2);
    // Heartbeats every 250 ms: about 4.6 s of silence convicts node 3.
    c.idle(6_000);
    let e = error(c.request(0, put(&k, "x", None, Some(Consistency::All))));
    assert!(
        e.message.contains("n3: believed down (phi"),
        "{}",
        e.message
    );
    let receipt = e.receipt.expect("a quorum error has a receipt");
    assert!(
        receipt.elapsed_ms < 100,
        "waited {} ms for a node believed down",
        receipt.elapsed_ms
    );
    // A quorum still works, and the node comes back as soon as it is heard from again.
    c.request(0, put(&k, "y", None, Some(Consistency::Quorum)))
        .expect("quorum without node 3");
    c.restart(2);
    c.idle(1_000);
    c.request(0, put(&k, "z", None, Some(Consistency::All)))
        .expect("node 3 is back");
}

#[test]
fn sloppy_quorum_writes_to_a_fallback_and_hands_off_when_the_primary_returns() {
    let mut c = Cluster::new(5);
    let (k, coordinator, down, fallback) = one_primary_down(&mut c, "cart");
    // Strict: the missing primary makes W = all unreachable.
    let strict = ClientRequest::put(WriteRequest {
        key: k.clone(),
        value: Some(b"x".to_vec()),
        content_type: "text/plain".into(),
        context: None,
        w: Some(Consistency::All),
        timeout_ms: None,
        sloppy: Some(false),
        expiry: None,
        on_version: None,
        collection: None,
    });
    assert_eq!(
        error(c.request(coordinator, strict)).code,
        ErrorCode::QuorumNotReached
    );
    // Sloppy (the bucket's default): the next node of the extended list stands in.
    let w = c
        .request(coordinator, put(&k, "y", None, Some(Consistency::All)))
        .expect("sloppy write");
    let receipt = w.receipt().expect("receipt").clone();
    assert_eq!(receipt.hints_stored, 1, "{receipt:?}");
    let stand_in = receipt
        .replicas
        .iter()
        .find(|r| r.role == hydra_core::message::Role::Fallback)
        .expect("a fallback");
    assert_eq!(
        (stand_in.node, &stand_in.outcome),
        (fallback, &Outcome::Acked)
    );
    // The primary returns; within a few handoff intervals it has the write on its own.
    c.restart(down);
    c.idle(2_000);
    let one = c.request(down, get(&k, Some(Consistency::One)));
    assert_eq!(values(&one), ["y"]);
    let status = c.nodes[(fallback.0 - 1) as usize].status(Timestamp(c.now));
    assert_eq!(status.hint_counters.delivered, 1);
    assert!(status.hints.is_empty(), "{:?}", status.hints);
}

#[test]
fn tombstones_are_reaped_once_every_replica_has_them() {
    let mut c = Cluster::new(3);
    let k = key("default", "gone");
    c.request(0, put(&k, "x", None, Some(Consistency::All)))
        .expect("ok");
    let read = c.request(1, get(&k, None));
    c.request(1, delete(&k, context(&read))).expect("delete");
    // The reply goes out at W; the reap waits for every primary's ack, then the grace.
    c.idle(1_000);
    assert!(
        (0..3).all(|i| stored(&c, i, &k)),
        "reaped before the grace passed"
    );
    c.idle(3_000);
    assert!(
        (0..3).all(|i| !stored(&c, i, &k)),
        "the tombstone was not reaped everywhere"
    );
    assert!(values(&c.request(2, get(&k, Some(Consistency::All)))).is_empty());
}

#[test]
fn a_key_deleted_while_a_replica_is_down_stays_deleted() {
    let mut c = Cluster::new(3);
    let k = key("default", "cart");
    c.request(0, put(&k, "x", None, Some(Consistency::All)))
        .expect("ok");
    c.idle(1_000);
    c.kill(2);
    c.idle(6_000);
    let read = c.request(0, get(&k, None));
    c.request(0, delete(&k, context(&read)))
        .expect("delete at quorum");
    // Not every primary acked: the tombstone is kept however long we wait.
    c.idle(10_000);
    assert!(
        stored(&c, 0, &k) && stored(&c, 1, &k),
        "a tombstone was reaped without node 3's ack"
    );
    // Node 3 returns with the old value; anti-entropy runs (no reads): the delete wins.
    c.restart(2);
    c.idle(20_000);
    let one = c.request(2, get(&k, Some(Consistency::One)));
    assert!(
        values(&one).is_empty(),
        "the deleted value came back: {one:?}"
    );
    assert!(values(&c.request(0, get(&k, Some(Consistency::All)))).is_empty());
}

#[test]
fn reads_ask_r_replicas_and_the_rest_only_when_one_is_slow() {
    let mut c = Cluster::new(3);
    let k = key("default", "targeted");
    c.request(0, put(&k, "v", None, Some(Consistency::All)))
        .expect("ok");
    let read = c.request(0, get(&k, Some(Consistency::Quorum)));
    assert_eq!(values(&read), ["v"]);
    let receipt = receipt_of(&read);
    // R = 2: this node and one other were asked; the third was not.
    assert_eq!(receipt.replicas.len(), 2, "{receipt:?}");
    assert!(receipt.replicas.iter().any(|r| r.node == NodeId(1)));
    let other = other_replica(&receipt, NodeId(1));
    // That replica dies; the failure detector has not noticed yet. The read still answers,
    // from the third replica, asked after `read_retry_after_ms`.
    c.kill((other.0 - 1) as usize);
    let read = c.request(0, get(&k, Some(Consistency::Quorum)));
    assert_eq!(values(&read), ["v"]);
    let receipt = receipt_of(&read);
    assert_eq!(receipt.acked(), 2, "{receipt:?}");
    assert!(
        receipt.elapsed_ms >= config(1).read_retry_after_ms,
        "{receipt:?}"
    );
    // With read_retry_after_ms = 0 every read asks all N (Riak's way).
    let mut c = Cluster::new(3);
    for n in &mut c.nodes {
        let mut cfg = config(n.id().0);
        cfg.read_retry_after_ms = 0;
        *n = Node::new(cfg, c.layout.clone());
    }
    c.idle(1_000);
    c.request(0, put(&k, "v", None, Some(Consistency::All)))
        .expect("ok");
    c.idle(10);
    let read = c.request(0, get(&k, Some(Consistency::Quorum)));
    let receipt = receipt_of(&read);
    assert_eq!(receipt.replicas.len(), 3, "{receipt:?}");
}

/// The name of a read's message (`None` for any other).
fn read_message(input: &Input) -> Option<String> {
    let Input::Message { envelope, .. } = input else {
        return None;
    };
    let name = format!("{:?}", envelope.message);
    let name = name
        .split([' ', '{', '('])
        .next()
        .unwrap_or_default()
        .to_string();
    name.contains("Read").then_some(name)
}

/// A quorum read at node `at`, with the names of the read messages it sent, in order.
fn quorum_read_traced(c: &mut Cluster, at: usize, k: &ObjectKey) -> (Reply, Vec<String>) {
    let mut sent = Vec::new();
    let mut replies =
        c.requests_together(vec![(at, get(k, Some(Consistency::Quorum)))], |_, _, i| {
            sent.extend(read_message(i));
            false
        });
    (replies.remove(0), sent)
}

#[test]
fn a_quorum_read_asks_for_a_digest_and_for_the_object_only_when_it_differs() {
    // Both conflict modes: `default` keeps siblings, `redis` is lww.
    for bucket in ["default", "redis"] {
        let mut c = Cluster::new(3);
        let k = key(bucket, "digest");
        let v1 = c.request(0, put(&k, "v1", None, Some(Consistency::All)));
        // The replicas agree: the other replica sends a digest, no object.
        let (read, sent) = quorum_read_traced(&mut c, 0, &k);
        assert_eq!(values(&read), ["v1"]);
        assert_eq!(sent, ["ReadDigestRequest", "ReadDigestResponse"]);
        assert_eq!(receipt_of(&read).acked(), 2);
        // Node 1 misses v2: its digest differs from the other replica's, which is then asked for
        // its object; the read answers v2 and repairs node 1.
        let v2 = put(&k, "v2", Some(context(&v1)), Some(Consistency::Quorum));
        let w = c.requests_together(vec![(1, v2)], |_, to, i| {
            to == 0
                && matches!(i, Input::Message { envelope, .. }
                if format!("{:?}", envelope.message).starts_with("Replicate"))
        });
        w[0].as_ref().expect("a quorum write without node 1");
        let (read, sent) = quorum_read_traced(&mut c, 0, &k);
        assert_eq!(values(&read), ["v2"]);
        assert_eq!(
            sent,
            [
                "ReadDigestRequest",
                "ReadDigestResponse",
                "ReadRequest",
                "ReadResponse"
            ]
        );
        assert_eq!(receipt_of(&read).read_repairs, vec![NodeId(1)]);
        // Repaired: the next read's digests agree again.
        c.idle(10);
        let (read, sent) = quorum_read_traced(&mut c, 0, &k);
        assert_eq!(values(&read), ["v2"]);
        assert_eq!(sent, ["ReadDigestRequest", "ReadDigestResponse"]);
    }
}

#[test]
fn a_replica_whose_digest_echoes_a_stale_own_answer_is_repaired_with_it() {
    for bucket in ["default", "redis"] {
        let mut c = Cluster::new(3);
        let k = key(bucket, "echo");
        let v1 = c.request(0, put(&k, "v1", None, Some(Consistency::All)));
        // Only node 3 takes v2: nodes 1 and 2 keep v1.
        let v2 = put(&k, "v2", Some(context(&v1)), Some(Consistency::One));
        let w = c.requests_together(vec![(2, v2)], |_, to, i| {
            to != 2
                && matches!(i, Input::Message { envelope, .. }
                if format!("{:?}", envelope.message).starts_with("Replicate"))
        });
        w[0].as_ref().expect("a write at ONE on node 3");
        // A read of all three at node 1: node 2's digest equals node 1's own (stale) answer
        // and stands for it; node 3's differs and its object is fetched. Both stale
        // replicas are repaired, the echo too.
        let mut sent = Vec::new();
        let read = c
            .requests_together(vec![(0, get(&k, Some(Consistency::All)))], |_, _, i| {
                sent.extend(read_message(i));
                false
            })
            .remove(0);
        assert_eq!(values(&read), ["v2"], "{bucket}");
        assert_eq!(
            sent.iter().filter(|m| *m == "ReadRequest").count(),
            1,
            "{bucket}: {sent:?}"
        );
        let receipt = receipt_of(&read);
        assert_eq!(receipt.acked(), 3, "{bucket}");
        assert_eq!(receipt.read_repairs, vec![NodeId(1), NodeId(2)], "{bucket}");
        c.idle(10);
        for at in 0..3 {
            let (read, sent) = quorum_read_traced(&mut c, at, &k);
            assert_eq!(values(&read), ["v2"], "{bucket} at node {at}");
            assert_eq!(
                sent,
                ["ReadDigestRequest", "ReadDigestResponse"],
                "{bucket}"
            );
        }
    }
}

#[test]
fn a_short_request_timeout_still_leaves_time_for_fallbacks() {
    // fallback_after_ms (1 s) is longer than the request's own timeout (400 ms): the fallback
    // must still be tried, at half the timeout, before the write fails.
    let mut c = Cluster::new(4);
    let k = key("default", "short");
    c.request(0, put(&k, "v1", None, Some(Consistency::All)))
        .expect("ok");
    let read = c.request(0, get(&k, Some(Consistency::Quorum)));
    let receipt = receipt_of(&read);
    // Kill one primary other than the coordinator; the detector has not noticed yet.
    let victim = other_replica(&receipt, NodeId(1));
    c.kill((victim.0 - 1) as usize);
    let mut write = put(&k, "v2", Some(context(&read)), Some(Consistency::All));
    if let ClientRequest::Put(w) = &mut write {
        w.timeout_ms = Some(400);
        w.sloppy = Some(true);
    }
    let receipt = receipt_of(&c.request(0, write));
    assert_eq!(receipt.hints_stored, 1, "{receipt:?}");
    assert!(receipt.elapsed_ms < 400, "{receipt:?}");
}

#[test]
fn zero_periodic_intervals_never_spin_a_call() {
    // A periodic interval of 0 must not make one call fire the same timer forever.
    let mut c = config(1);
    c.gossip_interval_ms = 0;
    c.heartbeat_interval_ms = 0;
    let layout = Layout::uniform(3, 16).expect("layout");
    let mut node = Node::new(c, layout);
    let mut store = MemStore::new();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let mut ctx = Ctx {
        now: Timestamp(1_000),
        mono: Timestamp(1_000),
        store: &mut store,
        rng: &mut rng,
    };
    node.handle(&mut ctx, Input::Tick);
    let mut sends = 0;
    while let Some(out) = node.poll_output() {
        sends += usize::from(matches!(out, Output::Send { .. }));
    }
    // One heartbeat and one gossip to each of the two peers.
    assert_eq!(sends, 4);
    assert!(node.next_deadline().expect("timers") > Timestamp(1_000));
}

#[test]
fn finished_requests_leave_no_timers_behind() {
    let mut c = Cluster::new(3);
    for i in 0..20 {
        let k = key("default", &format!("k{i}"));
        assert!(c.request(i % 3, put(&k, "v", None, None)).is_ok());
        assert!(c.request((i + 1) % 3, get(&k, None)).is_ok());
    }
    // Let every replica answer and every exchange and delivery end.
    c.idle(1_000);
    for node in &c.nodes {
        // Heartbeat, gossip, handoff, anti-entropy, expiry and Paxos repair; an exchange may
        // be in flight.
        assert!(
            node.timers_pending() <= 6,
            "{} timers",
            node.timers_pending()
        );
    }
}

#[test]
fn a_sloppy_read_never_serves_a_hint_older_than_the_tombstone_grace() {
    // Such a hint may hold what a reaped delete removed; read repair would write it back.
    let mut c = Cluster::new(5);
    let (k, coordinator, _down, fallback) = one_primary_down(&mut c, "old-hint");
    c.request(coordinator, put(&k, "v", None, Some(Consistency::All)))
        .expect("sloppy write");
    let fallback_answer = |c: &mut Cluster| {
        let read = c.request(coordinator, get(&k, Some(Consistency::All)));
        let receipt = receipt_of(&read);
        receipt
            .replicas
            .iter()
            .find(|r| r.node == fallback)
            .map(|r| r.outcome.clone())
            .expect("the fallback was asked for its hint")
    };
    assert!(
        matches!(
            fallback_answer(&mut c),
            Outcome::Read {
                version: Some(_),
                ..
            }
        ),
        "a fresh hint is served"
    );
    // The owner stays down, so the hint is never delivered; past the grace (2 s) it is not
    // served any more.
    c.idle(2_500);
    assert_eq!(
        fallback_answer(&mut c),
        Outcome::Read {
            version: None,
            siblings: 0
        }
    );
}

#[test]
fn pending_reaps_survive_a_restart_of_the_node_that_scheduled_them() {
    let mut c = Cluster::new(3);
    let k = key("default", "gone-after-restart");
    c.request(0, put(&k, "x", None, Some(Consistency::All)))
        .expect("ok");
    let read = c.request(1, get(&k, None));
    c.request(1, delete(&k, context(&read))).expect("delete");
    c.idle(500);
    // Node 2 coordinated the delete and holds its reap; it restarts before the grace ends.
    assert_eq!(c.nodes[1].status(Timestamp(c.now)).reaps_pending, 1);
    hydra_core::store::Store::sync(&mut c.stores[1]).expect("sync");
    c.kill(1);
    c.restart(1);
    c.idle(4_000);
    assert!(
        (0..3).all(|i| !stored(&c, i, &k)),
        "the restarted node forgot the reap"
    );
}

/// A listing walks every partition a page at a time and returns each live key exactly
/// once across the pages; deleted keys are left out; a replica down changes nothing at R.
#[test]
fn a_listing_returns_every_live_key_across_its_pages() {
    use hydra_core::message::{ListCursor, ListRequest};
    let mut c = Cluster::new(3);
    let mut live = std::collections::BTreeSet::new();
    for i in 0..60 {
        let k = key("default", &format!("k{i:02}"));
        c.request(i % 3, put(&k, "v", None, Some(Consistency::All)))
            .expect("written");
        live.insert(format!("k{i:02}"));
    }
    for i in (0..60).step_by(7) {
        let k = key("default", &format!("k{i:02}"));
        let read = c.request(0, get(&k, None));
        c.request(1, delete(&k, context(&read))).expect("deleted");
        live.remove(&format!("k{i:02}"));
    }
    let list_all = |c: &mut Cluster, at: usize, limit: u32| {
        let mut cursor = Some(ListCursor::default());
        let mut seen = Vec::new();
        let mut pages = 0;
        while let Some(at_cursor) = cursor.take() {
            pages += 1;
            assert!(pages < 1_000, "the listing ends");
            let reply = c.request(
                at,
                ClientRequest::List(ListRequest {
                    bucket: BucketName::new("default").expect("valid"),
                    cursor: at_cursor,
                    limit,
                    r: None,
                    timeout_ms: None,
                }),
            );
            match reply {
                Ok(ClientResponse::Keys { keys, next, .. }) => {
                    assert!(keys.len() <= limit as usize);
                    seen.extend(
                        keys.into_iter()
                            .map(|k| String::from_utf8(k).expect("utf8")),
                    );
                    cursor = next;
                }
                other => panic!("{other:?}"),
            }
        }
        seen
    };
    let seen = list_all(&mut c, 2, 3);
    let unique: std::collections::BTreeSet<String> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "each key once: {seen:?}");
    assert_eq!(unique, live);
    // One replica down: a quorum of each partition's replicas still lists everything.
    c.kill(1);
    c.idle(6_000);
    let seen: std::collections::BTreeSet<String> = list_all(&mut c, 0, 1_000).into_iter().collect();
    assert_eq!(seen, live);
}

fn truncate(bucket: &str) -> ClientRequest {
    ClientRequest::Truncate {
        bucket: BucketName::new(bucket).expect("valid"),
        timeout_ms: None,
    }
}

/// A truncation hides every value written before it, on every node, in both conflict modes;
/// writes after it stay; the purge then removes the older objects from every store.
#[test]
fn a_truncation_hides_every_older_value_on_every_node_and_the_purge_removes_them() {
    let mut c = Cluster::new(3);
    for bucket in ["default", "nocas"] {
        let keys: Vec<_> = (0..20).map(|i| key(bucket, &format!("k{i}"))).collect();
        for (i, k) in keys.iter().enumerate() {
            c.request(i % 3, put(k, "old", None, Some(Consistency::All)))
                .expect("written");
        }
        match c.request(1, truncate(bucket)) {
            Ok(ClientResponse::Truncated { .. }) => {}
            other => panic!("{other:?}"),
        }
        for node in 0..3 {
            for k in &keys {
                let read = c.request(node, get(k, Some(Consistency::One)));
                assert!(values(&read).is_empty(), "node {node} still shows {k}");
            }
        }
        let again = c.request(2, put(&keys[0], "new", None, Some(Consistency::All)));
        assert!(again.is_ok(), "{again:?}");
        c.idle(2_000);
        for node in 0..3 {
            assert_eq!(
                values(&c.request(node, get(&keys[0], Some(Consistency::One)))),
                vec!["new".to_string()]
            );
            for k in &keys[1..] {
                assert!(!stored(&c, node, k), "node {node} still stores {k}");
            }
        }
    }
    let unknown = error(c.request(0, truncate("nosuch")));
    assert_eq!(unknown.code, ErrorCode::UnknownBucket);
}

/// A node down during a truncation: the truncation answers that it did not confirm; once
/// back, the node learns the mark by gossip, and its older values never come back (not by
/// its reads, not by read repair or anti-entropy to the others).
#[test]
fn a_node_down_during_a_truncation_never_brings_its_older_values_back() {
    let mut c = Cluster::new(3);
    let keys: Vec<_> = (0..10).map(|i| key("default", &format!("d{i}"))).collect();
    for k in &keys {
        c.request(0, put(k, "old", None, Some(Consistency::All)))
            .expect("written");
    }
    c.kill(2);
    c.idle(3_000);
    let e = error(c.request(0, truncate("default")));
    assert_eq!(e.code, ErrorCode::QuorumNotReached);
    assert!(e.message.contains("did not confirm"), "{e:?}");
    c.restart(2);
    c.idle(5_000);
    for node in 0..3 {
        for k in &keys {
            let read = c.request(node, get(k, Some(Consistency::All)));
            assert!(values(&read).is_empty(), "node {node} shows {k} again");
        }
    }
    for k in &keys {
        assert!(
            !stored(&c, 2, k),
            "the returning node still stores {k}: {} {} {}",
            stored(&c, 0, k),
            stored(&c, 1, k),
            c.nodes[2].status(hydra_core::ids::Timestamp(c.now)).objects
        );
    }
}

/// A read at the node whose own write of the key is not synced yet waits for that sync for
/// its own answer: the other replicas are asked for their objects, not digests, so R of them
/// can answer without it.
#[test]
fn a_read_whose_own_answer_waits_for_a_sync_asks_the_others_for_objects() {
    let mut c = Cluster::new(3);
    let k = key("default", "unsynced");
    let mut sent = Vec::new();
    let replies = c.requests_together(
        vec![
            (0, put(&k, "v", None, Some(Consistency::All))),
            (0, get(&k, Some(Consistency::Quorum))),
        ],
        |_, _, i| {
            sent.extend(read_message(i));
            false
        },
    );
    assert!(replies[0].is_ok(), "{:?}", replies[0]);
    assert!(replies[1].is_ok(), "{:?}", replies[1]);
    assert_eq!(sent, ["ReadRequest", "ReadResponse"]);
}

/// A node back from being down during a truncation, before gossip brings it the mark: a
/// read through it asks the others for digests, theirs (of the purged key, under the mark)
/// differ from its own, and their answers hide its older values. (Where the others have not
/// purged the key yet, their digests still differ: a digest covers the mark it was read
/// under; `digests_cover_the_truncation_mark`.)
#[test]
fn a_digest_read_through_a_node_that_missed_a_truncation_still_hides_older_values() {
    let mut c = Cluster::new(3);
    let keys: Vec<_> = (0..10).map(|i| key("default", &format!("t{i}"))).collect();
    for k in &keys {
        c.request(0, put(k, "old", None, Some(Consistency::All)))
            .expect("written");
    }
    c.kill(2);
    let e = error(c.request(0, truncate("default")));
    assert_eq!(e.code, ErrorCode::QuorumNotReached);
    c.restart(2);
    let mut digests = 0;
    for k in &keys {
        assert!(stored(&c, 2, k), "node 3 missed the truncation");
        let (read, sent) = quorum_read_traced(&mut c, 2, k);
        digests += sent.iter().filter(|m| *m == "ReadDigestRequest").count();
        assert!(values(&read).is_empty(), "node 3 shows {k} again");
    }
    assert_eq!(digests, keys.len(), "every read asked for a digest");
}

#[test]
fn a_brief_receipt_leaves_out_the_replicas_and_keeps_the_counts() {
    let mut c = Cluster::new(3);
    let k = key("default", "brief");
    c.receipts = ReceiptDetail::Brief;
    let w = c.request(0, put(&k, "v1", None, Some(Consistency::All)));
    let receipt = receipt_of(&w);
    assert!(receipt.replicas.is_empty(), "{receipt:?}");
    assert_eq!(
        (receipt.coordinator, receipt.needed, receipt.hints_stored),
        (NodeId(1), 3, 0)
    );
    // A stale replica: the brief read's receipt still names the read repair it sent.
    c.kill(2);
    c.request(
        0,
        put(&k, "v2", Some(context(&w)), Some(Consistency::Quorum)),
    )
    .expect("a quorum write with one node down");
    c.restart(2);
    let all = c.request(0, get(&k, Some(Consistency::All)));
    assert_eq!(values(&all), ["v2"]);
    let receipt = receipt_of(&all);
    assert!(receipt.replicas.is_empty(), "{receipt:?}");
    assert_eq!(receipt.read_repairs, vec![NodeId(3)]);
    // An error's receipt is full whatever was asked: its message is made from it.
    c.kill(1);
    c.kill(2);
    let e = error(c.request(0, put(&k, "v3", None, Some(Consistency::All))));
    let receipt = e.receipt.expect("a quorum error has a receipt");
    assert_eq!(receipt.replicas.len(), 3, "{receipt:?}");
    // The same requests asking for the full receipt list every replica.
    c.restart(1);
    c.restart(2);
    c.receipts = ReceiptDetail::Full;
    let full = c.request(0, get(&k, Some(Consistency::All)));
    assert_eq!(receipt_of(&full).replicas.len(), 3);
}

/// Node `i` of `shard`'s cluster takes the bucket table of the same node's first shard.
fn adopt(shard: &mut Cluster, i: usize, from: &Cluster) {
    let entries = from.nodes[i].bucket_entries();
    let mut queue = std::collections::VecDeque::new();
    shard.feed(i, Input::AdoptBuckets(entries), &mut queue);
    while let Some((to, input)) = queue.pop_front() {
        shard.feed(to, input, &mut queue);
    }
}

/// The shell's shards (`node.shards`): each shard of every node is a cluster of its own, and
/// bucket changes go to the first shard's, whose table every other shard adopts with its
/// stamps. Two changes of one bucket through two nodes then resolve alike in both clusters,
/// whichever node's table each shard adopted first; a truncation of the first shard is not
/// adopted (the second shard's values written before it stay), so a shard truncates only
/// through its own quorum.
#[test]
fn a_second_shard_adopts_the_first_shards_bucket_changes_but_not_its_truncations() {
    let mut first = Cluster::new(3);
    let mut second = Cluster::new(3);
    let name = BucketName::new("carts").expect("valid");
    let change = |r| ClientRequest::SetBucket {
        name: name.clone(),
        props: BucketProps {
            r,
            ..BucketProps::default()
        },
    };
    first.request(0, change(Consistency::One)).expect("set");
    first.now += 5;
    first.request(1, change(Consistency::All)).expect("set");
    // The second shard of node 2 adopts before the second shard of node 1 does, each from
    // its own node's first shard, and gossip runs in both clusters.
    adopt(&mut second, 1, &first);
    adopt(&mut second, 0, &first);
    first.idle(2_000);
    second.idle(2_000);
    for i in 0..3 {
        adopt(&mut second, i, &first);
    }
    second.idle(2_000);
    let winner = first.nodes[0]
        .buckets()
        .get(&name)
        .cloned()
        .expect("bucket");
    assert_eq!(winner.r, Consistency::All, "the later change holds");
    for i in 0..3 {
        assert_eq!(
            first.nodes[i].buckets().get(&name),
            Some(&winner),
            "first shard, node {i}"
        );
        assert_eq!(
            second.nodes[i].buckets().get(&name),
            Some(&winner),
            "second shard, node {i}"
        );
    }
    // A value of the second shard, then a truncation of the first shard's cluster: adopting
    // its table leaves the second shard's value readable.
    let k = key("default", "kept");
    second
        .request(0, put(&k, "v", None, Some(Consistency::All)))
        .expect("written");
    first.now = first.now.max(second.now) + 10;
    assert!(matches!(
        first.request(0, truncate("default")),
        Ok(ClientResponse::Truncated { .. })
    ));
    for i in 0..3 {
        adopt(&mut second, i, &first);
    }
    second.idle(2_000);
    for i in 0..3 {
        let read = second.request(i, get(&k, Some(Consistency::One)));
        assert_eq!(
            values(&read),
            vec!["v".to_string()],
            "node {i} of the second shard"
        );
    }
}
