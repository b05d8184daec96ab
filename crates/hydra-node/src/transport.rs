//! Internode transport: persistent TCP connections carrying length-prefixed frames inside
//! authenticated, encrypted records (see [`crate::secure`] for the handshake and records).
//!
//! ```text
//! connect ─> handshake (Noise XXpsk3, keyed by the cluster secret; identities are static keys)
//!         ─> records, whose plaintext is: length (u32 BE) ‖ [hello ‖ length ‖] encoded Envelope ‖ ...
//! ```
//!
//! Each shard of a node (`node.shards`, see [`crate::shards`]) has its own connections and
//! talks only to the same shard of its peers. A node of several shards begins every
//! connection with a hello frame: `b"SH"`, the sending shard's index and the sender's shard
//! count (one byte each); a node of one shard sends none. A peer whose shard count differs
//! is refused.
//!
//! One outbound connection per peer, owned by a task with a bounded queue of batches (the
//! core thread hands over, per peer, every frame one pass over its queue produced, already
//! length-prefixed: one hand-off and one write for many frames); it reconnects with
//! exponential backoff (100 ms to 1 s; also after a connection that lasted less than 1 s), seals every queued batch into records and then
//! flushes. Requests are not paired with connections: any number are in flight, matched by
//! request id in the core. A frame that cannot be queued or written is dropped; the core's
//! deadline turns that into a timeout. Inbound connections are read by one task each, at
//! most `limits.internode_connections_max` at once; a handshake must finish within
//! [`HANDSHAKE_TIMEOUT`] and a connection that stays silent for
//! `limits.internode_idle_timeout_ms` is closed (peers send heartbeats far more often). A
//! record that fails to authenticate, a frame larger than the message limit or an
//! undecodable frame closes the connection. TCP_NODELAY is set on every socket.

use crate::driver::CoreHandle;
use crate::metrics::Metrics;
use crate::secure::{Frames, Refusal, Security};
use hydra_core::ids::NodeId;
use hydra_core::limits::MESSAGE_BYTES_MAX;
use hydra_core::message::decode_envelope;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// The longest a peer may take to finish its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
const BACKOFF_MIN_MS: u64 = 100;
const BACKOFF_MAX_MS: u64 = 1_000;

/// Appends one frame to a batch: its length (u32 BE), then `envelope` encoded in place.
pub fn push_envelope(batch: &mut Vec<u8>, envelope: &hydra_core::message::Envelope) {
    let start = batch.len();
    batch.extend_from_slice(&[0; 4]);
    hydra_core::message::encode_envelope_into(envelope, batch);
    let len = (batch.len() - start - 4) as u32;
    batch[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// The first frame of a connection from a node of several shards: which shard of the sender
/// it carries, and how many the sender runs. A node of one shard sends none (its peers of
/// earlier versions, which know no hello, still talk to it).
fn hello(shard: usize, shards: usize) -> Option<[u8; 8]> {
    (shards > 1).then_some([0, 0, 0, 4, b'S', b'H', shard as u8, shards as u8])
}

/// The shard a connection's first frame names, for a node of `shards` shards: `Some` if it
/// is a hello, `None` if it is a message (the sender runs one shard, as this node must). An
/// encoded envelope begins with its format byte, never `S`, so the two cannot be confused.
fn read_hello(frame: &[u8], shards: usize) -> Result<Option<usize>, String> {
    match frame {
        [b'S', b'H', shard, count] if *count as usize == shards && (*shard as usize) < shards => {
            Ok(Some(*shard as usize))
        }
        [b'S', b'H', _, count] => Err(format!(
            "it runs {count} shards and this node {shards}: node.shards must be the same on every node"
        )),
        _ if shards == 1 => Ok(None),
        _ => Err(format!(
            "it runs one shard (no hello) and this node {shards}: node.shards must be the same on every node"
        )),
    }
}

/// Queues of frame batches to the peers (one shard's connections).
pub struct Transport {
    me: NodeId,
    peers: BTreeMap<NodeId, mpsc::Sender<Vec<u8>>>,
}

impl Transport {
    /// Starts one connection task per peer on the current tokio runtime, for shard `shard`
    /// of `shards`.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        me: NodeId,
        shard: usize,
        shards: usize,
        peers: &[(NodeId, String)],
        queue_frames_max: usize,
        security: Arc<Security>,
        metrics: Arc<Metrics>,
    ) -> Arc<Transport> {
        let mut queues = BTreeMap::new();
        for (id, addr) in peers {
            let (tx, rx) = mpsc::channel(queue_frames_max);
            queues.insert(*id, tx);
            tokio::spawn(peer_task(
                *id,
                addr.clone(),
                rx,
                hello(shard, shards),
                security.clone(),
                metrics.clone(),
            ));
        }
        Arc::new(Transport { me, peers: queues })
    }

    /// Queues a batch of frames (built with [`push_envelope`]) for a peer; false if it was
    /// dropped (queue full or unknown peer).
    pub fn send(&self, to: NodeId, batch: Vec<u8>) -> bool {
        if to == self.me {
            return false;
        }
        match self.peers.get(&to) {
            Some(q) => q.try_send(batch).is_ok(),
            None => false,
        }
    }
}

async fn peer_task(
    peer: NodeId,
    addr: String,
    mut rx: mpsc::Receiver<Vec<u8>>,
    hello: Option<[u8; 8]>,
    security: Arc<Security>,
    metrics: Arc<Metrics>,
) {
    let mut backoff = BACKOFF_MIN_MS;
    // Counts failed handshakes: each next attempt tries the other secret during a rotation.
    let mut attempt = 0usize;
    loop {
        let connected = match TcpStream::connect(&addr).await {
            Ok(mut stream) => {
                let _ = stream.set_nodelay(true);
                match tokio::time::timeout(
                    HANDSHAKE_TIMEOUT,
                    security.connect(&mut stream, peer, attempt),
                )
                .await
                {
                    Ok(Ok(sealer)) => Ok((stream, sealer)),
                    Ok(Err(e)) => {
                        metrics.handshake(e.refusal);
                        attempt += 1;
                        Err(format!("handshake with {peer} at {addr} failed: {e}"))
                    }
                    Err(_) => {
                        metrics.handshake(Refusal::Io);
                        attempt += 1;
                        Err(format!("handshake with {peer} at {addr} timed out"))
                    }
                }
            }
            Err(e) => Err(format!("connecting to {peer} at {addr}: {e}")),
        };
        let (stream, mut sealer) = match connected {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!("{e}");
                // Frames queued for an unreachable peer would only be stale when it returns.
                while let Ok(_dropped) = rx.try_recv() {
                    metrics.frames_dropped.inc();
                }
                tokio::time::sleep(Duration::from_millis(backoff)).await;
                backoff = (backoff * 2).min(BACKOFF_MAX_MS);
                continue;
            }
        };
        metrics.handshake_ok();
        let connected_at = tokio::time::Instant::now();
        tracing::info!("connected to {peer} at {addr}");
        let mut out = BufWriter::with_capacity(64 * 1024, stream);
        let mut sealed = Vec::with_capacity(64 * 1024);
        // The hello goes in the first record, ahead of whatever is queued.
        let mut first = hello;
        loop {
            let Some(batch) = rx.recv().await else { return };
            sealed.clear();
            let mut ok = match first.take() {
                Some(hello) => sealer.push(&hello, &mut sealed).is_ok(),
                None => true,
            };
            ok = ok && sealer.push(&batch, &mut sealed).is_ok();
            // Coalesce whatever else is queued into the same records and flush.
            while ok && let Ok(batch) = rx.try_recv() {
                ok = sealer.push(&batch, &mut sealed).is_ok();
            }
            ok = ok && sealer.seal(&mut sealed).is_ok();
            if !ok || out.write_all(&sealed).await.is_err() || out.flush().await.is_err() {
                metrics.frames_dropped.inc();
                break;
            }
        }
        tracing::info!("connection to {peer} lost; reconnecting");
        // A connection the peer closes soon after its handshake (one whose shard count it
        // refuses, say) is redialed with backoff, not at once in a loop.
        if connected_at.elapsed() < Duration::from_millis(BACKOFF_MAX_MS) {
            tokio::time::sleep(Duration::from_millis(backoff)).await;
            backoff = (backoff * 2).min(BACKOFF_MAX_MS);
        } else {
            backoff = BACKOFF_MIN_MS;
        }
    }
}

