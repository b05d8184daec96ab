//! A Jepsen-style harness for real Hydra processes: each node runs in its own network
//! namespace ([`net`]), clients in the root namespace run the set workload ([`workload`])
//! and record a history ([`history`]) while a nemesis partitions the network, kills, pauses
//! and skews clocks ([`cluster`]). At the end every fault heals, anti-entropy brings the
//! replicas together (the time it takes is measured), final reads at `r=all` give the state,
//! and [`check`] judges the history against it: acknowledged adds lost, failed adds observed,
//! elements nobody added, stale reads, `info` adds that took effect, availability per
//! partition side (each checker is shown on a planted history in its tests). [`plot`] draws throughput, latency and
//! availability over time with the fault windows shaded.
//!
//! Start reading at [`run`]. Every loop is bounded in count or time; traffic goes only to
//! the harness's namespaces.

pub mod cas;
pub mod check;
pub mod check_register;
pub mod cluster;
pub mod counter;
pub mod history;
mod loops;
pub mod net;
pub mod plot;
pub mod register;
pub mod workload;

use anyhow::{Context, Result, bail};
use cluster::Cluster;
use history::{F, Fault, Kind, Op};
use hydra_client::Client;
use indicatif::{ProgressBar, ProgressStyle};
use net::Net;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use workload::Set;

/// Most operations one run records (invocations and completions): the history lives in
/// memory until the end. A run records at most `seconds x rate x 2`, which is checked up front.
pub const HISTORY_OPS_MAX: u64 = 20_000_000;

/// The faults the nemesis can apply.
pub const NEMESES: &[&str] = &["partition", "kill", "pause", "clock"];

#[derive(Clone, Debug)]
pub struct Options {
    pub nodes: usize,
    /// Seconds of workload under faults.
    pub seconds: u64,
    /// `siblings` (the set workload: no acknowledged add may be lost), `lww` (the set
    /// workload in an `lww` bucket: the loss is measured), `register` (the register
    /// workload over RESP, with TTLs: judged by [`check_register`]) or `cas` (compare-and-set
    /// over RESP: judged by [`cas::check`]).
    pub mode: String,
    pub nemesis: Vec<String>,
    /// Seconds each fault lasts, and each quiet period between faults.
    pub interval: u64,
    pub clients: usize,
    pub keys: usize,
    /// Operations per second, all clients together.
    pub rate: u64,
    /// Whether the bucket uses sloppy quorums (fallbacks and hints).
    pub sloppy: bool,
    /// The bucket's `cas` property (`conditional_only` when `None`, the default):
    /// `all_writes` sends the register workload's every write and read through Paxos.
    pub cas: Option<String>,
    /// The compare-and-set workloads' keys live in bucket [`cas::SIBLINGS_BUCKET`], which
    /// keeps siblings (default: bucket `redis`, `lww`).
    pub siblings: bool,
    /// The nodes' `storage.durability`: `fsync`, `periodic:<ms>` or `none`. Without fsync a
    /// node killed with SIGKILL may lose what it acknowledged (by design), so a run without
    /// it counts losses and stale reads without failing on them.
    pub durability: String,
    pub hydra: PathBuf,
    pub out: PathBuf,
    pub seed: u64,
    pub converge_timeout: u64,
    pub progress: bool,
    /// Extra environment of the server processes (e.g. `HYDRA_PLANTED_BUGS` for a test
    /// build that should fail).
    pub server_env: Vec<(String, String)>,
}

