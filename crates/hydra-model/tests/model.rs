//! The model checker over the core's own Paxos: no history it explores is non-linearizable,
//! the properties that show it is not vacuous are reached, and each planted bug it can
//! express is caught. The bounds keep this test to about a minute; `hydra-model` runs the
//! same model exhaustively (the figures are in ARCHITECTURE.md).

use hydra_core::bugs::{PlantedBugs, set_planted};
use hydra_model::{CasModel, Config, SwarmChooser, bug_named, workload};
use stateright::{Checker, HasDiscoveries, Model};

/// The properties that must always hold: the history, and Paxos's own (a chosen value is
/// kept).
const SAFETY: [&str; 2] = ["linearizable", "a chosen value is kept"];

/// Whether `found` (the properties discovered) holds a safety violation.
fn unsafe_found(found: &[&str]) -> bool {
    SAFETY.iter().any(|p| found.contains(p))
}

/// A workload without settling reads (an unknown write stays in flight): the depth-first
/// searches below meet their violations soonest so (settling reads are checked by swarm
/// walks, at the end).
fn config(name: &str, faults: bool, attempts: u32) -> Config {
    let budget = u8::from(faults);
    Config {
        clients: workload(name).expect("a workload"),
        attempts,
        drops: budget,
        duplicates: budget,
        crashes: budget,
        timeouts: budget,
        settle: false,
        ..Config::default()
    }
}

/// Explores up to `states` states depth first; the properties discovered.
fn check(model: CasModel, states: usize) -> (Vec<&'static str>, usize) {
    check_on(model, states, 2)
}

/// `check` on `threads` threads (one: the same depth-first order every run).
fn check_on(model: CasModel, states: usize, threads: usize) -> (Vec<&'static str>, usize) {
    let checker = model
        .checker()
        .threads(threads)
        .target_state_count(states)
        .finish_when(HasDiscoveries::AnyFailures)
        .spawn_dfs()
        .join();
    let mut found: Vec<&'static str> = checker.discoveries().keys().copied().collect();
    found.sort();
    (found, checker.unique_state_count())
}

#[test]
fn every_explored_compare_and_set_history_is_linearizable() {
    for (name, faults, attempts) in [("race", false, 1), ("small", true, 2)] {
        let (found, unique) = check(CasModel::new(config(name, faults, attempts)), 1_500_000);
        assert!(!unsafe_found(&found), "{name}: a non-linearizable history");
        assert!(unique > 200_000, "{name}: only {unique} states explored");
        println!("{name} (faults {faults}): {unique} unique states, found {found:?}");
    }
}

/// In a `siblings` bucket (each value an event of its coordinator's Paxos writer): every
/// explored history linearizable, both properties reached, and a planted bug caught there
/// too.
#[test]
fn the_model_holds_in_a_siblings_bucket() {
    let siblings = |name, faults, attempts| Config {
        siblings: true,
        ..config(name, faults, attempts)
    };
    for (name, faults, attempts) in [("race", false, 1), ("small", true, 2)] {
        let (found, unique) = check(CasModel::new(siblings(name, faults, attempts)), 1_000_000);
        assert!(!unsafe_found(&found), "{name}: a non-linearizable history");
        println!("siblings {name} (faults {faults}): {unique} unique states, found {found:?}");
        if !faults {
            for property in [
                "every operation done, a conditional write applied",
                "an outcome unknown",
            ] {
                assert!(found.contains(&property), "never reached: {property}");
            }
        }
    }
    for bug in ["paxos_forgets_promises", "paxos_ignores_in_progress"] {
        let bugs: PlantedBugs = bug_named(bug).expect("a planted bug");
        let model = CasModel::new(siblings("race", false, 1)).with_bugs(bugs, set_planted);
        // One thread: the same depth-first order every run (two made the search flaky).
        let (found, unique) = check_on(model, 3_000_000, 1);
        assert!(
            unsafe_found(&found),
            "{bug}: no violation in {unique} states"
        );
    }
}

#[test]
fn the_model_is_not_vacuous() {
    // A run where every operation ends and a conditional write applied, and one where an
    // outcome is unknown, are both reachable.
    let (found, _) = check(CasModel::new(config("race", false, 1)), 400_000);
    for property in [
        "every operation done, a conditional write applied",
        "an outcome unknown",
    ] {
        assert!(found.contains(&property), "never reached: {property}");
    }
}

