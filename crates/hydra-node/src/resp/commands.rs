//! The key commands: GET, SET and its options, GETDEL, DEL, EXISTS, MGET, MSET, STRLEN,
//! OBJECT, TYPE, and Hydra's own (HYDRA.BUCKET, HYDRA.CONSISTENCY, HYDRA.GETALL, HYDRA.PUT,
//! HYDRA.DEL); the expiry commands are in `expiry.rs`. Each turns into core requests through
//! [`Connection::request`].
//! Read-then-write commands act on exactly the version they read: in an `lww` bucket a
//! write bound to that version (`EXPIRE`/`PERSIST` change its TTL only, `GETDEL`/`DEL` delete
//! it), so a concurrent write is never undone; in a `siblings` bucket a write with the
//! read's context, refused while the key has several siblings.

use super::collections::Found;
use super::expiry::{already_past, expiry_arg};
use super::{Connection, error_value, take_newest};
use crate::driver::wall_ms;
use hydra_core::bucket::{ConflictMode, Consistency};
use hydra_core::key::BucketName;
use hydra_core::message::{
    CasAction, CasRequest, ClientRequest, ClientResponse, ErrorCode, Expiry, VersionOp,
};
use hydra_core::paxos::Condition;
use hydra_core::version::{Context, Sibling, VersionVector};
use hydra_resp::Value;

/// What a RESP write of `value` does through compare-and-set (RESP values carry no type).
pub(super) fn write_action(value: Vec<u8>, expiry: Option<Expiry>, keep_ttl: bool) -> CasAction {
    CasAction::Write {
        value,
        content_type: "application/octet-stream".into(),
        expiry,
        keep_ttl,
    }
}

/// An integer as Redis reads one (`string2ll`): the canonical decimal form only (no sign
/// `+`, no leading zeros or spaces, no `-0`).
pub(super) fn redis_integer(bytes: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(bytes).ok()?;
    let n = text.parse::<i64>().ok()?;
    (n.to_string() == text).then_some(n)
}

/// Compare-and-set attempts of one read-modify-write command (`INCR`, `APPEND`) before it
/// gives up (each lost attempt means another client's write to the key applied).
const READ_MODIFY_WRITE_ATTEMPTS: usize = 16;

impl Connection {
    pub(super) async fn strlen(&mut self, key: &[u8]) -> Value {
        match self.key(key) {
            Err(e) => e,
            Ok(key) => match self.read(&key).await {
                Ok((_, s)) => Value::Integer(s.map_or(0, |s| s.value.len() as i64)),
                Err(e) => e,
            },
        }
    }

    pub(super) async fn get(&mut self, key: &[u8]) -> Value {
        let key = match self.key(key) {
            Ok(k) => k,
            Err(e) => return e,
        };
        match self.read(&key).await {
            Ok((_, Some(s))) => Value::Bulk(s.value),
            Ok((_, None)) => Value::Null,
            Err(e) => e,
        }
    }

