#![no_main]
//! See `hydra_node::fuzzing::internode_frames`: the same body the corpus replay runs on `cargo test`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    hydra_node::fuzzing::internode_frames(data);
});
