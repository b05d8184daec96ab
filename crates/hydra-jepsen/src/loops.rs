//! The clients' loops: each runs one workload's operations against one node (set adds and
//! reads, registers, compare-and-set) until the run's end, recording every invocation and
//! completion.

use super::*;

#[allow(clippy::too_many_arguments)]
pub(crate) fn client_loop(
    process: u64,
    node: usize,
    endpoint: &str,
    bucket: &str,
    keys: usize,
    seed: u64,
    pause: Duration,
    recorder: &Recorder,
    stop: &AtomicBool,
    done: &AtomicU64,
) {
    let client = Client::with_timeout(endpoint, Duration::from_secs(3))
        .with_token(crate::cluster::ADMIN_TOKEN);
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (process + 1).wrapping_mul(0x9E37_79B9));
    let mut counter: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        let key = key_name(rng.random_range(0..keys));
        let op = |kind, f, value, error| Op {
            process,
            kind,
            f,
            key: key.clone(),
            value,
            time: recorder.now(),
            node,
            error,
            ttl_ms: None,
        };
        if rng.random_bool(0.75) {
            counter += 1;
            let element = (process << 32) | counter;
            recorder.record(op(Kind::Invoke, F::Add, json!(element), None));
            let (kind, error) = match workload::add(&client, bucket, &key, element) {
                Ok(()) => (Kind::Ok, None),
                Err((kind, e)) => (kind, Some(e)),
            };
            recorder.record(op(kind, F::Add, json!(element), error));
        } else {
            recorder.record(op(Kind::Invoke, F::Read, serde_json::Value::Null, None));
            match workload::read(&client, bucket, &key, "quorum") {
                Ok(set) => recorder.record(op(Kind::Ok, F::Read, json!(set), None)),
                Err(e) => recorder.record(op(
                    Kind::Fail,
                    F::Read,
                    serde_json::Value::Null,
                    Some(e.to_string()),
                )),
            }
        }
        done.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(pause);
    }
}

/// One compare-and-set client: a RESP connection to its node with serial reads; reads, or
/// writes a new unique value if the key still holds what this client last read there. A
/// broken connection is replaced, under a new process id.
#[allow(clippy::too_many_arguments)]
pub(crate) fn cas_loop(
    client: u64,
    node: usize,
    front: &cas::Front,
    bucket: &str,
    keys: usize,
    seed: u64,
    pause: Duration,
    recorder: &Recorder,
    stop: &AtomicBool,
    done: &AtomicU64,
) {
    let timeout = Duration::from_secs(3);
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (client + 1).wrapping_mul(0x9E37_79B9));
    let mut generation: u64 = 0;
    let mut conn: Option<cas::Conn> = None;
    let mut counter: u64 = 0;
    let mut last_read: BTreeMap<usize, Option<u64>> = BTreeMap::new();
    // Over HTTP: the context of the version last read or written (`If-Match`).
    let mut last_context: BTreeMap<usize, String> = BTreeMap::new();
    while !stop.load(Ordering::Relaxed) {
        let process = (client << 20) | generation;
        let i = rng.random_range(0..keys);
        let key = cas::key_name(i);
        let op = |kind, f, value, error| Op {
            process,
            kind,
            f,
            key: key.clone(),
            value,
            time: recorder.now(),
            node,
            error,
            ttl_ms: None,
        };
        let reading = rng.random_bool(cas::READ_SHARE) || !last_read.contains_key(&i);
        counter += 1;
        let new = (client << 40) | counter;
        let expected = last_read.get(&i).copied().flatten();
        let (f, invoke) = if reading {
            (F::CasRead, serde_json::Value::Null)
        } else {
            (F::Cas, json!([expected, new]))
        };
        recorder.record(op(Kind::Invoke, f, invoke.clone(), None));
        let c = match conn.take() {
            Some(c) => Ok(c),
            None => cas::Conn::open(front, bucket, timeout),
        };
        let result = c.and_then(|mut c| {
            let r = if reading {
                c.read(&key).map(|(v, context)| {
                    last_read.insert(i, v);
                    match context {
                        Some(ctx) => last_context.insert(i, ctx),
                        None => last_context.remove(&i),
                    };
                    json!(v)
                })
            } else {
                let context = last_context.get(&i).cloned();
                c.write(&key, expected, context.as_deref(), new)
                    .map(|(outcome, context)| {
                        if let Some(ctx) = context {
                            last_context.insert(i, ctx);
                        }
                        match outcome {
                            cas::Written::Applied => {
                                last_read.insert(i, Some(new));
                                serde_json::Value::Null
                            }
                            cas::Written::Current(current) => {
                                last_read.insert(i, current);
                                json!({ "current": current })
                            }
                            // Not applied, the current value unknown: read it next.
                            cas::Written::NotApplied => {
                                last_read.remove(&i);
                                json!({ "not_applied": true })
                            }
                        }
                    })
            };
            // A request that broke the connection may still get its reply, which would
            // answer the next one (a `GET` of another key would return this key's value).
            if !c.is_broken() {
                conn = Some(c);
            }
            r
        });
        match result {
            Ok(v) => recorder.record(op(Kind::Ok, f, v, None)),
            Err(e) => {
                let kind = if reading { Kind::Fail } else { e.kind };
                recorder.record(op(kind, f, invoke, Some(e.error)));
                if e.kind == Kind::Info {
                    conn = None;
                    generation += 1;
                }
            }
        }
        done.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(pause);
    }
}

