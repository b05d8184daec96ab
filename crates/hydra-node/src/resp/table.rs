//! The command table: one row per command (name, arity, flags, key positions and the
//! handler that runs it), so `COMMAND`'s reply, the arity check and the dispatch in
//! [`Connection::execute`](super::Connection) cannot disagree.

use super::collections::CollectionCmd;
use hydra_resp::Value;

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
    /// EXPIRE, PEXPIRE (`millis`); EXPIREAT, PEXPIREAT (`absolute`: a Unix time).
    Expire {
        millis: bool,
        absolute: bool,
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
    spec(
        "expire",
        -3,
        W,
        KEY1,
        Handler::Expire {
            millis: false,
            absolute: false,
        },
    ),
    spec(
        "pexpire",
        -3,
        W,
        KEY1,
        Handler::Expire {
            millis: true,
            absolute: false,
        },
    ),
    spec(
        "expireat",
        -3,
        W,
        KEY1,
        Handler::Expire {
            millis: false,
            absolute: true,
        },
    ),
    spec(
        "pexpireat",
        -3,
        W,
        KEY1,
        Handler::Expire {
            millis: true,
            absolute: true,
        },
    ),
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
            Handler::Expire {
                millis: false,
                absolute: false,
            },
            Handler::Expire {
                millis: true,
                absolute: false,
            },
            Handler::Expire {
                millis: false,
                absolute: true,
            },
            Handler::Expire {
                millis: true,
                absolute: true,
            },
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
