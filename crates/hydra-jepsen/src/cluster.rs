//! `hydra server` processes, one per namespace: start, SIGKILL, restart, SIGSTOP/SIGCONT, and
//! clock jumps of a running node (each node's wall clock follows an offset file, the
//! test-only `node.clock_offset_file`). Every process is killed when the cluster is dropped.

use crate::net::Net;
use anyhow::{Context, Result, bail};
use hydra_client::Client;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The harness cluster's secret (the nodes live in throwaway namespaces).
pub const CLUSTER_SECRET: &str = "hydra-jepsen-cluster-secret-0123456789abcdef";
/// The harness cluster's admin token (HTTP bearer token, Redis `AUTH` password).
pub const ADMIN_TOKEN: &str = "hydra-jepsen-admin-token-0123456789";
pub const HTTP_PORT: u16 = 8000;
pub const INTERNODE_PORT: u16 = 7000;
pub const RESP_PORT: u16 = 6379;
/// The nodes' clock skew bound (`limits.max_clock_skew_ms`): tighter than the default, so
/// the checkers' real-time order is tighter too.
pub const MAX_CLOCK_SKEW_MS: u64 = 1_000;
/// The nodes' tombstone grace: short, so tombstones (deletes and expiries) are reaped, and
/// hints older than it dropped, within a run.
pub const TOMBSTONE_GRACE_MS: u64 = 10_000;
/// Partitions of the layout: few, so the expiry sweep and anti-entropy (one partition each
/// interval) come round to every key every couple of seconds.
pub const PARTITIONS: u32 = 16;

struct Proc {
    child: Option<Child>,
    paused: bool,
    clock_offset_ms: i64,
}

pub struct Cluster {
    hydra: PathBuf,
    dir: PathBuf,
    procs: Vec<Proc>,
    /// Each node's HTTP address, as clients (in the root namespace) reach it.
    pub http: Vec<String>,
    /// Each node's Redis-protocol address.
    pub resp: Vec<String>,
    namespaces: Vec<String>,
    env: Vec<(String, String)>,
}

impl Cluster {
    /// Writes every node's configuration into `dir` and starts the nodes.
    pub fn start(
        net: &Net,
        hydra: &Path,
        dir: &Path,
        request_timeout_ms: u64,
        durability: &str,
        env: &[(String, String)],
    ) -> Result<Cluster> {
        let n = net.nodes();
        for i in 0..n {
            let peers: Vec<String> = (0..n)
                .filter(|p| *p != i)
                .map(|p| {
                    format!(
                        "  {{ id = {}, internode = \"{}:{INTERNODE_PORT}\", zone = \"z{}\" }},",
                        p + 1,
                        net.addr(p),
                        p + 1
                    )
                })
                .collect();
            let text = format!(
                "[node]\nid = {id}\nzone = \"z{id}\"\ndata_dir = \"{data}\"\nworker_threads = 1\n\n\
                 [listen]\nhttp = \"{a}:{HTTP_PORT}\"\ninternode = \"{a}:{INTERNODE_PORT}\"\nresp = \"{a}:{RESP_PORT}\"\nallow_plaintext = true\n\n\
                 [auth]\nadmin_token = \"{ADMIN_TOKEN}\"\n\n\
                 [cluster]\nsecret = \"{CLUSTER_SECRET}\"\npartitions = {PARTITIONS}\npeers = [\n{peers}\n]\nheartbeat_interval_ms = 100\nanti_entropy_interval_ms = 100\npaxos_repair_interval_ms = 1000\nfallback_after_ms = {fallback}\n\n\
                 [limits]\nrequest_timeout_ms = {request_timeout_ms}\ngossip_interval_ms = 500\nmax_clock_skew_ms = {MAX_CLOCK_SKEW_MS}\n\n\
                 [storage]\ndurability = \"{durability}\"\ntombstone_grace_ms = {TOMBSTONE_GRACE_MS}\n",
                id = i + 1,
                data = dir.join(format!("n{}", i + 1)).display(),
                a = net.addr(i),
                peers = peers.join("\n"),
                fallback = request_timeout_ms / 4,
            );
            std::fs::write(dir.join(format!("n{}.toml", i + 1)), text)?;
        }
        let mut cluster = Cluster {
            hydra: hydra.to_path_buf(),
            dir: dir.to_path_buf(),
            procs: (0..n)
                .map(|_| Proc {
                    child: None,
                    paused: false,
                    clock_offset_ms: 0,
                })
                .collect(),
            http: (0..n)
                .map(|i| format!("{}:{HTTP_PORT}", net.addr(i)))
                .collect(),
            resp: (0..n)
                .map(|i| format!("{}:{RESP_PORT}", net.addr(i)))
                .collect(),
            namespaces: (0..n).map(|i| net.namespace(i)).collect(),
            env: env.to_vec(),
        };
        for i in 0..n {
            cluster.spawn(i)?;
        }
        for i in 0..n {
            cluster.wait_healthy(i, Duration::from_secs(30))?;
        }
        for i in 0..n {
            cluster.wait_clock_verified(i, Duration::from_secs(30))?;
        }
        Ok(cluster)
    }

