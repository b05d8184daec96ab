//! The Redis-protocol front end (docs/DESIGN.md "Redis protocol"): RESP2, and RESP3 after
//! `HELLO 3`, on its own port, so redis-cli, redis-benchmark and Redis client libraries work
//! unmodified.
//!
//! Each connection reads commands with [`hydra_resp::parse_command`] (bounded, never
//! panics), runs them against the core through the same [`CoreHandle`] the HTTP API uses,
//! and writes replies in order. Pipelined `GET`s and `SET`s on distinct keys are sent to the
//! core together and answered in order, so a pipeline costs one round of replication, not
//! one per command; a command on a key already in flight waits for it, so one connection's
//! commands on one key still take effect in the order sent.
//!
//! Mapping to Hydra: keys live in bucket `redis` (`lww`) unless the connection picks another
//! with `HYDRA.BUCKET`. In a `siblings` bucket a plain `GET` returns the newest sibling
//! (by timestamp, then bytes) and a plain `SET` is a blind write. Commands Redis runs
//! atomically on one thread run here as a read, then a write carrying the read's context
//! (`GETDEL`, `DEL`, `SET ... GET|KEEPTTL`, `EXPIRE`, `PERSIST`): not atomic, but the write
//! acts only on the version read (see `commands.rs`). Conditional commands (`SET ...
//! NX|XX|IFEQ`, with `GET` and `KEEPTTL` too, `SETNX`, `DELIFEQ`) go through compare-and-set
//! (Paxos, `lww` buckets): atomic with every other conditional command of the key. In a
//! `cas = conditional_only` bucket a plain write to a key compare-and-set manages is refused
//! by the core (`cas_managed_key`) and made again here through Paxos, unconditionally (or
//! bound to the version read), so once a key took part in compare-and-set its writes are
//! atomic with each other (a plain write to it that reaches only replicas without its Paxos
//! state is the exception, see docs/DESIGN.md). An outcome the coordinator
//! could not learn is `-TIMEOUT`. `MULTI`/`EXEC` apply at once or not at all
//! (`transaction.rs`): on one key through compare-and-set, else `-EXECABORT`.
//!
//! Here: the connection loop and `Connection::execute`, which finds
//! a command's row in the table and matches on its handler. `commands.rs`: the key commands;
//! `strings.rs`: the string-editing ones (`INCRBYFLOAT`, `SETRANGE`, `GETRANGE`, `GETEX`,
//! `MSETNX`); `transaction.rs`: `MULTI`, `EXEC`, `WATCH`.
//! `meta.rs`: HELLO, AUTH, CLIENT, INFO, CONFIG; `table.rs`: the command table itself;
//! `pipeline.rs`: the pipeline fast path.

mod collection_copy;
mod collections;
mod commands;
mod expiry;
mod float;
mod keys;
mod meta;
mod pipeline;
mod strings;
mod table;
mod transaction;

use crate::driver::{CoreHandle, Reply};
use crate::http::receipt_json;
use crate::metrics::{Level, Metrics, record_many};
use commands::VersionBound;
use hydra_core::bucket::Consistency;
use hydra_core::ids::NodeId;
use hydra_core::key::{BucketName, ObjectKey};
use hydra_core::message::{
    CasAction, ClientError, ClientRequest, ClientResponse, ErrorCode, Expiry, Receipt, VersionOp,
    WriteRequest,
};
use hydra_core::version::{Sibling, VersionVector};
use hydra_resp::{Command, Limits, Protocol, Value, parse_command};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;
use table::{Handler, command_reply, lookup};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// The Redis version whose command set and reply shapes Hydra follows (what `HELLO` and
/// `INFO` report as `version` / `redis_version`; clients use it to pick features).
pub const REDIS_COMPAT_VERSION: &str = "7.2.0";
/// Bucket a new connection uses.
pub const DEFAULT_BUCKET: &str = "redis";
/// Bytes read from a socket at a time.
const READ_CHUNK: usize = 64 * 1024;
/// Replies buffered before they are written, even in the middle of a pipeline.
const OUT_FLUSH_BYTES: usize = 1024 * 1024;
/// A connection's buffers shrink back to [`READ_CHUNK`] when idle above this capacity.
const BUFFER_KEEP_BYTES: usize = 4 * 1024 * 1024;
/// Keys of one multi-key command (`MGET`, `MSET`, `EXISTS`, `DEL`) in flight at once, so one
/// command cannot fill the core's queue.
const KEYS_IN_FLIGHT_MAX: usize = 128;
/// Keys a multi-key read fetches first, before it knows how large values are.
const KEYS_FIRST_FETCH: usize = 8;
/// Longest `CONFIG GET` pattern.
const PATTERN_BYTES_MAX: usize = 256;

