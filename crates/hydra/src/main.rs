//! `hydra`: one binary for the node server, a local dev cluster, and the command-line client.

mod bench;
mod dev;

/// mimalloc instead of glibc's allocator: profiles of the node under load showed malloc and
/// free among the top costs of every request; with mimalloc the nodes' CPU per request fell
/// by about a quarter (scripts/bench-redis.sh figures in the closing notes).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use hydra_client::{Client, Error as ApiError};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "hydra",
    version,
    about = "Hydra: a leaderless, Dynamo-style replicated key-value store"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct Endpoint {
    /// Node to talk to (`host:port` of its HTTP API). Default: the first node of a running
    /// `hydra dev` cluster (`hydra-dev/cluster.json` here, or the file `HYDRA_CLUSTER`
    /// names), else 127.0.0.1:8080.
    #[arg(long, env = "HYDRA_ENDPOINT", global = true)]
    endpoint: Option<String>,
    /// Bearer token (default: `HYDRA_TOKEN`, else the `token` of that cluster.json).
    #[arg(long, env = "HYDRA_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
}

impl Endpoint {
    /// A client for the chosen node, with the chosen token.
    fn client(&self) -> Client {
        let cluster = dev::find_cluster_json();
        let endpoint = self
            .endpoint
            .clone()
            .or_else(|| {
                cluster
                    .as_ref()
                    .and_then(|c| c["nodes"][0]["http"].as_str().map(str::to_string))
            })
            .unwrap_or_else(|| "127.0.0.1:8080".into());
        let token = self.token.clone().or_else(|| {
            cluster
                .as_ref()
                .and_then(|c| c["token"].as_str().map(str::to_string))
        });
        Client::new(&endpoint).with_token_opt(token.as_deref())
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run one node.
    Server {
        /// The node's TOML configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Override one setting, e.g. `--set storage.durability=none` (repeatable).
        #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
        sets: Vec<String>,
    },
    /// Start a local cluster of real node processes on 127.0.0.1; Ctrl-C stops it.
    Dev(dev::DevArgs),
    /// Print a new random cluster secret (64 hex digits) for `cluster.secret`.
    Secret,
    /// Run a YCSB workload (a, b, c, d, f, write) over HTTP or RESP; prints HDR latencies.
    Bench(bench::BenchArgs),
    /// Read a key: prints the value (or each sibling); -v shows context and receipt.
    Get {
        key: String,
        #[arg(long, default_value = "default")]
        bucket: String,
        /// Read quorum: one, two, three, quorum, all or a number.
        #[arg(long, conflicts_with = "serial")]
        r: Option<String>,
        /// A serial read, through Paxos (`lww` buckets): linearizable with compare-and-set.
        #[arg(long)]
        serial: bool,
        #[arg(short, long)]
        verbose: bool,
        #[command(flatten)]
        endpoint: Endpoint,
    },
    /// Write a key; the value comes from the argument or, without one, from stdin.
    /// `--if-absent` and `--if-match` make it a compare-and-set (exit status 1 when the
    /// condition does not hold).
    Put {
        key: String,
        value: Option<String>,
        #[arg(long, default_value = "default")]
        bucket: String,
        /// The context of the read this write follows (from `hydra get -v`).
        #[arg(long, conflicts_with_all = ["if_absent", "if_match"])]
        context: Option<String>,
        /// Write quorum: one, two, three, quorum, all or a number.
        #[arg(long, conflicts_with_all = ["if_absent", "if_match"])]
        w: Option<String>,
        /// Write only if the key is absent (compare-and-set, `lww` buckets).
        #[arg(long, conflicts_with = "if_match")]
        if_absent: bool,
        /// Write only if the key's version is still the one this context names (from
        /// `hydra get -v`; compare-and-set, `lww` buckets).
        #[arg(long)]
        if_match: Option<String>,
        #[arg(long, default_value = "application/octet-stream")]
        content_type: String,
        /// Seconds until the value expires (default: the bucket's TTL, if it has one).
        #[arg(long, value_name = "SECONDS", conflicts_with_all = ["if_absent", "if_match"])]
        ttl: Option<u64>,
        #[arg(short, long)]
        verbose: bool,
        #[command(flatten)]
        endpoint: Endpoint,
    },
    /// Delete a key (what the context saw, or everything without one).
    Del {
        key: String,
        #[arg(long, default_value = "default")]
        bucket: String,
        #[arg(long, conflicts_with = "if_match")]
        context: Option<String>,
        #[arg(long, conflicts_with = "if_match")]
        w: Option<String>,
        /// Delete only if the key's version is still the one this context names
        /// (compare-and-set, `lww` buckets; exit status 1 when it is not).
        #[arg(long)]
        if_match: Option<String>,
        #[arg(short, long)]
        verbose: bool,
        #[command(flatten)]
        endpoint: Endpoint,
    },
    /// List a bucket's keys over the whole cluster, one per line (deleted and expired keys
    /// left out; as Redis's SCAN, a key present throughout is listed).
    Ls {
        #[arg(long, default_value = "default")]
        bucket: String,
        /// Stop after this many keys.
        #[arg(long)]
        limit: Option<usize>,
        #[command(flatten)]
        endpoint: Endpoint,
    },
    /// The node's view of the cluster, as a table.
    Status {
        #[command(flatten)]
        endpoint: Endpoint,
    },
    /// Which nodes hold a key (its preference list and fallbacks).
    Ring {
        /// The key (or give it as `--key`).
        #[arg(required_unless_present = "key_flag", conflicts_with = "key_flag")]
        key: Option<String>,
        #[arg(long = "key", value_name = "KEY")]
        key_flag: Option<String>,
        #[arg(long, default_value = "default")]
        bucket: String,
        #[command(flatten)]
        endpoint: Endpoint,
    },
    /// Create, show, change or list buckets.
    Bucket {
        #[command(subcommand)]
        action: BucketAction,
        #[command(flatten)]
        endpoint: Endpoint,
    },
    /// Pause or resume the delivery of hints a node holds (as Cassandra's `nodetool
    /// disablehandoff`/`enablehandoff`); paused, hints are kept and go out once resumed.
    Handoff {
        #[command(subcommand)]
        action: SwitchAction,
        #[command(flatten)]
        endpoint: Endpoint,
    },
    /// Pause or resume the anti-entropy exchanges a node starts (it still answers its
    /// peers') and its full sweep of old tombstones and missed expiries; not kept across
    /// restarts.
    AntiEntropy {
        #[command(subcommand)]
        action: SwitchAction,
        #[command(flatten)]
        endpoint: Endpoint,
    },
    /// HTTP bearer tokens with scopes, kept in the cluster (needs an admin token).
    Token {
        #[command(subcommand)]
        action: TokenAction,
        #[command(flatten)]
        endpoint: Endpoint,
    },
    /// Redis-protocol users with scopes, kept in the cluster (needs an admin token).
    User {
        #[command(subcommand)]
        action: UserAction,
        #[command(flatten)]
        endpoint: Endpoint,
    },
}

#[derive(Subcommand)]
enum SwitchAction {
    /// Resume it (the default at every start).
    Enable,
    /// Pause it until `enable` or a restart (hints are still kept).
    Disable,
}

#[derive(Subcommand)]
enum TokenAction {
    /// Make a token; it is printed once (the cluster keeps only its digest).
    Create {
        /// A name to recognise it by.
        #[arg(long)]
        name: String,
        /// What it may do (repeatable): admin, metrics, read:<bucket glob>, write:<bucket glob>.
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
    },
    /// The tokens (ids, names, scopes; never the tokens).
    List,
    /// Revoke a token by id: every node refuses it within 5 s.
    Revoke { id: String },
}

#[derive(Subcommand)]
enum UserAction {
    /// Create a Redis-protocol user, or replace its password and scopes (`AUTH user pass`).
    Set {
        name: String,
        /// The password (8 bytes or more; kept as an argon2id hash).
        #[arg(long, env = "HYDRA_USER_PASSWORD", hide_env_values = true)]
        password: String,
        /// What it may do (repeatable): admin, read:<bucket glob>, write:<bucket glob>.
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
    },
    /// The users and their scopes.
    List,
    /// Remove a user: every node refuses it within 5 s.
    Del { name: String },
}

#[derive(Args, Clone)]
struct BucketProps {
    /// Replication factor N.
    #[arg(long)]
    n: Option<u8>,
    /// Default read quorum.
    #[arg(long)]
    r: Option<String>,
    /// Default write quorum.
    #[arg(long)]
    w: Option<String>,
    /// siblings or lww (fixed at creation).
    #[arg(long)]
    conflicts: Option<String>,
    #[arg(long)]
    sloppy: Option<bool>,
    /// Default time to live of values, in seconds.
    #[arg(long)]
    ttl: Option<u64>,
    /// off, conditional_only or all_writes: whether plain writes may mix with
    /// compare-and-set on one key.
    #[arg(long)]
    cas: Option<String>,
}

#[derive(Subcommand)]
enum BucketAction {
    /// Create a bucket (refused if it exists); unset properties take the defaults
    /// (n 3, r and w quorum, siblings, not sloppy, no TTL, cas off).
    Create {
        name: String,
        #[command(flatten)]
        props: BucketProps,
    },
    /// Change a bucket's properties (n and conflicts are fixed at creation).
    Set {
        name: String,
        #[command(flatten)]
        props: BucketProps,
    },
    /// Print a bucket's properties.
    Show { name: String },
    /// Print every bucket and its properties.
    List,
    /// Remove every value of the bucket written so far, on every node, at once (a mark,
    /// as Cassandra's TRUNCATE: no tombstone per key; the disk space returns as each node
    /// purges). Needs every node up to confirm.
    Truncate { name: String },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hydra: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let is_handoff = matches!(cli.command, Command::Handoff { .. });
    match cli.command {
        Command::Server { config, sets } => {
            let config =
                hydra_node::config::Config::load(config.as_deref(), std::env::vars(), &sets)?;
            init_logging(config.node.log_file.as_deref())?;
            write_pid_file(&config.node.data_dir)?;
            if let Some(path) = &config.node.dev_cluster_json {
                dev::record_pid(path, config.node.id, std::process::id());
            }
            let mut runtime = if config.node.single_thread {
                tokio::runtime::Builder::new_current_thread()
            } else {
                let mut runtime = tokio::runtime::Builder::new_multi_thread();
                if config.node.worker_threads > 0 {
                    runtime.worker_threads(config.node.worker_threads);
                }
                runtime
            };
            let runtime = runtime
                .enable_all()
                .build()
                .context("while starting tokio")?;
            runtime.block_on(hydra_node::run(config))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Dev(args) => dev::run(args),
        Command::Secret => {
            println!("{}", hydra_node::secure::generate_secret()?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(args) => bench::run(args).map(|()| ExitCode::SUCCESS),
        Command::Get {
            key,
            bucket,
            r,
            serial,
            verbose,
            endpoint,
        } => {
            check_key(&key)?;
            let client = endpoint.client();
            let r = if serial {
                Some("serial".to_string())
            } else {
                r
            };
            let params: Vec<(&str, &str)> = r.as_deref().map(|r| ("r", r)).into_iter().collect();
            let resp = client.get(&bucket, &key, &params).map_err(api)?;
            if verbose {
                show_meta(resp.context.as_deref(), resp.receipt.as_ref());
            }
            match resp.status {
                200 => {
                    std::io::stdout().write_all(&resp.body)?;
                    if std::io::IsTerminal::is_terminal(&std::io::stdout())
                        && !resp.body.ends_with(b"\n")
                    {
                        println!();
                    }
                    Ok(ExitCode::SUCCESS)
                }
                300 => {
                    let body = resp.json().unwrap_or(Value::Null);
                    let siblings = body["siblings"].as_array().cloned().unwrap_or_default();
                    println!(
                        "{} siblings (write with --context {} to resolve them):",
                        siblings.len(),
                        body["context"].as_str().unwrap_or("")
                    );
                    for (i, s) in siblings.iter().enumerate() {
                        let value = s["value_base64"]
                            .as_str()
                            .and_then(decode_base64)
                            .unwrap_or_default();
                        println!("  [{i}] {}", String::from_utf8_lossy(&value));
                    }
                    Ok(ExitCode::SUCCESS)
                }
                _ => {
                    eprintln!("hydra: key {bucket}/{key} not found");
                    Ok(ExitCode::from(1))
                }
            }
        }
        Command::Put {
            key,
            value,
            bucket,
            context,
            w,
            if_absent,
            if_match,
            content_type,
            ttl,
            verbose,
            endpoint,
        } => {
            check_key(&key)?;
            let value = match value {
                Some(v) => v.into_bytes(),
                None => {
                    let mut buf = Vec::new();
                    std::io::stdin()
                        .read_to_end(&mut buf)
                        .context("while reading the value from stdin")?;
                    buf
                }
            };
            let condition = match (if_absent, if_match) {
                (true, _) => Some(hydra_client::Precondition::Absent),
                (false, Some(c)) => Some(hydra_client::Precondition::Matches(c)),
                (false, None) => None,
            };
            if let Some(condition) = condition {
                let resp = endpoint
                    .client()
                    .put_if(&bucket, &key, &value, &content_type, &condition)
                    .map_err(api)?;
                return Ok(conditional_outcome(&resp, &bucket, &key, verbose));
            }
            let ttl = ttl.map(|t| t.to_string());
            let params: Vec<(&str, &str)> = w
                .as_deref()
                .map(|w| ("w", w))
                .into_iter()
                .chain(ttl.as_deref().map(|t| ("ttl", t)))
                .collect();
            let resp = endpoint
                .client()
                .put(
                    &bucket,
                    &key,
                    &value,
                    &content_type,
                    context.as_deref(),
                    &params,
                )
                .map_err(api)?;
            if verbose {
                show_meta(resp.context.as_deref(), resp.receipt.as_ref());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Del {
            key,
            bucket,
            context,
            w,
            if_match,
            verbose,
            endpoint,
        } => {
            check_key(&key)?;
            let client = endpoint.client();
            if let Some(c) = if_match {
                let condition = hydra_client::Precondition::Matches(c);
                let resp = client.delete_if(&bucket, &key, &condition).map_err(api)?;
                return Ok(conditional_outcome(&resp, &bucket, &key, verbose));
            }
            // Without a context, delete everything there is now: read it first.
            let context = match context {
                Some(c) => Some(c),
                None => client.get(&bucket, &key, &[]).map_err(api)?.context,
            };
            let params: Vec<(&str, &str)> = w.as_deref().map(|w| ("w", w)).into_iter().collect();
            let resp = client
                .delete(&bucket, &key, context.as_deref(), &params)
                .map_err(api)?;
            if verbose {
                show_meta(resp.context.as_deref(), resp.receipt.as_ref());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Ls {
            bucket,
            limit,
            endpoint,
        } => {
            let client = endpoint.client();
            let mut after: Option<String> = None;
            let mut listed = 0usize;
            let mut out = std::io::stdout().lock();
            loop {
                let want = limit.map_or(1_000, |l| l.saturating_sub(listed).clamp(1, 1_000));
                let page = client.list(&bucket, after.as_deref(), want).map_err(api)?;
                for k in page["keys"].as_array().into_iter().flatten() {
                    writeln!(out, "{}", k.as_str().unwrap_or_default())?;
                    listed += 1;
                }
                for k in page["binary_keys_base64"].as_array().into_iter().flatten() {
                    writeln!(out, "base64:{}", k.as_str().unwrap_or_default())?;
                    listed += 1;
                }
                after = page["next"].as_str().map(str::to_string);
                if after.is_none() || limit.is_some_and(|l| listed >= l) {
                    break;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { endpoint } => {
            let s = endpoint.client().status().map_err(api)?;
            println!(
                "node {}  layout v{}  partitions {}  durability {}  in flight {}",
                s["node"],
                s["layout_version"],
                s["partitions"],
                s["durability"].as_str().unwrap_or("?"),
                s["in_flight"]
            );
            if let Some(why) = s["store_poisoned"].as_str() {
                println!("STORE POISONED: {why}");
            }
            let clock = &s["clock"];
            println!(
                "clock {}  offset {} ms  peers measured {}  jumps {}",
                clock["state"].as_str().unwrap_or("?"),
                clock["offset_ms"]
                    .as_i64()
                    .map_or("?".to_string(), |o| o.to_string()),
                clock["peers_measured"],
                clock["jumps"]
            );
            if let Some(why) = clock["detail"].as_str() {
                println!("CLOCK: {why}");
            }
            println!(
                "{:<6} {:<8} {:<10} {:<10} {:>14} {:>6}",
                "node", "state", "zone", "dc", "last heard", "phi"
            );
            println!(
                "{:<6} {:<8} {:<10} {:<10} {:>14} {:>6}",
                format!("n{}", s["node"]),
                "self",
                s["zone"].as_str().unwrap_or(""),
                s["datacenter"].as_str().unwrap_or(""),
                "-",
                "-"
            );
            for p in s["peers"].as_array().cloned().unwrap_or_default() {
                let heard = p["last_heard_ms_ago"]
                    .as_u64()
                    .map_or("never".to_string(), |ms| format!("{ms} ms ago"));
                println!(
                    "{:<6} {:<8} {:<10} {:<10} {:>14} {:>6}",
                    format!("n{}", p["id"]),
                    p["state"].as_str().unwrap_or("?"),
                    p["zone"].as_str().unwrap_or(""),
                    p["datacenter"].as_str().unwrap_or(""),
                    heard,
                    p["phi"]
                        .as_f64()
                        .map_or("-".to_string(), |phi| format!("{phi:.1}"))
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Ring {
            key,
            key_flag,
            bucket,
            endpoint,
        } => {
            let key = key.or(key_flag).unwrap_or_default();
            check_key(&key)?;
            let r = endpoint
                .client()
                .ring(&[("bucket", &bucket), ("key", &key)])
                .map_err(api)?;
            println!("{bucket}/{key} is in partition {}", r["partition"]);
            let names = |v: &Value| {
                v.as_array()
                    .map(|a| {
                        a.iter()
                            .map(|n| format!("n{} ({})", n["id"], n["zone"].as_str().unwrap_or("")))
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default()
            };
            println!("preference list: {}", names(&r["preference_list"]));
            match names(&r["fallbacks"]) {
                f if f.is_empty() => {
                    println!("fallbacks:       none (every node is in the preference list)")
                }
                f => println!("fallbacks:       {f}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Bucket { action, endpoint } => {
            let client = endpoint.client();
            let out = match action {
                BucketAction::Create { name, props } => {
                    if client.bucket(&name).is_ok() {
                        bail!("bucket {name} already exists; use `hydra bucket set` to change it");
                    }
                    client.set_bucket(&name, &props_json(&props)).map_err(api)?
                }
                BucketAction::Set { name, props } => {
                    client.bucket(&name).map_err(api)?;
                    client.set_bucket(&name, &props_json(&props)).map_err(api)?
                }
                BucketAction::Show { name } => client.bucket(&name).map_err(api)?,
                BucketAction::List => client.buckets().map_err(api)?,
                BucketAction::Truncate { name } => client.truncate(&name).map_err(api)?,
            };
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Handoff { action, endpoint } | Command::AntiEntropy { action, endpoint } => {
            let enabled = matches!(action, SwitchAction::Enable);
            let route = if is_handoff {
                "handoff"
            } else {
                "anti-entropy"
            };
            let out = endpoint
                .client()
                .admin("POST", route, Some(&json!({ "enabled": enabled })))
                .map_err(api)?;
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Token { action, endpoint } => {
            let client = endpoint.client();
            let out = match action {
                TokenAction::Create { name, scopes } => client.admin(
                    "POST",
                    "tokens",
                    Some(&json!({ "name": name, "scopes": scopes })),
                ),
                TokenAction::List => client.admin("GET", "tokens", None),
                TokenAction::Revoke { id } => client.admin(
                    "DELETE",
                    &format!("tokens/{}", hydra_client::encode_segment(&id)),
                    None,
                ),
            }
            .map_err(api)?;
            if !out.is_null() {
                println!("{}", serde_json::to_string_pretty(&out)?);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::User { action, endpoint } => {
            let client = endpoint.client();
            let out = match action {
                UserAction::Set {
                    name,
                    password,
                    scopes,
                } => client.admin(
                    "PUT",
                    &format!("users/{}", hydra_client::encode_segment(&name)),
                    Some(&json!({ "password": password, "scopes": scopes })),
                ),
                UserAction::List => client.admin("GET", "users", None),
                UserAction::Del { name } => client.admin(
                    "DELETE",
                    &format!("users/{}", hydra_client::encode_segment(&name)),
                    None,
                ),
            }
            .map_err(api)?;
            if !out.is_null() {
                println!("{}", serde_json::to_string_pretty(&out)?);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Keys are 1 to 1024 bytes: an empty one is refused here, by name, not sent.
fn check_key(key: &str) -> Result<()> {
    if key.is_empty() {
        bail!("the key is empty; a key is 1 to 1024 bytes");
    }
    Ok(())
}

fn props_json(p: &BucketProps) -> Value {
    let mut v = json!({});
    if let Some(n) = p.n {
        v["n"] = json!(n);
    }
    if let Some(r) = &p.r {
        v["r"] = json!(r);
    }
    if let Some(w) = &p.w {
        v["w"] = json!(w);
    }
    if let Some(c) = &p.conflicts {
        v["conflicts"] = json!(c);
    }
    if let Some(s) = p.sloppy {
        v["sloppy"] = json!(s);
    }
    if let Some(t) = p.ttl {
        v["ttl"] = json!(t);
    }
    if let Some(c) = &p.cas {
        v["cas"] = json!(c);
    }
    v
}

/// The exit status of a compare-and-set write: 1 (saying why) when its condition did not
/// hold (412).
fn conditional_outcome(
    resp: &hydra_client::KvResponse,
    bucket: &str,
    key: &str,
    verbose: bool,
) -> ExitCode {
    if verbose {
        show_meta(resp.context.as_deref(), resp.receipt.as_ref());
    }
    if resp.status == 412 {
        eprintln!(
            "hydra: not written: the condition does not hold for {bucket}/{key} (current context: {})",
            resp.context.as_deref().unwrap_or("none")
        );
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

fn show_meta(context: Option<&str>, receipt: Option<&Value>) {
    if let Some(c) = context {
        eprintln!("context: {c}");
    }
    if let Some(r) = receipt {
        eprintln!("receipt: {r}");
    }
}

fn api(e: ApiError) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

fn decode_base64(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

/// The server's log: to `log_file` (appended, no colour codes) or to standard error
/// (colours only on a terminal); `RUST_LOG` filters, `info` by default.
fn init_logging(log_file: Option<&std::path::Path>) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match log_file {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("while opening the log file {}", path.display()))?;
            builder
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(file))
                .init();
        }
        None => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(std::io::stderr)
            .init(),
    }
    Ok(())
}

/// The server writes its pid next to its data, so `hydra dev` can stop a node that an
/// operator restarted by hand.
fn write_pid_file(data_dir: &std::path::Path) -> Result<()> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("while creating {}", data_dir.display()))?;
    std::fs::write(data_dir.join("hydra.pid"), std::process::id().to_string())
        .with_context(|| format!("while writing the pid file in {}", data_dir.display()))
}
