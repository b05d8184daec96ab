//! `hydra bench`: YCSB core workloads against a running cluster, over HTTP or the Redis
//! protocol, with a progress bar, HDR latency histograms and JSON output for scripts.
//!
//! Workloads (YCSB's core set, plus write-only):
//! - `a`: 50% read, 50% update; `b`: 95% read, 5% update; `c`: read only;
//! - `d`: 95% read, 5% insert, reads favouring the newest records ("read latest");
//! - `f`: 50% read, 50% read-modify-write (a read, then a write carrying its context);
//! - `write`: update only.
//! - `cas`: compare-and-set only: a conditional write that applies whenever the key exists
//!   (`If-Match: *` over HTTP, `SET k v XX` over RESP), through Paxos; with `--records 1`
//!   every connection contends on one key. The report adds the mean Paxos attempts per
//!   applied write (HTTP only: from `X-Hydra-Paxos`) and the outcomes the coordinator could
//!   not learn (504 `outcome_unknown`, `-TIMEOUT`).
//!
//! Keys are `user<n>` for n below `--records`; `zipfian` (YCSB's constant 0.99, scrambled so
//! the hot keys spread over the ring) or `uniform`. Updates are blind writes, as in YCSB: in
//! the default `redis` bucket (`lww`) they overwrite; in a `siblings` bucket they would pile
//! up siblings, so use workload `f` there. Each connection is one thread with one request in
//! flight (a closed loop); latencies are recorded per operation in microseconds.

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use hydra_client::Client;
use hydra_resp::{Limits, Value, encode_command, parse_value};
use indicatif::{ProgressBar, ProgressStyle};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Zipf};
use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    A,
    B,
    C,
    D,
    F,
    Write,
    Cas,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    Http,
    Resp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum KeyDistribution {
    Zipfian,
    Uniform,
}

#[derive(Args, Clone, Debug)]
pub struct BenchArgs {
    /// YCSB workload: a, b, c, d, f, write (update only), or cas (compare-and-set only).
    #[arg(long, value_enum, default_value = "a")]
    workload: Workload,
    /// Protocol to drive: http or resp.
    #[arg(long, value_enum, default_value = "http")]
    protocol: Protocol,
    /// The cluster's `cluster.json` (written by `hydra dev`): connections spread over all
    /// its nodes.
    #[arg(long)]
    cluster: Option<PathBuf>,
    /// Nodes to use instead of `--cluster` (`host:port` of the chosen protocol; comma list).
    #[arg(long, value_delimiter = ',', env = "HYDRA_ENDPOINT")]
    endpoint: Vec<String>,
    /// The admin token: HTTP bearer token, Redis `AUTH` password (default: `HYDRA_TOKEN`,
    /// else the `token` of `--cluster`'s file).
    #[arg(long, env = "HYDRA_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Records loaded before the run (the key space).
    #[arg(long, default_value_t = 10_000)]
    records: u64,
    /// Bytes per value.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Concurrent connections (one request in flight each).
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Seconds of measured run after the load.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Key choice: zipfian (0.99) or uniform.
    #[arg(long, value_enum, default_value = "zipfian")]
    distribution: KeyDistribution,
    /// Read consistency (one, quorum, all, a number); default: the bucket's.
    #[arg(long)]
    r: Option<String>,
    /// Write consistency; default: the bucket's.
    #[arg(long)]
    w: Option<String>,
    /// Bucket to use.
    #[arg(long, default_value = "redis")]
    bucket: String,
    /// Skip the load phase (the records are already there).
    #[arg(long)]
    skip_load: bool,
    /// Load only the records from this one on (those below are already there): grows a
    /// loaded key space without writing it again.
    #[arg(long, default_value_t = 0)]
    load_from: u64,
    /// Writes each load connection sends before it reads their replies (RESP only): a bulk
    /// load through pipelines, as `redis-benchmark -P` does. The run is not pipelined.
    #[arg(long, default_value_t = 1)]
    load_pipeline: usize,
    /// Write the report as JSON to this file (`-` for standard output).
    #[arg(long)]
    json: Option<PathBuf>,
    /// No progress bar (for scripts and logs).
    #[arg(long)]
    quiet: bool,
    /// Seed of the key and operation choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// Operations a workload mixes; each has its own histogram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Read,
    Update,
    Insert,
    ReadModifyWrite,
    Cas,
}