    /// Waits until node `i` trusts its clock (a heartbeat round trip with a peer verified it):
    /// before, it refuses writes with `clock_skew`.
    fn wait_clock_verified(&self, i: usize, within: Duration) -> Result<()> {
        let client = Client::with_timeout(&self.http[i], Duration::from_secs(1))
            .with_token(crate::cluster::ADMIN_TOKEN);
        let deadline = Instant::now() + within;
        while !client.status().is_ok_and(|s| s["clock"]["state"] == "ok") {
            if Instant::now() > deadline {
                bail!(
                    "node {} never verified its clock within {within:?}; see {}",
                    i + 1,
                    self.dir.join(format!("n{}.log", i + 1)).display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.procs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.procs.is_empty()
    }

    fn spawn(&mut self, i: usize) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("n{}.log", i + 1)))?;
        self.write_clock(i)?;
        // `ip netns exec` execs the server, so the child's pid is the server's.
        let child = Command::new("ip")
            .args(["netns", "exec", &self.namespaces[i]])
            .arg(&self.hydra)
            .arg("server")
            .arg("--config")
            .arg(self.dir.join(format!("n{}.toml", i + 1)))
            .arg("--set")
            .arg(format!(
                "node.clock_offset_file={}",
                self.clock_file(i).display()
            ))
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("while starting node {}", i + 1))?;
        self.procs[i].child = Some(child);
        self.procs[i].paused = false;
        Ok(())
    }

    pub fn wait_healthy(&self, i: usize, within: Duration) -> Result<()> {
        let client = Client::with_timeout(&self.http[i], Duration::from_secs(1))
            .with_token(crate::cluster::ADMIN_TOKEN);
        let deadline = Instant::now() + within;
        while client.health().is_err() {
            if Instant::now() > deadline {
                bail!(
                    "node {} did not answer within {within:?}; see {}",
                    i + 1,
                    self.dir.join(format!("n{}.log", i + 1)).display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    fn signal(&self, i: usize, signal: Signal) {
        if let Some(c) = &self.procs[i].child {
            let _ = kill(Pid::from_raw(c.id() as i32), signal);
        }
    }

    /// SIGKILL: no clean shutdown, unsynced writes lost.
    pub fn kill9(&mut self, i: usize) {
        if self.procs[i].paused {
            self.signal(i, Signal::SIGCONT);
        }
        if let Some(mut c) = self.procs[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.procs[i].paused = false;
    }

    /// Starts a killed node again (with its current clock offset).
    pub fn restart(&mut self, i: usize) -> Result<()> {
        if self.procs[i].child.is_some() {
            return Ok(());
        }
        self.spawn(i)?;
        self.wait_healthy(i, Duration::from_secs(30))
    }

    /// Restarts node `i` with its clock shifted by `offset_ms`.
    pub fn restart_with_clock(&mut self, i: usize, offset_ms: i64) -> Result<()> {
        self.kill9(i);
        self.procs[i].clock_offset_ms = offset_ms;
        self.restart(i)
    }

    /// Makes running node `i`'s wall clock jump to `offset_ms` from the real one (within
    /// 100 ms: the node polls its offset file).
    pub fn jump_clock(&mut self, i: usize, offset_ms: i64) -> Result<()> {
        self.procs[i].clock_offset_ms = offset_ms;
        self.write_clock(i)
    }

    fn clock_file(&self, i: usize) -> PathBuf {
        self.dir.join(format!("n{}.clock", i + 1))
    }

    /// Writes node `i`'s clock offset by rename, so the node never reads half of it.
    fn write_clock(&self, i: usize) -> Result<()> {
        let path = self.clock_file(i);
        let tmp = path.with_extension("clock.tmp");
        std::fs::write(&tmp, self.procs[i].clock_offset_ms.to_string())?;
        std::fs::rename(&tmp, &path)?;
        Ok(())
    }

    pub fn pause(&mut self, i: usize) {
        if self.procs[i].child.is_some() && !self.procs[i].paused {
            self.signal(i, Signal::SIGSTOP);
            self.procs[i].paused = true;
        }
    }

    pub fn resume(&mut self, i: usize) {
        if self.procs[i].paused {
            self.signal(i, Signal::SIGCONT);
            self.procs[i].paused = false;
        }
    }

    /// Ends every fault of the processes: resumes paused nodes, restarts killed ones, and
    /// puts every clock back.
    pub fn heal(&mut self) -> Result<()> {
        for i in 0..self.len() {
            self.resume(i);
            if self.procs[i].clock_offset_ms != 0 {
                // Put back while running, as NTP would step it.
                self.jump_clock(i, 0)?;
            }
            self.restart(i)?;
        }
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.procs.len() {
            self.kill9(i);
        }
    }
}
