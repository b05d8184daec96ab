//! The Redis-protocol front end against real clients and a real Redis: redis-cli (RESP2 and
//! `-3`), redis-benchmark (inline and pipelined), redis-py (`protocol=2` and `3`, pipelines),
//! byte-exact exchanges, and the same commands sent to Hydra and to `redis-server`, compared
//! byte for byte where both should answer alike.
//!
//! The Redis tools come from Debian's `redis-server` and `redis-tools` packages and redis-py
//! from PyPI; `.ci/run` installs them. A missing tool fails the test with a message naming it.

mod common;
use common::redis::{Raw, RedisServer, text, tool};
use common::{TEST_TOKEN, TestCluster};
use hydra_resp::{Limits, Value, encode_command, parse_value};
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn port_of(addr: &str) -> String {
    addr.rsplit(':').next().expect("host:port").to_string()
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("run a client");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn cli(addr: &str, args: &[&str]) -> String {
    let out = run(tool("redis-cli")
        .env("REDISCLI_AUTH", TEST_TOKEN)
        .args(["-h", "127.0.0.1", "-p", &port_of(addr)])
        .args(args));
    String::from_utf8_lossy(&out.stdout).trim_end().to_string()
}

#[test]
fn redis_cli_in_resp2_and_resp3() {
    let cluster = TestCluster::start(3, "");
    let (a, b) = (&cluster.nodes[0].resp, &cluster.nodes[1].resp);
    assert_eq!(cli(a, &["ping"]), "PONG");
    assert_eq!(cli(a, &["set", "greeting", "hello world"]), "OK");
    assert_eq!(cli(b, &["get", "greeting"]), "hello world");
    assert_eq!(cli(b, &["-3", "get", "greeting"]), "hello world");
    assert_eq!(cli(a, &["-3", "get", "nothing"]), "");
    assert_eq!(cli(a, &["del", "greeting", "nothing"]), "1");
    assert_eq!(cli(b, &["exists", "greeting"]), "0");
    let hello = cli(a, &["-3", "hello", "3"]);
    assert!(hello.contains("proto") && hello.contains('3'), "{hello}");
    assert!(cli(a, &["info", "server"]).contains("redis_version:"));
    // Conditional writes, through compare-and-set.
    assert_eq!(cli(a, &["set", "k", "v", "nx"]), "OK");
    assert_eq!(cli(b, &["set", "k", "w", "nx"]), "");
    assert_eq!(cli(b, &["-3", "setnx", "k", "w"]), "0");
    // Errors reach redis-cli as errors, with what is wrong named.
    let out = cli(a, &["get"]);
    assert!(out.contains("wrong number of arguments for 'get'"), "{out}");
}

#[test]
fn redis_benchmark_runs_plain_and_pipelined() {
    let cluster = TestCluster::start(3, "");
    let port = port_of(&cluster.nodes[0].resp);
    for pipeline in ["1", "16"] {
        let out = run(tool("redis-benchmark").args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-t",
            "set,get",
            "-n",
            "3000",
            "-c",
            "10",
            "-d",
            "100",
            "-r",
            "1000",
            "-P",
            pipeline,
            "-a",
            TEST_TOKEN,
            "-q",
        ]));
        let stdout = text(&out.stdout);
        let stderr = text(&out.stderr);
        for test in ["SET: ", "GET: "] {
            assert!(
                stdout.contains(test) && stdout.contains("requests per second"),
                "-P {pipeline}: no {test} result in {stdout:?} {stderr:?}"
            );
        }
        assert!(
            !stdout.contains("ERR") && !stderr.contains("ERR"),
            "{stdout} {stderr}"
        );
    }
    // The keys it wrote are readable through another node.
    let mut raw = Raw::connect(&cluster.nodes[1].resp);
    let reply = raw.command(&[b"DBSIZE"]);
    assert!(
        reply.starts_with(b":") && reply != b":0\r\n",
        "{}",
        text(&reply)
    );
}

#[test]
fn redis_py_in_resp2_and_resp3_with_pipelines() {
    let cluster = TestCluster::start(3, "");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/redis_py_check.py"
    );
    let importable = Command::new("python3")
        .args(["-c", "import redis"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        importable,
        "redis-py is not installed (pip install redis; see .ci/run)"
    );
    let out = run(Command::new("python3").args([
        script,
        &port_of(&cluster.nodes[0].resp),
        &port_of(&cluster.nodes[2].resp),
        TEST_TOKEN,
    ]));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("protocol 2: ok") && stdout.contains("protocol 3: ok"),
        "{stdout}"
    );
}

