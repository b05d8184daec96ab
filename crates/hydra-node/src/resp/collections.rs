//! Hashes and sets (`HSET`..., `SADD`...), kept as add-wins observed-remove collections (see
//! `hydra_core::collection`). Each command reads the key at the connection's read level,
//! answers from what it read, and, when it changes the key, sends one update naming the dots
//! the read showed for every element it removes or replaces: concurrent updates through other
//! nodes merge (an add the read did not see survives; a removed element does not come back).
//!
//! The read-then-write commands (`HINCRBY`, `HINCRBYFLOAT`, `HSETNX`, `SPOP`, `SMOVE`'s
//! source) are exact: their update goes through compare-and-set on condition that the
//! elements it depends on still have the dots the read showed (`Connection::exact`), so of
//! two commands that read one state of an element only one applies, and the other runs again
//! on what the key holds then. Under heavy contention on one key a command may answer
//! `-TIMEOUT` (its outcome unknown), as string `INCR` may. `SMOVE` removes the member from
//! the source exactly once, then adds it to the destination (not atomic across the two keys:
//! a failure between is reported and leaves it in neither). The other updates (`HSET`, `SADD`,
//! `HDEL`, `SREM`) merge with concurrent ones, as before. In a bucket with `cas = off` the
//! exact commands send a plain update instead (not atomic across clients). Replies list
//! elements in byte order (Redis's order is its encoding's; clients must not rely on it).

use super::Connection;
use super::commands::redis_integer;
use super::float::Ext;
use super::keys::glob;
use crate::driver::wall_ms;
use hydra_core::collection::{Collection, CollectionKind, CollectionUpdate};
use hydra_core::key::ObjectKey;
use hydra_core::message::{CasAction, CasRequest, ClientRequest, ClientResponse, ErrorCode};
use hydra_core::paxos::Condition;
use hydra_core::version::{Sibling, VersionVector};
use hydra_resp::{Protocol, Value};
use std::collections::{BTreeMap, BTreeSet};

/// The hash and set commands (one handler row each in `meta.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CollectionCmd {
    HSet,
    HMSet,
    HSetNx,
    HGet,
    HMGet,
    HGetAll,
    HDel,
    HLen,
    HExists,
    HKeys,
    HVals,
    HStrLen,
    HIncrBy,
    HIncrByFloat,
    HRandField,
    HScan,
    SAdd,
    SRem,
    SMembers,
    SIsMember,
    SMIsMember,
    SCard,
    SRandMember,
    SPop,
    SMove,
    SInter,
    SUnion,
    SDiff,
    SInterStore,
    SUnionStore,
    SDiffStore,
    SInterCard,
    SScan,
}

/// What a key holds, as a read found it.
pub(super) enum Found {
    /// Nothing live: the read's context (a tombstone's, which a write after it supersedes).
    Absent(VersionVector),
    /// A plain value: the read's context and its newest live value.
    String(VersionVector, Sibling),
    /// A hash or set with at least one element.
    Collection(Collection),
}

pub(super) fn wrong_type() -> Value {
    Value::error("WRONGTYPE Operation against a key holding the wrong kind of value")
}

fn syntax() -> Value {
    Value::error("ERR syntax error")
}

fn not_integer() -> Value {
    Value::error("ERR value is not an integer or out of range")
}

fn random_below(n: usize) -> usize {
    use std::hash::{BuildHasher, Hasher};
    let r = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    (r % n.max(1) as u64) as usize
}

/// The update that sets `element` to `value`, replacing what the read showed of it.
fn replace(c: Option<&Collection>, element: &[u8], value: &[u8], u: &mut CollectionUpdate) {
    if let Some((dots, _)) = c.and_then(|c| c.get(element, wall_ms())) {
        u.removes.push((element.to_vec(), dots));
    }
    u.adds.push((element.to_vec(), value.to_vec()));
}

/// The update that removes `element` as the read showed it; whether it was there.
pub(super) fn remove(c: Option<&Collection>, element: &[u8], u: &mut CollectionUpdate) -> bool {
    match c.and_then(|c| c.get(element, wall_ms())) {
        Some((dots, _)) => {
            u.removes.push((element.to_vec(), dots));
            true
        }
        None => false,
    }
}

