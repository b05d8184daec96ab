//! What the front end says about itself and the connection: HELLO, AUTH, CLIENT, INFO,
//! CONFIG GET, and the command table behind COMMAND, the arity checks and the dispatch.

use super::collections::CollectionCmd;
use super::{Connection, PATTERN_BYTES_MAX, REDIS_COMPAT_VERSION};
use hydra_resp::{Protocol, Value};
use std::sync::atomic::Ordering;

impl Connection {
    /// `AUTH [user] password`; `AUTH password` logs in as `default`.
    pub(super) async fn auth(&mut self, args: &[Vec<u8>]) -> Value {
        match args {
            [password] => {
                self.login(crate::auth::DEFAULT_USER.as_bytes(), password)
                    .await
            }
            [user, password] => self.login(user, password).await,
            _ => Value::error("ERR syntax error"),
        }
    }

    /// Checks a user's password; a failure leaves the connection as it was (as Redis does).
    async fn login(&mut self, user: &[u8], password: &[u8]) -> Value {
        match self.state.auth.login(user, password).await {
            Some(p) => {
                self.principal = Some(p);
                Value::ok()
            }
            None => {
                self.state.metrics.auth_failure("resp");
                Value::error("WRONGPASS invalid username-password pair or user is disabled.")
            }
        }
    }

    /// `ACL WHOAMI`; the other subcommands are not there yet.
    pub(super) fn acl(&mut self, args: &[Vec<u8>]) -> Value {
        let sub = args[0].to_ascii_lowercase();
        match (sub.as_slice(), args.len()) {
            (b"whoami", 1) => Value::bulk(
                self.principal
                    .as_ref()
                    .map_or(String::new(), |p| p.name.clone()),
            ),
            (b"whoami", _) => Value::error(
                "ERR unknown subcommand or wrong number of arguments for 'whoami'. Try ACL HELP.",
            ),
            _ => Value::error(format!(
                "ERR unknown subcommand '{}'. Try ACL HELP.",
                String::from_utf8_lossy(&args[0])
            )),
        }
    }

    pub(super) async fn hello(&mut self, args: &[Vec<u8>]) -> Value {
        // Check everything before changing anything (as Redis does): the version, then
        // the options' syntax, then the credentials, then whether the connection may run it.
        let mut protocol = self.protocol;
        let mut name = None;
        let mut login = None;
        let mut i = 0;
        if let Some(v) = args.first() {
            match v.as_slice() {
                b"2" => protocol = Protocol::Resp2,
                b"3" => protocol = Protocol::Resp3,
                _ => {
                    if std::str::from_utf8(v)
                        .ok()
                        .and_then(|s| s.parse::<i64>().ok())
                        .is_none()
                    {
                        return Value::error(
                            "ERR Protocol version is not an integer or out of range",
                        );
                    }
                    return Value::error("NOPROTO unsupported protocol version");
                }
            }
            i = 1;
        }
        while i < args.len() {
            let opt = args[i].to_ascii_lowercase();
            match opt.as_slice() {
                b"auth" if i + 2 < args.len() => {
                    login = Some((&args[i + 1], &args[i + 2]));
                    i += 3;
                }
                b"setname" if i + 1 < args.len() => {
                    name = Some(args[i + 1].clone());
                    i += 2;
                }
                _ => {
                    return Value::error(format!(
                        "ERR Syntax error in HELLO option '{}'",
                        String::from_utf8_lossy(&args[i])
                    ));
                }
            }
        }
        if let Some((user, password)) = login
            && let Value::Error(e) = self.login(user, password).await
        {
            return Value::Error(e);
        }
        if self.principal.is_none() {
            self.state.metrics.auth_failure("resp");
            return Value::error(
                "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time",
            );
        }
        self.protocol = protocol;
        if name.is_some() {
            self.name = name;
        }
        Value::Map(vec![
            (Value::bulk("server"), Value::bulk("redis")),
            (Value::bulk("version"), Value::bulk(REDIS_COMPAT_VERSION)),
            (
                Value::bulk("proto"),
                Value::Integer(if self.protocol == Protocol::Resp3 {
                    3
                } else {
                    2
                }),
            ),
            (Value::bulk("id"), Value::Integer(self.id as i64)),
            (Value::bulk("mode"), Value::bulk("standalone")),
            (Value::bulk("role"), Value::bulk("master")),
            (Value::bulk("modules"), Value::Array(vec![])),
            (
                Value::bulk("hydra_version"),
                Value::bulk(env!("CARGO_PKG_VERSION")),
            ),
            (
                Value::bulk("hydra_node"),
                Value::Integer(self.state.node_id as i64),
            ),
        ])
    }

