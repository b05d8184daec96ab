//! The cluster's credentials: scoped bearer tokens and Redis-protocol users, stored inside
//! the cluster and cached briefly on every node.
//!
//! ```text
//! bucket `_system` (lww, reserved: no client reaches it), key `credentials`:
//!   {"tokens": {id: {name, hash, scopes, created_ms}}, "users": {name: {password, scopes}}}
//! ```
//!
//! The table is one value, changed only by compare-and-set through Paxos (a serial read,
//! then a write conditional on the bytes read, retried when another change won), so two
//! admins adding tokens at once both succeed. A token is `hyd_<id>_<secret>`: the table keeps
//! the BLAKE2s digest of the secret (256 random bits need no slow hash); a user's password is
//! kept as an argon2id hash. Every node reads the table with a serial read and keeps it for
//! [`CACHE_MS`]: a revoked token or a removed user stops working on every node within that;
//! a token id the cache does not know refreshes it at most once per [`MISS_REFRESH_MS`],
//! so a flood of invented tokens costs one read a second.
//!
//! Must not: keep or log a secret or a password in clear; let a client read or write
//! `_system` through the key-value routes or commands.

use crate::auth::{Principal, Scope};
use crate::driver::CoreHandle;
use anyhow::{Context as _, Result, anyhow, bail};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use blake2::{Blake2s256, Digest};
use hydra_core::key::{BucketName, ObjectKey};
use hydra_core::message::{CasAction, CasRequest, ClientRequest, ClientResponse, ErrorCode};
use hydra_core::paxos::Condition;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The reserved bucket holding the credentials table (created on every node).
pub const SYSTEM_BUCKET: &str = "_system";
const TABLE_KEY: &[u8] = b"credentials";
/// How long a node keeps the table before reading it again.
pub const CACHE_MS: u64 = 5_000;
/// A token id or user the cached table lacks refreshes it at most this often.
pub const MISS_REFRESH_MS: u64 = 1_000;
/// Tokens the table holds at most.
pub const TOKENS_MAX: usize = 1_000;
/// Users the table holds at most.
pub const USERS_MAX: usize = 1_000;
/// Scopes per token or user at most.
pub const SCOPES_MAX: usize = 32;
/// Longest token name, user name or password, in bytes.
pub const NAME_BYTES_MAX: usize = 128;
pub const PASSWORD_BYTES_MAX: usize = 512;
/// Compare-and-set attempts of one change before it gives up.
const CHANGE_ATTEMPTS: usize = 8;

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Table {
    #[serde(default)]
    pub tokens: BTreeMap<String, TokenRecord>,
    #[serde(default)]
    pub users: BTreeMap<String, UserRecord>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TokenRecord {
    pub name: String,
    /// Hex BLAKE2s digest of the token's secret part.
    pub hash: String,
    pub scopes: Vec<String>,
    pub created_ms: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct UserRecord {
    /// argon2id PHC string.
    pub password: String,
    pub scopes: Vec<String>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn secret_digest(secret: &str) -> String {
    let mut h = Blake2s256::new();
    h.update(b"hydra token v1\0");
    h.update(secret.as_bytes());
    hex(&h.finalize())
}

fn random_hex(bytes: usize) -> Result<String> {
    let mut b = vec![0u8; bytes];
    getrandom::getrandom(&mut b).map_err(|e| anyhow!("reading the OS's random source: {e}"))?;
    Ok(hex(&b))
}

/// Splits `hyd_<id>_<secret>`.
pub fn parse_token(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix("hyd_")?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 16
        && secret.len() == 64
        && id
            .bytes()
            .chain(secret.bytes())
            .all(|b| b.is_ascii_hexdigit()))
    .then_some((id, secret))
}

fn parse_scopes(scopes: &[String]) -> Result<Vec<Scope>> {
    if scopes.is_empty() || scopes.len() > SCOPES_MAX {
        bail!("give 1 to {SCOPES_MAX} scopes");
    }
    scopes.iter().map(|s| Scope::parse(s)).collect()
}

fn check_name(what: &str, name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > NAME_BYTES_MAX
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@'))
    {
        bail!(
            "{what} {name:?} must be 1 to {NAME_BYTES_MAX} bytes of letters, digits, '-', '_', '.', '@'"
        );
    }
    Ok(())
}

/// A new token and its record.
pub fn new_token(
    name: &str,
    scopes: &[String],
    now_ms: u64,
) -> Result<(String, String, TokenRecord)> {
    check_name("a token's name", name)?;
    parse_scopes(scopes)?;
    let id = random_hex(8)?;
    let secret = random_hex(32)?;
    let record = TokenRecord {
        name: name.into(),
        hash: secret_digest(&secret),
        scopes: scopes.to_vec(),
        created_ms: now_ms,
    };
    Ok((id.clone(), format!("hyd_{id}_{secret}"), record))
}

/// A user's record, the password hashed with argon2id.
pub fn new_user(name: &str, password: &str, scopes: &[String]) -> Result<UserRecord> {
    check_name("a user's name", name)?;
    if name == crate::auth::DEFAULT_USER {
        bail!("`default` is the admin token's user; pick another name");
    }
    if password.len() < 8 || password.len() > PASSWORD_BYTES_MAX {
        bail!("a password is 8 to {PASSWORD_BYTES_MAX} bytes");
    }
    parse_scopes(scopes)?;
    let mut salt = [0u8; 16];
    getrandom::getrandom(&mut salt).map_err(|e| anyhow!("reading the OS's random source: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow!("salt: {e}"))?;
    let hash = argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow!("hashing the password: {e}"))?
        .to_string();
    Ok(UserRecord {
        password: hash,
        scopes: scopes.to_vec(),
    })
}

struct Cache {
    /// Shared, so a lookup costs no copy of the table.
    table: std::sync::Arc<Table>,
    fetched: Option<Instant>,
    last_miss_refresh: Option<Instant>,
    /// Users whose password was verified lately: digest of the password, when.
    verified: BTreeMap<String, ([u8; 32], Instant)>,
}

/// The node's view of the credentials table.
pub struct Credentials {
    core: CoreHandle,
    cache: tokio::sync::Mutex<()>,
    state: Mutex<Cache>,
}

impl Credentials {
    pub fn new(core: CoreHandle) -> Credentials {
        Credentials {
            core,
            cache: tokio::sync::Mutex::new(()),
            state: Mutex::new(Cache {
                table: std::sync::Arc::new(Table::default()),
                fetched: None,
                last_miss_refresh: None,
                verified: BTreeMap::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn key() -> ObjectKey {
        ObjectKey::new(
            BucketName::new(SYSTEM_BUCKET).expect("a valid name"),
            TABLE_KEY,
        )
        .expect("a valid key")
    }

    /// A serial read of the table: its bytes (`None`: no table yet).
    async fn read(&self) -> Result<Option<Vec<u8>>> {
        let reply = self
            .core
            .request(ClientRequest::cas(CasRequest {
                key: Self::key(),
                condition: Condition::Always,
                action: CasAction::Read,
                timeout_ms: None,
                supersedes: None,
            }))
            .await
            .map_err(|e| {
                anyhow!(
                    "reading the credentials table: {}: {}",
                    e.code.as_str(),
                    e.message
                )
            })?;
        match reply {
            ClientResponse::Cas { siblings, .. } => {
                Ok(siblings.into_iter().find(|s| !s.tombstone).map(|s| s.value))
            }
            _ => bail!("unexpected reply reading the credentials table"),
        }
    }

    /// The table, read again if the cached one is older than [`CACHE_MS`] (or `force`).
    async fn table(&self, force: bool) -> Result<std::sync::Arc<Table>> {
        let fresh = |c: &Cache| {
            c.fetched
                .is_some_and(|t| t.elapsed() < Duration::from_millis(CACHE_MS))
        };
        {
            let c = self.lock();
            if !force && fresh(&c) {
                return Ok(c.table.clone());
            }
        }
        // One refresh at a time; those that arrived while it ran take its result.
        let arrived = Instant::now();
        let _one = self.cache.lock().await;
        {
            let c = self.lock();
            if c.fetched.is_some_and(|t| t >= arrived) || (!force && fresh(&c)) {
                return Ok(c.table.clone());
            }
        }
        let table: Table = match self.read().await? {
            Some(bytes) => serde_json::from_slice(&bytes).context("the credentials table")?,
            None => Table::default(),
        };
        let table = std::sync::Arc::new(table);
        let mut c = self.lock();
        c.table = table.clone();
        c.fetched = Some(Instant::now());
        Ok(table)
    }

    /// May a lookup that missed refresh the table now?
    fn may_refresh_on_miss(&self) -> bool {
        let mut c = self.lock();
        let due = c
            .last_miss_refresh
            .is_none_or(|t| t.elapsed() >= Duration::from_millis(MISS_REFRESH_MS));
        if due {
            c.last_miss_refresh = Some(Instant::now());
        }
        due
    }

    /// The principal of a `hyd_...` bearer token, if it is one the table holds.
    pub async fn bearer(&self, token: &str) -> Option<Principal> {
        let (id, secret) = parse_token(token)?;
        let mut table = self.table(false).await.ok()?;
        if !table.tokens.contains_key(id) && self.may_refresh_on_miss() {
            table = self.table(true).await.ok()?;
        }
        let record = table.tokens.get(id)?;
        if record.hash != secret_digest(secret) {
            return None;
        }
        Some(Principal {
            name: format!("token {} ({id})", record.name),
            scopes: parse_scopes(&record.scopes).ok()?,
        })
    }

    /// The principal of a Redis-protocol user, if the password is right.
    pub async fn login(&self, user: &str, password: &[u8]) -> Option<Principal> {
        let mut table = self.table(false).await.ok()?;
        if !table.users.contains_key(user) && self.may_refresh_on_miss() {
            table = self.table(true).await.ok()?;
        }
        let record = table.users.get(user)?.clone();
        let digest: [u8; 32] = Blake2s256::digest(password).into();
        let remembered = {
            let c = self.lock();
            c.verified.get(user).is_some_and(|(d, at)| {
                *d == digest && at.elapsed() < Duration::from_millis(CACHE_MS)
            })
        };
        if !remembered {
            let (hash, password) = (record.password.clone(), password.to_vec());
            let ok = tokio::task::spawn_blocking(move || {
                PasswordHash::new(&hash).is_ok_and(|h| {
                    argon2::Argon2::default()
                        .verify_password(&password, &h)
                        .is_ok()
                })
            })
            .await
            .unwrap_or(false);
            if !ok {
                return None;
            }
            let mut c = self.lock();
            if c.verified.len() >= USERS_MAX {
                c.verified.clear();
            }
            c.verified
                .insert(user.to_string(), (digest, Instant::now()));
        }
        Some(Principal {
            name: user.to_string(),
            scopes: parse_scopes(&record.scopes).ok()?,
        })
    }

    /// The table as it is now (a serial read).
    pub async fn current(&self) -> Result<std::sync::Arc<Table>> {
        self.table(true).await
    }

    /// Changes the table by compare-and-set: `change` edits a copy of the current table
    /// (and may refuse); retried when another change won the race.
    pub async fn change<T>(&self, mut change: impl FnMut(&mut Table) -> Result<T>) -> Result<T> {
        for _ in 0..CHANGE_ATTEMPTS {
            let old = self.read().await?;
            let mut table: Table = match &old {
                Some(bytes) => serde_json::from_slice(bytes).context("the credentials table")?,
                None => Table::default(),
            };
            let result = change(&mut table)?;
            if table.tokens.len() > TOKENS_MAX || table.users.len() > USERS_MAX {
                bail!(
                    "the credentials table holds at most {TOKENS_MAX} tokens and {USERS_MAX} users"
                );
            }
            let bytes = serde_json::to_vec(&table)?;
            let condition = match old {
                Some(old) => Condition::ValueIs(old),
                None => Condition::Absent,
            };
            let reply = self
                .core
                .request(ClientRequest::cas(CasRequest {
                    key: Self::key(),
                    condition,
                    action: CasAction::Write {
                        value: bytes,
                        content_type: "application/json".into(),
                        expiry: None,
                        keep_ttl: false,
                    },
                    timeout_ms: None,
                    supersedes: None,
                }))
                .await;
            match reply {
                Ok(ClientResponse::Cas { applied: true, .. }) => {
                    let mut c = self.lock();
                    c.table = std::sync::Arc::new(table);
                    c.fetched = Some(Instant::now());
                    c.verified.clear();
                    return Ok(result);
                }
                Ok(ClientResponse::Cas { applied: false, .. }) => continue,
                Err(e) if e.code == ErrorCode::CasContention => continue,
                Err(e) => bail!(
                    "changing the credentials table: {}: {}",
                    e.code.as_str(),
                    e.message
                ),
                Ok(_) => bail!("unexpected reply changing the credentials table"),
            }
        }
        bail!("the credentials table kept changing under this change; try again")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_parse_and_hash() {
        let (id, token, record) = new_token("ci", &["read:app-*".into()], 1).expect("valid");
        assert_eq!(parse_token(&token).map(|(i, _)| i), Some(id.as_str()));
        let (_, secret) = parse_token(&token).expect("parses");
        assert_eq!(secret_digest(secret), record.hash);
        assert!(!token.contains(&record.hash));
        assert!(parse_token("hyd_short_x").is_none());
        assert!(parse_token("Bearer x").is_none());
        assert!(new_token("ci", &[], 1).is_err());
        assert!(new_token("bad name", &["admin".into()], 1).is_err());
        assert!(new_token("ci", &["root".into()], 1).is_err());
    }

    #[test]
    fn user_passwords_are_argon2id() {
        let u = new_user("app", "correct horse", &["write:app".into()]).expect("valid");
        assert!(u.password.starts_with("$argon2id$"), "{}", u.password);
        let h = PasswordHash::new(&u.password).expect("phc");
        assert!(
            argon2::Argon2::default()
                .verify_password(b"correct horse", &h)
                .is_ok()
        );
        assert!(
            argon2::Argon2::default()
                .verify_password(b"wrong", &h)
                .is_err()
        );
        assert!(new_user("default", "correct horse", &["admin".into()]).is_err());
        assert!(new_user("app", "short", &["admin".into()]).is_err());
    }
}