fn elements(c: Option<&Collection>) -> Vec<(Vec<u8>, Vec<u8>)> {
    c.map(|c| {
        c.elements(wall_ms())
            .into_iter()
            .map(|(e, v)| (e.to_vec(), v.to_vec()))
            .collect()
    })
    .unwrap_or_default()
}

/// What a read-then-write command makes of the collection it read.
enum Plan {
    /// Nothing to write: the reply.
    Reply(Value),
    /// An update, the elements whose dots it must find unchanged (what the command's answer
    /// depends on), and the reply once it applies.
    Write {
        update: CollectionUpdate,
        watched: Vec<Vec<u8>>,
        reply: Value,
    },
}

/// Rounds of an exact read-then-write command: each lost round means another update of its
/// elements applied first (so some client made progress), and the next plans on what the
/// key holds now.
const EXACT_ROUNDS_MAX: usize = 32;

fn bulks(items: impl IntoIterator<Item = Vec<u8>>) -> Vec<Value> {
    items.into_iter().map(Value::Bulk).collect()
}

impl Connection {
    /// Reads a key for any command: what it holds. In a `siblings` bucket a plain value with
    /// several live siblings is refused (acting on one would drop the others).
    pub(super) async fn read_found(&mut self, key: &ObjectKey) -> Result<Found, Value> {
        let response = self.request(self.get_request(key.clone())).await?;
        let ClientResponse::Read {
            context,
            siblings,
            collection,
            ..
        } = response
        else {
            return match super::take_newest(response) {
                (Some(context), Some(s)) => Ok(Found::String(context, s)),
                (Some(context), None) => Ok(Found::Absent(context)),
                (None, _) => Err(Value::error("ERR unexpected reply to a read")),
            };
        };
        if let Some(c) = collection.filter(|c| !c.is_empty()) {
            return Ok(Found::Collection(*c));
        }
        let live: Vec<Sibling> = siblings.into_iter().filter(|s| !s.tombstone).collect();
        if live.len() > 1 {
            return Err(Value::error(format!(
                "CONFLICT the key has {} concurrent values (siblings); read them with HYDRA.GETALL and resolve them with HYDRA.PUT first",
                live.len()
            )));
        }
        Ok(match live.into_iter().next() {
            Some(s) => Found::String(context, s),
            None => Found::Absent(context),
        })
    }

    /// Reads a key a `kind` command works on: its collection, `None` when absent, WRONGTYPE
    /// when it holds anything else.
    async fn collection_of(
        &mut self,
        key: &ObjectKey,
        kind: CollectionKind,
    ) -> Result<Option<Collection>, Value> {
        match self.read_found(key).await? {
            Found::Absent(_) => Ok(None),
            Found::Collection(c) if c.kind == kind => Ok(Some(c)),
            _ => Err(wrong_type()),
        }
    }

    /// Sends one update of a hash or set.
    pub(super) async fn update_collection(
        &mut self,
        key: ObjectKey,
        update: CollectionUpdate,
    ) -> Result<(), Value> {
        let mut request = self.put_request(key, None, None, None);
        if let ClientRequest::Put(w) = &mut request {
            w.collection = Some(update);
        }
        match self.request(request).await? {
            ClientResponse::Written { .. } => Ok(()),
            _ => Err(Value::error("ERR unexpected reply to a write")),
        }
    }

