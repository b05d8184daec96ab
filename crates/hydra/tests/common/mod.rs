//! A cluster of real `hydra server` processes on loopback for tests: free ports, a temporary
//! directory, kill -9 and restart; every process is killed when the cluster is dropped.
#![allow(dead_code)]

pub mod redis;

use hydra_client::Client;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The cluster secret of the test clusters.
pub const TEST_SECRET: &str = "hydra-test-cluster-secret-0123456789abcdef";
/// The admin token of the test clusters (HTTP bearer token, Redis `AUTH` password).
pub const TEST_TOKEN: &str = "hydra-test-admin-token-0123456789";

pub struct TestNode {
    pub id: u64,
    pub http: String,
    /// Redis-protocol address.
    pub resp: String,
    pub internode: String,
    pub config: PathBuf,
    pub log: PathBuf,
    pub child: Option<Child>,
}

pub struct TestCluster {
    pub dir: tempfile::TempDir,
    pub nodes: Vec<TestNode>,
}

/// The `hydra` binary under test: this build, or `HYDRA_TEST_BIN` (to show that a test fails
/// on an older build).
pub fn hydra_bin() -> std::path::PathBuf {
    std::env::var_os("HYDRA_TEST_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_hydra").into())
}

/// A port nothing listens on, taken below the kernel's ephemeral range (32768 and up on
/// Linux): a port picked by binding to 0 can be handed to another test's outgoing connection
/// between our probe and the server's bind, which failed CI with "address already in use".
/// Each test process starts at its own offset (from its pid) and walks forward.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        (std::process::id() * 997) % SPAN,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..SPAN {
        let port = (FIRST + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between {FIRST} and {}", FIRST + SPAN);
}

/// Starts `hydra server --config config`, its output appended to `log`.
pub fn spawn_server(config: &std::path::Path, log: &std::path::Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log");
    Command::new(hydra_bin())
        .arg("server")
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("start hydra server")
}

/// A counter's value in Prometheus text (`name{labels} value`), 0 when absent.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

impl TestCluster {
    /// A cluster whose `[limits]` section gets `extra` lines.
    pub fn start(count: u64, extra: &str) -> TestCluster {
        TestCluster::start_with(count, "", extra)
    }

    /// A cluster whose `[cluster]` section gets `cluster_extra` lines and `[limits]` section
    /// `limits_extra` lines.
    pub fn start_with(count: u64, cluster_extra: &str, limits_extra: &str) -> TestCluster {
        TestCluster::start_full(count, "", cluster_extra, limits_extra)
    }

    /// A cluster whose `[node]`, `[cluster]` and `[limits]` sections get these extra lines.
    pub fn start_full(
        count: u64,
        node_extra: &str,
        cluster_extra: &str,
        limits_extra: &str,
    ) -> TestCluster {
        let extra = limits_extra;
        let dir = tempfile::tempdir().expect("tempdir");
        let addrs: Vec<(String, String, String)> = (0..count)
            .map(|_| {
                (
                    format!("127.0.0.1:{}", free_port()),
                    format!("127.0.0.1:{}", free_port()),
                    format!("127.0.0.1:{}", free_port()),
                )
            })
            .collect();
        let mut nodes = Vec::new();
        for id in 1..=count {
            let (http, internode, resp) = &addrs[(id - 1) as usize];
            let peers: Vec<String> = (1..=count)
                .filter(|p| *p != id)
                .map(|p| {
                    format!(
                        "{{ id = {p}, internode = \"{}\", zone = \"z{p}\" }}",
                        addrs[(p - 1) as usize].1
                    )
                })
                .collect();
            let config = dir.path().join(format!("n{id}.toml"));
            let text = format!(
                "[node]\nid = {id}\nzone = \"z{id}\"\ndata_dir = \"{}\"\n{node_extra}\n[listen]\nhttp = \"{http}\"\ninternode = \"{internode}\"\nresp = \"{resp}\"\n\
                 [auth]\nadmin_token = \"{TEST_TOKEN}\"\n\
                 [cluster]\nsecret = \"{TEST_SECRET}\"\npeers = [{}]\nheartbeat_interval_ms = 100\n{cluster_extra}\n[limits]\nrequest_timeout_ms = 2000\ngossip_interval_ms = 500\n{extra}\n",
                dir.path().join(format!("n{id}")).display(),
                peers.join(", ")
            );
            std::fs::write(&config, text).expect("write config");
            nodes.push(TestNode {
                id,
                http: http.clone(),
                resp: resp.clone(),
                internode: internode.clone(),
                config,
                log: dir.path().join(format!("n{id}.log")),
                child: None,
            });
        }
        let mut cluster = TestCluster { dir, nodes };
        for i in 0..count as usize {
            cluster.spawn(i);
        }
        for i in 0..count as usize {
            cluster.wait_healthy(i);
        }
        cluster
    }

    pub fn spawn(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        n.child = Some(spawn_server(&n.config, &n.log));
    }

    /// Waits until node `i` answers and coordinates: a node refuses writes (`CLOCK_SKEW`)
    /// until a heartbeat round trip with a peer has verified its clock.
    pub fn wait_healthy(&self, i: usize) {
        let single = self.nodes.len() == 1;
        self.wait_until(i, "took writes", |c| {
            c.health().is_ok()
                && c.status()
                    .is_ok_and(|s| s["clock"]["state"] == "ok" || single)
        });
    }

    /// Waits until node `i` answers (it may still refuse writes: see [`wait_healthy`]); for
    /// tests where what happens in the first moments after a restart matters.
    pub fn wait_up(&self, i: usize) {
        self.wait_until(i, "answered", |c| c.health().is_ok());
    }

    /// Polls node `i` until `ready` holds, for 30 s at most.
    fn wait_until(&self, i: usize, what: &str, ready: impl Fn(&Client) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ready(&self.client(i)) {
            assert!(
                Instant::now() < deadline,
                "node {} never {what}; log:\n{}",
                self.nodes[i].id,
                self.log(i)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default()
    }

    pub fn client(&self, i: usize) -> Client {
        Client::new(&self.nodes[i].http).with_token(TEST_TOKEN)
    }

    /// SIGKILL: no clean shutdown, no final fsync.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            c.kill().expect("kill -9");
            c.wait().expect("reap");
        }
    }

    pub fn restart(&mut self, i: usize) {
        self.spawn(i);
        self.wait_healthy(i);
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill9(i);
        }
    }
}
