//! `hydra bench` against a real cluster, over both protocols: every workload runs, records
//! latencies, and reports zero errors in its JSON.

mod common;
use common::TestCluster;
use std::process::Command;

#[test]
fn every_workload_runs_over_http_and_resp() {
    let cluster = TestCluster::start(3, "");
    let dir = tempfile::tempdir().expect("tempdir");
    let nodes: Vec<serde_json::Value> = cluster
        .nodes
        .iter()
        .map(|n| serde_json::json!({ "id": n.id, "http": n.http, "resp": n.resp }))
        .collect();
    let cluster_json = dir.path().join("cluster.json");
    std::fs::write(
        &cluster_json,
        serde_json::json!({ "nodes": nodes, "token": common::TEST_TOKEN }).to_string(),
    )
    .expect("write cluster.json");
    for (protocol, workload, bucket) in [
        ("resp", "a", "redis"),
        ("resp", "d", "redis"),
        ("resp", "f", "default"),
        ("http", "b", "redis"),
        ("http", "f", "default"),
        ("http", "write", "redis"),
        ("resp", "c", "redis"),
        ("http", "cas", "redis"),
        ("resp", "cas", "redis"),
    ] {
        let report = dir.path().join(format!("{protocol}-{workload}.json"));
        let out = Command::new(env!("CARGO_BIN_EXE_hydra"))
            .args(["bench", "--cluster"])
            .arg(&cluster_json)
            .args([
                "--protocol",
                protocol,
                "--workload",
                workload,
                "--bucket",
                bucket,
                "--records",
                "200",
                "--connections",
                "3",
                "--seconds",
                "1",
                "--quiet",
                "--json",
            ])
            .arg(&report)
            .output()
            .expect("run hydra bench");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{protocol} {workload}: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&report).expect("report written"))
                .expect("report is JSON");
        // Compare-and-sets on hot keys contend: a request whose proposal a rival's commit
        // overtook may end `outcome_unknown` (never any other error).
        let expected_errors = match workload {
            "cas" => json["outcome_unknown"].clone(),
            _ => 0.into(),
        };
        assert_eq!(
            json["errors"], expected_errors,
            "{protocol} {workload}: {json}"
        );
        let ops = json["ops"].as_object().expect("ops");
        let expected: &[&str] = match workload {
            "a" | "b" => &["read", "update"],
            "c" => &["read"],
            "d" => &["read", "insert"],
            "f" => &["read", "read_modify_write"],
            "cas" => &["cas"],
            _ => &["update"],
        };
        if workload == "cas" && protocol == "http" {
            let attempts = json["paxos_attempts_mean"].as_f64().unwrap_or(0.0);
            assert!(attempts >= 1.0, "Paxos attempts reported: {json}");
        }
        for op in expected {
            let o = &ops[*op];
            assert!(
                o["count"].as_u64().unwrap_or(0) > 0,
                "{protocol} {workload} {op}: {json}"
            );
            assert!(o["p99_ms"].as_f64().unwrap_or(0.0) >= o["p50_ms"].as_f64().unwrap_or(1.0));
        }
        assert!(stdout.contains("p99.9 ms"), "{stdout}");
    }
}
