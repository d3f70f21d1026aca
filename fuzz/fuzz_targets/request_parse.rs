//! Feeds arbitrary bytes as a `POST /execute` body to the request parser and
//! validator (see `fuzz/checks.rs`).

#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::request_parse(data));
