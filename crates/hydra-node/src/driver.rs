//! The core thread: owns the `hydra-core` [`Node`] and the store, and drives them.
//!
//! ```text
//!  HTTP and RESP handlers ─CoreEvent::Client─┐
//!  transport readers ──CoreEvent::Message────┤ bounded queue  ┌── core thread ─────────────┐
//!                                            └─────────────▶  │ node.handle(ctx, input)     │
//!                                                             │ outputs: Send -> transport  │
//!                                                             │          Reply -> oneshot   │
//!                                                             │          Sync -> group fsync│
//!                                                             └─────────────────────────────┘
//! ```
//!
//! Storage calls are synchronous inside `handle`, so the core runs on its own OS thread and
//! never blocks the async reactor. Group commit: a requested sync waits while the queue still
//! holds events (their writes join the group, up to [`SYNC_BATCH_EVENTS_MAX`]), then one
//! fsync on the core thread serves them all. Profiling showed the former separate sync
//! thread cost two thread hand-offs per group, more than the fsync itself on this disk.

use crate::metrics::Metrics;
pub use crate::shards::CoreHandle;
use crate::transport::Transport;
use hydra_core::bucket::BucketProps;
use hydra_core::ids::{ClientRequestId, NodeId, Timestamp};
use hydra_core::key::BucketName;
use hydra_core::message::{
    BucketEntry, ClientError, ClientRequest, ClientResponse, Envelope, ErrorCode,
};
use hydra_core::node::{Ctx, Input, Node, NodeStatus, Output, ReceiptDetail};
use hydra_store::{Durability, FjallStore};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rustc_hash::FxHashMap;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{Notify, oneshot};

pub type Reply = Result<ClientResponse, ClientError>;

/// What the core thread is asked to do.
pub enum CoreEvent {
    Client {
        request: ClientRequest,
        reply: oneshot::Sender<Reply>,
    },
    /// Several client requests (a connection's pipeline), handled one after another in
    /// one turn of the core; their replies come back together, in order.
    Batch {
        requests: Vec<ClientRequest>,
        reply: oneshot::Sender<Vec<Reply>>,
    },
    Message {
        from: NodeId,
        envelope: Envelope,
    },
    Status {
        reply: oneshot::Sender<(NodeStatus, BTreeMap<BucketName, BucketProps>)>,
    },
    /// The bucket table with its stamps (for the node's other shards to adopt).
    BucketEntries {
        reply: oneshot::Sender<Vec<BucketEntry>>,
    },
    /// Join another shard's bucket table ([`Input::AdoptBuckets`]).
    AdoptBuckets {
        entries: Vec<BucketEntry>,
        reply: oneshot::Sender<()>,
    },
    /// Pause or resume hinted handoff (`POST /v1/admin/handoff`).
    SetHandoff {
        enabled: bool,
        reply: oneshot::Sender<()>,
    },
    /// Pause or resume the anti-entropy exchanges it starts (`POST /v1/admin/anti-entropy`).
    SetAntiEntropy {
        enabled: bool,
        reply: oneshot::Sender<()>,
    },
    Shutdown,
    /// Internode messages wait in the peer lane ([`ShardHandle::deliver`]).
    Wake,
}

/// Internode messages, taken before anything else: a flood of client requests never delays
/// a peer's heartbeat or ack behind it (a node under load stays "up" to its peers).
struct PeerLane {
    queue: crossbeam_queue::ArrayQueue<(NodeId, Envelope)>,
    /// A `Wake` is in the client queue (or the core is awake and will look).
    wake_sent: AtomicBool,
    /// Rung after every event queued when the core is a task (`node.single_thread`).
    bell: Option<Arc<Notify>>,
    /// Set by [`ShardHandle::shutdown`]: the core syncs and stops at its next turn.
    stop: AtomicBool,
}

