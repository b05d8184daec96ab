//! `MULTI`/`EXEC`/`DISCARD`/`WATCH`/`UNWATCH`: a transaction applies at once or not at all.
//!
//! ```text
//! MULTI ─▶ commands are checked (unknown, arity, permission: an error flags the transaction)
//!          and queued (+QUEUED)
//! EXEC  ─▶ flagged: -EXECABORT, nothing applied
//!       ─▶ no key: the (key-free) commands run; watched keys are checked first
//!       ─▶ one key K (watched keys at most K): a serial read of K; the queued commands run
//!          against a copy of K in memory (the connection's requests go to the copy, not to
//!          the core); then one compare-and-set writes the copy back on condition that K is
//!          still the version read. Lost to another write: run again on the new version, or,
//!          when K was watched, answer a null array as Redis does for a changed watched key.
//!       ─▶ more keys: -EXECABORT, nothing applied (keys live on different replicas, and
//!          compare-and-set is per key)
//! ```
//!
//! So a transaction never becomes a run of separate commands: every command in an applied
//! one saw the key as the commands before it left it, and no other write came between. A
//! command that fails at run time (`INCR` of a non-number) fails alone, the others apply,
//! as in Redis. A read-only transaction answers from the serial read: one linearizable
//! snapshot of its key.

use super::*;
use hydra_core::content_type::ContentType;
use hydra_core::message::{CasRequest, Expiry, PaxosReceipt};
use hydra_core::paxos::{Ballot, Condition};
use std::collections::BTreeSet;

/// Times one transaction runs against a fresh read of its key before it gives up (each lost
/// attempt means another client's write to the key applied in between).
const EXEC_ATTEMPTS: usize = 16;
/// Commands one transaction may queue (beyond, the transaction is flagged and `EXEC` aborts).
pub(super) const MULTI_COMMANDS_MAX: usize = 10_000;
/// Keys one connection may watch at once.
pub(super) const WATCHED_KEYS_MAX: usize = 1_000;

/// A transaction being queued.
#[derive(Default)]
pub(super) struct Multi {
    queued: Vec<Command>,
    /// A queued command was refused (unknown, arity, permission, too many): `EXEC` aborts.
    failed: bool,
}

/// A watched key and the version a serial read found at `WATCH`.
pub(super) struct Watched {
    key: ObjectKey,
    version: VersionVector,
}

/// The copy of a transaction's key its commands run against.
pub(super) struct Overlay {
    key: ObjectKey,
    /// The visible value, if any.
    current: Option<Sibling>,
    /// The version read, with a count of the copy's writes on top (never leaves the copy).
    version: VersionVector,
    writes: u64,
    /// Whether a command changed the TTL (else the write-back keeps the stored one).
    ttl_changed: bool,
    now_ms: u64,
    /// A transaction on a hash or set: the copy its commands run against instead.
    collection: Option<super::collection_copy::CollectionCopy>,
}

impl Overlay {
    fn new(key: ObjectKey, current: Option<Sibling>, version: VersionVector) -> Overlay {
        Overlay {
            key,
            current,
            version,
            writes: 0,
            ttl_changed: false,
            now_ms: crate::driver::wall_ms(),
            collection: None,
        }
    }

    fn visible(&self) -> Option<&Sibling> {
        self.current
            .as_ref()
            .filter(|s| s.expires_at.is_none_or(|at| at > self.now_ms))
    }

    /// The copy's version after its writes: the version read, then a count of the writes
    /// (as a Paxos writer's entry of node 0, which no member has).
    fn version(&self) -> VersionVector {
        let mut v = self.version.clone();
        if self.writes > 0 {
            v.0.insert(NodeId(0).paxos_writer(), self.writes);
        }
        v
    }

    fn store(&mut self, value: Option<Sibling>) {
        self.current = value;
        self.writes += 1;
    }

    fn sibling(
        &self,
        value: Vec<u8>,
        content_type: ContentType,
        expires_at: Option<u64>,
    ) -> Sibling {
        Sibling {
            value,
            content_type,
            timestamp: hydra_core::hlc::Hlc::new(self.now_ms, self.writes as u16),
            tombstone: false,
            expires_at,
        }
    }

