//! `hydra dev`: a local cluster of real `hydra server` processes on 127.0.0.1.
//!
//! It writes one configuration per node into the directory (reusing them, and so the same
//! ports and data, when the directory already holds a cluster), starts the nodes, waits until
//! each answers `/health`, writes `cluster.json`, prints the endpoints and example commands,
//! and on Ctrl-C or SIGTERM stops every node with SIGTERM (SIGKILL after 10 s). Each node can
//! also be killed and started again on its own with the command line printed for it.

use anyhow::{Context, Result, bail};
use clap::Args;
use hydra_client::Client;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct DevArgs {
    /// Number of nodes (1 to 7).
    #[arg(long, default_value_t = 3)]
    nodes: u64,
    /// Directory for configurations, data, logs and cluster.json.
    #[arg(long, default_value = "hydra-dev")]
    dir: PathBuf,
    /// Durability mode of every node: fsync, periodic:<ms> or none.
    #[arg(long, default_value = "fsync")]
    durability: String,
    /// `fixed`: node i listens on HTTP 8080+i, internode 7080+i, Redis protocol 6380+i
    /// (falling back to free ports when one is taken); `free`: any free ports.
    #[arg(long, default_value = "fixed", value_parser = ["fixed", "free"])]
    ports: String,
}

struct DevNode {
    id: u64,
    http: String,
    resp: String,
    internode: String,
    config: PathBuf,
    log: PathBuf,
    data: PathBuf,
}

