//! The byte encodings of messages, stored objects, the bucket table and Paxos state: a
//! format byte, then postcard; decoders that check the size first, never panic, refuse
//! trailing bytes and validate what the types alone do not (see the parent module).

use super::*;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("{what} is {len} bytes, more than the limit of {max}")]
    TooLarge {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{what} is empty")]
    Empty { what: &'static str },
    #[error("{what} has format version {found}, this node reads version {expected}")]
    Format {
        what: &'static str,
        found: u8,
        expected: u8,
    },
    #[error("{what} is malformed: {detail}")]
    Malformed { what: &'static str, detail: String },
}

fn encode<T: Serialize>(format: u8, value: &T) -> Vec<u8> {
    let out = vec![format];
    postcard::to_extend(value, out).expect("encoding into a Vec cannot fail")
}

fn decode<'a, T: Deserialize<'a>>(
    what: &'static str,
    format: u8,
    bytes: &'a [u8],
) -> Result<T, CodecError> {
    if bytes.len() > MESSAGE_BYTES_MAX {
        return Err(CodecError::TooLarge {
            what,
            len: bytes.len(),
            max: MESSAGE_BYTES_MAX,
        });
    }
    let (found, rest) = bytes.split_first().ok_or(CodecError::Empty { what })?;
    if *found != format {
        return Err(CodecError::Format {
            what,
            found: *found,
            expected: format,
        });
    }
    let (value, tail) = postcard::take_from_bytes(rest).map_err(|e| CodecError::Malformed {
        what,
        detail: e.to_string(),
    })?;
    if !tail.is_empty() {
        return Err(CodecError::Malformed {
            what,
            detail: format!("{} trailing bytes", tail.len()),
        });
    }
    Ok(value)
}

fn malformed(what: &'static str, detail: impl Into<String>) -> CodecError {
    CodecError::Malformed {
        what,
        detail: detail.into(),
    }
}

fn validate_object(what: &'static str, object: &Object) -> Result<(), CodecError> {
    let siblings = object.sibling_count();
    // Writes and merges store at most `SIBLINGS_MAX`; objects stored before merges respected
    // it may hold more and must stay readable (see `SIBLINGS_DECODE_MAX`).
    if siblings > SIBLINGS_DECODE_MAX {
        return Err(malformed(what, format!("{siblings} siblings")));
    }
    if object.context().len() > VECTOR_ENTRIES_MAX {
        return Err(malformed(what, "version vector too long"));
    }
    if let Object::Collection(c) = object
        && (c.len() > crate::limits::COLLECTION_ELEMENTS_MAX
            || c.cloud_len() > crate::limits::CLOUD_DOTS_MAX)
    {
        return Err(malformed(
            what,
            format!(
                "a collection of {} elements and {} cloud dots",
                c.len(),
                c.cloud_len()
            ),
        ));
    }
    if let Object::Siblings(d) = object
        && !d.is_well_formed()
    {
        return Err(malformed(
            what,
            "an entry holds more values than its counter",
        ));
    }
    Ok(())
}

fn validate_vector(what: &'static str, v: &Option<VersionVector>) -> Result<(), CodecError> {
    match v {
        Some(v) if v.len() > VECTOR_ENTRIES_MAX => Err(malformed(what, "version vector too long")),
        _ => Ok(()),
    }
}

pub fn encode_envelope(envelope: &Envelope) -> Vec<u8> {
    encode(MESSAGE_FORMAT, envelope)
}

/// [`encode_envelope`] appended to `out` (a batch of frames), with no buffer of its own.
pub fn encode_envelope_into(envelope: &Envelope, out: &mut Vec<u8>) {
    out.push(MESSAGE_FORMAT);
    *out = postcard::to_extend(envelope, std::mem::take(out))
        .expect("encoding into a Vec cannot fail");
}

pub fn decode_envelope(bytes: &[u8]) -> Result<Envelope, CodecError> {
    const WHAT: &str = "internode message";
    let envelope: Envelope = decode(WHAT, MESSAGE_FORMAT, bytes)?;
    let key_ok = |k: &ObjectKey| k.validate().map_err(|e| malformed(WHAT, e.to_string()));
    match &envelope.message {
        Message::ReplicateRequest { key, object, .. }
        | Message::ReplicatePlainRequest { key, object, .. }
        | Message::HintDeliveryRequest { key, object, .. }
        | Message::RepairRequest { key, object } => {
            key_ok(key)?;
            validate_object(WHAT, object)?;
        }
        Message::ReadRequest { key, .. }
        | Message::HintReadRequest { key, .. }
        | Message::ReadDigestRequest { key, .. } => key_ok(key)?,
        Message::HintRequest { key, object, .. } => {
            key_ok(key)?;
            validate_object(WHAT, object)?;
        }
        Message::ReadResponse {
            result: Ok(Some(object)),
            ..
        } => validate_object(WHAT, object)?,
        Message::BucketsGossip { buckets } if buckets.len() > BUCKETS_MAX => {
            return Err(malformed(WHAT, format!("{} buckets", buckets.len())));
        }
        Message::PaxosRequest { key, phase, .. } => {
            key_ok(key)?;
            if let PaxosPhase::Propose(Some(object), _) | PaxosPhase::Commit(Some(object), _) =
                phase
            {
                validate_object(WHAT, object)?;
            }
        }
        Message::PaxosResponse {
            result: Ok(PaxosAnswer::Promise(promise)),
            ..
        } => {
            if let Some(Accepted {
                proposal: Some(o), ..
            }) = &promise.accepted
            {
                validate_object(WHAT, o)?;
            }
            if let Some(o) = &promise.object {
                validate_object(WHAT, o)?;
            }
            check_commits(WHAT, &promise.commits)?;
        }
        Message::ForwardRequest { request, .. } => {
            key_ok(&request.key)?;
            validate_vector(WHAT, &request.context)?;
        }
        Message::ScanResponse {
            result: Ok(page), ..
        } => {
            if page.entries.len() > crate::limits::SCAN_PAGE_KEYS_MAX {
                return Err(malformed(
                    WHAT,
                    format!("{} keys in a listing page", page.entries.len()),
                ));
            }
            if page
                .last
                .as_ref()
                .is_some_and(|l| l.len() > crate::limits::KEY_BYTES_MAX)
            {
                return Err(malformed(WHAT, "a listing position longer than any key"));
            }
            for e in &page.entries {
                if e.key.is_empty() || e.key.len() > crate::limits::KEY_BYTES_MAX {
                    return Err(malformed(WHAT, "a listed key of a length no key has"));
                }
                validate_object(WHAT, &e.object)?;
            }
        }
        Message::ScanRequest { after: Some(a), .. } if a.len() > crate::limits::KEY_BYTES_MAX => {
            return Err(malformed(WHAT, "a listing cursor longer than any key"));
        }
        Message::PaxosFenceResponse {
            result: Ok(list), ..
        } if list.keys.len() > crate::limits::PAXOS_REPAIR_KEYS_MAX => {
            return Err(malformed(
                WHAT,
                format!("{} keys to repair", list.keys.len()),
            ));
        }
        _ => {}
    }
    Ok(envelope)
}

/// One bucket of the table: its properties, when they last changed (`version`), and when the
/// bucket was created (`created`: the earliest creation fixes `n` and the conflict mode).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketEntry {
    pub name: BucketName,
    pub props: BucketProps,
    pub version: Hlc,
    pub created: Hlc,
    /// The bucket's truncation mark (`FLUSHDB`, `DELETE /v1/kv/{bucket}`): every value
    /// stamped at or before it is gone (`Hlc(0)`: never truncated). Joined by max.
    pub truncated: Hlc,
}

/// Format byte of the stored bucket table.
pub const BUCKETS_FORMAT: u8 = 5;
/// Format 4 had no truncation mark: still read (never truncated), never written.
const BUCKETS_FORMAT_V4: u8 = 4;
/// Format 3 had no `cas` property: still read (`conditional_only`), never written.
const BUCKETS_FORMAT_V3: u8 = 3;
/// Format 2 had no creation time either: still read (created = version), never written.
const BUCKETS_FORMAT_V2: u8 = 2;

pub fn encode_buckets(table: &[BucketEntry]) -> Vec<u8> {
    encode(BUCKETS_FORMAT, &table)
}

pub fn decode_buckets(bytes: &[u8]) -> Result<Vec<BucketEntry>, CodecError> {
    const WHAT: &str = "bucket table";
    match bytes.first() {
        Some(&BUCKETS_FORMAT_V2) => {
            let old: Vec<(BucketName, legacy::PropsV3, Hlc)> =
                decode(WHAT, BUCKETS_FORMAT_V2, bytes)?;
            Ok(old
                .into_iter()
                .map(|(name, props, version)| BucketEntry {
                    name,
                    props: props.into(),
                    version,
                    created: version,
                    truncated: Hlc(0),
                })
                .collect())
        }
        Some(&BUCKETS_FORMAT_V4) => {
            let old: Vec<legacy::EntryV4> = decode(WHAT, BUCKETS_FORMAT_V4, bytes)?;
            Ok(old
                .into_iter()
                .map(|e| BucketEntry {
                    name: e.name,
                    props: e.props,
                    version: e.version,
                    created: e.created,
                    truncated: Hlc(0),
                })
                .collect())
        }
        Some(&BUCKETS_FORMAT_V3) => {
            let old: Vec<legacy::EntryV3> = decode(WHAT, BUCKETS_FORMAT_V3, bytes)?;
            Ok(old
                .into_iter()
                .map(|e| BucketEntry {
                    name: e.name,
                    props: e.props.into(),
                    version: e.version,
                    created: e.created,
                    truncated: Hlc(0),
                })
                .collect())
        }
        _ => decode(WHAT, BUCKETS_FORMAT, bytes),
    }
}

/// The shapes of older formats, kept to read what they stored.
mod legacy {
    use crate::bucket::{BucketProps, CasMode, ConflictMode, Consistency};
    use crate::hlc::Hlc;
    use crate::ids::NodeId;
    use crate::key::BucketName;
    use crate::version::{Dvv, LwwValue, Object, Sibling};
    use serde::Deserialize;

    /// Bucket properties of formats 2 and 3: no `cas` (it reads as the default).
    #[derive(Deserialize)]
    pub(super) struct PropsV3 {
        n: u8,
        r: Consistency,
        w: Consistency,
        conflicts: ConflictMode,
        sloppy: bool,
        ttl_secs: Option<u64>,
    }

    impl From<PropsV3> for BucketProps {
        fn from(p: PropsV3) -> BucketProps {
            BucketProps {
                n: p.n,
                r: p.r,
                w: p.w,
                conflicts: p.conflicts,
                sloppy: p.sloppy,
                ttl_secs: p.ttl_secs,
                cas: CasMode::default(),
            }
        }
    }

    /// Acceptor state format 2 (no write promise kept: any promise may have been one).
    #[derive(Deserialize)]
    pub(super) struct AcceptorStateV2 {
        promised: crate::paxos::Ballot,
        accepted: Option<crate::paxos::Accepted>,
        committed: crate::paxos::Ballot,
        commits: Vec<crate::paxos::CommitSeen>,
    }

    impl From<AcceptorStateV2> for crate::paxos::AcceptorState {
        fn from(s: AcceptorStateV2) -> crate::paxos::AcceptorState {
            crate::paxos::AcceptorState {
                promised: s.promised,
                accepted: s.accepted,
                committed: s.committed,
                commits: s.commits,
                promised_write: s.promised,
            }
        }
    }

    /// Acceptor state format 1 (no commits kept: none proves anything).
    #[derive(Deserialize)]
    pub(super) struct AcceptorStateV1 {
        promised: crate::paxos::Ballot,
        accepted: Option<AcceptedV1>,
        committed: crate::paxos::Ballot,
    }

    #[derive(Deserialize)]
    struct AcceptedV1 {
        ballot: crate::paxos::Ballot,
        proposal: crate::paxos::Proposal,
    }

    impl From<AcceptorStateV1> for crate::paxos::AcceptorState {
        fn from(s: AcceptorStateV1) -> crate::paxos::AcceptorState {
            // A proposal's own ballot is at least its first ballot, which is all the proof
            // of beaten proposals needs of a base; no commits kept proves nothing.
            crate::paxos::AcceptorState {
                promised: s.promised,
                accepted: s.accepted.map(|a| crate::paxos::Accepted {
                    ballot: a.ballot,
                    proposal: a.proposal,
                    base: a.ballot,
                }),
                committed: s.committed,
                commits: Vec::new(),
                promised_write: s.promised,
            }
        }
    }

    /// A bucket table entry of format 4 (no truncation mark).
    #[derive(Deserialize)]
    pub(super) struct EntryV4 {
        pub(super) name: BucketName,
        pub(super) props: BucketProps,
        pub(super) version: Hlc,
        pub(super) created: Hlc,
    }

    /// A bucket table entry of format 3.
    #[derive(Deserialize)]
    pub(super) struct EntryV3 {
        pub(super) name: BucketName,
        pub(super) props: PropsV3,
        pub(super) version: Hlc,
        pub(super) created: Hlc,
    }

    /// Object format 2: an `lww` version without its TTL-change stamp.
    #[derive(Deserialize)]
    pub(super) enum ObjectV2 {
        Siblings(Dvv),
        Lww { writer: NodeId, sibling: Sibling },
    }

    impl From<ObjectV2> for Object {
        fn from(o: ObjectV2) -> Object {
            match o {
                ObjectV2::Siblings(d) => Object::Siblings(d),
                ObjectV2::Lww { writer, sibling } => Object::Lww(LwwValue::new(writer, sibling)),
            }
        }
    }
}

/// Format byte of an acceptor's stored Paxos state.
pub const PAXOS_FORMAT: u8 = 3;
/// Format 1 had no base of accepted proposals and no value of the last commit: still read
/// (with the bases as high as they can be, so they prove nothing), never written.
const PAXOS_FORMAT_V1: u8 = 1;
/// Acceptor state without `promised_write`.
const PAXOS_FORMAT_V2: u8 = 2;

/// Format byte of a group's stored Paxos bounds (`paxos::GroupBound`).
pub const PAXOS_BOUND_FORMAT: u8 = 1;

pub fn encode_group_bound(bound: &crate::paxos::GroupBound) -> Vec<u8> {
    encode(PAXOS_BOUND_FORMAT, bound)
}

pub fn decode_group_bound(bytes: &[u8]) -> Result<crate::paxos::GroupBound, CodecError> {
    decode("stored paxos bound", PAXOS_BOUND_FORMAT, bytes)
}

pub fn encode_acceptor_state(state: &crate::paxos::AcceptorState) -> Vec<u8> {
    encode(PAXOS_FORMAT, state)
}

pub fn decode_acceptor_state(bytes: &[u8]) -> Result<crate::paxos::AcceptorState, CodecError> {
    const WHAT: &str = "stored paxos state";
    let state: crate::paxos::AcceptorState = if bytes.first() == Some(&PAXOS_FORMAT_V1) {
        decode::<legacy::AcceptorStateV1>(WHAT, PAXOS_FORMAT_V1, bytes)?.into()
    } else if bytes.first() == Some(&PAXOS_FORMAT_V2) {
        decode::<legacy::AcceptorStateV2>(WHAT, PAXOS_FORMAT_V2, bytes)?.into()
    } else {
        decode(WHAT, PAXOS_FORMAT, bytes)?
    };
    if let Some(Accepted {
        proposal: Some(o), ..
    }) = &state.accepted
    {
        validate_object(WHAT, o)?;
    }
    check_commits(WHAT, &state.commits)?;
    Ok(state)
}

/// An acceptor keeps at most [`crate::limits::PAXOS_COMMITS_KEPT`] commits.
fn check_commits(
    what: &'static str,
    commits: &[crate::paxos::CommitSeen],
) -> Result<(), CodecError> {
    if commits.len() > crate::limits::PAXOS_COMMITS_KEPT {
        return Err(malformed(
            what,
            format!(
                "{} commits kept, more than the limit of {}",
                commits.len(),
                crate::limits::PAXOS_COMMITS_KEPT
            ),
        ));
    }
    Ok(())
}

pub fn encode_object(object: &Object) -> Vec<u8> {
    encode(OBJECT_FORMAT, object)
}

pub fn decode_object(bytes: &[u8]) -> Result<Object, CodecError> {
    const WHAT: &str = "stored object";
    let object = if bytes.first() == Some(&OBJECT_FORMAT_V2) {
        decode::<legacy::ObjectV2>(WHAT, OBJECT_FORMAT_V2, bytes)?.into()
    } else {
        decode(WHAT, OBJECT_FORMAT, bytes)?
    };
    validate_object(WHAT, &object)?;
    Ok(object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bucket::CasMode;
    use crate::hlc::Hlc;
    use crate::key::BucketName;
    use crate::version::{Dvv, LwwValue};
    use proptest::prelude::*;

    /// Messages, requests and replies move by value through queues, batches and futures on every
    /// request: a large rare variant made each move of the common ones twice as costly.
    /// Box the large fields of a new variant rather than raise these bounds.
    #[test]
    fn messages_and_replies_stay_small_to_move() {
        assert!(std::mem::size_of::<Message>() <= 192);
        assert!(std::mem::size_of::<Envelope>() <= 200);
        assert!(std::mem::size_of::<ClientResponse>() <= 232);
        assert!(std::mem::size_of::<ClientRequest>() <= 72);
        assert!(std::mem::size_of::<crate::node::Input>() <= 200);
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn key() -> ObjectKey {
        ObjectKey::new(BucketName::new("b").expect("valid"), b"k").expect("valid")
    }

    fn sample_object() -> Object {
        let (d, _) = Dvv::default()
            .update(
                &VersionVector::default(),
                Sibling::value(b"v".to_vec(), "t", Hlc(5)),
                NodeId(2),
            )
            .expect("ok");
        Object::Siblings(d)
    }

    /// Golden bytes: these pin object format 3 (2 had no TTL-change stamp on `lww` versions
    /// and is still read, below; version 1 had no TTL on siblings; nothing was ever stored in
    /// it outside development), message format 11 (10 had no digest reads; 9 had TTLs only, no absolute expiry times; 8 no compare-and-set of
    /// hash and set updates; 7 had no hash or set updates, 6 had no plain-write replication nor bucket `cas`, 5 no Paxos messages, 4 no expiry
    /// batches, 3 no version-bound writes; messages are never stored, and a cluster runs one
    /// version) and Paxos state format 2 (1 had no bases, still read). If this test fails, the format
    /// changed: bump the format byte and keep a decoder for the old one instead of editing this.
    #[test]
    fn golden_bytes() {
        assert_eq!(
            hex(&encode_object(&sample_object())),
            "03000102010101760174050000"
        );
        let lww = Object::Lww(LwwValue::new(NodeId(3), Sibling::tombstone(Hlc(9))));
        assert_eq!(hex(&encode_object(&lww)), "030103000009010000");
        // Format 2 still reads: an lww version then had no TTL-change stamp.
        let unhex = |h: &str| -> Vec<u8> {
            (0..h.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&h[i..i + 2], 16).expect("hex"))
                .collect()
        };
        assert_eq!(
            decode_object(&unhex("0201030000090100")).expect("format 2"),
            lww
        );
        assert_eq!(
            decode_object(&unhex("02000102010101760174050000")).expect("format 2"),
            sample_object()
        );
        let env = Envelope {
            layout_version: LayoutVersion(7),
            message: Message::ReplicateRequest {
                req: RequestId(300),
                key: key(),
                object: sample_object(),
            },
        };
        assert_eq!(
            hex(&encode_envelope(&env)),
            "0b0700ac020162016b000102010101760174050000"
        );
        // Encoded in place, after what a batch already holds: the same bytes.
        let mut batch = vec![0xff, 0xee];
        encode_envelope_into(&env, &mut batch);
        assert_eq!(
            hex(&batch),
            "ffee0b0700ac020162016b000102010101760174050000"
        );
        let env = Envelope {
            layout_version: LayoutVersion(1),
            message: Message::ReadResponse {
                req: RequestId(1),
                result: Err(ReplicaError::NotReplica),
            },
        };
        assert_eq!(hex(&encode_envelope(&env)), "0b0103010103");
        let env = Envelope {
            layout_version: LayoutVersion(1),
            message: Message::ReadDigestResponse {
                req: RequestId(1),
                result: Ok(Some(Digest::of(b"x", Hlc(0)))),
            },
        };
        // The digest's 16 bytes are XXH3-128 of "x" (seed 0: no truncation mark), little
        // endian, as the reference implementation gives them.
        assert_eq!(
            hex(&encode_envelope(&env)),
            "0b012001000111cdb280646cf0eaeeee22ecc001745c"
        );
        let ballot = Ballot {
            hlc: Hlc(5),
            node: NodeId(2),
        };
        let env = Envelope {
            layout_version: LayoutVersion(1),
            message: Message::PaxosRequest {
                req: RequestId(1),
                key: key(),
                ballot,
                phase: PaxosPhase::Propose(None, Ballot::ZERO),
            },
        };
        assert_eq!(hex(&encode_envelope(&env)), "0b0114010162016b050201000000");
        let state = crate::paxos::AcceptorState {
            promised: ballot,
            accepted: Some(Accepted {
                ballot,
                proposal: Some(sample_object()),
                base: Ballot::ZERO,
            }),
            committed: Ballot::ZERO,
            commits: vec![],
            promised_write: ballot,
        };
        assert_eq!(
            hex(&encode_acceptor_state(&state)),
            "0305020105020100010201010176017405000000000000000502"
        );
        assert_eq!(
            decode_acceptor_state(&encode_acceptor_state(&state)),
            Ok(state.clone())
        );
        // Format 2 still reads, every promise taken for a write's.
        let v2 = decode_acceptor_state(&unhex("020502010502010001020101017601740500000000000000"))
            .expect("format 2");
        assert_eq!(v2, state);
        // Format 1 still reads, with bases as high as they can be.
        let v1 = decode_acceptor_state(&unhex("010502010502010001020101017601740500000000"))
            .expect("format 1");
        let want = crate::paxos::AcceptorState {
            accepted: state
                .accepted
                .clone()
                .map(|a| Accepted { base: ballot, ..a }),
            ..state
        };
        assert_eq!(v1, want);
    }

    /// Bucket table format 5 is pinned here; 4 (no truncation mark), 3 (no `cas`) and 2 (no
    /// creation time either) still read, with those at their defaults.
    #[test]
    fn bucket_tables_golden_and_older_formats() {
        let name = BucketName::new("old").expect("valid");
        let entry = |created| BucketEntry {
            name: name.clone(),
            props: BucketProps::lww(),
            version: Hlc(77),
            created: Hlc(created),
            truncated: Hlc(0),
        };
        let unhex = |h: &str| -> Vec<u8> {
            (0..h.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&h[i..i + 2], 16).expect("hex"))
                .collect()
        };
        let table = vec![BucketEntry {
            props: BucketProps {
                cas: CasMode::AllWrites,
                ..BucketProps::lww()
            },
            ..entry(78)
        }];
        let truncated = vec![BucketEntry {
            truncated: Hlc(79),
            ..table[0].clone()
        }];
        assert_eq!(
            hex(&encode_buckets(&truncated)),
            "0501036f6c64030303010100024d4e4f"
        );
        assert_eq!(decode_buckets(&encode_buckets(&truncated)), Ok(truncated));
        assert_eq!(
            decode_buckets(&unhex("0401036f6c64030303010100024d4e")).expect("format 4"),
            table
        );
        assert_eq!(
            decode_buckets(&unhex("0301036f6c640303030101004d4e")).expect("format 3"),
            vec![entry(78)]
        );
        assert_eq!(
            decode_buckets(&unhex("0201036f6c640303030101004d")).expect("format 2"),
            vec![entry(77)]
        );
    }

    #[test]
    fn decoders_name_the_problem() {
        assert_eq!(
            decode_object(&[]).expect_err("empty").to_string(),
            "stored object is empty"
        );
        assert_eq!(
            decode_object(&[9]).expect_err("format").to_string(),
            "stored object has format version 9, this node reads version 3"
        );
        let mut bytes = encode_object(&sample_object());
        bytes.push(0);
        assert_eq!(
            decode_object(&bytes).expect_err("trailing").to_string(),
            "stored object is malformed: 1 trailing bytes"
        );
        // A key longer than the limit is refused even though the type could hold it.
        let mut long = encode_envelope(&Envelope {
            layout_version: LayoutVersion(1),
            message: Message::ReadRequest {
                req: RequestId(1),
                key: key(),
            },
        });
        long.truncate(long.len() - 2);
        long.extend_from_slice(&[0x81, 0x08]); // key length 1025
        long.extend(std::iter::repeat_n(b'x', 1025));
        assert!(
            decode_envelope(&long)
                .expect_err("long key")
                .to_string()
                .contains("1025 bytes")
        );
    }

    fn arb_object() -> impl Strategy<Value = Object> {
        let sib = (
            proptest::collection::vec(any::<u8>(), 0..16),
            any::<bool>(),
            any::<u64>(),
            proptest::option::of(any::<u64>()),
        )
            .prop_map(|(v, t, ts, exp)| Sibling {
                value: v,
                content_type: "x".into(),
                timestamp: Hlc(ts),
                tombstone: t,
                expires_at: exp,
            });
        prop_oneof![
            (proptest::collection::vec((1u64..4, sib.clone()), 0..6)).prop_map(|writes| {
                let mut d = Dvv::default();
                for (node, s) in writes {
                    d = d
                        .update(&VersionVector::default(), s, NodeId(node))
                        .expect("few")
                        .0;
                }
                Object::Siblings(d)
            }),
            (any::<u64>(), sib, any::<u64>()).prop_map(|(w, s, t)| Object::Lww(LwwValue {
                writer: NodeId(w),
                sibling: s,
                touched: Hlc(t),
            })),
        ]
    }

    /// Equal bytes read under different truncation marks are different answers (the one
    /// under the later mark hides what is older than it): their digests differ.
    #[test]
    fn digests_cover_the_truncation_mark() {
        let stored = encode_object(&sample_object());
        assert_eq!(Digest::of(&stored, Hlc(0)), Digest::of(&stored, Hlc(0)));
        assert_ne!(Digest::of(&stored, Hlc(0)), Digest::of(&stored, Hlc(7)));
        assert_ne!(Digest::of(&stored, Hlc(7)), Digest::of(&stored, Hlc(8)));
        assert_ne!(
            Digest::of(&stored, Hlc(0)),
            Digest::of(&stored[1..], Hlc(0))
        );
    }

    proptest! {
        #[test]
        fn objects_round_trip(o in arb_object()) {
            prop_assert_eq!(decode_object(&encode_object(&o)).expect("round trip"), o);
        }

        #[test]
        fn envelopes_round_trip(o in arb_object(), req in any::<u64>(), lv in any::<u64>()) {
            for message in [
                Message::ReplicateRequest { req: RequestId(req), key: key(), object: o.clone() },
                Message::HintDeliveryRequest { req: RequestId(req), key: key(), object: o.clone() },
                Message::ReadResponse { req: RequestId(req), result: Ok(Some(o.clone())) },
                Message::ReadDigestRequest { req: RequestId(req), key: key() },
                Message::ReadDigestResponse { req: RequestId(req), result: Ok(Some(Digest::of(&req.to_le_bytes(), crate::hlc::Hlc(lv)))) },
                Message::RepairRequest { key: key(), object: o.clone() },
                Message::ReplicateResponse { req: RequestId(req), result: Err(ReplicaError::Store("disk".into())) },
            ] {
                let env = Envelope { layout_version: LayoutVersion(lv), message };
                prop_assert_eq!(decode_envelope(&encode_envelope(&env)).expect("round trip"), env);
            }
        }

        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_envelope(&bytes);
            let _ = decode_object(&bytes);
            let _ = decode_buckets(&bytes);
            // Behind each current format byte, so the bytes reach the decoders themselves.
            for (format, decode) in [
                (MESSAGE_FORMAT, (|b: &[u8]| decode_envelope(b).is_ok()) as fn(&[u8]) -> bool),
                (OBJECT_FORMAT, |b: &[u8]| decode_object(b).is_ok()),
                (BUCKETS_FORMAT, |b: &[u8]| decode_buckets(b).is_ok()),
            ] {
                let mut with_format = vec![format];
                with_format.extend_from_slice(&bytes);
                let _ = decode(&with_format);
            }
        }

        #[test]
        fn decoders_see_past_the_format_byte(o in arb_object()) {
            // The property above is only worth something if a current format byte gets the
            // bytes to the decoder: an encoding starts with it and decodes.
            let bytes = encode_object(&o);
            prop_assert_eq!(bytes[0], OBJECT_FORMAT);
            prop_assert_eq!(decode_object(&bytes).ok(), Some(o));
        }

        #[test]
        fn corrupted_messages_never_panic(o in arb_object(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4)) {
            let mut bytes = encode_envelope(&Envelope {
                layout_version: LayoutVersion(1),
                message: Message::ReplicateRequest { req: RequestId(1), key: key(), object: o },
            });
            for (i, b) in flips {
                let n = bytes.len();
                bytes[i % n] ^= b;
            }
            let _ = decode_envelope(&bytes);
        }
    }
}