    /// Runs a read-then-write command exactly (`HINCRBY`, `HINCRBYFLOAT`, `HSETNX`, `SPOP`,
    /// `SMOVE`'s source): `plan` judges what the key holds, and its update goes through
    /// compare-and-set on condition that the watched elements still have the dots it read,
    /// so two commands never both act on one state of an element. When another update came
    /// first, `plan` runs again on what the compare-and-set found. Returns the reply and
    /// whether the update was made. In a bucket with `cas = off` the update is sent as a
    /// plain one (not exact, as before compare-and-set).
    async fn exact(
        &mut self,
        key: &ObjectKey,
        kind: CollectionKind,
        mut plan: impl FnMut(Option<&Collection>) -> Result<Plan, Value>,
    ) -> Result<(Value, bool), Value> {
        let mut held = self.collection_of(key, kind).await?;
        for _ in 0..EXACT_ROUNDS_MAX {
            let (update, watched, reply) = match plan(held.as_ref())? {
                Plan::Reply(v) => return Ok((v, false)),
                Plan::Write {
                    update,
                    watched,
                    reply,
                } => (update, watched, reply),
            };
            // The dots the update replaces are the ones the plan read.
            let seen = watched
                .into_iter()
                .map(|e| {
                    let dots = update
                        .removes
                        .iter()
                        .find(|(r, _)| *r == e)
                        .map(|(_, d)| d.clone())
                        .unwrap_or_default();
                    (e, dots)
                })
                .collect();
            let request = ClientRequest::cas(CasRequest {
                key: key.clone(),
                condition: Condition::Elements(seen),
                action: CasAction::Collection(update.clone()),
                timeout_ms: None,
                supersedes: None,
            });
            match self.request_once(request).await {
                Ok(ClientResponse::Cas { applied: true, .. }) => return Ok((reply, true)),
                Ok(ClientResponse::Cas {
                    applied: false,
                    collection,
                    ..
                }) => {
                    held = collection
                        .map(|c| *c)
                        .filter(|c| c.kind == kind && !c.is_empty())
                }
                Err(e) if e.code == ErrorCode::CasNotSupported => {
                    self.update_collection(key.clone(), update).await?;
                    return Ok((reply, true));
                }
                // Other ballots won every attempt; nothing of this round was proposed.
                Err(e) if e.code == ErrorCode::CasContention => {
                    held = self.collection_of(key, kind).await?;
                }
                Err(e) => return Err(super::error_value(&e)),
                Ok(_) => return Err(Value::error("ERR unexpected reply to a compare-and-set")),
            }
        }
        Err(Value::error(format!(
            "ERR CONTENDED other updates of the same elements won {EXACT_ROUNDS_MAX} rounds in a row; nothing was written"
        )))
    }

    /// The update that empties a collection as read (`DEL`, and the TTL it had goes too).
    pub(super) fn clear_update(c: &Collection) -> CollectionUpdate {
        let mut u = CollectionUpdate {
            kind: c.kind,
            expiry: Some(None),
            ..Default::default()
        };
        for (e, _) in c.elements(wall_ms()) {
            remove(Some(c), e, &mut u);
        }
        u
    }

    pub(super) async fn collection_command(
        &mut self,
        cmd: CollectionCmd,
        args: &[Vec<u8>],
    ) -> Value {
        match self.run_collection(cmd, args).await {
            Ok(v) | Err(v) => v,
        }
    }

