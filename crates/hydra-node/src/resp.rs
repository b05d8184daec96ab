//! The Redis-protocol front end (DESIGN.md "Redis protocol"): RESP2, and RESP3 after
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
//! (`GETDEL`, `DEL`, `SET ... GET|KEEPTTL`, `EXPIRE`, `PERSIST`): not atomic. In an `lww`
//! bucket the write is simply the newer one, so `EXPIRE` racing with a `SET` on another
//! connection may write back the value it read over that `SET` (last writer wins); in a
//! `siblings` bucket the context keeps a concurrent write as a sibling. `SET ... NX|XX` and
//! `SETNX` need compare-and-set (Paxos), which Hydra does not have yet: they are refused
//! with an error that says so, as are `MULTI`/`EXEC`.

use crate::driver::{CoreHandle, Reply, wall_ms};
use crate::http::{receipt_json, record};
use crate::metrics::Metrics;
use futures_util::future::join_all;
use hydra_core::bucket::Consistency;
use hydra_core::key::{BucketName, ObjectKey};
use hydra_core::message::{
    ClientError, ClientRequest, ClientResponse, ErrorCode, Receipt, WriteRequest,
};
use hydra_core::version::{Context, Sibling, VersionVector};
use hydra_resp::{Command, Limits, Protocol, Value, parse_command};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
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
            let msg = Value::error(format!(
                "ERR max number of clients reached ({}; limits.resp_connections_max)",
                state.connections_max
            ));
            let _ = stream.write_all(&msg.to_bytes(Protocol::Resp2)).await;
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
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
    w: Option<Consistency>,
    name: Option<Vec<u8>>,
    lib_name: Option<Vec<u8>>,
    lib_ver: Option<Vec<u8>>,
    last_receipt: Option<Receipt>,
}

/// What the loop does after a command.
enum Flow {
    Continue,
    Close,
}

