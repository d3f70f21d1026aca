//! Feeds arbitrary bytes, split at an arbitrary point, to the frame decoder
//! the supervisor uses on everything a worker sends (see `fuzz/checks.rs`).

#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::frame_decode(data));