    pub(super) async fn set(&mut self, args: &[Vec<u8>]) -> Value {
        let key = match self.key(&args[0]) {
            Ok(k) => k,
            Err(e) => return e,
        };
        let value = args[1].clone();
        let mut expiry: Option<Expiry> = None;
        let mut keep_ttl = false;
        let mut want_old = false;
        let mut condition: Option<Condition> = None;
        let mut i = 2;
        let syntax = || Value::error("ERR syntax error");
        while i < args.len() {
            let opt = args[i].to_ascii_lowercase();
            match opt.as_slice() {
                // A flag given twice is as once (Redis's parser); NX with XX is an error.
                b"nx" if matches!(condition, None | Some(Condition::Absent)) => {
                    condition = Some(Condition::Absent)
                }
                b"xx" if matches!(condition, None | Some(Condition::Present)) => {
                    condition = Some(Condition::Present)
                }
                b"ifeq" if condition.is_none() => {
                    let Some(old) = args.get(i + 1) else {
                        return syntax();
                    };
                    condition = Some(Condition::ValueIs(old.clone()));
                    i += 1;
                }
                b"get" => want_old = true,
                b"keepttl" if expiry.is_none() => keep_ttl = true,
                b"ex" | b"px" | b"exat" | b"pxat" if expiry.is_none() && !keep_ttl => {
                    let Some(n) = args.get(i + 1) else {
                        return syntax();
                    };
                    let Some(n) = std::str::from_utf8(n)
                        .ok()
                        .and_then(|s| s.parse::<i64>().ok())
                    else {
                        return Value::error("ERR value is not an integer or out of range");
                    };
                    if n <= 0 {
                        return Value::error("ERR invalid expire time in 'set' command");
                    }
                    expiry = Some(expiry_arg(opt.as_slice(), n as u64));
                    i += 1;
                }
                _ => return syntax(),
            }
            i += 1;
        }
        // An absolute time already past: Redis deletes the key; so do we.
        let expired = already_past(expiry);
        if let Some(condition) = condition {
            // Conditional: through compare-and-set, atomic with every other one of the key.
            let action = if expired {
                CasAction::Delete
            } else {
                write_action(value, expiry, keep_ttl)
            };
            return match self.cas(key, condition, action).await {
                Err(e) => e,
                Ok((applied, previous)) => match (want_old, applied) {
                    (true, _) => previous.map_or(Value::Null, |s| Value::Bulk(s.value)),
                    (false, true) => Value::ok(),
                    (false, false) => Value::Null,
                },
            };
        }
        // GET and KEEPTTL act on the version they read: in a `siblings` bucket a key with
        // several live values is refused (the write would replace values GET never returned).
        let old = if want_old || keep_ttl {
            match self.read_version(&key).await {
                Ok(r) => Some(r),
                Err(e) => return e,
            }
        } else {
            None
        };
        if keep_ttl
            && let Some((_, Some(s))) = &old
            && let Some(at) = s.expires_at
        {
            expiry = Some(Expiry::AtMs(at));
        }
        let context = old.as_ref().map(|(c, _)| c.clone());
        if want_old || keep_ttl {
            // On a key compare-and-set manages, the read and the write are made one
            // compare-and-set instead (atomic, as in Redis).
            let value = (!expired).then(|| value.clone());
            let request = self.put_request(key.clone(), value, context, expiry);
            match self.request_once(request).await {
                Err(e) if e.code == ErrorCode::CasManagedKey => {
                    // KEEPTTL: the TTL of the value the compare-and-set finds, not the one
                    // read before.
                    let action = if expired {
                        CasAction::Delete
                    } else if keep_ttl {
                        write_action(args[1].clone(), None, true)
                    } else {
                        write_action(args[1].clone(), expiry, false)
                    };
                    return match self.cas(key, Condition::Always, action).await {
                        Err(e) => e,
                        Ok((_, previous)) if want_old => {
                            previous.map_or(Value::Null, |s| Value::Bulk(s.value))
                        }
                        Ok(_) => Value::ok(),
                    };
                }
                Err(e) => return error_value(&e),
                Ok(_) if want_old => {
                    return match old {
                        Some((_, Some(s))) => Value::Bulk(s.value),
                        _ => Value::Null,
                    };
                }
                Ok(_) => return Value::ok(),
            }
        }
        let result = if expired {
            self.write(key, None, context, None).await
        } else {
            self.write(key, Some(value), context, expiry).await
        };
        match (result, want_old) {
            (Err(e), _) => e,
            (Ok(_), false) => Value::ok(),
            (Ok(_), true) => match old {
                Some((_, Some(s))) => Value::Bulk(s.value),
                _ => Value::Null,
            },
        }
    }

    /// `SETNX key value`: 1 if it set the key, 0 if the key held a value.
    pub(super) async fn setnx(&mut self, args: &[Vec<u8>]) -> Value {
        let key = match self.key(&args[0]) {
            Ok(k) => k,
            Err(e) => return e,
        };
        let action = write_action(args[1].clone(), None, false);
        match self.cas(key, Condition::Absent, action).await {
            Ok((applied, _)) => Value::Integer(i64::from(applied)),
            Err(e) => e,
        }
    }

