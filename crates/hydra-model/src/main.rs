//! `hydra-model`: checks compare-and-set exhaustively (see the library docs), prints the
//! states explored and any counterexample.

use anyhow::{Context, bail};
use clap::Parser;
use hydra_model::{BUGS, CasModel, Config, bug_named};
use stateright::{Checker, Model};
use std::time::Instant;

#[derive(Parser)]
#[command(about = "Model-check Hydra's compare-and-set (the core's Paxos) with stateright")]
struct Args {
    /// Coordinators (2 or 3).
    #[arg(long, default_value_t = 2)]
    coordinators: usize,
    /// Each client sends every operation through one coordinator (else its operations take
    /// turns among them).
    #[arg(long)]
    pinned: bool,
    /// Prepare attempts per operation.
    #[arg(long, default_value_t = 2)]
    attempts: u32,
    /// Messages the network may lose in one run.
    #[arg(long, default_value_t = 1)]
    drops: u8,
    /// Messages the network may deliver twice in one run.
    #[arg(long, default_value_t = 1)]
    duplicates: u8,
    /// Acceptor crashes in one run.
    #[arg(long, default_value_t = 1)]
    crashes: u8,
    /// Coordinator deadlines firing in one run.
    #[arg(long, default_value_t = 1)]
    timeouts: u8,
    /// Paxos repair rounds (state collection) in one run, each started at any moment.
    #[arg(long, default_value_t = 0)]
    repairs: u8,
    /// The repairer's node id (the coordinators are 101, 102, ...): its fence is below or
    /// above their ballots of the same clock reading.
    #[arg(long, default_value_t = 100)]
    repairer_id: u64,
    /// The key lives in a `siblings` bucket (values are events of the coordinators' Paxos
    /// writers in a dotted version vector set), not an `lww` one.
    #[arg(long)]
    siblings: bool,
    /// A write whose outcome is unknown is not settled by a serial read (it stays in
    /// flight, free to take effect at any later moment).
    #[arg(long)]
    no_settle: bool,
    /// The key holds this value first, written by a plain write stamped ahead of the
    /// coordinators' clocks.
    #[arg(long)]
    initial: Option<u8>,
    /// The clients' programs (`hydra_model::workload`): `race` (two `SET NX`), `race-read`
    /// (two `SET NX`, each followed by a read), `replace` (two `IFEQ 0`, for `--initial 0`),
    /// `read` (a `SET NX` and two serial reads), `read-race` (a `SET NX` against a read then a
    /// `SET NX`), `swap` (`SET NX` then `IFEQ`), `small` (`SET NX` and a
    /// read against an `IFEQ`), `wide` (4 operations).
    #[arg(long, default_value = "race")]
    workload: String,
    /// A planted bug to switch on (needs a build with `--features planted-bugs`).
    #[arg(long)]
    bug: Option<String>,
    /// Stop after about this many states (0: when every state is explored); the states
    /// explored are then a bounded check, not an exhaustive one.
    #[arg(long, default_value_t = 0)]
    max_states: usize,
    /// Explore breadth first (shortest counterexamples; keeps every frontier state in
    /// memory) instead of depth first.
    #[arg(long)]
    bfs: bool,
    /// Random walks from this seed (stateright's simulation checker) instead of an
    /// exhaustive search: deep states fast, no completeness.
    #[arg(long)]
    simulate: Option<u64>,
    /// With `--simulate`: swarm random walks (`hydra_model::SwarmChooser`: each walk weighs
    /// kinds of actions and links its own way, so some messages wait long) instead of uniform
    /// ones.
    #[arg(long)]
    swarm: bool,
    /// Checker threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

#[cfg(feature = "planted-bugs")]
const ARM: Option<fn(hydra_core::bugs::PlantedBugs)> = Some(hydra_core::bugs::set_planted);
#[cfg(not(feature = "planted-bugs"))]
const ARM: Option<fn(hydra_core::bugs::PlantedBugs)> = None;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let Some(clients) = hydra_model::workload(&args.workload) else {
        bail!(
            "unknown workload {:?}: {}",
            args.workload,
            hydra_model::WORKLOADS.join(", ")
        );
    };
    let config = Config {
        clients,
        coordinators: args.coordinators,
        pinned: args.pinned,
        attempts: args.attempts,
        drops: args.drops,
        duplicates: args.duplicates,
        crashes: args.crashes,
        timeouts: args.timeouts,
        repairs: args.repairs,
        repairer_id: args.repairer_id,
        siblings: args.siblings,
        settle: !args.no_settle,
        initial: args.initial,
        ..Config::default()
    };
    let mut model = CasModel::new(config);
    if let Some(name) = &args.bug {
        let bugs = bug_named(name)
            .with_context(|| format!("unknown bug {name:?}; planted bugs: {}", BUGS.join(", ")))?;
        let arm = ARM.context("planted bugs need a build with --features planted-bugs")?;
        model = model.with_bugs(bugs, arm);
    }
    let started = Instant::now();
    let mut builder = model
        .checker()
        .threads(args.threads)
        .finish_when(stateright::HasDiscoveries::AnyFailures);
    if args.max_states > 0 {
        builder = builder.target_state_count(args.max_states);
    }
    let mut stderr = std::io::stderr();
    let mut progress = stateright::report::WriteReporter::new(&mut stderr);
    let failed = if let (Some(seed), true) = (args.simulate, args.swarm) {
        report(
            builder
                .spawn_simulation(seed, hydra_model::SwarmChooser)
                .join_and_report(&mut progress),
            started,
        )
    } else if let Some(seed) = args.simulate {
        report(
            builder
                .spawn_simulation(seed, stateright::UniformChooser)
                .join_and_report(&mut progress),
            started,
        )
    } else if args.bfs {
        report(builder.spawn_bfs().join_and_report(&mut progress), started)
    } else {
        report(builder.spawn_dfs().join_and_report(&mut progress), started)
    };
    if failed {
        std::process::exit(1);
    }
    Ok(())
}

/// Prints what was explored and each property's verdict; whether one failed.
fn report(checker: impl Checker<CasModel>, started: Instant) -> bool {
    println!(
        "states: {} explored, {} unique, max depth {}, {:.1} s{}",
        checker.state_count(),
        checker.unique_state_count(),
        checker.max_depth(),
        started.elapsed().as_secs_f64(),
        if checker.is_done() {
            ""
        } else {
            " (stopped before the end)"
        }
    );
    let mut failed = false;
    for property in checker.model().properties() {
        let found = checker.discovery(property.name);
        let holds = match property.expectation {
            stateright::Expectation::Always | stateright::Expectation::Eventually => {
                found.is_none()
            }
            stateright::Expectation::Sometimes => found.is_some(),
        };
        println!(
            "{} {}: {}",
            if holds { "ok  " } else { "FAIL" },
            property.name,
            if holds { "holds" } else { "violated" }
        );
        if let (false, Some(path)) = (holds, found) {
            println!("counterexample:");
            let steps = path.into_vec();
            for pair in steps.windows(2) {
                if let [(before, Some(action)), (after, _)] = pair {
                    println!("  {}", checker.model().describe(before, action, after));
                }
            }
            if let Some((last, _)) = steps.last() {
                println!("last state: {last:#?}");
            }
        }
        failed |= !holds;
    }
    failed
}