    pub(super) fn client(&mut self, args: &[Vec<u8>]) -> Value {
        let sub = args[0].to_ascii_lowercase();
        match (sub.as_slice(), args.len()) {
            (b"setname", 2) => {
                if args[1].iter().any(|b| *b <= b' ' || *b > b'~') {
                    return Value::error(
                        "ERR Client names cannot contain spaces, newlines or special characters.",
                    );
                }
                self.name = (!args[1].is_empty()).then(|| args[1].clone());
                Value::ok()
            }
            (b"getname", 1) => match &self.name {
                Some(n) => Value::Bulk(n.clone()),
                None => Value::Null,
            },
            (b"id", 1) => Value::Integer(self.id as i64),
            (b"setinfo", 3) => {
                match args[1].to_ascii_lowercase().as_slice() {
                    b"lib-name" => self.lib_name = Some(args[2].clone()),
                    b"lib-ver" => self.lib_ver = Some(args[2].clone()),
                    _ => {
                        return Value::error(format!(
                            "ERR Unrecognized option '{}'",
                            String::from_utf8_lossy(&args[1])
                        ));
                    }
                }
                Value::ok()
            }
            (b"info", 1) => Value::Verbatim("txt".into(), self.client_info()),
            (b"setname" | b"getname" | b"id" | b"setinfo" | b"info", _) => Value::error(format!(
                "ERR wrong number of arguments for 'client|{}' command",
                String::from_utf8_lossy(&sub)
            )),
            _ => Value::error(format!(
                "ERR unknown subcommand '{}'. Try CLIENT HELP. Hydra supports CLIENT SETNAME, \
                 GETNAME, ID, SETINFO and INFO.",
                String::from_utf8_lossy(&args[0])
            )),
        }
    }

    fn client_info(&self) -> String {
        let text = |v: &Option<Vec<u8>>| {
            v.as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default()
                .to_string()
        };
        format!(
            "id={} name={} db=0 resp={} lib-name={} lib-ver={} bucket={}\n",
            self.id,
            text(&self.name),
            if self.protocol == Protocol::Resp3 {
                3
            } else {
                2
            },
            text(&self.lib_name),
            text(&self.lib_ver),
            self.bucket.as_str()
        )
    }

    pub(super) async fn info(&mut self, args: &[Vec<u8>]) -> Value {
        let wanted: Vec<String> = args
            .iter()
            .map(|a| String::from_utf8_lossy(a).to_ascii_lowercase())
            .collect();
        let all = wanted.is_empty()
            || wanted
                .iter()
                .any(|w| w == "all" || w == "everything" || w == "default");
        // The keyspace is counted over the cluster (a listing): only when it is asked for.
        let keyspace = if all || wanted.iter().any(|w| w == "keyspace") {
            match self.count_bucket().await {
                Ok((0, _, _)) => String::new(),
                Ok((keys, expires, avg_ttl)) => {
                    format!("db0:keys={keys},expires={expires},avg_ttl={avg_ttl}\r\n")
                }
                Err(e) => return e,
            }
        } else {
            String::new()
        };
        let mut text = String::new();
        let mut section = |name: &str, body: String| {
            if all || wanted.iter().any(|w| w == &name.to_ascii_lowercase()) {
                text.push_str(&format!("# {name}\r\n{body}\r\n"));
            }
        };
        section(
            "Server",
            format!(
                "redis_version:{REDIS_COMPAT_VERSION}\r\nredis_mode:standalone\r\n\
                 hydra_version:{}\r\nhydra_node:{}\r\nos:{}\r\narch_bits:64\r\n\
                 process_id:{}\r\ntcp_port:{}\r\nuptime_in_seconds:{}\r\n",
                env!("CARGO_PKG_VERSION"),
                self.state.node_id,
                std::env::consts::OS,
                std::process::id(),
                self.state.tcp_port,
                self.state.started.elapsed().as_secs()
            ),
        );
        section(
            "Clients",
            format!(
                "connected_clients:{}\r\nmaxclients:{}\r\n",
                self.state.connected.load(Ordering::Relaxed),
                self.state.connections_max
            ),
        );
        section(
            "Persistence",
            format!(
                "loading:0\r\naof_enabled:{}\r\nhydra_durability:{}\r\n",
                u8::from(self.state.durability != "none"),
                self.state.durability
            ),
        );
        section(
            "Replication",
            "role:master\r\nconnected_slaves:0\r\n".into(),
        );
        section("Keyspace", keyspace);
        Value::Verbatim("txt".into(), text)
    }