/// What the run found; written as `summary.json`.
#[derive(Debug, serde::Serialize)]
pub struct Summary {
    pub passed: bool,
    pub mode: String,
    pub durability: String,
    pub nodes: usize,
    pub seconds: f64,
    pub ops: u64,
    pub faults: BTreeMap<String, u64>,
    pub verdict: check::Verdict,
    /// The register workload's verdict (mode `register`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub register: Option<check_register::RegisterVerdict>,
    /// The compare-and-set workload's verdict (mode `cas`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cas: Option<cas::CasVerdict>,
    /// The counter workload's verdict (mode `redis-counter`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counter: Option<counter::CounterVerdict>,
    pub converged_keys: usize,
    pub unconverged_keys: usize,
    /// Paxos state collection, summed over the nodes at the end (counters restart with a
    /// node): repair rounds done and failed, keys settled, states dropped.
    pub paxos_repair: BTreeMap<String, u64>,
    pub convergence_ms: Percentiles,
    pub availability: f64,
    pub availability_by_partition_side: Vec<serde_json::Value>,
    pub latency_ms: Percentiles,
    pub throughput_ok_per_s: f64,
    pub files: Vec<String>,
}

#[derive(Debug, Default, serde::Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

fn percentiles(mut v: Vec<f64>) -> Percentiles {
    if v.is_empty() {
        return Percentiles::default();
    }
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    Percentiles {
        p50: at(0.5),
        p99: at(0.99),
        max: v[v.len() - 1],
    }
}

struct Recorder {
    started: Instant,
    ops: Mutex<Vec<Op>>,
}

impl Recorder {
    fn now(&self) -> u64 {
        self.started.elapsed().as_nanos() as u64
    }

    fn record(&self, op: Op) {
        if let Ok(mut ops) = self.ops.lock() {
            ops.push(op);
        }
    }
}

/// Why this process cannot run the harness (network namespaces need root and iproute2's
/// `ip`), or `None` when it can.
pub fn missing_privileges() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|id| id.parse::<u32>().ok());
    if euid != Some(0) {
        return Some("the fault harness needs root (it creates network namespaces)".into());
    }
    let ip = std::process::Command::new("ip")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    (!ip).then(|| "the fault harness needs iproute2's `ip` command".into())
}

