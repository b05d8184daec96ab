//! Listing the connection's bucket: `SCAN`, `KEYS`, `RANDOMKEY`, over the whole cluster.
//!
//! Each goes through the core's listing (`node/scan.rs`): one page of one partition at a
//! time, read from the partition's replicas and merged, deleted and expired keys left out.
//! Redis's guarantee holds: a key present for the whole of a `SCAN` is returned at least
//! once (here exactly once, unless a replica's answer changed between two pages).
//!
//! A `SCAN` cursor is a number, as clients expect, that names a position (partition and
//! last key) this node keeps for [`SCAN_CURSOR_TTL`]; a cursor from another node, or one
//! forgotten, answers `-ERR invalid cursor`. At most [`SCAN_CURSORS_MAX`] are kept (the
//! oldest go first).

use super::*;
use commands::redis_integer;
use hydra_core::collection::CollectionKind;
use hydra_core::limits::SCAN_PAGE_KEYS_MAX;
use hydra_core::message::{ListCursor, ListRequest};
use std::collections::BTreeMap;
use std::time::Duration;

/// How long a node keeps a `SCAN` cursor after it was handed out.
pub(super) const SCAN_CURSOR_TTL: Duration = Duration::from_secs(600);
/// `SCAN` cursors one node keeps at most.
pub(super) const SCAN_CURSORS_MAX: usize = 100_000;
/// Pages one `SCAN` call reads at most before it answers (an empty bucket of many partitions
/// answers in several calls, each bounded).
const SCAN_PAGES_PER_CALL: usize = 1_024;
/// Partitions whose first pages one `SCAN` asks for at once.
const SCAN_PARTITIONS_AT_ONCE: u32 = 32;
/// Longest `MATCH` pattern, in bytes.
const PATTERN_BYTES_MAX: usize = 1024;

/// One partition's page of a listing (see `ClientResponse::Keys`).
struct Page {
    keys: Vec<Vec<u8>>,
    kinds: Vec<Option<CollectionKind>>,
    next: Option<ListCursor>,
    expiring: u64,
    ttl_sum_ms: u64,
}

/// The positions of `SCAN`s in progress, by cursor number.
pub struct ScanCursors {
    next: u64,
    kept: BTreeMap<u64, (BucketName, ListCursor, Instant)>,
}

impl Default for ScanCursors {
    fn default() -> Self {
        // Numbers start from the clock, so a cursor from before a restart is unlikely to
        // name a new position.
        ScanCursors {
            next: crate::driver::wall_ms().max(1),
            kept: BTreeMap::new(),
        }
    }
}

impl ScanCursors {
    fn keep(&mut self, bucket: BucketName, cursor: ListCursor) -> u64 {
        let now = Instant::now();
        while self.kept.len() >= SCAN_CURSORS_MAX {
            self.kept.pop_first();
        }
        while self
            .kept
            .first_key_value()
            .is_some_and(|(_, (_, _, at))| now.duration_since(*at) > SCAN_CURSOR_TTL)
        {
            self.kept.pop_first();
        }
        self.next = self.next.wrapping_add(1).max(1);
        self.kept.insert(self.next, (bucket, cursor, now));
        self.next
    }

    fn take(&mut self, id: u64, bucket: &BucketName) -> Option<ListCursor> {
        match self.kept.remove(&id) {
            Some((b, cursor, at)) if b == *bucket && at.elapsed() <= SCAN_CURSOR_TTL => {
                Some(cursor)
            }
            _ => None,
        }
    }
}

/// A random number (std's randomly seeded hasher: no generator to keep).
fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