    pub(super) fn config(&self, args: &[Vec<u8>]) -> Value {
        let sub = args[0].to_ascii_lowercase();
        match sub.as_slice() {
            b"get" if args.len() >= 2 => {
                let appendfsync = match self.state.durability.as_str() {
                    "fsync" => "always",
                    "none" => "no",
                    _ => "everysec",
                };
                let table = [
                    ("save", String::new()),
                    (
                        "appendonly",
                        if self.state.durability == "none" {
                            "no"
                        } else {
                            "yes"
                        }
                        .to_string(),
                    ),
                    ("appendfsync", appendfsync.to_string()),
                    ("databases", "1".to_string()),
                    ("maxclients", self.state.connections_max.to_string()),
                    (
                        "proto-max-bulk-len",
                        self.state.limits().bulk_bytes_max.to_string(),
                    ),
                    ("maxmemory", "0".to_string()),
                    ("timeout", "0".to_string()),
                ];
                let mut pairs = Vec::new();
                for (name, value) in table {
                    if args[1..]
                        .iter()
                        .any(|p| glob_match(&p.to_ascii_lowercase(), name.as_bytes()))
                    {
                        pairs.push((Value::bulk(name), Value::bulk(value)));
                    }
                }
                Value::Map(pairs)
            }
            b"set" | b"resetstat" | b"rewrite" => Value::error(
                "ERR CONFIG SET/RESETSTAT/REWRITE are not supported: a Hydra node is configured \
                 by its TOML file (see config.example.toml)",
            ),
            _ => Value::error(format!(
                "ERR unknown subcommand or wrong number of arguments for '{}'. Try CONFIG GET.",
                String::from_utf8_lossy(&args[0])
            )),
        }
    }
}