/// Runs the whole test: set-up, workload under faults, heal, convergence, final reads,
/// checks, files. The network and processes are removed when it returns, error or not.
pub fn run(opts: &Options) -> Result<Summary> {
    if opts.nodes < 3 {
        bail!("--nodes must be at least 3 (N = 3 replicas)");
    }
    for n in &opts.nemesis {
        if !NEMESES.contains(&n.as_str()) {
            bail!(
                "unknown nemesis {n:?}; expected some of {}",
                NEMESES.join(", ")
            );
        }
    }
    if opts.seconds.saturating_mul(opts.rate).saturating_mul(2) > HISTORY_OPS_MAX {
        bail!(
            "--time x --rate x 2 is more than the {HISTORY_OPS_MAX} operations a history holds; lower --rate or --time"
        );
    }
    if ![
        "siblings",
        "lww",
        "register",
        "cas",
        "cas-http",
        "cas-txn",
        "redis-set",
        "redis-counter",
    ]
    .contains(&opts.mode.as_str())
    {
        bail!(
            "--workload mode must be siblings, lww, register, cas, cas-http, cas-txn, redis-set or redis-counter, not {:?}",
            opts.mode
        );
    }
    let cas_http = opts.mode == "cas-http";
    let cas_txn = opts.mode == "cas-txn";
    let cas_mode = opts.mode == "cas" || cas_http || cas_txn;
    let registers = opts.mode == "register";
    // Sets kept as convergent types, through the Redis protocol, in bucket `redis`.
    let redis_sets = opts.mode == "redis-set";
    // Exact hash increments (`HINCRBY`, compare-and-set), in bucket `redis`.
    let counters = opts.mode == "redis-counter";
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("while creating {}", opts.out.display()))?;
    let node_dir = opts.out.join("nodes");
    let _ = std::fs::remove_dir_all(&node_dir);
    std::fs::create_dir_all(&node_dir)?;
    let mut net = Net::create(opts.nodes)?;
    let mut cluster = Cluster::start(
        &net,
        &opts.hydra,
        &node_dir,
        1_000,
        &opts.durability,
        &opts.server_env,
    )?;
    let cas_siblings = cas_mode && opts.siblings;
    let bucket = if cas_siblings {
        cas::SIBLINGS_BUCKET.to_string()
    } else if registers || cas_mode || redis_sets || counters {
        register::BUCKET.to_string()
    } else {
        format!("jepsen_{}", opts.mode)
    };
    let conflicts = if cas_siblings {
        "siblings"
    } else if registers || cas_mode || redis_sets || counters {
        "lww"
    } else {
        opts.mode.as_str()
    };
    create_bucket(
        &cluster,
        &bucket,
        conflicts,
        opts.sloppy,
        opts.cas.as_deref(),
    )?;

    let recorder = Arc::new(Recorder {
        started: Instant::now(),
        ops: Mutex::new(Vec::new()),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for p in 0..opts.clients {
        let (recorder, stop, done) = (recorder.clone(), stop.clone(), done.clone());
        let node = p % opts.nodes;
        let endpoint = cluster.http[node].clone();
        let resp = cluster.resp[node].clone();
        let (bucket, keys, seed) = (bucket.clone(), opts.keys, opts.seed);
        let pause = Duration::from_micros(1_000_000 * opts.clients as u64 / opts.rate.max(1));
        threads.push(std::thread::spawn(move || {
            if registers {
                loops::register_loop(
                    p as u64, node, &resp, keys, seed, pause, &recorder, &stop, &done,
                )
            } else if redis_sets {
                loops::redis_set_loop(
                    p as u64, node, &resp, keys, seed, pause, &recorder, &stop, &done,
                )
            } else if counters {
                counter::counter_loop(
                    p as u64, node, &resp, keys, seed, pause, &recorder, &stop, &done,
                )
            } else if cas_mode {
                let front = if cas_http {
                    cas::Front::Http(endpoint)
                } else if cas_txn {
                    cas::Front::Txn(resp)
                } else {
                    cas::Front::Resp(resp)
                };
                loops::cas_loop(
                    p as u64, node, &front, &bucket, keys, seed, pause, &recorder, &stop, &done,
                )
            } else {
                loops::client_loop(
                    p as u64, node, &endpoint, &bucket, keys, seed, pause, &recorder, &stop, &done,
                )
            }
        }));
    }

    let bar = if opts.progress {
        let b = ProgressBar::new(opts.seconds);
        b.set_style(
            ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len}s {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        b
    } else {
        ProgressBar::hidden()
    };
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let mut faults: Vec<Fault> = Vec::new();
    let run_for = Duration::from_secs(opts.seconds);
    let interval = Duration::from_secs(opts.interval.max(1));
    let tick = |bar: &ProgressBar, msg: &str| {
        bar.set_position(recorder.started.elapsed().as_secs().min(opts.seconds));
        bar.set_message(format!("{msg} | {} ops", done.load(Ordering::Relaxed)));
    };
    // Quiet, then a fault, then quiet... every window bounded by the run's end.
    let sleep_until = |until: Instant, bar: &ProgressBar, msg: &str| {
        while Instant::now() < until {
            tick(bar, msg);
            std::thread::sleep(Duration::from_millis(200).min(until - Instant::now()));
        }
    };
    while recorder.started.elapsed() + interval * 2 <= run_for {
        sleep_until(Instant::now() + interval, &bar, "quiet");
        if opts.nemesis.is_empty() {
            continue;
        }
        let kind = opts.nemesis[rng.random_range(0..opts.nemesis.len())].clone();
        let start = recorder.now();
        let (description, groups) = apply_fault(&kind, &mut net, &mut cluster, &mut rng)?;
        sleep_until(Instant::now() + interval, &bar, &description);
        heal(&mut net, &mut cluster)?;
        faults.push(Fault {
            kind,
            description,
            start,
            end: recorder.now(),
            groups,
        });
    }
    sleep_until(recorder.started + run_for, &bar, "quiet");
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    bar.finish_and_clear();
    let workload_secs = recorder.started.elapsed().as_secs_f64();

    // Heal everything, then measure how long the replicas take to agree.
    heal(&mut net, &mut cluster)?;
    let healed = Instant::now();
    let keys: Vec<String> = if registers {
        (0..opts.keys).map(register::key_name).collect()
    } else if cas_mode {
        (0..opts.keys).map(cas::key_name).collect()
    } else if counters {
        (0..opts.keys).map(counter::key_name).collect()
    } else {
        (0..opts.keys).map(key_name).collect()
    };
    let (convergence, unconverged) = converge(
        &cluster,
        &bucket,
        &keys,
        healed,
        Duration::from_secs(opts.converge_timeout),
    )?;
    let paxos_repair = paxos_repair_figures(&cluster);
    let (final_sets, final_registers) = if registers {
        (
            BTreeMap::new(),
            final_registers(&cluster, &bucket, &keys, "all")?,
        )
    } else if cas_mode {
        (
            BTreeMap::new(),
            final_registers(&cluster, &bucket, &keys, "serial")?,
        )
    } else if redis_sets {
        (final_redis_sets(&cluster, &bucket, &keys)?, BTreeMap::new())
    } else if counters {
        (BTreeMap::new(), final_counters(&cluster, &bucket, &keys)?)
    } else {
        (final_reads(&cluster, &bucket, &keys)?, BTreeMap::new())
    };
    // The final reads count as reads that ended now (a value may expire while they retry).
    let final_time = recorder.now();

    let mut ops = recorder.ops.lock().map(|o| o.clone()).unwrap_or_default();
    // Threads record concurrently; each process's own ops are already in order, and a stable
    // sort by time keeps them so.
    ops.sort_by_key(|o| o.time);
    let verdict = check::check(&ops, &final_sets);
    let cas_verdict = cas_mode.then(|| cas::check(&ops, &final_registers, final_time));
    let counter_verdict = counters.then(|| counter::check(&ops, &final_registers));
    let register_verdict = registers.then(|| {
        check_register::check_registers(
            &ops,
            &final_registers,
            final_time,
            cluster::MAX_CLOCK_SKEW_MS,
        )
    });
    let completed: Vec<&Op> = ops.iter().filter(|o| o.kind != Kind::Invoke).collect();
    let ok = completed.iter().filter(|o| o.kind == Kind::Ok).count();
    let latencies = latencies_ms(&ops);
    let mut fault_counts = BTreeMap::new();
    for f in &faults {
        *fault_counts.entry(f.kind.clone()).or_insert(0) += 1;
    }
    let sides: Vec<serde_json::Value> = check::availability_by_side(&ops, &faults)
        .into_iter()
        .map(|(d, sides)| {
            json!({ "fault": d, "sides": sides.iter().map(|(g, ok, all)| json!({
                "nodes": g.iter().map(|i| i + 1).collect::<Vec<_>>(), "ok": ok, "all": all,
                "availability": if *all == 0 { 1.0 } else { *ok as f64 / *all as f64 },
            })).collect::<Vec<_>>() })
        })
        .collect();
    // Without fsync a killed node may lose what it acknowledged (by design): losses and the
    // stale reads they cause are then measured, not failures; the rest still must hold.
    let fsync = opts.durability == "fsync";
    let passed = unconverged == 0
        && cas_verdict.as_ref().is_none_or(|c| c.violations.is_empty())
        && match &register_verdict {
            Some(r) => {
                r.unexpected == 0
                    && r.failed_but_observed == 0
                    && r.expired_returned == 0
                    && (!fsync
                        || if opts.sloppy {
                            r.sloppy_violations() == 0
                        } else {
                            r.violations() == 0
                        })
            }
            None if cas_mode => true,
            None if counters => counter_verdict
                .as_ref()
                .is_some_and(|c| c.violations.is_empty()),
            None => {
                verdict.failed_but_observed == 0
                    && verdict.unexpected == 0
                    && (opts.mode == "lww" || !fsync || verdict.lost == 0)
            }
        };

    let history_path = opts.out.join("history.jsonl");
    let mut text = String::new();
    for o in &ops {
        text.push_str(&serde_json::to_string(o)?);
        text.push('\n');
    }
    for f in &faults {
        text.push_str(&serde_json::to_string(
            &json!({ "process": "nemesis", "type": "info", "f": f.kind, "value": f }),
        )?);
        text.push('\n');
    }
    std::fs::write(&history_path, text)?;
    if registers || cas_mode {
        std::fs::write(
            opts.out.join("final.json"),
            serde_json::to_string(&json!({ "time": final_time, "registers": final_registers }))?,
        )?;
    }
    let plot_path = opts.out.join("plot.svg");
    plot::draw(&plot_path, &ops, &faults, workload_secs)?;
    let summary = Summary {
        passed,
        mode: opts.mode.clone(),
        durability: opts.durability.clone(),
        nodes: opts.nodes,
        seconds: workload_secs,
        ops: completed.len() as u64,
        faults: fault_counts,
        verdict,
        register: register_verdict,
        cas: cas_verdict,
        counter: counter_verdict,
        paxos_repair,
        converged_keys: keys.len() - unconverged,
        unconverged_keys: unconverged,
        convergence_ms: percentiles(convergence),
        availability: if completed.is_empty() {
            0.0
        } else {
            ok as f64 / completed.len() as f64
        },
        availability_by_partition_side: sides,
        latency_ms: percentiles(latencies),
        throughput_ok_per_s: ok as f64 / workload_secs,
        files: vec![
            history_path.display().to_string(),
            plot_path.display().to_string(),
            opts.out.join("summary.json").display().to_string(),
        ],
    };
    std::fs::write(
        opts.out.join("summary.json"),
        serde_json::to_string_pretty(&summary)?,
    )?;
    Ok(summary)
}

/// Checks a finished compare-and-set run again from its files (`summary.json` says the
/// mode, `history.jsonl`, `final.json`); `None` for a run of another workload.
pub fn recheck_cas(dir: &std::path::Path) -> Result<Option<cas::CasVerdict>> {
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("summary.json"))
            .with_context(|| format!("while reading {}", dir.join("summary.json").display()))?,
    )?;
    if summary["mode"] != "cas" {
        return Ok(None);
    }
    let history = std::fs::read_to_string(dir.join("history.jsonl"))?;
    let ops: Vec<Op> = history
        .lines()
        .filter_map(|l| serde_json::from_str::<Op>(l).ok())
        .collect();
    let fin: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("final.json"))?)?;
    let time = fin["time"].as_u64().context("final.json has no time")?;
    let finals: BTreeMap<String, Option<u64>> = serde_json::from_value(fin["registers"].clone())?;
    Ok(Some(cas::check(&ops, &finals, time)))
}

