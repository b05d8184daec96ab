//! The decoders never panic, never read past what they were given, and agree with the
//! encoders; the cargo-fuzz corpus (`fuzz/corpus/`) is replayed here so every input the
//! fuzzer kept runs on each `cargo test`.

use hydra_resp::{Limits, Protocol, Value, encode_command, parse_command, parse_value};
use proptest::prelude::*;
use std::path::Path;

fn small_limits() -> Limits {
    Limits {
        bulk_bytes_max: 64,
        array_len_max: 8,
        inline_bytes_max: 64,
        depth_max: 4,
        command_bytes_max: 256,
        unauthenticated: false,
    }
}

/// Runs both decoders over `bytes` and over every frame boundary they report.
fn exercise(bytes: &[u8], limits: &Limits) {
    let mut at = 0;
    while at < bytes.len() {
        match parse_command(&bytes[at..], limits) {
            Ok(Some((_, used))) => {
                assert!(used > 0 && at + used <= bytes.len());
                at += used;
            }
            _ => break,
        }
    }
    let mut at = 0;
    while at < bytes.len() {
        match parse_value(&bytes[at..], limits) {
            Ok(Some((_, used))) => {
                assert!(used > 0 && at + used <= bytes.len());
                at += used;
            }
            _ => break,
        }
    }
}

fn value_strategy() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        "[a-zA-Z0-9 ]{0,10}".prop_map(Value::Simple),
        "ERR [a-z]{0,10}".prop_map(Value::Error),
        any::<i64>().prop_map(Value::Integer),
        proptest::collection::vec(any::<u8>(), 0..20).prop_map(Value::Bulk),
        Just(Value::Null),
        any::<bool>().prop_map(Value::Boolean),
        (-1e9f64..1e9).prop_map(Value::Double),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Set),
            proptest::collection::vec((inner.clone(), inner), 0..3).prop_map(Value::Map),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        exercise(&bytes, &small_limits());
        exercise(&bytes, &Limits::default());
    }

    #[test]
    fn mutated_frames_never_panic(
        args in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..16), 0..6),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
    ) {
        let mut bytes = Vec::new();
        encode_command(&args, &mut bytes);
        for (i, b) in flips {
            let n = bytes.len();
            bytes[i % n] = b;
        }
        exercise(&bytes, &small_limits());
    }

    #[test]
    fn commands_round_trip_and_prefixes_are_incomplete(
        args in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..16), 1..6),
    ) {
        let mut bytes = Vec::new();
        encode_command(&args, &mut bytes);
        let limits = Limits::default();
        prop_assert_eq!(parse_command(&bytes, &limits).expect("valid"), Some((args, bytes.len())));
        for cut in 0..bytes.len() {
            prop_assert_eq!(parse_command(&bytes[..cut], &limits).expect("prefix"), None);
        }
    }

    #[test]
    fn values_round_trip_in_resp3(value in value_strategy()) {
        let bytes = value.to_bytes(Protocol::Resp3);
        let (back, used) = parse_value(&bytes, &Limits::default()).expect("valid").expect("complete");
        prop_assert_eq!(used, bytes.len());
        // Doubles print with Rust's shortest round-trip form, so equality is exact.
        prop_assert_eq!(back, value);
    }

    #[test]
    fn values_parse_in_resp2(value in value_strategy()) {
        let bytes = value.to_bytes(Protocol::Resp2);
        let parsed = parse_value(&bytes, &Limits::default()).expect("valid").expect("complete");
        prop_assert_eq!(parsed.1, bytes.len());
    }
}

#[test]
fn fuzz_corpus_replays_without_panics() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    let mut files = 0;
    for target in std::fs::read_dir(&root).expect("the fuzz corpus exists") {
        let target = target.expect("readable").path();
        for entry in std::fs::read_dir(&target).expect("readable") {
            let bytes = std::fs::read(entry.expect("readable").path()).expect("readable");
            exercise(&bytes, &Limits::default());
            exercise(&bytes, &small_limits());
            files += 1;
        }
    }
    assert!(files >= 10, "only {files} corpus files");
}
