//! The compare-and-set workload, over the Redis protocol: each client keeps one RESP
//! connection with serial reads (`HYDRA.CONSISTENCY serial default`) and, on a few keys of
//! bucket `redis`, reads (`GET`, through Paxos) or writes a unique value if the key still
//! holds what it last read (`SET key new IFEQ old GET`, or `SET key new NX GET` when it read
//! nothing): the reply is the value the condition was judged on, so the write applied exactly
//! when it equals what was expected. Checked by the simulator's checker (h)
//! (`hydra_sim::check_cas`): the applied writes of a key form one chain in an order real time
//! allows, and every value returned was current at some point while its request ran.
//!
//! Through transactions (`cas-register-txn`) the write is Redis's optimistic lock: `WATCH
//! key`, `GET key`, and, if it holds what was expected, `MULTI`, `SET key new`, `EXEC`:
//! applied exactly when `EXEC` answers `[OK]`; a null array says another write came after
//! the `WATCH` (certainly not applied); a value other than the one expected, a read.
//!
//! Over HTTP (`cas-register-http`) the same operations are `GET ?r=serial` and a `PUT` with
//! `If-Match: <context of the version last read or written>` (or `If-None-Match: *` when the
//! read found nothing): with unique values the version matches exactly when the value does.
//! A 412 says only that the condition failed (not the current value): certainly not applied.

use crate::history::{F, Kind, Op};
use crate::register::{Broken, Connection, classify_error};
use hydra_core::ids::Timestamp;
use hydra_resp::Value;
use hydra_sim::workload::{CasKind, CasOp, CasResult};
use std::collections::BTreeMap;

/// The bucket of the workload in a `siblings` bucket (`--siblings`); else bucket `redis`.
pub const SIBLINGS_BUCKET: &str = "jepsen_cas";
/// Share of operations that are reads.
pub const READ_SHARE: f64 = 0.4;

pub fn key_name(i: usize) -> String {
    format!("cas{i}")
}

/// Opens a connection to `bucket` whose reads are serial.
pub fn open(addr: &str, bucket: &str, timeout: std::time::Duration) -> Result<Connection, Broken> {
    let mut c = Connection::open(addr, timeout)?;
    for command in [
        &[b"HYDRA.BUCKET".as_slice(), bucket.as_bytes()][..],
        &[b"HYDRA.CONSISTENCY", b"serial", b"default"],
    ] {
        match c.call(command)? {
            Value::Simple(s) if s == "OK" => {}
            other => {
                return Err(Broken {
                    kind: Kind::Fail,
                    error: format!("{}: {other:?}", String::from_utf8_lossy(command[0])),
                });
            }
        }
    }
    Ok(c)
}

/// A serial `GET`: the value (a number) or `None`.
pub fn read(c: &mut Connection, key: &str) -> Result<Option<u64>, Broken> {
    crate::register::get(c, key)
}

/// `SET key new IFEQ old GET` (or `NX GET`): `Ok(None)` when applied, else the value the key
/// held (`Ok(Some(current))`).
pub fn write(
    c: &mut Connection,
    key: &str,
    expected: Option<u64>,
    new: u64,
) -> Result<Option<Option<u64>>, Broken> {
    let new = new.to_string();
    let old = expected.map(|e| e.to_string());
    let mut args: Vec<&[u8]> = vec![b"SET", key.as_bytes(), new.as_bytes()];
    match &old {
        Some(o) => args.extend([b"IFEQ".as_slice(), o.as_bytes()]),
        None => args.push(b"NX"),
    }
    args.push(b"GET");
    let previous = match c.call(&args)? {
        Value::Null => None,
        Value::Bulk(b) => Some(
            String::from_utf8_lossy(&b)
                .parse::<u64>()
                .map_err(|_| Broken {
                    kind: Kind::Info,
                    error: format!("not a workload value: {:?}", String::from_utf8_lossy(&b)),
                })?,
        ),
        // `-TIMEOUT`: the coordinator could not learn the outcome; a broken connection too.
        Value::Error(e) if e.starts_with("TIMEOUT") => {
            return Err(Broken {
                kind: Kind::Info,
                error: e,
            });
        }
        // Refused, beaten until its deadline with nothing proposed, or no majority: not
        // applied.
        Value::Error(e) => {
            let kind = match classify_error(&e) {
                Kind::Info if e.starts_with("QUORUM_NOT_REACHED") => Kind::Fail,
                k => k,
            };
            return Err(Broken { kind, error: e });
        }
        other => {
            return Err(Broken {
                kind: Kind::Info,
                error: format!("unexpected reply {other:?}"),
            });
        }
    };
    Ok(if previous == expected {
        None
    } else {
        Some(previous)
    })
}