/// Redis's glob (`stringmatchlen`): `*`, `?`, `[abc]`, `[^a-z]`, `\x`; iterative, one
/// backtrack point, so linear in practice.
pub(super) fn glob(pattern: &[u8], text: &[u8]) -> bool {
    // One element of the pattern at `p`: whether it matches byte `c`, and its length.
    fn element(pattern: &[u8], p: usize, c: u8) -> (bool, usize) {
        match pattern[p] {
            b'?' => (true, 1),
            b'\\' if p + 1 < pattern.len() => (pattern[p + 1] == c, 2),
            b'[' => {
                let mut i = p + 1;
                let negate = pattern.get(i) == Some(&b'^');
                if negate {
                    i += 1;
                }
                let mut matched = false;
                while i < pattern.len() && pattern[i] != b']' {
                    if pattern[i] == b'\\' && i + 1 < pattern.len() {
                        matched |= pattern[i + 1] == c;
                        i += 2;
                    } else if i + 2 < pattern.len()
                        && pattern[i + 1] == b'-'
                        && pattern[i + 2] != b']'
                    {
                        let (a, b) = (
                            pattern[i].min(pattern[i + 2]),
                            pattern[i].max(pattern[i + 2]),
                        );
                        matched |= (a..=b).contains(&c);
                        i += 3;
                    } else {
                        matched |= pattern[i] == c;
                        i += 1;
                    }
                }
                // An unclosed class runs to the end of the pattern, as in Redis.
                let len = (i + 1).min(pattern.len()) - p;
                (matched != negate, len.max(1))
            }
            other => (other == c, 1),
        }
    }
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            while p < pattern.len() && pattern[p] == b'*' {
                p += 1;
            }
            star = Some((p, t));
            continue;
        }
        if p < pattern.len() {
            let (ok, len) = element(pattern, p, text[t]);
            if ok {
                p += len;
                t += 1;
                continue;
            }
        }
        match star {
            Some((sp, st)) => {
                p = sp;
                t = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

impl Connection {
    /// The layout's partition count (fixed for the node's life), asked of the core once.
    async fn partitions(&self) -> Result<u32, Value> {
        if let Some(n) = self.state.partitions.get() {
            return Ok(*n);
        }
        match self.state.core.status().await {
            Some((status, _)) => Ok(*self.state.partitions.get_or_init(|| status.partitions)),
            None => Err(Value::error("OVERLOADED the node did not answer")),
        }
    }

    fn list_request(&self, cursor: ListCursor, limit: usize) -> ClientRequest {
        ClientRequest::List(ListRequest {
            bucket: self.bucket.clone(),
            cursor,
            limit: limit.clamp(1, SCAN_PAGE_KEYS_MAX) as u32,
            r: self.r,
            timeout_ms: None,
        })
    }

    /// One page of the connection's bucket from `cursor`.
    async fn list_page(
        &mut self,
        cursor: ListCursor,
        limit: usize,
    ) -> Result<(Vec<Vec<u8>>, Option<ListCursor>), Value> {
        match self.request(self.list_request(cursor, limit)).await? {
            ClientResponse::Keys { keys, next, .. } => Ok((keys, next)),
            _ => Err(Value::error("INTERNAL unexpected reply to a listing")),
        }
    }

    /// `SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]`.
    pub(super) async fn scan(&mut self, args: &[Vec<u8>]) -> Value {
        let Some(id) = std::str::from_utf8(&args[0])
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
        else {
            return Value::error("ERR invalid cursor");
        };
        let mut pattern: Option<Vec<u8>> = None;
        let mut count = 10usize;
        // `TYPE`: the type's name (`string`, `hash`, `set`); another lists nothing.
        let mut of_type: Option<Vec<u8>> = None;
        let mut i = 1;
        while i < args.len() {
            let Some(value) = args.get(i + 1) else {
                return Value::error("ERR syntax error");
            };
            match args[i].to_ascii_lowercase().as_slice() {
                b"match" => {
                    if value.len() > PATTERN_BYTES_MAX {
                        return Value::error(format!(
                            "ERR a MATCH pattern is at most {PATTERN_BYTES_MAX} bytes"
                        ));
                    }
                    pattern = Some(value.clone());
                }
                b"count" => match redis_integer(value) {
                    Some(n) if n >= 1 => count = n as usize,
                    Some(_) => return Value::error("ERR syntax error"),
                    None => return Value::error("ERR value is not an integer or out of range"),
                },
                b"type" => of_type = Some(value.to_ascii_lowercase()),
                _ => return Value::error("ERR syntax error"),
            }
            i += 2;
        }
        let mut cursor = if id == 0 {
            Some(ListCursor::default())
        } else {
            let taken = match self.state.scan_cursors.lock() {
                Ok(mut c) => c.take(id, &self.bucket),
                Err(_) => None,
            };
            match taken {
                Some(c) => Some(c),
                None => return Value::error("ERR invalid cursor"),
            }
        };
        let mut found = Vec::new();
        let mut examined = 0;
        let mut pages = 0;
        while let Some(at) = cursor.take() {
            let want = count.saturating_sub(examined).max(1);
            let batch = match self.list_from(at, want).await {
                Ok(b) => b,
                Err(e) => return e,
            };
            for page in batch {
                pages += 1;
                examined += page.keys.len();
                let type_of = |kind: &Option<CollectionKind>| {
                    kind.map_or("string", |k| k.name()).as_bytes().to_vec()
                };
                found.extend(
                    page.keys
                        .into_iter()
                        .zip(page.kinds.iter())
                        .filter(|(_, kind)| of_type.as_ref().is_none_or(|t| *t == type_of(kind)))
                        .map(|(k, _)| k)
                        .filter(|k| pattern.as_deref().is_none_or(|p| glob(p, k))),
                );
                cursor = page.next;
            }
            if examined >= count || pages >= SCAN_PAGES_PER_CALL {
                break;
            }
        }
        let next_id = match cursor {
            None => 0,
            Some(c) => match self.state.scan_cursors.lock() {
                Ok(mut cursors) => cursors.keep(self.bucket.clone(), c),
                Err(_) => return Value::error("ERR the cursor table is unavailable"),
            },
        };
        Value::Array(vec![
            Value::Bulk(next_id.to_string().into_bytes()),
            Value::Array(found.into_iter().map(Value::Bulk).collect()),
        ])
    }

    /// The bucket's keys over the whole cluster: how many, how many have a TTL, and their
    /// mean remaining TTL in ms (`DBSIZE`, `INFO keyspace`). Exact as of each partition's
    /// page; as expensive as a listing (every partition is read).
    pub(super) async fn count_bucket(&mut self) -> Result<(u64, u64, u64), Value> {
        let (mut keys, mut expiring, mut ttl_sum) = (0u64, 0u64, 0u64);
        let mut cursor = Some(ListCursor::default());
        while let Some(at) = cursor.take() {
            for page in self.list_from(at, SCAN_PAGE_KEYS_MAX).await? {
                keys += page.keys.len() as u64;
                expiring += page.expiring;
                ttl_sum = ttl_sum.saturating_add(page.ttl_sum_ms);
                cursor = page.next;
            }
        }
        Ok((keys, expiring, ttl_sum.checked_div(expiring).unwrap_or(0)))
    }

    /// The pages of a listing from `at`, in order: at a partition's start, the first pages
    /// of the next [`SCAN_PARTITIONS_AT_ONCE`] partitions at once (a sparse bucket costs one
    /// round of requests per batch, not one per partition), up to the first partition that
    /// has more keys (the rest of the batch lies past it and is dropped).
    async fn list_from(&mut self, at: ListCursor, limit: usize) -> Result<Vec<Page>, Value> {
        let batch: Vec<ListCursor> = if at.after.is_none() {
            let partitions = self.partitions().await?;
            (at.partition..partitions.min(at.partition + SCAN_PARTITIONS_AT_ONCE))
                .map(|partition| ListCursor {
                    partition,
                    after: None,
                })
                .collect()
        } else {
            vec![at]
        };
        let requests = batch
            .iter()
            .map(|c| self.list_request(c.clone(), limit))
            .collect();
        let mut pages = Vec::new();
        for result in self.call_all(requests).await {
            match result {
                Ok(ClientResponse::Keys {
                    keys,
                    kinds,
                    next,
                    expiring,
                    ttl_sum_ms,
                }) => {
                    let more_here = next.as_ref().is_some_and(|n| n.after.is_some());
                    pages.push(Page {
                        keys,
                        kinds,
                        next,
                        expiring,
                        ttl_sum_ms,
                    });
                    if more_here {
                        break;
                    }
                }
                Ok(_) => return Err(Value::error("INTERNAL unexpected reply to a listing")),
                Err(e) => return Err(error_value(&e)),
            }
        }
        Ok(pages)
    }

    /// `FLUSHDB [ASYNC|SYNC]`, `FLUSHALL [ASYNC|SYNC]`: truncate the connection's bucket over
    /// the whole cluster (one mark, no tombstone per key; see the core's `truncate.rs`).
    /// Either way it answers once every node took the mark; the disk space comes back as
    /// each node's purge runs.
    pub(super) async fn flush(&mut self, args: &[Vec<u8>]) -> Value {
        if args.len() > 1
            || args.first().is_some_and(|a| {
                !a.eq_ignore_ascii_case(b"async") && !a.eq_ignore_ascii_case(b"sync")
            })
        {
            return Value::error("ERR syntax error");
        }
        let request = ClientRequest::Truncate {
            bucket: self.bucket.clone(),
            timeout_ms: None,
        };
        match self.request(request).await {
            Ok(_) => Value::ok(),
            Err(e) => e,
        }
    }

    /// `KEYS pattern`: every key of the bucket that matches, over the whole cluster (as in
    /// Redis, expensive: it reads every partition); within the reply budget.
    pub(super) async fn keys(&mut self, args: &[Vec<u8>]) -> Value {
        let pattern = &args[0];
        if pattern.len() > PATTERN_BYTES_MAX {
            return Value::error(format!(
                "ERR a pattern is at most {PATTERN_BYTES_MAX} bytes"
            ));
        }
        let budget = self.state.reply_bytes_max;
        let mut bytes = 0usize;
        let mut found = Vec::new();
        let mut cursor = Some(ListCursor::default());
        while let Some(at) = cursor.take() {
            let (keys, next) = match self.list_page(at, SCAN_PAGE_KEYS_MAX).await {
                Ok(page) => page,
                Err(e) => return e,
            };
            for k in keys.into_iter().filter(|k| glob(pattern, k)) {
                bytes += k.len() + 16;
                if bytes > budget {
                    return Value::error(format!(
                        "ERR KEYS would answer more than {budget} bytes (limits.resp_reply_bytes_max); use SCAN"
                    ));
                }
                found.push(Value::Bulk(k));
            }
            cursor = next;
        }
        Value::Array(found)
    }

    /// `RANDOMKEY`: a key of the bucket, from a page of a random partition (the first one
    /// with keys from there on, wrapping around); nil when the bucket is empty.
    pub(super) async fn randomkey(&mut self) -> Value {
        let partitions = match self.partitions().await {
            Ok(n) => n.max(1),
            Err(e) => return e,
        };
        let start = (random() % u64::from(partitions)) as u32;
        let mut cursor = ListCursor {
            partition: start,
            after: None,
        };
        let mut wrapped = false;
        loop {
            let (keys, next) = match self.list_page(cursor.clone(), SCAN_PAGE_KEYS_MAX).await {
                Ok(page) => page,
                Err(e) => return e,
            };
            if !keys.is_empty() {
                let pick = (random() % keys.len() as u64) as usize;
                return Value::Bulk(keys[pick].clone());
            }
            cursor = match next {
                Some(n) => n,
                None if !wrapped => {
                    wrapped = true;
                    ListCursor::default()
                }
                None => return Value::Null,
            };
            if wrapped && cursor.partition >= start && cursor.after.is_none() {
                return Value::Null;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn glob_matches_as_redis_does() {
        let yes = |p: &str, t: &str| assert!(glob(p.as_bytes(), t.as_bytes()), "{p} ~ {t}");
        let no = |p: &str, t: &str| assert!(!glob(p.as_bytes(), t.as_bytes()), "{p} !~ {t}");
        yes("*", "");
        yes("*", "anything");
        yes("h?llo", "hello");
        yes("h*llo", "heeeello");
        yes("h[ae]llo", "hallo");
        no("h[ae]llo", "hillo");
        yes("h[^e]llo", "hallo");
        no("h[^e]llo", "hello");
        yes("h[a-b]llo", "hbllo");
        yes("user:*:name", "user:42:name");
        no("user:*:name", "user:42:mail");
        yes("a\\*b", "a*b");
        no("a\\*b", "axb");
        yes("*a*b*", "xxaxxbxx");
        no("*a*b*", "xxbxxaxx");
        no("abc", "ab");
        no("ab", "abc");
    }
}
