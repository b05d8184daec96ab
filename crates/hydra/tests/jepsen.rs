//! The fault harness, short: 3 real `hydra server` processes in network namespaces, the set
//! workload in a `siblings` bucket, and every nemesis (partitions, kill -9, SIGSTOP, clock
//! skew) for about 90 seconds. No acknowledged add may be lost, no failed add may appear,
//! and the replicas must agree after the final heal. Needs root (network namespaces); the
//! long soak is `hydra-jepsen` itself (README "Fault testing").

use std::path::PathBuf;

#[test]
fn three_nodes_under_every_fault_lose_no_acknowledged_add() {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("jepsen-short");
    let _ = std::fs::remove_dir_all(&out);
    let opts = hydra_jepsen::Options {
        nodes: 3,
        seconds: 90,
        mode: "siblings".into(),
        nemesis: hydra_jepsen::NEMESES
            .iter()
            .map(|s| s.to_string())
            .collect(),
        interval: 4,
        clients: 6,
        keys: 8,
        rate: 150,
        sloppy: true,
        hydra: PathBuf::from(env!("CARGO_BIN_EXE_hydra")),
        out: out.clone(),
        seed: 7,
        converge_timeout: 120,
        progress: false,
    };
    let summary = hydra_jepsen::run(&opts).expect("the harness runs (it needs root)");
    let text = serde_json::to_string_pretty(&summary).expect("json");
    let v = &summary.verdict;
    assert_eq!(v.lost, 0, "acknowledged adds lost: {text}");
    assert_eq!(v.failed_but_observed, 0, "failed adds observed: {text}");
    assert_eq!(v.unexpected, 0, "{text}");
    assert_eq!(summary.unconverged_keys, 0, "{text}");
    assert!(summary.passed, "{text}");
    assert!(
        v.adds_ok > 1_000,
        "too little work to mean anything: {text}"
    );
    let faults: u64 = summary.faults.values().sum();
    assert!(faults >= 5, "too few faults: {text}");
    for file in ["history.jsonl", "summary.json", "plot.svg"] {
        assert!(out.join(file).exists(), "{file} missing");
    }
}
