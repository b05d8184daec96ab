//! The node's configuration: one TOML file, every key defaulted, overridable by `--set
//! section.key=value` flags and `HYDRA_SECTION_KEY` environment variables (flags win).
//! The reference of every key is `config.example.toml` at the repository root.

use anyhow::{Context, Result, bail};
use hydra_core::ids::{LayoutVersion, NodeId};
use hydra_core::layout::{Layout, LayoutSpec, NodeInfo, PARTITIONS_DEFAULT};
use hydra_core::limits::{TIMEOUT_MS_MAX, VALUE_BYTES_CEILING};
use hydra_core::node::NodeConfig;
use hydra_store::{Durability, StoreOptions};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Sections of the file; environment variables are matched against these.
const SECTIONS: &[&str] = &[
    "node", "listen", "cluster", "storage", "limits", "auth", "tls",
];

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub node: NodeSection,
    pub listen: ListenSection,
    pub cluster: ClusterSection,
    pub storage: StorageSection,
    pub limits: LimitsSection,
    pub auth: AuthSection,
    pub tls: TlsSection,
}

/// TLS on the client ports (HTTP and the Redis protocol).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSection {
    /// PEM certificate chain; with `key`, both client ports speak TLS only.
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    pub key: Option<PathBuf>,
    /// PEM CA: clients must show a certificate it signed (mutual TLS).
    pub client_ca: Option<PathBuf>,
}

/// Client credentials.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSection {
    /// The admin credential (at least 16 printable bytes): an HTTP bearer token with every
    /// scope, and the Redis protocol's `default` user's password. Required by `hydra server`.
    pub admin_token: String,
    /// A file holding the admin token (instead of `admin_token`).
    pub admin_token_file: Option<PathBuf>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeSection {
    /// This node's id, unique in the cluster and never reused for other data.
    pub id: u64,
    pub zone: String,
    pub datacenter: String,
    /// Relative share of data (1..=1000).
    pub capacity: u32,
    /// Where the node keeps its data.
    pub data_dir: PathBuf,
    /// Threads of the async runtime (network, HTTP, RESP); 0: one per core.
    pub worker_threads: usize,
    /// The whole node on one thread: connections, internode traffic and the core share it,
    /// so a request reaches the core and its reply the connection without a thread switch
    /// (`worker_threads` is then unused). For hosts with fewer cores than the nodes and
    /// clients they run, such as a `hydra dev` cluster on a small machine; one core is then
    /// the node's ceiling.
    pub single_thread: bool,
    /// Cores of this node (1..=64): each a thread with its own store (`shard-i` in the data
    /// directory), serving the partitions `p % shards == i`, so a node uses that many cores
    /// for its replication logic and storage. The same on every node of the cluster, and
    /// fixed at a node's first start. Caches, memtables and the hint budget are split
    /// between the shards. Needs `single_thread = false`.
    pub shards: usize,
    /// Test-only: milliseconds added to this node's wall clock (fault tests skew clocks).
    pub clock_offset_ms: i64,
    /// Test-only: a file holding milliseconds added to this node's wall clock, read at start
    /// and every 100 ms after (instead of `clock_offset_ms`): fault tests make a running
    /// node's clock jump, as an NTP step or an operator's mistake would.
    pub clock_offset_file: Option<PathBuf>,
    /// This node's internode key pair (its identity to peers); created on first start.
    /// Empty: `node.key` in the data directory.
    pub key_file: Option<PathBuf>,
    /// Where the node writes its log (appended, without colour codes). Empty: standard
    /// error (with colours only on a terminal).
    pub log_file: Option<PathBuf>,
    /// The `cluster.json` of the `hydra dev` cluster this node belongs to: the node records
    /// its pid there at every start, so the file stays right when it is restarted by hand.
    pub dev_cluster_json: Option<PathBuf>,
}