/// The sending side of one shard's core queues; cheap to clone. The fronts and the
/// transport use a [`CoreHandle`], which routes to the shards.
#[derive(Clone)]
pub struct ShardHandle {
    tx: SyncSender<CoreEvent>,
    peers: Arc<PeerLane>,
}

impl ShardHandle {
    /// A handle whose events land in the returned receiver (tests count what reaches the
    /// core).
    #[cfg(test)]
    pub(crate) fn probe() -> (ShardHandle, Receiver<CoreEvent>) {
        let (tx, rx) = std::sync::mpsc::sync_channel(4096);
        (ShardHandle::new(tx, 16), rx)
    }

    #[cfg(test)]
    fn new(tx: SyncSender<CoreEvent>, peer_queue_max: usize) -> ShardHandle {
        ShardHandle::with_bell(tx, peer_queue_max, None)
    }

    fn with_bell(
        tx: SyncSender<CoreEvent>,
        peer_queue_max: usize,
        bell: Option<Arc<Notify>>,
    ) -> ShardHandle {
        ShardHandle {
            tx,
            peers: Arc::new(PeerLane {
                queue: crossbeam_queue::ArrayQueue::new(peer_queue_max.max(1)),
                wake_sent: AtomicBool::new(false),
                bell,
                stop: AtomicBool::new(false),
            }),
        }
    }

    /// Queues an event for the core (ringing its bell if it is a task).
    fn send(&self, event: CoreEvent) -> Result<(), ClientError> {
        self.tx.try_send(event).map_err(|e| refusal(&e))?;
        if let Some(bell) = &self.peers.bell {
            bell.notify_one();
        }
        Ok(())
    }

    /// A handle whose core is gone: every request fails as overloaded (for unit tests of
    /// the front ends).
    #[cfg(test)]
    pub(crate) fn detached() -> ShardHandle {
        let (tx, _) = std::sync::mpsc::sync_channel(1);
        ShardHandle::new(tx, 1)
    }

    /// Hands a client request to the core and waits for its reply.
    pub async fn request(&self, request: ClientRequest) -> Reply {
        let (reply, rx) = oneshot::channel();
        self.send(CoreEvent::Client { request, reply })?;
        rx.await.unwrap_or_else(|_| Err(stopped()))
    }

    /// Hands several client requests to the core as one event and waits for all their
    /// replies, in order: one queue slot, one wakeup and one reply channel for the lot. The
    /// others ask for brief receipts ([`ReceiptDetail`]), the last for a full one; an
    /// error's, a compare-and-set's and a forwarded write's are full whatever was asked.
    pub async fn request_batch(&self, requests: Vec<ClientRequest>) -> Vec<Reply> {
        let n = requests.len();
        let (reply, rx) = oneshot::channel();
        if let Err(e) = self.send(CoreEvent::Batch { requests, reply }) {
            return vec![Err(e); n];
        }
        rx.await.unwrap_or_else(|_| vec![Err(stopped()); n])
    }

    /// Delivers an internode message; drops it when the queue is full (the sender's request
    /// then times out, as if the network had lost it). Returns whether it was queued.
    pub fn deliver(&self, from: NodeId, envelope: Envelope) -> bool {
        if self.peers.queue.push((from, envelope)).is_err() {
            return false;
        }
        // Ring once; the core clears the flag before it blocks, and looks at the lane first
        // on every turn, so a full client queue (the bell not rung) delays nothing.
        if !self.peers.wake_sent.swap(true, AtomicOrdering::SeqCst) {
            let _ = self.send(CoreEvent::Wake);
        }
        true
    }

    /// Sends the event `event` makes of a reply channel and waits for the reply; `None` if
    /// the core did not take the event or did not answer.
    async fn ask<T>(&self, event: impl FnOnce(oneshot::Sender<T>) -> CoreEvent) -> Option<T> {
        let (reply, rx) = oneshot::channel();
        self.send(event(reply)).ok()?;
        rx.await.ok()
    }

