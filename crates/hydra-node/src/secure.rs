//! Internode security: the Noise handshake that admits a peer, and the encrypted records every
//! frame after it travels in.
//!
//! ```text
//! initiator (the sending side)                responder (the receiving side)
//!   preamble: "HYDRA\0v2" ‖ secret id (8 B) ─>  picks `secret` or `secret_next` by its id
//!   -> e                                    ─>
//!                                           <─  <- e, ee, s, es      payload: responder's node id
//!   -> s, se, psk                           ─>  payload: initiator's node id
//!   records: length (u16 BE) ‖ ciphertext   ─>  (application bytes: length-prefixed frames)
//! ```
//!
//! The pattern is `Noise_XXpsk3_25519_ChaChaPoly_BLAKE2s`: both sides prove they hold the
//! cluster secret (the pre-shared key, derived from `cluster.secret`) and show their static
//! X25519 keys. A node's identity is its static key: a peer's key must be the one its
//! `public_key` names in `cluster.peers`, or, where none is configured, the key first seen
//! for that id (pinned in the data directory, trust on first use). The prologue binds the
//! protocol version and the secret id, so a preamble changed in transit fails the handshake.
//!
//! Handshake messages are `length (u16 BE) ‖ bytes`. After it, each record is one Noise
//! transport message: ChaCha20-Poly1305 with an implicit counter nonce, so a replayed,
//! reordered, dropped or modified record fails to decrypt, and the connection closes before
//! anything of it reaches the core. Connections are one-way (the initiator only sends, the
//! responder only receives), as the transport uses them.
//!
//! Must not: hand the core any byte of a connection whose handshake did not complete, or
//! allocate for a frame before its length is checked against the message limit.

use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use blake2::{Blake2s256, Digest};
use hydra_core::ids::NodeId;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The Noise protocol of every internode connection.
pub const NOISE_PARAMS: &str = "Noise_XXpsk3_25519_ChaChaPoly_BLAKE2s";
/// The cleartext preamble: protocol and version (8 bytes), then the secret id.
pub const PREAMBLE: &[u8; 8] = b"HYDRA\0v2";
const PROLOGUE: &[u8] = b"hydra internode v2";
/// Largest Noise message (handshake or record), including the 16-byte tag.
pub const NOISE_MESSAGE_MAX: usize = 65_535;
const TAG_BYTES: usize = 16;
/// Largest plaintext of one record.
pub const RECORD_PLAINTEXT_MAX: usize = NOISE_MESSAGE_MAX - TAG_BYTES;
/// The shortest cluster secret accepted, in bytes.
pub const SECRET_BYTES_MIN: usize = 32;

/// One cluster secret, as the handshake uses it.
#[derive(Clone)]
struct Secret {
    /// Names the secret in the preamble without revealing it.
    id: [u8; 8],
    psk: [u8; 32],
}

impl Secret {
    fn new(secret: &str) -> Secret {
        let digest = |domain: &[u8]| -> [u8; 32] {
            let mut h = Blake2s256::new();
            h.update(domain);
            h.update(secret.as_bytes());
            h.finalize().into()
        };
        let id_digest = digest(b"hydra cluster secret id v1\0");
        let mut id = [0u8; 8];
        id.copy_from_slice(&id_digest[..8]);
        Secret {
            id,
            psk: digest(b"hydra cluster secret psk v1\0"),
        }
    }
}

/// Checks a cluster secret's strength; the error names the setting.
pub fn check_secret(name: &str, secret: &str) -> Result<()> {
    if secret.len() < SECRET_BYTES_MIN {
        bail!(
            "{name} is {} bytes long; it must be at least {SECRET_BYTES_MIN} (generate one with `hydra secret`)",
            secret.len()
        );
    }
    Ok(())
}

