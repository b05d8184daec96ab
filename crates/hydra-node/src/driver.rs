//! The core thread: owns the `hydra-core` [`Node`] and the store, and drives them.
//!
//! ```text
//!  HTTP handlers ──CoreEvent::Client──┐
//!  transport readers ─CoreEvent::Message┤  bounded queue   ┌── core thread ──────────────┐
//!  sync thread ──CoreEvent::Synced────┘ ───────────────▶  │ node.handle(ctx, input)      │
//!                                                          │ outputs: Send -> transport   │
//!                                                          │          Reply -> oneshot    │
//!                                                          │          Sync -> sync thread │
//!                                                          └──────────────────────────────┘
//! ```
//!
//! Storage calls are synchronous inside `handle`, so the core runs on its own OS thread and
//! never blocks the async reactor. Fsyncs run on a second thread that takes every pending sync
//! request at once (group commit): while one fsync runs, new writes queue up and share the next.

use crate::metrics::Metrics;
use crate::transport::Transport;
use hydra_core::bucket::BucketProps;
use hydra_core::ids::{ClientRequestId, NodeId, Timestamp};
use hydra_core::key::BucketName;
use hydra_core::message::{
    ClientError, ClientRequest, ClientResponse, Envelope, ErrorCode, encode_envelope,
};
use hydra_core::node::{Ctx, Input, Node, NodeStatus, Output};
use hydra_core::store::StoreError;
use hydra_store::{Durability, FjallStore, Syncer};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::oneshot;

pub type Reply = Result<ClientResponse, ClientError>;

/// What the core thread is asked to do.
pub enum CoreEvent {
    Client {
        request: ClientRequest,
        reply: oneshot::Sender<Reply>,
    },
    Message {
        from: NodeId,
        envelope: Envelope,
    },
    Synced {
        generation: u64,
        result: Result<(), StoreError>,
    },
    Status {
        reply: oneshot::Sender<(NodeStatus, BTreeMap<BucketName, BucketProps>)>,
    },
    Shutdown,
}

/// The sending side of the core thread's queue; cheap to clone.
#[derive(Clone)]
pub struct CoreHandle {
    tx: SyncSender<CoreEvent>,
}

impl CoreHandle {
    /// Hands a client request to the core and waits for its reply.
    pub async fn request(&self, request: ClientRequest) -> Reply {
        let (reply, rx) = oneshot::channel();
        match self.tx.try_send(CoreEvent::Client { request, reply }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(ClientError::new(
                    ErrorCode::Overloaded,
                    "the node's request queue is full; retry later",
                ));
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(ClientError::new(
                    ErrorCode::StoreFailed,
                    "the node is shutting down",
                ));
            }
        }
        rx.await.unwrap_or_else(|_| {
            Err(ClientError::new(
                ErrorCode::StoreFailed,
                "the node stopped before answering",
            ))
        })
    }

    /// Delivers an internode message; drops it when the queue is full (the sender's request
    /// then times out, as if the network had lost it). Returns whether it was queued.
    pub fn deliver(&self, from: NodeId, envelope: Envelope) -> bool {
        self.tx
            .try_send(CoreEvent::Message { from, envelope })
            .is_ok()
    }

    pub async fn status(&self) -> Option<(NodeStatus, BTreeMap<BucketName, BucketProps>)> {
        let (reply, rx) = oneshot::channel();
        self.tx.try_send(CoreEvent::Status { reply }).ok()?;
        rx.await.ok()
    }

    pub fn shutdown(&self) {
        let _ = self.tx.send(CoreEvent::Shutdown);
    }
}

/// Wall-clock milliseconds: the only clock the node reads; the core gets it as `Ctx::now`.
pub fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Starts the core thread and, for `fsync` durability, the sync thread.
pub fn start(
    node: Node,
    store: FjallStore,
    durability: Durability,
    transport: Arc<Transport>,
    metrics: Arc<Metrics>,
    queue_max: usize,
) -> std::io::Result<(CoreHandle, std::thread::JoinHandle<()>)> {
    let (tx, rx) = std::sync::mpsc::sync_channel(queue_max);
    let handle = CoreHandle { tx: tx.clone() };
    let sync_tx = match durability {
        Durability::Fsync => {
            let (stx, srx) = std::sync::mpsc::channel::<u64>();
            let syncer = store.syncer();
            let core = tx.clone();
            std::thread::Builder::new()
                .name("hydra-sync".into())
                .spawn(move || sync_loop(syncer, srx, core))?;
            Some(stx)
        }
        Durability::Periodic { interval_ms } => {
            let syncer = store.syncer();
            std::thread::Builder::new()
                .name("hydra-periodic-sync".into())
                .spawn(move || {
                    while syncer.sync().is_ok() {
                        std::thread::sleep(Duration::from_millis(interval_ms));
                    }
                    tracing::error!(
                        "periodic fsync failed; the store is poisoned and refuses writes"
                    );
                })?;
            None
        }
        Durability::None => None,
    };
    let join = std::thread::Builder::new()
        .name("hydra-core".into())
        .spawn(move || {
            let mut driver = Driver {
                node,
                store,
                transport,
                metrics,
                sync_tx,
                pending: BTreeMap::new(),
                next_id: 0,
                rng: ChaCha8Rng::seed_from_u64(seed()),
            };
            driver.run(rx);
        })?;
    Ok((handle, join))
}