    pub async fn status(&self) -> Option<(NodeStatus, BTreeMap<BucketName, BucketProps>)> {
        self.ask(|reply| CoreEvent::Status { reply }).await
    }

    /// The core's bucket table with its stamps; `None` if the core did not answer.
    pub async fn bucket_entries(&self) -> Option<Vec<BucketEntry>> {
        self.ask(|reply| CoreEvent::BucketEntries { reply }).await
    }

    /// Has the core join another shard's bucket table; `None` if it did not answer.
    pub async fn adopt_buckets(&self, entries: Vec<BucketEntry>) -> Option<()> {
        self.ask(|reply| CoreEvent::AdoptBuckets { entries, reply })
            .await
    }

    /// Pauses or resumes this node's hinted handoff; `None` if the core did not answer.
    pub async fn set_handoff(&self, enabled: bool) -> Option<()> {
        self.ask(|reply| CoreEvent::SetHandoff { enabled, reply })
            .await
    }

    /// Pauses or resumes this node's anti-entropy; `None` if the core did not answer.
    pub async fn set_anti_entropy(&self, enabled: bool) -> Option<()> {
        self.ask(|reply| CoreEvent::SetAntiEntropy { enabled, reply })
            .await
    }

    pub fn shutdown(&self) {
        self.peers.stop.store(true, AtomicOrdering::SeqCst);
        // A full queue is no matter: the core looks at the flag at its next turn.
        let _ = self.send(CoreEvent::Shutdown);
    }
}

/// Why the core's queue refused a request.
fn refusal<T>(e: &TrySendError<T>) -> ClientError {
    match e {
        TrySendError::Full(_) => ClientError::new(
            ErrorCode::Overloaded,
            "the node's request queue is full; retry later",
        ),
        TrySendError::Disconnected(_) => {
            ClientError::new(ErrorCode::StoreFailed, "the node is shutting down")
        }
    }
}

/// The core went away with a request unanswered.
fn stopped() -> ClientError {
    ClientError::new(ErrorCode::StoreFailed, "the node stopped before answering")
}

/// Wall-clock milliseconds: the only clock the node reads; the core gets it as `Ctx::now`.
pub fn wall_ms() -> u64 {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    ms.saturating_add_signed(CLOCK_OFFSET_MS.load(std::sync::atomic::Ordering::Relaxed))
}

/// Milliseconds since this process first asked: a clock that never jumps (`Ctx::mono`).
pub fn mono_ms() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64
}

/// Test-only shift of this process's wall clock (`node.clock_offset_ms`), so fault tests can
/// give nodes skewed clocks on one machine, where the real clock cannot differ per process.
static CLOCK_OFFSET_MS: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// Sets the test-only clock offset (see [`wall_ms`]).
pub fn set_clock_offset_ms(offset: i64) {
    CLOCK_OFFSET_MS.store(offset, std::sync::atomic::Ordering::Relaxed);
}

/// Test-only: takes the clock offset from `path` now (so the core starts with it), then
/// re-reads it every 100 ms on a thread of its own; a missing or empty file means 0. Write it
/// by rename, so no read sees half a number.
pub fn follow_clock_offset_file(path: std::path::PathBuf) -> anyhow::Result<()> {
    fn read(path: &std::path::Path) -> anyhow::Result<i64> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e.into()),
        };
        let text = text.trim();
        if text.is_empty() {
            return Ok(0);
        }
        text.parse().map_err(|e| {
            anyhow::anyhow!(
                "{}: {e}: expected milliseconds (node.clock_offset_file)",
                path.display()
            )
        })
    }
    let first = read(&path)?;
    set_clock_offset_ms(first);
    tracing::warn!(
        "node clock follows {} (node.clock_offset_file, for fault tests only), now {first:+} ms",
        path.display()
    );
    std::thread::Builder::new()
        .name("hydra-clock-offset".into())
        .spawn(move || {
            let mut last = first;
            loop {
                std::thread::sleep(std::time::Duration::from_millis(100));
                // An unreadable file keeps the last offset (the start checked the path).
                if let Ok(offset) = read(&path)
                    && offset != last
                {
                    tracing::warn!("node clock offset {last:+} ms -> {offset:+} ms (test-only)");
                    set_clock_offset_ms(offset);
                    last = offset;
                }
            }
        })?;
    Ok(())
}

