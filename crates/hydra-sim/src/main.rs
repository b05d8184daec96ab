//! `hydra-sim`: runs simulations from seeds and reports a summary; exits non-zero on any
//! violation, printing the seed and the command that replays it.

use anyhow::Result;
use clap::Parser;
use hydra_sim::{SimConfig, run};
use indicatif::{ProgressBar, ProgressStyle};
use std::process::ExitCode;

#[derive(Parser)]
#[command(about = "Deterministic simulation of Hydra clusters with faults")]
struct Args {
    /// Number of seeds to run (starting at --first).
    #[arg(long, default_value_t = 100)]
    seeds: u64,
    /// First seed of the sweep.
    #[arg(long, default_value_t = 0)]
    first: u64,
    /// Replay exactly one seed, with its full report.
    #[arg(long)]
    seed: Option<u64>,
    /// Simulated milliseconds of faulty workload per seed.
    #[arg(long)]
    duration_ms: Option<u64>,
    /// Write the replayed seed's history as JSON lines to this file (with --seed).
    #[arg(long)]
    history: Option<std::path::PathBuf>,
    /// Print every message delivered whose debug form contains this text (say
    /// `key: [107, 51] }` for key k3), and every crash, restart and clock jump (with --seed)
    #[arg(long)]
    trace: Option<String>,
    /// Measure anti-entropy instead: two replicas of this many keys, 0%, 0.1%, 1% and 10% of
    /// them differing; prints bytes exchanged and time to converge.
    #[arg(long)]
    ae_bench: Option<usize>,
    /// The mixing run: send this share (0 to 1) of the compare-and-set clients' writes as
    /// plain writes, and report how many were refused (`cas_managed_key`) against how many
    /// seeds checker (h) finds not linearizable.
    #[arg(long)]
    mix_plain: Option<f64>,
    /// Milliseconds between the nodes' walks of Paxos repair rounds (0: Paxos state is never
    /// collected, so plain writes to a compare-and-set key are always refused).
    #[arg(long)]
    paxos_repair_ms: Option<u64>,
    /// Plant this bug (a field of `hydra_core::bugs::PlantedBugs`; needs a build with
    /// `--features planted-bugs`): how many seeds it takes a checker to catch it.
    #[arg(long)]
    bug: Option<String>,
    /// Clients update hashes and sets too (checker (l)); off by default, so seeds replay as
    /// the other workloads' tests run them.
    #[arg(long)]
    collections: bool,
}

fn config(args: &Args, seed: u64) -> SimConfig {
    let mut c = SimConfig::from_seed(seed);
    c.collections = args.collections;
    if let Some(d) = args.duration_ms {
        c.duration_ms = d;
    }
    if let Some(p) = args.mix_plain {
        c.plain_cas_writes = p.clamp(0.0, 1.0);
        // The mixing run measures plain writes against the refusal of `conditional_only`.
        c.all_writes = false;
        c.cas_siblings = false;
    }
    if let Some(ms) = args.paxos_repair_ms {
        c.paxos_repair_interval_ms = ms;
    }
    c
}

fn replay_command(args: &Args, seed: u64) -> String {
    let mut cmd = format!("cargo run --release -p hydra-sim -- --seed {seed}");
    if let Some(d) = args.duration_ms {
        cmd.push_str(&format!(" --duration-ms {d}"));
    }
    if let Some(p) = args.mix_plain {
        cmd.push_str(&format!(" --mix-plain {p}"));
    }
    if let Some(ms) = args.paxos_repair_ms {
        cmd.push_str(&format!(" --paxos-repair-ms {ms}"));
    }
    if args.collections {
        cmd.push_str(" --collections");
    }
    if let Some(bug) = &args.bug {
        cmd = cmd.replacen("-p hydra-sim", "-p hydra-sim --features planted-bugs", 1);
        cmd.push_str(&format!(" --bug {bug}"));
    }
    cmd
}

