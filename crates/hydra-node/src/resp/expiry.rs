//! The expiry commands: `EXPIRE`/`PEXPIRE` and `EXPIREAT`/`PEXPIREAT` (with `NX`, `XX`,
//! `GT`, `LT`), `TTL`/`PTTL`, `EXPIRETIME`/`PEXPIRETIME`, `PERSIST`, `SETEX`/`PSETEX`, and
//! the parsing of `EX`/`PX`/`EXAT`/`PXAT` the `SET` family shares. A TTL reaches the core as
//! [`Expiry::AfterMs`], an absolute time as [`Expiry::AtMs`] (exact, not counted again from
//! the coordinator's clock). `EXPIRE` and `PERSIST` act on exactly the version they read
//! (`Connection::version_bound` in `commands.rs`).

use super::Connection;
use super::collections::Found;
use super::commands::redis_integer;
use crate::driver::wall_ms;
use hydra_core::collection::CollectionUpdate;
use hydra_core::message::{Expiry, VersionOp};
use hydra_resp::Value;

/// The expiry of `EX`/`PX` (a TTL) or `EXAT`/`PXAT` (an absolute Unix time, kept exact to
/// the core: not turned into a TTL against this node's clock) with a positive `n`.
pub(super) fn expiry_arg(unit: &[u8], n: u64) -> Expiry {
    match unit {
        b"ex" => Expiry::AfterMs(n.saturating_mul(1000)),
        b"px" => Expiry::AfterMs(n),
        b"exat" => Expiry::AtMs(n.saturating_mul(1000)),
        _ => Expiry::AtMs(n),
    }
}

/// Whether an expiry is an absolute time already past on this node's clock (Redis then
/// deletes the key instead of writing it).
pub(super) fn already_past(expiry: Option<Expiry>) -> bool {
    matches!(expiry, Some(Expiry::AtMs(at)) if at <= wall_ms())
}

impl Connection {
    /// `EXPIRE`/`PEXPIRE` (a TTL) and `EXPIREAT`/`PEXPIREAT` (`absolute`: a Unix time).
    pub(super) async fn expire_once(
        &mut self,
        args: &[Vec<u8>],
        millis: bool,
        absolute: bool,
    ) -> Value {
        let key = match self.key(&args[0]) {
            Ok(k) => k,
            Err(e) => return e,
        };
        let Some(n) = std::str::from_utf8(&args[1])
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
        else {
            return Value::error("ERR value is not an integer or out of range");
        };
        let n_ms = if millis { n } else { n.saturating_mul(1000) };
        let flag = match args.get(2).map(|a| a.to_ascii_lowercase()) {
            None => None,
            Some(f) if args.len() == 3 && matches!(f.as_slice(), b"nx" | b"xx" | b"gt" | b"lt") => {
                Some(f)
            }
            Some(_) => return Value::error("ERR Unsupported option"),
        };
        let found = match self.read_found(&key).await {
            Ok(Found::Absent(_)) => return Value::Integer(0),
            Ok(found) => found,
            Err(e) => return e,
        };
        let now = wall_ms() as i64;
        let current = match &found {
            Found::String(_, s) => s.expires_at,
            Found::Collection(c) => c.expires_at(now as u64),
            Found::Absent(_) => None,
        }
        .map(|at| at as i64);
        // The new expiry as a Unix time in ms, to compare with the current one; at or before
        // now it deletes the key, as in Redis.
        let target = if absolute {
            n_ms
        } else {
            now.saturating_add(n_ms)
        };
        let applies = match flag.as_deref() {
            None => true,
            Some(b"nx") => current.is_none(),
            Some(b"xx") => current.is_some(),
            // No expiry counts as an infinite one, as in Redis.
            Some(b"gt") => current.is_some_and(|c| target > c),
            Some(_) => current.is_none_or(|c| target < c),
        };
        if !applies {
            return Value::Integer(0);
        }
        let expired = target <= now;
        // An absolute time stays exact to the core (not turned into a TTL here).
        let expiry = if absolute {
            Expiry::AtMs(target as u64)
        } else {
            Expiry::AfterMs(n_ms as u64)
        };
        let (context, sibling) = match found {
            Found::String(context, sibling) => (context, sibling),
            Found::Collection(c) => {
                let update = if expired {
                    Self::clear_update(&c)
                } else {
                    CollectionUpdate {
                        kind: c.kind,
                        expiry: Some(Some(expiry)),
                        ..Default::default()
                    }
                };
                return match self.update_collection(key, update).await {
                    Ok(()) => Value::Integer(1),
                    Err(e) => e,
                };
            }
            Found::Absent(_) => return Value::Integer(0),
        };
        let result = if expired {
            self.write_version(key, VersionOp::Delete, (context, sibling), None)
                .await
        } else {
            self.write_version(key, VersionOp::Touch, (context, sibling), Some(expiry))
                .await
        };
        match result {
            Ok(_) => Value::Integer(1),
            Err(e) => e,
        }
    }