    /// `DELIFEQ key value` (Valkey 9): deletes the key if it holds exactly `value`; 1 if it
    /// did, else 0.
    pub(super) async fn delifeq(&mut self, args: &[Vec<u8>]) -> Value {
        let key = match self.key(&args[0]) {
            Ok(k) => k,
            Err(e) => return e,
        };
        let condition = Condition::ValueIs(args[1].clone());
        match self.cas(key, condition, CasAction::Delete).await {
            Ok((applied, _)) => Value::Integer(i64::from(applied)),
            Err(e) => e,
        }
    }

    /// `INCR`, `DECR`, `INCRBY`, `DECRBY`: a compare-and-set loop (the value read, plus the
    /// amount, written if the key still holds what was read; the TTL kept, as in Redis).
    pub(super) async fn incr_by(&mut self, args: &[Vec<u8>], by_arg: bool, negate: bool) -> Value {
        let not_integer = || Value::error("ERR value is not an integer or out of range");
        let by = match args.get(1).filter(|_| by_arg) {
            None => 1,
            Some(a) => match redis_integer(a) {
                Some(n) => n,
                None => return not_integer(),
            },
        };
        let by = if negate {
            match by.checked_neg() {
                Some(n) => n,
                None => return Value::error("ERR decrement would overflow"),
            }
        } else {
            by
        };
        let result = self
            .read_modify_write(&args[0], |current| {
                let now = match current {
                    None => 0,
                    Some(v) => redis_integer(v).ok_or_else(not_integer)?,
                };
                now.checked_add(by)
                    .map(|n| n.to_string().into_bytes())
                    .ok_or_else(|| Value::error("ERR increment or decrement would overflow"))
            })
            .await;
        match result {
            Ok(new) => Value::Integer(
                std::str::from_utf8(&new)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_default(),
            ),
            Err(e) => e,
        }
    }

    /// `APPEND key value`: the new length (a compare-and-set loop).
    pub(super) async fn append(&mut self, args: &[Vec<u8>]) -> Value {
        let tail = args[1].clone();
        let max = self.state.value_bytes_max;
        let result = self
            .read_modify_write(&args[0], |current| {
                let mut v = current.map(<[u8]>::to_vec).unwrap_or_default();
                if v.len() + tail.len() > max {
                    return Err(Value::error(format!(
                        "VALUE_TOO_LARGE the value would be {} bytes, more than the limit of {max}",
                        v.len() + tail.len()
                    )));
                }
                v.extend_from_slice(&tail);
                Ok(v)
            })
            .await;
        match result {
            Ok(new) => Value::Integer(new.len() as i64),
            Err(e) => e,
        }
    }

    /// `GETSET key value`: sets the value (no TTL) and returns the one it replaced, in one
    /// compare-and-set.
    pub(super) async fn getset(&mut self, args: &[Vec<u8>]) -> Value {
        let key = match self.key(&args[0]) {
            Ok(k) => k,
            Err(e) => return e,
        };
        let action = write_action(args[1].clone(), None, false);
        match self.cas(key, Condition::Always, action).await {
            Ok((_, previous)) => previous.map_or(Value::Null, |s| Value::Bulk(s.value)),
            Err(e) => e,
        }
    }