fn main() -> Result<ExitCode> {
    let args = Args::parse();
    if let Some(name) = &args.bug {
        let mut bugs = hydra_core::bugs::PlantedBugs::default();
        if !bugs.switch_on(name) {
            anyhow::bail!("unknown planted bug {name:?}");
        }
        #[cfg(feature = "planted-bugs")]
        hydra_core::bugs::set_planted(bugs);
        #[cfg(not(feature = "planted-bugs"))]
        anyhow::bail!("planted bugs need a build with --features planted-bugs");
    }
    if let Some(keys) = args.ae_bench {
        println!(
            "{:>8} {:>9} {:>12} {:>9} {:>13} {:>9} {:>9} {:>9}",
            "keys",
            "differing",
            "ae_bytes",
            "ae_msgs",
            "repair_bytes",
            "repairs",
            "sim_ms",
            "cpu_ms"
        );
        for per_mille in [0usize, 1, 10, 100] {
            // The benchmark reports CPU time too; the simulation itself never reads a clock.
            #[allow(clippy::disallowed_methods)]
            let started = std::time::Instant::now();
            let r = hydra_sim::aebench::run(keys, keys * per_mille / 1000);
            println!(
                "{:>8} {:>9} {:>12} {:>9} {:>13} {:>9} {:>9} {:>9}{}",
                r.keys,
                r.differing,
                r.ae_bytes,
                r.ae_messages,
                r.repair_bytes,
                r.repair_messages,
                r.sim_ms,
                started.elapsed().as_millis(),
                if r.converged { "" } else { "  NOT CONVERGED" }
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(seed) = args.seed {
        let report = run(SimConfig {
            trace: args.trace.clone(),
            ..config(&args, seed)
        });
        for v in &report.violations {
            println!("violation: {v}");
        }
        if let Some(path) = &args.history {
            std::fs::write(path, report.history.to_json_lines())?;
        }
        println!("{}", report.summary());
        return Ok(if report.violations.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    let bar = ProgressBar::new(args.seeds);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:40} {pos}/{len} seeds {elapsed_precise} eta {eta} {msg}",
        )
        .expect("the template is valid"),
    );
    let (mut ops, mut acked, mut lost, mut unconverged, mut max_siblings, mut sim_ms) =
        (0u64, 0u64, 0u64, 0u64, 0usize, 0u64);
    let (mut crashes, mut partitions, mut hints_stored, mut hints_delivered) =
        (0u64, 0u64, 0u64, 0u64);
    let mut hints_dropped = 0u64;
    let mut pauses = 0u64;
    let mut jumps = 0u64;
    let mut tombstones_left = 0u64;
    let mut keys_listed = 0u64;
    let (mut flood_writes, mut max_flood_siblings) = (0u64, 0usize);
    let (mut plain, mut refused, mut plain_acked) = (0u64, 0u64, 0u64);
    let (mut paxos_rounds, mut paxos_collected) = (0u64, 0u64);
    let (mut counter_applied, mut counter_resolved) = (0u64, 0u64);
    let mut collection_acked = 0u64;
    let mut increments_acked = 0u64;
    let mut all_writes_seeds = 0u64;
    let mut cas_siblings_seeds = 0u64;
    let mut failing = Vec::new();
    for seed in args.first..args.first + args.seeds {
        let report = run(config(&args, seed));
        ops += report.ops;
        acked += report.acked_writes;
        lost += report.lost_writes;
        unconverged += report.unconverged_keys;
        max_siblings = max_siblings.max(report.max_siblings);
        sim_ms += report.sim_ms;
        crashes += report.crashes;
        partitions += report.partitions;
        pauses += report.pauses;
        jumps += report.clock_jumps;
        tombstones_left += report.tombstones_left;
        keys_listed += report.keys_listed;
        flood_writes += report.flood_writes;
        max_flood_siblings = max_flood_siblings.max(report.max_flood_siblings);
        hints_stored += report.hints_stored;
        hints_delivered += report.hints_delivered;
        hints_dropped += report.hints_dropped;
        plain += report.plain_cas_writes;
        refused += report.plain_cas_refused;
        plain_acked += report.plain_cas_acked;
        paxos_rounds += report.paxos_rounds;
        counter_applied += report.counter_applied;
        collection_acked += report.collection_acked;
        increments_acked += report.increments_acked;
        all_writes_seeds += u64::from(report.all_writes);
        cas_siblings_seeds += u64::from(report.cas_siblings);
        counter_resolved += report.counter_resolved;
        paxos_collected += report.paxos_states_collected;
        if !report.violations.is_empty() {
            bar.suspend(|| {
                eprintln!("seed {seed} failed: {}", report.violations[0]);
                eprintln!("replay: {}", replay_command(&args, seed));
            });
            failing.push(seed);
        }
        bar.set_message(format!("failing={}", failing.len()));
        bar.inc(1);
    }
    bar.finish_and_clear();
    if args.mix_plain.is_some() {
        println!(
            "mixing run: plain_cas_writes={plain} refused={refused} acked={plain_acked} not_linearizable_seeds={} of {}",
            failing.len(),
            args.seeds
        );
    }
    println!(
        "seeds={} sim_hours={:.2} ops={ops} acked_writes={acked} lost_writes={lost} unconverged_keys={unconverged} max_siblings={max_siblings} crashes={crashes} partitions={partitions} pauses={pauses} clock_jumps={jumps} hints_stored={hints_stored} hints_delivered={hints_delivered} hints_dropped={hints_dropped} tombstones_left={tombstones_left} flood_writes={flood_writes} max_flood_siblings={max_flood_siblings} all_writes_seeds={all_writes_seeds} cas_siblings_seeds={cas_siblings_seeds} counter_applied={counter_applied} collection_acked={collection_acked} increments_acked={increments_acked} counter_resolved={counter_resolved} paxos_rounds={paxos_rounds} paxos_states_collected={paxos_collected} keys_listed={keys_listed} failing_seeds={}",
        args.seeds,
        sim_ms as f64 / 3_600_000.0,
        failing.len()
    );
    if let Some(seed) = failing.first() {
        eprintln!(
            "first failing seed {seed}; replay: {}",
            replay_command(&args, *seed)
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