/// A fresh random cluster secret: 64 hex digits (256 bits).
pub fn generate_secret() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes)
        .map_err(|e| anyhow::anyhow!("reading the OS's random source: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// A node's static key pair: its identity on the internode network.
#[derive(Clone)]
pub struct Identity {
    private: [u8; 32],
    pub public: [u8; 32],
}

impl Identity {
    pub fn generate() -> Result<Identity> {
        let kp = builder()?
            .generate_keypair()
            .map_err(|e| anyhow::anyhow!("generating a key pair: {e}"))?;
        Ok(Identity {
            private: to_key(&kp.private).context("generated private key")?,
            public: to_key(&kp.public).context("generated public key")?,
        })
    }

    /// Reads the key file, or creates it (mode 0600) with a new key pair.
    pub fn load_or_create(path: &Path) -> Result<Identity> {
        if path.exists() {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("while reading the node key {}", path.display()))?;
            let table: toml::Table = toml::from_str(&text)
                .with_context(|| format!("while parsing the node key {}", path.display()))?;
            let field = |name: &str| -> Result<[u8; 32]> {
                let s = table
                    .get(name)
                    .and_then(|v| v.as_str())
                    .with_context(|| format!("{}: no `{name}`", path.display()))?;
                parse_public_key(s).with_context(|| format!("{}: `{name}`", path.display()))
            };
            return Ok(Identity {
                private: field("private")?,
                public: field("public")?,
            });
        }
        let identity = Identity::generate()?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("while creating {}", dir.display()))?;
        }
        let text = format!(
            "# This node's internode identity. Keep it private; give peers the public key.\nprivate = \"{}\"\npublic = \"{}\"\n",
            B64.encode(identity.private),
            B64.encode(identity.public)
        );
        write_private(path, &text)?;
        Ok(identity)
    }

    pub fn public_base64(&self) -> String {
        B64.encode(self.public)
    }
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("while creating {}", tmp.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .with_context(|| format!("while writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("while writing {}", path.display()))?;
    Ok(())
}

/// Parses a base64 X25519 public key (32 bytes).
pub fn parse_public_key(s: &str) -> Result<[u8; 32]> {
    let bytes = B64
        .decode(s.trim())
        .map_err(|e| anyhow::anyhow!("not base64: {e}"))?;
    to_key(&bytes)
}

fn to_key(bytes: &[u8]) -> Result<[u8; 32]> {
    bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("a key is 32 bytes, not {}", bytes.len()))
}

fn builder() -> Result<snow::Builder<'static>> {
    let params = NOISE_PARAMS
        .parse()
        .map_err(|e| anyhow::anyhow!("noise parameters: {e:?}"))?;
    Ok(snow::Builder::new(params))
}

/// Why a handshake failed; the label of `hydra_internode_handshakes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not a Hydra peer of this protocol version.
    Protocol,
    /// The peer does not hold a secret this node accepts.
    WrongSecret,
    /// The peer's id is not in this node's layout.
    NoRole,
    /// The peer's static key is not the one its id is known by.
    WrongKey,
    /// The peer did not finish in time, or the connection failed.
    Io,
}

impl Refusal {
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Protocol => "protocol",
            Refusal::WrongSecret => "wrong_secret",
            Refusal::NoRole => "no_role",
            Refusal::WrongKey => "wrong_key",
            Refusal::Io => "io",
        }
    }
}

#[derive(Debug)]
pub struct HandshakeError {
    pub refusal: Refusal,
    pub detail: String,
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.detail, self.refusal.label())
    }
}

fn refuse(refusal: Refusal, detail: impl Into<String>) -> HandshakeError {
    HandshakeError {
        refusal,
        detail: detail.into(),
    }
}

fn io(e: std::io::Error) -> HandshakeError {
    refuse(Refusal::Io, e.to_string())
}

/// What a node knows to admit peers and be admitted: its identity, the cluster secrets, the
/// layout's other members and their keys.
pub struct Security {
    me: NodeId,
    identity: Identity,
    /// `cluster.secret`, then `cluster.secret_next` if set.
    secrets: Vec<Secret>,
    members: BTreeSet<NodeId>,
    configured: BTreeMap<NodeId, [u8; 32]>,
    pinned: Mutex<BTreeMap<NodeId, [u8; 32]>>,
    /// Where pins are kept (`None`: in memory only).
    pins_path: Option<PathBuf>,
}