    /// What the core would answer, from the copy.
    pub(super) fn answer(&mut self, request: ClientRequest) -> Reply {
        if request.key() != Some(&self.key) {
            return Err(ClientError::new(
                ErrorCode::InvalidKey,
                "a transaction's command used a key the transaction does not hold",
            ));
        }
        let receipt = Receipt {
            coordinator: NodeId(0),
            partition: 0,
            needed: 0,
            replicas: vec![],
            read_repairs: vec![],
            hints_stored: 0,
            elapsed_ms: 0,
        };
        if let Some(copy) = &mut self.collection {
            return copy.answer(request, receipt);
        }
        match request {
            ClientRequest::Get { .. } => Ok(ClientResponse::Read {
                context: self.version(),
                siblings: self.visible().cloned().into_iter().collect(),
                receipt,
                collection: None,
            }),
            ClientRequest::Put(w) => {
                let at = |e: Option<Expiry>| e.map(|e| e.deadline(self.now_ms));
                match (w.on_version, w.value) {
                    (Some(VersionOp::Touch), _) => {
                        let expires_at = at(w.expiry);
                        if let Some(mut s) = self.visible().cloned() {
                            s.expires_at = expires_at;
                            self.ttl_changed = true;
                            self.store(Some(s));
                        }
                    }
                    (Some(VersionOp::Delete), _) | (None, None) => self.store(None),
                    (None, Some(value)) => {
                        self.ttl_changed = true;
                        let s = self.sibling(value, w.content_type, at(w.expiry));
                        self.store(Some(s));
                    }
                }
                Ok(ClientResponse::Written {
                    context: self.version(),
                    receipt,
                })
            }
            ClientRequest::Cas(c) => {
                let is_read = c.action == CasAction::Read;
                let previous: Vec<Sibling> = self.visible().cloned().into_iter().collect();
                let current = previous.first().map(|s| s.value.as_slice());
                // A hash or set update never runs on a plain value's copy.
                let applied = c.condition.holds(current, &self.version())
                    && !matches!(c.action, CasAction::Collection(_));
                if applied {
                    match c.action {
                        CasAction::Read | CasAction::Collection(_) => {}
                        CasAction::Delete => self.store(None),
                        CasAction::Write {
                            value,
                            content_type,
                            expiry,
                            keep_ttl,
                        } => {
                            let expires_at = if keep_ttl {
                                previous.first().and_then(|s| s.expires_at)
                            } else {
                                self.ttl_changed = true;
                                expiry.map(|e| e.deadline(self.now_ms))
                            };
                            let s = self.sibling(value, content_type, expires_at);
                            self.store(Some(s));
                        }
                    }
                }
                Ok(ClientResponse::Cas {
                    applied: applied && !is_read,
                    context: self.version(),
                    siblings: self.visible().cloned().into_iter().collect(),
                    previous,
                    receipt,
                    paxos: PaxosReceipt {
                        ballot: Ballot::ZERO,
                        attempts: 0,
                        round_trips: 0,
                        reproposed: 0,
                    },
                    collection: None,
                })
            }
            ClientRequest::SetBucket { .. }
            | ClientRequest::List(_)
            | ClientRequest::Truncate { .. } => Err(ClientError::new(
                ErrorCode::InvalidBucket,
                "bucket changes and listings do not run inside a transaction",
            )),
        }
    }

    /// The compare-and-set action that writes the copy back, if a command wrote it.
    fn write_back(&self) -> Option<CasAction> {
        if self.writes == 0 {
            return None;
        }
        Some(match self.visible() {
            None => CasAction::Delete,
            Some(s) => CasAction::Write {
                value: s.value.clone(),
                content_type: s.content_type.clone(),
                // The time the transaction's commands set, exactly (not counted again from the
                // coordinator's clock).
                expiry: if self.ttl_changed {
                    s.expires_at.map(Expiry::AtMs)
                } else {
                    None
                },
                keep_ttl: !self.ttl_changed,
            },
        })
    }
}

/// The keys a command names, by its row's key positions.
fn command_keys<'a>(spec: &table::Spec, cmd: &'a Command) -> Vec<&'a [u8]> {
    let (first, last, step) = spec.key_positions();
    if first <= 0 {
        return vec![];
    }
    let len = cmd.len() as i64;
    let last = if last < 0 {
        len + last
    } else {
        last.min(len - 1)
    };
    (first..=last)
        .step_by(step.max(1) as usize)
        .filter_map(|i| cmd.get(i as usize).map(Vec::as_slice))
        .collect()
}