/// One register client: a RESP connection to its node, `SET` (unique values; odd keys with
/// a short or long TTL, every other one as `PXAT`), `GET`, `GETDEL`, and on odd keys `PEXPIRE`
/// (or `PEXPIREAT`) and `PERSIST`. After a broken connection the client reconnects under a
/// new process id (what it saw went with the old connection).
#[allow(clippy::too_many_arguments)]
pub(crate) fn register_loop(
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
    let mut session = register::Session::new(client, addr);
    let mut counter: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        let process = session.process();
        let i = rng.random_range(0..keys);
        let key = register::key_name(i);
        let op = |kind, f, value, error, ttl_ms| Op {
            process,
            kind,
            f,
            key: key.clone(),
            value,
            time: recorder.now(),
            node,
            error,
            ttl_ms,
        };
        let ttl = register::has_ttl(i);
        let roll: f64 = rng.random();
        let f = if roll < register::GETDEL_SHARE {
            F::Getdel
        } else if ttl && roll < register::GETDEL_SHARE + register::TOUCH_SHARE {
            F::Touch
        } else if rng.random_bool(if ttl {
            register::TTL_SET_SHARE
        } else {
            register::SET_SHARE
        }) {
            F::Set
        } else {
            F::Get
        };
        let ttl_ms = ttl
            .then(|| {
                if rng.random_bool(register::SHORT_SHARE) {
                    register::SHORT_TTL_MS
                } else {
                    register::LONG_TTL_MS
                }
            })
            .filter(|_| f != F::Touch || !rng.random_bool(register::PERSIST_SHARE));
        counter += 1;
        let value = (client << 40) | counter;
        let (invoke_value, invoke_ttl) = match f {
            F::Set => (json!(value), ttl_ms),
            F::Touch => (serde_json::Value::Null, ttl_ms),
            _ => (serde_json::Value::Null, None),
        };
        // Every other TTL as the Unix time it ends at (`PXAT`, `PEXPIREAT`), on this
        // machine's clock: the checker's windows (from the invocation) hold for both.
        let absolute = counter.is_multiple_of(2);
        recorder.record(op(Kind::Invoke, f, invoke_value.clone(), None, invoke_ttl));
        let result = session.call(|c| match f {
            F::Set => {
                register::set(c, &key, value, ttl_ms, absolute).map(|()| invoke_value.clone())
            }
            F::Getdel => register::getdel(c, &key).map(|v| json!(v)),
            F::Touch => register::touch(c, &key, ttl_ms, absolute).map(|n| json!(n)),
            _ => register::get(c, &key).map(|v| json!(v)),
        });
        match result {
            Ok(v) => recorder.record(op(Kind::Ok, f, v, None, None)),
            Err(e) => {
                // A failed `GET` changed nothing; the others may have written.
                let kind = if f == F::Get { Kind::Fail } else { e.kind };
                recorder.record(op(kind, f, invoke_value, Some(e.error), invoke_ttl));
            }
        }
        done.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(pause);
    }
}

/// The `redis-set` workload: each client adds unique members to the keys' sets with `SADD`
/// and reads them with `SMEMBERS`, over one RESP connection (replaced, with a new process
/// id, after an indeterminate operation). Hashes and sets merge concurrent adds (add-wins
/// observed-remove), so every acknowledged add must survive every fault.
#[allow(clippy::too_many_arguments)]
pub(crate) fn redis_set_loop(
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
    let mut session = register::Session::new(client, addr);
    let mut counter: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        let process = session.process();
        let key = key_name(rng.random_range(0..keys));
        let op = |kind, f, value, error| Op {
            process,
            kind,
            f,
            key: key.clone(),
            value,
            time: recorder.now(),
            node,
            error,
            ttl_ms: None,
        };
        let add = rng.random_bool(0.75);
        counter += 1;
        let element = (client << 32) | counter;
        let (f, invoke_value) = if add {
            (F::Add, json!(element))
        } else {
            (F::Read, serde_json::Value::Null)
        };
        recorder.record(op(Kind::Invoke, f, invoke_value.clone(), None));
        let result = session.call(|c| {
            if add {
                register::sadd(c, &key, element).map(|()| invoke_value.clone())
            } else {
                register::smembers(c, &key).map(|s| json!(s))
            }
        });
        match result {
            Ok(v) => recorder.record(op(Kind::Ok, f, v, None)),
            Err(e) => {
                let kind = if add { e.kind } else { Kind::Fail };
                recorder.record(op(kind, f, invoke_value, Some(e.error)));
            }
        }
        done.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(pause);
    }
}