#[test]
fn the_model_catches_planted_paxos_bugs() {
    // Each with the smallest configuration that shows it (see `hydra-model --bug`).
    for bug in [
        "paxos_forgets_promises",
        "paxos_accepts_below_promise",
        "paxos_ignores_in_progress",
        "paxos_quorum_off_by_one",
    ] {
        let bugs: PlantedBugs = bug_named(bug).expect("a planted bug");
        let model = CasModel::new(config("race", false, 1)).with_bugs(bugs, set_planted);
        // One thread: the same search every run (two threads' interleaving once left a CI
        // run without the violation).
        let (found, unique) = check_on(model, 3_000_000, 1);
        assert!(
            unsafe_found(&found),
            "{bug}: no violation in {unique} states"
        );
    }
    // The deeper ones are caught by swarm walks with settling reads (the last test), except
    // `paxos_beaten_ignores_base`: since a request knows its value applied when a commit of
    // it shows, ignoring a beating commit's base misleads it only when more than
    // `PAXOS_COMMITS_KEPT` commits passed while it was in doubt, more than these workloads
    // make (the simulator catches it).
}

#[test]
fn random_walks_of_the_model_catch_an_acceptor_answering_before_its_sync() {
    // The violation is deep (a promise lost in a crash, then two `SET NX` applied): random
    // walks (stateright's simulation checker) reach it where a bounded depth-first search
    // does not.
    let bugs = bug_named("paxos_answers_before_sync").expect("a planted bug");
    let config = Config {
        crashes: 1,
        ..config("race", false, 1)
    };
    let checker = CasModel::new(config)
        .with_bugs(bugs, set_planted)
        .checker()
        .threads(2)
        .target_state_count(5_000_000)
        .finish_when(HasDiscoveries::AnyFailures)
        .spawn_simulation(1, stateright::UniformChooser)
        .join();
    assert!(
        SAFETY.iter().any(|p| checker.discovery(p).is_some()),
        "no violation in {} states",
        checker.unique_state_count()
    );
}

/// Random walks over `model` up to `states` states: whether a non-linearizable history was
/// found, and the states explored.
fn walk(model: CasModel, states: usize) -> (bool, usize) {
    let checker = model
        .checker()
        .threads(2)
        .target_state_count(states)
        .finish_when(HasDiscoveries::AnyFailures)
        .spawn_simulation(1, stateright::UniformChooser)
        .join();
    (
        SAFETY.iter().any(|p| checker.discovery(p).is_some()),
        checker.unique_state_count(),
    )
}

#[test]
fn paxos_state_collection_keeps_histories_linearizable_and_each_unsafe_collection_is_caught() {
    // Two repair rounds among two `SET NX` with retries: the rounds fence, settle the key
    // with a serial read, set the low bound and drop the state, at any moment.
    let repairing = |repairer_id| Config {
        repairs: 2,
        repairer_id,
        ..config("race", false, 2)
    };
    for repairer_id in [100, 200] {
        let (violated, unique) = walk(CasModel::new(repairing(repairer_id)), 1_000_000);
        assert!(
            !violated,
            "repairer {repairer_id}: a non-linearizable history"
        );
        println!("repairer {repairer_id}: {unique} states, linearizable");
    }
    // A fence below the coordinators' ballots (repairer 100) shows state dropped while a
    // coordinator's promise above the low bound is live; one above them (200), state
    // dropped without the bounds that stand in for it.
    for (bug, repairer_id) in [
        ("paxos_state_forgotten_by_wall_time", 100),
        ("paxos_collection_forgets_watermark", 200),
        ("paxos_low_bound_not_applied_on_load", 200),
    ] {
        let bugs = bug_named(bug).expect("a planted bug");
        let config = Config {
            repairs: 1,
            repairer_id,
            ..config("race", false, 1)
        };
        let (violated, unique) = walk(
            CasModel::new(config).with_bugs(bugs, set_planted),
            5_000_000,
        );
        assert!(violated, "{bug}: no violation in {unique} states");
    }
}