/// The running core: a thread of its own, or a task of the node's single-threaded runtime.
pub enum CoreJoin {
    Thread(std::thread::JoinHandle<()>),
    Task(tokio::task::JoinHandle<()>),
}

impl CoreJoin {
    /// Waits until the core has stopped (after [`ShardHandle::shutdown`]).
    pub async fn wait(self) {
        match self {
            CoreJoin::Thread(join) => {
                let _ = tokio::task::spawn_blocking(move || join.join()).await;
            }
            CoreJoin::Task(join) => {
                let _ = join.await;
            }
        }
    }
}

/// Starts the core (which also runs group-commit fsyncs for `fsync` durability) and, for
/// `periodic` durability, the thread that syncs every interval. `single_thread`: the core is
/// a task of the calling runtime, which must be single-threaded (its storage calls block the
/// thread, as they block the core thread otherwise); else a thread of its own, named
/// `thread_name`.
#[allow(clippy::too_many_arguments)]
pub fn start(
    thread_name: String,
    node: Node,
    store: FjallStore,
    durability: Durability,
    transport: Arc<Transport>,
    metrics: Arc<Metrics>,
    queue_max: usize,
    peer_queue_max: usize,
    single_thread: bool,
) -> std::io::Result<(ShardHandle, CoreJoin)> {
    let (tx, rx) = std::sync::mpsc::sync_channel(queue_max);
    let fsync = match durability {
        Durability::Fsync => true,
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
            false
        }
        Durability::None => false,
    };
    let bell = single_thread.then(|| Arc::new(Notify::new()));
    let handle = ShardHandle::with_bell(tx, peer_queue_max, bell.clone());
    let peers = handle.peers.clone();
    if single_thread
        && !tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread)
    {
        return Err(std::io::Error::other(
            "node.single_thread needs the core started on a current-thread runtime",
        ));
    }
    let background = bell.clone();
    let driver = move || Driver {
        node,
        store,
        transport,
        metrics,
        fsync,
        sync_wanted: None,
        events_since_sync: 0,
        outbox: BTreeMap::new(),
        events_since_flush: 0,
        pending: FxHashMap::default(),
        batches: BTreeMap::new(),
        next_batch: 0,
        next_id: 0,
        rng: ChaCha8Rng::seed_from_u64(seed()),
        background: background.map(|bell| BackgroundSync {
            bell,
            done: Arc::default(),
            in_flight: false,
        }),
    };
    let join = match bell {
        Some(bell) => CoreJoin::Task(tokio::spawn(async move {
            #[cfg(feature = "planted-bugs")]
            plant_bugs_from_env();
            driver().run_shared(rx, &peers, &bell).await;
        })),
        None => CoreJoin::Thread(std::thread::Builder::new().name(thread_name).spawn(
            move || {
                #[cfg(feature = "planted-bugs")]
                plant_bugs_from_env();
                driver().run(rx, &peers);
            },
        )?),
    };
    Ok((handle, join))
}

/// Test builds only: switches on the planted bugs named in `HYDRA_PLANTED_BUGS` (comma list
/// of `hydra_core::bugs::PlantedBugs` fields) for the core thread.
#[cfg(feature = "planted-bugs")]
fn plant_bugs_from_env() {
    let Ok(list) = std::env::var("HYDRA_PLANTED_BUGS") else {
        return;
    };
    let mut bugs = hydra_core::bugs::PlantedBugs::default();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if !bugs.switch_on(name) {
            tracing::error!("HYDRA_PLANTED_BUGS: unknown bug {name:?}");
        }
    }
    tracing::warn!("planted bugs switched on (test build): {bugs:?}");
    hydra_core::bugs::set_planted(bugs);
}