/// `WATCH key`, `GET key`, then, if it holds `expected`, `MULTI`, `SET key new`, `EXEC`:
/// what the write did.
pub fn txn_write(
    c: &mut Connection,
    key: &str,
    expected: Option<u64>,
    new: u64,
) -> Result<Written, Broken> {
    let step = |c: &mut Connection, args: &[&[u8]], want: &str| -> Result<(), Broken> {
        match c.call(args)? {
            Value::Simple(s) if s == want => Ok(()),
            Value::Error(e) => Err(Broken {
                // Nothing was queued or applied yet.
                kind: Kind::Fail,
                error: e,
            }),
            other => Err(Broken {
                kind: Kind::Fail,
                error: format!(
                    "{}: unexpected reply {other:?}",
                    String::from_utf8_lossy(args[0])
                ),
            }),
        }
    };
    step(c, &[b"WATCH", key.as_bytes()], "OK")?;
    // Read after WATCH: an EXEC that applies saw the key unchanged since, so still this.
    // Nothing is queued yet, so any failure, even a timeout, leaves the write unapplied (the
    // connection, if it broke, is dropped by the loop: `Conn::is_broken`).
    let current = crate::register::get(c, key).map_err(|b| Broken {
        kind: Kind::Fail,
        ..b
    })?;
    if current != expected {
        step(c, &[b"UNWATCH"], "OK")?;
        return Ok(Written::Current(current));
    }
    step(c, &[b"MULTI"], "OK")?;
    let new = new.to_string();
    step(c, &[b"SET", key.as_bytes(), new.as_bytes()], "QUEUED")?;
    match c.call(&[b"EXEC"])? {
        Value::Array(replies) if replies == [Value::Simple("OK".into())] => Ok(Written::Applied),
        Value::NullArray | Value::Null => Ok(Written::NotApplied),
        Value::Error(e) if e.starts_with("TIMEOUT") => Err(Broken {
            kind: Kind::Info,
            error: e,
        }),
        // Lost every run to other writes, refused, or no majority: nothing applied.
        Value::Error(e) => Err(Broken {
            kind: match classify_error(&e) {
                Kind::Info if e.starts_with("QUORUM_NOT_REACHED") => Kind::Fail,
                k => k,
            },
            error: e,
        }),
        other => Err(Broken {
            kind: Kind::Info,
            error: format!("EXEC: unexpected reply {other:?}"),
        }),
    }
}

/// Where a client sends its operations.
pub enum Front {
    /// A node's Redis-protocol address.
    Resp(String),
    /// A node's Redis-protocol address; writes through `WATCH`/`MULTI`/`EXEC`.
    Txn(String),
    /// A node's HTTP address.
    Http(String),
}

/// One client's connection, either protocol (over HTTP, with the bucket).
pub enum Conn {
    Resp(Connection),
    Txn(Connection),
    Http(hydra_client::Client, String),
}

/// What a conditional write did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    Applied,
    /// Not applied; the key held this.
    Current(Option<u64>),
    /// Not applied; what the key held is not known (HTTP's 412).
    NotApplied,
}

impl Conn {
    pub fn open(front: &Front, bucket: &str, timeout: std::time::Duration) -> Result<Conn, Broken> {
        match front {
            Front::Resp(addr) => open(addr, bucket, timeout).map(Conn::Resp),
            Front::Txn(addr) => open(addr, bucket, timeout).map(Conn::Txn),
            Front::Http(addr) => Ok(Conn::Http(
                hydra_client::Client::with_timeout(addr, timeout)
                    .with_token(crate::cluster::ADMIN_TOKEN),
                bucket.to_string(),
            )),
        }
    }

    /// Whether a request broke the connection: a late reply could answer the next request,
    /// so the connection must not be used again (an HTTP client opens one per request).
    pub fn is_broken(&self) -> bool {
        match self {
            Conn::Resp(c) | Conn::Txn(c) => c.is_broken(),
            Conn::Http(..) => false,
        }
    }

    /// A serial read: the value, and (over HTTP) the context of its version.
    pub fn read(&mut self, key: &str) -> Result<(Option<u64>, Option<String>), Broken> {
        match self {
            Conn::Resp(c) | Conn::Txn(c) => read(c, key).map(|v| (v, None)),
            Conn::Http(c, bucket) => {
                let r = c
                    .get(bucket, key, &[("r", "serial")])
                    .map_err(|e| http_broken(&e))?;
                match r.status {
                    404 => Ok((None, None)),
                    200 => Ok((Some(http_number(&r.body)?), r.context)),
                    s => Err(Broken {
                        kind: Kind::Info,
                        error: format!("unexpected status {s} to a serial read"),
                    }),
                }
            }
        }
    }