/// Whether a command may run inside a transaction: a data command on keys (not the
/// sibling-level `HYDRA.*` ones, which the copy cannot answer), or `PING`/`ECHO`.
fn runs_in_transaction(handler: Handler) -> bool {
    !matches!(
        handler,
        Handler::Hello
            | Handler::Auth
            | Handler::Acl
            | Handler::Quit
            | Handler::Reset
            | Handler::Select
            | Handler::Client
            | Handler::Command
            | Handler::Info
            | Handler::Config
            | Handler::DbSize
            | Handler::Scan
            | Handler::Keys
            | Handler::RandomKey
            | Handler::Flush
            | Handler::Object
            | Handler::Multi
            | Handler::Exec
            | Handler::Discard
            | Handler::Watch
            | Handler::Unwatch
            | Handler::HydraBucket
            | Handler::HydraConsistency
            | Handler::HydraGetAll
            | Handler::HydraPut
            | Handler::HydraDel
            | Handler::HydraReceipt
    )
}

impl Connection {
    /// `MULTI`.
    pub(super) fn multi(&mut self) -> Value {
        if self.multi.is_some() {
            return Value::error("ERR MULTI calls can not be nested");
        }
        self.multi = Some(Multi::default());
        Value::ok()
    }

    /// A command sent after `MULTI`: queued, or refused (and the transaction flagged).
    pub(super) fn queue(&mut self, cmd: Command) -> Value {
        let Some(multi) = &mut self.multi else {
            return Value::error("ERR no transaction");
        };
        if multi.queued.len() >= MULTI_COMMANDS_MAX {
            multi.failed = true;
            return Value::error(format!(
                "ERR a transaction holds at most {MULTI_COMMANDS_MAX} commands"
            ));
        }
        multi.queued.push(cmd);
        Value::Simple("QUEUED".into())
    }

    /// A command refused while queuing flags the transaction, as in Redis.
    pub(super) fn flag_transaction(&mut self) {
        if let Some(m) = &mut self.multi {
            m.failed = true;
        }
    }

    /// `DISCARD`.
    pub(super) fn discard(&mut self) -> Value {
        if self.multi.take().is_none() {
            return Value::error("ERR DISCARD without MULTI");
        }
        self.watched.clear();
        Value::ok()
    }

    /// `WATCH key...`: the version of each, from a serial read.
    pub(super) async fn watch(&mut self, args: &[Vec<u8>]) -> Value {
        if self.multi.is_some() {
            return Value::error("ERR WATCH inside MULTI is not allowed");
        }
        if self.watched.len() + args.len() > WATCHED_KEYS_MAX {
            return Value::error(format!(
                "ERR a connection watches at most {WATCHED_KEYS_MAX} keys"
            ));
        }
        for raw in args {
            let key = match self.key(raw) {
                Ok(k) => k,
                Err(e) => return e,
            };
            if self.watched.iter().any(|w| w.key == key) {
                continue;
            }
            match self.serial_read(&key).await {
                Ok((version, _)) => self.watched.push(Watched { key, version }),
                Err(e) => return e,
            }
        }
        Value::ok()
    }

    /// `UNWATCH`.
    pub(super) fn unwatch(&mut self) -> Value {
        self.watched.clear();
        Value::ok()
    }

    /// A serial read: the key's version and visible value.
    async fn serial_read(
        &mut self,
        key: &ObjectKey,
    ) -> Result<(VersionVector, Option<Sibling>), Value> {
        let request = ClientRequest::cas(CasRequest {
            key: key.clone(),
            condition: Condition::Always,
            action: CasAction::Read,
            timeout_ms: None,
            supersedes: None,
        });
        let (context, value) = take_newest(self.request(request).await?);
        Ok((context.unwrap_or_default(), value))
    }

