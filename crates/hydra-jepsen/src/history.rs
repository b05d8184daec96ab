//! The history: every client operation as Jepsen records it (an `invoke`, then `ok`, `fail`
//! or `info`), and the nemesis's fault windows. Written as JSON lines.
//!
//! Meanings, as in Jepsen: `ok` took effect; `fail` certainly did not (the request was
//! refused before anything was written); `info` is indeterminate (a timeout, or a quorum
//! failure after some replica may have stored the write), so it may or may not show up later.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Invoke,
    Ok,
    Fail,
    Info,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum F {
    /// Add one element to a key's set (read, union, write with the read's context).
    Add,
    /// Read a key's set.
    Read,
    /// Register workload: `SET` a key to a unique value (with `ttl_ms`, if any).
    Set,
    /// Register workload: `GET` a key (completions: the value, or null).
    Get,
    /// Register workload: `GETDEL` a key (completions: the value it returned and deleted,
    /// or null).
    Getdel,
    /// Register workload: `PEXPIRE` a key (`ttl_ms`) or `PERSIST` it (no `ttl_ms`): a TTL
    /// change of the version the server read (completions: the integer reply).
    Touch,
    /// Compare-and-set workload: a serial `GET` (completions: the value, or null).
    #[serde(rename = "cas-read")]
    CasRead,
    /// Compare-and-set workload: write `value[1]` if the key holds `value[0]` (null:
    /// absent); completions: null when applied, else `{"current": value}`.
    Cas,
    /// Counter workload: `HINCRBY key hits 1` (completions: the count it answered).
    Incr,
}

/// One line of the history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Op {
    pub process: u64,
    #[serde(rename = "type")]
    pub kind: Kind,
    pub f: F,
    pub key: String,
    /// `add`: the element; `read` completions: the elements seen.
    pub value: serde_json::Value,
    /// Nanoseconds since the run started.
    pub time: u64,
    /// The node the client sent the request to (0-based).
    pub node: usize,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
    /// `set`: the TTL the write carried, in milliseconds; `touch`: the TTL it set (none for
    /// `PERSIST`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ttl_ms: Option<u64>,
}

/// A fault the nemesis applied, from `start` to `end` (nanoseconds since the run started).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fault {
    pub kind: String,
    /// What it did, e.g. `isolate n2` or `kill n1,n4`.
    pub description: String,
    pub start: u64,
    pub end: u64,
    /// For partitions: the groups of nodes (0-based) that could talk among themselves.
    #[serde(default)]
    pub groups: Vec<Vec<usize>>,
}