    async fn run_collection(
        &mut self,
        cmd: CollectionCmd,
        args: &[Vec<u8>],
    ) -> Result<Value, Value> {
        use CollectionCmd as C;
        let hash = CollectionKind::Hash;
        let set = CollectionKind::Set;
        let key = self.key(&args[0])?;
        let now = wall_ms();
        Ok(match cmd {
            C::HSet | C::HMSet => {
                let pairs = &args[1..];
                if pairs.is_empty() || !pairs.len().is_multiple_of(2) {
                    let name = if cmd == C::HSet { "hset" } else { "hmset" };
                    return Err(Value::error(format!(
                        "ERR wrong number of arguments for '{name}' command"
                    )));
                }
                let c = self.collection_of(&key, hash).await?;
                // A field given twice takes its last value.
                let fields: BTreeMap<&[u8], &[u8]> = pairs
                    .chunks(2)
                    .map(|p| (p[0].as_slice(), p[1].as_slice()))
                    .collect();
                let mut u = CollectionUpdate {
                    kind: hash,
                    ..Default::default()
                };
                let mut added = 0;
                for (f, v) in &fields {
                    if c.as_ref().and_then(|c| c.get(f, now)).is_none() {
                        added += 1;
                    }
                    replace(c.as_ref(), f, v, &mut u);
                }
                self.update_collection(key, u).await?;
                if cmd == C::HSet {
                    Value::Integer(added)
                } else {
                    Value::ok()
                }
            }
            C::HSetNx => {
                let (field, value) = (&args[1], &args[2]);
                let plan = |c: Option<&Collection>| {
                    if c.and_then(|c| c.get(field, wall_ms())).is_some() {
                        return Ok(Plan::Reply(Value::Integer(0)));
                    }
                    let mut u = CollectionUpdate {
                        kind: hash,
                        ..Default::default()
                    };
                    replace(c, field, value, &mut u);
                    Ok(Plan::Write {
                        update: u,
                        watched: vec![field.clone()],
                        reply: Value::Integer(1),
                    })
                };
                self.exact(&key, hash, plan).await?.0
            }
            C::HGet => {
                let c = self.collection_of(&key, hash).await?;
                match c.as_ref().and_then(|c| c.get(&args[1], now)) {
                    Some((_, v)) => Value::Bulk(v.to_vec()),
                    None => Value::Null,
                }
            }
            C::HMGet => {
                let c = self.collection_of(&key, hash).await?;
                Value::Array(
                    args[1..]
                        .iter()
                        .map(|f| match c.as_ref().and_then(|c| c.get(f, now)) {
                            Some((_, v)) => Value::Bulk(v.to_vec()),
                            None => Value::Null,
                        })
                        .collect(),
                )
            }
            C::HGetAll => {
                let c = self.collection_of(&key, hash).await?;
                Value::Map(
                    elements(c.as_ref())
                        .into_iter()
                        .map(|(f, v)| (Value::Bulk(f), Value::Bulk(v)))
                        .collect(),
                )
            }
            C::HDel | C::SRem => {
                let kind = if cmd == C::HDel { hash } else { set };
                let c = self.collection_of(&key, kind).await?;
                let mut u = CollectionUpdate {
                    kind,
                    ..Default::default()
                };
                let distinct: BTreeSet<&[u8]> = args[1..].iter().map(|a| a.as_slice()).collect();
                let mut removed = 0;
                for e in distinct {
                    removed += i64::from(remove(c.as_ref(), e, &mut u));
                }
                if removed > 0 {
                    self.update_collection(key, u).await?;
                }
                Value::Integer(removed)
            }
            C::HLen | C::SCard => {
                let kind = if cmd == C::HLen { hash } else { set };
                let c = self.collection_of(&key, kind).await?;
                Value::Integer(c.map_or(0, |c| c.elements(now).len() as i64))
            }
            C::HExists | C::SIsMember => {
                let kind = if cmd == C::HExists { hash } else { set };
                let c = self.collection_of(&key, kind).await?;
                Value::Integer(i64::from(
                    c.as_ref().and_then(|c| c.get(&args[1], now)).is_some(),
                ))
            }
            C::HKeys | C::HVals => {
                let c = self.collection_of(&key, hash).await?;
                let items = elements(c.as_ref())
                    .into_iter()
                    .map(|(f, v)| if cmd == C::HKeys { f } else { v });
                Value::Array(bulks(items))
            }
            C::HStrLen => {
                let c = self.collection_of(&key, hash).await?;
                Value::Integer(
                    c.as_ref()
                        .and_then(|c| c.get(&args[1], now))
                        .map_or(0, |(_, v)| v.len() as i64),
                )
            }
            C::HIncrBy => {
                let by = redis_integer(&args[2]).ok_or_else(not_integer)?;
                let field = &args[1];
                let plan = |c: Option<&Collection>| {
                    let current = match c.and_then(|c| c.get(field, wall_ms())) {
                        None => 0,
                        Some((_, v)) => redis_integer(v)
                            .ok_or_else(|| Value::error("ERR hash value is not an integer"))?,
                    };
                    let new = current
                        .checked_add(by)
                        .ok_or_else(|| Value::error("ERR increment or decrement would overflow"))?;
                    let mut u = CollectionUpdate {
                        kind: hash,
                        ..Default::default()
                    };
                    replace(c, field, new.to_string().as_bytes(), &mut u);
                    Ok(Plan::Write {
                        update: u,
                        watched: vec![field.clone()],
                        reply: Value::Integer(new),
                    })
                };
                self.exact(&key, hash, plan).await?.0
            }
            C::HIncrByFloat => {
                let by = Ext::parse(&args[2])
                    .ok_or_else(|| Value::error("ERR value is not a valid float"))?;
                let field = &args[1];
                let plan = |c: Option<&Collection>| {
                    let current = match c.and_then(|c| c.get(field, wall_ms())) {
                        None => Ext::parse(b"0").expect("zero parses"),
                        Some((_, v)) => Ext::parse(v)
                            .ok_or_else(|| Value::error("ERR hash value is not a float"))?,
                    };
                    let new = match current.add(&by) {
                        Some(sum) if sum.is_finite() => sum.to_redis_string(),
                        _ => {
                            return Err(Value::error(
                                "ERR increment would produce NaN or Infinity",
                            ));
                        }
                    };
                    let mut u = CollectionUpdate {
                        kind: hash,
                        ..Default::default()
                    };
                    replace(c, field, new.as_bytes(), &mut u);
                    Ok(Plan::Write {
                        update: u,
                        watched: vec![field.clone()],
                        reply: Value::Bulk(new.into_bytes()),
                    })
                };
                self.exact(&key, hash, plan).await?.0
            }
            C::HRandField | C::SRandMember => {
                let kind = if cmd == C::HRandField { hash } else { set };
                let with_values = match args.get(2) {
                    None => false,
                    Some(a) if cmd == C::HRandField && a.eq_ignore_ascii_case(b"withvalues") => {
                        true
                    }
                    Some(_) => return Err(syntax()),
                };
                if args.len() > 3 {
                    return Err(syntax());
                }
                let count = match args.get(1) {
                    None => None,
                    Some(n) => Some(redis_integer(n).ok_or_else(not_integer)?),
                };
                let c = self.collection_of(&key, kind).await?;
                let all = elements(c.as_ref());
                self.random_elements(&all, count, with_values)?
            }
            C::HScan | C::SScan => {
                let kind = if cmd == C::HScan { hash } else { set };
                let (pattern, _count) = scan_options(&args[1..])?;
                let c = self.collection_of(&key, kind).await?;
                let mut items = Vec::new();
                for (e, v) in elements(c.as_ref()) {
                    if pattern.as_ref().is_none_or(|p| glob(p, &e)) {
                        items.push(Value::Bulk(e));
                        if kind == hash {
                            items.push(Value::Bulk(v));
                        }
                    }
                }
                // The whole collection in one page (Redis does the same for small ones).
                Value::Array(vec![Value::bulk("0"), Value::Array(items)])
            }
            C::SAdd => {
                let c = self.collection_of(&key, set).await?;
                let mut u = CollectionUpdate {
                    kind: set,
                    ..Default::default()
                };
                let distinct: BTreeSet<&[u8]> = args[1..].iter().map(|a| a.as_slice()).collect();
                for m in distinct {
                    if c.as_ref().and_then(|c| c.get(m, now)).is_none() {
                        u.adds.push((m.to_vec(), Vec::new()));
                    }
                }
                let added = u.adds.len() as i64;
                if added > 0 {
                    self.update_collection(key, u).await?;
                }
                Value::Integer(added)
            }
            C::SMembers => {
                let c = self.collection_of(&key, set).await?;
                Value::Set(bulks(elements(c.as_ref()).into_iter().map(|(m, _)| m)))
            }
            C::SMIsMember => {
                let c = self.collection_of(&key, set).await?;
                Value::Array(
                    args[1..]
                        .iter()
                        .map(|m| {
                            Value::Integer(i64::from(
                                c.as_ref().and_then(|c| c.get(m, now)).is_some(),
                            ))
                        })
                        .collect(),
                )
            }
            C::SPop => {
                let count = match args.get(1) {
                    None => None,
                    Some(n) => {
                        let n = redis_integer(n).ok_or_else(|| {
                            Value::error("ERR value is out of range, must be positive")
                        })?;
                        if n < 0 {
                            return Err(Value::error(
                                "ERR value is out of range, must be positive",
                            ));
                        }
                        Some(n as usize)
                    }
                };
                if args.len() > 2 {
                    return Err(syntax());
                }
                let plan = |c: Option<&Collection>| {
                    let mut all: Vec<Vec<u8>> = elements(c).into_iter().map(|(m, _)| m).collect();
                    let take = count.unwrap_or(1).min(all.len());
                    let mut popped = Vec::with_capacity(take);
                    for _ in 0..take {
                        popped.push(all.swap_remove(random_below(all.len())));
                    }
                    let mut u = CollectionUpdate {
                        kind: set,
                        ..Default::default()
                    };
                    for m in &popped {
                        remove(c, m, &mut u);
                    }
                    let empty = popped.is_empty();
                    let watched = popped.clone();
                    let reply = match count {
                        None => popped.pop().map_or(Value::Null, Value::Bulk),
                        Some(_) => Value::Set(bulks(popped)),
                    };
                    Ok(if empty {
                        Plan::Reply(reply)
                    } else {
                        Plan::Write {
                            update: u,
                            watched,
                            reply,
                        }
                    })
                };
                self.exact(&key, set, plan).await?.0
            }
            C::SMove => {
                let dst = self.key(&args[1])?;
                // Both keys' types are checked first, as Redis does.
                let dst_c = self.collection_of(&dst, set).await?;
                let member = &args[2];
                let same = args[0] == args[1];
                let plan = |c: Option<&Collection>| {
                    let mut u = CollectionUpdate {
                        kind: set,
                        ..Default::default()
                    };
                    if !remove(c, member, &mut u) {
                        return Ok(Plan::Reply(Value::Integer(0)));
                    }
                    if same {
                        return Ok(Plan::Reply(Value::Integer(1)));
                    }
                    Ok(Plan::Write {
                        update: u,
                        watched: vec![member.clone()],
                        reply: Value::Integer(1),
                    })
                };
                // The member leaves the source exactly once (compare-and-set), then joins
                // the destination; a failure between is reported, the member gone from both.
                let (reply, moved) = self.exact(&key, set, plan).await?;
                if moved && dst_c.as_ref().and_then(|c| c.get(member, now)).is_none() {
                    let u = CollectionUpdate {
                        kind: set,
                        adds: vec![(member.clone(), Vec::new())],
                        ..Default::default()
                    };
                    if let Err(Value::Error(e)) = self.update_collection(dst, u).await {
                        return Err(Value::error(format!(
                            "ERR SMOVE removed the member from the source but could not add it to the destination: {e}"
                        )));
                    }
                }
                reply
            }
            C::SInter | C::SUnion | C::SDiff => {
                let result = self.combine(cmd, &args[0..]).await?;
                Value::Set(bulks(result))
            }
            C::SInterStore | C::SUnionStore | C::SDiffStore => {
                let op = match cmd {
                    C::SInterStore => C::SInter,
                    C::SUnionStore => C::SUnion,
                    _ => C::SDiff,
                };
                let result = self.combine(op, &args[1..]).await?;
                let n = result.len() as i64;
                self.store_set(key, result).await?;
                Value::Integer(n)
            }
            C::SInterCard => {
                let numkeys = redis_integer(&args[0]).ok_or_else(not_integer)?;
                if numkeys <= 0 {
                    return Err(Value::error("ERR numkeys should be greater than 0"));
                }
                let numkeys = numkeys as usize;
                if numkeys > args.len() - 1 {
                    return Err(Value::error(
                        "ERR Number of keys can't be greater than number of args",
                    ));
                }
                let mut limit = 0usize;
                let rest = &args[1 + numkeys..];
                let mut i = 0;
                while i < rest.len() {
                    if rest[i].eq_ignore_ascii_case(b"limit") && i + 1 < rest.len() {
                        let l = redis_integer(&rest[i + 1])
                            .ok_or_else(|| Value::error("ERR LIMIT can't be negative"))?;
                        if l < 0 {
                            return Err(Value::error("ERR LIMIT can't be negative"));
                        }
                        limit = l as usize;
                        i += 2;
                    } else {
                        return Err(syntax());
                    }
                }
                let result = self.combine(C::SInter, &args[1..1 + numkeys]).await?;
                let n = if limit > 0 {
                    result.len().min(limit)
                } else {
                    result.len()
                };
                Value::Integer(n as i64)
            }
        })
    }