    /// Reads `key` serially, computes its new value with `f` (from the current one), and
    /// writes it if the key still holds exactly what was read; on a lost race `f` runs
    /// again on the value the compare-and-set found. The TTL is kept. Returns the value
    /// written.
    pub(super) async fn read_modify_write(
        &mut self,
        key: &[u8],
        f: impl Fn(Option<&[u8]>) -> Result<Vec<u8>, Value>,
    ) -> Result<Vec<u8>, Value> {
        let key = self.key(key)?;
        let (_, mut current) = self
            .cas(key.clone(), Condition::Always, CasAction::Read)
            .await?;
        for _ in 0..READ_MODIFY_WRITE_ATTEMPTS {
            let new = f(current.as_ref().map(|s| s.value.as_slice()))?;
            let condition = match &current {
                Some(s) => Condition::ValueIs(s.value.clone()),
                None => Condition::Absent,
            };
            let action = write_action(new.clone(), None, true);
            match self.cas(key.clone(), condition, action).await? {
                (true, _) => return Ok(new),
                (false, found) => current = found,
            }
        }
        Err(Value::error(format!(
            "CAS_CONTENTION {key} changed under {READ_MODIFY_WRITE_ATTEMPTS} attempts in a row; nothing was written"
        )))
    }

    /// A compare-and-set of `key` in the connection's bucket: whether it applied, and the
    /// value its condition was judged on.
    pub(super) async fn cas(
        &mut self,
        key: hydra_core::key::ObjectKey,
        condition: Condition,
        action: CasAction,
    ) -> Result<(bool, Option<Sibling>), Value> {
        let request = ClientRequest::cas(CasRequest {
            key,
            condition,
            action,
            timeout_ms: None,
            supersedes: None,
        });
        match self.request(request).await? {
            ClientResponse::Cas {
                applied,
                mut previous,
                ..
            } => Ok((applied, previous.pop())),
            _ => Err(Value::error(
                "INTERNAL unexpected reply to a compare-and-set",
            )),
        }
    }

    async fn getdel_once(&mut self, key: &[u8]) -> Value {
        let key = match self.key(key) {
            Ok(k) => k,
            Err(e) => return e,
        };
        match self.read_version(&key).await {
            Err(e) => e,
            Ok((_, None)) => Value::Null,
            Ok((context, Some(s))) => {
                let value = s.value.clone();
                match self
                    .write_version(key, VersionOp::Delete, (context, s), None)
                    .await
                {
                    Ok(_) => Value::Bulk(value),
                    Err(e) => e,
                }
            }
        }
    }

    pub(super) async fn del(&mut self, args: &[Vec<u8>]) -> Value {
        let mut deleted = 0;
        for k in args {
            let key = match self.key(k) {
                Ok(k) => k,
                Err(e) => return e,
            };
            let mut attempts = 0;
            loop {
                let reply = match self.read_found(&key).await {
                    Err(e) => e,
                    Ok(Found::Absent(_)) => break,
                    Ok(Found::Collection(c)) => {
                        match self
                            .update_collection(key.clone(), Self::clear_update(&c))
                            .await
                        {
                            Ok(()) => {
                                deleted += 1;
                                break;
                            }
                            Err(e) => e,
                        }
                    }
                    Ok(Found::String(context, s)) => match self
                        .write_version(key.clone(), VersionOp::Delete, (context, s), None)
                        .await
                    {
                        Ok(_) => {
                            deleted += 1;
                            break;
                        }
                        Err(e) => e,
                    },
                };
                attempts += 1;
                if !replaced(&reply) || attempts == READ_MODIFY_WRITE_ATTEMPTS {
                    return reply;
                }
            }
        }
        Value::Integer(deleted)
    }

    /// `GETDEL`, `EXPIRE`/`PEXPIRE`, `PERSIST` and `GETEX` act on the version they read; on a
    /// key compare-and-set manages that write is a compare-and-set on the version, and when
    /// another write replaced it in between the command runs again on the new one (so it is
    /// atomic there, as in Redis), up to [`READ_MODIFY_WRITE_ATTEMPTS`] times.
    pub(super) async fn version_bound(&mut self, command: VersionBound, args: &[Vec<u8>]) -> Value {
        let mut reply = Value::Null;
        for _ in 0..READ_MODIFY_WRITE_ATTEMPTS {
            reply = match command {
                VersionBound::GetDel => self.getdel_once(&args[0]).await,
                VersionBound::Expire { millis, absolute } => {
                    self.expire_once(args, millis, absolute).await
                }
                VersionBound::Persist => self.persist_once(&args[0]).await,
                VersionBound::GetEx => self.getex_once(args).await,
            };
            if !replaced(&reply) {
                break;
            }
        }
        reply
    }