/// Accepts peers' connections and hands their frames to the core.
pub async fn serve(
    listener: TcpListener,
    security: Arc<Security>,
    connections_max: usize,
    idle_timeout: Duration,
    core: CoreHandle,
    metrics: Arc<Metrics>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(connections_max));
    loop {
        let Ok((mut stream, remote)) = listener.accept().await else {
            continue;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics.internode_connections_refused.inc();
            tracing::warn!(
                "internode connection from {remote} refused: {connections_max} connections open (limits.internode_connections_max)"
            );
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (security, core, metrics) = (security.clone(), core.clone(), metrics.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let admitted =
                tokio::time::timeout(HANDSHAKE_TIMEOUT, security.accept(&mut stream)).await;
            let (from, opener) = match admitted {
                Ok(Ok(admitted)) => admitted,
                Ok(Err(e)) => {
                    metrics.handshake(e.refusal);
                    tracing::warn!("internode connection from {remote} refused: {e}");
                    return;
                }
                Err(_) => {
                    metrics.handshake(Refusal::Io);
                    tracing::warn!(
                        "internode connection from {remote} refused: no handshake within {HANDSHAKE_TIMEOUT:?}"
                    );
                    return;
                }
            };
            metrics.handshake_ok();
            if let Err(e) = read_peer(stream, from, opener, idle_timeout, &core, &metrics).await {
                tracing::info!("internode connection from {from} at {remote} closed: {e}");
            }
        });
    }
}

async fn read_peer(
    stream: TcpStream,
    from: NodeId,
    mut opener: crate::secure::Opener,
    idle_timeout: Duration,
    core: &CoreHandle,
    metrics: &Metrics,
) -> Result<(), String> {
    let mut stream = tokio::io::BufReader::with_capacity(64 * 1024, stream);
    let mut frames = Frames::new(MESSAGE_BYTES_MAX);
    let mut record = Vec::new();
    let mut shard = None;
    loop {
        let plain =
            match tokio::time::timeout(idle_timeout, opener.next_record(&mut stream, &mut record))
                .await
            {
                Ok(Ok(Some(plain))) => plain,
                Ok(Ok(None)) => return Ok(()),
                Ok(Err(e)) => {
                    metrics.records_rejected.inc();
                    return Err(format!("from {from}: {e}"));
                }
                Err(_) => return Err(format!("from {from}: silent for {idle_timeout:?}")),
            };
        frames
            .feed(plain, |frame| {
                let to = match shard {
                    Some(to) => to,
                    None => match read_hello(frame, core.shard_count())? {
                        Some(named) => {
                            shard = Some(named);
                            return Ok(());
                        }
                        None => *shard.insert(0),
                    },
                };
                let envelope = decode_envelope(frame).map_err(|e| format!("from {from}: {e}"))?;
                if !core.deliver(to, from, envelope) {
                    metrics.peer_messages_dropped.inc();
                }
                Ok(())
            })
            .map_err(|e| format!("from {from}: {e}"))?;
    }
}