    /// `HRANDFIELD` / `SRANDMEMBER`: one element (no count), distinct ones (a positive
    /// count), or picks that may repeat (a negative count).
    fn random_elements(
        &self,
        all: &[(Vec<u8>, Vec<u8>)],
        count: Option<i64>,
        with_values: bool,
    ) -> Result<Value, Value> {
        let Some(count) = count else {
            if all.is_empty() {
                return Ok(Value::Null);
            }
            return Ok(Value::Bulk(all[random_below(all.len())].0.clone()));
        };
        let picks: Vec<&(Vec<u8>, Vec<u8>)> = if count >= 0 {
            let mut idx: Vec<usize> = (0..all.len()).collect();
            let n = (count as usize).min(all.len());
            for i in 0..n {
                let j = i + random_below(idx.len() - i);
                idx.swap(i, j);
            }
            idx[..n].iter().map(|i| &all[*i]).collect()
        } else {
            if all.is_empty() {
                return Ok(Value::Array(vec![]));
            }
            let n = count.unsigned_abs();
            if n > super::KEYS_IN_FLIGHT_MAX as u64 * 1_000 {
                return Err(Value::error("ERR value is out of range"));
            }
            (0..n).map(|_| &all[random_below(all.len())]).collect()
        };
        Ok(Value::Array(match (with_values, self.protocol) {
            (false, _) => bulks(picks.into_iter().map(|(e, _)| e.clone())),
            (true, Protocol::Resp3) => picks
                .into_iter()
                .map(|(e, v)| Value::Array(vec![Value::Bulk(e.clone()), Value::Bulk(v.clone())]))
                .collect(),
            (true, Protocol::Resp2) => picks
                .into_iter()
                .flat_map(|(e, v)| [Value::Bulk(e.clone()), Value::Bulk(v.clone())])
                .collect(),
        }))
    }