    /// `EXEC`.
    pub(super) async fn exec(&mut self) -> Value {
        let Some(multi) = self.multi.take() else {
            return Value::error("ERR EXEC without MULTI");
        };
        let watched = std::mem::take(&mut self.watched);
        if multi.failed {
            return Value::error("EXECABORT Transaction discarded because of previous errors.");
        }
        let mut keys: BTreeSet<Vec<u8>> = BTreeSet::new();
        for cmd in &multi.queued {
            let name = String::from_utf8_lossy(&cmd[0]).to_ascii_lowercase();
            let Some(spec) = lookup(&name) else { continue };
            if !runs_in_transaction(spec.handler) {
                return Value::error(format!(
                    "EXECABORT Transaction discarded: {} does not run inside a transaction in Hydra; nothing was applied",
                    name.to_uppercase()
                ));
            }
            keys.extend(command_keys(spec, cmd).into_iter().map(<[u8]>::to_vec));
        }
        let key = match keys.len() {
            0 => None,
            1 => match keys.first().map(|k| self.key(k)) {
                Some(Ok(k)) => Some(k),
                Some(Err(e)) => return e,
                None => None,
            },
            n => {
                return Value::error(format!(
                    "EXECABORT Transaction discarded: it uses {n} keys, and Hydra applies a transaction at once only on one key (through compare-and-set; keys live on different replicas); nothing was applied"
                ));
            }
        };
        if let Some(k) = &key
            && let Some(w) = watched.iter().find(|w| w.key != *k)
        {
            return Value::error(format!(
                "EXECABORT Transaction discarded: it watches {} but writes {}, and Hydra checks a watched key at once only when it is the transaction's own; nothing was applied",
                w.key, k
            ));
        }
        let Some(key) = key else {
            // No key: nothing to apply. The watched keys must still be as they were.
            for w in &watched {
                match self.serial_read(&w.key).await {
                    Ok((version, _)) if version == w.version => {}
                    Ok(_) => return Value::NullArray,
                    Err(e) => return e,
                }
            }
            let mut replies = Vec::with_capacity(multi.queued.len());
            for cmd in multi.queued {
                replies.push(Box::pin(self.execute(cmd)).await.0);
            }
            return Value::Array(replies);
        };
        let on_collection = multi.queued.iter().any(|cmd| {
            let name = String::from_utf8_lossy(&cmd[0]).to_ascii_lowercase();
            lookup(&name).is_some_and(|spec| matches!(spec.handler, Handler::Collection(_)))
        });
        if on_collection {
            return self.exec_on_collection(key, multi, watched).await;
        }
        let watched_version = watched.into_iter().next().map(|w| w.version);
        for _ in 0..EXEC_ATTEMPTS {
            let (version, current) = match self.serial_read(&key).await {
                Ok(read) => read,
                Err(e) => return e,
            };
            if watched_version.as_ref().is_some_and(|w| *w != version) {
                return Value::NullArray;
            }
            let present = current.is_some();
            let saved = (self.seen, self.last_receipt.clone());
            self.overlay = Some(std::sync::Mutex::new(Overlay::new(
                key.clone(),
                current,
                version.clone(),
            )));
            let mut replies = Vec::with_capacity(multi.queued.len());
            for cmd in &multi.queued {
                replies.push(Box::pin(self.execute(cmd.clone())).await.0);
            }
            let copy = self.overlay.take().map(|m| match m.into_inner() {
                Ok(o) => o,
                Err(poisoned) => poisoned.into_inner(),
            });
            (self.seen, self.last_receipt) = saved;
            let Some(action) = copy.as_ref().and_then(Overlay::write_back) else {
                return Value::Array(replies);
            };
            // The key is still the version read; or still absent, which is all an absent
            // key's transaction read (a write and delete in between change nothing it saw).
            let still = if present {
                Condition::VersionIs(version)
            } else {
                Condition::Absent
            };
            match self.cas(key.clone(), still, action).await {
                Ok((true, _)) => return Value::Array(replies),
                Ok((false, _)) if watched_version.is_some() => return Value::NullArray,
                Ok((false, _)) => continue,
                Err(e) => return e,
            }
        }
        Value::error(format!(
            "CAS_CONTENTION {key} changed under {EXEC_ATTEMPTS} runs of the transaction in a row; nothing was applied"
        ))
    }
}