/// A port that can be bound now, from below the kernel's ephemeral range (32768 and up on
/// Linux): a port the kernel hands out for outgoing connections could be taken by one
/// between this probe and the node's bind, and the node would fail to start.
fn free_port() -> Result<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        (std::process::id().wrapping_mul(7_919)) % SPAN,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..SPAN {
        let port = (FIRST + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free port between {FIRST} and {}", FIRST + SPAN)
}

/// `preferred` if it can be bound now, else a free port.
fn port(preferred: Option<u16>) -> Result<u16> {
    match preferred {
        Some(p) if TcpListener::bind(("127.0.0.1", p)).is_ok() => Ok(p),
        Some(p) => {
            let other = free_port()?;
            eprintln!("port {p} is in use; using {other} instead");
            Ok(other)
        }
        None => free_port(),
    }
}

fn plan(args: &DevArgs, dir: &Path) -> Result<Vec<DevNode>> {
    let existing = dir.join("cluster.json");
    if existing.exists() {
        // Reuse the cluster that lives here: same ids, ports, data.
        let text = std::fs::read_to_string(&existing)?;
        let v: Value = serde_json::from_str(&text)
            .with_context(|| format!("while reading {}", existing.display()))?;
        let nodes = v["nodes"].as_array().cloned().unwrap_or_default();
        if nodes.len() as u64 != args.nodes {
            bail!(
                "{} holds a cluster of {} nodes; use --nodes {} or another --dir",
                dir.display(),
                nodes.len(),
                nodes.len()
            );
        }
        return nodes
            .iter()
            .map(|n| {
                let id = n["id"].as_u64().context("cluster.json: node without id")?;
                let s = |k: &str| {
                    n[k].as_str()
                        .map(str::to_string)
                        .context("cluster.json: missing address")
                };
                Ok(DevNode {
                    id,
                    http: s("http")?,
                    resp: s("resp")?,
                    internode: s("internode")?,
                    config: dir.join(format!("n{id}.toml")),
                    log: dir.join(format!("n{id}.log")),
                    data: dir.join(format!("n{id}")),
                })
            })
            .collect();
    }
    let fixed = args.ports == "fixed";
    let at = |base: u16, id: u64| if fixed { Some(base + id as u16) } else { None };
    (1..=args.nodes)
        .map(|id| {
            Ok(DevNode {
                id,
                http: format!("127.0.0.1:{}", port(at(8080, id))?),
                resp: format!("127.0.0.1:{}", port(at(6380, id))?),
                internode: format!("127.0.0.1:{}", port(at(7080, id))?),
                config: dir.join(format!("n{id}.toml")),
                log: dir.join(format!("n{id}.log")),
                data: dir.join(format!("n{id}")),
            })
        })
        .collect()
}

/// The `cluster.json` of a running `hydra dev` cluster: the file `HYDRA_CLUSTER` names, or
/// `hydra-dev/cluster.json` in the current directory (the default `--dir`).
pub fn find_cluster_json() -> Option<Value> {
    let path = std::env::var_os("HYDRA_CLUSTER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("hydra-dev").join("cluster.json"));
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

/// Records a node's new pid in a dev cluster's `cluster.json` (a node restarted by hand):
/// best effort, written to a temporary file and renamed over it.
pub fn record_pid(path: &Path, id: u64, pid: u32) {
    let Ok(text) = std::fs::read_to_string(path) else {
        return;
    };
    let Ok(mut cluster) = serde_json::from_str::<Value>(&text) else {
        return;
    };
    let Some(nodes) = cluster["nodes"].as_array_mut() else {
        return;
    };
    let Some(node) = nodes.iter_mut().find(|n| n["id"].as_u64() == Some(id)) else {
        return;
    };
    if node["pid"].as_u64() == Some(u64::from(pid)) {
        return;
    }
    node["pid"] = json!(pid);
    let tmp = path.with_extension(format!("json.{pid}"));
    if let Ok(text) = serde_json::to_string_pretty(&cluster)
        && std::fs::write(&tmp, text).is_ok()
    {
        let _ = std::fs::rename(&tmp, path);
    }
}

/// Writes `env` in the directory (mode 0600: it holds the admin token), for a shell to
/// source: the CLI's token, endpoint and cluster file, and redis-cli's password.
fn write_env_file(dir: &Path, token: &str, first: &DevNode) -> Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join("env");
    let cluster = std::fs::canonicalize(dir)
        .unwrap_or_else(|_| dir.to_path_buf())
        .join("cluster.json");
    let text = format!(
        "# Written by `hydra dev`: source it (`. {}`) to talk to this cluster.\n\
         export HYDRA_TOKEN={token}\n\
         export HYDRA_ENDPOINT={}\n\
         export HYDRA_CLUSTER={}\n\
         export REDISCLI_AUTH={token}\n",
        path.display(),
        first.http,
        cluster.display()
    );
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("while creating {}", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("while writing {}", path.display()))?;
    Ok(path)
}

/// A secret kept in a file of the directory (made on first use, mode 0600).
fn kept_secret(path: &Path) -> Result<String> {
    if !path.exists() {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let secret = hydra_node::secure::generate_secret()?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("while creating {}", path.display()))?;
        writeln!(f, "{secret}").with_context(|| format!("while writing {}", path.display()))?;
    }
    Ok(std::fs::read_to_string(path)
        .with_context(|| format!("while reading {}", path.display()))?
        .trim()
        .to_string())
}

/// The cluster secret kept in the directory (made on first use, mode 0600), and its path.
fn secret_file(dir: &Path) -> Result<PathBuf> {
    let path = dir.join("cluster-secret");
    kept_secret(&path)?;
    Ok(path)
}

/// Each node's internode public key, from its key file (made now if missing), so every
/// configuration names its peers' keys and nothing is trusted on first use.
fn public_keys(nodes: &[DevNode]) -> Result<Vec<String>> {
    nodes
        .iter()
        .map(|n| {
            Ok(
                hydra_node::secure::Identity::load_or_create(&n.data.join("node.key"))?
                    .public_base64(),
            )
        })
        .collect()
}

fn write_config(
    node: &DevNode,
    all: &[DevNode],
    keys: &[String],
    secret: &Path,
    token: &Path,
    durability: &str,
) -> Result<()> {
    let peers: Vec<String> = all
        .iter()
        .zip(keys)
        .filter(|(p, _)| p.id != node.id)
        .map(|(p, key)| {
            format!(
                "  {{ id = {}, internode = \"{}\", zone = \"z{}\", datacenter = \"dc1\", public_key = \"{key}\" }},",
                p.id, p.internode, p.id
            )
        })
        .collect();
    // The nodes share this machine's cores: one async worker each per share, at least one.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers = (cores / all.len().max(1)).max(1);
    // Fewer than two cores a node: each node on one thread (its connections and its core),
    // so no request pays a switch between the two (1.2-1.4x GETs without pipelining on two
    // cores and three nodes).
    let single_thread = cores < 2 * all.len();
    let text = format!(
        "# Written by `hydra dev`; see config.example.toml for every key.\n\
         [node]\nid = {id}\nzone = \"z{id}\"\ndatacenter = \"dc1\"\ndata_dir = \"{data}\"\n\
         worker_threads = {workers}\nsingle_thread = {single_thread}\nlog_file = \"{log}\"\ndev_cluster_json = \"{cluster_json}\"\n\n\
         [listen]\nhttp = \"{http}\"\ninternode = \"{internode}\"\nresp = \"{resp}\"\n\n\
         [auth]\nadmin_token_file = \"{token}\"\n\n\
         [cluster]\nsecret_file = \"{secret}\"\npeers = [\n{peers}\n]\n\n[storage]\ndurability = \"{durability}\"\n",
        id = node.id,
        data = node.data.display(),
        log = node.log.display(),
        cluster_json = node
            .config
            .parent()
            .unwrap_or(Path::new("."))
            .join("cluster.json")
            .display(),
        http = node.http,
        internode = node.internode,
        resp = node.resp,
        secret = secret.display(),
        token = token.display(),
        peers = peers.join("\n"),
    );
    std::fs::write(&node.config, text)
        .with_context(|| format!("while writing {}", node.config.display()))
}

fn start(node: &DevNode) -> Result<Child> {
    let exe = std::env::current_exe().context("while finding the hydra executable")?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&node.log)?;
    Command::new(exe)
        .arg("server")
        .arg("--config")
        .arg(&node.config)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("while starting node {}", node.id))
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