    /// The members of `SINTER`, `SUNION` or `SDIFF` over `keys` (absent keys are empty sets;
    /// a key of another type is WRONGTYPE).
    async fn combine(
        &mut self,
        op: CollectionCmd,
        keys: &[Vec<u8>],
    ) -> Result<Vec<Vec<u8>>, Value> {
        let mut sets = Vec::with_capacity(keys.len());
        for k in keys {
            let key = self.key(k)?;
            let c = self.collection_of(&key, CollectionKind::Set).await?;
            let members: BTreeSet<Vec<u8>> =
                elements(c.as_ref()).into_iter().map(|(m, _)| m).collect();
            sets.push(members);
        }
        let mut sets = sets.into_iter();
        let first = sets.next().unwrap_or_default();
        let result = sets.fold(first, |acc, s| match op {
            CollectionCmd::SInter => acc.intersection(&s).cloned().collect(),
            CollectionCmd::SUnion => acc.union(&s).cloned().collect(),
            _ => acc.difference(&s).cloned().collect(),
        });
        Ok(result.into_iter().collect())
    }

    /// Makes `key` the set `members` (the `STORE` forms): whatever it held is replaced; an
    /// empty result deletes it.
    async fn store_set(&mut self, key: ObjectKey, members: Vec<Vec<u8>>) -> Result<(), Value> {
        let existing = match self.read_found(&key).await? {
            Found::Absent(_) => None,
            Found::Collection(c) if c.kind == CollectionKind::Set => Some(c),
            Found::Collection(c) => {
                self.update_collection(key.clone(), Self::clear_update(&c))
                    .await?;
                None
            }
            Found::String(context, s) => {
                self.write_version(
                    key.clone(),
                    hydra_core::message::VersionOp::Delete,
                    (context, s),
                    None,
                )
                .await?;
                None
            }
        };
        let wanted: BTreeSet<&[u8]> = members.iter().map(|m| m.as_slice()).collect();
        let mut u = CollectionUpdate {
            kind: CollectionKind::Set,
            expiry: Some(None),
            ..Default::default()
        };
        if let Some(c) = &existing {
            for (m, _) in c.elements(wall_ms()) {
                if !wanted.contains(m) {
                    remove(Some(c), m, &mut u);
                }
            }
        }
        for m in wanted {
            if existing
                .as_ref()
                .and_then(|c| c.get(m, wall_ms()))
                .is_none()
            {
                u.adds.push((m.to_vec(), Vec::new()));
            }
        }
        if existing.is_none() && u.adds.is_empty() {
            return Ok(());
        }
        self.update_collection(key, u).await
    }
}

/// `HSCAN`/`SSCAN`'s arguments after the key: the cursor, then `MATCH` and `COUNT`.
fn scan_options(args: &[Vec<u8>]) -> Result<(Option<Vec<u8>>, usize), Value> {
    let cursor = std::str::from_utf8(&args[0])
        .ok()
        .and_then(|s| s.parse::<u64>().ok());
    if cursor.is_none() {
        return Err(Value::error("ERR invalid cursor"));
    }
    let (mut pattern, mut count) = (None, 10usize);
    let mut i = 1;
    while i < args.len() {
        let opt = args[i].to_ascii_lowercase();
        let Some(value) = args.get(i + 1) else {
            return Err(syntax());
        };
        match opt.as_slice() {
            b"match" => pattern = Some(value.clone()),
            b"count" => {
                let n = redis_integer(value).ok_or_else(not_integer)?;
                if n < 1 {
                    return Err(syntax());
                }
                count = n as usize;
            }
            _ => return Err(syntax()),
        }
        i += 2;
    }
    Ok((pattern, count))
}