    /// Writes `new` if the key holds `expected` (over HTTP: the version `context` names):
    /// the outcome, and (over HTTP) the context of the version now known current.
    pub fn write(
        &mut self,
        key: &str,
        expected: Option<u64>,
        context: Option<&str>,
        new: u64,
    ) -> Result<(Written, Option<String>), Broken> {
        match self {
            Conn::Resp(c) => write(c, key, expected, new).map(|outcome| {
                let w = match outcome {
                    None => Written::Applied,
                    Some(current) => Written::Current(current),
                };
                (w, None)
            }),
            Conn::Txn(c) => txn_write(c, key, expected, new).map(|w| (w, None)),
            Conn::Http(c, bucket) => {
                let condition = match (expected, context) {
                    (None, _) => hydra_client::Precondition::Absent,
                    (Some(_), Some(ctx)) => hydra_client::Precondition::Matches(ctx.to_string()),
                    (Some(_), None) => {
                        return Err(Broken {
                            kind: Kind::Fail,
                            error: "no context of the version read".into(),
                        });
                    }
                };
                let body = new.to_string();
                let r = c
                    .put_if(bucket, key, body.as_bytes(), "text/plain", &condition)
                    .map_err(|e| http_broken(&e))?;
                match r.status {
                    204 => Ok((Written::Applied, r.context)),
                    _ => Ok((Written::NotApplied, None)),
                }
            }
        }
    }
}

/// How an HTTP failure counts: only what certainly proposed nothing is `fail`.
fn http_broken(e: &hydra_client::Error) -> Broken {
    let kind = match e {
        hydra_client::Error::Api { code, .. } => match code.as_str() {
            "outcome_unknown" | "store_failed" | "internal" => Kind::Info,
            _ => Kind::Fail,
        },
        _ => Kind::Info,
    };
    Broken {
        kind,
        error: e.to_string(),
    }
}

fn http_number(body: &[u8]) -> Result<u64, Broken> {
    String::from_utf8_lossy(body)
        .parse::<u64>()
        .map_err(|_| Broken {
            kind: Kind::Info,
            error: format!("not a workload value: {:?}", String::from_utf8_lossy(body)),
        })
}

/// What checker (h) found.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct CasVerdict {
    pub reads_ok: u64,
    pub applied: u64,
    pub not_applied: u64,
    pub failed: u64,
    pub unknown: u64,
    /// Keys whose history no serial order explains, with why.
    pub violations: Vec<String>,
}