/// A seed that differs between processes and restarts (request ids must not repeat).
fn seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ ((std::process::id() as u64) << 32)
}

/// Events the core handles at most between a sync being requested and the fsync that
/// serves it (so a steady stream of requests cannot postpone acks without bound).
const SYNC_BATCH_EVENTS_MAX: u32 = 256;
/// Events the core handles at most before the frames they produced go to the transport.
const OUTBOX_EVENTS_MAX: u32 = 64;
/// Bytes of frames held for one peer before they go to the transport regardless.
const OUTBOX_BYTES_MAX: usize = 256 * 1024;

/// What the core does next (moved once per event, as the event itself is).
#[allow(clippy::large_enum_variant)]
enum Next {
    Event(CoreEvent),
    /// Nothing queued: wait at most this long (the next timer).
    Wait(Duration),
    /// Every sender is gone.
    Stop,
}

/// Where a client request's reply goes.
enum Waiting {
    One(oneshot::Sender<Reply>),
    /// Place `index` of batch `batch`.
    Part {
        batch: u64,
        index: usize,
    },
}

/// A batch's replies so far.
struct BatchReplies {
    replies: Vec<Option<Reply>>,
    left: usize,
    reply: oneshot::Sender<Vec<Reply>>,
}

struct Driver {
    node: Node,
    store: FjallStore,
    transport: Arc<Transport>,
    metrics: Arc<Metrics>,
    /// Whether acks wait for an fsync (`fsync` durability); otherwise a sync request is
    /// answered at once (`periodic`, `none`).
    fsync: bool,
    /// The highest sync generation requested and not yet served.
    sync_wanted: Option<u64>,
    events_since_sync: u32,
    /// Frames for each peer produced since the last hand-off to the transport.
    outbox: BTreeMap<NodeId, Vec<u8>>,
    events_since_flush: u32,
    /// Client requests in flight -> where their reply goes (bounded by the core's own limit
    /// on coordinations, which answers `Overloaded` beyond it). A hash map: a B-tree's insert
    /// and removal were 3.5% of the core thread at pipelined GETs.
    pending: FxHashMap<ClientRequestId, Waiting>,
    /// Batches with replies still to come, by number.
    batches: BTreeMap<u64, BatchReplies>,
    next_batch: u64,
    next_id: u64,
    rng: ChaCha8Rng,
    /// Set when the core is a task (`node.single_thread`): its fsyncs run on the blocking
    /// pool, so the one thread goes on serving while the disk syncs.
    background: Option<BackgroundSync>,
}

/// A finished fsync: the generation it covers, and its outcome.
type SyncDone = (u64, Result<(), hydra_core::store::StoreError>);

/// A group commit's fsync off the node's one thread: at most one at a time; its end rings
/// the core's bell.
struct BackgroundSync {
    bell: Arc<Notify>,
    done: Arc<std::sync::Mutex<Option<SyncDone>>>,
    in_flight: bool,
}