/// What every connection shares.
pub struct RespState {
    pub core: CoreHandle,
    pub metrics: Arc<Metrics>,
    pub node_id: u64,
    pub tcp_port: u16,
    pub durability: String,
    pub value_bytes_max: usize,
    /// Connections served at once at most; more are refused with an error.
    pub connections_max: usize,
    /// Commands taken from one read before replies are written (bounds the reply buffer).
    pub pipeline_commands_max: usize,
    pub started: Instant,
    /// Credentials; a connection runs nothing but AUTH, HELLO ... AUTH, QUIT and RESET until
    /// it has logged in.
    pub auth: Arc<crate::auth::Auth>,
    /// How long a connection may stay open without logging in.
    pub auth_timeout: std::time::Duration,
    /// Bytes of values one multi-key read (MGET) may answer with at most.
    pub reply_bytes_max: usize,
    /// Plain TCP, or TLS (`tls.cert`, `tls.key`).
    pub acceptor: crate::tls::Acceptor,
    /// Positions of `SCAN`s in progress (see `keys.rs`).
    scan_cursors: std::sync::Mutex<keys::ScanCursors>,
    /// The layout's partition count, once asked of the core.
    partitions: std::sync::OnceLock<u32>,
    next_client_id: AtomicU64,
    connected: AtomicUsize,
}

impl RespState {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        core: CoreHandle,
        metrics: Arc<Metrics>,
        node_id: u64,
        tcp_port: u16,
        durability: String,
        value_bytes_max: usize,
        connections_max: usize,
        pipeline_commands_max: usize,
        auth: Arc<crate::auth::Auth>,
    ) -> RespState {
        RespState {
            core,
            metrics,
            node_id,
            tcp_port,
            durability,
            value_bytes_max,
            connections_max,
            pipeline_commands_max,
            started: Instant::now(),
            auth,
            auth_timeout: std::time::Duration::from_millis(10_000),
            reply_bytes_max: 64 * 1024 * 1024,
            acceptor: crate::tls::Acceptor::plain(),
            scan_cursors: std::sync::Mutex::new(keys::ScanCursors::default()),
            partitions: std::sync::OnceLock::new(),
            next_client_id: AtomicU64::new(1),
            connected: AtomicUsize::new(0),
        }
    }

    fn limits(&self) -> Limits {
        Limits {
            // A SET's value may be as long as the value limit; keys are far shorter.
            bulk_bytes_max: self.value_bytes_max.max(hydra_core::limits::KEY_BYTES_MAX),
            command_bytes_max: 2 * self.value_bytes_max + 1024 * 1024,
            ..Limits::default()
        }
    }
}

/// Accepts connections until the listener fails; each runs on its own task.
pub async fn serve(listener: TcpListener, state: Arc<RespState>) {
    let slots = Arc::new(Semaphore::new(state.connections_max));
    loop {
        let (mut stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("RESP accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            if !state.acceptor.is_tls() {
                let msg = Value::error(format!(
                    "ERR max number of clients reached ({}; limits.resp_connections_max)",
                    state.connections_max
                ));
                let _ = stream.write_all(&msg.to_bytes(Protocol::Resp2)).await;
            }
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let stream = match state.acceptor.accept(stream).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::info!("RESP connection refused: {e}");
                    return;
                }
            };
            state.connected.fetch_add(1, Ordering::Relaxed);
            let mut conn = Connection::new(state.clone());
            if let Err(e) = conn.run(stream).await {
                tracing::debug!("RESP connection {} ended: {e}", conn.id);
            }
            state.connected.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
    }
}

/// One client connection's state.
struct Connection {
    state: Arc<RespState>,
    id: u64,
    protocol: Protocol,
    bucket: BucketName,
    r: Option<Consistency>,
    /// Reads go through Paxos (`HYDRA.CONSISTENCY serial ...`).
    serial_reads: bool,
    w: Option<Consistency>,
    name: Option<Vec<u8>>,
    lib_name: Option<Vec<u8>>,
    lib_ver: Option<Vec<u8>>,
    last_receipt: Option<Receipt>,
    /// Whether the connection's bucket is `lww` (`redis` is).
    lww: bool,
    /// In an `lww` bucket: the newest version (writer, timestamp) this connection saw or
    /// wrote. Every write carries it as its context, so the connection's later writes are
    /// stamped after anything it saw, whichever replica coordinates them.
    seen: Option<(NodeId, u64)>,
    /// Who logged in (`None`: not authenticated).
    principal: Option<crate::auth::Principal>,
    /// After `MULTI`: the commands queued so far.
    multi: Option<transaction::Multi>,
    /// Keys `WATCH`ed, with the versions they had.
    watched: Vec<transaction::Watched>,
    /// While `EXEC` runs a transaction's commands: the copy of its key they run against.
    overlay: Option<std::sync::Mutex<transaction::Overlay>>,
}