    /// Reads keys concurrently; each result is the key's newest sibling (or none).
    pub(super) async fn read_many(
        &mut self,
        keys: &[Vec<u8>],
    ) -> Result<Vec<Option<Sibling>>, Value> {
        let mut requests = Vec::with_capacity(keys.len());
        for k in keys {
            requests.push(self.get_request(self.key(k)?));
        }
        // The reply budget: values are fetched a few at first, then as many at a time as the
        // largest seen so far leaves room for, and the command fails once they pass it (so
        // `MGET big big big ...` cannot make the node hold gigabytes for one connection).
        let budget = self.state.reply_bytes_max;
        let mut requests = requests.into_iter().peekable();
        let (mut out, mut bytes, mut largest) = (Vec::with_capacity(keys.len()), 0usize, 0usize);
        let mut chunk = super::KEYS_FIRST_FETCH;
        while requests.peek().is_some() {
            let batch: Vec<ClientRequest> = requests.by_ref().take(chunk).collect();
            for r in self.call_all(batch).await {
                let newest = r
                    .map(|resp| take_newest(resp).1)
                    .map_err(|e| error_value(&e))?;
                let size = newest.as_ref().map_or(0, |s| s.value.len());
                bytes += size;
                largest = largest.max(size);
                out.push(newest);
            }
            if bytes > budget {
                return Err(Value::error(format!(
                    "ERR the reply would pass {budget} bytes (limits.resp_reply_bytes_max); ask for fewer keys"
                )));
            }
            chunk = ((budget - bytes) / largest.max(1)).clamp(1, super::KEYS_IN_FLIGHT_MAX);
        }
        Ok(out)
    }

    /// `EXISTS` and `TOUCH`: how many of the keys hold a value, a hash or a set.
    pub(super) async fn exists(&mut self, args: &[Vec<u8>]) -> Value {
        let mut requests = Vec::with_capacity(args.len());
        for k in args {
            match self.key(k) {
                Ok(key) => requests.push(self.get_request(key)),
                Err(e) => return e,
            }
        }
        let mut found = 0;
        for r in self.call_all(requests).await {
            match r {
                Err(e) => return error_value(&e),
                Ok(ClientResponse::Read {
                    collection: Some(c),
                    ..
                }) if !c.is_empty() => found += 1,
                Ok(resp) => found += i64::from(take_newest(resp).1.is_some()),
            }
        }
        Value::Integer(found)
    }

    pub(super) async fn mget(&mut self, args: &[Vec<u8>]) -> Value {
        match self.read_many(args).await {
            Ok(v) => Value::Array(
                v.into_iter()
                    .map(|s| s.map_or(Value::Null, |s| Value::Bulk(s.value)))
                    .collect(),
            ),
            Err(e) => e,
        }
    }

    pub(super) async fn mset(&mut self, args: &[Vec<u8>]) -> Value {
        if !args.len().is_multiple_of(2) {
            return Value::error("ERR wrong number of arguments for 'mset' command");
        }
        let mut requests = Vec::with_capacity(args.len() / 2);
        for pair in args.chunks(2) {
            match self.key(&pair[0]) {
                Ok(k) => requests.push(self.put_request(k, Some(pair[1].clone()), None, None)),
                Err(e) => return e,
            }
        }
        match self
            .call_all(requests)
            .await
            .into_iter()
            .find_map(Result::err)
        {
            Some(e) => error_value(&e),
            None => Value::ok(),
        }
    }