fn stop_all(children: &mut [Child], nodes: &[DevNode]) {
    let mut pids: Vec<i32> = children.iter().map(|c| c.id() as i32).collect();
    // Nodes restarted by hand have other pids; their pid files name them.
    for n in nodes {
        if let Some(pid) = std::fs::read_to_string(n.data.join("hydra.pid"))
            .ok()
            .and_then(|p| p.trim().parse().ok())
            && !pids.contains(&pid)
        {
            pids.push(pid);
        }
    }
    for pid in &pids {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for c in children.iter_mut() {
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
    for pid in &pids {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
    }
}

pub fn run(args: DevArgs) -> Result<ExitCode> {
    if !(1..=7).contains(&args.nodes) {
        bail!("--nodes {} is out of range 1..=7", args.nodes);
    }
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("while creating {}", args.dir.display()))?;
    let dir = args.dir.canonicalize()?;
    let nodes = plan(&args, &dir)?;
    let secret = secret_file(&dir)?;
    let token_file = dir.join("admin-token");
    let token = kept_secret(&token_file)?;
    let keys = public_keys(&nodes)?;
    for n in &nodes {
        write_config(n, &nodes, &keys, &secret, &token_file, &args.durability)?;
    }
    let mut children = Vec::new();
    for n in &nodes {
        match start(n) {
            Ok(c) => children.push(c),
            Err(e) => {
                stop_all(&mut children, &nodes);
                return Err(e);
            }
        }
    }
    // Wait until every node answers and takes writes (a node refuses them until a heartbeat
    // round trip with a peer has verified its clock).
    let deadline = Instant::now() + Duration::from_secs(30);
    for (i, n) in nodes.iter().enumerate() {
        let client = Client::new(&n.http).with_token(&token);
        loop {
            let clock_ok = |s: serde_json::Value| s["clock"]["state"] == "ok";
            if client.health().is_ok() && client.status().is_ok_and(clock_ok) {
                break;
            }
            if let Ok(Some(status)) = children[i].try_wait() {
                stop_all(&mut children, &nodes);
                bail!(
                    "node {} exited ({status}) while starting; its log says:\n{}",
                    n.id,
                    log_tail(&n.log)
                );
            }
            if Instant::now() > deadline {
                stop_all(&mut children, &nodes);
                bail!(
                    "node {} did not answer on {} within 30 s; its log says:\n{}",
                    n.id,
                    n.http,
                    log_tail(&n.log)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let exe = std::env::current_exe()?;
    let cluster = json!({
        // What a local client needs: the HTTP bearer token, the Redis protocol's user and
        // password (the admin credential either way).
        "token": token,
        "user": hydra_node::auth::DEFAULT_USER,
        "password": token,
        "nodes": nodes.iter().zip(&children).map(|(n, c)| json!({
            "id": n.id, "pid": c.id(), "http": n.http, "resp": n.resp, "internode": n.internode,
            "config": n.config, "log": n.log,
        })).collect::<Vec<_>>()
    });
    std::fs::write(
        dir.join("cluster.json"),
        serde_json::to_string_pretty(&cluster)?,
    )?;
    let env_file = write_env_file(&dir, &token, &nodes[0])?;
    println!(
        "Hydra dev cluster: {} nodes, N = 3, durability {}; data in {}",
        nodes.len(),
        args.durability,
        dir.display()
    );
    for n in &nodes {
        println!(
            "  n{}  http {}  resp {}  internode {}  log {}",
            n.id,
            n.http,
            n.resp,
            n.internode,
            n.log.display()
        );
        println!(
            "      restart alone: {} server --config {}",
            exe.display(),
            n.config.display()
        );
    }
    let first = &nodes[0].http;
    println!();
    println!("Try (the env file sets HYDRA_TOKEN, HYDRA_ENDPOINT, HYDRA_CLUSTER, REDISCLI_AUTH):");
    println!("  . {}", env_file.display());
    println!(
        "  curl -i -H \"Authorization: Bearer $HYDRA_TOKEN\" -X PUT --data 'hello' http://{first}/v1/kv/default/greeting"
    );
    println!(
        "  curl -i -H \"Authorization: Bearer $HYDRA_TOKEN\" http://{first}/v1/kv/default/greeting?r=all"
    );
    println!("  hydra put greeting hello && hydra get -v greeting && hydra status");
    let resp_port = nodes[0].resp.rsplit(':').next().unwrap_or("6381");
    println!(
        "  redis-cli -p {resp_port} set greeting hello && redis-cli -p {resp_port} get greeting"
    );
    println!(
        "The admin token (HTTP bearer token; Redis `AUTH <token>`) is in {}",
        token_file.display()
    );
    println!("cluster.json: {}", dir.join("cluster.json").display());
    println!("Ctrl-C stops the cluster.");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut exited = vec![false; children.len()];
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = term.recv() => break,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {
                    for (i, c) in children.iter_mut().enumerate() {
                        if !exited[i] && let Ok(Some(status)) = c.try_wait() {
                            exited[i] = true;
                            eprintln!("node {} exited ({status}); restart it with: {} server --config {}", nodes[i].id, exe.display(), nodes[i].config.display());
                        }
                    }
                }
            }
        }
        Ok::<(), anyhow::Error>(())
    })?;
    println!("stopping {} nodes", nodes.len());
    stop_all(&mut children, &nodes);
    Ok(ExitCode::SUCCESS)
}