const OPS: [Op; 5] = [
    Op::Read,
    Op::Update,
    Op::Insert,
    Op::ReadModifyWrite,
    Op::Cas,
];

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Read => "read",
            Op::Update => "update",
            Op::Insert => "insert",
            Op::ReadModifyWrite => "read_modify_write",
            Op::Cas => "cas",
        }
    }
}

/// Longest latency a histogram holds, in microseconds (longer ones are clamped).
const LATENCY_US_MAX: u64 = 120_000_000;

/// One connection to one node, in either protocol.
enum Conn {
    Http {
        client: Client,
        bucket: String,
        params_r: Vec<(String, String)>,
        params_w: Vec<(String, String)>,
    },
    Resp {
        stream: TcpStream,
        buf: Vec<u8>,
        out: Vec<u8>,
    },
}

impl Conn {
    fn open(protocol: Protocol, addr: &str, args: &BenchArgs) -> Result<Conn> {
        match protocol {
            Protocol::Http => Ok(Conn::Http {
                client: Client::new(addr).with_token_opt(args.token.as_deref()),
                bucket: args.bucket.clone(),
                params_r: args.r.iter().map(|r| ("r".into(), r.clone())).collect(),
                params_w: args.w.iter().map(|w| ("w".into(), w.clone())).collect(),
            }),
            Protocol::Resp => {
                let stream = TcpStream::connect(addr)
                    .with_context(|| format!("while connecting to {addr}"))?;
                stream.set_nodelay(true)?;
                stream.set_read_timeout(Some(Duration::from_secs(30)))?;
                let mut conn = Conn::Resp {
                    stream,
                    buf: Vec::with_capacity(64 * 1024),
                    out: Vec::with_capacity(1024),
                };
                if let Some(token) = &args.token {
                    conn.resp(&[b"AUTH", token.as_bytes()])?;
                }
                conn.resp(&[b"HYDRA.BUCKET", args.bucket.as_bytes()])?;
                if args.r.is_some() || args.w.is_some() {
                    let r = args.r.as_deref().unwrap_or("default");
                    let w = args.w.as_deref().unwrap_or("default");
                    conn.resp(&[b"HYDRA.CONSISTENCY", r.as_bytes(), w.as_bytes()])?;
                }
                Ok(conn)
            }
        }
    }

    /// One RESP command and its reply; an error reply is an error.
    fn resp(&mut self, args: &[&[u8]]) -> Result<Value> {
        let mut replies = self.resp_pipeline(&[args])?;
        Ok(replies.pop().unwrap_or(Value::Null))
    }