    /// `OBJECT ENCODING|REFCOUNT|IDLETIME|FREQ key`, `OBJECT HELP`: what Redis would say of
    /// the value. `ENCODING` and `REFCOUNT` follow Redis's rules for a string of these bytes
    /// (`int`, `embstr` up to 44 bytes, `raw`; small integers are shared); `IDLETIME` is
    /// the seconds since the value was written (Hydra does not track reads); `FREQ` needs an
    /// LFU policy, which Hydra has not.
    pub(super) async fn object(&mut self, args: &[Vec<u8>]) -> Value {
        let sub = args[0].to_ascii_lowercase();
        if sub == b"help" && args.len() == 1 {
            return Value::Array(
                [
                    "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                    "ENCODING <key>",
                    "    Return the kind of internal representation used in order to store the value",
                    "    associated with a <key>.",
                    "FREQ <key>",
                    "    Return the access frequency index of the <key>. The returned integer is",
                    "    proportional to the logarithm of the recent access frequency of the key.",
                    "IDLETIME <key>",
                    "    Return the idle time of the <key>, that is the approximated number of",
                    "    seconds elapsed since the last access to the key.",
                    "REFCOUNT <key>",
                    "    Return the number of references of the value associated with the specified",
                    "    <key>.",
                    "HELP",
                    "    Prints this help.",
                ]
                .into_iter()
                .map(|l| Value::Simple(l.into()))
                .collect(),
            );
        }
        let known = [&b"encoding"[..], b"refcount", b"idletime", b"freq"];
        if !known.contains(&sub.as_slice()) && sub != b"help" {
            return Value::error(format!(
                "ERR unknown subcommand '{}'. Try OBJECT HELP.",
                String::from_utf8_lossy(&args[0])
            ));
        }
        if args.len() != 2 {
            return Value::error(format!(
                "ERR wrong number of arguments for 'object|{}' command",
                String::from_utf8_lossy(&sub)
            ));
        }
        let key = match self.key(&args[1]) {
            Ok(k) => k,
            Err(e) => return e,
        };
        let value = match self.read_found(&key).await {
            Err(e) => return e,
            Ok(Found::Absent(_)) => return Value::Null,
            Ok(Found::Collection(c)) => {
                return match sub.as_slice() {
                    b"encoding" => Value::bulk(collection_encoding(&c)),
                    b"refcount" => Value::Integer(1),
                    b"idletime" => Value::Integer(
                        (wall_ms().saturating_sub(c.stamp().physical_ms()) / 1000) as i64,
                    ),
                    _ => Value::error(
                        "ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.",
                    ),
                };
            }
            Ok(Found::String(_, s)) => s,
        };
        let integer = (value.value.len() <= 20)
            .then(|| redis_integer(&value.value))
            .flatten();
        match sub.as_slice() {
            b"encoding" => Value::bulk(match integer {
                Some(_) => "int",
                None if value.value.len() <= 44 => "embstr",
                None => "raw",
            }),
            b"refcount" => Value::Integer(match integer {
                Some(n) if (0..10_000).contains(&n) => i64::from(i32::MAX),
                _ => 1,
            }),
            b"idletime" => Value::Integer(
                (wall_ms().saturating_sub(value.timestamp.physical_ms()) / 1000) as i64,
            ),
            _ => Value::error(
                "ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.",
            ),
        }
    }

    /// `TYPE key`: `string`, `hash`, `set`, or `none`.
    pub(super) async fn type_of(&mut self, key: &[u8]) -> Value {
        let key = match self.key(key) {
            Ok(k) => k,
            Err(e) => return e,
        };
        match self.read_found(&key).await {
            Err(e) => e,
            Ok(Found::Absent(_)) => Value::Simple("none".into()),
            Ok(Found::String(..)) => Value::Simple("string".into()),
            Ok(Found::Collection(c)) => Value::Simple(c.kind.name().into()),
        }
    }

