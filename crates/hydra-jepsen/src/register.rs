//! The register workload, over the Redis protocol: each client keeps one RESP connection to
//! its node and sends `SET key value` (unique values) and `GET key` to keys of bucket
//! `redis` (`lww`). Half the keys carry TTLs: a short one (`PX 500`, so values expire during
//! the run) or a long one (`PX 600000`, a refresh that must outlive any earlier expiry).
//! Every other TTL goes as the Unix time it ends at (`PXAT`, `PEXPIREAT`) instead.
//! Every key also takes `GETDEL`s, and keys with TTLs take `PEXPIRE`s (short or long) and
//! `PERSIST`s: commands that act on the version they read, racing the other clients' `SET`s. A
//! connection that fails is replaced, and so is its process id (as Jepsen does after an
//! indeterminate operation): what one connection saw is carried by that connection only.

use crate::history::Kind;
use hydra_resp::{Limits, Value, encode_command, parse_value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// The bucket RESP commands act on.
pub const BUCKET: &str = "redis";
/// The short TTL, in milliseconds, and the long one.
pub const SHORT_TTL_MS: u64 = 500;
pub const LONG_TTL_MS: u64 = 600_000;
/// Share of operations on a key without TTLs that are `SET`s (the rest are `GET`s).
pub const SET_SHARE: f64 = 0.65;
/// Share of operations on a key with TTLs that are `SET`s: few, so short TTLs run out
/// between writes and reads see values expire, and refreshes outlive them.
pub const TTL_SET_SHARE: f64 = 0.1;
/// Share of `SET`s on a key with TTLs that carry the short one.
pub const SHORT_SHARE: f64 = 0.4;
/// Share of operations on any key that are `GETDEL`s.
pub const GETDEL_SHARE: f64 = 0.04;
/// Share of operations on a key with TTLs that are `PEXPIRE`s or `PERSIST`s.
pub const TOUCH_SHARE: f64 = 0.1;
/// Share of those that are `PERSIST`s (the rest are `PEXPIRE`s, short or long as `SET`s).
pub const PERSIST_SHARE: f64 = 0.3;
/// Longest reply the workload accepts (its values are decimal numbers).
const REPLY_BYTES_MAX: usize = 64 * 1024;

pub fn key_name(i: usize) -> String {
    format!("reg{i}")
}

/// Whether writes to key `i` carry TTLs (odd keys).
pub fn has_ttl(i: usize) -> bool {
    i % 2 == 1
}

/// How the error of a write its coordinator answered begins. An `info` write that got a
/// quorum failure was stamped by its coordinator before that answer, and a replica that
/// holds it holds that stamp: it cannot be ordered after writes that began later than the
/// answer plus the skew bound. Any other `info` (a timeout, a broken connection, a forward
/// that got no answer from the coordinator) may still be coordinated later (a paused node
/// resumes), so it has no such bound.
pub const REPLIED: &str = "coordinator answered: ";

/// One RESP connection with a deadline on every request.
pub struct Connection {
    stream: TcpStream,
    buf: Vec<u8>,
    /// A request got no whole reply (a timeout, an I/O error, a bad reply): a reply may
    /// still be on its way, and would answer the next request, so the connection is done
    /// whatever the operation counts as.
    broken: bool,
}

/// Why a request did not get a reply: `Fail` when nothing can have been written (the
/// connection was refused), else `Info`.
#[derive(Debug)]
pub struct Broken {
    pub kind: Kind,
    pub error: String,
}

impl Connection {
    pub fn open(addr: &str, timeout: Duration) -> Result<Connection, Broken> {
        let to = |e: String| Broken {
            kind: Kind::Fail,
            error: e,
        };
        let addr: SocketAddr = addr.parse().map_err(|e| to(format!("{addr}: {e}")))?;
        let stream = TcpStream::connect_timeout(&addr, timeout)
            .map_err(|e| to(format!("connect {addr}: {e}")))?;
        stream
            .set_read_timeout(Some(timeout))
            .and_then(|_| stream.set_write_timeout(Some(timeout)))
            .and_then(|_| stream.set_nodelay(true))
            .map_err(|e| to(e.to_string()))?;
        let mut c = Connection {
            stream,
            buf: Vec::new(),
            broken: false,
        };
        match c.call(&[b"AUTH", crate::cluster::ADMIN_TOKEN.as_bytes()]) {
            Ok(Value::Simple(ok)) if ok == "OK" => Ok(c),
            Ok(other) => Err(to(format!("AUTH answered {other:?}"))),
            Err(e) => Err(to(format!("AUTH: {}", e.error))),
        }
    }

    /// Whether a request broke the connection (see `broken`): it must not be used again.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Sends one command and reads its reply. Any I/O error breaks the connection (`Info`:
    /// the command may have run).
    pub fn call(&mut self, args: &[&[u8]]) -> Result<Value, Broken> {
        let reply = self.call_once(args);
        if reply.is_err() {
            self.broken = true;
        }
        reply
    }

    fn call_once(&mut self, args: &[&[u8]]) -> Result<Value, Broken> {
        let info = |e: String| Broken {
            kind: Kind::Info,
            error: e,
        };
        let mut out = Vec::new();
        encode_command(args, &mut out);
        self.stream
            .write_all(&out)
            .map_err(|e| info(format!("send: {e}")))?;
        let limits = Limits::default();
        let mut chunk = [0u8; 4096];
        loop {
            match parse_value(&self.buf, &limits) {
                Ok(Some((value, used))) => {
                    self.buf.drain(..used);
                    return Ok(value);
                }
                Ok(None) => {}
                Err(e) => return Err(info(format!("bad reply: {}", e.0))),
            }
            if self.buf.len() > REPLY_BYTES_MAX {
                return Err(info("reply too long".into()));
            }
            let n = self
                .stream
                .read(&mut chunk)
                .map_err(|e| info(format!("receive: {e}")))?;
            if n == 0 {
                return Err(info("connection closed".into()));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// How an error reply counts: `fail` when the server refused before writing anything
/// (overloaded, clock not trusted, a quorum failure where no replica acked and every
/// replica was believed down up front), `info` otherwise.
pub fn classify_error(text: &str) -> Kind {
    let code = text.split_whitespace().next().unwrap_or("");
    match code {
        "OVERLOADED" | "CLOCK_SKEW" | "ERR" | "WRONGTYPE" => Kind::Fail,
        _ if code.starts_with("INVALID_") => Kind::Fail,
        "QUORUM_NOT_REACHED" => {
            // "... needed N of M replicas, A answered; nX: reason, ... (needed N, acked 0)"
            let acked_zero = text.ends_with("acked 0)");
            let reasons = text
                .split_once("; ")
                .map(|(_, r)| r.rsplit_once(" (needed").map_or(r, |(r, _)| r))
                .unwrap_or("");
            let all_down = !reasons.is_empty()
                && reasons.split(", ").all(|r| {
                    r.split_once(": ")
                        .is_some_and(|(_, why)| why.starts_with("believed down"))
                });
            if acked_zero && all_down {
                Kind::Fail
            } else {
                Kind::Info
            }
        }
        _ => Kind::Info,
    }
}

/// A workload client's RESP connection to its node, as its loop uses it: opened on first
/// use and kept while operations complete; dropped after an indeterminate one, when the
/// client goes on under a new process id (what it saw went with the old connection).
pub(crate) struct Session<'a> {
    client: u64,
    addr: &'a str,
    generation: u64,
    conn: Option<Connection>,
}

impl<'a> Session<'a> {
    pub(crate) fn new(client: u64, addr: &'a str) -> Session<'a> {
        Session {
            client,
            addr,
            generation: 0,
            conn: None,
        }
    }

    /// The process id of the operations on the current connection.
    pub(crate) fn process(&self) -> u64 {
        (self.client << 20) | self.generation
    }

    /// Runs `call` on the connection (opened if there is none); an indeterminate failure
    /// drops it and moves to the next process id, and a broken connection is dropped
    /// whatever the operation counts as.
    pub(crate) fn call<T>(
        &mut self,
        call: impl FnOnce(&mut Connection) -> Result<T, Broken>,
    ) -> Result<T, Broken> {
        let conn = match self.conn.take() {
            Some(c) => Ok(c),
            None => Connection::open(self.addr, Duration::from_secs(3)),
        };
        let result = conn.and_then(|mut c| {
            let r = call(&mut c);
            if !c.is_broken() {
                self.conn = Some(c);
            }
            r
        });
        if result.as_ref().is_err_and(|e| e.kind == Kind::Info) {
            self.conn = None;
            self.generation += 1;
        }
        result
    }
}

/// The Unix time in milliseconds on this machine's clock.
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A TTL as the arguments that give it: `ttl` milliseconds (`relative`), or the Unix time
/// `ttl` milliseconds from now on this machine's clock (`absolute`: `PXAT`, `PEXPIREAT`).
fn expiry_arg(ttl_ms: u64, absolute: bool) -> String {
    if absolute {
        (unix_ms() + ttl_ms).to_string()
    } else {
        ttl_ms.to_string()
    }
}

/// `SET key value [PX ttl | PXAT now+ttl]` (`absolute`): `Ok` on `+OK`.
pub fn set(
    conn: &mut Connection,
    key: &str,
    value: u64,
    ttl_ms: Option<u64>,
    absolute: bool,
) -> Result<(), Broken> {
    let value = value.to_string();
    let ttl = ttl_ms.map(|t| expiry_arg(t, absolute));
    let mut args: Vec<&[u8]> = vec![b"SET", key.as_bytes(), value.as_bytes()];
    if let Some(t) = &ttl {
        let unit: &[u8] = if absolute { b"PXAT" } else { b"PX" };
        args.extend([unit, t.as_bytes()]);
    }
    match conn.call(&args)? {
        Value::Simple(s) if s == "OK" => Ok(()),
        Value::Error(e) if e.starts_with("QUORUM_NOT_REACHED") => Err(Broken {
            kind: classify_error(&e),
            error: format!("{REPLIED}{e}"),
        }),
        Value::Error(e) => Err(Broken {
            kind: classify_error(&e),
            error: e,
        }),
        other => Err(Broken {
            kind: Kind::Info,
            error: format!("unexpected reply {other:?}"),
        }),
    }
}

/// `GET key`: the value (a number), or `None` for nil.
pub fn get(conn: &mut Connection, key: &str) -> Result<Option<u64>, Broken> {
    bulk_number(conn.call(&[b"GET", key.as_bytes()])?)
}

/// `GETDEL key`: the value it deleted, or `None` for nil. An error may come after the read
/// (the delete failed), so it is `info` unless the server refused up front.
pub fn getdel(conn: &mut Connection, key: &str) -> Result<Option<u64>, Broken> {
    match conn.call(&[b"GETDEL", key.as_bytes()])? {
        Value::Error(e) => Err(Broken {
            kind: classify_error(&e),
            error: e,
        }),
        other => bulk_number(other).map_err(|b| Broken {
            kind: Kind::Info,
            ..b
        }),
    }
}

/// `PEXPIRE key ttl` or `PEXPIREAT key now+ttl` (`Some(ttl)`, `absolute`) or `PERSIST key`
/// (`None`): the integer reply.
pub fn touch(
    conn: &mut Connection,
    key: &str,
    ttl_ms: Option<u64>,
    absolute: bool,
) -> Result<i64, Broken> {
    let ttl = ttl_ms.map(|t| expiry_arg(t, absolute));
    let command: &[u8] = if absolute { b"PEXPIREAT" } else { b"PEXPIRE" };
    let reply = match &ttl {
        Some(t) => conn.call(&[command, key.as_bytes(), t.as_bytes()])?,
        None => conn.call(&[b"PERSIST", key.as_bytes()])?,
    };
    match reply {
        Value::Integer(n) => Ok(n),
        Value::Error(e) => Err(Broken {
            kind: classify_error(&e),
            error: e,
        }),
        other => Err(Broken {
            kind: Kind::Info,
            error: format!("unexpected reply {other:?}"),
        }),
    }
}

/// A bulk reply holding a workload value, or nil.
fn bulk_number(reply: Value) -> Result<Option<u64>, Broken> {
    match reply {
        Value::Null => Ok(None),
        Value::Bulk(b) => String::from_utf8_lossy(&b)
            .parse()
            .map(Some)
            .map_err(|_| Broken {
                kind: Kind::Fail,
                error: format!("not a workload value: {:?}", String::from_utf8_lossy(&b)),
            }),
        Value::Error(e) => Err(Broken {
            kind: Kind::Fail,
            error: e,
        }),
        other => Err(Broken {
            kind: Kind::Fail,
            error: format!("unexpected reply {other:?}"),
        }),
    }
}

/// `SADD key element` (the `redis-set` workload): `Ok` on an integer reply.
pub fn sadd(conn: &mut Connection, key: &str, element: u64) -> Result<(), Broken> {
    match conn.call(&[b"SADD", key.as_bytes(), element.to_string().as_bytes()])? {
        Value::Integer(_) => Ok(()),
        Value::Error(e) => Err(Broken {
            kind: classify_error(&e),
            error: e,
        }),
        other => Err(Broken {
            kind: Kind::Info,
            error: format!("unexpected reply {other:?}"),
        }),
    }
}

/// `SMEMBERS key`: the members, each a workload number.
pub fn smembers(
    conn: &mut Connection,
    key: &str,
) -> Result<std::collections::BTreeSet<u64>, Broken> {
    let bad = |e: String| Broken {
        kind: Kind::Fail,
        error: e,
    };
    match conn.call(&[b"SMEMBERS", key.as_bytes()])? {
        Value::Array(items) | Value::Set(items) => items
            .into_iter()
            .map(|v| match v {
                Value::Bulk(b) => String::from_utf8_lossy(&b)
                    .parse::<u64>()
                    .map_err(|_| bad(format!("member {b:?} is no workload number"))),
                other => Err(bad(format!("member {other:?}"))),
            })
            .collect(),
        Value::Error(e) => Err(bad(e)),
        other => Err(bad(format!("unexpected reply {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_refusals_before_any_write_count_as_failed() {
        assert_eq!(
            classify_error("CLOCK_SKEW node 2 refuses writes"),
            Kind::Fail
        );
        assert_eq!(classify_error("OVERLOADED too many requests"), Kind::Fail);
        assert_eq!(
            classify_error(
                "QUORUM_NOT_REACHED write quorum not reached: needed 2 of 3 replicas, 0 answered; n2: believed down, n3: believed down (needed 2, acked 0)"
            ),
            Kind::Fail
        );
        assert_eq!(
            classify_error(
                "QUORUM_NOT_REACHED write quorum not reached: needed 2 of 3 replicas, 1 answered; n3: timed out after 1000 ms (needed 2, acked 1)"
            ),
            Kind::Info
        );
        assert_eq!(
            classify_error(
                "QUORUM_NOT_REACHED write quorum not reached: needed 2 of 3 replicas, 0 answered; n2: believed down, n3: timed out after 1000 ms (needed 2, acked 0)"
            ),
            Kind::Info
        );
        assert_eq!(classify_error("TIMEOUT gave up"), Kind::Info);
    }
}