/// Checks a finished register run again from its files (`history.jsonl`, `final.json`), as
/// `hydra-jepsen --recheck DIR` does: for a checker change, or to look at a failure.
pub fn recheck_registers(dir: &std::path::Path) -> Result<check_register::RegisterVerdict> {
    let history = std::fs::read_to_string(dir.join("history.jsonl"))
        .with_context(|| format!("while reading {}", dir.join("history.jsonl").display()))?;
    let ops: Vec<Op> = history
        .lines()
        .filter_map(|l| serde_json::from_str::<Op>(l).ok())
        .collect();
    let fin: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("final.json"))
            .with_context(|| format!("while reading {}", dir.join("final.json").display()))?,
    )?;
    let time = fin["time"].as_u64().context("final.json has no time")?;
    let finals: BTreeMap<String, Option<u64>> = serde_json::from_value(fin["registers"].clone())?;
    Ok(check_register::check_registers(
        &ops,
        &finals,
        time,
        cluster::MAX_CLOCK_SKEW_MS,
    ))
}

pub fn key_name(i: usize) -> String {
    format!("set{i}")
}

fn create_bucket(
    cluster: &Cluster,
    bucket: &str,
    mode: &str,
    sloppy: bool,
    cas: Option<&str>,
) -> Result<()> {
    let c = Client::with_timeout(&cluster.http[0], Duration::from_secs(5))
        .with_token(crate::cluster::ADMIN_TOKEN);
    let mut props = json!({ "conflicts": mode, "sloppy": sloppy });
    if let Some(cas) = cas {
        props["cas"] = json!(cas);
    }
    c.set_bucket(bucket, &props)
        .with_context(|| format!("while creating bucket {bucket}"))?;
    // Wait until gossip has brought it to every node (bounded).
    let deadline = Instant::now() + Duration::from_secs(20);
    for http in &cluster.http {
        let c = Client::with_timeout(http, Duration::from_secs(2))
            .with_token(crate::cluster::ADMIN_TOKEN);
        while c.bucket(bucket).is_err() {
            if Instant::now() > deadline {
                bail!("bucket {bucket} did not reach {http} within 20 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(())
}

/// Applies one fault of `kind`; returns its description and, for partitions, the groups.
fn apply_fault(
    kind: &str,
    net: &mut Net,
    cluster: &mut Cluster,
    rng: &mut ChaCha8Rng,
) -> Result<(String, Vec<Vec<usize>>)> {
    let n = cluster.len();
    let name = |v: &[usize]| {
        v.iter()
            .map(|i| format!("n{}", i + 1))
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        order.swap(i, rng.random_range(0..=i));
    }
    Ok(match kind {
        "partition" => match rng.random_range(0..4) {
            0 => {
                let (one, rest) = (vec![order[0]], order[1..].to_vec());
                net.partition(&[one.clone(), rest.clone()])?;
                (format!("isolate {}", name(&one)), vec![one, rest])
            }
            1 => {
                let minority = order[..(n - 1) / 2].to_vec();
                let majority = order[(n - 1) / 2..].to_vec();
                net.partition(&[minority.clone(), majority.clone()])?;
                (
                    format!("split {} | {}", name(&minority), name(&majority)),
                    vec![minority, majority],
                )
            }
            2 => {
                // Two halves that both still reach one bridge node.
                let bridge = order[0];
                let half = (n - 1) / 2;
                let a = order[1..1 + half].to_vec();
                let b = order[1 + half..].to_vec();
                net.partition(&[a.clone(), b.clone()])?;
                let mut ga = a.clone();
                ga.push(bridge);
                let mut gb = b.clone();
                gb.push(bridge);
                (
                    format!("bridge {} | n{} | {}", name(&a), bridge + 1, name(&b)),
                    vec![ga, gb],
                )
            }
            _ => {
                // One node cannot send to any other (it still receives).
                let a = order[0];
                for b in 0..n {
                    net.cut_one_way(a, b)?;
                }
                (format!("one-way: n{} cannot send", a + 1), vec![])
            }
        },
        "kill" => {
            let count = rng.random_range(1..=((n - 1) / 2).max(1));
            let victims = order[..count].to_vec();
            for &v in &victims {
                cluster.kill9(v);
            }
            (format!("kill -9 {}", name(&victims)), vec![])
        }
        "pause" => {
            cluster.pause(order[0]);
            (format!("SIGSTOP n{}", order[0] + 1), vec![])
        }
        _ => {
            let sign = if rng.random_bool(0.5) { 1 } else { -1 };
            let how = rng.random_range(0..3);
            if how == 0 {
                // Skewed within the bound (so the node keeps working): only what a
                // connection saw orders its writes then, not real time.
                let half = cluster::MAX_CLOCK_SKEW_MS as i64 / 2;
                let offset = rng.random_range(half * 2 / 5..=half * 9 / 10) * sign;
                cluster.jump_clock(order[0], offset)?;
                (
                    format!("clock n{} skewed {offset:+} ms (running)", order[0] + 1),
                    vec![],
                )
            } else if how == 1 {
                let offset = rng.random_range(1_000..=10_000i64) * sign;
                cluster.restart_with_clock(order[0], offset)?;
                (
                    format!("clock n{} {offset:+} ms (restarted)", order[0] + 1),
                    vec![],
                )
            } else {
                // A running clock steps by 2 s to an hour, forward or back.
                let offset = rng.random_range(2_000..=3_600_000i64) * sign;
                cluster.jump_clock(order[0], offset)?;
                (
                    format!("clock n{} jumps {offset:+} ms (running)", order[0] + 1),
                    vec![],
                )
            }
        }
    })
}

fn heal(net: &mut Net, cluster: &mut Cluster) -> Result<()> {
    net.heal()?;
    cluster.heal()
}

/// Polls every replica of every key (`r=one` at the replica answers from its own store)
/// until all replicas of the key agree. Returns the milliseconds each key took, and how many
/// never agreed within `limit`.
/// The nodes' Paxos repair counters (`/v1/status`), summed; nodes that do not answer count
/// nothing.
fn paxos_repair_figures(cluster: &Cluster) -> BTreeMap<String, u64> {
    let mut sum = BTreeMap::new();
    for http in &cluster.http {
        let Ok(status) = Client::with_timeout(http, Duration::from_secs(2))
            .with_token(crate::cluster::ADMIN_TOKEN)
            .status()
        else {
            continue;
        };
        if let Some(figures) = status["paxos_repair"].as_object() {
            for (name, v) in figures {
                *sum.entry(name.clone()).or_default() += v.as_u64().unwrap_or(0);
            }
        }
    }
    sum
}

fn converge(
    cluster: &Cluster,
    bucket: &str,
    keys: &[String],
    since: Instant,
    limit: Duration,
) -> Result<(Vec<f64>, usize)> {
    let admin = Client::with_timeout(&cluster.http[0], Duration::from_secs(5))
        .with_token(crate::cluster::ADMIN_TOKEN);
    let clients: Vec<Client> = cluster
        .http
        .iter()
        .map(|h| {
            Client::with_timeout(h, Duration::from_secs(2)).with_token(crate::cluster::ADMIN_TOKEN)
        })
        .collect();
    let mut replicas: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for k in keys {
        let ring = admin
            .ring(&[("bucket", bucket), ("key", k)])
            .with_context(|| format!("while asking for the replicas of {k}"))?;
        let list: Vec<usize> = ring["preference_list"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|n| n["id"].as_u64())
                    .map(|id| id as usize - 1)
                    .collect()
            })
            .unwrap_or_default();
        replicas.insert(k.as_str(), list);
    }
    let mut times = BTreeMap::new();
    while times.len() < keys.len() && since.elapsed() < limit {
        for k in keys {
            if times.contains_key(k.as_str()) {
                continue;
            }
            let sets: Vec<Option<String>> = replicas[k.as_str()]
                .iter()
                .map(|&i| replica_state(&clients[i], bucket, k))
                .collect();
            if sets.iter().all(Option::is_some) && sets.windows(2).all(|w| w[0] == w[1]) {
                times.insert(k.as_str(), since.elapsed().as_secs_f64() * 1000.0);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // What the replicas of the keys that never agreed hold, for the log.
    for k in keys
        .iter()
        .filter(|k| !times.contains_key(k.as_str()))
        .take(3)
    {
        for &i in &replicas[k.as_str()] {
            let state = replica_state(&clients[i], bucket, k);
            eprintln!("unconverged {k} at n{}: {state:?}", i + 1);
        }
    }
    Ok((times.values().copied().collect(), keys.len() - times.len()))
}

/// What one replica holds for `key` (`r=one` at a replica answers from its own store): the
/// status and the values, siblings in order; `None` if it did not answer.
fn replica_state(client: &Client, bucket: &str, key: &str) -> Option<String> {
    let r = client.get(bucket, key, &[("r", "one")]).ok()?;
    Some(match r.status {
        300 => format!("300 {:?}", workload::read_set(&r)),
        status => format!("{status} {}", String::from_utf8_lossy(&r.body)),
    })
}

/// Every register at `r=all` over HTTP: its value, or `None` when absent.
/// Every register's value, read at `r` (`all`, or `serial` for compare-and-set keys).
fn final_registers(
    cluster: &Cluster,
    bucket: &str,
    keys: &[String],
    r: &str,
) -> Result<BTreeMap<String, Option<u64>>> {
    final_each(cluster, keys, |c, k| {
        let r = c.get(bucket, k, &[("r", r)])?;
        if r.status == 404 {
            return Ok(Ok(None));
        }
        let text = String::from_utf8_lossy(&r.body);
        Ok(text
            .parse::<u64>()
            .map(Some)
            .map_err(|_| anyhow::anyhow!("the final value of {k} is no workload value: {text:?}")))
    })
}

/// Every key's set (a Redis set, read over HTTP as JSON) at `r=all`; absent is empty.
fn final_redis_sets(
    cluster: &Cluster,
    bucket: &str,
    keys: &[String],
) -> Result<BTreeMap<String, Set>> {
    final_each(cluster, keys, |c, k| {
        let r = c.get(bucket, k, &[("r", "all")])?;
        if r.status == 404 {
            return Ok(Ok(Set::new()));
        }
        let parsed = serde_json::from_slice::<serde_json::Value>(&r.body)
            .ok()
            .and_then(|v| {
                v["members"].as_array().map(|m| {
                    m.iter()
                        .filter_map(|x| x.as_str().and_then(|s| s.parse::<u64>().ok()))
                        .collect::<Set>()
                })
            });
        Ok(parsed.ok_or_else(|| {
            anyhow::anyhow!(
                "the final read of {k} is no set: {}",
                String::from_utf8_lossy(&r.body)
            )
        }))
    })
}

/// Every key's count (field `hits` of a hash, read over HTTP as JSON) at `r=all`; absent is
/// `None`.
fn final_counters(
    cluster: &Cluster,
    bucket: &str,
    keys: &[String],
) -> Result<BTreeMap<String, Option<u64>>> {
    final_each(cluster, keys, |c, k| {
        let r = c.get(bucket, k, &[("r", "all")])?;
        if r.status == 404 {
            return Ok(Ok(None));
        }
        let parsed = serde_json::from_slice::<serde_json::Value>(&r.body)
            .ok()
            .and_then(|v| {
                let count = v["fields"][counter::FIELD].as_str()?;
                count.parse::<u64>().ok().map(Some)
            });
        Ok(parsed.ok_or_else(|| {
            anyhow::anyhow!(
                "the final read of {k} is no counter: {}",
                String::from_utf8_lossy(&r.body)
            )
        }))
    })
}

/// Every key's set at `r=all`.
fn final_reads(cluster: &Cluster, bucket: &str, keys: &[String]) -> Result<BTreeMap<String, Set>> {
    final_each(cluster, keys, |c, k| {
        workload::read(c, bucket, k, "all").map(Ok)
    })
}

/// `read` of every key through node 1, each retried up to 20 times while the request
/// fails (`Err`); an answer that makes no sense (`Ok(Err)`) ends the run.
fn final_each<T>(
    cluster: &Cluster,
    keys: &[String],
    read: impl Fn(&Client, &str) -> Result<Result<T>, hydra_client::Error>,
) -> Result<BTreeMap<String, T>> {
    let c = Client::with_timeout(&cluster.http[0], Duration::from_secs(5))
        .with_token(crate::cluster::ADMIN_TOKEN);
    let mut out = BTreeMap::new();
    for k in keys {
        let mut last = None;
        for _ in 0..20 {
            match read(&c, k) {
                Ok(answer) => {
                    last = Some(answer?);
                    break;
                }
                Err(e) => {
                    eprintln!("final read of {k} failed: {e}; retrying");
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
        }
        let Some(value) = last else {
            bail!("the final r=all read of {k} failed 20 times");
        };
        out.insert(k.clone(), value);
    }
    Ok(out)
}

/// Latency of every completed operation, in milliseconds.
fn latencies_ms(ops: &[Op]) -> Vec<f64> {
    let mut started: BTreeMap<u64, u64> = BTreeMap::new();
    let mut out = Vec::new();
    for o in ops {
        if o.kind == Kind::Invoke {
            started.insert(o.process, o.time);
        } else if let Some(t) = started.remove(&o.process) {
            out.push((o.time.saturating_sub(t)) as f64 / 1e6);
        }
    }
    out
}