impl Driver {
    /// The core thread's loop: blocks on the queue when it runs dry.
    fn run(&mut self, rx: Receiver<CoreEvent>, peers: &PeerLane) {
        // Start gossip and load what the store holds.
        self.handle(Input::Tick);
        loop {
            let event = match self.next(&rx, peers) {
                Next::Event(e) => e,
                Next::Wait(wait) => match rx.recv_timeout(wait) {
                    Ok(e) => e,
                    Err(RecvTimeoutError::Timeout) => {
                        self.handle(Input::Tick);
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => return,
                },
                Next::Stop => return,
            };
            if !self.dispatch(event) {
                return;
            }
        }
    }

    /// The same loop as a task of a single-threaded runtime that also runs the node's
    /// connections (`node.single_thread`): when the queue runs dry it awaits the bell its
    /// senders ring, so a request reaches the core and its reply the connection without a
    /// thread switch.
    async fn run_shared(&mut self, rx: Receiver<CoreEvent>, peers: &PeerLane, bell: &Notify) {
        self.handle(Input::Tick);
        // One timer, re-armed at every wait (not one registered and dropped per wait).
        let timer = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(timer);
        loop {
            let event = match self.next(&rx, peers) {
                Next::Event(e) => e,
                Next::Wait(wait) => {
                    timer.as_mut().reset(tokio::time::Instant::now() + wait);
                    tokio::select! {
                        _ = bell.notified() => {}
                        _ = &mut timer => self.handle(Input::Tick),
                    }
                    continue;
                }
                Next::Stop => return,
            };
            if !self.dispatch(event) {
                return;
            }
        }
    }

    /// Takes the next event without blocking. When the queue runs dry, hands the frames
    /// produced so far to the transport, then (group commit) fsyncs once for every write
    /// made while a sync was wanted, and only then says how long to wait for the next event.
    /// The core thread fsyncs here itself (no hand-off to another thread and back); a core
    /// that is a task starts the fsync on the blocking pool and takes its end here.
    fn next(&mut self, rx: &Receiver<CoreEvent>, peers: &PeerLane) -> Next {
        loop {
            if peers.stop.load(AtomicOrdering::SeqCst) {
                self.final_sync();
                return Next::Stop;
            }
            self.end_background_sync();
            if self.events_since_flush >= OUTBOX_EVENTS_MAX {
                self.flush_outbox();
            }
            let syncing = self.syncing();
            if self.sync_wanted.is_some()
                && !syncing
                && self.events_since_sync >= SYNC_BATCH_EVENTS_MAX
            {
                self.group_commit();
            }
            // The peer lane first: internode traffic never waits behind client requests.
            if let Some((from, envelope)) = peers.queue.pop() {
                return Next::Event(CoreEvent::Message { from, envelope });
            }
            match rx.try_recv() {
                Ok(e) => return Next::Event(e),
                Err(TryRecvError::Disconnected) => return Next::Stop,
                Err(TryRecvError::Empty) => {}
            }
            if self.sync_wanted.is_some() && !syncing {
                self.group_commit();
                continue;
            }
            self.flush_outbox();
            // About to wait: a message delivered from now on rings again.
            peers.wake_sent.store(false, AtomicOrdering::SeqCst);
            if !peers.queue.is_empty() {
                continue;
            }
            return Next::Wait(match self.node.next_deadline() {
                Some(Timestamp(t)) => Duration::from_millis(t.saturating_sub(wall_ms())),
                None => Duration::from_secs(3600),
            });
        }
    }

    /// The fsync at shutdown: whatever was written is on disk when the node exits.
    fn final_sync(&mut self) {
        if let Err(e) = self.store.syncer().sync() {
            tracing::error!("final fsync failed: {e}");
        }
    }

    /// Handles one event; false when the core is to stop.
    fn dispatch(&mut self, event: CoreEvent) -> bool {
        self.events_since_flush = self.events_since_flush.saturating_add(1);
        self.events_since_sync = self.events_since_sync.saturating_add(1);
        let input = match event {
            CoreEvent::Client { request, reply } => {
                self.next_id += 1;
                let id = ClientRequestId(self.next_id);
                self.pending.insert(id, Waiting::One(reply));
                Input::Client {
                    id,
                    request,
                    receipt: ReceiptDetail::Full,
                }
            }
            CoreEvent::Batch { requests, reply } => {
                self.start_batch(requests, reply);
                return true;
            }
            CoreEvent::Message { from, envelope } => Input::Message { from, envelope },
            CoreEvent::Status { reply } => {
                let _ = reply.send((self.node.status(Timestamp(wall_ms())), self.node.buckets()));
                return true;
            }
            CoreEvent::BucketEntries { reply } => {
                let _ = reply.send(self.node.bucket_entries());
                return true;
            }
            CoreEvent::AdoptBuckets { entries, reply } => {
                self.handle(Input::AdoptBuckets(entries));
                let _ = reply.send(());
                return true;
            }
            CoreEvent::SetHandoff { enabled, reply } => {
                self.node.set_handoff(enabled);
                let _ = reply.send(());
                return true;
            }
            CoreEvent::SetAntiEntropy { enabled, reply } => {
                self.node.set_anti_entropy(enabled);
                let _ = reply.send(());
                return true;
            }
            CoreEvent::Wake => return true,
            CoreEvent::Shutdown => {
                self.final_sync();
                return false;
            }
        };
        self.handle(input);
        true
    }

    /// Starts each request of a batch in turn (their frames and syncs group as one turn's).
    fn start_batch(&mut self, requests: Vec<ClientRequest>, reply: oneshot::Sender<Vec<Reply>>) {
        if requests.is_empty() {
            let _ = reply.send(Vec::new());
            return;
        }
        let n = requests.len() as u32;
        self.events_since_flush = self.events_since_flush.saturating_add(n - 1);
        self.events_since_sync = self.events_since_sync.saturating_add(n - 1);
        self.next_batch += 1;
        let batch = self.next_batch;
        self.batches.insert(
            batch,
            BatchReplies {
                replies: (0..requests.len()).map(|_| None).collect(),
                left: requests.len(),
                reply,
            },
        );
        let (now, mono) = (Timestamp(wall_ms()), Timestamp(mono_ms()));
        let last = requests.len() - 1;
        for (index, request) in requests.into_iter().enumerate() {
            self.next_id += 1;
            let id = ClientRequestId(self.next_id);
            self.pending.insert(id, Waiting::Part { batch, index });
            // Only the last request's receipt is anyone's "last receipt" (see
            // `ShardHandle::request_batch`).
            let receipt = if index == last {
                ReceiptDetail::Full
            } else {
                ReceiptDetail::Brief
            };
            let input = Input::Client {
                id,
                request,
                receipt,
            };
            self.handle_at(input, now, mono);
        }
    }

    /// Sends a client request's reply where it waits.
    fn reply(&mut self, id: ClientRequestId, result: Reply) {
        match self.pending.remove(&id) {
            Some(Waiting::One(tx)) => {
                let _ = tx.send(result);
            }
            Some(Waiting::Part { batch, index }) => {
                let Some(b) = self.batches.get_mut(&batch) else {
                    return;
                };
                b.replies[index] = Some(result);
                b.left -= 1;
                if b.left == 0
                    && let Some(b) = self.batches.remove(&batch)
                {
                    let replies = b.replies.into_iter().flatten().collect();
                    let _ = b.reply.send(replies);
                }
            }
            None => {}
        }
    }

    /// Hands every peer's pending frames to the transport, one batch per peer.
    fn flush_outbox(&mut self) {
        self.events_since_flush = 0;
        for (to, batch) in std::mem::take(&mut self.outbox) {
            if !self.transport.send(to, batch) {
                self.metrics.frames_dropped.inc();
            }
        }
    }

    /// Frames out first (replicas start their own fsyncs while ours runs), then one fsync for
    /// every write so far, then the acks it released. A core that is a task starts the fsync
    /// on the blocking pool and goes on; its end is taken at a later turn.
    fn group_commit(&mut self) {
        self.flush_outbox();
        if self.background.is_some() {
            return self.start_background_sync();
        }
        self.sync_now();
        self.flush_outbox();
    }

    /// Starts the fsync of every write so far on the blocking pool (one at a time: writes
    /// made meanwhile wait for the next).
    fn start_background_sync(&mut self) {
        let Some(bg) = &mut self.background else {
            return;
        };
        if bg.in_flight {
            return;
        }
        let Some(generation) = self.sync_wanted.take() else {
            return;
        };
        self.events_since_sync = 0;
        bg.in_flight = true;
        let (syncer, done, bell) = (self.store.syncer(), bg.done.clone(), bg.bell.clone());
        tokio::task::spawn_blocking(move || {
            let result = syncer.sync();
            *done.lock().unwrap_or_else(|e| e.into_inner()) = Some((generation, result));
            bell.notify_one();
        });
    }

    /// Whether a background fsync is running.
    fn syncing(&self) -> bool {
        self.background.as_ref().is_some_and(|b| b.in_flight)
    }

    /// Takes the end of a background fsync, if it came: the core acks what waited for it.
    fn end_background_sync(&mut self) {
        let Some(bg) = &mut self.background else {
            return;
        };
        if !bg.in_flight {
            return;
        }
        let Some((generation, result)) = bg.done.lock().unwrap_or_else(|e| e.into_inner()).take()
        else {
            return;
        };
        bg.in_flight = false;
        if let Err(e) = &result {
            tracing::error!("fsync failed: {e}");
        }
        self.metrics.fsyncs.inc();
        // The acks it released go out with the next hand-off to the transport (when the
        // queue runs dry, or at `OUTBOX_EVENTS_MAX`): flushing here too cost 3-5% of `SET`
        // throughput in more, smaller batches.
        self.handle(Input::Synced { generation, result });
    }

    /// One fsync for every write made so far; then the core acks what waited for it.
    fn sync_now(&mut self) {
        let Some(generation) = self.sync_wanted.take() else {
            return;
        };
        self.events_since_sync = 0;
        let result = self.store.syncer().sync();
        if let Err(e) = &result {
            tracing::error!("fsync failed: {e}");
        }
        self.metrics.fsyncs.inc();
        self.handle(Input::Synced { generation, result });
    }

    fn handle(&mut self, input: Input) {
        self.handle_at(input, Timestamp(wall_ms()), Timestamp(mono_ms()));
    }

    /// [`Driver::handle`] at a clock reading taken once for several inputs (a pipeline's
    /// requests arrive together; reading the clocks per request was 2% of the core thread).
    fn handle_at(&mut self, input: Input, now: Timestamp, mono: Timestamp) {
        // The input, then the acks that need no fsync (allocated only in that mode).
        let mut first = Some(input);
        let mut inputs: Vec<Input> = Vec::new();
        while let Some(input) = first.take().or_else(|| inputs.pop()) {
            let mut ctx = Ctx {
                now,
                mono,
                store: &mut self.store,
                rng: &mut self.rng,
            };
            self.node.handle(&mut ctx, input);
            while let Some(output) = self.node.poll_output() {
                match output {
                    Output::Send { to, envelope } => {
                        let batch = self.outbox.entry(to).or_default();
                        crate::transport::push_envelope(batch, &envelope);
                        if batch.len() >= OUTBOX_BYTES_MAX {
                            let batch = std::mem::take(batch);
                            if !self.transport.send(to, batch) {
                                self.metrics.frames_dropped.inc();
                            }
                        }
                    }
                    Output::Reply { id, result } => self.reply(id, result),
                    Output::HintBudgetFull { owner, partition } => tracing::warn!(
                        "hints for {owner} exceed the budget (limits.hints_bytes_max); partition {} is left to anti-entropy",
                        partition.0
                    ),
                    // A real fsync: in `fsync` mode, for a generation covering a new dot or a
                    // clock mark, and behind one already waiting or running (generations end
                    // in order).
                    Output::Sync {
                        generation,
                        required,
                    } if self.fsync || required || self.sync_wanted.is_some() || self.syncing() => {
                        self.sync_wanted = Some(self.sync_wanted.unwrap_or(0).max(generation));
                    }
                    // Acks need no fsync in this durability mode.
                    Output::Sync { generation, .. } => inputs.push(Input::Synced {
                        generation,
                        result: Ok(()),
                    }),
                }
            }
        }
    }
}
