//! Last-write-wins buckets and TTLs with real processes: the runs that lost acknowledged
//! writes, each a test that fails on a build without the fix (`HYDRA_TEST_BIN=<old hydra>`
//! runs it against another build).

mod common;

use common::TestCluster;
use std::time::{Duration, Instant};

/// A key of bucket `redis` in partition 0, and its preference list (node ids).
fn key_in_partition_zero(c: &TestCluster) -> (String, Vec<u64>) {
    for i in 0..10_000 {
        let key = format!("session{i}");
        let ring = c
            .client(0)
            .ring(&[("bucket", "redis"), ("key", &key)])
            .expect("ring");
        if ring["partition"] == 0 {
            let list = ring["preference_list"]
                .as_array()
                .expect("list")
                .iter()
                .map(|n| n["id"].as_u64().expect("id"))
                .collect();
            return (key, list);
        }
    }
    panic!("no key in partition 0");
}

#[test]
fn an_expiry_never_undoes_a_refresh_made_while_a_replica_was_down() {
    // Session keys get a short TTL and are refreshed (`SET k v2 EX 600`, acked at W = 2) while
    // their first primary is down. Back up, that primary's expiry sweep finds its own stale
    // copy expired. The delete it issues must not beat the refresh. (8 partitions and a fast
    // sweep, so the returning node reaches the key's partition at once, before handoff or
    // anti-entropy can bring it the refresh.)
    let mut c = TestCluster::start_with(3, "partitions = 8\nanti_entropy_interval_ms = 100", "");
    let (key, list) = key_in_partition_zero(&c);
    let first = (list[0] - 1) as usize;
    let other = (list[1] - 1) as usize;
    c.client(other)
        .put(
            "redis",
            &key,
            b"v1",
            "text/plain",
            None,
            &[("ttl", "1"), ("w", "all")],
        )
        .expect("first write, on every replica");
    c.kill9(first);
    std::thread::sleep(Duration::from_millis(1_500));
    c.client(other)
        .put(
            "redis",
            &key,
            b"v2",
            "text/plain",
            None,
            &[("ttl", "600"), ("w", "quorum")],
        )
        .expect("the refresh is acknowledged by the two replicas up");
    // Time passes before the primary returns: a delete stamped "now" would be newer.
    std::thread::sleep(Duration::from_millis(1_000));
    c.restart(first);
    std::thread::sleep(Duration::from_millis(2_000));
    let deadline = Instant::now() + Duration::from_secs(10);
    let r = loop {
        match c.client(other).get("redis", &key, &[("r", "all")]) {
            Ok(r) => break r,
            Err(e) => {
                assert!(Instant::now() < deadline, "reads keep failing: {e}");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    };
    assert_eq!(
        (r.status, String::from_utf8_lossy(&r.body).to_string()),
        (200, "v2".to_string()),
        "the acknowledged refresh was lost to the expiry of the value it replaced"
    );
}
