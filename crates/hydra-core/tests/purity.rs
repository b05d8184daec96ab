//! Architecture invariant: `hydra-core` is pure. It depends on no async runtime, network or
//! storage crate, and its source names no clock, socket, file or thread API, and no hash map
//! outside `id_map.rs` (a fixed hasher, no iteration). (Clippy's
//! `disallowed-methods` in this crate's clippy.toml guards the calls too.)

use std::process::Command;

const FORBIDDEN_CRATES: &[&str] = &[
    "tokio",
    "mio",
    "socket2",
    "fjall",
    "lsm-tree",
    "getrandom",
    "async-std",
    "hyper",
    "axum",
];
const FORBIDDEN_SOURCE: &[&str] = &[
    "std::net",
    "std::fs",
    "std::thread",
    "Instant::now",
    "SystemTime",
    "HashMap",
    "HashSet",
    "thread_rng",
    "rand::rng(",
    "tokio",
];

#[test]
fn core_depends_on_nothing_that_does_io() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "tree",
            "-p",
            "hydra-core",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    for line in tree.lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        assert!(
            !FORBIDDEN_CRATES.contains(&name),
            "hydra-core depends on {name}, which does I/O"
        );
    }
    assert!(
        tree.contains("postcard"),
        "cargo tree output looks wrong: {tree}"
    );
}

#[test]
fn core_source_names_no_io_clock_or_unordered_map() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut dirs = vec![src];
    let mut files = 0;
    // Every source file, in every folder (the node's parts live in `src/node/`).
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("src exists") {
            let path = entry.expect("readable").path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            files += 1;
            let text = std::fs::read_to_string(&path).expect("readable");
            for word in FORBIDDEN_SOURCE {
                // `id_map.rs` alone may name a hash map: its hasher is fixed (rustc-hash's, not
                // one seeded from the OS) and it offers no iteration, so a seed still replays
                // exactly and nothing depends on its order.
                if path.ends_with("id_map.rs") && word.starts_with("Hash") {
                    continue;
                }
                // The crate docs name what is forbidden; skip doc comments.
                let hit = text
                    .lines()
                    .filter(|l| !l.trim_start().starts_with("//"))
                    .any(|l| l.contains(word));
                assert!(!hit, "{} uses {word}", path.display());
            }
        }
    }
    assert!(files > 20, "only {files} source files found under src/");
}
