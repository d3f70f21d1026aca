//! What each fuzz target does with one input, shared by the targets
//! (`cargo fuzz run <target>`, see `fuzz/README.md`) and by the stable
//! replay of the committed corpus (`tests/fuzz_corpus.rs`), so that CI
//! replays exactly what the fuzzer ran.
//!
//! Each check returns normally for every input; a panic is a bug of the
//! code under test (or a broken invariant asserted here).

// Each fuzz target uses one of these functions; the replay uses them all.
#![allow(dead_code)]

use bytes::BytesMut;
use pyexec::config::LimitsConfig;
use pyexec::protocol::{decode_message, encode_frame, FrameCodec};
use std::time::Duration;
use tokio_util::codec::Decoder;

/// What a target does with one input.
pub type Check = fn(&[u8]);

/// The targets by name (the directory names under `fuzz/corpus/`).
pub const TARGETS: [(&str, Check); 3] =
    [("frame_decode", frame_decode), ("request_parse", request_parse), ("worker_message", worker_message)];

/// Arbitrary bytes, split at a point chosen by the first byte, fed to the
/// frame decoder the supervisor uses on everything a worker sends: frames
/// or errors, never a panic, never an allocation past the frame maximum.
pub fn frame_decode(data: &[u8]) {
    let Some((&split, rest)) = data.split_first() else { return };
    let cut = usize::from(split).min(rest.len());
    let mut codec = FrameCodec::new(64 * 1024);
    let mut buf = BytesMut::from(&rest[..cut]);
    for chunk in [&rest[cut..], &[][..]] {
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(_)) => continue,
                Ok(None) => break,
                Err(_) => return,
            }
        }
        buf.extend_from_slice(chunk);
    }
}

fn limits() -> LimitsConfig {
    LimitsConfig {
        default_timeout: Duration::from_secs(10),
        max_timeout: Duration::from_secs(60),
        default_memory_mib: 256,
        min_memory_mib: 16,
        max_memory_mib: 1024,
        max_output_bytes: 1 << 20,
        max_result_bytes: 4 << 20,
        max_files: 16,
        max_files_bytes: 8 << 20,
        max_figures: 8,
        max_figures_bytes: 4 << 20,
    }
}

/// A `/execute` body, as a client sends it, through the parser and
/// validator: a job within the limits or an `invalid_json` /
/// `invalid_request` error, never a panic.
pub fn request_parse(data: &[u8]) {
    let limits = limits();
    let Ok(job) = pyexec::http::request::parse_job(data, &limits) else { return };
    assert!(!job.script.trim().is_empty(), "an accepted script is not blank");
    assert!(!job.timeout.is_zero() && job.timeout <= limits.max_timeout, "timeout {:?}", job.timeout);
    let mib = job.memory_bytes / (1024 * 1024);
    assert!((limits.min_memory_mib..=limits.max_memory_mib).contains(&mib), "memory {mib} MiB");
}

/// A frame body from a (possibly compromised) worker, decoded into the
/// protocol's message type: a message or an error, never a panic. A
/// message we accept encodes to bytes that decode to the same encoding
/// (compared as bytes: a NaN duration is not equal to itself).
pub fn worker_message(data: &[u8]) {
    let Ok(message) = decode_message(data) else { return };
    let frame = encode_frame(&message).expect("a decoded message encodes");
    let again = decode_message(&frame[4..]).expect("our own encoding decodes");
    assert_eq!(encode_frame(&again).expect("encodes"), frame, "encoding is stable");
}
