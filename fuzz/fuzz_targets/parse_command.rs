#![no_main]
//! Feeds arbitrary bytes to the RESP command decoder, with default and with tiny limits, and
//! walks every frame it reports, checking it never claims more bytes than it was given.

use hydra_resp::{Limits, parse_command};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let tiny = Limits { bulk_bytes_max: 64, array_len_max: 8, inline_bytes_max: 64, depth_max: 4, command_bytes_max: 256, unauthenticated: false };
    // Limits::unauthenticated(): what a connection may send before it logs in.
    for limits in [Limits::default(), tiny, Limits::unauthenticated()] {
        let mut at = 0;
        while at < data.len() {
            match parse_command(&data[at..], &limits) {
                Ok(Some((_, used))) => {
                    assert!(used > 0 && at + used <= data.len());
                    at += used;
                }
                _ => break,
            }
        }
    }
});
