//! The string-editing commands: `INCRBYFLOAT` (Redis's `long double` arithmetic, see
//! `float.rs`), `SETRANGE`, `GETRANGE`/`SUBSTR`, `GETEX` and `MSETNX`. The read-modify-write
//! ones are compare-and-set loops (`Connection::read_modify_write` in `commands.rs`).

use super::Connection;
use super::commands::{redis_integer, write_action};
use super::expiry::{already_past, expiry_arg};
use super::float::Ext;
use hydra_core::message::{Expiry, VersionOp};
use hydra_core::paxos::Condition;
use hydra_resp::Value;

/// An integer argument as Redis reads one, or its error reply.
fn integer_arg(arg: &[u8]) -> Result<i64, Value> {
    redis_integer(arg).ok_or_else(|| Value::error("ERR value is not an integer or out of range"))
}

impl Connection {
    /// `INCRBYFLOAT key increment`: a compare-and-set loop in Redis's `long double`
    /// arithmetic (see `float.rs`); the TTL is kept. Replies with the new value.
    pub(super) async fn incr_by_float(&mut self, args: &[Vec<u8>]) -> Value {
        let invalid = || Value::error("ERR value is not a valid float");
        let Some(by) = Ext::parse(&args[1]) else {
            return invalid();
        };
        let result = self
            .read_modify_write(&args[0], |current| {
                let now = match current {
                    None => Ext::parse(b"0").expect("zero parses"),
                    Some(v) => Ext::parse(v).ok_or_else(invalid)?,
                };
                match now.add(&by) {
                    Some(sum) if sum.is_finite() => Ok(sum.to_redis_string().into_bytes()),
                    _ => Err(Value::error("ERR increment would produce NaN or Infinity")),
                }
            })
            .await;
        match result {
            Ok(new) => Value::Bulk(new),
            Err(e) => e,
        }
    }

    /// `SETRANGE key offset value`: overwrites from `offset` (padding with zero bytes), as a
    /// compare-and-set loop; replies with the new length. An empty `value` writes nothing.
    pub(super) async fn setrange(&mut self, args: &[Vec<u8>]) -> Value {
        let offset = match integer_arg(&args[1]) {
            Ok(n) if n >= 0 => n as usize,
            Ok(_) => return Value::error("ERR offset is out of range"),
            Err(e) => return e,
        };
        let patch = args[2].clone();
        let max = self.state.value_bytes_max;
        if !patch.is_empty() && offset.saturating_add(patch.len()) > max {
            return Value::error(format!(
                "VALUE_TOO_LARGE the value would be {} bytes, more than the limit of {max}",
                offset.saturating_add(patch.len())
            ));
        }
        if patch.is_empty() {
            return self.strlen(&args[0]).await;
        }
        let result = self
            .read_modify_write(&args[0], |current| {
                let mut v = current.map(<[u8]>::to_vec).unwrap_or_default();
                if v.len() < offset + patch.len() {
                    v.resize(offset + patch.len(), 0);
                }
                v[offset..offset + patch.len()].copy_from_slice(&patch);
                Ok(v)
            })
            .await;
        match result {
            Ok(new) => Value::Integer(new.len() as i64),
            Err(e) => e,
        }
    }

    /// `GETRANGE key start end` (and its old name `SUBSTR`): the bytes between two
    /// inclusive offsets, negative ones counted from the end, as Redis clamps them.
    pub(super) async fn getrange(&mut self, args: &[Vec<u8>]) -> Value {
        let (start, end) = match (integer_arg(&args[1]), integer_arg(&args[2])) {
            (Ok(s), Ok(e)) => (s, e),
            (Err(e), _) | (_, Err(e)) => return e,
        };
        let key = match self.key(&args[0]) {
            Ok(k) => k,
            Err(e) => return e,
        };
        let value = match self.read(&key).await {
            Ok((_, s)) => s.map(|s| s.value).unwrap_or_default(),
            Err(e) => return e,
        };
        Value::Bulk(byte_range(&value, start, end).to_vec())
    }