/// Redis-style glob match (`*`, `?`) of a CONFIG GET pattern against a parameter name:
/// iterative, linear in practice (one backtrack point), bounded pattern length.
fn glob_match(pattern: &[u8], name: &[u8]) -> bool {
    if pattern.len() > PATTERN_BYTES_MAX {
        return false;
    }
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == b'?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                // Let the last `*` take one more byte, and retry from there.
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// What runs a command: [`Connection::execute`] matches on it (exhaustively), so every row
/// of [`COMMANDS`] has exactly one handler and no handler runs without a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Handler {
    Ping,
    Echo,
    Hello,
    Auth,
    /// ACL WHOAMI.
    Acl,
    Quit,
    Reset,
    Select,
    Client,
    Command,
    Info,
    Config,
    DbSize,
    /// MULTI, EXEC, DISCARD, WATCH, UNWATCH (see `transaction.rs`).
    Multi,
    Exec,
    Discard,
    Watch,
    Unwatch,
    SetNx,
    /// DELIFEQ: delete if the value is exactly the one given (compare-and-set).
    DelIfEq,
    /// INCR, DECR (`by_arg` false) and INCRBY, DECRBY (the amount is the second argument).
    IncrBy {
        by_arg: bool,
        negate: bool,
    },
    Append,
    GetSet,
    IncrByFloat,
    SetRange,
    /// GETRANGE and its old name SUBSTR.
    GetRange,
    GetEx,
    MSetNx,
    Get,
    Set,
    GetDel,
    /// DEL and UNLINK.
    Del,
    Exists,
    MGet,
    MSet,
    StrLen,
    Expire {
        millis: bool,
    },
    /// TTL, PTTL (`absolute` false), EXPIRETIME, PEXPIRETIME (true).
    Ttl {
        millis: bool,
        absolute: bool,
    },
    /// SETEX (seconds), PSETEX (`millis`): SET with a TTL, argument order of their own.
    SetEx {
        millis: bool,
    },
    /// TYPE: `string` or `none` (every Hydra value is a string).
    Type,
    /// OBJECT ENCODING|REFCOUNT|IDLETIME|FREQ|HELP.
    Object,
    /// FLUSHDB and FLUSHALL: truncate the connection's bucket (Hydra's buckets are not
    /// Redis's numbered databases; FLUSHALL clears no other bucket).
    Flush,
    /// SCAN, KEYS, RANDOMKEY: listings of the connection's bucket (see `keys.rs`).
    Scan,
    Keys,
    RandomKey,
    Persist,
    /// The hash and set commands (see `collections.rs`).
    Collection(CollectionCmd),
    HydraBucket,
    HydraConsistency,
    HydraGetAll,
    HydraPut,
    HydraDel,
    HydraReceipt,
}

/// One row of the command table: `COMMAND`'s reply, the arity check and the handler.
pub(super) struct Spec {
    pub(super) name: &'static str,
    /// Arguments including the name; negative: at least that many.
    arity: i64,
    pub(super) flags: &'static [&'static str],
    pub(super) first_key: i64,
    last_key: i64,
    step: i64,
    pub(super) handler: Handler,
}

impl Spec {
    /// Where its keys are: the first, the last (negative: from the end) and the step.
    pub(super) fn key_positions(&self) -> (i64, i64, i64) {
        (self.first_key, self.last_key, self.step)
    }

    /// Whether a command of `len` words (name included) has the arity of this row.
    pub(super) fn arity_ok(&self, len: usize) -> bool {
        if self.arity >= 0 {
            len == self.arity as usize
        } else {
            len >= self.arity.unsigned_abs() as usize
        }
    }
}

const fn spec(
    name: &'static str,
    arity: i64,
    flags: &'static [&'static str],
    keys: (i64, i64, i64),
    handler: Handler,
) -> Spec {
    Spec {
        name,
        arity,
        flags,
        first_key: keys.0,
        last_key: keys.1,
        step: keys.2,
        handler,
    }
}

const R: &[&str] = &["readonly", "fast"];
const W: &[&str] = &["write"];
/// Read-only commands whose cost grows with the collection.
const RS: &[&str] = &["readonly"];
const C: &[&str] = &["fast", "loading", "stale"];
const NOKEY: (i64, i64, i64) = (0, 0, 0);
const KEY1: (i64, i64, i64) = (1, 1, 1);
const KEYS: (i64, i64, i64) = (1, -1, 1);