/// What the loop does after a command.
enum Flow {
    Continue,
    Close,
}

impl Connection {
    fn new(state: Arc<RespState>) -> Connection {
        let id = state.next_client_id.fetch_add(1, Ordering::Relaxed);
        Connection {
            state,
            id,
            protocol: Protocol::Resp2,
            bucket: default_bucket(),
            r: None,
            serial_reads: false,
            w: None,
            name: None,
            lib_name: None,
            lib_ver: None,
            last_receipt: None,
            lww: true,
            seen: None,
            principal: None,
            multi: None,
            watched: Vec::new(),
            overlay: None,
        }
    }

    async fn run<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        mut stream: S,
    ) -> std::io::Result<()> {
        let full = self.state.limits();
        let unauthenticated = Limits::unauthenticated();
        let opened = Instant::now();
        let mut input: Vec<u8> = Vec::with_capacity(READ_CHUNK);
        let mut out: Vec<u8> = Vec::with_capacity(READ_CHUNK);
        loop {
            // Before it logs in, a connection gets Redis's small limits for the unauthenticated
            // and one command at a time (the next is parsed after AUTH has run, as Redis does).
            let (limits, batch_max) = if self.principal.is_some() {
                (&full, self.state.pipeline_commands_max)
            } else {
                (&unauthenticated, 1)
            };
            // Take every complete command already buffered (up to the pipeline bound).
            let mut commands = Vec::new();
            let mut used = 0;
            let mut protocol_error = None;
            let mut bound_hit = false;
            loop {
                if commands.len() >= batch_max {
                    bound_hit = true;
                    break;
                }
                match parse_command(&input[used..], limits) {
                    Ok(Some((cmd, n))) => {
                        used += n;
                        if !cmd.is_empty() {
                            commands.push(cmd);
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        protocol_error = Some(e);
                        break;
                    }
                }
            }
            input.drain(..used);
            let flow = self.run_batch(commands, &mut out, &mut stream).await?;
            if let Some(e) = protocol_error {
                // As Redis does: answer the error, then close (the stream cannot be resynced).
                Value::error(format!("ERR {e}")).encode(self.protocol, &mut out);
                stream.write_all(&out).await?;
                return Ok(());
            }
            if !out.is_empty() {
                stream.write_all(&out).await?;
                out.clear();
            }
            if let Flow::Close = flow {
                return Ok(());
            }
            if bound_hit {
                // More commands may already be buffered: run them before reading.
                continue;
            }
            if input.capacity() > BUFFER_KEEP_BYTES && input.len() < READ_CHUNK {
                input.shrink_to(READ_CHUNK);
            }
            if out.capacity() > BUFFER_KEEP_BYTES {
                out = Vec::with_capacity(READ_CHUNK);
            }
            input.reserve(READ_CHUNK);
            let read = if self.principal.is_some() {
                stream.read_buf(&mut input).await?
            } else {
                // A connection that has not logged in gets `auth_timeout` from its opening.
                let left = self.state.auth_timeout.saturating_sub(opened.elapsed());
                match tokio::time::timeout(left, stream.read_buf(&mut input)).await {
                    Ok(read) => read?,
                    Err(_) => {
                        self.state.metrics.auth_failure("resp");
                        let e = Value::error(format!(
                            "ERR no AUTH within {} ms (limits.resp_auth_timeout_ms); closing",
                            self.state.auth_timeout.as_millis()
                        ));
                        stream.write_all(&e.to_bytes(self.protocol)).await?;
                        return Ok(());
                    }
                }
            };
            if read == 0 {
                return Ok(());
            }
        }
    }

    fn key(&self, key: &[u8]) -> Result<ObjectKey, Value> {
        ObjectKey::new(self.bucket.clone(), key)
            .map_err(|e| Value::error(format!("INVALID_KEY {e}")))
    }

    /// A read of `key` at the connection's level: a serial read (through Paxos) after
    /// `HYDRA.CONSISTENCY serial ...`.
    fn get_request(&self, key: ObjectKey) -> ClientRequest {
        if self.serial_reads {
            return ClientRequest::cas(hydra_core::message::CasRequest {
                key,
                condition: hydra_core::paxos::Condition::Always,
                action: CasAction::Read,
                timeout_ms: None,
                supersedes: None,
            });
        }
        ClientRequest::Get {
            key,
            r: self.r,
            timeout_ms: None,
            sloppy: None,
        }
    }

    fn put_request(
        &self,
        key: ObjectKey,
        value: Option<Vec<u8>>,
        context: Option<VersionVector>,
        expiry: Option<Expiry>,
    ) -> ClientRequest {
        let context = context.or_else(|| {
            self.seen
                .filter(|_| self.lww)
                .map(|(n, c)| VersionVector([(n, c)].into()))
        });
        ClientRequest::put(WriteRequest {
            key,
            content_type: if value.is_some() {
                "application/octet-stream".into()
            } else {
                Default::default()
            },
            value,
            context,
            w: self.w,
            timeout_ms: None,
            sloppy: None,
            expiry,
            on_version: None,
            collection: None,
        })
    }

    /// Sends a request to the core, records its metrics, and returns the reply with its
    /// receipt (or the receipt of the failure). A plain write refused because
    /// compare-and-set manages the key (`cas = conditional_only`) is made again through
    /// Paxos, as Redis runs every command atomically: from then on the key's writes are
    /// linearizable with each other.
    async fn call(&self, request: ClientRequest) -> (Reply, Option<Receipt>) {
        let retry = self.cas_retry_of(&request);
        let result = self.call_once(request).await;
        let result = match retry.filter(|_| refused_for_cas(&result)) {
            Some(w) => self.retry_through_cas(w).await,
            None => result,
        };
        let receipt = self.receipt_of(&result);
        (result, receipt)
    }

    /// What [`Connection::retry_through_cas`] needs to make `request` again through Paxos.
    fn cas_retry_of(&self, request: &ClientRequest) -> Option<WriteRequest> {
        match request {
            // A hash or set update never goes through compare-and-set (the core takes it on
            // keys compare-and-set manages).
            ClientRequest::Put(w) if self.lww && w.collection.is_none() => {
                Some(WriteRequest::clone(w))
            }
            _ => None,
        }
    }

    /// The reply of a plain write refused as `cas_managed_key` ([`refused_for_cas`]), made
    /// again through Paxos (`w`, from [`Connection::cas_retry_of`]). Called only for such a
    /// refusal: a reply passed through an async step would move into its future, which on
    /// pipelines was the largest copy of a reply's path.
    async fn retry_through_cas(&self, w: WriteRequest) -> Reply {
        let bound = w.on_version.is_some();
        let result = self.call_once(ClientRequest::cas(w.into_cas())).await;
        result.and_then(|r| match r {
            // A write bound to a version that another write replaced since: the
            // command runs again on the new one (`commands.rs`, `replaced`).
            ClientResponse::Cas { applied: false, .. } if bound => Err(ClientError::new(
                ErrorCode::PreconditionFailed,
                "the version read was replaced before the write; nothing was written",
            )),
            ClientResponse::Cas {
                context, receipt, ..
            } => Ok(ClientResponse::Written { context, receipt }),
            other => Ok(other),
        })
    }

    /// The receipt of a reply, or of its failure (none for a transaction's answers, which
    /// come from its copy of the key).
    fn receipt_of(&self, result: &Reply) -> Option<Receipt> {
        if self.overlay.is_some() {
            return None;
        }
        match result {
            Ok(r) => r.receipt().cloned(),
            Err(e) => e.receipt.clone(),
        }
    }

    async fn call_once(&self, request: ClientRequest) -> Reply {
        if let Some(copy) = &self.overlay {
            let mut copy = copy
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            return copy.answer(request);
        }
        let started = Instant::now();
        let label = Label::of(&request);
        let result = self.state.core.request(request).await;
        label.record(&self.state.metrics, started, &result);
        result
    }

    /// Like [`Connection::call`], keeping the receipt as the connection's last.
    async fn request(&mut self, request: ClientRequest) -> Result<ClientResponse, Value> {
        let (result, receipt) = self.call(request).await;
        self.keep(result, receipt).map_err(|e| error_value(&e))
    }

    /// Like [`Connection::request`], but a plain write refused because compare-and-set
    /// manages the key comes back as that error (for the caller to redo atomically).
    async fn request_once(&mut self, request: ClientRequest) -> Reply {
        let result = self.call_once(request).await;
        let receipt = self.receipt_of(&result);
        self.keep(result, receipt)
    }

    fn keep(&mut self, result: Reply, receipt: Option<Receipt>) -> Reply {
        if receipt.is_some() {
            self.last_receipt = receipt;
        }
        self.note_seen(&result);
        result
    }

    /// Remembers the newest `lww` version a reply names (see `Connection::seen`).
    fn note_seen(&mut self, result: &Reply) {
        if !self.lww {
            return;
        }
        let context = match result {
            Ok(ClientResponse::Read { context, .. } | ClientResponse::Written { context, .. }) => {
                context
            }
            _ => return,
        };
        if let Some((n, c)) = context.0.iter().max_by_key(|(_, c)| **c)
            && self.seen.is_none_or(|(_, s)| *c > s)
        {
            self.seen = Some((*n, *c));
        }
    }

    /// Reads a key: its context and its visible value (the newest sibling), if any;
    /// WRONGTYPE when it holds a hash or set.
    async fn read(&mut self, key: &ObjectKey) -> Result<(VersionVector, Option<Sibling>), Value> {
        let response = self.request(self.get_request(key.clone())).await?;
        if let ClientResponse::Read {
            collection: Some(c),
            ..
        } = &response
            && !c.is_empty()
        {
            return Err(collections::wrong_type());
        }
        match take_newest(response) {
            (Some(context), sibling) => Ok((context, sibling)),
            (None, _) => Err(Value::error("ERR unexpected reply to a read")),
        }
    }

    /// Reads a key for a command that then acts on what it read (`EXPIRE`, `PERSIST`,
    /// `GETDEL`, `DEL`, `SET ... GET|KEEPTTL`): its context and its one live value, if any. In a `siblings` bucket a
    /// key with several live siblings is refused: acting on one would drop the others. A
    /// hash or set is WRONGTYPE.
    async fn read_version(
        &mut self,
        key: &ObjectKey,
    ) -> Result<(VersionVector, Option<Sibling>), Value> {
        match self.read_found(key).await? {
            collections::Found::Absent(context) => Ok((context, None)),
            collections::Found::String(context, s) => Ok((context, Some(s))),
            collections::Found::Collection(_) => Err(collections::wrong_type()),
        }
    }

    /// Acts on exactly the version a [`Connection::read_version`] returned: in an `lww`
    /// bucket a write bound to that version (a later write by anyone stays); in a `siblings`
    /// bucket a new version with the read's context (a concurrent write stays as a sibling).
    /// `Touch` keeps the value read, expiring as `expiry` says; `Delete` deletes it.
    async fn write_version(
        &mut self,
        key: ObjectKey,
        op: VersionOp,
        read: (VersionVector, Sibling),
        expiry: Option<Expiry>,
    ) -> Result<VersionVector, Value> {
        let (context, sibling) = read;
        let value = (op == VersionOp::Touch).then_some(sibling.value);
        let mut request = self.put_request(key, value, Some(context), expiry);
        if let ClientRequest::Put(w) = &mut request {
            if op == VersionOp::Touch {
                w.content_type = sibling.content_type;
            }
            w.on_version = self.lww.then_some(op);
        }
        match self.request(request).await? {
            ClientResponse::Written { context, .. } => Ok(context),
            _ => Err(Value::error("ERR unexpected reply to a write")),
        }
    }

    async fn write(
        &mut self,
        key: ObjectKey,
        value: Option<Vec<u8>>,
        context: Option<VersionVector>,
        expiry: Option<Expiry>,
    ) -> Result<VersionVector, Value> {
        match self
            .request(self.put_request(key, value, context, expiry))
            .await?
        {
            ClientResponse::Written { context, .. } => Ok(context),
            _ => Err(Value::error("ERR unexpected reply to a write")),
        }
    }

    /// Runs one command: its row of the command table gives the arity check and the handler.
    async fn execute(&mut self, cmd: Command) -> (Value, Flow) {
        let name = String::from_utf8_lossy(&cmd[0]).to_ascii_lowercase();
        let args = &cmd[1..];
        let Some(spec) = lookup(&name) else {
            let shown: Vec<String> = args
                .iter()
                .take(8)
                .map(|a| format!("'{}' ", String::from_utf8_lossy(&a[..a.len().min(128)])))
                .collect();
            let e = Value::error(format!(
                "ERR unknown command '{}', with args beginning with: {}",
                String::from_utf8_lossy(&cmd[0][..cmd[0].len().min(128)]),
                shown.concat()
            ));
            self.flag_transaction();
            return (e, Flow::Continue);
        };
        if !spec.arity_ok(cmd.len()) {
            let e = Value::error(format!(
                "ERR wrong number of arguments for '{name}' command"
            ));
            self.flag_transaction();
            return (e, Flow::Continue);
        }
        if self.principal.is_none()
            && !matches!(
                spec.handler,
                Handler::Auth | Handler::Hello | Handler::Quit | Handler::Reset
            )
        {
            self.state.metrics.auth_failure("resp");
            return (
                Value::error("NOAUTH Authentication required."),
                Flow::Continue,
            );
        }
        // Commands on keys, and listings of the bucket, need the user's scope on it.
        let on_bucket = spec.first_key > 0
            || matches!(
                spec.handler,
                Handler::Scan | Handler::Keys | Handler::RandomKey
            );
        if let Some(p) = &self.principal
            && !p.is_admin()
            && on_bucket
        {
            let bucket = self.bucket.as_str();
            if !p.may_read(bucket) {
                self.state.metrics.auth_failure("resp");
                self.flag_transaction();
                return (
                    Value::error(
                        "NOPERM this user has no permissions to access one of the keys used as arguments",
                    ),
                    Flow::Continue,
                );
            }
            if spec.flags.contains(&"write") && !p.may_write(bucket) {
                self.state.metrics.auth_failure("resp");
                self.flag_transaction();
                return (
                    Value::error(format!(
                        "NOPERM this user has no permissions to run the '{name}' command"
                    )),
                    Flow::Continue,
                );
            }
        }
        if self.multi.is_some()
            && !matches!(
                spec.handler,
                Handler::Exec
                    | Handler::Discard
                    | Handler::Multi
                    | Handler::Watch
                    | Handler::Quit
                    | Handler::Reset
            )
        {
            return (self.queue(cmd), Flow::Continue);
        }
        let reply = match spec.handler {
            Handler::Quit => return (Value::ok(), Flow::Close),
            Handler::Ping => match args.first() {
                None => Value::Simple("PONG".into()),
                Some(m) => Value::Bulk(m.clone()),
            },
            Handler::Echo => Value::Bulk(args[0].clone()),
            Handler::Hello => self.hello(args).await,
            Handler::Auth => self.auth(args).await,
            Handler::Acl => self.acl(args),
            Handler::Reset => {
                let state = self.state.clone();
                let id = self.id;
                *self = Connection::new(state);
                self.id = id;
                Value::Simple("RESET".into())
            }
            Handler::Select => match args[0].as_slice() {
                b"0" => Value::ok(),
                _ => Value::error(
                    "ERR DB index is out of range (Hydra has one database; use HYDRA.BUCKET to pick a bucket)",
                ),
            },
            Handler::Client => self.client(args),
            Handler::Command => command_reply(args),
            Handler::Info => self.info(args).await,
            Handler::Config => self.config(args),
            Handler::DbSize => match self.count_bucket().await {
                Ok((keys, _, _)) => Value::Integer(keys as i64),
                Err(e) => e,
            },
            Handler::Multi => self.multi(),
            Handler::Exec => self.exec().await,
            Handler::Discard => self.discard(),
            Handler::Watch => self.watch(args).await,
            Handler::Unwatch => self.unwatch(),
            Handler::SetNx => self.setnx(args).await,
            Handler::DelIfEq => self.delifeq(args).await,
            Handler::IncrBy { by_arg, negate } => self.incr_by(args, by_arg, negate).await,
            Handler::Append => self.append(args).await,
            Handler::GetSet => self.getset(args).await,
            Handler::IncrByFloat => self.incr_by_float(args).await,
            Handler::SetRange => self.setrange(args).await,
            Handler::GetRange => self.getrange(args).await,
            Handler::GetEx => self.version_bound(VersionBound::GetEx, args).await,
            Handler::MSetNx => self.msetnx(args).await,
            Handler::Get => self.get(&args[0]).await,
            Handler::Set => self.set(args).await,
            Handler::GetDel => self.version_bound(VersionBound::GetDel, args).await,
            Handler::Del => self.del(args).await,
            Handler::Exists => self.exists(args).await,
            Handler::MGet => self.mget(args).await,
            Handler::MSet => self.mset(args).await,
            Handler::StrLen => self.strlen(&args[0]).await,
            Handler::Expire { millis, absolute } => {
                self.version_bound(VersionBound::Expire { millis, absolute }, args)
                    .await
            }
            Handler::Ttl { millis, absolute } => self.ttl(&args[0], millis, absolute).await,
            Handler::SetEx { millis } => self.setex(args, millis).await,
            Handler::Type => self.type_of(&args[0]).await,
            Handler::Flush => self.flush(args).await,
            Handler::Object => self.object(args).await,
            Handler::Scan => self.scan(args).await,
            Handler::Keys => self.keys(args).await,
            Handler::RandomKey => self.randomkey().await,
            Handler::Persist => self.version_bound(VersionBound::Persist, args).await,
            Handler::Collection(c) => self.collection_command(c, args).await,
            Handler::HydraBucket => self.select_bucket(args).await,
            Handler::HydraConsistency => self.consistency(args),
            Handler::HydraGetAll => self.getall(&args[0]).await,
            Handler::HydraPut => self.context_put(args).await,
            Handler::HydraDel => self.context_del(args).await,
            Handler::HydraReceipt => match &self.last_receipt {
                Some(r) => Value::Bulk(receipt_json(r).to_string().into_bytes()),
                None => Value::Null,
            },
        };
        (reply, Flow::Continue)
    }
}