/// Checks a compare-and-set history (`ops`, times in nanoseconds) and the final serial reads.
pub fn check(ops: &[Op], finals: &BTreeMap<String, Option<u64>>, final_time: u64) -> CasVerdict {
    let mut v = CasVerdict::default();
    let mut by_key: BTreeMap<&str, Vec<CasOp>> = BTreeMap::new();
    let mut open: BTreeMap<u64, &Op> = BTreeMap::new();
    for op in ops.iter().filter(|o| matches!(o.f, F::CasRead | F::Cas)) {
        if op.kind == Kind::Invoke {
            open.insert(op.process, op);
            continue;
        }
        let Some(inv) = open.remove(&op.process) else {
            continue;
        };
        let kind = match inv.f {
            F::Cas => CasKind::Write {
                expected: inv.value[0].as_u64(),
                new: inv.value[1].as_u64().unwrap_or_default(),
            },
            _ => CasKind::Read,
        };
        let result = match (op.kind, kind) {
            (Kind::Ok, CasKind::Read) => {
                v.reads_ok += 1;
                CasResult::Current(op.value.as_u64())
            }
            (Kind::Ok, CasKind::Write { .. }) if op.value.is_null() => {
                v.applied += 1;
                CasResult::Applied
            }
            (Kind::Ok, CasKind::Write { .. }) if op.value["not_applied"] == true => {
                v.not_applied += 1;
                CasResult::Fail
            }
            (Kind::Ok, CasKind::Write { .. }) => {
                v.not_applied += 1;
                CasResult::Current(op.value["current"].as_u64())
            }
            (Kind::Fail, CasKind::Read) => continue,
            (Kind::Fail, _) => {
                v.failed += 1;
                CasResult::Fail
            }
            (_, CasKind::Read) => continue,
            _ => {
                v.unknown += 1;
                CasResult::Unknown
            }
        };
        by_key.entry(&op.key).or_default().push(CasOp {
            client: op.process as usize,
            key: 0,
            kind,
            invoked: Timestamp(inv.time),
            completed: Some((Timestamp(op.time), result)),
            is_final: false,
            plain: false,
        });
    }
    // Writes still open at the end may have applied.
    for inv in open.values().filter(|o| o.f == F::Cas) {
        v.unknown += 1;
        by_key.entry(&inv.key).or_default().push(CasOp {
            client: inv.process as usize,
            key: 0,
            kind: CasKind::Write {
                expected: inv.value[0].as_u64(),
                new: inv.value[1].as_u64().unwrap_or_default(),
            },
            invoked: Timestamp(inv.time),
            completed: Some((Timestamp(u64::MAX), CasResult::Unknown)),
            is_final: false,
            plain: false,
        });
    }
    for (key, value) in finals {
        by_key.entry(key).or_default().push(CasOp {
            client: usize::MAX,
            key: 0,
            kind: CasKind::Read,
            invoked: Timestamp(final_time),
            completed: Some((Timestamp(final_time), CasResult::Current(*value))),
            is_final: true,
            plain: false,
        });
    }
    for (key, ops) in &by_key {
        if let Err(why) = hydra_sim::check_cas::check_key(&ops.iter().collect::<Vec<_>>()) {
            v.violations
                .push(format!("{key}: {why} (times in ns since the start)"));
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn op(process: u64, kind: Kind, f: F, value: serde_json::Value, ns: u64) -> Op {
        Op {
            process,
            kind,
            f,
            key: "cas0".into(),
            value,
            time: ns,
            node: 0,
            error: None,
            ttl_ms: None,
        }
    }

    /// A server that answers `AUTH` and `WATCH` at once and `GET` only after `delay`, with
    /// `value`: each command's reply, in order, on one connection.
    fn slow_get_server(delay: std::time::Duration, value: &'static str) -> String {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        std::thread::spawn(move || {
            let Ok((mut stream, _)) = listener.accept() else {
                return;
            };
            let limits = hydra_resp::Limits::default();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 1024];
            loop {
                while let Ok(Some((cmd, used))) = hydra_resp::parse_command(&buf, &limits) {
                    buf.drain(..used);
                    let reply = if cmd[0].eq_ignore_ascii_case(b"GET") {
                        std::thread::sleep(delay);
                        format!("${}\r\n{value}\r\n", value.len())
                    } else {
                        "+OK\r\n".to_string()
                    };
                    if stream.write_all(reply.as_bytes()).is_err() {
                        return;
                    }
                }
                match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
        });
        addr
    }

    #[test]
    fn a_transaction_whose_read_times_out_fails_and_breaks_its_connection() {
        let ms = std::time::Duration::from_millis;
        // The read after `WATCH` comes too late: nothing was queued, so the write certainly
        // did not apply; but its reply is still on the way, and would answer the next
        // command, so the connection must go.
        let addr = slow_get_server(ms(600), "358");
        let mut c = Conn::open(&Front::Txn(addr), "redis", ms(200)).expect("open");
        assert!(!c.is_broken());
        let e = c
            .write("cas0", Some(358), None, 1)
            .expect_err("the read timed out");
        assert_eq!(e.kind, Kind::Fail, "{}", e.error);
        assert!(
            c.is_broken(),
            "a connection with a reply in flight was kept"
        );
        // A read in time keeps the connection.
        let addr = slow_get_server(ms(0), "358");
        let mut c = Conn::open(&Front::Txn(addr), "redis", ms(2000)).expect("open");
        assert_eq!(c.read("cas0").expect("read").0, Some(358));
        assert!(!c.is_broken());
    }

    #[test]
    fn a_linearizable_history_passes_and_a_fork_fails() {
        let ops = vec![
            op(1, Kind::Invoke, F::Cas, json!([null, 1]), 0),
            op(1, Kind::Ok, F::Cas, json!(null), 5),
            op(2, Kind::Invoke, F::Cas, json!([null, 2]), 6),
            op(2, Kind::Ok, F::Cas, json!({ "current": 1 }), 9),
            op(3, Kind::Invoke, F::CasRead, json!(null), 10),
            op(3, Kind::Ok, F::CasRead, json!(1), 12),
        ];
        let finals = [("cas0".to_string(), Some(1))].into();
        let v = check(&ops, &finals, 100);
        assert!(v.violations.is_empty(), "{v:?}");
        assert_eq!((v.applied, v.not_applied, v.reads_ok), (1, 1, 1));
        // Both applied on absent: a fork.
        let mut ops = ops;
        ops[3] = op(2, Kind::Ok, F::Cas, json!(null), 9);
        let v = check(&ops, &finals, 100);
        assert_eq!(v.violations.len(), 1, "{v:?}");
    }
}
