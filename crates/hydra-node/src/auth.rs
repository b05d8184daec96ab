//! Client credentials: who a request comes from and what it may do.
//!
//! The admin token (`auth.admin_token`) is an HTTP bearer token with every scope and the
//! password of the Redis protocol's `default` user; a server does not start without it. It
//! is compared by its BLAKE2s digest, so the time a comparison takes says nothing about it.
//! Every other credential (scoped tokens, Redis users) lives in the cluster
//! ([`crate::credentials`]).
//!
//! Scopes are what a [`Principal`] holds: `admin` (everything), `metrics` (`/metrics`,
//! status and ring), `read:<bucket glob>` and `write:<bucket glob>`.
//!
//! Must not: let a request reach the core before its principal is known and allowed.

use anyhow::{Result, bail};
use blake2::{Blake2s256, Digest};

/// The shortest admin token accepted, in bytes.
pub const TOKEN_BYTES_MIN: usize = 16;
/// The Redis protocol's user that `AUTH <password>` logs in as.
pub const DEFAULT_USER: &str = "default";

/// What a principal may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    Admin,
    Metrics,
    /// Read buckets whose names match the glob (`*` and `?`).
    Read(String),
    /// Write buckets whose names match the glob.
    Write(String),
}

impl Scope {
    pub fn parse(s: &str) -> Result<Scope> {
        Ok(match s.split_once(':') {
            None if s == "admin" => Scope::Admin,
            None if s == "metrics" => Scope::Metrics,
            Some(("read", glob)) if !glob.is_empty() => Scope::Read(glob.into()),
            Some(("write", glob)) if !glob.is_empty() => Scope::Write(glob.into()),
            _ => bail!(
                "scope {s:?} is not one of admin, metrics, read:<bucket glob>, write:<bucket glob>"
            ),
        })
    }
}

/// Who a request comes from, once its credential is checked.
#[derive(Clone, Debug)]
pub struct Principal {
    pub name: String,
    pub scopes: Vec<Scope>,
}

impl Principal {
    pub fn is_admin(&self) -> bool {
        self.scopes.contains(&Scope::Admin)
    }

    pub fn may_see_metrics(&self) -> bool {
        self.is_admin() || self.scopes.contains(&Scope::Metrics)
    }

    pub fn may_read(&self, bucket: &str) -> bool {
        self.is_admin()
            || self.scopes.iter().any(|s| match s {
                Scope::Read(g) | Scope::Write(g) => glob(g.as_bytes(), bucket.as_bytes()),
                _ => false,
            })
    }

    pub fn may_write(&self, bucket: &str) -> bool {
        self.is_admin()
            || self.scopes.iter().any(|s| match s {
                Scope::Write(g) => glob(g.as_bytes(), bucket.as_bytes()),
                _ => false,
            })
    }
}

/// `*` matches any run of bytes, `?` one byte.
fn glob(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == name[n]) {
            p += 1;
            n += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, n));
            p += 1;
        } else if let Some((sp, sn)) = star {
            p = sp + 1;
            n = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

fn digest(secret: &[u8]) -> [u8; 32] {
    let mut h = Blake2s256::new();
    h.update(b"hydra credential v1\0");
    h.update(secret);
    h.finalize().into()
}

/// The node's credentials.
pub struct Auth {
    admin: [u8; 32],
    /// The cluster's tokens and users (`None` in unit tests of the front ends).
    stored: Option<crate::credentials::Credentials>,
}

/// Why a request was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Denied {
    /// No credential, or one that matches nothing (401, `-WRONGPASS`).
    Unauthenticated(&'static str),
    /// A valid credential without the scope (403, `-NOPERM`).
    Forbidden(String),
}

impl Auth {
    pub fn new(admin_token: &str, stored: Option<crate::credentials::Credentials>) -> Result<Auth> {
        check_token("auth.admin_token", admin_token)?;
        Ok(Auth {
            admin: digest(admin_token.as_bytes()),
            stored,
        })
    }

    /// The cluster's tokens and users.
    pub fn stored(&self) -> Option<&crate::credentials::Credentials> {
        self.stored.as_ref()
    }

    /// The principal a bearer token names.
    pub async fn bearer(&self, token: &str) -> Result<Principal, Denied> {
        if digest(token.as_bytes()) == self.admin {
            return Ok(admin());
        }
        if let Some(stored) = &self.stored
            && let Some(p) = stored.bearer(token).await
        {
            return Ok(p);
        }
        Err(Denied::Unauthenticated("the token is not valid"))
    }

    /// The principal of a Redis-protocol `AUTH user password`.
    pub async fn login(&self, user: &[u8], password: &[u8]) -> Option<Principal> {
        if user == DEFAULT_USER.as_bytes() {
            return (digest(password) == self.admin).then(|| Principal {
                name: DEFAULT_USER.into(),
                scopes: vec![Scope::Admin],
            });
        }
        let user = std::str::from_utf8(user).ok()?;
        self.stored.as_ref()?.login(user, password).await
    }
}

fn admin() -> Principal {
    Principal {
        name: "admin".into(),
        scopes: vec![Scope::Admin],
    }
}

/// Checks a token's strength; the error names the setting.
pub fn check_token(name: &str, token: &str) -> Result<()> {
    if token.len() < TOKEN_BYTES_MIN {
        bail!(
            "{name} is {} bytes long; it must be at least {TOKEN_BYTES_MIN} (`hydra secret` makes one)",
            token.len()
        );
    }
    if token.bytes().any(|b| !b.is_ascii_graphic()) {
        bail!("{name} must be printable ASCII without spaces (it travels in HTTP headers)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_and_globs_match() {
        assert_eq!(Scope::parse("admin").expect("valid"), Scope::Admin);
        assert_eq!(
            Scope::parse("read:app-*").expect("valid"),
            Scope::Read("app-*".into())
        );
        assert!(Scope::parse("read:").is_err());
        assert!(Scope::parse("root").is_err());
        let p = Principal {
            name: "t".into(),
            scopes: vec![Scope::Read("app-*".into()), Scope::Write("logs".into())],
        };
        assert!(p.may_read("app-1") && p.may_read("logs") && !p.may_read("other"));
        assert!(p.may_write("logs") && !p.may_write("app-1") && !p.may_write("logs2"));
        assert!(!p.is_admin() && !p.may_see_metrics());
    }

    #[tokio::test]
    async fn only_the_admin_token_is_accepted() {
        let auth = Auth::new("0123456789abcdef0123", None).expect("valid");
        let admin = auth.bearer("0123456789abcdef0123").await;
        assert!(admin.is_ok_and(|p| p.is_admin()));
        assert!(auth.bearer("0123456789abcdef0124").await.is_err());
        assert!(auth.bearer("").await.is_err());
        let token = b"0123456789abcdef0123";
        assert!(auth.login(b"default", token).await.is_some());
        assert!(auth.login(b"admin", token).await.is_none());
        assert!(auth.login(b"default", b"nope").await.is_none());
        assert!(Auth::new("short", None).is_err());
        assert!(Auth::new("has a space in it, long enough", None).is_err());
    }
}