#[test]
fn byte_exact_exchanges() {
    let cluster = TestCluster::start(3, "");
    let mut c = Raw::connect(&cluster.nodes[0].resp);
    // Inline commands, as telnet and redis-benchmark send them.
    assert_eq!(c.send(b"PING\r\n", 1), b"+PONG\r\n");
    assert_eq!(c.send(b"ECHO \"a b\"\n", 1), b"$3\r\na b\r\n");
    assert_eq!(c.command(&[b"SET", b"k", b"v\r\n1"]), b"+OK\r\n");
    assert_eq!(c.command(&[b"GET", b"k"]), b"$4\r\nv\r\n1\r\n");
    assert_eq!(c.command(&[b"GET", b"nope"]), b"$-1\r\n");
    assert_eq!(
        c.command(&[b"MGET", b"k", b"nope"]),
        b"*2\r\n$4\r\nv\r\n1\r\n$-1\r\n"
    );
    assert_eq!(c.command(&[b"TTL", b"k"]), b":-1\r\n");
    assert_eq!(c.command(&[b"TTL", b"nope"]), b":-2\r\n");
    assert_eq!(
        c.command(&[b"GET"]),
        b"-ERR wrong number of arguments for 'get' command\r\n"
    );
    // A pipeline of writes and reads of one key answers in order, each seeing the last write.
    let mut bytes = Vec::new();
    for i in 0..50 {
        encode_command(
            &[b"SET".as_slice(), b"p", format!("{i}").as_bytes()],
            &mut bytes,
        );
        encode_command(&[b"GET".as_slice(), b"p"], &mut bytes);
    }
    let mut expected = Vec::new();
    for i in 0..50 {
        expected.extend_from_slice(b"+OK\r\n");
        Value::bulk(format!("{i}")).encode(hydra_resp::Protocol::Resp2, &mut expected);
    }
    assert_eq!(text(&c.send(&bytes, 100)), text(&expected));
    // A pipeline of SETs on distinct keys goes to the core as one batch, whose requests but
    // the last get brief receipts: the last receipt kept is the last SET's, in full.
    let mut bytes = Vec::new();
    for i in 0..10 {
        encode_command(
            &[b"SET".as_slice(), format!("q{i}").as_bytes(), b"v"],
            &mut bytes,
        );
    }
    assert_eq!(text(&c.send(&bytes, 10)), "+OK\r\n".repeat(10));
    let receipt = text(&c.command(&[b"HYDRA.RECEIPT"]));
    let json = receipt.lines().nth(1).expect("a bulk reply");
    let json: serde_json::Value = serde_json::from_str(json).expect("the receipt is JSON");
    assert_eq!(json["needed"], 2, "{json}");
    let replicas = json["replicas"].as_array().expect("a list of replicas");
    let acked = replicas.iter().filter(|r| r["outcome"] == "acked").count();
    assert!(acked >= 2, "the last SET was acked by W replicas: {json}");
    // RESP3 after HELLO 3: nulls are `_`, maps are `%`.
    let hello = c.command(&[b"HELLO", b"3"]);
    assert!(
        hello.starts_with(b"%9\r\n$6\r\nserver\r\n$5\r\nredis\r\n"),
        "{}",
        text(&hello)
    );
    assert_eq!(c.command(&[b"GET", b"nope"]), b"_\r\n");
    assert_eq!(
        c.command(&[b"CONFIG", b"GET", b"save"]),
        b"%1\r\n$4\r\nsave\r\n$0\r\n\r\n"
    );
    assert_eq!(
        c.command(&[b"HELLO", b"4"]),
        b"-NOPROTO unsupported protocol version\r\n"
    );
    // A protocol error is answered, then the connection is closed (as Redis does).
    let reply = c.send(b"*1\r\n$x\r\n", 1);
    assert_eq!(
        text(&reply),
        "-ERR Protocol error: invalid bulk length \"x\"\r\n"
    );
    assert!(c.closed());
    // A bulk longer than the value limit is refused before it is buffered.
    let mut c = Raw::connect(&cluster.nodes[0].resp);
    let reply = c.send(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$999999999\r\n", 1);
    assert!(
        text(&reply).contains("bulk length 999999999 is more than the limit"),
        "{}",
        text(&reply)
    );
    assert!(c.closed());
}

/// A `redis-server` without persistence on a free port, killed when dropped.

#[test]
fn replies_match_redis_server_byte_for_byte() {
    let cluster = TestCluster::start(3, "");
    let redis = RedisServer::start();
    let mut hydra = Raw::connect(&cluster.nodes[0].resp);
    let mut real = Raw::connect(&redis.addr);
    let script: &[&[&str]] = &[
        &["PING"],
        &["PING", "hello"],
        &["ECHO", "a b"],
        &["SET", "k1", "v1"],
        &["GET", "k1"],
        &["GET", "missing"],
        &["STRLEN", "k1"],
        &["STRLEN", "missing"],
        &["EXISTS", "k1", "missing", "k1"],
        &["MSET", "a", "1", "b", "2"],
        &["MGET", "a", "missing", "b"],
        &["DEL", "a", "b", "missing"],
        &["UNLINK", "a"],
        &["GET", "a"],
        &["TTL", "k1"],
        &["PTTL", "missing"],
        &["EXPIRE", "k1", "100"],
        &["TTL", "k1"],
        &["EXPIRE", "k1", "100", "NX"],
        &["EXPIRE", "k1", "200", "GT"],
        &["PERSIST", "k1"],
        &["PERSIST", "k1"],
        &["EXPIRE", "missing", "10"],
        &["SET", "k1", "v2", "GET"],
        &["SET", "k1", "v3", "EX", "100", "GET"],
        &["SET", "k1", "v4", "KEEPTTL"],
        &["TTL", "k1"],
        &["SET", "k1", "v5", "EX", "0"],
        &["SET", "k1", "v5", "EX", "ten"],
        &["SET", "k1", "v5", "BOGUS"],
        &["GETDEL", "k1"],
        &["GETDEL", "k1"],
        // Conditional writes (compare-and-set through Paxos in Hydra).
        &["SET", "n1", "a", "NX"],
        &["SET", "n1", "b", "NX"],
        &["GET", "n1"],
        &["SET", "n1", "c", "XX"],
        &["SET", "n2", "c", "XX"],
        &["GET", "n2"],
        &["SET", "n1", "d", "NX", "GET"],
        &["SET", "n3", "d", "NX", "GET"],
        &["GET", "n3"],
        &["SET", "n1", "e", "XX", "GET"],
        &["SET", "n1", "f", "NX", "XX"],
        &["SET", "n1", "f", "XX", "NX"],
        &["SETNX", "n1", "x"],
        &["SETNX", "n4", "x"],
        &["GET", "n4"],
        &["SET", "n1", "g", "XX", "EX", "100"],
        &["TTL", "n1"],
        &["SET", "n1", "h", "XX", "KEEPTTL"],
        &["GET", "n1"],
        // n1 is a key compare-and-set manages now: plain writes and the read-then-write
        // commands on it go through Paxos (atomic), with Redis's replies.
        &["SET", "n1", "plain", "GET"],
        &["SET", "n1", "plain2", "KEEPTTL", "GET"],
        &["TTL", "n1"],
        &["SET", "n1", "plain3"],
        &["GET", "n1"],
        &["EXPIRE", "n1", "50"],
        &["TTL", "n1"],
        &["PERSIST", "n1"],
        &["TTL", "n1"],
        &["GETEX", "n1", "EX", "70"],
        &["TTL", "n1"],
        &["APPEND", "n1", "x"],
        &["GETDEL", "n1"],
        &["SET", "n1", "again"],
        &["SET", "n1", "past", "PXAT", "1", "GET"],
        &["GET", "n1"],
        &["SET", "k9", "a"],
        &["SET", "k9", "b", "PXAT", "1", "GET"],
        &["GET", "k9"],
        &["MSETNX", "d1", "1", "d1", "2"],
        &["GET", "d1"],
        &["DEL", "d1"],
        &["SET", "n1", "i", "XX", "PX", "0"],
        &["DEL", "n1", "n3", "n4"],
        // Read-modify-write commands (a compare-and-set loop in Hydra).
        &["INCR", "c1"],
        &["INCR", "c1"],
        &["INCRBY", "c1", "10"],
        &["DECR", "c1"],
        &["DECRBY", "c1", "5"],
        &["INCRBY", "c1", "abc"],
        &["SET", "c2", "abc"],
        &["INCR", "c2"],
        &["SET", "c2", "9223372036854775807"],
        &["INCR", "c2"],
        &["DECRBY", "c2", "-9223372036854775808"],
        &["SET", "c2", " 1"],
        &["INCR", "c2"],
        &["SET", "c2", "+1"],
        &["INCR", "c2"],
        &["SET", "c2", "007"],
        &["INCR", "c2"],
        &["SET", "c2", "-0"],
        &["INCR", "c2"],
        &["INCRBY", "c2", "+1"],
        &["SET", "n5", "a", "NX", "NX"],
        &["SET", "c3", "5", "EX", "100"],
        &["INCR", "c3"],
        &["TTL", "c3"],
        &["APPEND", "a1", "ab"],
        &["APPEND", "a1", "cd"],
        &["GET", "a1"],
        &["GETSET", "a1", "x"],
        &["GETSET", "missing2", "x"],
        &["GET", "missing2"],
        &["DEL", "c1", "c2", "c3", "a1", "missing2"],
        // INCRBYFLOAT in Redis's long double arithmetic, byte for byte.
        &["SET", "f1", "10.50"],
        &["INCRBYFLOAT", "f1", "0.1"],
        &["INCRBYFLOAT", "f1", "-5.0e3"],
        &["INCRBYFLOAT", "f2", "3"],
        &["INCRBYFLOAT", "f2", "1.23456789012345678901"],
        &["INCRBYFLOAT", "f2", "abc"],
        &["INCRBYFLOAT", "f2", "inf"],
        &["INCRBYFLOAT", "f3", "123456789012345678901234567890"],
        &["SET", "f4", "0x10"],
        &["INCRBYFLOAT", "f4", "1"],
        &["SET", "f5", " 1"],
        &["INCRBYFLOAT", "f5", "1"],
        &["INCRBYFLOAT", "f6", "-0"],
        &["SET", "f7", "5", "EX", "100"],
        &["INCRBYFLOAT", "f7", "1.5"],
        &["TTL", "f7"],
        // SETRANGE, GETRANGE (and SUBSTR), GETEX, MSETNX.
        &["SETRANGE", "r1", "5", "abc"],
        &["GET", "r1"],
        &["SETRANGE", "r1", "0", "XY"],
        &["GETRANGE", "r1", "0", "-1"],
        &["GETRANGE", "r1", "-3", "-1"],
        &["GETRANGE", "r1", "2", "1"],
        &["GETRANGE", "r1", "-1", "-5"],
        &["GETRANGE", "r1", "-100", "100"],
        &["GETRANGE", "r1", "100", "200"],
        &["SUBSTR", "r1", "1", "3"],
        &["GETRANGE", "missing", "0", "-1"],
        &["GETRANGE", "r1", "a", "1"],
        &["SETRANGE", "r1", "-1", "x"],
        &["SETRANGE", "r1", "x", "x"],
        &["SETRANGE", "r1", "3", ""],
        &["SETRANGE", "r2", "3", ""],
        &["EXISTS", "r2"],
        &["GETEX", "r1"],
        &["GETEX", "r1", "EX", "100"],
        &["TTL", "r1"],
        &["GETEX", "r1", "PERSIST"],
        &["TTL", "r1"],
        &["GETEX", "r1", "PX", "0"],
        &["GETEX", "r1", "EX"],
        &["GETEX", "r1", "EX", "10", "PERSIST"],
        &["GETEX", "r1", "BOGUS"],
        &["GETEX", "missing", "EX", "10"],
        &["GETEX", "r1", "EXAT", "1"],
        &["GET", "r1"],
        &["MSETNX", "m1", "a", "m2", "b"],
        &["MGET", "m1", "m2"],
        &["MSETNX", "m2", "x", "m3", "y"],
        &["EXISTS", "m3"],
        &["MSETNX", "m4"],
        &["MSETNX", "m4", "a", "m5"],
        &[
            "DEL", "f1", "f2", "f3", "f4", "f5", "f6", "f7", "r1", "m1", "m2",
        ],
        // SETEX, PSETEX, TOUCH, TYPE, EXPIRETIME, PEXPIRETIME.
        &["SETEX", "x1", "100", "v"],
        &["TTL", "x1"],
        &["GET", "x1"],
        &["SETEX", "x1", "0", "v"],
        &["SETEX", "x1", "-5", "v"],
        &["SETEX", "x1", "ten", "v"],
        &["SETEX", "x1", "9223372036854775807", "v"],
        &["SETEX", "x1", "100"],
        &["PSETEX", "x2", "100000", "w"],
        &["TTL", "x2"],
        &["PSETEX", "x2", "0", "w"],
        &["PSETEX", "x2", "1.5", "w"],
        &["TOUCH", "x1", "x2", "missing", "x1"],
        &["TOUCH"],
        &["TYPE", "x1"],
        &["TYPE", "missing"],
        &["TYPE"],
        &["SET", "x3", "v"],
        &["EXPIRETIME", "x3"],
        &["PEXPIRETIME", "x3"],
        &["EXPIRETIME", "missing"],
        &["PEXPIRETIME", "missing"],
        &["DEL", "x1", "x2", "x3"],
        // OBJECT: Redis's encodings and shared small integers for the same bytes.
        &["SET", "o1", "123"],
        &["SET", "o2", "hello"],
        &["SET", "o3", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"],
        &["SET", "o4", "12345678901234567890"],
        &["SET", "o5", "+1"],
        &["SET", "o6", "10000"],
        &["OBJECT", "ENCODING", "o1"],
        &["OBJECT", "ENCODING", "o2"],
        &["OBJECT", "ENCODING", "o3"],
        &["OBJECT", "ENCODING", "o4"],
        &["OBJECT", "ENCODING", "o5"],
        &["OBJECT", "ENCODING", "missing"],
        &["OBJECT", "REFCOUNT", "o1"],
        &["OBJECT", "REFCOUNT", "o2"],
        &["OBJECT", "REFCOUNT", "o6"],
        &["OBJECT", "REFCOUNT", "missing"],
        &["OBJECT", "FREQ", "o2"],
        &["OBJECT", "BOGUS", "o2"],
        &["OBJECT", "ENCODING"],
        &["OBJECT"],
        &["OBJECT", "HELP"],
        &["DEL", "o1", "o2", "o3", "o4", "o5", "o6"],
        &["SET", "gone", "x"],
        &["EXPIRE", "gone", "0"],
        &["GET", "gone"],
        &["GET"],
        &["SET", "k"],
        &["NOSUCHCOMMAND", "x", "y"],
        &["SELECT", "0"],
        &["CLIENT", "SETNAME", "me"],
        &["CLIENT", "GETNAME"],
        &["CONFIG", "GET", "nosuchparameter"],
        &["CONFIG", "GET", "save"],
        &["AUTH", "secret"],
        &["AUTH", "default", "anything"],
        &["HELLO", "3", "BOGUS"],
        &["GET", "missing"],
        &["HELLO", "3"],
        &["GET", "missing"],
        &["MGET", "k1", "missing"],
        &["CONFIG", "GET", "nosuchparameter"],
        &["CLIENT", "GETNAME"],
        &["HELLO", "2"],
        &["GET", "missing"],
    ];
    for cmd in script {
        let args: Vec<&[u8]> = cmd.iter().map(|a| a.as_bytes()).collect();
        let ours = hydra.command(&args);
        let theirs = real.command(&args);
        if cmd[0] == "HELLO" && cmd.len() == 2 {
            // Server, version and id differ by design; the shape must not.
            let (ours, _) = parse_value(&ours, &Limits::default())
                .expect("valid")
                .expect("whole");
            let (theirs, _) = parse_value(&theirs, &Limits::default())
                .expect("valid")
                .expect("whole");
            let keys = |v: &Value| match v {
                Value::Map(p) => p.iter().map(|(k, _)| k.clone()).take(7).collect::<Vec<_>>(),
                Value::Array(a) => a.iter().step_by(2).take(7).cloned().collect(),
                other => panic!("HELLO gave {other:?}"),
            };
            assert_eq!(keys(&ours), keys(&theirs), "HELLO shape");
            continue;
        }
        assert_eq!(text(&ours), text(&theirs), "replies differ for {cmd:?}");
    }
    // OBJECT IDLETIME: seconds since the write here (Redis's LRU clock may tick in between).
    hydra.command(&[b"SET", b"idle", b"v"]);
    assert_eq!(
        text(&hydra.command(&[b"OBJECT", b"IDLETIME", b"idle"])),
        ":0\r\n"
    );
    hydra.command(&[b"DEL", b"idle"]);
    // Absolute expiry times (a year from now, the same argument to both).
    let at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
        + 365 * 86_400;
    let (at_s, at_ms) = (at.to_string(), (at * 1000 + 123).to_string());
    let later_ms = (at * 1000 + 60_456).to_string();
    // Every absolute time reaches the core as one, so `PEXPIRETIME` gives it back exactly,
    // on strings and hashes, through `KEEPTTL`, `GETEX` and a transaction's write-back.
    let script: &[&[&str]] = &[
        &["SET", "y1", "v", "EXAT", &at_s],
        &["EXPIRETIME", "y1"],
        &["PEXPIRETIME", "y1"],
        &["SET", "y2", "v", "PXAT", &at_ms],
        &["EXPIRETIME", "y2"],
        &["PEXPIRETIME", "y2"],
        &["SET", "y2", "w", "KEEPTTL"],
        &["PEXPIRETIME", "y2"],
        &["SET", "y2", "x", "KEEPTTL", "GET"],
        &["PEXPIRETIME", "y2"],
        &["PEXPIREAT", "y1", &later_ms],
        &["PEXPIRETIME", "y1"],
        &["EXPIREAT", "y1", &at_s, "GT"],
        &["EXPIREAT", "y1", &at_s, "LT"],
        &["PEXPIRETIME", "y1"],
        &["PEXPIREAT", "y1", &later_ms, "NX"],
        &["GETEX", "y1", "PXAT", &later_ms],
        &["PEXPIRETIME", "y1"],
        &["EXPIREAT", "missing", &at_s],
        &["PEXPIREAT", "y1", "1000"],
        &["EXISTS", "y1"],
        &["GETEX", "y2", "PXAT", "1000"],
        &["EXISTS", "y2"],
        &["HSET", "h1", "f", "v"],
        &["PEXPIREAT", "h1", &at_ms],
        &["PEXPIRETIME", "h1"],
        &["EXPIREAT", "h1", "1"],
        &["EXISTS", "h1"],
        &["MULTI"],
        &["INCR", "t1"],
        &["PEXPIREAT", "t1", &later_ms],
        &["EXEC"],
        &["PEXPIRETIME", "t1"],
        &["DEL", "t1"],
    ];
    for cmd in script {
        let args: Vec<&[u8]> = cmd.iter().map(|a| a.as_bytes()).collect();
        assert_eq!(
            text(&hydra.command(&args)),
            text(&real.command(&args)),
            "replies differ for {cmd:?}"
        );
    }
}

/// Before AUTH, Hydra answers what a Redis with a password answers, byte for byte; after
/// it, the connection works; RESET logs it out.
#[test]
fn unauthenticated_connections_get_redis_exact_refusals() {
    let cluster = TestCluster::start(1, "");
    let redis = RedisServer::start();
    let mut hydra = Raw::anonymous(&cluster.nodes[0].resp);
    let mut real = Raw::anonymous(&redis.addr);
    let script: &[&[&str]] = &[
        &["GET", "x"],
        &["PING"],
        &["SET", "x", "1"],
        &["HELLO", "3"],
        &["HELLO"],
        &["HELLO", "3", "SETNAME", "n"],
        &["HELLO", "3", "AUTH", "default"],
        &["HELLO", "4"],
        &["HELLO", "x"],
        &["HELLO", "2", "AUTH", "default", "bad"],
        &["AUTH", "bad"],
        &["AUTH", "someone", "bad"],
        &["AUTH"],
        &["AUTH", "a", "b", "c"],
        &["CLIENT", "SETNAME", "x"],
        &["ECHO", "x"],
        &["SELECT", "0"],
        &["NOSUCH"],
        &["COMMAND"],
        &["ACL", "WHOAMI"],
        &["MULTI"],
        &["GET"],
        &["SET", "a"],
        &["INFO"],
        &["DBSIZE"],
        &["AUTH", TEST_TOKEN],
        &["ACL", "WHOAMI"],
        &["AUTH", "default", "bad"],
        &["GET", "x"],
        &["AUTH", "default", TEST_TOKEN],
        &["RESET"],
        &["GET", "x"],
        &["ACL", "WHOAMI"],
    ];
    for cmd in script {
        let args: Vec<&[u8]> = cmd.iter().map(|a| a.as_bytes()).collect();
        assert_eq!(
            text(&hydra.command(&args)),
            text(&real.command(&args)),
            "replies differ for {cmd:?}"
        );
    }
    // HELLO with AUTH logs in and switches protocol at once.
    let hello = hydra.command(&[b"HELLO", b"3", b"AUTH", b"default", TEST_TOKEN.as_bytes()]);
    assert!(hello.starts_with(b"%"), "{}", text(&hello));
    assert_eq!(hydra.command(&[b"GET", b"x"]), b"_\r\n");
    assert_eq!(hydra.command(&[b"QUIT"]), b"+OK\r\n");
    // Inline commands before AUTH are refused the same way (redis-benchmark sends them).
    let mut inline = Raw::anonymous(&cluster.nodes[0].resp);
    assert_eq!(
        inline.send(b"PING\r\n", 1),
        b"-NOAUTH Authentication required.\r\n"
    );
    let metrics = cluster.client(0).metrics().expect("metrics");
    assert!(
        common::metric(&metrics, "hydra_auth_failures_total{front=\"resp\"}") >= 20.0,
        "{metrics}"
    );
    // Redis's limits for the unauthenticated: the same error, then the connection closes.
    for bytes in [&b"*20\r\n"[..], b"*2\r\n$20000\r\n"] {
        let mut ours = Raw::anonymous(&cluster.nodes[0].resp);
        let mut theirs = Raw::anonymous(&redis.addr);
        assert_eq!(text(&ours.send(bytes, 1)), text(&theirs.send(bytes, 1)));
        assert!(ours.closed() && theirs.closed());
    }
    // AUTH and a large SET in one write: the SET is parsed after AUTH ran.
    let mut piped = Raw::anonymous(&cluster.nodes[0].resp);
    let mut bytes = Vec::new();
    encode_command(&[b"AUTH".as_slice(), TEST_TOKEN.as_bytes()], &mut bytes);
    encode_command(
        &[b"SET".as_slice(), b"big", &vec![b'x'; 100_000]],
        &mut bytes,
    );
    assert_eq!(piped.send(&bytes, 2), b"+OK\r\n+OK\r\n");
}

/// `MULTI`/`EXEC`/`DISCARD`/`WATCH` on one key answer as redis-server does, byte for byte:
/// queued replies, errors that abort the transaction and ones that do not, run-time
/// errors inside it, a watched key another connection changed (a null array). A
/// transaction on several keys is refused whole (`-EXECABORT`), never half-applied.
#[test]
fn transactions_on_one_key_match_redis_server_and_others_apply_nothing() {
    let cluster = TestCluster::start(3, "");
    let redis = RedisServer::start();
    let mut ours = Raw::connect(&cluster.nodes[0].resp);
    let mut theirs = Raw::connect(&redis.addr);
    let mut ours_other = Raw::connect(&cluster.nodes[1].resp);
    let mut theirs_other = Raw::connect(&redis.addr);
    let script: &[&[&str]] = &[
        &["EXEC"],
        &["DISCARD"],
        &["MULTI"],
        &["SET", "t", "1"],
        &["INCR", "t"],
        &["GET", "t"],
        &["EXPIRE", "t", "100"],
        &["TTL", "t"],
        &["EXEC"],
        &["GET", "t"],
        &["TTL", "t"],
        &["MULTI"],
        &["MULTI"],
        &["SET", "t", "5"],
        &["DISCARD"],
        &["GET", "t"],
        &["MULTI"],
        &["NOSUCH", "t"],
        &["SET", "t", "3"],
        &["EXEC"],
        &["MULTI"],
        &["GET"],
        &["EXEC"],
        &["GET", "t"],
        &["MULTI"],
        &["INCR", "s"],
        &["SET", "s", "abc"],
        &["INCR", "s"],
        &["APPEND", "s", "def"],
        &["GET", "s"],
        &["EXEC"],
        &["GET", "s"],
        &["MULTI"],
        &["PING"],
        &["ECHO", "inside"],
        &["EXEC"],
        &["WATCH", "t"],
        &["MULTI"],
        &["WATCH", "t"],
        &["INCR", "t"],
        &["EXEC"],
        &["MULTI"],
        &["GETDEL", "s"],
        &["EXISTS", "s"],
        &["SET", "s", "x", "NX"],
        &["PERSIST", "s"],
        &["EXEC"],
        &["TTL", "t"],
    ];
    for cmd in script {
        let args: Vec<&[u8]> = cmd.iter().map(|a| a.as_bytes()).collect();
        assert_eq!(
            text(&ours.command(&args)),
            text(&theirs.command(&args)),
            "replies differ for {cmd:?}"
        );
    }
    // A watched key another connection changes: EXEC answers a null array, applies nothing.
    for (one, other) in [
        (&mut ours, &mut ours_other),
        (&mut theirs, &mut theirs_other),
    ] {
        assert_eq!(one.command(&[b"WATCH", b"w"]), b"+OK\r\n");
        assert_eq!(other.command(&[b"SET", b"w", b"theirs"]), b"+OK\r\n");
        assert_eq!(one.command(&[b"MULTI"]), b"+OK\r\n");
        assert_eq!(one.command(&[b"SET", b"w", b"mine"]), b"+QUEUED\r\n");
        assert_eq!(one.command(&[b"EXEC"]), b"*-1\r\n");
        assert_eq!(one.command(&[b"GET", b"w"]), b"$6\r\ntheirs\r\n");
    }
    // Several keys: refused whole, nothing applied (Redis would apply both).
    assert_eq!(ours.command(&[b"MULTI"]), b"+OK\r\n");
    assert_eq!(ours.command(&[b"SET", b"a", b"1"]), b"+QUEUED\r\n");
    assert_eq!(ours.command(&[b"SET", b"b", b"2"]), b"+QUEUED\r\n");
    let refused = text(&ours.command(&[b"EXEC"]));
    assert!(
        refused.starts_with("-EXECABORT Transaction discarded: it uses 2 keys"),
        "{refused}"
    );
    assert_eq!(
        ours.command(&[b"MGET", b"a", b"b"]),
        b"*2\r\n$-1\r\n$-1\r\n"
    );
    // Pipelined as clients send them (MULTI ... EXEC in one write): the same.
    let mut bytes = Vec::new();
    for cmd in [
        &["MULTI"][..],
        &["SET", "a", "1"],
        &["SET", "b", "2"],
        &["EXEC"],
        &["MGET", "a", "b"],
    ] {
        let args: Vec<&[u8]> = cmd.iter().map(|a| a.as_bytes()).collect();
        encode_command(&args, &mut bytes);
    }
    let replies = text(&ours.send(&bytes, 5));
    assert!(
        replies.contains("-EXECABORT") && replies.ends_with("*2\r\n$-1\r\n$-1\r\n"),
        "{replies}"
    );
    // A WATCH on a key the transaction does not write is refused the same way.
    assert_eq!(ours.command(&[b"WATCH", b"a"]), b"+OK\r\n");
    assert_eq!(ours.command(&[b"MULTI"]), b"+OK\r\n");
    assert_eq!(ours.command(&[b"SET", b"b", b"2"]), b"+QUEUED\r\n");
    assert!(text(&ours.command(&[b"EXEC"])).starts_with("-EXECABORT"));
    assert_eq!(ours.command(&[b"GET", b"b"]), b"$-1\r\n");
}

/// `SCAN` over the whole cluster returns every key redis-server returns across cursor
/// calls (with `MATCH`, `COUNT`, `TYPE`), `KEYS` the same set, `RANDOMKEY` one of them,
/// deleted and expired keys left out, and the argument errors byte for byte.
#[test]
fn scan_and_keys_list_what_redis_server_lists() {
    let cluster = TestCluster::start(3, "");
    let redis = RedisServer::start();
    let mut ours = Raw::connect(&cluster.nodes[0].resp);
    let mut theirs = Raw::connect(&redis.addr);
    let mut both = |args: &[&str]| {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        let (a, b) = (text(&ours.command(&args)), text(&theirs.command(&args)));
        assert_eq!(a, b, "replies differ for {args:?}");
        a
    };
    both(&["RANDOMKEY"]);
    for cmd in [
        &["SCAN", "abc"][..],
        &["SCAN", "0", "COUNT", "0"],
        &["SCAN", "0", "COUNT", "x"],
        &["SCAN", "0", "COUNT", "-1"],
        &["SCAN", "0", "BOGUS", "1"],
        &["SCAN", "0", "MATCH"],
        &["SCAN", "0", "TYPE", "hash"],
        &["SCAN", "18446744073709551616"],
        &["KEYS"],
    ] {
        both(cmd);
    }
    let mut bytes = Vec::new();
    for i in 0..300 {
        let (k, o) = (format!("key:{i}"), format!("other:{i}"));
        for (key, value) in [(k.as_str(), "v"), (o.as_str(), "w")] {
            encode_command(
                &[b"SET".as_slice(), key.as_bytes(), value.as_bytes()],
                &mut bytes,
            );
        }
    }
    for i in (0..300).step_by(10) {
        let k = format!("key:{i}");
        encode_command(&[b"DEL".as_slice(), k.as_bytes()], &mut bytes);
    }
    let k = "key:1";
    encode_command(
        &[b"SET".as_slice(), k.as_bytes(), b"v", b"PX", b"1"],
        &mut bytes,
    );
    for raw in [&mut ours, &mut theirs] {
        raw.send(&bytes, 631);
    }
    std::thread::sleep(Duration::from_millis(20));
    let scan_all = |raw: &mut Raw, extra: &[&str]| {
        let mut cursor = "0".to_string();
        let mut keys = Vec::new();
        for calls in 0.. {
            assert!(calls < 10_000, "the scan ends");
            let mut args: Vec<&[u8]> = vec![b"SCAN", cursor.as_bytes()];
            args.extend(extra.iter().map(|a| a.as_bytes()));
            let reply = raw.command(&args);
            let (value, _) = parse_value(&reply, &Limits::default())
                .expect("valid")
                .expect("whole");
            let Value::Array(parts) = value else {
                panic!("SCAN gave {}", text(&reply));
            };
            let (Value::Bulk(next), Value::Array(batch)) = (&parts[0], &parts[1]) else {
                panic!("SCAN gave {}", text(&reply));
            };
            keys.extend(batch.iter().map(|k| match k {
                Value::Bulk(k) => String::from_utf8_lossy(k).into_owned(),
                other => panic!("{other:?}"),
            }));
            cursor = String::from_utf8_lossy(next).into_owned();
            if cursor == "0" {
                break;
            }
        }
        keys
    };
    for extra in [
        &[][..],
        &["COUNT", "7"],
        &["MATCH", "key:*", "COUNT", "50"],
        &["MATCH", "*:1[0-9]"],
        &["TYPE", "string", "COUNT", "1000"],
    ] {
        let mine = scan_all(&mut ours, extra);
        let unique: std::collections::BTreeSet<String> = mine.iter().cloned().collect();
        assert_eq!(unique.len(), mine.len(), "a key returned twice ({extra:?})");
        let real: std::collections::BTreeSet<String> =
            scan_all(&mut theirs, extra).into_iter().collect();
        assert_eq!(unique, real, "SCAN {extra:?} lists other keys");
    }
    let sorted = |reply: Vec<u8>| {
        let (value, _) = parse_value(&reply, &Limits::default())
            .expect("valid")
            .expect("whole");
        let Value::Array(keys) = value else {
            panic!("{}", text(&reply));
        };
        let mut keys: Vec<String> = keys
            .into_iter()
            .map(|k| match k {
                Value::Bulk(k) => String::from_utf8_lossy(&k).into_owned(),
                other => panic!("{other:?}"),
            })
            .collect();
        keys.sort();
        keys
    };
    for pattern in ["key:2*", "*", "nothing*", "other:?"] {
        let args: [&[u8]; 2] = [b"KEYS", pattern.as_bytes()];
        assert_eq!(
            sorted(ours.command(&args)),
            sorted(theirs.command(&args)),
            "KEYS {pattern}"
        );
    }
    // DBSIZE and INFO keyspace count the bucket over the cluster: what SCAN lists (Redis may
    // still count the expired key its lazy expiry has not removed yet).
    let listed = scan_all(&mut ours, &[]).len();
    assert_eq!(text(&ours.command(&[b"DBSIZE"])), format!(":{listed}\r\n"));
    let real = text(&theirs.command(&[b"DBSIZE"]));
    assert!(
        real == format!(":{listed}\r\n") || real == format!(":{}\r\n", listed + 1),
        "{real}"
    );
    for i in 0..5 {
        let k = format!("ttl:{i}");
        ours.command(&[b"SET", k.as_bytes(), b"v", b"EX", b"1000"]);
    }
    let info = text(&ours.command(&[b"INFO", b"keyspace"]));
    assert!(
        info.contains(&format!("db0:keys={},expires=5,avg_ttl=", listed + 5)),
        "{info}"
    );
    let random = text(&ours.command(&[b"RANDOMKEY"]));
    // Any key of the bucket, the five just written with a TTL among them.
    assert!(
        ["key:", "other:", "ttl:"]
            .iter()
            .any(|p| random.contains(p)),
        "{random}"
    );
    // A cursor this node never gave out.
    assert_eq!(
        text(&ours.command(&[b"SCAN", b"12345"])),
        "-ERR invalid cursor\r\n"
    );
    // FLUSHDB and FLUSHALL empty the bucket (a truncation mark in Hydra), as in Redis.
    let mut both = |args: &[&str]| {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        let (a, b) = (text(&ours.command(&args)), text(&theirs.command(&args)));
        assert_eq!(a, b, "replies differ for {args:?}");
    };
    for cmd in [
        &["FLUSHDB", "BOGUS"][..],
        &["FLUSHDB", "SYNC", "ASYNC"],
        &["FLUSHDB"],
        &["DBSIZE"],
        &["KEYS", "*"],
        &["SCAN", "0"],
        &["GET", "key:2"],
        &["RANDOMKEY"],
        &["SET", "after", "1"],
        &["GET", "after"],
        &["DBSIZE"],
        &["FLUSHALL", "ASYNC"],
        &["GET", "after"],
        &["FLUSHDB", "sync"],
        &["DBSIZE"],
    ] {
        both(cmd);
    }
}

/// A logged-in user without a permission gets Redis's `-NOPERM` replies, byte for byte,
/// taken from redis-server users whose ACL rules deny the same commands. Redis's patterns
/// name keys and Hydra's scopes name buckets, so a key Redis denies is, here, a key of a
/// bucket the user may not use.
#[test]
fn users_without_a_permission_get_redis_exact_noperm_replies() {
    let cluster = TestCluster::start(1, "");
    let redis = RedisServer::start();
    let mut real_admin = Raw::connect(&redis.addr);
    let password = "correct-horse-battery";
    for rule in [
        // May run anything, on one key only (Hydra: on other buckets only).
        &[
            "ACL",
            "SETUSER",
            "app",
            "on",
            &format!(">{password}"),
            "~k2",
            "+@all",
        ][..],
        // May read every key (Hydra: the connection's first bucket, `redis`, read only).
        &[
            "ACL",
            "SETUSER",
            "viewer",
            "on",
            &format!(">{password}"),
            "~*",
            "+@read",
            "+@connection",
        ],
    ] {
        let args: Vec<&[u8]> = rule.iter().map(|a| a.as_bytes()).collect();
        assert_eq!(real_admin.command(&args), b"+OK\r\n");
    }
    let admin = cluster.client(0);
    for (name, scope) in [("app", "write:app-*"), ("viewer", "read:redis")] {
        admin
            .admin(
                "PUT",
                &format!("users/{name}"),
                Some(&serde_json::json!({ "password": password, "scopes": [scope] })),
            )
            .expect("user");
    }
    let scripts: [(&str, &[&[&str]]); 2] = [
        (
            "app",
            &[
                &["GET", "k"],
                &["SET", "k", "v"],
                &["MGET", "k"],
                &["DEL", "k"],
                &["EXISTS", "k"],
                &["INCR", "k"],
                &["EXPIRE", "k", "10"],
                &["TTL", "k"],
                &["GETDEL", "k"],
                &["APPEND", "k", "x"],
                &["STRLEN", "k"],
                &["PING"],
                &["ECHO", "still here"],
                &["ACL", "WHOAMI"],
            ],
        ),
        (
            "viewer",
            &[
                &["GET", "k"],
                &["SET", "k", "v"],
                &["DEL", "k"],
                &["INCR", "k"],
                &["MSET", "k", "v"],
                &["EXPIRE", "k", "10"],
                &["SETNX", "k", "v"],
                &["GETDEL", "k"],
                &["APPEND", "k", "x"],
                &["MGET", "k", "k2"],
                &["PING"],
                &["ECHO", "still here"],
            ],
        ),
    ];
    for (user, script) in scripts {
        let mut ours = Raw::anonymous(&cluster.nodes[0].resp);
        let mut theirs = Raw::anonymous(&redis.addr);
        let login: [&[u8]; 3] = [b"AUTH", user.as_bytes(), password.as_bytes()];
        assert_eq!(theirs.command(&login), b"+OK\r\n");
        let deadline = Instant::now() + Duration::from_secs(10);
        while ours.command(&login) != b"+OK\r\n" {
            assert!(Instant::now() < deadline, "{user} never logged in");
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut denied = 0;
        for cmd in script {
            let args: Vec<&[u8]> = cmd.iter().map(|a| a.as_bytes()).collect();
            let reply = text(&ours.command(&args));
            assert_eq!(
                reply,
                text(&theirs.command(&args)),
                "{user}: replies differ for {cmd:?}"
            );
            denied += usize::from(reply.starts_with("-NOPERM"));
        }
        assert!(denied >= 8, "{user}: {denied} refusals");
        // Pipelined, where plain GETs and SETs share a round: the same replies.
        let mut bytes = Vec::new();
        for cmd in [
            &["GET", "k"][..],
            &["SET", "k", "v"],
            &["GET", "k"],
            &["SET", "k", "w"],
        ] {
            let args: Vec<&[u8]> = cmd.iter().map(|a| a.as_bytes()).collect();
            encode_command(&args, &mut bytes);
        }
        assert_eq!(
            text(&ours.send(&bytes, 4)),
            text(&theirs.send(&bytes, 4)),
            "{user}: pipelined replies differ"
        );
    }
}

/// A connection that does not log in is closed after `limits.resp_auth_timeout_ms`.
#[test]
fn a_connection_that_never_logs_in_is_closed() {
    let cluster = TestCluster::start(1, "resp_auth_timeout_ms = 300");
    let mut idle = Raw::anonymous(&cluster.nodes[0].resp);
    let started = Instant::now();
    let reply = text(&idle.send(b"", 1));
    assert!(reply.contains("no AUTH within 300 ms"), "{reply}");
    assert!(idle.closed());
    assert!(started.elapsed() < Duration::from_secs(5));
    // One that logs in in time stays.
    let mut c = Raw::connect(&cluster.nodes[0].resp);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(c.command(&[b"PING"]), b"+PONG\r\n");
}

/// `SET NX` as a lock: clients racing through every node for the same keys, each key taken
/// by at most one of them (one that answered OK, else at most one whose outcome was
/// unknown); the holder's value is what every node then reads. Compare-and-set answers
/// `-TIMEOUT` only when it cannot know.
#[test]
fn set_nx_races_through_every_node_and_at_most_one_client_wins() {
    let cluster = TestCluster::start(3, "");
    let addrs: Vec<String> = cluster.nodes.iter().map(|n| n.resp.clone()).collect();
    for round in 0..10 {
        let key = format!("lock{round}");
        let handles: Vec<_> = (0..6)
            .map(|i| {
                let (addr, key) = (addrs[i % 3].clone(), key.clone());
                std::thread::spawn(move || {
                    let mut c = Raw::connect(&addr);
                    let me = format!("client{i}");
                    let reply = text(&c.command(&[b"SET", key.as_bytes(), me.as_bytes(), b"NX"]));
                    (me, reply)
                })
            })
            .collect();
        let replies: Vec<(String, String)> = handles
            .into_iter()
            .map(|h| h.join().expect("client"))
            .collect();
        let winners: Vec<&String> = replies
            .iter()
            .filter(|(_, r)| r == "+OK\r\n")
            .map(|(me, _)| me)
            .collect();
        for (_, r) in &replies {
            assert!(
                // A contention error says "not applied", like a timeout's unknown outcome
                // is settled below by what every node holds.
                r == "+OK\r\n"
                    || r == "$-1\r\n"
                    || r.starts_with("-TIMEOUT")
                    || (r.starts_with("-CAS_CONTENTION") && r.contains("not applied")),
                "round {round}: {replies:?}"
            );
        }
        assert!(winners.len() <= 1, "round {round}: {replies:?}");
        for addr in &addrs {
            let held = text(&Raw::connect(addr).command(&[b"GET", key.as_bytes()]));
            let held = held.lines().nth(1).map(str::to_string);
            match (winners.first(), held) {
                (Some(w), held) => {
                    assert_eq!(held.as_ref(), Some(*w), "round {round}: {replies:?}")
                }
                // No winner: at most one whose outcome was unknown took it.
                (None, None) => {}
                (None, Some(held)) => assert!(
                    replies
                        .iter()
                        .any(|(me, r)| *me == held && r.starts_with("-TIMEOUT")),
                    "round {round}: {held} holds, {replies:?}"
                ),
            }
        }
    }
}

/// The conditional commands of Valkey (not in the Redis 7 the byte-for-byte test runs):
/// `SET ... IFEQ` and `DELIFEQ`, as Valkey answers them.
#[test]
fn set_ifeq_and_delifeq() {
    let cluster = TestCluster::start(3, "");
    let mut c = Raw::connect(&cluster.nodes[1].resp);
    let mut run = |args: &[&str]| {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        text(&c.command(&args))
    };
    assert_eq!(run(&["SET", "k", "a", "IFEQ", "a"]), "$-1\r\n");
    assert_eq!(run(&["SET", "k", "a"]), "+OK\r\n");
    assert_eq!(run(&["SET", "k", "b", "IFEQ", "x"]), "$-1\r\n");
    assert_eq!(run(&["SET", "k", "b", "IFEQ", "a"]), "+OK\r\n");
    assert_eq!(run(&["SET", "k", "c", "IFEQ", "b", "GET"]), "$1\r\nb\r\n");
    // A plain SET on a key compare-and-set manages, in a pipeline: refused by the core and
    // made again through Paxos by the pipeline's path too.
    let pipelined = c.send(
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nc\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
        2,
    );
    assert_eq!(text(&pipelined), "+OK\r\n$1\r\nc\r\n");
    let mut run = |args: &[&str]| {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        text(&c.command(&args))
    };
    assert_eq!(
        run(&["SET", "k", "d", "IFEQ", "c", "NX"]),
        "-ERR syntax error\r\n"
    );
    assert_eq!(run(&["DELIFEQ", "k", "x"]), ":0\r\n");
    assert_eq!(run(&["DELIFEQ", "k", "c"]), ":1\r\n");
    assert_eq!(run(&["GET", "k"]), "$-1\r\n");
    // Serial reads: through Paxos, linearizable with the conditional writes.
    assert_eq!(run(&["HYDRA.CONSISTENCY", "serial", "default"]), "+OK\r\n");
    assert_eq!(run(&["SET", "k", "s", "NX"]), "+OK\r\n");
    assert_eq!(run(&["GET", "k"]), "$1\r\ns\r\n");
    assert_eq!(run(&["MGET", "k", "nothing"]), "*2\r\n$1\r\ns\r\n$-1\r\n");
    assert!(run(&["HYDRA.CONSISTENCY"]).contains("serial"));
    assert_eq!(run(&["HYDRA.CONSISTENCY", "default", "default"]), "+OK\r\n");
    // In a bucket that keeps siblings too (a bucket that does not exist is refused).
    assert!(
        run(&["HYDRA.BUCKET", "nosuch"])
            .starts_with("-UNKNOWN_BUCKET bucket \"nosuch\" does not exist")
    );
    assert_eq!(run(&["HYDRA.BUCKET", "default"]), "+OK\r\n");
    assert_eq!(run(&["SET", "k", "a", "NX"]), "+OK\r\n");
    assert_eq!(run(&["SET", "k", "b", "NX"]), "$-1\r\n");
    assert_eq!(run(&["SET", "k", "b", "IFEQ", "a"]), "+OK\r\n");
    assert_eq!(run(&["GET", "k"]), "$1\r\nb\r\n");
}

/// `INCR` from 20 clients at once through every node, on one key: it ends at exactly the
/// increments acknowledged, plus at most those whose outcome was unknown (`-TIMEOUT`); one
/// refused for contention (`-CAS_CONTENTION`) wrote nothing. (`--nocapture` shows the
/// figures.)
#[test]
fn concurrent_incr_ends_at_the_acknowledged_increments() {
    let cluster = TestCluster::start(3, "");
    let addrs: Vec<String> = cluster.nodes.iter().map(|n| n.resp.clone()).collect();
    let handles: Vec<_> = (0..20)
        .map(|i| {
            let addr = addrs[i % 3].clone();
            std::thread::spawn(move || {
                let mut c = Raw::connect(&addr);
                let (mut acked, mut unknown, mut refused) = (0u64, 0u64, 0u64);
                for _ in 0..5 {
                    let reply = text(&c.command(&[b"INCR", b"counter"]));
                    if reply.starts_with(':') {
                        acked += 1;
                    } else if reply.starts_with("-TIMEOUT") {
                        unknown += 1;
                    } else {
                        assert!(reply.starts_with("-CAS_CONTENTION"), "{reply}");
                        refused += 1;
                    }
                }
                (acked, unknown, refused)
            })
        })
        .collect();
    let (mut acked, mut unknown, mut refused) = (0, 0, 0);
    for h in handles {
        let (a, u, r) = h.join().expect("client");
        (acked, unknown, refused) = (acked + a, unknown + u, refused + r);
    }
    let got = text(&Raw::connect(&addrs[0]).command(&[b"GET", b"counter"]));
    let value: u64 = got
        .lines()
        .nth(1)
        .expect("a value")
        .parse()
        .expect("a number");
    eprintln!("{acked} acknowledged, {unknown} unknown, {refused} refused; counter {value}");
    assert!(
        (acked..=acked + unknown).contains(&value),
        "counter {value}: {acked} acknowledged, {unknown} unknown, {refused} refused"
    );
    // Under this much contention on one key many answers are `-TIMEOUT` (a proposal beaten
    // after some acceptor took it cannot be told apart from one applied and replaced): the
    // rate is a known weakness, measured here, not a guarantee.
    assert!(acked > 0, "nothing acknowledged");
}

/// `MGET` answers at most `limits.resp_reply_bytes_max` bytes of values: a command naming
/// one large key many times is refused, not collected.
#[test]
fn mget_has_a_reply_budget() {
    let cluster = TestCluster::start(1, "value_bytes_max = 1024\nresp_reply_bytes_max = 4096");
    let mut c = Raw::connect(&cluster.nodes[0].resp);
    assert_eq!(c.command(&[b"SET", b"big", &[b'x'; 1000]]), b"+OK\r\n");
    let three: Vec<&[u8]> = std::iter::once(&b"MGET"[..])
        .chain(std::iter::repeat_n(&b"big"[..], 3))
        .collect();
    assert!(c.command(&three).starts_with(b"*3\r\n$1000\r\n"));
    let many: Vec<&[u8]> = std::iter::once(&b"MGET"[..])
        .chain(std::iter::repeat_n(&b"big"[..], 10_000))
        .collect();
    let reply = text(&c.command(&many));
    assert!(
        reply.contains("limits.resp_reply_bytes_max"),
        "{}",
        &reply[..reply.len().min(200)]
    );
    // Many small values, in order, within the budget.
    let keys: Vec<String> = (0..300).map(|i| format!("s{i}")).collect();
    for (i, k) in keys.iter().enumerate().take(300).step_by(50) {
        assert_eq!(
            c.command(&[b"SET", k.as_bytes(), i.to_string().as_bytes()]),
            b"+OK\r\n"
        );
    }
    let mut args: Vec<&[u8]> = vec![b"MGET"];
    args.extend(keys.iter().map(|k| k.as_bytes()));
    let (value, _) = parse_value(&c.command(&args), &Limits::default())
        .expect("valid")
        .expect("whole");
    let Value::Array(items) = value else {
        panic!("{value:?}")
    };
    assert_eq!(items.len(), 300);
    assert_eq!(items[50], Value::Bulk(b"50".to_vec()));
    assert_eq!(items[51], Value::Null);
}