impl Security {
    /// `members`: the other nodes of the layout, with their configured public keys.
    pub fn new(
        me: NodeId,
        identity: Identity,
        secret: &str,
        secret_next: Option<&str>,
        members: &[(NodeId, Option<[u8; 32]>)],
        pins_path: Option<PathBuf>,
    ) -> Result<Security> {
        check_secret("cluster.secret", secret)?;
        let mut secrets = vec![Secret::new(secret)];
        if let Some(next) = secret_next.filter(|s| !s.is_empty()) {
            check_secret("cluster.secret_next", next)?;
            secrets.push(Secret::new(next));
        }
        let pinned = match &pins_path {
            Some(p) if p.exists() => read_pins(p)?,
            _ => BTreeMap::new(),
        };
        Ok(Security {
            me,
            identity,
            secrets,
            members: members.iter().map(|(id, _)| *id).collect(),
            configured: members
                .iter()
                .filter_map(|(id, k)| k.map(|k| (*id, k)))
                .collect(),
            pinned: Mutex::new(pinned),
            pins_path,
        })
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Members without a configured public key (their keys are pinned on first contact).
    pub fn unkeyed_members(&self) -> Vec<NodeId> {
        self.members
            .iter()
            .filter(|id| !self.configured.contains_key(id))
            .copied()
            .collect()
    }

    /// Admits `id` with static key `key`, or says why not.
    fn check_peer(&self, id: NodeId, key: &[u8]) -> Result<(), HandshakeError> {
        if id == self.me || !self.members.contains(&id) {
            return Err(refuse(
                Refusal::NoRole,
                format!("node {id} is not a member of this node's layout"),
            ));
        }
        let key: [u8; 32] = key
            .try_into()
            .map_err(|_| refuse(Refusal::Protocol, "static key of the wrong length"))?;
        if let Some(expected) = self.configured.get(&id) {
            if *expected != key {
                return Err(refuse(
                    Refusal::WrongKey,
                    format!("node {id} showed a key other than its configured public_key"),
                ));
            }
            return Ok(());
        }
        let mut pinned = self.pinned.lock().unwrap_or_else(|e| e.into_inner());
        match pinned.get(&id) {
            Some(expected) if *expected == key => Ok(()),
            Some(_) => Err(refuse(
                Refusal::WrongKey,
                format!(
                    "node {id} showed a key other than the one pinned on first contact (set its public_key, or remove the pin, if it was reinstalled)"
                ),
            )),
            None => {
                pinned.insert(id, key);
                if let Some(path) = &self.pins_path
                    && let Err(e) = write_pins(path, &pinned)
                {
                    pinned.remove(&id);
                    return Err(refuse(
                        Refusal::Io,
                        format!("pinning node {id}'s key: {e:#}"),
                    ));
                }
                tracing::info!("pinned node {id}'s key {} (first contact)", B64.encode(key));
                Ok(())
            }
        }
    }

    /// Opens a connection to `peer`: the initiator's half of the handshake. `attempt` picks
    /// the secret (`secret`, then `secret_next`, alternating on failures).
    pub async fn connect<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        stream: &mut S,
        peer: NodeId,
        attempt: usize,
    ) -> Result<Sealer, HandshakeError> {
        let secret = &self.secrets[attempt % self.secrets.len()];
        let mut hs = self.handshake(secret, true)?;
        let mut preamble = PREAMBLE.to_vec();
        preamble.extend_from_slice(&secret.id);
        stream.write_all(&preamble).await.map_err(io)?;
        let mut buf = vec![0u8; NOISE_MESSAGE_MAX];
        let n = hs
            .write_message(&[], &mut buf)
            .map_err(|e| refuse(Refusal::Protocol, format!("message 1: {e}")))?;
        write_message(stream, &buf[..n]).await?;
        let msg = read_message(stream).await?;
        let mut payload = vec![0u8; NOISE_MESSAGE_MAX];
        let n = hs
            .read_message(&msg, &mut payload)
            .map_err(|e| refuse(Refusal::Protocol, format!("message 2: {e}")))?;
        let their_id = parse_id(&payload[..n])?;
        if their_id != peer {
            return Err(refuse(
                Refusal::WrongKey,
                format!("dialed node {peer} but node {their_id} answered"),
            ));
        }
        let their_key = hs.get_remote_static().unwrap_or(&[]).to_vec();
        self.check_peer(their_id, &their_key)?;
        let n = hs
            .write_message(&self.me.0.to_be_bytes(), &mut buf)
            .map_err(|e| refuse(Refusal::Protocol, format!("message 3: {e}")))?;
        write_message(stream, &buf[..n]).await?;
        stream.flush().await.map_err(io)?;
        let transport = hs
            .into_transport_mode()
            .map_err(|e| refuse(Refusal::Protocol, format!("transport mode: {e}")))?;
        Ok(Sealer {
            state: transport,
            staged: Vec::with_capacity(RECORD_PLAINTEXT_MAX),
            scratch: vec![0u8; NOISE_MESSAGE_MAX],
        })
    }

