//! Guarantee 6 with real processes: nobody joins the cluster or talks to it without the
//! secret. Rogue nodes (wrong secret, no role, another node's id) are refused at the
//! handshake; records replayed, reordered or modified in flight close the connection.

mod common;

use common::{TEST_SECRET, TestCluster, free_port, metric, spawn_server};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn handshakes(cluster: &TestCluster, i: usize, outcome: &str) -> f64 {
    let text = cluster.client(i).metrics().expect("metrics");
    metric(
        &text,
        &format!("hydra_internode_handshakes_total{{outcome=\"{outcome}\"}}"),
    )
}

fn rejected(cluster: &TestCluster, i: usize) -> f64 {
    let text = cluster.client(i).metrics().expect("metrics");
    metric(&text, "hydra_internode_records_rejected_total")
}

/// Polls `what` until it holds, for 30 s at most.
fn eventually(what: &str, mut holds: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !holds() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A configuration for a node outside the cluster that dials node 1 at `target`.
fn rogue_config(dir: &std::path::Path, name: &str, id: u64, secret: &str, target: &str) -> String {
    format!(
        "[node]\nid = {id}\ndata_dir = \"{}\"\n[listen]\nhttp = \"127.0.0.1:{}\"\ninternode = \"127.0.0.1:{}\"\nresp = \"127.0.0.1:{}\"\n\
         [auth]\nadmin_token = \"{}\"\n\
         [cluster]\nsecret = \"{secret}\"\npeers = [{{ id = 1, internode = \"{target}\" }}]\nheartbeat_interval_ms = 100\n",
        dir.join(name).display(),
        free_port(),
        free_port(),
        free_port(),
        common::TEST_TOKEN
    )
}

#[test]
fn rogue_nodes_are_refused_at_the_handshake() {
    let cluster = TestCluster::start(3, "");
    let c = cluster.client(0);
    c.put("default", "k", b"v1", "text/plain", None, &[("w", "all")])
        .expect("write before the rogues");
    // Node 1 has pinned node 2's key by now (first contact).
    eventually("node 1 admitted its peers", || {
        handshakes(&cluster, 0, "ok") >= 2.0
    });
    let dir = cluster.dir.path();
    let target = cluster.nodes[0].internode.clone();
    let rogues = [
        (
            "wrong-secret",
            2,
            "a-secret-nobody-in-the-cluster-holds-0123456789",
            "wrong_secret",
        ),
        ("no-role", 9, TEST_SECRET, "no_role"),
        ("impostor", 2, TEST_SECRET, "wrong_key"),
    ];
    let mut children = Vec::new();
    for (name, id, secret, _) in &rogues {
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(&config, rogue_config(dir, name, *id, secret, &target)).expect("write");
        children.push(spawn_server(&config, &dir.join(format!("{name}.log"))));
    }
    for (name, _, _, outcome) in &rogues {
        eventually(
            &format!("node 1 refused the {name} rogue ({outcome})"),
            || handshakes(&cluster, 0, outcome) >= 2.0,
        );
    }
    for mut child in children {
        let _ = child.kill();
        let _ = child.wait();
    }
    // The members still talk to each other: a write every replica acks, then a read of all.
    c.put("default", "k2", b"v2", "text/plain", None, &[("w", "all")])
        .expect("write after the rogues");
    let got = cluster
        .client(1)
        .get("default", "k", &[("r", "all")])
        .expect("read");
    assert_eq!((got.status, got.body.as_slice()), (200, &b"v1"[..]));
}

/// A node with the right secret but no role in the layout, present through a minute of
/// writes (`HYDRA_ROGUE_SECS`, 60 by default) while a member is killed, so fallbacks are
/// needed: it is refused at every handshake, so it gets no replica write, no hint, no
/// fallback write and no heartbeat, and what it coordinates itself reaches no member.
#[test]
fn a_node_without_a_role_gets_nothing_through_a_minute_of_load_and_a_failure() {
    let secs: u64 = std::env::var("HYDRA_ROGUE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let mut cluster = TestCluster::start(4, "");
    let dir = cluster.dir.path().to_path_buf();
    let rogue_http = format!("127.0.0.1:{}", free_port());
    // It knows every member (and claims a place among them in its own layout).
    let peers: Vec<String> = cluster
        .nodes
        .iter()
        .map(|n| {
            format!(
                "{{ id = {}, internode = \"{}\", zone = \"z{}\" }}",
                n.id, n.internode, n.id
            )
        })
        .collect();
    let config = dir.join("rogue.toml");
    std::fs::write(
        &config,
        format!(
            "[node]\nid = 9\nzone = \"z9\"\ndata_dir = \"{}\"\n[listen]\nhttp = \"{rogue_http}\"\ninternode = \"127.0.0.1:{}\"\nresp = \"127.0.0.1:{}\"\n\
             [auth]\nadmin_token = \"{}\"\n\
             [cluster]\nsecret = \"{TEST_SECRET}\"\npeers = [{}]\nheartbeat_interval_ms = 100\n[limits]\nrequest_timeout_ms = 1000\n",
            dir.join("rogue").display(),
            free_port(),
            free_port(),
            common::TEST_TOKEN,
            peers.join(", ")
        ),
    )
    .expect("write");
    let mut rogue = spawn_server(&config, &dir.join("rogue.log"));
    let rogue_client = hydra_client::Client::new(&rogue_http).with_token(common::TEST_TOKEN);
    eventually("the rogue answers", || rogue_client.health().is_ok());
    let refused_before: f64 = (0..4).map(|i| handshakes(&cluster, i, "no_role")).sum();

    // A minute of sloppy writes through members 1, 2 and 4; member 3 dies a sixth in.
    let start = Instant::now();
    let mut acked = Vec::new();
    let mut killed = false;
    let mut i = 0u64;
    while start.elapsed() < Duration::from_secs(secs) && i < 100_000 {
        if !killed && start.elapsed() >= Duration::from_secs(secs / 6) {
            cluster.kill9(2);
            killed = true;
        }
        let at = [0, 1, 3][(i % 3) as usize];
        let key = format!("load-{i}");
        let w = cluster.client(at).put(
            "default",
            &key,
            key.as_bytes(),
            "text/plain",
            None,
            &[("w", "2"), ("sloppy", "true")],
        );
        if w.is_ok() {
            acked.push(key);
        }
        // The rogue coordinates writes of its own: they must reach no member.
        if i.is_multiple_of(10) {
            let _ = rogue_client.put(
                "default",
                &format!("forged-{i}"),
                b"forged",
                "text/plain",
                None,
                &[("w", "1")],
            );
        }
        i += 1;
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(killed && acked.len() > 100, "{} writes acked", acked.len());

    // Fallbacks were needed: members hold hints, for member 3 only.
    let mut hints_for_3 = 0;
    for m in [0, 1, 3] {
        let status = cluster.client(m).status().expect("status");
        for h in status["hints"].as_array().expect("hints") {
            assert_eq!(h["owner"], 3, "member {} holds a hint for {h}", m + 1);
            hints_for_3 += h["count"].as_u64().unwrap_or(0);
        }
        assert_eq!(status["peer_messages_refused"], 0);
    }
    assert!(hints_for_3 > 0, "no fallback was needed");
    // The rogue never heard from a member. (Its own side of each handshake ends before the
    // member judges its role, so it cannot tell; the member then closes at once.)
    let status = rogue_client.status().expect("rogue status");
    for p in status["peers"].as_array().expect("peers") {
        assert!(p["last_heard_ms_ago"].is_null(), "the rogue heard from {p}");
    }
    // It tried throughout, and every member refused it for its role.
    let refused: f64 = (0..4)
        .filter(|i| *i != 2)
        .map(|i| handshakes(&cluster, i, "no_role"))
        .sum();
    assert!(refused - refused_before >= 3.0, "{refused} refusals");
    eprintln!(
        "{secs} s: {} writes acked, {hints_for_3} hints for member 3, {} handshakes of the rogue refused (no_role)",
        acked.len(),
        refused - refused_before
    );
    let _ = rogue.kill();
    let _ = rogue.wait();
    // Every acknowledged write is there; nothing the rogue wrote is.
    let reader = cluster.client(0);
    for key in acked.iter().step_by((acked.len() / 200).max(1)) {
        let got = reader.get("default", key, &[("r", "2")]).expect("read");
        assert_eq!(
            (got.status, got.body.as_slice()),
            (200, key.as_bytes()),
            "{key}"
        );
    }
    for i in (0..i).step_by(10).take(50) {
        let got = reader
            .get("default", &format!("forged-{i}"), &[("r", "2")])
            .expect("read");
        assert_eq!(got.status, 404, "forged-{i} reached a member");
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Tamper {
    None,
    /// Flip one bit of the next record's ciphertext.
    Flip,
    /// Send the next record twice.
    Replay,
    /// Swap the next two records.
    Reorder,
}

/// A TCP proxy in front of `upstream` that parses the initiator's side of the internode
/// protocol (preamble, handshake messages 1 and 3, then records) and tampers with records
/// on request. It also keeps the first bytes of the first connection, for replaying.
/// The proxy's address, the tampering to do next, and the recorded bytes.
type Proxy = (String, Arc<Mutex<Tamper>>, Arc<Mutex<Vec<u8>>>);

fn proxy(upstream: String) -> Proxy {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let tamper = Arc::new(Mutex::new(Tamper::None));
    let recorded = Arc::new(Mutex::new(Vec::new()));
    let (t, r) = (tamper.clone(), recorded.clone());
    std::thread::spawn(move || {
        for client in listener.incoming().take(100) {
            let Ok(client) = client else { continue };
            let Ok(server) = TcpStream::connect(&upstream) else {
                continue;
            };
            let (mut c2, mut s2) = (
                client.try_clone().expect("clone"),
                server.try_clone().expect("clone"),
            );
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut s2, &mut c2);
                let _ = c2.shutdown(std::net::Shutdown::Both);
            });
            let (t, r) = (t.clone(), r.clone());
            std::thread::spawn(move || forward(client, server, &t, &r));
        }
    });
    (addr, tamper, recorded)
}

fn read_message(from: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 2];
    from.read_exact(&mut len)?;
    let mut msg = len.to_vec();
    msg.resize(2 + u16::from_be_bytes(len) as usize, 0);
    from.read_exact(&mut msg[2..])?;
    Ok(msg)
}

fn forward(
    mut client: TcpStream,
    mut server: TcpStream,
    tamper: &Mutex<Tamper>,
    recorded: &Mutex<Vec<u8>>,
) {
    let record = |bytes: &[u8]| {
        let mut r = recorded.lock().expect("lock");
        if r.len() < 4096 {
            r.extend_from_slice(bytes);
        }
    };
    let mut run = || -> std::io::Result<()> {
        let mut preamble = [0u8; 16];
        client.read_exact(&mut preamble)?;
        record(&preamble);
        server.write_all(&preamble)?;
        for _ in 0..2 {
            let msg = read_message(&mut client)?;
            record(&msg);
            server.write_all(&msg)?;
        }
        loop {
            let mut msg = read_message(&mut client)?;
            record(&msg);
            let what = std::mem::replace(&mut *tamper.lock().expect("lock"), Tamper::None);
            match what {
                Tamper::None => server.write_all(&msg)?,
                Tamper::Flip => {
                    let at = msg.len() / 2;
                    msg[at] ^= 0x10;
                    server.write_all(&msg)?;
                }
                Tamper::Replay => {
                    server.write_all(&msg)?;
                    server.write_all(&msg)?;
                }
                Tamper::Reorder => {
                    let next = read_message(&mut client)?;
                    server.write_all(&next)?;
                    server.write_all(&msg)?;
                }
            }
        }
    };
    let _ = run();
    let _ = server.shutdown(std::net::Shutdown::Both);
    let _ = client.shutdown(std::net::Shutdown::Both);
}

#[test]
fn replayed_reordered_and_modified_records_close_the_connection() {
    let mut cluster = TestCluster::start(2, "");
    // Route node 2's connection to node 1 through the tampering proxy.
    let (addr, tamper, recorded) = proxy(cluster.nodes[0].internode.clone());
    cluster.kill9(1);
    let config = std::fs::read_to_string(&cluster.nodes[1].config).expect("read");
    let config = config.replace(&cluster.nodes[0].internode, &addr);
    std::fs::write(&cluster.nodes[1].config, config).expect("write");
    cluster.restart(1);
    let c = cluster.client(1);
    c.put(
        "default",
        "before",
        b"1",
        "text/plain",
        None,
        &[("w", "all")],
    )
    .expect("write through the proxy");

    let mut expected = rejected(&cluster, 0);
    for how in [Tamper::Flip, Tamper::Replay, Tamper::Reorder] {
        let ok_before = handshakes(&cluster, 0, "ok");
        *tamper.lock().expect("lock") = how;
        expected += 1.0;
        eventually(&format!("node 1 rejected a record ({how:?})"), || {
            rejected(&cluster, 0) >= expected
        });
        // Node 2 reconnects with a fresh handshake and the cluster works on.
        eventually(&format!("node 2 reconnected after {how:?}"), || {
            handshakes(&cluster, 0, "ok") > ok_before
        });
        let key = format!("after-{how:?}");
        eventually(&format!("a write to every replica after {how:?}"), || {
            c.put("default", &key, b"x", "text/plain", None, &[("w", "all")])
                .is_ok()
        });
    }
    assert_eq!(
        rejected(&cluster, 0),
        expected,
        "each tampering closed exactly one connection"
    );

    // The recorded start of a session (handshake and records), replayed on a new connection,
    // is refused at the handshake: node 1's answer carries a fresh ephemeral key.
    let replay = recorded.lock().expect("lock").clone();
    let refused_before = handshakes(&cluster, 0, "wrong_secret");
    let mut s = TcpStream::connect(&cluster.nodes[0].internode).expect("connect");
    let _ = s.write_all(&replay);
    let mut sink = Vec::new();
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = s.read_to_end(&mut sink);
    eventually("node 1 refused the replayed handshake", || {
        handshakes(&cluster, 0, "wrong_secret") > refused_before
    });
    assert_eq!(
        rejected(&cluster, 0),
        expected,
        "no record of it was opened"
    );
}

#[test]
fn a_server_refuses_to_start_without_a_cluster_secret_and_an_admin_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("n.toml");
    std::fs::write(
        &config,
        format!(
            "[node]\ndata_dir = \"{}\"\n[listen]\nhttp = \"127.0.0.1:{}\"\ninternode = \"127.0.0.1:{}\"\nresp = \"127.0.0.1:{}\"\n",
            dir.path().join("data").display(),
            free_port(),
            free_port(),
            free_port()
        ),
    )
    .expect("write");
    for (secret, says) in [(None, "no cluster secret"), (Some("short"), "at least 32")] {
        let mut cmd = std::process::Command::new(common::hydra_bin());
        cmd.arg("server").arg("--config").arg(&config);
        cmd.env_remove("HYDRA_CLUSTER_SECRET");
        if let Some(s) = secret {
            cmd.env("HYDRA_CLUSTER_SECRET", s);
        }
        let out = cmd.output().expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "started with secret {secret:?}");
        assert!(err.contains(says), "{err}");
    }
}