/// A command that goes to the core on its own key and may be sent together with others.
enum Fast {
    Get(ObjectKey),
    Set(ObjectKey, Vec<u8>),
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
            w: None,
            name: None,
            lib_name: None,
            lib_ver: None,
            last_receipt: None,
        }
    }

    async fn run(&mut self, mut stream: TcpStream) -> std::io::Result<()> {
        let limits = self.state.limits();
        let mut input: Vec<u8> = Vec::with_capacity(READ_CHUNK);
        let mut out: Vec<u8> = Vec::with_capacity(READ_CHUNK);
        loop {
            // Take every complete command already buffered (up to the pipeline bound).
            let mut commands = Vec::new();
            let mut used = 0;
            let mut protocol_error = None;
            let mut bound_hit = false;
            loop {
                if commands.len() >= self.state.pipeline_commands_max {
                    bound_hit = true;
                    break;
                }
                match parse_command(&input[used..], &limits) {
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
            if stream.read_buf(&mut input).await? == 0 {
                return Ok(());
            }
        }
    }

    /// Runs commands in order, sending runs of fast commands on distinct keys together.
    /// Replies go to `out`, which is written to `stream` whenever it grows large.
    async fn run_batch(
        &mut self,
        commands: Vec<Command>,
        out: &mut Vec<u8>,
        stream: &mut TcpStream,
    ) -> std::io::Result<Flow> {
        let mut group: Vec<Fast> = Vec::new();
        for cmd in commands {
            if out.len() > OUT_FLUSH_BYTES {
                stream.write_all(out).await?;
                out.clear();
            }
            match self.fast(cmd) {
                Ok(f) => {
                    let key = match &f {
                        Fast::Get(k) | Fast::Set(k, _) => k,
                    };
                    if group.iter().any(|g| match g {
                        Fast::Get(k) | Fast::Set(k, _) => k == key,
                    }) {
                        self.flush_group(&mut group, out).await;
                    }
                    group.push(f);
                }
                Err(cmd) => {
                    self.flush_group(&mut group, out).await;
                    let (reply, flow) = self.execute(cmd).await;
                    reply.encode(self.protocol, out);
                    if let Flow::Close = flow {
                        return Ok(Flow::Close);
                    }
                }
            }
        }
        self.flush_group(&mut group, out).await;
        Ok(Flow::Continue)
    }

    /// A plain `GET key` or `SET key value` with valid arguments, which can share a round
    /// (the value moves, not copied); anything else comes back as it was.
    fn fast(&self, mut cmd: Command) -> Result<Fast, Command> {
        let is = |name: &[u8], len: usize| cmd.len() == len && cmd[0].eq_ignore_ascii_case(name);
        let (get, set) = (is(b"get", 2), is(b"set", 3));
        if !get && !set {
            return Err(cmd);
        }
        let Ok(key) = self.key(&cmd[1]) else {
            return Err(cmd);
        };
        if get {
            return Ok(Fast::Get(key));
        }
        let value = cmd.pop().unwrap_or_default();
        Ok(Fast::Set(key, value))
    }

    async fn flush_group(&mut self, group: &mut Vec<Fast>, out: &mut Vec<u8>) {
        if group.is_empty() {
            return;
        }
        let requests: Vec<ClientRequest> = group
            .drain(..)
            .map(|f| match f {
                Fast::Get(key) => self.get_request(key),
                Fast::Set(key, value) => self.put_request(key, Some(value), None, None),
            })
            .collect();
        for result in self.call_all(requests).await {
            let reply = match result {
                Err(e) => error_value(&e),
                Ok(resp @ ClientResponse::Read { .. }) => match take_newest(resp).1 {
                    Some(s) => Value::Bulk(s.value),
                    None => Value::Null,
                },
                Ok(_) => Value::ok(),
            };
            reply.encode(self.protocol, out);
        }
    }

    /// Sends requests to the core, at most [`KEYS_IN_FLIGHT_MAX`] at a time (so one command
    /// or pipeline cannot fill the core's queue); results in order, the last receipt kept.
    async fn call_all(&mut self, requests: Vec<ClientRequest>) -> Vec<Reply> {
        let mut results = Vec::with_capacity(requests.len());
        let mut requests = requests.into_iter().peekable();
        while requests.peek().is_some() {
            let chunk: Vec<ClientRequest> = requests.by_ref().take(KEYS_IN_FLIGHT_MAX).collect();
            let this = &*self;
            let done = join_all(chunk.into_iter().map(|r| this.call(r))).await;
            for (result, receipt) in done {
                if receipt.is_some() {
                    self.last_receipt = receipt;
                }
                results.push(result);
            }
        }
        results
    }

    fn key(&self, key: &[u8]) -> Result<ObjectKey, Value> {
        ObjectKey::new(self.bucket.clone(), key)
            .map_err(|e| Value::error(format!("INVALID_KEY {e}")))
    }

    fn get_request(&self, key: ObjectKey) -> ClientRequest {
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
        ttl_ms: Option<u64>,
    ) -> ClientRequest {
        ClientRequest::Put(WriteRequest {
            key,
            content_type: if value.is_some() {
                "application/octet-stream".into()
            } else {
                String::new()
            },
            value,
            context,
            w: self.w,
            timeout_ms: None,
            sloppy: None,
            ttl_ms,
        })
    }

    /// Sends a request to the core, records its metrics, and returns the reply with its
    /// receipt (or the receipt of the failure).
    async fn call(&self, request: ClientRequest) -> (Reply, Option<Receipt>) {
        let started = Instant::now();
        let (op, level) = match &request {
            ClientRequest::Get { r, .. } => ("get", *r),
            ClientRequest::Put(w) if w.value.is_some() => ("put", w.w),
            ClientRequest::Put(w) => ("delete", w.w),
            ClientRequest::SetBucket { .. } => ("bucket", None),
        };
        let result = self.state.core.request(request).await;
        record(&self.state.metrics, op, level, started, &result);
        let receipt = match &result {
            Ok(r) => r.receipt().cloned(),
            Err(e) => e.receipt.clone(),
        };
        (result, receipt)
    }

    /// Like [`Connection::call`], keeping the receipt as the connection's last.
    async fn request(&mut self, request: ClientRequest) -> Result<ClientResponse, Value> {
        let (result, receipt) = self.call(request).await;
        if receipt.is_some() {
            self.last_receipt = receipt;
        }
        result.map_err(|e| error_value(&e))
    }

    /// Reads a key: its context and its visible value (the newest sibling), if any.
    async fn read(&mut self, key: &ObjectKey) -> Result<(VersionVector, Option<Sibling>), Value> {
        match take_newest(self.request(self.get_request(key.clone())).await?) {
            (Some(context), sibling) => Ok((context, sibling)),
            (None, _) => Err(Value::error("ERR unexpected reply to a read")),
        }
    }

    async fn write(
        &mut self,
        key: ObjectKey,
        value: Option<Vec<u8>>,
        context: Option<VersionVector>,
        ttl_ms: Option<u64>,
    ) -> Result<VersionVector, Value> {
        match self
            .request(self.put_request(key, value, context, ttl_ms))
            .await?
        {
            ClientResponse::Written { context, .. } => Ok(context),
            _ => Err(Value::error("ERR unexpected reply to a write")),
        }
    }

    async fn execute(&mut self, cmd: Command) -> (Value, Flow) {
        let name = String::from_utf8_lossy(&cmd[0]).to_ascii_lowercase();
        let args = &cmd[1..];
        if let Some(spec) = COMMANDS.iter().find(|c| c.name == name) {
            let ok = if spec.arity >= 0 {
                cmd.len() == spec.arity as usize
            } else {
                cmd.len() >= spec.arity.unsigned_abs() as usize
            };
            if !ok {
                return (
                    Value::error(format!(
                        "ERR wrong number of arguments for '{name}' command"
                    )),
                    Flow::Continue,
                );
            }
        }
        let reply = match name.as_str() {
            "quit" => return (Value::ok(), Flow::Close),
            "ping" => match args.first() {
                None => Value::Simple("PONG".into()),
                Some(m) => Value::Bulk(m.clone()),
            },
            "echo" => Value::Bulk(args[0].clone()),
            "hello" => self.hello(args),
            "auth" => auth(args),
            "reset" => {
                let state = self.state.clone();
                let id = self.id;
                *self = Connection::new(state);
                self.id = id;
                Value::Simple("RESET".into())
            }
            "select" => match args[0].as_slice() {
                b"0" => Value::ok(),
                _ => Value::error(
                    "ERR DB index is out of range (Hydra has one database; use HYDRA.BUCKET to pick a bucket)",
                ),
            },
            "client" => self.client(args),
            "command" => command_reply(args),
            "info" => self.info(args).await,
            "config" => self.config(args),
            "dbsize" => match self.state.core.status().await {
                Some((status, _)) => Value::Integer(status.objects as i64),
                None => Value::error("OVERLOADED the node did not answer"),
            },
            "multi" | "exec" | "discard" | "watch" | "unwatch" => Value::error(format!(
                "ERR {} is not supported: Hydra has no multi-key transactions (keys live on \
                 different replicas); send commands without MULTI/EXEC, e.g. \
                 pipeline(transaction=False) in redis-py",
                name.to_uppercase()
            )),
            "setnx" => Value::error(cas_missing("SETNX")),
            "get" => self.get(&args[0]).await,
            "set" => self.set(args).await,
            "getdel" => self.getdel(&args[0]).await,
            "del" | "unlink" => self.del(args).await,
            "exists" => self.exists(args).await,
            "mget" => self.mget(args).await,
            "mset" => self.mset(args).await,
            "strlen" => match self.key(&args[0]) {
                Err(e) => e,
                Ok(key) => match self.read(&key).await {
                    Ok((_, s)) => Value::Integer(s.map_or(0, |s| s.value.len() as i64)),
                    Err(e) => e,
                },
            },
            "expire" | "pexpire" => self.expire(args, name == "pexpire").await,
            "ttl" | "pttl" => self.ttl(&args[0], name == "pttl").await,
            "persist" => self.persist(&args[0]).await,
            "hydra.bucket" => self.select_bucket(args),
            "hydra.consistency" => self.consistency(args),
            "hydra.getall" => self.getall(&args[0]).await,
            "hydra.put" => self.context_put(args).await,
            "hydra.del" => self.context_del(args).await,
            "hydra.receipt" => match &self.last_receipt {
                Some(r) => Value::Bulk(receipt_json(r).to_string().into_bytes()),
                None => Value::Null,
            },
            _ => {
                let shown: Vec<String> = args
                    .iter()
                    .take(8)
                    .map(|a| format!("'{}' ", String::from_utf8_lossy(&a[..a.len().min(128)])))
                    .collect();
                Value::error(format!(
                    "ERR unknown command '{}', with args beginning with: {}",
                    String::from_utf8_lossy(&cmd[0][..cmd[0].len().min(128)]),
                    shown.concat()
                ))
            }
        };
        (reply, Flow::Continue)
    }

    fn hello(&mut self, args: &[Vec<u8>]) -> Value {
        // Check everything before changing anything (as Redis does).
        let mut protocol = self.protocol;
        let mut name = None;
        let mut i = 0;
        if let Some(v) = args.first() {
            match v.as_slice() {
                b"2" => protocol = Protocol::Resp2,
                b"3" => protocol = Protocol::Resp3,
                _ => {
                    if std::str::from_utf8(v)
                        .ok()
                        .and_then(|s| s.parse::<i64>().ok())
                        .is_none()
                    {
                        return Value::error(
                            "ERR Protocol version is not an integer or out of range",
                        );
                    }
                    return Value::error("NOPROTO unsupported protocol version");
                }
            }
            i = 1;
        }
        while i < args.len() {
            let opt = args[i].to_ascii_lowercase();
            match opt.as_slice() {
                b"auth" if i + 2 < args.len() => {
                    if let Value::Error(e) = auth(&args[i + 1..i + 3]) {
                        return Value::Error(e);
                    }
                    i += 3;
                }
                b"setname" if i + 1 < args.len() => {
                    name = Some(args[i + 1].clone());
                    i += 2;
                }
                _ => {
                    return Value::error(format!(
                        "ERR Syntax error in HELLO option '{}'",
                        String::from_utf8_lossy(&args[i])
                    ));
                }
            }
        }
        self.protocol = protocol;
        if name.is_some() {
            self.name = name;
        }
        Value::Map(vec![
            (Value::bulk("server"), Value::bulk("redis")),
            (Value::bulk("version"), Value::bulk(REDIS_COMPAT_VERSION)),
            (
                Value::bulk("proto"),
                Value::Integer(if self.protocol == Protocol::Resp3 {
                    3
                } else {
                    2
                }),
            ),
            (Value::bulk("id"), Value::Integer(self.id as i64)),
            (Value::bulk("mode"), Value::bulk("standalone")),
            (Value::bulk("role"), Value::bulk("master")),
            (Value::bulk("modules"), Value::Array(vec![])),
            (
                Value::bulk("hydra_version"),
                Value::bulk(env!("CARGO_PKG_VERSION")),
            ),
            (
                Value::bulk("hydra_node"),
                Value::Integer(self.state.node_id as i64),
            ),
        ])
    }

    fn client(&mut self, args: &[Vec<u8>]) -> Value {
        let sub = args[0].to_ascii_lowercase();
        match (sub.as_slice(), args.len()) {
            (b"setname", 2) => {
                if args[1].iter().any(|b| *b <= b' ' || *b > b'~') {
                    return Value::error(
                        "ERR Client names cannot contain spaces, newlines or special characters.",
                    );
                }
                self.name = (!args[1].is_empty()).then(|| args[1].clone());
                Value::ok()
            }
            (b"getname", 1) => match &self.name {
                Some(n) => Value::Bulk(n.clone()),
                None => Value::Null,
            },
            (b"id", 1) => Value::Integer(self.id as i64),
            (b"setinfo", 3) => {
                match args[1].to_ascii_lowercase().as_slice() {
                    b"lib-name" => self.lib_name = Some(args[2].clone()),
                    b"lib-ver" => self.lib_ver = Some(args[2].clone()),
                    _ => {
                        return Value::error(format!(
                            "ERR Unrecognized option '{}'",
                            String::from_utf8_lossy(&args[1])
                        ));
                    }
                }
                Value::ok()
            }
            (b"info", 1) => Value::Verbatim("txt".into(), self.client_info()),
            (b"setname" | b"getname" | b"id" | b"setinfo" | b"info", _) => Value::error(format!(
                "ERR wrong number of arguments for 'client|{}' command",
                String::from_utf8_lossy(&sub)
            )),
            _ => Value::error(format!(
                "ERR unknown subcommand '{}'. Try CLIENT HELP. Hydra supports CLIENT SETNAME, \
                 GETNAME, ID, SETINFO and INFO.",
                String::from_utf8_lossy(&args[0])
            )),
        }
    }

    fn client_info(&self) -> String {
        let text = |v: &Option<Vec<u8>>| {
            v.as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default()
                .to_string()
        };
        format!(
            "id={} name={} db=0 resp={} lib-name={} lib-ver={} bucket={}\n",
            self.id,
            text(&self.name),
            if self.protocol == Protocol::Resp3 {
                3
            } else {
                2
            },
            text(&self.lib_name),
            text(&self.lib_ver),
            self.bucket.as_str()
        )
    }

    async fn info(&self, args: &[Vec<u8>]) -> Value {
        let objects = self.state.core.status().await.map_or(0, |(s, _)| s.objects);
        let wanted: Vec<String> = args
            .iter()
            .map(|a| String::from_utf8_lossy(a).to_ascii_lowercase())
            .collect();
        let all = wanted.is_empty()
            || wanted
                .iter()
                .any(|w| w == "all" || w == "everything" || w == "default");
        let mut text = String::new();
        let mut section = |name: &str, body: String| {
            if all || wanted.iter().any(|w| w == &name.to_ascii_lowercase()) {
                text.push_str(&format!("# {name}\r\n{body}\r\n"));
            }
        };
        section(
            "Server",
            format!(
                "redis_version:{REDIS_COMPAT_VERSION}\r\nredis_mode:standalone\r\n\
                 hydra_version:{}\r\nhydra_node:{}\r\nos:{}\r\narch_bits:64\r\n\
                 process_id:{}\r\ntcp_port:{}\r\nuptime_in_seconds:{}\r\n",
                env!("CARGO_PKG_VERSION"),
                self.state.node_id,
                std::env::consts::OS,
                std::process::id(),
                self.state.tcp_port,
                self.state.started.elapsed().as_secs()
            ),
        );
        section(
            "Clients",
            format!(
                "connected_clients:{}\r\nmaxclients:{}\r\n",
                self.state.connected.load(Ordering::Relaxed),
                self.state.connections_max
            ),
        );
        section(
            "Persistence",
            format!(
                "loading:0\r\naof_enabled:{}\r\nhydra_durability:{}\r\n",
                u8::from(self.state.durability != "none"),
                self.state.durability
            ),
        );
        section(
            "Replication",
            "role:master\r\nconnected_slaves:0\r\n".into(),
        );
        section(
            "Keyspace",
            format!("db0:keys={objects},expires=0,avg_ttl=0\r\n"),
        );
        Value::Verbatim("txt".into(), text)
    }

    fn config(&self, args: &[Vec<u8>]) -> Value {
        let sub = args[0].to_ascii_lowercase();
        match sub.as_slice() {
            b"get" if args.len() >= 2 => {
                let appendfsync = match self.state.durability.as_str() {
                    "fsync" => "always",
                    "none" => "no",
                    _ => "everysec",
                };
                let table = [
                    ("save", String::new()),
                    (
                        "appendonly",
                        if self.state.durability == "none" {
                            "no"
                        } else {
                            "yes"
                        }
                        .to_string(),
                    ),
                    ("appendfsync", appendfsync.to_string()),
                    ("databases", "1".to_string()),
                    ("maxclients", self.state.connections_max.to_string()),
                    (
                        "proto-max-bulk-len",
                        self.state.limits().bulk_bytes_max.to_string(),
                    ),
                    ("maxmemory", "0".to_string()),
                    ("timeout", "0".to_string()),
                ];
                let mut pairs = Vec::new();
                for (name, value) in table {
                    if args[1..]
                        .iter()
                        .any(|p| glob_match(&p.to_ascii_lowercase(), name.as_bytes()))
                    {
                        pairs.push((Value::bulk(name), Value::bulk(value)));
                    }
                }
                Value::Map(pairs)
            }
            b"set" | b"resetstat" | b"rewrite" => Value::error(
                "ERR CONFIG SET/RESETSTAT/REWRITE are not supported: a Hydra node is configured \
                 by its TOML file (see config.example.toml)",
            ),
            _ => Value::error(format!(
                "ERR unknown subcommand or wrong number of arguments for '{}'. Try CONFIG GET.",
                String::from_utf8_lossy(&args[0])
            )),
        }
    }

    async fn get(&mut self, key: &[u8]) -> Value {
        let key = match self.key(key) {
            Ok(k) => k,
            Err(e) => return e,
        };
        match self.read(&key).await {
            Ok((_, Some(s))) => Value::Bulk(s.value),
            Ok((_, None)) => Value::Null,
            Err(e) => e,
        }
    }

    async fn set(&mut self, args: &[Vec<u8>]) -> Value {
        let key = match self.key(&args[0]) {
            Ok(k) => k,
            Err(e) => return e,
        };
        let value = args[1].clone();
        let mut ttl_ms: Option<u64> = None;
        let mut keep_ttl = false;
        let mut want_old = false;
        let mut i = 2;
        let syntax = || Value::error("ERR syntax error");
        while i < args.len() {
            let opt = args[i].to_ascii_lowercase();
            match opt.as_slice() {
                b"nx" | b"xx" => {
                    return Value::error(cas_missing(&format!(
                        "SET ... {}",
                        String::from_utf8_lossy(&opt).to_uppercase()
                    )));
                }
                b"ifeq" => return Value::error(cas_missing("SET ... IFEQ")),
                b"get" => want_old = true,
                b"keepttl" if ttl_ms.is_none() => keep_ttl = true,
                b"ex" | b"px" | b"exat" | b"pxat" if ttl_ms.is_none() && !keep_ttl => {
                    let Some(n) = args.get(i + 1) else {
                        return syntax();
                    };
                    let Some(n) = std::str::from_utf8(n)
                        .ok()
                        .and_then(|s| s.parse::<i64>().ok())
                    else {
                        return Value::error("ERR value is not an integer or out of range");
                    };
                    if n <= 0 {
                        return Value::error("ERR invalid expire time in 'set' command");
                    }
                    let n = n as u64;
                    let now = wall_ms();
                    let ms = match opt.as_slice() {
                        b"ex" => n.saturating_mul(1000),
                        b"px" => n,
                        b"exat" => n.saturating_mul(1000).saturating_sub(now),
                        _ => n.saturating_sub(now),
                    };
                    // An absolute time already past: Redis deletes the key; so do we.
                    ttl_ms = Some(ms);
                    i += 1;
                }
                _ => return syntax(),
            }
            i += 1;
        }
        let old = if want_old || keep_ttl {
            match self.read(&key).await {
                Ok(r) => Some(r),
                Err(e) => return e,
            }
        } else {
            None
        };
        if keep_ttl
            && let Some((_, Some(s))) = &old
            && let Some(at) = s.expires_at
        {
            ttl_ms = Some(at.saturating_sub(wall_ms()).max(1));
        }
        let context = old.as_ref().map(|(c, _)| c.clone());
        let result = if ttl_ms == Some(0) {
            self.write(key, None, context, None).await
        } else {
            self.write(key, Some(value), context, ttl_ms).await
        };
        match (result, want_old) {
            (Err(e), _) => e,
            (Ok(_), false) => Value::ok(),
            (Ok(_), true) => match old {
                Some((_, Some(s))) => Value::Bulk(s.value),
                _ => Value::Null,
            },
        }
    }

    async fn getdel(&mut self, key: &[u8]) -> Value {
        let key = match self.key(key) {
            Ok(k) => k,
            Err(e) => return e,
        };
        match self.read(&key).await {
            Err(e) => e,
            Ok((_, None)) => Value::Null,
            Ok((context, Some(s))) => match self.write(key, None, Some(context), None).await {
                Ok(_) => Value::Bulk(s.value),
                Err(e) => e,
            },
        }
    }

    async fn del(&mut self, args: &[Vec<u8>]) -> Value {
        let mut deleted = 0;
        for k in args {
            let key = match self.key(k) {
                Ok(k) => k,
                Err(e) => return e,
            };
            match self.read(&key).await {
                Err(e) => return e,
                Ok((_, None)) => {}
                Ok((context, Some(_))) => match self.write(key, None, Some(context), None).await {
                    Ok(_) => deleted += 1,
                    Err(e) => return e,
                },
            }
        }
        Value::Integer(deleted)
    }

    /// Reads keys concurrently; each result is the key's newest sibling (or none).
    async fn read_many(&mut self, keys: &[Vec<u8>]) -> Result<Vec<Option<Sibling>>, Value> {
        let mut requests = Vec::with_capacity(keys.len());
        for k in keys {
            requests.push(self.get_request(self.key(k)?));
        }
        self.call_all(requests)
            .await
            .into_iter()
            .map(|r| {
                r.map(|resp| take_newest(resp).1)
                    .map_err(|e| error_value(&e))
            })
            .collect()
    }

    async fn exists(&mut self, args: &[Vec<u8>]) -> Value {
        match self.read_many(args).await {
            Ok(v) => Value::Integer(v.iter().filter(|s| s.is_some()).count() as i64),
            Err(e) => e,
        }
    }

    async fn mget(&mut self, args: &[Vec<u8>]) -> Value {
        match self.read_many(args).await {
            Ok(v) => Value::Array(
                v.into_iter()
                    .map(|s| s.map_or(Value::Null, |s| Value::Bulk(s.value)))
                    .collect(),
            ),
            Err(e) => e,
        }
    }

    async fn mset(&mut self, args: &[Vec<u8>]) -> Value {
        if !args.len().is_multiple_of(2) {
            return Value::error("ERR wrong number of arguments for 'mset' command");
        }
        let mut requests = Vec::with_capacity(args.len() / 2);
        for pair in args.chunks(2) {
            match self.key(&pair[0]) {
                Ok(k) => requests.push(self.put_request(k, Some(pair[1].clone()), None, None)),
                Err(e) => return e,
            }
        }
        match self
            .call_all(requests)
            .await
            .into_iter()
            .find_map(Result::err)
        {
            Some(e) => error_value(&e),
            None => Value::ok(),
        }
    }

    async fn expire(&mut self, args: &[Vec<u8>], millis: bool) -> Value {
        let key = match self.key(&args[0]) {
            Ok(k) => k,
            Err(e) => return e,
        };
        let Some(n) = std::str::from_utf8(&args[1])
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
        else {
            return Value::error("ERR value is not an integer or out of range");
        };
        let ms = if millis { n } else { n.saturating_mul(1000) };
        let flag = match args.get(2).map(|a| a.to_ascii_lowercase()) {
            None => None,
            Some(f) if args.len() == 3 && matches!(f.as_slice(), b"nx" | b"xx" | b"gt" | b"lt") => {
                Some(f)
            }
            Some(_) => return Value::error("ERR Unsupported option"),
        };
        let (context, sibling) = match self.read(&key).await {
            Ok((_, None)) => return Value::Integer(0),
            Ok((c, Some(s))) => (c, s),
            Err(e) => return e,
        };
        let now = wall_ms() as i64;
        let current = sibling.expires_at.map(|at| at as i64 - now);
        let applies = match flag.as_deref() {
            None => true,
            Some(b"nx") => current.is_none(),
            Some(b"xx") => current.is_some(),
            // No expiry counts as an infinite one, as in Redis.
            Some(b"gt") => current.is_some_and(|c| ms > c),
            Some(_) => current.is_none_or(|c| ms < c),
        };
        if !applies {
            return Value::Integer(0);
        }
        let result = if ms <= 0 {
            self.write(key, None, Some(context), None).await
        } else {
            self.write(key, Some(sibling.value), Some(context), Some(ms as u64))
                .await
        };
        match result {
            Ok(_) => Value::Integer(1),
            Err(e) => e,
        }
    }

    async fn ttl(&mut self, key: &[u8], millis: bool) -> Value {
        let key = match self.key(key) {
            Ok(k) => k,
            Err(e) => return e,
        };
        match self.read(&key).await {
            Err(e) => e,
            Ok((_, None)) => Value::Integer(-2),
            Ok((_, Some(s))) => match s.expires_at {
                None => Value::Integer(-1),
                Some(at) => {
                    let left = at.saturating_sub(wall_ms()) as i64;
                    Value::Integer(if millis { left } else { (left + 500) / 1000 })
                }
            },
        }
    }

    async fn persist(&mut self, key: &[u8]) -> Value {
        let key = match self.key(key) {
            Ok(k) => k,
            Err(e) => return e,
        };
        match self.read(&key).await {
            Err(e) => e,
            Ok((context, Some(s))) if s.expires_at.is_some() => {
                match self.write(key, Some(s.value), Some(context), None).await {
                    Ok(_) => Value::Integer(1),
                    Err(e) => e,
                }
            }
            Ok(_) => Value::Integer(0),
        }
    }

    fn select_bucket(&mut self, args: &[Vec<u8>]) -> Value {
        match args.first() {
            None => Value::bulk(self.bucket.as_str()),
            Some(name) => match BucketName::new(&String::from_utf8_lossy(name)) {
                Ok(b) => {
                    self.bucket = b;
                    Value::ok()
                }
                Err(e) => Value::error(format!("INVALID_BUCKET {e}")),
            },
        }
    }

    fn consistency(&mut self, args: &[Vec<u8>]) -> Value {
        let shown = |c: Option<Consistency>| c.map_or("default".to_string(), |c| c.to_string());
        match args.len() {
            0 => Value::Map(vec![
                (Value::bulk("r"), Value::bulk(shown(self.r))),
                (Value::bulk("w"), Value::bulk(shown(self.w))),
            ]),
            2 => {
                let parse = |v: &[u8], what: &str| -> Result<Option<Consistency>, Value> {
                    let text = String::from_utf8_lossy(v).to_ascii_lowercase();
                    if text == "default" {
                        return Ok(None);
                    }
                    text.parse()
                        .map(Some)
                        .map_err(|e: hydra_core::bucket::ConsistencyError| {
                            Value::error(format!("INVALID_CONSISTENCY {what}: {e}"))
                        })
                };
                match (parse(&args[0], "r"), parse(&args[1], "w")) {
                    (Ok(r), Ok(w)) => {
                        self.r = r;
                        self.w = w;
                        Value::ok()
                    }
                    (Err(e), _) | (_, Err(e)) => e,
                }
            }
            _ => Value::error(
                "ERR wrong number of arguments for 'hydra.consistency' command (give none, or R and W)",
            ),
        }
    }

    async fn getall(&mut self, key: &[u8]) -> Value {
        let key = match self.key(key) {
            Ok(k) => k,
            Err(e) => return e,
        };
        match self.request(self.get_request(key)).await {
            Err(e) => e,
            Ok(ClientResponse::Read {
                context, siblings, ..
            }) => Value::Map(vec![
                (
                    Value::bulk("context"),
                    Value::bulk(Context(context).encode()),
                ),
                (
                    Value::bulk("siblings"),
                    Value::Array(
                        siblings
                            .iter()
                            .map(|s| {
                                Value::Map(vec![
                                    (Value::bulk("value"), Value::Bulk(s.value.clone())),
                                    (
                                        Value::bulk("content_type"),
                                        Value::bulk(s.content_type.clone()),
                                    ),
                                    (
                                        Value::bulk("last_modified"),
                                        Value::Integer(s.timestamp.physical_ms() as i64),
                                    ),
                                ])
                            })
                            .collect(),
                    ),
                ),
            ]),
            Ok(_) => Value::error("ERR unexpected reply to a read"),
        }
    }

    fn context_arg(token: &[u8]) -> Result<Option<VersionVector>, Value> {
        if token.is_empty() {
            return Ok(None);
        }
        let text = std::str::from_utf8(token)
            .map_err(|_| Value::error("INVALID_CONTEXT the context is not ASCII"))?;
        Context::decode(text)
            .map(|c| Some(c.0))
            .map_err(|e| Value::error(format!("INVALID_CONTEXT {e}")))
    }

    /// `HYDRA.PUT key value context [EX s|PX ms]`: a write that supersedes what the context
    /// saw (an empty context is a blind write); replies with the new context.
    async fn context_put(&mut self, args: &[Vec<u8>]) -> Value {
        let key = match self.key(&args[0]) {
            Ok(k) => k,
            Err(e) => return e,
        };
        let context = match Self::context_arg(&args[2]) {
            Ok(c) => c,
            Err(e) => return e,
        };
        let ttl_ms = match args.len() {
            3 => None,
            5 => {
                let unit = args[3].to_ascii_lowercase();
                let n = std::str::from_utf8(&args[4])
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
                    .filter(|n| *n > 0);
                match (unit.as_slice(), n) {
                    (b"ex", Some(n)) => Some(n.saturating_mul(1000)),
                    (b"px", Some(n)) => Some(n),
                    _ => {
                        return Value::error(
                            "ERR syntax error: expected EX seconds or PX milliseconds, positive",
                        );
                    }
                }
            }
            _ => {
                return Value::error(
                    "ERR syntax error: HYDRA.PUT key value context [EX seconds|PX milliseconds]",
                );
            }
        };
        match self
            .write(key, Some(args[1].clone()), context, ttl_ms)
            .await
        {
            Ok(c) => Value::bulk(Context(c).encode()),
            Err(e) => e,
        }
    }

    /// `HYDRA.DEL key context`: a delete of what the context saw; replies with the new context.
    async fn context_del(&mut self, args: &[Vec<u8>]) -> Value {
        let key = match self.key(&args[0]) {
            Ok(k) => k,
            Err(e) => return e,
        };
        let context = match Self::context_arg(&args[1]) {
            Ok(c) => c,
            Err(e) => return e,
        };
        match self.write(key, None, context, None).await {
            Ok(c) => Value::bulk(Context(c).encode()),
            Err(e) => e,
        }
    }
}

fn default_bucket() -> BucketName {
    BucketName::new(DEFAULT_BUCKET).expect("the default bucket name is valid")
}

fn cas_missing(what: &str) -> String {
    format!(
        "ERR {what} needs compare-and-set (Paxos), which this version of Hydra does not have \
         yet; it is refused rather than run without atomicity"
    )
}

/// A read's context and the sibling a plain `GET` returns: the newest by timestamp, ties
/// broken by the bytes, so every node picks the same one. Moved out, not copied. The context
/// is `None` for a reply that is not a read.
fn take_newest(resp: ClientResponse) -> (Option<VersionVector>, Option<Sibling>) {
    match resp {
        ClientResponse::Read {
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
    let mut text = format!("{} {}", e.code.as_str().to_ascii_uppercase(), e.message);
    if let Some(r) = &e.receipt
        && e.code == ErrorCode::QuorumNotReached
    {
        text.push_str(&format!(" (needed {}, acked {})", r.needed, r.acked()));
    }
    Value::Error(text)
}

/// Redis-style glob match (`*`, `?`) of a CONFIG GET pattern against a parameter name:
/// iterative, linear in practice (one backtrack point), bounded pattern length.
fn glob_match(pattern: &[u8], name: &[u8]) -> bool {
    if pattern.len() > PATTERN_BYTES_MAX {
        return false;
    }
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == b'?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                // Let the last `*` take one more byte, and retry from there.
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// `AUTH [user] password`: Hydra has no users or passwords yet (as a Redis whose default
/// user is `nopass`): `AUTH default <anything>` succeeds, a bare password is an error.
fn auth(args: &[Vec<u8>]) -> Value {
    match args {
        [user, _] if user.as_slice() == b"default" => Value::ok(),
        [_, _] => Value::error("WRONGPASS invalid username-password pair or user is disabled."),
        _ => Value::error(
            "ERR AUTH <password> called without any password configured for the default user. \
             Are you sure your configuration is correct?",
        ),
    }
}

/// One row of the command table (`COMMAND`'s reply and the arity check).
struct Spec {
    name: &'static str,
    /// Arguments including the name; negative: at least that many.
    arity: i64,
    flags: &'static [&'static str],
    first_key: i64,
    last_key: i64,
    step: i64,
}

const fn spec(
    name: &'static str,
    arity: i64,
    flags: &'static [&'static str],
    keys: (i64, i64, i64),
) -> Spec {
    Spec {
        name,
        arity,
        flags,
        first_key: keys.0,
        last_key: keys.1,
        step: keys.2,
    }
}

const R: &[&str] = &["readonly", "fast"];
const W: &[&str] = &["write"];
const C: &[&str] = &["fast", "loading", "stale"];
const NOKEY: (i64, i64, i64) = (0, 0, 0);

/// Every command this front end knows.
const COMMANDS: &[Spec] = &[
    spec("ping", -1, C, NOKEY),
    spec("echo", 2, C, NOKEY),
    spec("hello", -1, C, NOKEY),
    spec("auth", -2, C, NOKEY),
    spec("quit", -1, C, NOKEY),
    spec("reset", 1, C, NOKEY),
    spec("select", 2, C, NOKEY),
    spec("client", -2, C, NOKEY),
    spec("command", -1, C, NOKEY),
    spec("info", -1, C, NOKEY),
    spec("config", -2, C, NOKEY),
    spec("dbsize", 1, R, NOKEY),
    spec("multi", 1, C, NOKEY),
    spec("exec", 1, C, NOKEY),
    spec("discard", 1, C, NOKEY),
    spec("watch", -2, C, (1, -1, 1)),
    spec("unwatch", 1, C, NOKEY),
    spec("get", 2, R, (1, 1, 1)),
    spec("set", -3, W, (1, 1, 1)),
    spec("setnx", 3, W, (1, 1, 1)),
    spec("getdel", 2, W, (1, 1, 1)),
    spec("del", -2, W, (1, -1, 1)),
    spec("unlink", -2, W, (1, -1, 1)),
    spec("exists", -2, R, (1, -1, 1)),
    spec("mget", -2, R, (1, -1, 1)),
    spec("mset", -3, W, (1, -1, 2)),
    spec("strlen", 2, R, (1, 1, 1)),
    spec("expire", -3, W, (1, 1, 1)),
    spec("pexpire", -3, W, (1, 1, 1)),
    spec("ttl", 2, R, (1, 1, 1)),
    spec("pttl", 2, R, (1, 1, 1)),
    spec("persist", 2, W, (1, 1, 1)),
    spec("hydra.bucket", -1, C, NOKEY),
    spec("hydra.consistency", -1, C, NOKEY),
    spec("hydra.getall", 2, R, (1, 1, 1)),
    spec("hydra.put", -4, W, (1, 1, 1)),
    spec("hydra.del", 3, W, (1, 1, 1)),
    spec("hydra.receipt", 1, C, NOKEY),
];

fn command_entry(s: &Spec) -> Value {
    Value::Array(vec![
        Value::bulk(s.name),
        Value::Integer(s.arity),
        Value::Set(s.flags.iter().map(|f| Value::Simple((*f).into())).collect()),
        Value::Integer(s.first_key),
        Value::Integer(s.last_key),
        Value::Integer(s.step),
        Value::Set(vec![]),
        Value::Set(vec![]),
        Value::Array(vec![]),
        Value::Array(vec![]),
    ])
}

fn command_reply(args: &[Vec<u8>]) -> Value {
    let sub = args.first().map(|a| a.to_ascii_lowercase());
    match sub.as_deref() {
        None => Value::Array(COMMANDS.iter().map(command_entry).collect()),
        Some(b"count") => Value::Integer(COMMANDS.len() as i64),
        Some(b"info") => Value::Array(
            args[1..]
                .iter()
                .map(|n| {
                    let n = n.to_ascii_lowercase();
                    COMMANDS
                        .iter()
                        .find(|c| c.name.as_bytes() == n.as_slice())
                        .map_or(Value::NullArray, command_entry)
                })
                .collect(),
        ),
        // redis-cli asks for docs to show hints; Hydra has none to give.
        Some(b"docs") => Value::Map(vec![]),
        Some(b"list") => Value::Array(COMMANDS.iter().map(|c| Value::bulk(c.name)).collect()),
        Some(_) => Value::error(format!(
            "ERR unknown subcommand '{}'. Try COMMAND HELP.",
            String::from_utf8_lossy(&args[0])
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_patterns_match_like_redis() {
        assert!(glob_match(b"save", b"save"));
        assert!(glob_match(b"*", b"appendonly"));
        assert!(glob_match(b"append*", b"appendfsync"));
        assert!(glob_match(b"s?ve", b"save"));
        assert!(!glob_match(b"save", b"saves"));
        assert!(!glob_match(b"a*z", b"appendonly"));
        assert!(glob_match(b"*a*p*", b"appendonly"));
        assert!(glob_match(b"**", b""));
        // Many stars neither recurse nor backtrack without bound.
        assert!(!glob_match(&[b'*'; 100_000], b"save"));
        let evil = [b"*a".repeat(20), b"*b".to_vec()].concat();
        assert!(!glob_match(&evil, &[b'a'; 200]));
    }

    #[test]
    fn every_command_is_dispatched() {
        // The table drives arity checks and COMMAND; names must be lower case and unique.
        let mut names: Vec<&str> = COMMANDS.iter().map(|c| c.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), COMMANDS.len());
        assert!(
            COMMANDS
                .iter()
                .all(|c| c.name == c.name.to_ascii_lowercase())
        );
    }
}