    /// Admits a connection: the responder's half of the handshake. Returns the peer's id.
    pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        stream: &mut S,
    ) -> Result<(NodeId, Opener), HandshakeError> {
        let mut preamble = [0u8; 16];
        stream.read_exact(&mut preamble).await.map_err(io)?;
        if &preamble[..8] != PREAMBLE {
            return Err(refuse(
                Refusal::Protocol,
                "bad preamble: not a Hydra peer, or another protocol version",
            ));
        }
        let Some(secret) = self.secrets.iter().find(|s| s.id[..] == preamble[8..]) else {
            return Err(refuse(
                Refusal::WrongSecret,
                "the peer uses a cluster secret this node does not hold",
            ));
        };
        let mut hs = self.handshake(secret, false)?;
        let msg = read_message(stream).await?;
        let mut payload = vec![0u8; NOISE_MESSAGE_MAX];
        hs.read_message(&msg, &mut payload)
            .map_err(|e| refuse(Refusal::Protocol, format!("message 1: {e}")))?;
        let mut buf = vec![0u8; NOISE_MESSAGE_MAX];
        let n = hs
            .write_message(&self.me.0.to_be_bytes(), &mut buf)
            .map_err(|e| refuse(Refusal::Protocol, format!("message 2: {e}")))?;
        write_message(stream, &buf[..n]).await?;
        stream.flush().await.map_err(io)?;
        let msg = read_message(stream).await?;
        let n = hs.read_message(&msg, &mut payload).map_err(|e| {
            refuse(
                Refusal::WrongSecret,
                format!("message 3 failed to authenticate ({e}): wrong cluster secret"),
            )
        })?;
        let their_id = parse_id(&payload[..n])?;
        let their_key = hs.get_remote_static().unwrap_or(&[]).to_vec();
        self.check_peer(their_id, &their_key)?;
        let transport = hs
            .into_transport_mode()
            .map_err(|e| refuse(Refusal::Protocol, format!("transport mode: {e}")))?;
        Ok((
            their_id,
            Opener {
                state: transport,
                plain: vec![0u8; NOISE_MESSAGE_MAX],
            },
        ))
    }

    fn handshake(
        &self,
        secret: &Secret,
        initiator: bool,
    ) -> Result<snow::HandshakeState, HandshakeError> {
        let mut prologue = PROLOGUE.to_vec();
        prologue.extend_from_slice(&secret.id);
        let b = builder()
            .map_err(|e| refuse(Refusal::Protocol, e.to_string()))?
            .local_private_key(&self.identity.private)
            .and_then(|b| b.psk(3, &secret.psk))
            .and_then(|b| b.prologue(&prologue))
            .map_err(|e| refuse(Refusal::Protocol, e.to_string()))?;
        let hs = if initiator {
            b.build_initiator()
        } else {
            b.build_responder()
        };
        hs.map_err(|e| refuse(Refusal::Protocol, e.to_string()))
    }
}