/// Every command this front end knows.
pub(super) static COMMANDS: &[Spec] = &[
    spec("ping", -1, C, NOKEY, Handler::Ping),
    spec("echo", 2, C, NOKEY, Handler::Echo),
    spec("hello", -1, C, NOKEY, Handler::Hello),
    spec("auth", -2, C, NOKEY, Handler::Auth),
    spec("acl", -2, C, NOKEY, Handler::Acl),
    spec("quit", -1, C, NOKEY, Handler::Quit),
    spec("reset", 1, C, NOKEY, Handler::Reset),
    spec("select", 2, C, NOKEY, Handler::Select),
    spec("client", -2, C, NOKEY, Handler::Client),
    spec("command", -1, C, NOKEY, Handler::Command),
    spec("info", -1, C, NOKEY, Handler::Info),
    spec("config", -2, C, NOKEY, Handler::Config),
    spec("dbsize", 1, R, NOKEY, Handler::DbSize),
    spec("multi", 1, C, NOKEY, Handler::Multi),
    spec("exec", 1, C, NOKEY, Handler::Exec),
    spec("discard", 1, C, NOKEY, Handler::Discard),
    spec("watch", -2, C, KEYS, Handler::Watch),
    spec("unwatch", 1, C, NOKEY, Handler::Unwatch),
    spec("get", 2, R, KEY1, Handler::Get),
    spec("set", -3, W, KEY1, Handler::Set),
    spec("setnx", 3, W, KEY1, Handler::SetNx),
    spec("delifeq", 3, W, KEY1, Handler::DelIfEq),
    spec(
        "incr",
        2,
        W,
        KEY1,
        Handler::IncrBy {
            by_arg: false,
            negate: false,
        },
    ),
    spec(
        "decr",
        2,
        W,
        KEY1,
        Handler::IncrBy {
            by_arg: false,
            negate: true,
        },
    ),
    spec(
        "incrby",
        3,
        W,
        KEY1,
        Handler::IncrBy {
            by_arg: true,
            negate: false,
        },
    ),
    spec(
        "decrby",
        3,
        W,
        KEY1,
        Handler::IncrBy {
            by_arg: true,
            negate: true,
        },
    ),
    spec("append", 3, W, KEY1, Handler::Append),
    spec("getset", 3, W, KEY1, Handler::GetSet),
    spec("incrbyfloat", 3, W, KEY1, Handler::IncrByFloat),
    spec("setrange", 4, W, KEY1, Handler::SetRange),
    spec("getrange", 4, R, KEY1, Handler::GetRange),
    spec("substr", 4, R, KEY1, Handler::GetRange),
    spec("getex", -2, W, KEY1, Handler::GetEx),
    spec("msetnx", -3, W, (1, -1, 2), Handler::MSetNx),
    spec("getdel", 2, W, KEY1, Handler::GetDel),
    spec("del", -2, W, KEYS, Handler::Del),
    spec("unlink", -2, W, KEYS, Handler::Del),
    spec("exists", -2, R, KEYS, Handler::Exists),
    spec("mget", -2, R, KEYS, Handler::MGet),
    spec("mset", -3, W, (1, -1, 2), Handler::MSet),
    spec("strlen", 2, R, KEY1, Handler::StrLen),
    spec("expire", -3, W, KEY1, Handler::Expire { millis: false }),
    spec("pexpire", -3, W, KEY1, Handler::Expire { millis: true }),
    spec(
        "ttl",
        2,
        R,
        KEY1,
        Handler::Ttl {
            millis: false,
            absolute: false,
        },
    ),
    spec(
        "pttl",
        2,
        R,
        KEY1,
        Handler::Ttl {
            millis: true,
            absolute: false,
        },
    ),
    spec(
        "expiretime",
        2,
        R,
        KEY1,
        Handler::Ttl {
            millis: false,
            absolute: true,
        },
    ),
    spec(
        "pexpiretime",
        2,
        R,
        KEY1,
        Handler::Ttl {
            millis: true,
            absolute: true,
        },
    ),
    spec("setex", 4, W, KEY1, Handler::SetEx { millis: false }),
    spec("psetex", 4, W, KEY1, Handler::SetEx { millis: true }),
    spec("type", 2, R, KEY1, Handler::Type),
    spec("object", -2, &["readonly"], NOKEY, Handler::Object),
    spec("flushdb", -1, W, NOKEY, Handler::Flush),
    spec("flushall", -1, W, NOKEY, Handler::Flush),
    spec("scan", -2, &["readonly"], NOKEY, Handler::Scan),
    spec("keys", 2, &["readonly"], NOKEY, Handler::Keys),
    spec("randomkey", 1, &["readonly"], NOKEY, Handler::RandomKey),
    spec("touch", -2, R, KEYS, Handler::Exists),
    spec("persist", 2, W, KEY1, Handler::Persist),
    spec(
        "hset",
        -4,
        W,
        KEY1,
        Handler::Collection(CollectionCmd::HSet),
    ),
    spec(
        "hmset",
        -4,
        W,
        KEY1,
        Handler::Collection(CollectionCmd::HMSet),
    ),
    spec(
        "hsetnx",
        4,
        W,
        KEY1,
        Handler::Collection(CollectionCmd::HSetNx),
    ),
    spec("hget", 3, R, KEY1, Handler::Collection(CollectionCmd::HGet)),
    spec(
        "hmget",
        -3,
        R,
        KEY1,
        Handler::Collection(CollectionCmd::HMGet),
    ),
    spec(
        "hgetall",
        2,
        RS,
        KEY1,
        Handler::Collection(CollectionCmd::HGetAll),
    ),
    spec(
        "hdel",
        -3,
        W,
        KEY1,
        Handler::Collection(CollectionCmd::HDel),
    ),
    spec("hlen", 2, R, KEY1, Handler::Collection(CollectionCmd::HLen)),
    spec(
        "hexists",
        3,
        R,
        KEY1,
        Handler::Collection(CollectionCmd::HExists),
    ),
    spec(
        "hkeys",
        2,
        RS,
        KEY1,
        Handler::Collection(CollectionCmd::HKeys),
    ),
    spec(
        "hvals",
        2,
        RS,
        KEY1,
        Handler::Collection(CollectionCmd::HVals),
    ),
    spec(
        "hstrlen",
        3,
        R,
        KEY1,
        Handler::Collection(CollectionCmd::HStrLen),
    ),
    spec(
        "hincrby",
        4,
        W,
        KEY1,
        Handler::Collection(CollectionCmd::HIncrBy),
    ),
    spec(
        "hincrbyfloat",
        4,
        W,
        KEY1,
        Handler::Collection(CollectionCmd::HIncrByFloat),
    ),
    spec(
        "hrandfield",
        -2,
        RS,
        KEY1,
        Handler::Collection(CollectionCmd::HRandField),
    ),
    spec(
        "hscan",
        -3,
        RS,
        KEY1,
        Handler::Collection(CollectionCmd::HScan),
    ),
    spec(
        "sadd",
        -3,
        W,
        KEY1,
        Handler::Collection(CollectionCmd::SAdd),
    ),
    spec(
        "srem",
        -3,
        W,
        KEY1,
        Handler::Collection(CollectionCmd::SRem),
    ),
    spec(
        "smembers",
        2,
        RS,
        KEY1,
        Handler::Collection(CollectionCmd::SMembers),
    ),
    spec(
        "sismember",
        3,
        R,
        KEY1,
        Handler::Collection(CollectionCmd::SIsMember),
    ),
    spec(
        "smismember",
        -3,
        R,
        KEY1,
        Handler::Collection(CollectionCmd::SMIsMember),
    ),
    spec(
        "scard",
        2,
        R,
        KEY1,
        Handler::Collection(CollectionCmd::SCard),
    ),
    spec(
        "srandmember",
        -2,
        RS,
        KEY1,
        Handler::Collection(CollectionCmd::SRandMember),
    ),
    spec(
        "spop",
        -2,
        W,
        KEY1,
        Handler::Collection(CollectionCmd::SPop),
    ),
    spec(
        "smove",
        4,
        W,
        (1, 2, 1),
        Handler::Collection(CollectionCmd::SMove),
    ),
    spec(
        "sinter",
        -2,
        RS,
        KEYS,
        Handler::Collection(CollectionCmd::SInter),
    ),
    spec(
        "sunion",
        -2,
        RS,
        KEYS,
        Handler::Collection(CollectionCmd::SUnion),
    ),
    spec(
        "sdiff",
        -2,
        RS,
        KEYS,
        Handler::Collection(CollectionCmd::SDiff),
    ),
    spec(
        "sinterstore",
        -3,
        W,
        KEYS,
        Handler::Collection(CollectionCmd::SInterStore),
    ),
    spec(
        "sunionstore",
        -3,
        W,
        KEYS,
        Handler::Collection(CollectionCmd::SUnionStore),
    ),
    spec(
        "sdiffstore",
        -3,
        W,
        KEYS,
        Handler::Collection(CollectionCmd::SDiffStore),
    ),
    spec(
        "sintercard",
        -3,
        RS,
        (2, -1, 1),
        Handler::Collection(CollectionCmd::SInterCard),
    ),
    spec(
        "sscan",
        -3,
        RS,
        KEY1,
        Handler::Collection(CollectionCmd::SScan),
    ),
    spec("hydra.bucket", -1, C, NOKEY, Handler::HydraBucket),
    spec("hydra.consistency", -1, C, NOKEY, Handler::HydraConsistency),
    spec("hydra.getall", 2, R, KEY1, Handler::HydraGetAll),
    spec("hydra.put", -4, W, KEY1, Handler::HydraPut),
    spec("hydra.del", 3, W, KEY1, Handler::HydraDel),
    spec("hydra.receipt", 1, C, NOKEY, Handler::HydraReceipt),
];