    pub(super) async fn select_bucket(&mut self, args: &[Vec<u8>]) -> Value {
        match args.first() {
            None => Value::bulk(self.bucket.as_str()),
            Some(name) => match BucketName::new(&String::from_utf8_lossy(name)) {
                Ok(b) if crate::http_auth::reserved(b.as_str()) => Value::error(
                    "INVALID_BUCKET buckets whose names start with '_' are reserved for the cluster",
                ),
                Ok(b)
                    if !self
                        .principal
                        .as_ref()
                        .is_some_and(|p| p.may_read(b.as_str())) =>
                {
                    Value::error(
                        "NOPERM this user has no permissions to access one of the keys used as arguments",
                    )
                }
                Ok(b) => {
                    // Its conflict mode decides whether writes carry the connection's
                    // newest seen version (see `Connection::seen`).
                    self.lww = match self.state.core.status().await {
                        Some((_, buckets)) => match buckets.get(&b) {
                            Some(p) => p.conflicts == ConflictMode::Lww,
                            None => {
                                return Value::error(format!(
                                    "UNKNOWN_BUCKET bucket {:?} does not exist; create it with `hydra bucket create {}`",
                                    b.as_str(),
                                    b.as_str()
                                ));
                            }
                        },
                        None => return Value::error("OVERLOADED the node did not answer"),
                    };
                    self.bucket = b;
                    self.seen = None;
                    Value::ok()
                }
                Err(e) => Value::error(format!("INVALID_BUCKET {e}")),
            },
        }
    }

    pub(super) fn consistency(&mut self, args: &[Vec<u8>]) -> Value {
        let shown = |c: Option<Consistency>| c.map_or("default".to_string(), |c| c.to_string());
        match args.len() {
            0 => Value::Map(vec![
                (
                    Value::bulk("r"),
                    Value::bulk(if self.serial_reads {
                        "serial".to_string()
                    } else {
                        shown(self.r)
                    }),
                ),
                (Value::bulk("w"), Value::bulk(shown(self.w))),
            ]),
            2 => {
                let parse = |v: &[u8], what: &str| -> Result<Option<Consistency>, Value> {
                    let text = String::from_utf8_lossy(v).to_ascii_lowercase();
                    if text == "default" {
                        return Ok(None);
                    }
                    text.parse()
                        .map(Some)
                        .map_err(|e: hydra_core::bucket::ConsistencyError| {
                            Value::error(format!("INVALID_CONSISTENCY {what}: {e}"))
                        })
                };
                // `serial` reads go through Paxos (`lww` buckets): linearizable with every
                // conditional write.
                let serial = args[0].eq_ignore_ascii_case(b"serial");
                let r = if serial {
                    Ok(None)
                } else {
                    parse(&args[0], "r")
                };
                match (r, parse(&args[1], "w")) {
                    (Ok(r), Ok(w)) => {
                        self.r = r;
                        self.w = w;
                        self.serial_reads = serial;
                        Value::ok()
                    }
                    (Err(e), _) | (_, Err(e)) => e,
                }
            }
            _ => Value::error(
                "ERR wrong number of arguments for 'hydra.consistency' command (give none, or R and W)",
            ),
        }
    }

    pub(super) async fn getall(&mut self, key: &[u8]) -> Value {
        let key = match self.key(key) {
            Ok(k) => k,
            Err(e) => return e,
        };
        match self.request(self.get_request(key)).await {
            Err(e) => e,
            Ok(
                ClientResponse::Read {
                    context, siblings, ..
                }
                | ClientResponse::Cas {
                    context, siblings, ..
                },
            ) => Value::Map(vec![
                (
                    Value::bulk("context"),
                    Value::bulk(Context(context).encode()),
                ),
                (
                    Value::bulk("siblings"),
                    Value::Array(
                        siblings
                            .iter()
                            .map(|s| {
                                Value::Map(vec![
                                    (Value::bulk("value"), Value::Bulk(s.value.clone())),
                                    (
                                        Value::bulk("content_type"),
                                        Value::bulk(s.content_type.as_str()),
                                    ),
                                    (
                                        Value::bulk("last_modified"),
                                        Value::Integer(s.timestamp.physical_ms() as i64),
                                    ),
                                ])
                            })
                            .collect(),
                    ),
                ),
            ]),
            Ok(_) => Value::error("ERR unexpected reply to a read"),
        }
    }