fn parse_id(payload: &[u8]) -> Result<NodeId, HandshakeError> {
    let bytes: [u8; 8] = payload
        .try_into()
        .map_err(|_| refuse(Refusal::Protocol, "handshake payload is not a node id"))?;
    Ok(NodeId(u64::from_be_bytes(bytes)))
}

async fn write_message<S: AsyncWrite + Unpin>(
    stream: &mut S,
    msg: &[u8],
) -> Result<(), HandshakeError> {
    let mut out = Vec::with_capacity(2 + msg.len());
    out.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    out.extend_from_slice(msg);
    stream.write_all(&out).await.map_err(io)
}

async fn read_message<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Vec<u8>, HandshakeError> {
    let len = stream.read_u16().await.map_err(io)? as usize;
    let mut msg = vec![0u8; len];
    stream.read_exact(&mut msg).await.map_err(io)?;
    Ok(msg)
}

/// The sending half of an established connection: turns application bytes into records.
pub struct Sealer {
    state: snow::TransportState,
    staged: Vec<u8>,
    scratch: Vec<u8>,
}

impl Sealer {
    /// Stages application bytes; every full record is sealed into `out`.
    pub fn push(&mut self, mut data: &[u8], out: &mut Vec<u8>) -> Result<()> {
        while !data.is_empty() {
            let take = (RECORD_PLAINTEXT_MAX - self.staged.len()).min(data.len());
            self.staged.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.staged.len() == RECORD_PLAINTEXT_MAX {
                self.seal(out)?;
            }
        }
        Ok(())
    }

    /// Seals what is staged (if anything) into `out`.
    pub fn seal(&mut self, out: &mut Vec<u8>) -> Result<()> {
        if self.staged.is_empty() {
            return Ok(());
        }
        let n = self
            .state
            .write_message(&self.staged, &mut self.scratch)
            .map_err(|e| anyhow::anyhow!("sealing a record: {e}"))?;
        out.extend_from_slice(&(n as u16).to_be_bytes());
        out.extend_from_slice(&self.scratch[..n]);
        self.staged.clear();
        Ok(())
    }
}

/// The receiving half of an established connection: opens records.
pub struct Opener {
    state: snow::TransportState,
    plain: Vec<u8>,
}

impl Opener {
    /// Reads and opens the next record; `Ok(None)` at a clean end of the stream.
    pub async fn next_record<S: AsyncRead + Unpin>(
        &mut self,
        stream: &mut S,
        record: &mut Vec<u8>,
    ) -> Result<Option<&[u8]>, String> {
        let len = match stream.read_u16().await {
            Ok(len) => len as usize,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        record.resize(len, 0);
        stream.read_exact(record).await.map_err(|e| e.to_string())?;
        let n = self.open(record)?;
        Ok(Some(&self.plain[..n]))
    }

    /// Opens one record in place; its plaintext is `self.plain[..n]`.
    fn open(&mut self, record: &[u8]) -> Result<usize, String> {
        self.state
            .read_message(record, &mut self.plain)
            .map_err(|e| {
                format!("a record failed to authenticate ({e}): replayed, reordered or modified")
            })
    }
}

/// Splits a stream of application bytes into frames (`length (u32 BE) ‖ bytes`), refusing a
/// length over the limit before anything is allocated for it.
pub struct Frames {
    buf: Vec<u8>,
    limit: usize,
}

impl Frames {
    pub fn new(limit: usize) -> Frames {
        Frames {
            buf: Vec::new(),
            limit,
        }
    }

