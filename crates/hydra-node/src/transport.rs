//! Internode transport: persistent TCP connections carrying length-prefixed frames.
//!
//! ```text
//! connect ─> hello: "HYDRA\0v1" (8 bytes) ‖ sender node id (u64 BE)
//!         ─> frame: length (u32 BE) ‖ encoded Envelope (hydra-core's versioned format)
//!         ─> frame ...
//! ```
//!
//! One outbound connection per peer, owned by a task with a bounded queue of batches (the
//! core thread hands over, per peer, every frame one pass over its queue produced, already
//! length-prefixed: one hand-off and one write for many frames); it reconnects with
//! exponential backoff (100 ms to 1 s) and writes every queued batch before it flushes. Requests are not paired with connections:
//! any number are in flight, matched by request id in the core. A frame that cannot be queued
//! or written is dropped; the core's deadline turns that into a timeout. Inbound connections
//! are read by one task each; frames larger than the message limit, a bad hello or an
//! undecodable frame close the connection. TCP_NODELAY is set on every socket.

use crate::driver::CoreHandle;
use crate::metrics::Metrics;
use hydra_core::ids::NodeId;
use hydra_core::limits::MESSAGE_BYTES_MAX;
use hydra_core::message::decode_envelope;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const HELLO: &[u8; 8] = b"HYDRA\0v1";
const BACKOFF_MIN_MS: u64 = 100;
const BACKOFF_MAX_MS: u64 = 1_000;

/// Appends one frame (length prefix, then the encoded envelope) to a batch.
pub fn push_frame(batch: &mut Vec<u8>, frame: &[u8]) {
    batch.extend_from_slice(&(frame.len() as u32).to_be_bytes());
    batch.extend_from_slice(frame);
}

/// Queues of frame batches to the peers.
pub struct Transport {
    me: NodeId,
    peers: BTreeMap<NodeId, mpsc::Sender<Vec<u8>>>,
}

impl Transport {
    /// Starts one connection task per peer on the current tokio runtime.
    pub fn start(
        me: NodeId,
        peers: &[(NodeId, String)],
        queue_frames_max: usize,
        metrics: Arc<Metrics>,
    ) -> Arc<Transport> {
        let mut queues = BTreeMap::new();
        for (id, addr) in peers {
            let (tx, rx) = mpsc::channel(queue_frames_max);
            queues.insert(*id, tx);
            tokio::spawn(peer_task(me, *id, addr.clone(), rx, metrics.clone()));
        }
        Arc::new(Transport { me, peers: queues })
    }

    /// Queues a batch of frames (built with [`push_frame`]) for a peer; false if it was
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
    me: NodeId,
    peer: NodeId,
    addr: String,
    mut rx: mpsc::Receiver<Vec<u8>>,
    metrics: Arc<Metrics>,
) {
    let mut backoff = BACKOFF_MIN_MS;
    loop {
        let stream = match TcpStream::connect(&addr).await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!("connecting to {peer} at {addr}: {e}");
                // Frames queued for an unreachable peer would only be stale when it returns.
                while let Ok(_dropped) = rx.try_recv() {
                    metrics.frames_dropped.inc();
                }
                tokio::time::sleep(Duration::from_millis(backoff)).await;
                backoff = (backoff * 2).min(BACKOFF_MAX_MS);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let mut out = BufWriter::with_capacity(64 * 1024, stream);
        let mut hello = HELLO.to_vec();
        hello.extend_from_slice(&me.0.to_be_bytes());
        if out.write_all(&hello).await.is_err() || out.flush().await.is_err() {
            continue;
        }
        backoff = BACKOFF_MIN_MS;
        tracing::info!("connected to {peer} at {addr}");
        loop {
            let Some(batch) = rx.recv().await else { return };
            if out.write_all(&batch).await.is_err() {
                metrics.frames_dropped.inc();
                break;
            }
            // Coalesce whatever else is queued into the same flush.
            let mut failed = false;
            while let Ok(batch) = rx.try_recv() {
                if out.write_all(&batch).await.is_err() {
                    failed = true;
                    break;
                }
            }
            if failed || out.flush().await.is_err() {
                metrics.frames_dropped.inc();
                break;
            }
        }
        tracing::info!("connection to {peer} lost; reconnecting");
    }
}

/// Accepts peers' connections and hands their frames to the core.
pub async fn serve(
    listener: TcpListener,
    known: Vec<NodeId>,
    core: CoreHandle,
    metrics: Arc<Metrics>,
) {
    loop {
        let Ok((stream, remote)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (known, core, metrics) = (known.clone(), core.clone(), metrics.clone());
        tokio::spawn(async move {
            if let Err(e) = read_peer(stream, &known, &core, &metrics).await {
                tracing::info!("internode connection from {remote} closed: {e}");
            }
        });
    }
}

async fn read_peer(
    mut stream: TcpStream,
    known: &[NodeId],
    core: &CoreHandle,
    metrics: &Metrics,
) -> Result<(), String> {
    let mut hello = [0u8; 16];
    stream
        .read_exact(&mut hello)
        .await
        .map_err(|e| e.to_string())?;
    if &hello[..8] != HELLO {
        return Err("bad hello: not a Hydra peer or another protocol version".into());
    }
    let from = NodeId(u64::from_be_bytes(
        hello[8..].try_into().map_err(|_| "bad hello")?,
    ));
    if !known.contains(&from) {
        return Err(format!("node {from} is not in this node's layout"));
    }
    let mut stream = tokio::io::BufReader::with_capacity(64 * 1024, stream);
    loop {
        let len = stream.read_u32().await.map_err(|e| e.to_string())? as usize;
        if len > MESSAGE_BYTES_MAX {
            return Err(format!(
                "frame of {len} bytes from {from}, more than the limit of {MESSAGE_BYTES_MAX}"
            ));
        }
        let mut frame = vec![0u8; len];
        stream
            .read_exact(&mut frame)
            .await
            .map_err(|e| e.to_string())?;
        let envelope = decode_envelope(&frame).map_err(|e| format!("from {from}: {e}"))?;
        if !core.deliver(from, envelope) {
            metrics.frames_dropped.inc();
        }
    }
}
