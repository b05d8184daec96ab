//! `hydra-jepsen`: runs Hydra's fault harness (see the library's docs) and prints the summary.

use anyhow::{Context, Result};
use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "hydra-jepsen",
    about = "Real hydra processes in network namespaces, a set workload, a nemesis, a checker (needs root)"
)]
struct Args {
    /// Nodes in the cluster (at least 3).
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Seconds of workload under faults.
    #[arg(long, default_value_t = 120)]
    time: u64,
    /// `set` (a siblings bucket: no acknowledged add may be lost), `set-lww` (an lww
    /// bucket: the loss is measured and reported, never claimed as a pass), `register`
    /// (SET/GET with TTLs, GETDEL, PEXPIRE and PERSIST over the Redis protocol in bucket
    /// `redis`, checked for lww order, refreshes undone by expiry, deleted or expired
    /// values returned and phantoms) or `cas-register` (`SET ... IFEQ|NX GET` and serial
    /// `GET`s over the Redis protocol, checked for linearizability) or `cas-register-http`
    /// (the same over HTTP: `If-Match: <context>`/`If-None-Match: *` PUTs and `r=serial`
    /// GETs) or `cas-register-txn` (the write as Redis's optimistic lock: `WATCH`, `GET`,
    /// `MULTI`, `SET`, `EXEC`) or `redis-set` (`SADD` of unique members, `SMEMBERS`) or
    /// `redis-counter` (`HINCRBY key hits 1`, exact through compare-and-set: no two
    /// acknowledged replies equal, the final count between the acknowledged increments and
    /// those plus the unknown ones).
    #[arg(long, default_value = "set")]
    workload: String,
    /// Faults to rotate through: partition, kill, pause, clock (comma list; empty: none).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "partition,kill,pause,clock"
    )]
    nemesis: Vec<String>,
    /// Seconds each fault lasts (and each quiet period between faults).
    #[arg(long, default_value_t = 5)]
    interval: u64,
    #[arg(long, default_value_t = 10)]
    clients: usize,
    #[arg(long, default_value_t = 10)]
    keys: usize,
    /// Operations per second, all clients together.
    #[arg(long, default_value_t = 200)]
    rate: u64,
    /// Use strict quorums (no fallbacks or hints) instead of sloppy ones.
    #[arg(long)]
    strict: bool,
    /// The bucket's `cas` property: `all_writes` makes the `register` workload's every
    /// write and read a Paxos one (default: the bucket's default, `conditional_only`).
    #[arg(long)]
    cas: Option<String>,
    /// `cas-register` and `cas-register-http`: the keys live in a bucket that keeps
    /// siblings (`jepsen_cas`) instead of the `lww` bucket `redis`.
    #[arg(long)]
    siblings: bool,
    /// The nodes' storage.durability: fsync, periodic:<ms> or none.
    #[arg(long, default_value = "fsync")]
    durability: String,
    /// The `hydra` binary to run (default: next to this one).
    #[arg(long)]
    hydra: Option<PathBuf>,
    /// Output folder: history.jsonl, summary.json, plot.svg, node logs.
    #[arg(long, default_value = "jepsen-out")]
    out: PathBuf,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Check a finished register run's files again (no cluster) and print the verdict
    /// (pass --strict for a run that had it).
    #[arg(long)]
    recheck: Option<PathBuf>,
    /// Seconds the replicas may take to agree after the final heal.
    #[arg(long, default_value_t = 120)]
    converge_timeout: u64,
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<bool> {
    let args = Args::parse();
    if let Some(dir) = &args.recheck {
        if let Some(verdict) = hydra_jepsen::recheck_cas(dir)? {
            println!("{}", serde_json::to_string_pretty(&verdict)?);
            return Ok(verdict.violations.is_empty());
        }
        let verdict = hydra_jepsen::recheck_registers(dir)?;
        println!("{}", serde_json::to_string_pretty(&verdict)?);
        // As the run judged it: every read with --strict, the final values only if sloppy.
        return Ok(if args.strict {
            verdict.violations() == 0
        } else {
            verdict.sloppy_violations() == 0
        });
    }
    let hydra = match args.hydra {
        Some(p) => p,
        None => std::env::current_exe()?
            .parent()
            .context("the executable has no folder")?
            .join("hydra"),
    };
    let mode = match args.workload.as_str() {
        "set" => "siblings",
        "set-lww" => "lww",
        "register" => "register",
        "cas-register" => "cas",
        "cas-register-http" => "cas-http",
        "cas-register-txn" => "cas-txn",
        "redis-set" => "redis-set",
        "redis-counter" => "redis-counter",
        other => anyhow::bail!(
            "unknown workload {other:?}; expected set, set-lww, register, cas-register, cas-register-http, cas-register-txn, redis-set or redis-counter"
        ),
    };
    let opts = hydra_jepsen::Options {
        nodes: args.nodes,
        seconds: args.time,
        mode: mode.into(),
        nemesis: args.nemesis.into_iter().filter(|n| !n.is_empty()).collect(),
        interval: args.interval,
        clients: args.clients,
        keys: args.keys,
        rate: args.rate,
        sloppy: !args.strict,
        cas: args.cas,
        siblings: args.siblings,
        durability: args.durability,
        hydra,
        out: args.out,
        seed: args.seed,
        converge_timeout: args.converge_timeout,
        progress: true,
        server_env: vec![],
    };
    let summary = hydra_jepsen::run(&opts)?;
    println!("{}", serde_json::to_string_pretty(&summary)?);
    println!(
        "{}",
        if summary.passed {
            "PASSED"
        } else {
            "FAILED (see summary.json)"
        }
    );
    Ok(summary.passed)
}