    pub(super) fn context_arg(token: &[u8]) -> Result<Option<VersionVector>, Value> {
        if token.is_empty() {
            return Ok(None);
        }
        let text = std::str::from_utf8(token)
            .map_err(|_| Value::error("INVALID_CONTEXT the context is not ASCII"))?;
        Context::decode(text)
            .map(|c| Some(c.0))
            .map_err(|e| Value::error(format!("INVALID_CONTEXT {e}")))
    }

    /// `HYDRA.PUT key value context [EX s|PX ms]`: a write that supersedes what the context
    /// saw (an empty context is a blind write); replies with the new context.
    pub(super) async fn context_put(&mut self, args: &[Vec<u8>]) -> Value {
        let key = match self.key(&args[0]) {
            Ok(k) => k,
            Err(e) => return e,
        };
        let context = match Self::context_arg(&args[2]) {
            Ok(c) => c,
            Err(e) => return e,
        };
        let expiry = match args.len() {
            3 => None,
            5 => {
                let unit = args[3].to_ascii_lowercase();
                let n = std::str::from_utf8(&args[4])
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
                    .filter(|n| *n > 0);
                match (unit.as_slice(), n) {
                    (b"ex" | b"px", Some(n)) => Some(expiry_arg(&unit, n)),
                    _ => {
                        return Value::error(
                            "ERR syntax error: expected EX seconds or PX milliseconds, positive",
                        );
                    }
                }
            }
            _ => {
                return Value::error(
                    "ERR syntax error: HYDRA.PUT key value context [EX seconds|PX milliseconds]",
                );
            }
        };
        match self
            .write(key, Some(args[1].clone()), context, expiry)
            .await
        {
            Ok(c) => Value::bulk(Context(c).encode()),
            Err(e) => e,
        }
    }

    /// `HYDRA.DEL key context`: a delete of what the context saw; replies with the new context.
    pub(super) async fn context_del(&mut self, args: &[Vec<u8>]) -> Value {
        let key = match self.key(&args[0]) {
            Ok(k) => k,
            Err(e) => return e,
        };
        let context = match Self::context_arg(&args[1]) {
            Ok(c) => c,
            Err(e) => return e,
        };
        match self.write(key, None, context, None).await {
            Ok(c) => Value::bulk(Context(c).encode()),
            Err(e) => e,
        }
    }
}

/// The commands that act on exactly the version they read (see `version_bound`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum VersionBound {
    GetDel,
    Expire { millis: bool, absolute: bool },
    Persist,
    GetEx,
}

/// Whether a reply says the version a command read was replaced before its write (a
/// version-bound write made through compare-and-set that did not apply): run it again.
fn replaced(reply: &Value) -> bool {
    matches!(reply, Value::Error(e) if e.starts_with("PRECONDITION_FAILED"))
}

/// Redis 7.0's encoding of a hash or set of the same contents with its default limits: a
/// hash of at most 128 fields, each field and value at most 64 bytes, is a `listpack`; a set
/// of at most 512 integers an `intset`; anything larger a `hashtable`. (Redis never converts
/// back once a key grew past them; Hydra reports what the contents are now.)
fn collection_encoding(c: &hydra_core::collection::Collection) -> &'static str {
    let elements = c.elements(wall_ms());
    match c.kind {
        hydra_core::collection::CollectionKind::Hash => {
            let small = elements.len() <= 128
                && elements.iter().all(|(f, v)| f.len() <= 64 && v.len() <= 64);
            if small { "listpack" } else { "hashtable" }
        }
        hydra_core::collection::CollectionKind::Set => {
            let integers = elements.len() <= 512
                && elements
                    .iter()
                    .all(|(m, _)| m.len() <= 20 && redis_integer(m).is_some());
            if integers { "intset" } else { "hashtable" }
        }
    }
}