/// Swarm random walks over `model` (each walk weighs actions and links its own way) up to
/// `states` states from `seed`: whether a non-linearizable history was found, and the states
/// explored.
fn swarm(model: CasModel, seed: u64, states: usize) -> (bool, usize) {
    let checker = model
        .checker()
        .threads(2)
        .target_state_count(states)
        .finish_when(HasDiscoveries::AnyFailures)
        .spawn_simulation(seed, SwarmChooser)
        .join();
    (
        SAFETY.iter().any(|p| checker.discovery(p).is_some()),
        checker.unique_state_count(),
    )
}

/// Clients settle each write whose outcome is unknown with a serial read (`Config::settle`),
/// a plain write stamped ahead of the coordinators' clocks may come first
/// (`Config::initial`), and swarm walks keep some messages waiting long: with these the model
/// catches the mutations its plain searches missed, and holds without them.
#[test]
fn swarm_walks_with_settling_reads_catch_the_deeper_paxos_bugs() {
    let faults = |name, attempts, drops, crashes, timeouts, repairs| Config {
        clients: workload(name).expect("a workload"),
        attempts,
        drops,
        duplicates: 0,
        crashes,
        timeouts,
        repairs,
        ..Config::default()
    };
    // The walk that found a serial read trusting a low bound only one acceptor had (fixed:
    // `latest_settled` in `Coordinator::on_promised`), without bugs.
    let wide = Config {
        coordinators: 3,
        duplicates: 1,
        ..faults("wide", 2, 2, 1, 2, 2)
    };
    let (violated, unique) = swarm(CasModel::new(wide.clone()), 7, 2_000_000);
    assert!(!violated, "wide: a non-linearizable history");
    println!("wide, swarm: {unique} states, linearizable");
    // The same in a `siblings` bucket, and from a plain value stamped ahead.
    let siblings = Config {
        siblings: true,
        ..wide.clone()
    };
    let (violated, unique) = swarm(CasModel::new(siblings), 8, 1_000_000);
    assert!(!violated, "wide, siblings: a non-linearizable history");
    println!("wide, siblings, swarm: {unique} states, linearizable");
    let ahead = Config {
        initial: Some(0),
        ..faults("replace", 2, 2, 1, 2, 1)
    };
    let (violated, unique) = swarm(CasModel::new(ahead), 9, 1_000_000);
    assert!(
        !violated,
        "replace from a plain value: a non-linearizable history"
    );
    println!("replace, initial value, swarm: {unique} states, linearizable");
    let cases = [
        // Caught by Paxos's own property: the proposal chosen and then lost was never read.
        ("paxos_accept_keeps_promise", faults("race", 2, 1, 0, 1, 0)),
        // A repair round's fence equal to a coordinator's ballot.
        (
            "paxos_ballots_not_unique",
            Config {
                duplicates: 1,
                ..faults("small", 3, 2, 0, 1, 1)
            },
        ),
        ("paxos_own_commit_any_above", faults("race", 2, 1, 0, 1, 0)),
        (
            "paxos_read_ignores_write_promises",
            faults("read", 2, 1, 0, 1, 0),
        ),
        (
            "paxos_read_skips_in_progress",
            Config {
                coordinators: 3,
                ..faults("read-race", 1, 0, 0, 0, 0)
            },
        ),
        (
            "paxos_in_progress_by_arrival",
            Config {
                pinned: true,
                ..faults("race-read", 2, 0, 0, 1, 0)
            },
        ),
        (
            "paxos_stamp_ignores_read",
            Config {
                initial: Some(0),
                ..faults("replace", 1, 0, 0, 0, 0)
            },
        ),
        (
            "paxos_read_trusts_minority_commits",
            Config {
                pinned: true,
                ..faults("race-read", 2, 2, 1, 1, 2)
            },
        ),
    ];
    for (bug, config) in cases {
        // The same configuration without the bug holds (so the violation is the bug's).
        // (Armed with no bugs: the switches are per thread, and the path of a violation is
        // rebuilt on this one.)
        let clean = CasModel::new(config.clone()).with_bugs(PlantedBugs::default(), set_planted);
        let (violated, unique) = swarm(clean, 2, 300_000);
        assert!(!violated, "{bug}'s configuration fails without it");
        let bugs = bug_named(bug).expect("a planted bug");
        let (violated, unique_bug) = swarm(
            CasModel::new(config).with_bugs(bugs, set_planted),
            1,
            8_000_000,
        );
        assert!(violated, "{bug}: no violation in {unique_bug} states");
        println!("{bug}: caught in {unique_bug} states (holds without it: {unique} states)");
    }
}