    /// RESP commands sent together, then their replies in order; an error reply is an error.
    fn resp_pipeline(&mut self, commands: &[&[&[u8]]]) -> Result<Vec<Value>> {
        let Conn::Resp { stream, buf, out } = self else {
            bail!("not a RESP connection");
        };
        out.clear();
        for args in commands {
            encode_command(args, out);
        }
        stream.write_all(out)?;
        let mut replies = Vec::with_capacity(commands.len());
        while replies.len() < commands.len() {
            if let Some((value, used)) = parse_value(buf, &Limits::default())? {
                buf.drain(..used);
                if let Value::Error(e) = value {
                    bail!("{e}");
                }
                replies.push(value);
                continue;
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                bail!("the node closed the connection");
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Ok(replies)
    }

    /// Reads a key; returns its context (for read-modify-write) when it has one.
    fn read(&mut self, key: &str, want_context: bool) -> Result<Option<String>> {
        match self {
            Conn::Http {
                client,
                bucket,
                params_r,
                ..
            } => {
                let params: Vec<(&str, &str)> = params_r
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                let r = client.get(bucket, key, &params)?;
                Ok(r.context)
            }
            Conn::Resp { .. } if want_context => {
                let reply = self.resp(&[b"HYDRA.GETALL", key.as_bytes()])?;
                let pairs: Vec<(Value, Value)> = match reply {
                    Value::Map(p) => p,
                    Value::Array(a) => {
                        let mut it = a.into_iter();
                        let mut pairs = Vec::new();
                        while let (Some(k), Some(v)) = (it.next(), it.next()) {
                            pairs.push((k, v));
                        }
                        pairs
                    }
                    other => bail!("HYDRA.GETALL gave {other:?}"),
                };
                Ok(pairs.into_iter().find_map(|(k, v)| match (k, v) {
                    (Value::Bulk(k), Value::Bulk(c)) if k == b"context" => {
                        Some(String::from_utf8_lossy(&c).into_owned())
                    }
                    _ => None,
                }))
            }
            Conn::Resp { .. } => {
                self.resp(&[b"GET", key.as_bytes()])?;
                Ok(None)
            }
        }
    }

    fn write(&mut self, key: &str, value: &[u8], context: Option<&str>) -> Result<()> {
        match self {
            Conn::Http {
                client,
                bucket,
                params_w,
                ..
            } => {
                let params: Vec<(&str, &str)> = params_w
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                client.put(
                    bucket,
                    key,
                    value,
                    "application/octet-stream",
                    context,
                    &params,
                )?;
                Ok(())
            }
            Conn::Resp { .. } => {
                match context {
                    Some(c) => self.resp(&[b"HYDRA.PUT", key.as_bytes(), value, c.as_bytes()])?,
                    None => self.resp(&[b"SET", key.as_bytes(), value])?,
                };
                Ok(())
            }
        }
    }
}

impl Conn {
    /// A compare-and-set write that applies when the key exists; the Paxos attempts it took,
    /// when the protocol says (HTTP).
    fn cas(&mut self, key: &str, value: &[u8]) -> Result<Option<u64>> {
        match self {
            Conn::Http { client, bucket, .. } => {
                let r = client.put_if(
                    bucket,
                    key,
                    value,
                    "application/octet-stream",
                    &hydra_client::Precondition::Present,
                )?;
                if r.status != 204 {
                    bail!("not applied (status {}): the key is absent", r.status);
                }
                Ok(r.paxos.and_then(|p| p["attempts"].as_u64()))
            }
            Conn::Resp { .. } => match self.resp(&[b"SET", key.as_bytes(), value, b"XX"])? {
                Value::Simple(s) if s == "OK" => Ok(None),
                other => bail!("not applied ({other:?}): the key is absent"),
            },
        }
    }
}

/// Chooses keys: scrambled zipfian or uniform over the records, or the newest for workload D.
struct Keys {
    zipf: Option<Zipf<f64>>,
    records: u64,
}

impl Keys {
    fn new(distribution: KeyDistribution, records: u64) -> Result<Keys> {
        let zipf = match distribution {
            KeyDistribution::Zipfian => Some(
                Zipf::new(records as f64, 0.99)
                    .map_err(|e| anyhow::anyhow!("zipfian over {records} records: {e}"))?,
            ),
            KeyDistribution::Uniform => None,
        };
        Ok(Keys { zipf, records })
    }

    /// A rank from 0 (most popular) to `n - 1`.
    fn rank(&self, rng: &mut ChaCha8Rng, n: u64) -> u64 {
        match &self.zipf {
            // Zipf samples 1..=records; clamp to the current count for workload D.
            Some(z) => ((z.sample(rng) as u64).saturating_sub(1)).min(n - 1),
            None => rng.random_range(0..n),
        }
    }

    /// An existing record, the popular ones spread over the key space (YCSB's scrambling).
    fn existing(&self, rng: &mut ChaCha8Rng) -> u64 {
        let rank = self.rank(rng, self.records);
        if self.zipf.is_some() {
            xxhash_rust::xxh3::xxh3_64(&rank.to_le_bytes()) % self.records
        } else {
            rank
        }
    }

    /// A recent record: the newest are the most popular (YCSB's "latest").
    fn latest(&self, rng: &mut ChaCha8Rng, count: u64) -> u64 {
        count - 1 - self.rank(rng, count)
    }
}

fn key_name(n: u64) -> String {
    format!("user{n}")
}

fn value_of(rng: &mut ChaCha8Rng, size: usize) -> Vec<u8> {
    (0..size).map(|_| rng.random_range(b'a'..=b'z')).collect()
}

/// What one worker measured.
struct Tally {
    histograms: Vec<Histogram<u64>>,
    errors: Vec<u64>,
    first_error: Option<String>,
    /// Compare-and-set: Paxos attempts summed over the applied writes that reported them,
    /// how many did, and the outcomes the coordinator could not learn.
    paxos_attempts: u64,
    paxos_reported: u64,
    unknown: u64,
}

impl Tally {
    fn new() -> Result<Tally> {
        let mut histograms = Vec::new();
        for _ in OPS {
            histograms.push(Histogram::new_with_bounds(1, LATENCY_US_MAX, 3)?);
        }
        Ok(Tally {
            histograms,
            errors: vec![0; OPS.len()],
            first_error: None,
            paxos_attempts: 0,
            paxos_reported: 0,
            unknown: 0,
        })
    }

    fn record(&mut self, op: Op, started: Instant, result: Result<()>) {
        let i = OPS.iter().position(|o| *o == op).unwrap_or(0);
        match result {
            Ok(()) => {
                let us = (started.elapsed().as_micros() as u64).clamp(1, LATENCY_US_MAX);
                let _ = self.histograms[i].record(us);
            }
            Err(e) => {
                self.errors[i] += 1;
                let text = format!("{e:#}");
                if text.contains("outcome_unknown") || text.contains("TIMEOUT") {
                    self.unknown += 1;
                }
                if self.first_error.is_none() {
                    self.first_error = Some(format!("{} failed: {e:#}", op.name()));
                }
            }
        }
    }

    fn merge(&mut self, other: Tally) {
        for (a, b) in self.histograms.iter_mut().zip(other.histograms.iter()) {
            let _ = a.add(b);
        }
        for (a, b) in self.errors.iter_mut().zip(other.errors.iter()) {
            *a += b;
        }
        self.paxos_attempts += other.paxos_attempts;
        self.paxos_reported += other.paxos_reported;
        self.unknown += other.unknown;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// The node addresses of the chosen protocol, from `--cluster` or `--endpoint`.
fn endpoints(args: &BenchArgs) -> Result<Vec<String>> {
    if let Some(path) = &args.cluster {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("while reading {}", path.display()))?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", path.display()))?;
        let field = match args.protocol {
            Protocol::Http => "http",
            Protocol::Resp => "resp",
        };
        let list: Vec<String> = json["nodes"]
            .as_array()
            .map(|nodes| {
                nodes
                    .iter()
                    .filter_map(|n| n[field].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if list.is_empty() {
            bail!("{} lists no node with a {field} address", path.display());
        }
        return Ok(list);
    }
    if args.endpoint.is_empty() {
        bail!("give --cluster FILE (a cluster.json) or --endpoint HOST:PORT[,...]");
    }
    Ok(args.endpoint.clone())
}

fn progress(quiet: bool, len: u64, what: &str) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>6} [{bar:40}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(what.to_string());
    bar
}

pub fn run(mut args: BenchArgs) -> Result<()> {
    if args.connections == 0 || args.records == 0 || args.load_pipeline == 0 {
        bail!("--connections, --records and --load-pipeline must be at least 1");
    }
    if args.load_pipeline > 1 && args.protocol != Protocol::Resp {
        bail!("--load-pipeline needs --protocol resp");
    }
    let nodes = endpoints(&args)?;
    if args.token.is_none()
        && let Some(path) = &args.cluster
    {
        let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
        args.token = json["token"].as_str().map(str::to_string);
    }
    let args = Arc::new(args);
    // Load: every record once, the connections sharing the key range.
    if !args.skip_load && args.workload != Workload::Write {
        let first = args.load_from.min(args.records);
        let bar = progress(args.quiet, args.records - first, "load");
        let started = Instant::now();
        let done = Arc::new(AtomicU64::new(0));
        let next = Arc::new(AtomicU64::new(first));
        let mut threads = Vec::new();
        for c in 0..args.connections {
            let (args, nodes, done, next) =
                (args.clone(), nodes.clone(), done.clone(), next.clone());
            threads.push(std::thread::spawn(move || -> Result<()> {
                let mut conn = Conn::open(args.protocol, &nodes[c % nodes.len()], &args)?;
                let mut rng = ChaCha8Rng::seed_from_u64(args.seed ^ (c as u64) << 32);
                let step = args.load_pipeline as u64;
                loop {
                    let n = next.fetch_add(step, Ordering::Relaxed);
                    if n >= args.records {
                        return Ok(());
                    }
                    let end = (n + step).min(args.records);
                    if step == 1 {
                        let value = value_of(&mut rng, args.value_size);
                        conn.write(&key_name(n), &value, None)
                            .with_context(|| format!("while loading {}", key_name(n)))?;
                    } else {
                        let writes: Vec<(String, Vec<u8>)> = (n..end)
                            .map(|i| (key_name(i), value_of(&mut rng, args.value_size)))
                            .collect();
                        let commands: Vec<[&[u8]; 3]> = writes
                            .iter()
                            .map(|(k, v)| [b"SET".as_slice(), k.as_bytes(), v.as_slice()])
                            .collect();
                        let commands: Vec<&[&[u8]]> =
                            commands.iter().map(|c| c.as_slice()).collect();
                        conn.resp_pipeline(&commands).with_context(|| {
                            format!("while loading {} to {}", key_name(n), key_name(end - 1))
                        })?;
                    }
                    done.fetch_add(end - n, Ordering::Relaxed);
                }
            }));
        }
        while threads.iter().any(|t| !t.is_finished()) {
            bar.set_position(done.load(Ordering::Relaxed));
            std::thread::sleep(Duration::from_millis(100));
        }
        bar.finish_and_clear();
        for t in threads {
            t.join()
                .map_err(|_| anyhow::anyhow!("a load thread panicked"))??;
        }
        let secs = started.elapsed().as_secs_f64();
        if !args.quiet {
            eprintln!(
                "loaded {} records in {secs:.1} s ({:.0}/s)",
                args.records - first,
                (args.records - first) as f64 / secs.max(0.001)
            );
        }
        if args.seconds == 0 {
            if let Some(path) = &args.json {
                let report = json!({
                    "loaded": args.records - first, "load_seconds": secs,
                    "load_per_s": (args.records - first) as f64 / secs.max(0.001),
                });
                write_json(path, &report)?;
            }
            return Ok(());
        }
    } else if args.seconds == 0 {
        return Ok(());
    }
    // Run: closed loop until the deadline.
    let keys = Arc::new(Keys::new(args.distribution, args.records)?);
    let inserted = Arc::new(AtomicU64::new(args.records));
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let bar = progress(args.quiet, args.seconds, "run");
    let started = Instant::now();
    let mut threads = Vec::new();
    for c in 0..args.connections {
        let (args, nodes, keys, inserted, stop, done) = (
            args.clone(),
            nodes.clone(),
            keys.clone(),
            inserted.clone(),
            stop.clone(),
            done.clone(),
        );
        threads.push(std::thread::spawn(move || -> Result<Tally> {
            let mut conn = Conn::open(args.protocol, &nodes[c % nodes.len()], &args)?;
            let mut rng = ChaCha8Rng::seed_from_u64(args.seed.wrapping_add(1 + c as u64));
            let mut tally = Tally::new()?;
            while !stop.load(Ordering::Relaxed) {
                let roll: f64 = rng.random();
                let op = match args.workload {
                    Workload::A if roll < 0.5 => Op::Read,
                    Workload::A => Op::Update,
                    Workload::B if roll < 0.95 => Op::Read,
                    Workload::B => Op::Update,
                    Workload::C => Op::Read,
                    Workload::D if roll < 0.95 => Op::Read,
                    Workload::D => Op::Insert,
                    Workload::F if roll < 0.5 => Op::Read,
                    Workload::F => Op::ReadModifyWrite,
                    Workload::Write => Op::Update,
                    Workload::Cas => Op::Cas,
                };
                let key = match (args.workload, op) {
                    (_, Op::Insert) => key_name(inserted.fetch_add(1, Ordering::Relaxed)),
                    (Workload::D, _) => {
                        key_name(keys.latest(&mut rng, inserted.load(Ordering::Relaxed)))
                    }
                    _ => key_name(keys.existing(&mut rng)),
                };
                let t = Instant::now();
                let result = match op {
                    Op::Read => conn.read(&key, false).map(|_| ()),
                    Op::Update | Op::Insert => {
                        let value = value_of(&mut rng, args.value_size);
                        conn.write(&key, &value, None)
                    }
                    Op::ReadModifyWrite => {
                        let value = value_of(&mut rng, args.value_size);
                        conn.read(&key, true)
                            .and_then(|ctx| conn.write(&key, &value, ctx.as_deref()))
                    }
                    Op::Cas => {
                        let value = value_of(&mut rng, args.value_size);
                        conn.cas(&key, &value).map(|attempts| {
                            if let Some(a) = attempts {
                                tally.paxos_attempts += a;
                                tally.paxos_reported += 1;
                            }
                        })
                    }
                };
                let failed = result.is_err();
                tally.record(op, t, result);
                done.fetch_add(1, Ordering::Relaxed);
                if failed && args.protocol == Protocol::Resp {
                    // A reply may be half-read: later replies would pair with the wrong
                    // requests. Start over on a fresh connection.
                    conn = Conn::open(args.protocol, &nodes[c % nodes.len()], &args)?;
                }
            }
            Ok(tally)
        }));
    }
    let deadline = started + Duration::from_secs(args.seconds);
    while Instant::now() < deadline && threads.iter().any(|t| !t.is_finished()) {
        bar.set_position(started.elapsed().as_secs().min(args.seconds));
        bar.set_message(format!(
            "{:.0} ops/s",
            done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64().max(0.001)
        ));
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::Relaxed);
    let mut total = Tally::new()?;
    for t in threads {
        total.merge(
            t.join()
                .map_err(|_| anyhow::anyhow!("a bench thread panicked"))??,
        );
    }
    let elapsed = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    report(&args, &total, elapsed)
}

fn report(args: &BenchArgs, tally: &Tally, elapsed: f64) -> Result<()> {
    let ms = |us: u64| us as f64 / 1000.0;
    let mut ops = serde_json::Map::new();
    let mut all = 0u64;
    let mut errors = 0u64;
    println!(
        "workload {} over {}: {} connections, {} records of {} B, {} keys, {:.1} s",
        format!("{:?}", args.workload).to_lowercase(),
        format!("{:?}", args.protocol).to_lowercase(),
        args.connections,
        args.records,
        args.value_size,
        format!("{:?}", args.distribution).to_lowercase(),
        elapsed
    );
    println!(
        "{:<18} {:>9} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7}",
        "op", "count", "ops/s", "p50 ms", "p95 ms", "p99 ms", "p99.9 ms", "max ms", "errors"
    );
    for (i, op) in OPS.iter().enumerate() {
        let h = &tally.histograms[i];
        if h.is_empty() && tally.errors[i] == 0 {
            continue;
        }
        all += h.len();
        errors += tally.errors[i];
        let rate = h.len() as f64 / elapsed;
        println!(
            "{:<18} {:>9} {:>10.0} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>7}",
            op.name(),
            h.len(),
            rate,
            ms(h.value_at_quantile(0.5)),
            ms(h.value_at_quantile(0.95)),
            ms(h.value_at_quantile(0.99)),
            ms(h.value_at_quantile(0.999)),
            ms(h.max()),
            tally.errors[i]
        );
        ops.insert(
            op.name().into(),
            json!({
                "count": h.len(), "errors": tally.errors[i], "ops_per_s": rate,
                "p50_ms": ms(h.value_at_quantile(0.5)), "p95_ms": ms(h.value_at_quantile(0.95)),
                "p99_ms": ms(h.value_at_quantile(0.99)), "p999_ms": ms(h.value_at_quantile(0.999)),
                "max_ms": ms(h.max()), "mean_ms": h.mean() / 1000.0,
            }),
        );
    }
    let throughput = all as f64 / elapsed;
    println!("total {all} ops, {throughput:.0} ops/s, {errors} errors");
    let attempts_mean = (tally.paxos_reported > 0)
        .then(|| tally.paxos_attempts as f64 / tally.paxos_reported as f64);
    if args.workload == Workload::Cas {
        let attempts = attempts_mean.map_or("not reported".to_string(), |a| format!("{a:.2}"));
        println!(
            "compare-and-set: mean Paxos attempts per applied write {attempts}, outcome unknown {} of {}",
            tally.unknown,
            all + errors
        );
    }
    if let Some(e) = &tally.first_error {
        println!("first error: {e}");
    }
    let report = json!({
        "workload": format!("{:?}", args.workload).to_lowercase(),
        "protocol": format!("{:?}", args.protocol).to_lowercase(),
        "connections": args.connections,
        "records": args.records,
        "value_size": args.value_size,
        "distribution": format!("{:?}", args.distribution).to_lowercase(),
        "r": args.r, "w": args.w, "bucket": args.bucket,
        "seconds": elapsed,
        "ops_per_s": throughput,
        "errors": errors,
        "first_error": tally.first_error,
        "paxos_attempts_mean": attempts_mean,
        "outcome_unknown": tally.unknown,
        "ops": ops,
    });
    match &args.json {
        None => Ok(()),
        Some(p) => write_json(p, &report),
    }
}

/// Writes a JSON report to a file, or to standard output for `-`.
fn write_json(path: &std::path::Path, report: &serde_json::Value) -> Result<()> {
    if path.as_os_str() == "-" {
        println!("{report}");
        return Ok(());
    }
    std::fs::write(path, format!("{report}\n"))
        .with_context(|| format!("while writing {}", path.display()))
}
