//! Hydra's node: the tokio shell around `hydra-core`. It owns sockets, threads, the clock and
//! the disk; every decision is the core's.
//!
//! Key pieces: [`config`] (the TOML file and its overrides), [`driver`] (the core thread: it
//! owns the core and the store and runs group-commit fsyncs), [`transport`] (internode TCP
//! frames), [`http`] (the API), [`resp`] (the Redis protocol: connection loop, commands,
//! metadata tables), [`metrics`]. Start reading at [`run`].
//!
//! Must not: decide anything about replication (that is `hydra-core`'s), or block the async
//! reactor with storage work (the core thread does all of it).

pub mod admin;
pub mod auth;
pub mod config;
pub mod credentials;
pub mod driver;
pub mod fuzzing;
pub mod http;
pub mod http_auth;
pub mod http_bucket;
pub mod http_status;
pub mod listen;
pub mod metrics;
pub mod resp;
pub mod secure;
pub mod shards;
pub mod tls;
pub mod transport;

use anyhow::{Context, Result};
use config::Config;
use hydra_core::ids::NodeId;
use hydra_core::node::Node;
use hydra_store::FjallStore;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Runs one node until SIGTERM or Ctrl-C, then stops cleanly (final fsync included).
pub async fn run(config: Config) -> Result<()> {
    let layout = config.layout()?;
    if let Some(path) = &config.node.clock_offset_file {
        driver::follow_clock_offset_file(path.clone())?;
    } else if config.node.clock_offset_ms != 0 {
        driver::set_clock_offset_ms(config.node.clock_offset_ms);
        tracing::warn!(
            "node clock shifted by {} ms (node.clock_offset_ms, for fault tests only)",
            config.node.clock_offset_ms
        );
    }
    let durability = config.durability()?;
    let secret = config.secret()?;
    let admin_token = config.admin_token()?;
    let acceptor = match (&config.tls.cert, &config.tls.key) {
        (Some(cert), Some(key)) => tls::Acceptor::tls(cert, key, config.tls.client_ca.as_deref())?,
        _ => tls::Acceptor::plain(),
    };
    if !acceptor.is_tls()
        && (!config::loopback(&config.listen.http) || !config::loopback(&config.listen.resp))
    {
        tracing::warn!(
            "client ports beyond loopback in plain text (listen.allow_plaintext = true): credentials and data cross the network unencrypted; set tls.cert and tls.key"
        );
    }
    let me = NodeId(config.node.id);
    // Bind first, so a port in use fails before anything starts.
    let internode = TcpListener::bind(&config.listen.internode)
        .await
        .with_context(|| {
            format!(
                "while binding the internode address {}",
                config.listen.internode
            )
        })?;
    let http_listener = TcpListener::bind(&config.listen.http)
        .await
        .with_context(|| format!("while binding the HTTP address {}", config.listen.http))?;
    let resp_listener = TcpListener::bind(&config.listen.resp)
        .await
        .with_context(|| format!("while binding the RESP address {}", config.listen.resp))?;
    std::fs::create_dir_all(&config.node.data_dir).with_context(|| {
        format!(
            "while creating the data directory {}",
            config.node.data_dir.display()
        )
    })?;
    let shards = config.node.shards;
    let store_dirs = shard_dirs(&config.node.data_dir, shards)?;
    let mut stores = Vec::with_capacity(shards);
    for dir in &store_dirs {
        let store = FjallStore::open_with(dir, config.store_options())
            .with_context(|| format!("while opening the store in {}", dir.display()))?;
        stores.push(store);
    }
    let identity = secure::Identity::load_or_create(&config.key_file())?;
    let mut members = Vec::new();
    for p in &config.cluster.peers {
        let key = match &p.public_key {
            Some(k) => Some(secure::parse_public_key(k)?),
            None => None,
        };
        members.push((NodeId(p.id), key));
    }
    let security = Arc::new(secure::Security::new(
        me,
        identity,
        &secret,
        Some(config.cluster.secret_next.as_str()),
        &members,
        Some(config.node.data_dir.join("peer_keys.toml")),
    )?);
    tracing::info!(
        "node {me}'s internode public key: {} (kept in {})",
        security.identity().public_base64(),
        config.key_file().display()
    );
    let unkeyed = security.unkeyed_members();
    if !unkeyed.is_empty() {
        tracing::info!(
            "peers without a configured public_key ({unkeyed:?}): the key each first shows is pinned"
        );
    }
    let metrics = Arc::new(metrics::Metrics::new());
    let peers: Vec<(NodeId, String)> = config
        .cluster
        .peers
        .iter()
        .map(|p| (NodeId(p.id), p.internode.clone()))
        .collect();
    let mut handles = Vec::with_capacity(shards);
    let mut joins = Vec::with_capacity(shards);
    for (shard, store) in stores.into_iter().enumerate() {
        let transport = transport::Transport::start(
            me,
            shard,
            shards,
            &peers,
            config.limits.internode_queue_frames_max,
            security.clone(),
            metrics.clone(),
        );
        let node = Node::new(config.node_config(), layout.clone());
        // `hydra-core`, or `hydra-core-0`, `hydra-core-1`... (per-thread CPU names them).
        let name = match shards {
            1 => "hydra-core".to_string(),
            _ => format!("hydra-core-{shard}"),
        };
        let (handle, join) = driver::start(
            name,
            node,
            store,
            durability,
            transport,
            metrics.clone(),
            config.limits.core_queue_max,
            config.limits.core_peer_queue_max,
            config.node.single_thread,
        )
        .context("while starting the core thread")?;
        handles.push(handle);
        joins.push(join);
    }
    let core = shards::CoreHandle::new(handles, &layout);
    tokio::spawn(
        core.clone()
            .follow_buckets(std::time::Duration::from_millis(
                config.limits.gossip_interval_ms,
            )),
    );
    tokio::spawn(transport::serve(
        internode,
        security,
        // Each peer keeps a connection per shard.
        config.limits.internode_connections_max * shards,
        std::time::Duration::from_millis(config.limits.internode_idle_timeout_ms),
        core.clone(),
        metrics.clone(),
    ));
    let auth = Arc::new(auth::Auth::new(
        &admin_token,
        Some(credentials::Credentials::new(core.clone())),
    )?);
    let mut resp_state = resp::RespState::new(
        core.clone(),
        metrics.clone(),
        config.node.id,
        resp_listener.local_addr().map(|a| a.port()).unwrap_or(0),
        config.storage.durability.clone(),
        config.limits.value_bytes_max,
        config.limits.resp_connections_max,
        config.limits.resp_pipeline_commands_max,
        auth.clone(),
    );
    resp_state.auth_timeout = std::time::Duration::from_millis(config.limits.resp_auth_timeout_ms);
    resp_state.reply_bytes_max = config.limits.resp_reply_bytes_max;
    resp_state.acceptor = acceptor.clone();
    tokio::spawn(resp::serve(resp_listener, Arc::new(resp_state)));
    let state = Arc::new(http::AppState {
        core: core.clone(),
        metrics: metrics.clone(),
        layout,
        value_bytes_max: config.limits.value_bytes_max,
        durability: config.storage.durability.clone(),
        auth,
    });
    tracing::info!(
        "node {me} serving HTTP on {}, RESP on {}, internode on {}, data in {}",
        config.listen.http,
        config.listen.resp,
        config.listen.internode,
        config.node.data_dir.display()
    );
    let listener = listen::Bounded::new(
        http_listener,
        config.limits.http_connections_max,
        std::time::Duration::from_millis(config.limits.http_idle_timeout_ms),
        acceptor,
        metrics,
    )
    .context("while starting the HTTP listener")?;
    axum::serve(listener, http::router(state))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("while serving HTTP")?;
    tracing::info!("node {me} stopping");
    core.shutdown();
    for join in joins {
        join.wait().await;
    }
    Ok(())
}

