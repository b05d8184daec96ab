//! What the front end says about itself and the connection: HELLO, AUTH, CLIENT, INFO,
//! CONFIG GET (the command table behind COMMAND, the arity checks and the dispatch is in
//! `table.rs`).

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
}