    /// Adds bytes, then calls `each` on every complete frame. An error leaves the stream
    /// unusable: the connection must close.
    pub fn feed(
        &mut self,
        data: &[u8],
        mut each: impl FnMut(&[u8]) -> Result<(), String>,
    ) -> Result<(), String> {
        self.buf.extend_from_slice(data);
        let mut at = 0;
        while self.buf.len() - at >= 4 {
            let len = u32::from_be_bytes([
                self.buf[at],
                self.buf[at + 1],
                self.buf[at + 2],
                self.buf[at + 3],
            ]) as usize;
            if len > self.limit {
                return Err(format!(
                    "frame of {len} bytes, more than the limit of {}",
                    self.limit
                ));
            }
            if self.buf.len() - at - 4 < len {
                break;
            }
            each(&self.buf[at + 4..at + 4 + len])?;
            at += 4 + len;
        }
        self.buf.drain(..at);
        Ok(())
    }
}

fn read_pins(path: &Path) -> Result<BTreeMap<NodeId, [u8; 32]>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("while reading {}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("while parsing {}", path.display()))?;
    let mut pins = BTreeMap::new();
    for (id, key) in &table {
        let id: u64 = id
            .parse()
            .with_context(|| format!("{}: {id:?} is not a node id", path.display()))?;
        let key = key
            .as_str()
            .with_context(|| format!("{}: node {id}'s key is not a string", path.display()))
            .and_then(parse_public_key)?;
        pins.insert(NodeId(id), key);
    }
    Ok(pins)
}

fn write_pins(path: &Path, pins: &BTreeMap<NodeId, [u8; 32]>) -> Result<()> {
    let mut text = String::from(
        "# Peers' internode keys, pinned on first contact (node id = public key).\n# Remove a line to accept a reinstalled node's new key.\n",
    );
    for (id, key) in pins {
        text.push_str(&format!("\"{}\" = \"{}\"\n", id.0, B64.encode(key)));
    }
    write_private(path, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef-test";

    fn node(id: u64, secret: &str, members: &[u64]) -> Security {
        Security::new(
            NodeId(id),
            Identity::generate().expect("keys"),
            secret,
            None,
            &members
                .iter()
                .map(|m| (NodeId(*m), None))
                .collect::<Vec<_>>(),
            None,
        )
        .expect("valid")
    }

    async fn pair(
        a: &Security,
        b: &Security,
        peer: NodeId,
    ) -> (
        Result<Sealer, HandshakeError>,
        Result<(NodeId, Opener), HandshakeError>,
    ) {
        handshake(a, b, peer, 0).await
    }

    /// Both halves of a handshake; each drops its end when it finishes, as a closed socket.
    async fn handshake(
        a: &Security,
        b: &Security,
        peer: NodeId,
        attempt: usize,
    ) -> (
        Result<Sealer, HandshakeError>,
        Result<(NodeId, Opener), HandshakeError>,
    ) {
        let (mut x, mut y) = tokio::io::duplex(1 << 20);
        tokio::join!(
            async move { a.connect(&mut x, peer, attempt).await },
            async move { b.accept(&mut y).await }
        )
    }

    #[tokio::test]
    async fn records_round_trip_and_tampering_closes() {
        let a = node(1, SECRET, &[2]);
        let b = node(2, SECRET, &[1]);
        let (sealer, opened) = pair(&a, &b, NodeId(2)).await;
        let mut sealer = sealer.expect("a connects");
        let (from, mut opener) = opened.expect("b accepts");
        assert_eq!(from, NodeId(1));
        let mut wire = Vec::new();
        let big = vec![7u8; 200_000];
        sealer.push(b"hello", &mut wire).expect("seal");
        sealer.push(&big, &mut wire).expect("seal");
        sealer.seal(&mut wire).expect("seal");
        let mut reader = &wire[..];
        let mut record = Vec::new();
        let mut got = Vec::new();
        while let Some(p) = opener
            .next_record(&mut reader, &mut record)
            .await
            .expect("opens")
        {
            got.extend_from_slice(p);
        }
        assert_eq!(&got[..5], b"hello");
        assert_eq!(&got[5..], &big[..]);

        // A replayed record (the first one again) fails.
        let first_len = u16::from_be_bytes([wire[0], wire[1]]) as usize;
        let mut replay = &wire[..2 + first_len];
        assert!(opener.next_record(&mut replay, &mut record).await.is_err());
    }

    #[tokio::test]
    async fn a_flipped_bit_fails_to_open() {
        let a = node(1, SECRET, &[2]);
        let b = node(2, SECRET, &[1]);
        let (sealer, opened) = pair(&a, &b, NodeId(2)).await;
        let (mut sealer, (_, mut opener)) = (sealer.expect("ok"), opened.expect("ok"));
        let mut wire = Vec::new();
        sealer.push(b"some frame bytes", &mut wire).expect("seal");
        sealer.seal(&mut wire).expect("seal");
        wire[5] ^= 1;
        let mut record = Vec::new();
        assert!(
            opener
                .next_record(&mut &wire[..], &mut record)
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn wrong_secret_no_role_and_wrong_key_are_refused() {
        let b = node(2, SECRET, &[1, 3]);
        let wrong = node(1, "another secret of enough length, 0123456789", &[2]);
        let (_, r) = pair(&wrong, &b, NodeId(2)).await;
        assert_eq!(r.err().map(|e| e.refusal), Some(Refusal::WrongSecret));

        let stranger = node(9, SECRET, &[2]);
        let (_, r) = pair(&stranger, &b, NodeId(2)).await;
        assert_eq!(r.err().map(|e| e.refusal), Some(Refusal::NoRole));

        let first = node(1, SECRET, &[2]);
        let (_, r) = pair(&first, &b, NodeId(2)).await;
        assert!(r.is_ok(), "first contact pins node 1's key");
        let impostor = node(1, SECRET, &[2]);
        let (_, r) = pair(&impostor, &b, NodeId(2)).await;
        assert_eq!(r.err().map(|e| e.refusal), Some(Refusal::WrongKey));
        let (_, r) = pair(&first, &b, NodeId(2)).await;
        assert!(r.is_ok(), "the pinned key still gets in");
    }

    #[tokio::test]
    async fn a_node_accepts_its_next_secret_during_rotation() {
        let next = "the next cluster secret, also long enough 0123";
        let old_only = node(1, SECRET, &[2]);
        let both = Security::new(
            NodeId(2),
            Identity::generate().expect("keys"),
            next,
            Some(SECRET),
            &[(NodeId(1), None)],
            None,
        )
        .expect("valid");
        let (_, r) = pair(&old_only, &both, NodeId(2)).await;
        assert!(r.is_ok(), "{:?}", r.err());
        let (s, r) = handshake(&both, &old_only, NodeId(1), 0).await;
        assert!(
            s.is_err() && r.is_err(),
            "the new secret is not yet known to node 1"
        );
        let (s, r) = handshake(&both, &old_only, NodeId(1), 1).await;
        assert!(
            s.is_ok() && r.is_ok(),
            "the second attempt uses secret_next"
        );
    }

    #[test]
    fn frames_are_bounded_before_allocation() {
        let mut f = Frames::new(100);
        let mut seen = Vec::new();
        let mut stream = Vec::new();
        for body in [&b"ab"[..], b"", b"xyz"] {
            stream.extend_from_slice(&(body.len() as u32).to_be_bytes());
            stream.extend_from_slice(body);
        }
        for chunk in stream.chunks(3) {
            f.feed(chunk, |fr| {
                seen.push(fr.to_vec());
                Ok(())
            })
            .expect("valid");
        }
        assert_eq!(seen, vec![b"ab".to_vec(), vec![], b"xyz".to_vec()]);
        let e = f
            .feed(&u32::MAX.to_be_bytes(), |_| Ok(()))
            .expect_err("too large");
        assert!(e.contains("limit"), "{e}");
        assert!(f.buf.capacity() < 1000);
    }

    #[test]
    fn weak_secrets_are_refused() {
        let e = check_secret("cluster.secret", "short").expect_err("weak");
        assert!(format!("{e}").contains("cluster.secret"), "{e}");
    }
}