/// A seed that differs between processes and restarts (request ids must not repeat).
fn seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ ((std::process::id() as u64) << 32)
}

fn sync_loop(syncer: Syncer, rx: Receiver<u64>, core: SyncSender<CoreEvent>) {
    while let Ok(first) = rx.recv() {
        // Everything requested so far shares this fsync.
        let generation = rx.try_iter().fold(first, u64::max);
        let result = syncer.sync();
        if let Err(e) = &result {
            tracing::error!("fsync failed: {e}");
        }
        if core.send(CoreEvent::Synced { generation, result }).is_err() {
            return;
        }
    }
}

struct Driver {
    node: Node,
    store: FjallStore,
    transport: Arc<Transport>,
    metrics: Arc<Metrics>,
    /// `None` when acks need no fsync (`periodic`, `none`).
    sync_tx: Option<std::sync::mpsc::Sender<u64>>,
    /// Client requests in flight -> where their reply goes (bounded by the core's own limit
    /// on coordinations, which answers `Overloaded` beyond it).
    pending: BTreeMap<ClientRequestId, oneshot::Sender<Reply>>,
    next_id: u64,
    rng: ChaCha8Rng,
}

impl Driver {
    fn run(&mut self, rx: Receiver<CoreEvent>) {
        // Start gossip and load what the store holds.
        self.handle(Input::Tick);
        loop {
            let wait = match self.node.next_deadline() {
                Some(Timestamp(t)) => Duration::from_millis(t.saturating_sub(wall_ms())),
                None => Duration::from_secs(3600),
            };
            let event = match rx.recv_timeout(wait) {
                Ok(e) => e,
                Err(RecvTimeoutError::Timeout) => {
                    self.handle(Input::Tick);
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let input = match event {
                CoreEvent::Client { request, reply } => {
                    self.next_id += 1;
                    let id = ClientRequestId(self.next_id);
                    self.pending.insert(id, reply);
                    Input::Client { id, request }
                }
                CoreEvent::Message { from, envelope } => Input::Message { from, envelope },
                CoreEvent::Synced { generation, result } => Input::Synced { generation, result },
                CoreEvent::Status { reply } => {
                    let _ =
                        reply.send((self.node.status(Timestamp(wall_ms())), self.node.buckets()));
                    continue;
                }
                CoreEvent::Shutdown => {
                    if let Err(e) = self.store.syncer().sync() {
                        tracing::error!("final fsync failed: {e}");
                    }
                    return;
                }
            };
            self.handle(input);
        }
    }

    fn handle(&mut self, input: Input) {
        let mut inputs = vec![input];
        while let Some(input) = inputs.pop() {
            let mut ctx = Ctx {
                now: Timestamp(wall_ms()),
                store: &mut self.store,
                rng: &mut self.rng,
            };
            self.node.handle(&mut ctx, input);
            while let Some(output) = self.node.poll_output() {
                match output {
                    Output::Send { to, envelope } => {
                        if !self.transport.send(to, encode_envelope(&envelope)) {
                            self.metrics.frames_dropped.inc();
                        }
                    }
                    Output::Reply { id, result } => {
                        if let Some(tx) = self.pending.remove(&id) {
                            let _ = tx.send(result);
                        }
                    }
                    Output::HintBudgetFull { owner, partition } => tracing::warn!(
                        "hints for {owner} exceed the budget (limits.hints_bytes_max); partition {} is left to anti-entropy",
                        partition.0
                    ),
                    Output::Sync { generation } => match &self.sync_tx {
                        Some(tx) => {
                            let _ = tx.send(generation);
                        }
                        // Acks need no fsync in this durability mode.
                        None => inputs.push(Input::Synced {
                            generation,
                            result: Ok(()),
                        }),
                    },
                }
            }
        }
    }
}
