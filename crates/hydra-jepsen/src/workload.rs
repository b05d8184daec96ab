//! The set workload: each key holds a set of unique elements; an `add` reads the key,
//! merges its siblings (union), adds one element and writes back with the read's context.
//! In a `siblings` bucket concurrent adds become siblings and the next add merges them, so
//! no acknowledged add may be lost; in an `lww` bucket concurrent adds overwrite each other,
//! and the loss is what the run measures.

use crate::history::Kind;
use base64::Engine;
use hydra_client::{Client, Error, KvResponse};
use std::collections::BTreeSet;

pub type Set = BTreeSet<u64>;

/// Parses one stored value: comma-separated decimal elements.
fn parse_value(bytes: &[u8]) -> Set {
    String::from_utf8_lossy(bytes)
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

fn encode_set(set: &Set) -> Vec<u8> {
    set.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(",")
        .into_bytes()
}

/// The union of every sibling of a read (empty for 404).
pub fn read_set(r: &KvResponse) -> Set {
    match r.status {
        200 => parse_value(&r.body),
        300 => r
            .json()
            .and_then(|j| j["siblings"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|s| s["value_base64"].as_str())
            .filter_map(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .flat_map(|v| parse_value(&v))
            .collect(),
        _ => Set::new(),
    }
}

/// How a failed request counts: `fail` only when nothing can have been written.
pub fn classify(e: &Error) -> Kind {
    match e {
        Error::Unreachable { source, .. } => {
            let text = source.to_string().to_lowercase();
            if text.contains("refused") {
                Kind::Fail
            } else {
                Kind::Info
            }
        }
        Error::Api {
            status, code, body, ..
        } => match (*status, code.as_str()) {
            (400..=499, _) => Kind::Fail,
            // Refused before anything was written.
            (503, "overloaded" | "clock_skew") => Kind::Fail,
            (503, "quorum_not_reached") => {
                // Refused up front: no replica acked and every failure is a replica the
                // coordinator believed down (so it wrote nothing, not even locally).
                let acked = body["acked"].as_u64().unwrap_or(1);
                let failures = body["failures"].as_array().cloned().unwrap_or_default();
                let all_down = !failures.is_empty()
                    && failures.iter().all(|f| {
                        f["reason"]
                            .as_str()
                            .is_some_and(|r| r.starts_with("believed down"))
                    });
                if acked == 0 && all_down {
                    Kind::Fail
                } else {
                    Kind::Info
                }
            }
            _ => Kind::Info,
        },
    }
}

/// Reads `key` at consistency `r`.
pub fn read(client: &Client, bucket: &str, key: &str, r: &str) -> Result<Set, Error> {
    client
        .get(bucket, key, &[("r", r)])
        .map(|resp| read_set(&resp))
}

/// Adds `element` to `key`'s set: read at quorum, union, write with the context at quorum.
pub fn add(client: &Client, bucket: &str, key: &str, element: u64) -> Result<(), (Kind, String)> {
    let resp = client
        .get(bucket, key, &[("r", "quorum")])
        // A failed read wrote nothing: the add certainly did not happen.
        .map_err(|e| (Kind::Fail, format!("read: {e}")))?;
    let mut set = read_set(&resp);
    set.insert(element);
    client
        .put(
            bucket,
            key,
            &encode_set(&set),
            "text/plain",
            resp.context.as_deref(),
            &[("w", "quorum")],
        )
        .map(|_| ())
        .map_err(|e| (classify(&e), format!("write: {e}")))
}