    /// `GETEX key [EX s | PX ms | EXAT t | PXAT t | PERSIST]`: the value, and a new TTL for
    /// exactly the version read (as `EXPIRE` and `PERSIST` do); a time already past deletes
    /// it.
    pub(super) async fn getex_once(&mut self, args: &[Vec<u8>]) -> Value {
        let key = match self.key(&args[0]) {
            Ok(k) => k,
            Err(e) => return e,
        };
        // None: leave the TTL; Some(None): persist; Some(Some(e)): expire as `e` says.
        let change: Option<Option<Expiry>> = match &args[1..] {
            [] => None,
            [flag] if flag.eq_ignore_ascii_case(b"persist") => Some(None),
            [flag, n] => {
                let flag = flag.to_ascii_lowercase();
                if !matches!(flag.as_slice(), b"ex" | b"px" | b"exat" | b"pxat") {
                    return Value::error("ERR syntax error");
                }
                let n = match integer_arg(n) {
                    Ok(n) => n,
                    Err(e) => return e,
                };
                if n <= 0 {
                    return Value::error("ERR invalid expire time in 'getex' command");
                }
                Some(Some(expiry_arg(&flag, n as u64)))
            }
            _ => return Value::error("ERR syntax error"),
        };
        let Some(change) = change else {
            return self.get(&args[0]).await;
        };
        let (context, sibling) = match self.read_version(&key).await {
            Ok((_, None)) => return Value::Null,
            Ok((c, Some(s))) => (c, s),
            Err(e) => return e,
        };
        let value = sibling.value.clone();
        let result = match change {
            // An absolute time already past deletes the key, as in Redis.
            Some(e) if already_past(Some(e)) => {
                self.write_version(key, VersionOp::Delete, (context, sibling), None)
                    .await
            }
            Some(e) => {
                self.write_version(key, VersionOp::Touch, (context, sibling), Some(e))
                    .await
            }
            None if sibling.expires_at.is_none() => return Value::Bulk(value),
            None => {
                self.write_version(key, VersionOp::Touch, (context, sibling), None)
                    .await
            }
        };
        match result {
            Ok(_) => Value::Bulk(value),
            Err(e) => e,
        }
    }

    /// `MSETNX key value [key value ...]`: 1 if none of the keys held a value and all were
    /// set, else 0. Each key is set if absent through compare-and-set; across keys it is
    /// not atomic (Hydra has no multi-key transactions): a key another client sets between
    /// the check and its own `SET NX` makes the reply 0 with the other keys set.
    pub(super) async fn msetnx(&mut self, args: &[Vec<u8>]) -> Value {
        if !args.len().is_multiple_of(2) {
            return Value::error("ERR wrong number of arguments for 'msetnx' command");
        }
        // A key given twice takes its last value, as in Redis.
        let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(args.len() / 2);
        for pair in args.chunks(2) {
            pairs.retain(|(k, _)| *k != pair[0]);
            pairs.push((pair[0].clone(), pair[1].clone()));
        }
        let keys: Vec<Vec<u8>> = pairs.iter().map(|(k, _)| k.clone()).collect();
        match self.read_many(&keys).await {
            Ok(v) if v.iter().any(Option::is_some) => return Value::Integer(0),
            Ok(_) => {}
            Err(e) => return e,
        }
        for (k, v) in pairs {
            let key = match self.key(&k) {
                Ok(k) => k,
                Err(e) => return e,
            };
            match self
                .cas(key, Condition::Absent, write_action(v, None, false))
                .await
            {
                Ok((true, _)) => {}
                // Another client set it in between: stop, as Redis would have set none.
                Ok((false, _)) => return Value::Integer(0),
                Err(e) => return e,
            }
        }
        Value::Integer(1)
    }
}

/// Redis's `GETRANGE` clamping: negative offsets count from the end; an empty range (or
/// value) is empty.
fn byte_range(value: &[u8], start: i64, end: i64) -> &[u8] {
    let len = value.len() as i64;
    if len == 0 || (start < 0 && end < 0 && start > end) {
        return &[];
    }
    let start = if start < 0 {
        (len + start).max(0)
    } else {
        start
    };
    let end = if end < 0 {
        (len + end).max(0)
    } else {
        end.min(len - 1)
    };
    if start > end || start >= len {
        return &[];
    }
    &value[start as usize..=end as usize]
}
