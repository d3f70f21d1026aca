//! Feeds arbitrary bytes as a worker's frame body to the MessagePack
//! decoding of the protocol's messages (see `fuzz/checks.rs`).

#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::worker_message(data));