/// The store directories of a node's shards: the data directory itself for one shard, else
/// `shard-0`, `shard-1`... inside it. The count is recorded in the data directory (`shards`)
/// at first start: a node's data is split by shard, so the count never changes.
fn shard_dirs(data_dir: &std::path::Path, shards: usize) -> Result<Vec<std::path::PathBuf>> {
    let marker = data_dir.join("shards");
    let recorded = match std::fs::read_to_string(&marker) {
        Ok(text) => Some(
            text.trim()
                .parse::<usize>()
                .with_context(|| format!("{} does not hold a shard count", marker.display()))?,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // No record: a store made before the count was recorded has one shard; shard
            // directories without their record are not guessed at.
            if data_dir.join("shard-0").exists() {
                anyhow::bail!(
                    "the data directory {} holds shard directories but no record of their count ({}): restore it",
                    data_dir.display(),
                    marker.display()
                );
            }
            data_dir.join("version").exists().then_some(1)
        }
        Err(e) => return Err(e).with_context(|| format!("while reading {}", marker.display())),
    };
    match recorded {
        Some(r) if r != shards => anyhow::bail!(
            "the data directory {} holds a node of {r} shard(s) and node.shards is {shards}: a node's shard count cannot change",
            data_dir.display()
        ),
        _ if marker.exists() => {}
        // First start, or a store made before the count was recorded: recorded now.
        _ => write_synced(&marker, format!("{shards}\n").as_bytes())
            .with_context(|| format!("while writing {}", marker.display()))?,
    }
    Ok(match shards {
        1 => vec![data_dir.to_path_buf()],
        _ => (0..shards)
            .map(|i| data_dir.join(format!("shard-{i}")))
            .collect(),
    })
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

/// Writes a small file whole or not at all: a temporary file, synced, renamed over `path`,
/// and the directory synced.
fn write_synced(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
