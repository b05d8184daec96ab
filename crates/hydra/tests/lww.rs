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

/// A Redis-protocol connection that sends one command and reads one simple reply (status,
/// error, integer, nil or bulk string) as text.
struct Resp {
    reader: std::io::BufReader<std::net::TcpStream>,
}

impl Resp {
    fn connect(addr: &str) -> Resp {
        let stream = std::net::TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut resp = Resp {
            reader: std::io::BufReader::new(stream),
        };
        assert_eq!(resp.call(&["AUTH", common::TEST_TOKEN]), "+OK");
        resp
    }

    fn call(&mut self, args: &[&str]) -> String {
        use std::io::{BufRead, Read, Write};
        let mut out = format!("*{}\r\n", args.len());
        for a in args {
            out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        self.reader
            .get_mut()
            .write_all(out.as_bytes())
            .expect("send");
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("reply");
        let line = line.trim_end().to_string();
        match line.strip_prefix('$') {
            Some("-1") => "(nil)".into(),
            Some(len) => {
                let len: usize = len.parse().expect("bulk length");
                let mut body = vec![0; len + 2];
                self.reader.read_exact(&mut body).expect("bulk");
                String::from_utf8_lossy(&body[..len]).into_owned()
            }
            None => line,
        }
    }
}

#[test]
fn read_then_write_commands_never_undo_a_concurrent_set() {
    // `EXPIRE k` (or `GETDEL k`) on one connection and `SET k v2` on another at the same
    // moment: whichever order they take, the final value is never the old one (EXPIRE used
    // to write the value it read back over v2, and GETDEL to delete a v2 it never returned).
    let c = TestCluster::start(3, "");
    let (addr_a, addr_b) = (c.nodes[0].resp.clone(), c.nodes[1].resp.clone());
    let mut setup = Resp::connect(&addr_a);
    let mut old_value_won = Vec::new();
    for i in 0..60 {
        let key = format!("race{i}");
        assert_eq!(setup.call(&["SET", &key, "v1"]), "+OK");
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
        let getdel = i % 2 == 1;
        let (k, b, addr) = (key.clone(), barrier.clone(), addr_b.clone());
        let racer = std::thread::spawn(move || {
            let mut conn = Resp::connect(&addr);
            b.wait();
            if getdel {
                conn.call(&["GETDEL", &k])
            } else {
                conn.call(&["EXPIRE", &k, "100"])
            }
        });
        let mut writer = Resp::connect(&addr_a);
        barrier.wait();
        assert_eq!(writer.call(&["SET", &key, "v2"]), "+OK");
        let raced = racer.join().expect("racer");
        let last = setup.call(&["GET", &key]);
        let fine = match (getdel, raced.as_str()) {
            // GETDEL that returned v2 deleted it; one that returned v1 leaves v2.
            (true, "v2") => last == "(nil)",
            (true, "v1") => last == "v2",
            (false, ":1") => last == "v2",
            _ => false,
        };
        if !fine {
            old_value_won.push(format!("{key}: racer said {raced}, then GET said {last}"));
        }
    }
    assert!(
        old_value_won.is_empty(),
        "a read-then-write command undid a concurrent SET: {old_value_won:?}"
    );
}

#[test]
fn read_then_write_commands_refuse_a_key_with_siblings() {
    // In a `siblings` bucket, EXPIRE, GETDEL or SET ... GET on one of several concurrent values
    // would drop the others (SET ... GET would return one and replace all): refused, naming how to resolve them; the siblings stay.
    let c = TestCluster::start(3, "");
    let mut conn = Resp::connect(&c.nodes[0].resp);
    assert_eq!(conn.call(&["HYDRA.BUCKET", "default"]), "+OK");
    assert!(!conn.call(&["HYDRA.PUT", "k", "a", ""]).starts_with('-'));
    assert!(!conn.call(&["HYDRA.PUT", "k", "b", ""]).starts_with('-'));
    for cmd in [
        &["EXPIRE", "k", "100"][..],
        &["GETDEL", "k"],
        &["PERSIST", "k"],
        &["DEL", "k"],
        &["SET", "k", "c", "GET"],
        &["SET", "k", "c", "KEEPTTL"],
    ] {
        let reply = conn.call(cmd);
        assert!(
            reply.starts_with("-CONFLICT the key has 2 concurrent values"),
            "{cmd:?}: {reply}"
        );
    }
    let siblings = c.client(0).get("default", "k", &[]).expect("read");
    assert_eq!(siblings.status, 300, "both siblings are still there");
}

#[test]
fn an_http_delete_with_a_context_deletes_only_the_version_that_read_saw() {
    // HTTP's analog of GETDEL: a DELETE carrying a read's context. In an `lww` bucket it
    // used to be a new tombstone stamped now, so a value another client wrote after the
    // read (and before the delete) was deleted too, unseen. Now it deletes exactly the
    // version the context names; a later value stays. In a `siblings` bucket it deletes
    // what the read saw, as before.
    let c = TestCluster::start(3, "");
    let (alice, bob) = (c.client(0), c.client(1));
    for bucket in ["redis", "default"] {
        alice
            .put(bucket, "k", b"v1", "text/plain", None, &[])
            .expect("v1");
        let read = alice.get(bucket, "k", &[]).expect("read");
        assert_eq!(read.body, b"v1");
        let context = read.context.expect("a context");
        let later = bob.get(bucket, "k", &[]).expect("read").context;
        bob.put(bucket, "k", b"v2", "text/plain", later.as_deref(), &[])
            .expect("v2, written after alice's read");
        alice
            .delete(bucket, "k", Some(&context), &[])
            .expect("alice deletes what she read");
        let after = c.client(2).get(bucket, "k", &[("r", "all")]).expect("read");
        assert_eq!(
            (after.status, after.body.as_slice()),
            (200, &b"v2"[..]),
            "{bucket}: the delete of v1 took v2 with it"
        );
    }
}

#[test]
fn a_node_whose_clock_is_an_hour_ahead_refuses_writes_and_poisons_no_key() {
    // A node comes back with its clock an hour ahead. It used to stamp writes an hour in the
    // future: its replicas refused them but its own copy kept them, and once its clock was put
    // right every later write to those keys was acknowledged and invisible. Now its peers'
    // heartbeats show the offset and it refuses to coordinate (CLOCK_SKEW), until its clock
    // is right again.
    let mut c = TestCluster::start(3, "");
    c.kill9(0);
    let config = std::fs::read_to_string(&c.nodes[0].config).expect("config");
    let ahead = config.replacen("[node]\n", "[node]\nclock_offset_ms = 3600000\n", 1);
    std::fs::write(&c.nodes[0].config, &ahead).expect("config");
    c.spawn(0);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let state = c.client(0).status().map(|s| s["clock"].clone());
        if let Ok(clock) = &state
            && clock["state"] == "skewed"
        {
            let offset = clock["offset_ms"].as_i64().expect("offset");
            assert!((3_590_000..3_610_000).contains(&offset), "{clock}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the skew was never seen: {state:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut resp = Resp::connect(&c.nodes[0].resp);
    let keys: Vec<String> = (0..20).map(|i| format!("clock{i}")).collect();
    for k in &keys {
        let reply = resp.call(&["SET", k, "from-the-future"]);
        assert!(
            reply.starts_with("-CLOCK_SKEW node n1 refuses writes: its clock is"),
            "{reply}"
        );
    }
    let e = c
        .client(0)
        .put("redis", "clock0", b"x", "text/plain", None, &[])
        .expect_err("refused over HTTP too");
    assert!(e.to_string().contains("clock_skew"), "{e}");
    // The clock put right (a restart with the offset gone), writes through any node are seen.
    c.kill9(0);
    std::fs::write(&c.nodes[0].config, config).expect("config");
    c.restart(0);
    for (i, k) in keys.iter().enumerate() {
        let mut conn = Resp::connect(&c.nodes[i % 3].resp);
        assert_eq!(conn.call(&["SET", k, "now"]), "+OK");
    }
    for k in &keys {
        for n in 0..3 {
            let mut conn = Resp::connect(&c.nodes[n].resp);
            assert_eq!(
                conn.call(&["GET", k]),
                "now",
                "key {k} read at node {}",
                n + 1
            );
        }
    }
}
