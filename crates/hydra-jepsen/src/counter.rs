//! The `redis-counter` workload: clients increment one field of a few hashes with `HINCRBY
//! key hits 1` through every node under every fault. `HINCRBY` is exact (compare-and-set on
//! the field's dots, `resp/collections.rs`), so:
//!
//! ```text
//! each ok reply is the count right after that increment  ─▶ no two ok replies are equal
//! final count (read at r=all, after the heal)             ─▶ ok <= final <= ok + info
//!                                                            and every ok reply <= final
//! ```
//!
//! A `fail` reply (refused before anything was proposed) never counts; an `info` one
//! (`-TIMEOUT`, a dropped connection) may or may not.

use crate::Recorder;
use crate::history::{F, Kind, Op};
use crate::register::{self, Broken, Connection, Session};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// The field every increment adds to.
pub const FIELD: &str = "hits";

pub fn key_name(i: usize) -> String {
    format!("counter{i}")
}

/// What the counter checker found, per run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CounterVerdict {
    /// Increments acknowledged, refused, and of unknown outcome.
    pub ok: u64,
    pub fail: u64,
    pub info: u64,
    /// Per key: its final count, and the acknowledged and unknown increments.
    pub keys: BTreeMap<String, serde_json::Value>,
    /// What broke the invariant, if anything.
    pub violations: Vec<String>,
}

/// `HINCRBY key hits 1`: the count after it.
fn hincrby(conn: &mut Connection, key: &str) -> Result<u64, Broken> {
    match conn.call(&[b"HINCRBY", key.as_bytes(), FIELD.as_bytes(), b"1"])? {
        hydra_resp::Value::Integer(n) if n > 0 => Ok(n as u64),
        hydra_resp::Value::Error(e) => Err(Broken {
            kind: register::classify_error(&e),
            error: e,
        }),
        other => Err(Broken {
            kind: Kind::Info,
            error: format!("unexpected reply {other:?}"),
        }),
    }
}

/// One client: increments of random keys over its node's RESP connection (`Session`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn counter_loop(
    client: u64,
    node: usize,
    addr: &str,
    keys: usize,
    seed: u64,
    pause: Duration,
    recorder: &Recorder,
    stop: &AtomicBool,
    done: &AtomicU64,
) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (client + 1).wrapping_mul(0x9E37_79B9));
    let mut session = Session::new(client, addr);
    while !stop.load(Ordering::Relaxed) {
        let process = session.process();
        let key = key_name(rng.random_range(0..keys));
        let op = |kind, value, error| Op {
            process,
            kind,
            f: F::Incr,
            key: key.clone(),
            value,
            time: recorder.now(),
            node,
            error,
            ttl_ms: None,
        };
        recorder.record(op(Kind::Invoke, serde_json::Value::Null, None));
        match session.call(|c| hincrby(c, &key)) {
            Ok(n) => recorder.record(op(Kind::Ok, json!(n), None)),
            Err(e) => recorder.record(op(e.kind, serde_json::Value::Null, Some(e.error))),
        }
        done.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(pause);
    }
}

/// Judges the increments against each key's final count (`None`: the key is absent, 0).
pub fn check(ops: &[Op], finals: &BTreeMap<String, Option<u64>>) -> CounterVerdict {
    let mut v = CounterVerdict::default();
    let mut per_key: BTreeMap<&str, (Vec<u64>, u64)> = BTreeMap::new();
    for o in ops.iter().filter(|o| o.f == F::Incr) {
        match o.kind {
            Kind::Ok => {
                v.ok += 1;
                if let Some(n) = o.value.as_u64() {
                    per_key.entry(&o.key).or_default().0.push(n);
                }
            }
            Kind::Info => {
                v.info += 1;
                per_key.entry(&o.key).or_default().1 += 1;
            }
            Kind::Fail => v.fail += 1,
            Kind::Invoke => {}
        }
    }
    for (key, fin) in finals {
        let fin = fin.unwrap_or(0);
        let (mut acked, info) = per_key.remove(key.as_str()).unwrap_or_default();
        acked.sort_unstable();
        let n = acked.len() as u64;
        if let Some(w) = acked.windows(2).find(|w| w[0] == w[1]) {
            v.violations.push(format!(
                "{key}: two acknowledged increments answered the count {}",
                w[0]
            ));
        }
        let highest = acked.last().copied().unwrap_or(0);
        if fin < n || fin > n + info || highest > fin {
            v.violations.push(format!(
                "{key}: final count {fin}, {n} increments acknowledged (the highest answered {highest}), {info} unknown"
            ));
        }
        v.keys.insert(
            key.clone(),
            json!({ "final": fin, "ok": n, "info": info, "highest_ok": highest }),
        );
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(kind: Kind, key: &str, value: serde_json::Value) -> Op {
        Op {
            process: 0,
            kind,
            f: F::Incr,
            key: key.into(),
            value,
            time: 0,
            node: 0,
            error: None,
            ttl_ms: None,
        }
    }

    #[test]
    fn lost_and_doubled_increments_are_violations() {
        let finals: BTreeMap<String, Option<u64>> = [("counter0".to_string(), Some(3))].into();
        let good = vec![
            op(Kind::Ok, "counter0", json!(1)),
            op(Kind::Ok, "counter0", json!(2)),
            op(Kind::Info, "counter0", json!(null)),
        ];
        assert!(check(&good, &finals).violations.is_empty());
        // Two increments that both answered 2: one was lost.
        let doubled = vec![
            op(Kind::Ok, "counter0", json!(1)),
            op(Kind::Ok, "counter0", json!(2)),
            op(Kind::Ok, "counter0", json!(2)),
        ];
        assert_eq!(check(&doubled, &finals).violations.len(), 1);
        // Four acknowledged, the final count 3.
        let lost = vec![
            op(Kind::Ok, "counter0", json!(1)),
            op(Kind::Ok, "counter0", json!(2)),
            op(Kind::Ok, "counter0", json!(3)),
            op(Kind::Ok, "counter0", json!(4)),
        ];
        assert!(!check(&lost, &finals).violations.is_empty());
        // Failed increments never count.
        let failed = vec![op(Kind::Fail, "counter0", json!(null))];
        assert!(!check(&failed, &finals).violations.is_empty());
    }
}
