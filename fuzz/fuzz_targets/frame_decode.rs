//! Feeds arbitrary bytes, split at an arbitrary point, to the frame decoder
//! the supervisor uses on everything a worker sends. It must return frames
//! or errors, never panic, and never allocate past the frame maximum.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use pyexec::protocol::FrameCodec;
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
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
});