fn curl(method: &str, url: &str, token: Option<&str>) -> (u16, String) {
    let mut cmd = std::process::Command::new("curl");
    cmd.args([
        "-s",
        "-X",
        method,
        "-w",
        "\n%{http_code}",
        "--data-binary",
        "x",
    ]);
    if method == "GET" || method == "DELETE" {
        cmd.args(["-G"]);
    }
    if let Some(t) = token {
        cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    let out = cmd.arg(url).output().expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').expect("status line");
    (code.parse().expect("status"), body.to_string())
}

fn core_requests(cluster: &TestCluster) -> f64 {
    let text = cluster.client(0).metrics().expect("metrics");
    text.lines()
        .filter(|l| l.starts_with("hydra_requests_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn every_http_route_but_health_needs_a_token() {
    let cluster = TestCluster::start(1, "");
    let base = format!("http://{}", cluster.nodes[0].http);
    let routes = [
        ("GET", "/v1/kv/default/k"),
        ("PUT", "/v1/kv/default/k"),
        ("DELETE", "/v1/kv/default/k"),
        ("GET", "/v1/kv/redis/k?r=serial"),
        ("GET", "/v1/status"),
        ("GET", "/v1/ring"),
        ("GET", "/v1/buckets"),
        ("GET", "/v1/buckets/default"),
        ("PUT", "/v1/buckets/evil"),
        ("GET", "/metrics"),
        ("GET", "/nosuch"),
    ];
    let before = core_requests(&cluster);
    for (method, path) in routes {
        for token in [None, Some("not-the-admin-token-at-all"), Some("")] {
            let (code, body) = curl(method, &format!("{base}{path}"), token);
            assert_eq!(code, 401, "{method} {path} with {token:?}: {body}");
            assert!(body.contains("\"code\":\"unauthorized\""), "{body}");
        }
    }
    assert_eq!(
        core_requests(&cluster),
        before,
        "no refused request reached the core"
    );
    assert_eq!(curl("GET", &format!("{base}/health"), None).0, 200);
    assert!(
        cluster
            .client(0)
            .bucket("evil")
            .is_err_and(|e| e.to_string().contains("unknown_bucket")),
        "the refused bucket creation did nothing"
    );
    let (code, _) = curl(
        "PUT",
        &format!("{base}/v1/kv/default/k"),
        Some(common::TEST_TOKEN),
    );
    assert_eq!(code, 204);
    let metrics = cluster.client(0).metrics().expect("metrics");
    assert!(
        metric(&metrics, "hydra_auth_failures_total{front=\"http\"}") >= 33.0,
        "{metrics}"
    );
}

/// A raw Redis-protocol exchange: one command, its reply's first line (or bulk) as text.
fn resp(stream: &mut TcpStream, args: &[&str]) -> String {
    let mut out = format!("*{}\r\n", args.len());
    for a in args {
        out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    stream.write_all(out.as_bytes()).expect("send");
    let mut reply = Vec::new();
    let mut byte = [0u8; 1];
    while !reply.ends_with(b"\r\n") {
        stream.read_exact(&mut byte).expect("reply");
        reply.push(byte[0]);
    }
    let line = String::from_utf8_lossy(&reply).trim_end().to_string();
    match line.strip_prefix('$') {
        Some("-1") => "(nil)".into(),
        Some(len) => {
            let mut body = vec![0u8; len.parse::<usize>().expect("length") + 2];
            stream.read_exact(&mut body).expect("bulk");
            String::from_utf8_lossy(&body[..body.len() - 2]).into_owned()
        }
        None => line,
    }
}

#[test]
fn scoped_tokens_and_users_live_in_the_cluster() {
    let cluster = TestCluster::start(3, "");
    let admin = cluster.client(0);
    admin
        .set_bucket("app-1", &serde_json::json!({ "conflicts": "lww" }))
        .expect("bucket");
    let token = |name: &str, scopes: &[&str]| {
        let out = admin
            .admin(
                "POST",
                "tokens",
                Some(&serde_json::json!({ "name": name, "scopes": scopes })),
            )
            .expect("create a token");
        (
            out["id"].as_str().expect("id").to_string(),
            out["token"].as_str().expect("token").to_string(),
        )
    };
    let (reader_id, reader) = token("reader", &["read:app-*"]);
    let (_, writer) = token("writer", &["write:app-*"]);
    let (_, watcher) = token("watcher", &["metrics"]);
    // Another node knows them (the table lives in the cluster), within its cache's life.
    let node2 = |t: &str| hydra_client::Client::new(&cluster.nodes[1].http).with_token(t);
    eventually("node 2 takes the bucket and the writer's token", || {
        node2(&writer)
            .put("app-1", "k", b"v", "text/plain", None, &[])
            .is_ok()
    });
    let status = |r: Result<hydra_client::KvResponse, hydra_client::Error>| match r {
        Ok(r) => r.status,
        Err(hydra_client::Error::Api { status, .. }) => status,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(status(node2(&reader).get("app-1", "k", &[])), 200);
    assert_eq!(
        status(node2(&reader).put("app-1", "k", b"x", "text/plain", None, &[])),
        403
    );
    assert_eq!(status(node2(&reader).get("default", "k", &[])), 403);
    assert_eq!(status(node2(&writer).get("app-1", "k", &[])), 200);
    assert!(node2(&reader).metrics().is_err());
    assert!(node2(&watcher).metrics().is_ok());
    assert!(node2(&watcher).get("app-1", "k", &[]).is_err());
    assert!(
        node2(&writer)
            .admin("GET", "tokens", None)
            .is_err_and(|e| e.to_string().contains("403"))
    );
    // The table keeps no token in clear, and no client reaches it.
    let listed = admin
        .admin("GET", "tokens", None)
        .expect("list")
        .to_string();
    assert!(
        listed.contains("reader") && !listed.contains(&reader[20..]),
        "{listed}"
    );
    assert_eq!(status(admin.get("_system", "credentials", &[])), 403);
    assert!(
        !admin
            .buckets()
            .expect("buckets")
            .to_string()
            .contains("_system")
    );
    // Revoked through node 3: node 2 refuses it within its cache's life (5 s).
    hydra_client::Client::new(&cluster.nodes[2].http)
        .with_token(common::TEST_TOKEN)
        .admin("DELETE", &format!("tokens/{reader_id}"), None)
        .expect("revoke");
    let revoked = Instant::now();
    eventually("node 2 refuses the revoked token", || {
        status(node2(&reader).get("app-1", "k", &[])) == 401
    });
    assert!(revoked.elapsed() < Duration::from_secs(8));

    // Redis-protocol users, with bucket scopes.
    for (name, scope) in [("app", "write:app-*"), ("viewer", "read:app-*")] {
        admin
            .admin(
                "PUT",
                &format!("users/{name}"),
                Some(&serde_json::json!({ "password": "correct horse", "scopes": [scope] })),
            )
            .expect("user");
    }
    let mut c = TcpStream::connect(&cluster.nodes[2].resp).expect("connect");
    eventually("node 3 logs the user in", || {
        resp(&mut c, &["AUTH", "app", "correct horse"]) == "+OK"
    });
    assert_eq!(resp(&mut c, &["ACL", "WHOAMI"]), "app");
    assert_eq!(
        resp(&mut c, &["GET", "k"]),
        "-NOPERM this user has no permissions to access one of the keys used as arguments"
    );
    assert_eq!(resp(&mut c, &["HYDRA.BUCKET", "app-1"]), "+OK");
    assert_eq!(resp(&mut c, &["SET", "k2", "v2"]), "+OK");
    assert_eq!(resp(&mut c, &["GET", "k2"]), "v2");
    assert!(resp(&mut c, &["HYDRA.BUCKET", "_system"]).starts_with("-INVALID_BUCKET"));
    assert_eq!(
        resp(&mut c, &["AUTH", "app", "wrong horse"]),
        "-WRONGPASS invalid username-password pair or user is disabled."
    );
    assert_eq!(
        resp(&mut c, &["ACL", "WHOAMI"]),
        "app",
        "a failed AUTH changes nothing"
    );
    let mut v = TcpStream::connect(&cluster.nodes[0].resp).expect("connect");
    assert_eq!(resp(&mut v, &["AUTH", "viewer", "correct horse"]), "+OK");
    assert_eq!(resp(&mut v, &["HYDRA.BUCKET", "app-1"]), "+OK");
    assert_eq!(resp(&mut v, &["GET", "k2"]), "v2");
    assert_eq!(
        resp(&mut v, &["SET", "k2", "v3"]),
        "-NOPERM this user has no permissions to run the 'set' command"
    );
    // The CLI manages them too.
    let out = std::process::Command::new(common::hydra_bin())
        .args([
            "user",
            "del",
            "viewer",
            "--endpoint",
            &cluster.nodes[0].http,
        ])
        .env("HYDRA_TOKEN", common::TEST_TOKEN)
        .output()
        .expect("hydra user del");
    assert!(out.status.success(), "{out:?}");
    let mut gone = TcpStream::connect(&cluster.nodes[0].resp).expect("connect");
    eventually("the removed user is refused", || {
        resp(&mut gone, &["AUTH", "viewer", "correct horse"]).starts_with("-WRONGPASS")
    });
}

/// Resident memory of a process, in MiB.
fn rss_mib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

/// A client flood against one node (hundreds of connections, deep pipelines: enough to fill
/// its client queue) neither makes its peers believe it is down nor makes it drop what its
/// peers send (internode messages have a lane of their own to the core). Its memory stays
/// under a stated bound (1 GiB).
#[test]
fn a_node_under_a_client_flood_stays_up_to_its_peers() {
    let cluster = TestCluster::start(3, "");
    let port = cluster.nodes[0]
        .resp
        .rsplit(':')
        .next()
        .expect("port")
        .to_string();
    let pid = cluster.nodes[0].child.as_ref().expect("running").id();
    let mut flood = std::process::Command::new("redis-benchmark")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-a",
            common::TEST_TOKEN,
            "-c",
            "500",
            "-P",
            "128",
            "-t",
            "set,get",
            "-n",
            "100000000",
            "-r",
            "100000",
            "-d",
            "100",
            "-q",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("redis-benchmark (scripts/test.sh installs it)");
    let started = Instant::now();
    let mut worst_rss = 0;
    let mut worst_silence = 0;
    let mut worst_view = 0;
    let mut seen_down = Vec::new();
    while started.elapsed() < Duration::from_secs(10) {
        for i in [1, 2] {
            if let Ok(status) = cluster.client(i).status() {
                let peers = status["peers"].as_array().cloned().unwrap_or_default();
                for p in peers {
                    if p["id"] == 1 && p["state"] == "down" {
                        seen_down.push((i + 1, started.elapsed()));
                    }
                    if p["id"] == 1 {
                        let heard = p["last_heard_ms_ago"].as_u64().unwrap_or(0);
                        worst_silence = worst_silence.max(heard);
                    }
                }
            }
        }
        worst_rss = worst_rss.max(rss_mib(pid));
        // Node 1's own view of its peers (its status waits behind the flood's requests).
        if let Ok(status) =
            hydra_client::Client::with_timeout(&cluster.nodes[0].http, Duration::from_secs(5))
                .with_token(common::TEST_TOKEN)
                .status()
        {
            for p in status["peers"].as_array().cloned().unwrap_or_default() {
                if p["state"] == "down" {
                    seen_down.push((1, started.elapsed()));
                }
                let heard = p["last_heard_ms_ago"].as_u64().unwrap_or(0);
                worst_view = worst_view.max(heard);
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = flood.kill();
    let _ = flood.wait();
    assert!(
        seen_down.is_empty(),
        "peers believed node 1 down during the flood: {seen_down:?}"
    );
    assert!(worst_rss < 1024, "node 1 grew to {worst_rss} MiB");
    let metrics = cluster.client(0).metrics().expect("metrics");
    let served: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("hydra_requests_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(served > 1000.0, "the flood reached the node: {served}");
    // Before the peer lane, a flood like this filled the core's one queue and node 1
    // dropped thousands of replicas' acks (and its requests timed out).
    assert_eq!(
        metric(&metrics, "hydra_core_peer_messages_dropped_total"),
        0.0,
        "node 1 dropped internode messages during the flood"
    );
    eprintln!(
        "flood: node 1 served {served} requests, at most {worst_rss} MiB, its peers heard nothing from it for {worst_silence} ms at most, it heard nothing from a peer for {worst_view} ms at most; dropped: {}",
        metric(&metrics, "hydra_core_peer_messages_dropped_total")
    );
}

/// The HTTP port holds at most `limits.http_connections_max` connections and closes those
/// idle for `limits.http_idle_timeout_ms`.
#[test]
fn http_connections_are_capped_and_idle_ones_closed() {
    let cluster = TestCluster::start(1, "http_connections_max = 4\nhttp_idle_timeout_ms = 4000");
    let addr = cluster.nodes[0].http.clone();
    // Six at once: at most four are served (fewer if a client of the start-up checks still
    // holds a slot), the rest closed unanswered.
    let mut held: Vec<TcpStream> = (0..6)
        .map(|_| TcpStream::connect(&addr).expect("the kernel accepts it"))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut buf = [0u8; 64];
    let mut answered = 0;
    for c in &mut held {
        c.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let _ = c.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
        if matches!(c.read(&mut buf), Ok(n) if n > 0) {
            answered += 1;
        }
    }
    assert!(
        (1..=4).contains(&answered),
        "{answered} of 6 connections were served"
    );
    drop(held);
    eventually("a slot is free again", || {
        cluster.client(0).health().is_ok()
    });
    let metrics = cluster.client(0).metrics().expect("metrics");
    assert!(metric(&metrics, "hydra_http_connections_refused_total") >= 1.0);
    // An idle connection is closed after about 4 s.
    let mut idle = TcpStream::connect(&addr).expect("connect");
    idle.set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    let started = Instant::now();
    assert!(matches!(idle.read(&mut buf), Ok(0) | Err(_)));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(3) && waited < Duration::from_secs(10),
        "{waited:?}"
    );
}

/// Runs `openssl` with `args` in `dir`.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl (scripts/test.sh installs it)");
    assert!(out.status.success(), "openssl {args:?}: {out:?}");
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, in `dir`.
fn make_certificates(dir: &std::path::Path) {
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").expect("write");
    // webpki takes version 3 certificates only: the client's gets an extension too.
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").expect("write");
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=hydra-test-ca",
    ]);
    openssl(dir, &ca);
    for (name, ext) in [("node", "san.ext"), ("client", "client.ext")] {
        let (key, csr, crt) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
        );
        let mut req = vec!["req"];
        req.extend(ec);
        let subj = format!("/CN={name}");
        req.extend(["-keyout", &key, "-out", &csr, "-subj", &subj]);
        openssl(dir, &req);
        let sign = [
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &crt,
            "-days",
            "2",
            "-extfile",
            ext,
        ];
        openssl(dir, &sign);
    }
}

fn curl_tls(dir: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new("curl")
        .current_dir(dir)
        .args(["-s", "-S", "--max-time", "10", "--cacert", "ca.crt"])
        .args(args)
        .output()
        .expect("curl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn client_ports_speak_tls_to_real_clients() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    make_certificates(d);
    let (http, resp) = (free_port(), free_port());
    let config = d.join("n.toml");
    let write_config = |client_ca: &str| {
        std::fs::write(
            &config,
            format!(
                "[node]\ndata_dir = \"{}\"\n[listen]\nhttp = \"127.0.0.1:{http}\"\ninternode = \"127.0.0.1:{}\"\nresp = \"127.0.0.1:{resp}\"\n\
                 [auth]\nadmin_token = \"{}\"\n[cluster]\nsecret = \"{TEST_SECRET}\"\n\
                 [tls]\ncert = \"{}\"\nkey = \"{}\"\n{client_ca}",
                d.join("data").display(),
                free_port(),
                common::TEST_TOKEN,
                d.join("node.crt").display(),
                d.join("node.key").display(),
            ),
        )
        .expect("write");
    };
    write_config("");
    let mut node = spawn_server(&config, &d.join("n.log"));
    let base = format!("https://127.0.0.1:{http}");
    let bearer = format!("Authorization: Bearer {}", common::TEST_TOKEN);
    eventually("the node answers over TLS", || {
        curl_tls(d, &[&format!("{base}/health")]).0
    });
    // curl --cacert: a write and a read.
    let (ok, out) = curl_tls(
        d,
        &[
            "-X",
            "PUT",
            "-H",
            &bearer,
            "--data",
            "over-tls",
            "-w",
            "%{http_code}",
            &format!("{base}/v1/kv/redis/t"),
        ],
    );
    assert!(ok && out.ends_with("204"), "{out}");
    let (ok, out) = curl_tls(d, &["-H", &bearer, &format!("{base}/v1/kv/redis/t")]);
    assert!(ok && out == "over-tls", "{out}");
    // Plain HTTP to a TLS port gets nothing.
    let plain = std::process::Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "5",
            &format!("http://127.0.0.1:{http}/health"),
        ])
        .output()
        .expect("curl");
    assert!(!String::from_utf8_lossy(&plain.stdout).contains("ok"));
    // redis-cli --tls --cacert.
    let cli = |args: &[&str]| {
        let out = std::process::Command::new("redis-cli")
            .current_dir(d)
            .env("REDISCLI_AUTH", common::TEST_TOKEN)
            .args([
                "--tls",
                "--cacert",
                "ca.crt",
                "-h",
                "127.0.0.1",
                "-p",
                &resp.to_string(),
            ])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(cli(&["get", "t"]), "over-tls");
    assert_eq!(cli(&["set", "u", "from-cli"]), "OK");
    // redis-py with ssl=True, RESP3, a password.
    let py = format!(
        "import redis\nr = redis.Redis(host='127.0.0.1', port={resp}, ssl=True, ssl_ca_certs='ca.crt', password='{}', protocol=3)\nassert r.get('u') == b'from-cli', r.get('u')\nassert r.set('v', 'from-py')\nprint('ok')\n",
        common::TEST_TOKEN
    );
    let out = std::process::Command::new("python3")
        .current_dir(d)
        .args(["-c", &py])
        .output()
        .expect("python3");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("ok"),
        "{out:?}"
    );
    let _ = node.kill();
    let _ = node.wait();

    // Mutual TLS: with tls.client_ca, a client needs a certificate the CA signed.
    write_config(&format!("client_ca = \"{}\"\n", d.join("ca.crt").display()));
    let mut node = spawn_server(&config, &d.join("n.log"));
    let with_cert = ["--cert", "client.crt", "--key", "client.key"];
    eventually("the node answers over mutual TLS", || {
        let mut args = with_cert.to_vec();
        let url = format!("{base}/health");
        args.push(&url);
        curl_tls(d, &args).0
    });
    assert!(
        !curl_tls(d, &[&format!("{base}/health")]).0,
        "no client certificate, no answer"
    );
    let out = std::process::Command::new("redis-cli")
        .current_dir(d)
        .env("REDISCLI_AUTH", common::TEST_TOKEN)
        .args([
            "--tls",
            "--cacert",
            "ca.crt",
            "--cert",
            "client.crt",
            "--key",
            "client.key",
        ])
        .args(["-h", "127.0.0.1", "-p", &resp.to_string(), "get", "v"])
        .output()
        .expect("redis-cli");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "from-py");
    let _ = node.kill();
    let _ = node.wait();
}

/// Rotating the cluster secret by rolling restarts (add `secret_next`, swap, drop the old):
/// after every restart every node still talks to every other (writes acked by all three
/// replicas), and at the end a node with only the old secret is refused.
#[test]
fn the_cluster_secret_rotates_by_rolling_restarts() {
    const NEW: &str = "the-next-cluster-secret-0123456789abcdef";
    let mut cluster = TestCluster::start(3, "");
    let set_secrets = |cluster: &TestCluster, i: usize, secret: &str, next: &str| {
        let path = &cluster.nodes[i].config;
        let text = std::fs::read_to_string(path).expect("read");
        let text: String = text
            .lines()
            .filter(|l| !l.starts_with("secret_next ="))
            .map(|l| {
                if l.starts_with("secret =") {
                    format!("secret = \"{secret}\"\nsecret_next = \"{next}\"\n")
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        std::fs::write(path, text).expect("write");
    };
    let all_talk = |cluster: &TestCluster, step: &str| {
        for i in 0..3 {
            let key = format!("{step}-{i}");
            eventually(
                &format!("{step}: node {} writes to all three", i + 1),
                || {
                    cluster
                        .client(i)
                        .put("default", &key, b"v", "text/plain", None, &[("w", "all")])
                        .is_ok()
                },
            );
        }
    };
    for (step, secret, next) in [
        ("add-next", TEST_SECRET, NEW),
        ("swap", NEW, TEST_SECRET),
        ("drop-old", NEW, ""),
    ] {
        for i in 0..3 {
            cluster.kill9(i);
            set_secrets(&cluster, i, secret, next);
            cluster.restart(i);
            all_talk(&cluster, &format!("{step}-n{}", i + 1));
        }
    }
    // A node still on the old secret alone is refused by the others.
    let refused_before = handshakes(&cluster, 0, "wrong_secret");
    cluster.kill9(2);
    set_secrets(&cluster, 2, TEST_SECRET, "");
    cluster.spawn(2);
    cluster.wait_up(2);
    eventually("node 1 refuses the node left on the old secret", || {
        handshakes(&cluster, 0, "wrong_secret") > refused_before
    });
    assert!(
        cluster
            .client(0)
            .put(
                "default",
                "after",
                b"v",
                "text/plain",
                None,
                &[("w", "all")]
            )
            .is_err(),
        "node 3 cannot ack"
    );
}