impl Default for NodeSection {
    fn default() -> Self {
        NodeSection {
            id: 1,
            zone: "z1".into(),
            datacenter: "dc1".into(),
            capacity: 1,
            data_dir: "data".into(),
            worker_threads: 0,
            single_thread: false,
            shards: 1,
            clock_offset_ms: 0,
            clock_offset_file: None,
            key_file: None,
            log_file: None,
            dev_cluster_json: None,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenSection {
    /// HTTP API address (`host:port`).
    pub http: String,
    /// Internode transport address; peers connect here.
    pub internode: String,
    /// Redis-protocol (RESP2/RESP3) address.
    pub resp: String,
    /// Client ports (HTTP, RESP) bound beyond loopback without TLS are refused unless this
    /// is true (and then warned about at every start).
    pub allow_plaintext: bool,
}

impl Default for ListenSection {
    fn default() -> Self {
        ListenSection {
            http: "127.0.0.1:8080".into(),
            internode: "127.0.0.1:7070".into(),
            resp: "127.0.0.1:6379".into(),
            allow_plaintext: false,
        }
    }
}

/// Another member of the (static) cluster.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    pub id: u64,
    pub internode: String,
    #[serde(default = "default_zone")]
    pub zone: String,
    #[serde(default = "default_datacenter")]
    pub datacenter: String,
    #[serde(default = "default_capacity")]
    pub capacity: u32,
    /// The peer's internode public key (base64, printed by `hydra server` at start and kept in
    /// its key file). Absent: the key the peer first shows is pinned (trust on first use).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
}

fn default_zone() -> String {
    "z1".into()
}
fn default_datacenter() -> String {
    "dc1".into()
}
fn default_capacity() -> u32 {
    1
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSection {
    /// The cluster secret (at least 32 bytes; `hydra secret` makes one): every internode
    /// connection proves both ends hold it. Required by `hydra server`.
    pub secret: String,
    /// A file holding the cluster secret (instead of `secret`; surrounding whitespace is
    /// ignored).
    pub secret_file: Option<PathBuf>,
    /// During a rotation, the other secret this node accepts (and tries when `secret` fails).
    pub secret_next: String,
    /// Number of partitions (a power of two); fixed when the cluster is created.
    pub partitions: u32,
    /// Version of the layout that this membership describes.
    pub layout_version: u64,
    /// The other nodes. Membership is static: every node lists the same set.
    pub peers: Vec<Peer>,
    /// How often this node sends a heartbeat to every peer.
    pub heartbeat_interval_ms: u64,
    /// Phi-accrual suspicion above which a peer is believed down and not waited for.
    pub phi_convict_threshold: f64,
    /// A sloppy write gives a fallback to each primary that has not acked after this long (or
    /// after half the request's timeout, if that is sooner).
    pub fallback_after_ms: u64,
    /// A read asks R replicas, and the rest too when one fails or is this late (0: all N).
    pub read_retry_after_ms: u64,
    /// How often held hints are offered to owners that are up again (0: never, for tests).
    pub handoff_interval_ms: u64,
    /// How often an anti-entropy exchange starts (0: anti-entropy off).
    pub anti_entropy_interval_ms: u64,
    /// The pause between two walks of Paxos repair rounds over the groups this node holds
    /// compare-and-set state of (0: Paxos state is never collected).
    pub paxos_repair_interval_ms: u64,
}

/// The core's defaults: every default the core uses is written once, in `NodeConfig::new`.
fn core_defaults() -> NodeConfig {
    NodeConfig::new(NodeId(1))
}

impl Default for ClusterSection {
    fn default() -> Self {
        let core = core_defaults();
        ClusterSection {
            secret: String::new(),
            secret_file: None,
            secret_next: String::new(),
            partitions: PARTITIONS_DEFAULT,
            layout_version: 1,
            peers: vec![],
            heartbeat_interval_ms: core.heartbeat_interval_ms,
            phi_convict_threshold: core.phi_convict_threshold,
            fallback_after_ms: core.fallback_after_ms,
            read_retry_after_ms: core.read_retry_after_ms,
            handoff_interval_ms: core.handoff_interval_ms,
            anti_entropy_interval_ms: core.anti_entropy_interval_ms,
            paxos_repair_interval_ms: core.paxos_repair_interval_ms,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSection {
    /// `fsync` (default: acknowledge after fsync, group commit), `periodic:<ms>` (fsync every
    /// interval, acknowledge at once) or `none` (never fsync: tests and benchmarks only; a
    /// crash loses acknowledged writes).
    pub durability: String,
    /// How long after every primary acked a delete (or an expiry) its tombstone is removed.
    pub tombstone_grace_ms: u64,
    /// The store's block cache, in bytes (at least 1 MiB): with `memtable_bytes` and
    /// `row_cache_bytes`, what bounds the node's resident memory, plus about a byte per key
    /// for the tables' index and filter blocks, which stay pinned in memory.
    pub cache_bytes: u64,
    /// Size at which the store's memtable is flushed to disk, in bytes (1 MiB to 1 GiB).
    /// Taken when the node's store is created (the engine keeps it with the store), so a
    /// change for a node that has data takes effect only on a fresh data directory.
    pub memtable_bytes: u64,
    /// The store's row cache (the newest value of hot keys, kept in step by every write;
    /// a key read from disk enters at its second miss), in bytes; 0 turns it off. Counts
    /// toward resident memory with the two above, with 1/128 to 1/64 of it besides for the
    /// doorkeeper that decides which keys enter.
    pub row_cache_bytes: u64,
}

impl Default for StorageSection {
    fn default() -> Self {
        StorageSection {
            durability: "fsync".into(),
            tombstone_grace_ms: core_defaults().tombstone_grace_ms,
            cache_bytes: StoreOptions::default().cache_bytes,
            memtable_bytes: StoreOptions::default().memtable_bytes,
            row_cache_bytes: StoreOptions::default().row_cache_bytes,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    /// Largest value accepted, in bytes (ceiling 64 MiB).
    pub value_bytes_max: usize,
    /// Deadline of a request that names no `timeout_ms`.
    pub request_timeout_ms: u64,
    /// `lww` writes stamped further ahead of this node's clock are refused.
    pub max_clock_skew_ms: u64,
    /// Batches of frames queued per peer before new ones are dropped (the requests then time
    /// out); a batch is what one pass of the core produced for the peer, at most 256 KiB.
    pub internode_queue_frames_max: usize,
    /// Events queued for the core thread before requests are refused as overloaded.
    pub core_queue_max: usize,
    /// Internode messages queued for the core thread (taken before client requests) before
    /// new ones are dropped.
    pub core_peer_queue_max: usize,
    /// How often the bucket table is pushed to every peer.
    pub gossip_interval_ms: u64,
    /// Bytes of hints held for one down node at most; beyond, hints are dropped and the
    /// partitions are left to anti-entropy.
    pub hints_bytes_max: u64,
    /// Redis-protocol connections served at once; more are refused with an error.
    pub resp_connections_max: usize,
    /// Pipelined Redis commands taken from one read before their replies are written.
    pub resp_pipeline_commands_max: usize,
    /// A Redis-protocol connection that has not logged in this long after opening is closed.
    pub resp_auth_timeout_ms: u64,
    /// Bytes of values one multi-key read (`MGET`) may answer with; more is an error.
    pub resp_reply_bytes_max: usize,
    /// HTTP connections open at once; more are closed at accept.
    pub http_connections_max: usize,
    /// An HTTP connection that moves no byte this long is closed.
    pub http_idle_timeout_ms: u64,
    /// Inbound internode connections open at once, per shard (a peer keeps one per shard);
    /// more are closed at accept.
    pub internode_connections_max: usize,
    /// An inbound internode connection silent this long is closed (peers send heartbeats every
    /// `cluster.heartbeat_interval_ms`).
    pub internode_idle_timeout_ms: u64,
}

impl Default for LimitsSection {
    fn default() -> Self {
        let core = core_defaults();
        LimitsSection {
            value_bytes_max: core.value_bytes_max,
            request_timeout_ms: core.request_timeout_ms,
            max_clock_skew_ms: core.max_clock_skew_ms,
            internode_queue_frames_max: 4096,
            core_queue_max: 65_536,
            core_peer_queue_max: 65_536,
            gossip_interval_ms: core.gossip_interval_ms,
            hints_bytes_max: core.hints_bytes_max,
            resp_connections_max: 10_000,
            resp_pipeline_commands_max: 1024,
            resp_auth_timeout_ms: 10_000,
            resp_reply_bytes_max: 64 * 1024 * 1024,
            http_connections_max: 4096,
            http_idle_timeout_ms: 300_000,
            internode_connections_max: 256,
            internode_idle_timeout_ms: 30_000,
        }
    }
}

impl Config {
    /// Reads `path` (if given), then applies `HYDRA_*` variables from `env`, then `sets`
    /// (`section.key=value`), then checks the result.
    pub fn load(
        path: Option<&Path>,
        env: impl Iterator<Item = (String, String)>,
        sets: &[String],
    ) -> Result<Config> {
        let mut table: toml::Table = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("while reading {}", p.display()))?;
                toml::from_str(&text).with_context(|| format!("while parsing {}", p.display()))?
            }
            None => toml::Table::new(),
        };
        for (name, value) in env {
            let Some(rest) = name.strip_prefix("HYDRA_") else {
                continue;
            };
            let rest = rest.to_ascii_lowercase();
            let Some((section, key)) = rest.split_once('_') else {
                continue;
            };
            if SECTIONS.contains(&section) {
                set(&mut table, section, key, &value);
            }
        }
        for s in sets {
            let Some((path, value)) = s.split_once('=') else {
                bail!("--set {s:?}: expected section.key=value")
            };
            let Some((section, key)) = path.split_once('.') else {
                bail!("--set {s:?}: expected section.key=value")
            };
            if !SECTIONS.contains(&section) {
                bail!(
                    "--set {s:?}: unknown section {section:?}; expected one of {}",
                    SECTIONS.join(", ")
                );
            }
            set(&mut table, section, key, value);
        }
        let config: Config = toml::Value::Table(table)
            .try_into()
            .context("while reading the configuration")?;
        config.check()?;
        Ok(config)
    }

    pub fn check(&self) -> Result<()> {
        self.durability()?;
        if self.node.shards == 0 || self.node.shards > crate::shards::SHARDS_MAX {
            bail!(
                "node.shards = {} is out of range 1..={}",
                self.node.shards,
                crate::shards::SHARDS_MAX
            );
        }
        if self.node.shards > 1 && self.node.single_thread {
            bail!(
                "node.shards = {} needs a thread per shard: set node.single_thread = false",
                self.node.shards
            );
        }
        if self.limits.value_bytes_max == 0 || self.limits.value_bytes_max > VALUE_BYTES_CEILING {
            bail!(
                "limits.value_bytes_max = {} is out of range 1..={VALUE_BYTES_CEILING}",
                self.limits.value_bytes_max
            );
        }
        if self.limits.request_timeout_ms == 0 || self.limits.request_timeout_ms > TIMEOUT_MS_MAX {
            bail!(
                "limits.request_timeout_ms = {} is out of range 1..={TIMEOUT_MS_MAX}",
                self.limits.request_timeout_ms
            );
        }
        if self.storage.tombstone_grace_ms < 4 * self.limits.request_timeout_ms {
            bail!(
                "storage.tombstone_grace_ms = {} must be at least 4 x limits.request_timeout_ms ({}): a read repair or write still in flight could bring a reaped delete back",
                self.storage.tombstone_grace_ms,
                4 * self.limits.request_timeout_ms
            );
        }
        if self.storage.cache_bytes < StoreOptions::CACHE_BYTES_MIN {
            bail!(
                "storage.cache_bytes = {} must be at least {}",
                self.storage.cache_bytes,
                StoreOptions::CACHE_BYTES_MIN
            );
        }
        if !(StoreOptions::MEMTABLE_BYTES_MIN..=StoreOptions::MEMTABLE_BYTES_MAX)
            .contains(&self.storage.memtable_bytes)
        {
            bail!(
                "storage.memtable_bytes = {} is out of range {}..={}",
                self.storage.memtable_bytes,
                StoreOptions::MEMTABLE_BYTES_MIN,
                StoreOptions::MEMTABLE_BYTES_MAX
            );
        }
        if self.limits.gossip_interval_ms == 0 {
            bail!("limits.gossip_interval_ms must be at least 1");
        }
        if self.cluster.heartbeat_interval_ms == 0 || self.cluster.phi_convict_threshold <= 0.0 {
            bail!(
                "cluster.heartbeat_interval_ms and cluster.phi_convict_threshold must be positive"
            );
        }
        if self.limits.internode_queue_frames_max == 0
            || self.limits.core_queue_max == 0
            || self.limits.core_peer_queue_max == 0
        {
            bail!(
                "limits.internode_queue_frames_max, limits.core_queue_max and limits.core_peer_queue_max must be at least 1"
            );
        }
        if self.limits.resp_connections_max == 0
            || self.limits.resp_pipeline_commands_max == 0
            || self.limits.resp_auth_timeout_ms == 0
        {
            bail!(
                "limits.resp_connections_max, limits.resp_pipeline_commands_max and limits.resp_auth_timeout_ms must be at least 1"
            );
        }
        if self.limits.internode_connections_max == 0
            || self.limits.internode_idle_timeout_ms < 4 * self.cluster.heartbeat_interval_ms
        {
            bail!(
                "limits.internode_connections_max must be at least 1 and limits.internode_idle_timeout_ms at least 4 x cluster.heartbeat_interval_ms ({})",
                4 * self.cluster.heartbeat_interval_ms
            );
        }
        for p in &self.cluster.peers {
            if let Some(key) = &p.public_key {
                crate::secure::parse_public_key(key)
                    .with_context(|| format!("cluster.peers: node {}'s public_key", p.id))?;
            }
        }
        if self.limits.http_connections_max == 0 {
            bail!("limits.http_connections_max must be at least 1");
        }
        if self.limits.http_idle_timeout_ms < 2 * self.limits.request_timeout_ms {
            bail!(
                "limits.http_idle_timeout_ms = {} must be at least 2 x limits.request_timeout_ms ({}): a request still waiting would be cut",
                self.limits.http_idle_timeout_ms,
                2 * self.limits.request_timeout_ms
            );
        }
        if self.limits.resp_reply_bytes_max < self.limits.value_bytes_max {
            bail!(
                "limits.resp_reply_bytes_max = {} must be at least limits.value_bytes_max ({}): one value must fit a reply",
                self.limits.resp_reply_bytes_max,
                self.limits.value_bytes_max
            );
        }
        match (&self.tls.cert, &self.tls.key) {
            (Some(_), None) | (None, Some(_)) => bail!("set both tls.cert and tls.key, or neither"),
            (None, None) if self.tls.client_ca.is_some() => {
                bail!("tls.client_ca needs tls.cert and tls.key")
            }
            _ => {}
        }
        if self.tls.cert.is_none() && !self.listen.allow_plaintext {
            for (name, addr) in [
                ("listen.http", &self.listen.http),
                ("listen.resp", &self.listen.resp),
            ] {
                if !loopback(addr) {
                    bail!(
                        "{name} = {addr:?} is beyond loopback without TLS: set tls.cert and tls.key, or listen.allow_plaintext = true to accept clients in plain text"
                    );
                }
            }
        }
        let ids = std::iter::once(self.node.id).chain(self.cluster.peers.iter().map(|p| p.id));
        if let Some(id) = ids
            .into_iter()
            .find(|id| id & hydra_core::ids::PAXOS_WRITER_BIT != 0)
        {
            bail!(
                "node id {id} is too large: ids must be below 2^63 (the top bit of an id in a version vector names a node's compare-and-set writer)"
            );
        }
        if self.cluster.peers.iter().any(|p| p.id == self.node.id) {
            bail!("cluster.peers lists this node's own id {}", self.node.id);
        }
        self.layout()?;
        Ok(())
    }

    /// The cluster secret (`cluster.secret` or `cluster.secret_file`), checked for strength:
    /// a server does not start without one.
    pub fn secret(&self) -> Result<String> {
        let secret = value_or_file(
            "cluster.secret",
            &self.cluster.secret,
            self.cluster.secret_file.as_deref(),
        )?
        .with_context(|| {
            format!(
                "no cluster secret: set cluster.secret (or HYDRA_CLUSTER_SECRET, or cluster.secret_file) to the same secret of at least {} bytes on every node; `hydra secret` makes one",
                crate::secure::SECRET_BYTES_MIN
            )
        })?;
        crate::secure::check_secret("cluster.secret", &secret)?;
        if !self.cluster.secret_next.is_empty() {
            crate::secure::check_secret("cluster.secret_next", &self.cluster.secret_next)?;
        }
        Ok(secret)
    }

    /// The admin token (`auth.admin_token` or `auth.admin_token_file`): a server does not
    /// start without one.
    pub fn admin_token(&self) -> Result<String> {
        let token = value_or_file(
            "auth.admin_token",
            &self.auth.admin_token,
            self.auth.admin_token_file.as_deref(),
        )?
        .with_context(|| {
            format!(
                "no admin credential: set auth.admin_token (or HYDRA_AUTH_ADMIN_TOKEN, or auth.admin_token_file) to a token of at least {} bytes; `hydra secret` makes one",
                crate::auth::TOKEN_BYTES_MIN
            )
        })?;
        crate::auth::check_token("auth.admin_token", &token)?;
        Ok(token)
    }

    /// Where this node's key pair is kept.
    pub fn key_file(&self) -> PathBuf {
        self.node
            .key_file
            .clone()
            .unwrap_or_else(|| self.node.data_dir.join("node.key"))
    }

    /// What the store may use of memory.
    /// One shard's store options: the configured caches and memtable split between the
    /// shards.
    pub fn store_options(&self) -> StoreOptions {
        let shards = self.node.shards.max(1) as u64;
        StoreOptions {
            cache_bytes: self.storage.cache_bytes / shards,
            memtable_bytes: self.storage.memtable_bytes / shards,
            row_cache_bytes: self.storage.row_cache_bytes / shards,
        }
    }

    pub fn durability(&self) -> Result<Durability> {
        self.storage
            .durability
            .parse()
            .map_err(|e: String| anyhow::anyhow!("storage.durability: {e}"))
    }

    /// The layout: this node and its peers.
    pub fn layout(&self) -> Result<Layout> {
        let mut nodes = vec![NodeInfo {
            id: NodeId(self.node.id),
            zone: self.node.zone.clone(),
            datacenter: self.node.datacenter.clone(),
            capacity: self.node.capacity,
        }];
        nodes.extend(self.cluster.peers.iter().map(|p| NodeInfo {
            id: NodeId(p.id),
            zone: p.zone.clone(),
            datacenter: p.datacenter.clone(),
            capacity: p.capacity,
        }));
        nodes.sort_by_key(|n| n.id);
        Layout::new(LayoutSpec {
            version: LayoutVersion(self.cluster.layout_version),
            partition_count: self.cluster.partitions,
            nodes,
        })
        .context("while building the layout from cluster.peers")
    }

    pub fn node_config(&self) -> NodeConfig {
        let mut c = NodeConfig::new(NodeId(self.node.id));
        // The credentials table's bucket exists on every node from the start.
        c.buckets.insert(
            hydra_core::key::BucketName::new(crate::credentials::SYSTEM_BUCKET)
                .expect("a valid name"),
            hydra_core::bucket::BucketProps::lww(),
        );
        c.request_timeout_ms = self.limits.request_timeout_ms;
        c.max_clock_skew_ms = self.limits.max_clock_skew_ms;
        c.value_bytes_max = self.limits.value_bytes_max;
        c.gossip_interval_ms = self.limits.gossip_interval_ms;
        c.heartbeat_interval_ms = self.cluster.heartbeat_interval_ms;
        c.phi_convict_threshold = self.cluster.phi_convict_threshold;
        c.fallback_after_ms = self.cluster.fallback_after_ms;
        c.read_retry_after_ms = self.cluster.read_retry_after_ms;
        c.handoff_interval_ms = self.cluster.handoff_interval_ms;
        c.anti_entropy_interval_ms = self.cluster.anti_entropy_interval_ms;
        c.paxos_repair_interval_ms = self.cluster.paxos_repair_interval_ms;
        // Split between the shards, each of which keeps hints of its own.
        c.hints_bytes_max = self.limits.hints_bytes_max / self.node.shards.max(1) as u64;
        c.tombstone_grace_ms = self.storage.tombstone_grace_ms;
        c
    }
}

/// A secret given in the file (`name`) or in a file (`name_file`; surrounding whitespace
/// dropped): `None` when neither is set, an error when both are.
fn value_or_file(name: &str, value: &str, file: Option<&Path>) -> Result<Option<String>> {
    match (file, value.is_empty()) {
        (Some(_), false) => bail!("set {name} or {name}_file, not both"),
        (Some(path), true) => Ok(Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("while reading {name}_file {}", path.display()))?
                .trim()
                .to_string(),
        )),
        (None, true) => Ok(None),
        (None, false) => Ok(Some(value.to_string())),
    }
}

/// Whether `addr` (`host:port`) binds loopback only.
pub fn loopback(addr: &str) -> bool {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn set(table: &mut toml::Table, section: &str, key: &str, value: &str) {
    // A value that parses as TOML (numbers, booleans, arrays) keeps its type; anything else
    // is a string.
    let parsed = toml::from_str::<toml::Table>(&format!("v = {value}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_string()));
    let entry = table
        .entry(section.to_string())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if let toml::Value::Table(t) = entry {
        t.insert(key.to_string(), parsed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_file_env_and_flags_layer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("n.toml");
        std::fs::write(
            &path,
            "[node]\nid = 2\n[cluster]\npeers = [{ id = 1, internode = \"127.0.0.1:7001\" }]\n[storage]\ndurability = \"none\"\n",
        )
        .expect("write");
        let env = vec![
            (
                "HYDRA_LIMITS_REQUEST_TIMEOUT_MS".to_string(),
                "700".to_string(),
            ),
            (
                "HYDRA_STORAGE_DURABILITY".to_string(),
                "periodic:50".to_string(),
            ),
            ("HYDRA_ENDPOINT".to_string(), "ignored".to_string()),
        ];
        let c = Config::load(
            Some(&path),
            env.into_iter(),
            &["storage.durability=fsync".into()],
        )
        .expect("valid");
        assert_eq!(c.node.id, 2);
        assert_eq!(c.limits.request_timeout_ms, 700);
        assert_eq!(c.durability().expect("valid"), Durability::Fsync);
        assert_eq!(c.layout().expect("valid").nodes().len(), 2);
    }

    #[test]
    fn client_ports_beyond_loopback_need_tls_or_allow_plaintext() {
        let wide = ["listen.http=0.0.0.0:8080".to_string()];
        let e = Config::load(None, std::iter::empty(), &wide).expect_err("plain text");
        assert!(format!("{e:#}").contains("listen.http"), "{e:#}");
        let mut allowed = wide.to_vec();
        allowed.push("listen.allow_plaintext=true".into());
        assert!(Config::load(None, std::iter::empty(), &allowed).is_ok());
        let mut tls = wide.to_vec();
        tls.extend(["tls.cert=c.pem".to_string(), "tls.key=k.pem".to_string()]);
        assert!(Config::load(None, std::iter::empty(), &tls).is_ok());
        let e =
            Config::load(None, std::iter::empty(), &["tls.cert=c.pem".into()]).expect_err("half");
        assert!(format!("{e:#}").contains("tls.key"), "{e:#}");
        assert!(loopback("127.0.0.1:1") && loopback("[::1]:1") && loopback("localhost:1"));
        assert!(!loopback("10.0.0.1:1") && !loopback("0.0.0.0:1") && !loopback("[::]:1"));
    }

    #[test]
    fn errors_name_the_key() {
        let e = Config::load(
            None,
            std::iter::empty(),
            &["storage.durability=maybe".into()],
        )
        .expect_err("bad");
        assert!(format!("{e:#}").contains("storage.durability"), "{e:#}");
        let e =
            Config::load(None, std::iter::empty(), &["node.colour=red".into()]).expect_err("bad");
        assert!(format!("{e:#}").contains("colour"), "{e:#}");
        let e = Config::load(None, std::iter::empty(), &["cluster.partitions=100".into()])
            .expect_err("bad");
        assert!(format!("{e:#}").contains("power of two"), "{e:#}");
    }
}

#[cfg(test)]
mod example {
    use super::*;

    /// `config.example.toml` documents every key with its default: it must parse, and say
    /// exactly what the defaults are.
    #[test]
    fn the_example_file_is_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config.example.toml");
        let from_file =
            Config::load(Some(&path), std::iter::empty(), &[]).expect("the example parses");
        let defaults = Config::default();
        assert_eq!(
            toml::to_string(&from_file).expect("serializes"),
            toml::to_string(&defaults).expect("serializes"),
            "config.example.toml and Config::default() disagree"
        );
    }
}
