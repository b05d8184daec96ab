//! Real `hydra server` processes on loopback: the seed's example, siblings, restarts with
//! kill -9, and every bad-input case of the HTTP API. Each test owns its cluster (free ports,
//! a temporary directory) and kills its processes when it ends.

use hydra_client::{Client, Error, KvResponse};
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::TestCluster;

fn receipt(r: &KvResponse) -> &Value {
    r.receipt.as_ref().expect("every KV response has a receipt")
}

fn api_error(e: Error) -> (u16, String, Value) {
    match e {
        Error::Api {
            status, code, body, ..
        } => (status, code, body),
        other => panic!("expected an API error, got {other}"),
    }
}

/// Retries a read until `pred` holds (a node that just restarted is reconnected to within a
/// second or so). Bounded by time.
fn read_until(
    c: &Client,
    key: &str,
    params: &[(&str, &str)],
    pred: impl Fn(&KvResponse) -> bool,
) -> KvResponse {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = c.get("default", key, params)
            && pred(&r)
        {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "read of {key} with {params:?} never satisfied the test"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_seed_example_write_with_a_node_down_then_read_repair() {
    // No anti-entropy, and node 1's handoff paused below as the README walk-through does:
    // only the read's repair may bring node 3 up to date.
    let mut c = TestCluster::start_with(3, "anti_entropy_interval_ms = 0", "");
    let n1 = c.client(0);
    n1.put(
        "default",
        "cart",
        b"v1",
        "text/plain",
        None,
        &[("w", "all")],
    )
    .expect("write v1 to all three");
    c.kill9(2);
    // W = quorum succeeds with node 3 down; the receipt shows 2 acks.
    let read = n1.get("default", "cart", &[]).expect("read");
    let w = n1
        .put(
            "default",
            "cart",
            b"v2",
            "text/plain",
            read.context.as_deref(),
            &[("w", "quorum")],
        )
        .expect("a quorum write succeeds with one node down");
    assert_eq!(receipt(&w)["acked"], 2, "{}", receipt(&w));
    assert_eq!(receipt(&w)["needed"], 2);
    // R = quorum returns the newest value.
    let r = n1.get("default", "cart", &[("r", "quorum")]).expect("read");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"v2"[..]));
    // Node 3 comes back holding v1: a read at r=all sees it stale and repairs it.
    // Once the failure detector convicts node 3, coordinators stop waiting for it.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let status = n1.status().expect("status");
        let peer3 = status["peers"]
            .as_array()
            .and_then(|p| p.iter().find(|p| p["id"] == 3).cloned())
            .expect("peer 3");
        if peer3["state"] == "down" {
            assert!(peer3["phi"].as_f64().expect("phi") >= 8.0, "{peer3}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node 3 was never believed down: {peer3}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let w = n1
        .put(
            "default",
            "other",
            b"x",
            "text/plain",
            None,
            &[("w", "quorum")],
        )
        .expect("quorum write");
    let node3 = receipt(&w)["replicas"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["node"] == 3).cloned())
        .expect("n3");
    assert_eq!(node3["outcome"], "failed", "{node3}");
    assert!(
        node3["reason"]
            .as_str()
            .unwrap_or("")
            .contains("believed down"),
        "{node3}"
    );
    // Node 1 holds a hint for node 3 and would deliver it within 200 ms of its return: pause
    // its handoff (as the README walk-through does) so the read below finds node 3 stale.
    let paused = n1
        .admin(
            "POST",
            "handoff",
            Some(&serde_json::json!({ "enabled": false })),
        )
        .expect("pause handoff");
    assert_eq!(paused["handoff_enabled"], false);
    assert_eq!(n1.status().expect("status")["handoff_enabled"], false);
    c.spawn(2);
    c.wait_up(2);
    let all = read_until(&n1, "cart", &[("r", "all"), ("timeout_ms", "1000")], |r| {
        r.status == 200
    });
    assert_eq!(all.body, b"v2");
    assert_eq!(
        receipt(&all)["read_repairs"],
        serde_json::json!([3]),
        "{}",
        receipt(&all)
    );
    // Node 3 alone now has v2: r=one coordinated by node 3 answers from its own store first.
    let n3 = c.client(2);
    let one = read_until(&n3, "cart", &[("r", "one")], |r| r.body == b"v2");
    assert_eq!(receipt(&one)["coordinator"], 3);
    // Resumed, node 1 hands its hint over (node 3 already holds it: merged, then deleted).
    n1.admin(
        "POST",
        "handoff",
        Some(&serde_json::json!({ "enabled": true })),
    )
    .expect("resume handoff");
    let deadline = Instant::now() + Duration::from_secs(15);
    while n1.status().expect("status")["hints"]
        .as_array()
        .is_some_and(|h| !h.is_empty())
    {
        assert!(
            Instant::now() < deadline,
            "node 1 never handed its hint over: {}",
            n1.status().expect("status")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn blind_concurrent_puts_become_siblings_and_a_context_resolves_them() {
    let c = TestCluster::start(3, "");
    c.client(0)
        .put("default", "k", b"a", "text/plain", None, &[])
        .expect("put a");
    c.client(1)
        .put("default", "k", b"b", "text/plain", None, &[])
        .expect("put b");
    let r = c
        .client(2)
        .get("default", "k", &[("r", "all")])
        .expect("read");
    assert_eq!(r.status, 300);
    let body = r.json().expect("300 is JSON");
    let siblings = body["siblings"].as_array().expect("siblings");
    assert_eq!(siblings.len(), 2, "{body}");
    assert_eq!(body["context"].as_str(), r.context.as_deref());
    c.client(2)
        .put(
            "default",
            "k",
            b"c",
            "text/plain",
            r.context.as_deref(),
            &[],
        )
        .expect("resolve");
    let r = c
        .client(0)
        .get("default", "k", &[("r", "all")])
        .expect("read");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"c"[..]));
}

#[test]
fn acknowledged_writes_survive_kill_9_of_every_node() {
    acknowledged_writes_survive_kill_9_of_every_node_in(TestCluster::start(3, ""));
}

/// The same with every node on one thread, its group commits' fsyncs on the blocking pool.
#[test]
fn acknowledged_writes_survive_kill_9_of_every_single_threaded_node() {
    acknowledged_writes_survive_kill_9_of_every_node_in(TestCluster::start_full(
        3,
        "single_thread = true",
        "",
        "",
    ));
}

/// Nodes of two shards (`node.shards = 2`): a RESP pipeline whose keys fall in both shards,
/// with a `FLUSHDB` (sent to every shard) in the middle of it, answers in order and as one
/// shard would (what came before the flush is gone, what came after stays); a bucket made
/// through HTTP exists on every shard; a listing finds every key; every acknowledged write
/// survives kill -9 of every node; and a node restarted with another shard count is refused.
#[test]
fn nodes_of_two_shards_route_pipelines_buckets_and_listings_and_survive_kill_9() {
    use common::redis::{Raw, text};
    let mut c = TestCluster::start_full(3, "shards = 2", "", "");
    let mut raw = Raw::connect(&c.nodes[0].resp);
    let mut pipeline = Vec::new();
    let mut commands = 0;
    let mut push = |args: &[&[u8]]| {
        hydra_resp::encode_command(args, &mut pipeline);
        commands += 1;
    };
    for i in 0..40 {
        push(&[b"SET", format!("before:{i}").as_bytes(), b"old"]);
    }
    push(&[b"FLUSHDB"]);
    for i in 0..40 {
        push(&[
            b"SET",
            format!("after:{i}").as_bytes(),
            format!("v{i}").as_bytes(),
        ]);
    }
    for i in 0..40 {
        push(&[b"GET", format!("before:{i}").as_bytes()]);
        push(&[b"GET", format!("after:{i}").as_bytes()]);
    }
    push(&[b"DBSIZE"]);
    let replies = text(&raw.send(&pipeline, commands));
    let mut expected = "+OK\r\n".repeat(81);
    for i in 0..40 {
        let value = format!("v{i}");
        expected.push_str(&format!("$-1\r\n${}\r\n{value}\r\n", value.len()));
    }
    expected.push_str(":40\r\n");
    assert_eq!(
        replies, expected,
        "a pipeline across two shards with a flush inside it"
    );
    // A bucket made through one node's HTTP API: every shard of every node knows it.
    let n2 = c.client(1);
    n2.set_bucket("sharded", &serde_json::json!({ "n": 3 }))
        .expect("create bucket");
    for i in 0..30 {
        let key = format!("s{i}");
        n2.put(
            "sharded",
            &key,
            key.as_bytes(),
            "text/plain",
            None,
            &[("w", "all")],
        )
        .expect("put into a new bucket on either shard");
    }
    let mut listed = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..50 {
        let page = c
            .client(2)
            .list("sharded", after.as_deref(), 7)
            .expect("list");
        let keys = page["keys"].as_array().expect("keys");
        listed.extend(keys.iter().map(|k| k.as_str().expect("text").to_string()));
        after = page["next"].as_str().map(str::to_string);
        if after.is_none() {
            break;
        }
    }
    listed.sort();
    let mut want: Vec<String> = (0..30).map(|i| format!("s{i}")).collect();
    want.sort();
    assert_eq!(listed, want, "a listing through both shards");
    for dir in ["shard-0", "shard-1"] {
        assert!(
            c.dir.path().join("n1").join(dir).join("version").exists(),
            "each shard keeps a store of its own ({dir})"
        );
    }
    // A node's shard count is fixed at its first start.
    c.kill9(0);
    let config = std::fs::read_to_string(&c.nodes[0].config).expect("config");
    std::fs::write(
        &c.nodes[0].config,
        config.replace("shards = 2", "shards = 1"),
    )
    .expect("config");
    let out = Command::new(common::hydra_bin())
        .args(["server", "--config"])
        .arg(&c.nodes[0].config)
        .output()
        .expect("run hydra server");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("node.shards is 1"),
        "a node restarted with another shard count is refused: {stderr}"
    );
    std::fs::write(&c.nodes[0].config, config).expect("config");
    c.spawn(0);
    c.wait_healthy(0);
    acknowledged_writes_survive_kill_9_of_every_node_in(c);
}

/// A node of one shard among nodes of two: each side refuses the other's connections, and
/// the log says why, naming `node.shards`.
#[test]
fn a_peer_of_another_shard_count_is_refused_by_name() {
    let mut c = TestCluster::start_full(2, "shards = 2", "", "");
    c.kill9(0);
    let config = std::fs::read_to_string(&c.nodes[0].config).expect("config");
    let fresh = c.dir.path().join("n1-one-shard");
    let config = config.replace("shards = 2", "shards = 1").replace(
        &format!("data_dir = \"{}\"", c.dir.path().join("n1").display()),
        // A fresh data directory, the same identity (peers pinned its key).
        &format!(
            "data_dir = \"{}\"\nkey_file = \"{}\"",
            fresh.display(),
            c.dir.path().join("n1").join("node.key").display()
        ),
    );
    assert!(config.contains("n1-one-shard"), "{config}");
    std::fs::write(&c.nodes[0].config, config).expect("config");
    c.spawn(0);
    let deadline = Instant::now() + Duration::from_secs(20);
    let (one, two) = loop {
        let (one, two) = (c.log(0), c.log(1));
        let refused = |log: &str| log.contains("node.shards must be the same on every node");
        if (refused(&one) && refused(&two)) || Instant::now() > deadline {
            break (one, two);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        one.contains("it runs 2 shards and this node 1: node.shards must be the same"),
        "the one-shard node names the count it refused: {one}"
    );
    assert!(
        two.contains("it runs one shard (no hello) and this node 2: node.shards must be the same"),
        "the two-shard node names the count it refused: {two}"
    );
}

fn acknowledged_writes_survive_kill_9_of_every_node_in(mut c: TestCluster) {
    for i in 0..30 {
        let key = format!("k{i}");
        c.client(i % 3)
            .put(
                "default",
                &key,
                key.as_bytes(),
                "text/plain",
                None,
                &[("w", "all")],
            )
            .expect("put");
    }
    for i in 0..3 {
        c.kill9(i);
    }
    for i in 0..3 {
        c.spawn(i);
    }
    for i in 0..3 {
        c.wait_healthy(i);
    }
    for i in 0..30 {
        let key = format!("k{i}");
        // r=one at each node in turn: every replica must have every acknowledged write.
        let r = read_until(&c.client(i % 3), &key, &[("r", "one")], |r| r.status != 503);
        assert_eq!(
            (r.status, r.body.as_slice()),
            (200, key.as_bytes()),
            "{key} after kill -9 of all nodes"
        );
    }
}

#[test]
fn bad_input_gets_named_errors() {
    // A small value limit, so the oversized body still fits in socket buffers and the client
    // reads the early 413 instead of a broken pipe.
    let mut c = TestCluster::start(3, "value_bytes_max = 1000");
    let n1 = c.client(0);
    let long_key = "k".repeat(1025);
    let cases: Vec<(Result<KvResponse, Error>, u16, &str, &str)> = vec![
        (
            n1.get("default", &long_key, &[]),
            400,
            "invalid_key",
            "1025 bytes, more than the limit of 1024",
        ),
        (
            n1.get("nope", "k", &[]),
            404,
            "unknown_bucket",
            "bucket \"nope\" does not exist",
        ),
        (
            n1.get("default", "k", &[("r", "most")]),
            400,
            "invalid_consistency",
            "unknown consistency level",
        ),
        (
            n1.get("default", "k", &[("r", "4")]),
            400,
            "invalid_consistency",
            "needs 4 replicas but the bucket keeps only n = 3",
        ),
        (
            n1.put("default", "k", b"x", "text/plain", None, &[("w", "5")]),
            400,
            "invalid_consistency",
            "needs 5 replicas",
        ),
        (
            n1.put("default", "k", b"x", "text/plain", Some("!!"), &[]),
            400,
            "invalid_context",
            "not valid base64url",
        ),
        (
            n1.get("default", "k", &[("color", "red")]),
            400,
            "invalid_query",
            "unknown query parameter \"color\"",
        ),
        (
            n1.get("default", "k", &[("timeout_ms", "soon")]),
            400,
            "invalid_timeout",
            "not a number",
        ),
        (
            n1.put(
                "default",
                "k",
                &[0u8; 1001],
                "application/octet-stream",
                None,
                &[],
            ),
            413,
            "value_too_large",
            "value is 1001 bytes, more than the limit of 1000",
        ),
    ];
    for (result, status, code, message) in cases {
        let (s, c, body) = api_error(result.expect_err("bad input must fail"));
        assert_eq!((s, c.as_str()), (status, code), "{body}");
        assert!(
            body["message"].as_str().unwrap_or("").contains(message),
            "{body}"
        );
    }
    // An unreachable quorum: 503 with needed, acked and why the others failed.
    c.kill9(1);
    c.kill9(2);
    let e = n1.put(
        "default",
        "k",
        b"x",
        "text/plain",
        None,
        &[("w", "quorum"), ("timeout_ms", "500")],
    );
    let (status, code, body) = api_error(e.expect_err("no quorum"));
    assert_eq!(
        (status, code.as_str()),
        (503, "quorum_not_reached"),
        "{body}"
    );
    assert_eq!(
        (body["needed"].as_u64(), body["acked"].as_u64()),
        (Some(2), Some(1)),
        "{body}"
    );
    assert_eq!(body["failures"].as_array().map(Vec::len), Some(2), "{body}");
}

#[test]
fn status_ring_buckets_and_metrics() {
    let c = TestCluster::start(3, "");
    let n1 = c.client(0);
    n1.put("default", "k", b"x", "text/plain", None, &[])
        .expect("put");
    let status = n1.status().expect("status");
    assert_eq!(status["node"], 1);
    assert_eq!(status["peers"].as_array().map(Vec::len), Some(2));
    let ring = n1.ring(&[("key", "k")]).expect("ring");
    assert_eq!(ring["preference_list"].as_array().map(Vec::len), Some(3));
    // Buckets: create on one node, use it through another.
    let props = n1
        .set_bucket("carts", &serde_json::json!({ "n": 2, "conflicts": "lww" }))
        .expect("create");
    assert_eq!(props["n"], 2);
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.client(2).bucket("carts").is_err() {
        assert!(Instant::now() < deadline, "the bucket never reached node 3");
        std::thread::sleep(Duration::from_millis(100));
    }
    c.client(2)
        .put("carts", "k", b"x", "text/plain", None, &[("w", "all")])
        .expect("n = 2, w = all");
    let (status, code, body) = api_error(
        n1.set_bucket("carts", &serde_json::json!({ "conflicts": "siblings" }))
            .expect_err("fixed"),
    );
    assert_eq!(
        (status, code.as_str()),
        (409, "bucket_property_fixed"),
        "{body}"
    );
    let (status, code, body) = api_error(
        n1.set_bucket("carts", &serde_json::json!({ "n": 3 }))
            .expect_err("n is fixed"),
    );
    assert_eq!(
        (status, code.as_str()),
        (409, "bucket_property_fixed"),
        "{body}"
    );
    // Conditional writes: compare-and-set, in `lww` buckets and in buckets that keep
    // siblings; a malformed condition is bad input (and nothing is written).
    let curl_put = |bucket: &str, header: &str| {
        let url = format!("http://{}/v1/kv/{bucket}/cas-key", c.nodes[0].http);
        let out = std::process::Command::new("curl")
            .args([
                "-s",
                "-i",
                "-X",
                "PUT",
                "-H",
                header,
                "-H",
                &format!("Authorization: Bearer {}", common::TEST_TOKEN),
                "--data",
                "v",
                "-w",
                "\n%{http_code}",
                &url,
            ])
            .output()
            .expect("curl runs");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let text = curl_put("redis", "If-Match: x");
    assert!(text.ends_with("\n400"), "{text}");
    assert!(text.contains("\"code\":\"invalid_context\""), "{text}");
    let text = curl_put("redis", "If-None-Match: 123");
    assert!(text.ends_with("\n400"), "{text}");
    assert_eq!(
        n1.get("redis", "cas-key", &[]).expect("get").status,
        404,
        "a refused conditional write wrote nothing"
    );
    // In a bucket that keeps siblings: If-None-Match, then If-Match with the context of a
    // read, which the next one no longer matches.
    let text = curl_put("default", "If-None-Match: *");
    assert!(text.ends_with("\n204"), "{text}");
    let text = curl_put("default", "If-None-Match: *");
    assert!(text.ends_with("\n412"), "{text}");
    let read = n1.get("default", "cas-key", &[]).expect("get");
    let context = read.context.clone().expect("a read carries its context");
    let text = curl_put("default", &format!("If-Match: {context}"));
    assert!(text.ends_with("\n204"), "{text}");
    let text = curl_put("default", &format!("If-Match: {context}"));
    assert!(text.ends_with("\n412"), "the version changed: {text}");
    let text = curl_put("redis", "If-None-Match: *");
    assert!(text.ends_with("\n204"), "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("x-hydra-paxos: {\"attempts\":1"),
        "{text}"
    );
    let text = curl_put("redis", "If-None-Match: *");
    assert!(text.ends_with("\n412"), "{text}");
    assert!(text.contains("\"code\":\"precondition_failed\""), "{text}");
    // If-Match with the context the 412 carried (the current version) applies.
    let context = text
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .starts_with("x-hydra-context:")
                .then(|| l.split_once(':').expect("header").1.trim().to_string())
        })
        .expect("a 412 carries the current context");
    let text = curl_put("redis", &format!("If-Match: {context}"));
    assert!(text.ends_with("\n204"), "{text}");
    let text = curl_put("redis", &format!("If-Match: {context}"));
    assert!(text.ends_with("\n412"), "the version changed: {text}");
    let serial = n1
        .get("redis", "cas-key", &[("r", "serial")])
        .expect("a serial read");
    assert_eq!(
        (serial.status, serial.body.as_slice()),
        (200, b"v".as_slice())
    );
    // The key is compare-and-set's now: a plain write to it is refused by name (409), and
    // changes nothing.
    let text = curl_put("redis", "X-Plain: yes");
    assert!(text.ends_with("\n409"), "{text}");
    assert!(text.contains("\"code\":\"cas_managed_key\""), "{text}");
    assert!(text.contains("If-Match"), "names the way out: {text}");
    // A bucket with cas = all_writes takes plain writes through Paxos, and one with
    // cas = off refuses conditional ones.
    for (bucket, cas) in [("strict", "all_writes"), ("loose", "off")] {
        n1.set_bucket(
            bucket,
            &serde_json::json!({ "conflicts": "lww", "cas": cas }),
        )
        .expect("bucket made");
        let shown = n1.bucket(bucket).expect("bucket shown");
        assert_eq!(shown["cas"], cas, "{shown}");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while (1..3)
        .any(|i| c.client(i).bucket("loose").is_err() || c.client(i).bucket("strict").is_err())
    {
        assert!(
            Instant::now() < deadline,
            "the buckets never reached every node"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let text = curl_put("strict", "X-Plain: yes");
    assert!(text.ends_with("\n204"), "{text}");
    let text = curl_put("strict", "X-Plain: yes");
    assert!(
        text.ends_with("\n204"),
        "never refused as cas-managed: {text}"
    );
    let text = curl_put("loose", "If-None-Match: *");
    assert!(text.ends_with("\n501"), "{text}");
    assert!(text.contains("cas = off"), "{text}");
    // Metrics name requests by operation and level (the plain puts of the all_writes bucket
    // count as the puts they are).
    let metrics = n1.metrics().expect("metrics");
    assert!(
        metrics.contains("hydra_requests_total{op=\"put\",level=\"default\",status=\"ok\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("hydra_request_duration_seconds_bucket"),
        "{metrics}"
    );
}

#[test]
fn hydra_dev_starts_a_cluster_writes_cluster_json_and_stops_it_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut dev = Command::new(env!("CARGO_BIN_EXE_hydra"))
        .args([
            "dev",
            "--nodes",
            "3",
            "--durability",
            "none",
            "--ports",
            "free",
            "--dir",
        ])
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start hydra dev");
    let cluster_json = dir.path().join("cluster.json");
    let deadline = Instant::now() + Duration::from_secs(30);
    let cluster: Value = loop {
        if let Some(v) = std::fs::read_to_string(&cluster_json)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
        {
            break v;
        }
        if let Ok(Some(status)) = dev.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = dev.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            panic!("hydra dev exited ({status}) before writing cluster.json: {err}");
        }
        assert!(
            Instant::now() < deadline,
            "hydra dev never wrote cluster.json"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let nodes = cluster["nodes"].as_array().expect("nodes").clone();
    assert_eq!(nodes.len(), 3);
    for n in &nodes {
        for field in ["id", "pid", "http", "resp", "internode"] {
            assert!(!n[field].is_null(), "cluster.json node lacks {field}: {n}");
        }
    }
    // Secure by default: no token, no access; cluster.json carries what a local client needs.
    let anonymous = Client::new(nodes[0]["http"].as_str().expect("http"));
    let denied = anonymous.get("default", "k", &[]);
    assert!(
        matches!(&denied, Err(hydra_client::Error::Api { status: 401, .. })),
        "{denied:?}"
    );
    let token = cluster["token"].as_str().expect("cluster.json has a token");
    assert_eq!(cluster["password"].as_str(), Some(token));
    assert_eq!(cluster["user"].as_str(), Some("default"));
    let client = anonymous.with_token(token);
    client
        .put("default", "k", b"v", "text/plain", None, &[("w", "all")])
        .expect("the dev cluster takes writes");
    let r = Client::new(nodes[2]["http"].as_str().expect("http"))
        .with_token(token)
        .get("default", "k", &[("r", "all")])
        .expect("read");
    assert_eq!(r.body, b"v");
    // The CLI's compare-and-set: a write if absent, then a serial read.
    let http = nodes[1]["http"].as_str().expect("http");
    // The CLI takes the token from the cluster.json that HYDRA_CLUSTER names.
    let cli = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_hydra"))
            .args(args)
            .args(["--endpoint", http, "--bucket", "redis"])
            .env("HYDRA_CLUSTER", &cluster_json)
            .env_remove("HYDRA_TOKEN")
            .output()
            .expect("run hydra")
    };
    let out = cli(&["put", "--if-absent", "lock", "a"]);
    assert!(out.status.success(), "{out:?}");
    let out = cli(&["put", "--if-absent", "lock", "b"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("condition does not hold"),
        "{out:?}"
    );
    let out = cli(&["get", "--serial", "lock"]);
    assert_eq!(out.stdout, b"a", "{out:?}");
    // A conditional delete with a context that is not the current version deletes nothing.
    let stale = hydra_core::version::Context(hydra_core::version::VersionVector(
        [(hydra_core::ids::NodeId(1), 1)].into(),
    ))
    .encode();
    let out = cli(&["del", "--if-match", &stale, "lock"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let out = cli(&["get", "--serial", "lock"]);
    assert_eq!(out.stdout, b"a", "{out:?}");
    // The env file it writes (owner-only: it holds the token) is all a shell needs.
    let env_file = dir.path().join("env");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&env_file)
            .expect("env file")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            ". '{}' && '{}' get --bucket redis --serial lock",
            env_file.display(),
            env!("CARGO_BIN_EXE_hydra")
        ))
        .env_remove("HYDRA_TOKEN")
        .env_remove("HYDRA_CLUSTER")
        .env_remove("HYDRA_ENDPOINT")
        .current_dir(std::env::temp_dir())
        .output()
        .expect("sh");
    assert_eq!(out.stdout, b"a", "{out:?}");
    // Logs go to each node's log file, without colour codes.
    let log3 = std::fs::read_to_string(dir.path().join("n3.log")).expect("n3.log");
    assert!(log3.contains("INFO") && !log3.contains('\u{1b}'), "{log3}");
    // Node 3 killed and restarted by hand (the command hydra dev printed): it logs to its
    // file, not the terminal, and cluster.json names its new pid.
    let old_pid = nodes[2]["pid"].as_i64().expect("pid") as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(old_pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill node 3");
    // The kill is asynchronous: its ports are free only once it is gone (or a zombie).
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_to_string(format!("/proc/{old_pid}/stat"))
        .is_ok_and(|stat| !stat.contains(") Z "))
    {
        assert!(Instant::now() < deadline, "node 3 survived SIGKILL");
        std::thread::sleep(Duration::from_millis(20));
    }
    let config3 = nodes[2]["config"].as_str().expect("config").to_string();
    let mut by_hand = Command::new(env!("CARGO_BIN_EXE_hydra"))
        .args(["server", "--config", &config3])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("restart node 3 by hand");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now: Value =
            serde_json::from_str(&std::fs::read_to_string(&cluster_json).expect("cluster.json"))
                .expect("json");
        if now["nodes"][2]["pid"].as_u64() == Some(u64::from(by_hand.id())) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "cluster.json kept pid {old_pid}: {now}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = Client::new(nodes[2]["http"].as_str().expect("http"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while r.health().is_err() {
        if let Ok(Some(status)) = by_hand.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = by_hand.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            panic!("node 3 exited ({status}) after its restart: {err}");
        }
        assert!(Instant::now() < deadline, "node 3 never came back");
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = by_hand.kill();
    let out = by_hand.wait_with_output().expect("node 3 output");
    assert!(
        out.stderr.is_empty(),
        "it logged to the terminal: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log3_after = std::fs::read_to_string(dir.path().join("n3.log")).expect("n3.log");
    assert!(
        log3_after.len() > log3.len(),
        "the restarted node logged to its file"
    );
    // SIGTERM stops every node.
    let pids: Vec<i32> = nodes
        .iter()
        .map(|n| n["pid"].as_i64().expect("pid") as i32)
        .collect();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(dev.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("kill");
    let status = dev.wait().expect("hydra dev exits");
    assert!(status.success(), "hydra dev exited with {status}");
    for pid in pids {
        let alive = std::path::Path::new(&format!("/proc/{pid}")).exists()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(") Z ");
        assert!(
            !alive,
            "node process {pid} still runs after hydra dev stopped"
        );
    }
}

#[test]
fn writes_missed_by_a_killed_node_arrive_by_hinted_handoff() {
    let mut c = TestCluster::start(3, "");
    c.kill9(2);
    // Writes continue while node 3 is down; coordinators keep hints for it.
    for i in 0..40 {
        let key = format!("h{i}");
        c.client(i % 2)
            .put(
                "default",
                &key,
                key.as_bytes(),
                "text/plain",
                None,
                &[("w", "quorum")],
            )
            .expect("quorum write");
    }
    // A coordinator stores its hints when the write's deadline passes without node 3's ack.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let held: u64 = (0..2)
            .map(|i| {
                let s = c.client(i).status().expect("status");
                s["hints"].as_array().map_or(0, |h| {
                    h.iter().map(|t| t["count"].as_u64().unwrap_or(0)).sum()
                })
            })
            .sum();
        if held >= 40 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the coordinators hold only {held} hints for node 3"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    c.restart(2);
    // Handoff delivers them: node 3 alone (r=one at node 3 answers from its own store first)
    // has every write, with no read repair involved.
    for i in 0..40 {
        let key = format!("h{i}");
        let r = read_until(&c.client(2), &key, &[("r", "one")], |r| {
            r.status == 200 && receipt(r)["coordinator"] == 3 && r.body == key.as_bytes()
        });
        assert_eq!(receipt(&r)["read_repairs"], serde_json::json!([]));
    }
    let delivered: u64 = (0..2)
        .map(|i| {
            let m = c.client(i).metrics().expect("metrics");
            m.lines()
                .find(|l| l.starts_with("hydra_hints_delivered_total "))
                .and_then(|l| l.split(' ').nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        })
        .sum();
    assert!(delivered >= 40, "metrics show {delivered} hints delivered");
}

#[test]
fn with_handoff_off_anti_entropy_alone_brings_a_returning_node_up_to_date() {
    let mut c = TestCluster::start(3, "");
    // Node 3 runs with handoff off on the others: restart them with the setting.
    for i in 0..2 {
        c.kill9(i);
        let text = std::fs::read_to_string(&c.nodes[i].config).expect("config");
        let text = text.replace(
            "heartbeat_interval_ms = 100",
            "heartbeat_interval_ms = 100\nhandoff_interval_ms = 0\nanti_entropy_interval_ms = 20",
        );
        std::fs::write(&c.nodes[i].config, text).expect("config");
    }
    for i in 0..2 {
        c.spawn(i);
    }
    for i in 0..2 {
        c.wait_healthy(i);
    }
    c.kill9(2);
    for i in 0..30 {
        let key = format!("ae{i}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while c
            .client(i % 2)
            .put(
                "default",
                &key,
                key.as_bytes(),
                "text/plain",
                None,
                &[("w", "quorum")],
            )
            .is_err()
        {
            assert!(Instant::now() < deadline, "nodes 1 and 2 never took writes");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    c.restart(2);
    // No reads until node 3 holds everything on its own: within a bounded time.
    let started = Instant::now();
    let deadline = started + Duration::from_secs(60);
    loop {
        let objects = c.client(2).status().expect("status")["objects"]
            .as_u64()
            .unwrap_or(0);
        if objects >= 30 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node 3 holds {objects} of 30 objects after 60 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for i in 0..30 {
        let key = format!("ae{i}");
        let r = c
            .client(2)
            .get("default", &key, &[("r", "one")])
            .expect("read");
        assert_eq!((r.status, r.body.as_slice()), (200, key.as_bytes()));
    }
    let repaired: u64 = (0..3)
        .map(|i| {
            c.client(i).status().expect("status")["anti_entropy"]["keys_repaired"]
                .as_u64()
                .unwrap_or(0)
        })
        .sum();
    // Some writes may still reach node 3 late from its peers' send queues; the rest must have
    // come by anti-entropy (no reads ran, no hints were delivered).
    assert!(repaired >= 1, "anti-entropy repaired {repaired} keys");
    eprintln!(
        "anti-entropy brought node 3 up to date in {:?}",
        started.elapsed()
    );
}

/// Measurement, not a check (run with `cargo test --release -p hydra --test cluster -- --ignored
/// --nocapture outage`): a steady write rate while node 3 is down for `OUTAGE_SECS` (default
/// 60), then the time until node 3 holds every write, with hinted handoff and with
/// anti-entropy alone.
#[test]
#[ignore]
fn outage_convergence_time() {
    let outage = std::env::var("OUTAGE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60u64);
    for handoff in [true, false] {
        let extra = if handoff {
            ""
        } else {
            "anti_entropy_interval_ms = 100\nhandoff_interval_ms = 0"
        };
        let mut c = TestCluster::start(3, "");
        if !handoff {
            for i in 0..3 {
                c.kill9(i);
                let text = std::fs::read_to_string(&c.nodes[i].config).expect("config");
                let text = text.replace(
                    "heartbeat_interval_ms = 100",
                    &format!("heartbeat_interval_ms = 100\n{extra}"),
                );
                std::fs::write(&c.nodes[i].config, text).expect("config");
                c.spawn(i);
            }
            for i in 0..3 {
                c.wait_healthy(i);
            }
        }
        c.kill9(2);
        let started = Instant::now();
        let mut written = 0u64;
        while started.elapsed() < Duration::from_secs(outage) {
            let key = format!("o{written}");
            if c.client((written % 2) as usize)
                .put(
                    "default",
                    &key,
                    b"v",
                    "text/plain",
                    None,
                    &[("w", "quorum")],
                )
                .is_ok()
            {
                written += 1;
            }
            // About 50 writes a second.
            std::thread::sleep(Duration::from_millis(20));
        }
        c.restart(2);
        let back = Instant::now();
        let deadline = back + Duration::from_secs(600);
        loop {
            let objects = c.client(2).status().expect("status")["objects"]
                .as_u64()
                .unwrap_or(0);
            if objects >= written {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node 3 holds {objects} of {written} after 600 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!(
            "outage {outage} s, {written} writes, handoff {}: node 3 up to date {:.1} s after restart",
            if handoff {
                "on"
            } else {
                "off (anti-entropy only, 100 ms interval)"
            },
            back.elapsed().as_secs_f64()
        );
    }
}

/// `GET /v1/kv/{bucket}` lists the bucket's keys over the whole cluster a page at a time,
/// deleted keys left out; `hydra ls` prints them; bad cursors and limits are named.
#[test]
fn the_http_listing_and_hydra_ls_return_every_live_key() {
    let c = TestCluster::start(3, "");
    let mut live = std::collections::BTreeSet::new();
    for i in 0..80 {
        let key = format!("item-{i:03}");
        c.client(i % 3)
            .put("default", &key, b"v", "text/plain", None, &[("w", "all")])
            .expect("put");
        live.insert(key);
    }
    for i in (0..80).step_by(9) {
        let key = format!("item-{i:03}");
        let read = c.client(0).get("default", &key, &[]).expect("read");
        c.client(1)
            .delete("default", &key, read.context.as_deref(), &[("w", "all")])
            .expect("delete");
        live.remove(&key);
    }
    let n2 = c.client(1);
    let mut listed = Vec::new();
    let mut after: Option<String> = None;
    for pages in 0.. {
        assert!(pages < 1_000, "the listing ends");
        let page = n2.list("default", after.as_deref(), 7).expect("list");
        let keys = page["keys"].as_array().expect("keys");
        assert!(keys.len() <= 7, "{page}");
        listed.extend(keys.iter().map(|k| k.as_str().expect("text").to_string()));
        after = page["next"].as_str().map(str::to_string);
        if after.is_none() {
            break;
        }
    }
    let unique: std::collections::BTreeSet<String> = listed.iter().cloned().collect();
    assert_eq!(unique.len(), listed.len(), "a key listed twice");
    assert_eq!(unique, live);
    let out = Command::new(env!("CARGO_BIN_EXE_hydra"))
        .args(["ls", "--bucket", "default", "--endpoint", &c.nodes[2].http])
        .env("HYDRA_TOKEN", common::TEST_TOKEN)
        .output()
        .expect("hydra ls");
    assert!(out.status.success(), "{out:?}");
    let printed: std::collections::BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(printed, live);
    for (query, what) in [
        ("limit=0", "limit"),
        ("after=%%%", "after"),
        ("bogus=1", "bogus"),
    ] {
        let url = format!("http://{}/v1/kv/default?{query}", c.nodes[0].http);
        let out = Command::new("curl")
            .args(["-s", "-w", "\n%{http_code}", "-H"])
            .arg(format!("Authorization: Bearer {}", common::TEST_TOKEN))
            .arg(&url)
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.ends_with("400") && text.contains(what),
            "{query}: {text}"
        );
    }
    assert!(
        c.client(0).list("nosuch", None, 10).is_err(),
        "an unknown bucket is an error"
    );
    // Truncated (the CLI's `hydra bucket truncate`, `DELETE /v1/kv/{bucket}`): nothing
    // listed, nothing read, through any node; a write after it stays.
    let out = Command::new(env!("CARGO_BIN_EXE_hydra"))
        .args([
            "bucket",
            "truncate",
            "default",
            "--endpoint",
            &c.nodes[1].http,
        ])
        .env("HYDRA_TOKEN", common::TEST_TOKEN)
        .output()
        .expect("hydra bucket truncate");
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("truncated_at_ms"),
        "{out:?}"
    );
    for i in 0..3 {
        let page = c.client(i).list("default", None, 100).expect("list");
        assert_eq!(page["keys"], serde_json::json!([]), "{page}");
        let r = c.client(i).get("default", "item-001", &[]).expect("read");
        assert_eq!(r.status, 404);
    }
    c.client(2)
        .put(
            "default",
            "fresh",
            b"v",
            "text/plain",
            None,
            &[("w", "all")],
        )
        .expect("put");
    let page = c.client(0).list("default", None, 100).expect("list");
    assert_eq!(page["keys"], serde_json::json!(["fresh"]), "{page}");
}