impl Connection {
    /// A transaction of hash or set commands (and the key commands every type has) on one
    /// key: the commands run against a copy of what a read found, then what changed goes out
    /// as one update, so it applies whole or not at all. Concurrent updates through other
    /// nodes merge with it (a hash or set has no single version to compare-and-set), so
    /// `WATCH` is refused for it.
    async fn exec_on_collection(
        &mut self,
        key: ObjectKey,
        multi: Multi,
        watched: Vec<Watched>,
    ) -> Value {
        if !watched.is_empty() {
            return Value::error(format!(
                "EXECABORT Transaction discarded: it watches {key}, and Hydra cannot watch a hash or set (concurrent updates merge instead); nothing was applied"
            ));
        }
        for cmd in &multi.queued {
            let name = String::from_utf8_lossy(&cmd[0]).to_ascii_lowercase();
            let allowed = lookup(&name).is_some_and(|spec| {
                matches!(
                    spec.handler,
                    Handler::Collection(_)
                        | Handler::Del
                        | Handler::Exists
                        | Handler::Type
                        | Handler::Expire { .. }
                        | Handler::Ttl { .. }
                        | Handler::Persist
                        | Handler::Ping
                        | Handler::Echo
                )
            });
            if !allowed {
                return Value::error(format!(
                    "EXECABORT Transaction discarded: {} does not run in a transaction on a hash or set in Hydra; nothing was applied",
                    name.to_uppercase()
                ));
            }
        }
        let original = match self.read_found(&key).await {
            Ok(super::collections::Found::Absent(_)) => None,
            Ok(super::collections::Found::Collection(c)) => Some(c),
            Ok(super::collections::Found::String(..)) => {
                return Value::error(format!(
                    "EXECABORT Transaction discarded: {key} holds a string, and the transaction's hash or set commands would fail; nothing was applied"
                ));
            }
            Err(e) => return e,
        };
        let saved = (self.seen, self.last_receipt.clone());
        let mut overlay = Overlay::new(key.clone(), None, VersionVector::default());
        overlay.collection = Some(super::collection_copy::CollectionCopy::new(original));
        self.overlay = Some(std::sync::Mutex::new(overlay));
        let mut replies = Vec::with_capacity(multi.queued.len());
        for cmd in multi.queued {
            replies.push(Box::pin(self.execute(cmd)).await.0);
        }
        let copy = self.overlay.take().map(|m| match m.into_inner() {
            Ok(o) => o,
            Err(poisoned) => poisoned.into_inner(),
        });
        (self.seen, self.last_receipt) = saved;
        let delta = copy
            .as_ref()
            .and_then(|o| o.collection.as_ref())
            .and_then(super::collection_copy::CollectionCopy::delta);
        if let Some((_, update)) = delta
            && let Err(e) = self.update_collection(key, update).await
        {
            return e;
        }
        Value::Array(replies)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(words: &[&str]) -> Command {
        words.iter().map(|w| w.as_bytes().to_vec()).collect()
    }

    #[test]
    fn a_commands_keys_come_from_its_row() {
        let keys = |words: &[&str]| {
            let c = cmd(words);
            let spec = lookup(&words[0].to_ascii_lowercase()).expect("known");
            command_keys(spec, &c)
                .into_iter()
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(keys(&["GET", "a"]), ["a"]);
        assert_eq!(keys(&["MSET", "a", "1", "b", "2"]), ["a", "b"]);
        assert_eq!(keys(&["DEL", "a", "b", "c"]), ["a", "b", "c"]);
        assert_eq!(keys(&["SET", "a", "1", "EX", "10"]), ["a"]);
        assert!(keys(&["PING"]).is_empty());
    }

    #[test]
    fn the_copy_answers_as_the_core_would_and_writes_back_what_changed() {
        let key = ObjectKey::new(BucketName::new("redis").expect("valid"), b"k").expect("valid");
        let mut copy = Overlay::new(key.clone(), None, VersionVector::default());
        assert!(copy.write_back().is_none(), "nothing written yet");
        let cas = |condition, action| {
            ClientRequest::cas(CasRequest {
                key: key.clone(),
                condition,
                action,
                timeout_ms: None,
                supersedes: None,
            })
        };
        let write = |v: &str, ttl_ms: Option<u64>| CasAction::Write {
            value: v.as_bytes().to_vec(),
            content_type: "text/plain".into(),
            expiry: ttl_ms.map(Expiry::AfterMs),
            keep_ttl: false,
        };
        let applied = |r: Reply| matches!(r, Ok(ClientResponse::Cas { applied: true, .. }));
        assert!(applied(
            copy.answer(cas(Condition::Absent, write("1", None)))
        ));
        assert!(!applied(
            copy.answer(cas(Condition::Absent, write("2", None)))
        ));
        assert!(applied(copy.answer(cas(
            Condition::ValueIs(b"1".to_vec()),
            write("3", Some(60_000))
        ))));
        let other = ObjectKey::new(BucketName::new("redis").expect("valid"), b"x").expect("valid");
        let elsewhere = copy.answer(ClientRequest::Get {
            key: other,
            r: None,
            timeout_ms: None,
            sloppy: None,
        });
        assert!(elsewhere.is_err(), "a key the transaction does not hold");
        match copy.write_back() {
            Some(CasAction::Write {
                value,
                expiry: Some(Expiry::AtMs(at)),
                keep_ttl: false,
                ..
            }) => {
                assert_eq!(value, b"3");
                // Exactly the time the transaction set, whenever it is written back.
                assert_eq!(at, copy.now_ms + 60_000);
            }
            other => panic!("{other:?}"),
        }
        assert!(applied(
            copy.answer(cas(Condition::Present, CasAction::Delete))
        ));
        assert_eq!(copy.write_back(), Some(CasAction::Delete));
    }
}