/// The row of a command, by its lower-case name.
pub(super) fn lookup(name: &str) -> Option<&'static Spec> {
    COMMANDS.iter().find(|c| c.name == name)
}

fn command_entry(s: &Spec) -> Value {
    Value::Array(vec![
        Value::bulk(s.name),
        Value::Integer(s.arity),
        Value::Set(s.flags.iter().map(|f| Value::Simple((*f).into())).collect()),
        Value::Integer(s.first_key),
        Value::Integer(s.last_key),
        Value::Integer(s.step),
        Value::Set(vec![]),
        Value::Set(vec![]),
        Value::Array(vec![]),
        Value::Array(vec![]),
    ])
}

pub(super) fn command_reply(args: &[Vec<u8>]) -> Value {
    let sub = args.first().map(|a| a.to_ascii_lowercase());
    match sub.as_deref() {
        None => Value::Array(COMMANDS.iter().map(command_entry).collect()),
        Some(b"count") => Value::Integer(COMMANDS.len() as i64),
        Some(b"info") => Value::Array(
            args[1..]
                .iter()
                .map(|n| {
                    let n = n.to_ascii_lowercase();
                    COMMANDS
                        .iter()
                        .find(|c| c.name.as_bytes() == n.as_slice())
                        .map_or(Value::NullArray, command_entry)
                })
                .collect(),
        ),
        // redis-cli asks for docs to show hints; Hydra has none to give.
        Some(b"docs") => Value::Map(vec![]),
        Some(b"list") => Value::Array(COMMANDS.iter().map(|c| Value::bulk(c.name)).collect()),
        Some(_) => Value::error(format!(
            "ERR unknown subcommand '{}'. Try COMMAND HELP.",
            String::from_utf8_lossy(&args[0])
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_patterns_match_like_redis() {
        assert!(glob_match(b"save", b"save"));
        assert!(glob_match(b"*", b"appendonly"));
        assert!(glob_match(b"append*", b"appendfsync"));
        assert!(glob_match(b"s?ve", b"save"));
        assert!(!glob_match(b"save", b"saves"));
        assert!(!glob_match(b"a*z", b"appendonly"));
        assert!(glob_match(b"*a*p*", b"appendonly"));
        assert!(glob_match(b"**", b""));
        // Many stars neither recurse nor backtrack without bound.
        assert!(!glob_match(&[b'*'; 100_000], b"save"));
        let evil = [b"*a".repeat(20), b"*b".to_vec()].concat();
        assert!(!glob_match(&evil, &[b'a'; 200]));
    }

    #[test]
    fn the_table_is_well_formed() {
        // Names are lower case and unique (the lookup finds each row by its own name), and
        // every arity admits the command's name plus its keys.
        for c in COMMANDS {
            assert_eq!(c.name, c.name.to_ascii_lowercase());
            assert!(
                std::ptr::eq(lookup(c.name).expect("found"), c),
                "{} twice",
                c.name
            );
            let least = c.arity.unsigned_abs() as usize;
            assert!(c.arity_ok(least), "{}", c.name);
            assert_eq!(c.arity_ok(least + 1), c.arity < 0, "{}", c.name);
            if c.first_key > 0 {
                assert!(
                    least > c.first_key as usize,
                    "{}: the key is an argument",
                    c.name
                );
            }
        }
        assert!(lookup("swapdb").is_none());
    }

    #[test]
    fn every_handler_has_a_row() {
        // The dispatch matches on `Handler`; a variant no row names would be dead code, and a
        // command the dispatch knows could not be reached. Listing them here makes adding a
        // variant without a row fail this test (the match below must stay exhaustive).
        let all = |h: Handler| match h {
            Handler::Ping | Handler::Echo | Handler::Hello | Handler::Auth | Handler::Quit => h,
            Handler::Acl => h,
            Handler::Reset | Handler::Select | Handler::Client | Handler::Command => h,
            Handler::Info | Handler::Config | Handler::DbSize => h,
            Handler::Multi | Handler::Exec | Handler::Discard => h,
            Handler::Watch | Handler::Unwatch => h,
            Handler::SetNx | Handler::Get | Handler::Set | Handler::GetDel | Handler::Del => h,
            Handler::DelIfEq | Handler::IncrBy { .. } | Handler::Append | Handler::GetSet => h,
            Handler::IncrByFloat | Handler::SetRange | Handler::GetRange | Handler::GetEx => h,
            Handler::MSetNx => h,
            Handler::Exists | Handler::MGet | Handler::MSet | Handler::StrLen => h,
            Handler::Expire { .. } | Handler::Ttl { .. } | Handler::Persist => h,
            Handler::SetEx { .. } | Handler::Type => h,
            Handler::Scan | Handler::Keys | Handler::RandomKey | Handler::Flush => h,
            Handler::Object | Handler::Collection(_) => h,
            Handler::HydraBucket | Handler::HydraConsistency | Handler::HydraGetAll => h,
            Handler::HydraPut | Handler::HydraDel | Handler::HydraReceipt => h,
        };
        let variants = [
            Handler::Ping,
            Handler::Echo,
            Handler::Hello,
            Handler::Auth,
            Handler::Acl,
            Handler::Quit,
            Handler::Reset,
            Handler::Select,
            Handler::Client,
            Handler::Command,
            Handler::Info,
            Handler::Config,
            Handler::DbSize,
            Handler::Multi,
            Handler::Exec,
            Handler::Discard,
            Handler::Watch,
            Handler::Unwatch,
            Handler::SetNx,
            Handler::DelIfEq,
            Handler::IncrBy {
                by_arg: false,
                negate: false,
            },
            Handler::IncrBy {
                by_arg: false,
                negate: true,
            },
            Handler::IncrBy {
                by_arg: true,
                negate: false,
            },
            Handler::IncrBy {
                by_arg: true,
                negate: true,
            },
            Handler::Append,
            Handler::GetSet,
            Handler::IncrByFloat,
            Handler::SetRange,
            Handler::GetRange,
            Handler::GetEx,
            Handler::MSetNx,
            Handler::Get,
            Handler::Set,
            Handler::GetDel,
            Handler::Del,
            Handler::Exists,
            Handler::MGet,
            Handler::MSet,
            Handler::StrLen,
            Handler::Expire { millis: false },
            Handler::Expire { millis: true },
            Handler::Ttl {
                millis: false,
                absolute: false,
            },
            Handler::Ttl {
                millis: true,
                absolute: false,
            },
            Handler::Ttl {
                millis: false,
                absolute: true,
            },
            Handler::Ttl {
                millis: true,
                absolute: true,
            },
            Handler::SetEx { millis: false },
            Handler::SetEx { millis: true },
            Handler::Type,
            Handler::Scan,
            Handler::Keys,
            Handler::RandomKey,
            Handler::Flush,
            Handler::Object,
            Handler::Persist,
            Handler::HydraBucket,
            Handler::HydraConsistency,
            Handler::HydraGetAll,
            Handler::HydraPut,
            Handler::HydraDel,
            Handler::HydraReceipt,
            Handler::Collection(CollectionCmd::HSet),
        ];
        for v in variants {
            let v = all(v);
            assert!(COMMANDS.iter().any(|c| c.handler == v), "{v:?} has no row");
        }
    }
}