/// How a request shows in the metrics: its operation and consistency level.
struct Label {
    op: &'static str,
    level: Option<Consistency>,
    serial: bool,
}

impl Label {
    fn of(request: &ClientRequest) -> Label {
        let (op, level) = match request {
            ClientRequest::Get { r, .. } => ("get", *r),
            ClientRequest::Put(w) if w.value.is_some() => ("put", w.w),
            ClientRequest::Put(w) => ("delete", w.w),
            ClientRequest::SetBucket { .. } => ("bucket", None),
            ClientRequest::List(l) => ("list", l.r),
            ClientRequest::Truncate { .. } => ("truncate", None),
            ClientRequest::Cas(c) => match c.action {
                CasAction::Read => ("get", None),
                CasAction::Write { .. } | CasAction::Collection(_) => ("put", None),
                CasAction::Delete => ("delete", None),
            },
        };
        Label {
            op,
            level,
            serial: matches!(request, ClientRequest::Cas(_)),
        }
    }

    fn record(&self, metrics: &Metrics, started: Instant, result: &Reply) {
        record_many(metrics, started, [(self.op, self.level(), result)]);
    }

    /// The request's level label.
    fn level(&self) -> Level {
        if self.serial {
            Level::Serial
        } else {
            Level::Of(self.level)
        }
    }
}

