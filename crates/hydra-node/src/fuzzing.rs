//! The bodies of the cargo-fuzz targets (`fuzz/fuzz_targets/`) for what this crate decodes
//! from the network, so the targets and the corpus replay (`cargo test`) run the same code:
//! internode frames and messages after decryption, the responder's half of the handshake,
//! and client credentials (tokens, scopes, the credentials table).
//!
//! Each takes arbitrary bytes and must return without panicking, whatever they are.

use crate::secure::{Frames, Identity, Security};
use hydra_core::ids::NodeId;
use hydra_core::limits::MESSAGE_BYTES_MAX;
use hydra_core::message::decode_envelope;
use std::sync::OnceLock;

/// Decrypted internode bytes: split into frames (in pieces cut where the input says, so
/// reassembly is exercised), each frame decoded as an envelope, and the whole input decoded
/// as one envelope too.
pub fn internode_frames(data: &[u8]) {
    let _ = decode_envelope(data);
    let cut = data.first().map_or(1, |b| (*b as usize % 64) + 1);
    let mut frames = Frames::new(MESSAGE_BYTES_MAX);
    for piece in data.chunks(cut) {
        if frames
            .feed(piece, |frame| {
                let _ = decode_envelope(frame);
                Ok(())
            })
            .is_err()
        {
            break;
        }
    }
}

fn responder() -> &'static (tokio::runtime::Runtime, Security) {
    static R: OnceLock<(tokio::runtime::Runtime, Security)> = OnceLock::new();
    R.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime");
        let security = Security::new(
            NodeId(1),
            Identity::generate().expect("a key pair"),
            "the fuzzing cluster secret, long enough 0123456789",
            None,
            &[(NodeId(2), None)],
            None,
        )
        .expect("valid");
        (runtime, security)
    })
}

/// Arbitrary bytes sent to a node's internode port: the responder's handshake reads them
/// (it must refuse them, never panic, never hang).
pub fn internode_handshake(data: &[u8]) {
    let (runtime, security) = responder();
    let stream = tokio::io::join(std::io::Cursor::new(data.to_vec()), tokio::io::sink());
    let mut stream = stream;
    let accepted = runtime.block_on(security.accept(&mut stream));
    assert!(
        accepted.is_err(),
        "bytes without the cluster secret were admitted"
    );
}

/// Client credentials as they arrive: a bearer token, scopes, and the stored table.
pub fn client_tokens(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::credentials::parse_token(text);
        let _ = crate::auth::Scope::parse(text);
        for line in text.lines() {
            let _ = crate::auth::Scope::parse(line);
        }
    }
    let _ = serde_json::from_slice::<crate::credentials::Table>(data);
}

#[cfg(test)]
mod tests {
    /// Every input cargo-fuzz kept for these targets runs on each `cargo test`.
    #[test]
    fn fuzz_corpora_replay_without_panics() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
        type Target = fn(&[u8]);
        let targets: [(&str, Target); 3] = [
            ("internode_frames", super::internode_frames),
            ("internode_handshake", super::internode_handshake),
            ("client_tokens", super::client_tokens),
        ];
        for (name, target) in targets {
            let dir = root.join(name);
            let mut files = 0;
            for entry in std::fs::read_dir(&dir).expect("the corpus exists") {
                target(&std::fs::read(entry.expect("readable").path()).expect("readable"));
                files += 1;
            }
            assert!(files >= 3, "{name}: only {files} corpus files");
        }
    }
}