    /// `TTL`, `PTTL`: what is left of a key's TTL; `EXPIRETIME`, `PEXPIRETIME` (`absolute`):
    /// when it expires, in Unix time. Seconds are rounded as Redis rounds them.
    pub(super) async fn ttl(&mut self, key: &[u8], millis: bool, absolute: bool) -> Value {
        let key = match self.key(key) {
            Ok(k) => k,
            Err(e) => return e,
        };
        let expires_at = match self.read_found(&key).await {
            Err(e) => return e,
            Ok(Found::Absent(_)) => None,
            Ok(Found::String(_, s)) => Some(s.expires_at),
            Ok(Found::Collection(c)) => Some(c.expires_at(wall_ms())),
        };
        match expires_at {
            None => Value::Integer(-2),
            Some(expires_at) => match expires_at {
                None => Value::Integer(-1),
                Some(at) => {
                    let ms = if absolute {
                        at
                    } else {
                        at.saturating_sub(wall_ms())
                    } as i64;
                    Value::Integer(if millis { ms } else { (ms + 500) / 1000 })
                }
            },
        }
    }

    /// `SETEX key seconds value`, `PSETEX key milliseconds value`: `SET` with a TTL.
    pub(super) async fn setex(&mut self, args: &[Vec<u8>], millis: bool) -> Value {
        let Some(n) = redis_integer(&args[1]) else {
            return Value::error("ERR value is not an integer or out of range");
        };
        if n <= 0 || (!millis && n.checked_mul(1000).is_none()) {
            let name = if millis { "psetex" } else { "setex" };
            return Value::error(format!("ERR invalid expire time in '{name}' command"));
        }
        let unit: &[u8] = if millis { b"PX" } else { b"EX" };
        let set = [
            args[0].clone(),
            args[2].clone(),
            unit.to_vec(),
            args[1].clone(),
        ];
        self.set(&set).await
    }

    /// `PERSIST`: removes the key's TTL (1), or answers 0 when it has none.
    pub(super) async fn persist_once(&mut self, key: &[u8]) -> Value {
        let key = match self.key(key) {
            Ok(k) => k,
            Err(e) => return e,
        };
        match self.read_found(&key).await {
            Err(e) => e,
            Ok(Found::Collection(c)) if c.expires_at(wall_ms()).is_some() => {
                let u = CollectionUpdate {
                    kind: c.kind,
                    expiry: Some(None),
                    ..Default::default()
                };
                match self.update_collection(key, u).await {
                    Ok(()) => Value::Integer(1),
                    Err(e) => e,
                }
            }
            Ok(Found::String(context, s)) if s.expires_at.is_some() => {
                match self
                    .write_version(key, VersionOp::Touch, (context, s), None)
                    .await
                {
                    Ok(_) => Value::Integer(1),
                    Err(e) => e,
                }
            }
            Ok(_) => Value::Integer(0),
        }
    }
}
