//! The README's walk-through, run from the README text itself: its first `sh` block after
//! "## Walk-through" runs in bash against a `hydra dev` cluster, as a new user pastes it
//! (the cluster's ports and the binary's path put in), and what it claims must show: the
//! write with node 3 down acks at W = 2, the read at `r=all` repairs node 3
//! (`"read_repairs":[3]`), and node 3 alone then answers `v2`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The walk-through's shell block, as the README has it.
fn walk_through() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("README.md");
    let section = readme
        .split_once("## Walk-through")
        .expect("a walk-through section")
        .1;
    let block = section.split_once("```sh\n").expect("a sh block").1;
    block
        .split_once("```")
        .expect("the block ends")
        .0
        .to_string()
}

#[test]
fn the_readme_walk_through_runs_as_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hydra = env!("CARGO_BIN_EXE_hydra");
    let mut dev = Command::new(hydra)
        // The README's own mode (hydra dev's default): node 3 is killed with -9 and must come
        // back with v1, which only a sync guarantees.
        .args(["dev", "--ports", "free", "--durability", "fsync"])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start hydra dev");
    let cluster_json = dir.path().join("hydra-dev/cluster.json");
    let deadline = Instant::now() + Duration::from_secs(30);
    let cluster: serde_json::Value = loop {
        if let Some(v) = std::fs::read_to_string(&cluster_json)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
        {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "hydra dev never wrote cluster.json"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    // The README names the fixed ports (8081...); this cluster has free ones.
    let mut script = walk_through().replace("target/release/hydra", hydra);
    for (i, node) in cluster["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .enumerate()
    {
        let http = node["http"].as_str().expect("http");
        script = script.replace(&format!("127.0.0.1:808{}", i + 1), http);
    }
    // Output to files, not pipes: the node the script starts in the background keeps them
    // open after the script ends.
    let (out_path, err_path) = (dir.path().join("walk.out"), dir.path().join("walk.err"));
    let status = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(dir.path())
        .env_remove("HYDRA_TOKEN")
        .env_remove("HYDRA_ENDPOINT")
        .env_remove("HYDRA_CLUSTER")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("walk.out"))
        .stderr(std::fs::File::create(&err_path).expect("walk.err"))
        .status()
        .expect("bash");
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    // Node 3 was restarted by the walk-through: stop it, then the cluster.
    if let Ok(pid) = std::fs::read_to_string(dir.path().join("hydra-dev/n3/hydra.pid")) {
        let _ = Command::new("kill").arg(pid.trim()).status();
    }
    // SIGTERM: `hydra dev` stops its nodes (SIGKILL would leave them running).
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(dev.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = dev.wait();
    assert!(
        status.success(),
        "the walk-through failed:\n{stdout}\n{stderr}"
    );
    let responses: Vec<&str> = stdout.split("HTTP/1.1 ").skip(1).collect();
    assert!(responses.len() >= 5, "{stdout}");
    assert!(
        responses[1].starts_with("204") && responses[1].contains(r#""acked":2"#),
        "the write with node 3 down: {}",
        responses[1]
    );
    assert!(
        responses[2].starts_with("200") && responses[2].contains("\r\n\r\nv2"),
        "R = 2 returns v2: {}",
        responses[2]
    );
    assert!(
        responses[3].contains(r#""read_repairs":[3]"#),
        "the read at r=all repairs node 3:\n{stdout}\n{stderr}"
    );
    assert!(
        responses[4].starts_with("200") && responses[4].contains("\r\n\r\nv2"),
        "node 3 alone answers v2: {}",
        responses[4]
    );
}