fn default_bucket() -> BucketName {
    BucketName::new(DEFAULT_BUCKET).expect("the default bucket name is valid")
}

/// A read's context and the sibling a plain `GET` returns: the newest by timestamp, ties
/// broken by the bytes, so every node picks the same one. Moved out, not copied. The context
/// is `None` for a reply that is not a read.
/// A plain write the core refused because compare-and-set manages its key (`cas =
/// conditional_only`): the connection makes it again through Paxos.
fn refused_for_cas(result: &Reply) -> bool {
    matches!(result, Err(e) if e.code == ErrorCode::CasManagedKey)
}

fn take_newest(resp: ClientResponse) -> (Option<VersionVector>, Option<Sibling>) {
    match resp {
        ClientResponse::Read {
            context, siblings, ..
        }
        | ClientResponse::Cas {
            context, siblings, ..
        } => (
            Some(context),
            siblings
                .into_iter()
                .filter(|s| !s.tombstone)
                .max_by(|a, b| (a.timestamp, &a.value).cmp(&(b.timestamp, &b.value))),
        ),
        _ => (None, None),
    }
}

/// A core error as a RESP error: its stable code in capitals, then the message (for quorum
/// failures: needed, acked and why each other replica failed).
pub fn error_value(e: &ClientError) -> Value {
    // Redis clients know `-TIMEOUT` (Redis Cluster's, Valkey's) as "may have happened".
    // Redis's own refusal of a type, word for word.
    if e.code == ErrorCode::WrongType && e.message.starts_with("WRONGTYPE ") {
        return Value::Error(e.message.clone());
    }
    let code = match e.code {
        ErrorCode::OutcomeUnknown => "TIMEOUT".to_string(),
        code => code.as_str().to_ascii_uppercase(),
    };
    let mut text = format!("{code} {}", e.message);
    if let Some(r) = &e.receipt
        && e.code == ErrorCode::QuorumNotReached
    {
        text.push_str(&format!(" (needed {}, acked {})", r.needed, r.acked()));
    }
    Value::Error(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hydra_core::message::ClientResponse;

    const TEST_TOKEN: &str = "test-admin-token-0123456789";

    fn connection() -> Connection {
        let state = RespState::new(
            CoreHandle::detached(),
            Arc::new(Metrics::new()),
            1,
            6379,
            "fsync".into(),
            1024,
            10,
            10,
            Arc::new(crate::auth::Auth::new(TEST_TOKEN, None).expect("valid")),
        );
        let mut c = Connection::new(Arc::new(state));
        c.principal = Some(crate::auth::Principal {
            name: "default".into(),
            scopes: vec![crate::auth::Scope::Admin],
        });
        c
    }

    /// Before a connection logs in, nothing it sends reaches the core, and every reply is
    /// one Redis gives an unauthenticated client.
    #[test]
    fn before_auth_nothing_reaches_the_core() {
        use proptest::prelude::*;
        let names: Vec<&'static str> = table::COMMANDS.iter().map(|c| c.name).collect();
        let word = prop_oneof![
            proptest::sample::select(names.clone()).prop_map(|s| s.as_bytes().to_vec()),
            proptest::sample::select(vec!["default", "3", "2", "AUTH", "SETNAME", "x"])
                .prop_map(|s| s.as_bytes().to_vec()),
            proptest::collection::vec(any::<u8>(), 0..12),
        ];
        let command = (
            proptest::sample::select(names),
            proptest::collection::vec(word, 0..5),
        )
            .prop_map(|(name, args)| {
                let mut cmd = vec![name.as_bytes().to_vec()];
                cmd.extend(args);
                cmd
            });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        proptest!(ProptestConfig::with_cases(300), |(script in proptest::collection::vec(command, 1..20))| {
            let (core, events) = CoreHandle::probe();
            let state = RespState::new(
                core, Arc::new(Metrics::new()), 1, 6379, "fsync".into(), 1024, 10, 10,
                Arc::new(crate::auth::Auth::new(TEST_TOKEN, None).expect("valid")),
            );
            let mut c = Connection::new(Arc::new(state));
            for cmd in script {
                let (reply, flow) = runtime.block_on(c.execute(cmd.clone()));
                let text = match &reply {
                    Value::Error(e) => e.clone(),
                    Value::Simple(s) => s.clone(),
                    other => panic!("{cmd:?} answered {other:?} before AUTH"),
                };
                let allowed = ["NOAUTH ", "WRONGPASS ", "ERR wrong number of arguments",
                    "ERR syntax error", "ERR Syntax error in HELLO option", "NOPROTO ",
                    "ERR Protocol version", "RESET", "OK"];
                prop_assert!(allowed.iter().any(|a| text.starts_with(a)), "{:?} -> {}", cmd, text);
                prop_assert!(text != "OK" || cmd[0].eq_ignore_ascii_case(b"quit"), "{:?} -> OK", cmd);
                prop_assert!(c.principal.is_none());
                prop_assert!(events.try_recv().is_err(), "{:?} reached the core", cmd);
                if let Flow::Close = flow {
                    break;
                }
            }
        });
    }

    fn written(node: u64, ts: u64) -> Reply {
        let receipt = Receipt {
            coordinator: NodeId(node),
            partition: 0,
            needed: 1,
            replicas: vec![],
            read_repairs: vec![],
            hints_stored: 0,
            elapsed_ms: 0,
        };
        Ok(ClientResponse::Written {
            context: VersionVector([(NodeId(node), ts)].into()),
            receipt,
        })
    }

    fn context_of(request: ClientRequest) -> Option<VersionVector> {
        match request {
            ClientRequest::Put(w) => w.context,
            _ => None,
        }
    }

    #[test]
    fn lww_writes_carry_the_newest_version_the_connection_saw() {
        let mut c = connection();
        let key = c.key(b"k").expect("key");
        assert_eq!(
            context_of(c.put_request(key.clone(), Some(vec![1]), None, None)),
            None
        );
        c.note_seen(&written(2, 500));
        c.note_seen(&written(3, 400)); // older: kept out
        let floor = Some(VersionVector([(NodeId(2), 500)].into()));
        assert_eq!(
            context_of(c.put_request(key.clone(), Some(vec![1]), None, None)),
            floor
        );
        // A context of its own (read-then-write commands) is kept as it is.
        let own = Some(VersionVector([(NodeId(3), 9)].into()));
        assert_eq!(
            context_of(c.put_request(key.clone(), None, own.clone(), None)),
            own
        );
        // In a siblings bucket a blind write stays blind.
        c.lww = false;
        assert_eq!(
            context_of(c.put_request(key, Some(vec![1]), None, None)),
            None
        );
    }
}
